// Package cluster tests Butter on a multi-node Nomad cluster on this
// machine (one server agent and three client agents, each with the
// butter driver, internal/nomadtest.StartCluster): a pool scaled to three
// allocations spread over the nodes, the gateway balancing across them,
// the autoscaler's loop scaling a pool across them and back, and what
// happens when a node dies under load.
package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/butterfn/butter/e2e/e2etest"
	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/butterfn/butter/internal/testlog"
	"github.com/butterfn/butter/internal/testport"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/plugins/pool"
)

func TestMain(m *testing.M) { e2etest.Main(m) }

// project is one pool of two functions: who answers HTTP calls with its
// pid (the test finds the allocation from it), work copies the events
// of a stream of six partitions to another stream.
const project = `project "mn" {
  deploy {
    min_healthy_time = "1s"
    healthy_deadline = "2m"
  }
  kafka {
    brokers = [%q]
  }
}

stream "jobs" {
  partitions = 6
}

stream "done" {
  partitions = 1
}

function "who" {
  runtime = "node"
  source  = "fn"
  handler = "index.who"
  timeout = "5s"
  memory  = 64
  trigger "http" {
    route = "POST /who"
  }
  instances {
    min         = 1
    max         = 4
    concurrency = 4
  }
}

function "work" {
  runtime = "node"
  source  = "fn"
  handler = "index.work"
  timeout = "5s"
  memory  = 64
  output  = stream.done
  trigger "stream" {
    stream = stream.jobs
    offset = "first"
  }
}
`

const code = `exports.who = async () => String(process.pid);
exports.work = async (input) => Buffer.from(input);
`

const (
	jobID = "butter-mn"
	group = "default"
	nodes = 3
	// loaders is how many clients call the gateway at once: at most this
	// many calls can be in flight on the node that dies.
	loaders = 4
)

// call is one request of the load loop.
type call struct {
	start, end time.Time
	alloc      string // the allocation that answered, if one did
	err        string // why it failed, if it did
}

