package spec

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/butterfn/butter/names"
)

// validate runs the checks that span blocks: routes, pipeline cycles and
// stream loops. Per-block checks happen while decoding.
func (d *decoder) validate(p *Project) {
	d.addOpenAPIRoutes(p)
	d.fillMiddleware(p)
	d.checkRoutes(p)
	d.checkPipelineCycles(p)
	fillPipelineTimeouts(p)
	for _, f := range p.Functions {
		for _, t := range f.Triggers {
			if t.Type == TriggerStream && t.Stream != nil && t.Stream == f.Output {
				r := t.DeclRange
				d.warnf(&r, "Function feeds itself", "Function %q reads stream %q and writes its output back to it, so every event makes another. If that is intended, make sure the function stops the loop.", f.Name, t.Stream.Name)
			}
			if t.Type == TriggerStream && t.Stream != nil && t.Stream == f.DeadLetter {
				r := t.DeclRange
				d.errorf(&r, "Dead letters loop back", "Function %q reads stream %q and also sends its failures there, so a failing event is retried forever. Use another dead_letter stream.", f.Name, t.Stream.Name)
			}
		}
	}
	for _, f := range p.Functions {
		if f.ExecMode == "lines" && f.Instances.Concurrency > 1 {
			r := f.ExecModeRange
			d.errorf(&r, "Concurrency of a lines-mode function", "Function %q has mode = \"lines\", whose process takes one event at a time, and instances { concurrency = %d }: remove concurrency (scale with instances { max = ... }), or use mode = \"fork\".", f.Name, f.Instances.Concurrency)
		}
	}
	d.checkExactlyOnce(p)
	d.checkUnsandboxed(p)
	d.checkCalls(p)
	for _, pl := range p.Pipelines {
		for _, s := range pl.Steps {
			if s.Pipeline != nil && s.Options != nil {
				r := s.Range
				d.errorf(&r, "Options on a pipeline step", "Options reach a function next to its input; step %q is a pipeline. Put the options on the function steps inside it.", s.Pipeline.Name)
			}
		}
	}
}

// checkUnsandboxed refuses sandbox = false in a pool that hosts a function
// with secrets: the unconfined instances could read the secrets from
// their neighbours' /proc/<pid>/environ, and such a pool refuses to start.
//
// A pool that decrypts (a connector's <arg>_encrypted credential, the
// kafka block's password_encrypted) holds the project's Vault token,
// which unconfined instances could read as well: the same rule holds.
func (d *decoder) checkUnsandboxed(p *Project) {
	holders := map[string]string{} // pool -> a function with secrets
	for _, f := range p.Functions {
		encrypted := false
		for k := range f.Options {
			encrypted = encrypted || (f.Connector != "" && strings.HasSuffix(k, EncryptedSuffix))
		}
		if (len(f.Secrets) > 0 || encrypted) && holders[f.Pool] == "" {
			holders[f.Pool] = f.Name
		}
	}
	kafkaToken := p.Kafka != nil && p.Kafka.SASLPasswordEncrypted != ""
	for _, f := range p.Functions {
		if f.NoSandbox && kafkaToken && holders[f.Pool] == "" {
			r := f.SandboxRange
			d.errorf(&r, "Unsandboxed function beside the Vault token", "Function %q has sandbox = false, and its pool %q holds the project's Vault token to decrypt the kafka block's password_encrypted: the function could read the token. Remove sandbox = false, or give the password with password_env.", f.Name, f.Pool)
			continue
		}
		if h := holders[f.Pool]; f.NoSandbox && h != "" {
			r := f.SandboxRange
			if h == f.Name {
				d.errorf(&r, "Secrets without a sandbox", "Function %q declares secrets and sandbox = false: its neighbours in pool %q could read them. Remove sandbox = false.", f.Name, f.Pool)
			} else {
				d.errorf(&r, "Unsandboxed neighbour of secrets", "Function %q has sandbox = false in pool %q, where function %q declares secrets (or encrypted credentials, which that pool decrypts with the project's Vault token) that it could then read. Remove sandbox = false, or move one of the two to another pool (pool = \"...\").", f.Name, f.Pool, h)
			}
		}
	}
}

// checkRoutes reports a route on the gateway's own paths, and two http
// triggers that the gateway cannot route apart: the same method (ANY
// overlaps every method) and the same path shape, or patterns that both
// match some request with neither more specific (RoutesConflict). Routes
// from OpenAPI documents are checked after the trigger blocks, so that a
// collision between the two is reported at the document.
func (d *decoder) checkRoutes(p *Project) {
	type owner struct {
		what string
		t    *Trigger
	}
	var blocks, documents []owner
	add := func(what string, t *Trigger) {
		if t.Type != TriggerHTTP || t.Path == "" {
			return
		}
		if t.OpenAPI != "" {
			documents = append(documents, owner{fmt.Sprintf("%s (operation %q of %s)", what, t.OperationID, d.displayName(t.OpenAPI)), t})
		} else {
			blocks = append(blocks, owner{what, t})
		}
	}
	for _, f := range p.Functions {
		for _, t := range f.Triggers {
			add("function "+f.Name, t)
		}
	}
	for _, pl := range p.Pipelines {
		for _, t := range pl.Triggers {
			add("pipeline "+pl.Name, t)
		}
	}
	// Documents in the order the project lists them.
	order := map[string]int{}
	for i, path := range p.OpenAPI {
		order[path] = i
	}
	sort.SliceStable(documents, func(i, j int) bool { return order[documents[i].t.OpenAPI] < order[documents[j].t.OpenAPI] })
	all := append(blocks, documents...)
	for i, b := range all {
		r := b.t.RouteRange
		from := ""
		if b.t.OpenAPI != "" {
			from = fmt.Sprintf(", from operation %q of %s,", b.t.OperationID, d.displayName(b.t.OpenAPI))
		}
		if why := GatewayRoute(b.t.Route()); why != "" {
			d.errorf(&r, "Route on the gateway's own path", "%q%s cannot be served: %s. Route it under a path of your own, such as %q.", b.t.Route(), from, why, b.t.Method+" /api"+b.t.Path)
			continue
		}
		if _, path, _ := strings.Cut(b.t.Route(), " "); names.OpenFaaSPath(path) {
			d.warnf(&r, "Route on a path of the OpenFaaS API", "%q%s is on a path that a gateway started with -openfaas serves itself (%s, %s, %s): such a gateway will not serve this project's routes until it moves. Route it under a path of your own, such as %q, unless no gateway of yours serves the OpenFaaS API.", b.t.Route(), from, names.OpenFaaSFunctionPrefix, names.OpenFaaSAsyncPrefix, names.OpenFaaSSystemPrefix, b.t.Method+" /api"+b.t.Path)
		}
		for _, a := range all[:i] {
			why, same := routesConflict(a.t.Route(), b.t.Route())
			if why == "" {
				continue
			}
			summary := "Duplicate route"
			if !same {
				summary = "Overlapping routes"
			}
			d.errorf(&r, summary, "%q%s is already routed to %s at %s, and %s. Change the method or the path of one of them.", b.t.Route(), from, a.what, at(a.t.RouteRange), why)
			break
		}
	}
}

