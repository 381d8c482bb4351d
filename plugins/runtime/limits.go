package runtime

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/butterfn/butter/sandbox"
)

// Limits applies per-instance memory and process limits with cgroups,
// version 1 or 2, whichever serves the memory and pids controllers to
// this process:
//
//   - cgroup v1 (a memory and a pids hierarchy, also on hybrid hosts where
//     v1 owns those controllers): each instance gets a child of the pool's
//     own cgroup in each hierarchy, with memory.limit_in_bytes and
//     pids.max, and starts in them (the forking thread moves into them
//     for the fork, start).
//   - cgroup v2 (the unified hierarchy offers memory and pids): the pool
//     moves itself into a leaf, butter-pool-<pid>, of its own cgroup when
//     needed (a cgroup that delegates controllers to children may hold no
//     process), enables the controllers for butter-<pid>, and starts each
//     instance straight into a child of that (clone3 with
//     CLONE_INTO_CGROUP, so not even its first instruction runs outside),
//     with memory.max, memory.swap.max 0, memory.oom.group 1 and
//     pids.max.
//
// Each process's instance cgroups live under its butter-<pid> directory
// (in each v1 hierarchy, or once on v2), which the process holds with
// flock(2) for its life (claim): the kernel drops the lock when the
// process ends, however it ends and in whatever pid namespace it ran. At
// start, a process removes the butter-* directories beside its own whose
// lock it can take (sweep): their owner is gone, and a SIGKILLed pool, or
// any pool before 2026-12-05, left them behind (a CI machine had 1,142
// under one cgroup). Only empty cgroups can be removed: a directory with a
// cgroup still populated stays, for a later sweep.
//
// A process over its memory limit is killed by the kernel, and the pool
// replaces it like any crashed instance; a fork past the process limit
// fails with EAGAIN. An instance's cgroups are removed once it has
// exited (on v2 after cgroup.kill ends any process it left behind).
//
// When neither version can be used (not root, read-only cgroupfs, a v2
// hierarchy without the controllers), the limits are not applied: Off says
// which limit is not enforced and why, and the pool logs it at start and
// reports it in its warnings.
type Limits struct {
	version           int    // 1, 2, or 0 when none applies
	memRoot, pidsRoot string // v1: the instances' parent dirs; "" when unusable
	v2Dir             string // v2: the instances' parent dir
	v2Ctrls           map[string]bool
	seq               atomic.Uint64
	err               error
	off               []string
	// held are the locked butter-<pid> directories (claim), open for the
	// process's life.
	held []int
}

var (
	limitsOnce sync.Once
	limits     *Limits
)

// SystemLimits returns the limiter for this process, discovering its
// cgroups once.
func SystemLimits() *Limits {
	limitsOnce.Do(func() {
		self, err := os.ReadFile("/proc/self/cgroup")
		if err != nil {
			limits = &Limits{err: fmt.Errorf("read /proc/self/cgroup: %w", err)}
			limits.off = []string{"memory and process limits are not enforced: " + limits.err.Error()}
			return
		}
		limits = discoverLimits(cgroupFS{root: "/sys/fs/cgroup", isV2: isCgroup2}, string(self), os.Getpid())
	})
	return limits
}

// cgroupFS is where the cgroup hierarchies are mounted: /sys/fs/cgroup,
// or in tests a directory laid out like it, with isV2 saying which
// directories are cgroup2 mounts.
type cgroupFS struct {
	root string
	isV2 func(dir string) bool
}

