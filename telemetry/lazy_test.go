package telemetry_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/telemetry"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// setupLocal turns tracing on with spans kept in memory (SetupWith's
// local exporter) and turns it off when the test ends.
func setupLocal(t *testing.T) *tracetest.InMemoryExporter {
	t.Helper()
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED"} {
		t.Setenv(k, "")
	}
	exp := tracetest.NewInMemoryExporter()
	shutdown, err := telemetry.SetupWith(context.Background(), "butter-test", nil, exp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = shutdown(context.Background())
		otel.SetTracerProvider(noop.NewTracerProvider())
	})
	return exp
}

func byName(spans tracetest.SpanStubs) map[string]tracetest.SpanStub {
	m := map[string]tracetest.SpanStub{}
	for _, s := range spans {
		m[s.Name] = s
	}
	return m
}

// TestStartRecordsAfterEnd: a span Start started is exported, once it
// has ended and its window has run (Flush), as the SDK's own span would
// be: with the ids its context had from the start (the ones a callee's
// traceparent names), its start and end times, attributes, events, a
// recorded error, status and name; its children (lazy ones and the
// SDK's) are under it; ending it twice exports it once.
func TestStartRecordsAfterEnd(t *testing.T) {
	exp := setupLocal(t)
	tr := otel.Tracer("test")
	ctx, root := telemetry.Start(context.Background(), tr, "route", trace.SpanKindServer, attribute.String("http.route", "/x"))
	if !root.IsRecording() || !root.SpanContext().IsSampled() {
		t.Fatalf("root span: recording %v, sampled %v", root.IsRecording(), root.SpanContext().IsSampled())
	}
	tp := telemetry.Traceparent(root.SpanContext())
	cctx, child := telemetry.Start(ctx, tr, "invoke", trace.SpanKindInternal)
	_, sdkChild := tr.Start(cctx, "handler")
	sdkChild.End()
	child.AddEvent("queued", trace.WithAttributes(attribute.Int("n", 2)))
	child.RecordError(errors.New("boom"))
	child.SetStatus(codes.Error, "failed")
	child.SetStatus(codes.Unset, "ignored: Unset does not replace Error")
	child.SetName("invoke f")
	child.SetAttributes(attribute.Bool("extra", true))
	end := time.Now().Add(time.Millisecond)
	child.End(trace.WithTimestamp(end))
	child.End()
	if child.IsRecording() {
		t.Error("a span records after End")
	}
	root.End()

	if n := len(exp.GetSpans()); n != 1 {
		t.Errorf("%d spans exported before their window ran, want only the SDK's own child", n)
	}
	telemetry.Flush()
	got := byName(exp.GetSpans())
	if len(exp.GetSpans()) != 3 {
		t.Fatalf("exported %d spans, want 3: %v", len(exp.GetSpans()), got)
	}
	r, c, h := got["route"], got["invoke f"], got["handler"]
	if r.SpanContext.SpanID() != root.SpanContext().SpanID() || r.SpanContext.TraceID() != root.SpanContext().TraceID() {
		t.Errorf("route exported as %v, started as %v", r.SpanContext, root.SpanContext())
	}
	if tp != "00-"+r.SpanContext.TraceID().String()+"-"+r.SpanContext.SpanID().String()+"-01" {
		t.Errorf("traceparent %q names no exported span", tp)
	}
	if r.Parent.IsValid() || r.SpanKind != trace.SpanKindServer || len(r.Attributes) != 1 || r.Attributes[0].Value.AsString() != "/x" {
		t.Errorf("route: parent %v, kind %v, attributes %v", r.Parent, r.SpanKind, r.Attributes)
	}
	if c.Parent.SpanID() != r.SpanContext.SpanID() || c.SpanContext.SpanID() != child.SpanContext().SpanID() {
		t.Errorf("invoke %v (parent %v) is not the lazy child %v of route", c.SpanContext, c.Parent, child.SpanContext())
	}
	if h.Parent.SpanID() != c.SpanContext.SpanID() || h.SpanContext.TraceID() != r.SpanContext.TraceID() {
		t.Errorf("the SDK's handler span %v has parent %v, want invoke %v", h.SpanContext, h.Parent, c.SpanContext)
	}
	if !c.EndTime.Equal(end) || !c.StartTime.Before(c.EndTime) {
		t.Errorf("invoke ran %v..%v, want the end given to End (%v)", c.StartTime, c.EndTime, end)
	}
	if c.Status.Code != codes.Error || c.Status.Description != "failed" {
		t.Errorf("invoke status %+v, want Error failed", c.Status)
	}
	if len(c.Events) != 2 || c.Events[0].Name != "queued" || c.Events[1].Name != "exception" || c.Events[0].Time.IsZero() {
		t.Errorf("invoke events %+v, want queued then the exception", c.Events)
	}
	if len(c.Attributes) != 1 || c.Attributes[0].Key != "extra" {
		t.Errorf("invoke attributes %v", c.Attributes)
	}
}

// TestStartSamples: Start samples as the provider does, by
// OTEL_TRACES_SAMPLER: always_off records nothing, and a parent's
// decision carries to its children (parent-based, the default); an
// unknown sampler or a ratio out of range is refused by Setup, by name.
func TestStartSamples(t *testing.T) {
	t.Setenv("OTEL_TRACES_SAMPLER", "always_off")
	exp := setupLocal(t)
	tr := otel.Tracer("test")
	ctx, s := telemetry.Start(context.Background(), tr, "off", trace.SpanKindServer)
	if s.IsRecording() || s.SpanContext().IsSampled() || !s.SpanContext().IsValid() {
		t.Errorf("always_off: recording %v, context %v", s.IsRecording(), s.SpanContext())
	}
	_, c := telemetry.Start(ctx, tr, "child", trace.SpanKindInternal)
	c.End()
	s.End()
	telemetry.Flush()
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("always_off exported %d spans", n)
	}

	for _, bad := range []struct{ sampler, arg, want string }{
		{"sometimes", "", "OTEL_TRACES_SAMPLER"},
		{"traceidratio", "2", "OTEL_TRACES_SAMPLER_ARG"},
		{"parentbased_traceidratio", "half", "OTEL_TRACES_SAMPLER_ARG"},
	} {
		t.Setenv("OTEL_TRACES_SAMPLER", bad.sampler)
		t.Setenv("OTEL_TRACES_SAMPLER_ARG", bad.arg)
		_, err := telemetry.SetupWith(context.Background(), "x", nil, tracetest.NewInMemoryExporter())
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("sampler %q arg %q: err %v, want one naming %s", bad.sampler, bad.arg, err, bad.want)
		}
	}
}

// TestStartParentBased: under a remote parent that was not sampled,
// Start's span is not sampled either and is not exported; under a
// sampled one it is, in the parent's trace.
func TestStartParentBased(t *testing.T) {
	exp := setupLocal(t)
	tr := otel.Tracer("test")
	unsampled := telemetry.Context(context.Background(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", "")
	_, s := telemetry.Start(unsampled, tr, "unsampled", trace.SpanKindServer)
	s.End()
	sampled := telemetry.Context(context.Background(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "")
	_, s2 := telemetry.Start(sampled, tr, "sampled", trace.SpanKindServer)
	s2.End()
	telemetry.Flush()
	got := exp.GetSpans()
	if len(got) != 1 || got[0].Name != "sampled" || got[0].Parent.SpanID().String() != "b7ad6b7169203331" || !got[0].Parent.IsRemote() {
		t.Fatalf("exported %+v, want only the sampled span under its remote parent", got)
	}
}
