package main

import (
	"context"
	"time"

	"github.com/butterfn/butter/telemetry"
	"github.com/hashicorp/go-hclog"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// startTracing turns tracing on for this process when the OpenTelemetry
// environment asks for it (telemetry.Setup: OTEL_EXPORTER_OTLP_ENDPOINT
// and friends) and returns what flushes the spans still buffered, for
// the process's end.
func startTracing(service string, log hclog.Logger) (stop func(), err error) {
	return startTracingWith(service, log, nil)
}

// startTracingWith is startTracing with a local exporter
// (telemetry.SetupWith): butter dev keeps its own spans for its control
// plane's web UI.
func startTracingWith(service string, log hclog.Logger, local sdktrace.SpanExporter) (stop func(), err error) {
	shutdown, err := telemetry.SetupWith(context.Background(), service, log, local)
	if err != nil {
		return func() {}, err
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			log.Warn("tracing: flushing the last spans failed", "error", err)
		}
	}, nil
}
