package telemetry

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestBatcher: a full batch goes out at once, long before the schedule
// delay; what is left goes out at shutdown; spans past the queue's size
// are dropped, not held.
func TestBatcher(t *testing.T) {
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "3600000") // an hour: only a full batch or shutdown exports
	t.Setenv("OTEL_BSP_MAX_QUEUE_SIZE", "10")
	t.Setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4")
	exp := tracetest.NewInMemoryExporter()
	b := newBatcher(exp)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(b))
	tr := tp.Tracer("t")
	end := func(n int) {
		for range n {
			_, s := tr.Start(context.Background(), "s")
			s.End()
		}
	}
	end(3)
	if n := len(exp.GetSpans()); n != 0 {
		t.Fatalf("%d spans exported before a batch was full", n)
	}
	end(1)
	deadline := time.Now().Add(10 * time.Second)
	for len(exp.GetSpans()) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("a full batch of 4 was not exported within 10s: %d", len(exp.GetSpans()))
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Hold the exporter's goroutine off: with the queue of 10 full, the
	// rest are dropped.
	b.exportMu.Lock()
	end(25)
	b.exportMu.Unlock()
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := len(exp.GetSpans()) // (the in-memory exporter forgets at shutdown)
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got < 4+10 || got > 4+10+4 {
		t.Fatalf("%d spans exported; want the first 4, the 10 the queue held and at most one batch that went out between", got)
	}
}
