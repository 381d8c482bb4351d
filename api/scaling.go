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
}
