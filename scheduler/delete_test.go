package scheduler_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/butterfn/butter/scheduler/nomadfake"
	"github.com/butterfn/butter/scheduler/schedtest"
)

// TestDeleteProject: deleting a deployed project (against the fake Nomad
// of package nomadfake) removes its timers and keys at once, refuses
// deploys while the job cannot be purged (Nomad down), says why in the
// project's status, then stops and purges the job once Nomad answers and
// removes the project; the deployer never registers the job again, and
// the project can be deployed anew afterwards.
func TestDeleteProject(t *testing.T) {
	e := newDeployEnv(t)
	e.deploy("r1", nomadfake.Plan{Outcome: nomadfake.Succeed}, true)
	e.waitStatus("r1", fsm.StatusHealthy)
	l := e.leader()
	if err := l.Apply(fsm.TimerPutType, fsm.Timer{ID: project + ".nightly", Project: project, Schedule: "@daily", Topic: project + "._timers.nightly"}); err != nil {
		t.Fatal(err)
	}
	if err := l.Apply(fsm.APIKeyPutType, fsm.APIKey{Hash: "h1", Project: project}); err != nil {
		t.Fatal(err)
	}
	client := schedtest.Client(t, e.c.Leader().URL(), "")
	ctx := context.Background()

	e.nomad.SetDown(errors.New("connection refused"))
	out, err := client.Projects().Delete(ctx, project, false)
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if out.Job != "butter-"+project || !out.Deployer {
		t.Errorf("delete answered %+v, want job butter-%s and a deployer", out, project)
	}
	e.c.Leader().FSM().Read(func(st *fsm.State) {
		if st.TimerDefs[project+".nightly"] != nil || st.APIKeys["h1"] != nil || st.Active[project] != "" {
			t.Errorf("after the delete: timer %v, key %v, active %q; want all gone at once", st.TimerDefs[project+".nightly"], st.APIKeys["h1"], st.Active[project])
		}
	})
	var st *api.ProjectStatus
	schedtest.WaitFor(t, 10*time.Second, "the deletion saying Nomad is down", func() bool {
		st, _, err = client.Projects().Status(ctx, project, nil)
		return err == nil && st.Deleting != nil && strings.Contains(st.Deleting.Message, "connection refused")
	})
	job, bundles := schedtest.RevisionJob(t, project, "r2", nil)
	_, err = client.Revisions().Create(ctx, project, &api.RevisionCreateRequest{ID: "r2", Job: job, Bundles: bundles})
	if api.StatusCode(err) != 409 || !strings.Contains(err.Error(), "being deleted") {
		t.Errorf("a deploy during the deletion: %v, want 409 being deleted", err)
	}
	if _, err := client.Projects().Put(ctx, project); api.StatusCode(err) != 409 {
		t.Errorf("PUT the project during the deletion: %v, want 409", err)
	}

	regs := len(e.nomad.Registrations())
	e.nomad.SetDown(nil)
	schedtest.WaitFor(t, 10*time.Second, "the project gone", func() bool {
		_, _, err := client.Projects().Status(ctx, project, nil)
		return api.StatusCode(err) == 404
	})
	if n := e.nomad.Calls("DeregisterJob"); n != 1 {
		t.Errorf("%d deregistrations, want 1", n)
	}
	if _, err := e.nomad.Job(ctx, "butter-"+project); err == nil {
		t.Error("the job is still in Nomad after the deletion: want it purged")
	}
	if n := len(e.nomad.Registrations()); n != regs {
		t.Errorf("%d registrations after the deletion, want %d: the deployer brought the job back", n, regs)
	}
	e.c.Leader().FSM().Read(func(st *fsm.State) {
		if st.Projects[project] != nil || st.Revisions[project] != nil {
			t.Errorf("project %v, revisions %v left in the state", st.Projects[project], st.Revisions[project])
		}
	})
	if _, err := client.Projects().Delete(ctx, project, false); api.StatusCode(err) != 404 {
		t.Errorf("deleting it again: %v, want 404", err)
	}

	// Deployed anew, from nothing.
	if err := l.Apply(fsm.ProjectUpsertType, fsm.Project{Name: project, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	e.deploy("r1", nomadfake.Plan{Outcome: nomadfake.Succeed}, true)
	e.waitStatus("r1", fsm.StatusHealthy)
	if n := len(e.nomad.Registrations()); n != regs+1 {
		t.Errorf("%d registrations after deploying anew, want %d", n, regs+1)
	}
}
