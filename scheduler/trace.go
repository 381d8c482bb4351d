package scheduler

import (
	"net/http"
	"strings"

	"github.com/butterfn/butter/telemetry"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// The control plane's spans (docs/observability.md), when tracing is on
// (telemetry.On): a server span for each request of the API that changes
// something (every method but GET and HEAD: a deploy, a rollback, a key,
// a token), named for its route, the child of the caller's traceparent;
// and a client span for each job the deployer registers with Nomad.

var tracer = otel.Tracer("github.com/butterfn/butter/scheduler")

// traced wraps the API handler h of route pattern ("POST
// /v1/projects/{name}/revisions") in its span.
func traced(pattern string, h http.HandlerFunc) http.HandlerFunc {
	if strings.HasPrefix(pattern, "GET ") {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if !telemetry.On() {
			h(w, r)
			return
		}
		ctx := propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tracer.Start(ctx, pattern, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
		if p := r.PathValue("name"); p != "" {
			span.SetAttributes(attribute.String("butter.project", p))
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			span.SetAttributes(attribute.Int("http.response.status_code", sw.status))
			if sw.status >= 500 {
				span.SetStatus(codes.Error, http.StatusText(sw.status))
			}
			span.End()
		}()
		h(sw, r.WithContext(ctx))
	}
}

// statusWriter keeps the status a handler answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
