package autoscaler_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/autoscaler"
	"github.com/butterfn/butter/plugins/pool"
)

// TestMetricsFromPool reads a real pool's /metrics: with one instance of
// concurrency 1 at most, one call held open is in flight and a second one
// waits, queued; once both end, nothing is.
func TestMetricsFromPool(t *testing.T) {
	cfg := &pool.Config{Project: "m", Pool: "main", Functions: []pool.FunctionConfig{{
		Name: "hold", Runtime: "exec", Command: []string{"cat"}, Timeout: "1m", Memory: 64, CPU: 100, MaxInstances: 1, Concurrency: 1,
	}}}
	p, err := pool.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	srv := httptest.NewServer(p.Handler())
	defer srv.Close()
	read := func() autoscaler.FunctionLoad {
		t.Helper()
		resp, err := http.Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		m, err := autoscaler.ParseMetrics(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return m["hold"]
	}

	var pipes []*io.PipeWriter
	var wg sync.WaitGroup
	for range 2 {
		pr, pw := io.Pipe()
		pipes = append(pipes, pw)
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/invoke/hold", pr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, err := http.DefaultClient.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
		_, _ = pw.Write([]byte("x"))
	}
	defer func() {
		for _, pw := range pipes {
			pw.Close()
		}
		wg.Wait()
	}()
	waitFor(t, 30*time.Second, "one call in flight and one queued", func() bool {
		fl := read()
		return fl.InFlight == 1 && fl.Queued == 1 && fl.Instances == 1
	})
	for _, pw := range pipes {
		pw.Close()
	}
	wg.Wait()
	fl := read()
	if fl.InFlight != 0 || fl.Queued != 0 {
		t.Errorf("after both calls: %+v", fl)
	}
	// The cumulative series the traffic is computed from: two calls, both
	// in the histogram's +Inf bucket and in none below its first bound.
	if fl.Calls != 2 || fl.Errors != 0 || len(fl.Latency) != len(pool.DurationBuckets)+1 {
		t.Fatalf("after both calls: calls %v, errors %v, %d buckets (want %d)", fl.Calls, fl.Errors, len(fl.Latency), len(pool.DurationBuckets)+1)
	}
	if first, inf := fl.Latency[0], fl.Latency[len(fl.Latency)-1]; first.Count != 0 || inf.Count != 2 || first.Le != pool.DurationBuckets[0] {
		t.Errorf("latency buckets %+v", fl.Latency)
	}
}
