// Package nomadtest starts a real Nomad agent (`nomad agent -dev`, from
// the build pinned in tools/) for tests, on free ports on 127.0.0.1, and
// stops it when the test ends. With Options.Persistent it starts a real
// one-node cluster instead, a server agent and a client agent, whose
// client can restart and recover its allocations. StartCluster starts a
// cluster of one server agent and several client agents on this machine
// (cluster.go), whose clients a test can kill as a lost node dies.
//
// The agent binary is bin/nomad at the repository root, built by
// `make tools`, or the path in $BUTTER_NOMAD. When it is missing, tests
// fail under `make test` (which sets BUTTER_REQUIRE_NOMAD=1) and in CI,
// and are skipped with a hint otherwise.
package nomadtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/butterfn/butter/internal/testlog"
	"github.com/butterfn/butter/internal/testport"
)

// Agent is a running Nomad cluster of one node: a dev agent (server and
// client in one process), or, with Options.Persistent, a server agent and
// a client agent in two processes.
type Agent struct {
	// Addr is the HTTP address of the agent that serves the cluster's API
	// (the server), like http://127.0.0.1:43123.
	Addr string
	// Bin is the nomad binary.
	Bin string
	// Client is an API client of the server; with Options.ACL, it carries
	// the management token.
	Client *api.Client
	// ManagementToken is the secret ID of the management token that
	// `nomad acl bootstrap` returned, with Options.ACL; empty otherwise.
	ManagementToken string

	dir  string
	opts Options
	// allocDir is a dev agent's alloc_dir, a temporary directory of its
	// own outside dir: its allocations' tasks run there.
	allocDir string
	server   *proc // nil for a dev agent
	client   *proc // the client agent (a cluster's first), or the dev agent
	// clients are every client agent of a cluster (StartCluster); nil
	// otherwise.
	clients []*proc
}

// proc is one nomad agent process.
type proc struct {
	name   string
	args   []string
	addr   string // its HTTP address
	api    *api.Client
	log    *testlog.Buffer
	cmd    *exec.Cmd
	exited chan error

	rpcPort int
	dataDir string // a real agent's data_dir, also its working directory in a cluster
	killed  bool   // killed by KillNode
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
	// HCL is appended to the client agent's config, for plugin blocks and
	// the like (the dev agent's, which is also the server).
	HCL string
	// ClientHCL goes inside the client agent's client block, for its
	// artifact block and the like.
	ClientHCL string
	// Env is added to the environment of every agent process
	// ("NAME=value"), such as SSL_CERT_FILE for the artifact getter
	// (which sees it only when the client's artifact block lists it in
	// set_environment_variables).
	Env []string
	// Persistent runs a real cluster instead of -dev: a server agent and a
	// client agent, each in its own process with its own data dir, so that
	// Restart restarts the client alone and it recovers its allocations,
	// as a client restart does in a cluster.
	//
	// One agent that is both server and client would not do: when it
	// restarts, its client restores allocations while its server has not
	// yet elected itself and replayed its Raft log, so the server refuses
	// the client's RPCs ("Permission denied": it does not know the node
	// identity's signing key yet), and Nomad fails every allocation whose
	// group_services pre-run hook is refused (docs/pool-and-driver.md).
	Persistent bool
	// NodeReady, if set, must hold for the client node before Start
	// returns (a driver fingerprinted healthy, say).
	NodeReady func(*api.Node) bool
	// ACL enables Nomad's ACL system (acl { enabled = true } on every
	// agent) and bootstraps it, as `nomad acl bootstrap` does, once the
	// server has a leader: Agent.ManagementToken holds the management
	// token, which Agent.Client and Agent.Run use. Agent.Token creates
	// scoped tokens.
	ACL bool
}

// Start starts a dev agent (server and client) and waits until it has a
// leader and a ready client node. The agent is stopped when the test ends.
func Start(t testing.TB) *Agent { return StartWith(t, Options{}) }

