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
// BenchmarkOverhead's gateway row, with tracing off (baseline), then
// interleaved off and on (paired: pool, gateway, the same path, every span
// sampled and exported by OTLP/HTTP to a receiver on 127.0.0.1, the batch
// processor's defaults; telemetry.Toggle switches between calls).
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
	// paired: calls with tracing off and on interleaved in one loop
	// (harness.Paired), so that the machine's load weighs on both alike:
	// its added-p50-ns is the budget's figure. Run in sequence, the two
	// sides of earlier runs differed by more than the budget from noise
	// alone (+136 µs in one run, -0.5 µs in another).
	b.Run("paired", func(b *testing.B) {
		harness.Paired(b, telemetry.Toggle, func() error { return harness.Post(client, "http://"+gwAddr+"/echo", benchBody) })
		telemetry.Toggle(true)
	})
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
