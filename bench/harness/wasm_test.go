package harness_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/bench/harness"
	"github.com/butterfn/butter/plugins/runtime"
	"github.com/butterfn/butter/wasmmod"
)

// TestEchoWasm runs the hand-assembled echo module in the wasm runtime:
// valid as butter validate checks it, and an echo of an input larger
// than its 4 KiB buffer.
func TestEchoWasm(t *testing.T) {
	mod := harness.EchoWasm()
	if err := wasmmod.Check(context.Background(), "echo.wasm", mod); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "echo.wasm"), mod, 0o644); err != nil {
		t.Fatal(err)
	}
	inst, err := runtime.Wasm{}.Start(context.Background(), &runtime.Function{Name: "echo", Runtime: "wasm", Dir: dir, Handler: "echo.wasm", MemoryMiB: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Stop(time.Second)
	in := strings.Repeat("0123456789abcdef", 1000) // 16,000 bytes
	var out bytes.Buffer
	if err := inst.Invoke(context.Background(), &runtime.Invocation{Input: strings.NewReader(in), Output: &out}); err != nil || out.String() != in {
		t.Fatalf("echo of %d bytes: %d bytes, %v", len(in), out.Len(), err)
	}
	t.Logf("the module is %d bytes", len(mod))
}
