package nomadtest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
)

// ClusterOptions configure StartCluster. The fields of Options apply to
// every client agent (PluginDir, HCL, ClientHCL, Env, NodeReady, ACL);
// Persistent is implied.
type ClusterOptions struct {
	Options
	// Clients is how many client agents run (at least 1; 3 if 0).
	Clients int
	// HeartbeatGrace is the server's heartbeat_grace: how long after a
	// missed heartbeat the server marks a client's node down and
	// replaces its allocations. 5s if 0: short, for tests that kill a
	// node, yet long enough for a loaded test machine.
	HeartbeatGrace time.Duration
}

// StartCluster starts a Nomad cluster on this machine: one server agent
// and opts.Clients client agents (separate processes, each with its own
// data dir, ports, node name "client-<i>", working directory and range
// of dynamic ports), all bound to and advertising 127.0.0.1, and waits
// until every node is ready. Agent.Addr and Agent.Client are the
// server's; Nodes lists the clients; KillNode kills one as a lost machine
// dies. Everything stops when the test ends.
//
// Clients on one machine need disjoint dynamic port ranges: each client
// believes it owns every port of the interface, so two of them would
// hand the same port to two allocations. Each also gets its own
// alloc_dir and state_dir (under its data dir, Nomad's default).
func StartCluster(t testing.TB, opts ClusterOptions) *Agent {
	t.Helper()
	if opts.Clients <= 0 {
		opts.Clients = 3
	}
	if opts.HeartbeatGrace <= 0 {
		opts.HeartbeatGrace = 5 * time.Second
	}
	opts.Persistent = true
	bin := Binary(t)
	dir := t.TempDir()
	a := &Agent{Bin: bin, dir: dir, opts: opts.Options, clients: []*proc{}}
	t.Cleanup(func() { a.cleanup(t) })
	// min_heartbeat_ttl: clients heartbeat every 2s or so, so that a
	// killed one is noticed heartbeat_grace after its last heartbeat.
	a.server = a.newProc(t, "server", []string{"agent"}, filepath.Join(dir, "server"), fmt.Sprintf(`
server {
  enabled           = true
  bootstrap_expect  = 1
  heartbeat_grace   = %q
  min_heartbeat_ttl = "2s"
}
`, opts.HeartbeatGrace.String()))
	if err := os.MkdirAll(a.server.dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	a.Addr, a.Client = a.server.addr, a.server.api
	a.start(t, a.server)

	const lowPort, highPort = 20000, 32000 // Nomad's default dynamic range
	span := (highPort - lowPort) / opts.Clients
	for i := range opts.Clients {
		name := fmt.Sprintf("client-%d", i)
		dataDir := filepath.Join(dir, name)
		if err := os.MkdirAll(dataDir, 0o755); err != nil {
			t.Fatal(err)
		}
		extra := fmt.Sprintf(`  servers           = [%q]
  network_interface = "lo"
  min_dynamic_port  = %d
  max_dynamic_port  = %d`, a.server.rpcAddr(), lowPort+i*span, lowPort+(i+1)*span-1)
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
		p := a.newProc(t, name, []string{"agent"}, dataDir, cfg+opts.HCL)
		a.clients = append(a.clients, p)
	}
	a.client = a.clients[0]
	// The clients start at once and register in parallel.
	for _, p := range a.clients {
		a.launch(t, p)
	}
	for _, p := range a.clients {
		a.waitReady(t, p)
	}
	return a
}

// Node is a client agent of a cluster.
type Node struct {
	// Name is the node's name (client-<i>), ID its Nomad node ID.
	Name, ID string
	// Dir is its data dir, under which its allocations run.
	Dir string
	// Addr is the client agent's own HTTP address.
	Addr string
	// Killed says whether KillNode killed it.
	Killed bool
}

// Nodes returns the cluster's client nodes, in the order they were
// started.
func (a *Agent) Nodes(t testing.TB) []Node {
	t.Helper()
	var out []Node
	for _, p := range a.clients {
		out = append(out, Node{Name: p.name, ID: a.nodeID(t, p), Dir: p.dataDir, Addr: p.addr, Killed: p.killed})
	}
	return out
}

// nodeID returns the Nomad node ID of a client, by its name.
func (a *Agent) nodeID(t testing.TB, p *proc) string {
	t.Helper()
	nodes, _, err := a.Client.Nodes().List(nil)
	if err != nil {
		t.Fatalf("list the cluster's nodes: %v", err)
	}
	for _, n := range nodes {
		if n.Name == p.name {
			return n.ID
		}
	}
	t.Fatalf("node %s is not registered with the server", p.name)
	return ""
}

// nodeKilled says whether the node with that ID was killed by KillNode.
func (a *Agent) nodeKilled(id string) bool {
	for _, p := range a.clients {
		if p.killed {
			if n, _, err := a.Client.Nodes().Info(id, nil); err == nil && n.Name == p.name {
				return true
			}
		}
	}
	return false
}

// KillNode kills the client agent named name and every process it
// started (its plugins, executors, the tasks and their children) with
// SIGKILL at once, as when the machine dies: nothing is drained, no
// connection is closed gracefully by a process that could still answer.
// It returns when they are all gone. The server notices through missed
// heartbeats (ClusterOptions.HeartbeatGrace).
func (a *Agent) KillNode(t testing.TB, name string) {
	t.Helper()
	var p *proc
	for _, c := range a.clients {
		if c.name == name {
			p = c
		}
	}
	if p == nil || p.cmd == nil {
		t.Fatalf("nomadtest: no running client agent named %q", name)
	}
	pids := nodeProcs(p.cmd.Process.Pid, p.dataDir)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	<-p.exited
	p.cmd, p.killed = nil, true
	deadline := time.Now().Add(20 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("nomadtest: process %d of node %s still alive 20s after SIGKILL", pid, name)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("nomadtest: killed node %s (%d processes)", name, len(pids))
}

// nodeProcs returns the agent root and every process that descends from
// it or runs under dir (a task the executor started in its own session
// still runs in its task dir).
func nodeProcs(root int, dir string) []int {
	parent := map[int]int{}
	var under []int
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if b, err := os.ReadFile(p + "/stat"); err == nil {
			// pid (comm) state ppid ...: comm may hold spaces.
			if i := bytes.LastIndexByte(b, ')'); i > 0 {
				f := strings.Fields(string(b[i+1:]))
				if len(f) > 1 {
					parent[pid], _ = strconv.Atoi(f[1])
				}
			}
		}
		if cwd, err := os.Readlink(p + "/cwd"); err == nil {
			cwd = strings.TrimSuffix(cwd, " (deleted)")
			if cwd == dir || strings.HasPrefix(cwd, dir+"/") {
				under = append(under, pid)
			}
		}
	}
	set := map[int]bool{root: true}
	for _, pid := range under {
		set[pid] = true
	}
	for changed := true; changed; {
		changed = false
		for pid, pp := range parent {
			if set[pp] && !set[pid] {
				set[pid], changed = true, true
			}
		}
	}
	out := make([]int, 0, len(set))
	for pid := range set {
		out = append(out, pid)
	}
	return out
}

// alive says whether a process exists with a thread that is not a zombie.
func alive(pid int) bool {
	// A multi-threaded process's leader shows Z as soon as its own thread
	// has exited, while its other threads may still run (and hold its
	// files, sockets included, open): the process is gone when every
	// thread is a zombie or dead.
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/[0-9]*", pid))
	if err != nil || len(tasks) == 0 {
		tasks = []string{fmt.Sprintf("/proc/%d", pid)}
	}
	for _, task := range tasks {
		b, err := os.ReadFile(task + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 0 && f[0] != "Z" && f[0] != "X" {
			return true
		}
	}
	return false
}

// WaitFor polls cond every 100ms until it holds, and fails the test with
// what after d.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// RunningAllocs returns the running allocations of a job's task group,
// by allocation ID.
func (a *Agent) RunningAllocs(t testing.TB, job, group string) map[string]*api.AllocationListStub {
	t.Helper()
	allocs, _, err := a.Client.Jobs().Allocations(job, false, nil)
	if err != nil {
		t.Fatalf("list the allocations of job %s: %v", job, err)
	}
	out := map[string]*api.AllocationListStub{}
	for _, al := range allocs {
		if al.TaskGroup == group && al.ClientStatus == api.AllocClientStatusRunning && al.DesiredStatus == api.AllocDesiredStatusRun {
			out[al.ID] = al
		}
	}
	return out
}
