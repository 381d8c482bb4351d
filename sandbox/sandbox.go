// Package sandbox confines a function instance so that it cannot read
// what belongs to the pool or to its neighbours in the same pool: the
// task's secrets directory (Vault token, rendered secrets), other
// allocations' directories, and other processes' memory and environment.
//
// Packing many functions into one Nomad allocation means they share a user
// and a task directory, so file modes cannot separate them. The pool
// therefore starts each instance through a small shim, butter-sandbox (or `butter _sandbox`),
// which confines itself with Landlock (Linux 5.13+, unprivileged) and then
// executes the instance:
//
//   - Files: every path stays readable and writable except the hidden
//     trees (Hide), minus the paths inside them explicitly allowed again
//     (Allow); rules nest, and the most specific wins (a tree hidden
//     inside an allowed one is hidden). Landlock rules only grant, and a
//     grant covers a whole tree, so the shim grants each tree with no
//     rule beneath it and descends into the others (Grants). /dev is
//     hidden except its harmless nodes (null, zero, random, tty, pts,
//     shm ...).
//   - Processes: each instance is its own Landlock domain, and Landlock
//     refuses ptrace-class access from one domain to any process outside
//     it (or beneath it). Reading /proc/<pid>/environ, mem, fd or root of
//     a neighbouring instance or of the pool fails with EACCES, as does
//     signalling them where the kernel has Landlock ABI 6.
//   - Privileges: no_new_privs is set; an instance of a pool running as
//     root loses every capability (the bounding and ambient sets are
//     emptied before exec), so it cannot undo the rest.
//
// Every pool confines its instances this way (package plugins/pool):
// each function's instances also lose the other functions' bundles
// (ForFunction), and keep their own bundle, the SDKs, and the task's
// scratch directories (ForTask: under Nomad the task's local/ and tmp/
// and the allocation's shared alloc/, which every function of the pool
// shares; elsewhere the whole filesystem but the hidden trees, /tmp
// included). A function opts out with sandbox = false in its spec, which
// `butter validate` warns about and refuses next to secrets.
//
// The shim costs one extra exec per instance start, so per call for an
// exec function, which forks per call (BenchmarkStart
// measures it; no test asserts a duration). Available says whether the
// kernel supports Landlock; without it a pool with secrets refuses to
// start, and any other pool starts unconfined and says so in its log,
// its health and functions answers (pool.Pool.Warnings).
package sandbox

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/landlock-lsm/go-landlock/landlock"
	"golang.org/x/sys/unix"
)

// Command is the hidden subcommand of the butter binary that runs the
// shim (Main).
const Command = "_sandbox"

// ShimName is the small binary that runs only the shim
// (cmd/butter-sandbox). Beside the butter binary it is preferred: it
// starts in about a millisecond, where the butter binary's package
// initialisation alone takes about 14.
const ShimName = "butter-sandbox"

// Config says what an instance must not see.
type Config struct {
	// Exe runs the shim: a butter-sandbox binary, or a butter binary (any
	// other name, run with the _sandbox subcommand). "" uses the
	// butter-sandbox beside this process's executable if there is one,
	// and this executable otherwise.
	Exe string
	// Hide are trees the instance cannot read or write.
	Hide []string
	// Allow are paths inside hidden trees the instance may use after all
	// (its bundle, the SDKs, its scratch directory). An allowed path that
	// contains a hidden tree is ignored: it would grant the tree.
	Allow []string
}

// devAllowed are the nodes of /dev an instance keeps.
var devAllowed = []string{
	"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
	"/dev/tty", "/dev/ptmx", "/dev/pts", "/dev/shm", "/dev/fd",
	"/dev/stdin", "/dev/stdout", "/dev/stderr",
}

// Available reports whether this kernel can confine instances.
func Available() error {
	abi, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return fmt.Errorf("landlock is not available on this kernel (%v): functions with secrets need Linux 5.13 or later with landlock in the lsm= boot parameter", errno)
	}
	if abi < 1 {
		return errors.New("landlock ABI version 0")
	}
	return nil
}

