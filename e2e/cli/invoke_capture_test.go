package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/butterfn/butter/e2e/e2etest"
)

// `butter invoke -local` captures what functions emit, output to their
// output stream and keep as state, and prints it after the answer:
// real Node and Python workers, no Kafka anywhere.

// capturedLine is a line of what `butter invoke -local` captured, as a
// script reading it sees it.
type capturedLine struct {
	Kind     string            `json:"kind"`
	Function string            `json:"function"`
	Stream   string            `json:"stream"`
	Topic    string            `json:"topic"`
	Key      *string           `json:"key"`
	ID       string            `json:"id"`
	Source   string            `json:"source"`
	Type     string            `json:"type"`
	Time     string            `json:"time"`
	Headers  map[string]string `json:"headers"`
	Data     any               `json:"data"`
}

// captureProject writes a project whose functions, in Node and Python,
// take a request {"log":...,"emits":[{"stream","value","key"}],"reply":...}:
// they log the message with ctx.log, emit each value (with its key, if
// any) and answer the reply. Both may
// emit to their output stream "out" and to "alerts"; "other" is a
// stream of the project they may not emit to. "counter" (Python) counts
// the calls of each user in its state.
func captureProject(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"cap.fn.hcl": `project "cap" {}

stream "out" {}
stream "alerts" {}
stream "other" {}

function "emit-node" {
  runtime = "node"
  source  = "node"
  handler = "index.handle"
  output  = stream.out
  emits   = [stream.alerts]
  timeout = "30s"
}

function "emit-py" {
  runtime = "python"
  source  = "py"
  handler = "main.handle"
  output  = stream.out
  emits   = [stream.alerts]
  timeout = "30s"
}

function "reset" {
  runtime = "python"
  source  = "py"
  handler = "main.reset"
  timeout = "30s"
  state {
    key = "user"
  }
}

function "counter" {
  runtime = "python"
  source  = "py"
  handler = "main.count"
  timeout = "30s"
  state {
    key = "user"
  }
}
`,
		"node/index.js": `exports.handle = async (input, ctx) => {
  const req = JSON.parse(input.toString());
  if (req.log) await ctx.log('warn', req.log);
  for (const e of req.emits || []) await ctx.emit(e.stream, e.value, e.key);
  return req.reply;
};
`,
		"py/main.py": `import json


def handle(data, ctx):
    req = json.loads(data)
    if req.get("log"):
        ctx.log("warn", req["log"])
    for e in req.get("emits", []):
        ctx.emit(e["stream"], e["value"], key=e.get("key"))
    return req.get("reply")


def count(data, ctx):
    state = ctx.state.get() or {"count": 0}
    state["count"] += 1
    ctx.state.set(state)
    return state


def reset(data, ctx):
    ctx.state.delete()
    return "reset"
`,
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// capturedLines parses the JSON lines of text, skipping the others (the
// functions' own log lines, "[fn] ...", and errors).
func capturedLines(t *testing.T, text string) []capturedLine {
	t.Helper()
	var ls []capturedLine
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(l, "{") {
			continue
		}
		var c capturedLine
		if err := json.Unmarshal([]byte(l), &c); err != nil {
			t.Fatalf("a captured line is not JSON: %q: %v", l, err)
		}
		ls = append(ls, c)
	}
	return ls
}

// want is what a test expects of a captured line; the rest (id, time) is
// checked apart.
type want struct {
	kind, function, stream, topic string
	key                           *string
	typ                           string
	data                          any
}

func str(s string) *string { return &s }

func checkCaptured(t *testing.T, got []capturedLine, ws []want) {
	t.Helper()
	if len(got) != len(ws) {
		t.Fatalf("captured %d records, want %d: %+v", len(got), len(ws), got)
	}
	for i, w := range ws {
		g := got[i]
		if g.Kind != w.kind || g.Function != w.function || g.Stream != w.stream || g.Topic != w.topic || g.Type != w.typ {
			t.Errorf("record %d: %+v, want kind %s, function %s, stream %s, topic %s, type %s", i, g, w.kind, w.function, w.stream, w.topic, w.typ)
		}
		if !reflect.DeepEqual(g.Key, w.key) {
			t.Errorf("record %d: key %v, want %v", i, deref(g.Key), deref(w.key))
		}
		if !reflect.DeepEqual(g.Data, w.data) {
			t.Errorf("record %d: data %#v, want %#v", i, g.Data, w.data)
		}
		if w.kind == "state" {
			if g.ID != "" || g.Source != "" || g.Time != "" {
				t.Errorf("record %d: a state record with CloudEvents attributes: %+v", i, g)
			}
			continue
		}
		if g.Source != "butter/cap/"+w.function || g.Time == "" || g.Headers["ce_specversion"] != "1.0" {
			t.Errorf("record %d: source %q, time %q, headers %v; want source butter/cap/%s, a time and ce_specversion 1.0", i, g.Source, g.Time, g.Headers, w.function)
		}
		if !strings.HasPrefix(g.ID, "local-") {
			t.Errorf("record %d: id %q, want local-...", i, g.ID)
		}
	}
}

