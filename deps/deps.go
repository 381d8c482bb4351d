// Package deps installs a function's dependencies at bundle time, with
// the language's own tools, so that the bundle Butter ships carries them
// and a pool never reaches a registry when it starts.
//
// Today that is Node: a function whose package.json declares
// dependencies has them installed by `npm ci` from its lockfile
// (package-lock.json or npm-shrinkwrap.json), production ones only, with
// install scripts off, into a cache keyed by the digest of the manifest
// and the lockfile (so a second bundle of the same lockfile runs nothing),
// and shipped as the bundle's node_modules (bundle.Extra). A dependency
// with native code (a binding.gyp or a compiled .node file) is refused:
// it would be built for the deploying machine, not the Nomad clients.
//
// And Python: a function whose directory has a requirements.txt (its
// pinned requirements, the lockfile) has them installed by `python3 -m
// pip install --target`, into a cache keyed by the digest of the file and
// the Python version, and shipped as the bundle's python_packages, which
// the Python worker puts on sys.path. A package with compiled extensions
// (.so files) is refused, as for Node.
//
// Neighbours: package jobs computes bundle digests with the extras this
// package gives; package deploy uploads the bundles; butter dev and
// invoke -local point Node and Python at the same cache (NODE_PATH,
// PYTHONPATH).
package deps

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/butterfn/butter/bundle"
	"github.com/butterfn/butter/plugins/pool"
)

// Installer installs dependencies into a cache directory.
type Installer struct {
	// Dir is the cache: <Dir>/npm/<key>/node_modules.
	Dir string
	// Progress, when set, is told when an install starts (it may take a
	// while).
	Progress func(msg string)

	mu sync.Mutex // one install at a time: npm's own cache is shared
}

// Default is an Installer in the user's cache directory
// ($XDG_CACHE_HOME/butter/deps, ~/.cache/butter/deps), or
// $BUTTER_DEPS_CACHE when set.
func Default() *Installer {
	if d := os.Getenv("BUTTER_DEPS_CACHE"); d != "" {
		return &Installer{Dir: d}
	}
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return &Installer{Dir: filepath.Join(d, "butter", "deps")}
}

// Extras installs (or finds in the cache) the dependencies of a function
// of runtime whose source is src (a directory or file on disk, shown as
// shown in errors) and returns what its bundle carries besides its
// source: none when it declares no dependency.
func (in *Installer) Extras(ctx context.Context, runtime, src, shown string) ([]bundle.Extra, error) {
	if runtime != "node" && runtime != "python" {
		return nil, nil
	}
	fi, err := os.Stat(src)
	if err != nil || !fi.IsDir() {
		return nil, nil // a single file declares nothing
	}
	if runtime == "python" {
		dir, err := in.pip(ctx, src, shown)
		if err != nil || dir == "" {
			return nil, err
		}
		return []bundle.Extra{{Name: PythonPackages, Dir: dir}}, nil
	}
	dir, err := in.npm(ctx, src, shown)
	if err != nil || dir == "" {
		return nil, err
	}
	return []bundle.Extra{{Name: "node_modules", Dir: dir}}, nil
}

// PythonPackages is the directory of a Python function's bundle that
// holds its installed requirements; the worker puts it on sys.path.
const PythonPackages = "python_packages"

