package autoscaler_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/bench/harness"
	"github.com/butterfn/butter/gateway"
	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/names"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/api"
)

// BenchmarkAllocationsAcrossNodes measures the throughput of one pool
// through a gateway with its allocations on several Nomad nodes: a
// cluster of one server and three clients on this machine
// (nomadtest.StartCluster), the pool's group spread over the nodes (as
// jobs.Compile spreads it), the test binary as the pool under raw_exec
// (one exec function, cat, at most 2 calls at once per allocation). Each
// run is wrk with 16 connections for 5 s against the gateway's route.
// `baseline` is one allocation; `3-allocations` three, on three nodes.
//
// This machine's 2 cores run all three nodes, so the ratio shows what the
// allocation level adds where the pool's own concurrency limits it, not
// what three machines would give. Where the CPU went, per request:
// gateway-cpu-µs/req (this process: the gateway and wrk's peer),
// pool-cpu-µs/req (the pools' processes and the cat each call forks) and
// wrk-cpu-µs/req; allocations and nodes count what served.
func BenchmarkAllocationsAcrossNodes(b *testing.B) {
	agent := nomadtest.StartCluster(b, nomadtest.ClusterOptions{Clients: 3, Options: nomadtest.Options{HCL: `
plugin "raw_exec" {
  config {
    enabled = true
  }
}
`}})
	const project, group = "nodes", "main"
	jobID := names.JobID(project)
	policy := jobs.ScalingPolicy{Enabled: true, Min: 1, Max: 3, Cooldown: time.Second, ScaleInDelay: time.Hour, TargetInFlight: 0.5, Capacity: map[string]int{"hold": 2}}
	job := benchPoolJob(b, project, group, 1, policy)
	job.TaskGroups[0].Spreads = []*api.Spread{{Attribute: "${node.unique.id}", Weight: new(int8(100))}}
	if _, _, err := agent.Client.Jobs().Register(job, nil); err != nil {
		b.Fatalf("register: %v", err)
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "bench", Output: io.Discard})
	res := gateway.NewNomadResolver(agent.Client, logger)
	b.Cleanup(res.Close)
	gw := gateway.New(res, gateway.WithLogger(logger))
	if err := gw.SetRoutes([]gateway.Route{{Method: "POST", Path: "/hold", Project: project, Function: "hold", Pool: group, Timeout: 30 * time.Second}}); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	b.Cleanup(func() { srv.Close(); gw.Close() })

	running := func() []*api.AllocationListStub {
		allocs, _, err := agent.Client.Jobs().Allocations(jobID, false, nil)
		if err != nil {
			return nil
		}
		var out []*api.AllocationListStub
		for _, al := range allocs {
			if al.ClientStatus == api.AllocClientStatusRunning {
				out = append(out, al)
			}
		}
		return out
	}
	deployed := func() bool {
		d, _, err := agent.Client.Jobs().LatestDeployment(jobID, nil)
		return err == nil && (d == nil || d.Status != api.DeploymentStatusRunning)
	}
	serving := func(n int) bool {
		eps := res.Endpoints(project, group)
		if len(running()) != n || len(eps) != n {
			return false
		}
		for _, ep := range eps {
			resp, err := http.Post("http://"+ep+"/v1/invoke/hold", "text/plain", strings.NewReader("x"))
			if err != nil {
				return false
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return false
			}
		}
		return true
	}
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	body := []byte("hello, butter")
	for _, n := range []int{1, 3} {
		name := "baseline"
		if n > 1 {
			name = fmt.Sprintf("%d-allocations", n)
		}
		b.Run(name, func(b *testing.B) {
			nomadtest.WaitFor(b, 60*time.Second, "no deployment running", deployed)
			scaleTo(b, agent.Client, jobID, group, n, "benchmark")
			nomadtest.WaitFor(b, 2*time.Minute, fmt.Sprintf("%d pools serving", n), func() bool { return serving(n) })
			nodes := map[string]bool{}
			for _, al := range running() {
				nodes[al.NodeID] = true
			}
			client := harness.Client(1)
			for range 50 { // every endpoint known and answering through the gateway
				if err := harness.Post(client, srv.URL+"/hold", body); err != nil {
					b.Fatal(err)
				}
			}
			var r harness.WrkResult
			var gwCPU, poolCPU time.Duration
			for b.Loop() {
				g0, p0 := harness.SelfCPU(), poolsCPU(self)
				r = harness.Wrk(b, srv.URL+"/hold", body, 16, 5*time.Second)
				gwCPU, poolCPU = harness.SelfCPU()-g0, poolsCPU(self)-p0
			}
			if r.Errors > 0 || r.NonOK > 0 {
				b.Fatalf("wrk saw %d socket errors and %d answers not 2xx:\n%s", r.Errors, r.NonOK, r.Output)
			}
			r.Report(b)
			perReq := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(r.Requests) }
			b.ReportMetric(perReq(gwCPU), "gateway-cpu-µs/req")
			b.ReportMetric(perReq(poolCPU), "pool-cpu-µs/req")
			b.ReportMetric(perReq(r.CPU), "wrk-cpu-µs/req")
			b.ReportMetric(float64(n), "allocations")
			b.ReportMetric(float64(len(nodes)), "nodes")
		})
	}
}

// poolsCPU sums the CPU time of the pools this benchmark's Nomad runs:
// the processes of this test binary other than this one, with their
// reaped children (the cat each call forks).
func poolsCPU(self string) time.Duration {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var sum time.Duration
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err != nil || exe != self {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:])) // from field 3, state
		if len(f) < 15 {
			continue
		}
		for _, k := range []int{11, 12, 13, 14} { // utime, stime, cutime, cstime
			if v, err := strconv.ParseInt(f[k], 10, 64); err == nil {
				sum += time.Duration(v) * 10 * time.Millisecond // clock ticks
			}
		}
	}
	return sum
}

// scaleTo sets group's count to n, as an operator would: a job whose
// deployment Nomad has not listed yet when the benchmark looked, but
// whose scaling Nomad then blocks (400, "job scaling blocked due to
// active deployment"), is scaled again once that deployment ends, for
// up to a minute. Any other refusal fails the benchmark.
func scaleTo(b *testing.B, client *api.Client, jobID, group string, n int, reason string) {
	b.Helper()
	nomadtest.WaitFor(b, time.Minute, fmt.Sprintf("Nomad accepts scaling %s to %d (no active deployment)", group, n), func() bool {
		_, _, err := client.Jobs().Scale(jobID, group, new(n), reason, false, nil, nil)
		if err != nil && !strings.Contains(err.Error(), "active deployment") {
			b.Fatalf("scale to %d: %v", n, err)
		}
		return err == nil
	})
}
