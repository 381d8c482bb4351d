package sandbox_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/sandbox"
)

// TestMain lets the test binary serve as the shim, as the butter binary
// does under `butter pool`.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == sandbox.Command {
		os.Exit(sandbox.Main(os.Args[2:]))
	}
	os.Exit(m.Run())
}

func available(t *testing.T) {
	t.Helper()
	if err := sandbox.Available(); err != nil {
		if os.Getenv("CI") != "" || os.Getenv("BUTTER_REQUIRE_NOMAD") != "" {
			t.Fatalf("the sandbox is needed for secrets and this kernel lacks it: %v", err)
		}
		t.Skip(err)
	}
}

func TestGrantsLeaveOnlyTheHiddenTreeOut(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"task/secrets", "task/local/fn", "task/tmp", "other/secrets"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "task", "pool.json"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	root, _ = filepath.EvalSymlinks(root)
	dirs, files, err := sandbox.Grants([]string{filepath.Join(root, "task")}, []string{filepath.Join(root, "task/local"), filepath.Join(root, "missing"), root})
	if err != nil {
		t.Fatal(err)
	}
	all := append(append([]string(nil), dirs...), files...)
	for _, want := range []string{filepath.Join(root, "other"), filepath.Join(root, "task/local"), "/usr"} {
		if !slices.Contains(all, want) {
			t.Errorf("grants lack %s: %v", want, all)
		}
	}
	for _, p := range all {
		if p == "/" || p == filepath.Join(root, "task") || strings.HasPrefix(p, filepath.Join(root, "task/secrets")) || p == filepath.Join(root, "task/pool.json") || p == root {
			t.Errorf("grants %s, which is or leads into the hidden tree", p)
		}
	}
}

