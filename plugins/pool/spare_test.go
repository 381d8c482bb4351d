package pool_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/butterfn/butter/plugins/pool"
)

// TestSpareInstances: a function with spare = 1 keeps one instance with
// no call started while it is called. A call that finds every instance
// busy is answered by the spare, with no start on its path (the cold
// starts counter does not move), and the pool starts the next spare
// behind it, up to max; once the function is idle for the idle timeout
// the spares retire with the rest (min 0: down to none).
func TestSpareInstances(t *testing.T) {
	f := fn("gofn", "go")
	f.MaxInstances, f.SpareInstances = 3, 1
	p, srv := start(t, []pool.FunctionConfig{f}, pool.WithIdleTimeout(time.Second))
	gauge := func(name string) float64 { return metric(t, srv, name, "gofn") }
	if n := gauge("butter_instances"); n != 0 {
		t.Fatalf("%v instances before any call, want 0 (min 0: no spare until the function is called)", n)
	}
	// hold starts a call whose input stays open until release.
	hold := func() (release func()) {
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() { done <- p.Invoke(context.Background(), "gofn", &pool.Call{Input: pr, Output: io.Discard}) }()
		return func() {
			_ = pw.Close()
			if err := <-done; err != nil {
				t.Errorf("a held call: %v", err)
			}
		}
	}
	state := func(inflight, instances float64) func() bool {
		return func() bool {
			return gauge("butter_inflight_calls") == inflight && gauge("butter_instances") == instances
		}
	}

	r1 := hold()
	eventually(t, time.Minute, "the first call in flight and a spare beside it (2 instances)", state(1, 2))
	cold := gauge("butter_cold_starts_total")
	if cold != 1 {
		t.Errorf("%v cold starts after the first call, want 1 (the spare is not started on a call's path)", cold)
	}
	r2 := hold()
	eventually(t, time.Minute, "the second call on the spare and the next spare started (3 instances)", state(2, 3))
	r3 := hold()
	eventually(t, time.Minute, "the third call on that spare (3 in flight on 3 instances: max, no more spare)", state(3, 3))
	if c := gauge("butter_cold_starts_total"); c != cold {
		t.Errorf("cold starts went from %v to %v: a call found no spare and started an instance on its path", cold, c)
	}
	r1()
	r2()
	r3()
	eventually(t, time.Minute, "idle for the idle timeout: every instance retired, spares included", state(0, 0))
}