func deref(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

func TestInvokeLocalCapturesEmits(t *testing.T) {
	dir := captureProject(t)
	root := e2etest.Root()
	req := `{"log":"logged by ctx.log","emits":[{"stream":"alerts","value":{"t":30},"key":"d1"},{"stream":"out","value":"plain text"}],"reply":{"ok":true}}`
	for _, fn := range []string{"emit-node", "emit-py"} {
		t.Run(fn, func(t *testing.T) {
			r := butterIn(t, root, req, "invoke", "-local", "-key", "k9", dir, fn)
			if r.Code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
			}
			// Standard output is the answer alone.
			var reply map[string]any
			if err := json.Unmarshal([]byte(r.Stdout), &reply); err != nil || !reflect.DeepEqual(reply, map[string]any{"ok": true}) {
				t.Fatalf("stdout %q, want the reply {\"ok\":true} alone", r.Stdout)
			}
			// ctx.log goes where the function's own output goes.
			if !strings.Contains(r.Stderr, "["+fn+"] warn: logged by ctx.log\n") {
				t.Errorf("stderr lacks the function's ctx.log line:\n%s", r.Stderr)
			}
			got := capturedLines(t, r.Stderr)
			checkCaptured(t, got, []want{
				{"emit", fn, "alerts", "cap.alerts", str("d1"), "butter.emit", map[string]any{"t": 30.0}},
				// No key of its own: the -key.
				{"emit", fn, "out", "cap.out", str("k9"), "butter.emit", "plain text"},
				{"output", fn, "out", "cap.out", str("k9"), "butter.output", map[string]any{"ok": true}},
			})
			if t.Failed() {
				return
			}
			// The ids derive from the call's, as on the platform
			// (docs/events.md, "Ids"): <call id>/<function>/emit/<k>
			// and .../output/0.
			call, ok := strings.CutSuffix(got[2].ID, "/"+fn+"/output/0")
			if !ok || call == "" || got[0].ID != call+"/"+fn+"/emit/0" || got[1].ID != call+"/"+fn+"/emit/1" {
				t.Errorf("ids %q, %q, %q: want <call id>/%s/emit/0, .../emit/1 and .../output/0", got[0].ID, got[1].ID, got[2].ID, fn)
			}
		})
	}
}