// pip returns the cache's directory of src's requirements.txt installed,
// installing them first when they are not there; "" when src has none
// (or only comments).
func (in *Installer) pip(ctx context.Context, src, shown string) (string, error) {
	reqs, err := os.ReadFile(filepath.Join(src, "requirements.txt"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", shown, err)
	}
	some := false
	for _, line := range strings.Split(string(reqs), "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			some = true
		}
	}
	if !some {
		return "", nil
	}
	version, err := exec.CommandContext(ctx, "python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])").Output()
	if err != nil {
		return "", fmt.Errorf("%s/requirements.txt: cannot run python3 to install it: %v", shown, err)
	}
	sum := sha256.New()
	for _, part := range [][]byte{[]byte("pip\x00"), bytes.TrimSpace(version), []byte{0}, reqs} {
		sum.Write(part)
	}
	key := hex.EncodeToString(sum.Sum(nil))[:32]
	final := filepath.Join(in.Dir, "pip", key)
	if _, err := os.Stat(filepath.Join(final, ".installed")); err == nil {
		return final, nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if _, err := os.Stat(filepath.Join(final, ".installed")); err == nil {
		return final, nil
	}
	if in.Progress != nil {
		in.Progress(fmt.Sprintf("installing the requirements of %s (pip install --target)", shown))
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(in.Dir, "pip", key+".tmp-"+hex.EncodeToString(rnd[:]))
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", fmt.Errorf("dependency cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	reqFile := filepath.Join(tmp, ".requirements.txt")
	if err := os.WriteFile(reqFile, reqs, 0o644); err != nil {
		return "", fmt.Errorf("dependency cache: %w", err)
	}
	cmd := exec.CommandContext(ctx, "python3", "-m", "pip", "install", "--target", tmp, "--requirement", reqFile,
		"--no-compile", "--disable-pip-version-check", "--no-input", "--quiet")
	cmd.Dir = src // a requirement may name a path relative to the function
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := tail(out.String(), 2000)
		if strings.Contains(msg, "No module named pip") {
			msg += " (install pip: apt-get install python3-pip)"
		}
		return "", fmt.Errorf("%s/requirements.txt: pip install failed (%v): %s", shown, err, msg)
	}
	_ = os.Remove(reqFile)
	if pkg, file := compiled(tmp); pkg != "" {
		return "", fmt.Errorf("%s/requirements.txt: package %q has compiled code (%s): Butter ships requirements as pip installs them on the deploying machine and does not build extensions for the Nomad clients; use a pure-Python package", shown, pkg, file)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".installed"), nil, 0o644); err != nil {
		return "", fmt.Errorf("dependency cache: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		if _, serr := os.Stat(filepath.Join(final, ".installed")); serr == nil {
			return final, nil // another process won
		}
		return "", fmt.Errorf("dependency cache: %w", err)
	}
	return final, nil
}

// compiled finds an installed Python package with compiled extensions:
// its top-level name and the file that shows it, or "".
func compiled(dir string) (pkg, file string) {
	_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || pkg != "" {
			return fs.SkipAll
		}
		if !e.IsDir() && (strings.HasSuffix(e.Name(), ".so") || strings.Contains(e.Name(), ".so.") || strings.HasSuffix(e.Name(), ".pyd")) {
			rel, _ := filepath.Rel(dir, p)
			pkg = strings.Split(filepath.ToSlash(rel), "/")[0]
			file = filepath.ToSlash(rel)
			return fs.SkipAll
		}
		return nil
	})
	return pkg, file
}

