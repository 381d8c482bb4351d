package fsm

import (
	"errors"
	"time"
)

// Scaling state: the autoscaler's last decision for each task group, so
// that a new leader resumes where the old one stopped (its cooldown counts
// from the last step any leader took) and `butter status` shows why a
// group has the count it has.

// Command types 30 to 39: the autoscaler. Never renumber.
const (
	ScalingDecisionType MessageType = 30
)

// The kinds of scaling decision.
const (
	// ScaleScaled: Nomad accepted a new count.
	ScaleScaled = "scaled"
	// ScaleHold: the count stays (at target, cooldown, scale-in delay,
	// an active deployment, allocations not all reporting).
	ScaleHold = "hold"
	// ScaleStale: the signals were too old to act on; nothing changed.
	ScaleStale = "stale"
	// ScaleRefused: Nomad refused the new count; the error says why.
	ScaleRefused = "refused"
	// ScaleError: the group could not be judged (its policy is invalid,
	// its signals could not be read).
	ScaleError = "error"
	// ScaleDisabled: the group's policy has enabled = false.
	ScaleDisabled = "disabled"
)

// ScalingDecision is the autoscaler's last decision for a task group.
type ScalingDecision struct {
	Project string `json:"project"`
	Job     string `json:"job"`
	Group   string `json:"group"`
	// At is when the decision was taken.
	At time.Time `json:"at"`
	// Kind is one of the Scale* kinds.
	Kind string `json:"kind"`
	// Count is the group's count in Nomad when the decision was taken.
	// To is the count asked of Nomad (scaled, refused) or, for a hold,
	// the count the load wants; Count when the load was not judged.
	Count int `json:"count"`
	To    int `json:"to"`
	// Reason says why, in words, with the signals it was taken on.
	Reason string `json:"reason"`
	// LastScaled is when Nomad last accepted a count for the group from
	// any leader: the cooldown counts from it.
	LastScaled time.Time `json:"last_scaled,omitzero"`
	// LastStep is the reason of that last step, kept by the decisions
	// after it (a hold replaces the step as the last decision).
	LastStep string `json:"last_step,omitempty"`
}

// Key is the decision's key in State.Scaling: "<project>/<group>".
func (d *ScalingDecision) Key() string { return d.Project + "/" + d.Group }

func (f *FSM) applyScalingDecision(d *ScalingDecision) error {
	if d.Project == "" || d.Group == "" {
		return errors.New("scaling decision: project and group are required")
	}
	if f.st.Scaling == nil {
		f.st.Scaling = map[string]*ScalingDecision{}
	}
	if prev := f.st.Scaling[d.Key()]; prev != nil && d.LastScaled.Before(prev.LastScaled) {
		// A decision never moves the last step back in time.
		d.LastScaled, d.LastStep = prev.LastScaled, prev.LastStep
	}
	f.st.Scaling[d.Key()] = d
	return nil
}
