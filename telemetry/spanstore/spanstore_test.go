package spanstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/butterfn/butter/telemetry/spanstore"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// TestExporterAndStore: a process's own spans, through a real SDK tracer
// provider and the Exporter, are kept per trace and project: a trace
// belongs to the project a span names (butter.project, or a topic's
// prefix), lists newest first with its root, functions, invocation and
// errors, and its spans come back with parents, events and status.
func TestExporterAndStore(t *testing.T) {
	st := &spanstore.Store{}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spanstore.Exporter(st)),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "butter-dev"))))
	defer tp.Shutdown(context.Background())
	tr := tp.Tracer("test")

	ctx, root := tr.Start(context.Background(), "POST /devices/{device}/readings", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("butter.project", "iot"), attribute.String("butter.function", "ingest")))
	cctx, inv := tr.Start(ctx, "invoke ingest", trace.WithAttributes(attribute.String("faas.invocation_id", "req-1"), attribute.String("butter.function", "ingest")))
	_, send := tr.Start(cctx, "send iot.readings", trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attribute.String("messaging.destination.name", "iot.readings")))
	send.End()
	inv.AddEvent("alert", trace.WithAttributes(attribute.Float64("to", 30)))
	inv.SetStatus(codes.Error, "Exception")
	inv.End()
	root.End()
	// A trace that starts on a stream names its project by the topic.
	_, proc := tr.Start(context.Background(), "process readings detect", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("messaging.destination.name", "iot.readings"), attribute.String("butter.function", "detect")))
	proc.End()
	// Another project's trace.
	_, other := tr.Start(context.Background(), "GET /x", trace.WithAttributes(attribute.String("butter.project", "shop")))
	other.End()

	list := st.List("iot", 10)
	if len(list) != 2 {
		t.Fatalf("iot's traces: %+v", list)
	}
	if list[0].Root != "process readings detect" || list[0].Spans != 1 {
		t.Errorf("newest: %+v", list[0])
	}
	first := list[1]
	if first.Root != "POST /devices/{device}/readings" || first.RootService != "butter-dev" || first.Spans != 3 || first.Errors != 1 ||
		first.Invocation != "req-1" || len(first.Functions) != 1 || first.Functions[0] != "ingest" || first.DurationSeconds <= 0 {
		t.Errorf("the HTTP call's trace: %+v", first)
	}
	spans, ok := st.Get("iot", first.TraceID)
	if !ok || len(spans) != 3 {
		t.Fatalf("spans: %+v", spans)
	}
	byName := map[string]spanstore.Span{}
	for _, s := range spans {
		byName[s.Name] = s
	}
	in, sn := byName["invoke ingest"], byName["send iot.readings"]
	if in.ParentID != byName["POST /devices/{device}/readings"].SpanID || sn.ParentID != in.SpanID || sn.Kind != "producer" {
		t.Errorf("parents and kinds: %+v", spans)
	}
	if !in.Error || in.Message != "Exception" || len(in.Events) != 1 || in.Events[0].Name != "alert" || in.Events[0].Attributes["to"] != "30" {
		t.Errorf("invoke ingest: %+v", in)
	}
	if _, ok := st.Get("shop", first.TraceID); ok {
		t.Error("iot's trace is shop's too")
	}
	if l := st.List("shop", 10); len(l) != 1 {
		t.Errorf("shop's traces: %+v", l)
	}
}

// TestStoreBounds: the oldest trace goes when MaxTraces is reached; a
// trace keeps at most MaxSpans spans.
func TestStoreBounds(t *testing.T) {
	st := &spanstore.Store{MaxTraces: 2, MaxSpans: 2}
	span := func(tr, id string) spanstore.Span {
		return spanstore.Span{TraceID: tr, SpanID: id, Name: id, Start: time.Now(), End: time.Now(), Attributes: map[string]string{"butter.project": "p"}}
	}
	st.Add(span("t1", "a"), span("t2", "b"), span("t2", "c"), span("t2", "d"), span("t3", "e"))
	if _, ok := st.Get("p", "t1"); ok {
		t.Error("the oldest trace was kept past MaxTraces")
	}
	if s, ok := st.Get("p", "t2"); !ok || len(s) != 2 {
		t.Errorf("t2: %d spans, want MaxSpans (2)", len(s))
	}
	if len(st.List("p", 10)) != 2 {
		t.Errorf("list: %+v", st.List("p", 10))
	}
}