// Wrap makes cmd run through the shim, confined by c. Call it before
// cmd.Start; cmd.Path, cmd.Args and cmd.Err are rewritten.
func Wrap(cmd *exec.Cmd, c Config) error {
	exe := c.Exe
	if exe == "" {
		var err error
		if exe, err = defaultExe(); err != nil {
			return err
		}
	}
	if cmd.Err != nil {
		return cmd.Err
	}
	args := []string{exe}
	if filepath.Base(exe) != ShimName {
		args = append(args, Command)
	}
	for _, h := range c.Hide {
		args = append(args, "-hide", h)
	}
	for _, a := range c.Allow {
		args = append(args, "-allow", a)
	}
	args = append(args, "--", cmd.Path)
	args = append(args, cmd.Args[1:]...)
	cmd.Path, cmd.Args = exe, args
	return nil
}

var (
	exeOnce sync.Once
	exePath string
	exeErr  error
)

// defaultExe is the butter-sandbox beside this executable, or this
// executable.
func defaultExe() (string, error) {
	exeOnce.Do(func() {
		self, err := os.Executable()
		if err != nil {
			exeErr = fmt.Errorf("sandbox: find the butter binary: %w", err)
			return
		}
		exePath = self
		sib := filepath.Join(filepath.Dir(self), ShimName)
		if fi, err := os.Stat(sib); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			exePath = sib
		}
	})
	return exePath, exeErr
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// Main is the shim: it parses args (without the subcommand), confines
// itself and executes the instance. It returns only on failure, with the
// exit code; the error goes to standard error, which the pool logs.
func Main(args []string) int {
	// Capabilities, no_new_privs and (without psx) the Landlock domain
	// are per thread: confine and exec on one thread, or the instance
	// runs with whatever another thread had.
	goruntime.LockOSThread()
	fs := flag.NewFlagSet(Command, flag.ContinueOnError)
	var c Config
	fs.Var((*multi)(&c.Hide), "hide", "a tree the instance cannot use (repeatable)")
	fs.Var((*multi)(&c.Allow), "allow", "a path inside a hidden tree the instance may use (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	argv := fs.Args()
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "butter _sandbox: no command to run after --")
		return 2
	}
	if err := Confine(c); err != nil {
		fmt.Fprintf(os.Stderr, "butter _sandbox: %v\n", err)
		return 1
	}
	err := syscall.Exec(argv[0], argv, os.Environ())
	fmt.Fprintf(os.Stderr, "butter _sandbox: exec %s: %v\n", argv[0], err)
	return 1
}

// Confine restricts the calling process (all its threads) as described in
// the package doc. It cannot be undone.
func Confine(c Config) error {
	if err := Available(); err != nil {
		return err
	}
	if err := dropCapabilities(); err != nil {
		return err
	}
	hide := append([]string{"/dev"}, c.Hide...)
	allow := append(append([]string(nil), devAllowed...), c.Allow...)
	// A granted path can vanish between Grants listing it and Landlock
	// opening it (a neighbour's temporary file in a shared directory):
	// the ruleset is then not applied yet, so list again and retry.
	for attempt := 1; ; attempt++ {
		dirs, files, err := Grants(hide, allow)
		if err != nil {
			return err
		}
		rules := []landlock.Rule{landlock.RWDirs(dirs...).WithIoctlDev().WithRefer(), landlock.RWFiles(files...).WithIoctlDev()}
		err = landlock.V11.BestEffort().RestrictPaths(rules...)
		if err == nil {
			break
		}
		if attempt < 10 && vanished(err) {
			continue
		}
		return fmt.Errorf("restrict paths: %w", err)
	}
	if err := landlock.V11.BestEffort().RestrictScoped(); err != nil {
		return fmt.Errorf("restrict signals: %w", err)
	}
	return nil
}

// vanished reports whether err is Landlock failing to open a path that no
// longer exists.
func vanished(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOENT) || strings.Contains(err.Error(), "no such file or directory")
}

