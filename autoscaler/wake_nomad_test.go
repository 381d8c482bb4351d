package autoscaler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	butterapi "github.com/butterfn/butter/api"
	"github.com/butterfn/butter/autoscaler"
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

// gatedWaker holds a gateway's wakes until the test opens its gate, then
// passes them on: the calls are held, deterministically, until then.
// It counts the wakes passed on and those that failed.
type gatedWaker struct {
	gate         chan struct{}
	next         gateway.Waker
	sent, failed *atomic.Int64
}

func (w gatedWaker) Wake(ctx context.Context, project, pool string, held int) error {
	select {
	case <-w.gate:
		w.sent.Add(1)
		err := w.next.Wake(ctx, project, pool, held)
		if err != nil {
			w.failed.Add(1)
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestWakeOnNomad: from zero allocations and back, on a real Nomad dev
// agent with real pools, a control-plane server (in process, its HTTP API
// on 127.0.0.1) whose leader runs the autoscaler, and a real gateway
// following the pool's Nomad service and waking pools through the control
// plane's API (routesync.Sync.Wake). A pool with min 0 and no load is scaled 1 -> 0 after the
// scale-in delay; two HTTP calls through the gateway are held while the
// gateway's wake makes the loop scale it 0 -> 1, a third over the
// gateway's queue limit of 2 gets 503 with Retry-After, the two are
// answered 200 once the pool serves; idle again, the pool goes back to
// zero after the scale-in delay.
func TestWakeOnNomad(t *testing.T) {
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
	const project, group = "wake", "main"
	jobID, service := names.JobID(project), names.ServiceName(project, group)
	policy := jobs.ScalingPolicy{
		Enabled: true, Min: 0, Max: 2,
		Cooldown: 20 * time.Second, ScaleInDelay: 2 * time.Second,
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
	tg.Update = &api.UpdateStrategy{HealthCheck: new("task_states"), MinHealthyTime: new(time.Second), HealthyDeadline: new(time.Minute)}
	task := api.NewTask("pool", "raw_exec")
	task.Config = map[string]any{"command": self, "args": []string{"-test.run=^$"}}
	task.Env = map[string]string{envPool: "1"}
	task.Resources = &api.Resources{CPU: new(100), MemoryMB: new(128)}
	tg.AddTask(task)
	job.AddTaskGroup(tg)
	if _, _, err := agent.Client.Jobs().Register(job, nil); err != nil {
		t.Fatalf("register: %v", err)
	}

	logger := hclog.New(&hclog.LoggerOptions{Name: "test", Output: testWriter{t}, Level: hclog.Info})
	cluster := schedtest.MakeCluster(t, schedtest.Options{Nodes: 1, NoTimers: true, LogLevel: hclog.Info, Autoscale: &scheduler.AutoscaleConfig{
		Scaler: &autoscaler.NomadScaler{Client: agent.Client}, Signals: &autoscaler.PoolSignals{Nomad: agent.Client},
		Interval: 300 * time.Millisecond, StaleAfter: 10 * time.Second,
	}})
	leader := cluster.Leader().Server
	decision := func() fsm.ScalingDecision {
		var d fsm.ScalingDecision
		leader.FSM().Read(func(st *fsm.State) {
			if p := st.Scaling[project+"/"+group]; p != nil {
				d = *p
			}
		})
		return d
	}
	cp, err := butterapi.NewClient(&butterapi.Config{Address: "http://" + leader.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	sync := routesync.New(cp, gateway.NewMemKeys(), logger.Named("routesync"))

	res := gateway.NewNomadResolver(agent.Client, logger.Named("nomad"))
	t.Cleanup(res.Close)
	gate := make(chan struct{})
	waker := gatedWaker{gate: gate, next: sync, sent: new(atomic.Int64), failed: new(atomic.Int64)}
	gw := gateway.New(res, gateway.WithLogger(logger.Named("gateway")), gateway.WithWaker(waker), gateway.WithWakeQueue(2))
	if err := gw.SetRoutes([]gateway.Route{{Method: "POST", Path: "/hold", Project: project, Function: "hold", Pool: group, Timeout: 90 * time.Second}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(func() { srv.Close(); gw.Close() })

	count := func() int {
		j, _, err := agent.Client.Jobs().Info(jobID, nil)
		if err != nil {
			return -1
		}
		return *j.TaskGroups[0].Count
	}
	running := func() int {
		allocs, _, err := agent.Client.Jobs().Allocations(jobID, false, nil)
		if err != nil {
			return -1
		}
		n := 0
		for _, al := range allocs {
			if al.ClientStatus == api.AllocClientStatusRunning {
				n++
			}
		}
		return n
	}

	// Idle with min 0: the first allocation serves, then goes after the
	// scale-in delay.
	waitFor(t, 90*time.Second, "the first pool's service", func() bool { return len(res.Endpoints(project, group)) == 1 })
	waitFor(t, 60*time.Second, "the idle pool scaled to 0", func() bool { return count() == 0 })
	// The step, or the hold at zero after it (Nomad's scaling events,
	// checked at the end, keep the step's reason). The loop records its
	// decision in Raft after Nomad took the scale: wait for it.
	var scaledIn fsm.ScalingDecision
	waitFor(t, 30*time.Second, "the loop's scale to zero recorded", func() bool {
		scaledIn = decision()
		return scaledIn.To == 0 && !scaledIn.LastScaled.IsZero()
	})
	waitFor(t, 60*time.Second, "no allocation running and no endpoint", func() bool {
		return running() == 0 && len(res.Endpoints(project, group)) == 0
	})

	// Two calls wait for the wake; a third is over the queue limit.
	type result struct {
		code int
		body string
		took time.Duration
	}
	post := func(body string) result {
		start := time.Now()
		resp, err := http.Post(srv.URL+"/hold", "text/plain", strings.NewReader(body))
		if err != nil {
			return result{code: -1, body: err.Error()}
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return result{code: resp.StatusCode, body: string(b), took: time.Since(start)}
	}
	heldAt := time.Now() // the gateway's wake starts with the first call
	results := make(chan result, 2)
	for _, body := range []string{"one", "two"} {
		go func() { results <- post(body) }()
	}
	waitFor(t, 30*time.Second, "two calls held by the gateway", func() bool { return gatewayMetric(t, gw, "butter_gateway_held_calls") == 2 })
	resp, err := http.Post(srv.URL+"/hold", "text/plain", strings.NewReader("three"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var eb struct{ Type, Error string }
	_ = json.Unmarshal(b, &eb)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || eb.Type != "Unavailable" {
		t.Errorf("a third call over the queue limit: %d Retry-After %q %s; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	start := time.Now()
	close(gate)
	for range 2 {
		r := <-results
		if r.code != 200 || (r.body != "one" && r.body != "two") {
			t.Fatalf("held call: %d %q; want 200 with its body", r.code, r.body)
		}
	}
	total := time.Since(start)
	if sent, failed := waker.sent.Load(), waker.failed.Load(); sent == 0 || failed != 0 {
		t.Errorf("%d wakes through the control plane, %d failed; want some, none failed", sent, failed)
	}
	// The wake's decision, or the hold at one allocation after it, which
	// keeps the wake's time.
	// One allocation when the gateway's wake went out with the first
	// call held, two when both were held by then (capacity 2 per
	// allocation at target 0.5: one call each); which comes first is the
	// goroutines' race.
	wake := decision()
	if (wake.To != 1 && wake.To != 2) || wake.LastScaled.Before(start) {
		t.Errorf("decision after the wake: %+v", wake)
	}
	if within := wake.LastScaled.Sub(scaledIn.LastScaled); within >= policy.Cooldown {
		t.Errorf("woken %s after the scale to zero, not within the cooldown (%s): the test shows nothing about it", within, policy.Cooldown)
	}
	// The split: the wake reaching Nomad, Nomad placing and starting the
	// task, the pool starting to listen, the call itself.
	allocs, _, err := agent.Client.Jobs().Allocations(jobID, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var stub *api.AllocationListStub
	for _, al := range allocs {
		if stub == nil || al.CreateTime > stub.CreateTime {
			stub = al
		}
	}
	// The client reports the task's start to the server a moment later.
	var started time.Time
	waitFor(t, 30*time.Second, "the woken task's start time in Nomad", func() bool {
		al, _, err := agent.Client.Allocations().Info(stub.ID, nil)
		if err != nil || al.TaskStates["pool"] == nil {
			return false
		}
		started = al.TaskStates["pool"].StartedAt
		return !started.IsZero()
	})
	created := time.Unix(0, stub.CreateTime)
	accepted := heldAt.Add(time.Duration(gatewayMetric(t, gw, "butter_gateway_wake_seconds") * float64(time.Second)))
	t.Logf("wake from zero allocations to the first answer: %s in all: Nomad placement %s (the leader's loop decided after %s, the allocation was created after %s), pool start %s, call %s",
		total.Round(time.Millisecond), started.Sub(start).Round(time.Millisecond),
		wake.LastScaled.Sub(start).Round(time.Millisecond), created.Sub(start).Round(time.Millisecond),
		accepted.Sub(started).Round(time.Millisecond), (total - accepted.Sub(start)).Round(time.Millisecond))

	// Idle again: back to zero after the wake's hold and the scale-in
	// delay.
	idle := time.Now()
	waitFor(t, 60*time.Second, "the pool back to 0", func() bool { return count() == 0 })
	if waited := time.Since(idle); waited < policy.ScaleInDelay {
		t.Errorf("scaled to zero %s after the calls, before the scale-in delay (%s)", waited, policy.ScaleInDelay)
	}
	st, _, err := agent.Client.Jobs().ScaleStatus(jobID, nil)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, ev := range st.TaskGroups[group].Events {
		msgs = append(msgs, ev.Message)
	}
	// The wake's own step says how many it asked for (1 or 2, as
	// above); the decision read after it may be a hold at another count
	// the load wanted (a CI run read a hold wanting 2 after a wake to 1),
	// so the event is matched on the step, not on that decision's To.
	woke := fmt.Sprintf("butter autoscaler: 0 -> %d: wake", wake.To)
	if wake.Kind != fsm.ScaleScaled {
		woke = "butter autoscaler: 0 -> "
	}
	if all := strings.Join(msgs, "\n"); strings.Count(all, "-> 0: inflight") < 2 || !strings.Contains(all, woke) || !strings.Contains(all, ": wake: a gateway holds") {
		t.Errorf("Nomad's scaling events:\n%s", all)
	}
}

// gatewayMetric sums a metric's samples (a histogram's sum) in a
// gateway's registry.
func gatewayMetric(t testing.TB, g *gateway.Gateway, name string) float64 {
	t.Helper()
	mfs, err := g.Metrics().Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				sum += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return sum
}
