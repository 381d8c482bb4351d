package gateway_test

import (
	"context"
	"testing"
	"time"

	"github.com/butterfn/butter/bench/harness"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/telemetry"
	"github.com/butterfn/butter/telemetry/otlptest"
)

// BenchmarkTracing measures what tracing adds to a call (issue 18's
// budget: ≤ 10 µs at p50 through the pool): the Go echo through a
// gateway route to the pool's endpoint, one call at a time, as
// BenchmarkOverhead's gateway row, with tracing off (baseline) and on
// (pool, gateway: the same path, every span sampled and exported by
// OTLP/HTTP to a receiver on 127.0.0.1, the batch processor's defaults).
// Each call then makes four spans: the route's, the pool's invoke, the
// call on the instance, and none of a record (an echo emits nothing).
func BenchmarkTracing(b *testing.B) {
	echo := harness.Echo(b, "echo", "go")
	echo.MinInstances = 1
	p := harness.StartPool(b, harness.SDKs(b), []pool.FunctionConfig{echo})
	poolAddr := harness.Serve(b, p.Handler())
	gwAddr := benchGateway(b, poolAddr)
	client := harness.Client(4)

	benchPosts(b, "baseline", client, "http://"+gwAddr+"/echo")

	rcv, err := otlptest.Start()
	if err != nil {
		b.Fatal(err)
	}
	defer rcv.Close()
	b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.Endpoint)
	shutdown, err := telemetry.Setup(context.Background(), "butter-bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	benchPosts(b, "traced", client, "http://"+gwAddr+"/echo")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := shutdown(ctx); err != nil {
		b.Fatal(err)
	}
	// The spans did go out: a benchmark of spans never made measures
	// nothing.
	if n := len(rcv.Spans()); n == 0 {
		b.Fatal("tracing on, and the receiver got no span")
	}
}
