// Package routesync keeps a gateway's route table and API keys in step
// with the control plane: it reads every project's active revision
// through package api (stale reads, so a gateway keeps serving through a
// control-plane election), loads the revision's spec files, turns them
// into routes with package routes and hands them to the gateway.
//
// It lives beside package gateway rather than in it because package
// routes, which builds the table, imports gateway. `butter gateway` runs
// it; `butter dev` sets its routes directly.
package routesync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/gateway"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/routes"
	"github.com/hashicorp/go-hclog"
)

// RouteSetter takes a whole route table; *gateway.Gateway is one.
type RouteSetter interface {
	SetRoutes([]gateway.Route) error
}

// RateSetter takes the projects' requests-per-second quotas;
// *gateway.Gateway is one. Once gives them to a RouteSetter that is one.
type RateSetter interface {
	SetProjectRates(map[string]float64)
}

// SplitSetter takes the projects' canary splits and reports the calls
// of each cohort; *gateway.Gateway is one. Once gives it the splits of
// the canaries whose canaries are healthy, and sends its reports to the
// control plane.
type SplitSetter interface {
	SetSplits(map[string]gateway.Split)
	CanaryReports() map[string]api.CanaryReport
}

var (
	_ RouteSetter = (*gateway.Gateway)(nil)
	_ RateSetter  = (*gateway.Gateway)(nil)
	_ SplitSetter = (*gateway.Gateway)(nil)
)

// maxFile bounds a single-file blob (a schema or an OpenAPI document)
// read to rebuild a revision's tree.
const maxFile = 8 << 20

// The defaults of WithRetry.
const (
	DefaultRetryMin = time.Second
	DefaultRetryMax = time.Minute
)

// Sync mirrors the control plane's active revisions' routes and its API
// keys. Its methods are safe for concurrent use.
//
// Each project is applied on its own: a project's active revision is
// recorded as applied only once the gateway has taken a table with its
// routes. A revision the gateway refuses (its routes conflict with
// another project's), or that cannot be read, leaves its project on the
// routes it had (none for a new project) while the other projects' routes
// are served; it is retried with a jittered exponential backoff
// (WithRetry) and reported by Failures until it applies or the project
// activates another revision.
type Sync struct {
	client *api.Client
	keys   *gateway.MemKeys
	log    hclog.Logger

	retryMin, retryMax time.Duration
	now                func() time.Time

	// refresh serializes Once; it alone reads the control plane, without
	// holding mu, so Placement never waits on the network.
	refresh  sync.Mutex
	keyState map[string]string  // hash → project, for deletes
	keyIndex uint64             // the Raft index of the key list applied
	rates    map[string]float64 // project → requests per second, last refresh

	mu      sync.Mutex
	specs   map[string]*spec.Project // project → the applied revision's spec
	splits  map[string]gateway.Split // project → its canary, the last read
	id      string                   // names this gateway in canary reports
	applied map[string]string        // project → revision the gateway's routes come from
	failed  map[string]*failure      // project → its active revision, not applied
}

// failure is a project's active revision that is not applied.
type failure struct {
	revision string
	err      error
	attempts int
	next     time.Time // the next attempt; zero: never (its specs do not load)
}

// Failure is a project whose active revision the gateway does not serve.
type Failure struct {
	Project string
	// Revision is the project's active revision, not applied; Serving is
	// the revision whose routes the gateway serves for the project
	// instead ("" for none).
	Revision, Serving string
	Err               error
	// Attempts counts the tries at Revision; NextRetry is when the next
	// one is due, zero when the revision is not retried (its specs do not
	// load, which no retry changes).
	Attempts  int
	NextRetry time.Time
}

// Option configures a Sync.
type Option func(*Sync)

// WithRetry sets the backoff between attempts at a project's revision
// that the gateway refused or that could not be read: the first retry is
// due about min after the failure, each next one after twice as long as
// the one before, up to max; each wait is jittered down by up to half,
// so that gateways do not retry in step. The defaults are
// DefaultRetryMin and DefaultRetryMax.
func WithRetry(min, max time.Duration) Option {
	return func(s *Sync) { s.retryMin, s.retryMax = min, max }
}

