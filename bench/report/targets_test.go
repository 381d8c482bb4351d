package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestIssue23Targets: the hot path's goals are judged from ratios within
// one run: a cold start over its interpreter's floor, the Go echo's rate
// at 64 connections over the bare echo's (with the CPU per request), and
// the overheads against 100 and 60 µs.
func TestIssue23Targets(t *testing.T) {
	out := `commit: aaaaaaa
pkg: github.com/butterfn/butter/plugins/pool
BenchmarkColdStart/node-2 	 10	 1 ns/op	 60000000 p50-ns
BenchmarkColdStart/node-interpreter-2 	 10	 1 ns/op	 50000000 p50-ns
BenchmarkColdStart/python-2 	 10	 1 ns/op	 46000000 p50-ns
BenchmarkColdStart/python-interpreter-2 	 10	 1 ns/op	 23000000 p50-ns
pkg: github.com/butterfn/butter/gateway
BenchmarkThroughput/c64/baseline-2 	 1	 1 ns/op	 30000 req/s
BenchmarkThroughput/c64/go-2 	 1	 1 ns/op	 10500 req/s	 180 server-cpu-µs/req	 55 worker-cpu-µs/req
BenchmarkOverhead/baseline-2 	 100	 1 ns/op	 30 p50-ns
BenchmarkOverhead/pool-http-2 	 100	 1 ns/op	 50030 p50-ns
BenchmarkOverhead/gateway-2 	 100	 1 ns/op	 120030 p50-ns
`
	path := filepath.Join(t.TempDir(), "bench.txt")
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	rs, err := read(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		measure func(*results) (string, bool, bool)
		met     bool
		want    string
	}{
		{coldStartFloor("node"), true, "1.2× (60 ms over 50 ms)"},
		{coldStartFloor("python"), false, "2× (46 ms over 23 ms)"},
		{goThroughputRatio, true, "0.35× (10,500 req/s); CPU per request: gateway and pool (one process) 180 µs, worker 55 µs"},
		{overhead("gateway", "Overhead/pool-http", 60e3), true, "+50 µs at p50"},
		{overhead("gateway", "Overhead/gateway", 100e3), false, "+120 µs at p50"},
	} {
		fig, met, ok := c.measure(rs)
		if !ok || met != c.met || !strings.HasPrefix(fig, c.want) {
			t.Errorf("got %q, met %v, measured %v; want %q, met %v", fig, met, ok, c.want, c.met)
		}
	}
	if _, _, ok := coldStartFloor("java")(rs); ok {
		t.Error("java has no cold start here, yet was measured")
	}
}
