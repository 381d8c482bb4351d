// Package harness is what Butter's benchmarks share: per-operation
// latencies reported as percentiles, the echo functions of bench/functions
// in every runtime, pools and HTTP servers on 127.0.0.1 that stop with the
// benchmark, process memory from /proc, and wrk.
//
// Percentiles: testing.B reports a mean (ns/op) only. Benchmarks that
// quote a p50 and a p99 time each operation, keep the durations
// (Latencies), and report them with b.ReportMetric in the units "p50-ns"
// and "p99-ns"; bench/report takes the median of each across -count runs.
//
// Neighbours: the *_bench_test.go files of plugins/pool, gateway, broker,
// scheduler and e2e/server use it; bench/report reads what they print.
package harness

import (
	"context"
	"fmt"
	"github.com/butterfn/butter/names"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/plugins/runtime"
	"github.com/butterfn/butter/sdk"
)

// Units of the custom metrics, as bench/report reads them.
const (
	UnitP50 = "p50-ns"
	UnitP99 = "p99-ns"
)

// Latencies collects the duration of each operation of a benchmark.
type Latencies struct{ d []time.Duration }

// Add records one operation.
func (l *Latencies) Add(d time.Duration) { l.d = append(l.d, d) }

// Len is the number of operations recorded.
func (l *Latencies) Len() int { return len(l.d) }

// Percentile returns the q-quantile (0 < q ≤ 1) of the recorded
// durations by the nearest-rank method, or 0 when none was recorded.
func (l *Latencies) Percentile(q float64) time.Duration {
	if len(l.d) == 0 {
		return 0
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	return s[rank(len(s), q)]
}

// Median returns the median of counts, by the same nearest-rank method,
// or 0 when there are none.
func Median(counts []float64) float64 {
	if len(counts) == 0 {
		return 0
	}
	s := slices.Clone(counts)
	slices.Sort(s)
	return s[rank(len(s), 0.5)]
}

func rank(n int, q float64) int {
	i := int(float64(n)*q+0.999999999) - 1
	return min(max(i, 0), n-1)
}

// Merge adds the durations o recorded.
func (l *Latencies) Merge(o *Latencies) { l.d = append(l.d, o.d...) }

// Report reports the p50 and p99 of the recorded durations as metrics
// of b.
func (l *Latencies) Report(b *testing.B) {
	if len(l.d) == 0 {
		return
	}
	b.ReportMetric(float64(l.Percentile(0.50).Nanoseconds()), UnitP50)
	b.ReportMetric(float64(l.Percentile(0.99).Nanoseconds()), UnitP99)
}

// Root returns the repository root: the nearest directory above the
// working directory that holds bench/functions.
func Root(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if fi, err := os.Stat(filepath.Join(dir, "bench", "functions")); err == nil && fi.IsDir() {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("bench/functions not found above the working directory")
		}
		dir = parent
	}
}

// SDKs installs the language SDKs in a directory removed when tb ends.
// Go function builds are cached per SDKs value: share one to build once.
func SDKs(tb testing.TB) *runtime.SDKs {
	tb.Helper()
	s, err := sdk.Install(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// Runtimes are the runtimes the benchmarks cover, each with an echo
// function in bench/functions (exec echoes with cat).
var Runtimes = []string{"go", "exec", "node", "python", "java"}

// Echo returns the config of a function named name that answers its input
// unchanged in runtime rt ("go", "node", "python", "java" or "exec"): one instance
// at most, running one call at a time, with a 10s timeout. Callers raise
// MinInstances, MaxInstances and Concurrency as they need.
func Echo(tb testing.TB, name, rt string) pool.FunctionConfig {
	tb.Helper()
	fc := pool.FunctionConfig{Name: name, Runtime: rt, Timeout: "10s", MaxInstances: 1, Concurrency: 1}
	fns := filepath.Join(Root(tb), "bench", "functions")
	switch rt {
	case "go":
		fc.Bundle = filepath.Join(fns, "echo-go")
	case "node":
		fc.Bundle, fc.Handler = filepath.Join(fns, "echo-node"), "index.handle"
	case "python":
		fc.Bundle, fc.Handler = filepath.Join(fns, "echo-python"), "main.handle"
	case "java":
		fc.Bundle, fc.Handler = filepath.Join(fns, "echo-java"), "Echo"
	case "exec":
		fc.Bundle, fc.Command = tb.TempDir(), []string{"cat"}
	default:
		tb.Fatalf("no echo function for runtime %q", rt)
	}
	return fc
}

// Handle is the Go echo function's handler (bench/functions/echo-go),
// for calling in-process.
func Handle(_ context.Context, in []byte) ([]byte, error) { return in, nil }

// StartPool starts a pool of project "bench" hosting fns, and stops it
// when tb ends.
func StartPool(tb testing.TB, sdks *runtime.SDKs, fns []pool.FunctionConfig, opts ...pool.Option) *pool.Pool {
	tb.Helper()
	p, err := pool.New(&pool.Config{Project: "bench", Pool: "default", Functions: fns}, nil, append([]pool.Option{pool.WithSDKs(sdks)}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		p.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(p.Close)
	return p
}

// Serve serves h on 127.0.0.1 until tb ends and returns the address.
func Serve(tb testing.TB, h http.Handler) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return ln.Addr().String()
}

// FreeAddr returns a 127.0.0.1 address no one listens on, for a server
// that must be given its address.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Client returns an HTTP client that keeps up to conns connections alive
// per host, as a load generator does.
func Client(conns int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
	}
}

// Post sends body to url and checks that the answer is 200 with the same
// body (an echo), with no Butter-Error trailer.
func Post(c *http.Client, url string, body []byte) error {
	resp, err := c.Post(url, "text/plain", strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK || string(got) != string(body) || resp.Trailer.Get(names.HeaderError) != "" {
		return fmt.Errorf("POST %s answered %d %q (trailer %q), want 200 %q", url, resp.StatusCode, got, resp.Trailer.Get(names.HeaderError), body)
	}
	return nil
}

// UnitAddedP50 is the metric of a paired benchmark (Paired): the p50 of
// the calls with the feature on minus the p50 of those with it off,
// measured interleaved in one loop.
const UnitAddedP50 = "added-p50-ns"

// Paired measures what a feature adds to a call: each iteration of b's
// loop makes one call with the feature off and one with it on, in
// alternating order, so that the machine's load, which moves from second
// to second on a shared machine, weighs on both sides alike. set turns
// the feature on or off before a call. It reports the p50 and p99 of the
// calls with it on, the p50 of those with it off (off-p50-ns), and
// UnitAddedP50.
func Paired(b *testing.B, set func(on bool), call func() error) {
	b.Helper()
	for range 100 { // warm up both sides: connections, instances, caches
		for _, on := range []bool{false, true} {
			set(on)
			if err := call(); err != nil {
				b.Fatal(err)
			}
		}
	}
	var off, on Latencies
	i := 0
	for b.Loop() {
		for k := range 2 {
			feature := (i+k)%2 == 1
			set(feature)
			t := time.Now()
			err := call()
			d := time.Since(t)
			if err != nil {
				b.Fatal(err)
			}
			if feature {
				on.Add(d)
			} else {
				off.Add(d)
			}
		}
		i++
	}
	on.Report(b)
	b.ReportMetric(float64(off.Percentile(0.50).Nanoseconds()), "off-p50-ns")
	b.ReportMetric(float64((on.Percentile(0.50) - off.Percentile(0.50)).Nanoseconds()), UnitAddedP50)
}
