// Package nomadfake is an in-memory Nomad for tests of the scheduler's
// deployer. It implements scheduler.Nomad: it keeps the jobs registered
// with it and their versions, and creates each version's deployment (or
// none) as the test scripts it. It is a fake, not a simulator: there are
// no evaluations, no clients and no placement; a deployment is decided the
// moment its job version is registered.
//
// Tests that need Nomad's real behaviour use a real agent (cmd/butter's
// TestDeployToNomad); this fake is for the deployer's logic, fast and
// faultable.
package nomadfake

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/butterfn/butter/scheduler"
	"github.com/hashicorp/nomad/api"
)

// Outcome is what becomes of a registered job version's deployment.
type Outcome int

const (
	// Succeed: the deployment is created and has succeeded.
	Succeed Outcome = iota
	// Fail: the deployment is created and has failed, with one unhealthy
	// allocation whose check said Plan.Reason.
	Fail
	// NoDeployment: Nomad never creates a deployment for the version.
	NoDeployment
	// Run: the deployment is created and stays running until Finish.
	Run
)

func (o Outcome) String() string {
	switch o {
	case Succeed:
		return "succeed"
	case Fail:
		return "fail"
	case NoDeployment:
		return "no deployment"
	case Run:
		return "run"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// Plan says what happens when a job is registered.
type Plan struct {
	Outcome Outcome
	// Refuse, when set, makes RegisterJob answer 400 with it, as Nomad
	// does for a job it will not take: nothing is registered.
	Refuse string
	// Reason is what the failing allocation's check said (Fail only).
	Reason string
	// Healthy is what the healthy allocation's check said (Succeed
	// only): the body of the pool's /v1/health.
	Healthy string
}

// Script decides the plan of each job registered.
type Script func(job *api.Job) Plan

// Registration records one job version registered.
type Registration struct {
	JobID   string
	Version uint64
	Meta    map[string]string
	Plan    Plan
}

// Nomad is the fake. Its methods are safe for concurrent use: the servers
// of one in-process cluster share one, as a real cluster shares its Nomad.
type Nomad struct {
	script Script

	mu            sync.Mutex
	jobs          map[string]*api.Job
	deployments   map[string][]*api.Deployment // by job ID
	allocs        map[string][]*api.AllocationListStub
	checks        map[string]api.AllocCheckStatuses
	registrations []Registration
	down          error
	seq           uint64
	calls         map[string]int
}

var _ scheduler.Nomad = (*Nomad)(nil)

// New returns an empty fake whose registrations follow script; a nil
// script makes every deployment succeed.
func New(script Script) *Nomad {
	if script == nil {
		script = func(*api.Job) Plan { return Plan{Outcome: Succeed} }
	}
	return &Nomad{
		script:      script,
		jobs:        map[string]*api.Job{},
		deployments: map[string][]*api.Deployment{},
		allocs:      map[string][]*api.AllocationListStub{},
		checks:      map[string]api.AllocCheckStatuses{},
		calls:       map[string]int{},
	}
}

// Calls returns how many times the method (by name: "Job",
// "RegisterJob", ...) was called, failed calls included.
func (n *Nomad) Calls(method string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.calls[method]
}

// SetDown makes every call fail with err, as an unreachable Nomad does
// (not a refusal: the deployer retries); nil brings it back.
func (n *Nomad) SetDown(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.down = err
}

// SetCount sets a group's count in the job Nomad runs, as `nomad job
// scale` does (without a new version: the fake keeps no history).
func (n *Nomad) SetCount(jobID, group string, count int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if j := n.jobs[jobID]; j != nil {
		for _, tg := range j.TaskGroups {
			if deref(tg.Name) == group {
				tg.Count = ptr(count)
			}
		}
	}
}

// Registrations returns every job version registered so far, in order.
func (n *Nomad) Registrations() []Registration {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]Registration, len(n.registrations))
	for i, r := range n.registrations {
		r.Meta = maps.Clone(r.Meta)
		out[i] = r
	}
	return out
}

// StopJob marks the job stopped, as `nomad job stop` does.
func (n *Nomad) StopJob(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if j := n.jobs[id]; j != nil {
		j.Stop = ptr(true)
		j.Status = ptr("dead")
	}
}

// Finish ends the running deployment of a job version with status
// (api.DeploymentStatusSuccessful, api.DeploymentStatusFailed, ...) and
// description. It reports whether there was such a deployment.
func (n *Nomad) Finish(jobID string, version uint64, status, description string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, d := range n.deployments[jobID] {
		if d.JobVersion == version {
			d.Status, d.StatusDescription = status, description
			return true
		}
	}
	return false
}

