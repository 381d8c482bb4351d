package pool_test

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/plugins/runtime"
)

// slowRuntime starts instances that take a while to start, some of which
// fail, and records how many start at once.
type slowRuntime struct {
	delay time.Duration
	fail  map[string]bool

	mu      sync.Mutex
	running int
	most    int
	started int
}

func (r *slowRuntime) Start(ctx context.Context, fn *runtime.Function) (runtime.Instance, error) {
	r.mu.Lock()
	r.running++
	r.most = max(r.most, r.running)
	r.mu.Unlock()
	time.Sleep(r.delay)
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
	rt := &slowRuntime{delay: 50 * time.Millisecond, fail: map[string]bool{"f12": true, "f05": true}}
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
	begin := time.Now()
	err = p.Start(context.Background())
	took := time.Since(begin)
	defer p.Stop()
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
		t.Errorf("%d instances started at once, want 2 to %d", rt.most, bound)
	}
	// One after the other: 80 starts of 50ms, 4s.
	if took > 3*time.Second {
		t.Errorf("Start took %s: not in parallel", took)
	}
}
