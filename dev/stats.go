package dev

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/butterfn/butter/autoscaler"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/scheduler"
)

// statsEvery is how often butter dev reads its pool's metrics for the
// signals `butter status` and the UI show (on Nomad the leader's
// autoscaler reads every allocation's at each pass).
const statsEvery = 2 * time.Second

// stats is what butter dev last read of its pool: the same series, and
// the same arithmetic, as the autoscaler's PoolSignals on Nomad
// (autoscaler.ParseMetrics, autoscaler.TrafficWindow).
type stats struct {
	mu      sync.Mutex
	at      time.Time
	fns     map[string]autoscaler.FunctionLoad
	traffic autoscaler.TrafficWindow
}

var _ scheduler.Observer = (*env)(nil)

// runStats reads the serving pool's metrics every statsEvery until ctx
// ends. A redeploy's new pool is a new source: its rates start again
// from its first two readings.
func (d *env) runStats(ctx context.Context) {
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(statsEvery):
		}
		d.mu.Lock()
		cur := d.current
		d.mu.Unlock()
		if cur == nil || cur.addr == "" {
			continue
		}
		fns, err := readPoolMetrics(ctx, hc, "http://"+cur.addr+"/metrics")
		if err != nil {
			d.log.Debug("read the pool's metrics", "error", err)
			continue
		}
		now := time.Now().UTC()
		source := cur.revision + "@" + cur.addr
		d.stats.traffic.Started(source, cur.started)
		d.stats.traffic.Add(source, now, fns)
		d.stats.traffic.Keep(func(s string) bool { return s == source })
		d.stats.mu.Lock()
		d.stats.at, d.stats.fns = now, fns
		d.stats.mu.Unlock()
	}
}

func readPoolMetrics(ctx context.Context, hc *http.Client, url string) (map[string]autoscaler.FunctionLoad, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return autoscaler.ParseMetrics(resp.Body)
}

// Observations are butter dev's pool as the control plane shows it: one
// observation per pool of the spec (butter dev runs them all in one
// local pool, counted as one allocation), its functions' instances,
// calls in flight and queued, lag and traffic. Nothing judges the load:
// there is no autoscaler in dev.
func (d *env) Observations() map[string]autoscaler.Observation {
	d.mu.Lock()
	proj := d.proj
	d.mu.Unlock()
	d.stats.mu.Lock()
	at, fns := d.stats.at, d.stats.fns
	d.stats.mu.Unlock()
	if proj == nil || at.IsZero() {
		return nil
	}
	traffic := d.stats.traffic.Traffic()
	out := map[string]autoscaler.Observation{}
	for _, f := range proj.Functions {
		poolName := f.Pool
		if poolName == "" {
			poolName = spec.DefaultPool
		}
		t := autoscaler.Target{Project: proj.Name, Job: names.JobID(proj.Name), Group: poolName}
		o, ok := out[t.Key()]
		if !ok {
			o = autoscaler.Observation{Target: t, At: at, Count: 1, Want: -1, Capacity: map[string]int{},
				Load: autoscaler.Load{At: at, Allocations: 1, Functions: map[string]autoscaler.FunctionLoad{}}}
		}
		o.Capacity[f.Name] = f.Instances.Max * max(f.Instances.Concurrency, 1)
		if fl, ok := fns[f.Name]; ok {
			if tr, ok := traffic[f.Name]; ok {
				fl.Traffic = &tr
			}
			fl.Latency = nil
			o.Load.Functions[f.Name] = fl
			o.Load.Lag += fl.Lag // as the pool's consumers saw it at their last poll
		}
		out[t.Key()] = o
	}
	return out
}
