// Package e2etest is what the acceptance tests under e2e/ share: the
// binaries they drive (butter, butter-sandbox and the Nomad task-driver
// plugin, built from the repository's sources), a way to run butter as a
// user does, a `butter server` process, and condition waits.
//
// Only tests import it. Each e2e package's TestMain calls Main, which
// builds the binaries at most once per `go test` run whatever the number
// of packages (see e2e/README.md), then runs the package's tests.
// Neighbours: internal/nomadtest and internal/vaulttest start the real
// Nomad and Vault the tests deploy to; internal/testport hands out ports.
package e2etest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The binaries Main built, and the repository they were built from.
var (
	root      string
	binDir    string
	pluginDir string
	// inUse holds the shared lock on binDir for the life of the process
	// (and keeps the file from being closed by its finalizer).
	inUse *os.File
)

// Main builds the binaries (or finds them already built from the same
// sources), runs the package's tests and exits with their status. Call it
// from TestMain.
func Main(m *testing.M) {
	var err error
	root, err = findRoot()
	if err == nil {
		binDir, inUse, err = build(root)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2etest: %v\n", err)
		os.Exit(1)
	}
	pluginDir = filepath.Join(binDir, "plugins")
	code := m.Run()
	runtime.KeepAlive(inUse) // the lock is held until the exit releases it
	os.Exit(code)
}

// Root returns the repository root, where examples/, docs/ and the
// Makefile are.
func Root() string { mustMain(); return root }

// Bin returns the butter binary under test. butter-sandbox is beside it,
// as `make build` installs it: pools with secrets start their instances
// through it.
func Bin() string { mustMain(); return filepath.Join(binDir, "butter") }

// Provider returns the Terraform provider binary under test
// (terraform-provider-butter), beside Bin.
func Provider() string { mustMain(); return filepath.Join(binDir, "terraform-provider-butter") }

// PluginDir returns a directory that holds only the task-driver plugin
// (nomad-driver-butter), for a Nomad agent's plugin_dir.
func PluginDir() string { mustMain(); return pluginDir }

func mustMain() {
	if binDir == "" {
		panic("e2etest: the package's TestMain must call e2etest.Main")
	}
}

// findRoot returns the nearest directory above the working directory
// that holds tools/go.mod, as nomadtest.RepoRoot does.
func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "tools", "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repository root not found above the working directory")
		}
		dir = parent
	}
}

// targets are the binaries built, by output path under the build
// directory and package.
var targets = []struct{ out, pkg string }{
	{"butter", "./cmd/butter"},
	{"butter-sandbox", "./cmd/butter-sandbox"},
	{"plugins/nomad-driver-butter", "./cmd/nomad-driver-butter"},
	{"terraform-provider-butter", "./cmd/terraform-provider-butter"},
}

// build returns a directory holding the binaries built from the sources
// at root, building them unless an earlier package of this run (or an
// earlier run on the same sources) did, and an open file whose shared
// lock keeps the directory while tests use it. The directory is
// <os.TempDir()>/butter-e2e/<hash of root's path>/<hash of the sources>;
// concurrent packages wait on a second lock for one build. Directories of
// other sources for the same checkout are removed when no run holds them.
func build(root string) (dir string, inUse *os.File, err error) {
	key, err := sourceKey(root)
	if err != nil {
		return "", nil, fmt.Errorf("hash the sources: %w", err)
	}
	rootSum := sha256.Sum256([]byte(root))
	checkout := filepath.Join(os.TempDir(), "butter-e2e", hex.EncodeToString(rootSum[:6]))
	dir = filepath.Join(checkout, key)
	for attempt := 0; ; attempt++ {
		inUse, err = lockFile(dir, "in-use", syscall.LOCK_SH)
		if err == nil {
			break
		}
		if attempt == 3 { // another run removed the directory each time
			return "", nil, err
		}
	}
	building, err := lockFile(dir, "build", syscall.LOCK_EX)
	if err != nil {
		inUse.Close()
		return "", nil, err
	}
	defer building.Close() // closing releases the lock
	done := filepath.Join(dir, "built")
	if _, err := os.Stat(done); err != nil {
		start := time.Now()
		for _, t := range targets {
			cmd := exec.Command("go", "build", "-o", filepath.Join(dir, t.out), t.pkg)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				inUse.Close()
				return "", nil, fmt.Errorf("go build %s: %v\n%s", t.pkg, err, out)
			}
		}
		if err := os.WriteFile(done, []byte(time.Since(start).String()+"\n"), 0o644); err != nil {
			inUse.Close()
			return "", nil, err
		}
	}
	removeStale(checkout, key)
	return dir, inUse, nil
}

// lockFile creates dir and the file name in it, and locks the file with
// how (syscall.LOCK_SH or LOCK_EX), waiting for it. It fails if another
// run removed the directory meanwhile.
func lockFile(dir, name string, how int) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// The file locked must still be the one at path.
	held, err1 := f.Stat()
	now, err2 := os.Stat(path)
	if err1 != nil || err2 != nil || !os.SameFile(held, now) {
		f.Close()
		return nil, fmt.Errorf("lock %s: removed while it was being locked", path)
	}
	return f, nil
}

// removeStale removes the build directories of other sources under
// checkout that no run holds: finished ones, and failed or abandoned ones
// an hour old.
func removeStale(checkout, keep string) {
	entries, err := os.ReadDir(checkout)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.Name() == keep || !e.IsDir() {
			continue
		}
		dir := filepath.Join(checkout, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "built")); err != nil {
			if info, err := e.Info(); err != nil || time.Since(info.ModTime()) < time.Hour {
				continue
			}
		}
		f, err := os.Open(filepath.Join(dir, "in-use"))
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			_ = os.RemoveAll(dir)
		}
		f.Close()
	}
}

// sourceKey hashes what the binaries are built from, with the Go
// toolchain and its build settings: go.mod, go.sum and every file a
// package can read, that is every file in or below a directory holding
// Go code (go:embed reaches no higher), but for *_test.go files, dot
// directories, bin/, e2e/ and node_modules. A file hashed that does not
// matter only costs a rebuild when it changes; one that matters is never
// left out.
func sourceKey(root string) (string, error) {
	h := sha256.New()
	env, err := exec.Command("go", "env", "GOVERSION", "GOOS", "GOARCH", "GOAMD64", "GOEXPERIMENT", "GOFLAGS", "CGO_ENABLED").Output()
	if err != nil {
		return "", fmt.Errorf("go env: %w", err)
	}
	h.Write(env)
	var files []string
	code := map[string]bool{} // directories holding Go code
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "__pycache__" || rel == "bin" || rel == "e2e") {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		if strings.HasSuffix(name, ".go") {
			code[filepath.Dir(rel)] = true
		}
		files = append(files, rel)
		return nil
	})
	if err != nil {
		return "", err
	}
	for _, rel := range files {
		if !readable(rel, code) {
			continue
		}
		f, err := os.Open(filepath.Join(root, rel))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00", rel)
		size, err := io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "\x00%d\x00", size)
	}
	return hex.EncodeToString(h.Sum(nil)[:12]), nil
}

// readable reports whether a build may read the file rel: a module file,
// or a file in or below a directory holding Go code.
func readable(rel string, code map[string]bool) bool {
	switch filepath.Base(rel) {
	case "go.mod", "go.sum", "go.work", "go.work.sum":
		return true
	}
	for dir := filepath.Dir(rel); ; dir = filepath.Dir(dir) {
		if code[dir] {
			return true
		}
		if dir == "." {
			return false
		}
	}
}
