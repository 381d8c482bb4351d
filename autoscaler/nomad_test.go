package autoscaler_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/butterfn/butter/autoscaler"
	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/api"
)

// envPool makes the test binary a pool instead of a test run: Nomad's
// raw_exec driver starts it as each allocation's task (TestScaleOnNomad).
const envPool = "BUTTER_AUTOSCALER_TEST_POOL"

// envBurn makes the test pool also use CPU, about a quarter of a core
// (TestResourcesOnNomad).
const envBurn = "BUTTER_AUTOSCALER_TEST_BURN"

func TestMain(m *testing.M) {
	if os.Getenv(envPool) != "" {
		os.Exit(runTestPool())
	}
	os.Exit(m.Run())
}

// runTestPool serves a real pool of one exec function, "hold" (cat, at
// most 2 instances of concurrency 1), on $NOMAD_PORT_invoke until
// SIGINT or SIGTERM. A call holds an instance while its request body
// stays open.
func runTestPool() int {
	log := hclog.New(&hclog.LoggerOptions{Name: "pool", Output: os.Stderr})
	cfg := &pool.Config{Project: "scale", Pool: "main", Functions: []pool.FunctionConfig{{
		Name: "hold", Runtime: "exec", Command: []string{"cat"}, Timeout: "2m", Memory: 64, CPU: 100, MaxInstances: 2, Concurrency: 1,
	}}}
	p, err := pool.New(cfg, nil, pool.WithLogger(log))
	if err != nil {
		log.Error("new pool", "error", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := p.Start(ctx); err != nil {
		log.Error("start pool", "error", err)
		return 1
	}
	defer p.Close()
	if os.Getenv(envBurn) != "" {
		go burn(ctx)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", os.Getenv("NOMAD_PORT_invoke")))
	if err != nil {
		log.Error("listen", "error", err)
		return 1
	}
	srv := &http.Server{Handler: p.Handler()}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	_ = srv.Serve(ln)
	return 0
}

// burn spins 10 ms in every 40 until ctx ends.
func burn(ctx context.Context) {
	for ctx.Err() == nil {
		for end := time.Now().Add(10 * time.Millisecond); time.Now().Before(end); {
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// TestScaleOnNomad runs the loop with its real seams against a real Nomad
// dev agent: NomadScaler over Nomad's API, PoolSignals reading real pools'
// /metrics through the group's Nomad service. Two calls held open on the
// one allocation's pool put it over its in-flight target: the loop scales
// the group 1 -> 2 through the Scale API and Nomad starts a second pool.
// The calls end; after the scale-in delay the loop scales it back to 1.
func TestScaleOnNomad(t *testing.T) {
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
	const jobID, group, service = "butter-scale", "main", "butter-scale-main"
	policy := jobs.ScalingPolicy{
		Enabled: true, Min: 1, Max: 3,
		Cooldown: time.Second, ScaleInDelay: 3 * time.Second,
		TargetInFlight: 0.5,
		Capacity:       map[string]int{"hold": 2},
	}
	job := api.NewServiceJob(jobID, jobID, "", 50)
	job.Datacenters = []string{"*"}
	job.Meta = map[string]string{"butter_project": "scale"}
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
	// A job compiled before the autoscaler: a scaling block without
	// Butter's policy, min 0. It is left alone.
	oldJob := api.NewServiceJob("butter-old", "butter-old", "", 50)
	oldJob.Datacenters = []string{"*"}
	oldJob.Meta = map[string]string{"butter_project": "old"}
	oldTG := api.NewTaskGroup("main", 0)
	oldTG.Scaling = &api.ScalingPolicy{Enabled: new(true), Min: new(int64(0)), Max: new(int64(10))}
	oldTask := api.NewTask("pool", "raw_exec")
	oldTask.Config = map[string]any{"command": "/bin/true"}
	oldTG.AddTask(oldTask)
	oldJob.AddTaskGroup(oldTG)
	if _, _, err := agent.Client.Jobs().Register(oldJob, nil); err != nil {
		t.Fatalf("register the old job: %v", err)
	}

	store := &autoscaler.MemStore{}
	signals := &autoscaler.PoolSignals{Nomad: agent.Client}
	a := autoscaler.New(autoscaler.Config{
		Scaler: &autoscaler.NomadScaler{Client: agent.Client}, Signals: signals, Store: store,
		Interval: 300 * time.Millisecond, StaleAfter: 10 * time.Second,
		Logger: hclog.New(&hclog.LoggerOptions{Name: "autoscaler", Output: testWriter{t}, Level: hclog.Info}),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	count := func() int {
		j, _, err := agent.Client.Jobs().Info(jobID, nil)
		if err != nil {
			return -1
		}
		return *j.TaskGroups[0].Count
	}
	pools := func() []*api.ServiceRegistration {
		regs, _, err := agent.Client.Services().Get(service, nil)
		if err != nil {
			return nil
		}
		return regs
	}
	// The first pool serves, and the loop holds at 1 (min 1, no load).
	waitFor(t, 90*time.Second, "the first pool to serve", func() bool {
		regs := pools()
		if len(regs) != 1 {
			return false
		}
		resp, err := http.Get(fmt.Sprintf("http://%s:%d/v1/health", regs[0].Address, regs[0].Port))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNonAuthoritativeInfo
	})
	waitFor(t, 30*time.Second, "a hold at target", func() bool {
		d := store.Decisions()["scale/main"]
		return d.Kind == fsm.ScaleHold && strings.HasPrefix(d.Reason, "at target")
	})
	if n := count(); n != 1 {
		t.Fatalf("count %d before any load, want 1", n)
	}
	if d := store.Decisions()["old/main"]; d.Kind != fsm.ScaleDisabled || !strings.Contains(d.Reason, "no policy of Butter's") {
		t.Errorf("the old job's group: %+v", d)
	}

	// Two calls held open: 2 in flight on a capacity of 2 at target 0.5.
	reg := pools()[0]
	url := fmt.Sprintf("http://%s:%d/v1/invoke/hold", reg.Address, reg.Port)
	var held []*io.PipeWriter
	var wg sync.WaitGroup
	answers := make(chan string, 2)
	for range 2 {
		pr, pw := io.Pipe()
		held = append(held, pw)
		req, _ := http.NewRequest(http.MethodPost, url, pr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				answers <- "error: " + err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			answers <- fmt.Sprintf("%d %s", resp.StatusCode, b)
		}()
		if _, err := pw.Write([]byte("held ")); err != nil {
			t.Fatal(err)
		}
	}
	released := false
	release := func() {
		if released {
			return
		}
		released = true
		for _, pw := range held {
			_, _ = pw.Write([]byte("done"))
			pw.Close()
		}
		wg.Wait()
	}
	t.Cleanup(release)

	waitFor(t, 30*time.Second, "the loop to scale the group to 2", func() bool { return count() == 2 })
	var out fsm.ScalingDecision
	for _, d := range store.Recorded() {
		if d.Kind == fsm.ScaleScaled {
			out = d
			break
		}
	}
	if out.Count != 1 || out.To != 2 || !strings.Contains(out.Reason, "inflight: hold has 2 calls in flight on 1 allocations, capacity 2 per allocation at target 0.5 -> 2") {
		t.Errorf("scale-out decision: %+v", out)
	}
	waitFor(t, 90*time.Second, "a second pool to serve", func() bool { return len(pools()) == 2 })

	releasedAt := time.Now() // before the calls can end
	release()
	for range 2 {
		if a := <-answers; a != "200 held done" {
			t.Errorf("held call answered %q, want 200 held done", a)
		}
	}
	waitFor(t, 60*time.Second, "the loop to scale the group back to 1", func() bool { return count() == 1 })
	if waited := time.Since(releasedAt); waited < policy.ScaleInDelay {
		t.Errorf("scaled in %s after the load ended, before the scale-in delay (%s)", waited, policy.ScaleInDelay)
	}
	in := store.Decisions()["scale/main"]
	if in.Kind != fsm.ScaleScaled || in.Count != 2 || in.To != 1 || !strings.Contains(in.Reason, "inflight: 0 calls in flight -> 0; bounded to 1 by min 1, max 3") {
		t.Errorf("scale-in decision: %+v", in)
	}
	// Nomad keeps the reasons in the group's scaling events.
	st, _, err := agent.Client.Jobs().ScaleStatus(jobID, nil)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, ev := range st.TaskGroups[group].Events {
		msgs = append(msgs, ev.Message)
	}
	all := strings.Join(msgs, "\n")
	if !strings.Contains(all, "butter autoscaler: 1 -> 2: inflight") || !strings.Contains(all, "butter autoscaler: 2 -> 1: inflight") {
		t.Errorf("Nomad's scaling events:\n%s", all)
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
