package gateway

import (
	"sync"
	"sync/atomic"
	"time"
)

// balancer picks the endpoint with the fewest requests in flight from
// this gateway (least outstanding requests). A request is outstanding
// from the pick until its response body is closed, so a long stream
// counts for its whole length. Ties rotate, so that sequential requests
// spread over idle endpoints. An endpoint that refused a connection is
// passed over while another remains: for firstEject after its first
// refusal, twice as long after each further one in a row, at most
// ejectFor, until a connection to it succeeds. The short first ejection
// matters when a pool scales out: Nomad registers a new allocation's
// service before its task has started, so the new endpoint refuses for
// the second or so the pool takes to listen, and a fixed 5 s ejection
// kept it out of use for 5 s after it was ready.
type balancer struct {
	ejectFor   time.Duration
	firstEject time.Duration

	mu          sync.Mutex
	outstanding map[string]int
	ejected     map[string]time.Time // until when
	refusals    map[string]int       // in a row, since the last connection
	refusing    atomic.Int32         // len(refusals), read without mu
	next        int
}

// firstEject is the ejection after an endpoint's first refusal in a row.
const firstEject = 100 * time.Millisecond

func newBalancer(ejectFor time.Duration) *balancer {
	return &balancer{
		ejectFor: ejectFor, firstEject: min(firstEject, ejectFor),
		outstanding: map[string]int{}, ejected: map[string]time.Time{}, refusals: map[string]int{},
	}
}

// pick returns the best endpoint of eps not in skip, counted as
// outstanding until release, or "" when none is left.
func (b *balancer) pick(eps []string, skip map[string]bool) string {
	if len(eps) == 0 {
		return ""
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	start := b.next % len(eps)
	b.next++
	best, bestN, bestEjected := "", 0, false
	for i := range eps {
		e := eps[(start+i)%len(eps)]
		if skip[e] {
			continue
		}
		ej := b.ejected[e].After(now)
		n := b.outstanding[e]
		if best == "" || (bestEjected && !ej) || (ej == bestEjected && n < bestN) {
			best, bestN, bestEjected = e, n, ej
		}
	}
	if best != "" {
		b.outstanding[best]++
	}
	return best
}

func (b *balancer) release(addr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.outstanding[addr] <= 1 {
		delete(b.outstanding, addr)
		return
	}
	b.outstanding[addr]--
}

// eject passes addr over after it refused a connection, and returns for
// how long.
func (b *balancer) eject(addr string) time.Duration {
	if b.ejectFor <= 0 {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if until := b.ejected[addr]; until.After(now) {
		// Picked before the first refusal ejected it: several calls
		// dial a new endpoint at once, and their refusals are one.
		return until.Sub(now)
	}
	b.forget(now)
	n := b.refusals[addr]
	b.refusals[addr] = n + 1
	b.refusing.Store(int32(len(b.refusals)))
	d := b.firstEject
	for i := 0; i < n && d < b.ejectFor; i++ {
		d *= 2
	}
	d = min(d, b.ejectFor)
	b.ejected[addr] = now.Add(d)
	return d
}

// connected records that a connection to addr succeeded: its next
// refusal starts the ejections over from firstEject.
func (b *balancer) connected(addr string) {
	if b.refusing.Load() == 0 {
		return // the hot path: no endpoint has refused
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.refusals, addr)
	delete(b.ejected, addr)
	b.forget(time.Now())
}

// forget drops the record of endpoints whose ejection ended more than
// ejectFor ago: gone from the pool's list, or refusing no more. Called
// with mu held.
func (b *balancer) forget(now time.Time) {
	for a, until := range b.ejected {
		if now.Sub(until) > b.ejectFor {
			delete(b.ejected, a)
			delete(b.refusals, a)
		}
	}
	b.refusing.Store(int32(len(b.refusals)))
}
