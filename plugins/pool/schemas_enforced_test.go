package pool_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/sdk"
)

// writeSchema writes a JSON Schema file into dir and returns its path.
func writeSchema(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// ranCalls is how many calls of function ran, whatever their outcome.
func ranCalls(t *testing.T, srv *httptest.Server, function string) float64 {
	t.Helper()
	return metricOf(t, srv, "butter_invocations_total", function, `outcome="ok"`) + metricOf(t, srv, "butter_invocations_total", function, `outcome="error"`)
}

// violation is one entry of an error's details.
type violation struct{ Pointer, Message string }

// details decodes an HTTP error body's details, or a dead letter's
// ce_errordetails header.
func details(t *testing.T, b []byte) []violation {
	t.Helper()
	var v []violation
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("details %s: %v", b, err)
	}
	return v
}

// The schemas of these tests: an input has a number x; an output's x is
// at most 10. A `cat` function returns its input, so {"x": 50} passes the
// input schema and fails the output schema.
const (
	inSchema  = `{"type": "object", "required": ["x"], "properties": {"x": {"type": "number"}}}`
	outSchema = `{"type": "object", "properties": {"x": {"maximum": 10}}}`
)

// TestSchemaHTTP: through the invoke endpoint, an input that fails the
// function's input_schema, or is not JSON, is answered 400
// PreconditionFailed with each violation's JSON pointer, and the function
// is not run; an output that fails output_schema is answered 502
// PostconditionFailed with its violations, and not given; a valid call
// passes untouched.
func TestSchemaHTTP(t *testing.T) {
	dir := t.TempDir()
	f := fn("typed", "exec", "cat")
	f.InputSchema = writeSchema(t, dir, "in.json", inSchema)
	f.OutputSchema = writeSchema(t, dir, "out.json", outSchema)
	_, srv := start(t, []pool.FunctionConfig{f})

	type body struct {
		Error   struct{ Type, Message string }
		Details json.RawMessage
	}
	call := func(in string) (answer, body) {
		t.Helper()
		a := invoke(t, srv, "typed", strings.NewReader(in), nil)
		var b body
		if a.code != 200 {
			if err := json.Unmarshal([]byte(a.body), &b); err != nil {
				t.Fatalf("%s: error body %q: %v", in, a.body, err)
			}
		}
		return a, b
	}

	if a, _ := call(`{"x": 5}`); a.code != 200 || a.body != `{"x": 5}` {
		t.Errorf("valid call: %d %q, want 200 and the input back", a.code, a.body)
	}
	a, b := call(`{"x": "five", "y": 1}`)
	if a.code != 400 || b.Error.Type != "PreconditionFailed" || !strings.Contains(b.Error.Message, "input_schema") {
		t.Errorf("wrong input: %d %+v, want 400 PreconditionFailed naming input_schema", a.code, b.Error)
	}
	if v := details(t, b.Details); len(v) != 1 || v[0].Pointer != "/x" || !strings.Contains(v[0].Message, "number") {
		t.Errorf("wrong input: details %+v, want one at /x about a number", v)
	}
	a, b = call(`{}`)
	if v := details(t, b.Details); a.code != 400 || len(v) != 1 || v[0].Pointer != "" || !strings.Contains(v[0].Message, "x") {
		t.Errorf("missing field: %d details %+v, want 400 and one at the root naming x", a.code, v)
	}
	a, b = call(`not json`)
	if v := details(t, b.Details); a.code != 400 || b.Error.Type != "PreconditionFailed" || len(v) != 1 || !strings.HasPrefix(v[0].Message, "not JSON") {
		t.Errorf("non-JSON input: %d %+v details %+v, want 400 PreconditionFailed, not JSON", a.code, b.Error, v)
	}
	a, b = call(`{"x": 50}`)
	if a.code != 502 || b.Error.Type != "PostconditionFailed" || strings.Contains(a.body, `"x": 50`) {
		t.Errorf("wrong output: %d %q, want 502 PostconditionFailed without the output", a.code, a.body)
	}
	if v := details(t, b.Details); len(v) != 1 || v[0].Pointer != "/x" || !strings.Contains(v[0].Message, "10") {
		t.Errorf("wrong output: details %+v, want one at /x naming the maximum", v)
	}
	// The three refused inputs never reached the function: two calls ran
	// (the valid one, and the one whose output failed).
	if ran, pre := ranCalls(t, srv, "typed"), metricOf(t, srv, "butter_invocation_errors_total", "typed", `type="PreconditionFailed"`); ran != 2 || pre != 3 {
		t.Errorf("%v calls ran and %v were refused, want 2 and 3: a refused input must not run", ran, pre)
	}
}

