package runtime

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"

	"github.com/butterfn/butter/bundle"
)

// SDKs locates the language SDKs that process runtimes start workers
// with, and caches Go function builds.
type SDKs struct {
	// Node is the path of the Node worker (sdk/node/worker.js).
	Node string
	// Python is the path of the Python worker's entry point
	// (sdk/python/butter_main.py, which imports butter_worker.py).
	Python string
	// GoSDK is a directory holding the Go SDK module's source.
	GoSDK string
	// JavaSDK is a directory holding the Java SDK's source
	// (dev/butter/*.java), compiled on first use (java.go).
	JavaSDK string
	// BuildDir caches Go function binaries by bundle digest.
	BuildDir string

	mu     sync.Mutex
	builds map[string]*goBuild
	java   map[string]*goBuild // Java builds, by bundle digest and "sdk" (java.go)
}

type goBuild struct {
	once sync.Once
	bin  string
	err  error
}

// goBinary builds the Go function in dir once per content digest, with a
// go.work that points the SDK's module path at s.GoSDK.
func (s *SDKs) goBinary(ctx context.Context, fn *Function) (string, error) {
	digest, err := bundle.Compute(os.DirFS(fn.Dir), ".")
	if err != nil {
		return "", fmt.Errorf("go function %s: %w", fn.Name, err)
	}
	s.mu.Lock()
	if s.builds == nil {
		s.builds = map[string]*goBuild{}
	}
	b := s.builds[digest.Hex()]
	if b == nil {
		b = &goBuild{}
		s.builds[digest.Hex()] = b
	}
	s.mu.Unlock()
	b.once.Do(func() {
		out := filepath.Join(s.BuildDir, digest.Hex())
		b.bin = filepath.Join(out, "function")
		if _, err := os.Stat(b.bin); err == nil {
			return
		}
		if err := os.MkdirAll(out, 0o755); err != nil {
			b.err = err
			return
		}
		abs, _ := filepath.Abs(fn.Dir)
		work := filepath.Join(out, "go.work")
		ws := fmt.Sprintf("go 1.26\n\nuse %q\n\nreplace github.com/butterfn/butter/sdk/go => %q\n", abs, s.GoSDK)
		if err := os.WriteFile(work, []byte(ws), 0o644); err != nil {
			b.err = err
			return
		}
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b.bin, ".")
		cmd.Dir = fn.Dir
		cmd.Env = append(os.Environ(), "GOWORK="+work)
		if os.Getenv("HOME") == "" && os.Getenv("XDG_CACHE_HOME") == "" && os.Getenv("GOCACHE") == "" {
			// A Nomad task may have no HOME: give go build caches of its own.
			cmd.Env = append(cmd.Env, "GOCACHE="+filepath.Join(s.BuildDir, "gocache"), "GOPATH="+filepath.Join(s.BuildDir, "gopath"))
		}
		if msg, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build of function %s failed: %v\n%s", fn.Name, err, msg)
		}
	})
	if b.err != nil {
		s.mu.Lock()
		delete(s.builds, digest.Hex()) // a later start may retry
		s.mu.Unlock()
	}
	return b.bin, b.err
}
