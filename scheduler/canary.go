package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/autoscaler"
	"github.com/butterfn/butter/scheduler/fsm"
	nomad "github.com/hashicorp/nomad/api"
)

// Canaries (fsm/canary.go has the states): a deploy with a CanaryRequest
// activates the new revision with a Canary record naming the stable one.
// The deployer registers the new job with Nomad's canary update block —
// as many canaries per group as the group has allocations, so the new
// revision can take any share of the calls — and the stable allocations
// keep running. Once Nomad says the canaries are healthy the canary runs:
// the gateways (which read the record in the project's status) send it
// Weight percent of the calls, and an equal share of the stable
// revision's calls as its baseline, and report both cohorts' calls here.
// An automated canary is judged at the end of each step (runCanaries):
// within budget it moves to the next weight, and at 100 the deployer
// promotes Nomad's deployment, which replaces the stable allocations; over
// budget it aborts: the deployer fails Nomad's deployment and activates
// the stable revision again, which stops the canaries.

// canaryLatencyFloor is the latency difference below which a canary is
// never judged slower than its baseline: noise on a shared machine.
const canaryLatencyFloor = 5 * time.Millisecond

// canaryP99Calls is how many calls each cohort needs before its p99 is
// judged: with fewer, the p99 is about the slowest call, which for a new
// revision is its first instance's cold start (an early run of
// TestCanaryOnNomad judged a healthy canary 88 ms against 2.5 ms on it).
// The p50 is judged at any count.
const canaryP99Calls = 200

// canaryReports are the gateways' latest reports, by project, on the
// leader only (they are sent to it), for the canary in progress. A new
// leader has the next reports within a gateway's report interval: they
// are cumulative, so nothing is lost but the time until they arrive.
type canaryReports struct {
	mu sync.Mutex
	m  map[string]map[string]api.CanaryReport // project → gateway → report
}

func (c *canaryReports) put(project string, r api.CanaryReport) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]map[string]api.CanaryReport{}
	}
	if c.m[project] == nil {
		c.m[project] = map[string]api.CanaryReport{}
	}
	c.m[project][r.Gateway] = r
}

// sample sums the gateways' counts of revision's calls at weight.
func (c *canaryReports) sample(project, revision string, weight int) (canary, baseline fsm.CohortSample) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var cc, bc api.CohortCounts
	for _, r := range c.m[project] {
		if r.Revision != revision {
			continue
		}
		for _, s := range r.Steps {
			if s.Weight == weight {
				addCounts(&cc, s.Canary)
				addCounts(&bc, s.Baseline)
			}
		}
	}
	return cohortSample(cc), cohortSample(bc)
}

// forget drops a project's reports of other revisions than revision.
func (c *canaryReports) forget(project, revision string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for g, r := range c.m[project] {
		if r.Revision != revision {
			delete(c.m[project], g)
		}
	}
}

func addCounts(to *api.CohortCounts, c api.CohortCounts) {
	to.Requests += c.Requests
	to.Errors += c.Errors
	if len(to.Buckets) < len(c.Buckets) {
		to.Buckets = append(to.Buckets, make([]uint64, len(c.Buckets)-len(to.Buckets))...)
	}
	for i, n := range c.Buckets {
		to.Buckets[i] += n
	}
}

func cohortSample(c api.CohortCounts) fsm.CohortSample {
	out := fsm.CohortSample{Requests: float64(c.Requests), Errors: float64(c.Errors)}
	if c.Requests == 0 {
		return out
	}
	var bs []autoscaler.Bucket
	var cum float64
	for i, n := range c.Buckets {
		cum += float64(n)
		le := math.Inf(1)
		if i < len(api.CanaryBuckets) {
			le = api.CanaryBuckets[i]
		}
		bs = append(bs, autoscaler.Bucket{Le: le, Count: cum})
	}
	for _, q := range []struct {
		q  float64
		to *float64
	}{{0.5, &out.P50}, {0.99, &out.P99}} {
		if v := autoscaler.Quantile(q.q, bs); !math.IsNaN(v) && !math.IsInf(v, 0) {
			*q.to = v
		}
	}
	return out
}

