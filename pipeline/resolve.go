package pipeline

import (
	"fmt"
	"strings"

	"github.com/agext/levenshtein"

	"github.com/butterfn/butter/hcl/spec"
)

// Resolve checks steps against project p and expands each step that names
// one of p's pipelines into that pipeline's function steps (nested
// pipelines included), each with the options the spec gives it. A step
// naming a pipeline takes no options of its own: the spec puts them on the
// pipeline's functions. An unknown name is an error that lists what p has
// and suggests the closest name.
func Resolve(p *spec.Project, steps []Step) ([]Step, error) {
	var out []Step
	for _, s := range steps {
		if pl := p.Pipeline(s.Function); pl != nil {
			if len(s.Options) > 0 {
				return nil, fmt.Errorf("step %q is a pipeline; options go on its functions: name them instead, as in %q, and add the options there", s.String(), Format(Expand(pl)))
			}
			if u := externalStep(pl); u != "" {
				return nil, fmt.Errorf("pipeline %q has an external step, %s, which only the gateway calls, on the pipeline's http route: call that route instead", pl.Name, u)
			}
			out = append(out, Expand(pl)...)
			continue
		}
		if p.Function(s.Function) == nil {
			return nil, unknown(p, s.Function)
		}
		out = append(out, Step{Function: s.Function, Options: lower(s.Options)})
	}
	return out, nil
}

// unknown says that p has no function or pipeline called name, and what
// it has.
func unknown(p *spec.Project, name string) error {
	names := make([]string, 0, len(p.Functions)+len(p.Pipelines))
	for _, f := range p.Functions {
		names = append(names, f.Name)
	}
	for _, pl := range p.Pipelines {
		names = append(names, pl.Name)
	}
	hint := ""
	if s := suggest(name, names); s != "" {
		hint = fmt.Sprintf(": did you mean %q?", s)
	}
	return fmt.Errorf("no function or pipeline %q in project %s%s (it has: %s)", name, p.Name, hint, strings.Join(names, ", "))
}

// suggest returns the candidate closest to given when it is close enough
// to be a likely typo, else "": the threshold package spec and hcl use
// for their own "Did you mean" hints.
func suggest(given string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if d := levenshtein.Distance(given, c, nil); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// Expand returns the function steps of a pipeline declared in a spec, the
// pipelines it contains expanded in place, each with its options (names
// in lower case, as Parse reads them). A pipeline that contains itself,
// which the spec's validation reports, is expanded once.
func Expand(pl *spec.Pipeline) []Step {
	var out []Step
	open := map[*spec.Pipeline]bool{}
	var walk func(*spec.Pipeline)
	walk = func(pl *spec.Pipeline) {
		if open[pl] {
			return
		}
		open[pl] = true
		defer delete(open, pl)
		for _, st := range pl.Steps {
			switch {
			case st.Pipeline != nil:
				walk(st.Pipeline)
			case st.Function != nil:
				out = append(out, Step{Function: st.Function.Name, Options: lower(st.Options)})
			case st.URL != "":
				out = append(out, Step{Function: st.URL}) // no function: Resolve refuses it
			}
		}
	}
	walk(pl)
	return out
}

// lower copies options with their names in lower case; nil for none.
func lower(opts map[string]string) map[string]string {
	if len(opts) == 0 {
		return nil
	}
	out := make(map[string]string, len(opts))
	for k, v := range opts {
		out[strings.ToLower(k)] = v
	}
	return out
}

// externalStep returns the URL of an external step of pl (or of a
// pipeline in it), or "".
func externalStep(pl *spec.Pipeline) string {
	for _, st := range Expand(pl) {
		if strings.Contains(st.Function, "://") {
			return st.Function
		}
	}
	return ""
}
