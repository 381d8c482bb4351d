package scheduler_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/scheduler"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/butterfn/butter/scheduler/schedtest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// dlProject has two functions on one stream: f dead-letters to the
// stream's default dl.in.dlq, g to its own dead_letter stream; h, on
// another stream, shares nothing with them.
var dlProject = map[string]string{
	"p.fn.hcl": `project "dl" {}
stream "in" {
  partitions = 2
}
stream "other" {}
stream "failed" {}
stream "out" {}
function "f" {
  runtime = "exec"
  source  = "f"
  command = ["cat"]
  output  = stream.out
  trigger "stream" {
    stream = stream.in
  }
  trigger "http" {
    route = "POST /f"
  }
}
function "g" {
  runtime     = "exec"
  source      = "f"
  command     = ["cat"]
  dead_letter = stream.failed
  trigger "stream" {
    stream = stream.in
  }
}
function "h" {
  runtime = "exec"
  source  = "f"
  command = ["cat"]
  emits   = [stream.in]
  trigger "stream" {
    stream = stream.other
  }
  trigger "cron" {
    schedule = "0 3 * * *"
  }
}
`,
	"f/run": "cat\n",
}

// kafkaEnv is a control plane with the embedded broker as its Kafka,
// serving the revision of dlProject.
type kafkaEnv struct {
	s      *scheduler.Server
	client *api.Client
	kcl    *kgo.Client
}

