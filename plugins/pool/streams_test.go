package pool_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/internal/testlog"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/sdk"
	"github.com/butterfn/butter/sdk/go/proto"
	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// These tests run the real franz-go client over TCP against the embedded
// Kafka-protocol broker (kfake), with real exec functions.

func devBroker(t testing.TB) (*broker.Dev, *kgo.Client) {
	t.Helper()
	dev, err := broker.StartDev(0, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dev.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(dev.Addr), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return dev, cl
}

func topics(t testing.TB, cl *kgo.Client, ts ...broker.Topic) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := broker.EnsureTopics(ctx, kadm.NewClient(cl), ts); err != nil {
		t.Fatal(err)
	}
}

func produce(t *testing.T, cl *kgo.Client, topic string, values ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for _, v := range values {
		recs = append(recs, broker.NewEvent(topic, []byte(v), []byte(v), v, "test", "test"))
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// keyed produces values all under one key, so they share a partition.
func keyed(t *testing.T, cl *kgo.Client, topic, key string, values ...string) {
	t.Helper()
	var recs []*kgo.Record
	for _, v := range values {
		recs = append(recs, broker.NewEvent(topic, []byte(key), []byte(v), v, "test", "test"))
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// readTopic reads a topic from the start until done holds for what was
// read, or d passes; it returns what it read and whether done held.
func readTopic(t *testing.T, addr, topic string, d time.Duration, done func([]*kgo.Record) bool) ([]*kgo.Record, bool) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out []*kgo.Record
	for ctx.Err() == nil && !done(out) {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out, done(out)
}

// readAll reads a topic from the start until want records arrived.
func readAll(t *testing.T, addr, topic string, want int) []*kgo.Record {
	t.Helper()
	out, ok := readTopic(t, addr, topic, 3*time.Minute, func(r []*kgo.Record) bool { return len(r) >= want })
	if !ok {
		t.Fatalf("topic %s: %d records after 60s, want %d", topic, len(out), want)
	}
	return out
}

func values(recs []*kgo.Record) map[string]int {
	m := map[string]int{}
	for _, r := range recs {
		m[string(r.Value)]++
	}
	return m
}

func streamPool(t *testing.T, dev *broker.Dev, fns ...pool.FunctionConfig) *pool.Pool {
	t.Helper()
	p, _ := streamPoolSrv(t, dev, fns...)
	return p
}

func streamPoolSrv(t *testing.T, dev *broker.Dev, fns ...pool.FunctionConfig) (*pool.Pool, *httptest.Server) {
	t.Helper()
	p, srv := start(t, fns)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.StartStreams(ctx, dev.Config()); err != nil {
		t.Fatal(err)
	}
	return p, srv
}

func streamFn(name, offset, in, out string, cmd ...string) pool.FunctionConfig {
	f := fn(name, "exec", cmd...)
	f.Output = out
	f.Streams = []pool.StreamTrigger{{Stream: in, Group: "butter.test." + name + "." + in, Offset: offset}}
	return f
}

func events(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s-%04d", prefix, i))
	}
	return out
}

// waitJoined waits until the function's consumer group is stable with a
// member: from then on, "latest" means after this moment.
func waitJoined(t *testing.T, cl *kgo.Client, group string) {
	t.Helper()
	adm := kadm.NewClient(cl)
	eventually(t, 30*time.Second, "group "+group+" joined", func() bool {
		ds, err := adm.DescribeGroups(context.Background(), group)
		if err != nil {
			return false
		}
		d := ds[group]
		return d.State == "Stable" && len(d.Members) > 0
	})
}

func TestStreamOffsets(t *testing.T) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "t.in", Partitions: 3}, broker.Topic{Name: "t.one", Partitions: 1})
	produce(t, cl, "t.in", events("old", 0, 1000)...)
	keyed(t, cl, "t.one", "k", events("one", 0, 1000)...)

	// first: all 1,000.
	first := streamFn("first", "first", "t.in", "t.out.first", "cat")
	p := streamPool(t, dev, first)
	got := values(readAll(t, dev.Addr, "t.out.first", 1000))
	for _, e := range events("old", 0, 1000) {
		if got[e] == 0 {
			t.Fatalf("offset first missed %s", e)
		}
	}

	// latest: only what comes after the group joined.
	latest := streamFn("latest", "latest", "t.in", "t.out.latest", "cat")
	// a number: offset 990 of the one-partition stream.
	number := streamFn("number", "990", "t.one", "t.out.number", "cat")
	p2 := streamPool(t, dev, latest, number)
	waitJoined(t, cl, "butter.test.latest.t.in")
	// Produce until the latest consumer shows it is reading, then a tail.
	for i := 0; ; i++ {
		produce(t, cl, "t.in", fmt.Sprintf("probe-%04d", i))
		if len(readUpTo(t, dev.Addr, "t.out.latest")) > 0 {
			break
		}
		if i > 200 {
			t.Fatal("the latest consumer never produced")
		}
	}
	produce(t, cl, "t.in", events("new", 0, 10)...)
	out := readAll(t, dev.Addr, "t.out.latest", 10)
	for v := range values(out) {
		if strings.HasPrefix(v, "old-") {
			t.Fatalf("offset latest saw an old event %s", v)
		}
	}
	readUntil(t, dev.Addr, "t.out.latest", func(m map[string]int) bool {
		for _, e := range events("new", 0, 10) {
			if m[e] == 0 {
				return false
			}
		}
		return true
	})
	nums := readAll(t, dev.Addr, "t.out.number", 10)
	for _, r := range nums {
		if string(r.Value) < "one-0990" {
			t.Errorf("offset 990 saw %s", r.Value)
		}
	}
	p2.Close()

	// Redeploy: the same group resumes from its committed offset.
	p.Close()
	produce(t, cl, "t.in", events("after", 0, 5)...)
	streamPool(t, dev, first)
	all := values(readUntil(t, dev.Addr, "t.out.first", func(m map[string]int) bool {
		for _, e := range events("after", 0, 5) {
			if m[e] == 0 {
				return false
			}
		}
		return true
	}))
	for _, e := range events("old", 0, 1000) {
		if all[e] != 1 {
			t.Fatalf("after the redeploy %s was handled %d times; the committed offset must hold", e, all[e])
		}
	}
}

