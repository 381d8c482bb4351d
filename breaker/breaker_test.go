package breaker

import (
	"testing"
	"time"
)

// TestBreaker walks a breaker through its states with a clock the test
// steps: closed until the threshold of consecutive failures (a success
// resets the count), open (failing at once, saying when it half-opens),
// half-open after the delay with one trial at a time, open again when the
// trial fails, closed when one succeeds.
func TestBreaker(t *testing.T) {
	now := time.Unix(1000, 0)
	b := New(3, 10*time.Second, func() time.Time { return now })
	fail := func() {
		t.Helper()
		if ok, _ := b.Allow(); !ok {
			t.Fatalf("state %s: call refused, want it let through", b.State())
		}
		b.Done(false)
	}
	fail()
	fail()
	if ok, _ := b.Allow(); !ok {
		t.Fatal("refused after 2 failures")
	}
	b.Done(true) // resets the count
	fail()
	fail()
	if b.State() != Closed {
		t.Fatalf("after 2 failures since a success: %s, want closed", b.State())
	}
	fail()
	if b.State() != Open {
		t.Fatalf("after 3 consecutive failures: %s, want open", b.State())
	}
	if ok, in := b.Allow(); ok || in != 10*time.Second {
		t.Fatalf("open: Allow = %v, %s; want refused, 10s to wait", ok, in)
	}
	now = now.Add(9 * time.Second)
	if ok, in := b.Allow(); ok || in != time.Second || b.State() != Open {
		t.Fatalf("open after 9s: Allow = %v, %s, state %s; want refused, 1s, open", ok, in, b.State())
	}
	now = now.Add(time.Second)
	if b.State() != HalfOpen {
		t.Fatalf("after the delay: %s, want half-open", b.State())
	}
	if ok, _ := b.Allow(); !ok {
		t.Fatal("half-open: the trial was refused")
	}
	if ok, _ := b.Allow(); ok {
		t.Fatal("half-open: a second call went through while the trial runs")
	}
	b.Done(false)
	if b.State() != Open {
		t.Fatalf("after a failed trial: %s, want open", b.State())
	}
	if ok, in := b.Allow(); ok || in != 10*time.Second {
		t.Fatalf("reopened: Allow = %v, %s; want refused, 10s from the trial's failure", ok, in)
	}
	now = now.Add(10 * time.Second)
	if ok, _ := b.Allow(); !ok {
		t.Fatal("half-open again: the trial was refused")
	}
	b.Done(true)
	if b.State() != Closed {
		t.Fatalf("after a successful trial: %s, want closed", b.State())
	}
	fail()
	fail()
	if b.State() != Closed {
		t.Fatalf("closed again: opened after 2 failures, want 3")
	}
}
