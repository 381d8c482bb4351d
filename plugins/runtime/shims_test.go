package runtime_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/butterfn/butter/plugins/runtime"
	"github.com/butterfn/butter/sdk"
)

// TestShimSkipped starts instances of real Python and Node functions
// through a version manager's shim (a script in a directory named
// "shims" that counts its runs and execs the real interpreter, as pyenv's
// and asdf's do): the first instance runs through it, the next start
// the interpreter its HELLO named, directly, with that interpreter's
// directory first on PATH. A wrapper script in another directory is run
// every time.
func TestShimSkipped(t *testing.T) {
	sdks, err := sdk.Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		runtime, name, probe, file, src string
	}{
		{"python", "python3", "import sys; print(sys.executable)", "main.py", "def handle(b):\n    return b\n"},
		{"node", "node", "console.log(process.execPath)", "main.js", "exports.handle = async (b) => b;\n"},
	} {
		t.Run(c.runtime, func(t *testing.T) {
			out, err := exec.Command(c.name, map[string]string{"python3": "-c", "node": "-e"}[c.name], c.probe).Output()
			if err != nil {
				t.Fatalf("%s, which the pool runs workers with, cannot run here: %v", c.name, err)
			}
			real := strings.TrimSpace(string(out))
			realExe, err := filepath.EvalSymlinks(real)
			if err != nil {
				t.Fatal(err)
			}
			pathEnv := os.Getenv("PATH")
			dir := t.TempDir()
			fnDir := filepath.Join(dir, "fn")
			if err := os.MkdirAll(fnDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(fnDir, c.file), []byte(c.src), 0o644); err != nil {
				t.Fatal(err)
			}
			// runs starts two instances of a function whose PATH has a
			// script named c.name in binDir first, and returns how many
			// times the script ran and the second instance's PATH.
			runs := func(binDir string) (int, string) {
				t.Helper()
				count := filepath.Join(dir, filepath.Base(binDir)+".count")
				if err := os.MkdirAll(binDir, 0o755); err != nil {
					t.Fatal(err)
				}
				script := "#!/bin/sh\necho run >> " + count + "\nexec " + real + " \"$@\"\n"
				if err := os.WriteFile(filepath.Join(binDir, c.name), []byte(script), 0o755); err != nil {
					t.Fatal(err)
				}
				// The pool's PATH: the workers' command is found on it.
				t.Setenv("PATH", binDir+string(filepath.ListSeparator)+pathEnv)
				fn := &runtime.Function{Name: "f", Runtime: c.runtime, Dir: fnDir, Handler: "main.handle"}
				p := &runtime.Process{SDKs: sdks}
				var path string
				for i := range 2 {
					inst, err := p.Start(context.Background(), fn)
					if err != nil {
						t.Fatalf("start %d: %v", i+1, err)
					}
					exe, err := os.Readlink("/proc/" + strconv.Itoa(inst.Pid()) + "/exe")
					if err != nil {
						t.Fatal(err)
					}
					if exe != realExe {
						t.Errorf("instance %d runs %s, want %s", i+1, exe, realExe)
					}
					env, err := os.ReadFile("/proc/" + strconv.Itoa(inst.Pid()) + "/environ")
					if err != nil {
						t.Fatal(err)
					}
					for kv := range strings.SplitSeq(string(env), "\x00") {
						if v, ok := strings.CutPrefix(kv, "PATH="); ok {
							path = v
						}
					}
					if err := inst.Stop(0); err != nil {
						t.Logf("stop: %v", err)
					}
				}
				b, err := os.ReadFile(count)
				if err != nil {
					t.Fatal(err)
				}
				return strings.Count(string(b), "run"), path
			}
			n, path := runs(filepath.Join(dir, "shims"))
			if n != 1 {
				t.Errorf("the shim ran %d times for two instances, want 1 (the second past it)", n)
			}
			if want := filepath.Dir(real) + string(filepath.ListSeparator); !strings.HasPrefix(path, want) {
				t.Errorf("the second instance's PATH = %q, want %s first", path, filepath.Dir(real))
			}
			if n, _ := runs(filepath.Join(dir, "wrappers")); n != 2 {
				t.Errorf("a wrapper outside a shims directory ran %d times for two instances, want 2", n)
			}
		})
	}
}
