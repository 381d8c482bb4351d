package gateway

import (
	"context"
	"errors"
	"math"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/butterfn/butter/names"
	"github.com/prometheus/client_golang/prometheus"
)

// Waker asks the control plane to wake a pool that has no allocation (its
// scaling min is 0 and the autoscaler scaled it to zero): POST
// /v1/projects/{project}/pools/{pool}/wake, which the leader's autoscaler
// takes as a signal to scale the pool 0 -> 1 at once. held is how many
// calls the gateway holds for it. routesync.Sync's Wake is one.
type Waker interface {
	Wake(ctx context.Context, project, pool string, held int) error
}

// WakeRefused is a Waker's answer when the control plane says the pool
// is not asleep: it has no allocation for another reason (a failed job),
// or no such pool exists. The held calls then answer 503 at once with
// Reason, and so do the pool's calls for RefusedFor, without a wake.
type WakeRefused struct{ Reason string }

func (e *WakeRefused) Error() string { return e.Reason }

// RefusedFor is how long a pool whose wake was refused answers 503 at
// once, before a call asks again.
const RefusedFor = 5 * time.Second

// WithWaker makes a direct call to a pool with no known endpoint wait
// while w wakes the pool, instead of answering 503: the call is held
// until an endpoint of the pool appears and accepts a connection, or
// until the route's deadline (504), at most WithWakeQueue calls per pool
// (above, 503 with Retry-After). Without it, such a call answers 503.
func WithWaker(w Waker) Option { return func(o *options) { o.waker = w } }

// WithWakeQueue bounds the calls held per pool while it wakes; the
// default is DefaultWakeQueue.
func WithWakeQueue(n int) Option { return func(o *options) { o.wakeQueue = n } }

// DefaultWakeQueue is WithWakeQueue's default.
const DefaultWakeQueue = 100

// WakeEvery is how often a gateway repeats a pool's wake while it holds
// calls for it: the autoscaler keeps one allocation for its WakeFor
// (10s by default) after the last wake, and a wake lost with a leader
// change is sent again.
const WakeEvery = 2 * time.Second

// wakePoll is how often a waking pool's endpoints are looked at. The
// resolver's answer is in memory (NomadResolver follows the service with
// a blocking query), so this costs no request.
const wakePoll = 25 * time.Millisecond

// wakeRetryAfter is the Retry-After of a call refused over the queue
// limit before any wake was measured.
const wakeRetryAfter = 5 * time.Second

// MaxWakeWait bounds how long a call on a route without a timeout is
// held while its pool wakes.
const MaxWakeWait = time.Minute

// wakeRPC bounds one wake request to the control plane.
const wakeRPC = 5 * time.Second

// wakes holds the calls for pools with no endpoint, one waking per pool.
type wakes struct {
	g     *Gateway
	w     Waker
	limit int

	held     *prometheus.GaugeVec
	refused  *prometheus.CounterVec
	duration prometheus.Histogram

	active atomic.Int64 // len(pools), read without the lock

	mu        sync.Mutex
	pools     map[string]*waking // by project/pool
	notAsleep map[string]refusal // by project/pool: WakeRefused, until when
	last      time.Duration      // the last wake's length, for Retry-After
	wg        sync.WaitGroup
}

type refusal struct {
	until  time.Time
	reason string
}

// waking is one pool's wake in progress.
type waking struct {
	project, pool string
	start         time.Time
	n             int           // calls held
	ready         chan struct{} // closed when an endpoint accepts, or the wake is refused
	eps           []string
	refused       string // the control plane's WakeRefused, set before ready closes
}

func newWakes(g *Gateway, w Waker, limit int) *wakes {
	if limit <= 0 {
		limit = DefaultWakeQueue
	}
	k := &wakes{g: g, w: w, limit: limit, pools: map[string]*waking{}, notAsleep: map[string]refusal{}}
	k.held = register(g.metrics.Registry, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "butter_gateway_held_calls", Help: "Calls held while their pool wakes from zero allocations, by project and pool.",
	}, []string{"project", "pool"}))
	k.refused = register(g.metrics.Registry, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "butter_gateway_wake_refused_total", Help: "Calls answered 503 because their waking pool already held the most calls (WithWakeQueue).",
	}, []string{"project", "pool"}))
	k.duration = register(g.metrics.Registry, prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "butter_gateway_wake_seconds", Help: "Time from the first call held for a pool with no allocation to an endpoint of it accepting a connection.",
		Buckets: prometheus.ExponentialBuckets(0.25, 2, 10),
	}))
	return k
}

