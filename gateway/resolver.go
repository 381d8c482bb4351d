package gateway

import (
	"context"
	"math/rand/v2"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/butterfn/butter/names"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/api"
)

// Resolver says where a project's pool listens: the host:port addresses
// of its invoke endpoints. An empty answer means none is known now (the
// gateway answers 503). Endpoints is called on every request and must be
// cheap and safe for concurrent use.
type Resolver interface {
	Endpoints(project, pool string) []string
}

// StaticResolver is a Resolver over a map that its owner sets, for
// `butter dev` (one local pool) and tests.
type StaticResolver struct {
	mu   sync.RWMutex
	eps  map[string][]string
	revs map[string]map[string][]string // project/pool → revision → addresses
}

// NewStaticResolver returns a resolver with no endpoints.
func NewStaticResolver() *StaticResolver {
	return &StaticResolver{eps: map[string][]string{}, revs: map[string]map[string][]string{}}
}

// Set replaces the endpoints of a project's pool; no addresses removes
// them.
func (s *StaticResolver) Set(project, pool string, addrs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(addrs) == 0 {
		delete(s.eps, project+"/"+pool)
		return
	}
	s.eps[project+"/"+pool] = slices.Clone(addrs)
}

// Endpoints implements Resolver.
func (s *StaticResolver) Endpoints(project, pool string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.eps[project+"/"+pool]
}

// SetRevision says which of a pool's endpoints run revision (for
// RevisionEndpoints); no addresses removes them. Endpoints is unchanged:
// Set the pool's whole list too.
func (s *StaticResolver) SetRevision(project, pool, revision string, addrs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := project + "/" + pool
	if s.revs[k] == nil {
		s.revs[k] = map[string][]string{}
	}
	if len(addrs) == 0 {
		delete(s.revs[k], revision)
		return
	}
	s.revs[k][revision] = slices.Clone(addrs)
}

// RevisionEndpoints implements RevisionResolver.
func (s *StaticResolver) RevisionEndpoints(project, pool, revision string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.revs[project+"/"+pool][revision]
}

// NomadResolver follows the Nomad-native services of pools, named
// names.ServiceName(project, pool) ("butter-<project>-<pool>"), with
// blocking queries: a change in Nomad reaches the gateway within one
// round trip.
//
// The first Endpoints call for a pool starts following its service and
// waits up to firstAnswer for Nomad's first answer; later calls read the
// last answer without waiting. When Nomad cannot be reached, the last
// known endpoints stay in use (dial failures then move requests to the
// live ones) and the query is retried with a jittered backoff
// (retryWait). A pool is followed until Close.
type NomadResolver struct {
	client *api.Client
	log    hclog.Logger

	mu      sync.Mutex
	watches map[string]*serviceWatch

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// firstAnswer bounds how long a request waits for Nomad's first answer
// about a pool.
const firstAnswer = 3 * time.Second

// nomadWait is the longest a blocking query waits for a change.
const nomadWait = 5 * time.Minute

// retryMin and retryMax bound the backoff between failed queries
// (retryWait).
const (
	retryMin = 250 * time.Millisecond
	retryMax = 30 * time.Second
)

// retryWait is how long follow waits after the n-th failed query in a row
// (n ≥ 1): retryMin doubled after each failure up to retryMax, less a
// random part of up to half of it drawn from rnd ("equal jitter"). The
// jitter keeps the watches of every gateway that lost Nomad at the same
// moment from retrying in step when it comes back.
func retryWait(n int, rnd *rand.Rand) time.Duration {
	d := retryMax
	if n < 16 { // beyond, the doubling is past retryMax anyway
		d = min(retryMin<<max(n-1, 0), retryMax)
	}
	return d - time.Duration(rnd.Int64N(int64(d/2)+1))
}

type serviceWatch struct {
	ready chan struct{} // closed on the first answer
	once  sync.Once

	mu    sync.RWMutex
	eps   []string
	byRev map[string][]string // by the value of the service's revision= tag
}

// NewNomadResolver follows pool services through client. Close stops it.
func NewNomadResolver(client *api.Client, logger hclog.Logger) *NomadResolver {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &NomadResolver{client: client, log: logger, watches: map[string]*serviceWatch{}, ctx: ctx, cancel: cancel}
}

// Endpoints implements Resolver.
func (n *NomadResolver) Endpoints(project, pool string) []string {
	w := n.watch(project, pool)
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.eps
}

// RevisionEndpoints implements RevisionResolver: the endpoints whose
// service registration has the tag revision=<revision>.
func (n *NomadResolver) RevisionEndpoints(project, pool, revision string) []string {
	w := n.watch(project, pool)
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.byRev[revision]
}

// watch returns the pool's service watch, started on first use, once it
// has Nomad's first answer (or firstAnswer passed).
func (n *NomadResolver) watch(project, pool string) *serviceWatch {
	name := names.ServiceName(project, pool)
	n.mu.Lock()
	w := n.watches[name]
	if w == nil {
		if n.ctx.Err() != nil {
			n.mu.Unlock()
			return &serviceWatch{}
		}
		w = &serviceWatch{ready: make(chan struct{})}
		n.watches[name] = w
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.follow(name, w)
		}()
	}
	n.mu.Unlock()
	select {
	case <-w.ready:
	default:
		t := time.NewTimer(firstAnswer)
		defer t.Stop()
		select {
		case <-w.ready:
		case <-t.C:
		case <-n.ctx.Done():
		}
	}
	return w
}

// Close stops following the services and waits for the queries to end.
func (n *NomadResolver) Close() {
	n.cancel()
	n.wg.Wait()
}

func (n *NomadResolver) follow(name string, w *serviceWatch) {
	var index uint64
	failed := 0 // queries failed in a row
	rnd := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	for n.ctx.Err() == nil {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: nomadWait}).WithContext(n.ctx)
		regs, meta, err := n.client.Services().Get(name, q)
		if err != nil {
			if n.ctx.Err() != nil {
				return
			}
			failed++
			wait := retryWait(failed, rnd)
			n.log.Warn("cannot read the pool's service from Nomad; keeping the last endpoints", "service", name, "error", err, "retry_in", wait)
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-n.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		failed = 0
		eps := make([]string, 0, len(regs))
		byRev := map[string][]string{}
		for _, r := range regs {
			ep := net.JoinHostPort(r.Address, strconv.Itoa(r.Port))
			eps = append(eps, ep)
			for _, t := range r.Tags {
				if rev, ok := strings.CutPrefix(t, "revision="); ok {
					byRev[rev] = append(byRev[rev], ep)
				}
			}
		}
		sort.Strings(eps)
		eps = slices.Compact(eps)
		for rev, l := range byRev {
			sort.Strings(l)
			byRev[rev] = slices.Compact(l)
		}
		w.mu.Lock()
		changed := !slices.Equal(w.eps, eps)
		w.eps, w.byRev = eps, byRev
		w.mu.Unlock()
		if changed {
			n.log.Debug("pool endpoints", "service", name, "endpoints", eps)
		}
		w.once.Do(func() { close(w.ready) })
		// An index that goes backwards (a restored server) restarts the
		// query from 0, as Nomad's docs ask.
		if meta.LastIndex < index {
			index = 0
		} else {
			index = meta.LastIndex
		}
	}
}
