package spec

import (
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// CallTarget is one entry of a function's calls list: a function (called
// through its request topic, which its pool then consumes) or a stream
// (whose consuming functions reply). Exactly one is set.
type CallTarget struct {
	Function *Function
	Stream   *Stream
	// Range is where the reference is written, for diagnostics.
	Range hcl.Range
}

// Ref is the target as the spec writes it: function.<name> or
// stream.<name>.
func (t CallTarget) Ref() string {
	if t.Function != nil {
		return "function." + t.Function.Name
	}
	return "stream." + t.Stream.Name
}

// callsHelp says what the calls argument takes.
const callsHelp = "calls is a list of the functions and streams the function may call and await with ctx.call, like calls = [function.score, stream.orders], written without quotes."

// decodeCalls reads a function's calls list: references to declared
// functions and streams, each once. The pool refuses a call to any other.
func (d *decoder) decodeCalls(f *Function, a *hcl.Attribute) []CallTarget {
	exprs, diags := hcl.ExprList(a.Expr)
	if diags.HasErrors() {
		r := a.Expr.Range()
		d.errorf(&r, "Invalid calls", "%s", callsHelp)
		return nil
	}
	var out []CallTarget
	seen := map[string]hcl.Range{}
	for _, e := range exprs {
		if trav, diags := hcl.AbsTraversalForExpr(e); !diags.HasErrors() && len(trav) == 2 && trav.RootName() == "stream" {
			if step, isAttr := trav[1].(hcl.TraverseAttr); isAttr && strings.HasPrefix(step.Name, "_") {
				r := e.Range()
				d.errorf(&r, "Internal topic", "stream.%s is not a stream: topics whose names start with '_' belong to the platform, and no function may call them. Call a function, or a stream the project declares.", step.Name)
				continue
			}
		}
		kind, name, ok := d.ref(e, "calls", "function", "stream")
		if !ok {
			continue
		}
		var t CallTarget
		if kind == "function" {
			t.Function = d.functions[name]
		} else {
			t.Stream = d.streams[name]
		}
		r := e.Range()
		t.Range = r
		if prev, dup := seen[t.Ref()]; dup {
			d.warnf(&r, "Target listed twice", "Function %q lists %s in calls again (first at %s). Remove one.", f.Name, t.Ref(), at(prev))
			continue
		}
		seen[t.Ref()] = r
		out = append(out, t)
	}
	return out
}

// checkCalls warns of calls that cannot be answered: to a stream no
// function consumes (no one replies: every call times out), and to the
// calling function itself (each call holds an instance while it waits for
// another).
func (d *decoder) checkCalls(p *Project) {
	consumed := map[*Stream]bool{}
	for _, f := range p.Functions {
		for _, t := range f.Triggers {
			if t.Type == TriggerStream && t.Stream != nil {
				consumed[t.Stream] = true
			}
		}
	}
	for _, f := range p.Functions {
		for _, t := range f.Calls {
			r := t.Range
			switch {
			case t.Stream != nil && !consumed[t.Stream]:
				d.warnf(&r, "Call that no one answers", "Function %q calls stream.%s, but no function has a stream trigger on it: nothing replies, and every call times out. Call the function that should answer (function.<name>), or add a stream trigger on %q to it.", f.Name, t.Stream.Name, t.Stream.Name)
			case t.Function == f:
				d.warnf(&r, "Function calls itself", "Function %q calls itself: each call holds an instance while another one answers it, so calls time out once all its instances wait. Make sure the recursion ends, with room in instances.max.", f.Name)
			}
		}
	}
}
