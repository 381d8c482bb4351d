package scheduler_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/scheduler"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/butterfn/butter/scheduler/nomadfake"
	"github.com/butterfn/butter/scheduler/schedtest"
	"github.com/hashicorp/nomad/api"
)

// deployEnv is a one-node cluster whose deployer drives the in-memory
// Nomad of package nomadfake (a fake the task asked for: cmd/butter's
// TestDeployToNomad runs a real agent), scripted per revision.
type deployEnv struct {
	t     *testing.T
	c     *schedtest.Cluster
	nomad *nomadfake.Nomad

	mu    sync.Mutex
	plans map[string]nomadfake.Plan // by revision

	routes map[string][]string // the routes a revision records, by revision
}

const project = "hello"

func newDeployEnv(t *testing.T) *deployEnv {
	e := &deployEnv{t: t, plans: map[string]nomadfake.Plan{}}
	e.nomad = nomadfake.New(func(job *api.Job) nomadfake.Plan {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.plans[job.Meta["butter_revision"]]
	})
	e.c = schedtest.MakeCluster(t, schedtest.Options{Nodes: 1, Nomad: e.nomad, NoTimers: true, DeploymentStart: 3 * time.Second})
	if err := e.leader().Apply(fsm.ProjectUpsertType, fsm.Project{Name: project, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *deployEnv) leader() *scheduler.Server { return e.c.Leader().Server }

// deploy records a revision whose job Nomad treats as plan says, and
// activates it, as `butter deploy` does through the API.
func (e *deployEnv) deploy(rev string, plan nomadfake.Plan, autoRollback bool) {
	e.t.Helper()
	e.mu.Lock()
	e.plans[rev] = plan
	e.mu.Unlock()
	meta := map[string]string{}
	if !autoRollback {
		meta["butter_auto_rollback"] = "false"
	}
	job, bundles := schedtest.RevisionJob(e.t, project, rev, meta)
	l := e.leader()
	if err := l.Apply(fsm.RevisionCreateType, fsm.Revision{Project: project, ID: rev, Job: job, Bundles: bundles, Routes: e.routes[rev], Created: time.Now()}); err != nil {
		e.t.Fatal(err)
	}
	if err := l.Apply(fsm.RevisionActivateType, fsm.Activation{Project: project, Revision: rev, Reason: "deployed by the test"}); err != nil {
		e.t.Fatal(err)
	}
}

// state returns the revision's deployment and the project's active
// revision.
func (e *deployEnv) state(rev string) (d fsm.DeployStatus, active string) {
	e.c.Leader().FSM().Read(func(st *fsm.State) {
		if r := st.Revisions[project][rev]; r != nil {
			d = r.Deployment
		}
		active = st.Active[project]
	})
	return d, active
}

// waitStatus waits until the revision's deployment has the status.
func (e *deployEnv) waitStatus(rev, status string) fsm.DeployStatus {
	e.t.Helper()
	var d fsm.DeployStatus
	schedtest.WaitFor(e.t, 10*time.Second, "revision "+rev+" "+status, func() bool {
		d, _ = e.state(rev)
		return d.Status == status
	})
	return d
}

// settled waits until the deployer has begun a pass after this call, so
// that the pass that recorded what the test saw has finished.
func (e *deployEnv) settled() {
	e.t.Helper()
	n := e.nomad.Calls("Job")
	schedtest.WaitFor(e.t, 10*time.Second, "the deployer's next pass", func() bool { return e.nomad.Calls("Job") > n })
}

func (e *deployEnv) lastRegistered() string {
	regs := e.nomad.Registrations()
	if len(regs) == 0 {
		return ""
	}
	return regs[len(regs)-1].Meta["butter_revision"]
}

// TestInProcessDeployAndRollback drives the deployer through one project's
// revisions against the fake Nomad: a deployment that succeeds makes its
// revision healthy; one that fails is rolled back to the revision most
// recently healthy, unless auto_rollback = false; a job Nomad refuses
// fails and rolls back too.
func TestInProcessDeployAndRollback(t *testing.T) {
	e := newDeployEnv(t)
	succeed := nomadfake.Plan{Outcome: nomadfake.Succeed}

	t.Run("healthy", func(t *testing.T) {
		e.t = t
		e.deploy("r1", succeed, true)
		d := e.waitStatus("r1", fsm.StatusHealthy)
		if d.HealthyAt.IsZero() || d.NomadDeployment == "" || !strings.Contains(d.Message, "main 1/1 placed, 1 healthy") {
			t.Errorf("r1 deployment = %+v", d)
		}
		if got := e.lastRegistered(); got != "r1" {
			t.Errorf("Nomad runs revision %q, want r1", got)
		}
	})

	t.Run("failed deployment rolls back", func(t *testing.T) {
		e.t = t
		e.deploy("r2", nomadfake.Plan{Outcome: nomadfake.Fail, Reason: "GET /healthz: 503"}, true)
		d := e.waitStatus("r2", fsm.StatusFailed)
		for _, want := range []string{"failed", "check healthy said GET /healthz: 503", "rolled back to r1"} {
			if !strings.Contains(d.Message, want) {
				t.Errorf("r2's message %q lacks %q", d.Message, want)
			}
		}
		// r1 is active again and deployed anew.
		schedtest.WaitFor(t, 30*time.Second, "r1 active and registered again", func() bool {
			_, active := e.state("r1")
			return active == "r1" && e.lastRegistered() == "r1"
		})
		e.waitStatus("r1", fsm.StatusHealthy)
	})

	t.Run("auto_rollback off", func(t *testing.T) {
		e.t = t
		regs := len(e.nomad.Registrations())
		e.deploy("r3", nomadfake.Plan{Outcome: nomadfake.Fail, Reason: "boom"}, false)
		d := e.waitStatus("r3", fsm.StatusFailed)
		if !strings.Contains(d.Message, "automatic rollback is off") {
			t.Errorf("r3's message %q does not say rollback is off", d.Message)
		}
		e.settled()
		if _, active := e.state("r3"); active != "r3" {
			t.Errorf("active revision %q after a failure with auto_rollback = false, want r3", active)
		}
		if got := len(e.nomad.Registrations()); got != regs+1 {
			t.Errorf("%d registrations after deploying r3, want %d (r3 alone)", got, regs+1)
		}
	})

	t.Run("job refused", func(t *testing.T) {
		e.t = t
		e.deploy("r4", nomadfake.Plan{Refuse: "group main: invalid resources"}, true)
		d := e.waitStatus("r4", fsm.StatusFailed)
		for _, want := range []string{"Nomad refused job butter-hello", "invalid resources", "rolled back to r1"} {
			if !strings.Contains(d.Message, want) {
				t.Errorf("r4's message %q lacks %q", d.Message, want)
			}
		}
		schedtest.WaitFor(t, 30*time.Second, "r1 active again", func() bool {
			_, active := e.state("r1")
			return active == "r1"
		})
		e.waitStatus("r1", fsm.StatusHealthy)
	})

	t.Run("job refused, auto_rollback off", func(t *testing.T) {
		e.t = t
		e.deploy("r5", nomadfake.Plan{Refuse: "group main: invalid resources"}, false)
		d := e.waitStatus("r5", fsm.StatusFailed)
		e.settled()
		if _, active := e.state("r5"); active != "r5" || !strings.Contains(d.Message, "automatic rollback is off") {
			t.Errorf("active %q, r5's message %q; want r5 kept, rollback off", active, d.Message)
		}
	})

	t.Run("no deployment", func(t *testing.T) {
		e.t = t
		e.deploy("r6", nomadfake.Plan{Outcome: nomadfake.NoDeployment}, true)
		d := e.waitStatus("r6", fsm.StatusFailed)
		for _, want := range []string{"Nomad created no deployment", "rolled back to r1"} {
			if !strings.Contains(d.Message, want) {
				t.Errorf("r6's message %q lacks %q", d.Message, want)
			}
		}
	})
}

// TestDeployerChecksJobs: a revision whose job was written to the state
// without the API's check (a snapshot from elsewhere, an older server)
// fails with the check's message, and Nomad sees nothing.
func TestDeployerChecksJobs(t *testing.T) {
	e := newDeployEnv(t)
	job, bundles := schedtest.RevisionJob(t, "bank", "r1", nil)
	l := e.leader()
	if err := l.Apply(fsm.RevisionCreateType, fsm.Revision{Project: project, ID: "r1", Job: job, Bundles: bundles, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := l.Apply(fsm.RevisionActivateType, fsm.Activation{Project: project, Revision: "r1", Reason: "restored"}); err != nil {
		t.Fatal(err)
	}
	d := e.waitStatus("r1", fsm.StatusFailed)
	if !strings.Contains(d.Message, `ID "butter-bank": a revision of project "hello" registers job "butter-hello" only`) || !strings.Contains(d.Message, "nothing was registered") {
		t.Errorf("message %q", d.Message)
	}
	if n := len(e.nomad.Registrations()); n != 0 {
		t.Errorf("%d jobs registered with Nomad", n)
	}
}

// TestPoolWarningsInStatus: what a healthy pool's /v1/health says it
// cannot enforce (its "warnings", kept by Nomad as the check's output)
// reaches the revision's status message, which butter status shows.
func TestPoolWarningsInStatus(t *testing.T) {
	e := newDeployEnv(t)
	body := `{"status":"ok","functions":1,"warnings":["sandbox: Landlock is not available (kernel 5.4): instances run unconfined","limits: the memory limit is not enforced: no memory controller"]}`
	e.deploy("r1", nomadfake.Plan{Outcome: nomadfake.Succeed, Healthy: body}, true)
	d := e.waitStatus("r1", fsm.StatusHealthy)
	for _, want := range []string{"the pools warn: ", "limits: the memory limit is not enforced", "sandbox: Landlock is not available"} {
		if !strings.Contains(d.Message, want) {
			t.Errorf("status message %q lacks %q", d.Message, want)
		}
	}
	e.deploy("r2", nomadfake.Plan{Outcome: nomadfake.Succeed, Healthy: `{"status":"ok","functions":1,"warnings":[]}`}, true)
	if d := e.waitStatus("r2", fsm.StatusHealthy); strings.Contains(d.Message, "warn") {
		t.Errorf("a pool without warnings: %q", d.Message)
	}
}
