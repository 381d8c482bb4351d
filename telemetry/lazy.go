package telemetry

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// Spans on a call's path are started with Start, not with the tracer:
// Start gives the span its ids, sampling decision and start time at once
// (what the callee's traceparent needs) but records the rest in a small
// struct of its own, and the OpenTelemetry SDK makes the real span, with
// those ids and times, only after it has ended, a window of spans at once
// (Later). The SDK's span costs a few microseconds to start and as many
// to end (allocations, option and attribute handling, the snapshot for
// the processors), and a call through the gateway and a pool starts three
// on its path: about 20 of the 30 µs that tracing added to a call at
// p50 (gateway BenchmarkTracing, bench/NOTES.md). What the exporter
// receives is the same span.

// sampler holds the sampler the process's tracer provider was set up
// with (Setup), nil when tracing is off: Start samples as the SDK will.
var sampler atomic.Pointer[sdktrace.Sampler]

// defaultSampler is true when sampler is parentbased_always_on, the
// default, which Start decides itself.
var defaultSampler atomic.Bool

// traceIDKey carries a trace id chosen before a root span starts.
type traceIDKey struct{}

// Start starts a span named name of kind kind under ctx's span (or a
// trace of its own), with attrs, as t.Start would, and returns ctx with
// it. The span is recorded by the SDK once it ends (see above); until
// then it is this package's, and IsRecording, SpanContext, AddEvent,
// SetAttributes, SetStatus, RecordError, AddLink and SetName behave as
// the SDK's do. With tracing off (no provider set up, or On false), it
// returns ctx and the non-recording span of ctx.
func Start(ctx context.Context, t trace.Tracer, name string, kind trace.SpanKind, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if sampler.Load() == nil || !On() {
		return ctx, trace.SpanFromContext(context.Background())
	}
	return start(ctx, trace.SpanContextFromContext(ctx), t, name, kind, attrs)
}

// StartChild is Start under parent, a span context read from a record or
// a request (ParseTraceparent), rather than under ctx's span: ctx gets no
// remote span context on the way, which a call's path would pay for.
func StartChild(ctx context.Context, parent trace.SpanContext, t trace.Tracer, name string, kind trace.SpanKind, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if sampler.Load() == nil || !On() {
		return ctx, trace.SpanFromContext(context.Background())
	}
	return start(ctx, parent, t, name, kind, attrs)
}

// start starts a span under parent (its ids, its sampling decision, a
// lazySpan) and returns ctx with it. attrs are copied into the span, so
// that the callers' variadic slices stay on their stacks.
func start(ctx context.Context, parent trace.SpanContext, t trace.Tracer, name string, kind trace.SpanKind, attrs []attribute.KeyValue) (context.Context, trace.Span) {
	sp := sampler.Load()
	if sp == nil {
		return ctx, trace.SpanFromContext(context.Background())
	}
	var tid trace.TraceID
	if parent.IsValid() {
		tid = parent.TraceID()
	} else {
		tid = newTraceID()
	}
	cfg := trace.SpanContextConfig{TraceID: tid, SpanID: newSpanID()}
	decision := sdktrace.RecordAndSample
	if defaultSampler.Load() {
		// parentbased_always_on, the default, decided here as the SDK
		// decides it (ParentBased(AlwaysSample())): as the parent was,
		// sampled without one. The sampler's call, its parameters and
		// its result cost a traced call more than the decision.
		if parent.IsValid() && !parent.IsSampled() {
			decision = sdktrace.Drop
		}
		cfg.TraceState = parent.TraceState()
	} else {
		pctx := ctx
		if parent.IsValid() && !parent.Equal(trace.SpanContextFromContext(ctx)) {
			pctx = trace.ContextWithSpanContext(ctx, parent)
		}
		res := (*sp).ShouldSample(sdktrace.SamplingParameters{ParentContext: pctx, TraceID: tid, Name: name, Kind: kind, Attributes: slices.Clone(attrs)})
		decision, cfg.TraceState = res.Decision, res.Tracestate
	}
	if decision == sdktrace.RecordAndSample {
		cfg.TraceFlags = parent.TraceFlags() | trace.FlagsSampled
	} else {
		cfg.TraceFlags = parent.TraceFlags() &^ trace.FlagsSampled
	}
	sc := trace.NewSpanContext(cfg)
	if decision == sdktrace.Drop {
		// Not recording, as the SDK's dropped spans: the context only.
		ctx = trace.ContextWithSpanContext(ctx, sc)
		return ctx, trace.SpanFromContext(ctx)
	}
	ls := &lazySpan{t: t, parent: parent, sc: sc, name: name, kind: kind, start: time.Now(), recording: true}
	if len(attrs) <= len(ls.inline) {
		ls.attrs = ls.inline[:copy(ls.inline[:], attrs)]
	} else {
		ls.attrs = slices.Clone(attrs)
	}
	return trace.ContextWithSpan(ctx, ls), ls
}

// lazySpan is a span Start started: what the SDK's span is made of, kept
// until it ends.
type lazySpan struct {
	embedded.Span
	t          trace.Tracer
	parent, sc trace.SpanContext
	kind       trace.SpanKind
	start      time.Time

	mu    sync.Mutex
	name  string
	attrs []attribute.KeyValue // in inline while they fit
	// inline holds the attributes of a span on a call's path (the
	// gateway's route span has nine at most): a span is then one
	// allocation, not two or three.
	inline    [10]attribute.KeyValue
	end       time.Time // once it has ended
	events    []lazyEvent
	links     []trace.Link
	code      codes.Code
	desc      string
	recording bool
}

