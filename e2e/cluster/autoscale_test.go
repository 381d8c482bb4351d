package cluster

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/butterfn/butter/e2e/e2etest"
	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/butterfn/butter/internal/testport"
	"github.com/butterfn/butter/names"
)

// scaled is one pool of one function, slow, whose calls take 300 ms: an
// allocation holds 2 calls at once (one instance of concurrency 2), and
// the policy wants one call in flight per allocation (0.5 × 2), between
// 1 and 3 allocations.
const scaled = `project "as" {
  deploy {
    min_healthy_time = "1s"
    healthy_deadline = "2m"
  }
}

pool "default" {
  scaling {
    min            = 1
    max            = 3
    cooldown       = "1s"
    scale_in_delay = "8s"
    target = {
      inflight = 0.5
    }
  }
}

function "slow" {
  runtime = "node"
  source  = "fn"
  handler = "index.slow"
  timeout = "20s"
  memory  = 64
  trigger "http" {
    route = "POST /slow"
  }
  instances {
    min         = 1
    max         = 1
    concurrency = 2
  }
}
`

const slowCode = `exports.slow = async () => {
  await new Promise((r) => setTimeout(r, 300));
  return String(process.pid);
};
`

// TestAutoscaleAcrossNodes runs the autoscaler's loop, in a real `butter
// server` whose leader runs it, on a cluster of three Nomad clients: a
// load of 6 callers through a real `butter gateway` on a pool of one
// allocation puts it over its in-flight target; the loop scales the group
// 1 -> 3 through Nomad's Scale API (its reason in Nomad's scaling
// events), Nomad spreads the allocations over the three nodes, and the
// gateway's answers come from all three. No call fails while allocations
// are added (a new allocation's endpoint refuses until its pool listens:
// the gateway tries another). `butter status` shows the step. Then a
// node dies under the load (SIGKILL of its agent and everything on it):
// the loop names the lost allocation among its problems in `butter
// status`, the group's count stays 3 with no scaling event until Nomad's
// replacement answers, and no call started after the kill fails (those
// in flight on the node may: they are printed). The load stops, and
// after the scale-in delay the loop scales the group back to 1.
func TestAutoscaleAcrossNodes(t *testing.T) {
	cluster := nomadtest.StartCluster(t, nomadtest.ClusterOptions{Clients: nodes, Options: nomadtest.Options{
		PluginDir: e2etest.PluginDir(),
		HCL: fmt.Sprintf(`
plugin "nomad-driver-butter" {
  config {
    butter_path = %q
  }
}
`, e2etest.Bin()),
		NodeReady: func(n *api.Node) bool { d := n.Drivers["butter"]; return d != nil && d.Healthy },
	}})
	server := e2etest.StartServer(t, "-nomad-addr", cluster.Addr, "-autoscale-interval", "500ms")
	serverAddr := "http://" + server.HTTP
	gwAddr := testport.Addr(t)
	startProc(t, "gateway", "gateway", "-listen", gwAddr, "-nomad-addr", cluster.Addr, "-address", serverAddr, "-refresh", "200ms")

	const project = "as"
	job := names.JobID(project)
	dir := writeProject(t, project, map[string]string{"as.fn.hcl": scaled, "fn/index.js": slowCode})
	if r := e2etest.Butter(t, ".", "deploy", "-address", serverAddr, "-timeout", "4m", dir); r.Code != 0 {
		t.Fatalf("deploy: %+v", r)
	}
	defer func() {
		if t.Failed() {
			nomadtest.LogTasks(t, cluster.Client, job, 4000, "stderr")
		}
	}()
	if n := len(cluster.RunningAllocs(t, job, group)); n != 1 {
		t.Fatalf("%d running allocations after the deploy, want 1 (the policy's min)", n)
	}

	url := "http://" + gwAddr + "/slow"
	pids := &allocFinder{m: map[string]string{}}
	var (
		mu     sync.Mutex
		calls  []call
		stop   atomic.Bool
		wg     sync.WaitGroup
		loadAt = time.Now()
	)
	const callers = 6
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 30 * time.Second}
			for !stop.Load() {
				c := call{start: time.Now()}
				resp, err := client.Post(url, "application/octet-stream", strings.NewReader("x"))
				if err != nil {
					c.err = err.Error()
				} else {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						c.err = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
					} else if c.alloc = pids.alloc(string(b)); c.alloc == "" {
						c.err = fmt.Sprintf("no allocation found for the pid %q that answered", b)
					}
				}
				c.end = time.Now()
				mu.Lock()
				calls = append(calls, c)
				mu.Unlock()
			}
		}()
	}
	stopLoad := func() { stop.Store(true); wg.Wait() }
	defer stopLoad()

	allocs := waitSpread(t, cluster, job, "the loop scaling the group to 3 running allocations on 3 nodes")
	t.Logf("3 allocations %v after the load started", time.Since(loadAt).Round(100*time.Millisecond))
	nomadtest.WaitFor(t, 2*time.Minute, "answers from all three allocations", func() bool {
		mu.Lock()
		defer mu.Unlock()
		seen := map[string]bool{}
		for _, c := range calls {
			if _, ok := allocs[c.alloc]; ok {
				seen[c.alloc] = true
			}
		}
		return len(seen) == nodes
	})
	t.Logf("answers from all 3 allocations %v after the load started", time.Since(loadAt).Round(100*time.Millisecond))
	// The gateway spreads the load over the three: of the next 60
	// calls, each allocation answers at least a sixth.
	mu.Lock()
	from := len(calls)
	mu.Unlock()
	spread := map[string]int{}
	nomadtest.WaitFor(t, 2*time.Minute, "60 more calls", func() bool {
		mu.Lock()
		defer mu.Unlock()
		if len(calls) < from+60 {
			return false
		}
		for _, c := range calls[from : from+60] {
			spread[c.alloc]++
		}
		return true
	})
	t.Logf("60 calls with 3 allocations, per allocation: %v", spread)
	for id := range allocs {
		if spread[id] < 10 {
			t.Errorf("allocation %s (%s) answered %d of 60 calls: the gateway does not spread the load", id, allocs[id].NodeName, spread[id])
		}
	}

	st, _, err := cluster.Client.Jobs().ScaleStatus(job, nil)
	if err != nil {
		t.Fatalf("scale status: %v", err)
	}
	var ups []string
	for _, ev := range st.TaskGroups[group].Events {
		if ev.Count != nil && *ev.Count > ev.PreviousCount {
			ups = append(ups, fmt.Sprintf("%d -> %d: %s", ev.PreviousCount, *ev.Count, ev.Message))
		}
	}
	t.Logf("Nomad's scaling events up: %q", ups)
	if len(ups) == 0 {
		t.Fatalf("Nomad has no scaling event up for %s/%s: %+v", job, group, st.TaskGroups[group].Events)
	}
	for _, u := range ups {
		if !strings.Contains(u, "butter autoscaler: ") || !strings.Contains(u, "inflight") {
			t.Errorf("a scale up not by the autoscaler on the in-flight signal: %q", u)
		}
	}
	var out string
	e2etest.WaitFor(t, 30*time.Second, "butter status showing 3 allocations and the step", func() bool {
		r := e2etest.Butter(t, ".", "status", "-address", serverAddr, project)
		out = r.Stdout
		return r.Code == 0 && strings.Contains(out, "3 allocations") && strings.Contains(out, "-> 3: inflight: slow has")
	})
	t.Logf("butter status %s:\n%s", project, out)

	// A node dies under the load. The loop cannot read its allocation's
	// metrics: it names the allocation among its problems and keeps the
	// count (it acts on no reading it cannot refresh, and the load still
	// wants the maximum), and Nomad replaces the allocation on a survivor.
	var victim *api.AllocationListStub
	for _, a := range allocs {
		if victim == nil || a.Name > victim.Name {
			victim = a
		}
	}
	desired := watchDesired(t, cluster.Client, job)
	t.Logf("killing node %s, which runs allocation %s (%s)", victim.NodeName, victim.ID, victim.Name)
	cluster.KillNode(t, victim.NodeName)
	killed := time.Now()
	e2etest.WaitFor(t, 30*time.Second, "butter status naming the lost allocation among the loop's problems", func() bool {
		r := e2etest.Butter(t, ".", "status", "-address", serverAddr, project)
		out = r.Stdout
		return r.Code == 0 && strings.Contains(out, "problem    allocation "+victim.ID[:8])
	})
	t.Logf("butter status %v after the kill:\n%s", time.Since(killed).Round(100*time.Millisecond), out)
	var replacement *api.AllocationListStub
	nomadtest.WaitFor(t, 2*time.Minute, "a replacement of the lost allocation, running on a surviving node", func() bool {
		for _, a := range cluster.RunningAllocs(t, job, group) {
			if a.Name == victim.Name && a.ID != victim.ID && a.NodeID != victim.NodeID {
				replacement = a
				return true
			}
		}
		return false
	})
	t.Logf("replacement %s on %s running %v after the kill", replacement.ID, replacement.NodeName, time.Since(killed).Round(100*time.Millisecond))
	nomadtest.WaitFor(t, time.Minute, "answers from the replacement allocation", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range calls {
			if c.alloc == replacement.ID {
				return true
			}
		}
		return false
	})
	t.Logf("answers from the replacement %v after the kill", time.Since(killed).Round(100*time.Millisecond))
	if seen := desired(); len(seen) != 1 || seen[0] != 3 {
		t.Errorf("the group's desired count from the kill until the replacement answered: %v, want 3 throughout", seen)
	}
	st, _, err = cluster.Client.Jobs().ScaleStatus(job, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range st.TaskGroups[group].Events {
		if ev.Count != nil && int64(ev.Time) > killed.UnixNano() {
			t.Errorf("a scaling event after the node was killed, while the load still wanted the maximum: %d -> %d: %s", ev.PreviousCount, *ev.Count, ev.Message)
		}
	}

	stopLoad()
	mu.Lock()
	per := map[string]int{}
	var failed []string
	inFlight := 0 // failed calls that were in flight when the node died
	for _, c := range calls {
		if c.err == "" {
			per[c.alloc]++
			continue
		}
		if c.start.Before(killed) && c.end.After(killed.Add(-time.Second)) {
			inFlight++
			t.Logf("failed call, in flight when the node died (it may have run there): %s", c.err)
			continue
		}
		failed = append(failed, fmt.Sprintf("%s after the load started: %s", c.start.Sub(loadAt).Round(time.Millisecond), c.err))
	}
	total := len(calls)
	mu.Unlock()
	t.Logf("load: %d calls, %d failed in flight on the lost node; answers per allocation %v", total, inFlight, per)
	for _, f := range failed {
		t.Errorf("failed call, started %s", f)
	}
	if inFlight > callers {
		t.Errorf("%d calls failed around the kill, more than the %d callers could have had in flight", inFlight, callers)
	}

	idle := time.Now()
	nomadtest.WaitFor(t, 2*time.Minute, "the loop scaling the idle group back to 1 allocation", func() bool {
		st, _, err := cluster.Client.Jobs().ScaleStatus(job, nil)
		return err == nil && st.TaskGroups[group].Desired == 1 && len(cluster.RunningAllocs(t, job, group)) == 1
	})
	took := time.Since(idle)
	t.Logf("back to 1 allocation %v after the load stopped", took.Round(100*time.Millisecond))
	if took < 8*time.Second {
		t.Errorf("scaled in %v after the load stopped, before the scale-in delay of 8s", took)
	}
	st, _, err = cluster.Client.Jobs().ScaleStatus(job, nil)
	if err != nil {
		t.Fatal(err)
	}
	var last api.ScalingEvent
	for _, ev := range st.TaskGroups[group].Events {
		if ev.Time >= last.Time {
			last = ev
		}
	}
	// The loop may scale in by steps: while the load's last calls
	// finish it can want 2 for a moment, and the most it wanted during
	// the scale-in delay is what it scales to (a CI run went 3 -> 2 -> 1).
	if last.Count == nil || *last.Count != 1 || !strings.HasPrefix(last.Message, "butter autoscaler: ") || !strings.Contains(last.Message, " -> 1: ") {
		t.Errorf("the last scaling event is not the autoscaler's scale-in to 1: %+v", last)
	}
}

// watchDesired polls the desired count of job's group every 200ms until
// the returned function is called, which returns the distinct counts
// seen, in order.
func watchDesired(t *testing.T, c *api.Client, job string) func() []int {
	t.Helper()
	var (
		mu   sync.Mutex
		seen []int
	)
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			if st, _, err := c.Jobs().ScaleStatus(job, nil); err == nil {
				d := st.TaskGroups[group].Desired
				mu.Lock()
				if len(seen) == 0 || seen[len(seen)-1] != d {
					seen = append(seen, d)
				}
				mu.Unlock()
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	stop := func() []int {
		once.Do(func() { close(done); <-finished })
		mu.Lock()
		defer mu.Unlock()
		return append([]int(nil), seen...)
	}
	t.Cleanup(func() { stop() })
	return stop
}
