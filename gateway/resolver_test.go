package gateway

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestRetryWaitJitter: the waits between failed Nomad queries grow from
// retryMin to retryMax, and are spread over the upper half of each step
// (drawn from a seeded source, so the test is deterministic), so that
// watches that failed together do not retry in step.
func TestRetryWaitJitter(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for n, step := 1, retryMin; n <= 20; n++ {
		const draws = 200
		seen := map[time.Duration]bool{}
		var lo, hi time.Duration
		for i := range draws {
			w := retryWait(n, rnd)
			if w < step/2 || w > step {
				t.Fatalf("failure %d: wait %s, want within [%s, %s]", n, w, step/2, step)
			}
			if i == 0 || w < lo {
				lo = w
			}
			if w > hi {
				hi = w
			}
			seen[w] = true
		}
		// 200 draws over a range of step/2 nanoseconds: nearly all
		// differ, and they cover most of the range.
		if len(seen) < draws/2 || hi-lo < step/4 {
			t.Errorf("failure %d: %d distinct waits of %d, from %s to %s: not spread over [%s, %s]", n, len(seen), draws, lo, hi, step/2, step)
		}
		step = min(2*step, retryMax)
	}
}