// TestSchemaUncompilable: a schema that is JSON but not a JSON Schema
// fails the pool's creation, naming the function, the field and the file.
func TestSchemaUncompilable(t *testing.T) {
	dir := t.TempDir()
	f := fn("typed", "exec", "cat")
	f.OutputSchema = writeSchema(t, dir, "bad.json", `{"type": "numbr"}`)
	_, err := pool.New(&pool.Config{Project: "test", Pool: "p", Functions: []pool.FunctionConfig{f}}, nil)
	if err == nil || !strings.Contains(err.Error(), "function typed: output_schema: JSON Schema "+f.OutputSchema+" does not compile") {
		t.Fatalf("error %v, want one naming function typed, output_schema and %s", err, f.OutputSchema)
	}
}

// TestSchemaStream: a stream event that fails its trigger's schema is
// dead-lettered as PreconditionFailed after one attempt (never retried,
// though the function retries 3 times), with each violation's pointer in
// ce_errordetails; one whose output fails output_schema is dead-lettered
// as PostconditionFailed, after one attempt, and its output is not
// produced; the valid events' outputs are produced, in order.
func TestSchemaStream(t *testing.T) {
	dir := t.TempDir()
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "sc.in", Partitions: 1})
	f := streamFn("typed", "first", "sc.in", "sc.out", "cat")
	f.Streams[0].Schema = writeSchema(t, dir, "in.json", inSchema)
	f.OutputSchema = writeSchema(t, dir, "out.json", outSchema)
	f.Retry = &pool.RetryConfig{Attempts: 3, Backoff: "10ms", MaxBackoff: "20ms"}
	_, srv := streamPoolSrv(t, dev, f)
	keyed(t, cl, "sc.in", "k", `{"x": 1}`, `{"x": "one"}`, `{"x": 50}`, `{"x": 2}`)

	out := readAll(t, dev.Addr, "sc.out", 2)
	if len(out) != 2 || string(out[0].Value) != `{"x": 1}` || string(out[1].Value) != `{"x": 2}` {
		t.Errorf("outputs %v, want the two valid events' in order", values(out))
	}
	dls := readAll(t, dev.Addr, "sc.in.dlq", 2)
	pre, post := dls[0], dls[1]
	if string(pre.Value) != `{"x": "one"}` || broker.Header(pre, broker.HeaderErrorType) != "PreconditionFailed" || broker.Attempts(pre) != 1 {
		t.Errorf("first dead letter %s type %q attempts %d, want the bad input, PreconditionFailed after 1", pre.Value, broker.Header(pre, broker.HeaderErrorType), broker.Attempts(pre))
	}
	if v := details(t, []byte(broker.Header(pre, broker.HeaderErrorDetails))); len(v) != 1 || v[0].Pointer != "/x" {
		t.Errorf("precondition details %+v, want one at /x", v)
	}
	if m := broker.Header(pre, broker.HeaderErrorMessage); !strings.Contains(m, "stream sc.in: schema") || !strings.Contains(m, "in.json") {
		t.Errorf("precondition message %q, want the schema's field and file", m)
	}
	if string(post.Value) != `{"x": 50}` || broker.Header(post, broker.HeaderErrorType) != "PostconditionFailed" || broker.Attempts(post) != 1 {
		t.Errorf("second dead letter %s type %q attempts %d, want the bad output's event, PostconditionFailed after 1", post.Value, broker.Header(post, broker.HeaderErrorType), broker.Attempts(post))
	}
	if v := details(t, []byte(broker.Header(post, broker.HeaderErrorDetails))); len(v) != 1 || v[0].Pointer != "/x" {
		t.Errorf("postcondition details %+v, want one at /x", v)
	}
	// Three calls ran, each once: the refused input never did, and
	// neither failure was retried.
	eventually(t, 30*time.Second, "the calls counted", func() bool { return ranCalls(t, srv, "typed") >= 3 })
	if n := ranCalls(t, srv, "typed"); n != 3 {
		t.Errorf("%v calls ran, want 3", n)
	}
}

