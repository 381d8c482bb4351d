package autoscaler_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/butterfn/butter/autoscaler"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/prometheus/client_golang/prometheus"
)

// TestDesiredResourcesAndHeld: the cpu and memory targets ask for the
// allocations the use over their share of one allocation's reservation
// needs; held calls ask for what they need at the in-flight target of the
// smallest capacity; each part names itself in the reason.
func TestDesiredResourcesAndHeld(t *testing.T) {
	p := policy()
	p.TargetCPU, p.TargetMemory = 0.8, 0.5
	res := &autoscaler.Resources{Allocations: 2, CPUMHz: 500, CPUReservedMHz: 100, MemoryBytes: 300 << 20, MemoryReservedMB: 256}
	got, why := autoscaler.Desired(p, autoscaler.Load{Allocations: 2, Resources: res})
	// cpu: 500 / (0.8 × 100) = 6.25 -> 7; memory: 300 / (0.5 × 256) -> 3.
	if got != 7 || !strings.Contains(why, "cpu: 500 MHz used on 2 allocations (250% of 100 MHz each) at target 0.8 -> 7") || !strings.Contains(why, "memory: 300 MiB used on 2 allocations (59% of 256 MiB each) at target 0.5 -> 3") {
		t.Errorf("cpu and memory: %d (%s), want 7", got, why)
	}
	if s := res.CPUShare(); s != 2.5 {
		t.Errorf("CPUShare %g, want 2.5", s)
	}
	// Without a reading, the targets ask for nothing (the signals then
	// call the load stale: PoolSignals).
	if got, why := autoscaler.Desired(p, autoscaler.Load{Allocations: 1}); got != 0 || strings.Contains(why, "cpu") {
		t.Errorf("no resources read: %d (%s), want 0 and no cpu part", got, why)
	}
	// A policy without the targets ignores the reading.
	if got, _ := autoscaler.Desired(policy(), autoscaler.Load{Allocations: 2, Resources: res}); got != 0 {
		t.Errorf("resources without targets: %d, want 0", got)
	}
	// 12 held calls at 0.5 of capacity 10: 3; with a second function of
	// capacity 4, the smallest: 6.
	if got, why := autoscaler.Desired(p, autoscaler.Load{Held: 12}); got != 3 || !strings.Contains(why, "held: a gateway holds 12 calls, capacity 10 per allocation at target 0.5 -> 3") {
		t.Errorf("12 held: %d (%s), want 3", got, why)
	}
	p.Capacity = map[string]int{"f": 10, "g": 4}
	if got, why := autoscaler.Desired(p, autoscaler.Load{Held: 12}); got != 6 {
		t.Errorf("12 held, capacities 10 and 4: %d (%s), want 6", got, why)
	}
}

// TestWakeScalesForHeldCalls: a wake holding more calls than one
// allocation takes at its target scales from 0 to as many as they need,
// within max, in one step.
func TestWakeScalesForHeldCalls(t *testing.T) {
	p := policy()
	p.Min = 0
	e := newEnv(t, group("g", 0, p), group("small", 0, p))
	e.a.Wake("p", "g", 12)      // 12 / (0.5 × 10): 3
	e.a.Wake("p", "small", 100) // 20, bounded by max 5
	e.a.Step(context.Background())
	if n := e.nomad.count("p/g"); n != 3 {
		t.Errorf("count %d after a wake holding 12 calls; want 3", n)
	}
	if d := e.last("p/g"); d.Kind != fsm.ScaleScaled || !strings.HasPrefix(d.Reason, "0 -> 3: wake: a gateway holds 12 calls") {
		t.Errorf("decision: %+v", d)
	}
	if n := e.nomad.count("p/small"); n != 5 {
		t.Errorf("count %d after a wake holding 100 calls; want max 5", n)
	}
	if o := e.a.Observations()["p/g"]; o.Want != 3 || o.Signal != autoscaler.SignalWake || o.Load.Held != 12 {
		t.Errorf("observation: %+v", o)
	}
}

