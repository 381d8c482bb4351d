// Package autoscaler scales the allocations of Butter's pools: each task
// group's count, between the bounds of its Nomad scaling block, toward the
// targets of the policy the compiler writes into that block (package jobs,
// ScalingPolicy). The control plane's Raft leader runs it (package
// scheduler); a new leader resumes from the decisions recorded in Raft.
//
// The loop's seams are small interfaces, each with a real implementation
// and an in-memory one for tests:
//
//   - Scaler: the task groups with their counts, policies and active
//     deployments, and the call that sets a count (Nomad's Scale API:
//     NomadScaler);
//   - Signals: the load of a task group (calls in flight, queued and
//     instances per function, from each allocation's pool /metrics; CPU
//     and memory from Nomad's allocation stats, when the policy has those
//     targets; Kafka consumer lag of the pool's consumer groups, through
//     kadm: PoolSignals);
//   - Store: the last decision per group, replicated (the scheduler's
//     Raft log; MemStore in tests);
//   - Clock.
//
// Wake is the gateway's way in: calls held for a pool with no allocation
// scale it from 0 at the next pass, which Wake starts at once (the control
// plane's wake route, package scheduler, calls it on the leader), and
// count as load (the held signal) while the wake lasts.
//
// Each pass leaves an Observation per group (what it read and what that
// wants; Observations, shown by `butter status`) and, with Config.Metrics,
// Prometheus series of the same (observe.go).
package autoscaler

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/hashicorp/go-hclog"
)

// Defaults of Config. A pass every 2 s (Knative's autoscaler ticks at
// the same rate) puts a step in load a second from the loop's answer on
// average; a pass reads each running allocation's /metrics, a few hundred
// bytes, and writes to Raft only when a decision changes.
const (
	DefaultInterval   = 2 * time.Second
	DefaultStaleAfter = 15 * time.Second
)

// reasonEvery is how often a fault that stays a fault is recorded again
// for a new message.
const reasonEvery = time.Minute

// Target names a task group.
type Target struct {
	Project string
	Job     string
	Group   string
}

// Key is the target's key in the replicated state: "<project>/<group>".
func (t Target) Key() string { return t.Project + "/" + t.Group }

func (t Target) String() string { return t.Job + "/" + t.Group }

// Group is a task group as Nomad runs it now.
type Group struct {
	Target
	// Count is the group's count in Nomad.
	Count int
	// Policy is the group's scaling policy; PolicyErr is set instead when
	// the group's scaling block cannot be read (jobs.ParseScalingPolicy).
	Policy    jobs.ScalingPolicy
	PolicyErr error
	// Deployment is the ID of the job's active deployment, "" when none:
	// Nomad refuses to scale a job while one runs.
	Deployment string
	// CPUMHz and MemoryMB are what one allocation reserves (the sum of
	// its tasks' resources): what the cpu and memory targets are
	// fractions of.
	CPUMHz, MemoryMB int
	// Unmanaged, when set, says why the autoscaler leaves the group
	// alone: its scaling block has no policy of Butter's (a job compiled
	// before the autoscaler existed, whose min may be 0 for a pool that
	// nothing wakes).
	Unmanaged string
}

// Scaler is Nomad, as the loop uses it.
type Scaler interface {
	// Groups lists the task groups of Butter's jobs.
	Groups(ctx context.Context) ([]Group, error)
	// Scale sets a group's count, with the reason Nomad records in the
	// job's scaling events (`nomad job scaling-events`).
	Scale(ctx context.Context, t Target, count int, reason string) error
}

// Load is what a group's signals say.
type Load struct {
	// At is when the oldest part of the load was read: a part that could
	// not be read again keeps its last reading, and its age.
	At time.Time
	// Allocations is how many allocations' pools reported.
	Allocations int
	// Functions sums the pools' reports per function.
	Functions map[string]FunctionLoad
	// Lag is the consumer lag, in records, of the group's consumer
	// groups together.
	Lag int64
	// Resources is the pools' CPU and memory use from Nomad's allocation
	// stats; nil when no target asks for them or none could ever be read.
	Resources *Resources
	// Held is how many calls a gateway last said it holds for the pool
	// while it has no allocation (Wake); the loop sets it, not Signals.
	Held int
	// Problems name the parts that could not be read this time (they
	// keep their last reading, with its age in At).
	Problems []string
}

