package pool

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/sdk/go/proto"
	"github.com/butterfn/butter/telemetry"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Spans of the pool (docs/observability.md), when tracing is on
// (telemetry.On): an HTTP call's "invoke <function>" (server), a stream
// event's "process <stream> <function>" (consumer), and inside either,
// "start instance" when the call waits for a new instance, and the call
// on its instance, "call <function>". A call's records (outputs, emits,
// replies) carry its span's traceparent in ce_traceparent, so the span
// of the function that reads one is its child: one trace from the
// gateway's route to the last event. With tracing off, none of this runs
// and ce_traceparent passes on as callTrace says.

var tracer = otel.Tracer("github.com/butterfn/butter/plugins/pool")

// noSpan is the span of a call that is not traced: every method a no-op.
var noSpan = trace.SpanFromContext(context.Background())

// httpSpan starts the span of an HTTP call of function fn whose request
// id is id, the child of the caller's traceparent in meta, and makes the
// call's ce_traceparent (what its worker and its records see) its own.
func (p *Pool) httpSpan(ctx context.Context, fn, id string, meta map[string]string) (context.Context, trace.Span) {
	if !telemetry.On() {
		return ctx, noSpan
	}
	f := p.fns[fn]
	parent := telemetry.ParseTraceparent(meta["traceparent"], meta["tracestate"]) // none: a trace of its own
	attrs := p.callAttrs(fn, id, "http")
	ctx, span := telemetry.StartChild(ctx, parent, tracer, f.spanNames.invoke, trace.SpanKindServer, attrs[:]...)
	if tp := telemetry.Traceparent(span.SpanContext()); tp != "" {
		meta[broker.HeaderTraceparent] = tp
	}
	return ctx, span
}

// callAttrs are the attributes of a call's span: OpenTelemetry's FaaS
// conventions, and Butter's names.
// They are an array, which stays on the caller's stack when the span
// copies it (telemetry.Start).
func (p *Pool) callAttrs(fn, id, trigger string) [4]attribute.KeyValue {
	return [4]attribute.KeyValue{
		attribute.String("faas.trigger", trigger),
		attribute.String("faas.invocation_id", id),
		attribute.String("butter.project", p.cfg.Project),
		attribute.String("butter.function", fn),
	}
}

// streamSpan starts the span of the call of o.fn on stream event o.input,
// the child of the event's ce_traceparent (a new trace when it has none),
// and makes it o's trace context.
func (c *consumer) streamSpan(o *origin, tp string, hasTrace bool) {
	if !telemetry.On() {
		return
	}
	parent := context.Background()
	if hasTrace {
		parent = telemetry.Context(parent, tp, "")
	}
	r := o.input
	base := c.p.callAttrs(o.fn, o.id, "pubsub")
	attrs := append(base[:],
		attribute.String("messaging.system", "kafka"),
		attribute.String("messaging.operation.type", "process"),
		attribute.String("messaging.destination.name", r.Topic),
		attribute.String("butter.stream", o.stream),
		attribute.String("messaging.destination.partition.id", o.partition),
		attribute.Int64("messaging.kafka.offset", r.Offset),
	)
	if len(r.Key) > 0 {
		attrs = append(attrs, attribute.String("messaging.kafka.message.key", string(r.Key)))
	}
	_, span := telemetry.Start(parent, tracer, "process "+o.stream+" "+o.fn, trace.SpanKindConsumer, attrs...)
	if t := telemetry.Traceparent(span.SpanContext()); t != "" {
		o.span = span
		o.traceparent, o.hasTrace, o.spanned = t, true, true
	}
}

// endSpan ends o's span, if it has one, with err's outcome.
func (o *origin) endSpan(err error) {
	if o == nil || o.span == nil {
		return
	}
	endSpan(o.span, err)
	o.span = nil
}

// endSpan ends span with err's outcome: an error status with its type.
func endSpan(span trace.Span, err error, opts ...trace.SpanEndOption) {
	if err != nil {
		f := failureOf("", err)
		span.SetAttributes(attribute.String("error.type", f.Type))
		span.SetStatus(codes.Error, f.Message)
	}
	span.End(opts...)
}

// spanNames are a function's span names, made once: a traced call's
// path would otherwise make each.
type spanNames struct{ invoke, call string }

