package spec

import (
	"github.com/hashicorp/hcl/v2"
)

// Middleware: `middleware = [function.auth, function.audit]` in the
// project block (every http trigger of the project) or in an http trigger
// (its route only, replacing the project's; [] for none). The gateway
// calls each function before the route's handler and again after it
// (docs/gateway.md, "Middleware").

const middlewareHelp = "middleware is a list of functions, like [function.auth, function.audit]: each sees a request before the route's handler and its answer after it, in the order written."

// middlewareRef is one function of a middleware list, where it is
// written.
type middlewareRef struct {
	fn  *Function
	rng hcl.Range
}

// decodeMiddleware decodes a middleware argument: a list of function
// references, each once. ok is false when it holds an error.
func (d *decoder) decodeMiddleware(a *hcl.Attribute) (fns []*Function, ok bool) {
	exprs, diags := hcl.ExprList(a.Expr)
	if diags.HasErrors() {
		r := a.Expr.Range()
		d.errorf(&r, "Invalid middleware", "%s", middlewareHelp)
		return nil, false
	}
	fns, ok = []*Function{}, true // empty, not nil: a trigger's [] means none
	seen := map[string]hcl.Range{}
	for _, e := range exprs {
		r := e.Range()
		_, name, found := d.ref(e, "middleware", "function")
		if !found {
			ok = false
			continue
		}
		if prev, dup := seen[name]; dup {
			d.errorf(&r, "Duplicate middleware", "function.%s is already in this list at %s: a middleware runs once per request. Remove one of them.", name, at(prev))
			ok = false
			continue
		}
		seen[name] = r
		fns = append(fns, d.functions[name])
		d.middlewareRefs = append(d.middlewareRefs, middlewareRef{fn: d.functions[name], rng: r})
	}
	return fns, ok
}

// fillMiddleware gives the project's middleware to every http trigger
// that sets none of its own, and warns about middleware that cannot act.
func (d *decoder) fillMiddleware(p *Project) {
	fill := func(ts []*Trigger) {
		for _, t := range ts {
			if t.Type == TriggerHTTP && !d.ownMiddleware[t] {
				t.Middleware = p.Middleware
			}
		}
	}
	for _, f := range p.Functions {
		fill(f.Triggers)
	}
	for _, pl := range p.Pipelines {
		fill(pl.Triggers)
	}
	warned := map[*Function]bool{}
	for _, ref := range d.middlewareRefs {
		if ref.fn.Runtime == "exec" && !warned[ref.fn] {
			warned[ref.fn] = true
			r := ref.rng
			d.warnf(&r, "Middleware that cannot answer", "Function %q has runtime exec, which answers 200 without headers: as middleware it only observes requests, and can neither refuse one nor add a header. Use a node, python, go or http function to act on requests.", ref.fn.Name)
		}
	}
}