// TestGrantsNest: the most specific rule wins. The allocations are
// hidden, the task's local directory allowed inside them, a neighbour's
// bundle hidden inside that: the own bundle and the local directory's
// other entries are granted, the neighbour's bundle and the rest of the
// allocation are not; a symbolic link into the neighbour's bundle is not
// granted either.
func TestGrantsNest(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"alloc/t/local/a", "alloc/t/local/b", "alloc/t/secrets", "alloc/other"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	root, _ = filepath.EvalSymlinks(root)
	local := filepath.Join(root, "alloc/t/local")
	if err := os.WriteFile(filepath.Join(local, "pool.json"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(local, "b"), filepath.Join(local, "to-b")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(local, "a"), filepath.Join(local, "to-a")); err != nil {
		t.Fatal(err)
	}
	// /dev/fd leads to /proc/<pid>/fd, outside every hidden tree: the
	// walk must not descend into /proc, whose processes come and go.
	dirs, files, err := sandbox.Grants([]string{filepath.Join(root, "alloc"), filepath.Join(local, "b")}, []string{local, filepath.Join(local, "a"), "/dev/fd", "/proc/self/fd"})
	if err != nil {
		t.Fatal(err)
	}
	all := append(append([]string(nil), dirs...), files...)
	for _, want := range []string{filepath.Join(local, "a"), filepath.Join(local, "pool.json"), filepath.Join(local, "to-a"), "/usr", "/proc"} {
		if !slices.Contains(all, want) {
			t.Errorf("grants lack %s: %v", want, all)
		}
	}
	for _, p := range all {
		if p == "/" || p == local || strings.HasPrefix(p, filepath.Join(local, "b")) || p == filepath.Join(local, "to-b") || strings.HasPrefix(p, filepath.Join(root, "alloc/t/secrets")) || strings.HasPrefix(p, filepath.Join(root, "alloc/other")) {
			t.Errorf("grants %s, which is or leads into a hidden tree", p)
		}
	}
}

// run starts cmd through the shim (or not) and returns its output and
// whether it succeeded.
func run(t *testing.T, confine bool, c sandbox.Config, env []string, name string, args ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	if confine {
		c.Exe = os.Args[0]
		if err := sandbox.Wrap(cmd, c); err != nil {
			t.Fatal(err)
		}
	}
	out, err := cmd.CombinedOutput()
	return string(out), err == nil
}

// TestInstancesCannotReadSecretsOrNeighbours runs a confined "holder" with
// a secret in its environment and a confined neighbour that tries to read
// the hidden directory and the holder's /proc entries; the same reads
// unconfined succeed, so the test fails if confinement does nothing.
func TestInstancesCannotReadSecretsOrNeighbours(t *testing.T) {
	available(t)
	dir := t.TempDir()
	secretsDir := filepath.Join(dir, "secrets")
	local := filepath.Join(dir, "local")
	for _, d := range []string{secretsDir, local} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	token := filepath.Join(secretsDir, "vault_token")
	if err := os.WriteFile(token, []byte("hvs.TOKEN"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(local, "code.txt"), []byte("code"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := sandbox.Config{Hide: []string{dir}, Allow: []string{local}}
	env := []string{"PATH=" + os.Getenv("PATH")}

	holder := exec.Command("sleep", "60")
	holder.Env = append(env, "DB_PASSWORD=s3cret-value")
	c.Exe = os.Args[0]
	if err := sandbox.Wrap(holder, c); err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	environ := fmt.Sprintf("/proc/%d/environ", holder.Process.Pid)
	// Wait until the shim has executed sleep and the kernel has laid out
	// sleep's environment: comm changes during execve before the new
	// image's environ is readable, so /proc/<pid>/environ is briefly empty.
	deadline := time.Now().Add(30 * time.Second)
	for {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", holder.Process.Pid))
		b, err := os.ReadFile(environ)
		if strings.TrimSpace(string(comm)) == "sleep" && err == nil && bytes.Contains(b, []byte("s3cret-value")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the holder did not exec sleep with its secret in its environment (comm %q, environ read: %v): the test cannot tell anything", comm, err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A raw disk: a pool runs as root under Nomad's raw_exec, and root
	// owns the disk's device node, so only the sandbox's /dev rule keeps
	// an instance from reading the disk under everyone's files.
	disk := rawDisk(t)
	for _, tc := range []struct {
		what, name string
		args       []string
	}{
		{"the hidden token", "cat", []string{token}},
		{"the hidden directory", "ls", []string{secretsDir}},
		{"the neighbour's environ", "cat", []string{environ}},
		{"the neighbour's memory map", "cat", []string{fmt.Sprintf("/proc/%d/maps", holder.Process.Pid)}},
		{"the neighbour's working directory", "readlink", []string{fmt.Sprintf("/proc/%d/cwd", holder.Process.Pid)}},
		{"the neighbour's root", "ls", []string{fmt.Sprintf("/proc/%d/root/", holder.Process.Pid)}},
		{"the pool's environ", "cat", []string{fmt.Sprintf("/proc/%d/environ", os.Getpid())}},
		{"a raw disk", "head", []string{"-c", "512", disk}},
	} {
		t.Run(tc.what, func(t *testing.T) {
			if tc.what == "a raw disk" && disk == "" {
				t.Skip("no block device under /dev is readable and /dev is not writable by this user: run as root to check that an instance cannot read the disk")
			}
			if out, ok := run(t, false, c, env, tc.name, tc.args...); !ok {
				t.Fatalf("unconfined, %s %v fails too (%s): the test cannot tell anything", tc.name, tc.args, out)
			}
			out, ok := run(t, true, c, env, tc.name, tc.args...)
			if ok {
				t.Errorf("confined, %s %v succeeded: %q", tc.name, tc.args, out)
			}
			if strings.Contains(out, "s3cret-value") || strings.Contains(out, "hvs.TOKEN") {
				t.Errorf("confined, %s %v printed the secret: %q", tc.name, tc.args, out)
			}
		})
	}
	// What an instance needs still works.
	if out, ok := run(t, true, c, env, "cat", filepath.Join(local, "code.txt")); !ok || out != "code" {
		t.Errorf("confined, the allowed bundle is unreadable: %q", out)
	}
	if out, ok := run(t, true, c, env, "sh", "-c", "echo hi > /dev/null && head -c 4 /dev/urandom | wc -c && ls /usr/bin >/dev/null && echo ok"); !ok || !strings.Contains(out, "ok") {
		t.Errorf("confined, an ordinary shell command fails: %q", out)
	}
}

// rawDisk returns a block device under /dev that this process can read
// (the machine's disk, when the test runs as root), or else a stand-in:
// a regular file created under /dev, which the sandbox hides by path as
// it hides a disk (a container's device cgroup refuses even root the
// disk). It returns "" where neither exists (not root).
func rawDisk(t *testing.T) string {
	t.Helper()
	entries, err := os.ReadDir("/dev")
	if err != nil {
		return ""
	}
	buf := make([]byte, 512)
	for _, e := range entries {
		if e.Type()&fs.ModeDevice == 0 || e.Type()&fs.ModeCharDevice != 0 {
			continue
		}
		p := filepath.Join("/dev", e.Name())
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		n, _ := f.Read(buf)
		_ = f.Close()
		if n > 0 {
			return p
		}
	}
	p := fmt.Sprintf("/dev/butter-sandbox-test-disk-%d", os.Getpid())
	if err := os.WriteFile(p, []byte("a disk sector"), 0o600); err != nil {
		return ""
	}
	t.Cleanup(func() { _ = os.Remove(p) })
	return p
}
