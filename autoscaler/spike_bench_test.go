package autoscaler_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/autoscaler"
	"github.com/butterfn/butter/bench/harness"
	"github.com/butterfn/butter/gateway"
	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/names"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/api"
)

// benchPoolJob is a Butter-shaped job of one group whose task is the test
// binary as a pool (runTestPool: one exec function "hold", cat, capacity
// 2 per allocation) under raw_exec, with the policy's scaling block and a
// short deployment (Nomad refuses to scale a job while one runs).
func benchPoolJob(b *testing.B, project, group string, count int, policy jobs.ScalingPolicy) *api.Job {
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	jobID := names.JobID(project)
	job := api.NewServiceJob(jobID, jobID, "", 50)
	job.Datacenters = []string{"*"}
	job.Meta = map[string]string{names.MetaProject: project}
	tg := api.NewTaskGroup(group, count)
	tg.Networks = []*api.NetworkResource{{DynamicPorts: []api.Port{{Label: "invoke"}}}}
	tg.Services = []*api.Service{{Name: names.ServiceName(project, group), PortLabel: "invoke", Provider: "nomad"}}
	tg.Scaling = policy.Block()
	tg.Update = &api.UpdateStrategy{HealthCheck: new("task_states"), MinHealthyTime: new(100 * time.Millisecond), HealthyDeadline: new(time.Minute)}
	task := api.NewTask("pool", "raw_exec")
	task.Config = map[string]any{"command": self, "args": []string{"-test.run=^$"}}
	task.Env = map[string]string{envPool: "1"}
	task.Resources = &api.Resources{CPU: new(100), MemoryMB: new(128)}
	tg.AddTask(task)
	job.AddTaskGroup(tg)
	return job
}