// TestNodeLoss deploys a project through a real `butter server` onto a
// cluster of three Nomad clients, scales its pool to three allocations
// with Nomad's Scale API (as `nomad job scale` does) and checks that they
// run on three different nodes (the compiled group's spread) and that the
// gateway answers from all three. Then, while clients call the gateway
// and events flow through a stream of six partitions, it SIGKILLs a
// node with everything on it, and checks:
//   - Nomad marks the node down and replaces its allocation on a
//     surviving node, with the same allocation name;
//   - the gateway stops dialing the dead allocation within a deadline
//     (the time is printed), and answers from the replacement;
//   - no call that started after the kill fails: the gateway retries a
//     call whose connection was refused on another allocation. Calls in
//     flight on the dead node may fail (they may have run): they are
//     counted and printed, and there are at most as many as callers;
//   - every event is processed at least once (duplicates are printed):
//     the dead pool's partitions go back to its replacement, which joins
//     the group with the same static instance id, or to the survivors.
func TestNodeLoss(t *testing.T) {
	kafkaPort := testport.Port(t)
	brokers := fmt.Sprintf("127.0.0.1:%d", kafkaPort)
	startProc(t, "broker", "broker", "-dev", "-port", strconv.Itoa(kafkaPort), "-data-dir", "")
	e2etest.WaitFor(t, 30*time.Second, "the broker", func() bool {
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers))
		if err != nil {
			return false
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return cl.Ping(ctx) == nil
	})

	cluster := nomadtest.StartCluster(t, nomadtest.ClusterOptions{Clients: nodes, Options: nomadtest.Options{
		PluginDir: e2etest.PluginDir(),
		HCL: fmt.Sprintf(`
plugin "nomad-driver-butter" {
  config {
    butter_path   = %q
    kafka_brokers = [%q]
  }
}
`, e2etest.Bin(), brokers),
		NodeReady: func(n *api.Node) bool { d := n.Drivers["butter"]; return d != nil && d.Healthy },
	}})
	server := e2etest.StartServer(t, "-nomad-addr", cluster.Addr)
	serverAddr := "http://" + server.HTTP
	gwAddr := testport.Addr(t)
	gw := startProc(t, "gateway", "gateway", "-listen", gwAddr, "-nomad-addr", cluster.Addr, "-address", serverAddr, "-refresh", "200ms")

	dir := writeProject(t, "mn", map[string]string{"mn.fn.hcl": fmt.Sprintf(project, brokers), "fn/index.js": code})
	start := time.Now()
	if r := e2etest.Butter(t, ".", "deploy", "-address", serverAddr, "-timeout", "4m", dir); r.Code != 0 {
		t.Fatalf("deploy: %+v", r)
	}
	t.Logf("deployed in %v", time.Since(start).Round(100*time.Millisecond))
	defer func() {
		if t.Failed() {
			nomadtest.LogTasks(t, cluster.Client, jobID, 4000, "stderr")
		}
	}()

	// Three allocations, as `nomad job scale butter-mn default 3` asks.
	three := nodes
	e2etest.WaitFor(t, time.Minute, "Nomad accepts the scale (no active deployment)", func() bool {
		_, _, err := cluster.Client.Jobs().Scale(jobID, group, &three, "e2e: three allocations", false, nil, nil)
		return err == nil
	})
	nodeOf := func(allocs map[string]*api.AllocationListStub) map[string]string {
		out := map[string]string{}
		for id, a := range allocs {
			out[id] = a.NodeName
		}
		return out
	}
	allocs := waitSpread(t, cluster, jobID, "three running allocations on three nodes")
	t.Logf("allocations (id: node): %v", nodeOf(allocs))

	// The gateway answers from every allocation, and spreads the calls.
	url := "http://" + gwAddr + "/who"
	pids := &allocFinder{m: map[string]string{}}
	post := func(client *http.Client) call {
		c := call{start: time.Now()}
		resp, err := client.Post(url, "application/octet-stream", strings.NewReader("x"))
		if err != nil {
			c.end, c.err = time.Now(), err.Error()
			return c
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		c.end = time.Now()
		if resp.StatusCode != 200 {
			c.err = fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(b))
			return c
		}
		c.alloc = pids.alloc(string(b))
		if c.alloc == "" {
			c.err = fmt.Sprintf("no allocation found for the pid %q that answered", b)
		}
		return c
	}
	client := &http.Client{Timeout: 10 * time.Second}
	nomadtest.WaitFor(t, 2*time.Minute, "answers through the gateway from all three allocations", func() bool {
		seen := map[string]bool{}
		for range 30 {
			if c := post(client); c.alloc != "" {
				seen[c.alloc] = true
			}
		}
		return len(seen) == nodes
	})
	counts := map[string]int{}
	for range 300 {
		c := post(client)
		if c.err != "" {
			t.Fatalf("a call before the kill failed: %s", c.err)
		}
		counts[c.alloc]++
	}
	t.Logf("300 sequential calls, per allocation: %v", counts)
	for id, n := range counts {
		if _, ok := allocs[id]; !ok {
			t.Errorf("an answer came from %s, not one of the three allocations", id)
		}
		if n < 300/nodes/3 {
			t.Errorf("allocation %s answered %d of 300 calls: the gateway does not balance", id, n)
		}
	}

	// The stream: events before, during and after the kill.
	const perBatch = 200
	topicIn, topicOut := names.Topic("mn", "jobs"), names.Topic("mn", "done")
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.DefaultProduceTopic(topicIn))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	sent := 0
	produce := func() {
		t.Helper()
		var recs []*kgo.Record
		for range perBatch {
			id := fmt.Sprintf("ev-%05d", sent)
			sent++
			recs = append(recs, &kgo.Record{Key: []byte(id), Value: []byte(id)})
		}
		if err := prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatalf("produce to %s: %v", topicIn, err)
		}
	}
	done := newDoneReader(t, brokers, topicOut)
	produce()
	nomadtest.WaitFor(t, 2*time.Minute, "the first events processed", func() bool { return done.count() == sent })

	adm := kadm.NewClient(prod)
	consumerGroup := names.ConsumerGroup("mn", "work", "jobs")
	members := func() []string {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		gs, err := adm.DescribeGroups(ctx, consumerGroup)
		if err != nil {
			return nil
		}
		var ids []string
		for _, m := range gs[consumerGroup].Members {
			if m.InstanceID != nil {
				ids = append(ids, *m.InstanceID)
			}
		}
		sort.Strings(ids)
		return ids
	}
	wantMembers := func(allocs map[string]*api.AllocationListStub) []string {
		var ids []string
		for _, a := range allocs {
			ids = append(ids, pool.StaticInstanceID(a.Name))
		}
		sort.Strings(ids)
		return ids
	}
	nomadtest.WaitFor(t, time.Minute, "three static members in the stream's group, named after the allocations", func() bool {
		return strings.Join(members(), ",") == strings.Join(wantMembers(allocs), ",")
	})
	t.Logf("static members of %s: %v", consumerGroup, members())

	// The load loop.
	var (
		mu    sync.Mutex
		calls []call
		stop  atomic.Bool
		wg    sync.WaitGroup
	)
	for range loaders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := &http.Client{Timeout: 10 * time.Second}
			for !stop.Load() {
				c := post(cl)
				mu.Lock()
				calls = append(calls, c)
				mu.Unlock()
			}
		}()
	}
	defer func() { stop.Store(true); wg.Wait() }()
	answered := func(alloc string, after time.Time) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range calls {
			if c.alloc == alloc && c.start.After(after) {
				return true
			}
		}
		return false
	}

	// The victim: the node of the allocation with the highest index, so
	// that its replacement's name is known.
	var victim *api.AllocationListStub
	for _, a := range allocs {
		if victim == nil || a.Name > victim.Name {
			victim = a
		}
	}
	nomadtest.WaitFor(t, 30*time.Second, "the load reaching the victim's allocation", func() bool { return answered(victim.ID, start) })
	produce() // in the topic when the node dies
	endpoint := victimEndpoint(t, cluster.Client, victim.ID)
	t.Logf("killing node %s, which runs allocation %s (%s, endpoint %s)", victim.NodeName, victim.ID, victim.Name, endpoint)
	dialsBefore := strings.Count(gw.out.String(), "endpoint="+endpoint)
	cluster.KillNode(t, victim.NodeName)
	killed := time.Now()
	produce() // after the kill

	// Nomad notices and replaces the allocation on a survivor.
	var replacement *api.AllocationListStub
	nomadtest.WaitFor(t, 2*time.Minute, "a replacement of the lost allocation, running on a surviving node", func() bool {
		for _, a := range cluster.RunningAllocs(t, jobID, group) {
			if a.Name == victim.Name && a.ID != victim.ID && a.NodeID != victim.NodeID {
				replacement = a
				return true
			}
		}
		return false
	})
	replaced := time.Since(killed)
	t.Logf("replacement %s on %s running %v after the kill", replacement.ID, replacement.NodeName, replaced.Round(100*time.Millisecond))

	// The gateway stops dialing the dead endpoint once Nomad drops its
	// service; meanwhile each refused dial ejects it for a while.
	var lastDial time.Time
	lastCount := dialsBefore
	nomadtest.WaitFor(t, 90*time.Second, "the gateway no longer dialing the dead endpoint (its service gone from Nomad, no new refused dial for 3s)", func() bool {
		if n := strings.Count(gw.out.String(), "endpoint="+endpoint); n != lastCount {
			lastCount, lastDial = n, time.Now()
		}
		regs, _, err := cluster.Client.Services().Get(names.ServiceName("mn", group), nil)
		if err != nil {
			return false
		}
		for _, r := range regs {
			if r.AllocID == victim.ID {
				return false
			}
		}
		return time.Since(lastDial) > 3*time.Second && time.Since(killed) > 3*time.Second
	})
	stoppedAfter := time.Duration(0)
	if !lastDial.IsZero() {
		stoppedAfter = lastDial.Sub(killed)
	}
	t.Logf("the gateway dialed the dead endpoint %d times after the kill, the last %v after it", lastCount-dialsBefore, stoppedAfter.Round(10*time.Millisecond))
	if stoppedAfter > 30*time.Second {
		t.Errorf("the gateway still dialed the dead endpoint %v after the kill", stoppedAfter)
	}
	nomadtest.WaitFor(t, time.Minute, "answers from the replacement allocation", func() bool { return answered(replacement.ID, killed) })
	produce() // once the replacement serves

	// Every event processed at least once.
	nomadtest.WaitFor(t, 2*time.Minute, fmt.Sprintf("all %d events processed", sent), func() bool { return done.count() == sent })
	t.Logf("all %d events processed, %d duplicates, the last %v after the kill", sent, done.duplicates(), done.lastAt().Sub(killed).Round(10*time.Millisecond))
	nomadtest.WaitFor(t, time.Minute, "three static members again, the replacement under the lost allocation's id", func() bool {
		return strings.Join(members(), ",") == strings.Join(wantMembers(cluster.RunningAllocs(t, jobID, group)), ",")
	})

	stop.Store(true)
	wg.Wait()
	var failed, failedAfter, total int
	per := map[string]int{}
	for _, c := range calls {
		total++
		if c.err == "" {
			per[c.alloc]++
			continue
		}
		failed++
		when := fmt.Sprintf("%v before the node was dead", killed.Sub(c.start).Round(time.Millisecond))
		if c.start.After(killed) {
			when = fmt.Sprintf("%v after the node was dead", c.start.Sub(killed).Round(time.Millisecond))
		}
		t.Logf("failed call, started %s: %s", when, c.err)
		if c.start.After(killed) {
			failedAfter++
		}
	}
	t.Logf("load loop: %d calls, %d failed (%d started after the kill); answers per allocation: %v", total, failed, failedAfter, per)
	if failedAfter > 0 {
		t.Errorf("%d calls started after the kill failed: the gateway must retry a refused connection on another allocation", failedAfter)
	}
	if failed > loaders {
		t.Errorf("%d calls failed, more than the %d that could be in flight on the dead node", failed, loaders)
	}
}

