package spec_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/butterfn/butter/hcl/spec"
)

// TestCallsList: a function's calls list resolves to the functions and
// streams it names; an undeclared name, another kind of reference, or an
// internal topic is an error, and a repeat a warning.
func TestCallsList(t *testing.T) {
	load := func(calls string) (*spec.Project, string) {
		t.Helper()
		dir := t.TempDir()
		src := `project "p" {}
stream "orders" {}
stream "lost" {}
function "orders" {
  runtime = "exec"
  command = ["cat"]
  trigger "stream" {
    stream = stream.orders
  }
}
function "score" {
  runtime = "exec"
  command = ["cat"]
}
pipeline "pl" {
  steps = [function.score]
}
function "caller" {
  runtime = "exec"
  command = ["cat"]
  calls   = ` + calls + `
}
`
		if err := os.WriteFile(filepath.Join(dir, "p.fn.hcl"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		p, rep := spec.Load(dir)
		var msgs []string
		for _, d := range rep.Diags {
			msgs = append(msgs, d.Summary+": "+d.Detail)
		}
		return p, strings.Join(msgs, "\n")
	}
	p, diags := load(`[function.score, stream.orders]`)
	if p == nil || diags != "" {
		t.Fatalf("valid calls: %s", diags)
	}
	c := p.Function("caller").Calls
	if len(c) != 2 || c[0].Function != p.Function("score") || c[1].Stream != p.Stream("orders") || c[0].Ref() != "function.score" || c[1].Ref() != "stream.orders" {
		t.Errorf("calls = %+v", c)
	}
	for calls, want := range map[string]string{
		`[function.nobody]`:                `No function named "nobody"`,
		`[pipeline.pl]`:                    `The argument "calls" takes a function or stream, but pipeline.pl refers to a pipeline`,
		`[stream._state]`:                  `stream._state is not a stream`,
		`"score"`:                          `calls is a list of the functions and streams`,
		`[function.score, function.score]`: `Function "caller" lists function.score in calls again`,
		`[stream.lost]`:                    `Call that no one answers: Function "caller" calls stream.lost, but no function has a stream trigger on it`,
		`[function.caller]`:                `Function calls itself`,
	} {
		_, diags := load(calls)
		if !strings.Contains(diags, want) {
			t.Errorf("calls = %s: %q, want a diagnostic saying %q", calls, diags, want)
		}
	}
}