func newKafkaEnv(t *testing.T) *kafkaEnv {
	t.Helper()
	b, err := broker.StartDev(0, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	s, client := schedtest.SingleConfig(t, scheduler.Config{KafkaConfig: b.Config()})
	job, bundles := schedtest.RevisionJobOf(t, "r1", dlProject, nil)
	if err := s.Apply(fsm.ProjectUpsertType, fsm.Project{Name: "dl", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	rev := fsm.Revision{Project: "dl", ID: "r1", Job: job, Bundles: bundles, Created: time.Now(), Routes: []string{"POST /f -> f", "POST /both -> f | g"},
		Timers: []*fsm.Timer{{ID: "dl.h.0", Project: "dl", Schedule: "0 3 * * *", Topic: "dl._timers.h"}}}
	if err := s.Apply(fsm.RevisionCreateType, rev); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(fsm.RevisionActivateType, fsm.Activation{Project: "dl", Revision: "r1"}); err != nil {
		t.Fatal(err)
	}
	kcl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kcl.Close)
	// The topics the pools would create.
	adm := kadm.NewClient(kcl)
	if _, err := adm.CreateTopic(context.Background(), 2, 1, nil, "dl.in"); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(context.Background(), 1, 1, nil, "dl.in.dlq"); err != nil {
		t.Fatal(err)
	}
	return &kafkaEnv{s: s, client: client, kcl: kcl}
}

func (e *kafkaEnv) produce(t *testing.T, recs ...*kgo.Record) {
	t.Helper()
	if err := e.kcl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// deadLetter is a dead letter as a pool writes it: fn failed the event
// at origin; fn "" is one from before pools named the function.
func deadLetter(topic, fn, origin, id, value string) *kgo.Record {
	r := &kgo.Record{Topic: topic, Key: []byte("k-" + id), Value: []byte(value)}
	for _, h := range [][2]string{{"ce_specversion", "1.0"}, {"ce_id", id}, {"ce_source", "butter/dl/x"}, {"ce_traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{broker.HeaderErrorType, "Exception"}, {broker.HeaderErrorMessage, "boom: " + id}, {broker.HeaderAttempts, "3"}, {broker.HeaderOrigin, origin}} {
		broker.SetHeader(r, h[0], h[1])
	}
	if fn != "" {
		broker.SetHeader(r, broker.HeaderErrorFunction, fn)
	}
	return r
}

// TestFunctionsView: GET /v1/projects/{name}/functions reads the active
// revision's job: each function's pool, runtime, routes (pipelines'
// included), schedules, input, output and emitted streams, dead-letter
// topics, and the project's streams.
func TestFunctionsView(t *testing.T) {
	e := newKafkaEnv(t)
	out, err := e.client.Projects().Functions(context.Background(), "dl", nil)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]api.FunctionInfo{}
	for _, f := range out.Functions {
		byName[f.Function] = f
	}
	f, g, h := byName["f"], byName["g"], byName["h"]
	if out.Revision != "r1" || len(out.Functions) != 3 || f.Runtime != "exec" || f.Pool != "default" {
		t.Fatalf("functions: %+v", out)
	}
	if !slices.Equal(f.Inputs, []string{"dl.in"}) || f.Output != "dl.out" || !slices.Equal(f.DeadLetters, []string{"dl.in.dlq"}) || !slices.Equal(f.Routes, []string{"POST /f", "POST /both"}) {
		t.Errorf("f: %+v", f)
	}
	if !slices.Equal(g.DeadLetters, []string{"dl.failed"}) || !slices.Equal(g.Routes, []string{"POST /both"}) {
		t.Errorf("g: %+v", g)
	}
	if !slices.Equal(h.Inputs, []string{"dl.other"}) || !slices.Equal(h.Emits, []string{"dl.in"}) || !slices.Equal(h.Schedules, []string{"0 3 * * *"}) ||
		!slices.Equal(h.DeadLetters, []string{"dl.other.dlq", "dl._timers.h.dlq"}) {
		t.Errorf("h: %+v", h)
	}
	var streams []string
	for _, s := range out.Streams {
		streams = append(streams, s.Name+"="+s.Topic)
	}
	if want := []string{"failed=dl.failed", "in=dl.in", "other=dl.other", "out=dl.out"}; !slices.Equal(streams, want) {
		t.Errorf("streams %v, want %v", streams, want)
	}
}

// TestDeadLettersAndReplay: a function's dead letters are listed from
// its dead-letter topics, its own only (a shared <topic>.dlq holds every
// consumer's; one without ce_errorfunction counts as its), newest first,
// with their error; a replay writes one back to the topic and partition
// it failed on, without the dead letter's headers and with
// ce_replayedfrom; replays of another function's dead letter, of a
// topic that is not the function's, of a missing record and of a dead
// letter that failed elsewhere are refused, writing nothing.
func TestDeadLettersAndReplay(t *testing.T) {
	e := newKafkaEnv(t)
	ctx := context.Background()
	// Written as the pools do: in the producer's order, so newest last.
	dls := []*kgo.Record{
		deadLetter("dl.in.dlq", "f", "dl.in/1/5", "e1", `{"n":1}`),
		deadLetter("dl.in.dlq", "g", "dl.in/0/2", "e2", "not f's"),
		deadLetter("dl.in.dlq", "", "dl.in/0/3", "e3", "\xff\xfe"),
		deadLetter("dl.in.dlq", "f", "dl.elsewhere/0/1", "e4", "failed elsewhere"),
	}
	for _, r := range dls {
		e.produce(t, r) // one at a time: their timestamps in order
	}
	list, err := e.client.Projects().DeadLetters(ctx, "dl", "f", 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range list.DeadLetters {
		ids = append(ids, d.ID)
	}
	if !slices.Equal(ids, []string{"e4", "e3", "e1"}) || !slices.Equal(list.Topics, []string{"dl.in.dlq"}) {
		t.Fatalf("f's dead letters: %v from %v; want e4, e3, e1 (newest first; not g's e2) from dl.in.dlq", ids, list.Topics)
	}
	var e1, e3 api.DeadLetter
	for _, d := range list.DeadLetters {
		switch d.ID {
		case "e1":
			e1 = d
		case "e3":
			e3 = d
		}
	}
	if e1.ErrorType != "Exception" || e1.ErrorMessage != "boom: e1" || e1.Attempts != 3 || e1.Origin != "dl.in/1/5" || e1.Function != "f" ||
		e1.Value != `{"n":1}` || e1.Key != "k-e1" || e1.Topic != "dl.in.dlq" || e1.Headers["ce_source"] != "butter/dl/x" {
		t.Errorf("e1: %+v", e1)
	}
	if e3.Value != "" || e3.ValueBase64 != "//4=" {
		t.Errorf("e3's binary value: %q / %q", e3.Value, e3.ValueBase64)
	}
	if l, err := e.client.Projects().DeadLetters(ctx, "dl", "g", 1); err != nil || len(l.DeadLetters) != 0 || !slices.Equal(l.Topics, []string{"dl.failed"}) {
		t.Errorf("g's dead letters (its own topic, none yet): %+v %v", l, err)
	}

	got, err := e.client.Projects().Replay(ctx, "dl", "f", api.ReplayRequest{Topic: e1.Topic, Partition: e1.Partition, Offset: e1.Offset})
	if err != nil {
		t.Fatal(err)
	}
	if got.Topic != "dl.in" || got.Partition != 1 || got.From != fmt.Sprintf("dl.in.dlq/%d/%d", e1.Partition, e1.Offset) {
		t.Fatalf("replay: %+v", got)
	}
	rec := readAt(t, e.kcl, got.Topic, got.Partition, got.Offset)
	if string(rec.Value) != `{"n":1}` || string(rec.Key) != "k-e1" || broker.Header(rec, broker.HeaderID) != "e1" || broker.Header(rec, "ce_traceparent") == "" ||
		broker.Header(rec, broker.HeaderReplayedFrom) != got.From {
		t.Errorf("replayed record: %s %s %v", rec.Key, rec.Value, rec.Headers)
	}
	for _, h := range []string{broker.HeaderErrorType, broker.HeaderErrorMessage, broker.HeaderAttempts, broker.HeaderErrorFunction, broker.HeaderOrigin} {
		if broker.Header(rec, h) != "" {
			t.Errorf("the replayed record keeps the dead letter's %s", h)
		}
	}

	e2, e4 := dls[1], dls[3]
	ends := endOffsets(t, e.kcl, "dl.in")
	for _, c := range []struct {
		req  api.ReplayRequest
		code int
		want string
	}{
		{api.ReplayRequest{Topic: e2.Topic, Partition: e2.Partition, Offset: e2.Offset}, 400, `function "g"'s, not "f"'s`},
		{api.ReplayRequest{Topic: "dl.failed", Partition: 0, Offset: 0}, 400, "not a dead-letter topic of function"},
		{api.ReplayRequest{Topic: "dl.in.dlq", Partition: e1.Partition, Offset: 1000}, 404, "no record at offset 1000"},
		{api.ReplayRequest{Topic: e4.Topic, Partition: e4.Partition, Offset: e4.Offset}, 400, "dl.elsewhere, which function \"f\" does not consume"},
	} {
		_, err := e.client.Projects().Replay(ctx, "dl", "f", c.req)
		if api.StatusCode(err) != c.code || !strings.Contains(err.Error(), c.want) {
			t.Errorf("replay %+v: %v; want %d %q", c.req, err, c.code, c.want)
		}
	}
	if after := endOffsets(t, e.kcl, "dl.in"); !maps.Equal(after, ends) {
		t.Errorf("refused replays wrote to dl.in: ends %v → %v", ends, after)
	}
}

// TestKafkaRoutesWithoutKafka: a control plane without brokers answers
// the Kafka routes 503, saying how to give it some.
func TestKafkaRoutesWithoutKafka(t *testing.T) {
	s, client := schedtest.SingleConfig(t, scheduler.Config{})
	job, bundles := schedtest.RevisionJobOf(t, "r1", dlProject, nil)
	_ = s.Apply(fsm.ProjectUpsertType, fsm.Project{Name: "dl", Created: time.Now()})
	_ = s.Apply(fsm.RevisionCreateType, fsm.Revision{Project: "dl", ID: "r1", Job: job, Bundles: bundles, Created: time.Now()})
	_ = s.Apply(fsm.RevisionActivateType, fsm.Activation{Project: "dl", Revision: "r1"})
	_, err := client.Projects().DeadLetters(context.Background(), "dl", "f", 0)
	if api.StatusCode(err) != 503 || !strings.Contains(err.Error(), "-kafka-brokers") {
		t.Errorf("dead letters without Kafka: %v; want 503 naming -kafka-brokers", err)
	}
	if _, err := client.Projects().DeadLetters(context.Background(), "dl", "nope", 0); api.StatusCode(err) != 404 {
		t.Errorf("dead letters of a function the revision lacks: %v; want 404", err)
	}
}

// TestFollowLogs: GET /v1/projects/{name}/logs streams the project's log
// records as server-sent events: those since ?since of ?function (or
// ?invocation), then, with ?follow=true, a line written after the stream
// started.
func TestFollowLogs(t *testing.T) {
	e := newKafkaEnv(t)
	line := func(fn, inv, msg string) *kgo.Record {
		b, _ := json.Marshal(pool.LogRecord{Time: time.Now().UTC(), Level: "info", Function: fn, Stream: "stdout", Invocation: inv, TraceID: "t-" + inv, Message: msg})
		return &kgo.Record{Topic: pool.LogTopic("dl"), Key: []byte(fn), Value: b}
	}
	if _, err := kadm.NewClient(e.kcl).CreateTopic(context.Background(), 1, 1, nil, pool.LogTopic("dl")); err != nil {
		t.Fatal(err)
	}
	e.produce(t, line("f", "i1", "first of f"), line("g", "i2", "g's"), line("f", "i3", "second of f"))
	base := "http://" + e.s.Addr() + "/v1/projects/dl/logs"
	if msgs := sseMessages(t, base+"?function=f", 2, nil); !slices.Equal(msgs, []string{"first of f", "second of f"}) {
		t.Errorf("f's lines: %v", msgs)
	}
	if msgs := sseMessages(t, base+"?invocation=i2", 1, nil); !slices.Equal(msgs, []string{"g's"}) {
		t.Errorf("invocation i2's lines: %v", msgs)
	}
	if msgs := sseMessages(t, base+"?trace=t-i3", 1, nil); !slices.Equal(msgs, []string{"second of f"}) {
		t.Errorf("trace t-i3's lines: %v", msgs)
	}
	msgs := sseMessages(t, base+"?function=f&follow=true&since=1h", 3, func() { e.produce(t, line("g", "i4", "not f"), line("f", "i5", "live")) })
	if !slices.Equal(msgs, []string{"first of f", "second of f", "live"}) {
		t.Errorf("followed: %v", msgs)
	}
}

// sseMessages reads the log events of url until it has n (calling after
// once the stream has started), within 20 s.
func sseMessages(t *testing.T, url string, n int, after func()) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET %s: %s %s", url, resp.Status, resp.Header.Get("Content-Type"))
	}
	var out []string
	sc := bufio.NewScanner(resp.Body)
	for len(out) < n && sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, ": lines of") && after != nil {
			after()
		}
		data, ok := strings.CutPrefix(l, "data: ")
		if !ok {
			continue
		}
		var r pool.LogRecord
		if err := json.Unmarshal([]byte(data), &r); err != nil {
			t.Fatalf("event %q: %v", data, err)
		}
		out = append(out, r.Message)
	}
	if len(out) < n {
		t.Fatalf("GET %s: %d of %d lines (%v): %v", url, len(out), n, out, sc.Err())
	}
	return out
}

func readAt(t *testing.T, cl *kgo.Client, topic string, p int32, o int64) *kgo.Record {
	t.Helper()
	r, ok := tryReadAt(cl, topic, p, o)
	if !ok {
		t.Fatalf("no record at %s/%d/%d", topic, p, o)
	}
	return r
}

func tryReadAt(seed *kgo.Client, topic string, p int32, o int64) (*kgo.Record, bool) {
	ends, err := kadm.NewClient(seed).ListEndOffsets(context.Background(), topic)
	if err != nil {
		return nil, false
	}
	if end, ok := ends.Lookup(topic, p); !ok || end.Offset <= o {
		return nil, false
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seed.OptValue(kgo.SeedBrokers).([]string)...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().At(o)}}))
	if err != nil {
		return nil, false
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		var got *kgo.Record
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if got == nil && r.Offset == o {
				got = r
			}
		})
		if got != nil {
			return got, true
		}
	}
	return nil, false
}

func endOffsets(t *testing.T, cl *kgo.Client, topic string) map[int32]int64 {
	t.Helper()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	for p, o := range ends[topic] {
		out[p] = o.Offset
	}
	return out
}
