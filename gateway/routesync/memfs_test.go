package routesync

import (
	"testing"
	"testing/fstest"
)

// TestMemFS checks the in-memory tree against io/fs's contract, with
// implied parents, an empty directory and files at several depths.
func TestMemFS(t *testing.T) {
	fsys := memFS{
		"p.fn.hcl":            {data: []byte("project \"p\" {}\n")},
		"api/openapi.json":    {data: []byte("{}")},
		"functions/orders":    {dir: true},
		"schemas/deep/a.json": {data: []byte(`{"type":"object"}`)},
	}
	if err := fstest.TestFS(fsys, "p.fn.hcl", "api/openapi.json", "functions/orders", "schemas/deep/a.json"); err != nil {
		t.Fatal(err)
	}
	if _, err := fsys.Open("missing"); err == nil {
		t.Fatal("opened a path that is not there")
	}
	if fi, err := fsys.Stat("functions/orders"); err != nil || !fi.IsDir() {
		t.Fatalf("an empty directory: %v, %v", fi, err)
	}
}
