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
// the gateway tries another). `butter status` shows the step. The load
// stops, and after the scale-in delay the loop scales the group back to 1.
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
			logs(t, cluster.Client, job)
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

	stopLoad()
	mu.Lock()
	per := map[string]int{}
	var failed []string
	for _, c := range calls {
		if c.err != "" {
			failed = append(failed, fmt.Sprintf("%s after the load started: %s", c.start.Sub(loadAt).Round(time.Millisecond), c.err))
			continue
		}
		per[c.alloc]++
	}
	total := len(calls)
	mu.Unlock()
	t.Logf("load: %d calls, answers per allocation %v", total, per)
	for _, f := range failed {
		t.Errorf("failed call, started %s", f)
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
	if last.Count == nil || *last.Count != 1 || !strings.HasPrefix(last.Message, "butter autoscaler: 3 -> 1") {
		t.Errorf("the last scaling event is not the autoscaler's 3 -> 1: %+v", last)
	}
}