// fingerprintDenylist denies the cloud fingerprinters, which hang or fail
// here (AWS_CA_BUNDLE is set in this environment and no metadata service
// answers).
const fingerprintDenylist = `"fingerprint.denylist" = "env_aws,env_gce,env_azure,env_digitalocean"`

// StartWith starts an agent with extra configuration.
func StartWith(t testing.TB, opts Options) *Agent {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	a := &Agent{Bin: bin, dir: dir, opts: opts}

	clientCfg := func(extra string) string {
		cfg := fmt.Sprintf(`
client {
  enabled = true
%s
%s
  options = {
    %s
  }
}
`, extra, opts.ClientHCL, fingerprintDenylist)
		if opts.PluginDir != "" {
			cfg += fmt.Sprintf("plugin_dir = %q\n", opts.PluginDir)
		}
		return cfg + opts.HCL
	}

	if !opts.Persistent {
		a.client = a.newProc(t, "agent", []string{"agent", "-dev"}, "", clientCfg(""))
		a.Addr, a.Client = a.client.addr, a.client.api
	} else {
		// heartbeat_grace: a client restart on a loaded test
		// machine can outlast Nomad's default 10 s grace, after which the
		// server marks the node down and replaces its allocations.
		a.server = a.newProc(t, "server", []string{"agent"}, filepath.Join(dir, "server"), `
server {
  enabled          = true
  bootstrap_expect = 1
  heartbeat_grace  = "1m"
}
`)
		a.Addr, a.Client = a.server.addr, a.server.api
	}
	t.Cleanup(func() { a.cleanup(t) })
	if a.server != nil {
		a.start(t, a.server)
		a.client = a.newProc(t, "client", []string{"agent"}, filepath.Join(dir, "client"),
			clientCfg(fmt.Sprintf("  servers = [%q]", a.server.rpcAddr())))
	}
	a.start(t, a.client)
	if !opts.Persistent {
		if self, err := a.Client.Agent().Self(); err == nil {
			if c, ok := self.Config["Client"].(map[string]any); ok {
				a.allocDir, _ = c["AllocDir"].(string)
			}
		}
	}
	return a
}

// cleanup stops the agents and what they left running.
func (a *Agent) cleanup(t testing.TB) {
	if a.opts.Persistent {
		// A real client leaves its tasks running when it stops: stop
		// them first, so that no pool outlives the test.
		a.stopJobs(t)
	}
	for _, p := range a.clientProcs() {
		p.stop()
	}
	a.server.stop()
	killStrays(t, a.Bin, a.dir)
	if a.allocDir != "" && a.allocDir != a.dir && !strings.HasPrefix(a.allocDir, a.dir+"/") {
		killStrays(t, a.Bin, a.allocDir)
	}
	if a.opts.Persistent {
		unmountUnder(t, a.dir)
	}
	if t.Failed() {
		for _, p := range append([]*proc{a.server}, a.clientProcs()...) {
			if p != nil {
				t.Logf("nomad %s log (tail):\n%s", p.name, tail(p.log.String(), 6000))
			}
		}
	}
}

// clientProcs returns the client agents: a cluster's clients, or the one
// client (or dev agent).
func (a *Agent) clientProcs() []*proc {
	if a.clients != nil {
		return a.clients
	}
	return []*proc{a.client}
}

