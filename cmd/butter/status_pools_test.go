package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/autoscaler"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/scheduler"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/butterfn/butter/scheduler/schedtest"
	"github.com/hashicorp/cli"
)

// TestStatusShowsScaling: `butter status <project>` shows each pool of the
// active revision with its functions, its bounds, and the autoscaler's
// last decision with its reason, read from the control plane's replicated
// state.
func TestStatusShowsScaling(t *testing.T) {
	s, _ := schedtest.Single(t, nil)
	if err := s.Apply(fsm.ProjectUpsertType, fsm.Project{Name: "shop", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	job, bundles := schedtest.RevisionJob(t, "shop", "aaaaaaaaaaaa", nil)
	if err := s.Apply(fsm.RevisionCreateType, fsm.Revision{Project: "shop", ID: "aaaaaaaaaaaa", Job: job, Bundles: bundles, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(fsm.RevisionActivateType, fsm.Activation{Project: "shop", Revision: "aaaaaaaaaaaa"}); err != nil {
		t.Fatal(err)
	}
	run := func() string {
		t.Helper()
		ui := cli.NewMockUi()
		if code := (&statusCommand{ui: ui}).Run([]string{"-address", "http://" + s.Addr(), "shop"}); code != exitOK {
			t.Fatalf("status: exit %d\n%s", code, ui.ErrorWriter.String())
		}
		return ui.OutputWriter.String()
	}
	out := run()
	for _, want := range []string{"Pools\n  main: f\n", "allocations  min 1, max 10; the autoscaler sets the count", "autoscaler   no decision yet"} {
		if !strings.Contains(out, want) {
			t.Errorf("status without a decision lacks %q:\n%s", want, out)
		}
	}
	at := time.Date(2026, 12, 3, 8, 30, 0, 0, time.UTC)
	if err := s.Apply(fsm.ScalingDecisionType, fsm.ScalingDecision{Project: "shop", Job: "butter-shop", Group: "main", At: at, Kind: fsm.ScaleScaled, Count: 1, To: 2, Reason: "1 -> 2: lag: 1500 records at target 1000 per allocation -> 2", LastScaled: at}); err != nil {
		t.Fatal(err)
	}
	out = run()
	for _, want := range []string{"count        1 at 2026-12-03T08:30:00Z", "last         scaled 1 -> 2 at 2026-12-03T08:30:00Z: 1 -> 2: lag: 1500 records"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
}

// fixedNomad is an in-memory Nomad of one task group, shop/main, that
// takes every scale, or refuses each with refuse when set.
type fixedNomad struct {
	mu     sync.Mutex
	count  int
	refuse error
}

func (n *fixedNomad) Groups(context.Context) ([]autoscaler.Group, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := jobs.ScalingPolicy{Enabled: true, Min: 1, Max: 10, Cooldown: time.Hour, ScaleInDelay: time.Hour, TargetInFlight: 0.5, TargetCPU: 0.8, TargetLag: 100, ConsumerGroups: []string{"butter.shop.f.in"}, Capacity: map[string]int{"f": 4}}
	return []autoscaler.Group{{Target: autoscaler.Target{Project: "shop", Job: "butter-shop", Group: "main"}, Count: n.count, Policy: p, CPUMHz: 100, MemoryMB: 128}}, nil
}

func (n *fixedNomad) Scale(_ context.Context, _ autoscaler.Target, count int, _ string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.refuse != nil {
		return n.refuse
	}
	n.count = count
	return nil
}

// fixedLoad is a fresh reading of one allocation: f has 3 calls in
// flight and 1 queued on 2 instances, lags 7 records and ran 87 calls (3
// failed) in the last 58 s, the pool uses 250 MHz of its 100 and 64 MiB
// of its 128, and its consumer groups lag 50 records.
type fixedLoad struct{}

func (fixedLoad) Load(context.Context, autoscaler.Group) (autoscaler.Load, error) {
	return autoscaler.Load{At: time.Now(), Allocations: 1, Lag: 50,
		Functions: map[string]autoscaler.FunctionLoad{"f": {InFlight: 3, Queued: 1, Instances: 2, Lag: 7,
			Traffic: &autoscaler.Traffic{Window: 58 * time.Second, Calls: 87, Errors: 3, Rate: 1.5, ErrorRate: 3.0 / 58, P50: 0.012, P99: 0.08}}},
		Resources: &autoscaler.Resources{Allocations: 1, CPUMHz: 250, CPUReservedMHz: 100, MemoryBytes: 64 << 20, MemoryReservedMB: 128},
	}, nil
}

// TestStatusShowsSignals: with the leader's autoscaler running (over
// in-memory seams for Nomad and the signals), `butter status` shows per
// function its instances, calls in flight against capacity, queued
// calls, lag and traffic (rates, error share, p50 and p99), the pool's lag, CPU and memory, what the load wants and why the
// count moved; the control plane's GET /metrics has the same as
// Prometheus series, and the decision counted by kind, direction and
// signal.
func TestStatusShowsSignals(t *testing.T) {
	nomad := &fixedNomad{count: 1}
	s, _ := schedtest.SingleConfig(t, scheduler.Config{Autoscale: &scheduler.AutoscaleConfig{Scaler: nomad, Signals: fixedLoad{}, Interval: 50 * time.Millisecond}})
	if err := s.Apply(fsm.ProjectUpsertType, fsm.Project{Name: "shop", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	job, bundles := schedtest.RevisionJob(t, "shop", "aaaaaaaaaaaa", nil)
	if err := s.Apply(fsm.RevisionCreateType, fsm.Revision{Project: "shop", ID: "aaaaaaaaaaaa", Job: job, Bundles: bundles, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(fsm.RevisionActivateType, fsm.Activation{Project: "shop", Revision: "aaaaaaaaaaaa"}); err != nil {
		t.Fatal(err)
	}
	// 250 MHz over 0.8 × 100 asks for 4 allocations, more than the
	// calls (4 over 0.5 × 4: 2) or the lag (50 over 100: 1).
	var out string
	schedtest.WaitFor(t, 10*time.Second, "status showing the scale to 4 and a pass at 4", func() bool {
		ui := cli.NewMockUi()
		if code := (&statusCommand{ui: ui}).Run([]string{"-address", "http://" + s.Addr(), "shop"}); code != exitOK {
			t.Fatalf("status: exit %d\n%s", code, ui.ErrorWriter.String())
		}
		out = ui.OutputWriter.String()
		return strings.Contains(out, "4 allocations, 1 reporting") && strings.Contains(out, "hold at 4")
	})
	t.Logf("butter status shop:\n%s", out)
	for _, want := range []string{
		"wants 4 (cpu)",
		"pool       lag 50, cpu 250% of reserved, memory 50% of reserved",
		"f          2 instances, in flight 3 / capacity 16 (4 per allocation × 4), queued 1, lag 7\n",
		"           1.50 calls/s, errors 0.05/s (3.4%), p50 12ms, p99 80ms (over 58s)\n",
		"last step    ",
		"Z: 1 -> 4: inflight: f has 3 calls",
		"cpu: 250 MHz used on 1 allocations (250% of 100 MHz each) at target 0.8 -> 4",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}

	resp, err := http.Get("http://" + s.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, body)
	}
	for _, want := range []string{
		`butter_autoscaler_desired_count{pool="main",project="shop"} 4`,
		`butter_autoscaler_count{pool="main",project="shop"} 4`,
		`butter_autoscaler_decisions_total{direction="up",kind="scaled",pool="main",project="shop",signal="cpu"} 1`,
		`butter_autoscaler_inflight_calls{function="f",pool="main",project="shop"} 3`,
		`butter_autoscaler_queued_calls{function="f",pool="main",project="shop"} 1`,
		`butter_autoscaler_instances{function="f",pool="main",project="shop"} 2`,
		`butter_autoscaler_capacity_calls{function="f",pool="main",project="shop"} 4`,
		`butter_autoscaler_consumer_lag{pool="main",project="shop"} 50`,
		`butter_autoscaler_cpu_share{pool="main",project="shop"} 2.5`,
		`butter_autoscaler_memory_share{pool="main",project="shop"} 0.5`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("GET /metrics lacks %s", want)
		}
	}
	if !strings.Contains(string(body), `butter_autoscaler_decisions_total{direction="none",kind="hold",pool="main",project="shop",signal="cpu"}`) {
		t.Errorf("GET /metrics counts no hold at 4 after the step")
	}
}

// switchLoad is signals the test changes while the loop runs.
type switchLoad struct {
	mu   sync.Mutex
	load autoscaler.Load
	err  error
}

func (s *switchLoad) Load(context.Context, autoscaler.Group) (autoscaler.Load, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.load
	l.At = time.Now()
	return l, s.err
}

func (s *switchLoad) set(l autoscaler.Load, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.load, s.err = l, err
}

// TestStatusShowsFaults: `butter status` shows the autoscaler's faults
// for a pool: Nomad refusing its scale, with Nomad's cause, and the parts
// of the load it could not read; then signals it cannot read at all, as
// an error with a load not judged. The refused step counts in the
// metrics by kind.
func TestStatusShowsFaults(t *testing.T) {
	nomad := &fixedNomad{count: 1, refuse: errors.New("Unexpected response code: 400 (quota exceeded)")}
	load := &switchLoad{}
	load.set(autoscaler.Load{Allocations: 1, Lag: 500, Functions: map[string]autoscaler.FunctionLoad{"f": {Instances: 1}},
		Problems: []string{"allocation 0123abcd: read the pool's metrics: connection refused"}}, nil)
	s, _ := schedtest.SingleConfig(t, scheduler.Config{Autoscale: &scheduler.AutoscaleConfig{Scaler: nomad, Signals: load, Interval: 50 * time.Millisecond}})
	if err := s.Apply(fsm.ProjectUpsertType, fsm.Project{Name: "shop", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	job, bundles := schedtest.RevisionJob(t, "shop", "aaaaaaaaaaaa", nil)
	if err := s.Apply(fsm.RevisionCreateType, fsm.Revision{Project: "shop", ID: "aaaaaaaaaaaa", Job: job, Bundles: bundles, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(fsm.RevisionActivateType, fsm.Activation{Project: "shop", Revision: "aaaaaaaaaaaa"}); err != nil {
		t.Fatal(err)
	}
	status := func() string {
		ui := cli.NewMockUi()
		if code := (&statusCommand{ui: ui}).Run([]string{"-address", "http://" + s.Addr(), "shop"}); code != exitOK {
			t.Fatalf("status: exit %d\n%s", code, ui.ErrorWriter.String())
		}
		return ui.OutputWriter.String()
	}
	// 500 records at target 100 want 5; Nomad refuses.
	var out string
	schedtest.WaitFor(t, 10*time.Second, "status showing the refused scale", func() bool {
		out = status()
		return strings.Contains(out, "Nomad refused 1 -> 5")
	})
	t.Logf("butter status shop, Nomad refusing:\n%s", out)
	for _, want := range []string{
		"1 allocations, 1 reporting; wants 5 (lag)",
		"problem    allocation 0123abcd: read the pool's metrics: connection refused",
		"(quota exceeded)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}

	load.set(autoscaler.Load{}, errors.New("list the allocations of service butter-shop-main in Nomad: 500 (no leader)"))
	schedtest.WaitFor(t, 10*time.Second, "status showing the signals' error", func() bool {
		out = status()
		// The observation is the leader's memory; the decision goes
		// through Raft after it.
		return strings.Contains(out, "error      list the allocations of service butter-shop-main in Nomad: 500 (no leader)") &&
			strings.Contains(out, "last         error at ")
	})
	t.Logf("butter status shop, signals unreadable:\n%s", out)
	if strings.Contains(out, "f          0 instances") || strings.Contains(out, "lag 0") {
		t.Errorf("status shows readings while the signals cannot be read:\n%s", out)
	}
	for _, want := range []string{
		"1 allocations, 0 reporting; not judged",
		"last         error at ",
		": cannot read the signals: list the allocations",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}

	resp, err := http.Get("http://" + s.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`butter_autoscaler_decisions_total{direction="up",kind="refused",pool="main",project="shop",signal="lag"}`,
		`butter_autoscaler_decisions_total{direction="none",kind="error",pool="main",project="shop",signal="none"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("GET /metrics lacks %s", want)
		}
	}
	if strings.Contains(string(body), "butter_autoscaler_desired_count{") {
		t.Errorf("GET /metrics has a desired count while the signals cannot be read")
	}
}