// New returns a Sync that reads through client and writes API keys into
// keys (which the gateway checks, gateway.WithKeys). A nil log discards.
func New(client *api.Client, keys *gateway.MemKeys, log hclog.Logger, opts ...Option) *Sync {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	s := &Sync{
		client: client, keys: keys, log: log,
		retryMin: DefaultRetryMin, retryMax: DefaultRetryMax, now: time.Now,
		specs: map[string]*spec.Project{}, applied: map[string]string{}, failed: map[string]*failure{},
		id: fmt.Sprintf("%x", rand.Uint64()),
	}
	for _, o := range opts {
		o(s)
	}
	if s.retryMin <= 0 {
		s.retryMin = DefaultRetryMin
	}
	if s.retryMax < s.retryMin {
		s.retryMax = s.retryMin
	}
	return s
}

// Run refreshes every interval, and sooner when a failed project's retry
// is due, until ctx ends. A refresh that fails is logged and the gateway
// keeps the last routes and keys it had.
func (s *Sync) Run(ctx context.Context, gw RouteSetter, every time.Duration) {
	t := time.NewTimer(s.wait(every))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.Once(ctx, gw); err != nil && ctx.Err() == nil {
			s.log.Warn("route refresh incomplete: the gateway serves what applied, and the last routes it had for the rest", "error", err)
		}
		t.Reset(s.wait(every))
	}
}

// wait is how long Run sleeps: every, or less until the first retry due.
func (s *Sync) wait(every time.Duration) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := every
	now := s.now()
	for _, f := range s.failed {
		if !f.next.IsZero() {
			d = min(d, max(f.next.Sub(now), time.Millisecond))
		}
	}
	return d
}

// report sends the gateway's counts of each canary in progress to the
// control plane.
func (s *Sync) report(ctx context.Context, reports map[string]api.CanaryReport) []error {
	var errs []error
	for project, r := range reports {
		r.Gateway = s.id
		if err := s.client.Canaries().Report(ctx, project, &r); err != nil {
			errs = append(errs, fmt.Errorf("report project %s's canary calls: %w", project, err))
		}
	}
	return errs
}

// Failures lists the projects whose active revision is not applied,
// sorted by project.
func (s *Sync) Failures() []Failure {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Failure, 0, len(s.failed))
	for name, f := range s.failed {
		out = append(out, Failure{Project: name, Revision: f.revision, Serving: s.applied[name], Err: f.err, Attempts: f.attempts, NextRetry: f.next})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Project < out[j].Project })
	return out
}

// candidate is a project's active revision, loaded, to apply.
type candidate struct {
	project, revision string
	spec              *spec.Project
}

