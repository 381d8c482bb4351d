package deploy_test

import (
	"context"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/deploy"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/scheduler"
	"github.com/butterfn/butter/scheduler/schedtest"
)

const shop = `project "shop" {}

stream "orders" {
  partitions = 1
}

function "take" {
  runtime = "node"
  source  = "functions/take"
  handler = "index.handle"
  output  = stream.orders

  trigger "http" {
    route = "POST /orders"
  }
}

function "nightly" {
  runtime = "exec"
  command = ["cat"]

  trigger "cron" {
    schedule = "0 3 * * *"
  }
}
`

// TestPush pushes a project to a real single-node control plane: its
// bundle is uploaded and served back, the revision records the specs,
// digests, job, timers, routes and stream bindings and is active, and a
// second push of the same content only re-activates it.
func TestPush(t *testing.T) {
	dir := t.TempDir()
	proj := writeProject(t, dir, map[string]string{
		"shop.fn.hcl":             shop,
		"functions/take/index.js": "exports.handle = async (input) => input;\n",
	})

	_, c := schedtest.Single(t, nil)
	ctx := context.Background()

	var reports, uploads []deploy.Upload
	out, err := deploy.Push(ctx, c, dir, proj, deploy.WithAuthor("ana"), deploy.WithProgress(func(u deploy.Upload) {
		reports = append(reports, u)
		if u.Done {
			uploads = append(uploads, u)
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !out.New || out.Project != "shop" || out.Revision == "" {
		t.Fatalf("push: %+v", out)
	}
	// The reports of an upload: one before it (nothing sent), its bytes
	// as they are sent, never going back, and one when it is stored.
	if len(reports) < 3 || reports[0].Sent != 0 || reports[0].Done || !reports[len(reports)-1].Done {
		t.Fatalf("progress reports: %+v", reports)
	}
	for i := 1; i < len(reports); i++ {
		if reports[i].Sent < reports[i-1].Sent || reports[i].Sent > int64(reports[i].Size) {
			t.Fatalf("progress report %d: %d of %d bytes sent after %d", i, reports[i].Sent, reports[i].Size, reports[i-1].Sent)
		}
	}
	if last := reports[len(reports)-2]; last.Sent != int64(last.Size) {
		t.Fatalf("the reports before the upload was stored end at %d of %d bytes", last.Sent, last.Size)
	}
	if len(uploads) != 1 || uploads[0].Path != "functions/take" || uploads[0].N != 1 || uploads[0].Total != 1 || uploads[0].Size == 0 {
		t.Fatalf("uploads: %+v", uploads)
	}
	rc, err := c.Blobs().Get(ctx, uploads[0].Digest)
	if err != nil {
		t.Fatalf("the uploaded bundle: %v", err)
	}
	n, _ := io.Copy(io.Discard, rc)
	rc.Close()
	if int(n) != uploads[0].Size {
		t.Fatalf("the bundle served back has %d bytes, %d were uploaded", n, uploads[0].Size)
	}

	rev, _, err := c.Revisions().Get(ctx, "shop", out.Revision, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rev.Specs["shop.fn.hcl"] != shop || rev.Bundles["functions/take"] != uploads[0].Digest || rev.Author != "ana" {
		t.Fatalf("revision: specs %v, bundles %v, author %q", rev.Specs, rev.Bundles, rev.Author)
	}
	if !strings.Contains(string(rev.Job), `"butter-shop"`) || !strings.Contains(string(rev.Job), "/v1/blobs/sha256/") {
		t.Fatalf("the job does not name the project's job or the blob URL: %.300s", rev.Job)
	}
	if strings.Join(rev.Routes, ",") != "POST /orders -> take" {
		t.Fatalf("routes %q", rev.Routes)
	}
	if len(rev.Streams) != 1 || !strings.HasPrefix(rev.Streams[0], "take -> ") {
		t.Fatalf("streams %q", rev.Streams)
	}
	if len(rev.Timers) != 1 || rev.Timers[0].Schedule != "0 3 * * *" || rev.Timers[0].Topic == "" {
		t.Fatalf("timers %+v", rev.Timers)
	}
	st, _, err := c.Projects().Status(ctx, "shop", nil)
	if err != nil || st.Active == nil || st.Active.ID != out.Revision || len(st.Timers) != 1 {
		t.Fatalf("status: %+v, %v", st, err)
	}

	again, err := deploy.Push(ctx, c, dir, proj)
	if err != nil || again.New || again.Revision != out.Revision {
		t.Fatalf("second push: %+v, %v", again, err)
	}
}

// TestPushTooBig: butter deploy of a project over the control plane's
// limits fails with the server's 413, which says the limit and the
// setting that raises it: a bundle over the blob limit, a revision over
// the request limit. Nothing is recorded.
func TestPushTooBig(t *testing.T) {
	dir := t.TempDir()
	big := make([]byte, 3<<20)
	if _, err := rand.Read(big); err != nil { // random: the bundle does not compress below the limit
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"shop.fn.hcl":             shop,
		"functions/take/index.js": "exports.handle = async (input) => input;\n",
		"functions/take/big.bin":  string(big),
	} {
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
		t.Fatal("the test project does not load")
	}
	_, c := schedtest.SingleConfig(t, scheduler.Config{MaxBlobBytes: 1 << 20, MaxRequestBytes: 2 << 10})
	ctx := context.Background()

	_, err := deploy.Push(ctx, c, dir, proj)
	if api.StatusCode(err) != 413 || !strings.Contains(err.Error(), "upload functions/take") ||
		!strings.Contains(err.Error(), "1 MiB") || !strings.Contains(err.Error(), "-max-blob-bytes") {
		t.Errorf("a bundle over the blob limit: %v; want a 413 naming the upload, the 1 MiB limit and -max-blob-bytes", err)
	}
	if err := os.Remove(filepath.Join(dir, "functions/take/big.bin")); err != nil {
		t.Fatal(err)
	}
	_, err = deploy.Push(ctx, c, dir, proj)
	if api.StatusCode(err) != 413 || !strings.Contains(err.Error(), "record the revision") ||
		!strings.Contains(err.Error(), "2 KiB") || !strings.Contains(err.Error(), "-max-request-bytes") {
		t.Errorf("a revision over the request limit: %v; want a 413 naming the 2 KiB limit and -max-request-bytes", err)
	}
	list, _, err := c.Projects().List(ctx, nil)
	if err != nil || len(list.Projects) != 0 {
		t.Errorf("projects after the refused pushes: %+v, %v; want none", list, err)
	}
}

// TestPushRouteConflictNamesTheFile: a push whose route another
// project's active revision serves is refused by the real control plane,
// and the error names the route, the other project, how to fix it, and
// where the route is written in the pushed project.
func TestPushRouteConflictNamesTheFile(t *testing.T) {
	_, c := schedtest.Single(t, nil)
	ctx := context.Background()
	load := func(name, text string) (string, *spec.Project) {
		t.Helper()
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		proj, rep := spec.Load(dir)
		if proj == nil || rep.HasErrors() {
			t.Fatalf("%s does not load: %v", name, rep.Diags)
		}
		return dir, proj
	}
	dir, proj := load("shop.fn.hcl", "project \"shop\" {}\nfunction \"take\" {\n  runtime = \"exec\"\n  command = [\"cat\"]\n  trigger \"http\" {\n    route = \"POST /orders\"\n  }\n}\n")
	if _, err := deploy.Push(ctx, c, dir, proj); err != nil {
		t.Fatal(err)
	}
	dir, proj = load("billing.fn.hcl", "project \"billing\" {}\nfunction \"bill\" {\n  runtime = \"exec\"\n  command = [\"cat\"]\n  trigger \"http\" {\n    route = \"GET /bills\"\n  }\n  trigger \"http\" {\n    route = \"POST /orders\"\n  }\n}\n")
	_, err := deploy.Push(ctx, c, dir, proj)
	if err == nil {
		t.Fatal("a route of another project's active revision was accepted")
	}
	for _, want := range []string{`route "POST /orders" conflicts with route "POST /orders" of project "shop"`, "Change the method or the path", "billing.fn.hcl:9:13"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error lacks %q: %v", want, err)
		}
	}
}

// TestPushRecordsVariables: a project loaded with -var values records
// them among its specs (spec.ValuesFile), so that loading the revision
// back (as the gateway does for its routes) gives the same routes; other
// values make another revision, and the plan shows the values' diff.
func TestPushRecordsVariables(t *testing.T) {
	dir := t.TempDir()
	const text = `project "vars" {}

variable "path" {
  default = "/echo"
}

function "echo" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route = "POST ${var.path}"
  }
}
`
	if err := os.WriteFile(filepath.Join(dir, "vars.fn.hcl"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	load := func(path string) *spec.Project {
		t.Helper()
		proj, rep := spec.Load(dir, spec.WithVars(spec.VarValue{Name: "path", Value: path, From: "-var"}))
		if proj == nil {
			var b strings.Builder
			_ = rep.WriteText(&b)
			t.Fatalf("load: %s", b.String())
		}
		return proj
	}
	_, c := schedtest.Single(t, nil)
	ctx := context.Background()
	first, err := deploy.Push(ctx, c, dir, load("/say"))
	if err != nil {
		t.Fatal(err)
	}
	rev, _, err := c.Revisions().Get(ctx, "vars", first.Revision, nil)
	if err != nil {
		t.Fatal(err)
	}
	if vals := rev.Specs[spec.ValuesFile]; !strings.Contains(vals, `path = "/say"`) {
		t.Fatalf("the revision's %s: %q, want the -var value", spec.ValuesFile, vals)
	}
	fsys := fstest.MapFS{}
	for name, text := range rev.Specs {
		fsys[name] = &fstest.MapFile{Data: []byte(text)}
	}
	back, rep := spec.LoadFS(fsys, "vars@"+first.Revision)
	if back == nil || rep.HasErrors() || back.Functions[0].Triggers[0].Route() != "POST /say" {
		t.Fatalf("the revision loaded back: %+v, %v; want its route POST /say", back, rep.Diags)
	}
	if strings.Join(rev.Routes, ",") != "POST /say -> echo" {
		t.Fatalf("routes %q", rev.Routes)
	}

	plan, err := deploy.MakePlan(ctx, c, dir, load("/speak"))
	if err != nil {
		t.Fatal(err)
	}
	if plan.Revision == first.Revision || !strings.Contains(plan.SpecDiff, `+path = "/speak"`) {
		t.Fatalf("plan with another value: revision %s (first %s), spec diff:\n%s", plan.Revision, first.Revision, plan.SpecDiff)
	}
	second, err := deploy.Push(ctx, c, dir, load("/speak"))
	if err != nil || !second.New || second.Revision == first.Revision {
		t.Fatalf("push with another value: %+v, %v; want a new revision", second, err)
	}
}