// writeProject writes files (path: body) under a new directory named
// name, and returns it.
func writeProject(t *testing.T, name string, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	for p, body := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// waitSpread waits until job's group runs one allocation on each of the
// cluster's nodes, and returns them.
func waitSpread(t *testing.T, cluster *nomadtest.Agent, job, what string) map[string]*api.AllocationListStub {
	t.Helper()
	var allocs map[string]*api.AllocationListStub
	nomadtest.WaitFor(t, 3*time.Minute, what, func() bool {
		allocs = cluster.RunningAllocs(t, job, group)
		per := map[string]bool{}
		for _, a := range allocs {
			per[a.NodeID] = true
		}
		return len(allocs) == nodes && len(per) == nodes
	})
	return allocs
}

// allocFinder maps the pid of a function instance to its allocation: the
// nearest ancestor process whose environment has NOMAD_ALLOC_ID (the
// pool, which Nomad's executor started).
type allocFinder struct {
	mu sync.Mutex
	m  map[string]string
}

func (f *allocFinder) alloc(pid string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id, ok := f.m[pid]; ok {
		return id
	}
	p := pid
	for range 6 {
		env, err := os.ReadFile("/proc/" + p + "/environ")
		if err != nil {
			return ""
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if v, ok := bytes.CutPrefix(kv, []byte("NOMAD_ALLOC_ID=")); ok {
				f.m[pid] = string(v)
				return string(v)
			}
		}
		stat, err := os.ReadFile("/proc/" + p + "/stat")
		if err != nil {
			return ""
		}
		i := bytes.LastIndexByte(stat, ')')
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 2 {
			return ""
		}
		p = fields[1]
	}
	return ""
}

// victimEndpoint returns the host:port of an allocation's service.
func victimEndpoint(t *testing.T, c *api.Client, allocID string) string {
	t.Helper()
	regs, _, err := c.Services().Get(names.ServiceName("mn", group), nil)
	if err != nil {
		t.Fatalf("read the pool's service: %v", err)
	}
	for _, r := range regs {
		if r.AllocID == allocID {
			return fmt.Sprintf("%s:%d", r.Address, r.Port)
		}
	}
	t.Fatalf("allocation %s has no service registration", allocID)
	return ""
}

// doneReader consumes the output stream in the background and counts the
// event ids it holds.
type doneReader struct {
	mu   sync.Mutex
	seen map[string]int
	last time.Time
}

func newDoneReader(t *testing.T, brokers, topic string) *doneReader {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	d := &doneReader{seen: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for ctx.Err() == nil {
			cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
				i := bytes.Index(r.Value, []byte("ev-"))
				if i < 0 || len(r.Value) < i+8 {
					return
				}
				d.mu.Lock()
				d.seen[string(r.Value[i:i+8])]++
				d.last = time.Now()
				d.mu.Unlock()
			})
		}
	}()
	t.Cleanup(func() { cancel(); <-finished; cl.Close() })
	return d
}

func (d *doneReader) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.seen)
}

func (d *doneReader) duplicates() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, c := range d.seen {
		n += c - 1
	}
	return n
}

func (d *doneReader) lastAt() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last
}

// proc is a butter process the test started.
type proc struct {
	cmd *exec.Cmd
	out *testlog.Buffer
}

// startProc starts `butter args...`, killed when the test ends.
func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(e2etest.Bin(), args...), out: &testlog.Buffer{}}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		if t.Failed() {
			t.Logf("%s output (tail):\n%s", name, e2etest.Tail(p.out.String(), 4000))
		}
	})
	return p
}