func newSpanNames(fn string) spanNames {
	return spanNames{invoke: "invoke " + fn, call: "call " + fn}
}

// childSpan starts a span under ctx's, when that one records.
func childSpan(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, noSpan
	}
	return telemetry.Start(ctx, tracer, name, trace.SpanKindInternal, attrs...)
}

// spanCtx is o's span's context for the call's own spans, ctx when o has
// none.
func (o *origin) spanCtx(ctx context.Context) context.Context {
	if o == nil || o.span == nil {
		return ctx
	}
	return trace.ContextWithSpan(ctx, o.span)
}

// pidAttr is an instance's pid as a span attribute.
func pidAttr(pid int) attribute.KeyValue {
	return attribute.String("process.pid", strconv.Itoa(pid))
}

// sendTrace is the ce_traceparent of a record of kind ("output" or
// "emit") the call of o produces to topic: with tracing on, that of a
// producer span "send <topic>", the child of the call's, which the span
// of the function that reads the record is the child of; else the call's
// own trace context.
func (o *origin) sendTrace(topic, kind string) string {
	if o.traceparent == "" || !telemetry.On() {
		return o.traceparent
	}
	_, span := telemetry.Start(telemetry.Context(context.Background(), o.traceparent, ""), tracer, "send "+topic, trace.SpanKindProducer,
		attribute.String("messaging.system", "kafka"),
		attribute.String("messaging.operation.type", "send"),
		attribute.String("messaging.destination.name", topic),
		attribute.String("butter.function", o.fn),
		attribute.String("butter.record", kind),
	)
	tp := telemetry.Traceparent(span.SpanContext())
	span.End()
	if tp == "" {
		return o.traceparent
	}
	return tp
}

// spanMeta is a call's metadata for a worker that records the handler's
// span: a copy of meta whose ce_traceparent is the call's span, asking for
// it (proto.MetaSpan).
func spanMeta(meta map[string]string, span trace.Span) map[string]string {
	m := make(map[string]string, len(meta)+2)
	for k, v := range meta {
		m[k] = v
	}
	m[broker.HeaderTraceparent] = telemetry.Traceparent(span.SpanContext())
	m[proto.MetaSpan] = "1"
	return m
}

// handlerSpan exports the span the worker recorded of inv's handler, if
// any, under the call's span in ctx, with the id the handler's code saw.
func (f *fnPool) handlerSpan(ctx context.Context, sm *proto.SpanMsg, err error) {
	if sm == nil || !trace.SpanFromContext(ctx).IsRecording() {
		return
	}
	var id trace.SpanID
	b, derr := hex.DecodeString(sm.ID)
	if derr != nil || len(b) != len(id) {
		return // not a span id: the worker's span is dropped, the call's stays
	}
	copy(id[:], b)
	attrs := []attribute.KeyValue{attribute.String("butter.function", f.cfg.Name)}
	for k, v := range sm.Attributes {
		attrs = append(attrs, anyAttr(k, v))
	}
	_, span := tracer.Start(telemetry.WithSpanID(ctx, id), "handler "+f.cfg.Name,
		trace.WithTimestamp(time.Unix(0, sm.StartNS)), trace.WithAttributes(attrs...))
	for _, e := range sm.Events {
		var ea []attribute.KeyValue
		for k, v := range e.Attributes {
			ea = append(ea, anyAttr(k, v))
		}
		span.AddEvent(e.Name, trace.WithTimestamp(time.Unix(0, e.TimeNS)), trace.WithAttributes(ea...))
	}
	if err != nil {
		fl := failureOf(f.cfg.Name, err)
		span.SetAttributes(attribute.String("error.type", fl.Type))
		span.SetStatus(codes.Error, fl.Message)
	}
	span.End(trace.WithTimestamp(time.Unix(0, sm.EndNS)))
}

// anyAttr is a JSON value as a span attribute: strings, numbers and
// booleans as themselves, anything else as its JSON text.
func anyAttr(k string, v any) attribute.KeyValue {
	switch x := v.(type) {
	case string:
		return attribute.String(k, x)
	case bool:
		return attribute.Bool(k, x)
	case float64:
		if x == float64(int64(x)) {
			return attribute.Int64(k, int64(x))
		}
		return attribute.Float64(k, x)
	}
	b, _ := json.Marshal(v)
	return attribute.String(k, string(b))
}
