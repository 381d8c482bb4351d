package scheduler_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	butterapi "github.com/butterfn/butter/api"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/butterfn/butter/scheduler/nomadfake"
	"github.com/butterfn/butter/scheduler/schedtest"
)

// canaryDeploy posts a revision through the API, as butter deploy
// -canary does.
func (e *deployEnv) canaryDeploy(c *butterapi.Client, rev string, routes []string, canary *butterapi.CanaryRequest) error {
	e.t.Helper()
	e.mu.Lock()
	e.plans[rev] = nomadfake.Plan{Outcome: nomadfake.Succeed}
	e.mu.Unlock()
	job, bundles := schedtest.RevisionJob(e.t, project, rev, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Revisions().Create(ctx, project, &butterapi.RevisionCreateRequest{ID: rev, Job: job, Bundles: bundles, Routes: routes, Canary: canary})
	return err
}

func (e *deployEnv) canary() *fsm.Canary {
	var c *fsm.Canary
	e.c.Leader().FSM().Read(func(st *fsm.State) {
		if cur := st.Canaries[project]; cur != nil {
			cp := *cur
			cp.History = append([]fsm.CanaryStep(nil), cur.History...)
			c = &cp
		}
	})
	return c
}

func (e *deployEnv) waitCanary(what string, cond func(c *fsm.Canary) bool) *fsm.Canary {
	e.t.Helper()
	var c *fsm.Canary
	schedtest.WaitFor(e.t, 15*time.Second, what, func() bool {
		c = e.canary()
		return c != nil && cond(c)
	})
	return c
}

// report sends what a gateway would count of the canary at weight: n
// calls per cohort, the canary's failing with the given share, the
// latencies canaryMs and baselineMs.
func report(t *testing.T, c *butterapi.Client, gateway, rev string, weight, n int, canaryErrors float64, canaryMs, baselineMs float64) {
	t.Helper()
	counts := func(errShare, ms float64) butterapi.CohortCounts {
		b := make([]uint64, len(butterapi.CanaryBuckets)+1)
		i := len(butterapi.CanaryBuckets)
		for j, le := range butterapi.CanaryBuckets {
			if ms/1000 <= le {
				i = j
				break
			}
		}
		b[i] = uint64(n)
		return butterapi.CohortCounts{Requests: uint64(n), Errors: uint64(float64(n) * errShare), Buckets: b}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.Canaries().Report(ctx, project, &butterapi.CanaryReport{Gateway: gateway, Revision: rev, Steps: []butterapi.CanaryCounts{
		{Weight: weight, Canary: counts(canaryErrors, canaryMs), Baseline: counts(0, baselineMs)},
	}})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCanaryLifecycle drives canaries through the control plane against
// the fake Nomad (which places canaries and waits for a promotion as
// Nomad does with auto_promote off; the real one is in e2e/server's
// TestCanaryOnNomad): refusals, an automated canary that passes its steps
// and is promoted, one over its error budget that is aborted and leaves
// the stable revision serving, and a manual one moved by hand. The
// gateways' reports are posted as a gateway would (package gateway's
// TestCanarySplit checks what a gateway counts).
func TestCanaryLifecycle(t *testing.T) {
	e := newDeployEnv(t)
	c := schedtest.Client(t, e.c.Leader().ID, "")
	routes := []string{"GET /hello -> hello"}
	e.routes = map[string][]string{"r1": routes}

	// No serving revision: refused.
	if err := e.canaryDeploy(c, "r0", routes, &butterapi.CanaryRequest{Weight: 10}); err == nil || !strings.Contains(err.Error(), "no serving revision") {
		t.Fatalf("a first deploy as a canary: %v, want a refusal naming the missing serving revision", err)
	}
	e.deploy("r1", nomadfake.Plan{Outcome: nomadfake.Succeed}, true)
	e.waitStatus("r1", fsm.StatusHealthy)

	for _, bad := range []struct {
		routes []string
		req    butterapi.CanaryRequest
		want   string
	}{
		{[]string{"GET /hello -> hello", "GET /new -> hello"}, butterapi.CanaryRequest{Weight: 10}, "adds GET /new -> hello"},
		{routes, butterapi.CanaryRequest{Weight: 100}, "canary.weight: 100"},
		{routes, butterapi.CanaryRequest{Steps: []int{50, 10}}, "canary.steps[1]"},
		{routes, butterapi.CanaryRequest{Weight: 10, MaxLatencyRatio: 0.5}, "canary.max_latency_ratio"},
	} {
		err := e.canaryDeploy(c, "bad", bad.routes, &bad.req)
		var se *butterapi.StatusError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("canary %+v with routes %v: %v, want a refusal saying %q", bad.req, bad.routes, err, bad.want)
		}
	}
	if _, active := e.state("r1"); active != "r1" {
		t.Fatalf("after refused canaries the active revision is %s, want r1", active)
	}

	// An automated canary within budget: 10% → 50% → promoted.
	req := &butterapi.CanaryRequest{Steps: []int{10, 50}, Interval: butterapi.Duration(200 * time.Millisecond), MinRequests: 5}
	if err := e.canaryDeploy(c, "r2", routes, req); err != nil {
		t.Fatal(err)
	}
	// The fake places canaries only for a job whose groups ask for them
	// (update.canary), as Nomad does.
	running := e.waitCanary("r2's canaries healthy", func(c *fsm.Canary) bool { return c.Phase == fsm.CanaryRunning })
	if running.Weight != 10 || running.Stable != "r1" {
		t.Fatalf("running canary %+v, want r2 at 10%% beside r1", running)
	}
	if e.nomad.Calls("PromoteDeployment") != 0 {
		t.Fatal("promoted before any step passed")
	}
	// Too few calls: the step waits and says so.
	report(t, c, "g1", "r2", 10, 2, 0, 3, 3)
	e.waitCanary("the step waiting for calls", func(c *fsm.Canary) bool { return strings.Contains(c.Message, "waiting for 5 calls") })
	report(t, c, "g1", "r2", 10, 30, 0, 3, 3)
	e.waitCanary("the 50% step", func(c *fsm.Canary) bool { return c.Weight == 50 })
	report(t, c, "g1", "r2", 50, 40, 0, 3, 3)
	report(t, c, "g2", "r2", 50, 40, 0, 3, 3)
	done := e.waitCanary("r2 promoted", func(c *fsm.Canary) bool { return !c.Ended.IsZero() })
	if done.Phase != fsm.CanaryPromoted || done.Weight != 100 {
		t.Fatalf("canary ended %s at %d%%: %s", done.Phase, done.Weight, done.Message)
	}
	if len(done.History) != 2 || done.History[0].Verdict != "pass" || done.History[1].Verdict != "pass" || done.History[1].Canary.Requests != 80 {
		t.Fatalf("history %+v, want two passed steps, the second with both gateways' 80 calls", done.History)
	}
	if e.nomad.Calls("PromoteDeployment") != 1 {
		t.Fatalf("PromoteDeployment called %d times, want 1", e.nomad.Calls("PromoteDeployment"))
	}
	e.waitStatus("r2", fsm.StatusHealthy)

	// An automated canary over its error budget: aborted, r2 serves.
	if err := e.canaryDeploy(c, "r3", routes, req); err != nil {
		t.Fatal(err)
	}
	e.waitCanary("r3's canaries healthy", func(c *fsm.Canary) bool { return c.Phase == fsm.CanaryRunning })
	report(t, c, "g1", "r3", 10, 50, 0.2, 3, 3)
	ended := e.waitCanary("r3 aborted", func(c *fsm.Canary) bool { return !c.Ended.IsZero() })
	if ended.Phase != fsm.CanaryAborted || !strings.Contains(ended.Message, "error rate 20.00%") {
		t.Fatalf("canary ended %s: %s, want aborted over its error budget", ended.Phase, ended.Message)
	}
	if e.nomad.Calls("FailDeployment") != 1 {
		t.Fatalf("FailDeployment called %d times, want 1", e.nomad.Calls("FailDeployment"))
	}
	d := e.waitStatus("r3", fsm.StatusFailed)
	if d.RolledBackTo != "r2" {
		t.Fatalf("r3 failed with rollback to %q, want r2", d.RolledBackTo)
	}
	e.waitStatus("r2", fsm.StatusHealthy)
	// The rollback's activation is applied before the deployer's next pass
	// registers r2's job again: wait for that pass.
	schedtest.WaitFor(t, 10*time.Second, "r2's job registered again", func() bool { return e.lastRegistered() == "r2" })
	// Registered again, r2 deploys and is healthy again: wait for the
	// deployer's next pass, then for that, before a canary is measured
	// against it.
	e.settled()
	e.waitStatus("r2", fsm.StatusHealthy)

	// A manual canary: stays at its weight; promote moves it to 100.
	if err := e.canaryDeploy(c, "r4", routes, &butterapi.CanaryRequest{Weight: 20}); err != nil {
		t.Fatal(err)
	}
	e.waitCanary("r4's canaries healthy", func(c *fsm.Canary) bool { return c.Phase == fsm.CanaryRunning })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Canaries().Abort(ctx, "nope", ""); err == nil {
		t.Error("aborting an unknown project's canary succeeded")
	}
	st, _, err := c.Projects().Status(ctx, project, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Canary == nil || !st.Canary.Effective || st.Canary.Weight != 20 || st.Canary.Stable != "r2" {
		t.Fatalf("status shows canary %+v, want r4 effective at 20%% beside r2", st.Canary)
	}
	out, err := c.Canaries().Promote(ctx, project, 0)
	if err != nil {
		t.Fatal(err)
	}
	if out.Phase != fsm.CanaryPromote || out.Weight != 100 {
		t.Fatalf("promote answered %+v, want promote at 100%%", out)
	}
	e.waitCanary("r4 promoted", func(c *fsm.Canary) bool { return c.Phase == fsm.CanaryPromoted })
	e.waitStatus("r4", fsm.StatusHealthy)

	// A plain deploy during a canary replaces it.
	if err := e.canaryDeploy(c, "r5", routes, &butterapi.CanaryRequest{Weight: 20}); err != nil {
		t.Fatal(err)
	}
	e.waitCanary("r5's canaries healthy", func(c *fsm.Canary) bool { return c.Phase == fsm.CanaryRunning })
	e.deploy("r6", nomadfake.Plan{Outcome: nomadfake.Succeed}, true)
	if c := e.canary(); c.Phase != fsm.CanaryReplaced || c.Ended.IsZero() || !strings.Contains(c.Message, "deployed by the test") {
		t.Fatalf("after a plain deploy the canary is %s (%s), want replaced", c.Phase, c.Message)
	}
	e.waitStatus("r6", fsm.StatusHealthy)
}