// TestSchemaStreamBatches: a Go function's events go to its worker in
// batches; an event failing its trigger's schema is kept out of every
// batch and dead-lettered as PreconditionFailed, and an output of a batch
// failing output_schema is dead-lettered as PostconditionFailed instead
// of produced, each after one attempt; the other outputs keep the
// partition's order.
func TestSchemaStreamBatches(t *testing.T) {
	dir := t.TempDir()
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "sb.in", Partitions: 1})
	var vals []string
	for i := range 200 {
		v := fmt.Sprintf(`"ev-%04d"`, i) // JSON strings; gofn upper-cases them
		switch i {
		case 60:
			v = `"bad-0060"`
		case 150:
			v = `"ev-post"`
		}
		vals = append(vals, v)
	}
	keyed(t, cl, "sb.in", "k", vals...)
	f := streamFn("typedgo", "first", "sb.in", "sb.out")
	f.Runtime, f.Command = "go", nil
	f.MaxInstances = 1
	f.Streams[0].Schema = writeSchema(t, dir, "in.json", `{"type": "string", "pattern": "^ev-"}`)
	f.OutputSchema = writeSchema(t, dir, "out.json", `{"type": "string", "not": {"const": "EV-POST"}}`)
	f.Retry = &pool.RetryConfig{Attempts: 3, Backoff: "10ms", MaxBackoff: "20ms"}
	_, srv := streamPoolSrv(t, dev, f)

	out := readAll(t, dev.Addr, "sb.out", 198)
	var want []string
	for _, v := range vals {
		if v != `"bad-0060"` && v != `"ev-post"` {
			want = append(want, strings.ToUpper(v))
		}
	}
	for i, r := range out {
		if i >= len(want) || string(r.Value) != want[i] {
			t.Fatalf("output %d = %s, want %s: the valid outputs in order, no other", i, r.Value, want[min(i, len(want)-1)])
		}
	}
	dls := readAll(t, dev.Addr, "sb.in.dlq", 2)
	for i, w := range []struct{ value, typ string }{{`"bad-0060"`, "PreconditionFailed"}, {`"ev-post"`, "PostconditionFailed"}} {
		dl := dls[i]
		if string(dl.Value) != w.value || broker.Header(dl, broker.HeaderErrorType) != w.typ || broker.Attempts(dl) != 1 {
			t.Errorf("dead letter %d = %s type %q attempts %d, want %s %s after 1", i, dl.Value, broker.Header(dl, broker.HeaderErrorType), broker.Attempts(dl), w.value, w.typ)
		}
		if v := details(t, []byte(broker.Header(dl, broker.HeaderErrorDetails))); len(v) != 1 || v[0].Pointer != "" {
			t.Errorf("dead letter %d details %+v, want one at the root", i, v)
		}
	}
	if n := metric(t, srv, "butter_ordered_batches_total", "typedgo"); n < 2 {
		t.Errorf("%v ordered batches: the events went one at a time", n)
	}
	eventually(t, 30*time.Second, "the calls counted", func() bool { return ranCalls(t, srv, "typedgo") >= 199 })
	if n := ranCalls(t, srv, "typedgo"); n != 199 {
		t.Errorf("%v calls ran, want 199: the refused input never, the others once", n)
	}
}

