package scheduler_test

import (
	"context"
	"testing"
	"time"

	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/butterfn/butter/scheduler"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/butterfn/butter/scheduler/nomadfake"
	"github.com/butterfn/butter/scheduler/schedtest"
	"github.com/hashicorp/nomad/api"
)

// TestDeployKeepsScaledCount runs the deployer against a real Nomad dev
// agent: a count set with Nomad's Scale API (as the autoscaler, or an
// operator's `nomad job scale`, sets it) survives the deploy of the next
// revision, which the deployer registers with PreserveCounts. The agent
// has no butter driver, so nothing is placed: the test is about the job
// Nomad keeps, not its allocations.
func TestDeployKeepsScaledCount(t *testing.T) {
	agent := nomadtest.Start(t)
	c := schedtest.MakeCluster(t, schedtest.Options{Nodes: 1, Nomad: scheduler.NewNomadClient(agent.Client), NoTimers: true})
	const proj, jobID = "counts", "butter-counts"
	leader := c.Leader().Server
	if err := leader.Apply(fsm.ProjectUpsertType, fsm.Project{Name: proj, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	deploy := func(rev string) {
		t.Helper()
		job, bundles := schedtest.RevisionJob(t, proj, rev, nil)
		if err := leader.Apply(fsm.RevisionCreateType, fsm.Revision{Project: proj, ID: rev, Job: job, Bundles: bundles, Created: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := leader.Apply(fsm.RevisionActivateType, fsm.Activation{Project: proj, Revision: rev, Reason: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	nomadJob := func() *api.Job {
		j, _, err := agent.Client.Jobs().Info(jobID, nil)
		if err != nil {
			return nil
		}
		return j
	}
	count := func(j *api.Job) int { return *j.TaskGroups[0].Count }

	deploy("aaaaaaaaaaaa")
	schedtest.WaitFor(t, 30*time.Second, "the first revision registered", func() bool {
		j := nomadJob()
		return j != nil && j.Meta["butter_revision"] == "aaaaaaaaaaaa"
	})
	if n := count(nomadJob()); n != 1 {
		t.Fatalf("first revision registered with count %d, want 1", n)
	}
	// Its deployment cannot place anything here; Nomad refuses to scale
	// a job while a deployment is active, so end it.
	schedtest.WaitFor(t, 30*time.Second, "a deployment to fail by hand", func() bool {
		d, _, err := agent.Client.Jobs().LatestDeployment(jobID, nil)
		if err != nil || d == nil {
			return false
		}
		if d.Status == api.DeploymentStatusRunning {
			_, _, _ = agent.Client.Deployments().Fail(d.ID, nil)
			return false
		}
		return true
	})
	three := 3
	if _, _, err := agent.Client.Jobs().Scale(jobID, "main", &three, "test: as the autoscaler would", false, nil, nil); err != nil {
		t.Fatalf("scale: %v", err)
	}
	if n := count(nomadJob()); n != 3 {
		t.Fatalf("count after scaling: %d, want 3", n)
	}
	version := *nomadJob().Version

	deploy("bbbbbbbbbbbb")
	schedtest.WaitFor(t, 30*time.Second, "the second revision registered", func() bool {
		j := nomadJob()
		return j != nil && j.Meta["butter_revision"] == "bbbbbbbbbbbb"
	})
	j := nomadJob()
	if *j.Version <= version {
		t.Errorf("job version %d after the redeploy, want above %d", *j.Version, version)
	}
	if n := count(j); n != 3 {
		t.Errorf("the redeploy reset the count to %d; want the scaled 3 kept", n)
	}
}

// TestDeployClampsCount: a count outside the new revision's scaling
// bounds (20, above max 10) is registered at the nearest bound, not kept.
func TestDeployClampsCount(t *testing.T) {
	e := newDeployEnv(t)
	e.deploy("aaaaaaaaaaaa", nomadfake.Plan{Outcome: nomadfake.Succeed}, true)
	e.waitStatus("aaaaaaaaaaaa", fsm.StatusHealthy)
	e.nomad.SetCount("butter-hello", "main", 20)
	e.deploy("bbbbbbbbbbbb", nomadfake.Plan{Outcome: nomadfake.Succeed}, true)
	e.waitStatus("bbbbbbbbbbbb", fsm.StatusHealthy)
	j, err := e.nomad.Job(context.Background(), "butter-hello")
	if err != nil {
		t.Fatal(err)
	}
	if n := *j.TaskGroups[0].Count; n != 10 {
		t.Errorf("count %d after a deploy over a count of 20 with max 10; want 10", n)
	}
	e.nomad.SetCount("butter-hello", "main", 4)
	e.deploy("cccccccccccc", nomadfake.Plan{Outcome: nomadfake.Succeed}, true)
	e.waitStatus("cccccccccccc", fsm.StatusHealthy)
	j, _ = e.nomad.Job(context.Background(), "butter-hello")
	if n := *j.TaskGroups[0].Count; n != 4 {
		t.Errorf("count %d after a deploy over a count of 4; want it kept", n)
	}
}
