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
	spec := `project "wasmy" {}

function "up" {
  runtime = "wasm"
  source  = "modules/up.wasm"
  memory  = 64
  timeout = "5s"
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
	r = butterIn(t, root, "panic", "invoke", "-local", dir, "up")
	if r.Code == 0 || !strings.Contains(r.Stderr, "panic: asked to panic") {
		t.Errorf("invoke -local of a panicking call: exit %d, stderr:\n%s", r.Code, r.Stderr)
	}

	if err := os.WriteFile(filepath.Join(dir, "modules", "up.wasm"), []byte("#!/bin/sh\necho not wasm\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = butterIn(t, root, "", "validate", dir)
	if r.Code == 0 || !strings.Contains(r.Stderr, "main.fn.hcl:5:13") || !strings.Contains(r.Stderr, "modules/up.wasm is not a WebAssembly binary module") {
		t.Errorf("validate of a module that is not one: exit %d\n%s", r.Code, r.Stderr)
	}
}
