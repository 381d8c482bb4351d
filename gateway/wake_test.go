package gateway_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/gateway"
)

// recordWaker records the wakes a gateway sends.
type recordWaker struct {
	mu    sync.Mutex
	wakes []int // held, per wake
	first chan struct{}
	once  sync.Once
}

func newRecordWaker() *recordWaker { return &recordWaker{first: make(chan struct{})} }

func (w *recordWaker) Wake(_ context.Context, project, pool string, held int) error {
	w.mu.Lock()
	w.wakes = append(w.wakes, held)
	w.mu.Unlock()
	if project == "test" && pool == "default" {
		w.once.Do(func() { close(w.first) })
	}
	return nil
}

func (w *recordWaker) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.wakes)
}

// TestWakeHoldsCalls: calls to a pool with no endpoint are held while the
// waker is asked to wake it, up to the queue limit (above it: 503 with
// Retry-After), and answered by the pool once it appears and accepts
// connections. A dead endpoint does not release them.
func TestWakeHoldsCalls(t *testing.T) {
	res := gateway.NewStaticResolver()
	w := newRecordWaker()
	g, url := startGateway(t, res, []gateway.Route{
		{Method: "POST", Path: "/echo", Project: "test", Function: "cat", Timeout: 30 * time.Second},
	}, gateway.WithWaker(w), gateway.WithWakeQueue(2))
	first, second := make(chan answer, 1), make(chan answer, 1)
	go func() { first <- post(t, url+"/echo", "one", nil) }()
	go func() { second <- post(t, url+"/echo", "two", nil) }()
	<-w.first
	eventually(t, 10*time.Second, "two calls held", func() bool {
		return metricValue(t, g, "butter_gateway_held_calls") == 2
	})
	a := post(t, url+"/echo", "three", nil)
	if a.code != 503 || a.err.Type != "Unavailable" || a.header.Get("Retry-After") == "" {
		t.Fatalf("a third call over the limit of 2: %d %+v Retry-After %q; want 503 with Retry-After", a.code, a.err, a.header.Get("Retry-After"))
	}
	t.Logf("over the limit: %d Retry-After %s: %s", a.code, a.header.Get("Retry-After"), a.err.Error)
	if n := metricValue(t, g, "butter_gateway_wake_refused_total"); n != 1 {
		t.Errorf("butter_gateway_wake_refused_total %g, want 1", n)
	}
	// The service appears before the pool listens: nothing is released.
	res.Set("test", "default", deadAddr(t))
	eventually(t, 10*time.Second, "the pool's wake repeated while the endpoint refuses", func() bool {
		return w.count() >= 2
	})
	if n := metricValue(t, g, "butter_gateway_held_calls"); n != 2 {
		t.Fatalf("%g calls held with only a dead endpoint; want 2", n)
	}
	b := startPool(t, standardFns()...)
	res.Set("test", "default", b.addr)
	for _, ch := range []chan answer{first, second} {
		a := wait(t, ch)
		if a.code != 200 || (a.body != "one" && a.body != "two") {
			t.Errorf("held call: %d %q %+v; want 200 with its body", a.code, a.body, a.err)
		}
	}
	if n := metricValue(t, g, "butter_gateway_held_calls"); n != 0 {
		t.Errorf("%g calls still held", n)
	}
	// Awake: calls go straight to the pool, no wake.
	before := w.count()
	if a := post(t, url+"/echo", "four", nil); a.code != 200 || a.body != "four" {
		t.Errorf("after the wake: %d %q", a.code, a.body)
	}
	if w.count() != before {
		t.Errorf("a call to an awake pool sent a wake")
	}
}

// TestWakeTimesOut: a pool that does not wake within the route's
// deadline answers 504 Timeout naming the wake; without a waker, 503 at
// once as before.
func TestWakeTimesOut(t *testing.T) {
	w := newRecordWaker()
	_, url := startGateway(t, gateway.NewStaticResolver(), []gateway.Route{
		{Method: "POST", Path: "/echo", Project: "test", Function: "cat", Timeout: 300 * time.Millisecond},
	}, gateway.WithWaker(w))
	a := post(t, url+"/echo", "x", nil)
	if a.code != 504 || a.err.Type != "Timeout" || w.count() == 0 {
		t.Fatalf("%d %+v after %d wakes; want 504 Timeout after a wake", a.code, a.err, w.count())
	}
	t.Log(a.err.Error)
	_, url2 := startGateway(t, gateway.NewStaticResolver(), []gateway.Route{
		{Method: "POST", Path: "/echo", Project: "test", Function: "cat"},
	})
	if a := post(t, url2+"/echo", "x", nil); a.code != 503 {
		t.Fatalf("without a waker: %d %+v; want 503", a.code, a.err)
	}
}

// refusingWaker is a control plane that says the pool is not asleep.
type refusingWaker struct{ *recordWaker }

func (w *refusingWaker) Wake(ctx context.Context, project, pool string, held int) error {
	_ = w.recordWaker.Wake(ctx, project, pool, held)
	return &gateway.WakeRefused{Reason: "pool \"default\" of project test is not one the autoscaler scales to zero (min 1)"}
}

// TestWakeRefused: when the control plane says the pool is not asleep,
// the held call answers 503 at once with its reason, and the pool's next
// calls too, without another wake, for RefusedFor.
func TestWakeRefused(t *testing.T) {
	w := &refusingWaker{newRecordWaker()}
	_, url := startGateway(t, gateway.NewStaticResolver(), []gateway.Route{
		{Method: "POST", Path: "/echo", Project: "test", Function: "cat", Timeout: 30 * time.Second},
	}, gateway.WithWaker(w))
	for i := range 2 {
		start := time.Now()
		a := post(t, url+"/echo", "x", nil)
		if a.code != 503 || a.err.Type != "Unavailable" || !strings.Contains(a.err.Error, "not asleep") || !strings.Contains(a.err.Error, "min 1") {
			t.Fatalf("call %d: %d %+v; want 503 with the control plane's reason", i, a.code, a.err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("call %d answered after %s: held as if the pool woke", i, d)
		}
	}
	if n := w.count(); n != 1 {
		t.Errorf("%d wakes sent; want 1 (the second call within RefusedFor sends none)", n)
	}
}
