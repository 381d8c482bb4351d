package scheduler_test

import (
	"context"
	"strings"
	"testing"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/scheduler"
	"github.com/butterfn/butter/scheduler/schedtest"
)

// TestQuota: a quota set through the API is shown with the project; a
// revision over max_functions or max_instances is refused 422 naming the
// limit, and nothing is stored; under the limits it is accepted; a bad
// quota is refused 400 and changes nothing.
func TestQuota(t *testing.T) {
	s, c, dataDir := inputServer(t, scheduler.Config{})
	ctx := context.Background()
	job, bundles := schedtest.RevisionJob(t, "shop", "r1", nil)
	fns, err := jobs.Functions(job)
	if err != nil || len(fns) != 1 {
		t.Fatalf("the test job's functions: %v, %v", fns, err)
	}
	instances := fns[0].MaxInstances

	last := s.FSM().Index()
	for _, bad := range []api.Quota{{MaxFunctions: -1}, {MaxInstances: -2}, {RequestsPerSecond: -0.5}} {
		_, err := c.Projects().SetQuota(ctx, "shop", &bad)
		if api.StatusCode(err) != 400 {
			t.Errorf("quota %+v: %v, want 400", bad, err)
		}
	}
	unchanged(t, s, dataDir, last, "bad quotas")

	// The quota creates the project, and is shown with it.
	if _, err := c.Projects().SetQuota(ctx, "shop", &api.Quota{MaxFunctions: 1, MaxInstances: instances - 1, RequestsPerSecond: 5}); err != nil {
		t.Fatal(err)
	}
	st, _, err := c.Projects().Status(ctx, "shop", nil)
	if err != nil || st.Quota == nil || *st.Quota != (api.Quota{MaxFunctions: 1, MaxInstances: instances - 1, RequestsPerSecond: 5}) {
		t.Fatalf("status: %+v, %v", st, err)
	}
	last = s.FSM().Index()
	_, err = c.Revisions().Create(ctx, "shop", &api.RevisionCreateRequest{ID: "r1", Job: job, Bundles: bundles})
	if api.StatusCode(err) != 422 || !strings.Contains(err.Error(), "max_instances") || !strings.Contains(err.Error(), "butter project quota set shop") {
		t.Fatalf("over max_instances: %v, want 422 naming the limit", err)
	}
	unchanged(t, s, dataDir, last, "a revision over the quota")

	if _, err := c.Projects().SetQuota(ctx, "shop", &api.Quota{MaxFunctions: 0, MaxInstances: instances}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Revisions().Create(ctx, "shop", &api.RevisionCreateRequest{ID: "r1", Job: job, Bundles: bundles}); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	// PUT /v1/projects/{name} keeps the quota.
	if _, err := c.Projects().Put(ctx, "shop"); err != nil {
		t.Fatal(err)
	}
	if st, _, err := c.Projects().Status(ctx, "shop", nil); err != nil || st.Quota == nil || st.Quota.MaxInstances != instances {
		t.Fatalf("after a project put: %+v, %v", st, err)
	}

	// max_functions: a second project with one function and a limit of 0
	// functions is unlimited; a limit under the count refuses.
	job2, bundles2 := schedtest.RevisionJob(t, "bank", "r1", nil)
	if _, err := c.Projects().SetQuota(ctx, "bank", &api.Quota{MaxFunctions: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Revisions().Create(ctx, "bank", &api.RevisionCreateRequest{ID: "r1", Job: job2, Bundles: bundles2}); err != nil {
		t.Fatalf("one function of one allowed: %v", err)
	}
	// examples/iot has three functions.
	proj, _ := spec.Load("../examples/iot")
	if proj == nil {
		t.Fatal("examples/iot does not load")
	}
	cj, err := jobs.Compile(proj)
	if err != nil {
		t.Fatal(err)
	}
	iotJob, err := jobs.RenderJSON(cj.Job)
	if err != nil {
		t.Fatal(err)
	}
	iotBundles := map[string]string{}
	for _, a := range cj.Artifacts {
		iotBundles[a.Path] = string(a.Digest)
	}
	if _, err := c.Projects().SetQuota(ctx, "iot", &api.Quota{MaxFunctions: 2}); err != nil {
		t.Fatal(err)
	}
	last = s.FSM().Index()
	_, err = c.Revisions().Create(ctx, "iot", &api.RevisionCreateRequest{ID: cj.Revision, Job: iotJob, Bundles: iotBundles})
	if api.StatusCode(err) != 422 || !strings.Contains(err.Error(), "the revision has 3 functions, and project \"iot\" may have 2 (max_functions)") {
		t.Fatalf("over max_functions: %v", err)
	}
	unchanged(t, s, dataDir, last, "a revision over max_functions")

	// A rollback is checked against the quota as it is now: bank's r1
	// has one function; r2 is created while the limit is 0 (none),
	// then the limit falls under r1's instances.
	job3, bundles3 := schedtest.RevisionJob(t, "bank", "r2", nil)
	if _, err := c.Revisions().Create(ctx, "bank", &api.RevisionCreateRequest{ID: "r2", Job: job3, Bundles: bundles3}); err != nil {
		t.Fatalf("r2: %v", err)
	}
	if _, err := c.Projects().SetQuota(ctx, "bank", &api.Quota{MaxInstances: instances - 1}); err != nil {
		t.Fatal(err)
	}
	last = s.FSM().Index()
	_, err = c.Revisions().Rollback(ctx, "bank")
	if api.StatusCode(err) != 422 || !strings.Contains(err.Error(), "roll project \"bank\" back to revision r1") || !strings.Contains(err.Error(), "max_instances") {
		t.Fatalf("rollback over the quota: %v, want 422 naming the revision and the limit", err)
	}
	unchanged(t, s, dataDir, last, "a rollback over the quota")
	if _, err := c.Projects().SetQuota(ctx, "bank", &api.Quota{MaxInstances: instances}); err != nil {
		t.Fatal(err)
	}
	if back, err := c.Revisions().Rollback(ctx, "bank"); err != nil || back.Revision != "r1" {
		t.Fatalf("rollback within the quota: %+v, %v", back, err)
	}

	// Zero removes every limit.
	if _, err := c.Projects().SetQuota(ctx, "bank", &api.Quota{}); err != nil {
		t.Fatal(err)
	}
	if st, _, err := c.Projects().Status(ctx, "bank", nil); err != nil || st.Quota != nil {
		t.Fatalf("after removing: %+v, %v", st, err)
	}
}