// judge says whether a step's canary is within its budgets; ok is false
// when either cohort has fewer calls than the canary needs (wait).
func judge(c *fsm.Canary, canary, baseline fsm.CohortSample) (pass, ok bool, reason string) {
	min := float64(max(c.MinRequests, 1))
	if canary.Requests < min || baseline.Requests < min {
		return false, false, fmt.Sprintf("waiting for %d calls in each cohort (canary %d, baseline %d)", int(min), int(canary.Requests), int(baseline.Requests))
	}
	er, br := canary.ErrorRate(), baseline.ErrorRate()
	if er-br > c.MaxErrorRate {
		return false, true, fmt.Sprintf("error rate %.2f%% against the baseline's %.2f%%: more than %.2f points over budget", er*100, br*100, c.MaxErrorRate*100)
	}
	floor := canaryLatencyFloor.Seconds()
	slower := func(name string, c2, b2 float64) string {
		if c.MaxLatencyRatio > 0 && c2 > b2*c.MaxLatencyRatio && c2-b2 > floor {
			return fmt.Sprintf("%s latency %s against the baseline's %s: more than %.2g× the baseline", name, secs(c2), secs(b2), c.MaxLatencyRatio)
		}
		return ""
	}
	if why := slower("p50", canary.P50, baseline.P50); why != "" {
		return false, true, why
	}
	p99 := canary.Requests >= canaryP99Calls && baseline.Requests >= canaryP99Calls
	if why := slower("p99", canary.P99, baseline.P99); p99 && why != "" {
		return false, true, why
	}
	out := fmt.Sprintf("error rate %.2f%% (baseline %.2f%%), p50 %s (baseline %s)", er*100, br*100, secs(canary.P50), secs(baseline.P50))
	if p99 {
		out += fmt.Sprintf(", p99 %s (baseline %s)", secs(canary.P99), secs(baseline.P99))
	} else {
		out += fmt.Sprintf("; p99 %s not judged under %d calls", secs(canary.P99), canaryP99Calls)
	}
	return true, true, out
}

func secs(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(10 * time.Microsecond).String()
}

// canaryFromRequest checks a deploy's canary request and fills in the
// defaults.
func canaryFromRequest(req *api.CanaryRequest, revision, stable string, now time.Time) (*fsm.Canary, error) {
	c := &fsm.Canary{
		Revision: revision, Stable: stable, Weight: req.Weight,
		Interval: time.Duration(req.Interval), MaxErrorRate: req.MaxErrorRate,
		MaxLatencyRatio: req.MaxLatencyRatio, MinRequests: req.MinRequests,
		Phase: fsm.CanaryStarting, Started: now,
	}
	if len(req.Steps) > 0 {
		prev := 0
		for i, s := range req.Steps {
			if s <= prev || s > 100 {
				return nil, fmt.Errorf("canary.steps[%d]: %d: the steps are percentages in increasing order, each from 1 to 100, such as [10, 50, 100]", i, s)
			}
			prev = s
		}
		c.Steps = slices.Clone(req.Steps)
		if prev != 100 {
			c.Steps = append(c.Steps, 100)
		}
		if c.Steps[0] == 100 {
			return nil, errors.New("canary.steps: a canary needs a step below 100; to replace the revision at once, deploy without a canary")
		}
		c.Weight = c.Steps[0]
	} else if req.Weight < 0 || req.Weight > 99 {
		return nil, fmt.Errorf("canary.weight: %d: the share of calls for the new revision is a percentage from 0 to 99 (0: only calls with the %s header)", req.Weight, api.HeaderRevision)
	}
	switch {
	case req.Interval < 0:
		return nil, fmt.Errorf("canary.interval: %s is negative", time.Duration(req.Interval))
	case req.Interval == 0:
		c.Interval = api.DefaultCanaryInterval
	}
	switch {
	case req.MaxErrorRate < 0 || req.MaxErrorRate > 1:
		return nil, fmt.Errorf("canary.max_error_rate: %g: a fraction from 0 to 1 (0.01 is one percentage point)", req.MaxErrorRate)
	case req.MaxErrorRate == 0:
		c.MaxErrorRate = api.DefaultCanaryMaxErrorRate
	}
	switch {
	case req.MaxLatencyRatio != 0 && req.MaxLatencyRatio < 1:
		return nil, fmt.Errorf("canary.max_latency_ratio: %g: a factor of at least 1 (1.5: the canary's p99 may be half again the baseline's)", req.MaxLatencyRatio)
	case req.MaxLatencyRatio == 0:
		c.MaxLatencyRatio = api.DefaultCanaryMaxLatencyRatio
	}
	switch {
	case req.MinRequests < 0:
		return nil, fmt.Errorf("canary.min_requests: %d is negative", req.MinRequests)
	case req.MinRequests == 0:
		c.MinRequests = api.DefaultCanaryMinRequests
	}
	return c, nil
}

