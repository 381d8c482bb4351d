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
	"fmt"
	"io"
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

var _ RouteSetter = (*gateway.Gateway)(nil)

// maxFile bounds a single-file blob (a schema or an OpenAPI document)
// read to rebuild a revision's tree.
const maxFile = 8 << 20

// Sync mirrors the control plane's active revisions' routes and its API
// keys. Its methods are safe for concurrent use.
type Sync struct {
	client *api.Client
	keys   *gateway.MemKeys
	log    hclog.Logger

	mu       sync.Mutex
	specs    map[string]*spec.Project // project → its active revision's spec
	active   map[string]string        // project → revision the routes come from
	keyState map[string]string        // hash → project, for deletes
}

// New returns a Sync that reads through client and writes API keys into
// keys (which the gateway checks, gateway.WithKeys). A nil log discards.
func New(client *api.Client, keys *gateway.MemKeys, log hclog.Logger) *Sync {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Sync{client: client, keys: keys, log: log, specs: map[string]*spec.Project{}, active: map[string]string{}}
}

// Run refreshes every interval until ctx ends. A refresh that fails is
// logged and the gateway keeps the last routes and keys it had.
func (s *Sync) Run(ctx context.Context, gw RouteSetter, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.Once(ctx, gw); err != nil {
			s.log.Warn("cannot refresh routes from the control plane; serving the last ones", "error", err)
		}
	}
}

// Once reads the projects and keys once. When an active revision changed,
// it loads its specs and gives gw the whole table again; a revision whose
// specs do not load is logged and its project keeps its previous routes.
// Keys are put and deleted to match the control plane's. On an error the
// refresh stops where it was: what was set so far stays.
func (s *Sync) Once(ctx context.Context, gw RouteSetter) error {
	stale := &api.QueryOptions{AllowStale: true}
	list, _, err := s.client.Projects().List(ctx, stale)
	if err != nil {
		return fmt.Errorf("list projects: %w", err)
	}
	changed := false
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range list.Projects {
		st, _, err := s.client.Projects().Status(ctx, name, stale)
		if err != nil {
			return fmt.Errorf("project %s: %w", name, err)
		}
		if st.Active == nil || s.active[name] == st.Active.ID {
			continue
		}
		rev, _, err := s.client.Revisions().Get(ctx, name, st.Active.ID, stale)
		if err != nil {
			return fmt.Errorf("project %s: %w", name, err)
		}
		fsys, err := s.specFS(ctx, rev.Specs, rev.Bundles)
		if err != nil {
			return fmt.Errorf("project %s revision %s: %w", name, rev.ID, err)
		}
		proj, rep := spec.LoadFS(fsys, name+"@"+rev.ID)
		if proj == nil || rep.HasErrors() {
			s.log.Error("the active revision's specs do not load; keeping the previous routes", "project", name, "revision", rev.ID)
			s.active[name] = rev.ID
			continue
		}
		s.specs[name] = proj
		s.active[name] = rev.ID
		changed = true
		s.log.Info("routes updated", "project", name, "revision", rev.ID)
	}
	if changed {
		var all []gateway.Route
		for name, proj := range s.specs {
			all = append(all, routes.FromSpec(proj, s.active[name])...)
		}
		if err := gw.SetRoutes(all); err != nil {
			return fmt.Errorf("set routes: %w", err)
		}
	}
	keys, _, err := s.client.Keys().List(ctx, stale)
	if err != nil {
		return fmt.Errorf("list API keys: %w", err)
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
	return nil
}

// Placement maps a function of a synced project to its pool, for the
// gateway's ad-hoc pipelines (gateway.WithPlacement).
func (s *Sync) Placement(project, function string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return routes.Placement(func(p string) *spec.Project { return s.specs[p] })(project, function)
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