// TestObservationsAndMetrics: each pass leaves per group what it read and
// wants, the signal that asked for the most, or why it could not judge;
// the metrics carry the same, count each decision by kind, direction and
// signal, and drop a group's gauges when the group goes (and all of them
// on Reset), keeping the counters.
func TestObservationsAndMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := autoscaler.NewMetrics(reg)
	e := newEnv(t, group("g", 1, policy()), group("broken", 1, policy()))
	e.a = autoscaler.New(autoscaler.Config{Scaler: e.nomad, Signals: e.signals, Store: e.store, Clock: e.clock, Metrics: m})
	e.signals.set("p/g", autoscaler.Load{At: e.clock.Now(), Allocations: 1, Lag: 250,
		Functions: map[string]autoscaler.FunctionLoad{"f": {InFlight: 3, Queued: 1, Instances: 2}},
		Problems:  []string{"allocation 0123abcd: connection refused"}})
	e.signals.errs["p/broken"] = errors.New("list the allocations of service butter-p-broken in Nomad: 500")
	e.a.Step(context.Background())

	obs := e.a.Observations()
	g := obs["p/g"]
	if g.Count != 1 || g.Want != 3 || g.Signal != autoscaler.SignalLag || g.Load.Lag != 250 || len(g.Load.Problems) != 1 || g.Capacity["f"] != 10 {
		t.Errorf("observation of g: %+v", g)
	}
	b := obs["p/broken"]
	if b.Want != -1 || !strings.Contains(b.Err, "500") || b.Signal != autoscaler.SignalNone {
		t.Errorf("observation of broken: %+v", b)
	}

	gauge := func(name string, labels map[string]string) (float64, bool) {
		t.Helper()
		return sample(t, reg, name, labels)
	}
	pl := map[string]string{"project": "p", "pool": "g"}
	fl := map[string]string{"project": "p", "pool": "g", "function": "f"}
	for name, want := range map[string]float64{
		"butter_autoscaler_count":                 1,
		"butter_autoscaler_desired_count":         3,
		"butter_autoscaler_consumer_lag":          250,
		"butter_autoscaler_reporting_allocations": 1,
		"butter_autoscaler_signal_age_seconds":    0,
	} {
		if v, ok := gauge(name, pl); !ok || v != want {
			t.Errorf("%s of g: %g (present %v), want %g", name, v, ok, want)
		}
	}
	for name, want := range map[string]float64{
		"butter_autoscaler_inflight_calls": 3,
		"butter_autoscaler_queued_calls":   1,
		"butter_autoscaler_instances":      2,
		"butter_autoscaler_capacity_calls": 10,
	} {
		if v, ok := gauge(name, fl); !ok || v != want {
			t.Errorf("%s of g/f: %g (present %v), want %g", name, v, ok, want)
		}
	}
	if v, ok := gauge("butter_autoscaler_decisions_total", map[string]string{"project": "p", "pool": "g", "kind": fsm.ScaleScaled, "direction": "up", "signal": "lag"}); !ok || v != 1 {
		t.Errorf("decisions_total of g's step: %g (present %v), want 1", v, ok)
	}
	if v, ok := gauge("butter_autoscaler_decisions_total", map[string]string{"project": "p", "pool": "broken", "kind": fsm.ScaleError, "direction": "none", "signal": "none"}); !ok || v != 1 {
		t.Errorf("decisions_total of broken: %g (present %v), want 1", v, ok)
	}
	// Not judged: no desired count, no readings.
	if _, ok := gauge("butter_autoscaler_desired_count", map[string]string{"project": "p", "pool": "broken"}); ok {
		t.Errorf("broken has a desired count")
	}
	if _, ok := gauge("butter_autoscaler_consumer_lag", map[string]string{"project": "p", "pool": "broken"}); ok {
		t.Errorf("broken has a lag")
	}

	// g goes from Nomad: its observation and gauges go, its counter stays.
	e.nomad.mu.Lock()
	e.nomad.groups = e.nomad.groups[1:]
	e.nomad.mu.Unlock()
	e.a.Step(context.Background())
	if _, ok := e.a.Observations()["p/g"]; ok {
		t.Errorf("an observation of a group that is gone")
	}
	if _, ok := gauge("butter_autoscaler_count", pl); ok {
		t.Errorf("the count of a group that is gone")
	}
	if _, ok := gauge("butter_autoscaler_inflight_calls", fl); ok {
		t.Errorf("the calls of a group that is gone")
	}
	if _, ok := gauge("butter_autoscaler_decisions_total", map[string]string{"project": "p", "pool": "g", "kind": fsm.ScaleScaled, "direction": "up", "signal": "lag"}); !ok {
		t.Errorf("the decision counter of a group that is gone was dropped")
	}
	m.Reset()
	if _, ok := gauge("butter_autoscaler_count", map[string]string{"project": "p", "pool": "broken"}); ok {
		t.Errorf("a gauge after Reset")
	}
}

// sample returns the value of the series of the metric with exactly these
// labels.
func sample(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue(), true
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}