// newProc writes an agent's config (ports, addresses, and cfg) and
// returns the process, not yet started. A dataDir makes it a real agent,
// which wants an explicit advertise address when bound to loopback.
func (a *Agent) newProc(t testing.TB, name string, args []string, dataDir, cfg string) *proc {
	t.Helper()
	http, rpc, serf := freePort(t), freePort(t), freePort(t)
	full := fmt.Sprintf(`
bind_addr = "127.0.0.1"
ports {
  http = %d
  rpc  = %d
  serf = %d
}
`, http, rpc, serf)
	if dataDir != "" {
		full += fmt.Sprintf(`
name     = %q
data_dir = %q
advertise {
  http = "127.0.0.1"
  rpc  = "127.0.0.1"
  serf = "127.0.0.1"
}
`, name, dataDir)
	}
	if a.opts.ACL {
		full += "\nacl {\n  enabled = true\n}\n"
	}
	full += cfg
	cfgPath := filepath.Join(a.dir, name+".hcl")
	if err := os.WriteFile(cfgPath, []byte(full), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, args: append(args, "-config", cfgPath), addr: fmt.Sprintf("http://127.0.0.1:%d", http), log: &testlog.Buffer{}}
	client, err := api.NewClient(&api.Config{Address: p.addr})
	if err != nil {
		t.Fatal(err)
	}
	if a.ManagementToken != "" {
		client.SetSecretID(a.ManagementToken)
	}
	p.api = client
	p.rpcPort = rpc
	p.dataDir = dataDir
	return p
}

// start runs an agent process and waits until it is ready: for the
// server (or dev agent), a leader; for the client (or dev agent), its own
// HTTP API answering (Nomad starts it after the client has restored its
// allocations) and its node ready.
func (a *Agent) start(t testing.TB, p *proc) {
	t.Helper()
	a.launch(t, p)
	a.waitReady(t, p)
}

// launch starts an agent process without waiting for it.
func (a *Agent) launch(t testing.TB, p *proc) {
	t.Helper()
	cmd := exec.Command(a.Bin, p.args...)
	cmd.Dir = a.dir
	if a.clients != nil && p.dataDir != "" {
		// Each agent of a cluster runs in its own data dir, and so do the
		// plugins it starts: KillNode finds them there.
		cmd.Dir = p.dataDir
	}
	if len(a.opts.Env) > 0 {
		cmd.Env = append(os.Environ(), a.opts.Env...)
	}
	cmd.Stdout = p.log
	cmd.Stderr = p.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nomad %s: %v", p.name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	p.cmd, p.exited = cmd, exited
}

