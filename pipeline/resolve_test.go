package pipeline_test

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/pipeline"
)

// project decodes a spec with functions sed, to-upper and count, a
// pipeline shout (sed with options, then to-upper) and a pipeline loud
// that nests shout.
func project(t *testing.T) *spec.Project {
	t.Helper()
	src := `project "demo" {}

function "sed" {
  runtime = "exec"
  command = ["sed", "-u"]
}

function "to-upper" {
  runtime = "exec"
  command = ["tr", "a-z", "A-Z"]
}

function "count" {
  runtime = "exec"
  command = ["wc", "-c"]
}

pipeline "shout" {
  steps = [{ function = function.sed, options = { E = "s/hate/love/", n = "a b" } }, function.to-upper]
}

pipeline "loud" {
  steps = [pipeline.shout, function.count]
}
`
	p, rep := spec.LoadFS(fstest.MapFS{"demo.fn.hcl": {Data: []byte(src)}}, "demo")
	if p == nil || rep.HasErrors() {
		var b strings.Builder
		_ = rep.WriteText(&b)
		t.Fatalf("the test spec does not decode:\n%s", b.String())
	}
	return p
}

func TestResolve(t *testing.T) {
	p := project(t)
	shout := []pipeline.Step{{Function: "sed", Options: opts{"e": "s/hate/love/", "n": "a b"}}, {Function: "to-upper"}}
	for _, c := range []struct {
		expr string
		want []pipeline.Step
	}{
		{"sed", []pipeline.Step{{Function: "sed"}}},
		{"sed e=s/a/b/ | count", []pipeline.Step{{Function: "sed", Options: opts{"e": "s/a/b/"}}, {Function: "count"}}},
		// A declared pipeline expands into its functions with the spec's
		// options, names in lower case as the gateway passes them on.
		{"shout", shout},
		{"loud", append(append([]pipeline.Step{}, shout...), pipeline.Step{Function: "count"})},
		{"shout | sed e=s/LOVE/ADORE/", append(append([]pipeline.Step{}, shout...), pipeline.Step{Function: "sed", Options: opts{"e": "s/LOVE/ADORE/"}})},
	} {
		steps, err := pipeline.Parse(c.expr)
		if err != nil {
			t.Fatalf("Parse(%q): %v", c.expr, err)
		}
		got, err := pipeline.Resolve(p, steps)
		if err != nil || !equal(got, c.want) {
			t.Errorf("Resolve(%q) = %+v %v, want %+v", c.expr, got, err, c.want)
		}
	}
	// Expand of a declared pipeline, as routes flatten it.
	if got := pipeline.Format(pipeline.Expand(p.Pipeline("loud"))); got != `sed e=s/hate/love/ n="a b" | to-upper | count` {
		t.Errorf("Expand(loud) formats as %s", got)
	}
}

func TestResolveErrors(t *testing.T) {
	p := project(t)
	for _, c := range []struct {
		expr string
		want []string
	}{
		{"nope", []string{`no function or pipeline "nope" in project demo`, "(it has: count, sed, to-upper, loud, shout)"}},
		{"sed | nope", []string{`"nope"`}},
		{"sde", []string{`"sde"`, `did you mean "sed"?`}},
		{"to-uper", []string{`did you mean "to-upper"?`}},
		{"shout x=1", []string{`step "shout x=1" is a pipeline; options go on its functions`, `"sed e=s/hate/love/ n=\"a b\" | to-upper"`}},
	} {
		steps, err := pipeline.Parse(c.expr)
		if err != nil {
			t.Fatalf("Parse(%q): %v", c.expr, err)
		}
		got, err := pipeline.Resolve(p, steps)
		if err == nil {
			t.Errorf("Resolve(%q) = %+v, want an error", c.expr, got)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Resolve(%q): %q lacks %q", c.expr, err, w)
			}
		}
	}
	// No suggestion when nothing is close.
	steps, _ := pipeline.Parse("zzzzzz")
	if _, err := pipeline.Resolve(p, steps); err == nil || strings.Contains(err.Error(), "did you mean") {
		t.Errorf("Resolve(zzzzzz): %v, want an error without a suggestion", err)
	}
}

// TestResolveExternal: a pipeline with an external step resolves to no
// steps a caller could run: only the gateway calls its URL, on the
// pipeline's route.
func TestResolveExternal(t *testing.T) {
	src := `project "demo" {}

function "up" {
  runtime = "exec"
  command = ["tr", "a-z", "A-Z"]
}

pipeline "inner" {
  steps = [function.up, "http://faas.example.com/function/figlet"]
}

pipeline "outer" {
  steps = [function.up, pipeline.inner]
}
`
	p, rep := spec.LoadFS(fstest.MapFS{"demo.fn.hcl": {Data: []byte(src)}}, "demo")
	if p == nil || rep.HasErrors() {
		var b strings.Builder
		_ = rep.WriteText(&b)
		t.Fatalf("the test spec does not decode:\n%s", b.String())
	}
	for _, name := range []string{"inner", "outer", "up | outer"} {
		steps, err := pipeline.Parse(name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pipeline.Resolve(p, steps)
		if err == nil || !strings.Contains(err.Error(), "http://faas.example.com/function/figlet") || !strings.Contains(err.Error(), "http route") {
			t.Errorf("Resolve(%q) = %+v %v, want an error naming the external step and the route", name, got, err)
		}
	}
	if steps, _ := pipeline.Parse("up"); steps != nil {
		if got, err := pipeline.Resolve(p, steps); err != nil || len(got) != 1 {
			t.Errorf("Resolve(up) = %+v %v", got, err)
		}
	}
}