// canaryRefused says why a canary of rev cannot start on the project's
// state ("" when it can): it needs a healthy serving revision, no other
// canary in progress, and the same routes and pools as the stable
// revision (the gateway splits each route's calls between the two
// revisions' allocations of the same pool).
func canaryRefused(st *fsm.State, project string, rev *fsm.Revision) (int, string) {
	stableID := st.Active[project]
	stable := st.Revisions[project][stableID]
	switch {
	case stable == nil:
		return http.StatusConflict, fmt.Sprintf("project %q has no serving revision to keep: deploy its first revision without a canary", project)
	case stableID == rev.ID:
		return http.StatusConflict, fmt.Sprintf("revision %s already serves project %q: there is nothing to try", rev.ID, project)
	case stable.Deployment.Status != fsm.StatusHealthy:
		return http.StatusConflict, fmt.Sprintf("project %q's serving revision %s is %s, not healthy: a canary is measured against a healthy revision; wait for it, or deploy without a canary", project, stableID, stable.Deployment.Status)
	}
	if c := st.Canaries[project]; c.Active() {
		return http.StatusConflict, fmt.Sprintf("project %q has a canary of revision %s in progress (%s): promote or abort it first (butter canary promote|abort %s)", project, c.Revision, c.Phase, project)
	}
	if a, b := sortedCopy(stable.Routes), sortedCopy(rev.Routes); !slices.Equal(a, b) {
		return http.StatusConflict, fmt.Sprintf("a canary keeps the serving revision's routes, and revision %s changes them (%s): deploy it without a canary", rev.ID, routeDiff(a, b))
	}
	if a, b := jobGroups(stable.Job), jobGroups(rev.Job); !slices.Equal(a, b) {
		return http.StatusConflict, fmt.Sprintf("a canary keeps the serving revision's pools, and revision %s changes them (%s → %s): deploy it without a canary", rev.ID, strings.Join(a, ", "), strings.Join(b, ", "))
	}
	return 0, ""
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	sort.Strings(c)
	return c
}

func routeDiff(old, new []string) string {
	var parts []string
	for _, r := range new {
		if !slices.Contains(old, r) {
			parts = append(parts, "adds "+r)
		}
	}
	for _, r := range old {
		if !slices.Contains(new, r) {
			parts = append(parts, "removes "+r)
		}
	}
	return strings.Join(parts, "; ")
}

func jobGroups(raw json.RawMessage) []string {
	var job struct {
		TaskGroups []struct{ Name string }
	}
	_ = json.Unmarshal(raw, &job)
	var out []string
	for _, g := range job.TaskGroups {
		out = append(out, g.Name)
	}
	sort.Strings(out)
	return out
}

// canaryEffective says the gateways split calls: the canaries are healthy
// and the canary is neither starting nor aborting.
func canaryEffective(c *fsm.Canary) bool {
	if !c.Active() {
		return false
	}
	switch c.Phase {
	case fsm.CanaryRunning, fsm.CanaryPromote, fsm.CanaryPromoting:
		return true
	}
	return false
}

// canaryDrain is how long after an abort the gateways keep every call
// off the canary's allocations, which Nomad stops meanwhile.
const canaryDrain = 2 * time.Minute

func (s *Server) apiCanary(project, active string, c *fsm.Canary) *api.Canary {
	if c == nil {
		return nil
	}
	out := &api.Canary{
		Revision: c.Revision, Stable: c.Stable, Weight: c.Weight, Effective: canaryEffective(c),
		Draining: c.Active() && !canaryEffective(c) ||
			c.Phase == fsm.CanaryAborted && active == c.Stable && time.Since(c.Ended) < canaryDrain,
		Steps: slices.Clone(c.Steps), Interval: api.Duration(c.Interval), MaxErrorRate: c.MaxErrorRate,
		MaxLatencyRatio: c.MaxLatencyRatio, MinRequests: c.MinRequests,
		Phase: c.Phase, Message: c.Message, Started: c.Started, StepStarted: c.StepStarted, Ended: c.Ended,
	}
	for _, h := range c.History {
		out.History = append(out.History, apiCanaryStep(h))
	}
	if out.Effective && c.Weight < 100 {
		cs, bs := s.canary.sample(project, c.Revision, c.Weight)
		out.Current = &api.CanaryStep{At: c.StepStarted, Weight: c.Weight, Canary: api.CohortSample(cs), Baseline: api.CohortSample(bs)}
	}
	return out
}

