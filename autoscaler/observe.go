package autoscaler

import (
	"time"

	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/prometheus/client_golang/prometheus"
)

// Observation is the loop's last look at one group: the load it read and
// what that load wants. It lives in the leader's memory only (it changes
// at every pass; the decisions, which change rarely, are in Raft), for
// `butter status` (package scheduler reads it through Observations) and
// for the metrics.
type Observation struct {
	Target
	// At is when the pass looked.
	At time.Time
	// Count is the group's count in Nomad; Want what the load wants
	// within the policy's bounds, -1 when the load was not judged (the
	// policy is refused or disabled, the signals failed or are stale).
	Count, Want int
	// Signal is the signal that asked for the most (Signal* constants).
	Signal string
	// Capacity is the policy's calls per allocation, per function.
	Capacity map[string]int
	// Load is what the signals read (zero when they failed: Err).
	Load Load
	// Err is why the signals could not be read.
	Err string
}

// Observations returns the last pass's observation of every group, by
// Target.Key.
func (a *Autoscaler) Observations() map[string]Observation {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]Observation, len(a.obs))
	for k, o := range a.obs {
		out[k] = o
	}
	return out
}

// Metrics are the autoscaler's Prometheus metrics: its decisions and the
// signals it took them on, per group (project and pool) and function.
// The control plane serves them at GET /metrics (package scheduler); only
// the leader, which runs the loop, has values (Reset clears them when
// leadership goes).
type Metrics struct {
	count, desired, allocations, lag, held, cpu, memory, age *prometheus.GaugeVec
	inflight, queued, instances, capacity                    *prometheus.GaugeVec
	decisions                                                *prometheus.CounterVec
}

// NewMetrics registers the autoscaler's metrics with r.
func NewMetrics(r prometheus.Registerer) *Metrics {
	pool := []string{"project", "pool"}
	fn := []string{"project", "pool", "function"}
	g := func(name, help string, labels []string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "butter_autoscaler_" + name, Help: help}, labels)
	}
	m := &Metrics{
		count:       g("count", "The pool's task-group count in Nomad at the last pass.", pool),
		desired:     g("desired_count", "The count the pool's load wants within its scaling bounds at the last pass; absent while the load cannot be judged.", pool),
		allocations: g("reporting_allocations", "Allocations whose pool answered its metrics at the last pass.", pool),
		lag:         g("consumer_lag", "Consumer lag, in records, of the pool's consumer groups together.", pool),
		held:        g("held_calls", "Calls a gateway last said it holds for the pool while it has no allocation (wake).", pool),
		cpu:         g("cpu_share", "CPU used over CPU reserved by the pool's allocations (Nomad's allocation stats); absent when not read.", pool),
		memory:      g("memory_share", "Memory used over memory reserved by the pool's allocations (Nomad's allocation stats); absent when not read.", pool),
		age:         g("signal_age_seconds", "Age of the oldest part of the load at the last pass (the loop acts on none older than its stale-after).", pool),
		inflight:    g("inflight_calls", "Calls in flight per function, over the pool's allocations.", fn),
		queued:      g("queued_calls", "Calls waiting for an instance per function, over the pool's allocations.", fn),
		instances:   g("instances", "Instances per function, over the pool's allocations.", fn),
		capacity:    g("capacity_calls", "Calls one allocation runs at once per function (instances max × concurrency).", fn),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "butter_autoscaler_decisions_total",
			Help: "Decisions taken, one per group per pass: kind (scaled, hold, stale, refused, error, disabled), direction (up, down, none: what the decision asked of Nomad or, for a hold, what the load wants) and the signal that asked for the most (inflight, lag, cpu, memory, held, wake, none).",
		}, []string{"project", "pool", "kind", "direction", "signal"}),
	}
	r.MustRegister(m.count, m.desired, m.allocations, m.lag, m.held, m.cpu, m.memory, m.age, m.inflight, m.queued, m.instances, m.capacity, m.decisions)
	return m
}

// observe sets the gauges from a pass's observation and counts its
// decision.
func (m *Metrics) observe(o Observation, d fsm.ScalingDecision) {
	if m == nil {
		return
	}
	pl := prometheus.Labels{"project": o.Project, "pool": o.Group}
	m.forget(pl)
	m.count.With(pl).Set(float64(o.Count))
	dir := "none"
	switch {
	case d.To > d.Count:
		dir = "up"
	case d.To < d.Count:
		dir = "down"
	}
	signal := o.Signal
	if signal == "" {
		signal = SignalNone
	}
	m.decisions.WithLabelValues(o.Project, o.Group, d.Kind, dir, signal).Inc()
	if o.Want >= 0 {
		m.desired.With(pl).Set(float64(o.Want))
	}
	l := o.Load
	if l.At.IsZero() {
		return
	}
	m.allocations.With(pl).Set(float64(l.Allocations))
	m.lag.With(pl).Set(float64(l.Lag))
	m.held.With(pl).Set(float64(l.Held))
	m.age.With(pl).Set(o.At.Sub(l.At).Seconds())
	if r := l.Resources; r != nil && r.Allocations > 0 {
		if r.CPUReservedMHz > 0 {
			m.cpu.With(pl).Set(r.CPUShare())
		}
		if r.MemoryReservedMB > 0 {
			m.memory.With(pl).Set(r.MemoryShare())
		}
	}
	for f, c := range o.Capacity {
		fl := l.Functions[f]
		m.inflight.WithLabelValues(o.Project, o.Group, f).Set(float64(fl.InFlight))
		m.queued.WithLabelValues(o.Project, o.Group, f).Set(float64(fl.Queued))
		m.instances.WithLabelValues(o.Project, o.Group, f).Set(float64(fl.Instances))
		m.capacity.WithLabelValues(o.Project, o.Group, f).Set(float64(c))
	}
}

// forget drops the gauges of the labels (a group gone, or about to be set
// again without the functions it no longer has).
func (m *Metrics) forget(l prometheus.Labels) {
	for _, v := range []*prometheus.GaugeVec{m.count, m.desired, m.allocations, m.lag, m.held, m.cpu, m.memory, m.age, m.inflight, m.queued, m.instances, m.capacity} {
		v.DeletePartialMatch(l)
	}
}

// Reset drops every gauge: this node no longer runs the loop, and its
// last readings would read as current. The decision counters stay (they
// count what this node decided).
func (m *Metrics) Reset() {
	if m == nil {
		return
	}
	for _, v := range []*prometheus.GaugeVec{m.count, m.desired, m.allocations, m.lag, m.held, m.cpu, m.memory, m.age, m.inflight, m.queued, m.instances, m.capacity} {
		v.Reset()
	}
}
