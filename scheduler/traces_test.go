package scheduler_test

import (
	"context"
	"strings"
	"testing"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/scheduler/schedtest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// TestTracesOverOTLP: the control plane takes spans from a real OTLP/HTTP
// exporter (OpenTelemetry's Go SDK, as Butter's processes export) at
// POST /v1/traces with a token in the exporter's headers: spans of a
// project the token may deploy are kept, with those that name no
// project (they join their trace); those of another project are
// rejected. GET /v1/projects/{name}/traces lists the
// project's traces and GET .../traces/{trace} gives a trace's spans, to
// tokens that may read the project.
func TestTracesOverOTLP(t *testing.T) {
	e := newACLEnv(t)
	ctx := context.Background()
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(e.base+"/v1/traces"), otlptracehttp.WithHeaders(map[string]string{api.HeaderToken: e.secret["p1"]}))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "butter-gateway"))))
	defer tp.Shutdown(ctx)
	tr := tp.Tracer("test")
	// p1's call: the route span names the project, its child does not.
	c1, route := tr.Start(ctx, "POST /p1", trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attribute.String("butter.project", "p1"), attribute.String("butter.function", "f")))
	_, call := tr.Start(c1, "call f")
	call.End()
	route.End()
	// p2's: rejected.
	_, other := tr.Start(ctx, "POST /p2", trace.WithAttributes(attribute.String("butter.project", "p2")))
	other.End()
	if err := tp.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}

	p1 := schedtest.Client(t, e.s.Addr(), e.secret["p1"])
	list, err := p1.Projects().Traces(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Traces) != 1 || list.Traces[0].Root != "POST /p1" || list.Traces[0].Spans != 2 || list.Traces[0].RootService != "butter-gateway" {
		t.Fatalf("p1's traces: %+v", list.Traces)
	}
	id := list.Traces[0].TraceID
	if id != route.SpanContext().TraceID().String() {
		t.Errorf("trace id %s, want the exported %s", id, route.SpanContext().TraceID())
	}
	spans, err := p1.Projects().Trace(ctx, "p1", id)
	if err != nil || len(spans.Spans) != 2 || spans.Spans[1].ParentID != spans.Spans[0].SpanID {
		t.Fatalf("p1's trace: %+v %v", spans, err)
	}
	mgmt := schedtest.Client(t, e.s.Addr(), e.secret["mgmt"])
	if l, err := mgmt.Projects().Traces(ctx, "p2"); err != nil || len(l.Traces) != 0 {
		t.Errorf("p2's traces, sent with p1's token: %+v %v; want none kept", l, err)
	}
	if _, err := mgmt.Projects().Trace(ctx, "p2", other.SpanContext().TraceID().String()); api.StatusCode(err) != 404 {
		t.Errorf("p2's trace: %v; want 404", err)
	}
	p2 := schedtest.Client(t, e.s.Addr(), e.secret["p2"])
	if _, err := p2.Projects().Trace(ctx, "p1", id); api.StatusCode(err) != 403 || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("p1's trace read with p2's token: %v; want 403", err)
	}
}