// Resources is a group's CPU and memory use, from Nomad's allocation
// stats (what the task driver measures of the pool's process tree),
// against what one allocation reserves.
type Resources struct {
	// Allocations is how many allocations' stats are summed.
	Allocations int
	// CPUMHz is the CPU used, summed (Nomad's TotalTicks, in MHz);
	// CPUReservedMHz is one allocation's reservation (the task's cpu).
	CPUMHz         float64
	CPUReservedMHz int
	// MemoryBytes is the memory used (RSS), summed; MemoryReservedMB is
	// one allocation's reservation (the task's memory).
	MemoryBytes      uint64
	MemoryReservedMB int
}

// CPUShare is the CPU used over the CPU reserved by the allocations
// read: 0.8 is 80% of the reservation.
func (r *Resources) CPUShare() float64 {
	if r == nil || r.CPUReservedMHz <= 0 || r.Allocations == 0 {
		return 0
	}
	return r.CPUMHz / float64(r.CPUReservedMHz*r.Allocations)
}

// MemoryShare is the memory used over the memory reserved by the
// allocations read.
func (r *Resources) MemoryShare() float64 {
	if r == nil || r.MemoryReservedMB <= 0 || r.Allocations == 0 {
		return 0
	}
	return float64(r.MemoryBytes) / float64(uint64(r.MemoryReservedMB)<<20*uint64(r.Allocations))
}

// FunctionLoad is one function's load over a group's allocations.
type FunctionLoad struct {
	InFlight int
	// Queued are calls waiting for an instance: every instance busy and
	// the function at its max.
	Queued    int
	Instances int
	// Calls and Errors are the calls completed and the failed ones since
	// the pool started (butter_invocations_total, and the calls refused
	// before running from butter_invocation_errors_total), and Latency their
	// durations' cumulative histogram (butter_invocation_duration_seconds),
	// buckets sorted by Le: TrafficWindow turns one pool's readings into
	// rates. Over a group's allocations (Load.Functions) Calls, Errors and
	// Lag are summed and Latency is left out: Traffic is what to read.
	Calls, Errors float64
	Latency       []Bucket
	// Lag is the records of the function's stream triggers its pools had
	// not fetched at their last poll (butter_consumer_lag, over the
	// partitions).
	Lag int64
	// Traffic is the function's calls over the last minute or so (the
	// difference between readings of its pools); nil until a pool was
	// read twice.
	Traffic *Traffic
}

// Signals reads a group's load.
type Signals interface {
	Load(ctx context.Context, g Group) (Load, error)
}

// Store keeps the last decision per group in replicated state.
type Store interface {
	// Decisions returns the recorded decisions by Target.Key.
	Decisions() map[string]fsm.ScalingDecision
	// Record writes a decision.
	Record(d fsm.ScalingDecision) error
}

// Clock tells the time.
type Clock interface{ Now() time.Time }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Config configures an Autoscaler.
type Config struct {
	Scaler  Scaler
	Signals Signals
	Store   Store
	// Clock defaults to the system clock.
	Clock Clock
	// Interval is the time between passes of Run; DefaultInterval when 0.
	Interval time.Duration
	// StaleAfter is the age past which signals are not acted on;
	// DefaultStaleAfter when 0.
	StaleAfter time.Duration
	// WakeFor is how long a wake (Wake) keeps asking for at least one
	// allocation; DefaultWakeFor when 0. A gateway holding calls repeats
	// its wake more often than this (gateway.WakeEvery).
	WakeFor time.Duration
	// Metrics, when set, get each pass's decisions and signals.
	Metrics *Metrics
	Logger  hclog.Logger
}

// DefaultWakeFor is Config.WakeFor's default.
const DefaultWakeFor = 10 * time.Second

// Autoscaler is the loop. Its in-memory state (since when each group has
// wanted fewer allocations) is its own: a new leader's Autoscaler starts
// the scale-in delay again, which delays a scale-in and never repeats a
// step.
type Autoscaler struct {
	cfg Config
	log hclog.Logger

	mu    sync.Mutex
	below map[string]belowSince
	wakes map[string]wake        // by Target.Key
	obs   map[string]Observation // by Target.Key: the last pass's
	kick  chan struct{}          // a wake asks for a pass now
}