func apiCanaryStep(h fsm.CanaryStep) api.CanaryStep {
	return api.CanaryStep{At: h.At, Weight: h.Weight, Verdict: h.Verdict, Reason: h.Reason, Canary: api.CohortSample(h.Canary), Baseline: api.CohortSample(h.Baseline)}
}

// putCanary writes the project's canary in progress (which must still be
// of c's revision).
func (s *Server) putCanary(project string, c *fsm.Canary) error {
	return s.Apply(fsm.CanaryPutType, fsm.CanaryPut{Project: project, Canary: *c})
}

// currentCanary returns a copy of the project's canary in progress, or
// nil.
func (s *Server) currentCanary(project string) *fsm.Canary {
	var c *fsm.Canary
	s.fsm.Read(func(st *fsm.State) {
		if cur := st.Canaries[project]; cur.Active() {
			c = cloneCanary(cur)
		}
	})
	return c
}

func cloneCanary(c *fsm.Canary) *fsm.Canary {
	cp := *c
	cp.Steps = slices.Clone(c.Steps)
	cp.History = slices.Clone(c.History)
	return &cp
}

// promoteCanary serves POST /v1/projects/{name}/canary/promote.
func (s *Server) promoteCanary(w http.ResponseWriter, r *http.Request) {
	project := r.PathValue("name")
	var req api.CanaryPromoteRequest
	if r.ContentLength != 0 && !s.decodeBody(w, r, "canary promote body", &req) {
		return
	}
	s.activateMu.Lock()
	defer s.activateMu.Unlock()
	c := s.currentCanary(project)
	if c == nil {
		writeErr(w, http.StatusConflict, fmt.Errorf("project %q has no canary in progress", project))
		return
	}
	switch c.Phase {
	case fsm.CanaryPromote, fsm.CanaryPromoting, fsm.CanaryAbort:
		writeErr(w, http.StatusConflict, fmt.Errorf("project %q's canary of revision %s is already %s", project, c.Revision, c.Phase))
		return
	}
	weight := req.Weight
	if weight == 0 {
		weight = 100
		for _, st := range c.Steps {
			if st > c.Weight {
				weight = st
				break
			}
		}
	}
	if weight < 1 || weight > 100 {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("canary promote body: weight %d: a percentage from 1 to 100 (100 promotes the new revision)", req.Weight))
		return
	}
	now := time.Now().UTC()
	cs, bs := s.canary.sample(project, c.Revision, c.Weight)
	c.History = append(c.History, fsm.CanaryStep{At: now, Weight: c.Weight, Verdict: "manual", Reason: fmt.Sprintf("moved to %d%% by hand", weight), Canary: cs, Baseline: bs})
	s.setWeight(c, weight, now, "by hand")
	if err := s.putCanary(project, c); err != nil {
		writeErr(w, 500, err)
		return
	}
	s.log.Info("canary moved by hand", "project", project, "revision", c.Revision, "weight", weight)
	var out *api.Canary
	s.fsm.Read(func(st *fsm.State) { out = s.apiCanary(project, st.Active[project], st.Canaries[project]) })
	writeJSON(w, 200, out)
}

// setWeight moves c to weight: 100 asks the deployer to promote.
func (s *Server) setWeight(c *fsm.Canary, weight int, now time.Time, how string) {
	c.Weight = weight
	if c.Phase == fsm.CanaryRunning {
		c.StepStarted = now
	}
	if weight == 100 {
		c.Phase = fsm.CanaryPromote
		c.Message = fmt.Sprintf("promoting revision %s (%s): Nomad replaces the stable allocations", c.Revision, how)
		return
	}
	c.Message = fmt.Sprintf("%d%% of calls go to revision %s (%s)", weight, c.Revision, how)
}