// waitReady waits until a launched agent is ready (see start).
func (a *Agent) waitReady(t testing.TB, p *proc) {
	t.Helper()
	exited := p.exited
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for !a.ready(p) {
		select {
		case err := <-exited:
			p.cmd = nil
			t.Fatalf("nomad %s exited before it was ready: %v\n%s", p.name, err, tail(p.log.String(), 6000))
		case <-ctx.Done():
			t.Fatalf("nomad %s not ready after 90s:\n%s", p.name, tail(p.log.String(), 6000))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ready says whether p does its part: see start.
func (a *Agent) ready(p *proc) bool {
	if leader, err := a.Client.Status().Leader(); err != nil || leader == "" {
		return false
	}
	if a.opts.ACL && a.ManagementToken == "" && !a.bootstrap() {
		return false
	}
	if p == a.server {
		return true
	}
	self, err := p.api.Agent().Self()
	if err != nil || self.Stats["client"] == nil {
		return false
	}
	node, _, err := a.Client.Nodes().Info(self.Stats["client"]["node_id"], nil)
	if err != nil || node.Status != "ready" {
		return false
	}
	return a.opts.NodeReady == nil || a.opts.NodeReady(node)
}

// bootstrap bootstraps the ACL system, as `nomad acl bootstrap` does,
// and makes every API client of the agent use the management token. It
// says whether that is done; the server refuses until it has finished
// its leader setup, and start retries.
func (a *Agent) bootstrap() bool {
	tok, _, err := a.Client.ACLTokens().Bootstrap(nil)
	if err != nil || tok == nil || tok.SecretID == "" {
		return false
	}
	a.ManagementToken = tok.SecretID
	for _, p := range append([]*proc{a.server}, a.clientProcs()...) {
		if p != nil {
			p.api.SetSecretID(tok.SecretID)
		}
	}
	a.Client.SetSecretID(tok.SecretID)
	return true
}

// Token applies an ACL policy named name with rules (Nomad's policy HCL)
// and creates a client token with that policy alone, as `nomad acl
// policy apply` and `nomad acl token create -policy` do; it returns the
// token's secret ID. It needs Options.ACL.
func (a *Agent) Token(t testing.TB, name, rules string) string {
	t.Helper()
	if a.ManagementToken == "" {
		t.Fatal("nomadtest: Token needs an agent started with Options.ACL")
	}
	if _, err := a.Client.ACLPolicies().Upsert(&api.ACLPolicy{Name: name, Rules: rules}, nil); err != nil {
		t.Fatalf("apply ACL policy %s: %v", name, err)
	}
	tok, _, err := a.Client.ACLTokens().Create(&api.ACLToken{Name: name, Type: "client", Policies: []string{name}}, nil)
	if err != nil {
		t.Fatalf("create a token with the ACL policy %s: %v", name, err)
	}
	return tok.SecretID
}

// stop interrupts an agent (a graceful shutdown that leaves its tasks
// running) and waits for it to exit.
func (p *proc) stop() {
	if p == nil || p.cmd == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
	p.cmd = nil
}

func (p *proc) rpcAddr() string { return fmt.Sprintf("127.0.0.1:%d", p.rpcPort) }

// Restart stops the client agent gracefully and starts it again with the
// same configuration and data dir, and waits until it is back (see
// start). A Persistent agent's server keeps running and the client
// recovers its allocations; a dev agent restarts whole and keeps nothing.
func (a *Agent) Restart(t testing.TB) {
	t.Helper()
	a.client.stop()
	a.start(t, a.client)
}

// Run runs the nomad CLI against the agent and returns its combined
// output and exit code.
func (a *Agent) Run(t testing.TB, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(a.Bin, args...)
	cmd.Env = append(os.Environ(), "NOMAD_ADDR="+a.Addr)
	if a.ManagementToken != "" {
		cmd.Env = append(cmd.Env, "NOMAD_TOKEN="+a.ManagementToken)
	}
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
	alive := false
	for _, p := range a.clientProcs() {
		alive = alive || (p != nil && p.cmd != nil)
	}
	if !alive || (a.server != nil && a.server.cmd == nil) {
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
			if a.nodeKilled(al.NodeID) {
				continue // its node is gone, and its processes with it
			}
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

// Log returns what the agent has printed so far (the server's output,
// then the client's, for a Persistent agent).
func (a *Agent) Log() string {
	if a.server == nil {
		return a.client.log.String()
	}
	return "==> nomad server\n" + a.server.log.String() + "==> nomad client\n" + a.client.log.String()
}

// killStrays kills what outlived the agent whose working directory is
// dir: the plugin processes Nomad started from bin (logmon, executors),
// which run in dir, and the tasks and task-driver executors of its
// allocations (the butter driver's executor and its pool), which run in
// an allocation directory under dir or name one on their command line.
// A dev agent interrupted, or a cluster's client stopped, leaves them
// behind (Nomad keeps tasks running across a client restart), holding
// the allocation's log files open and, for pools, CPU and ports. A
// cluster's clients run in their data dirs, under dir, so what each left
// is found the same way; processes of other tests' agents are left alone.
func killStrays(t testing.TB, bin, dir string) {
	exe, _ := filepath.EvalSymlinks(bin)
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(p), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		cwd, err := os.Readlink(p + "/cwd")
		if err != nil {
			continue
		}
		cwd = strings.TrimSuffix(cwd, " (deleted)")
		under := cwd == dir || strings.HasPrefix(cwd, dir+"/")
		cmdline, _ := os.ReadFile(p + "/cmdline")
		names := strings.Contains(string(cmdline), dir+"/")
		if !under && !names {
			continue
		}
		what := "a task or executor of the stopped agent's allocations"
		if e, err := os.Readlink(p + "/exe"); err == nil && exe != "" && strings.TrimSuffix(e, " (deleted)") == exe {
			what = "a Nomad plugin process left by the stopped agent"
		}
		t.Logf("nomadtest: killing %s, %s", p, what)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
