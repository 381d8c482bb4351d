package cli

import (
	"archive/zip"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
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

// TestPythonDependencies: a Python function whose requirements.txt names
// a package runs under `butter invoke -local` with it installed by the
// real pip into Butter's cache (PyPI is unreachable here: pip installs
// from a local directory holding a wheel the test builds, through its own
// PIP_NO_INDEX and PIP_FIND_LINKS), without touching its source;
// `butter job render` gives it a bundle digest that differs from its
// source alone; a requirement pip cannot find fails the render naming the
// file.
func TestPythonDependencies(t *testing.T) {
	root := e2etest.Root()
	wheels := t.TempDir()
	writeWheel(t, wheels, "butterfix", "butterfix/__init__.py", "def shout(s):\n    return s.upper() + '!'\n")
	t.Setenv("PIP_NO_INDEX", "1")
	t.Setenv("PIP_FIND_LINKS", wheels)
	t.Setenv("BUTTER_DEPS_CACHE", t.TempDir())
	dir := filepath.Join(t.TempDir(), "pydeps")
	fn := filepath.Join(dir, "functions", "shout")
	if err := os.MkdirAll(fn, 0o755); err != nil {
		t.Fatal(err)
	}
	for p, text := range map[string]string{
		filepath.Join(dir, "pydeps.fn.hcl"): "project \"pydeps\" {}\n\nfunction \"shout\" {\n  runtime = \"python\"\n  source  = \"functions/shout\"\n  handler = \"main.handle\"\n}\n",
		filepath.Join(fn, "main.py"):        "import butterfix\n\n\ndef handle(data, ctx):\n    return butterfix.shout(data.decode())\n",
	} {
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
	if err := os.WriteFile(filepath.Join(fn, "requirements.txt"), []byte("butterfix==1.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := butterIn(t, root, "hello", "invoke", "-local", dir, "shout")
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != "HELLO!" {
		t.Fatalf("invoke -local: exit %d, stdout %q, want HELLO!\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
	}
	if entries, _ := os.ReadDir(fn); len(entries) != 2 {
		t.Errorf("the function's source has %d entries, want its 2 files: requirements belong in Butter's cache", len(entries))
	}
	if withDeps := digestOf(butterIn(t, root, "", "job", "render", dir)); withDeps == bare {
		t.Errorf("the bundle's digest %s did not change with its requirements", withDeps)
	}
	if err := os.WriteFile(filepath.Join(fn, "requirements.txt"), []byte("nosuchpackage==1.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = butterIn(t, root, "", "job", "render", dir)
	if r.Code != 1 || !strings.Contains(r.Stderr, "functions/shout/requirements.txt: pip install failed") {
		t.Errorf("render with a requirement pip cannot find: %+v", r)
	}
}

// writeWheel writes a pure-Python wheel of name 1.0 holding one file.
func writeWheel(t *testing.T, dir, name, path, text string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, name+"-1.0-py3-none-any.whl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z := zip.NewWriter(f)
	info := name + "-1.0.dist-info/"
	files := map[string]string{
		path:              text,
		info + "METADATA": "Metadata-Version: 2.1\nName: " + name + "\nVersion: 1.0\n",
		info + "WHEEL":    "Wheel-Version: 1.0\nGenerator: butter-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
	}
	var record strings.Builder
	for p, body := range files {
		sum := sha256.Sum256([]byte(body))
		fmt.Fprintf(&record, "%s,sha256=%s,%d\n", p, base64.RawURLEncoding.EncodeToString(sum[:]), len(body))
	}
	record.WriteString(info + "RECORD,,\n")
	files[info+"RECORD"] = record.String()
	for p, body := range files {
		w, err := z.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
}
