package gateway

import (
	"context"
	"net/http"
	"strconv"

	"github.com/butterfn/butter/telemetry"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// The gateway's span (docs/observability.md), when tracing is on
// (telemetry.On): one server span per request of a route, named
// "<METHOD> <route path>", the child of the client's traceparent when it
// sent one. The pools and the request events of queued and async calls
// get its traceparent, so the functions' spans are its children.

var tracer = otel.Tracer("github.com/butterfn/butter/gateway")

// routeSpan starts the span of request r of route rt, whose request id is
// id, and returns r with it in its context; r and a span that records
// nothing when tracing is off.
func routeSpan(r *http.Request, rt *route, id string) (*http.Request, trace.Span) {
	if !telemetry.On() {
		return r, trace.SpanFromContext(context.Background())
	}
	// The client's trace context, read by its canonical header names
	// (no lookup that allocates, and no context of its own on the way).
	var parent trace.SpanContext
	if tp := r.Header["Traceparent"]; len(tp) > 0 {
		var ts string
		if v := r.Header["Tracestate"]; len(v) > 0 {
			ts = v[0] // as the propagator reads it
		}
		parent = telemetry.ParseTraceparent(tp[0], ts)
	}
	route := rt.Path
	if rt.adhoc {
		route = "pipeline"
	}
	name := rt.pattern // "<METHOD> <route>" already, unless an ANY route's
	if m := len(r.Method); len(name) != m+1+len(route) || name[:m] != r.Method || name[m] != ' ' || name[m+1:] != route {
		name = r.Method + " " + route
	}
	ctx, span := telemetry.StartChild(r.Context(), parent, tracer, name, trace.SpanKindServer,
		attribute.String("http.request.method", r.Method),
		attribute.String("http.route", route),
		attribute.String("url.path", r.URL.Path),
		attribute.String("butter.project", rt.Project),
		attribute.String("butter.function", rt.target()),
		attribute.String("butter.mode", rt.Mode),
		attribute.String("butter.request_id", id),
	)
	return r.WithContext(ctx), span
}

// endRouteSpan ends a route's span with the response's status, an error
// status from 500 on (OpenTelemetry's HTTP server conventions).
func endRouteSpan(span trace.Span, status int, failure string) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attribute.Int("http.response.status_code", status))
	if status >= 500 {
		span.SetAttributes(attribute.String("error.type", strconv.Itoa(status)))
		span.SetStatus(codes.Error, failure)
	}
	span.End()
}

// injectSpan makes the span of ctx, when it records, the parent the pools
// and request events see (h's traceparent and tracestate), and reports
// whether it did; when it did not, injectTrace passes the client's on.
func injectSpan(ctx context.Context, h http.Header) bool {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return false
	}
	// As the W3C propagator injects it, by the canonical names (its
	// carrier would canonicalize them on every call).
	sc := span.SpanContext()
	h["Traceparent"] = []string{telemetry.Traceparent(sc)}
	if ts := sc.TraceState().String(); ts != "" {
		h["Tracestate"] = []string{ts}
	}
	return true
}
