package pool_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	goruntime "runtime"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/bench/harness"
	"github.com/butterfn/butter/plugins/pool"
)

// benchDensity is how many functions one pool hosts in BenchmarkDensity,
// per runtime. Node and Python workers hold tens of MiB each, so they are
// measured on fewer, and JVMs on fewer still.
var benchDensity = map[string]int{"baseline": 1000, "go": 1000, "exec": 1000, "node": 100, "python": 100, "java": 20}

// BenchmarkDensity starts one pool hosting many functions of one runtime,
// each the echo function under its own name with one idle instance
// (min_instances 1), calls every function once (16 calls at a time), and
// reports:
//
//   - ns/op: the time to start them all (pool.Start, which starts the
//     minimum instances of different functions in parallel);
//   - answered-s: from the start until every function has answered;
//   - functions: how many answered correctly, instances: how many the
//     pool holds idle afterwards (from its /metrics);
//   - rss-MiB/instance and pss-MiB/instance: the memory of the worker
//     processes descending from this process, per process (RSS counts
//     shared pages in each process, PSS shares them out);
//   - pool-KiB/function: the growth of this process's Go heap and stacks,
//     the pool's own bookkeeping per function (its instances' pipes,
//     goroutines and buffers).
//
// Exec instances run no process between calls: they hold no worker
// memory. The baseline starts as many `cat` processes, each waiting on a
// pipe, from this process: the cost of an idle process here.
func BenchmarkDensity(b *testing.B) {
	b.Run("baseline", func(b *testing.B) {
		n := benchDensity["baseline"]
		for b.Loop() {
			start := time.Now()
			var cmds []*exec.Cmd
			var stdins []io.Closer
			for range n {
				cmd := exec.Command("cat")
				in, err := cmd.StdinPipe()
				if err != nil {
					b.Fatal(err)
				}
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				cmds, stdins = append(cmds, cmd), append(stdins, in)
			}
			started := time.Since(start)
			time.Sleep(500 * time.Millisecond)
			mem, procs, err := harness.TreeMemory(os.Getpid())
			if err != nil || procs < n {
				b.Fatalf("%d processes measured of %d: %v", procs, n, err)
			}
			for i, in := range stdins {
				in.Close()
				_ = cmds[i].Wait()
			}
			b.ReportMetric(float64(started.Nanoseconds()), "ns/op")
			benchReportMemory(b, mem, procs)
		}
	})
	sdks := harness.SDKs(b)
	for _, rt := range harness.Runtimes {
		b.Run(rt, func(b *testing.B) {
			n := benchDensity[rt]
			var fns []pool.FunctionConfig
			for i := range n {
				fc := harness.Echo(b, fmt.Sprintf("echo-%04d", i), rt)
				fc.MinInstances = 1
				fns = append(fns, fc)
			}
			// Build the Go function once, outside the timing.
			harness.StartPool(b, sdks, fns[:1]).Close()
			for b.Loop() {
				before := benchHeap()
				start := time.Now()
				p, err := pool.New(&pool.Config{Project: "bench", Pool: "default", Functions: fns}, nil, pool.WithSDKs(sdks))
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
				if err := p.Start(ctx); err != nil {
					b.Fatal(err)
				}
				cancel()
				started := time.Since(start)
				answered := benchCallAll(b, p, fns)
				answeredAfter := time.Since(start)
				time.Sleep(500 * time.Millisecond) // idle
				mem, procs, err := harness.TreeMemory(os.Getpid())
				if err != nil {
					b.Fatal(err)
				}
				heap := benchHeap() - before
				instances := benchInstances(b, p)
				p.Close()

				b.ReportMetric(float64(started.Nanoseconds()), "ns/op")
				b.ReportMetric(answeredAfter.Seconds(), "answered-s")
				b.ReportMetric(float64(answered), "functions")
				b.ReportMetric(instances, "instances")
				b.ReportMetric(float64(heap)/1024/float64(n), "pool-KiB/function")
				if rt != "exec" {
					if procs < n {
						b.Errorf("%d worker processes for %d functions", procs, n)
					}
					benchReportMemory(b, mem, procs)
				}
				if answered != n {
					b.Fatalf("%d of %d functions answered", answered, n)
				}
			}
		})
	}
}

func benchReportMemory(b *testing.B, sum harness.Memory, procs int) {
	if procs == 0 {
		return
	}
	b.ReportMetric(float64(sum.RSS)/1024/float64(procs), "rss-MiB/instance")
	b.ReportMetric(float64(sum.PSS)/1024/float64(procs), "pss-MiB/instance")
}

// benchCallAll calls every function once, 16 at a time, and returns how
// many answered their input back.
func benchCallAll(b *testing.B, p *pool.Pool, fns []pool.FunctionConfig) int {
	var mu sync.Mutex
	ok := 0
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, fc := range fns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var out bytes.Buffer
			err := p.Invoke(context.Background(), fc.Name, &pool.Call{Input: bytes.NewReader(benchEcho), Output: &out})
			mu.Lock()
			defer mu.Unlock()
			if err != nil || !bytes.Equal(out.Bytes(), benchEcho) {
				b.Errorf("%s: %q, %v", fc.Name, out.Bytes(), err)
				return
			}
			ok++
		}()
	}
	wg.Wait()
	return ok
}

// benchHeap is this process's Go heap and goroutine stacks in use, after
// a collection.
func benchHeap() int64 {
	goruntime.GC()
	var m goruntime.MemStats
	goruntime.ReadMemStats(&m)
	return int64(m.HeapAlloc + m.StackInuse)
}

// benchInstances sums the pool's butter_instances gauge.
func benchInstances(b *testing.B, p *pool.Pool) float64 {
	srv := harness.Serve(b, p.Handler())
	resp, err := harness.Client(1).Get("http://" + srv + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	var sum float64
	for _, line := range bytes.Split(body, []byte("\n")) {
		var name string
		var v float64
		if rest, ok := bytes.CutPrefix(line, []byte(`butter_instances{function="`)); ok {
			if _, err := fmt.Sscanf(string(bytes.Replace(rest, []byte(`"} `), []byte(" "), 1)), "%s %g", &name, &v); err == nil {
				sum += v
			}
		}
	}
	return sum
}
