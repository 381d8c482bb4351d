package api

import "time"

// PoolStatus is one pool (a Nomad task group) of a project's active
// revision: its functions, its scaling bounds, and what the autoscaler
// last decided for it.
type PoolStatus struct {
	Pool      string   `json:"pool"`
	Functions []string `json:"functions"`
	// Min and Max bound its allocations (the scaling block); Enabled is
	// false when operators, not the autoscaler, set the count.
	Min     int  `json:"min"`
	Max     int  `json:"max"`
	Enabled bool `json:"enabled"`
	// LastDecision is the autoscaler's last decision for the pool; nil
	// when it has taken none (no autoscaler runs, or not yet).
	LastDecision *ScalingDecision `json:"last_decision,omitempty"`
	// Signals is the leader's autoscaler's last look at the pool, from
	// its memory (not Raft: it changes at every pass); nil when no
	// autoscaler runs on the answering node (a ?stale read on a
	// follower) or it has not looked yet.
	Signals *PoolSignals `json:"signals,omitempty"`
}

// PoolSignals is what the autoscaler read of a pool at its last pass, and
// what that load wants.
type PoolSignals struct {
	// At is when the pass looked; ReadAt when the oldest part of the load
	// was read (zero when never).
	At     time.Time `json:"at"`
	ReadAt time.Time `json:"read_at,omitzero"`
	// Allocations is the group's count in Nomad; Reporting how many of
	// its allocations' pools answered.
	Allocations int `json:"allocations"`
	Reporting   int `json:"reporting"`
	// Want is the count the load wants within the bounds, nil when the
	// load could not be judged; Signal the signal that asked for the most.
	Want   *int   `json:"want,omitempty"`
	Signal string `json:"signal"`
	// Lag is the consumer lag of the pool's consumer groups, in records.
	Lag int64 `json:"lag"`
	// Held is how many calls a gateway last said it holds for the pool
	// while it had no allocation.
	Held int `json:"held"`
	// CPU and Memory are the used share of the allocations' reserved CPU
	// and memory (Nomad's allocation stats); nil when not read.
	CPU    *float64 `json:"cpu,omitempty"`
	Memory *float64 `json:"memory,omitempty"`
	// Functions are the per-function signals.
	Functions []FunctionSignals `json:"functions,omitempty"`
	// Problems are the parts that could not be read (they keep their
	// last reading); Error is set when the load could not be read at all.
	Problems []string `json:"problems,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// FunctionSignals is one function's load over its pool's allocations.
type FunctionSignals struct {
	Function  string `json:"function"`
	Instances int    `json:"instances"`
	InFlight  int    `json:"inflight"`
	Queued    int    `json:"queued"`
	// Capacity is the calls one allocation runs at once (instances max
	// × concurrency).
	Capacity int `json:"capacity"`
	// Lag is the records of the function's stream triggers its pools had
	// not fetched at their last poll.
	Lag int64 `json:"lag"`
	// Traffic is the function's calls over about the last minute; nil
	// until its pools were read twice.
	Traffic *Traffic `json:"traffic,omitempty"`
}

// Traffic is a function's calls over a recent window, from the
// cumulative counters and latency histogram its pools report
// (docs/observability.md, "Function statistics").
type Traffic struct {
	// WindowSeconds is the time the figures are over.
	WindowSeconds float64 `json:"window_seconds"`
	// Calls and Errors are the calls completed and the failed ones in the
	// window; Rate and ErrorRate the same per second.
	Calls     float64 `json:"calls"`
	Errors    float64 `json:"errors"`
	Rate      float64 `json:"rate"`
	ErrorRate float64 `json:"error_rate"`
	// P50Seconds and P99Seconds are latency quantiles estimated from the
	// pools' histogram buckets; nil when the window has no call.
	P50Seconds *float64 `json:"p50_seconds,omitempty"`
	P99Seconds *float64 `json:"p99_seconds,omitempty"`
}

// ScalingDecision is a decision of the autoscaler about one task group.
type ScalingDecision struct {
	At time.Time `json:"at"`
	// Kind is scaled, hold, stale, refused, error or disabled.
	Kind string `json:"kind"`
	// Count is the group's allocations (its count in Nomad) when the
	// decision was taken; To the count asked of Nomad, or for a hold the
	// count the load wants.
	Count  int    `json:"count"`
	To     int    `json:"to"`
	Reason string `json:"reason"`
	// LastScaled is when Nomad last accepted a count from the
	// autoscaler.
	LastScaled time.Time `json:"last_scaled,omitzero"`
	// LastStep is that step's reason.
	LastStep string `json:"last_step,omitempty"`
}