// abortCanary serves POST /v1/projects/{name}/canary/abort.
func (s *Server) abortCanary(w http.ResponseWriter, r *http.Request) {
	project := r.PathValue("name")
	var req api.CanaryAbortRequest
	if r.ContentLength != 0 && !s.decodeBody(w, r, "canary abort body", &req) {
		return
	}
	s.activateMu.Lock()
	defer s.activateMu.Unlock()
	c := s.currentCanary(project)
	if c == nil {
		writeErr(w, http.StatusConflict, fmt.Errorf("project %q has no canary in progress", project))
		return
	}
	if c.Phase == fsm.CanaryPromoting {
		writeErr(w, http.StatusConflict, fmt.Errorf("project %q's canary of revision %s is being promoted: Nomad is replacing the stable allocations; roll back instead (butter rollback %s)", project, c.Revision, project))
		return
	}
	why := "aborted by hand"
	if req.Reason != "" {
		why += ": " + req.Reason
	}
	now := time.Now().UTC()
	cs, bs := s.canary.sample(project, c.Revision, c.Weight)
	c.History = append(c.History, fsm.CanaryStep{At: now, Weight: c.Weight, Verdict: "manual", Reason: why, Canary: cs, Baseline: bs})
	c.Phase, c.Message = fsm.CanaryAbort, why
	if err := s.putCanary(project, c); err != nil {
		writeErr(w, 500, err)
		return
	}
	s.log.Info("canary aborted by hand", "project", project, "revision", c.Revision)
	var out *api.Canary
	s.fsm.Read(func(st *fsm.State) { out = s.apiCanary(project, st.Active[project], st.Canaries[project]) })
	writeJSON(w, 200, out)
}

// canaryReport serves POST /v1/projects/{name}/canary/report: a
// gateway's counts. Reports of another revision than the canary in
// progress are taken and dropped (a gateway may report once more after a
// canary ends).
func (s *Server) canaryReport(w http.ResponseWriter, r *http.Request) {
	project := r.PathValue("name")
	var rep api.CanaryReport
	if !s.decodeBody(w, r, "canary report", &rep) {
		return
	}
	if rep.Gateway == "" || rep.Revision == "" {
		writeErr(w, 400, errors.New("canary report: gateway and revision are required"))
		return
	}
	if c := s.currentCanary(project); c != nil && c.Revision == rep.Revision {
		s.canary.put(project, rep)
	}
	writeJSON(w, 200, struct{}{})
}

// runCanaries judges the automated canaries whose step is over; the
// leader's deployer loop calls it each tick.
func (s *Server) runCanaries() {
	var todo []*fsm.Canary
	var projects []string
	s.fsm.Read(func(st *fsm.State) {
		for p, c := range st.Canaries {
			if c.Active() {
				s.canary.forget(p, c.Revision)
			}
			if c.Active() && c.Phase == fsm.CanaryRunning && c.Automated() && !c.StepStarted.IsZero() && time.Since(c.StepStarted) >= c.Interval {
				todo = append(todo, cloneCanary(c))
				projects = append(projects, p)
			}
		}
	})
	for i, c := range todo {
		if err := s.judgeStep(projects[i], c); err != nil {
			s.log.Warn("canary step not recorded; will retry", "project", projects[i], "revision", c.Revision, "error", err)
		}
	}
}

func (s *Server) judgeStep(project string, c *fsm.Canary) error {
	s.activateMu.Lock()
	defer s.activateMu.Unlock()
	if cur := s.currentCanary(project); cur == nil || cur.Revision != c.Revision || cur.Phase != c.Phase || cur.Weight != c.Weight {
		return nil // moved on meanwhile (by hand)
	}
	now := time.Now().UTC()
	cs, bs := s.canary.sample(project, c.Revision, c.Weight)
	pass, ok, reason := judge(c, cs, bs)
	if !ok {
		msg := fmt.Sprintf("%d%% of calls go to revision %s; step over, %s", c.Weight, c.Revision, reason)
		if msg == c.Message {
			return nil
		}
		c.Message = msg
		return s.putCanary(project, c)
	}
	step := fsm.CanaryStep{At: now, Weight: c.Weight, Reason: reason, Canary: cs, Baseline: bs}
	if !pass {
		step.Verdict = "fail"
		c.History = append(c.History, step)
		c.Phase = fsm.CanaryAbort
		c.Message = fmt.Sprintf("step at %d%% failed: %s; aborting", c.Weight, reason)
		s.log.Warn("canary over budget; aborting", "project", project, "revision", c.Revision, "weight", c.Weight, "reason", reason)
		return s.putCanary(project, c)
	}
	step.Verdict = "pass"
	c.History = append(c.History, step)
	next := 100
	for _, w := range c.Steps {
		if w > c.Weight {
			next = w
			break
		}
	}
	s.log.Info("canary step passed", "project", project, "revision", c.Revision, "weight", c.Weight, "next", next, "reason", reason)
	s.setWeight(c, next, now, fmt.Sprintf("step at %d%% passed: %s", step.Weight, reason))
	return s.putCanary(project, c)
}

