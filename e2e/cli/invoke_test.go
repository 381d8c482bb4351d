package cli

import (
	"context"
	"crypto/sha256"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/e2e/e2etest"
)

// These tests run `butter invoke -local` as a user does: the binary built
// by e2etest.Main, real exec, Node, Python and Go workers, input on stdin.

// goCache is the Go build cache of the machine running the tests. Each
// run of butter gets a cache directory of its own (XDG_CACHE_HOME), which
// would otherwise move Go's build cache too and make every build of a Go
// function start from nothing.
var goCache = sync.OnceValue(func() string {
	out, err := exec.Command("go", "env", "GOCACHE").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
})

// butterIn runs butter in dir with stdin as its standard input and a
// fresh cache directory (where butter installs its SDKs and caches Go
// builds), so that no run depends on what an earlier one left behind. It
// returns stdout, stderr and the exit code; the process gets at most two
// minutes.
func butterIn(t *testing.T, dir, stdin string, args ...string) e2etest.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e2etest.Bin(), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+t.TempDir())
	if gc := goCache(); gc != "" {
		cmd.Env = append(cmd.Env, "GOCACHE="+gc)
	}
	cmd.Stdin = strings.NewReader(stdin)
	cmd.WaitDelay = 5 * time.Second // bound the wait for output pipes a straggler holds open
	r := e2etest.Run(t, cmd)
	if ctx.Err() != nil {
		t.Fatalf("butter %q did not finish within 2 minutes\nstderr:\n%s", args, r.Stderr)
	}
	return r
}

func TestInvokeLocalAcceptance(t *testing.T) {
	// The acceptance check, exactly as the README and the example show it.
	r := butterIn(t, e2etest.Root(), "I hate this\n", "invoke", "--local", "examples/pipeline", "sed | to-upper")
	if r.Code != 0 || r.Stdout != "I LOVE THIS\n" {
		t.Fatalf("exit %d, stdout %q, want exit 0 and %q\nstderr:\n%s", r.Code, r.Stdout, "I LOVE THIS\n", r.Stderr)
	}
}

func TestInvokeLocalPipelines(t *testing.T) {
	root := e2etest.Root()
	for _, c := range []struct {
		name, dir, expr, in, want string
	}{
		{"step options override the defaults", "examples/pipeline", "sed e=s/hate/like/ | to-upper", "I hate this\n", "I LIKE THIS\n"},
		{"a pipeline of the spec by name", "examples/pipeline", "shout", "I hate this\n", "I LOVE THIS\n"},
		{"one function with its default options", "examples/pipeline", "sed", "I hate this\n", "I love this\n"},
		{"a pipeline step followed by a function", "examples/pipeline", "shout | sed e=s/LOVE/ADORE/", "I hate this\n", "I ADORE THIS\n"},
		{"a quoted option with blanks and a bar", "examples/pipeline", `sed e="s/hate/really | like/" | to-upper`, "I hate this\n", "I REALLY | LIKE THIS\n"},
		{"three runtimes in one pipeline", "examples/hello", "echo-node | echo-python | echo-exec", "three runtimes\n", "three runtimes\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := butterIn(t, root, c.in, "invoke", "-local", c.dir, c.expr)
			if r.Code != 0 || r.Stdout != c.want {
				t.Errorf("%q: exit %d, stdout %q, want exit 0 and %q\nstderr:\n%s", c.expr, r.Code, r.Stdout, c.want, r.Stderr)
			}
		})
	}
}

// Every function of the hello example echoes its input byte for byte,
// whatever the runtime: UTF-8, NUL, a byte that is not UTF-8, no final
// newline. The Go function is built on its first call.
func TestInvokeLocalHelloRuntimes(t *testing.T) {
	root := e2etest.Root()
	in := "h\u00e9llo \x00\xff butter\nsecond line"
	for _, f := range []string{"echo-node", "echo-python", "echo-go", "echo-exec"} {
		t.Run(f, func(t *testing.T) {
			r := butterIn(t, root, in, "invoke", "-local", "examples/hello", f)
			if r.Code != 0 || r.Stdout != in {
				t.Errorf("exit %d, stdout %q, want exit 0 and %q\nstderr:\n%s", r.Code, r.Stdout, in, r.Stderr)
			}
		})
	}
}

