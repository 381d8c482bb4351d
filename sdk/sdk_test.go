package sdk

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestInstallByVersion: the SDKs go to a subdirectory named by their
// content's digest, so two butter versions on one machine never write
// over each other's workers; installing the same version again gives the
// same paths and the embedded files.
func TestInstallByVersion(t *testing.T) {
	dir := t.TempDir()
	s, err := Install(dir)
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(dir, s.Python)
	if err != nil || !regexp.MustCompile(`^[0-9a-f]{16}/python/butter_main\.py$`).MatchString(filepath.ToSlash(rel)) {
		t.Fatalf("python worker at %s (%v), want <dir>/<16 hex>/python/butter_main.py", s.Python, err)
	}
	worker := filepath.Join(filepath.Dir(s.Python), "butter_worker.py")
	want, _ := files.ReadFile("python/butter_worker.py")
	if got, err := os.ReadFile(worker); err != nil || string(got) != string(want) {
		t.Fatalf("installed worker differs from the embedded one (%v)", err)
	}
	// Python's bytecode cache is checked against the source's
	// modification time: a second install leaves the files as they are.
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(worker, old, old); err != nil {
		t.Fatal(err)
	}
	again, err := Install(dir)
	if err != nil || again.Python != s.Python || again.Node != s.Node || again.GoSDK != s.GoSDK {
		t.Fatalf("second install: %+v (%v), want the same paths as %+v", again, err, s)
	}
	if fi, err := os.Stat(worker); err != nil || !fi.ModTime().Equal(old) {
		t.Fatalf("a second install rewrote the unchanged worker (%v)", err)
	}
}

// TestPythonModulesEmbedded: every module of the Python SDK beside this
// package (but its tests) is embedded, so installed: one the worker
// imports but the go:embed line forgot would fail every Python function's
// start, and only there.
func TestPythonModulesEmbedded(t *testing.T) {
	mods, err := filepath.Glob(filepath.Join("python", "*.py"))
	if err != nil || len(mods) == 0 {
		t.Fatalf("no Python module beside the package (%v)", err)
	}
	for _, m := range mods {
		if strings.HasPrefix(filepath.Base(m), "test_") {
			continue
		}
		if _, err := files.ReadFile(filepath.ToSlash(m)); err != nil {
			t.Errorf("%s is not embedded (%v): add it to sdk.go's go:embed line", m, err)
		}
	}
}
