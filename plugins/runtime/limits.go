package runtime

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/butterfn/butter/sandbox"
)

// Limits applies per-instance memory and process limits with cgroups: each
// instance gets a child of the pool's own cgroup in the cgroup v1 memory
// and pids hierarchies (a host with the unified v2 hierarchy alone gets no
// per-instance limits: Available says so). A process over its memory limit is killed by the kernel,
// and the pool replaces it like any crashed instance.
//
// When the pool cannot create cgroups (not root, read-only cgroupfs), the
// limits are not applied: Available says so, and the pool logs it.
type Limits struct {
	memRoot, pidsRoot string // the pool's own cgroup dirs; "" when unusable
	seq               atomic.Uint64
	err               error
}

var (
	limitsOnce sync.Once
	limits     *Limits
)

// SystemLimits returns the limiter for this process, discovering its
// cgroups once.
func SystemLimits() *Limits {
	limitsOnce.Do(func() { limits = discoverLimits() })
	return limits
}

func discoverLimits() *Limits {
	l := &Limits{}
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		l.err = err
		return l
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			switch c {
			case "memory":
				l.memRoot = usable(filepath.Join("/sys/fs/cgroup/memory", parts[2]))
			case "pids":
				l.pidsRoot = usable(filepath.Join("/sys/fs/cgroup/pids", parts[2]))
			}
		}
	}
	if l.memRoot == "" && l.pidsRoot == "" {
		l.err = fmt.Errorf("no writable memory or pids cgroup for this process")
	}
	return l
}

// usable returns a directory for butter's instance cgroups under dir, or
// "" when it cannot be created.
func usable(dir string) string {
	d := filepath.Join(dir, fmt.Sprintf("butter-%d", os.Getpid()))
	if err := os.MkdirAll(d, 0o755); err != nil {
		return ""
	}
	return d
}

// Available reports whether limits are applied, and why not.
func (l *Limits) Available() error { return l.err }

// Apply puts pid in a new cgroup limited to memMiB of memory (0: no limit)
// and maxProcs processes (0: no limit). The returned cleanup removes the
// cgroup once the process has exited.
func (l *Limits) Apply(pid int, name string, memMiB int, maxProcs int) (cleanup func(), err error) {
	if l == nil || l.err != nil {
		return func() {}, nil
	}
	id := fmt.Sprintf("%s-%d", name, l.seq.Add(1))
	var dirs []string
	add := func(root, file string, value string) error {
		if root == "" {
			return nil
		}
		d := filepath.Join(root, id)
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
		dirs = append(dirs, d)
		if err := os.WriteFile(filepath.Join(d, file), []byte(value), 0o644); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
	}
	cleanup = func() {
		for _, d := range dirs {
			_ = os.Remove(d)
		}
	}
	if memMiB > 0 {
		if err := add(l.memRoot, "memory.limit_in_bytes", strconv.Itoa(memMiB<<20)); err != nil {
			cleanup()
			return func() {}, fmt.Errorf("memory limit: %w", err)
		}
	}
	if maxProcs > 0 {
		if err := add(l.pidsRoot, "pids.max", strconv.Itoa(maxProcs)); err != nil {
			cleanup()
			return func() {}, fmt.Errorf("process limit: %w", err)
		}
	}
	return cleanup, nil
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
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	if fn.MaxOpenFiles > 0 {
		lim := unix.Rlimit{Cur: fn.MaxOpenFiles, Max: fn.MaxOpenFiles}
		_ = unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_NOFILE, &lim, nil)
	}
	release, err = fn.Limits.Apply(cmd.Process.Pid, fn.Name, fn.MemoryMiB, fn.MaxProcs)
	if err != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		return nil, fmt.Errorf("limit %s: %w", fn.Name, err)
	}
	return release, nil
}