// readUpTo reads what a topic holds now (one bounded round of polls).
func readUpTo(t *testing.T, addr, topic string) []*kgo.Record {
	t.Helper()
	out, _ := readTopic(t, addr, topic, 300*time.Millisecond, func([]*kgo.Record) bool { return false })
	return out
}

// readUntil reads a topic from the start until done holds for the values
// seen, with a deadline.
func readUntil(t *testing.T, addr, topic string, done func(map[string]int) bool) []*kgo.Record {
	t.Helper()
	out, ok := readTopic(t, addr, topic, 3*time.Minute, func(r []*kgo.Record) bool { return done(values(r)) })
	if !ok {
		t.Fatalf("topic %s: condition not met after 60s (%d records)", topic, len(out))
	}
	return out
}

func TestStreamBroadcastAndDeadLetters(t *testing.T) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "b.in", Partitions: 3})
	a := streamFn("a", "first", "b.in", "b.out.a", "cat")
	b := streamFn("b", "first", "b.in", "b.out.b", "tr", "a-z", "A-Z")
	poison := streamFn("poison", "first", "b.in", "b.out.poison", "sh", "-c", `in=$(cat); if [ "$in" = "ev-0010" ]; then echo "cannot digest $in" >&2; exit 3; fi; printf %s "$in"`)
	poison.Retry = &pool.RetryConfig{Attempts: 2, Backoff: "10ms", MaxBackoff: "20ms"}
	streamPool(t, dev, a, b, poison)
	keyed(t, cl, "b.in", "one-key", events("ev", 0, 30)...)

	gotA := readAll(t, dev.Addr, "b.out.a", 30)
	gotB := values(readAll(t, dev.Addr, "b.out.b", 30))
	for _, e := range events("ev", 0, 30) {
		if gotB[strings.ToUpper(e)] == 0 {
			t.Errorf("function b missed %s", e)
		}
	}
	// Order per key is kept, and every output carries an id derived
	// from the event's (docs/events.md, "Ids"), and the event's id.
	for i, r := range gotA[:30] {
		if want := fmt.Sprintf("ev-%04d", i); string(r.Value) != want || broker.Header(r, broker.HeaderID) != want+"/a/output/0" || broker.Header(r, "ce_inputid") != want || string(r.Key) != "one-key" {
			t.Fatalf("output %d = %s (id %s, key %s), want %s in order", i, r.Value, broker.Header(r, broker.HeaderID), r.Key, want)
		}
	}
	// The poison event reaches the dead-letter topic after its attempts,
	// typed; the events after it on its partition flow on.
	dl := readAll(t, dev.Addr, "b.in.dlq", 1)[0]
	if string(dl.Value) != "ev-0010" || broker.Header(dl, broker.HeaderErrorType) != "Exception" || broker.Attempts(dl) != 2 || !strings.Contains(broker.Header(dl, broker.HeaderErrorMessage), "cannot digest") {
		t.Errorf("dead letter = %s type %q attempts %d message %q", dl.Value, broker.Header(dl, broker.HeaderErrorType), broker.Attempts(dl), broker.Header(dl, broker.HeaderErrorMessage))
	}
	// The topic is every consumer of b.in's: the dead letter names its
	// function.
	if fn := broker.Header(dl, broker.HeaderErrorFunction); fn != "poison" {
		t.Errorf("dead letter's %s = %q, want poison", broker.HeaderErrorFunction, fn)
	}
	rest := values(readAll(t, dev.Addr, "b.out.poison", 29))
	if rest["ev-0010"] != 0 || rest["ev-0029"] != 1 {
		t.Errorf("poison function outputs: %v", rest)
	}
}

