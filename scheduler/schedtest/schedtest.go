// Package schedtest runs in-process control-plane clusters for tests, the
// way hashicorp/raft's own tests use MakeCluster: N scheduler.Servers on
// raft's in-memory transports (connected to each other), log, stable and
// snapshot stores, each with its real HTTP API on 127.0.0.1, sharing one
// Nomad (usually a nomadfake) and one recording Firer. A test can
// partition a node, heal it, stop it and start it again on the same
// stores.
//
// The in-memory pieces are fakes the task asked for: they make leader
// loss, partitions, timers and deploys testable in seconds. The
// acceptance tests of cmd/butter run the same servers as processes on
// TCP and BoltDB.
//
// Only tests import this package.
package schedtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/internal/testport"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/scheduler"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Options configures a cluster; the zero value is three nodes with no
// Nomad, a recording Firer and fast timeouts.
type Options struct {
	// Nodes is the cluster's size; 0 means 3.
	Nodes int
	// Nomad is shared by every node's deployer; nil runs no deployer.
	Nomad scheduler.Nomad
	// NoTimers runs no timer service (the Firer is not used).
	NoTimers bool
	// DeploymentStart is scheduler.Config's: how long a deployer waits for
	// Nomad to create a deployment.
	DeploymentStart time.Duration
	// Timing overrides FastTiming.
	Timing *scheduler.RaftTiming
	// LogLevel is the servers' log level in the test's log; 0 is Warn.
	LogLevel hclog.Level
	// SnapshotThreshold is scheduler.Config's: a small one makes nodes
	// compact their logs, so that a node left behind catches up by a
	// snapshot install.
	SnapshotThreshold uint64
	// ACL turns the nodes' ACLs on (scheduler.Config.ACL); Bootstrap and
	// Token make tokens for them.
	ACL bool
	// Autoscale is every node's scheduler.Config.Autoscale (the leader's
	// runs).
	Autoscale *scheduler.AutoscaleConfig
}

// FastTiming is the timeouts a test cluster runs with by default: a new
// leader within a few hundred milliseconds, and slack enough for a loaded
// two-core machine under -race.
var FastTiming = scheduler.RaftTiming{
	HeartbeatTimeout:   200 * time.Millisecond,
	ElectionTimeout:    200 * time.Millisecond,
	LeaderLeaseTimeout: 100 * time.Millisecond,
	CommitTimeout:      5 * time.Millisecond,
}

// Cluster is a running test cluster. Its methods are for the test's
// goroutine.
type Cluster struct {
	t     testing.TB
	Nodes []*Node
	// Firer records every tick the nodes' timer services fire.
	Firer *Firer

	logs *logWriter
}

// Node is one server of a Cluster.
type Node struct {
	// ID is the node's Raft ID and HTTP API address.
	ID string
	// Server is the running server; nil while the node is stopped.
	Server *scheduler.Server
	// Trans, Logs, Stable and Snaps outlive the server: Start runs a new
	// one on them.
	Trans  *raft.InmemTransport
	Logs   *raft.InmemStore
	Stable *raft.InmemStore
	Snaps  *raft.InmemSnapshotStore

	cfg         scheduler.Config
	partitioned bool
}

// URL is the node's API base URL.
func (n *Node) URL() string { return "http://" + n.ID }

// FSM is the running node's state machine.
func (n *Node) FSM() *fsm.FSM { return n.Server.FSM() }

