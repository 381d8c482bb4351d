package autoscaler_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	butterapi "github.com/butterfn/butter/api"
	"github.com/butterfn/butter/autoscaler"
	"github.com/butterfn/butter/bench/harness"
	"github.com/butterfn/butter/gateway"
	"github.com/butterfn/butter/gateway/routesync"
	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/scheduler"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/butterfn/butter/scheduler/schedtest"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/api"
)

// BenchmarkWakeFromZero measures an HTTP call to a pool with no
// allocation, from the call to its answer, on a real Nomad dev agent
// (one node): the gateway holds it and wakes the pool through the
// control plane's HTTP API, the leader's loop scales the group 0 -> 1
// through Nomad's Scale API, Nomad places and starts the allocation (the
// test binary as a pool, under raw_exec), the gateway sees the pool's
// service and releases the call. Before each operation, outside the
// timing, an operator's scale to 0 stops the allocation and the gateway
// has no endpoint left. Run it with -benchtime=20x or so: each operation
// is one wake, and the resets take a few seconds each.
//
// Besides p50 and p99 it reports the medians of the split: loop-ms (the
// call to the loop's step, the wake's trip through the gateway and the
// control plane), placement-ms (the call to the task started, as Nomad
// records it), pool-ms (the task started to the gateway's first
// connection to the pool: the pool's start and the service's
// registration) and call-ms (the rest: the call itself).
//
// The baseline is the same call through the same gateway to the pool
// while it runs.
func BenchmarkWakeFromZero(b *testing.B) {
	agent := nomadtest.StartWith(b, nomadtest.Options{HCL: `
plugin "raw_exec" {
  config {
    enabled = true
  }
}
`})
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	const project, group = "wakebench", "main"
	jobID, service := names.JobID(project), names.ServiceName(project, group)
	policy := jobs.ScalingPolicy{
		Enabled: true, Min: 0, Max: 1,
		// The loop never scales in on its own: the operator's resets do.
		Cooldown: time.Second, ScaleInDelay: time.Hour,
		TargetInFlight: 0.5,
		Capacity:       map[string]int{"hold": 2},
	}
	job := api.NewServiceJob(jobID, jobID, "", 50)
	job.Datacenters = []string{"*"}
	job.Meta = map[string]string{names.MetaProject: project}
	tg := api.NewTaskGroup(group, 1)
	tg.Networks = []*api.NetworkResource{{DynamicPorts: []api.Port{{Label: "invoke"}}}}
	tg.Services = []*api.Service{{Name: service, PortLabel: "invoke", Provider: "nomad"}}
	tg.Scaling = policy.Block()
	// Nomad refuses to scale a job while a deployment runs: a short one.
	tg.Update = &api.UpdateStrategy{HealthCheck: new("task_states"), MinHealthyTime: new(100 * time.Millisecond), HealthyDeadline: new(time.Minute)}
	task := api.NewTask("pool", "raw_exec")
	task.Config = map[string]any{"command": self, "args": []string{"-test.run=^$"}}
	task.Env = map[string]string{envPool: "1"}
	task.Resources = &api.Resources{CPU: new(100), MemoryMB: new(128)}
	tg.AddTask(task)
	job.AddTaskGroup(tg)
	if _, _, err := agent.Client.Jobs().Register(job, nil); err != nil {
		b.Fatalf("register: %v", err)
	}

	logger := hclog.New(&hclog.LoggerOptions{Name: "bench", Output: io.Discard})
	const wakeFor = 500 * time.Millisecond
	cluster := schedtest.MakeCluster(b, schedtest.Options{Nodes: 1, NoTimers: true, LogLevel: hclog.Warn, Autoscale: &scheduler.AutoscaleConfig{
		Scaler: &autoscaler.NomadScaler{Client: agent.Client}, Signals: &autoscaler.PoolSignals{Nomad: agent.Client},
		Interval: 300 * time.Millisecond, StaleAfter: 10 * time.Second, WakeFor: wakeFor,
	}})
	leader := cluster.Leader().Server
	lastScaled := func() time.Time {
		var at time.Time
		leader.FSM().Read(func(st *fsm.State) {
			if p := st.Scaling[project+"/"+group]; p != nil {
				at = p.LastScaled
			}
		})
		return at
	}
	cp, err := butterapi.NewClient(&butterapi.Config{Address: "http://" + leader.Addr()})
	if err != nil {
		b.Fatal(err)
	}
	sync := routesync.New(cp, gateway.NewMemKeys(), logger)
	res := gateway.NewNomadResolver(agent.Client, logger)
	b.Cleanup(res.Close)
	gw := gateway.New(res, gateway.WithLogger(logger), gateway.WithWaker(sync), gateway.WithWakeQueue(16))
	if err := gw.SetRoutes([]gateway.Route{{Method: "POST", Path: "/hold", Project: project, Function: "hold", Pool: group, Timeout: 60 * time.Second}}); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	b.Cleanup(func() { srv.Close(); gw.Close() })

	call := func() {
		resp, err := http.Post(srv.URL+"/hold", "text/plain", strings.NewReader("wake"))
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "wake" {
			b.Fatalf("call: %d %q; want 200 wake", resp.StatusCode, body)
		}
	}
	running := func() []*api.AllocationListStub {
		allocs, _, err := agent.Client.Jobs().Allocations(jobID, false, nil)
		if err != nil {
			return nil
		}
		var out []*api.AllocationListStub
		for _, al := range allocs {
			if al.ClientStatus == api.AllocClientStatusRunning || al.ClientStatus == api.AllocClientStatusPending {
				out = append(out, al)
			}
		}
		return out
	}
	deployed := func() bool {
		d, _, err := agent.Client.Jobs().LatestDeployment(jobID, nil)
		return err == nil && (d == nil || d.Status != api.DeploymentStatusRunning)
	}
	nomadtest.WaitFor(b, 90*time.Second, "the first pool to answer", func() bool {
		if len(res.Endpoints(project, group)) != 1 {
			return false
		}
		resp, err := http.Post(srv.URL+"/hold", "text/plain", strings.NewReader("wake"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	b.Run("baseline", func(b *testing.B) {
		call() // a connection to the pool, as after a wake
		var lat harness.Latencies
		for b.Loop() {
			t := time.Now()
			call()
			lat.Add(time.Since(t))
		}
		lat.Report(b)
	})

	b.Run("wake", func(b *testing.B) {
		var lat, loop, placement, poolStart, rest harness.Latencies
		for b.Loop() {
			b.StopTimer()
			// The operator's reset, once the last wake's floor and
			// deployment are over.
			time.Sleep(wakeFor)
			nomadtest.WaitFor(b, 60*time.Second, "no deployment running", deployed)
			scaleTo(b, agent.Client, jobID, group, 0, "benchmark: back to zero")
			nomadtest.WaitFor(b, 60*time.Second, "no allocation and no endpoint", func() bool {
				return len(running()) == 0 && len(res.Endpoints(project, group)) == 0
			})
			before := lastScaled()
			waited := gatewayMetric(b, gw, "butter_gateway_wake_seconds")
			b.StartTimer()
			start := time.Now()
			call()
			took := time.Since(start)
			b.StopTimer()
			lat.Add(took)
			accepted := time.Duration((gatewayMetric(b, gw, "butter_gateway_wake_seconds") - waited) * float64(time.Second))
			var stepped, started time.Time
			nomadtest.WaitFor(b, 30*time.Second, "the wake's step and the task's start in Nomad", func() bool {
				stepped = lastScaled()
				allocs := running()
				if !stepped.After(before) || len(allocs) != 1 {
					return false
				}
				al, _, err := agent.Client.Allocations().Info(allocs[0].ID, nil)
				if err != nil || al.TaskStates["pool"] == nil {
					return false
				}
				started = al.TaskStates["pool"].StartedAt
				return !started.IsZero()
			})
			loop.Add(stepped.Sub(start))
			placement.Add(started.Sub(start))
			poolStart.Add(start.Add(accepted).Sub(started))
			rest.Add(took - accepted)
			b.StartTimer()
		}
		lat.Report(b)
		for _, s := range []struct {
			unit string
			l    *harness.Latencies
		}{{"loop-ms", &loop}, {"placement-ms", &placement}, {"pool-ms", &poolStart}, {"call-ms", &rest}} {
			b.ReportMetric(float64(s.l.Percentile(0.5))/1e6, s.unit)
		}
	})
}
