package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/butterfn/butter/e2e/e2etest"
)

// TestInvokeLocalWasm runs a wasm function from its spec with `butter
// validate` and `butter invoke -local`: a real module built by the test
// with GOOS=wasip1 GOARCH=wasm go build, in a project subdirectory; then
// a file that is not a module is refused by validate with file:line:col.
func TestInvokeLocalWasm(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(e2etest.Root(), "plugins", "pool", "testdata", "wasmfn")
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "modules", "up.wasm"), ".")
	build.Dir = src
	build.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the module: %v\n%s", err, out)
	}
	spec := `project "cap" {}

stream "alerts" {}

function "up" {
  runtime = "wasm"
  source  = "modules/up.wasm"
  memory  = 64
  timeout = "5s"
  emits   = [stream.alerts]
}
`
	if err := os.WriteFile(filepath.Join(dir, "main.fn.hcl"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	root := e2etest.Root()
	if r := butterIn(t, root, "", "validate", dir); r.Code != 0 {
		t.Fatalf("validate: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	r := butterIn(t, root, "hello from the cli", "invoke", "-local", dir, "up")
	if r.Code != 0 || r.Stdout != "HELLO FROM THE CLI" {
		t.Fatalf("invoke -local: exit %d, stdout %q\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
	}
	// The context API's host functions: a log line and two emits,
	// captured by invoke -local as on the platform.
	r = butterIn(t, root, "emit", "invoke", "-local", dir, "up")
	if r.Code != 0 || r.Stdout != "emitted" {
		t.Fatalf("invoke -local emit: exit %d, stdout %q\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
	}
	if !strings.Contains(r.Stderr, "[up] warn: emitting two alerts") {
		t.Errorf("stderr lacks the module's log line:\n%s", r.Stderr)
	}
	checkCaptured(t, capturedLines(t, r.Stderr), []want{
		{"emit", "up", "alerts", "cap.alerts", str("k1"), "butter.emit", map[string]any{"n": 1.0}},
		{"emit", "up", "alerts", "cap.alerts", str("k2"), "butter.emit", map[string]any{"n": 2.0}},
	})
	r = butterIn(t, root, "emit-undeclared", "invoke", "-local", dir, "up")
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, "refused: ") || !strings.Contains(r.Stdout, "nowhere") {
		t.Errorf("an emit to an undeclared stream: exit %d, stdout %q", r.Code, r.Stdout)
	}
	t.Logf("undeclared: %s", r.Stdout)

	r = butterIn(t, root, "panic", "invoke", "-local", dir, "up")
	if r.Code == 0 || !strings.Contains(r.Stderr, "panic: asked to panic") {
		t.Errorf("invoke -local of a panicking call: exit %d, stderr:\n%s", r.Code, r.Stderr)
	}

	if err := os.WriteFile(filepath.Join(dir, "modules", "up.wasm"), []byte("#!/bin/sh\necho not wasm\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = butterIn(t, root, "", "validate", dir)
	if r.Code == 0 || !strings.Contains(r.Stderr, "main.fn.hcl:7:13") || !strings.Contains(r.Stderr, "modules/up.wasm is not a WebAssembly binary module") {
		t.Errorf("validate of a module that is not one: exit %d\n%s", r.Code, r.Stderr)
	}
}