// register registers c, or returns the collector already registered
// under its name (two gateways sharing one Metrics).
func register[C prometheus.Collector](r *prometheus.Registry, c C) C {
	if err := r.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

// hold waits for an endpoint of a pool that has none, waking it. It
// returns the endpoints, or a *CallError: 503 with Retry-After over the
// queue limit, 504 when the deadline passes first; or ctx's error when
// the client went away.
func (k *wakes) hold(ctx context.Context, project, pool string) ([]string, error) {
	key := project + "/" + pool
	k.mu.Lock()
	if r, ok := k.notAsleep[key]; ok {
		if time.Now().Before(r.until) {
			k.mu.Unlock()
			return nil, notAsleep(project, pool, r.reason)
		}
		delete(k.notAsleep, key)
	}
	w := k.pools[key]
	if w == nil {
		if k.g.ctx.Err() != nil {
			k.mu.Unlock()
			return nil, callError(http.StatusServiceUnavailable, "Unavailable", "the gateway is shutting down")
		}
		w = &waking{project: project, pool: pool, start: time.Now(), ready: make(chan struct{})}
		k.pools[key] = w
		k.active.Add(1)
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			k.wake(w)
		}()
	}
	if w.n >= k.limit {
		retry := k.retryAfter()
		k.mu.Unlock()
		k.refused.WithLabelValues(project, pool).Inc()
		e := callError(http.StatusServiceUnavailable, "Unavailable",
			"pool %q of project %q has no allocation and is waking; %d calls already wait for it (the gateway's limit): retry after Retry-After seconds", pool, project, k.limit)
		e.RetryAfter = retry
		return nil, e
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, MaxWakeWait)
		defer cancel()
	}
	w.n++
	k.held.WithLabelValues(project, pool).Inc()
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		w.n--
		k.mu.Unlock()
		k.held.WithLabelValues(project, pool).Dec()
	}()
	select {
	case <-w.ready:
		if w.refused != "" {
			return nil, notAsleep(project, pool, w.refused)
		}
		return w.eps, nil
	case <-k.g.ctx.Done():
		return nil, callError(http.StatusServiceUnavailable, "Unavailable", "the gateway is shutting down")
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, callError(http.StatusGatewayTimeout, "Timeout",
				"pool %q of project %q has no allocation: it was asked to wake %s ago, and none was ready before the route's deadline (or the gateway's MaxWakeWait) (nomad job status %s)",
				pool, project, time.Since(w.start).Round(time.Millisecond), names.JobID(project))
		}
		return nil, ctx.Err()
	}
}

// notAsleep is the answer to a call for a pool whose wake was refused.
func notAsleep(project, pool, reason string) *CallError {
	return callError(http.StatusServiceUnavailable, "Unavailable",
		"no endpoint of pool %q of project %q is known, and it is not asleep: %s", pool, project, reason)
}

// retryAfter is the Retry-After, in whole seconds, of a call over the
// queue limit: the last wake's length, else wakeRetryAfter. k.mu is held.
func (k *wakes) retryAfter() int {
	d := k.last
	if d <= 0 {
		d = wakeRetryAfter
	}
	return max(1, int(math.Ceil(d.Seconds())))
}

// wake asks the control plane to wake w's pool, every WakeEvery while
// calls are held, and releases them once an endpoint accepts a
// connection. It ends when that happens, when no call is held any more
// (they timed out), or when the gateway closes.
func (k *wakes) wake(w *waking) {
	key := w.project + "/" + w.pool
	done := func() bool {
		k.mu.Lock()
		defer k.mu.Unlock()
		if w.n > 0 {
			return false
		}
		k.drop(key)
		return true
	}
	tick := time.NewTicker(wakePoll)
	defer tick.Stop()
	var next time.Time // when to send the wake again
	for k.g.ctx.Err() == nil {
		now := time.Now()
		if !now.Before(next) {
			k.mu.Lock()
			n := w.n
			k.mu.Unlock()
			// The first wake is sent for the call that started the
			// waking, which is about to be counted.
			ctx, cancel := context.WithTimeout(k.g.ctx, wakeRPC)
			err := k.w.Wake(ctx, w.project, w.pool, max(n, 1))
			cancel()
			var refused *WakeRefused
			if errors.As(err, &refused) {
				k.g.log.Warn("the control plane refused to wake a pool: failing its held calls", "project", w.project, "pool", w.pool, "reason", refused.Reason)
				k.mu.Lock()
				w.refused = refused.Reason
				k.notAsleep[key] = refusal{until: time.Now().Add(RefusedFor), reason: refused.Reason}
				for kk, r := range k.notAsleep {
					if time.Now().After(r.until) {
						delete(k.notAsleep, kk)
					}
				}
				k.drop(key)
				k.mu.Unlock()
				close(w.ready)
				return
			}
			if err != nil && k.g.ctx.Err() == nil {
				k.g.log.Warn("cannot ask the control plane to wake a pool; will retry", "project", w.project, "pool", w.pool, "error", err, "retry_in", WakeEvery)
			} else if next.IsZero() {
				k.g.log.Info("waking a pool with no allocation", "project", w.project, "pool", w.pool, "held", max(n, 1))
			}
			next = time.Now().Add(WakeEvery)
		}
		if eps := k.g.resolver.Endpoints(w.project, w.pool); len(eps) > 0 && k.accepts(eps) {
			d := time.Since(w.start)
			k.mu.Lock()
			w.eps = eps
			k.drop(key)
			k.last = d
			k.mu.Unlock()
			close(w.ready)
			k.duration.Observe(d.Seconds())
			k.g.log.Info("pool woke: releasing the held calls", "project", w.project, "pool", w.pool, "after", d.Round(time.Millisecond), "endpoints", eps)
			return
		}
		if done() {
			return
		}
		select {
		case <-k.g.ctx.Done():
		case <-tick.C:
		}
	}
	k.mu.Lock()
	k.drop(key)
	k.mu.Unlock()
}

// drop ends a pool's waking; k.mu is held.
func (k *wakes) drop(key string) {
	if _, ok := k.pools[key]; ok {
		delete(k.pools, key)
		k.active.Add(-1)
	}
}

// waking says whether the pool is waking: its service may be registered
// a moment before its pool listens, and a call then is held too rather
// than refused. Cheap when nothing wakes.
func (k *wakes) waking(project, pool string) bool {
	if k.active.Load() == 0 {
		return false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.pools[project+"/"+pool] != nil
}

// accepts says whether some endpoint accepts a TCP connection: a pool's
// service is registered when its task starts, a moment before the pool
// listens.
func (k *wakes) accepts(eps []string) bool {
	for _, ep := range eps {
		ctx, cancel := context.WithTimeout(k.g.ctx, k.g.opts.dialTimeout)
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", ep)
		cancel()
		if err == nil {
			_ = c.Close()
			return true
		}
	}
	return false
}

// wait waits for the wakes to end; the gateway's context is done.
func (k *wakes) wait() { k.wg.Wait() }
