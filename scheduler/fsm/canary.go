package fsm

import (
	"fmt"
	"slices"
	"time"
)

// Canaries: a deploy that keeps the serving (stable) revision and sends a
// share of the calls to the new one. The new revision is the project's
// active revision from the start (the deployer registers its job with
// Nomad's canary update block, so the stable allocations keep running),
// and the project's Canary record says which revision is stable, what
// share the new one gets, and where the canary is in its steps. The
// gateways read it to split calls; the leader's canary loop moves it
// along (scheduler/canary.go).

// Command types 50 to 59: canaries. Never renumber.
const (
	CanaryPutType MessageType = 50
)

// The phases of a canary. Starting, Running, Promote, Promoting and Abort
// are in progress; Promoted, Aborted and Replaced are ended.
const (
	// CanaryStarting: the new revision's canary allocations are being
	// placed; every call still goes to the stable revision.
	CanaryStarting = "starting"
	// CanaryRunning: the canaries are healthy and take Weight percent
	// of the calls.
	CanaryRunning = "running"
	// CanaryPromote: promotion was asked for (the last step passed, or
	// `butter canary promote`): the deployer promotes Nomad's deployment.
	CanaryPromote = "promote"
	// CanaryPromoting: Nomad replaces the stable allocations with the
	// new revision's; every call goes to the new revision.
	CanaryPromoting = "promoting"
	// CanaryAbort: an abort was asked for (a budget breach, or `butter
	// canary abort`): the deployer fails Nomad's deployment and
	// activates the stable revision again.
	CanaryAbort = "abort"
	// CanaryPromoted: the new revision is healthy and serves everything.
	CanaryPromoted = "promoted"
	// CanaryAborted: the stable revision was activated again.
	CanaryAborted = "aborted"
	// CanaryReplaced: another revision was activated during the canary
	// (a deploy, a rollback).
	CanaryReplaced = "replaced"
)

// Canary is a project's canary: in progress while Ended is zero, and kept
// after it ends (with its outcome) until the next one.
type Canary struct {
	// Revision is the new revision; Stable the one that keeps serving.
	Revision string `json:"revision"`
	Stable   string `json:"stable"`
	// Weight is the percentage of calls sent to Revision now (0 to 100):
	// 0 sends it only the calls that ask for it by header.
	Weight int `json:"weight"`
	// Steps are an automated canary's weights in order, ending at 100
	// (Weight is one of them); empty for a manual canary, which stays at
	// its weight until promoted or aborted.
	Steps []int `json:"steps,omitempty"`
	// Interval is how long each step of an automated canary lasts before
	// it is judged.
	Interval time.Duration `json:"interval,omitempty"`
	// MaxErrorRate is the budget on the error rate: a step fails when the
	// canary's rate exceeds the baseline's by more than this (0.01 is one
	// percentage point).
	MaxErrorRate float64 `json:"max_error_rate,omitempty"`
	// MaxLatencyRatio is the budget on latency: a step fails when the
	// canary's p99 exceeds the baseline's by this factor (and by more
	// than the noise floor, scheduler.canaryLatencyFloor).
	MaxLatencyRatio float64 `json:"max_latency_ratio,omitempty"`
	// MinRequests is how many calls each cohort needs before a step is
	// judged; a step with fewer waits for more.
	MinRequests int `json:"min_requests,omitempty"`

	Phase   string `json:"phase"`
	Message string `json:"message,omitempty"`
	// Started is when the canary was deployed; StepStarted when Weight
	// took effect (zero while starting); Ended when it ended.
	Started     time.Time `json:"started"`
	StepStarted time.Time `json:"step_started,omitzero"`
	Ended       time.Time `json:"ended,omitzero"`
	// History is each judged step, oldest first.
	History []CanaryStep `json:"history,omitempty"`
}

// Active says the canary is in progress.
func (c *Canary) Active() bool { return c != nil && c.Ended.IsZero() }

// Automated says the canary moves through Steps on its own.
func (c *Canary) Automated() bool { return len(c.Steps) > 0 }

// CanaryStep is one judged step of a canary.
type CanaryStep struct {
	At     time.Time `json:"at"`
	Weight int       `json:"weight"`
	// Verdict is "pass", "fail" or "manual" (a promotion or abort asked
	// for by hand), with Reason in words.
	Verdict  string       `json:"verdict"`
	Reason   string       `json:"reason,omitempty"`
	Canary   CohortSample `json:"canary"`
	Baseline CohortSample `json:"baseline"`
}

// CohortSample is what the gateways saw of one cohort's calls in a step.
type CohortSample struct {
	Requests float64 `json:"requests"`
	Errors   float64 `json:"errors"`
	// P50 and P99 are latencies in seconds; 0 with no calls.
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

// ErrorRate is Errors/Requests, 0 with no calls.
func (s CohortSample) ErrorRate() float64 {
	if s.Requests == 0 {
		return 0
	}
	return s.Errors / s.Requests
}

// CanaryPut writes a project's canary.
type CanaryPut struct {
	Project string `json:"project"`
	Canary  Canary `json:"canary"`
	// Activate starts the canary: Canary.Revision becomes the active
	// revision (its deployment pending), as an activation does. Without
	// it, the project's canary in progress must be of the same revision.
	Activate bool   `json:"activate,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

func (f *FSM) applyCanaryPut(c *CanaryPut, at time.Time) error {
	if c.Activate {
		if _, ok := f.st.Revisions[c.Project][c.Canary.Stable]; !ok {
			return fmt.Errorf("canary: project %q has no revision %q", c.Project, c.Canary.Stable)
		}
		if err := f.applyRevisionActivate(&Activation{Project: c.Project, Revision: c.Canary.Revision, Reason: c.Reason}, at); err != nil {
			return fmt.Errorf("canary: %w", err)
		}
	} else {
		cur := f.st.Canaries[c.Project]
		if !cur.Active() || cur.Revision != c.Canary.Revision {
			return fmt.Errorf("canary: project %q has no canary of revision %q in progress", c.Project, c.Canary.Revision)
		}
	}
	if f.st.Canaries == nil {
		f.st.Canaries = map[string]*Canary{}
	}
	cp := c.Canary
	f.st.Canaries[c.Project] = &cp
	return nil
}

// endCanary ends a project's canary in progress whose revision is not
// revision (another was activated), as replaced. Called with f.mu held.
func (f *FSM) endCanary(project, revision, reason string, at time.Time) {
	c := f.st.Canaries[project]
	if !c.Active() || c.Revision == revision {
		return
	}
	c.Phase, c.Ended = CanaryReplaced, at
	c.Message = "ended: " + reason
}

func (c *Canary) clone() *Canary {
	cp := *c
	cp.Steps = slices.Clone(c.Steps)
	cp.History = slices.Clone(c.History)
	return &cp
}
