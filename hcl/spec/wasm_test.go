package spec_test

import (
	"testing"
	"testing/fstest"

	"github.com/butterfn/butter/hcl/spec"
)

// command is the smallest WASI command: a module that exports a _start
// that does nothing.
var command = []byte("\x00asm\x01\x00\x00\x00\x01\x04\x01\x60\x00\x00\x03\x02\x01\x00\x07\x0a\x01\x06_start\x00\x00\x0a\x04\x01\x02\x00\x0b")

// TestWasmFunction decodes a wasm function whose module is valid: its
// handler is the module's file name, in the bundle its source makes.
// The refusals (not a binary, a foreign import, no _start, a handler) are
// in testdata/invalid/wasm-*.
func TestWasmFunction(t *testing.T) {
	p, rep := spec.LoadFS(fstest.MapFS{
		"main.fn.hcl": {Data: []byte(`
function "resize" {
  runtime = "wasm"
  source  = "modules/resize.wasm"
  trigger "http" {
    route = "POST /resize"
  }
}
`)},
		"modules/resize.wasm": {Data: command},
	}, "proj")
	if rep.HasErrors() || p == nil {
		t.Fatalf("a valid wasm function refused: %v", rep.Diags)
	}
	f := p.Function("resize")
	if f.Runtime != "wasm" || f.Source != "modules/resize.wasm" || f.Handler != "resize.wasm" {
		t.Fatalf("runtime %q, source %q, handler %q", f.Runtime, f.Source, f.Handler)
	}
}
