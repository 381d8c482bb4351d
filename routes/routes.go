// Package routes turns a project's spec into the gateway's route table:
// one route per http trigger of a function or a pipeline, with the
// trigger's auth, limits, CORS, mode and middleware, whether the target
// takes and answers JSON (its schemas), and each pipeline flattened into
// the functions it calls. `butter dev` and `butter gateway` both build
// their tables with it, from the active revision's spec files.
package routes

import (
	"sort"
	"strings"

	"github.com/butterfn/butter/gateway"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/pipeline"
)

// FromSpec returns the routes of every http trigger in the project.
func FromSpec(p *spec.Project, revision string) []gateway.Route {
	var out []gateway.Route
	for _, f := range p.Functions {
		for _, t := range f.Triggers {
			if t.Type != spec.TriggerHTTP {
				continue
			}
			r := base(p, revision, t)
			r.Function, r.Pool = f.Name, poolOf(f)
			r.JSONInput, r.JSONOutput = f.InputSchema != "", f.OutputSchema != ""
			addMiddleware(&r, t)
			out = append(out, r)
		}
	}
	for _, pl := range p.Pipelines {
		for _, t := range pl.Triggers {
			if t.Type != spec.TriggerHTTP {
				continue
			}
			r := base(p, revision, t)
			steps, pools := Flatten(pl)
			r.Pipeline = steps
			if len(pools) > 0 {
				r.Pool = pools[stepFunction(steps[0])]
				r.Pools = pools
			}
			first, last := ends(pl)
			r.JSONInput = first != nil && first.Function != nil && first.Function.InputSchema != ""
			r.JSONOutput = last != nil && last.Function != nil && last.Function.OutputSchema != ""
			addMiddleware(&r, t)
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pattern() < out[j].Pattern() })
	return out
}

func base(p *spec.Project, revision string, t *spec.Trigger) gateway.Route {
	return gateway.Route{
		Method: t.Method, Path: t.Path, Project: p.Name, Revision: revision,
		Auth: t.Auth, JWKSURL: t.JWKSURL, Audience: t.Audience, Issuer: t.Issuer,
		MaxBody: t.MaxBody, Timeout: t.Timeout, Rate: t.Rate, Burst: t.Burst,
		CORSOrigins: t.CORSOrigins, Mode: t.Mode,
	}
}

// ends returns the first and the last step of a pipeline, nested
// pipelines expanded: a function's step or an external one.
func ends(pl *spec.Pipeline) (first, last *spec.Step) {
	seen := map[*spec.Pipeline]bool{}
	var edge func(pl *spec.Pipeline, end int) *spec.Step
	edge = func(pl *spec.Pipeline, end int) *spec.Step {
		if pl == nil || len(pl.Steps) == 0 || seen[pl] {
			return nil // a cycle is the spec's error
		}
		seen[pl] = true
		defer delete(seen, pl)
		s := pl.Steps[0]
		if end > 0 {
			s = pl.Steps[len(pl.Steps)-1]
		}
		if s.Pipeline != nil {
			return edge(s.Pipeline, end)
		}
		return s
	}
	return edge(pl, 0), edge(pl, 1)
}

// addMiddleware puts the trigger's middleware on its route, each
// function's pool in Pools.
func addMiddleware(r *gateway.Route, t *spec.Trigger) {
	for _, f := range t.Middleware {
		r.Middleware = append(r.Middleware, f.Name)
		if r.Pools == nil {
			r.Pools = map[string]string{}
		}
		r.Pools[f.Name] = poolOf(f)
	}
}

func poolOf(f *spec.Function) string {
	if f.Pool == "" {
		return gateway.DefaultPool
	}
	return f.Pool
}

// Flatten expands a pipeline (and the pipelines it contains) into its
// function steps, each written "function k=v ..." as gateway.Route's
// Pipeline takes them (an external step as "URL timeout=10s"), and the
// pool of each function.
func Flatten(pl *spec.Pipeline) (steps []string, pools map[string]string) {
	pools = map[string]string{}
	var walk func(*spec.Pipeline)
	walk = func(pl *spec.Pipeline) {
		for _, s := range pl.Steps {
			switch {
			case s.Function != nil:
				steps = append(steps, stepString(s.Function.Name, s.Options))
				pools[s.Function.Name] = poolOf(s.Function)
			case s.Pipeline != nil:
				walk(s.Pipeline)
			case s.URL != "":
				steps = append(steps, externalStep(s)) // no pool
			}
		}
	}
	walk(pl)
	return steps, pools
}

// stepString writes a step in package pipeline's grammar.
func stepString(fn string, opts map[string]string) string {
	return pipeline.Step{Function: fn, Options: opts}.String()
}

// externalStep writes an external step as gateway.Route's Pipeline takes
// it: its URL, then its timeout when it has one.
func externalStep(s *spec.Step) string {
	if s.Timeout <= 0 {
		return s.URL
	}
	return s.URL + " timeout=" + s.Timeout.String()
}

func stepFunction(step string) string {
	name, _, _ := strings.Cut(step, " ")
	return name
}

// Placement maps each function of the project to its pool, for ad-hoc
// pipelines (`butter invoke "a | b"`) through the gateway.
func Placement(projects func(project string) *spec.Project) func(project, function string) (string, bool) {
	return func(project, function string) (string, bool) {
		p := projects(project)
		if p == nil {
			return "", false
		}
		for _, f := range p.Functions {
			if f.Name == function {
				return poolOf(f), true
			}
		}
		return "", false
	}
}

// Functions lists the project's functions as the gateway's OpenFaaS API
// shows them (gateway.WithFunctions): name, runtime, the handler or
// command as the process, pool, and the names of its secrets.
func Functions(p *spec.Project, revision string) []gateway.FunctionInfo {
	out := make([]gateway.FunctionInfo, 0, len(p.Functions))
	for _, f := range p.Functions {
		process := f.Handler
		if len(f.Command) > 0 {
			process = strings.Join(f.Command, " ")
		}
		var secrets []string
		for _, s := range f.Secrets {
			secrets = append(secrets, s.Name)
		}
		out = append(out, gateway.FunctionInfo{
			Project: p.Name, Name: f.Name, Revision: revision, Runtime: f.Runtime,
			Process: process, Pool: poolOf(f), Secrets: secrets,
		})
	}
	return out
}
