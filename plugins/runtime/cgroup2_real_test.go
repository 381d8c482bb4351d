package runtime

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCgroup2RealMount runs an instance through startLimited on this
// machine's real cgroup2 mount (/sys/fs/cgroup, or /sys/fs/cgroup/unified
// on a hybrid host): it starts inside its own cgroup (CLONE_INTO_CGROUP,
// checked in /proc/<pid>/cgroup), and release kills what it left behind
// outside its process group (cgroup.kill) and removes the cgroup. Where
// the mount offers no memory or pids controller (this machine: v1 owns
// them), no limit file is written: the limits themselves are checked
// against the kernel files' contract in limits_test.go.
func TestCgroup2RealMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating cgroups needs root")
	}
	unified := ""
	for _, d := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		if isCgroup2(d) {
			unified = d
			break
		}
	}
	if unified == "" {
		t.Skip("no cgroup2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified")
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	own := ""
	for _, line := range strings.Split(string(self), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			own = p
		}
	}
	dir := filepath.Join(unified, own, "butter-test-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("cannot create a cgroup2 directory here: %v", err)
	}
	t.Cleanup(func() { _ = os.Remove(dir) }) // runs last
	offered, _ := os.ReadFile(filepath.Join(unified, own, "cgroup.controllers"))
	ctrls := map[string]bool{}
	for _, c := range strings.Fields(string(offered)) {
		ctrls[c] = c == "memory" || c == "pids"
	}
	l := &Limits{version: 2, v2Dir: dir, v2Ctrls: map[string]bool{"memory": ctrls["memory"], "pids": ctrls["pids"]}}

	// The instance leaves a child in a session (and process group) of its
	// own, which only the cgroup still ties to it.
	cmd := exec.Command("sh", "-c", `setsid sleep 60 & exec sleep 60`)
	fn := &Function{Name: "real", Limits: l, MemoryMiB: 64, MaxProcs: 16}
	release, err := startLimited(cmd, fn)
	if err != nil {
		t.Fatal(err)
	}
	inst := filepath.Join(dir, "real-1")
	t.Cleanup(func() {
		// Should the test fail before release: end the instance's
		// processes and remove its cgroup, then the test's.
		_ = os.WriteFile(filepath.Join(inst, "cgroup.kill"), []byte("1"), 0o644)
		waitFor(t, "the cgroup of a failed test removed", func() bool {
			err := os.Remove(inst)
			return err == nil || os.IsNotExist(err)
		})
	})
	b, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if want := "0::" + strings.TrimPrefix(inst, unified) + "\n"; !strings.Contains(string(b), want) {
		t.Errorf("the instance is not in its cgroup: /proc/%d/cgroup = %q, want a line %q", cmd.Process.Pid, b, want)
	}
	if ctrls["memory"] {
		if got, _ := os.ReadFile(filepath.Join(inst, "memory.max")); strings.TrimSpace(string(got)) != strconv.Itoa(64<<20) {
			t.Errorf("memory.max = %q", got)
		}
	} else {
		t.Logf("%s offers no memory controller (%q): memory.max not checked here", unified, strings.TrimSpace(string(offered)))
	}
	left := func() bool {
		procs, _ := os.ReadFile(filepath.Join(inst, "cgroup.procs"))
		return len(strings.Fields(string(procs))) > 0
	}
	waitFor(t, "the instance's child in its cgroup", func() bool {
		procs, _ := os.ReadFile(filepath.Join(inst, "cgroup.procs"))
		return len(strings.Fields(string(procs))) >= 2
	})
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if !left() {
		t.Fatal("the child outside the instance's process group is gone before release: the test cannot tell anything")
	}
	release()
	waitFor(t, "the instance's cgroup removed, its left-behind child killed", func() bool {
		_, err := os.Stat(inst)
		return os.IsNotExist(err)
	})
}

// waitFor polls cond until it holds, failing the test after 30s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after 30s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