// TestStreamSplitAcrossPools: three pools running one function share its
// events through one consumer group; with no crash, none is handled twice.
func TestStreamSplitAcrossPools(t *testing.T) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "s.in", Partitions: 6})
	f := streamFn("split", "first", "s.in", "s.out", "cat")
	for range 3 {
		streamPool(t, dev, f)
	}
	waitJoined(t, cl, "butter.test.split.s.in")
	produce(t, cl, "s.in", events("ev", 0, 600)...)
	got := values(readAll(t, dev.Addr, "s.out", 600))
	for _, e := range events("ev", 0, 600) {
		if got[e] != 1 {
			t.Errorf("%s handled %d times", e, got[e])
		}
	}
	ds, err := kadm.NewClient(cl).DescribeGroups(context.Background(), "butter.test.split.s.in")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ds["butter.test.split.s.in"].Members); n != 3 {
		t.Errorf("the group has %d members, want 3 (one per pool)", n)
	}
}

// TestStreamRebalanceUnderLoad: a second pool joins while the first works
// through a stream in batches, its commits behind its polls: across the
// rebalance, with no crash, every event is handled exactly once (none
// lost, none twice), and the second pool takes its share.
//
// Nothing here depends on how fast the machine is: the second pool joins
// once the first has handled events of every partition (so partitions it
// worked on move, and their committed offsets are what keeps them from
// being handled twice); events keep coming until the group has settled
// with both pools, so the first is at work during the rebalance; then one
// event goes to each partition, so the second pool has events to handle
// on the partitions it took, however fast the first was with the rest.
func TestStreamRebalanceUnderLoad(t *testing.T) {
	const partitions = 6
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "r.in", Partitions: partitions})
	vals := events("tick", 0, 3000)
	produce(t, cl, "r.in", vals...)
	f := streamFn("rebal", "first", "r.in", "r.out")
	f.Runtime, f.Command = "go", nil
	f.MaxInstances, f.Concurrency = 1, 6
	_, srv1 := streamPoolSrv(t, dev, f)

	stop := make(chan struct{})
	more := make(chan []string, 1)
	go func() {
		// A batch every 20ms paces the load; it is no wait: the test
		// waits on conditions.
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		var sent []string
		defer func() { more <- sent }()
		for i := 0; ; i++ {
			batch := events(fmt.Sprintf("tick-m%04d", i), 0, 10)
			var recs []*kgo.Record
			for _, v := range batch {
				recs = append(recs, broker.NewEvent("r.in", []byte(v), []byte(v), v, "test", "test"))
			}
			if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				t.Errorf("produce: %v", err)
				return
			}
			sent = append(sent, batch...)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	stopped := false
	defer func() {
		if !stopped {
			close(stop)
			<-more
		}
	}()

	// The partition of an event, as the producer chose it (by its key).
	part := kgo.StickyKeyPartitioner(nil).ForTopic("r.in")
	_, ok := readTopic(t, dev.Addr, "r.out", 3*time.Minute, func(recs []*kgo.Record) bool {
		seen := map[int]bool{}
		for _, r := range recs {
			seen[part.Partition(&kgo.Record{Key: r.Key}, partitions)] = true
		}
		return len(seen) == partitions
	})
	if !ok {
		t.Fatal("the first pool handled no events of some partition after 60s")
	}
	_, srv2 := streamPoolSrv(t, dev, f)
	waitSettled(t, cl, "butter.test.rebal.r.in", 2)
	close(stop)
	stopped = true
	vals = append(vals, <-more...)
	var settled []string
	for seen, i := map[int]bool{}, 0; len(seen) < partitions; i++ {
		v := fmt.Sprintf("tick-s%04d", i)
		if p := part.Partition(&kgo.Record{Key: []byte(v)}, partitions); !seen[p] {
			seen[p] = true
			settled = append(settled, v)
		}
	}
	produce(t, cl, "r.in", settled...)
	vals = append(vals, settled...)

	got := values(readAll(t, dev.Addr, "r.out", len(vals)))
	twice := 0
	for _, v := range vals {
		switch n := got[strings.ToUpper(v)]; {
		case n == 0:
			t.Errorf("%s was not handled", v)
		case n > 1:
			twice++
		}
	}
	if twice > 0 {
		t.Errorf("%d events handled more than once", twice)
	}
	one := metricOf(t, srv1, "butter_invocations_total", "rebal", `outcome="ok"`)
	two := metricOf(t, srv2, "butter_invocations_total", "rebal", `outcome="ok"`)
	if two == 0 || one >= float64(len(vals)) {
		t.Errorf("the pools handled %v and %v of %d events: the second took no share", one, two, len(vals))
	}
}

