package pool_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/bench/harness"
	"github.com/butterfn/butter/plugins/pool"
)

// benchWasmFunctions is how many wasm functions BenchmarkWasm/density
// hosts in one pool (issue 20's target: 10,000).
const benchWasmFunctions = 10000

// wasmEcho returns the config of a wasm echo function named name: the
// hand-assembled 191-byte module of harness.EchoWasm in its own bundle.
func wasmEcho(b *testing.B, dir, name string) pool.FunctionConfig {
	return pool.FunctionConfig{Name: name, Runtime: "wasm", Bundle: dir, Handler: "echo.wasm", Timeout: "10s", Memory: 1, MaxInstances: 1, Concurrency: 64}
}

// BenchmarkWasm measures the wasm runtime (docs/wasm.md) with a small
// module, a WASI echo of 191 bytes (harness.EchoWasm):
//
//   - cold-start: a new pool per operation (created outside the timing)
//     and the time of its first call, which starts the instance (a wazero
//     runtime, the module from the compilation cache) and instantiates the
//     module for the call; baseline: the same call to a running instance
//     (the module instantiated per call, as every call is);
//   - echo/baseline and echo/wasm: calls per second of an echo of 64
//     bytes through the pool's Go API, 8 at a time, on one instance of
//     concurrency 8: the Go process runtime's (the worker protocol over
//     pipes; the baseline) and wasm's (in the pool's process, a module
//     instantiated per call);
//   - density: one pool hosting 10,000 wasm functions with an instance
//     each, every one called once: ns/op is the pool's start, and
//     KiB/function the growth of this process's memory (Go heap and
//     stacks, and the machine code of the compiled module, which wazero
//     maps outside the heap: read as the process's RSS) per function.
func BenchmarkWasm(b *testing.B) {
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "echo.wasm"), harness.EchoWasm(), 0o644); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	sdks := harness.SDKs(b)
	in := []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	call := func(b *testing.B, p *pool.Pool, name string) {
		var out bytes.Buffer
		if err := p.Invoke(ctx, name, &pool.Call{Input: bytes.NewReader(in), Output: &out}); err != nil || !bytes.Equal(out.Bytes(), in) {
			b.Fatalf("%s: %q, %v", name, out.Bytes(), err)
		}
	}
	newPool := func(b *testing.B, fns ...pool.FunctionConfig) *pool.Pool {
		p, err := pool.New(&pool.Config{Project: "bench", Pool: "default", Functions: fns}, nil, pool.WithSDKs(sdks))
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Start(ctx); err != nil {
			b.Fatal(err)
		}
		return p
	}

	b.Run("cold-start/baseline", func(b *testing.B) {
		f := wasmEcho(b, dir, "echo")
		f.MinInstances = 1
		p := newPool(b, f)
		defer p.Close()
		call(b, p, "echo")
		var lat harness.Latencies
		for b.Loop() {
			t := time.Now()
			call(b, p, "echo")
			lat.Add(time.Since(t))
		}
		lat.Report(b)
	})
	b.Run("cold-start/wasm", func(b *testing.B) {
		var lat harness.Latencies
		for b.Loop() {
			b.StopTimer()
			p := newPool(b, wasmEcho(b, dir, "echo")) // min 0: no instance after the start
			b.StartTimer()
			t := time.Now()
			call(b, p, "echo")
			lat.Add(time.Since(t))
			b.StopTimer()
			p.Close()
			b.StartTimer()
		}
		lat.Report(b)
	})

	for _, rt := range []string{"baseline", "wasm"} {
		b.Run("echo/"+rt, func(b *testing.B) {
			f := harness.Echo(b, "echo", "go") // the baseline: the Go process runtime
			if rt == "wasm" {
				f = wasmEcho(b, dir, "echo")
			}
			f.MinInstances, f.MaxInstances, f.Concurrency = 1, 1, 8
			p := newPool(b, f)
			defer p.Close()
			call(b, p, "echo")
			const workers = 8
			start := time.Now()
			var wg sync.WaitGroup
			per := max(b.N/workers, 1)
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range per {
						call(b, p, "echo")
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(per*workers)/time.Since(start).Seconds(), "calls/s")
		})
	}

	b.Run("density", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			fns := make([]pool.FunctionConfig, benchWasmFunctions)
			for i := range fns {
				fns[i] = wasmEcho(b, dir, fmt.Sprintf("f%05d", i))
				fns[i].MinInstances = 1
			}
			goruntime.GC()
			heap0, rss0 := memNow()
			b.StartTimer()
			p := newPool(b, fns...)
			b.StopTimer()
			answered := 0
			var mu sync.Mutex
			var wg sync.WaitGroup
			next := make(chan string)
			for range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for name := range next {
						call(b, p, name)
						mu.Lock()
						answered++
						mu.Unlock()
					}
				}()
			}
			for _, f := range fns {
				next <- f.Name
			}
			close(next)
			wg.Wait()
			goruntime.GC()
			heap1, rss1 := memNow()
			b.ReportMetric(float64(answered), "functions")
			b.ReportMetric(float64(heap1-heap0)/1024/float64(len(fns)), "heap-KiB/function")
			b.ReportMetric(float64(rss1-rss0)/1024/float64(len(fns)), "rss-KiB/function")
			p.Close()
			b.StartTimer()
		}
	})
}

// memNow returns this process's Go heap and stacks in use, and its
// resident set size, in bytes.
func memNow() (heap, rss uint64) {
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	b, err := os.ReadFile("/proc/self/statm")
	if err == nil {
		var size, res uint64
		if _, err := fmt.Sscanf(string(b), "%d %d", &size, &res); err == nil {
			rss = res * uint64(os.Getpagesize())
		}
	}
	return ms.HeapInuse + ms.StackInuse, rss
}
