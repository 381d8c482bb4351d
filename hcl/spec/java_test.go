package spec_test

import (
	"io/fs"
	"testing"
	"testing/fstest"

	"github.com/butterfn/butter/hcl/spec"
)

// TestJavaSourceTreeWithoutSources: a gateway rebuilds a revision's tree
// from its spec files with each source an empty directory; a java
// function's spec loads from it (a CI run of TestPlatformModule found the
// gateway refusing such a revision's routes when the empty directory was
// taken for one without Java code).
func TestJavaSourceTreeWithoutSources(t *testing.T) {
	p, rep := spec.LoadFS(fstest.MapFS{
		"main.fn.hcl": {Data: []byte(`
function "greet" {
  runtime = "java"
  source  = "greet"
  handler = "example.Greet"
  trigger "http" {
    route = "POST /greet"
  }
}

function "single" {
  runtime = "java"
  source  = "Single.java"
  trigger "http" {
    route = "POST /single"
  }
}
`)},
		"greet":       {Mode: fs.ModeDir | 0o755},
		"Single.java": {Mode: fs.ModeDir | 0o755},
	}, "proj")
	if rep.HasErrors() || p == nil {
		t.Fatalf("a java function's spec with its sources' directories empty: %v", rep.Diags)
	}
	if h := p.Function("single").Handler; h != "Single" {
		t.Errorf("the single file's handler is %q, want Single", h)
	}
}
