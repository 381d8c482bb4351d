package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// The phases of a canary (Canary.Phase). Starting, Running, Promote,
// Promoting and Abort are in progress; Promoted, Aborted and Replaced
// are ended.
const (
	CanaryStarting  = "starting"
	CanaryRunning   = "running"
	CanaryPromote   = "promote"
	CanaryPromoting = "promoting"
	CanaryAbort     = "abort"
	CanaryPromoted  = "promoted"
	CanaryAborted   = "aborted"
	CanaryReplaced  = "replaced"
)

// HeaderRevision is the request header that picks a revision during a
// canary ("canary", "stable", or a revision id or its prefix), and the
// answer header that says which revision served the call.
const HeaderRevision = "Butter-Revision"

// CanaryRequest asks a deploy to keep the serving revision and send a
// share of the calls to the new one (RevisionCreateRequest.Canary).
type CanaryRequest struct {
	// Weight is the share of calls, in percent, sent to the new revision
	// (0 to 99): 0 sends it only the calls that ask for it with the
	// Butter-Revision header. Ignored when Steps are given.
	Weight int `json:"weight"`
	// Steps make the canary automated: the weights it goes through, in
	// increasing order, each judged after Interval against the budgets;
	// 100 is appended when the last is lower. After the step at 100 is
	// reached the new revision is promoted.
	Steps []int `json:"steps,omitempty"`
	// Interval is each step's length (default DefaultCanaryInterval).
	Interval Duration `json:"interval,omitempty"`
	// MaxErrorRate (default 0.01: one percentage point) and
	// MaxLatencyRatio (default 1.5) are the budgets a step is judged
	// against, comparing the new revision's calls with an equal share of
	// the stable revision's; MinRequests (default 20) is how many calls
	// each needs before a step is judged.
	MaxErrorRate    float64 `json:"max_error_rate,omitempty"`
	MaxLatencyRatio float64 `json:"max_latency_ratio,omitempty"`
	MinRequests     int     `json:"min_requests,omitempty"`
}

// The defaults of CanaryRequest.
const (
	DefaultCanaryInterval        = time.Minute
	DefaultCanaryMaxErrorRate    = 0.01
	DefaultCanaryMaxLatencyRatio = 1.5
	DefaultCanaryMinRequests     = 20
)

// Canary is a project's canary as `butter status` shows it: in progress
// while Ended is zero, else the last one, with its outcome.
type Canary struct {
	// Revision is the new revision; Stable the one that keeps serving.
	Revision string `json:"revision"`
	Stable   string `json:"stable"`
	// Weight is the percentage of calls the new revision gets now.
	// Effective says the gateways split calls now (the canaries are
	// healthy and the canary is in progress).
	Weight    int  `json:"weight"`
	Effective bool `json:"effective"`
	// Draining says the gateways send every call that does not ask for a
	// revision to the stable revision's allocations: while the canaries
	// start (they may be registered in Nomad before they are healthy),
	// while the canary aborts, and for a while after an abort, while Nomad
	// stops its allocations.
	Draining bool `json:"draining,omitempty"`
	// Steps, Interval and the budgets are an automated canary's; Steps
	// is empty for a manual one.
	Steps           []int    `json:"steps,omitempty"`
	Interval        Duration `json:"interval,omitempty"`
	MaxErrorRate    float64  `json:"max_error_rate,omitempty"`
	MaxLatencyRatio float64  `json:"max_latency_ratio,omitempty"`
	MinRequests     int      `json:"min_requests,omitempty"`
	// Phase is one of the Canary* phases; Message says what it waits for
	// or how it ended.
	Phase       string    `json:"phase"`
	Message     string    `json:"message,omitempty"`
	Started     time.Time `json:"started"`
	StepStarted time.Time `json:"step_started,omitzero"`
	Ended       time.Time `json:"ended,omitzero"`
	// Current is what the gateways report of the step in progress.
	Current *CanaryStep `json:"current,omitempty"`
	// History is each judged step, oldest first.
	History []CanaryStep `json:"history,omitempty"`
}

