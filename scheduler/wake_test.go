package scheduler_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/butterfn/butter/scheduler/schedtest"
)

// TestWakeWithoutAutoscaler: a leader that runs no autoscaler answers a
// wake 503, saying so and what to do instead; a bad pool name is a 400.
// (A wake that scales a pool: autoscaler TestWakeOnNomad; the route's ACL:
// TestACLWalkEveryRoute.)
func TestWakeWithoutAutoscaler(t *testing.T) {
	c := schedtest.MakeCluster(t, schedtest.Options{Nodes: 1, NoTimers: true})
	cl, err := api.NewClient(&api.Config{Address: "http://" + c.Leader().Server.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	err = cl.Projects().Wake(context.Background(), "p", "main", 1)
	if api.StatusCode(err) != 503 || !strings.Contains(err.Error(), "no autoscaler runs on the leader") || !strings.Contains(err.Error(), "nomad job scale") {
		t.Errorf("wake without an autoscaler: %v; want 503 naming it", err)
	}
	if err := cl.Projects().Wake(context.Background(), "p", "Bad_Pool", 1); api.StatusCode(err) != 400 || !strings.Contains(err.Error(), "pool name") {
		t.Errorf("wake of a bad pool name: %v; want 400", err)
	}
}

// TestWakeRefusesPoolsNotAsleep: a pool of the active revision's job that
// the autoscaler does not scale to zero (min 1) is refused 409, a pool
// the job does not have 404: the gateway stops holding their calls.
func TestWakeRefusesPoolsNotAsleep(t *testing.T) {
	c := schedtest.MakeCluster(t, schedtest.Options{Nodes: 1, NoTimers: true})
	leader := c.Leader().Server
	const proj, rev = "awake", "aaaaaaaaaaaa"
	if err := leader.Apply(fsm.ProjectUpsertType, fsm.Project{Name: proj, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	job, bundles := schedtest.RevisionJob(t, proj, rev, nil)
	if err := leader.Apply(fsm.RevisionCreateType, fsm.Revision{Project: proj, ID: rev, Job: job, Bundles: bundles, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := leader.Apply(fsm.RevisionActivateType, fsm.Activation{Project: proj, Revision: rev, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	cl, err := api.NewClient(&api.Config{Address: "http://" + leader.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	err = cl.Projects().Wake(context.Background(), proj, "main", 1)
	if api.StatusCode(err) != 409 || !strings.Contains(err.Error(), "not one the autoscaler scales to zero (min 1") {
		t.Errorf("wake of a min-1 pool: %v; want 409", err)
	}
	err = cl.Projects().Wake(context.Background(), proj, "other", 1)
	if api.StatusCode(err) != 404 || !strings.Contains(err.Error(), `has no pool "other"`) {
		t.Errorf("wake of a pool the job lacks: %v; want 404", err)
	}
}
