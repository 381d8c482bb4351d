package autoscaler_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/autoscaler"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/hashicorp/go-hclog"
)

// The decision logic against in-memory seams: a Nomad of groups and
// counts, signals set by the test, a clock the test moves.

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time                  { return c.t }
func (c *fakeClock) advance(d time.Duration)         { c.t = c.t.Add(d) }
func newClock() *fakeClock                           { return &fakeClock{t: time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)} }
func (c *fakeClock) since(d time.Duration) time.Time { return c.t.Add(-d) }

type scaleCall struct {
	key    string
	count  int
	reason string
}

type fakeNomad struct {
	mu     sync.Mutex
	groups []*autoscaler.Group
	calls  []scaleCall
	refuse map[string]error
}

func (n *fakeNomad) Groups(context.Context) ([]autoscaler.Group, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]autoscaler.Group, len(n.groups))
	for i, g := range n.groups {
		out[i] = *g
	}
	return out, nil
}

func (n *fakeNomad) Scale(_ context.Context, t autoscaler.Target, count int, reason string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls = append(n.calls, scaleCall{t.Key(), count, reason})
	if err := n.refuse[t.Key()]; err != nil {
		return err
	}
	for _, g := range n.groups {
		if g.Key() == t.Key() {
			g.Count = count
		}
	}
	return nil
}

func (n *fakeNomad) count(key string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, g := range n.groups {
		if g.Key() == key {
			return g.Count
		}
	}
	return -1
}

func (n *fakeNomad) scaled() []scaleCall {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]scaleCall(nil), n.calls...)
}

type fakeSignals struct {
	mu    sync.Mutex
	loads map[string]autoscaler.Load
	errs  map[string]error
}

func (s *fakeSignals) Load(_ context.Context, g autoscaler.Group) (autoscaler.Load, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.errs[g.Key()]; err != nil {
		return autoscaler.Load{}, err
	}
	return s.loads[g.Key()], nil
}

func (s *fakeSignals) set(key string, l autoscaler.Load) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loads[key] = l
}

// policy is a pool of one function "f" with capacity 10 per allocation.
func policy() jobs.ScalingPolicy {
	return jobs.ScalingPolicy{
		Enabled: true, Min: 1, Max: 5,
		Cooldown: 30 * time.Second, ScaleInDelay: 2 * time.Minute,
		TargetInFlight: 0.5, TargetLag: 100,
		Capacity:       map[string]int{"f": 10},
		ConsumerGroups: []string{"butter.p.f.in"},
	}
}

type env struct {
	clock   *fakeClock
	nomad   *fakeNomad
	signals *fakeSignals
	store   *autoscaler.MemStore
	a       *autoscaler.Autoscaler
}