// lazyEvent is an event, or a recorded error when err is not nil.
type lazyEvent struct {
	name string
	err  error
	at   time.Time
	opts []trace.EventOption
}

func (s *lazySpan) SpanContext() trace.SpanContext { return s.sc }

func (s *lazySpan) TracerProvider() trace.TracerProvider { return otel.GetTracerProvider() }

func (s *lazySpan) IsRecording() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recording
}

func (s *lazySpan) SetName(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recording {
		s.name = name
	}
}

func (s *lazySpan) SetAttributes(kv ...attribute.KeyValue) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recording {
		s.attrs = append(s.attrs, kv...) // in inline while they fit
	}
}

func (s *lazySpan) AddEvent(name string, opts ...trace.EventOption) {
	s.event(lazyEvent{name: name, at: time.Now(), opts: opts})
}

func (s *lazySpan) RecordError(err error, opts ...trace.EventOption) {
	if err != nil {
		s.event(lazyEvent{err: err, at: time.Now(), opts: opts})
	}
}

func (s *lazySpan) event(e lazyEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recording {
		s.events = append(s.events, e)
	}
}

func (s *lazySpan) AddLink(l trace.Link) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recording {
		s.links = append(s.links, l)
	}
}

// SetStatus sets the status as the SDK's span does: Ok wins over the
// rest, and a description is kept for Error only.
func (s *lazySpan) SetStatus(code codes.Code, desc string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.recording || code < s.code {
		return
	}
	s.code = code
	s.desc = ""
	if code == codes.Error {
		s.desc = desc
	}
}

// End ends the span at the time of its options (now by default) and
// leaves it to Later to be made with the SDK.
func (s *lazySpan) End(opts ...trace.SpanEndOption) {
	end := time.Now()
	if len(opts) > 0 {
		if c := trace.NewSpanEndConfig(opts...); !c.Timestamp().IsZero() {
			end = c.Timestamp()
		}
	}
	s.mu.Lock()
	if !s.recording {
		s.mu.Unlock()
		return
	}
	s.recording = false
	s.end = end
	s.mu.Unlock()
	later.add(s) // no closure to allocate: s is the work
}

// run records s (Later's work).
func (s *lazySpan) run() { s.record(s.end) }

// record makes the span with the SDK, with its ids, times and all it
// recorded. It runs after End, so nothing changes s any more.
func (s *lazySpan) record(end time.Time) {
	ctx := WithSpanID(trace.ContextWithSpanContext(context.Background(), s.parent), s.sc.SpanID())
	if !s.parent.IsValid() {
		ctx = context.WithValue(ctx, traceIDKey{}, s.sc.TraceID())
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(s.kind), trace.WithTimestamp(s.start), trace.WithAttributes(s.attrs...)}
	if len(s.links) > 0 {
		opts = append(opts, trace.WithLinks(s.links...))
	}
	_, sp := s.t.Start(ctx, s.name, opts...)
	for _, e := range s.events {
		eo := append(e.opts[:len(e.opts):len(e.opts)], trace.WithTimestamp(e.at))
		if e.err != nil {
			sp.RecordError(e.err, eo...)
		} else {
			sp.AddEvent(e.name, eo...)
		}
	}
	if s.code != codes.Unset {
		sp.SetStatus(s.code, s.desc)
	}
	sp.End(trace.WithTimestamp(end))
}

// laterQueue holds span work (lazy spans ended, a pool's handler spans)
// until a timer runs it, a window at once. Running each right away, or
// in a goroutine of its own, put it on the path of the call it belongs
// to: on a small machine that goroutine ran before the answer reached the
// caller.
type laterQueue struct {
	mu    sync.Mutex
	work  []work
	timer *time.Timer
}

// work is what Later runs: a lazySpan that ended, or a func.
type work interface{ run() }

type funcWork func()

func (f funcWork) run() { f() }

var later laterQueue

// laterDelay is how long span work waits for its window to be run;
// laterMax runs a window at once when it holds that much.
const (
	laterDelay = 20 * time.Millisecond
	laterMax   = 4096
)

// Later runs fn, work that records spans, within laterDelay, with the
// work queued beside it. The spans' timestamps must be taken before: the
// delay changes none of them. Flush runs what is queued at once.
func Later(fn func()) { later.add(funcWork(fn)) }

func (q *laterQueue) add(w work) {
	q.mu.Lock()
	q.work = append(q.work, w)
	switch {
	case len(q.work) >= laterMax:
		if q.timer != nil {
			q.timer.Stop()
			q.timer = nil
		}
		go Flush()
	case q.timer == nil:
		q.timer = time.AfterFunc(laterDelay, Flush)
	}
	q.mu.Unlock()
}

// Flush runs the span work queued so far (Later). The shutdown of Setup
// runs it before the provider's, and a pool's Close before it returns,
// so that no span is left behind.
func Flush() {
	q := &later
	for {
		q.mu.Lock()
		work := q.work
		q.work = nil
		if q.timer != nil {
			q.timer.Stop()
			q.timer = nil
		}
		q.mu.Unlock()
		if len(work) == 0 {
			return
		}
		for _, w := range work {
			w.run() // which may queue more (a lazy span ended by w)
		}
	}
}