// isCgroup2 reports whether dir is a cgroup2 mount, by its statfs magic.
func isCgroup2(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// discoverLimits finds the cgroups of the process pid whose
// /proc/<pid>/cgroup is self: v1 when a v1 hierarchy serves memory or
// pids, v2 otherwise.
func discoverLimits(fs cgroupFS, self string, pid int) *Limits {
	l := &Limits{}
	var memPath, pidsPath, v2Path string
	hasV2 := false
	for _, line := range strings.Split(self, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2Path, hasV2 = parts[2], true
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			switch c {
			case "memory":
				memPath = parts[2]
			case "pids":
				pidsPath = parts[2]
			}
		}
	}
	var why []string
	if memPath != "" {
		l.memRoot, why = l.usable(filepath.Join(fs.root, "memory", memPath), pid, why)
	}
	if pidsPath != "" {
		l.pidsRoot, why = l.usable(filepath.Join(fs.root, "pids", pidsPath), pid, why)
	}
	if l.memRoot != "" || l.pidsRoot != "" {
		l.version = 1
		if l.memRoot == "" {
			l.off = append(l.off, "memory limit not enforced: "+reason(why, "no cgroup v1 memory hierarchy holds this process"))
		}
		if l.pidsRoot == "" {
			l.off = append(l.off, "process limit not enforced: "+reason(why, "no cgroup v1 pids hierarchy holds this process"))
		}
		return l
	}
	unified := ""
	switch {
	case !hasV2:
	case fs.isV2(fs.root):
		unified = fs.root
	case fs.isV2(filepath.Join(fs.root, "unified")):
		unified = filepath.Join(fs.root, "unified")
	}
	if unified == "" {
		l.err = fmt.Errorf("no cgroup v1 memory or pids hierarchy is usable, and no cgroup v2 hierarchy is mounted at %s or %s/unified%s", fs.root, fs.root, reasonSuffix(why))
	} else if err := l.setupV2(filepath.Join(unified, v2Path), pid); err != nil {
		l.err = fmt.Errorf("no cgroup v1 memory or pids hierarchy is usable, and cgroup v2 cannot be used: %w%s", err, reasonSuffix(why))
	} else {
		l.version = 2
		for _, c := range []string{"memory", "pids"} {
			if !l.v2Ctrls[c] {
				what := map[string]string{"memory": "memory limit", "pids": "process limit"}[c]
				l.off = append(l.off, fmt.Sprintf("%s not enforced: the cgroup v2 hierarchy does not offer the %s controller to %s", what, c, filepath.Join(unified, v2Path)))
			}
		}
		return l
	}
	l.off = []string{"memory and process limits are not enforced: " + l.err.Error()}
	return l
}

func reason(why []string, def string) string {
	for _, w := range why {
		if w != "" {
			return w
		}
	}
	return def
}

func reasonSuffix(why []string) string {
	if r := reason(why, ""); r != "" {
		return " (" + r + ")"
	}
	return ""
}

// usable returns a directory for butter's instance cgroups under dir, or
// "" and why it cannot be created.
func (l *Limits) usable(dir string, pid int, why []string) (string, []string) {
	d, err := l.claim(dir, pid)
	if err != nil {
		return "", append(why, err.Error())
	}
	sweep(dir, d)
	clearStale(d)
	return d, why
}

// claim creates and locks this process's directory for its instance
// cgroups under parent: butter-<pid>, or butter-<pid>-<n> when a live
// process holds that one (one of another pid namespace with the same
// pid). The lock is held until the process ends.
func (l *Limits) claim(parent string, pid int) (string, error) {
	for n := 0; n < maxNameTries; n++ {
		name := fmt.Sprintf("butter-%d", pid)
		if n > 0 {
			name = fmt.Sprintf("butter-%d-%d", pid, n)
		}
		d := filepath.Join(parent, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", fmt.Errorf("cannot create %s: %w", d, err)
		}
		fd, err := lockDir(d)
		if err == nil {
			l.held = append(l.held, fd)
			return d, nil
		}
		// Held by a live process, or swept away by another one between
		// the two calls (ENOENT): the next name.
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.ENOENT) {
			return "", fmt.Errorf("cannot lock %s: %w", d, err)
		}
	}
	return "", fmt.Errorf("cannot claim a directory for instance cgroups in %s: the %d names tried are held by live processes", parent, maxNameTries)
}

