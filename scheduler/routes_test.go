package scheduler_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/deploy"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/butterfn/butter/scheduler/nomadfake"
	"github.com/butterfn/butter/scheduler/schedtest"
)

// TestRouteConflicts: the control plane refuses a revision whose route
// another project's active revision already serves (or overlaps with no
// way for the gateway to route them apart), or that is on the gateway's
// own paths, naming what it conflicts with; it records nothing for it,
// and checks a rollback the same way. A real single-node control plane,
// through the API client.
func TestRouteConflicts(t *testing.T) {
	_, c := schedtest.Single(t, nil)
	ctx := context.Background()
	create := func(project, id string, routes ...string) error {
		_, err := c.Revisions().Create(ctx, project, &api.RevisionCreateRequest{
			ID: id, Specs: map[string]string{project + ".fn.hcl": "project \"" + project + "\" {}\n"}, Routes: routes,
		})
		return err
	}
	refused := func(err error, code int, parts ...string) {
		t.Helper()
		if err == nil {
			t.Fatalf("accepted; want %d with %q", code, parts)
		}
		if api.StatusCode(err) != code {
			t.Fatalf("%v: want status %d", err, code)
		}
		for _, p := range parts {
			if !strings.Contains(err.Error(), p) {
				t.Fatalf("%v: want it to say %q", err, p)
			}
		}
	}
	active := func(project string) string {
		t.Helper()
		st, _, err := c.Projects().Status(ctx, project, nil)
		if err != nil {
			t.Fatal(err)
		}
		if st.Active == nil {
			return ""
		}
		return st.Active.ID
	}

	if err := create("shop", "s1", "POST /orders -> take", "GET /shop/{id} -> show"); err != nil {
		t.Fatal(err)
	}
	// The same route, the same route with other parameter names, and one
	// ServeMux cannot route apart from shop's.
	refused(create("billing", "b1", "POST /bills -> bill", "POST /orders -> bill"), http.StatusConflict,
		`route "POST /orders" conflicts with route "POST /orders" of project "shop"`, "revision s1", "remove the route from project \"shop\"")
	refused(create("billing", "b1", "GET /shop/{order} -> bill"), http.StatusConflict, `project "shop"`, "the same requests")
	refused(create("billing", "b1", "GET /{tenant}/orders -> bill"), http.StatusConflict, `route "GET /shop/{id}" of project "shop"`, `"/shop/orders"`)
	refused(create("billing", "b1", "ANY /orders -> bill"), http.StatusConflict, `project "shop"`)
	// The gateway's own paths.
	refused(create("billing", "b1", "GET /metrics -> bill"), http.StatusBadRequest, `"GET /metrics"`, "the gateway serves")
	refused(create("billing", "b1", "POST /v1/bills -> bill"), http.StatusBadRequest, `"POST /v1/bills"`)
	if _, _, err := c.Projects().Status(ctx, "billing", nil); api.StatusCode(err) != http.StatusNotFound {
		t.Fatalf("a refused revision left its project behind: %v", err)
	}

	// Other methods and paths are fine, and a project may keep its own
	// routes from revision to revision.
	if err := create("billing", "b1", "GET /orders -> list", "POST /bills -> bill"); err != nil {
		t.Fatal(err)
	}
	if err := create("shop", "s2", "POST /orders -> take", "POST /payments -> pay"); err != nil {
		t.Fatal(err)
	}
	// Shop may not take a route billing serves; it keeps serving s2.
	refused(create("shop", "s3", "POST /bills -> take"), http.StatusConflict, `project "billing"`, "revision b1")
	if got := active("shop"); got != "s2" {
		t.Fatalf("shop's active revision is %q after a refused one, want s2", got)
	}

	// Once shop lets go of POST /orders, billing may take it; then shop
	// cannot roll back to the revision that had it.
	if err := create("shop", "s4", "POST /payments -> pay"); err != nil {
		t.Fatal(err)
	}
	if err := create("billing", "b2", "POST /orders -> bill"); err != nil {
		t.Fatal(err)
	}
	_, err := c.Revisions().Rollback(ctx, "shop")
	refused(err, http.StatusConflict, `route "POST /orders" conflicts with route "POST /orders" of project "billing"`)
	if got := active("shop"); got != "s4" {
		t.Fatalf("shop's active revision is %q after a refused rollback, want s4", got)
	}
}

// TestDeployRouteConflict: `butter deploy`'s push of a project whose route
// another project serves fails with the control plane's reason, which the
// command prints.
func TestDeployRouteConflict(t *testing.T) {
	_, c := schedtest.Single(t, nil)
	push := func(name string) error {
		dir := t.TempDir()
		text := "project \"" + name + "\" {}\n\nfunction \"take\" {\n  runtime = \"exec\"\n  command = [\"cat\"]\n  trigger \"http\" {\n    route = \"POST /orders/{id}\"\n  }\n}\n"
		if err := os.WriteFile(filepath.Join(dir, name+".fn.hcl"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		proj, rep := spec.Load(dir)
		if proj == nil || rep.HasErrors() {
			t.Fatalf("project %s does not load: %v", name, rep.Diags)
		}
		_, err := deploy.Push(context.Background(), c, dir, proj)
		return err
	}
	if err := push("shop"); err != nil {
		t.Fatal(err)
	}
	err := push("billing")
	if err == nil || api.StatusCode(err) != http.StatusConflict ||
		!strings.Contains(err.Error(), `route "POST /orders/{id}" conflicts with route "POST /orders/{id}" of project "shop"`) {
		t.Fatalf("pushing a route another project serves: %v", err)
	}
}

// TestRollbackRouteConflict: the deployer does not roll a failed revision
// back to one whose route another project now serves; the failure says
// why, and the failed revision stays active. The other project's revision
// is written to the log directly, as one recorded before the control
// plane checked routes (the API would refuse it); it has no job, so the
// deployer leaves it alone. The deployer drives package nomadfake's
// in-memory Nomad, as in TestInProcessDeployAndRollback.
func TestRollbackRouteConflict(t *testing.T) {
	e := newDeployEnv(t)
	e.routes = map[string][]string{"r1": {"POST /orders -> take"}, "r2": {"POST /payments -> pay"}}
	e.deploy("r1", nomadfake.Plan{Outcome: nomadfake.Succeed}, true)
	e.waitStatus("r1", fsm.StatusHealthy)

	l := e.leader()
	if err := l.Apply(fsm.ProjectUpsertType, fsm.Project{Name: "shop", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := l.Apply(fsm.RevisionCreateType, fsm.Revision{Project: "shop", ID: "s1", Routes: []string{"POST /orders -> bill"}, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := l.Apply(fsm.RevisionActivateType, fsm.Activation{Project: "shop", Revision: "s1"}); err != nil {
		t.Fatal(err)
	}

	e.deploy("r2", nomadfake.Plan{Outcome: nomadfake.Fail, Reason: "boom"}, true)
	d := e.waitStatus("r2", fsm.StatusFailed)
	for _, want := range []string{"cannot roll back to r1", `route "POST /orders" conflicts with route "POST /orders" of project "shop"`} {
		if !strings.Contains(d.Message, want) {
			t.Errorf("r2's message %q lacks %q", d.Message, want)
		}
	}
	if d.RolledBackTo != "" {
		t.Errorf("r2 records a rollback to %q", d.RolledBackTo)
	}
	e.settled()
	if _, active := e.state("r2"); active != "r2" {
		t.Errorf("active revision %q, want r2 kept", active)
	}
}
