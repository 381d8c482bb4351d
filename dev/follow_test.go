package dev_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/dev"
	"github.com/butterfn/butter/internal/testport"
)

// TestRollbackServesOlderRevision: a rollback through the control plane
// (butter rollback, the web UI) makes butter dev serve the older
// revision, rebuilt from its spec files and blobs (a source directory's
// bundle, a single-file source, a schema), not the files on disk; the
// next change on disk is deployed over it.
func TestRollbackServesOlderRevision(t *testing.T) {
	dir := project(t, `project "rb" {}

function "ver" {
  runtime      = "exec"
  source       = "fn"
  command      = ["sh", "run.sh"]
  input_schema = "schemas/in.json"
  trigger "http" {
    route = "POST /ver"
  }
}

function "one" {
  runtime = "python"
  source  = "py/one.py"
  trigger "http" {
    route = "POST /one"
  }
}
`)
	write := func(rel, body string) {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		// Write then rename, as editors do.
		if err := os.WriteFile(p+".tmp", []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(p+".tmp", p); err != nil {
			t.Fatal(err)
		}
	}
	write("fn/run.sh", "cat >/dev/null; printf v1\n")
	write("schemas/in.json", `{"type": "object"}`)
	write("py/one.py", "def handle(event, ctx):\n    return b'one-v1'\n")

	listen, server, data := testport.Addr(t), testport.Addr(t), t.TempDir()
	r := runDev(t, dev.Config{Dir: dir, ServerAddr: server, Listen: listen, DataDir: data})
	call := func(path string) string {
		resp, err := http.Post("http://"+listen+path, "application/json", strings.NewReader(`{}`))
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := call("/ver") + " " + call("/one"); got != "v1 one-v1" {
		t.Fatalf("first revision answers %q", got)
	}
	client := devClient(t, server, data)
	ctx := context.Background()
	st, _, err := client.Projects().Status(ctx, "rb", nil)
	if err != nil {
		t.Fatal(err)
	}
	first := st.Active.ID

	write("fn/run.sh", "cat >/dev/null; printf v2\n")
	write("py/one.py", "def handle(event, ctx):\n    return b'one-v2'\n")
	var got string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the last answers of /ver and /one: %q", got)
		}
	})
	waitFor(t, r.ui, time.Minute, "the change served (v2 one-v2)", func() bool {
		got = call("/ver") + " " + call("/one")
		return got == "v2 one-v2"
	})

	rb, err := client.Revisions().Rollback(ctx, "rb")
	if err != nil {
		t.Fatal(err)
	}
	if rb.Revision != first {
		t.Fatalf("rolled back to %s, want the first revision %s", rb.Revision, first)
	}
	waitFor(t, r.ui, time.Minute, "the first revision served again", func() bool { return call("/ver")+" "+call("/one") == "v1 one-v1" })
	if !strings.Contains(r.ui.text(), "==> revision "+first+" was made active (rolled back from ") {
		t.Errorf("butter dev did not say it serves the rolled-back revision:\n%s", r.ui.text())
	}
	// The schema came back too: a body that is not an object is refused.
	resp, err := http.Post("http://"+listen+"/ver", "application/json", strings.NewReader(`[1]`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("an input failing the rebuilt schema: %s, want 400", resp.Status)
	}
	if st, _, err = client.Projects().Status(ctx, "rb", nil); err != nil || st.Active.ID != first || st.Active.Deployment.Status != "healthy" {
		t.Fatalf("status after the rollback: %+v %v; want %s healthy", st.Active, err, first)
	}

	// The files on disk still say v2; the next change is deployed.
	write("fn/run.sh", "cat >/dev/null; printf v3\n")
	waitFor(t, r.ui, time.Minute, "the next change served", func() bool { return call("/ver")+" "+call("/one") == "v3 one-v2" })
}
