package gateway

import (
	"sync"
	"time"
)

// balancer picks the endpoint with the fewest requests in flight from
// this gateway (least outstanding requests). A request is outstanding
// from the pick until its response body is closed, so a long stream
// counts for its whole length. Ties rotate, so that sequential requests
// spread over idle endpoints. An endpoint that refused a connection is
// passed over for ejectFor while another remains.
type balancer struct {
	ejectFor time.Duration

	mu          sync.Mutex
	outstanding map[string]int
	ejected     map[string]time.Time // until when
	next        int
}

func newBalancer(ejectFor time.Duration) *balancer {
	return &balancer{ejectFor: ejectFor, outstanding: map[string]int{}, ejected: map[string]time.Time{}}
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

func (b *balancer) eject(addr string) {
	if b.ejectFor <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	for a, until := range b.ejected {
		if !until.After(now) {
			delete(b.ejected, a)
		}
	}
	b.ejected[addr] = now.Add(b.ejectFor)
}
