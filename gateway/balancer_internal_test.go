package gateway

import (
	"testing"
	"time"
)

// TestEjectBackoff checks the ejection of an endpoint that refuses
// connections: short after the first refusal (a pool that is starting
// listens within a second), doubling while it keeps refusing, capped at
// the configured time, and over once a connection succeeds.
func TestEjectBackoff(t *testing.T) {
	b := newBalancer(time.Second)
	var got []time.Duration
	for range 6 {
		got = append(got, b.eject("a:1"))
		// Calls that picked it before it was ejected refuse too: they
		// are the same refusal, and leave the ejection as it is.
		if d := b.eject("a:1"); d > got[len(got)-1] || d <= 0 {
			t.Fatalf("a second refusal during an ejection of %v made it %v", got[len(got)-1], d)
		}
		b.ejected["a:1"] = time.Now() // the ejection ends
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("ejections after refusals in a row = %v, want %v", got, want)
		}
	}
	b.ejected["a:1"] = time.Now().Add(time.Second)
	// Ejected: passed over while another endpoint remains.
	for range 4 {
		e := b.pick([]string{"a:1", "b:1"}, nil)
		if e != "b:1" {
			t.Fatalf("picked %q while a:1 is ejected, want b:1", e)
		}
		b.release(e)
	}
	// and still picked when it is the only one.
	if e := b.pick([]string{"a:1"}, nil); e != "a:1" {
		t.Fatalf("picked %q from the one ejected endpoint, want a:1", e)
	} else {
		b.release(e)
	}
	b.connected("a:1")
	if e := b.eject("a:1"); e != 100*time.Millisecond {
		t.Fatalf("ejection after a connection and one refusal = %v, want 100ms", e)
	}
	if n := b.refusing.Load(); n != 1 {
		t.Fatalf("refusing = %d, want 1", n)
	}
	b.connected("a:1")
	if n := b.refusing.Load(); n != 0 {
		t.Fatalf("refusing after the connection = %d, want 0", n)
	}
	// Picks spread over both again.
	seen := map[string]bool{}
	for range 4 {
		e := b.pick([]string{"a:1", "b:1"}, nil)
		seen[e] = true
		b.release(e)
	}
	if !seen["a:1"] || !seen["b:1"] {
		t.Fatalf("picks after the connection = %v, want both endpoints", seen)
	}

	if d := newBalancer(0).eject("a:1"); d != 0 {
		t.Fatalf("ejection with WithEjectTime(0) = %v, want none", d)
	}
	if d := newBalancer(50 * time.Millisecond).eject("a:1"); d != 50*time.Millisecond {
		t.Fatalf("first ejection capped at 50ms = %v", d)
	}
}
