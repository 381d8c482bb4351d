package telemetry_test

import (
	"context"
	"testing"
	"time"

	"github.com/butterfn/butter/telemetry"
	"github.com/butterfn/butter/telemetry/otlptest"
	"github.com/hashicorp/go-hclog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// TestSetupExportsByOTLP: with OTEL_EXPORTER_OTLP_ENDPOINT set, a span
// reaches a real OTLP/HTTP receiver under the service's name, and its
// child, started from the traceparent a record would carry, is in the
// same trace under it.
func TestSetupExportsByOTLP(t *testing.T) {
	rcv, err := otlptest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.Endpoint)
	t.Setenv("OTEL_SERVICE_NAME", "")
	defer otel.SetTracerProvider(noop.NewTracerProvider())
	ctx := context.Background()
	shutdown, err := telemetry.Setup(ctx, "butter-test", hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	tr := otel.Tracer("test")
	_, parent := tr.Start(ctx, "parent")
	tp := telemetry.Traceparent(parent.SpanContext())
	parent.End()
	_, child := tr.Start(telemetry.Context(ctx, tp, ""), "child", trace.WithSpanKind(trace.SpanKindConsumer))
	child.End()
	if err := shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	spans, err := rcv.Wait(wctx, func(s []otlptest.Span) bool { return len(s) >= 2 })
	if err != nil {
		t.Fatalf("got %d spans: %v", len(spans), err)
	}
	byName := map[string]otlptest.Span{}
	for _, s := range spans {
		byName[s.Name] = s
	}
	p, c := byName["parent"], byName["child"]
	if p.Service != "butter-test" {
		t.Errorf("service.name = %q, want butter-test", p.Service)
	}
	if c.TraceID != p.TraceID || c.ParentSpanID != p.SpanID || c.Kind != 5 {
		t.Errorf("child %+v is not the consumer child of parent %+v", c, p)
	}
	if tp != "00-"+p.TraceID+"-"+p.SpanID+"-01" {
		t.Errorf("Traceparent = %q, parent is %s/%s", tp, p.TraceID, p.SpanID)
	}
}

// TestOffByDefault: without the variables, Setup installs no provider
// (spans stay non-recording), and OTEL_SDK_DISABLED wins over an
// endpoint; a protocol other than http/protobuf is refused, by name.
func TestOffByDefault(t *testing.T) {
	defer otel.SetTracerProvider(noop.NewTracerProvider())
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED"} {
		t.Setenv(k, "")
	}
	if on, why := telemetry.Enabled(); on || why == "" {
		t.Fatalf("Enabled() = %v, %q with nothing set", on, why)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_SDK_DISABLED", "true")
	if on, _ := telemetry.Enabled(); on {
		t.Fatal("OTEL_SDK_DISABLED=true did not turn tracing off")
	}
	if _, err := telemetry.Setup(context.Background(), "x", nil); err != nil {
		t.Fatal(err)
	}
	_, s := otel.Tracer("t").Start(context.Background(), "s")
	if s.IsRecording() {
		t.Fatal("a span records with tracing off")
	}
	t.Setenv("OTEL_SDK_DISABLED", "")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	if _, err := telemetry.Setup(context.Background(), "x", nil); err == nil {
		t.Fatal("grpc accepted")
	}
	if ctx := telemetry.Context(context.Background(), "not-a-traceparent", ""); trace.SpanContextFromContext(ctx).IsValid() {
		t.Fatal("an invalid traceparent gave a span context")
	}
}

// TestParseTraceparent: ParseTraceparent reads a traceparent and its
// tracestate as the W3C propagator does (Context), valid or not.
func TestParseTraceparent(t *testing.T) {
	for _, c := range [][2]string{
		{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", ""},
		{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", "vendor=x"},
		{"00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-03", "a=1,b=2"},
		{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-04", ""},
		{"00-00000000000000000000000000000000-b7ad6b7169203331-01", ""},
		{"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", ""},
		{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g", ""},
		{"00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-01", ""},
		{"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra", ""},
		{"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", ""},
		{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "bad tracestate"},
		{"", ""},
	} {
		got := telemetry.ParseTraceparent(c[0], c[1])
		want := trace.SpanContextFromContext(telemetry.Context(context.Background(), c[0], c[1]))
		if !got.Equal(want) || got.IsRemote() != want.IsRemote() {
			t.Errorf("ParseTraceparent(%q, %q) = %v, the propagator reads %v", c[0], c[1], got, want)
		}
	}
}