// MakeCluster starts a cluster, waits until its nodes agree on a leader,
// and stops it when the test ends. The nodes bootstrap the way `butter
// server -bootstrap-expect` does: each asks its peers' HTTP APIs.
func MakeCluster(t testing.TB, opts Options) *Cluster {
	t.Helper()
	n := opts.Nodes
	if n == 0 {
		n = 3
	}
	timing := FastTiming
	if opts.Timing != nil {
		timing = *opts.Timing
	}
	level := opts.LogLevel
	if level == hclog.NoLevel {
		level = hclog.Warn
	}
	c := &Cluster{t: t, Firer: NewFirer(), logs: &logWriter{t: t}}
	var ids []string
	for range n {
		ids = append(ids, testport.Addr(t))
	}
	dir := t.TempDir()
	for i, id := range ids {
		addr, trans := raft.NewInmemTransport(raft.ServerAddress("inmem-" + id))
		nd := &Node{ID: id, Trans: trans, Logs: raft.NewInmemStore(), Stable: raft.NewInmemStore(), Snaps: raft.NewInmemSnapshotStore()}
		var join []string
		for _, other := range ids {
			if other != id {
				join = append(join, other)
			}
		}
		logger := hclog.New(&hclog.LoggerOptions{Name: fmt.Sprintf("node%d", i), Output: c.logs, Level: level})
		nd.cfg = scheduler.Config{
			DataDir: filepath.Join(dir, fmt.Sprint(i)), HTTPAddr: id, RaftAddr: string(addr),
			BootstrapExpect: n, Join: join, Nomad: opts.Nomad, DeploymentStart: opts.DeploymentStart, Logger: logger, Timing: timing, SnapshotThreshold: opts.SnapshotThreshold, ACL: opts.ACL, Autoscale: opts.Autoscale,
			LogStore: nd.Logs, StableStore: nd.Stable, SnapshotStore: nd.Snaps, Transport: trans,
		}
		if !opts.NoTimers {
			nd.cfg.Firer = c.Firer
		}
		c.Nodes = append(c.Nodes, nd)
	}
	for _, a := range c.Nodes {
		for _, b := range c.Nodes {
			if a != b {
				a.Trans.Connect(b.Trans.LocalAddr(), b.Trans)
			}
		}
	}
	t.Cleanup(func() {
		for _, nd := range c.Nodes {
			c.Stop(nd)
		}
		c.logs.stop()
	})
	for _, nd := range c.Nodes {
		c.Start(nd)
	}
	c.Leader()
	return c
}

// Start runs a stopped node again on its stores and transport,
// reconnected to the others (a partitioned node stays partitioned).
func (c *Cluster) Start(n *Node) {
	c.t.Helper()
	if n.Server != nil {
		c.t.Fatalf("node %s is running", n.ID)
	}
	if !n.partitioned {
		c.connect(n)
	}
	s, err := scheduler.Start(n.cfg)
	if err != nil {
		c.t.Fatalf("start node %s: %v", n.ID, err)
	}
	n.Server = s
}

// Stop shuts a node down, as `butter server` does on SIGTERM.
func (c *Cluster) Stop(n *Node) {
	if n.Server != nil {
		n.Server.Close()
		n.Server = nil
	}
}

// Partition cuts n's Raft traffic with every other node, both ways. Its
// HTTP API still answers.
func (c *Cluster) Partition(n *Node) {
	n.partitioned = true
	for _, m := range c.Nodes {
		if m != n {
			n.Trans.Disconnect(m.Trans.LocalAddr())
			m.Trans.Disconnect(n.Trans.LocalAddr())
		}
	}
}

// Heal reconnects a partitioned node.
func (c *Cluster) Heal(n *Node) {
	n.partitioned = false
	c.connect(n)
}

func (c *Cluster) connect(n *Node) {
	for _, m := range c.Nodes {
		if m != n {
			n.Trans.Connect(m.Trans.LocalAddr(), m.Trans)
			m.Trans.Connect(n.Trans.LocalAddr(), n.Trans)
		}
	}
}

// Running returns the running nodes.
func (c *Cluster) Running() []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		if n.Server != nil {
			out = append(out, n)
		}
	}
	return out
}

// Leader waits (10 s at most) until one running node outside any
// partition, and none of not, is leader and every such node knows it, and
// returns it.
func (c *Cluster) Leader(not ...*Node) *Node {
	c.t.Helper()
	var leader *Node
	WaitFor(c.t, 10*time.Second, "a leader every connected node knows", func() bool {
		leader = nil
		var ids []string
		for _, n := range c.Running() {
			if n.partitioned {
				continue
			}
			if n.Server.Raft().State() == raft.Leader {
				leader = n
			}
			_, id := n.Server.Raft().LeaderWithID()
			ids = append(ids, string(id))
		}
		if leader == nil {
			return false
		}
		for _, x := range not {
			if x == leader {
				return false
			}
		}
		for _, id := range ids {
			if id != leader.ID {
				return false
			}
		}
		return true
	})
	return leader
}

