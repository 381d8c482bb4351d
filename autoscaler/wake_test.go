package autoscaler_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/autoscaler"
	"github.com/butterfn/butter/scheduler/fsm"
)

// TestWakeFromZero: a gateway's wake scales a group at zero allocations
// to one at the next pass, within the cooldown of its scale-in and with
// stale signals; the wake keeps one allocation for WakeFor, then the idle
// pool goes back to zero after the scale-in delay.
func TestWakeFromZero(t *testing.T) {
	p := policy()
	p.Min = 0
	e := newEnv(t, group("g", 1, p))
	// Idle, no lag: back to zero after the scale-in delay.
	e.load("p/g", 1, 0, 0)
	e.a.Step(context.Background())
	if n := e.nomad.count("p/g"); n != 1 {
		t.Fatalf("scaled to %d before the scale-in delay", n)
	}
	e.clock.advance(p.ScaleInDelay + time.Second)
	e.load("p/g", 1, 0, 0)
	e.a.Step(context.Background())
	if n := e.nomad.count("p/g"); n != 0 {
		t.Fatalf("count %d after the scale-in delay with no load; want 0 (min 0)", n)
	}
	// Within the cooldown, with signals that are stale: a wake still
	// scales 0 -> 1.
	e.clock.advance(time.Second)
	e.signals.set("p/g", staleLoad(e))
	e.a.Wake("p", "other", 1) // another pool's wake changes nothing here
	e.a.Step(context.Background())
	if n := e.nomad.count("p/g"); n != 0 {
		t.Fatalf("count %d after another pool's wake", n)
	}
	e.a.Wake("p", "g", 3)
	e.a.Step(context.Background())
	if n := e.nomad.count("p/g"); n != 1 {
		t.Fatalf("count %d after a wake; want 1", n)
	}
	d := e.last("p/g")
	if d.Kind != fsm.ScaleScaled || !strings.Contains(d.Reason, "wake: a gateway holds 3 calls") {
		t.Errorf("decision: %+v", d)
	}
	calls := e.nomad.scaled()
	if last := calls[len(calls)-1]; !strings.Contains(last.reason, "0 -> 1: wake") {
		t.Errorf("Nomad's reason: %q", last.reason)
	}
	// While the wake lasts, no load does not take the allocation away,
	// even past the cooldown and the scale-in delay.
	e.clock.advance(5 * time.Second)
	e.load("p/g", 1, 0, 0)
	e.a.Step(context.Background())
	if n := e.nomad.count("p/g"); n != 1 {
		t.Fatalf("count %d within WakeFor of the wake", n)
	}
	// Past it: idle, back to zero after the scale-in delay.
	e.clock.advance(autoscalerWakeFor)
	e.load("p/g", 1, 0, 0)
	e.a.Step(context.Background())
	e.clock.advance(p.ScaleInDelay + time.Second)
	e.load("p/g", 1, 0, 0)
	e.a.Step(context.Background())
	if n := e.nomad.count("p/g"); n != 0 {
		t.Fatalf("count %d after the wake and the scale-in delay; want 0", n)
	}
}

// TestWakeRefused: Nomad refusing the wake is recorded with its cause.
func TestWakeRefused(t *testing.T) {
	p := policy()
	p.Min = 0
	e := newEnv(t, group("g", 0, p))
	e.nomad.refuse["p/g"] = errString("quota exceeded")
	e.a.Wake("p", "g", 1)
	e.a.Step(context.Background())
	if d := e.last("p/g"); d.Kind != fsm.ScaleRefused || !strings.Contains(d.Reason, "quota exceeded") {
		t.Errorf("decision: %+v", d)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

const autoscalerWakeFor = autoscaler.DefaultWakeFor + time.Second

func staleLoad(e *env) autoscaler.Load {
	return autoscaler.Load{At: e.clock.Now().Add(-time.Hour)}
}