// lockDir opens directory d and takes its flock without waiting.
func lockDir(d string) (int, error) {
	fd, err := unix.Open(d, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// sweep removes the instance-cgroup directories in parent, but own, whose
// owner is gone: each butter-<pid>[-<n>] whose lock it can take and whose
// pid no process of this pid namespace has, its empty cgroups first, and
// the butter-pool-<pid> leaf of the same pid on v2, which a gone pool
// leaves empty. One held by a live process is left alone, and so is a
// cgroup still populated (rmdir refuses it).
func sweep(parent, own string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		d := filepath.Join(parent, e.Name())
		pid, ok := instancesDirPid(e.Name())
		if !e.IsDir() || !ok || d == own {
			continue
		}
		if pidAlive(pid) {
			// A process has this pid here: maybe its owner, of a
			// version that took no lock (before 2026-12-05), which
			// would not survive losing the directory.
			continue
		}
		fd, err := lockDir(d)
		if err != nil {
			continue // its owner lives, or it is gone already
		}
		clearStale(d)
		_ = os.Remove(d)
		_ = os.Remove(filepath.Join(parent, fmt.Sprintf("butter-pool-%d", pid)))
		_ = unix.Close(fd)
	}
}

// pidAlive reports whether a process of this pid namespace has pid.
func pidAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// instancesDirPid returns the pid in the name of an instance-cgroup
// directory, butter-<pid> or butter-<pid>-<n>, and whether it is one.
func instancesDirPid(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, "butter-")
	if !ok {
		return 0, false
	}
	pid, n, hasN := strings.Cut(rest, "-")
	p, err := strconv.ParseUint(pid, 10, 31)
	if err != nil {
		return 0, false
	}
	if _, err := strconv.ParseUint(n, 10, 31); hasN && err != nil {
		return 0, false
	}
	return int(p), true
}

// clearStale removes the instance cgroups left in d, a butter-<pid>
// directory, by an earlier process that had this process's pid and was
// killed before it could remove them (SIGKILL leaves them behind). Only
// empty cgroups can be removed: one still holding processes stays.
// prepare skips any name still taken.
func clearStale(d string) {
	entries, err := os.ReadDir(d)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.IsDir() {
			_ = os.Remove(filepath.Join(d, e.Name()))
		}
	}
}