// Once reads the projects and keys once. Each project whose active
// revision changed (or whose retry is due) has its specs loaded, and the
// gateway is given the whole table again; a project whose revision
// cannot be read or is refused by the gateway keeps its previous routes
// and is retried later (see Sync), without holding the others back. A
// revision whose specs do not load is logged, not retried, and its
// project keeps its previous routes. Keys are put and deleted to match
// the control plane's. The error joins what failed; the rest applied.
func (s *Sync) Once(ctx context.Context, gw RouteSetter) error {
	stale := &api.QueryOptions{AllowStale: true}
	list, _, err := s.client.Projects().List(ctx, stale)
	if err != nil {
		return fmt.Errorf("list projects: %w", err)
	}
	s.refresh.Lock()
	defer s.refresh.Unlock()
	var errs []error
	var todo []candidate
	rates := map[string]float64{}
	splits := map[string]gateway.Split{}
	now := s.clock()
	for _, name := range list.Projects {
		st, _, err := s.client.Projects().Status(ctx, name, stale)
		if err != nil {
			errs = append(errs, fmt.Errorf("project %s: %w", name, err))
			if old, ok := s.rates[name]; ok {
				rates[name] = old // keep the last quota known
			}
			if old, ok := s.splits[name]; ok {
				splits[name] = old // and the last canary
			}
			continue
		}
		if c := st.Canary; c != nil && (c.Effective || c.Draining) {
			splits[name] = gateway.Split{Stable: c.Stable, Canary: c.Revision, Weight: c.Weight, Draining: !c.Effective}
		}
		if st.Quota != nil && st.Quota.RequestsPerSecond > 0 {
			rates[name] = st.Quota.RequestsPerSecond
		}
		if st.Active == nil {
			continue
		}
		if !s.due(name, st.Active.ID, now) {
			continue
		}
		c, err := s.load(ctx, name, st.Active.ID)
		if err != nil {
			s.mu.Lock()
			errs = append(errs, s.fail(name, st.Active.ID, err, true))
			s.mu.Unlock()
			continue
		}
		if c == nil {
			continue // its specs do not load: reported, not retried
		}
		todo = append(todo, *c)
	}
	if rs, ok := gw.(RateSetter); ok {
		rs.SetProjectRates(rates)
	}
	s.rates = rates
	if ss, ok := gw.(SplitSetter); ok {
		ss.SetSplits(splits)
		s.splits = splits
		errs = append(errs, s.report(ctx, ss.CanaryReports())...)
	}
	sort.Slice(todo, func(i, j int) bool { return todo[i].project < todo[j].project })
	s.mu.Lock()
	errs = append(errs, s.apply(gw, todo)...)
	s.mu.Unlock()

	keys, meta, err := s.client.Keys().List(ctx, stale)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list API keys: %w", err))...)
	}
	// A server that restarted answers stale reads from the state it has
	// replayed so far: a key list older than the one applied would revoke
	// every key created since. Keep the keys until a server catches up.
	if meta != nil && meta.LastIndex < s.keyIndex {
		s.log.Warn("the control plane answered an older key list than the one applied; keeping the keys until it catches up",
			"answered_index", meta.LastIndex, "applied_index", s.keyIndex)
		return errors.Join(errs...)
	}
	if meta != nil {
		s.keyIndex = meta.LastIndex
	}
	seen := map[string]string{}
	for _, k := range keys {
		s.keys.Put(k.Hash, k.Project, k.Routes...)
		seen[k.Hash] = k.Project
	}
	for h := range s.keyState {
		if _, ok := seen[h]; !ok {
			s.keys.Delete(h)
		}
	}
	s.keyState = seen
	return errors.Join(errs...)
}

// load reads a project's revision and loads its specs. It returns nil
// and no error when the specs do not load, which it records as a failure
// that is not retried.
func (s *Sync) load(ctx context.Context, project, id string) (*candidate, error) {
	stale := &api.QueryOptions{AllowStale: true}
	rev, _, err := s.client.Revisions().Get(ctx, project, id, stale)
	if err != nil {
		return nil, fmt.Errorf("project %s revision %s: %w", project, id, err)
	}
	fsys, err := s.specFS(ctx, rev.Specs, rev.Bundles)
	if err != nil {
		return nil, fmt.Errorf("project %s revision %s: %w", project, id, err)
	}
	proj, rep := spec.LoadFS(fsys, project+"@"+id)
	if proj == nil || rep.HasErrors() {
		err := fmt.Errorf("project %s revision %s: its specs do not load", project, id)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.log.Error("the active revision's specs do not load; keeping the previous routes", "project", project, "revision", id, "serving", s.applied[project])
		s.fail(project, id, err, false)
		return nil, nil
	}
	return &candidate{project: project, revision: id, spec: proj}, nil
}

// due reports whether project's active revision id is to be applied: it
// is not the applied one, and it has not failed, or its retry is due at
// now. A project back on its applied revision has no failure.
func (s *Sync) due(project, id string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.applied[project] == id {
		delete(s.failed, project)
		return false
	}
	f := s.failed[project]
	return f == nil || f.revision != id || (!f.next.IsZero() && !now.Before(f.next))
}

// clock reads the Sync's clock.
func (s *Sync) clock() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now()
}

// apply gives the gateway a table with every candidate's routes in place
// of its project's previous ones; s.mu is held. When the gateway refuses it, the
// candidates are tried one at a time, in project order and again while
// one more applies (a project may free a route another takes), so that
// one project's bad routes keep only that project back. A candidate is
// recorded as applied once a table with its routes is taken.
func (s *Sync) apply(gw RouteSetter, todo []candidate) []error {
	if len(todo) == 0 {
		return nil
	}
	if err := gw.SetRoutes(s.table(todo...)); err == nil {
		for _, c := range todo {
			s.applied1(c)
		}
		return nil
	}
	refused := map[string]error{}
	for progress := true; progress; {
		progress = false
		var left []candidate
		for _, c := range todo {
			if err := gw.SetRoutes(s.table(c)); err != nil {
				refused[c.project] = err
				left = append(left, c)
				continue
			}
			s.applied1(c)
			delete(refused, c.project)
			progress = true
		}
		todo = left
	}
	var errs []error
	for _, c := range todo {
		errs = append(errs, s.fail(c.project, c.revision, fmt.Errorf("project %s revision %s: the gateway refused its routes: %w", c.project, c.revision, refused[c.project]), true))
	}
	return errs
}