// canaryJob sets each group of job, about to be registered as a canary,
// to place as many canaries as it has allocations, without promoting
// them on its own.
func canaryJob(job *nomad.Job) {
	for _, tg := range job.TaskGroups {
		n := deref(tg.Count)
		if tg.Update == nil {
			tg.Update = &nomad.UpdateStrategy{}
		}
		tg.Update.Canary = new(n)
		tg.Update.AutoPromote = new(false)
	}
}

// canariesHealthy says every group of Nomad's deployment that places
// canaries has them all healthy; some says any group places canaries.
func canariesHealthy(d *nomad.Deployment) (healthy, some bool) {
	healthy = true
	for _, g := range d.TaskGroups {
		if g.DesiredCanaries == 0 {
			continue
		}
		some = true
		if g.HealthyAllocs < g.DesiredCanaries || len(g.PlacedCanaries) < g.DesiredCanaries {
			healthy = false
		}
	}
	return healthy && some, some
}

// canaryStep takes the deployer's step for a revision deployed as a
// canary, once Nomad's deployment of it runs. It reports whether it took
// one (false: the ordinary deployment rules apply).
func (s *Server) canaryStep(ctx context.Context, n Nomad, w deployWant, dep *nomad.Deployment) (bool, error) {
	c := w.canary
	if !c.Active() || dep.Status != nomad.DeploymentStatusRunning {
		return false, nil
	}
	healthy, _ := canariesHealthy(dep)
	promoted := false
	for _, g := range dep.TaskGroups {
		promoted = promoted || g.Promoted
	}
	switch c.Phase {
	case fsm.CanaryStarting:
		if !healthy {
			return false, nil
		}
		c.Phase, c.StepStarted = fsm.CanaryRunning, time.Now().UTC()
		c.Message = fmt.Sprintf("canaries healthy; %d%% of calls go to revision %s", c.Weight, c.Revision)
		if c.Weight == 100 {
			c.Phase = fsm.CanaryPromote
		}
		s.log.Info("canaries healthy", "project", w.project, "revision", w.revision, "weight", c.Weight)
		return true, s.putCanary(w.project, c)
	case fsm.CanaryPromote:
		if !healthy && !promoted {
			return false, nil
		}
		if !promoted {
			if err := n.PromoteDeployment(ctx, dep.ID); err != nil {
				return true, fmt.Errorf("promote deployment %s: %w", dep.ID, err)
			}
			s.log.Info("promoted Nomad's deployment", "project", w.project, "revision", w.revision, "deployment", dep.ID)
		}
		c.Phase = fsm.CanaryPromoting
		c.Message = fmt.Sprintf("deployment %s promoted: Nomad replaces revision %s's allocations", short(dep.ID), c.Stable)
		return true, s.putCanary(w.project, c)
	case fsm.CanaryAbort:
		if err := n.FailDeployment(ctx, dep.ID); err != nil && !errors.Is(err, ErrNomadRefused) {
			return true, fmt.Errorf("fail deployment %s: %w", dep.ID, err)
		}
		return true, s.failAndRollback(w, "canary: "+strings.TrimSuffix(c.Message, "; aborting"), true)
	}
	return false, nil
}

// endCanary records how the revision's canary ended.
func (s *Server) endCanary(w deployWant, phase, msg string) error {
	c := w.canary
	if !c.Active() {
		return nil
	}
	c.Phase, c.Message, c.Ended = phase, msg, time.Now().UTC()
	if phase == fsm.CanaryPromoted {
		c.Weight = 100
	}
	return s.putCanary(w.project, c)
}
