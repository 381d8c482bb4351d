package autoscaler

import (
	"math"
	"sort"
	"sync"
	"time"
)

// DefaultTrafficSpan is how far back Traffic looks: the rates and
// latencies `butter status` and the UI show are over about the last
// minute.
const DefaultTrafficSpan = time.Minute

// Bucket is one bucket of a cumulative latency histogram: the calls that
// took at most Le seconds (Le is +Inf for the last).
type Bucket struct {
	Le    float64
	Count float64
}

// Traffic is a function's calls over a recent window, from the
// cumulative counters and latency histogram its pools report
// (butter_invocations_total, butter_invocation_duration_seconds): no
// traffic per call, the difference between two readings of each pool.
type Traffic struct {
	// Window is the time between the readings compared (at most about
	// the TrafficWindow's span; less while a pool is new).
	Window time.Duration
	// Calls and Errors are the calls completed and the failed ones in
	// the window, over the pools; Rate and ErrorRate the same per
	// second.
	Calls, Errors   float64
	Rate, ErrorRate float64
	// P50 and P99 are latency quantiles in seconds, estimated from the
	// window's histogram buckets by linear interpolation within a bucket
	// (as Prometheus's histogram_quantile does); NaN when the window has
	// no call.
	P50, P99 float64
}

// TrafficWindow keeps, per source (an allocation's pool), its readings
// of the last Span, and turns them into each function's Traffic. A
// source's counters going down (its pool restarted) count from zero
// again. It is safe for concurrent use.
type TrafficWindow struct {
	// Span is how far back it compares; DefaultTrafficSpan when zero.
	Span time.Duration

	mu  sync.Mutex
	src map[string][]trafficReading
}

type trafficReading struct {
	at    time.Time
	fns   map[string]FunctionLoad
	start bool // Started's zero reading
}

func (w *TrafficWindow) span() time.Duration {
	if w.Span <= 0 {
		return DefaultTrafficSpan
	}
	return w.Span
}

// Add records what source reported at at.
func (w *TrafficWindow) Add(source string, at time.Time, fns map[string]FunctionLoad) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.src == nil {
		w.src = map[string][]trafficReading{}
	}
	rs := w.src[source]
	if len(rs) == 1 && rs[0].start && at.Sub(rs[0].at) > w.span() {
		rs = nil // a start too long ago to be the base (Started)
	}
	rs = append(rs, trafficReading{at: at, fns: fns})
	// Keep, as the base, the newest reading at least a span old, and
	// everything after it.
	cut := at.Add(-w.span())
	for len(rs) > 2 && !rs[1].at.After(cut) {
		rs = rs[1:]
	}
	w.src[source] = rs
}

// Started says that source's counters were zero at at (its pool
// started then). With no reading of source yet, that is its first: the
// calls before the first reading count, which they would not if the
// first reading were the base. Ignored once source has a reading, or
// when at is more than a span before the next reading (a pool found
// running long after it started gives rates once read twice).
func (w *TrafficWindow) Started(source string, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.src == nil {
		w.src = map[string][]trafficReading{}
	}
	if len(w.src[source]) == 0 {
		w.src[source] = []trafficReading{{at: at, fns: map[string]FunctionLoad{}, start: true}}
	}
}

// Keep forgets the sources keep says no to (allocations gone).
func (w *TrafficWindow) Keep(keep func(source string) bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for s := range w.src {
		if !keep(s) {
			delete(w.src, s)
		}
	}
}

// Traffic is each function's traffic over the sources' windows: rates
// are summed over the sources, each over its own window. A function
// shows once a source has two readings of it.
func (w *TrafficWindow) Traffic() map[string]Traffic {
	w.mu.Lock()
	defer w.mu.Unlock()
	type acc struct {
		calls, errors, rate, errRate float64
		window                       time.Duration
		buckets                      map[float64]float64
	}
	sums := map[string]*acc{}
	for _, rs := range w.src {
		if len(rs) < 2 {
			continue
		}
		base, last := rs[0], rs[len(rs)-1]
		secs := last.at.Sub(base.at).Seconds()
		if secs <= 0 {
			continue
		}
		for f, now := range last.fns {
			before, ok := base.fns[f]
			if !ok {
				before = FunctionLoad{} // the function is new in this pool
			}
			calls, errs := now.Calls-before.Calls, now.Errors-before.Errors
			reset := calls < 0 || errs < 0
			if reset {
				calls, errs = now.Calls, now.Errors
			}
			a := sums[f]
			if a == nil {
				a = &acc{buckets: map[float64]float64{}}
				sums[f] = a
			}
			a.calls += calls
			a.errors += errs
			a.rate += calls / secs
			a.errRate += errs / secs
			a.window = max(a.window, last.at.Sub(base.at))
			old := map[float64]float64{}
			if !reset {
				for _, b := range before.Latency {
					old[b.Le] = b.Count
				}
			}
			for _, b := range now.Latency {
				a.buckets[b.Le] += max(b.Count-old[b.Le], 0)
			}
		}
	}
	out := make(map[string]Traffic, len(sums))
	for f, a := range sums {
		bs := make([]Bucket, 0, len(a.buckets))
		for le, c := range a.buckets {
			bs = append(bs, Bucket{Le: le, Count: c})
		}
		sort.Slice(bs, func(i, j int) bool { return bs[i].Le < bs[j].Le })
		out[f] = Traffic{Window: a.window, Calls: a.calls, Errors: a.errors, Rate: a.rate, ErrorRate: a.errRate,
			P50: Quantile(0.5, bs), P99: Quantile(0.99, bs)}
	}
	return out
}

// Quantile estimates the q-quantile (0 < q < 1) of a cumulative
// histogram whose buckets are sorted by Le, the way Prometheus's
// histogram_quantile does: the bucket the rank falls in, linearly
// interpolated between its lower and upper bound (0 below the first); a
// rank in the +Inf bucket gives the highest finite bound. NaN for an
// empty histogram.
func Quantile(q float64, buckets []Bucket) float64 {
	if len(buckets) == 0 {
		return math.NaN()
	}
	total := buckets[len(buckets)-1].Count
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, b := range buckets {
		if b.Count >= rank {
			if math.IsInf(b.Le, 1) {
				return lower
			}
			in := b.Count - below
			if in <= 0 {
				return b.Le
			}
			return lower + (b.Le-lower)*(rank-below)/in
		}
		lower, below = b.Le, b.Count
	}
	return lower
}
