package deps_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/deps"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/sdk"
)

// PyPI is not reachable from this machine: the Python tests install from
// a local directory of wheels the test builds (our own fixture packages),
// through pip's own options for that (PIP_NO_INDEX, PIP_FIND_LINKS), with
// the real pip. A user's pip reaches PyPI the same way it reaches them.

// wheel writes a pure-Python wheel of package name (version 1.0) holding
// files (path in the wheel → content) into dir, as pip builds them.
func wheel(t *testing.T, dir, name string, files map[string]string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, name+"-1.0-py3-none-any.whl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z := zip.NewWriter(f)
	info := name + "-1.0.dist-info/"
	files[info+"METADATA"] = "Metadata-Version: 2.1\nName: " + name + "\nVersion: 1.0\n"
	files[info+"WHEEL"] = "Wheel-Version: 1.0\nGenerator: butter-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
	var record strings.Builder
	for p, text := range files {
		sum := sha256.Sum256([]byte(text))
		fmt.Fprintf(&record, "%s,sha256=%s,%d\n", p, base64.RawURLEncoding.EncodeToString(sum[:]), len(text))
	}
	record.WriteString(info + "RECORD,,\n")
	files[info+"RECORD"] = record.String()
	for p, text := range files {
		w, err := z.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(text)); err != nil {
			t.Fatal(err)
		}
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
}

// localIndex makes pip install from a directory of test wheels only.
func localIndex(t *testing.T) string {
	t.Helper()
	if err := exec.Command("python3", "-m", "pip", "--version").Run(); err != nil {
		t.Fatalf("pip is needed (python3 -m pip): %v", err)
	}
	dir := t.TempDir()
	wheel(t, dir, "butterfix", map[string]string{"butterfix/__init__.py": "def shout(s):\n    return s.upper() + '!'\n"})
	wheel(t, dir, "butternat", map[string]string{"butternat/__init__.py": "", "butternat/_speed.cpython-311-x86_64-linux-gnu.so": "\x7fELF not really"})
	t.Setenv("PIP_NO_INDEX", "1")
	t.Setenv("PIP_FIND_LINKS", dir)
	return dir
}

// TestPythonDependencies: a Python function's requirements.txt is
// installed by the real pip into the cache, once per file (and Python
// version), and its bundle carries it as python_packages, which a real
// python3 imports from; a requirements.txt of comments installs nothing.
func TestPythonDependencies(t *testing.T) {
	localIndex(t)
	src := t.TempDir()
	write(t, filepath.Join(src, "main.py"), "import butterfix\n\ndef handle(data, ctx):\n    return butterfix.shout(data.decode())\n")
	write(t, filepath.Join(src, "requirements.txt"), "# pinned\nbutterfix==1.0\n")
	installs := 0
	in := &deps.Installer{Dir: t.TempDir(), Progress: func(string) { installs++ }}
	ctx := context.Background()
	extras, err := in.Extras(ctx, "python", src, "functions/fn")
	if err != nil {
		t.Fatal(err)
	}
	if len(extras) != 1 || extras[0].Name != deps.PythonPackages {
		t.Fatalf("extras %+v, want python_packages", extras)
	}
	cmd := exec.Command("python3", "-c", "import butterfix; print(butterfix.shout('hi'))")
	cmd.Env = append(os.Environ(), "PYTHONPATH="+extras[0].Dir)
	if out, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "HI!" {
		t.Fatalf("importing the installed package: %v %q", err, out)
	}
	// The bundle as a client unpacks it: the source and python_packages;
	// a real pool's worker imports from it.
	bundleDir := t.TempDir()
	if err := os.CopyFS(bundleDir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(bundleDir, deps.PythonPackages), os.DirFS(extras[0].Dir)); err != nil {
		t.Fatal(err)
	}
	if got := invokePython(t, bundleDir, "hi"); got != "HI!" {
		t.Errorf("a pool running the bundle answered %q, want HI!", got)
	}
	again, err := in.Extras(ctx, "python", src, "functions/fn")
	if err != nil || len(again) != 1 || again[0].Dir != extras[0].Dir || installs != 1 {
		t.Errorf("second bundle: %+v %v, %d installs; want the cached one and 1 install", again, err, installs)
	}
	comments := t.TempDir()
	write(t, filepath.Join(comments, "requirements.txt"), "# nothing yet\n\n")
	if extras, err := in.Extras(ctx, "python", comments, "functions/c"); err != nil || len(extras) != 0 {
		t.Errorf("a requirements.txt of comments: %+v %v, want nothing", extras, err)
	}
}

// TestPythonDependenciesRefused: a requirement pip cannot find fails with
// pip's words and the file's name; a package with a compiled extension is
// refused naming it; neither leaves anything in the cache.
func TestPythonDependenciesRefused(t *testing.T) {
	localIndex(t)
	in := &deps.Installer{Dir: t.TempDir()}
	ctx := context.Background()
	missing := t.TempDir()
	write(t, filepath.Join(missing, "requirements.txt"), "nosuchpackage==9.9\n")
	_, err := in.Extras(ctx, "python", missing, "functions/m")
	if err == nil || !strings.Contains(err.Error(), "functions/m/requirements.txt: pip install failed") || !strings.Contains(err.Error(), "nosuchpackage") {
		t.Errorf("a missing requirement: %v", err)
	}
	native := t.TempDir()
	write(t, filepath.Join(native, "requirements.txt"), "butternat==1.0\n")
	_, err = in.Extras(ctx, "python", native, "functions/n")
	if err == nil || !strings.Contains(err.Error(), `package "butternat" has compiled code`) {
		t.Errorf("a compiled extension: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(in.Dir, "pip")); len(entries) != 0 {
		t.Errorf("the cache kept %d entries after refusals", len(entries))
	}
}

// invokePython runs the Python function main.handle of bundle in a real
// pool and returns its answer to input.
func invokePython(t *testing.T, bundle, input string) string {
	t.Helper()
	sdks, err := sdk.Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fc := pool.FunctionConfig{Name: "fn", Runtime: "python", Bundle: bundle, Handler: "main.handle", Timeout: "20s", MaxInstances: 1, Concurrency: 1}
	p, err := pool.New(&pool.Config{Project: "d", Pool: "p", Functions: []pool.FunctionConfig{fc}}, nil, pool.WithSDKs(sdks))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var out bytes.Buffer
	if err := p.Invoke(ctx, "fn", &pool.Call{Input: strings.NewReader(input), Output: &out}); err != nil {
		t.Fatal(err)
	}
	return out.String()
}
