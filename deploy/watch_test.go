package deploy_test

import (
	"context"
	"encoding/json"
	"github.com/butterfn/butter/scheduler/schedtest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/deploy"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/scheduler/nomadfake"
	nomad "github.com/hashicorp/nomad/api"
)

// TestWatch follows revisions through a real single-node control plane
// whose deployer registers jobs with the in-memory Nomad (nomadfake: no
// Nomad agent is needed to decide a deployment's outcome): the first
// revision's deployment succeeds, the second's fails and is rolled back.
func TestWatch(t *testing.T) {
	// The second revision's job (its function runs tr) fails; every
	// other job, the first revision's again after the rollback included,
	// succeeds.
	fake := nomadfake.New(func(job *nomad.Job) nomadfake.Plan {
		if b, _ := json.Marshal(job); strings.Contains(string(b), "A-Z") {
			return nomadfake.Plan{Outcome: nomadfake.Fail, Reason: "connection refused"}
		}
		return nomadfake.Plan{Outcome: nomadfake.Succeed}
	})
	_, c := schedtest.Single(t, fake)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	dir := t.TempDir()
	push := func(body string) string {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "p.fn.hcl"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		proj, rep := spec.Load(dir)
		if proj == nil || rep.HasErrors() {
			var b strings.Builder
			_ = rep.WriteText(&b)
			t.Fatalf("the test project does not load:\n%s", b.String())
		}
		out, err := deploy.Push(ctx, c, dir, proj)
		if err != nil {
			t.Fatal(err)
		}
		return out.Revision
	}

	first := push("project \"p\" {}\nfunction \"f\" {\n  runtime = \"exec\"\n  command = [\"cat\"]\n}\n")
	var seen []string
	res, err := deploy.Watch(ctx, c, "p", first, func(d api.DeployStatus) { seen = append(seen, d.Status) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != deploy.Healthy || res.Active != first {
		t.Fatalf("first revision: %+v, want healthy and active", res)
	}
	if len(seen) == 0 || seen[len(seen)-1] != api.StatusHealthy {
		t.Errorf("progress %q should end with %s", seen, api.StatusHealthy)
	}

	second := push("project \"p\" {}\nfunction \"f\" {\n  runtime = \"exec\"\n  command = [\"tr\", \"a-z\", \"A-Z\"]\n}\n")
	res, err = deploy.Watch(ctx, c, "p", second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != deploy.Failed || res.Active != first {
		t.Fatalf("second revision: %+v, want failed and rolled back to %s", res, first)
	}
	if !strings.Contains(res.Message, "connection refused") {
		t.Errorf("the failure's message %q should carry the check's output", res.Message)
	}
	// The failed deployment's allocation is in the state, unhealthy.
	if a := res.Deployment.Allocations; len(a) != 1 || a[0].ID == "" || a[0].Healthy == nil || *a[0].Healthy {
		t.Errorf("the failed revision's allocations: %+v, want the one unhealthy allocation Nomad placed", a)
	}

	// The rollback made the first revision active again, still healthy.
	res, err = deploy.Watch(ctx, c, "p", first, nil)
	if err != nil || res.Outcome != deploy.Healthy {
		t.Errorf("following the restored revision: %+v, %v", res, err)
	}

	// A deadline ends the watch with the last status.
	short, stop := context.WithTimeout(ctx, time.Millisecond)
	defer stop()
	<-short.Done()
	if _, err := deploy.Watch(short, c, "p", second, nil); err == nil || !strings.Contains(err.Error(), "still") {
		t.Errorf("an ended context: %v, want 'still ...'", err)
	}
}
