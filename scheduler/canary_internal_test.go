package scheduler

import (
	"strings"
	"testing"

	"github.com/butterfn/butter/scheduler/fsm"
)

// TestJudge checks the step rules of an automated canary: enough calls,
// the error budget, the p50 at any count, the p99 from canaryP99Calls
// calls on, and the noise floor.
func TestJudge(t *testing.T) {
	c := &fsm.Canary{MaxErrorRate: 0.01, MaxLatencyRatio: 1.5, MinRequests: 20}
	s := func(n, errs, p50ms, p99ms float64) fsm.CohortSample {
		return fsm.CohortSample{Requests: n, Errors: errs, P50: p50ms / 1000, P99: p99ms / 1000}
	}
	for _, tc := range []struct {
		name             string
		canary, baseline fsm.CohortSample
		pass, ok         bool
		says             string
	}{
		{"too few calls", s(10, 0, 2, 3), s(50, 0, 2, 3), false, false, "waiting for 20 calls"},
		{"equal", s(50, 0, 2, 3), s(50, 0, 2, 3), true, true, "p99 3ms not judged under 200 calls"},
		{"errors within budget", s(1000, 15, 2, 3), s(1000, 10, 2, 3), true, true, "error rate 1.50%"},
		{"errors over budget", s(100, 5, 2, 3), s(100, 0, 2, 3), false, true, "error rate 5.00%"},
		{"slow p50", s(50, 0, 40, 50), s(50, 0, 10, 12), false, true, "p50 latency 40ms"},
		{"slower p50 under the floor", s(50, 0, 4, 5), s(50, 0, 1, 2), true, true, "p50 4ms"},
		{"a cold start in a small sample", s(30, 0, 2, 90), s(30, 0, 2, 3), true, true, "not judged"},
		{"slow p99 in a large sample", s(300, 0, 2, 90), s(300, 0, 2, 3), false, true, "p99 latency 90ms"},
	} {
		pass, ok, why := judge(c, tc.canary, tc.baseline)
		if pass != tc.pass || ok != tc.ok || !strings.Contains(why, tc.says) {
			t.Errorf("%s: pass %v ok %v %q; want pass %v ok %v saying %q", tc.name, pass, ok, why, tc.pass, tc.ok, tc.says)
		}
	}
}
