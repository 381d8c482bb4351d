package jobs

import (
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/plugins/pool"
)

// Emit-and-await: a function's calls list (ctx.call) becomes its pool
// config's Calls, and a function another calls consumes its request
// topic, as one with a queued route does, so that its pool answers the
// calls (docs/events.md, "Emit and await").

// Called reports whether a function of p lists f in its calls.
func Called(p *spec.Project, f *spec.Function) bool {
	for _, g := range p.Functions {
		for _, t := range g.Calls {
			if t.Function != nil && t.Function.Name == f.Name {
				return true
			}
		}
	}
	return false
}

// consumesRequests reports whether f's pool consumes f's request topic:
// f has a queued or async http trigger, or a function calls it.
func consumesRequests(p *spec.Project, f *spec.Function) bool {
	return HasQueuedTrigger(f) || Called(p, f)
}

// callTargets is f's calls list as its pool config carries it.
func callTargets(p *spec.Project, f *spec.Function) []pool.CallTarget {
	var out []pool.CallTarget
	for _, t := range f.Calls {
		if t.Function != nil {
			out = append(out, pool.CallTarget{Kind: "function", Name: t.Function.Name, Topic: names.RequestTopic(p.Name, t.Function.Name)})
		} else {
			out = append(out, pool.CallTarget{Kind: "stream", Name: t.Stream.Name, Topic: names.Topic(p.Name, t.Stream.Name)})
		}
	}
	return out
}