// checkPipelineCycles reports a pipeline that contains itself, directly
// or through other pipelines.
func (d *decoder) checkPipelineCycles(p *Project) {
	const (
		unvisited = iota
		visiting
		done
	)
	state := map[*Pipeline]int{}
	var stack []string
	var visit func(pl *Pipeline)
	visit = func(pl *Pipeline) {
		state[pl] = visiting
		stack = append(stack, pl.Name)
		for _, s := range pl.Steps {
			if s.Pipeline == nil {
				continue
			}
			switch state[s.Pipeline] {
			case visiting:
				start := 0
				for i, n := range stack {
					if n == s.Pipeline.Name {
						start = i
					}
				}
				cycle := append(append([]string{}, stack[start:]...), s.Pipeline.Name)
				r := s.Range
				d.errorf(&r, "Pipeline cycle", "The pipelines form a cycle: %s. A pipeline cannot contain itself; break the cycle by removing one of these steps.", strings.Join(cycle, " → "))
			case unvisited:
				visit(s.Pipeline)
			}
		}
		stack = stack[:len(stack)-1]
		state[pl] = done
	}
	for _, pl := range p.Pipelines {
		if state[pl] == unvisited {
			visit(pl)
		}
	}
}

// fillPipelineTimeouts gives each pipeline route that sets no timeout the
// sum of its steps' timeouts (nested pipelines included), so that every
// step may use its whole timeout even when it waits for all its input.
func fillPipelineTimeouts(p *Project) {
	memo := map[*Pipeline]time.Duration{}
	visiting := map[*Pipeline]bool{}
	var total func(pl *Pipeline) time.Duration
	total = func(pl *Pipeline) time.Duration {
		if v, ok := memo[pl]; ok {
			return v
		}
		if visiting[pl] {
			return 0 // a cycle, reported by checkPipelineCycles
		}
		visiting[pl] = true
		var sum time.Duration
		for _, s := range pl.Steps {
			switch {
			case s.Function != nil:
				sum += s.Function.Timeout
			case s.Pipeline != nil:
				sum += total(s.Pipeline)
			case s.URL != "":
				sum += s.Timeout
			}
		}
		visiting[pl] = false
		memo[pl] = sum
		return sum
	}
	for _, pl := range p.Pipelines {
		for _, t := range pl.Triggers {
			if t.Type == TriggerHTTP && t.Timeout == 0 {
				t.Timeout = total(pl)
			}
		}
	}
}

// checkExactlyOnce refuses exactly_once where the function's state would
// also be written outside the stream's transactions: a function with a
// state block must then take every event through exactly-once stream
// triggers, since an HTTP call, a tick or an at-least-once stream writes
// its state changes straight to the changelog, racing the transactions
// and applied even when a transaction aborts.
func (d *decoder) checkExactlyOnce(p *Project) {
	for _, f := range p.Functions {
		var eos *Trigger
		for _, t := range f.Triggers {
			if t.Type == TriggerStream && t.ExactlyOnce {
				eos = t
				break
			}
		}
		if eos == nil || f.State == nil {
			continue
		}
		r := eos.ExactlyOnceRange
		for _, t := range f.Triggers {
			switch {
			case t.Type == TriggerStream && !t.ExactlyOnce && t.Stream != nil:
				d.errorf(&r, "Exactly-once state written at least once", "Function %q has a state block and exactly_once = true on its trigger of stream %q, but not on its trigger of stream %q at %s: that trigger would write the state outside the transactions. Set exactly_once = true on every stream trigger of the function, or on none.", f.Name, streamName(eos), t.Stream.Name, at(t.DeclRange))
			case t.Type == TriggerHTTP || t.Type == TriggerCron:
				d.errorf(&r, "Exactly-once state written at least once", "Function %q has a state block and exactly_once = true, but also trigger %q at %s, whose calls would write the state outside the stream's transactions. Move that trigger to a function of its own that emits to the stream, or drop exactly_once.", f.Name, t.Type, at(t.DeclRange))
			}
		}
	}
}

// streamName is the name of a stream trigger's stream, "" when the
// reference did not resolve (an error of its own).
func streamName(t *Trigger) string {
	if t.Stream == nil {
		return ""
	}
	return t.Stream.Name
}
