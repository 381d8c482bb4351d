package pool_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/butterfn/butter/internal/testlog"
	"github.com/butterfn/butter/plugins/pool"
)

// buildWasm builds testdata/wasmfn with the Go toolchain for WASI
// preview 1 into a directory of its own, and returns that directory.
func buildWasm(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src, _ := filepath.Abs("testdata/wasmfn")
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "fn.wasm"), ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the wasm test function: %v\n%s", err, out)
	}
	return dir
}

// TestWasm runs a real WebAssembly module (Go compiled for wasip1) in a
// real pool: calls are answered from stdin to stdout, many at once by
// one instance; a panic, a non-zero exit, a loop past the deadline and
// an allocation over the function's memory (which the same module with
// more memory makes) each fail their call only
// (an Exception or a Timeout, with the module's stderr), and the next
// call is answered by the same instance; the module sees the request in
// its environment and options as arguments, and no file system.
func TestWasm(t *testing.T) {
	dir := buildWasm(t)
	f := fn("up", "wasm")
	f.Bundle, f.Handler = dir, "fn.wasm"
	// A minute: under -race on a loaded machine the module's Go
	// runtime takes seconds to fill 64 MiB.
	f.Memory, f.Timeout, f.Concurrency, f.MaxInstances = 64, "1m", 8, 1
	// big is the same module with room for 128 MiB; short the same one
	// with a deadline of a second.
	big, short := f, f
	big.Name, big.Memory = "big", 512
	short.Name, short.Timeout = "short", "1s"
	logs := &testlog.Buffer{}
	_, srv := start(t, []pool.FunctionConfig{f, big, short}, pool.WithLogger(hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug})))

	if a := invoke(t, srv, "up", strings.NewReader("hello, wasm"), nil); a.code != 200 || a.body != "HELLO, WASM" {
		t.Fatalf("echo: %d %q", a.code, a.body)
	}
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := fmt.Sprintf("call %d", i)
			if a := invoke(t, srv, "up", strings.NewReader(in), nil); a.code != 200 || a.body != strings.ToUpper(in) {
				t.Errorf("concurrent call %d: %d %q", i, a.code, a.body)
			}
		}()
	}
	wg.Wait()

	for _, c := range []struct{ function, in, errType, msg string }{
		{"up", "panic", "Exception", "exited with code 2: panic: asked to panic"},
		{"up", "exit3", "Exception", "exited with code 3: bad input: exit3"},
		{"short", "spin", "Timeout", "did not finish before its deadline"},
		{"up", "alloc", "Exception", "out of memory"},
	} {
		a := invoke(t, srv, c.function, strings.NewReader(c.in), nil)
		if a.code == 200 || a.errType != c.errType || !strings.Contains(a.body, c.msg) {
			t.Errorf("%s: %d %s %q, want a %s saying %q", c.in, a.code, a.errType, a.body, c.errType, c.msg)
		}
		t.Logf("%s: %d %s", c.in, a.code, a.body)
		if a := invoke(t, srv, c.function, strings.NewReader("after "+c.in), nil); a.code != 200 || a.body != strings.ToUpper("after "+c.in) {
			t.Errorf("the call after %s: %d %q", c.in, a.code, a.body)
		}
	}
	if a := invoke(t, srv, "big", strings.NewReader("alloc"), nil); a.code != 200 || a.body != "allocated 128 MiB" {
		t.Errorf("alloc with 512 MiB of memory: %d %q", a.code, a.body)
	}
	for _, name := range []string{"up", "short"} {
		if n := metric(t, srv, "butter_instance_restarts_total", name); n != 0 {
			t.Errorf("%s: %v instance restarts: a failed call must not take the instance down", name, n)
		}
	}
	if !strings.Contains(logs.String(), "about to panic") {
		t.Errorf("the module's stderr is not in the pool's log:\n%s", logs.String())
	}

	a := invoke(t, srv, "up", strings.NewReader("env"), map[string]string{"Butter-Option-Name": "x"})
	if a.code != 200 || !strings.HasPrefix(a.body, "function=up ") {
		t.Errorf("env: %d %q", a.code, a.body)
	}
	t.Logf("env: %q", a.body)
	if a := invoke(t, srv, "up", strings.NewReader("file"), nil); a.code != 200 || !strings.HasPrefix(a.body, "no file system") {
		t.Errorf("file: %d %q, want no file system", a.code, a.body)
	}
}
