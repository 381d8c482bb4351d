package runtime_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/plugins/runtime"
)

// command is the smallest WASI command: a module whose _start does
// nothing.
var command = []byte("\x00asm\x01\x00\x00\x00\x01\x04\x01\x60\x00\x00\x03\x02\x01\x00\x07\x0a\x01\x06_start\x00\x00\x0a\x04\x01\x02\x00\x0b")

// TestWasmCompilationCache starts a wasm instance and checks that its
// module, compiled to machine code, is in the cache on disk under the
// build directory, where the next start (of this pool or a later one)
// finds it; a call of the module answers with its (empty) output.
func TestWasmCompilationCache(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "noop.wasm"), command, 0o644); err != nil {
		t.Fatal(err)
	}
	build := t.TempDir()
	rt := runtime.Wasm{SDKs: &runtime.SDKs{BuildDir: build}}
	fn := &runtime.Function{Name: "noop", Runtime: "wasm", Dir: dir, Handler: "noop.wasm", MemoryMiB: 16}
	inst, err := rt.Start(context.Background(), fn)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := inst.Invoke(context.Background(), &runtime.Invocation{Input: strings.NewReader("x"), Output: &out, Deadline: time.Now().Add(5 * time.Second)}); err != nil || out.Len() != 0 {
		t.Fatalf("invoke: %q, %v", out.String(), err)
	}
	if err := inst.Stop(time.Second); err != nil {
		t.Fatal(err)
	}
	var files []string
	_ = filepath.WalkDir(filepath.Join(build, "wasm"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) == 0 {
		t.Fatalf("nothing in the compilation cache %s after a start", filepath.Join(build, "wasm"))
	}
	t.Logf("cache: %v", files)
	// No module: the error names none of the server's paths.
	_, err = rt.Start(context.Background(), &runtime.Function{Name: "none", Runtime: "wasm", Dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "no .wasm module in the function's bundle") {
		t.Fatalf("start without a module: %v", err)
	}
}
