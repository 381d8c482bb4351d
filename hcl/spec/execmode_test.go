package spec_test

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/jobs"
)

// TestExecModeDecodes: mode = "lines" on an exec function reaches the
// pool's config; mode on another runtime, a misspelt mode and lines with
// a concurrency above one are refused with what to write.
func TestExecModeDecodes(t *testing.T) {
	const text = `
project "m" {}

function "upper" {
  runtime = "exec"
  source  = "f"
  command = ["tr", "a-z", "A-Z"]
  mode    = "lines"
}

function "forked" {
  runtime = "exec"
  source  = "f"
  command = ["cat"]
  mode    = "fork"
}
`
	files := fstest.MapFS{"main.fn.hcl": {Data: []byte(text)}, "f/x": {Data: []byte("x")}}
	p, rep := spec.LoadFS(files, "m")
	if rep.HasErrors() || p == nil {
		t.Fatalf("a valid spec refused: %v", rep.Diags)
	}
	if p.Function("upper").ExecMode != "lines" || p.Function("forked").ExecMode != "" {
		t.Errorf("modes %q and %q, want lines and the default", p.Function("upper").ExecMode, p.Function("forked").ExecMode)
	}
	for _, fc := range jobs.LocalConfig(p).Functions {
		if want := map[string]string{"upper": "lines", "forked": ""}[fc.Name]; fc.ExecMode != want {
			t.Errorf("pool config of %s: exec mode %q, want %q", fc.Name, fc.ExecMode, want)
		}
	}
	for _, tc := range []struct{ name, from, to, want string }{
		{"not exec", "runtime = \"exec\"\n  source  = \"f\"\n  command = [\"tr\", \"a-z\", \"A-Z\"]", "runtime = \"node\"\n  source  = \"f\"\n  handler = \"index.handle\"", "Mode of a non-exec function"},
		{"misspelt", `mode    = "lines"`, `mode    = "line"`, `Did you mean "lines"?`},
		{"concurrency", `mode    = "lines"`, "mode    = \"lines\"\n  instances {\n    concurrency = 4\n  }", "Concurrency of a lines-mode function"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := fstest.MapFS{"main.fn.hcl": {Data: []byte(strings.Replace(text, tc.from, tc.to, 1))}, "f/x": {Data: []byte("x")}, "f/index.js": {Data: []byte("x")}}
			_, rep := spec.LoadFS(bad, "m")
			var all []string
			for _, d := range rep.Diags {
				all = append(all, d.Summary+": "+d.Detail)
			}
			if !rep.HasErrors() || !strings.Contains(strings.Join(all, "\n"), tc.want) {
				t.Errorf("diagnostics:\n%s\nwant %q", strings.Join(all, "\n"), tc.want)
			}
		})
	}
}
