package gateway

import (
	"math"
	"net/http"
	"strconv"
	"sync"

	"golang.org/x/time/rate"
)

// projectRates holds each project's requests-per-second quota as a token
// bucket, shared by every route of the project, in this gateway (each
// gateway counts on its own).
type projectRates struct {
	mu       sync.RWMutex
	limiters map[string]*rate.Limiter
}

// SetProjectRates sets the projects' requests-per-second quotas: a
// project's routes take at most rps requests per second between them,
// with a burst of as many (at least one), and answer 429 over it. A
// project absent from rates, or with 0, has no quota. A project whose
// rate is unchanged keeps its bucket (and what it has spent).
func (g *Gateway) SetProjectRates(rates map[string]float64) {
	g.rates.mu.Lock()
	defer g.rates.mu.Unlock()
	next := make(map[string]*rate.Limiter, len(rates))
	for project, rps := range rates {
		if rps <= 0 {
			continue
		}
		if old := g.rates.limiters[project]; old != nil && float64(old.Limit()) == rps {
			next[project] = old
			continue
		}
		next[project] = rate.NewLimiter(rate.Limit(rps), max(1, int(math.Ceil(rps))))
	}
	g.rates.limiters = next
}

// overQuota answers 429 when the project has spent its quota, and says
// whether it did.
func (g *Gateway) overQuota(w http.ResponseWriter, project string) *CallError {
	g.rates.mu.RLock()
	l := g.rates.limiters[project]
	g.rates.mu.RUnlock()
	if l == nil || l.Allow() {
		return nil
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(1/float64(l.Limit())))))
	return callError(http.StatusTooManyRequests, "QuotaExceeded", "project %s takes at most %g requests per second (its quota, burst %d): retry after Retry-After seconds, or ask an operator to raise it (butter project quota set %s -rps N)", project, float64(l.Limit()), l.Burst(), project)
}