// DeregisterJob stops the job, and with purge forgets it and its
// deployments.
func (n *Nomad) DeregisterJob(ctx context.Context, id string, purge bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls["DeregisterJob"]++
	if err := n.check(ctx); err != nil {
		return err
	}
	j := n.jobs[id]
	if j == nil {
		return &scheduler.NomadError{StatusCode: 404, Err: fmt.Errorf("job %q not found", id)}
	}
	if purge {
		delete(n.jobs, id)
		delete(n.deployments, id)
		return nil
	}
	j.Stop = ptr(true)
	j.Status = ptr("dead")
	return nil
}

func (n *Nomad) Job(ctx context.Context, id string) (*api.Job, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls["Job"]++
	if err := n.check(ctx); err != nil {
		return nil, err
	}
	j := n.jobs[id]
	if j == nil {
		return nil, &scheduler.NomadError{StatusCode: 404, Err: fmt.Errorf("job %q not found", id)}
	}
	return copyJob(j), nil
}

func (n *Nomad) RegisterJob(ctx context.Context, job *api.Job, preserveCounts bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls["RegisterJob"]++
	if err := n.check(ctx); err != nil {
		return err
	}
	if job == nil || job.ID == nil || *job.ID == "" {
		return &scheduler.NomadError{StatusCode: 400, Err: errors.New("job has no ID")}
	}
	plan := n.script(job)
	if plan.Refuse != "" {
		return &scheduler.NomadError{StatusCode: 400, Err: errors.New(plan.Refuse)}
	}
	id := *job.ID
	var version uint64
	if old := n.jobs[id]; old != nil {
		version = *old.Version + 1
	}
	j := copyJob(job)
	if old := n.jobs[id]; old != nil && preserveCounts {
		// As Nomad does: groups the old version has keep its counts.
		counts := map[string]*int{}
		for _, tg := range old.TaskGroups {
			counts[deref(tg.Name)] = tg.Count
		}
		for _, tg := range j.TaskGroups {
			if c, ok := counts[deref(tg.Name)]; ok && c != nil {
				tg.Count = ptr(*c)
			}
		}
	}
	j.Version, j.Stop, j.Status = ptr(version), ptr(false), ptr("running")
	n.jobs[id] = j
	n.registrations = append(n.registrations, Registration{JobID: id, Version: version, Meta: maps.Clone(job.Meta), Plan: plan})
	if plan.Outcome == NoDeployment {
		return nil
	}
	n.seq++
	d := &api.Deployment{
		ID:          fmt.Sprintf("%08x-fake-0000-0000-%012x", n.seq, n.seq),
		JobID:       id,
		JobVersion:  version,
		TaskGroups:  map[string]*api.DeploymentState{},
		CreateIndex: n.seq,
	}
	canaries := false
	for _, tg := range job.TaskGroups {
		want := 1
		if tg.Count != nil {
			want = *tg.Count
		}
		st := &api.DeploymentState{DesiredTotal: want, PlacedAllocs: want}
		if tg.Update != nil && deref(tg.Update.Canary) > 0 && plan.Outcome == Succeed {
			// Canaries: placed and healthy, waiting for a promotion
			// (PromoteDeployment), as Nomad does with auto_promote off.
			canaries = true
			st.DesiredCanaries, st.PlacedAllocs, st.HealthyAllocs = *tg.Update.Canary, *tg.Update.Canary, *tg.Update.Canary
			for i := range *tg.Update.Canary {
				st.PlacedCanaries = append(st.PlacedCanaries, fmt.Sprintf("c%07x-fake-%04x", n.seq, i))
			}
			d.TaskGroups[deref(tg.Name)] = st
			continue
		}
		switch plan.Outcome {
		case Succeed:
			st.HealthyAllocs = want
		case Fail:
			st.UnhealthyAllocs = want
		}
		d.TaskGroups[deref(tg.Name)] = st
	}
	switch {
	case canaries:
		d.Status, d.StatusDescription = api.DeploymentStatusRunning, "Deployment is running but requires manual promotion"
	case plan.Outcome == Succeed:
		d.Status, d.StatusDescription = api.DeploymentStatusSuccessful, "Deployment completed successfully"
		if plan.Healthy != "" {
			alloc := fmt.Sprintf("a%07x-fake-0000-0000-%012x", n.seq, n.seq)
			n.allocs[d.ID] = []*api.AllocationListStub{{
				ID: alloc, JobID: id, JobVersion: version, DeploymentStatus: &api.AllocDeploymentStatus{Healthy: ptr(true)},
			}}
			n.checks[alloc] = api.AllocCheckStatuses{"c": {ID: "c", Check: "healthy", Status: "success", Output: plan.Healthy}}
		}
	case plan.Outcome == Fail:
		d.Status, d.StatusDescription = api.DeploymentStatusFailed, "Failed due to unhealthy allocations"
		alloc := fmt.Sprintf("a%07x-fake-0000-0000-%012x", n.seq, n.seq)
		n.allocs[d.ID] = []*api.AllocationListStub{{
			ID: alloc, JobID: id, JobVersion: version, DeploymentStatus: &api.AllocDeploymentStatus{Healthy: ptr(false)},
		}}
		n.checks[alloc] = api.AllocCheckStatuses{"c": {ID: "c", Check: "healthy", Status: "failure", Output: plan.Reason}}
	default:
		d.Status, d.StatusDescription = api.DeploymentStatusRunning, "Deployment is running"
	}
	n.deployments[id] = append(n.deployments[id], d)
	return nil
}

