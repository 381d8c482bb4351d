package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/butterfn/butter/e2e/e2etest"
)

// TestNodeDependencies: a Node function whose package.json depends on a
// real npm package (ms, pinned in a package-lock.json npm wrote) runs
// under `butter invoke -local` with it installed by npm ci into Butter's
// cache, without a node_modules in its source; `butter job render` gives
// it a bundle digest that differs from its source alone; and a package.json
// with dependencies but no lockfile fails `butter job render` saying
// what to do.
func TestNodeDependencies(t *testing.T) {
	root := e2etest.Root()
	dir := filepath.Join(t.TempDir(), "deps")
	fn := filepath.Join(dir, "functions", "days")
	if err := os.MkdirAll(fn, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		filepath.Join(dir, "deps.fn.hcl"): `project "deps" {}

function "days" {
  runtime = "node"
  source  = "functions/days"
  handler = "index.handle"
}
`,
		filepath.Join(fn, "package.json"): `{"name": "days", "private": true, "main": "index.js"}`,
		filepath.Join(fn, "index.js"):     "const ms = require('ms');\nexports.handle = async (input) => String(ms(input.toString().trim()));\n",
	}
	for p, text := range files {
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	digestOf := func(r e2etest.Result) string {
		t.Helper()
		m := regexp.MustCompile(`digest\s+= "(sha256:[0-9a-f]{64})"`).FindStringSubmatch(r.Stdout)
		if r.Code != 0 || m == nil {
			t.Fatalf("job render: %+v", r)
		}
		return m[1]
	}
	bare := digestOf(butterIn(t, root, "", "job", "render", dir))
	npm := exec.Command("npm", "install", "--package-lock-only", "--no-audit", "--no-fund", "--save-exact", "ms@2.1.3")
	npm.Dir = fn
	if out, err := npm.CombinedOutput(); err != nil {
		t.Fatalf("npm install --package-lock-only: %v\n%s", err, out)
	}
	r := butterIn(t, root, "2 days", "invoke", "-local", dir, "days")
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != "172800000" {
		t.Fatalf("invoke -local: exit %d, stdout %q, want 172800000\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
	}
	if _, err := os.Stat(filepath.Join(fn, "node_modules")); err == nil {
		t.Error("the function's source got a node_modules: dependencies belong in Butter's cache")
	}

	if withDeps := digestOf(butterIn(t, root, "", "job", "render", dir)); withDeps == bare {
		t.Errorf("the bundle's digest %s did not change with its dependencies", withDeps)
	}

	// Dependencies declared without a lockfile.
	if err := os.Remove(filepath.Join(fn, "package-lock.json")); err != nil {
		t.Fatal(err)
	}
	r = butterIn(t, root, "", "job", "render", dir)
	if r.Code != 1 || !strings.Contains(r.Stderr, "functions/days/package.json declares dependencies") || !strings.Contains(r.Stderr, "npm install") {
		t.Errorf("render with dependencies but no lockfile: %+v", r)
	}
}
