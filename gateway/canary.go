package gateway

import (
	"context"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/butterfn/butter/api"
)

// Canaries: while a project runs a canary, the control plane says which
// revision is stable, which is the canary, and what share of the calls the
// canary gets (Split). Each call of one of its routes is given a revision
// once, when it arrives, and every step of the call (middleware, chain)
// goes to that revision's allocations: the pools' Nomad services carry
// the tag revision=<id> (jobs/compile.go), and the resolver lists the
// endpoints by tag (RevisionResolver).
//
// A call is drawn at random: Weight percent go to the canary, an equal
// share of the rest to the stable revision as the canary's baseline
// (min(Weight, 100-Weight) percent), the rest to the stable revision
// uncounted. The Butter-Revision header pins a call instead: "canary",
// "stable", or an id (a prefix of at least 6 characters); a pinned call is
// counted in neither cohort. The answer's Butter-Revision header names
// the revision that served the call. The gateway counts the two cohorts'
// calls (errors: an answer with a 5xx status) per weight, and routesync
// reports them to the control plane, which judges each step.
//
// Queued and async calls go through a topic that both revisions' pools
// consume: they are split by partitions, not by share (docs/deploy.md).

// Split is a project's canary as the gateway applies it.
type Split struct {
	// Stable and Canary are the revisions' ids.
	Stable, Canary string
	// Weight is the percentage of calls drawn for Canary (0 to 100).
	Weight int
	// Draining holds every call that does not ask for a revision on
	// Stable, none counted: while the canaries start, and while an aborted
	// canary's allocations stop.
	Draining bool
}

// RevisionResolver is a Resolver that also lists a pool's endpoints of
// one revision. NomadResolver and StaticResolver are ones.
type RevisionResolver interface {
	RevisionEndpoints(project, pool, revision string) []string
}

type revisionKey struct{}

type revisionPick struct {
	revision string
	pinned   bool // by the Butter-Revision header
}

// withRevision gives ctx's calls to the pools' endpoints of revision. A
// call pinned to it by header fails when the revision has no endpoint;
// another falls back to every endpoint of the pool.
func withRevision(ctx context.Context, revision string, pinned bool) context.Context {
	return context.WithValue(ctx, revisionKey{}, revisionPick{revision, pinned})
}

func revisionOf(ctx context.Context) (revision string, pinned bool) {
	p, _ := ctx.Value(revisionKey{}).(revisionPick)
	return p.revision, p.pinned
}

// SetSplits replaces the projects' canary splits; nil or empty ends them
// all. Counts of revisions no longer split are dropped.
func (g *Gateway) SetSplits(splits map[string]Split) {
	if len(splits) == 0 {
		g.splits.Store(nil)
	} else {
		m := make(map[string]Split, len(splits))
		for p, s := range splits {
			s.Weight = min(max(s.Weight, 0), 100)
			m[p] = s
		}
		g.splits.Store(&m)
	}
	g.canaryStats.Range(func(k, v any) bool {
		if s, ok := splits[k.(string)]; !ok || s.Canary != v.(*canaryStats).revision {
			g.canaryStats.Delete(k)
		}
		return true
	})
}

// The cohorts of a call during a canary.
const (
	cohortNone = iota - 1 // pinned, or a stable call beyond the baseline
	cohortCanary
	cohortBaseline
)

