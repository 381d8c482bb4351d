package autoscaler_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/autoscaler"
	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/api"
	"github.com/prometheus/client_golang/prometheus"
)

// TestResourcesOnNomad: the cpu and memory signals come from Nomad's
// allocation stats of a real pool on a real Nomad dev agent. The pool
// (the test binary as a raw_exec task, reserving 100 MHz and 128 MB)
// spins a quarter of a core with no call in flight: its CPU over half its
// reservation (target cpu = 0.5) makes the loop scale the group 1 -> 2,
// with cpu as the signal that asked for the most and a reason that names
// the MHz read; the memory read is the pool's RSS, above 0 and under its
// reservation. The metrics carry the shares.
func TestResourcesOnNomad(t *testing.T) {
	agent := nomadtest.StartWith(t, nomadtest.Options{HCL: `
plugin "raw_exec" {
  config {
    enabled = true
  }
}
`})
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const jobID, group, service = "butter-cpu", "main", "butter-cpu-main"
	policy := jobs.ScalingPolicy{
		Enabled: true, Min: 1, Max: 2,
		Cooldown: time.Second, ScaleInDelay: time.Hour,
		TargetInFlight: 0.5, TargetCPU: 0.5, TargetMemory: 1,
		Capacity: map[string]int{"hold": 2},
	}
	job := api.NewServiceJob(jobID, jobID, "", 50)
	job.Datacenters = []string{"*"}
	job.Meta = map[string]string{"butter_project": "cpu"}
	tg := api.NewTaskGroup(group, 1)
	tg.Networks = []*api.NetworkResource{{DynamicPorts: []api.Port{{Label: "invoke"}}}}
	tg.Services = []*api.Service{{Name: service, PortLabel: "invoke", Provider: "nomad"}}
	tg.Scaling = policy.Block()
	task := api.NewTask("pool", "raw_exec")
	task.Config = map[string]any{"command": self, "args": []string{"-test.run=^$"}}
	task.Env = map[string]string{envPool: "1", envBurn: "1"}
	task.Resources = &api.Resources{CPU: new(100), MemoryMB: new(128)}
	tg.AddTask(task)
	job.AddTaskGroup(tg)
	if _, _, err := agent.Client.Jobs().Register(job, nil); err != nil {
		t.Fatalf("register: %v", err)
	}
	t.Cleanup(func() { _, _, _ = agent.Client.Jobs().Deregister(jobID, true, nil) })

	reg := prometheus.NewRegistry()
	store := &autoscaler.MemStore{}
	a := autoscaler.New(autoscaler.Config{
		Scaler: &autoscaler.NomadScaler{Client: agent.Client}, Signals: &autoscaler.PoolSignals{Nomad: agent.Client}, Store: store,
		Interval: 300 * time.Millisecond, StaleAfter: 10 * time.Second, Metrics: autoscaler.NewMetrics(reg),
		Logger: hclog.New(&hclog.LoggerOptions{Name: "autoscaler", Output: testWriter{t}, Level: hclog.Info}),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	// The group's reservation comes from the job as Nomad runs it.
	var first autoscaler.Observation
	waitFor(t, 90*time.Second, "a pass that read the pool's CPU and memory", func() bool {
		o := a.Observations()["cpu/main"]
		if r := o.Load.Resources; r != nil && r.Allocations == 1 && o.Want >= 0 {
			first = o
			return true
		}
		return false
	})
	r := first.Load.Resources
	t.Logf("first reading: %.0f MHz of %d reserved, %d MiB of %d; wants %d (%s)", r.CPUMHz, r.CPUReservedMHz, r.MemoryBytes>>20, r.MemoryReservedMB, first.Want, first.Signal)
	if r.CPUReservedMHz != 100 || r.MemoryReservedMB != 128 {
		t.Errorf("reservation read %d MHz, %d MB; want 100, 128", r.CPUReservedMHz, r.MemoryReservedMB)
	}
	if r.MemoryBytes == 0 || r.MemoryBytes >= 128<<20 {
		t.Errorf("memory read %d bytes; want the pool's RSS, above 0 and under 128 MiB", r.MemoryBytes)
	}

	waitFor(t, 60*time.Second, "the loop to scale the group to 2 on CPU", func() bool {
		j, _, err := agent.Client.Jobs().Info(jobID, nil)
		return err == nil && *j.TaskGroups[0].Count == 2
	})
	// The loop records its decision after Nomad took the new count: wait
	// for the record, not only for the count (a CI run read the store in
	// between).
	var out fsm.ScalingDecision
	waitFor(t, 30*time.Second, "the scale-out decision recorded", func() bool {
		for _, d := range store.Recorded() {
			if d.Kind == fsm.ScaleScaled {
				out = d
				return true
			}
		}
		return false
	})
	if out.Count != 1 || out.To != 2 || !strings.Contains(out.Reason, "cpu: ") || !strings.Contains(out.Reason, "MHz used on 1 allocations") ||
		!strings.Contains(out.Reason, "at target 0.5 -> ") || !strings.Contains(out.Reason, "inflight: 0 calls in flight -> 0") || !strings.Contains(out.Reason, "memory: ") {
		t.Errorf("scale-out decision: %+v", out)
	}
	if v, ok := sample(t, reg, "butter_autoscaler_decisions_total", map[string]string{"project": "cpu", "pool": "main", "kind": fsm.ScaleScaled, "direction": "up", "signal": autoscaler.SignalCPU}); !ok || v != 1 {
		t.Errorf("decisions_total of the step on cpu: %g (present %v), want 1", v, ok)
	}
	if v, ok := sample(t, reg, "butter_autoscaler_cpu_share", map[string]string{"project": "cpu", "pool": "main"}); !ok || v <= 0.5 {
		t.Errorf("cpu_share %g (present %v), want above the 0.5 target", v, ok)
	}
	if v, ok := sample(t, reg, "butter_autoscaler_memory_share", map[string]string{"project": "cpu", "pool": "main"}); !ok || v <= 0 || v >= 1 {
		t.Errorf("memory_share %g (present %v), want in (0, 1)", v, ok)
	}
}
