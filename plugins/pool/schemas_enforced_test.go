package pool_test

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/plugins/pool"
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