// BenchmarkSpikeToScaled measures the allocation level's answer to a step
// in load, on a real Nomad dev agent (one node): from the moment 8 HTTP
// clients start calling a pool of one allocation through a gateway
// (capacity 2 per allocation at target 0.5: the load wants more than max
// 2) to the moment the second allocation's pool has answered one of their
// calls. The loop runs with its defaults (a pass every 2 s, as `butter
// server` runs it), so its figure includes waiting for the next pass.
// Before each operation, outside the timing, the load stops and an
// operator's scale brings the group back to one allocation. Run it with
// -benchtime=10x or so: each operation is one step, and the resets take a
// few seconds each.
//
// Besides p50 and p99 it reports the medians of detect-ms (the step to the
// loop's scale), endpoint-ms (to the gateway listing the new allocation's
// service, which Nomad registers when it places the allocation, before
// its task starts), placement-ms (to the new task started, as Nomad
// records it), nomad-evals/step (the job's Nomad evaluations a step
// made) and serving-ms (to the new pool's first answer; the
// gateway passes over an endpoint that refused a connection, as a
// starting pool does, for 100 ms, doubling while it refuses: Nomad
// registers the service before the pool listens). The baseline is the
// same step with the operator's scale at its start instead of the loop's
// (nomad job scale at once): Nomad placing, the pool starting and the
// gateway finding it; Δ is the loop's detection.
func BenchmarkSpikeToScaled(b *testing.B) {
	agent := nomadtest.StartWith(b, nomadtest.Options{HCL: `
plugin "raw_exec" {
  config {
    enabled = true
  }
}
`})
	const project, group, clients = "spike", "main", 8
	jobID := names.JobID(project)
	policy := jobs.ScalingPolicy{
		Enabled: true, Min: 1, Max: 2,
		Cooldown: time.Second, ScaleInDelay: time.Hour,
		TargetInFlight: 0.5,
		Capacity:       map[string]int{"hold": 2},
	}
	if _, _, err := agent.Client.Jobs().Register(benchPoolJob(b, project, group, 1, policy), nil); err != nil {
		b.Fatalf("register: %v", err)
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "bench", Output: io.Discard})
	res := gateway.NewNomadResolver(agent.Client, logger)
	b.Cleanup(res.Close)
	gw := gateway.New(res, gateway.WithLogger(logger))
	if err := gw.SetRoutes([]gateway.Route{{Method: "POST", Path: "/hold", Project: project, Function: "hold", Pool: group, Timeout: 60 * time.Second}}); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	b.Cleanup(func() { srv.Close(); gw.Close() })
	client := harness.Client(clients)

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
	call := func() bool {
		resp, err := client.Post(srv.URL+"/hold", "text/plain", strings.NewReader("x"))
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	// answered is how many calls the pool at ep has answered.
	answered := func(ep string) float64 {
		if !strings.Contains(ep, "://") {
			ep = "http://" + ep
		}
		resp, err := http.Get(ep + "/metrics")
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		var n float64
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "butter_invocations_total{") && strings.Contains(line, `function="hold"`) {
				if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
					n += v
				}
			}
		}
		return n
	}
	nomadtest.WaitFor(b, 90*time.Second, "the first pool to answer", func() bool {
		return len(res.Endpoints(project, group)) == 1 && call()
	})

	// step runs one operation: the load starts, scale (when set) acts at
	// once, and the step ends when a pool other than the first has
	// answered; it records the times of its parts.
	evaluations := func() int {
		evs, _, err := agent.Client.Jobs().Evaluations(jobID, nil)
		if err != nil {
			b.Fatalf("the job's evaluations: %v", err)
		}
		return len(evs)
	}
	var evalsPerStep []float64
	step := func(b *testing.B, lat, detect, placement, found, serving *harness.Latencies, scaledAt func() time.Time, scale func()) {
		b.StopTimer()
		nomadtest.WaitFor(b, 60*time.Second, "no deployment running", deployed)
		if n := len(running()); n != 1 {
			scaleTo(b, agent.Client, jobID, group, 1, "benchmark: back to one")
		}
		nomadtest.WaitFor(b, 60*time.Second, "one allocation, one endpoint, no deployment", func() bool {
			return len(running()) == 1 && len(res.Endpoints(project, group)) == 1 && deployed()
		})
		time.Sleep(policy.Cooldown) // the loop's last step is behind its cooldown
		before := res.Endpoints(project, group)
		old := running()[0].ID
		evs := evaluations()
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		b.StartTimer()
		start := time.Now()
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					call()
				}
			}()
		}
		if scale != nil {
			scale()
		}
		var fresh string
		var seen time.Duration
		for fresh == "" {
			if time.Since(start) > 2*time.Minute {
				b.Fatalf("no second pool answered within 2 minutes")
			}
			for _, ep := range res.Endpoints(project, group) {
				if slices.Contains(before, ep) {
					continue
				}
				if seen == 0 {
					seen = time.Since(start)
				}
				if answered(ep) > 0 {
					fresh = ep
				}
			}
			if fresh == "" {
				time.Sleep(10 * time.Millisecond)
			}
		}
		took := time.Since(start)
		b.StopTimer()
		stop()
		wg.Wait()
		lat.Add(took)
		var started time.Time
		nomadtest.WaitFor(b, 30*time.Second, "the new task's start in Nomad", func() bool {
			for _, al := range running() {
				if al.ID == old {
					continue
				}
				info, _, err := agent.Client.Allocations().Info(al.ID, nil)
				if err == nil && info.TaskStates["pool"] != nil && !info.TaskStates["pool"].StartedAt.IsZero() {
					started = info.TaskStates["pool"].StartedAt
					return true
				}
			}
			return false
		})
		evalsPerStep = append(evalsPerStep, float64(evaluations()-evs))
		detect.Add(scaledAt().Sub(start))
		placement.Add(started.Sub(start))
		found.Add(seen)
		serving.Add(took)
		b.StartTimer()
	}
	report := func(b *testing.B, lat, detect, placement, found, serving *harness.Latencies) {
		lat.Report(b)
		for _, s := range []struct {
			unit string
			l    *harness.Latencies
		}{{"detect-ms", detect}, {"placement-ms", placement}, {"endpoint-ms", found}, {"serving-ms", serving}} {
			b.ReportMetric(float64(s.l.Percentile(0.5))/1e6, s.unit)
		}
		// Nomad evaluations of the job per step (the scale's, and any
		// its deployment made), for docs/capacity.md.
		b.ReportMetric(harness.Median(evalsPerStep), "nomad-evals/step")
		evalsPerStep = nil
	}

	b.Run("baseline", func(b *testing.B) {
		var lat, detect, placement, found, serving harness.Latencies
		var at time.Time
		for b.Loop() {
			step(b, &lat, &detect, &placement, &found, &serving, func() time.Time { return at }, func() {
				at = time.Now()
				if _, _, err := agent.Client.Jobs().Scale(jobID, group, new(2), "benchmark: the operator's step", false, nil, nil); err != nil {
					b.Fatalf("scale to 2: %v", err)
				}
			})
		}
		report(b, &lat, &detect, &placement, &found, &serving)
	})

	b.Run("autoscaler", func(b *testing.B) {
		store := &autoscaler.MemStore{}
		a := autoscaler.New(autoscaler.Config{
			Scaler: &autoscaler.NomadScaler{Client: agent.Client}, Signals: &autoscaler.PoolSignals{Nomad: agent.Client}, Store: store,
			Logger: logger,
		})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); a.Run(ctx) }()
		defer func() { cancel(); <-done }()
		var lat, detect, placement, found, serving harness.Latencies
		for b.Loop() {
			step(b, &lat, &detect, &placement, &found, &serving, func() time.Time { return store.Decisions()[project+"/"+group].LastScaled }, nil)
		}
		report(b, &lat, &detect, &placement, &found, &serving)
	})
}
