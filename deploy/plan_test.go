package deploy_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/butterfn/butter/deploy"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/scheduler/schedtest"
)

// writeProject writes files into dir and loads the project.
func writeProject(t *testing.T, dir string, files map[string]string) *spec.Project {
	t.Helper()
	for name, text := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	proj, rep := spec.Load(dir)
	if proj == nil || rep.HasErrors() {
		var b strings.Builder
		_ = rep.WriteText(&b)
		t.Fatalf("the test project does not load:\n%s", b.String())
	}
	return proj
}

// TestPlan: against a real single-node control plane, the plan of a
// project never deployed lists everything as added; of the deployed
// content, no changes; of an edit (take's code and timeout changed, a
// function and its route added, nightly removed, a secret added), exactly
// those, with the spec files' diff; and nothing is recorded.
func TestPlan(t *testing.T) {
	dir := t.TempDir()
	proj := writeProject(t, dir, map[string]string{
		"shop.fn.hcl":             shop,
		"functions/take/index.js": "exports.handle = async (input) => input;\n",
	})
	_, c := schedtest.Single(t, nil)
	ctx := context.Background()

	p, err := deploy.MakePlan(ctx, c, dir, proj)
	if err != nil {
		t.Fatal(err)
	}
	if p.Active != "" || len(p.Functions) != 2 || p.Functions[0].Op != '+' || len(p.Routes) != 1 || p.Routes[0].Op != '+' {
		t.Fatalf("plan of a new project: %+v", p)
	}
	if _, _, err := c.Projects().Status(ctx, "shop", nil); err == nil {
		t.Fatal("the plan created the project")
	}

	out, err := deploy.Push(ctx, c, dir, proj)
	if err != nil {
		t.Fatal(err)
	}
	if p, err = deploy.MakePlan(ctx, c, dir, proj); err != nil {
		t.Fatal(err)
	}
	if p.Active != out.Revision || !p.Empty() {
		t.Fatalf("plan of the deployed content: %+v, want no changes on %s", p, out.Revision)
	}

	edited := strings.Replace(shop, `  handler = "index.handle"`, `  handler = "index.handle"
  timeout = "5s"

  secret "DB_PASSWORD" {
    vault = "kv/shop/db#password"
  }`, 1)
	edited = edited[:strings.Index(edited, `function "nightly"`)] + `function "refund" {
  runtime = "exec"
  command = ["cat"]

  trigger "http" {
    route = "POST /refunds"
  }
}
`
	proj = writeProject(t, dir, map[string]string{
		"shop.fn.hcl":             edited,
		"functions/take/index.js": "exports.handle = async (input) => ({ taken: input });\n",
	})
	if p, err = deploy.MakePlan(ctx, c, dir, proj); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	p.Write(&b)
	t.Logf("plan:\n%s", b.String())
	fns := map[string]deploy.Change{}
	for _, f := range p.Functions {
		fns[f.Name] = f
	}
	if len(fns) != 3 || fns["refund"].Op != '+' || fns["nightly"].Op != '-' || fns["take"].Op != '~' ||
		!strings.Contains(fns["take"].Detail, "code ") || !strings.Contains(fns["take"].Detail, "timeout") {
		t.Errorf("functions: %+v; want refund added, nightly removed, take's code and timeout changed", p.Functions)
	}
	if len(p.Routes) != 1 || p.Routes[0].Op != '+' || !strings.HasPrefix(p.Routes[0].Name, "POST /refunds") {
		t.Errorf("routes: %+v; want POST /refunds added", p.Routes)
	}
	if len(p.Secrets) != 1 || p.Secrets[0].Op != '+' || !strings.Contains(p.Secrets[0].Name, "DB_PASSWORD") {
		t.Errorf("secrets: %+v; want take's DB_PASSWORD added", p.Secrets)
	}
	if len(p.Streams) != 0 {
		t.Errorf("streams: %+v; want none changed", p.Streams)
	}
	if !strings.Contains(p.SpecDiff, "--- a/shop.fn.hcl") || !strings.Contains(p.SpecDiff, `+function "refund" {`) || !strings.Contains(p.SpecDiff, `-function "nightly" {`) {
		t.Errorf("spec diff:\n%s", p.SpecDiff)
	}
	st, _, err := c.Projects().Status(ctx, "shop", nil)
	if err != nil || st.Active == nil || st.Active.ID != out.Revision || st.Revisions != 1 {
		t.Errorf("after the plan the project has %+v (%v); want revision %s alone, still active", st, err, out.Revision)
	}
}