// Followers returns the running nodes other than the leader.
func (c *Cluster) Followers(leader *Node) []*Node {
	var out []*Node
	for _, n := range c.Running() {
		if n != leader {
			out = append(out, n)
		}
	}
	return out
}

// WaitFor polls cond every few milliseconds until it holds, and fails the
// test if it does not within d.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Firer is a scheduler.Firer that records each tick in memory, for tests.
// It honours ctx like a real producer: a tick asked for with an ended
// context is not delivered.
type Firer struct {
	mu    sync.Mutex
	fired []Firing
}

// Firing is one delivered tick.
type Firing struct {
	Timer string
	Tick  time.Time
}

var _ scheduler.Firer = (*Firer)(nil)

// NewFirer returns an empty recording Firer.
func NewFirer() *Firer { return &Firer{} }

// Fire records the tick.
func (f *Firer) Fire(ctx context.Context, t *fsm.Timer, tick time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fired = append(f.fired, Firing{Timer: t.ID, Tick: tick.UTC()})
	return nil
}

// Fired returns the timer's delivered ticks, in delivery order.
func (f *Firer) Fired(timer string) []Firing {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Firing
	for _, x := range f.fired {
		if x.Timer == timer {
			out = append(out, x)
		}
	}
	return out
}

// Ticks returns how many times each of the timer's ticks was delivered,
// and the ticks in time order.
func (f *Firer) Ticks(timer string) (map[time.Time]int, []time.Time) {
	counts := map[time.Time]int{}
	var ticks []time.Time
	for _, x := range f.Fired(timer) {
		if counts[x.Tick] == 0 {
			ticks = append(ticks, x.Tick)
		}
		counts[x.Tick]++
	}
	sort.Slice(ticks, func(i, j int) bool { return ticks[i].Before(ticks[j]) })
	return counts, ticks
}

// logWriter sends the servers' logs to the test's log until the test
// ends (a log line after that would panic).
type logWriter struct {
	t       testing.TB
	mu      sync.Mutex
	stopped bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(string(trimNewline(p)))
	}
	return len(p), nil
}

func (w *logWriter) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
}

func trimNewline(p []byte) []byte {
	if n := len(p); n > 0 && p[n-1] == '\n' {
		return p[:n-1]
	}
	return p
}

var _ io.Writer = (*logWriter)(nil)

// RevisionJob compiles a one-function project named project (an exec
// function, "f", in pool "main") the way `butter deploy` does, and returns
// its job JSON with the compiled revision id replaced by rev, and the
// revision's bundles: a job the leader's check (jobs.Check) accepts as a
// revision rev of project. Extra meta (butter_auto_rollback) is merged
// into the job's.
func RevisionJob(t testing.TB, project, rev string, meta map[string]string) (json.RawMessage, map[string]string) {
	t.Helper()
	return RevisionJobOf(t, rev, map[string]string{
		"p.fn.hcl": fmt.Sprintf("project %q {}\nfunction \"f\" {\n  runtime = \"exec\"\n  source = \"f\"\n  command = [\"cat\"]\n  pool = \"main\"\n}\n", project),
		"f/run":    "cat\n",
	}, meta)
}

// RevisionJobOf is RevisionJob for the project of files (project-relative
// name → content).
func RevisionJobOf(t testing.TB, rev string, files, meta map[string]string) (json.RawMessage, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	proj, rep := spec.Load(dir)
	if proj == nil {
		var b strings.Builder
		_ = rep.WriteText(&b)
		t.Fatalf("schedtest: load the test project: %s", b.String())
	}
	c, err := jobs.Compile(proj)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range meta {
		c.Job.Meta[k] = v
	}
	raw, err := jobs.RenderJSON(c.Job)
	if err != nil {
		t.Fatal(err)
	}
	bundles := map[string]string{}
	for _, a := range c.Artifacts {
		bundles[a.Path] = string(a.Digest)
	}
	return json.RawMessage(strings.ReplaceAll(string(raw), c.Revision, rev)), bundles
}
