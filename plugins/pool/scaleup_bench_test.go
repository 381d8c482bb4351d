package pool_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/butterfn/butter/bench/harness"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/plugins/runtime"
)

// BenchmarkScaleUp measures the in-pool instance scale-up: a call to a
// function whose only instance is busy, which the pool answers by
// starting a second one (instances min 1, max 2, concurrency 1). Each
// operation is a new pool with one warm instance (created and stopped
// outside the timing) whose instance is held by a call whose input stays
// open; the figure is the time of a second pool.Invoke, from the call to
// its answer: the pool's decision to start an instance, the instance's
// start (for go, node and python a worker process up to its HELLO; for
// exec the fork of cat) and the call. Run it with -benchtime=20x or more:
// each operation is one scale-up.
//
// Each runtime's baseline is the same second call with a second instance
// already warm (instances min 2): the call alone. Δ is the scale-up.
//
// spare is the scale-up of a function with instances spare = 1 (min 1,
// max 3): the first call's claim makes the pool start a spare in the
// background, which the operation waits for (outside the timing, as
// steady traffic would have it ready); the second call lands on it, and
// the pool starts the next spare behind it while the call runs, so the
// figure includes that start's contention for the CPU.
func BenchmarkScaleUp(b *testing.B) {
	sdks := harness.SDKs(b)
	for _, rt := range harness.Runtimes {
		b.Run(rt, func(b *testing.B) {
			b.Run("baseline", func(b *testing.B) { benchScaleUp(b, sdks, rt, 2, 0) })
			b.Run("new-instance", func(b *testing.B) { benchScaleUp(b, sdks, rt, 1, 0) })
			b.Run("spare", func(b *testing.B) { benchScaleUp(b, sdks, rt, 1, 1) })
		})
	}
}

// benchScaleUp times the second call of a pool whose first instance is
// held, with minInstances warm at the start and spare instances kept.
func benchScaleUp(b *testing.B, sdks *runtime.SDKs, rt string, minInstances, spare int) {
	ctx := context.Background()
	fc := harness.Echo(b, "echo", rt)
	fc.MinInstances, fc.MaxInstances, fc.SpareInstances = minInstances, 2, spare
	if spare > 0 {
		fc.MaxInstances = 3
	}
	ready := minInstances + spare // instances before the timed call
	var out bytes.Buffer
	round := func(timed func(func())) {
		m := pool.NewMetrics()
		p, err := pool.New(&pool.Config{Project: "bench", Pool: "default", Functions: []pool.FunctionConfig{fc}}, nil, pool.WithSDKs(sdks), pool.WithMetrics(m))
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Start(ctx); err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		// The first call holds an instance until its input ends.
		pr, pw := io.Pipe()
		held := make(chan error, 1)
		go func() { held <- p.Invoke(ctx, "echo", &pool.Call{Input: pr, Output: io.Discard}) }()
		deadline := time.Now().Add(30 * time.Second)
		for gauge(b, m, "butter_inflight_calls") < 1 || int(gauge(b, m, "butter_instances")) != ready {
			if time.Now().After(deadline) {
				b.Fatalf("%s: %g calls in flight on %g instances; want 1 on %d before the second call", rt,
					gauge(b, m, "butter_inflight_calls"), gauge(b, m, "butter_instances"), ready)
			}
			time.Sleep(time.Millisecond)
		}
		timed(func() {
			out.Reset()
			if err := p.Invoke(ctx, "echo", &pool.Call{Input: bytes.NewReader(benchEcho), Output: &out}); err != nil || !bytes.Equal(out.Bytes(), benchEcho) {
				b.Fatalf("%s echo: %q, %v", rt, out.Bytes(), err)
			}
		})
		if n := gauge(b, m, "butter_instances"); n < 2 {
			b.Fatalf("%s: %g instances after the second call, want 2 or more", rt, n)
		}
		if c := gauge(b, m, "butter_cold_starts_total"); spare > 0 && c > 1 {
			b.Fatalf("%s: %g cold starts with a spare: the second call started an instance on its path", rt, c)
		}
		_ = pw.Close()
		if err := <-held; err != nil {
			b.Fatalf("%s: the held call: %v", rt, err)
		}
	}
	// Build the Go function, fill the page cache.
	round(func(call func()) { call() })
	var lat harness.Latencies
	for b.Loop() {
		b.StopTimer()
		round(func(call func()) {
			b.StartTimer()
			t := time.Now()
			call()
			lat.Add(time.Since(t))
			b.StopTimer()
		})
		b.StartTimer()
	}
	lat.Report(b)
}

// gauge sums a gauge's samples in a pool's metrics.
func gauge(b *testing.B, m *pool.Metrics, name string) float64 {
	b.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		b.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, s := range mf.GetMetric() {
				sum += s.GetGauge().GetValue()
			}
		}
	}
	return sum
}