// waitSettled waits until the consumer group is stable with n members,
// each assigned partitions.
func waitSettled(t *testing.T, cl *kgo.Client, group string, n int) {
	t.Helper()
	adm := kadm.NewClient(cl)
	eventually(t, 3*time.Minute, fmt.Sprintf("group %s settled with %d members", group, n), func() bool {
		ds, err := adm.DescribeGroups(context.Background(), group)
		if err != nil {
			return false
		}
		d := ds[group]
		if d.State != "Stable" || len(d.Members) != n {
			return false
		}
		for _, m := range d.Members {
			c, ok := m.Assigned.AsConsumer()
			if !ok || len(c.Topics) == 0 || len(c.Topics[0].Partitions) == 0 {
				return false
			}
		}
		return true
	})
}

// TestRequestResponse: a reply within the deadline is returned; a function
// slower than the deadline gives the caller Timeout, and its late reply is
// dropped and counted.
func TestRequestResponse(t *testing.T) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "rr.fast", Partitions: 1}, broker.Topic{Name: "rr.slow", Partitions: 1})
	fast := streamFn("fast", "first", "rr.fast", "", "tr", "a-z", "A-Z")
	// slow replies only once the test creates the gate, after the
	// caller's 300ms deadline has ended its call: the reply cannot beat
	// the deadline however busy the machine is.
	gate := filepath.Join(t.TempDir(), "gate")
	slow := streamFn("slow", "first", "rr.slow", "", "sh", "-c", "while [ ! -e "+gate+" ]; do sleep 0.05; done; cat")
	slow.Timeout = "2m"
	streamPool(t, dev, fast, slow)
	t.Cleanup(func() { openGate(t, gate) }) // before the pool stops, if the test fails
	ctx := context.Background()
	req, err := broker.NewRequester(ctx, dev.Config(), "rr.replies.test")
	if err != nil {
		t.Fatal(err)
	}
	defer req.Close()
	got, err := req.Call(ctx, "rr.fast", nil, []byte("hello"), time.Now().Add(20*time.Second))
	if err != nil || string(got) != "HELLO" {
		t.Fatalf("fast call: %q %v", got, err)
	}
	// The caller's context outlives the deadline by far: a call that
	// ignored its deadline would end with the context.
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	_, err = req.Call(cctx, "rr.slow", nil, []byte("x"), time.Now().Add(300*time.Millisecond))
	var pe *proto.Error
	if !errors.As(err, &pe) || pe.Type != proto.Timeout {
		t.Fatalf("slow call: %v, want a Timeout", err)
	}
	if cctx.Err() != nil {
		t.Fatal("the slow call ended with the caller's context, a minute on, not at its 300ms deadline")
	}
	openGate(t, gate)
	eventually(t, 60*time.Second, "the late reply counted", func() bool { return req.Late() == 1 })
}

// TestStreamEmits: a Node function emits to another stream through the
// worker protocol; the emit is acknowledged before the event is committed.
func TestStreamEmits(t *testing.T) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "e.in", Partitions: 2}, broker.Topic{Name: "e.alerts", Partitions: 1})
	sdks, err := sdk.Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("testdata/emitfn")
	f := streamFn("emitter", "first", "e.in", "e.out")
	f.Runtime, f.Bundle, f.Handler, f.Command = "node", abs, "index.handle", nil
	f.Emits = []string{"e.alerts"}
	p, err := pool.New(&pool.Config{Project: "e", Pool: "p", Functions: []pool.FunctionConfig{f}}, nil, pool.WithSDKs(sdks))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if err := p.StartStreams(ctx, dev.Config()); err != nil {
		t.Fatal(err)
	}
	produce(t, cl, "e.in", events("ev", 0, 20)...)
	alerts := values(readAll(t, dev.Addr, "e.alerts", 20))
	for _, e := range events("ev", 0, 20) {
		if alerts["alert:"+e] != 1 {
			t.Errorf("alert for %s seen %d times", e, alerts["alert:"+e])
		}
	}
	if out := values(readAll(t, dev.Addr, "e.out", 20)); len(out) != 20 {
		t.Errorf("outputs = %d, want 20", len(out))
	}
}