// wake is a gateway's report of calls held for a pool with no
// allocation.
type wake struct {
	at   time.Time
	held int
}

// belowSince is a group wanting fewer allocations than it has: since
// when, and the most it wanted since then.
type belowSince struct {
	since time.Time
	peak  int
}

// New returns an Autoscaler.
func New(cfg Config) *Autoscaler {
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = DefaultStaleAfter
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.WakeFor <= 0 {
		cfg.WakeFor = DefaultWakeFor
	}
	return &Autoscaler{cfg: cfg, log: cfg.Logger, below: map[string]belowSince{}, wakes: map[string]wake{}, obs: map[string]Observation{}, kick: make(chan struct{}, 1)}
}

// Wake reports that a gateway holds calls for a project's pool (its task
// group) that has no allocation: the next pass, which Wake starts at
// once, scales the group from 0 without waiting for the signals or the
// cooldown, to one allocation or as many as the held calls need at the
// in-flight target (the held signal, within max), and for WakeFor after
// the last wake the group wants at least one allocation and counts the
// held calls as load. It is cheap and safe to call often (a gateway
// repeats it while it holds calls); a wake for a group that does not
// exist or is not scaled to zero changes nothing but that floor.
func (a *Autoscaler) Wake(project, pool string, held int) {
	now := a.cfg.Clock.Now()
	key := Target{Project: project, Group: pool}.Key()
	a.mu.Lock()
	for k, w := range a.wakes {
		if now.Sub(w.at) > a.cfg.WakeFor {
			delete(a.wakes, k) // bounds the map to the pools woken lately
		}
	}
	a.wakes[key] = wake{at: now, held: held}
	a.mu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default: // a pass is already asked for
	}
}

// woken returns the group's last wake within WakeFor.
func (a *Autoscaler) woken(g Group, now time.Time) (wake, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w, ok := a.wakes[g.Key()]
	if !ok || now.Sub(w.at) > a.cfg.WakeFor {
		return wake{}, false
	}
	return w, true
}

// Run runs passes every Interval, and at once after a Wake, until ctx
// ends.
func (a *Autoscaler) Run(ctx context.Context) {
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	for {
		a.Step(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.kick:
		}
	}
}

// Step takes one decision for every group. A group whose policy, signals
// or scaling fails is logged and recorded; the others go on.
func (a *Autoscaler) Step(ctx context.Context) {
	groups, err := a.cfg.Scaler.Groups(ctx)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("cannot list the task groups to scale; will retry", "error", err)
		}
		return
	}
	last := a.cfg.Store.Decisions()
	seen := map[string]bool{}
	for _, g := range groups {
		if ctx.Err() != nil {
			return
		}
		seen[g.Key()] = true
		prev := last[g.Key()]
		o := Observation{Target: g.Target, At: a.cfg.Clock.Now(), Count: g.Count, Want: -1, Signal: SignalNone, Capacity: g.Policy.Capacity}
		d := a.decide(ctx, g, prev, &o)
		a.mu.Lock()
		a.obs[g.Key()] = o
		a.mu.Unlock()
		a.cfg.Metrics.observe(o, d)
		if d.Kind == fsm.ScaleScaled || d.Kind != prev.Kind || d.Count != prev.Count || d.To != prev.To ||
			(d.Kind != fsm.ScaleHold && d.Reason != prev.Reason && d.At.Sub(prev.At) >= reasonEvery) {
			// Holds are recorded when what they hold changes, not at
			// every pass: the reason's numbers move all the time. A
			// fault whose message changes (an address, a timeout) is
			// recorded at most every reasonEvery; the log has each.
			if err := a.cfg.Store.Record(d); err != nil {
				a.log.Warn("cannot record a scaling decision", "group", g.String(), "error", err)
			}
		}
	}
	a.mu.Lock()
	for k := range a.below {
		if !seen[k] {
			delete(a.below, k)
		}
	}
	for k, o := range a.obs {
		if !seen[k] {
			delete(a.obs, k)
			if a.cfg.Metrics != nil {
				a.cfg.Metrics.forget(map[string]string{"project": o.Project, "pool": o.Group})
			}
		}
	}
	a.mu.Unlock()
}