func newEnv(t *testing.T, groups ...*autoscaler.Group) *env {
	e := &env{clock: newClock(), nomad: &fakeNomad{groups: groups, refuse: map[string]error{}}, signals: &fakeSignals{loads: map[string]autoscaler.Load{}, errs: map[string]error{}}, store: &autoscaler.MemStore{}}
	e.a = autoscaler.New(autoscaler.Config{Scaler: e.nomad, Signals: e.signals, Store: e.store, Clock: e.clock, StaleAfter: 10 * time.Second, Logger: hclog.New(&hclog.LoggerOptions{Output: testWriter{t}, Level: hclog.Debug})})
	return e
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func group(name string, count int, p jobs.ScalingPolicy) *autoscaler.Group {
	return &autoscaler.Group{Target: autoscaler.Target{Project: "p", Job: "butter-p", Group: name}, Count: count, Policy: p}
}

// load is a fresh reading: inflight calls of "f" over allocs allocations,
// and lag.
func (e *env) load(key string, allocs, inflight int, lag int64) {
	e.signals.set(key, autoscaler.Load{At: e.clock.Now(), Allocations: allocs, Functions: map[string]autoscaler.FunctionLoad{"f": {InFlight: inflight, Instances: allocs}}, Lag: lag})
}

func (e *env) last(key string) fsm.ScalingDecision { return e.store.Decisions()[key] }

func TestDesired(t *testing.T) {
	p := policy()
	cases := []struct {
		inflight int
		lag      int64
		want     int
	}{
		{0, 0, 0},
		{5, 0, 1},   // 5 / (0.5 × 10)
		{6, 0, 2},   // over one allocation's target
		{0, 250, 3}, // 250 / 100
		{12, 150, 3},
	}
	for _, c := range cases {
		got, why := autoscaler.Desired(p, autoscaler.Load{Allocations: 1, Functions: map[string]autoscaler.FunctionLoad{"f": {InFlight: c.inflight}}, Lag: c.lag})
		if got != c.want {
			t.Errorf("inflight %d, lag %d: %d (%s), want %d", c.inflight, c.lag, got, why, c.want)
		}
	}
	// Queued calls count with those in flight.
	if got, why := autoscaler.Desired(p, autoscaler.Load{Allocations: 1, Functions: map[string]autoscaler.FunctionLoad{"f": {InFlight: 2, Queued: 4}}}); got != 2 || !strings.Contains(why, "2 calls in flight and 4 queued") {
		t.Errorf("2 in flight and 4 queued: %d (%s), want 2", got, why)
	}
	// The lag signal needs consumer groups; a pool without any ignores it.
	p.ConsumerGroups = nil
	if got, _ := autoscaler.Desired(p, autoscaler.Load{Lag: 1000}); got != 0 {
		t.Errorf("lag without consumer groups: %d, want 0", got)
	}
}

// TestScaleOutThenCooldown: load over target scales out at once, with a
// reason naming the signal; the next step waits out the cooldown, even
// under more load.
func TestScaleOutThenCooldown(t *testing.T) {
	e := newEnv(t, group("g", 1, policy()))
	e.load("p/g", 1, 8, 0)
	e.a.Step(context.Background())
	if n := e.nomad.count("p/g"); n != 2 {
		t.Fatalf("count %d after 8 calls in flight on capacity 10 at 0.5; want 2 (decision %+v)", n, e.last("p/g"))
	}
	d := e.last("p/g")
	if d.Kind != fsm.ScaleScaled || d.Count != 1 || d.To != 2 || !strings.Contains(d.Reason, "inflight: f has 8 calls in flight") {
		t.Errorf("decision: %+v", d)
	}
	if calls := e.nomad.scaled(); len(calls) != 1 || !strings.HasPrefix(calls[0].reason, "butter autoscaler: 1 -> 2: ") {
		t.Errorf("scale calls: %+v", calls)
	}

	e.clock.advance(10 * time.Second)
	e.load("p/g", 2, 30, 0)
	e.a.Step(context.Background())
	if n := e.nomad.count("p/g"); n != 2 {
		t.Fatalf("scaled to %d within the cooldown", n)
	}
	if d := e.last("p/g"); d.Kind != fsm.ScaleHold || !strings.Contains(d.Reason, "cooling down until") {
		t.Errorf("decision in the cooldown: %+v", d)
	}
	e.clock.advance(21 * time.Second)
	e.load("p/g", 2, 30, 0)
	e.a.Step(context.Background())
	if n := e.nomad.count("p/g"); n != 5 {
		t.Errorf("count %d after the cooldown with 30 calls in flight; want max 5", n)
	}
	if d := e.last("p/g"); !strings.Contains(d.Reason, "bounded to 5 by min 1, max 5") {
		t.Errorf("decision: %+v", d)
	}
}

// TestScaleInDelay: the count goes down only after the load has stayed
// low for the scale-in delay, and to the most it wanted during it.
func TestScaleInDelay(t *testing.T) {
	e := newEnv(t, group("g", 4, policy()))
	e.load("p/g", 4, 0, 150) // wants 2
	e.a.Step(context.Background())
	if n := e.nomad.count("p/g"); n != 4 {
		t.Fatalf("scaled in to %d at once", n)
	}
	if d := e.last("p/g"); d.Kind != fsm.ScaleHold || !strings.Contains(d.Reason, "scale-in delay") {
		t.Errorf("decision: %+v", d)
	}
	e.clock.advance(time.Minute)
	e.load("p/g", 4, 0, 250) // wants 3 for a moment
	e.a.Step(context.Background())
	e.clock.advance(61 * time.Second)
	e.load("p/g", 4, 0, 0) // wants min, 1
	e.a.Step(context.Background())
	if n := e.nomad.count("p/g"); n != 3 {
		t.Fatalf("count %d after the delay; want 3, the most wanted during it", n)
	}
	// Load back at the count ends a delay: a later dip starts a new one.
	e.clock.advance(time.Minute) // past the cooldown
	e.load("p/g", 3, 0, 300)
	e.a.Step(context.Background())
	e.clock.advance(time.Second)
	e.load("p/g", 3, 0, 0)
	e.a.Step(context.Background())
	if n := e.nomad.count("p/g"); n != 3 {
		t.Errorf("scaled in to %d right after the load was back at target", n)
	}
}

// TestScaleInNeedsEveryAllocation: with allocations missing from the
// report, the load may be undercounted: no scale-in.
func TestScaleInNeedsEveryAllocation(t *testing.T) {
	p := policy()
	p.ScaleInDelay = 0
	e := newEnv(t, group("g", 3, p))
	e.load("p/g", 2, 0, 0)
	e.a.Step(context.Background())
	if n := e.nomad.count("p/g"); n != 3 {
		t.Fatalf("scaled in to %d with 2 of 3 allocations reporting", n)
	}
	if d := e.last("p/g"); !strings.Contains(d.Reason, "only 2 of 3 allocations report") {
		t.Errorf("decision: %+v", d)
	}
	e.load("p/g", 3, 0, 0)
	e.a.Step(context.Background())
	if n := e.nomad.count("p/g"); n != 1 {
		t.Errorf("count %d with every allocation reporting no load and no delay; want 1", n)
	}
}

// TestStaleSignals: signals older than StaleAfter move nothing, and the
// decision says how old and why.
func TestStaleSignals(t *testing.T) {
	e := newEnv(t, group("g", 1, policy()))
	e.signals.set("p/g", autoscaler.Load{At: e.clock.since(time.Minute), Allocations: 1, Lag: 10000, Problems: []string{"kafka: connection refused"}})
	e.a.Step(context.Background())
	if n := e.nomad.count("p/g"); n != 1 || len(e.nomad.scaled()) != 0 {
		t.Fatalf("scaled on stale signals: count %d", n)
	}
	d := e.last("p/g")
	if d.Kind != fsm.ScaleStale || !strings.Contains(d.Reason, "last read at 2026-12-03T07:59:00Z, more than 10s ago") || !strings.Contains(d.Reason, "kafka: connection refused") {
		t.Errorf("decision: %+v", d)
	}
	// Another reason for the same fault is recorded at most once a
	// minute (the log has each).
	e.signals.set("p/g", autoscaler.Load{}) // never read
	e.a.Step(context.Background())
	if d := e.last("p/g"); !strings.Contains(d.Reason, "kafka: connection refused") {
		t.Errorf("a new reason for the same fault recorded at once: %+v", d)
	}
	e.clock.advance(time.Minute)
	e.a.Step(context.Background())
	if d := e.last("p/g"); d.Kind != fsm.ScaleStale || !strings.Contains(d.Reason, "no signals were ever read") {
		t.Errorf("decision: %+v", d)
	}
}

// TestFaultsStayPerGroup: a group with min > max, one whose signals fail,
// one Nomad refuses to scale, and one in an active deployment are each
// recorded with their cause; the healthy group beside them scales.
func TestFaultsStayPerGroup(t *testing.T) {
	inverted := policy()
	inverted.Min, inverted.Max = 4, 2
	e := newEnv(t,
		group("inverted", 1, inverted),
		&autoscaler.Group{Target: autoscaler.Target{Project: "p", Job: "butter-p", Group: "badpolicy"}, Count: 1, PolicyErr: errors.New("scaling policy query: not a key Butter's autoscaler knows")},
		group("nosignals", 1, policy()),
		group("refused", 1, policy()),
		&autoscaler.Group{Target: autoscaler.Target{Project: "p", Job: "butter-p", Group: "deploying"}, Count: 1, Policy: policy(), Deployment: "0123456789abcdef"},
		group("ok", 1, policy()),
	)
	for _, g := range []string{"inverted", "badpolicy", "refused", "deploying", "ok"} {
		e.load("p/"+g, 1, 0, 300)
	}
	e.signals.errs["p/nosignals"] = errors.New("Nomad: 500")
	e.nomad.refuse["p/refused"] = fmt.Errorf("Unexpected response code: 400 (quota exceeded)")
	e.a.Step(context.Background())

	want := map[string]struct{ kind, reason string }{
		"inverted":  {fsm.ScaleError, "min 4 is greater than max 2"},
		"badpolicy": {fsm.ScaleError, "not a key"},
		"nosignals": {fsm.ScaleError, "cannot read the signals: Nomad: 500"},
		"refused":   {fsm.ScaleRefused, "quota exceeded"},
		"deploying": {fsm.ScaleHold, "deployment 01234567 is active"},
		"ok":        {fsm.ScaleScaled, "1 -> 3: "},
	}
	for g, w := range want {
		d := e.last("p/" + g)
		if d.Kind != w.kind || !strings.Contains(d.Reason, w.reason) {
			t.Errorf("%s: %s %q; want %s containing %q", g, d.Kind, d.Reason, w.kind, w.reason)
		}
	}
	if n := e.nomad.count("p/ok"); n != 3 {
		t.Errorf("ok: count %d, want 3", n)
	}
	if n := e.nomad.count("p/refused"); n != 1 {
		t.Errorf("refused: count %d", n)
	}
	// A refused step is no step: no cooldown starts, the next pass tries
	// again.
	delete(e.nomad.refuse, "p/refused")
	e.load("p/refused", 1, 0, 300)
	e.a.Step(context.Background())
	if n := e.nomad.count("p/refused"); n != 3 {
		t.Errorf("refused, then accepted: count %d, want 3", n)
	}
}

// TestNewLeaderKeepsCooldown: a second Autoscaler (a new leader) on the
// same replicated decisions does not step again within the cooldown of
// the first's step.
func TestNewLeaderKeepsCooldown(t *testing.T) {
	e := newEnv(t, group("g", 1, policy()))
	e.load("p/g", 1, 0, 250)
	e.a.Step(context.Background())
	if n := e.nomad.count("p/g"); n != 3 {
		t.Fatalf("count %d, want 3", n)
	}
	next := autoscaler.New(autoscaler.Config{Scaler: e.nomad, Signals: e.signals, Store: e.store, Clock: e.clock, StaleAfter: 10 * time.Second})
	e.clock.advance(5 * time.Second)
	e.load("p/g", 3, 0, 500)
	next.Step(context.Background())
	if calls := e.nomad.scaled(); len(calls) != 1 {
		t.Errorf("the new leader scaled within the old one's cooldown: %+v", calls)
	}
}

// TestDisabledAndHoldsRecordedOnce: a disabled policy is never scaled; a
// hold is recorded when it changes, not at every pass.
func TestDisabledAndHoldsRecordedOnce(t *testing.T) {
	off := policy()
	off.Enabled = false
	e := newEnv(t, group("off", 1, off), group("g", 1, policy()))
	e.load("p/off", 1, 0, 10000)
	for i := range 5 {
		e.load("p/g", 1, i%2, 0)
		e.a.Step(context.Background())
		e.clock.advance(time.Second)
	}
	if n := e.nomad.count("p/off"); n != 1 {
		t.Errorf("a disabled group was scaled to %d", n)
	}
	if d := e.last("p/off"); d.Kind != fsm.ScaleDisabled {
		t.Errorf("disabled: %+v", d)
	}
	if len(e.store.Recorded()) != 2 {
		t.Errorf("%d decisions recorded for 5 passes over two steady groups; want 2: %+v", len(e.store.Recorded()), e.store.Recorded())
	}
}

// TestScaleFromZeroOnLag: a pool at zero allocations (min 0) has no pool
// to report, but consumer lag wakes it.
func TestScaleFromZeroOnLag(t *testing.T) {
	p := policy()
	p.Min = 0
	e := newEnv(t, group("g", 0, p))
	e.signals.set("p/g", autoscaler.Load{At: e.clock.Now(), Lag: 1})
	e.a.Step(context.Background())
	if n := e.nomad.count("p/g"); n != 1 {
		t.Errorf("count %d with lag 1 at zero allocations; want 1", n)
	}
}

// TestUnmanagedGroup: a group whose scaling block has no Butter policy (a
// job compiled before the autoscaler, min 0) is left alone, however idle.
func TestUnmanagedGroup(t *testing.T) {
	old := jobs.ScalingPolicy{Enabled: true, Min: 0, Max: 10}
	g := group("g", 1, old)
	g.Unmanaged = "no policy of Butter's"
	e := newEnv(t, g)
	e.load("p/g", 1, 0, 0)
	e.a.Step(context.Background())
	if n := e.nomad.count("p/g"); n != 1 || len(e.nomad.scaled()) != 0 {
		t.Errorf("an unmanaged group was scaled to %d", n)
	}
	if d := e.last("p/g"); d.Kind != fsm.ScaleDisabled || d.Reason != "no policy of Butter's" {
		t.Errorf("decision: %+v", d)
	}
}