// TestStreamOrderByKey: with order = "key", events of different keys in one
// partition run in parallel, and each key keeps its order.
func TestStreamOrderByKey(t *testing.T) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "k.in", Partitions: 1})
	f := streamFn("bykey", "first", "k.in", "k.out", "sh", "-c", "sleep 0.2; cat")
	f.MaxInstances = 8
	f.Streams[0].Order = "key"
	_, srv := streamPoolSrv(t, dev, f)
	var recs []*kgo.Record
	for i := range 40 {
		v := fmt.Sprintf("k%d-%02d", i%8, i/8)
		recs = append(recs, broker.NewEvent("k.in", []byte(fmt.Sprintf("k%d", i%8)), []byte(v), v, "test", "test"))
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	out := readAll(t, dev.Addr, "k.out", 40)
	last := map[string]string{}
	for _, r := range out {
		k := string(r.Key)
		if v := string(r.Value); v < last[k] {
			t.Fatalf("key %s: %s after %s", k, v, last[k])
		} else {
			last[k] = v
		}
	}
	// Keys ran side by side: with concurrency 1 per instance, more than
	// one instance had to start.
	if n := metric(t, srv, "butter_cold_starts_total", "bykey"); n < 2 {
		t.Errorf("only %v instances started: keys did not run in parallel", n)
	}
}

// TestStreamTopicsFromStreamBlocks: the pool creates a missing topic as its
// stream block declares it; one no block declares gets the defaults.
func TestStreamTopicsFromStreamBlocks(t *testing.T) {
	dev, cl := devBroker(t)
	f := streamFn("t", "first", "d.in", "d.out", "cat")
	p, err := pool.New(&pool.Config{Project: "d", Pool: "p", Functions: []pool.FunctionConfig{f},
		Topics: []pool.TopicConfig{{Name: "d.in", Partitions: 5, Retention: "168h"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if err := p.StartStreams(ctx, dev.Config()); err != nil {
		t.Fatal(err)
	}
	details, err := kadm.NewClient(cl).ListTopics(ctx, "d.in", "d.out", "d.in.dlq")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{"d.in": 5, "d.out": 3, "d.in.dlq": 1} {
		if got := len(details[name].Partitions); got != want {
			t.Errorf("topic %s has %d partitions, want %d", name, got, want)
		}
	}
}

// TestHTTPEmits: a function called over HTTP emits to a stream; the event
// is in Kafka, keyed as the function said, before the caller's answer.
func TestHTTPEmits(t *testing.T) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "h.alerts", Partitions: 1})
	sdks, err := sdk.Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("testdata/emitfn")
	f := fn("emitter", "node")
	f.Bundle, f.Handler = abs, "index.handle"
	f.Emits = []string{"h.alerts"}
	p, err := pool.New(&pool.Config{Project: "h", Pool: "p", Functions: []pool.FunctionConfig{f}}, nil, pool.WithSDKs(sdks))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	srv := httptest.NewServer(p.Handler())
	defer srv.Close()
	// Without Kafka, an emit fails the call with a clear error.
	if a := invoke(t, srv, "emitter", strings.NewReader("first"), nil); a.code == 200 || !strings.Contains(a.body, "no Kafka") {
		t.Fatalf("emit without Kafka: %+v", a)
	}
	if err := p.StartStreams(ctx, dev.Config()); err != nil {
		t.Fatal(err)
	}
	if a := invoke(t, srv, "emitter", strings.NewReader("second"), nil); a.code != 200 {
		t.Fatalf("emit: %+v", a)
	}
	// Acknowledged before the answer: the record is there (the deadline
	// only bounds a new consumer's join on a busy machine).
	recs, ok := readTopic(t, dev.Addr, "h.alerts", 30*time.Second, func(r []*kgo.Record) bool { return len(r) >= 1 })
	if !ok || string(recs[0].Value) != "alert:second" || string(recs[0].Key) != "alerts-key" {
		t.Fatalf("h.alerts = %v", recs)
	}
}

// TestStreamOrderedBatches: a Go function's events of a partition go to
// its worker in batches (protocol 2); the outputs keep the partition's order,
// and an event that fails in a batch (a worker that exits, then a
// PreconditionFailed) is retried and dead-lettered exactly as one at a
// time: as many attempts, no more (one for a PreconditionFailed, which is
// never retried), and the events after it handled in order.
func TestStreamOrderedBatches(t *testing.T) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "o.in", Partitions: 1})
	var vals []string
	for i := range 300 {
		v := fmt.Sprintf("ev-%04d", i)
		// "exit" comes first: the events after a failure in a batch run
		// one at a time, so "exit" after "fail" ran in a batch only when
		// the batches were small (the first event's time, which sets
		// their size, once held the Go function's build).
		switch i {
		case 90:
			v = "exit"
		case 200:
			v = "fail"
		}
		vals = append(vals, v)
	}
	keyed(t, cl, "o.in", "k", vals...)
	f := streamFn("ordered", "first", "o.in", "o.out")
	f.Runtime, f.Command = "go", nil
	f.MaxInstances = 1
	f.Retry = &pool.RetryConfig{Attempts: 2, Backoff: "10ms", MaxBackoff: "20ms"}
	_, srv := streamPoolSrv(t, dev, f)

	outputsInOrder(t, dev.Addr, "o.out", vals, "fail", "exit")
	dls := readAll(t, dev.Addr, "o.in.dlq", 2)
	for i, w := range []struct {
		value, typ string
		attempts   int
	}{{"exit", "InstanceFailed", 2}, {"fail", "PreconditionFailed", 1}} {
		dl := dls[i]
		if string(dl.Value) != w.value || broker.Header(dl, broker.HeaderErrorType) != w.typ || broker.Attempts(dl) != w.attempts {
			t.Errorf("dead letter %d = %s type %q attempts %d, want %s %s after %d", i, dl.Value, broker.Header(dl, broker.HeaderErrorType), broker.Attempts(dl), w.value, w.typ, w.attempts)
		}
	}
	if n := metric(t, srv, "butter_ordered_batches_total", "ordered"); n < 2 {
		t.Errorf("%v ordered batches: the events went one at a time", n)
	}
	// The PreconditionFailed ran once, in a batch, and was not retried,
	// and every other event succeeded once. The worker's exit in a batch
	// is not pinned on an event (the RESULTs it had not written are lost
	// with it), so "exit" failed 3 times or more: the calls that reach the
	// dead instance before the pool has replaced it fail too, as they do
	// one at a time.
	eventually(t, 30*time.Second, "every call counted", func() bool {
		return metricOf(t, srv, "butter_invocations_total", "ordered", `outcome="ok"`) >= 298
	})
	ok := metricOf(t, srv, "butter_invocations_total", "ordered", `outcome="ok"`)
	if pf, inst := metricOf(t, srv, "butter_invocation_errors_total", "ordered", `type="PreconditionFailed"`), metricOf(t, srv, "butter_invocation_errors_total", "ordered", `type="InstanceFailed"`); ok != 298 || pf != 1 || inst < 3 {
		t.Errorf("%v calls succeeded, %v failed as PreconditionFailed and %v as InstanceFailed, want 298, 1 and at least 3", ok, pf, inst)
	}
	// The two dead letters, by type; the partition's lag, read to its end
	// at the last poll; and the process's own metrics beside them.
	if il, pf := metricOf(t, srv, "butter_dead_letters_total", "ordered", `type="InstanceFailed"`), metricOf(t, srv, "butter_dead_letters_total", "ordered", `type="PreconditionFailed"`); il != 1 || pf != 1 {
		t.Errorf("butter_dead_letters_total: %v InstanceFailed and %v PreconditionFailed, want 1 and 1", il, pf)
	}
	eventually(t, 30*time.Second, "the lag of o.in/0 read to its end", func() bool {
		v, ok := scrape(t, srv, "butter_consumer_lag", `function="ordered"`, `partition="0"`, `stream="o.in"`)
		return ok && v == 0
	})
	if v, ok := series(t, srv, "go_goroutines"); !ok || v <= 0 {
		t.Errorf("go_goroutines = %v (%v): the Go collector is not registered", v, ok)
	}
	if _, ok := series(t, srv, "process_resident_memory_bytes"); !ok {
		t.Error("process_resident_memory_bytes missing: the process collector is not registered")
	}
}