// decide takes the decision for one group, scaling it when it should,
// and fills o with what it looked at.
func (a *Autoscaler) decide(ctx context.Context, g Group, prev fsm.ScalingDecision, o *Observation) fsm.ScalingDecision {
	now := a.cfg.Clock.Now()
	d := fsm.ScalingDecision{Project: g.Project, Job: g.Job, Group: g.Group, At: now, Count: g.Count, To: g.Count, LastScaled: prev.LastScaled, LastStep: prev.LastStep}
	hold := func(kind, why string) fsm.ScalingDecision {
		d.Kind, d.Reason = kind, why
		switch kind {
		case fsm.ScaleError, fsm.ScaleStale:
			a.log.Warn("not scaling", "group", g.String(), "reason", why)
		}
		return d
	}
	if g.PolicyErr != nil {
		return hold(fsm.ScaleError, "the scaling policy is refused: "+g.PolicyErr.Error())
	}
	p := g.Policy
	if p.Min > p.Max {
		return hold(fsm.ScaleError, fmt.Sprintf("the scaling policy is refused: min %d is greater than max %d", p.Min, p.Max))
	}
	if g.Unmanaged != "" {
		a.forget(g)
		return hold(fsm.ScaleDisabled, g.Unmanaged)
	}
	if !p.Enabled {
		a.forget(g)
		return hold(fsm.ScaleDisabled, "the scaling block has enabled = false: operators set the count")
	}
	w, woken := a.woken(g, now)
	if woken && g.Count == 0 && p.Max >= 1 {
		// Calls wait in a gateway: allocations now, whatever the other
		// signals say or how recently the group scaled in. The wake is
		// itself a fresh signal, and only a step from 0 skips the
		// cooldown. One allocation, or as many as the held calls need
		// (Desired's held signal), within max.
		to, _, _ := desire(p, Load{Held: w.held})
		to = min(max(to, 1, p.Min), p.Max)
		o.Want, o.Signal, o.Load.Held = to, SignalWake, w.held
		reason := fmt.Sprintf("0 -> %d: wake: a gateway holds %d calls for a pool with no allocation", to, w.held)
		if to > 1 {
			reason += fmt.Sprintf(" (capacity per allocation at target %g: %d allocations)", p.TargetInFlight, to)
		}
		if err := a.cfg.Scaler.Scale(ctx, g.Target, to, "butter autoscaler: "+reason); err != nil {
			d.Kind, d.To, d.Reason = fsm.ScaleRefused, to, fmt.Sprintf("Nomad refused %s: %v", reason, err)
			a.log.Error("Nomad refused to wake a pool", "group", g.String(), "error", err)
			return d
		}
		a.forget(g)
		a.log.Info("scaled", "group", g.String(), "from", 0, "to", to, "reason", "wake", "held", w.held)
		d.Kind, d.To, d.Reason, d.LastScaled, d.LastStep = fsm.ScaleScaled, to, reason, now, reason
		return d
	}
	load, err := a.cfg.Signals.Load(ctx, g)
	if err != nil {
		o.Err = err.Error()
		return hold(fsm.ScaleError, "cannot read the signals: "+err.Error())
	}
	if woken {
		load.Held = w.held
	}
	o.Load = load
	if age := now.Sub(load.At); load.At.IsZero() || age > a.cfg.StaleAfter {
		// The reading's time, not its age: the reason stays the same
		// while the signals stay stale, and is recorded once.
		why := fmt.Sprintf("the signals are stale: last read at %s, more than %s ago", load.At.UTC().Format(time.RFC3339), a.cfg.StaleAfter)
		if load.At.IsZero() {
			why = "no signals were ever read"
		}
		if len(load.Problems) > 0 {
			why += ": " + strings.Join(load.Problems, "; ")
		}
		return hold(fsm.ScaleStale, why)
	}
	want, signal, why := desire(p, load)
	o.Signal = signal
	if woken && want < 1 {
		want, o.Signal = 1, SignalWake
		why += fmt.Sprintf("; wake: a gateway held %d calls at %s -> 1", w.held, w.at.UTC().Format(time.RFC3339))
	}
	clamped := min(max(want, p.Min), p.Max)
	if clamped != want {
		why += fmt.Sprintf("; bounded to %d by min %d, max %d", clamped, p.Min, p.Max)
	}
	want = clamped
	o.Want = want
	d.To = want // a hold records what the load wants
	if want < g.Count {
		a.mu.Lock()
		b, ok := a.below[g.Key()]
		if !ok {
			b = belowSince{since: now, peak: want}
		}
		b.peak = max(b.peak, want)
		a.below[g.Key()] = b
		a.mu.Unlock()
	} else {
		a.forget(g)
	}
	if want == g.Count {
		return hold(fsm.ScaleHold, "at target: "+why)
	}
	if g.Deployment != "" {
		return hold(fsm.ScaleHold, fmt.Sprintf("wants %d, but deployment %s is active (Nomad scales no job during one): %s", want, short(g.Deployment), why))
	}
	if !prev.LastScaled.IsZero() && now.Before(prev.LastScaled.Add(p.Cooldown)) {
		return hold(fsm.ScaleHold, fmt.Sprintf("wants %d, cooling down until %s (cooldown %s): %s", want, prev.LastScaled.Add(p.Cooldown).UTC().Format(time.RFC3339), p.Cooldown, why))
	}
	if want < g.Count {
		if load.Allocations < g.Count {
			return hold(fsm.ScaleHold, fmt.Sprintf("wants %d, but only %d of %d allocations report: not scaling in on part of the load", want, load.Allocations, g.Count))
		}
		a.mu.Lock()
		b := a.below[g.Key()]
		a.mu.Unlock()
		if now.Sub(b.since) < p.ScaleInDelay {
			return hold(fsm.ScaleHold, fmt.Sprintf("wants %d since %s; scales in after the scale-in delay (%s), at %s: %s", b.peak, b.since.UTC().Format(time.RFC3339), p.ScaleInDelay, b.since.Add(p.ScaleInDelay).UTC().Format(time.RFC3339), why))
		}
		// The most it wanted during the delay, so a dip does not take
		// away what a moment before needed.
		if b.peak > want {
			why += fmt.Sprintf("; %d, the most wanted during the scale-in delay", b.peak)
			want = b.peak
		}
	}
	reason := fmt.Sprintf("%d -> %d: %s", g.Count, want, why)
	if err := a.cfg.Scaler.Scale(ctx, g.Target, want, "butter autoscaler: "+reason); err != nil {
		d.Kind, d.To, d.Reason = fsm.ScaleRefused, want, fmt.Sprintf("Nomad refused %s: %v", reason, err)
		a.log.Error("Nomad refused to scale", "group", g.String(), "from", g.Count, "to", want, "error", err)
		return d
	}
	a.forget(g)
	a.log.Info("scaled", "group", g.String(), "from", g.Count, "to", want, "reason", why)
	d.Kind, d.To, d.Reason, d.LastScaled, d.LastStep = fsm.ScaleScaled, want, reason, now, reason
	return d
}