// PromoteDeployment promotes a deployment's canaries: as Nomad does once
// they are healthy, the deployment then completes.
func (n *Nomad) PromoteDeployment(ctx context.Context, id string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls["PromoteDeployment"]++
	if err := n.check(ctx); err != nil {
		return err
	}
	d := n.deployment(id)
	if d == nil {
		return &scheduler.NomadError{StatusCode: 404, Err: fmt.Errorf("deployment %s not found", id)}
	}
	if d.Status != api.DeploymentStatusRunning {
		return &scheduler.NomadError{StatusCode: 400, Err: fmt.Errorf("can't promote terminal deployment")}
	}
	for _, g := range d.TaskGroups {
		g.Promoted = true
		g.HealthyAllocs = g.DesiredTotal
	}
	d.Status, d.StatusDescription = api.DeploymentStatusSuccessful, "Deployment completed successfully"
	return nil
}

// FailDeployment fails a running deployment.
func (n *Nomad) FailDeployment(ctx context.Context, id string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls["FailDeployment"]++
	if err := n.check(ctx); err != nil {
		return err
	}
	d := n.deployment(id)
	if d == nil {
		return &scheduler.NomadError{StatusCode: 404, Err: fmt.Errorf("deployment %s not found", id)}
	}
	if d.Status != api.DeploymentStatusRunning {
		return &scheduler.NomadError{StatusCode: 400, Err: fmt.Errorf("can't fail terminal deployment")}
	}
	d.Status, d.StatusDescription = api.DeploymentStatusFailed, "Deployment marked as failed"
	return nil
}

func (n *Nomad) deployment(id string) *api.Deployment {
	for _, ds := range n.deployments {
		for _, d := range ds {
			if d.ID == id {
				return d
			}
		}
	}
	return nil
}

func (n *Nomad) JobDeployments(ctx context.Context, jobID string) ([]*api.Deployment, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls["JobDeployments"]++
	if err := n.check(ctx); err != nil {
		return nil, err
	}
	var out []*api.Deployment
	for _, d := range n.deployments[jobID] {
		cp := *d
		cp.TaskGroups = map[string]*api.DeploymentState{}
		for name, st := range d.TaskGroups {
			s := *st
			cp.TaskGroups[name] = &s
		}
		out = append(out, &cp)
	}
	return out, nil
}

func (n *Nomad) DeploymentAllocations(ctx context.Context, deploymentID string) ([]*api.AllocationListStub, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls["DeploymentAllocations"]++
	if err := n.check(ctx); err != nil {
		return nil, err
	}
	var out []*api.AllocationListStub
	for _, a := range n.allocs[deploymentID] {
		cp := *a
		out = append(out, &cp)
	}
	return out, nil
}

func (n *Nomad) AllocationChecks(ctx context.Context, allocID string) (api.AllocCheckStatuses, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls["AllocationChecks"]++
	if err := n.check(ctx); err != nil {
		return nil, err
	}
	if _, ok := n.checks[allocID]; !ok {
		return nil, &scheduler.NomadError{StatusCode: 404, Err: fmt.Errorf("allocation %q not found", allocID)}
	}
	return maps.Clone(n.checks[allocID]), nil
}

// check fails a call when ctx has ended or Nomad is down; n.mu is held.
func (n *Nomad) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return n.down
}

// copyJob copies what the fake changes or hands out: the top-level
// struct and its meta.
func copyJob(j *api.Job) *api.Job {
	cp := *j
	cp.Meta = maps.Clone(j.Meta)
	return &cp
}

func ptr[T any](v T) *T { return &v }

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