// series reads the value of a series without labels from srv's /metrics,
// and whether it is there.
func series(t *testing.T, srv *httptest.Server, name string) (float64, bool) {
	t.Helper()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.Fields(v)[0], 64)
			return f, err == nil
		}
	}
	return 0, false
}

// TestStreamBatchesNodePython: Node and Python workers speak protocol 2
// too: a function's events go in batches, the outputs keep the
// partition's order, and a failure is dead-lettered as one at a time (a
// PreconditionFailed after one attempt: it is never retried).
func TestStreamBatchesNodePython(t *testing.T) {
	dev, cl := devBroker(t)
	for _, c := range []struct{ runtime, dir, handler string }{{"node", "nodefn", "index.handle"}, {"python", "pyfn", "main.handle"}} {
		t.Run(c.runtime, func(t *testing.T) {
			in, out, name := c.runtime+".in", c.runtime+".out", c.runtime+"batch"
			topics(t, cl, broker.Topic{Name: in, Partitions: 1})
			vals := events("ev", 0, 200)
			vals[70] = "fail"
			keyed(t, cl, in, "k", vals...)
			f := testdataFn(name, c.runtime, c.dir, c.handler)
			f.Output = out
			f.Streams = []pool.StreamTrigger{{Stream: in, Group: "butter.test." + name + "." + in, Offset: "first"}}
			f.MaxInstances = 1
			f.Retry = &pool.RetryConfig{Attempts: 2, Backoff: "10ms", MaxBackoff: "20ms"}
			_, srv := sdkPool(t, dev, f)

			outputsInOrder(t, dev.Addr, out, vals, "fail")
			dl := readAll(t, dev.Addr, in+".dlq", 1)[0]
			if string(dl.Value) != "fail" || broker.Header(dl, broker.HeaderErrorType) != "PreconditionFailed" || broker.Attempts(dl) != 1 {
				t.Errorf("dead letter = %s type %q attempts %d, want fail PreconditionFailed after 1 (never retried)", dl.Value, broker.Header(dl, broker.HeaderErrorType), broker.Attempts(dl))
			}
			if n := metric(t, srv, "butter_ordered_batches_total", name); n < 2 {
				t.Errorf("%v batches: the events went one at a time", n)
			}
		})
	}
}

