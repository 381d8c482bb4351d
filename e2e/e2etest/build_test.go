package e2etest

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSourceKey: the key of the cached binaries changes with what a build
// reads (Go code, a file a package could embed, go.mod) and not with what
// it cannot (docs, tests, bin/, e2e/).
func TestSourceKey(t *testing.T) {
	root := t.TempDir()
	write := func(rel, content string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/x\n")
	write("cmd/x/main.go", "package main\n")
	write("sdk/sdk.go", "package sdk\n")
	write("sdk/node/worker.js", "1")
	write("docs/x.md", "1")
	write("bin/x", "1")
	write("e2e/a/a_test.go", "package a\n")
	key := func() string {
		t.Helper()
		k, err := sourceKey(root)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	prev := key()
	for _, c := range []struct {
		rel     string
		changes bool
	}{
		{"cmd/x/main.go", true},
		{"sdk/node/worker.js", true}, // below a package: it could embed it
		{"go.mod", true},
		{"cmd/x/new.go", true},
		{"cmd/x/main_test.go", false},
		{"docs/x.md", false},
		{"bin/x", false},
		{"e2e/a/a_test.go", false},
		{".git/HEAD", false},
	} {
		write(c.rel, "package x // "+c.rel+"\n")
		k := key()
		if (k != prev) != c.changes {
			t.Errorf("after an edit of %s the key changed: %v, want %v", c.rel, k != prev, c.changes)
		}
		prev = k
	}
}
