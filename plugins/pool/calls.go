package pool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/butterfn/butter/breaker"
	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/plugins/runtime"
	"github.com/butterfn/butter/sdk/go/proto"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Emit-and-await: a worker's context call "call" (docs/worker-protocol.md,
// "call") sends a value to a function or a stream its spec's calls list
// declares, over the request/response path of queued routes
// (broker.Requester: a request record carrying a reply-to topic, answered
// by the pool that consumes the target), and answers the worker with the
// reply or the callee's typed error. Each (caller, target) pair has a
// circuit breaker (package breaker): after BreakerThreshold consecutive
// failures its calls fail at once with CircuitOpen, until a trial call
// after BreakerDelay succeeds. Its state is the metric
// butter_breaker_state{function,target}.

// CallTarget is one target of a function's context calls (the spec's
// calls list).
type CallTarget struct {
	// Kind is "function" or "stream".
	Kind string `json:"kind" codec:"kind"`
	// Name is the function's or the stream's name in the spec.
	Name string `json:"name" codec:"name"`
	// Topic is where requests go: the function's request topic
	// (names.RequestTopic), which its pool consumes, or the stream's
	// topic, whose consuming functions reply.
	Topic string `json:"topic" codec:"topic"`
}

// Ref is the target as the spec and the metrics name it: function.<name>
// or stream.<name>.
func (t CallTarget) Ref() string { return t.Kind + "." + t.Name }

// The breaker's defaults (WithBreaker).
const (
	BreakerThreshold = 5
	BreakerDelay     = 10 * time.Second
)

// WithBreaker sets the circuit breakers of context calls: they open after
// threshold consecutive failures and let a trial call through delay after
// they opened (BreakerThreshold and BreakerDelay by default).
func WithBreaker(threshold int, delay time.Duration) Option {
	return func(o *options) { o.breaker = breakerOptions{threshold: threshold, delay: delay} }
}

type breakerOptions struct {
	threshold int
	delay     time.Duration
}

// maxCallValue bounds a call's value and its reply: a REPLY frame carries
// the reply in base64 (4/3 of its size) within proto.MaxFrame.
const maxCallValue = 8 << 20

// checkCalls checks a function's calls list: each target a function's
// request topic or a stream's topic of the project, each once.
func checkCalls(c *Config, f FunctionConfig) error {
	seen := map[string]bool{}
	for _, t := range f.Calls {
		var want string
		switch t.Kind {
		case "function":
			want = names.RequestTopic(c.Project, t.Name)
		case "stream":
			want = names.Topic(c.Project, t.Name)
		default:
			return fmt.Errorf("pool config: function %s: calls: target %q has kind %q; want function or stream", f.Name, t.Name, t.Kind)
		}
		if !names.Valid(t.Name) || t.Topic != want {
			return fmt.Errorf("pool config: function %s: calls: %s goes to topic %q; want %q", f.Name, t.Ref(), t.Topic, want)
		}
		if seen[t.Ref()] {
			return fmt.Errorf("pool config: function %s: calls: %s listed twice", f.Name, t.Ref())
		}
		seen[t.Ref()] = true
	}
	return nil
}

// callers answers the context calls "call" of a pool's functions.
type callers struct {
	p        *Pool
	breakers map[string]map[string]*breaker.Breaker // function → target ref → breaker
	metrics  *callMetrics

	mu  sync.Mutex
	req *broker.Requester // nil until connect, or without Kafka
}

// newCallers prepares the breakers of every declared target, closed.
func newCallers(p *Pool) *callers {
	cs := &callers{p: p, breakers: map[string]map[string]*breaker.Breaker{}, metrics: p.opts.metrics.calls}
	threshold, delay := p.opts.breaker.threshold, p.opts.breaker.delay
	if threshold <= 0 {
		threshold = BreakerThreshold
	}
	if delay <= 0 {
		delay = BreakerDelay
	}
	for _, fc := range p.cfg.Functions {
		for _, t := range fc.Calls {
			if cs.breakers[fc.Name] == nil {
				cs.breakers[fc.Name] = map[string]*breaker.Breaker{}
			}
			cs.breakers[fc.Name][t.Ref()] = breaker.New(threshold, delay, nil)
		}
	}
	if len(cs.breakers) > 0 {
		cs.metrics.add(cs)
	}
	return cs
}