// npm returns the cache's node_modules for src's manifest and lockfile,
// installing it first when it is not there; "" when src declares no
// dependencies.
func (in *Installer) npm(ctx context.Context, src, shown string) (string, error) {
	manifest, err := os.ReadFile(filepath.Join(src, "package.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", shown, err)
	}
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	if err := json.Unmarshal(manifest, &pkg); err != nil {
		return "", fmt.Errorf("%s/package.json: not JSON: %w", shown, err)
	}
	if len(pkg.Dependencies) == 0 {
		return "", nil
	}
	lockName := ""
	var lock []byte
	for _, name := range []string{"npm-shrinkwrap.json", "package-lock.json"} {
		if lock, err = os.ReadFile(filepath.Join(src, name)); err == nil {
			lockName = name
			break
		}
	}
	if lockName == "" {
		return "", fmt.Errorf("%s/package.json declares dependencies but %s has no package-lock.json: run `npm install` in %s to pin them (Butter installs them with `npm ci` from the lockfile)", shown, shown, shown)
	}
	sum := sha256.New()
	for _, part := range [][]byte{[]byte("npm\x00"), manifest, []byte{0}, lock} {
		sum.Write(part)
	}
	key := hex.EncodeToString(sum.Sum(nil))[:32]
	final := filepath.Join(in.Dir, "npm", key)
	if _, err := os.Stat(filepath.Join(final, "node_modules")); err == nil {
		return filepath.Join(final, "node_modules"), nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if _, err := os.Stat(filepath.Join(final, "node_modules")); err == nil {
		return filepath.Join(final, "node_modules"), nil // installed while we waited
	}
	if in.Progress != nil {
		in.Progress(fmt.Sprintf("installing the dependencies of %s (npm ci)", shown))
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(in.Dir, "npm", key+".tmp-"+hex.EncodeToString(rnd[:]))
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", fmt.Errorf("dependency cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, "package.json"), manifest, 0o644); err != nil {
		return "", fmt.Errorf("dependency cache: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, lockName), lock, 0o644); err != nil {
		return "", fmt.Errorf("dependency cache: %w", err)
	}
	cmd := exec.CommandContext(ctx, "npm", "ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = tmp
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: npm ci failed (%v): %s", shown, err, tail(out.String(), 2000))
	}
	nm := filepath.Join(tmp, "node_modules")
	if _, err := os.Stat(nm); err != nil {
		if err := os.MkdirAll(nm, 0o755); err != nil { // every dependency was dev-only
			return "", fmt.Errorf("dependency cache: %w", err)
		}
	}
	if pkg, file := native(nm); pkg != "" {
		return "", fmt.Errorf("%s: dependency %q has native code (%s): Butter ships dependencies as npm installs them on the deploying machine and does not build native modules for the Nomad clients; use a pure-JavaScript package", shown, pkg, file)
	}
	if err := os.Rename(tmp, final); err != nil {
		if _, serr := os.Stat(filepath.Join(final, "node_modules")); serr == nil {
			return filepath.Join(final, "node_modules"), nil // another process won
		}
		return "", fmt.Errorf("dependency cache: %w", err)
	}
	return filepath.Join(final, "node_modules"), nil
}

// native finds a package with native code under node_modules: its name
// and the file that shows it, or "".
func native(nm string) (pkg, file string) {
	_ = filepath.WalkDir(nm, func(p string, e fs.DirEntry, err error) error {
		if err != nil || pkg != "" {
			return fs.SkipAll
		}
		if e.IsDir() {
			return nil
		}
		if e.Name() == "binding.gyp" || strings.HasSuffix(e.Name(), ".node") {
			rel, _ := filepath.Rel(nm, p)
			parts := strings.Split(filepath.ToSlash(rel), "/")
			pkg = parts[0]
			if strings.HasPrefix(pkg, "@") && len(parts) > 1 {
				pkg += "/" + parts[1]
			}
			file = filepath.ToSlash(rel)
			return fs.SkipAll
		}
		return nil
	})
	return pkg, file
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

// NodePath is, for a Node function run from its source directory src
// (butter dev, invoke -local), the NODE_PATH that finds its installed
// dependencies: "" when src has a node_modules of its own (the
// developer's `npm install`) or declares none. Node's require honours
// NODE_PATH; ES module imports do not, so an ES module function run from
// its source needs its own node_modules (its bundle always has one).
func (in *Installer) NodePath(ctx context.Context, src string) (string, error) {
	if fi, err := os.Stat(filepath.Join(src, "node_modules")); err == nil && fi.IsDir() {
		return "", nil
	}
	extras, err := in.Extras(ctx, "node", src, src)
	if err != nil || len(extras) == 0 {
		return "", err
	}
	return extras[0].Dir, nil
}

// SetNodePaths sets NODE_PATH (NodePath) in the environment of each Node
// function of cfg, a pool run from the project's sources (its bundles
// are the source directories: jobs.LocalConfig), and PYTHONPATH to the
// installed requirements of each Python function that has them.
func SetNodePaths(ctx context.Context, in *Installer, cfg *pool.Config) error {
	for i := range cfg.Functions {
		f := &cfg.Functions[i]
		if f.Runtime == "python" && f.Bundle != "" {
			extras, err := in.Extras(ctx, "python", f.Bundle, f.Bundle)
			if err != nil {
				return fmt.Errorf("function %s: %w", f.Name, err)
			}
			if len(extras) > 0 {
				if f.Env == nil {
					f.Env = map[string]string{}
				}
				f.Env["PYTHONPATH"] = extras[0].Dir
			}
			continue
		}
		if f.Runtime != "node" || f.Bundle == "" {
			continue
		}
		np, err := in.NodePath(ctx, f.Bundle)
		if err != nil {
			return fmt.Errorf("function %s: %w", f.Name, err)
		}
		if np == "" {
			continue
		}
		if f.Env == nil {
			f.Env = map[string]string{}
		}
		f.Env["NODE_PATH"] = np
	}
	return nil
}