// applied1 records that the gateway serves c's routes; s.mu is held.
func (s *Sync) applied1(c candidate) {
	s.specs[c.project] = c.spec
	s.applied[c.project] = c.revision
	delete(s.failed, c.project)
	s.log.Info("routes updated", "project", c.project, "revision", c.revision)
}

// table is the route table of the applied revisions, with the candidates
// in place of their projects' applied ones, in project order.
func (s *Sync) table(with ...candidate) []gateway.Route {
	specs := maps.Clone(s.specs)
	revs := maps.Clone(s.applied)
	for _, c := range with {
		specs[c.project], revs[c.project] = c.spec, c.revision
	}
	var all []gateway.Route
	for _, name := range slices.Sorted(maps.Keys(specs)) {
		all = append(all, routes.FromSpec(specs[name], revs[name])...)
	}
	return all
}

// fail records that project's revision is not applied; s.mu is held. A retried
// failure is due again after the backoff of its attempt. It returns err
// with the attempt and when the next is due, for Once's error.
func (s *Sync) fail(project, revision string, err error, retry bool) error {
	f := s.failed[project]
	if f == nil || f.revision != revision {
		f = &failure{revision: revision}
		s.failed[project] = f
	}
	f.err = err
	f.attempts++
	f.next = time.Time{}
	if !retry {
		return err
	}
	wait := s.backoff(f.attempts)
	f.next = s.now().Add(wait)
	serving := "no routes"
	if old := s.applied[project]; old != "" {
		serving = "the routes of revision " + old
	}
	return fmt.Errorf("%w (attempt %d; serving %s; retrying in %s)", err, f.attempts, serving, wait.Round(time.Millisecond))
}

// backoff is the wait after the attempt-th failed attempt: retryMin
// doubled per attempt up to retryMax, jittered down by up to half.
func (s *Sync) backoff(attempt int) time.Duration {
	d := s.retryMin
	for i := 1; i < attempt && d < s.retryMax; i++ {
		d *= 2
	}
	d = min(d, s.retryMax)
	return d - time.Duration(rand.Int64N(int64(d/2)+1))
}

// Placement maps a function of a synced project to its pool, for the
// gateway's ad-hoc pipelines (gateway.WithPlacement).
func (s *Sync) Placement(project, function string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return routes.Placement(func(p string) *spec.Project { return s.specs[p] })(project, function)
}

// Functions lists the functions of the applied revisions, for the
// gateway's OpenFaaS API (gateway.WithFunctions).
func (s *Sync) Functions() []gateway.FunctionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []gateway.FunctionInfo
	for _, name := range slices.Sorted(maps.Keys(s.specs)) {
		out = append(out, routes.Functions(s.specs[name], s.applied[name])...)
	}
	return out
}

// specFS rebuilds enough of a revision's tree for the spec to load: the
// spec files, the single-file blobs (JSON schemas and OpenAPI documents,
// JSON or YAML, fetched from the blob store, since validation reads them
// and the OpenAPI documents make routes) and an empty directory for each
// source bundle.
func (s *Sync) specFS(ctx context.Context, specs, bundles map[string]string) (memFS, error) {
	fsys := memFS{}
	for path, text := range specs {
		fsys[path] = &memFile{data: []byte(text)}
	}
	for path, digest := range bundles {
		if !strings.HasSuffix(path, ".json") && !strings.HasSuffix(path, ".yaml") && !strings.HasSuffix(path, ".yml") {
			fsys[path] = &memFile{dir: true}
			continue
		}
		rc, err := s.client.Blobs().Get(ctx, digest)
		if err != nil {
			return nil, fmt.Errorf("file %s: %w", path, err)
		}
		b, err := io.ReadAll(io.LimitReader(rc, maxFile))
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("file %s: %w", path, err)
		}
		fsys[path] = &memFile{data: b}
	}
	return fsys, nil
}