// setupV2 prepares the cgroup v2 directory own, this process's cgroup,
// to hold the instances' cgroups under butter-<pid>, with the memory and
// pids controllers it offers enabled.
func (l *Limits) setupV2(own string, pid int) error {
	offered, err := os.ReadFile(filepath.Join(own, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("read the controllers of %s: %w", own, err)
	}
	l.v2Ctrls = map[string]bool{}
	var enable []string
	for _, c := range strings.Fields(string(offered)) {
		if c == "memory" || c == "pids" {
			l.v2Ctrls[c] = true
			enable = append(enable, "+"+c)
		}
	}
	if len(enable) == 0 {
		return fmt.Errorf("%s offers neither the memory nor the pids controller (cgroup.controllers: %q): enable them in its parent's cgroup.subtree_control, or delegate them to the pool (systemd Delegate=yes)", own, strings.TrimSpace(string(offered)))
	}
	// Unreadable, it counts as enabling nothing: the write below says
	// whether the controllers can be enabled.
	sub, _ := os.ReadFile(filepath.Join(own, "cgroup.subtree_control"))
	enabled := strings.Fields(string(sub))
	missing := false
	for c := range l.v2Ctrls {
		missing = missing || !slices.Contains(enabled, c)
	}
	if missing {
		// A cgroup that enables controllers for its children may hold no
		// process: move this one into a leaf first.
		leaf := filepath.Join(own, fmt.Sprintf("butter-pool-%d", pid))
		if err := os.Mkdir(leaf, 0o755); err != nil && !os.IsExist(err) {
			return fmt.Errorf("create %s: %w", leaf, err)
		}
		if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			_ = os.Remove(leaf)
			return fmt.Errorf("move the pool into %s: %w", leaf, err)
		}
		if err := os.WriteFile(filepath.Join(own, "cgroup.subtree_control"), []byte(strings.Join(enable, " ")), 0o644); err != nil {
			// Put the pool back where it was. (RemoveAll removes a
			// cgroup at its first rmdir; the interface files go with it.)
			_ = os.WriteFile(filepath.Join(own, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
			_ = os.RemoveAll(leaf)
			return fmt.Errorf("enable %s in %s/cgroup.subtree_control (other processes in %s keep it from delegating): %w", strings.Join(enable, " "), own, own, err)
		}
	}
	dir, err := l.claim(own, pid)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(strings.Join(enable, " ")), 0o644); err != nil {
		return fmt.Errorf("enable %s in %s/cgroup.subtree_control: %w", strings.Join(enable, " "), dir, err)
	}
	sweep(own, dir)
	clearStale(dir)
	l.v2Dir = dir
	return nil
}

// Available reports whether any limit is applied, and why not.
func (l *Limits) Available() error { return l.err }

// Version is the cgroup version that applies the limits: 1, 2, or 0 when
// none does.
func (l *Limits) Version() int { return l.version }

// Off says which limits are not enforced and why, one sentence each;
// none when both are.
func (l *Limits) Off() []string { return append([]string(nil), l.off...) }

// instanceCgroup is one instance's cgroups.
type instanceCgroup struct {
	l    *Limits
	dirs []string
	fd   int // v2: the open cgroup directory for CLONE_INTO_CGROUP; -1 otherwise
	id   string
}

// prepare creates an instance's cgroup before it starts: on v2, with its
// limits written, opened for CLONE_INTO_CGROUP. nil when no limit applies.
func (l *Limits) prepare(name string, memMiB, maxProcs int) (*instanceCgroup, error) {
	if l == nil || l.version == 0 || (memMiB <= 0 && maxProcs <= 0) {
		return nil, nil
	}
	// A name taken by a cgroup an earlier process with this pid left
	// behind, still populated (clearStale), is skipped.
	for tries := 1; ; tries++ {
		ic, err := l.prepareNamed(fmt.Sprintf("%s-%d", name, l.seq.Add(1)), memMiB, maxProcs)
		if errors.Is(err, os.ErrExist) && tries < maxNameTries {
			continue
		}
		return ic, err
	}
}

// maxNameTries bounds the names prepare tries for an instance's cgroup.
const maxNameTries = 100

// prepareNamed creates the instance cgroup id (prepare).
func (l *Limits) prepareNamed(id string, memMiB, maxProcs int) (*instanceCgroup, error) {
	ic := &instanceCgroup{l: l, fd: -1, id: id}
	if l.version == 1 {
		if err := ic.prepareV1(memMiB, maxProcs); err != nil {
			ic.release()
			return nil, err
		}
		return ic, nil
	}
	d := filepath.Join(l.v2Dir, ic.id)
	if err := os.Mkdir(d, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", d, err)
	}
	ic.dirs = []string{d}
	write := func(file, value string) error {
		if err := os.WriteFile(filepath.Join(d, file), []byte(value), 0o644); err != nil {
			return fmt.Errorf("write %s to %s/%s: %w", value, d, file, err)
		}
		return nil
	}
	var err error
	if memMiB > 0 && l.v2Ctrls["memory"] {
		err = errors.Join(write("memory.max", strconv.Itoa(memMiB<<20)), write("memory.oom.group", "1"))
		if _, serr := os.Stat(filepath.Join(d, "memory.swap.max")); serr == nil && err == nil {
			err = write("memory.swap.max", "0")
		}
	}
	if err == nil && maxProcs > 0 && l.v2Ctrls["pids"] {
		err = write("pids.max", strconv.Itoa(maxProcs))
	}
	if err == nil {
		ic.fd, err = unix.Open(d, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			err = fmt.Errorf("open cgroup %s: %w", d, err)
		}
	}
	if err != nil {
		ic.release()
		return nil, err
	}
	return ic, nil
}

// prepareV1 creates the instance's v1 cgroups with their limits.
func (ic *instanceCgroup) prepareV1(memMiB, maxProcs int) error {
	add := func(root, file, value string) error {
		if root == "" {
			return nil
		}
		d := filepath.Join(root, ic.id)
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("create cgroup %s: %w", d, err)
		}
		ic.dirs = append(ic.dirs, d)
		if err := os.WriteFile(filepath.Join(d, file), []byte(value), 0o644); err != nil {
			return fmt.Errorf("write %s to %s/%s: %w", value, d, file, err)
		}
		return nil
	}
	if memMiB > 0 {
		if err := add(ic.l.memRoot, "memory.limit_in_bytes", strconv.Itoa(memMiB<<20)); err != nil {
			return fmt.Errorf("memory limit: %w", err)
		}
	}
	if maxProcs > 0 {
		if err := add(ic.l.pidsRoot, "pids.max", strconv.Itoa(maxProcs)); err != nil {
			return fmt.Errorf("process limit: %w", err)
		}
	}
	return nil
}

