package deps_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/butterfn/butter/bundle"
	"github.com/butterfn/butter/deps"
)

// nodeFunction writes a Node function depending on pkgs (name@version)
// and pins them with npm's own lockfile (`npm install
// --package-lock-only`, from the npm registry).
func nodeFunction(t *testing.T, pkgs ...string) string {
	t.Helper()
	if _, err := exec.LookPath("npm"); err != nil {
		t.Fatalf("npm is needed (it comes with Node): %v", err)
	}
	dir := filepath.Join(t.TempDir(), "fn")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "package.json"), `{"name": "fn", "private": true, "main": "index.js"}`)
	write(t, filepath.Join(dir, "index.js"), "const ms = require('ms');\nexports.handle = async () => String(ms('2 days'));\n")
	args := append([]string{"install", "--package-lock-only", "--no-audit", "--no-fund", "--save-exact"}, pkgs...)
	cmd := exec.Command("npm", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install --package-lock-only: %v\n%s", err, out)
	}
	return dir
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestNodeDependencies: a Node function's dependencies are installed by
// the real npm from its lockfile into the cache, once per lockfile, and
// its bundle carries them as node_modules (its own node_modules left
// out), with a digest that changes with them.
func TestNodeDependencies(t *testing.T) {
	src := nodeFunction(t, "ms@2.1.3")
	installs := 0
	in := &deps.Installer{Dir: t.TempDir(), Progress: func(string) { installs++ }}
	ctx := context.Background()
	extras, err := in.Extras(ctx, "node", src, "functions/fn")
	if err != nil {
		t.Fatal(err)
	}
	if len(extras) != 1 || extras[0].Name != "node_modules" {
		t.Fatalf("extras %+v, want node_modules", extras)
	}
	if _, err := os.Stat(filepath.Join(extras[0].Dir, "ms", "index.js")); err != nil {
		t.Fatalf("ms is not installed: %v", err)
	}
	again, err := in.Extras(ctx, "node", src, "functions/fn")
	if err != nil || len(again) != 1 || again[0].Dir != extras[0].Dir || installs != 1 {
		t.Fatalf("second call: %+v, %v, %d installs; want the cached tree and 1 install", again, err, installs)
	}

	// A stray node_modules of the developer's is not shipped: the
	// installed one is.
	if err := os.MkdirAll(filepath.Join(src, "node_modules", "stray"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(src, "node_modules", "stray", "index.js"), "x")
	var buf bytes.Buffer
	withDeps, err := bundle.WriteWith(os.DirFS(filepath.Dir(src)), "fn", extras, &buf)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names[h.Name] = true
	}
	if !names["index.js"] || !names["node_modules/ms/index.js"] || names["node_modules/stray/index.js"] {
		t.Errorf("bundle entries %v: want index.js and node_modules/ms/index.js, not the stray module", names)
	}
	without, err := bundle.Compute(os.DirFS(filepath.Dir(src)), "fn")
	if err != nil || without == withDeps {
		t.Errorf("digest without dependencies %s (%v), with %s: want them different", without, err, withDeps)
	}

	// Other runtimes and functions without dependencies carry nothing.
	if x, err := in.Extras(ctx, "python", src, "functions/fn"); err != nil || x != nil {
		t.Errorf("python: %+v, %v", x, err)
	}
	bare := t.TempDir()
	write(t, filepath.Join(bare, "package.json"), `{"name": "bare"}`)
	if x, err := in.Extras(ctx, "node", bare, "functions/bare"); err != nil || x != nil {
		t.Errorf("no dependencies: %+v, %v", x, err)
	}
}

// TestNodeDependenciesRefused: dependencies without a lockfile, and a
// dependency with native code, are refused with errors that say what to
// do; nothing is cached.
func TestNodeDependenciesRefused(t *testing.T) {
	in := &deps.Installer{Dir: t.TempDir()}
	ctx := context.Background()
	nolock := t.TempDir()
	write(t, filepath.Join(nolock, "package.json"), `{"name": "x", "dependencies": {"ms": "2.1.3"}}`)
	_, err := in.Extras(ctx, "node", nolock, "functions/x")
	if err == nil || !strings.Contains(err.Error(), "functions/x/package.json declares dependencies") || !strings.Contains(err.Error(), "npm install") {
		t.Errorf("no lockfile: %v", err)
	}
	native := nodeFunction(t, "bufferutil@4.0.8")
	_, err = in.Extras(ctx, "node", native, "functions/native")
	if err == nil || !strings.Contains(err.Error(), `dependency "bufferutil" has native code`) {
		t.Errorf("native dependency: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(in.Dir, "npm")); len(entries) != 0 {
		t.Errorf("the cache kept %d entries after refusals", len(entries))
	}
}