// Grants computes the Landlock grants that leave everything usable but
// the hidden trees, and the allowed paths inside them: directories and
// other files, each list sorted. Rules nest, and the most specific wins:
// a tree allowed inside a hidden one is usable, a tree hidden inside that
// is not (a pool's task directory is allowed inside the hidden
// allocations, and a neighbour's bundle is hidden inside it). Paths that
// do not exist are skipped. Landlock rules only grant, and a grant covers
// a whole tree, so a directory with a rule beneath it is not granted
// itself: its entries are, each by the same reasoning. A symbolic link
// along the way is granted only where its target could be.
func Grants(hide, allow []string) (dirs, files []string, err error) {
	rules := map[string]bool{} // canonical path -> hidden
	for _, set := range []struct {
		paths  []string
		hidden bool
		what   string
	}{{hide, true, "hide"}, {allow, false, "allow"}} {
		for _, h := range set.paths {
			p, err := canonical(h)
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					continue
				}
				return nil, nil, fmt.Errorf("%s %s: %w", set.what, h, err)
			}
			if prev, ok := rules[p]; ok && prev != set.hidden {
				// Hidden and allowed: hiding wins, as it did when an
				// allowed ancestor of a hidden tree was ignored.
				rules[p] = true
				continue
			}
			rules[p] = set.hidden
		}
	}
	within := func(p, dir string) bool {
		return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
	}
	// A rule that says what its tree would be anyway (an allowed path
	// outside every hidden tree, like /dev/fd's target /proc/<pid>/fd) is
	// dropped: it would only make the walk descend, into /proc's
	// processes, which come and go.
	var redundant []string
	for r, rh := range rules {
		best, inherited := "", false
		for a, ah := range rules {
			if a != r && within(r, a) && len(a) >= len(best) {
				best, inherited = a, ah
			}
		}
		if rh == inherited {
			redundant = append(redundant, r)
		}
	}
	for _, r := range redundant {
		delete(rules, r)
	}
	// hidden is p's own state: that of the most specific rule over it.
	hidden := func(p string) bool {
		best, h := "", false
		for r, rh := range rules {
			if within(p, r) && len(r) >= len(best) {
				best, h = r, rh
			}
		}
		return h
	}
	// ruled reports whether a rule sits strictly beneath p.
	ruled := func(p string) bool {
		for r := range rules {
			if r != p && within(r, p) {
				return true
			}
		}
		return false
	}
	// wholly reports whether the tree at p can be granted whole.
	wholly := func(p string) bool { return !hidden(p) && !ruled(p) }
	seen := map[string]bool{}
	var visit func(p string) error
	visit = func(p string) error {
		if seen[p] {
			return nil
		}
		seen[p] = true
		fi, err := os.Lstat(p)
		if err != nil {
			return nil // vanished, or never there
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			target, err := filepath.EvalSymlinks(p)
			if err != nil || !wholly(target) {
				return nil
			}
			if ti, err := os.Stat(p); err == nil && ti.IsDir() {
				dirs = append(dirs, p)
			} else if err == nil {
				files = append(files, p)
			}
			return nil
		}
		if !ruled(p) {
			if hidden(p) {
				return nil
			}
			if fi.IsDir() {
				dirs = append(dirs, p)
			} else {
				files = append(files, p)
			}
			return nil
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return fmt.Errorf("list %s: %w", p, err)
		}
		for _, e := range entries {
			if err := visit(filepath.Join(p, e.Name())); err != nil {
				return err
			}
		}
		return nil
	}
	if len(rules) > 0 {
		if err := visit("/"); err != nil {
			return nil, nil, err
		}
	}
	sort.Strings(dirs)
	sort.Strings(files)
	return dirs, files, nil
}

func canonical(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}

// dropCapabilities empties the bounding and ambient capability sets, so
// that the executed instance has no capability even as root, and sets
// no_new_privs. Without CAP_SETPCAP (not root) there is nothing to drop.
func dropCapabilities() error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	if os.Geteuid() != 0 {
		return nil
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	// Root's permitted set after exec is (inheritable & all) | (all &
	// bounding) | ambient: all three must be empty.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clear inheritable capabilities: %w", err)
	}
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("drop capability %d: %w", c, err)
		}
	}
	return nil
}
