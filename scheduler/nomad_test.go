package scheduler_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/butterfn/butter/scheduler"
	"github.com/butterfn/butter/scheduler/nomadfake"
	"github.com/hashicorp/nomad/api"
)

// NomadClient turns Nomad's error answers into *NomadError: a 404 is not
// found (and refused), another 4xx refused, a 5xx neither (the deployer
// retries it). The server here answers as Nomad's HTTP API would.
func TestNomadClientErrors(t *testing.T) {
	codes := map[string]int{"/v1/job/gone": 404, "/v1/jobs": 400, "/v1/job/broken": 500}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "said Nomad", codes[r.URL.Path])
	}))
	defer srv.Close()
	c, err := api.NewClient(&api.Config{Address: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	n := scheduler.NewNomadClient(c)
	ctx := context.Background()
	_, gone := n.Job(ctx, "gone")
	_, broken := n.Job(ctx, "broken")
	refused := n.RegisterJob(ctx, &api.Job{ID: new("j"), Name: new("j")}, false)
	for _, c := range []struct {
		name              string
		err               error
		notFound, refused bool
	}{
		{"404", gone, true, true},
		{"400", refused, false, true},
		{"500", broken, false, false},
	} {
		if c.err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if got := errors.Is(c.err, scheduler.ErrNomadNotFound); got != c.notFound {
			t.Errorf("%s: errors.Is(ErrNomadNotFound) = %v: %v", c.name, got, c.err)
		}
		if got := errors.Is(c.err, scheduler.ErrNomadRefused); got != c.refused {
			t.Errorf("%s: errors.Is(ErrNomadRefused) = %v: %v", c.name, got, c.err)
		}
	}
}

// The fake answers as the real client does: the same errors for a missing
// job and a refused one, and plain errors while it is down.
func TestNomadFakeErrors(t *testing.T) {
	n := nomadfake.New(func(j *api.Job) nomadfake.Plan {
		if *j.ID == "bad" {
			return nomadfake.Plan{Refuse: "group main: count must be >= 0"}
		}
		return nomadfake.Plan{}
	})
	ctx := context.Background()
	if _, err := n.Job(ctx, "nope"); !errors.Is(err, scheduler.ErrNomadNotFound) {
		t.Errorf("missing job: %v", err)
	}
	if err := n.RegisterJob(ctx, &api.Job{ID: new("bad")}, false); !errors.Is(err, scheduler.ErrNomadRefused) || errors.Is(err, scheduler.ErrNomadNotFound) {
		t.Errorf("refused job: %v", err)
	}
	if err := n.RegisterJob(ctx, &api.Job{ID: new("ok"), TaskGroups: []*api.TaskGroup{{Name: new("main")}}}, false); err != nil {
		t.Fatal(err)
	}
	deps, err := n.JobDeployments(ctx, "ok")
	if err != nil || len(deps) != 1 || deps[0].Status != api.DeploymentStatusSuccessful || deps[0].TaskGroups["main"].HealthyAllocs != 1 {
		t.Errorf("deployments: %v, %+v", err, deps)
	}
	down := errors.New("connection refused")
	n.SetDown(down)
	if _, err := n.Job(ctx, "ok"); !errors.Is(err, down) || errors.Is(err, scheduler.ErrNomadRefused) {
		t.Errorf("down: %v", err)
	}
}