// connect starts the requester the pool's functions call through, when
// one of them declares calls: it creates the targets' topics that do not
// exist yet (as the project's stream blocks declare them, or with 3
// partitions) and a reply topic of this pool's own.
func (cs *callers) connect(ctx context.Context, kafka broker.Config, base []kgo.Opt) error {
	if len(cs.breakers) == 0 {
		return nil
	}
	declared := map[string]TopicConfig{}
	for _, tc := range cs.p.cfg.Topics {
		declared[tc.Name] = tc
	}
	var topics []broker.Topic
	for _, fc := range cs.p.cfg.Functions {
		for _, t := range fc.Calls {
			bt := broker.Topic{Name: t.Topic, Partitions: 3}
			if tc, ok := declared[t.Topic]; ok {
				bt = broker.Topic{Name: tc.Name, Partitions: tc.Partitions, Compact: tc.Compact, Retention: duration(tc.Retention)}
			}
			topics = append(topics, bt)
		}
	}
	admCl, err := kgo.NewClient(base...)
	if err != nil {
		return fmt.Errorf("reach Kafka for context calls: %w", err)
	}
	defer admCl.Close()
	if err := broker.EnsureTopics(ctx, kadm.NewClient(admCl), topics); err != nil {
		return fmt.Errorf("create the topics of context calls' targets: %w", err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	reply := names.ReplyTopic("pool-" + cs.p.cfg.Project + "-" + cs.p.cfg.Pool + "-" + hex.EncodeToString(b[:]))
	req, err := broker.NewRequester(ctx, kafka, reply)
	if err != nil {
		return fmt.Errorf("start the requester of context calls (reply topic %s): %w", reply, err)
	}
	cs.mu.Lock()
	cs.req = req
	cs.mu.Unlock()
	return nil
}

// close stops the requester; calls still waiting fail.
func (cs *callers) close() {
	cs.mu.Lock()
	req := cs.req
	cs.req = nil
	cs.mu.Unlock()
	if req != nil {
		req.Close()
	}
}

// wrap answers op "call" of function f's worker and passes every other
// context call to next.
func (cs *callers) wrap(f *fnPool, next runtime.CallHandler) runtime.CallHandler {
	return func(ctx context.Context, call proto.CallMsg) proto.ReplyMsg {
		if call.Op == "call" {
			return cs.call(ctx, f, call)
		}
		if next == nil {
			return proto.ReplyMsg{Error: "unsupported op " + call.Op}
		}
		return next(ctx, call)
	}
}

// wrapBatch is wrap for the context calls of a batch's events.
func (cs *callers) wrapBatch(f *fnPool, next func(context.Context, int, proto.CallMsg) proto.ReplyMsg) func(context.Context, int, proto.CallMsg) proto.ReplyMsg {
	return func(ctx context.Context, index int, call proto.CallMsg) proto.ReplyMsg {
		if call.Op == "call" {
			return cs.call(ctx, f, call)
		}
		if next == nil {
			return proto.ReplyMsg{Error: "unsupported op " + call.Op}
		}
		return next(ctx, index, call)
	}
}

// target resolves the name a worker called to a declared target of f, or
// says why it may not call it.
func target(f FunctionConfig, name string) (CallTarget, string) {
	kind, bare, prefixed := strings.Cut(name, ".")
	if !prefixed || (kind != "function" && kind != "stream") {
		kind, bare = "", name
	}
	var found []CallTarget
	declared := make([]string, 0, len(f.Calls))
	for _, t := range f.Calls {
		declared = append(declared, t.Ref())
		if t.Name == bare && (kind == "" || kind == t.Kind) {
			found = append(found, t)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], ""
	case len(found) > 1:
		return CallTarget{}, fmt.Sprintf("call target %q is ambiguous: function %s calls both function.%s and stream.%s; name one of them", name, f.Name, bare, bare)
	}
	ref := name
	if kind == "" {
		ref = "function." + name + " (or stream." + name + ")"
	}
	how := fmt.Sprintf("declare it in function %s's spec: calls = [%s]", f.Name, ref)
	if len(declared) == 0 {
		return CallTarget{}, fmt.Sprintf("unknown call target %q: function %s may call no function or stream: its spec has no calls list; %s", name, f.Name, how)
	}
	slices.Sort(declared)
	return CallTarget{}, fmt.Sprintf("unknown call target %q: function %s may call only the targets of its calls list (%s); %s", name, f.Name, strings.Join(declared, ", "), how)
}

// call sends a worker's call to its target and answers with the reply,
// the callee's typed error, a Timeout, or CircuitOpen when the target's
// breaker is open.
func (cs *callers) call(ctx context.Context, f *fnPool, call proto.CallMsg) proto.ReplyMsg {
	t, refused := target(f.cfg, call.Target)
	if refused != "" {
		return proto.ReplyMsg{Error: refused}
	}
	ref := t.Ref()
	if len(call.Value) > maxCallValue {
		return proto.ReplyMsg{Error: fmt.Sprintf("call to %s: a value of %d bytes is more than a call carries (%d)", ref, len(call.Value), maxCallValue)}
	}
	cs.mu.Lock()
	req := cs.req
	cs.mu.Unlock()
	if req == nil {
		return proto.ReplyMsg{ErrorType: "Unavailable", Error: fmt.Sprintf("call to %s: this pool has no Kafka to call through: run it with -kafka-brokers, $BUTTER_KAFKA_BROKERS or a kafka block in the project", ref)}
	}
	b := cs.breakers[f.cfg.Name][ref]
	ok, retryIn := b.Allow()
	if !ok {
		cs.metrics.count(f.cfg.Name, ref, proto.CircuitOpen)
		msg := fmt.Sprintf("call to %s not sent: its circuit breaker is open after %s's calls to it failed; ", ref, f.cfg.Name)
		if retryIn > 0 {
			msg += fmt.Sprintf("a trial call goes through in %s", retryIn.Round(time.Millisecond))
		} else {
			msg += "a trial call is in flight"
		}
		return proto.ReplyMsg{ErrorType: proto.CircuitOpen, Error: msg}
	}
	deadline, _ := ctx.Deadline()
	if call.TimeoutMS > 0 {
		if d := time.Now().Add(time.Duration(call.TimeoutMS) * time.Millisecond); deadline.IsZero() || d.Before(deadline) {
			deadline = d
		}
	}
	if deadline.IsZero() {
		deadline = time.Now().Add(f.timeout)
	}
	rec := broker.NewEvent(t.Topic, []byte(call.Key), call.Value, "", names.EventSource(cs.p.cfg.Project, f.cfg.Name), "butter.request")
	out, err := req.Send(ctx, rec, deadline)
	var pe *proto.Error
	switch {
	case err == nil:
		b.Done(true)
		cs.metrics.count(f.cfg.Name, ref, "ok")
		if len(out) > maxCallValue {
			return proto.ReplyMsg{ErrorType: proto.PostconditionFailed, Error: fmt.Sprintf("the reply of %s has %d bytes, more than a call carries (%d)", ref, len(out), maxCallValue)}
		}
		return proto.ReplyMsg{OK: true, Value: out}
	case errors.As(err, &pe):
		// The callee answered: it is up, and refused the input. Any
		// other failure (its own, a Timeout) counts towards opening.
		b.Done(pe.Type == proto.PreconditionFailed)
		cs.metrics.count(f.cfg.Name, ref, pe.Type)
		return proto.ReplyMsg{ErrorType: pe.Type, Error: pe.Message}
	case ctx.Err() != nil:
		// The caller's call ended (its deadline, a cancel): not the
		// target's failure.
		b.Release()
		typ := "Canceled"
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			typ = proto.Timeout
		}
		cs.metrics.count(f.cfg.Name, ref, typ)
		return proto.ReplyMsg{ErrorType: typ, Error: fmt.Sprintf("call to %s: %v", ref, err)}
	}
	b.Done(false)
	cs.metrics.count(f.cfg.Name, ref, "Unavailable")
	return proto.ReplyMsg{ErrorType: "Unavailable", Error: fmt.Sprintf("call to %s: %v", ref, err)}
}

// callMetrics are the metrics of context calls: the breakers' states,
// read when scraped, and the calls by outcome.
type callMetrics struct {
	state *prometheus.Desc
	total *prometheus.CounterVec

	mu      sync.Mutex
	callers []*callers
}

func newCallMetrics(reg *prometheus.Registry) *callMetrics {
	m := &callMetrics{
		state: prometheus.NewDesc("butter_breaker_state", "State of the circuit breaker of a function's context calls to a target: 0 closed, 1 open (calls fail at once with CircuitOpen), 2 half-open (one trial call goes through).", []string{"function", "target"}, nil),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "butter_context_calls_total", Help: "Context calls (emit and await) by calling function, target and outcome (ok, or the error type: CircuitOpen when the breaker refused it)."}, []string{"function", "target", "outcome"}),
	}
	reg.MustRegister(m, m.total)
	return m
}

func (m *callMetrics) add(cs *callers) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.callers = append(m.callers, cs)
}

func (m *callMetrics) count(function, target, outcome string) {
	m.total.WithLabelValues(function, target, outcome).Inc()
}

// Describe implements prometheus.Collector.
func (m *callMetrics) Describe(ch chan<- *prometheus.Desc) { ch <- m.state }

// Collect implements prometheus.Collector.
func (m *callMetrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, cs := range m.callers {
		for fn, bs := range cs.breakers {
			for ref, b := range bs {
				ch <- prometheus.MustNewConstMetric(m.state, prometheus.GaugeValue, float64(b.State()), fn, ref)
			}
		}
	}
}
