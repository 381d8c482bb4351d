package deploy_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/butterfn/butter/deploy"
	"github.com/butterfn/butter/scheduler/schedtest"
)

// TestSummary: against a real single-node control plane, the summary of
// a project compiled here equals the summary of the revision Push
// recorded, read back; an edit of one function's code changes that
// function's fingerprint and the revision, and no other fingerprint.
func TestSummary(t *testing.T) {
	dir := t.TempDir()
	proj := writeProject(t, dir, map[string]string{
		"shop.fn.hcl":             shop,
		"functions/take/index.js": "exports.handle = async (input) => input;\n",
	})
	_, c := schedtest.Single(t, nil)
	ctx := context.Background()
	local, err := deploy.Local(ctx, c, dir, proj)
	if err != nil {
		t.Fatal(err)
	}
	out, err := deploy.Push(ctx, c, dir, proj)
	if err != nil {
		t.Fatal(err)
	}
	rev, _, err := c.Revisions().Get(ctx, "shop", out.Revision, nil)
	if err != nil {
		t.Fatal(err)
	}
	remote, err := deploy.Remote(rev)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(local, remote) {
		t.Fatalf("summaries differ:\n local %+v\nremote %+v", local, remote)
	}
	if local.Revision != out.Revision || len(local.Functions) != 2 || len(local.Routes) != 1 {
		t.Fatalf("summary %+v of revision %s: want its id, 2 functions, 1 route", local, out.Revision)
	}

	proj = writeProject(t, dir, map[string]string{"functions/take/index.js": "exports.handle = async (input) => ({ taken: input });\n"})
	edited, err := deploy.Local(ctx, c, dir, proj)
	if err != nil {
		t.Fatal(err)
	}
	if edited.Revision == local.Revision {
		t.Errorf("the revision %s did not change with take's code", edited.Revision)
	}
	for name, fp := range local.Functions {
		if changed := edited.Functions[name] != fp; changed != (name == "take") {
			t.Errorf("function %s: fingerprint %s -> %s; only take's code changed", name, fp, edited.Functions[name])
		}
	}
	if !strings.HasPrefix(edited.Functions["take"], "sha256:") {
		t.Errorf("fingerprint %q", edited.Functions["take"])
	}
}