// outputsInOrder reads topic until it holds the outputs of vals, but for
// those in skip, and fails unless they are vals upper-cased, in order.
func outputsInOrder(t *testing.T, addr, topic string, vals []string, skip ...string) {
	t.Helper()
	var want []string
	for _, v := range vals {
		if !slices.Contains(skip, v) {
			want = append(want, strings.ToUpper(v))
		}
	}
	for i, r := range readAll(t, addr, topic, len(want))[:len(want)] {
		if string(r.Value) != want[i] {
			t.Fatalf("output %d = %s, want %s: the order was not kept", i, r.Value, want[i])
		}
	}
}

// metricOf is metric for the series with the label sel, too.
func metricOf(t *testing.T, srv *httptest.Server, name, function, sel string) float64 {
	t.Helper()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+"{") && strings.Contains(line, `function="`+function+`"`) && strings.Contains(line, sel) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			return v
		}
	}
	return 0
}

// TestStreamOrderedBatchTimeout: an event that outlasts the timeout in a
// batch (its handler ignores its deadline) times out, its worker
// is killed as hung, and it is retried and dead-lettered as Timeout after
// its attempts; the events after it are handled in order.
func TestStreamOrderedBatchTimeout(t *testing.T) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "ot.in", Partitions: 1})
	vals := events("ev", 0, 40)
	vals[20] = "hang"
	keyed(t, cl, "ot.in", "k", vals...)
	f := streamFn("orderedto", "first", "ot.in", "ot.out")
	f.Runtime, f.Command = "go", nil
	f.MaxInstances, f.Timeout = 1, "1s"
	// Built at Start (its context has minutes), not in the first event's
	// 1s: go build takes longer than that on a busy machine.
	f.MinInstances = 1
	f.Retry = &pool.RetryConfig{Attempts: 2, Backoff: "10ms", MaxBackoff: "20ms"}
	_, srv := streamPoolSrv(t, dev, f)

	outputsInOrder(t, dev.Addr, "ot.out", vals, "hang")
	dl := readAll(t, dev.Addr, "ot.in.dlq", 1)[0]
	if string(dl.Value) != "hang" || broker.Header(dl, broker.HeaderErrorType) != "Timeout" || broker.Attempts(dl) != 2 {
		t.Errorf("dead letter = %s type %q attempts %d, want hang Timeout after 2", dl.Value, broker.Header(dl, broker.HeaderErrorType), broker.Attempts(dl))
	}
	if n := metric(t, srv, "butter_ordered_batches_total", "orderedto"); n < 1 {
		t.Errorf("%v ordered batches", n)
	}
	if n := metricOf(t, srv, "butter_invocation_errors_total", "orderedto", `type="Timeout"`); n != 2 {
		t.Errorf("%v calls timed out, want 2 (the attempts of hang)", n)
		resp, _ := http.Get(srv.URL + "/metrics")
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "orderedto") && !strings.Contains(l, "bucket") {
				t.Log(l)
			}
		}
	}
}