// CanaryStep is one step of a canary, judged or in progress.
type CanaryStep struct {
	At      time.Time `json:"at"`
	Weight  int       `json:"weight"`
	Verdict string    `json:"verdict,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	// Canary is the new revision's calls, Baseline an equal share of the
	// stable revision's.
	Canary   CohortSample `json:"canary"`
	Baseline CohortSample `json:"baseline"`
}

// CohortSample is what the gateways saw of one cohort's calls.
type CohortSample struct {
	Requests float64 `json:"requests"`
	Errors   float64 `json:"errors"`
	// P50 and P99 are latencies in seconds; 0 with no calls.
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

// CanaryPromoteRequest moves a canary on by hand.
type CanaryPromoteRequest struct {
	// Weight is the new share (1 to 100); 0 means the next step of an
	// automated canary, or 100 for a manual one. 100 promotes.
	Weight int `json:"weight,omitempty"`
}

// CanaryAbortRequest ends a canary by hand.
type CanaryAbortRequest struct {
	Reason string `json:"reason,omitempty"`
}

// CanaryBuckets are the upper bounds, in seconds, of the latency buckets
// of a CohortCounts (the last bucket, beyond them, is +Inf).
var CanaryBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// CanaryReport is a gateway's counts of a canary's calls: cumulative
// since the gateway started seeing the canary, per weight, so that the
// leader sums the gateways' latest reports for the step's weight.
type CanaryReport struct {
	// Gateway identifies the reporting gateway process.
	Gateway  string         `json:"gateway"`
	Revision string         `json:"revision"`
	Steps    []CanaryCounts `json:"steps"`
}

// CanaryCounts are the calls of the cohorts at one weight.
type CanaryCounts struct {
	Weight   int          `json:"weight"`
	Canary   CohortCounts `json:"canary"`
	Baseline CohortCounts `json:"baseline"`
}

// CohortCounts counts one cohort's calls: errors are answers with a 5xx
// status; Buckets holds the calls per latency bucket (CanaryBuckets,
// then +Inf), not cumulative.
type CohortCounts struct {
	Requests uint64   `json:"requests"`
	Errors   uint64   `json:"errors"`
	Buckets  []uint64 `json:"buckets"`
}

// Canaries moves a project's canary on.
type Canaries struct{ c *Client }

// Canaries returns the canary endpoints.
func (c *Client) Canaries() *Canaries { return &Canaries{c} }

// Promote sets the canary's weight (0: the next step); 100 promotes the
// new revision. Without a canary in progress the answer is a 409
// *StatusError.
func (k *Canaries) Promote(ctx context.Context, project string, weight int) (*Canary, error) {
	var out Canary
	if err := k.c.write(ctx, http.MethodPost, "/v1/projects/"+seg(project)+"/canary/promote", &CanaryPromoteRequest{Weight: weight}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Abort ends the canary: the stable revision is activated again and the
// new revision's allocations stopped.
func (k *Canaries) Abort(ctx context.Context, project, reason string) (*Canary, error) {
	var out Canary
	if err := k.c.write(ctx, http.MethodPost, "/v1/projects/"+seg(project)+"/canary/abort", &CanaryAbortRequest{Reason: reason}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Report sends a gateway's counts of a canary's calls to the leader. It
// needs read on the project, the gateway's token.
func (k *Canaries) Report(ctx context.Context, project string, r *CanaryReport) error {
	return k.c.write(ctx, http.MethodPost, "/v1/projects/"+seg(project)+"/canary/report", r, nil)
}

// Duration is a time.Duration that is written in JSON as a string such
// as "1m30s", and read from one (or from a number of nanoseconds).
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if json.Unmarshal(b, &n) != nil {
			return fmt.Errorf("a duration is a string such as \"1m30s\", not %s", b)
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("a duration is a string such as \"1m30s\": %w", err)
	}
	*d = Duration(v)
	return nil
}
