package autoscaler_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/autoscaler"
)

// hist is a cumulative histogram over the bounds 0.001, 0.01, 0.1, +Inf.
func hist(counts ...float64) []autoscaler.Bucket {
	les := []float64{0.001, 0.01, 0.1, math.Inf(1)}
	out := make([]autoscaler.Bucket, len(counts))
	for i, c := range counts {
		out[i] = autoscaler.Bucket{Le: les[i], Count: c}
	}
	return out
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// TestQuantile: the rank's bucket, interpolated linearly within it, as
// Prometheus's histogram_quantile; the +Inf bucket gives the highest
// finite bound; an empty histogram NaN.
func TestQuantile(t *testing.T) {
	// 10 calls: 0 under 1 ms, 5 in (1 ms, 10 ms], 4 in (10, 100], 1 over.
	h := hist(0, 5, 9, 10)
	for _, c := range []struct{ q, want float64 }{
		{0.5, 0.01},                   // rank 5: the top of the second bucket
		{0.3, 0.001 + 0.009*(3.0/5)},  // rank 3, 3 of the bucket's 5
		{0.7, 0.01 + 0.09*(2.0/4)},    // rank 7, 2 of the third's 4
		{0.99, 0.1},                   // rank 9.9: in +Inf, the highest finite bound
		{0.05, 0.001 + 0.009*(0.5/5)}, // rank 0.5: the first bucket is empty
	} {
		if got := autoscaler.Quantile(c.q, h); !near(got, c.want) {
			t.Errorf("Quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := autoscaler.Quantile(0.5, hist(0, 0, 0, 0)); !math.IsNaN(got) {
		t.Errorf("Quantile of an empty histogram = %v, want NaN", got)
	}
}

// TestTrafficWindow: rates are the difference between a pool's oldest
// and newest readings within the span, summed over pools; a pool whose
// counters went down (restarted) counts from zero; readings older than
// the span are dropped, but for the one the window starts from; a pool
// gone is forgotten.
func TestTrafficWindow(t *testing.T) {
	w := &autoscaler.TrafficWindow{Span: time.Minute}
	t0 := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	load := func(calls, errs float64, h []autoscaler.Bucket) map[string]autoscaler.FunctionLoad {
		return map[string]autoscaler.FunctionLoad{"f": {Calls: calls, Errors: errs, Latency: h}}
	}
	w.Add("a", t0, load(100, 1, hist(0, 50, 90, 100)))
	if tr := w.Traffic(); len(tr) != 0 {
		t.Fatalf("one reading gives traffic: %+v", tr)
	}
	// a: 20 calls (2 failed) in 10 s, all in (1 ms, 10 ms].
	w.Add("a", t0.Add(10*time.Second), load(120, 3, hist(0, 70, 110, 120)))
	tr := w.Traffic()["f"]
	if !near(tr.Rate, 2) || !near(tr.ErrorRate, 0.2) || tr.Calls != 20 || tr.Errors != 2 || tr.Window != 10*time.Second {
		t.Fatalf("a alone: %+v", tr)
	}
	if !near(tr.P50, 0.001+0.009*(10.0/20)) || !near(tr.P99, 0.001+0.009*(19.8/20)) {
		t.Errorf("a alone: p50 %v, p99 %v", tr.P50, tr.P99)
	}

	// b restarted between its readings: its 5 calls (none failed) count
	// from zero, all over 100 ms.
	w.Add("b", t0, load(500, 50, hist(0, 0, 0, 500)))
	w.Add("b", t0.Add(5*time.Second), load(5, 0, hist(0, 0, 0, 5)))
	tr = w.Traffic()["f"]
	if !near(tr.Rate, 2+1) || tr.Calls != 25 || tr.Errors != 2 || tr.Window != 10*time.Second {
		t.Fatalf("a and b: %+v", tr)
	}
	// 25 calls: 20 in (1, 10] ms, 5 over 100 ms: p99 (rank 24.75) is in +Inf.
	if !near(tr.P99, 0.1) {
		t.Errorf("a and b: p99 %v, want the highest finite bound 0.1", tr.P99)
	}

	// Two minutes on: the window of a starts from its newest reading at
	// least a minute old.
	w.Add("a", t0.Add(70*time.Second), load(180, 3, hist(0, 130, 170, 180)))
	w.Add("a", t0.Add(130*time.Second), load(240, 3, hist(0, 190, 230, 240)))
	w.Keep(func(s string) bool { return s == "a" })
	tr = w.Traffic()["f"]
	if tr.Window != 60*time.Second || tr.Calls != 60 || !near(tr.Rate, 1) || tr.Errors != 0 {
		t.Fatalf("a over the last minute: %+v", tr)
	}
}

// TestTrafficFromStart: a pool whose start is known counts the calls
// before its first reading, from zero at its start; one started more
// than a span before its first reading waits for a second reading.
func TestTrafficFromStart(t *testing.T) {
	w := &autoscaler.TrafficWindow{Span: time.Minute}
	t0 := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	w.Started("new", t0)
	w.Add("new", t0.Add(5*time.Second), map[string]autoscaler.FunctionLoad{"f": {Calls: 10, Latency: hist(0, 10, 10, 10)}})
	w.Started("new", t0.Add(4*time.Second)) // has readings: ignored
	w.Started("old", t0.Add(-2*time.Minute))
	w.Add("old", t0.Add(5*time.Second), map[string]autoscaler.FunctionLoad{"f": {Calls: 1000}})
	tr := w.Traffic()["f"]
	if tr.Calls != 10 || !near(tr.Rate, 2) || tr.Window != 5*time.Second || math.IsNaN(tr.P50) {
		t.Fatalf("traffic: %+v; want the new pool's 10 calls over 5 s and none of the old one's", tr)
	}
}

// TestParseTraffic: the cumulative series a pool serves are read by
// function: calls by outcome, with the calls refused before running (an
// error type without an invocation) as failed calls, the histogram's
// buckets in order, lag over partitions.
func TestParseTraffic(t *testing.T) {
	text := `# TYPE butter_invocations_total counter
butter_invocations_total{function="f",outcome="error"} 2
butter_invocations_total{function="f",outcome="ok"} 8
butter_invocation_errors_total{function="f",type="Exception"} 2
butter_invocation_errors_total{function="f",type="PreconditionFailed"} 3
butter_invocation_duration_seconds_bucket{function="f",le="0.01"} 9
butter_invocation_duration_seconds_bucket{function="f",le="0.001"} 4
butter_invocation_duration_seconds_bucket{function="f",le="+Inf"} 10
butter_invocation_duration_seconds_sum{function="f"} 0.03
butter_consumer_lag{function="f",partition="0",stream="p.s"} 3
butter_consumer_lag{function="f",partition="1",stream="p.s"} 4
butter_instances{function="f"} 2
process_start_time_seconds 1.7963712e+09
`
	m, started, err := autoscaler.ParsePoolMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if started.Unix() != 1796371200 {
		t.Errorf("started %v, want the process's start time 1796371200", started.Unix())
	}
	f := m["f"]
	// 10 calls ran, 2 failed; 3 more were refused before running.
	if f.Calls != 13 || f.Errors != 5 || f.Lag != 7 || f.Instances != 2 {
		t.Errorf("parsed %+v", f)
	}
	want := []autoscaler.Bucket{{Le: 0.001, Count: 4}, {Le: 0.01, Count: 9}, {Le: math.Inf(1), Count: 10}}
	if len(f.Latency) != len(want) {
		t.Fatalf("latency %+v, want %+v", f.Latency, want)
	}
	for i := range want {
		if f.Latency[i] != want[i] {
			t.Errorf("latency %+v, want %+v", f.Latency, want)
		}
	}
}