// TestSchemaEmit: an emit to a stream whose own schema the value fails is
// not produced, and the call fails with PostconditionFailed (HTTP 502,
// with the violations), whatever the function does with the emit's
// error.
func TestSchemaEmit(t *testing.T) {
	dir := t.TempDir()
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "se.alerts", Partitions: 1})
	sdks, err := sdk.Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("testdata/emitfn")
	f := fn("emitter", "node")
	f.Bundle, f.Handler = abs, "index.handle"
	f.Emits = []string{"se.alerts"}
	// emitfn emits "alert:<input>", which is not JSON.
	cfg := &pool.Config{Project: "se", Pool: "p", Functions: []pool.FunctionConfig{f},
		Topics: []pool.TopicConfig{{Name: "se.alerts", Partitions: 1, Schema: writeSchema(t, dir, "alert.json", `{"type": "object"}`)}}}
	p, err := pool.New(cfg, nil, pool.WithSDKs(sdks))
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
	srv := httptest.NewServer(p.Handler())
	defer srv.Close()
	a := invoke(t, srv, "emitter", strings.NewReader("x"), nil)
	var b struct {
		Error   struct{ Type, Message string }
		Details json.RawMessage
	}
	_ = json.Unmarshal([]byte(a.body), &b)
	if a.code != 502 || b.Error.Type != "PostconditionFailed" || !strings.Contains(b.Error.Message, "se.alerts") {
		t.Fatalf("emit failing its stream's schema: %d %q, want 502 PostconditionFailed naming se.alerts", a.code, a.body)
	}
	if v := details(t, b.Details); len(v) != 1 || !strings.HasPrefix(v[0].Message, "not JSON") {
		t.Errorf("details %+v, want one: not JSON", v)
	}
	// Nothing reached the stream: the marker, produced after the call
	// was answered, is its first record.
	produce(t, cl, "se.alerts", "marker")
	recs := readAll(t, dev.Addr, "se.alerts", 1)
	if len(recs) != 1 || string(recs[0].Value) != "marker" {
		t.Errorf("se.alerts = %v, want only the marker produced after the call", values(recs))
	}
}

// TestSchemaOutputStream: a stream function's output is checked against
// the schema of the stream it goes to (a stream block's schema, here with
// a $ref to another file, resolved against the schema's own): an output
// that fails is dead-lettered as PostconditionFailed and not produced.
func TestSchemaOutputStream(t *testing.T) {
	dir := t.TempDir()
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "so.in", Partitions: 1})
	writeSchema(t, dir, "defs.json", `{"$defs": {"reading": {"type": "object", "required": ["v"]}}}`)
	f := streamFn("relay", "first", "so.in", "so.out", "cat")
	f.Bundle, _ = filepath.Abs("testdata/gofn")
	cfg := &pool.Config{Project: "so", Pool: "p", Functions: []pool.FunctionConfig{f},
		Topics: []pool.TopicConfig{{Name: "so.out", Partitions: 1, Schema: writeSchema(t, dir, "reading.json", `{"$ref": "defs.json#/$defs/reading"}`)}}}
	p, err := pool.New(cfg, nil)
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
	keyed(t, cl, "so.in", "k", `{"v": 1}`, `{"w": 2}`, `{"v": 3}`)
	out := readAll(t, dev.Addr, "so.out", 2)
	if len(out) != 2 || string(out[0].Value) != `{"v": 1}` || string(out[1].Value) != `{"v": 3}` {
		t.Errorf("so.out = %v, want the two outputs that match its schema", values(out))
	}
	dl := readAll(t, dev.Addr, "so.in.dlq", 1)[0]
	v := details(t, []byte(broker.Header(dl, broker.HeaderErrorDetails)))
	if string(dl.Value) != `{"w": 2}` || broker.Header(dl, broker.HeaderErrorType) != "PostconditionFailed" || len(v) != 1 || !strings.Contains(v[0].Message, "v") {
		t.Errorf("dead letter %s type %q details %+v, want the failing event, PostconditionFailed, one violation naming v", dl.Value, broker.Header(dl, broker.HeaderErrorType), v)
	}
	if m := broker.Header(dl, broker.HeaderErrorMessage); !strings.Contains(m, "output to stream so.out") {
		t.Errorf("dead letter message %q, want it to name the output stream", m)
	}
}
