package gateway_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/butterfn/butter/gateway"
)

// TestSchemaErrorsThroughGateway: a call whose input fails the function's
// input_schema reaches the client as the pool answers it, 400
// PreconditionFailed, with each violation's JSON pointer in "details";
// one whose output fails output_schema as 502 PostconditionFailed with
// its details; a valid one passes.
func TestSchemaErrorsThroughGateway(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	f := fn("typed", "cat")
	f.InputSchema = write("in.json", `{"type": "object", "required": ["x"], "properties": {"x": {"type": "number"}}}`)
	f.OutputSchema = write("out.json", `{"properties": {"x": {"maximum": 10}}}`)
	b := startPool(t, f)
	_, url := startGateway(t, resolverFor(b.addr), []gateway.Route{{Method: "POST", Path: "/typed", Project: "test", Function: "typed"}})

	if a := post(t, url+"/typed", `{"x": 1}`, nil); a.code != 200 || a.body != `{"x": 1}` {
		t.Errorf("valid call: %d %q", a.code, a.body)
	}
	for _, c := range []struct {
		in, typ string
		code    int
	}{{`{"x": "one"}`, "PreconditionFailed", 400}, {`{"x": 11}`, "PostconditionFailed", 502}} {
		a := post(t, url+"/typed", c.in, nil)
		var d struct {
			Details []struct{ Pointer, Message string }
		}
		_ = json.Unmarshal([]byte(a.body), &d)
		if a.code != c.code || a.err.Type != c.typ || len(d.Details) != 1 || d.Details[0].Pointer != "/x" || strings.Contains(a.body, "11}") {
			t.Errorf("%s: %d %q, want %d %s with one detail at /x", c.in, a.code, a.body, c.code, c.typ)
		}
	}
}