func (a *Autoscaler) forget(g Group) {
	a.mu.Lock()
	delete(a.below, g.Key())
	a.mu.Unlock()
}

// The signals a decision can be driven by (Observation.Signal, and the
// signal label of butter_autoscaler_decisions_total).
const (
	SignalInFlight = "inflight"
	SignalLag      = "lag"
	SignalCPU      = "cpu"
	SignalMemory   = "memory"
	SignalHeld     = "held"
	SignalWake     = "wake"
	SignalNone     = "none"
)

// Desired is the count the load asks for, before the policy's bounds:
// the most any signal asks for. For each function of the pool, calls in
// flight and queued over TargetInFlight of one allocation's capacity; for
// the pool, consumer lag over TargetLag, CPU and memory used over their
// target fraction of one allocation's reservation, and calls a gateway
// holds while the pool has no allocation over TargetInFlight of the
// smallest capacity of its functions (a held call may be for any of them;
// the smallest never gives too few). It does not depend on the current
// count, so a steady load gives a steady answer. The reason names each
// signal.
func Desired(p jobs.ScalingPolicy, l Load) (int, string) {
	n, _, why := desire(p, l)
	return n, why
}

// desire is Desired with the signal that asks for the most (SignalNone
// when none asks for any allocation).
func desire(p jobs.ScalingPolicy, l Load) (int, string, string) {
	want, signal := 0, SignalNone
	var parts []string
	ask := func(sig string, n int) {
		if n > want {
			want, signal = n, sig
		}
	}
	if p.TargetInFlight > 0 {
		fns := make([]string, 0, len(p.Capacity))
		for f := range p.Capacity {
			fns = append(fns, f)
		}
		sort.Strings(fns)
		busiest, busiestWant, total := "", 0, 0
		for _, f := range fns {
			fl := l.Functions[f]
			total += fl.InFlight + fl.Queued
			if n := int(math.Ceil(float64(fl.InFlight+fl.Queued) / (p.TargetInFlight * float64(p.Capacity[f])))); n > busiestWant {
				busiest, busiestWant = f, n
			}
		}
		if busiest != "" {
			fl := l.Functions[busiest]
			queued := ""
			if fl.Queued > 0 {
				queued = fmt.Sprintf(" and %d queued", fl.Queued)
			}
			parts = append(parts, fmt.Sprintf("inflight: %s has %d calls in flight%s on %d allocations, capacity %d per allocation at target %g -> %d", busiest, fl.InFlight, queued, l.Allocations, p.Capacity[busiest], p.TargetInFlight, busiestWant))
		} else {
			parts = append(parts, fmt.Sprintf("inflight: %d calls in flight -> 0", total))
		}
		ask(SignalInFlight, busiestWant)
		if l.Held > 0 {
			smallest := 0
			for _, f := range fns {
				if c := p.Capacity[f]; smallest == 0 || c < smallest {
					smallest = c
				}
			}
			if smallest > 0 {
				n := int(math.Ceil(float64(l.Held) / (p.TargetInFlight * float64(smallest))))
				parts = append(parts, fmt.Sprintf("held: a gateway holds %d calls, capacity %d per allocation at target %g -> %d", l.Held, smallest, p.TargetInFlight, n))
				ask(SignalHeld, n)
			}
		}
	}
	if p.TargetLag > 0 && len(p.ConsumerGroups) > 0 {
		n := int(math.Ceil(float64(l.Lag) / p.TargetLag))
		parts = append(parts, fmt.Sprintf("lag: %d records at target %g per allocation -> %d", l.Lag, p.TargetLag, n))
		ask(SignalLag, n)
	}
	if r := l.Resources; r != nil && r.Allocations > 0 {
		if p.TargetCPU > 0 && r.CPUReservedMHz > 0 {
			n := int(math.Ceil(r.CPUMHz / (p.TargetCPU * float64(r.CPUReservedMHz))))
			parts = append(parts, fmt.Sprintf("cpu: %.0f MHz used on %d allocations (%.0f%% of %d MHz each) at target %g -> %d", r.CPUMHz, r.Allocations, 100*r.CPUShare(), r.CPUReservedMHz, p.TargetCPU, n))
			ask(SignalCPU, n)
		}
		if p.TargetMemory > 0 && r.MemoryReservedMB > 0 {
			n := int(math.Ceil(float64(r.MemoryBytes) / (p.TargetMemory * float64(uint64(r.MemoryReservedMB)<<20))))
			parts = append(parts, fmt.Sprintf("memory: %d MiB used on %d allocations (%.0f%% of %d MiB each) at target %g -> %d", r.MemoryBytes>>20, r.Allocations, 100*r.MemoryShare(), r.MemoryReservedMB, p.TargetMemory, n))
			ask(SignalMemory, n)
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "no signal applies")
	}
	return want, signal, strings.Join(parts, "; ")
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// MemStore is a Store in memory, for tests.
type MemStore struct {
	mu  sync.Mutex
	m   map[string]fsm.ScalingDecision
	log []fsm.ScalingDecision
	// Fail, when set, makes Record fail with it.
	Fail error
}

// Decisions returns the recorded decisions.
func (s *MemStore) Decisions() map[string]fsm.ScalingDecision {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]fsm.ScalingDecision, len(s.m))
	for k, v := range s.m {
		out[k] = v
	}
	return out
}

// Record keeps d.
func (s *MemStore) Record(d fsm.ScalingDecision) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Fail != nil {
		return s.Fail
	}
	if s.m == nil {
		s.m = map[string]fsm.ScalingDecision{}
	}
	if prev, ok := s.m[d.Key()]; ok && d.LastScaled.Before(prev.LastScaled) {
		d.LastScaled, d.LastStep = prev.LastScaled, prev.LastStep
	}
	s.m[d.Key()] = d
	s.log = append(s.log, d)
	return nil
}

// Recorded returns every decision recorded, in order.
func (s *MemStore) Recorded() []fsm.ScalingDecision {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]fsm.ScalingDecision(nil), s.log...)
}