// -emits writes the records to a file, and nothing of them to stderr;
// a call without -key gives emits that name no key an empty key, as an
// HTTP call does on the platform, and an output no key.
func TestInvokeLocalEmitsFile(t *testing.T) {
	dir := captureProject(t)
	file := filepath.Join(t.TempDir(), "emits.jsonl")
	req := `{"emits":[{"stream":"alerts","value":"a"}],"reply":"r"}`
	r := butterIn(t, e2etest.Root(), req, "invoke", "-local", "-emits", file, dir, "emit-py")
	if r.Code != 0 || r.Stdout != "r" {
		t.Fatalf("exit %d, stdout %q, want 0 and %q\nstderr:\n%s", r.Code, r.Stdout, "r", r.Stderr)
	}
	if ls := capturedLines(t, r.Stderr); len(ls) != 0 {
		t.Errorf("stderr has captured records with -emits: %+v", ls)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	checkCaptured(t, capturedLines(t, string(b)), []want{
		{"emit", "emit-py", "alerts", "cap.alerts", str(""), "butter.emit", "a"},
		{"output", "emit-py", "out", "cap.out", nil, "butter.output", "r"},
	})
}

// An emit to a stream the function may not emit to fails as on the
// platform; what the function emitted before is printed all the same
// (it would have been produced), its output is not (the call failed).
// A function that answers nothing writes no output record.
func TestInvokeLocalEmitRefused(t *testing.T) {
	dir := captureProject(t)
	root := e2etest.Root()
	for _, c := range []struct{ fn, msg string }{
		{"emit-node", `unknown stream "other": function emit-node may emit only to its output and emits streams: alerts, out`},
		{"emit-py", `unknown stream "other": function emit-py may emit only to its output and emits streams: alerts, out`},
	} {
		t.Run(c.fn, func(t *testing.T) {
			req := `{"emits":[{"stream":"alerts","value":"first","key":"a"},{"stream":"other","value":"x"}],"reply":"never"}`
			r := butterIn(t, root, req, "invoke", "-local", dir, c.fn)
			if r.Code != 1 || !strings.Contains(r.Stderr, c.msg) || !strings.Contains(r.Stderr, "step 1 ("+c.fn+")") {
				t.Fatalf("exit %d, want 1 with %q in stderr\nstdout:\n%s\nstderr:\n%s", r.Code, c.msg, r.Stdout, r.Stderr)
			}
			checkCaptured(t, capturedLines(t, r.Stderr), []want{
				{"emit", c.fn, "alerts", "cap.alerts", str("a"), "butter.emit", "first"},
			})
			// No reply: an empty output, and no record for it.
			r = butterIn(t, root, `{"emits":[]}`, "invoke", "-local", dir, c.fn)
			if r.Code != 0 || r.Stdout != "" {
				t.Fatalf("exit %d, stdout %q, want 0 and nothing\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
			}
			checkCaptured(t, capturedLines(t, r.Stderr), nil)
		})
	}
}

// A pipeline runs its steps chained as always, each step's emits and
// output captured in order: Node's answer is Python's request.
func TestInvokeLocalPipelineCaptures(t *testing.T) {
	dir := captureProject(t)
	req := `{"emits":[{"stream":"alerts","value":"from node","key":"n"}],"reply":{"emits":[{"stream":"alerts","value":"from python","key":"p"}],"reply":"done"}}`
	r := butterIn(t, e2etest.Root(), req, "invoke", "-local", dir, "emit-node | emit-py")
	if r.Code != 0 || r.Stdout != "done" {
		t.Fatalf("exit %d, stdout %q, want 0 and %q\nstderr:\n%s", r.Code, r.Stdout, "done", r.Stderr)
	}
	checkCaptured(t, capturedLines(t, r.Stderr), []want{
		{"emit", "emit-node", "alerts", "cap.alerts", str("n"), "butter.emit", "from node"},
		{"output", "emit-node", "out", "cap.out", nil, "butter.output", map[string]any{
			"emits": []any{map[string]any{"stream": "alerts", "value": "from python", "key": "p"}}, "reply": "done"}},
		{"emit", "emit-py", "alerts", "cap.alerts", str("p"), "butter.emit", "from python"},
		{"output", "emit-py", "out", "cap.out", nil, "butter.output", "done"},
	})
}

// A function with state starts each run with none (the state is in
// memory, and goes with the process), and its state after the call is
// printed as its changelog would hold it.
func TestInvokeLocalState(t *testing.T) {
	dir := captureProject(t)
	for range 2 {
		r := butterIn(t, e2etest.Root(), `{"user":"u1"}`, "invoke", "-local", dir, "counter")
		if r.Code != 0 || strings.TrimSpace(r.Stdout) != `{"count": 1}` {
			t.Fatalf("exit %d, stdout %q, want 0 and {\"count\": 1}\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
		}
		checkCaptured(t, capturedLines(t, r.Stderr), []want{
			{"state", "counter", "", "cap._state.counter", str("u1"), "", map[string]any{"count": 1.0}},
		})
	}
	// In one run, the state carries over from call to call: the second
	// step's input, {"count": 1}, has no user field, and -key gives its key.
	r := butterIn(t, e2etest.Root(), `{"user":"u1"}`, "invoke", "-local", "-key", "u1", dir, "counter | counter")
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != `{"count": 2}` {
		t.Fatalf("exit %d, stdout %q, want 0 and {\"count\": 2}\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
	}
	checkCaptured(t, capturedLines(t, r.Stderr), []want{
		{"state", "counter", "", "cap._state.counter", str("u1"), "", map[string]any{"count": 2.0}},
	})
}

// -state gives keys their state before the first call; -param gives
// route parameters, here the state key; a key whose state the function
// deletes is printed with data null, as its changelog's tombstone.
func TestInvokeLocalGivenState(t *testing.T) {
	dir := captureProject(t)
	root := e2etest.Root()
	r := butterIn(t, root, `{}`, "invoke", "-local", "-param", "user=u2", "-state", `u2={"count":41}`, "-state", `u3={"count":7}`, dir, "counter")
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != `{"count": 42}` {
		t.Fatalf("exit %d, stdout %q, want 0 and {\"count\": 42}\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
	}
	checkCaptured(t, capturedLines(t, r.Stderr), []want{
		{"state", "counter", "", "cap._state.counter", str("u2"), "", map[string]any{"count": 42.0}},
		{"state", "counter", "", "cap._state.counter", str("u3"), "", map[string]any{"count": 7.0}},
	})
	r = butterIn(t, root, `{"user":"u2"}`, "invoke", "-local", "-state", `u2={"count":41}`, dir, "reset")
	if r.Code != 0 || r.Stdout != "reset" {
		t.Fatalf("exit %d, stdout %q, want 0 and reset\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
	}
	checkCaptured(t, capturedLines(t, r.Stderr), []want{
		{"state", "reset", "", "cap._state.reset", str("u2"), "", nil},
	})
	if !strings.Contains(r.Stderr, `"data":null`) {
		t.Errorf("the tombstone's line lacks \"data\":null:\n%s", r.Stderr)
	}
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"-state", "u2=not json"}, `-state "u2=not json" is not key=JSON value`},
		{[]string{"-param", "user"}, `-param "user" is not name=value`},
	} {
		r := butterIn(t, root, `{}`, append(append([]string{"invoke", "-local"}, c.args...), dir, "counter")...)
		if r.Code != 2 || !strings.Contains(r.Stderr, c.msg) {
			t.Errorf("%q: exit %d, want 2 and %q\nstderr:\n%s", c.args, r.Code, c.msg, r.Stderr)
		}
	}
	r = butterIn(t, root, `{}`, "invoke", "-local", "-state", `u2=1`, dir, "emit-py")
	if r.Code != 1 || !strings.Contains(r.Stderr, "no function of the pipeline has state") {
		t.Errorf("-state for a function without state: exit %d, want 1\nstderr:\n%s", r.Code, r.Stderr)
	}
}

// examples/iot as the README shows it: ingest's device comes from its
// route, given with -param, and its emit is captured; detect alerts
// against a given state.
func TestInvokeLocalIoT(t *testing.T) {
	root := e2etest.Root()
	r := butterIn(t, root, `{"device":"d1","temperature":21}`, "invoke", "-local", "-param", "device=d1", "examples/iot", "ingest")
	if r.Code != 0 || !strings.Contains(r.Stdout, `"accepted":true`) {
		t.Fatalf("ingest: exit %d, stdout %q\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
	}
	got := capturedLines(t, r.Stderr)
	if len(got) != 1 || got[0].Kind != "emit" || got[0].Stream != "readings" || deref(got[0].Key) != "d1" {
		t.Fatalf("ingest captured %+v, want its emit to readings keyed d1", got)
	}
	if d, _ := got[0].Data.(map[string]any); d["device"] != "d1" || d["temperature"] != 21.0 {
		t.Errorf("ingest emitted %v", got[0].Data)
	}

	// Without its route's parameter, ingest's reading lacks the device,
	// and its emit fails the readings stream's schema, as on the platform.
	r = butterIn(t, root, `{"device":"d1","temperature":21}`, "invoke", "-local", "examples/iot", "ingest")
	if r.Code != 1 || !strings.Contains(r.Stderr, "the emit to stream iot.readings does not match schema") || len(capturedLines(t, r.Stderr)) != 0 {
		t.Errorf("ingest without -param: exit %d, want 1, the schema failure and nothing captured\nstderr:\n%s", r.Code, r.Stderr)
	}

	r = butterIn(t, root, `{"device":"d1","temperature":30}`, "invoke", "-local", "-key", "d1", "-state", `d1={"temperature":21}`, "examples/iot", "detect")
	if r.Code != 0 {
		t.Fatalf("detect: exit %d\nstderr:\n%s", r.Code, r.Stderr)
	}
	alert := map[string]any{"device": "d1", "from": 21.0, "to": 30.0, "at": nil}
	var out map[string]any
	if err := json.Unmarshal([]byte(r.Stdout), &out); err != nil || !reflect.DeepEqual(out, alert) {
		t.Errorf("detect answered %q, want the alert %v", r.Stdout, alert)
	}
	got = capturedLines(t, r.Stderr)
	if len(got) != 2 || got[0].Kind != "output" || got[0].Topic != "iot.alerts" || deref(got[0].Key) != "d1" || !reflect.DeepEqual(got[0].Data, alert) ||
		got[1].Kind != "state" || !reflect.DeepEqual(got[1].Data, map[string]any{"temperature": 30.0}) {
		t.Errorf("detect captured %+v, want the alert on iot.alerts, then d1's state {temperature: 30}", got)
	}
}
