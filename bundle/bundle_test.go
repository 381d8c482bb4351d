package bundle_test

import (
	"archive/tar"
	"bytes"
	"io"
	"testing"
	"testing/fstest"
	"time"

	"github.com/butterfn/butter/bundle"
)

func entries(t *testing.T, b []byte) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: owner %d:%d, time %v; want 0:0 at the epoch", h.Name, h.Uid, h.Gid, h.ModTime)
		}
		out[h.Name] = h.Mode
	}
}

func TestDirectoryBundle(t *testing.T) {
	now := time.Now()
	fsys := fstest.MapFS{
		"fn/index.js":                  {Data: []byte("exports.handle = x => x"), ModTime: now},
		"fn/run.sh":                    {Data: []byte("#!/bin/sh\n"), Mode: 0o700},
		"fn/lib/util.js":               {Data: []byte("module.exports = {}")},
		"fn/node_modules/dep/index.js": {Data: []byte("dependency")},
		"fn/.git/HEAD":                 {Data: []byte("ref")},
		"other/file":                   {Data: []byte("not in the bundle")},
	}
	var buf bytes.Buffer
	d1, err := bundle.Write(fsys, "fn", &buf)
	if err != nil {
		t.Fatal(err)
	}
	got := entries(t, buf.Bytes())
	want := map[string]int64{"index.js": 0o644, "lib/util.js": 0o644, "run.sh": 0o755}
	if len(got) != len(want) {
		t.Fatalf("entries = %v, want %v", got, want)
	}
	for name, mode := range want {
		if got[name] != mode {
			t.Errorf("%s: mode %o, want %o (present: %v)", name, got[name], mode, got)
		}
	}

	// Times and permissions other than the executable bit do not reach
	// the digest; contents do.
	fsys["fn/index.js"] = &fstest.MapFile{Data: []byte("exports.handle = x => x"), ModTime: now.Add(time.Hour), Mode: 0o600}
	d2, err := bundle.Compute(fsys, "fn")
	if err != nil || d2 != d1 {
		t.Errorf("digest changed with mtime/mode only: %s vs %s (%v)", d1, d2, err)
	}
	fsys["fn/index.js"] = &fstest.MapFile{Data: []byte("exports.handle = x => x + 1")}
	if d3, _ := bundle.Compute(fsys, "fn"); d3 == d1 {
		t.Error("digest unchanged after a content change")
	}
	if len(d1.Hex()) != 64 || string(d1)[:7] != "sha256:" {
		t.Errorf("digest %q is not sha256:<64 hex>", d1)
	}
}

func TestFileBundle(t *testing.T) {
	fsys := fstest.MapFS{"functions/detect.py": {Data: []byte("def handle(e, c): return e\n")}}
	var buf bytes.Buffer
	if _, err := bundle.Write(fsys, "functions/detect.py", &buf); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, buf.Bytes()); len(got) != 1 || got["detect.py"] == 0 {
		t.Errorf("entries = %v, want detect.py alone", got)
	}
	if _, err := bundle.Compute(fsys, "functions/missing.py"); err == nil {
		t.Error("bundling a missing source succeeded")
	}
}
