// Package nomadtest starts a real Nomad agent (`nomad agent -dev`, from
// the build pinned in tools/) for tests, on free ports on 127.0.0.1, and
// stops it when the test ends.
//
// The agent binary is bin/nomad at the repository root, built by
// `make tools`, or the path in $BUTTER_NOMAD. When it is missing, tests
// fail under `make test` (which sets BUTTER_REQUIRE_NOMAD=1) and in CI,
// and are skipped with a hint otherwise.
package nomadtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/butterfn/butter/internal/testport"
)

// Agent is a running Nomad dev agent.
type Agent struct {
	// Addr is the agent's HTTP address, like http://127.0.0.1:43123.
	Addr string
	// Bin is the nomad binary.
	Bin    string
	Client *api.Client
	log    *SyncBuffer

	dir    string
	args   []string
	opts   Options
	cmd    *exec.Cmd
	exited chan error
}

// RepoRoot returns the repository root: the nearest directory above the
// working directory that holds tools/go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "tools", "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("repository root not found above the working directory")
		}
		dir = parent
	}
}

// Binary returns the nomad binary, failing or skipping the test when it
// is missing (see the package doc).
func Binary(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("BUTTER_NOMAD")
	if bin == "" {
		bin = filepath.Join(RepoRoot(t), "bin", "nomad")
	}
	if _, err := os.Stat(bin); err != nil {
		msg := fmt.Sprintf("nomad binary %s not found: run `make tools` first", bin)
		if os.Getenv("BUTTER_REQUIRE_NOMAD") != "" || os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

func freePort(t testing.TB) int { return testport.Port(t) }

// Options add to the agent's configuration.
type Options struct {
	// PluginDir is the client's plugin_dir.
	PluginDir string
	// HCL is appended to the agent config, for plugin blocks and the like.
	HCL string
	// Persistent runs a real agent (server and client) with a data dir
	// instead of -dev, so that Restart keeps its allocations.
	Persistent bool
	// NodeReady, if set, must hold for the client node before Start
	// returns (a driver fingerprinted healthy, say).
	NodeReady func(*api.Node) bool
}

// Start starts a dev agent (server and client) and waits until it has a
// leader and a ready client node. The agent is stopped when the test ends.
func Start(t testing.TB) *Agent { return StartWith(t, Options{}) }

// StartWith starts an agent with extra configuration.
func StartWith(t testing.TB, opts Options) *Agent {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	http, rpc, serf := freePort(t), freePort(t), freePort(t)
	// The cloud fingerprinters hang or fail here (AWS_CA_BUNDLE is set in
	// this environment and no metadata service answers): deny them.
	cfg := fmt.Sprintf(`
bind_addr = "127.0.0.1"
ports {
  http = %d
  rpc  = %d
  serf = %d
}
client {
  enabled = true
  options = {
    "fingerprint.denylist" = "env_aws,env_gce,env_azure,env_digitalocean"
  }
}
`, http, rpc, serf)
	args := []string{"agent", "-dev"}
	if opts.Persistent {
		// A real agent (server and client in one) with its state on disk,
		// so that it can restart and recover its allocations. Nomad wants
		// an explicit advertise address when bound to loopback.
		cfg += fmt.Sprintf(`
data_dir = %q
advertise {
  http = "127.0.0.1"
  rpc  = "127.0.0.1"
  serf = "127.0.0.1"
}
server {
  enabled          = true
  bootstrap_expect = 1
}
`, filepath.Join(dir, "data"))
		args = []string{"agent"}
	}
	if opts.PluginDir != "" {
		cfg += fmt.Sprintf("plugin_dir = %q\n", opts.PluginDir)
	}
	cfg += opts.HCL
	cfgPath := filepath.Join(dir, "agent.hcl")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	a := &Agent{Addr: fmt.Sprintf("http://127.0.0.1:%d", http), Bin: bin, log: &SyncBuffer{}, dir: dir, args: append(args, "-config", cfgPath), opts: opts}
	client, err := api.NewClient(&api.Config{Address: a.Addr})
	if err != nil {
		t.Fatal(err)
	}
	a.Client = client
	a.start(t)
	t.Cleanup(func() {
		if a.opts.Persistent {
			// A real agent leaves its tasks running when it stops: stop
			// them first, so that no pool outlives the test.
			a.stopJobs(t)
		}
		a.stop()
		if a.opts.Persistent {
			unmountUnder(t, dir)
		}
		if t.Failed() {
			t.Logf("nomad agent log (tail):\n%s", tail(a.log.String(), 6000))
		}
	})
	return a
}

// start runs the agent process and waits until it is ready.
func (a *Agent) start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(a.Bin, a.args...)
	cmd.Dir = a.dir
	cmd.Stdout = a.log
	cmd.Stderr = a.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nomad agent: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	a.cmd, a.exited = cmd, exited

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for {
		leader, err := a.Client.Status().Leader()
		if err == nil && leader != "" {
			nodes, _, err := a.Client.Nodes().List(nil)
			if err == nil && len(nodes) > 0 && nodes[0].Status == "ready" {
				if a.opts.NodeReady == nil {
					return
				}
				if node, _, err := a.Client.Nodes().Info(nodes[0].ID, nil); err == nil && a.opts.NodeReady(node) {
					return
				}
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("nomad agent exited before it was ready: %v\n%s", err, tail(a.log.String(), 6000))
		case <-ctx.Done():
			t.Fatalf("nomad agent not ready after 90s:\n%s", tail(a.log.String(), 6000))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stop interrupts the agent (a graceful shutdown that leaves its tasks
// running) and waits for it to exit.
func (a *Agent) stop() {
	if a.cmd == nil {
		return
	}
	_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-a.exited:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
		<-a.exited
	}
	a.cmd = nil
}

// Restart stops the agent gracefully and starts it again with the same
// configuration and data dir. Only a Persistent agent keeps its state.
func (a *Agent) Restart(t testing.TB) {
	t.Helper()
	a.stop()
	a.start(t)
}

// Run runs the nomad CLI against the agent and returns its combined
// output and exit code.
func (a *Agent) Run(t testing.TB, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(a.Bin, args...)
	cmd.Env = append(os.Environ(), "NOMAD_ADDR="+a.Addr)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("nomad %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return string(out), code
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// stopJobs deregisters every job and waits for their allocations to stop.
func (a *Agent) stopJobs(t testing.TB) {
	if a.cmd == nil {
		return
	}
	jobs, _, err := a.Client.Jobs().List(nil)
	if err != nil {
		t.Logf("list jobs: %v", err)
		return
	}
	for _, j := range jobs {
		_, _, _ = a.Client.Jobs().Deregister(j.ID, true, nil)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		allocs, _, err := a.Client.Allocations().List(nil)
		running := 0
		for _, al := range allocs {
			if al.ClientStatus == "running" || al.ClientStatus == "pending" {
				running++
			}
		}
		if err == nil && running == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Errorf("allocations still running 60s after their jobs were stopped")
}

// unmountUnder unmounts what a real client mounted under dir (the tmpfs of
// each task's secrets dir), so that the test's temp dir can be removed.
func unmountUnder(t testing.TB, dir string) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasPrefix(f[1], dir) {
			if err := syscall.Unmount(f[1], syscall.MNT_DETACH); err != nil {
				t.Logf("unmount %s: %v", f[1], err)
			}
		}
	}
}

// PluginDir returns the agent's plugin_dir ("" if none).
func (a *Agent) PluginDir() string { return a.opts.PluginDir }

// Log returns what the agent has printed so far.
func (a *Agent) Log() string { return a.log.String() }

// SyncBuffer is a bytes.Buffer safe for a child process's output
// goroutines and a test reading it at once.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *SyncBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *SyncBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