// pickRevision gives the call its revision during the project's canary:
// the revision, its cohort, and the failure of a Butter-Revision header
// that names none. ok is false when the project has no canary.
func (g *Gateway) pickRevision(r *http.Request, project string) (s Split, rev string, cohort int, e *CallError, ok bool) {
	sp := g.splits.Load()
	want := r.Header.Get(api.HeaderRevision)
	if sp == nil {
		if strings.EqualFold(want, "canary") {
			return Split{}, "", cohortNone, callError(http.StatusNotFound, "NoCanary", "header %s: project %q has no canary in progress", api.HeaderRevision, project), false
		}
		return Split{}, "", cohortNone, nil, false
	}
	s, found := (*sp)[project]
	if !found {
		if strings.EqualFold(want, "canary") {
			return Split{}, "", cohortNone, callError(http.StatusNotFound, "NoCanary", "header %s: project %q has no canary in progress", api.HeaderRevision, project), false
		}
		return Split{}, "", cohortNone, nil, false
	}
	switch {
	case want == "":
	case strings.EqualFold(want, "canary"):
		return s, s.Canary, cohortNone, nil, true
	case strings.EqualFold(want, "stable"):
		return s, s.Stable, cohortNone, nil, true
	case len(want) >= 6 && strings.HasPrefix(s.Canary, want):
		return s, s.Canary, cohortNone, nil, true
	case len(want) >= 6 && strings.HasPrefix(s.Stable, want):
		return s, s.Stable, cohortNone, nil, true
	default:
		return s, "", cohortNone, callError(http.StatusBadRequest, "BadRequest",
			"header %s: %q names neither revision of project %q's canary: use canary, stable, or (a prefix of at least 6 characters of) %s or %s",
			api.HeaderRevision, want, project, s.Canary, s.Stable), true
	}
	if s.Draining {
		return s, s.Stable, cohortNone, nil, true
	}
	u := rand.IntN(100)
	base := min(s.Weight, 100-s.Weight)
	switch {
	case u < s.Weight:
		return s, s.Canary, cohortCanary, nil, true
	case u < s.Weight+base:
		return s, s.Stable, cohortBaseline, nil, true
	}
	return s, s.Stable, cohortNone, nil, true
}

// canaryStats counts a project's canary's calls per weight.
type canaryStats struct {
	revision string
	mu       sync.Mutex
	steps    map[int]*[2]api.CohortCounts
}

func (g *Gateway) observeCohort(project string, s Split, cohort, status int, d time.Duration) {
	v, _ := g.canaryStats.Load(project)
	cs, _ := v.(*canaryStats)
	if cs == nil || cs.revision != s.Canary {
		nv, _ := g.canaryStats.LoadOrStore(project, &canaryStats{revision: s.Canary, steps: map[int]*[2]api.CohortCounts{}})
		cs = nv.(*canaryStats)
		if cs.revision != s.Canary {
			cs = &canaryStats{revision: s.Canary, steps: map[int]*[2]api.CohortCounts{}}
			g.canaryStats.Store(project, cs)
		}
	}
	i := len(api.CanaryBuckets)
	for j, le := range api.CanaryBuckets {
		if d.Seconds() <= le {
			i = j
			break
		}
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	st := cs.steps[s.Weight]
	if st == nil {
		st = &[2]api.CohortCounts{}
		cs.steps[s.Weight] = st
	}
	c := &st[cohort]
	if c.Buckets == nil {
		c.Buckets = make([]uint64, len(api.CanaryBuckets)+1)
	}
	c.Requests++
	if status >= 500 {
		c.Errors++
	}
	c.Buckets[i]++
}

// CanaryReports returns the gateway's counts of each project's canary in
// progress, cumulative, for the control plane (api.CanaryReport without
// the gateway's id).
func (g *Gateway) CanaryReports() map[string]api.CanaryReport {
	out := map[string]api.CanaryReport{}
	g.canaryStats.Range(func(k, v any) bool {
		cs := v.(*canaryStats)
		rep := api.CanaryReport{Revision: cs.revision}
		cs.mu.Lock()
		for w, st := range cs.steps {
			rep.Steps = append(rep.Steps, api.CanaryCounts{Weight: w, Canary: cloneCounts(st[0]), Baseline: cloneCounts(st[1])})
		}
		cs.mu.Unlock()
		slices.SortFunc(rep.Steps, func(a, b api.CanaryCounts) int { return a.Weight - b.Weight })
		out[k.(string)] = rep
		return true
	})
	return out
}

func cloneCounts(c api.CohortCounts) api.CohortCounts {
	c.Buckets = slices.Clone(c.Buckets)
	return c
}

// splitsState is the gateway's splits, read on every call.
type splitsState = atomic.Pointer[map[string]Split]
