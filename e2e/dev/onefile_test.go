package dev

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/butterfn/butter/e2e/e2etest"
	"github.com/butterfn/butter/internal/testport"
)

// TestSingleFileAtRoot: a Python function whose source is one file at the
// project's root runs under butter dev, whose instances are confined
// with the project's .butter (dev's data and secrets) hidden: the
// sandbox then lets them open the root's files but not list the root,
// which is how Python's import system finds modules, so the worker loads
// such a module from its file.
func TestSingleFileAtRoot(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"one.fn.hcl": `project "one" {}

function "one" {
  runtime = "python"
  source  = "one.py"
  handler = "one.handle"
  trigger "http" {
    route = "POST /one"
  }
}
`,
		"one.py": "def handle(data, ctx):\n    return b\"one: \" + data\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gw := testport.Addr(t)
	startDev(t, exec.Command(e2etest.Bin(), "dev", "-listen", gw, "-server-addr", testport.Addr(t), dir))
	resp, err := http.Post("http://"+gw+"/one", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "one: x" {
		t.Fatalf("POST /one: %d %q, want 200 \"one: x\"", resp.StatusCode, b)
	}
}
