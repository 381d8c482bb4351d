package scheduler_test

import (
	"testing"
	"time"

	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/butterfn/butter/scheduler"
	"github.com/butterfn/butter/scheduler/fsm"
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
