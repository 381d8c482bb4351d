package pool_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	goruntime "runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/plugins/runtime"
	"github.com/butterfn/butter/sdk/go/proto"
)

// slowRuntime starts instances, some of which fail, and records how many
// start at once. Its starts wait until two of them have run at once (or
// the wait passes, once): a pool that starts in parallel is seen to
// however busy the machine, and one that starts one after the other costs
// one wait, not one per start.
type slowRuntime struct {
	fail map[string]bool
	wait time.Duration

	mu       sync.Mutex
	running  int
	most     int
	started  int
	together chan struct{} // closed once two starts run at once (met)
	met      bool
	gaveUp   bool // a start waited in vain: the others do not wait
}

func (r *slowRuntime) Start(ctx context.Context, fn *runtime.Function) (runtime.Instance, error) {
	r.mu.Lock()
	r.running++
	r.most = max(r.most, r.running)
	if r.running == 2 && !r.met {
		r.met = true
		close(r.together)
	}
	wait := !r.gaveUp
	r.mu.Unlock()
	if wait {
		select {
		case <-r.together:
		case <-time.After(r.wait):
			r.mu.Lock()
			r.gaveUp = true
			r.mu.Unlock()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running--
	if r.fail[fn.Name] {
		return nil, errors.New(fn.Name + " cannot start")
	}
	r.started++
	return &idleInstance{exited: make(chan struct{})}, nil
}

type idleInstance struct {
	once   sync.Once
	exited chan struct{}
}

func (i *idleInstance) Invoke(context.Context, *runtime.Invocation) error { return nil }
func (i *idleInstance) Stop(time.Duration) error {
	i.once.Do(func() { close(i.exited) })
	return nil
}
func (i *idleInstance) Exited() <-chan struct{} { return i.exited }
func (i *idleInstance) Pid() int                { return 0 }

// TestStartInParallel: Start starts the minimum instances of different
// functions at once, bounded, and returns the first error in the order of
// the functions' names, as a start one after the other would.
func TestStartInParallel(t *testing.T) {
	rt := &slowRuntime{wait: 30 * time.Second, together: make(chan struct{}), fail: map[string]bool{"f12": true, "f05": true}}
	var fns []pool.FunctionConfig
	for i := range 40 {
		f := fn(fmt.Sprintf("f%02d", i), "slow")
		f.MinInstances = 2
		fns = append(fns, f)
	}
	p, err := pool.New(&pool.Config{Project: "test", Pool: "p", Functions: fns}, nil, pool.WithRuntime("slow", rt))
	if err != nil {
		t.Fatal(err)
	}
	err = p.Start(context.Background())
	defer p.Close()
	if err == nil || !strings.Contains(err.Error(), "f05 cannot start") {
		t.Errorf("Start error = %v, want f05's, the first by name", err)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.started != 2*38 {
		t.Errorf("%d instances started, want %d", rt.started, 2*38)
	}
	bound := 4 * goruntime.GOMAXPROCS(0)
	if rt.most < 2 || rt.most > bound {
		t.Errorf("%d instances started at once, want 2 to %d (1: not in parallel)", rt.most, bound)
	}
}

// countingRuntime counts the instances it starts and those stopped, and
// fails the functions named in fail.
type countingRuntime struct {
	fail map[string]bool

	mu      sync.Mutex
	started map[string]int
	insts   []*idleInstance
}

func (r *countingRuntime) Start(ctx context.Context, fn *runtime.Function) (runtime.Instance, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail[fn.Name] {
		return nil, errors.New(fn.Name + " cannot load")
	}
	r.started[fn.Name]++
	i := &idleInstance{exited: make(chan struct{})}
	r.insts = append(r.insts, i)
	return i, nil
}

// TestPreflightMinZero (issue 22 item 12): Start loads one instance of
// every function even with min = 0, and stops it again, so that a
// function that cannot load fails Start (and the pool's health) before
// the pool serves, while scale to zero is kept.
func TestPreflightMinZero(t *testing.T) {
	rt := &countingRuntime{fail: map[string]bool{"bad": true}, started: map[string]int{}}
	fns := []pool.FunctionConfig{fn("good", "counting"), fn("bad", "counting"), fn("two", "counting")}
	fns[2].MinInstances = 2
	p, err := pool.New(&pool.Config{Project: "test", Pool: "p", Functions: fns}, nil, pool.WithRuntime("counting", rt), pool.WithIdleTimeout(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	err = p.Start(context.Background())
	defer p.Close()
	var le *pool.LoadError
	if !errors.As(err, &le) || len(le.Functions) != 1 || le.Functions["bad"] == nil {
		t.Fatalf("Start error = %v, want a LoadError for bad only", err)
	}
	if bad := p.Unhealthy(); len(bad) != 1 || !strings.Contains(bad["bad"], "bad cannot load") {
		t.Errorf("Unhealthy() = %v, want bad with its error", bad)
	}
	rt.mu.Lock()
	started := maps.Clone(rt.started)
	stopped := 0
	for _, i := range rt.insts {
		select {
		case <-i.exited:
			stopped++
		default:
		}
	}
	rt.mu.Unlock()
	if want := map[string]int{"good": 1, "two": 2}; !maps.Equal(started, want) {
		t.Errorf("started %v, want %v: one instance of a function with min 0, its min otherwise", started, want)
	}
	if stopped != 1 {
		t.Errorf("%d instances stopped after Start, want 1: good's preflight instance (min 0)", stopped)
	}
}

// TestWithoutPreflight: with WithPreflight(false), Start starts only the
// minimum instances; a function with min 0 that cannot load is not
// tried until a call.
func TestWithoutPreflight(t *testing.T) {
	rt := &countingRuntime{fail: map[string]bool{"bad": true}, started: map[string]int{}}
	fns := []pool.FunctionConfig{fn("good", "counting"), fn("bad", "counting"), fn("one", "counting")}
	fns[2].MinInstances = 1
	p, err := pool.New(&pool.Config{Project: "test", Pool: "p", Functions: fns}, nil, pool.WithRuntime("counting", rt), pool.WithPreflight(false))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Errorf("Start = %v, want nil: no preflight", err)
	}
	defer p.Close()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if want := map[string]int{"one": 1}; !maps.Equal(rt.started, want) {
		t.Errorf("started %v, want %v", rt.started, want)
	}
}

// gateRuntime starts idle instances, or, once blocked, starts that wait
// for their context to end.
type gateRuntime struct{ blocked atomic.Bool }

func (r *gateRuntime) Start(ctx context.Context, fn *runtime.Function) (runtime.Instance, error) {
	if r.blocked.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &idleInstance{exited: make(chan struct{})}, nil
}

// TestStartAbandonedAtTheDeadline: a cold start that outlasts its call's
// deadline (a loaded machine) answers the call Timeout and does not mark
// the function failed: the function is not at fault, and a pool reported
// unhealthy for it would fail its deployment.
func TestStartAbandonedAtTheDeadline(t *testing.T) {
	rt := &gateRuntime{}
	p, err := pool.New(&pool.Config{Project: "test", Pool: "p", Functions: []pool.FunctionConfig{fn("slow", "gate")}}, nil, pool.WithRuntime("gate", rt))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	rt.blocked.Store(true)
	err = p.Invoke(context.Background(), "slow", &pool.Call{Deadline: time.Now().Add(50 * time.Millisecond), Input: strings.NewReader(""), Output: io.Discard})
	var pe *proto.Error
	if !errors.As(err, &pe) || pe.Type != proto.Timeout {
		t.Errorf("a start past the call's deadline: %v, want a Timeout", err)
	}
	if bad := p.Unhealthy(); len(bad) != 0 {
		t.Errorf("Unhealthy() = %v after an abandoned start, want none", bad)
	}
}

// TestStartProgress: Start reports its progress (WithStartProgress) as it
// begins and as each function loads, one report at a time: the loaded
// count grows to the total, the pending functions shrink to none, and a
// function that neither keeps an instance nor is preflighted is not
// counted.
func TestStartProgress(t *testing.T) {
	var mu sync.Mutex
	var reports []pool.StartProgress
	a, b := fn("a", "exec", "cat"), fn("b", "exec", "cat")
	a.MinInstances, b.MinInstances = 1, 1
	lazy := fn("lazy", "exec", "cat")
	for _, f := range []*pool.FunctionConfig{&a, &b, &lazy} {
		f.Bundle = t.TempDir()
	}
	start(t, []pool.FunctionConfig{a, b, lazy}, pool.WithPreflight(false), pool.WithStartProgress(func(p pool.StartProgress) {
		mu.Lock()
		reports = append(reports, p)
		mu.Unlock()
	}))
	mu.Lock()
	defer mu.Unlock()
	if len(reports) != 3 {
		t.Fatalf("%d reports %+v, want 3 (the start and each of two functions)", len(reports), reports)
	}
	if r := reports[0]; r.Loaded != 0 || r.Total != 2 || strings.Join(r.Pending, ",") != "a,b" {
		t.Errorf("first report %+v, want 0 of 2, a and b pending", r)
	}
	if r := reports[1]; r.Loaded != 1 || len(r.Pending) != 1 {
		t.Errorf("second report %+v, want 1 of 2, one pending", r)
	}
	if r := reports[2]; r.Loaded != 2 || r.Total != 2 || len(r.Pending) != 0 {
		t.Errorf("last report %+v, want 2 of 2, none pending", r)
	}
}
