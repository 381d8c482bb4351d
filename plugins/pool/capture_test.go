package pool_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/pipeline"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/sdk"
	"github.com/butterfn/butter/sdk/go/proto"
)

// capturePool starts a pool of project "st" without Kafka, with capture
// if it is not nil, serving HTTP.
func capturePool(t *testing.T, capture *pool.Capture, fns ...pool.FunctionConfig) (*pool.Pool, *httptest.Server) {
	t.Helper()
	sdks, err := sdk.Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var opts []pool.Option
	if capture != nil {
		opts = append(opts, pool.WithCapture(capture))
	}
	p, err := pool.New(&pool.Config{Project: "st", Pool: "p", Functions: fns}, nil, append(opts, pool.WithSDKs(sdks))...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(func() {
		srv.Close()
		p.Close()
	})
	return p, srv
}

// TestCaptureHTTPEmits: with a Capture, an HTTP call's emit is kept in
// memory, built as the pool builds it for Kafka (topic, key, CloudEvents
// headers, id from the request id), and the function's emit succeeds; an
// emit to a stream the function may not emit to is refused as without
// capture, and nothing is kept. Without a capture and without Kafka, the
// emit fails saying so. A real Node worker.
func TestCaptureHTTPEmits(t *testing.T) {
	f := testdataFn("emitter", "node", "emitto", "index.handle")
	f.Output = "st.out"
	f.Emits = []string{"st.alerts"}
	capture := pool.NewCapture("st")
	_, srv := capturePool(t, capture, f)

	a := invoke(t, srv, "emitter", strings.NewReader("alerts"), map[string]string{"X-Request-Id": "req-1"})
	if a.code != 200 || a.body != "accepted alerts" {
		t.Fatalf("emit to alerts: %+v, want it accepted", a)
	}
	a = invoke(t, srv, "emitter", strings.NewReader("other"), nil)
	if a.code != 200 || !strings.Contains(a.body, `refused: unknown stream "other": function emitter may emit only to its output and emits streams: alerts, out`) {
		t.Errorf("emit to other: %+v, want it refused as unknown", a)
	}
	got := capture.Records()
	if len(got) != 1 {
		t.Fatalf("captured %d records, want the emit to alerts alone: %+v", len(got), got)
	}
	c := got[0]
	r := c.Record
	if c.Kind != pool.CapturedEmit || c.Function != "emitter" || c.Stream != "alerts" || r.Topic != "st.alerts" || string(r.Key) != "k" || string(r.Value) != "node emitted to alerts" {
		t.Errorf("captured %+v (topic %s, key %q, value %q)", c, r.Topic, r.Key, r.Value)
	}
	for h, want := range map[string]string{broker.HeaderID: "req-1/emitter/emit/0", "ce_inputid": "req-1", broker.HeaderSource: "butter/st/emitter", broker.HeaderType: "butter.emit", broker.HeaderSpecVersion: "1.0"} {
		if v := broker.Header(r, h); v != want {
			t.Errorf("header %s = %q, want %q", h, v, want)
		}
	}
	if broker.Header(r, broker.HeaderTime) == "" {
		t.Errorf("no %s header", broker.HeaderTime)
	}

	// The same function, in a pool without capture or Kafka.
	_, bare := capturePool(t, nil, f)
	if a := invoke(t, bare, "emitter", strings.NewReader("alerts"), nil); a.code != 200 || !strings.Contains(a.body, "refused: this pool has no Kafka to emit to") {
		t.Errorf("without capture or Kafka: %+v, want the emit refused for want of Kafka", a)
	}
}

// TestCapturePipeline: RunPipelineAs captures each step's emits, the
// output of a function with an output stream (keyed with the pipeline's
// key; an empty output is no record, and a function without an output
// stream has none), and, at the end, the state of its functions with
// state, the pipeline's key selecting it when the input has no key
// field. Real Node and Python workers.
func TestCapturePipeline(t *testing.T) {
	emitter := testdataFn("emitter", "node", "emitto", "index.handle")
	emitter.Output = "st.out"
	emitter.Emits = []string{"st.alerts"}
	counter := testdataFn("counter", "python", "statefn", "counter.handle")
	counter.State = &pool.StateConfig{Key: "device"}
	counter.Output = "st.counts"
	silent := testdataFn("silent", "node", "emitto", "index.handle") // no output stream
	capture := pool.NewCapture("st")
	p, _ := capturePool(t, capture, emitter, counter, silent)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run := func(expr, key, in string) string {
		t.Helper()
		steps, err := pipeline.Parse(expr)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := p.RunPipelineAs(ctx, steps, pool.Event{Key: key}, strings.NewReader(in), &out); err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		return out.String()
	}
	type rec struct{ kind, fn, stream, topic, key, value, typ string }
	check := func(from int, want ...rec) {
		t.Helper()
		got := capture.Records()[from:]
		if len(got) != len(want) {
			t.Fatalf("captured %d records, want %d: %+v", len(got), len(want), got)
		}
		for i, w := range want {
			c := got[i]
			g := rec{c.Kind, c.Function, c.Stream, c.Record.Topic, string(c.Record.Key), string(c.Record.Value), broker.Header(c.Record, broker.HeaderType)}
			if g != w {
				t.Errorf("record %d: %+v, want %+v", i, g, w)
			}
		}
	}

	if out := run("emitter", "K", "alerts"); out != "accepted alerts" {
		t.Fatalf("emitter answered %q", out)
	}
	check(0,
		rec{pool.CapturedEmit, "emitter", "alerts", "st.alerts", "k", "node emitted to alerts", "butter.emit"},
		rec{pool.CapturedOutput, "emitter", "out", "st.out", "K", "accepted alerts", "butter.output"},
	)
	out := capture.Records()[1].Record
	// The ids derive from the call's, as on the platform (docs/events.md,
	// "Ids"): <call id>/<function>/output/0 and .../emit/0.
	outID, emitID := broker.Header(out, broker.HeaderID), broker.Header(capture.Records()[0].Record, broker.HeaderID)
	if call, ok := strings.CutSuffix(outID, "/emitter/output/0"); !ok || call == "" || emitID != call+"/emitter/emit/0" {
		t.Errorf("output id %q, emit id %q: want <call id>/emitter/output/0 and <call id>/emitter/emit/0", outID, emitID)
	}

	// silent emits, but has no output stream: no output record.
	if out := run("silent", "", "alerts"); !strings.HasPrefix(out, "refused: ") {
		t.Fatalf("silent answered %q, want its emit refused", out)
	}
	check(2)

	// Key from the input's device field; the pipeline's key is the next
	// step's, whose input (the first's answer) has a device field too.
	if out := run("counter | counter", "", `{"device":"d1","seq":1}`); out != `{"device": "d1", "seq": 1, "count": 2}` {
		t.Fatalf("counter | counter answered %q", out)
	}
	check(2,
		rec{pool.CapturedOutput, "counter", "counts", "st.counts", "", `{"device": "d1", "seq": 1, "count": 1}`, "butter.output"},
		rec{pool.CapturedOutput, "counter", "counts", "st.counts", "", `{"device": "d1", "seq": 1, "count": 2}`, "butter.output"},
		rec{pool.CapturedState, "counter", "", pool.StateTopic("st", "counter"), "d1", `{"count": 2}`, ""},
	)
}

// TestPipelineStateRefusedWithKafka: a pool whose state is in a changelog
// refuses a pipeline's given state, naming the topic, and runs nothing.
func TestPipelineStateRefusedWithKafka(t *testing.T) {
	dev, _ := devBroker(t)
	counter := testdataFn("counter", "python", "statefn", "counter.handle")
	counter.State = &pool.StateConfig{Key: "device"}
	p, _ := sdkPool(t, dev, counter)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := p.RunPipelineAs(ctx, []pipeline.Step{{Function: "counter"}}, pool.Event{State: map[string][]byte{"d1": []byte(`{"count":1}`)}},
		strings.NewReader(`{"device":"d1","seq":1}`), &out)
	if err == nil || !strings.Contains(err.Error(), pool.StateTopic("st", "counter")) || out.Len() != 0 {
		t.Errorf("RunPipelineAs with a state, on a pool with Kafka: %v, output %q; want it refused naming the changelog, nothing run", err, out.String())
	}
}

// TestCaptureOutputSchema: a captured output is checked against its
// stream's schema, as a stream function's output is: one that fails is a
// PostconditionFailed and is not captured; one that passes is.
func TestCaptureOutputSchema(t *testing.T) {
	dir := t.TempDir()
	f := fn("relay", "exec", "cat")
	f.Bundle, _ = filepath.Abs("testdata/gofn")
	f.Output = "so.out"
	cfg := &pool.Config{Project: "so", Pool: "p", Functions: []pool.FunctionConfig{f},
		Topics: []pool.TopicConfig{{Name: "so.out", Partitions: 1, Schema: writeSchema(t, dir, "reading.json", `{"type": "object", "required": ["v"]}`)}}}
	capture := pool.NewCapture("so")
	p, err := pool.New(cfg, nil, pool.WithCapture(capture))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	steps := []pipeline.Step{{Function: "relay"}}
	err = p.RunPipelineAs(ctx, steps, pool.Event{}, strings.NewReader(`{"w": 2}`), io.Discard)
	var se *pool.SchemaError
	if !errors.As(err, &se) || se.Type != proto.PostconditionFailed || !strings.Contains(err.Error(), "so.out") {
		t.Errorf("an output failing so.out's schema: %v, want a PostconditionFailed naming the stream", err)
	}
	if got := capture.Records(); len(got) != 0 {
		t.Errorf("captured %d records of a failed output", len(got))
	}
	if err := p.RunPipelineAs(ctx, steps, pool.Event{}, strings.NewReader(`{"v": 1}`), io.Discard); err != nil {
		t.Fatal(err)
	}
	if got := capture.Records(); len(got) != 1 || string(got[0].Record.Value) != `{"v": 1}` || got[0].Stream != "out" {
		t.Errorf("captured %+v, want the output {\"v\": 1} to out", got)
	}
}
