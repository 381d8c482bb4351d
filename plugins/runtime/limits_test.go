package runtime

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// These tests run discoverLimits and the instance cgroups against a
// directory tree laid out like /sys/fs/cgroup: they check which files
// the limiter writes and what it says when it cannot, by the kernel
// files' contract, not against a real cgroup v2 kernel (this machine's
// memory and pids controllers belong to cgroup v1; the real v1 path is
// tested in plugins/pool, TestMemoryLimit and TestProcessLimit).

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the limiter did not write %s: %v", path, err)
	}
	return strings.TrimSpace(string(b))
}

// v2Tree is a unified hierarchy mounted at root/unified (as on this
// machine) whose cgroup /pool offers controllers.
func v2Tree(t *testing.T, controllers string) (cgroupFS, string) {
	root := t.TempDir()
	own := filepath.Join(root, "unified", "pool")
	writeFile(t, filepath.Join(own, "cgroup.controllers"), controllers+"\n")
	writeFile(t, filepath.Join(own, "cgroup.subtree_control"), "\n")
	writeFile(t, filepath.Join(own, "cgroup.procs"), "4242\n")
	return cgroupFS{root: root, isV2: func(dir string) bool { return dir == filepath.Join(root, "unified") }}, own
}

func TestLimitsV2Tree(t *testing.T) {
	fs, own := v2Tree(t, "cpuset cpu io memory hugetlb pids")
	// A hybrid host whose v1 hierarchies hold neither memory nor pids.
	l := discoverLimits(fs, "4:cpuset:/\n0::/pool\n", 4242)
	if l.Version() != 2 || l.Available() != nil || len(l.Off()) != 0 {
		t.Fatalf("version %d, available %v, off %q; want 2, nil, none", l.Version(), l.Available(), l.Off())
	}
	// The pool left its cgroup for a leaf, so that its cgroup may
	// delegate the controllers, and enabled them for the instances.
	if got := readFile(t, filepath.Join(own, "butter-pool-4242", "cgroup.procs")); got != "4242" {
		t.Errorf("butter-pool-4242/cgroup.procs = %q, want the pool's pid", got)
	}
	for _, f := range []string{filepath.Join(own, "cgroup.subtree_control"), filepath.Join(own, "butter-4242", "cgroup.subtree_control")} {
		if got := readFile(t, f); got != "+memory +pids" {
			t.Errorf("%s = %q, want +memory +pids", f, got)
		}
	}

	ic, err := l.prepare("hello", 64, 16)
	if err != nil {
		t.Fatal(err)
	}
	if ic.fd < 0 {
		t.Fatal("no cgroup fd for CLONE_INTO_CGROUP")
	}
	d := filepath.Join(own, "butter-4242", "hello-1")
	for file, want := range map[string]string{"memory.max": "67108864", "memory.oom.group": "1", "pids.max": "16"} {
		if got := readFile(t, filepath.Join(d, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(d, "cgroup.procs")); err == nil {
		t.Error("prepare wrote cgroup.procs on v2: the instance starts in its cgroup (clone3), it must not be moved")
	}
	ic.release()
	if got := readFile(t, filepath.Join(d, "cgroup.kill")); got != "1" {
		t.Errorf("release: cgroup.kill = %q, want 1 (kill what the instance left behind)", got)
	}

	// No limit asked: no cgroup.
	if ic, err := l.prepare("free", 0, 0); ic != nil || err != nil {
		t.Errorf("prepare without limits = %v, %v; want nil, nil", ic, err)
	}
}

func TestLimitsV2WithoutControllers(t *testing.T) {
	// This machine's unified hierarchy: v1 owns memory and pids.
	fs, own := v2Tree(t, "hugetlb")
	l := discoverLimits(fs, "0::/pool\n", 7)
	if l.Version() != 0 || l.Available() == nil {
		t.Fatalf("version %d, available %v; want 0 and an error", l.Version(), l.Available())
	}
	off := strings.Join(l.Off(), "\n")
	for _, want := range []string{"memory and process limits are not enforced", "neither the memory nor the pids controller", own} {
		if !strings.Contains(off, want) {
			t.Errorf("Off() = %q, want it to say %q", off, want)
		}
	}
	if ic, err := l.prepare("f", 64, 16); ic != nil || err != nil {
		t.Errorf("prepare = %v, %v; want nil, nil when no limit applies", ic, err)
	}
}

func TestLimitsV2OneController(t *testing.T) {
	fs, _ := v2Tree(t, "pids")
	l := discoverLimits(fs, "0::/pool\n", 7)
	if l.Version() != 2 {
		t.Fatalf("version %d, want 2", l.Version())
	}
	if off := l.Off(); len(off) != 1 || !strings.Contains(off[0], "memory limit not enforced") {
		t.Errorf("Off() = %q, want one sentence saying the memory limit is not enforced", off)
	}
}

func TestLimitsV2DelegationRefused(t *testing.T) {
	fs, own := v2Tree(t, "memory pids")
	// The kernel refuses the write (a stand-in: cgroup.subtree_control
	// as a directory fails every write).
	if err := os.Remove(filepath.Join(own, "cgroup.subtree_control")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(own, "cgroup.subtree_control"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(own, "cgroup.procs"), "")
	l := discoverLimits(fs, "0::/pool\n", 4242)
	if l.Version() != 0 || !strings.Contains(l.Available().Error(), "cgroup.subtree_control") {
		t.Fatalf("version %d, available %v; want 0 and an error naming cgroup.subtree_control", l.Version(), l.Available())
	}
	// The pool went back to its own cgroup, and the leaf is gone.
	if got := readFile(t, filepath.Join(own, "cgroup.procs")); got != "4242" {
		t.Errorf("cgroup.procs = %q, want the pool moved back (4242)", got)
	}
	if _, err := os.Stat(filepath.Join(own, "butter-pool-4242")); !os.IsNotExist(err) {
		t.Errorf("butter-pool-4242 left behind: %v", err)
	}
}

func TestLimitsV1Tree(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"memory/pool", "pids/pool"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fs := cgroupFS{root: root, isV2: func(string) bool { return false }}
	l := discoverLimits(fs, "8:pids:/pool\n4:memory:/pool\n0::/\n", 9)
	if l.Version() != 1 || len(l.Off()) != 0 {
		t.Fatalf("version %d, off %q; want 1, none", l.Version(), l.Off())
	}
	ic, err := l.prepare("f", 32, 8)
	if err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"memory/pool/butter-9/f-1/memory.limit_in_bytes": "33554432",
		"pids/pool/butter-9/f-1/pids.max":                "8",
	} {
		if got := readFile(t, filepath.Join(root, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	// The starting thread moves into the instance's cgroups (v1's tasks
	// file), forks, and moves back to the pool's.
	cmd := exec.Command("true")
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if err := ic.start(cmd); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	for _, d := range []string{"memory/pool/butter-9/f-1", "pids/pool/butter-9/f-1", "memory/pool", "pids/pool"} {
		if got := readFile(t, filepath.Join(root, d, "tasks")); got == "" {
			t.Errorf("%s/tasks is empty: the starting thread was not moved there", d)
		}
	}
}

func TestLimitsV1WithoutPids(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "memory/pool"), 0o755); err != nil {
		t.Fatal(err)
	}
	fs := cgroupFS{root: root, isV2: func(string) bool { return false }}
	l := discoverLimits(fs, "4:memory:/pool\n", 9)
	if off := l.Off(); l.Version() != 1 || len(off) != 1 || !strings.Contains(off[0], "process limit not enforced") {
		t.Errorf("version %d, Off() = %q; want 1 and one sentence saying the process limit is not enforced", l.Version(), off)
	}
}

func TestLimitsNothingUsable(t *testing.T) {
	root := t.TempDir()
	fs := cgroupFS{root: root, isV2: func(string) bool { return false }}
	// A v1 memory cgroup that cannot be created, and no v2 mount.
	writeFile(t, filepath.Join(root, "memory"), "not a directory")
	l := discoverLimits(fs, "4:memory:/pool\n0::/\n", 9)
	if l.Version() != 0 || l.Available() == nil {
		t.Fatalf("version %d, available %v; want 0 and an error", l.Version(), l.Available())
	}
	off := strings.Join(l.Off(), "\n")
	for _, want := range []string{"not enforced", "no cgroup v2 hierarchy is mounted", "cannot create"} {
		if !strings.Contains(off, want) {
			t.Errorf("Off() = %q, want it to say %q", off, want)
		}
	}
}

// TestLimitsStaleCgroups: a pool SIGKILLed leaves its instances' cgroups
// under butter-<pid>; a later pool that gets the same pid must not fail
// to start instances on them (a CI run dead-lettered events with "create
// cgroup .../butter-8948/fold-2: file exists"). Empty ones are removed
// at start; one that cannot be removed (here a directory holding a file,
// standing for a cgroup still populated) is skipped.
func TestLimitsStaleCgroups(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"memory/pool/butter-9/f-1", "pids/pool/butter-9/f-1", "pids/pool/butter-9/f-3"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(root, "pids/pool/butter-9/f-2/cgroup.procs"), "77\n")
	fs := cgroupFS{root: root, isV2: func(string) bool { return false }}
	l := discoverLimits(fs, "4:memory:/pool\n3:pids:/pool\n", 9)
	if l.Version() != 1 {
		t.Fatalf("version %d; want 1", l.Version())
	}
	for _, d := range []string{"memory/pool/butter-9/f-1", "pids/pool/butter-9/f-1", "pids/pool/butter-9/f-3"} {
		if _, err := os.Stat(filepath.Join(root, d)); !os.IsNotExist(err) {
			t.Errorf("stale empty cgroup %s not removed at start: %v", d, err)
		}
	}
	var ids []string
	for range 3 {
		ic, err := l.prepare("f", 32, 8)
		if err != nil {
			t.Fatalf("prepare beside a stale cgroup: %v", err)
		}
		ids = append(ids, ic.id)
	}
	if want := []string{"f-1", "f-3", "f-4"}; !slices.Equal(ids, want) {
		t.Errorf("instance cgroups %q; want %q (f-2 is still taken)", ids, want)
	}
	if got := readFile(t, filepath.Join(root, "pids/pool/butter-9/f-2/cgroup.procs")); got != "77" {
		t.Errorf("the populated cgroup f-2 was touched: cgroup.procs = %q", got)
	}
	// And on v2.
	v2fs, own := v2Tree(t, "memory pids")
	writeFile(t, filepath.Join(own, "butter-4242", "g-1", "cgroup.procs"), "78\n")
	l2 := discoverLimits(v2fs, "0::/pool\n", 4242)
	ic, err := l2.prepare("g", 32, 8)
	if err != nil || ic.id != "g-2" {
		t.Fatalf("v2 prepare beside a populated stale cgroup = %v, %v; want g-2", ic, err)
	}
}

// hold takes the lock of directory d as a live pool holds its own, until
// the test ends.
func hold(t *testing.T, d string) {
	t.Helper()
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := lockDir(d)
	if err != nil {
		t.Fatalf("lock %s: %v", d, err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
}

// TestLimitsSweep: a pool removes, at start, the instance-cgroup
// directories that pools now gone left beside its own (a SIGKILLed
// pool's, or any pool's before they were swept: a CI machine had 1,142):
// those whose lock it can take. One a live pool holds stays, and so does
// a cgroup still populated (here a directory holding a file); names that
// are not butter-<pid>[-<n>] are not touched.
func TestLimitsSweep(t *testing.T) {
	root := t.TempDir()
	pids := filepath.Join(root, "pids/pool")
	// Pids past pid_max (at most 2^22), which no process has.
	for _, d := range []string{"butter-999999905/f-1", "butter-999999905/f-2", "butter-999999912-1/g-1", "butter-999999906/h-1", "butter-x/f-1", "other/f-1"} {
		if err := os.MkdirAll(filepath.Join(pids, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(pids, "butter-999999907/f-3/cgroup.procs"), "77\n")
	hold(t, filepath.Join(pids, "butter-999999906"))
	// Unlocked, but named by a live process's pid (this test's): maybe a
	// pool of a version that took no lock, so it stays.
	unlocked := fmt.Sprintf("butter-%d/f-1", os.Getpid())
	if err := os.MkdirAll(filepath.Join(pids, unlocked), 0o755); err != nil {
		t.Fatal(err)
	}
	fs := cgroupFS{root: root, isV2: func(string) bool { return false }}
	l := discoverLimits(fs, "3:pids:/pool\n", 9)
	if l.Version() != 1 || l.pidsRoot != filepath.Join(pids, "butter-9") {
		t.Fatalf("version %d, instances under %s; want 1, %s", l.Version(), l.pidsRoot, filepath.Join(pids, "butter-9"))
	}
	for _, d := range []string{"butter-999999905", "butter-999999912-1"} {
		if _, err := os.Stat(filepath.Join(pids, d)); !os.IsNotExist(err) {
			t.Errorf("%s, left by a pool now gone, not removed: %v", d, err)
		}
	}
	for _, d := range []string{"butter-999999906/h-1", "butter-999999907/f-3/cgroup.procs", "butter-x/f-1", "other/f-1", "butter-9", unlocked} {
		if _, err := os.Stat(filepath.Join(pids, d)); err != nil {
			t.Errorf("%s removed: %v", d, err)
		}
	}
	// A later pool does not take what this one holds, though it has the
	// same pid (a pool of another pid namespace): it claims another name.
	l2 := discoverLimits(fs, "3:pids:/pool\n", 9)
	if l2.pidsRoot != filepath.Join(pids, "butter-9-1") {
		t.Errorf("a second pool with pid 9 keeps its instances under %s; want %s", l2.pidsRoot, filepath.Join(pids, "butter-9-1"))
	}
	if _, err := os.Stat(filepath.Join(pids, "butter-9")); err != nil {
		t.Errorf("the live pool's directory was swept: %v", err)
	}
}

// TestLimitsSweepV2: on v2 the gone pool's butter-pool-<pid> leaf goes
// with its instances' directory; a live pool's (populated, so rmdir
// refuses it: here a file in it) stays.
func TestLimitsSweepV2(t *testing.T) {
	fs, own := v2Tree(t, "memory pids")
	for _, d := range []string{"butter-999999905/f-1", "butter-pool-999999905", "butter-999999906"} {
		if err := os.MkdirAll(filepath.Join(own, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(own, "butter-pool-999999906", "cgroup.procs"), "6\n")
	hold(t, filepath.Join(own, "butter-999999906"))
	l := discoverLimits(fs, "0::/pool\n", 4242)
	if l.Version() != 2 {
		t.Fatalf("version %d (%v); want 2", l.Version(), l.Available())
	}
	for _, d := range []string{"butter-999999905", "butter-pool-999999905"} {
		if _, err := os.Stat(filepath.Join(own, d)); !os.IsNotExist(err) {
			t.Errorf("%s, left by a pool now gone, not removed: %v", d, err)
		}
	}
	for _, d := range []string{"butter-999999906", "butter-pool-999999906", "butter-4242"} {
		if _, err := os.Stat(filepath.Join(own, d)); err != nil {
			t.Errorf("%s removed: %v", d, err)
		}
	}
}

// TestLimitsSweepReal: the sweep against this machine's real cgroups
// (root: its v1 memory and pids hierarchies, or v2): a stale directory
// with an empty instance cgroup in it, as a SIGKILLed pool leaves, is
// removed by the next pool's start, while a live pool's stays.
func TestLimitsSweepReal(t *testing.T) {
	// CI runs as root on a host whose cgroups are usable (as this one):
	// there, no cgroup is a failure, not a reason to skip.
	skip := t.Skipf
	if os.Getenv("CI") != "" {
		skip = t.Fatalf
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		skip("%v", err)
	}
	fs := cgroupFS{root: "/sys/fs/cgroup", isV2: isCgroup2}
	live := discoverLimits(fs, string(self), os.Getpid())
	t.Cleanup(func() { live.releaseDirs() })
	ours := live.instanceDirs()
	if len(ours) == 0 {
		skip("no cgroup is usable here: %v", live.Available())
	}
	var stale []string
	for _, d := range ours {
		s := filepath.Join(filepath.Dir(d), "butter-999999999")
		if err := os.MkdirAll(filepath.Join(s, "gone-1"), 0o755); err != nil {
			t.Fatal(err)
		}
		stale = append(stale, s)
	}
	next := discoverLimits(fs, string(self), os.Getpid())
	t.Cleanup(func() { next.releaseDirs() })
	for _, s := range stale {
		if _, err := os.Stat(s); !os.IsNotExist(err) {
			t.Errorf("%s, with an empty instance cgroup, not swept: %v", s, err)
			_ = os.Remove(filepath.Join(s, "gone-1"))
			_ = os.Remove(s)
		}
	}
	for _, d := range ours {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("the live pool's %s was swept: %v", d, err)
		}
	}
	if slices.Equal(next.instanceDirs(), ours) {
		t.Errorf("the second pool took the live pool's directories %q", ours)
	}
}

// instanceDirs are the directories holding this process's instance
// cgroups, one per hierarchy in use.
func (l *Limits) instanceDirs() []string {
	var ds []string
	for _, d := range []string{l.memRoot, l.pidsRoot, l.v2Dir} {
		if d != "" {
			ds = append(ds, d)
		}
	}
	return ds
}

// releaseDirs unlocks and removes the directories claim gave l, once
// empty: tests make several limiters in one process (a pool keeps its
// own for its life).
func (l *Limits) releaseDirs() {
	for _, fd := range l.held {
		_ = syscall.Close(fd)
	}
	l.held = nil
	for _, d := range l.instanceDirs() {
		clearStale(d)
		_ = os.Remove(d)
	}
}