// start starts cmd inside the instance's cgroups, so that not even its
// first fork happens outside them. On v2 the kernel places it
// (CLONE_INTO_CGROUP). On v1, where a process can only be moved once it
// runs (and a fork bomb would fork before), the forking thread moves
// itself into the cgroups (v1's tasks file moves one thread), forks, and
// moves back: a child starts in its parent thread's cgroups. Should it
// fail to move back, the thread stays locked to this goroutine and the
// error says so; the caller kills the process.
func (ic *instanceCgroup) start(cmd *exec.Cmd) error {
	if ic == nil {
		return cmd.Start()
	}
	if ic.l.version == 2 {
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, ic.fd
		err := cmd.Start()
		_ = unix.Close(ic.fd)
		ic.fd = -1
		return err
	}
	goruntime.LockOSThread()
	tid := []byte(strconv.Itoa(unix.Gettid()))
	var moved []string // the cgroups the thread came from
	back := func() error {
		var errs []error
		for _, from := range moved {
			if err := os.WriteFile(filepath.Join(from, "tasks"), tid, 0o644); err != nil {
				errs = append(errs, fmt.Errorf("move the starting thread back to %s: %w", from, err))
			}
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
		goruntime.UnlockOSThread()
		return nil
	}
	for _, d := range ic.dirs {
		if err := os.WriteFile(filepath.Join(d, "tasks"), tid, 0o644); err != nil {
			return errors.Join(fmt.Errorf("move the starting thread into %s: %w", d, err), back())
		}
		// d is <own cgroup>/butter-<pid>/<instance>.
		moved = append(moved, filepath.Dir(filepath.Dir(d)))
	}
	err := cmd.Start()
	return errors.Join(err, back())
}

// release removes the instance's cgroups; call it once the process has
// exited. A populated cgroup cannot be removed, so it first kills
// whatever the instance left running (its children that outlived it):
// on v2 with cgroup.kill (Linux 5.14+), on v1 each process in
// cgroup.procs; a cgroup whose processes are not gone yet is removed in
// the background once they are.
func (ic *instanceCgroup) release() {
	if ic == nil {
		return
	}
	if ic.fd >= 0 {
		_ = unix.Close(ic.fd)
		ic.fd = -1
	}
	for _, d := range ic.dirs {
		if ic.l.version == 2 {
			_ = os.WriteFile(filepath.Join(d, "cgroup.kill"), []byte("1"), 0o644)
		} else if b, err := os.ReadFile(filepath.Join(d, "cgroup.procs")); err == nil {
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
			go removeWhenEmpty(d)
		}
	}
}

// removeWhenEmpty removes a cgroup once the processes killed in it are
// gone. It gives up after 30s.
func removeWhenEmpty(d string) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if err := os.Remove(d); err == nil || os.IsNotExist(err) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startLimited starts cmd in a process group of its own, confined by the
// function's sandbox if it has one, and applies the
// function's per-instance limits (open files, memory, processes). On a
// limit failure the process is killed and reaped. release removes the
// instance's cgroups; call it once the process has exited.
func startLimited(cmd *exec.Cmd, fn *Function) (release func(), err error) {
	if fn.Sandbox != nil {
		if err := sandbox.Wrap(cmd, *fn.Sandbox); err != nil {
			return nil, err
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cg, err := fn.Limits.prepare(fn.Name, fn.MemoryMiB, fn.MaxProcs)
	if err != nil {
		return nil, fmt.Errorf("limit %s: %w", fn.Name, err)
	}
	if err := cg.start(cmd); err != nil {
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
		}
		cg.release()
		return nil, err
	}
	if fn.MaxOpenFiles > 0 {
		lim := unix.Rlimit{Cur: fn.MaxOpenFiles, Max: fn.MaxOpenFiles}
		_ = unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_NOFILE, &lim, nil)
	}
	if cg == nil {
		return func() {}, nil
	}
	return cg.release, nil
}