func TestInvokeLocalErrors(t *testing.T) {
	root := e2etest.Root()

	// A project whose function fails, beside one that passes its input on.
	proj := t.TempDir()
	spec := `project "failing" {}

function "pass" {
  runtime = "exec"
  command = ["cat"]
  timeout = "10s"
}

function "boom" {
  runtime = "exec"
  command = ["sh", "-c", "echo boom >&2; exit 4"]
  timeout = "10s"
}
`
	if err := os.WriteFile(filepath.Join(proj, "failing.fn.hcl"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	invalid := filepath.Join(root, "hcl", "spec", "testdata", "invalid", "many-errors")

	for _, c := range []struct {
		name   string
		args   []string
		code   int
		stderr []string // each must appear in stderr
	}{
		{"unknown function", []string{"invoke", "-local", "examples/pipeline", "nope"}, 2,
			[]string{`"nope"`, "sed, to-upper, shout"}},
		{"unknown function in a pipeline", []string{"invoke", "-local", "examples/pipeline", "sed | nope"}, 2,
			[]string{`"nope"`, "sed, to-upper, shout"}},
		{"a misspelt function", []string{"invoke", "-local", "examples/pipeline", "sed | to-uper"}, 2,
			[]string{`"to-uper"`, `did you mean "to-upper"?`}},
		{"an unterminated quote", []string{"invoke", "-local", "examples/pipeline", `sed e="s/a/b/`}, 2,
			[]string{"unterminated quote"}},
		{"malformed option", []string{"invoke", "-local", "examples/pipeline", "sed e"}, 2,
			[]string{`option "e" is not name=value`}},
		{"empty step", []string{"invoke", "-local", "examples/pipeline", "sed | "}, 2,
			[]string{"empty step"}},
		{"without -local", []string{"invoke", "examples/pipeline", "sed"}, 2,
			[]string{"-local"}},
		{"no function", []string{"invoke", "-local"}, 2,
			[]string{"give a function or pipeline"}},
		{"a failing step", []string{"invoke", "-local", proj, "boom"}, 1,
			[]string{"step 1 (boom)", "Exception", "boom", "exit status 4"}},
		{"a failing second step", []string{"invoke", "-local", proj, "pass | boom"}, 1,
			[]string{"step 2 (boom)", "Exception", "boom", "exit status 4"}},
		{"an invalid spec", []string{"invoke", "-local", invalid, "anything"}, 1,
			[]string{"Error:", "6 errors"}},
		{"a missing project", []string{"invoke", "-local", filepath.Join(t.TempDir(), "absent"), "sed"}, 1,
			[]string{"Cannot read project directory"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := butterIn(t, root, "I hate this\n", c.args...)
			if r.Code != c.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.Code, c.code, r.Stdout, r.Stderr)
			}
			for _, s := range c.stderr {
				if !strings.Contains(r.Stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, r.Stderr)
				}
			}
			if c.code != 0 && r.Stdout != "" {
				t.Errorf("a failed invoke printed to stdout: %q", r.Stdout)
			}
		})
	}
}

// A body larger than any buffer in the way streams through two exec steps
// and comes back byte for byte: each step's stdout feeds the next one's
// stdin while the input is still arriving.
func TestInvokeLocalLargeBody(t *testing.T) {
	const size = 32 << 20
	src := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < size; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < size; j++ {
			src[i+j] = byte(v >> (8 * j))
		}
	}
	// Its own project, with a deadline a loaded machine meets: examples/
	// hello's 5s is for people, not for 64 MiB through two pipes under
	// -race on two busy cores.
	dir := t.TempDir()
	spec := "project \"big\" {}\n\nfunction \"echo-exec\" {\n  runtime = \"exec\"\n  command = [\"cat\"]\n  timeout = \"5m\"\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "big.fn.hcl"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	r := butterIn(t, e2etest.Root(), string(src), "invoke", "-local", dir, "echo-exec | echo-exec")
	if r.Code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s", r.Code, r.Stderr)
	}
	if len(r.Stdout) != size || sha256.Sum256([]byte(r.Stdout)) != sha256.Sum256(src) {
		t.Fatalf("got %d bytes back (sha256 %x), want %d (sha256 %x)", len(r.Stdout), sha256.Sum256([]byte(r.Stdout)), size, sha256.Sum256(src))
	}
}

// TestInvokeLocalSecrets: butter invoke --local gives a function its
// secrets as butter dev does (the environment here), and names a missing
// one instead of starting the function with an empty value.
func TestInvokeLocalSecrets(t *testing.T) {
	dir := t.TempDir()
	spec := `project "sec" {}

function "show" {
  runtime = "exec"
  command = ["sh", "-c", "printf %s \"$INVOKE_TOKEN\""]
  secret "INVOKE_TOKEN" {
    vault = "secret/data/butter/sec/api#token"
  }
}
`
	if err := os.WriteFile(filepath.Join(dir, "sec.fn.hcl"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("INVOKE_TOKEN", "")
	r := butterIn(t, dir, "", "invoke", "-local", ".", "show")
	if r.Code == 0 || !strings.Contains(r.Stderr, "INVOKE_TOKEN") || !strings.Contains(r.Stderr, "secrets.env") {
		t.Fatalf("a missing secret should fail, naming it and where it was looked for: %+v", r)
	}
	t.Setenv("INVOKE_TOKEN", "tok-from-env")
	if r := butterIn(t, dir, "", "invoke", "-local", ".", "show"); r.Code != 0 || r.Stdout != "tok-from-env" {
		t.Fatalf("the function should print its secret: %+v", r)
	}
}