// TestStreamStopDuringBackoff: a pool stopped while an event waits out
// its retry backoff returns at once, instead of sleeping the backoff out
// (30s here, far longer than the stop takes on a loaded machine). The
// event's attempts are cut short, not exhausted: it is neither
// dead-lettered nor committed, so the group's next member handles it.
func TestStreamStopDuringBackoff(t *testing.T) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "bo.in", Partitions: 1})
	failing := streamFn("bo", "first", "bo.in", "bo.out", "sh", "-c", "cat >/dev/null; exit 3")
	failing.Retry = &pool.RetryConfig{Attempts: 3, Backoff: "30s", MaxBackoff: "30s"}
	p, srv := streamPoolSrv(t, dev, failing)
	produce(t, cl, "bo.in", "ev-0")
	// The first attempt failed: the consumer is in its 30s backoff.
	eventually(t, 60*time.Second, "first attempt failed", func() bool {
		return metricOf(t, srv, "butter_invocations_total", "bo", `outcome="error"`) >= 1
	})
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		p.Close()
	}()
	select {
	case <-closed:
	case <-time.After(25 * time.Second):
		t.Fatal("Close still waits after 25s: it sleeps out the retry backoff")
	}
	if n := metricOf(t, srv, "butter_invocations_total", "bo", `outcome="error"`); n != 1 {
		t.Errorf("%v failed attempts, want 1: the stop cut the retries short", n)
	}

	// The next member of the group handles the event: it was not
	// committed (nor dead-lettered).
	working := streamFn("bo", "first", "bo.in", "bo.out", "cat")
	streamPool(t, dev, working)
	if got := readAll(t, dev.Addr, "bo.out", 1); string(got[0].Value) != "ev-0" {
		t.Errorf("output %q, want ev-0", got[0].Value)
	}
}

// kafkaCluster starts an embedded broker (kfake, over TCP) with opts, for
// tests that need a broker configured otherwise than broker.StartDev's.
func kafkaCluster(t *testing.T, opts ...kfake.Opt) (*kfake.Cluster, broker.Config) {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.Ports(0), kfake.DefaultNumPartitions(3)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, broker.Config{Brokers: c.ListenAddrs()}
}

// TestStreamSessionTimeoutOutsideBrokerLimits: a pool whose session
// timeout (10s, the default) is below the broker's minimum (raised to 20s
// here) fails to start its streams, saying the broker's limits, instead
// of starting consumers that can never join their groups. One within the
// limits starts. (The minimum is a broker config: kfake's
// GroupMinSessionTimeout option applies at join but does not show in
// DescribeConfigs, as a real broker's setting does.)
func TestStreamSessionTimeoutOutsideBrokerLimits(t *testing.T) {
	_, kafka := kafkaCluster(t, kfake.BrokerConfigs(map[string]string{"group.min.session.timeout.ms": "20000"}))
	f := streamFn("st", "first", "st.in", "st.out", "cat")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	p, _ := start(t, []pool.FunctionConfig{f})
	err := p.StartStreams(ctx, kafka)
	if err == nil {
		t.Fatal("streams started with a 10s session timeout against a broker whose minimum is 20s")
	}
	for _, want := range []string{"10s", "20s", "5m0s", f.Streams[0].Group} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %s", err, want)
		}
	}

	p, _ = start(t, []pool.FunctionConfig{f}, pool.WithSessionTimeout(25*time.Second))
	if err := p.StartStreams(ctx, kafka); err != nil {
		t.Fatalf("a 25s session timeout, within the broker's [20s, 5m]: %v", err)
	}
}

// TestStreamSessionTimeoutRefusedAtJoin: where the broker's limits cannot
// be read (DescribeConfigs refused, as an ACL would), the consumer whose
// session timeout (3s) is below the broker's minimum (6s, kfake's and
// Kafka's default) stops when its group refuses it, with one error naming
// its timeout, instead of warning on every fetch forever.
func TestStreamSessionTimeoutRefusedAtJoin(t *testing.T) {
	c, kafka := kafkaCluster(t)
	c.ControlKey(int16(kmsg.DescribeConfigs), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		dreq := req.(*kmsg.DescribeConfigsRequest)
		resp := dreq.ResponseKind().(*kmsg.DescribeConfigsResponse)
		for _, r := range dreq.Resources {
			rr := kmsg.NewDescribeConfigsResponseResource()
			rr.ResourceType, rr.ResourceName = r.ResourceType, r.ResourceName
			rr.ErrorCode = kerr.ClusterAuthorizationFailed.Code
			resp.Resources = append(resp.Resources, rr)
		}
		return resp, nil, true
	})
	logs := &testlog.Buffer{}
	log := hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info})
	f := streamFn("sj", "first", "sj.in", "sj.out", "cat")
	p, _ := start(t, []pool.FunctionConfig{f}, pool.WithSessionTimeout(3*time.Second), pool.WithLogger(log))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.StartStreams(ctx, kafka); err != nil {
		t.Fatalf("streams: %v (the broker's limits cannot be read: the consumer finds out at join)", err)
	}
	eventually(t, 60*time.Second, "an error saying the group refused the session timeout", func() bool {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "[ERROR]") && strings.Contains(l, "session timeout 3s") && strings.Contains(l, f.Streams[0].Group) {
				return true
			}
		}
		return false
	})
	if n := strings.Count(logs.String(), "fetch failed"); n > 0 {
		t.Errorf("%d 'fetch failed' warnings before the error", n)
	}
}
