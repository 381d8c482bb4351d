package routesync_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"github.com/butterfn/butter/scheduler/schedtest"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/gateway"
	"github.com/butterfn/butter/gateway/routesync"
	"github.com/hashicorp/go-hclog"
)

const spec = `
project "shop" {
  openapi = ["api/openapi.json"]
}

function "echo" {
  runtime = "exec"
  command = ["cat"]
}

function "orders" {
  runtime = "node"
  source  = "functions/orders"
  handler = "index.handle"
  pool    = "web"

  trigger "http" {
    route = "POST /orders"
    auth  = "api_key"
  }
}
`

const openapi = `{
  "openapi": "3.1.0",
  "info": {"title": "Echo", "version": "1"},
  "paths": {"/echo/{name}": {"post": {
    "operationId": "echo",
    "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
    "responses": {"200": {"description": "The body, back."}}
  }}}
}`

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// patterns lists the gateway's routes as "METHOD /path -> target@revision".
func patterns(gw *gateway.Gateway) string {
	var out []string
	for _, r := range gw.Routes() {
		out = append(out, r.Method+" "+r.Path+" -> "+r.Function+"@"+r.Revision)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// TestSync runs the sync against a real single-node control plane and a
// real gateway: routes from the spec and from an OpenAPI document fetched
// from the blob store, pool placement, API keys put and revoked, a new
// revision, a revision whose specs do not load (the routes stay), and a
// missing blob (an error, the routes stay).
func TestSync(t *testing.T) {
	_, c := schedtest.Single(t, nil)
	ctx := context.Background()
	doc := []byte(openapi)
	if _, err := c.Blobs().Put(ctx, digest(doc), bytes.NewReader(doc), int64(len(doc))); err != nil {
		t.Fatal(err)
	}
	revision := func(id, text, docDigest string) {
		t.Helper()
		_, err := c.Revisions().Create(ctx, "shop", &api.RevisionCreateRequest{
			ID: id, Specs: map[string]string{"shop.fn.hcl": text},
			Bundles: map[string]string{"api/openapi.json": docDigest, "functions/orders": digest([]byte("a bundle"))},
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	keys := gateway.NewMemKeys()
	s := routesync.New(c, keys, nil)
	gw := gateway.New(gateway.NewStaticResolver(), gateway.WithLogger(hclog.NewNullLogger()), gateway.WithKeys(keys), gateway.WithPlacement(s.Placement))
	defer gw.Close()

	// No projects yet: nothing to set, no error.
	if err := s.Once(ctx, gw); err != nil || len(gw.Routes()) != 0 {
		t.Fatalf("empty control plane: %v, %s", err, patterns(gw))
	}
	revision("r1", spec, digest(doc))
	key, err := c.Keys().Create(ctx, "shop", []string{"POST /orders"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Once(ctx, gw); err != nil {
		t.Fatal(err)
	}
	if got, want := patterns(gw), "POST /echo/{name} -> echo@r1, POST /orders -> orders@r1"; got != want {
		t.Fatalf("routes %s, want %s", got, want)
	}
	if pool, ok := s.Placement("shop", "orders"); !ok || pool != "web" {
		t.Fatalf("placement of orders: %q %v", pool, ok)
	}
	if _, ok := s.Placement("shop", "nope"); ok {
		t.Fatal("placement of an unknown function")
	}
	if project, routes, ok := keys.Lookup(key.Hash); !ok || project != "shop" || strings.Join(routes, ",") != "POST /orders" {
		t.Fatalf("key: %q %v %v", project, routes, ok)
	}

	if err := c.Keys().Revoke(ctx, key.Hash); err != nil {
		t.Fatal(err)
	}
	revision("r2", strings.Replace(spec, "POST /orders", "PUT /orders", 1), digest(doc))
	if err := s.Once(ctx, gw); err != nil {
		t.Fatal(err)
	}
	if got, want := patterns(gw), "POST /echo/{name} -> echo@r2, PUT /orders -> orders@r2"; got != want {
		t.Fatalf("after r2: routes %s, want %s", got, want)
	}
	if _, _, ok := keys.Lookup(key.Hash); ok {
		t.Fatal("a revoked key is still accepted")
	}

	revision("r3", spec+"\nfunction {", digest(doc))
	if err := s.Once(ctx, gw); err != nil {
		t.Fatalf("a revision that does not load: %v", err)
	}
	if got := patterns(gw); !strings.Contains(got, "@r2") {
		t.Fatalf("a revision that does not load replaced the routes: %s", got)
	}

	revision("r4", spec, digest([]byte("never stored")))
	if err := s.Once(ctx, gw); err == nil || !strings.Contains(err.Error(), "api/openapi.json") || api.StatusCode(err) != 404 {
		t.Fatalf("a missing blob: %v", err)
	}
	if got := patterns(gw); !strings.Contains(got, "@r2") {
		t.Fatalf("a failed refresh replaced the routes: %s", got)
	}
}

// TestRun: Run refreshes on its own, and returns when its context ends.
func TestRun(t *testing.T) {
	_, c := schedtest.Single(t, nil)
	gw := gateway.New(gateway.NewStaticResolver(), gateway.WithLogger(hclog.NewNullLogger()))
	defer gw.Close()
	s := routesync.New(c, gateway.NewMemKeys(), hclog.NewNullLogger())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.Run(ctx, gw, 20*time.Millisecond)
	}()
	text := `project "solo" {}
function "echo" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route = "POST /echo"
  }
}
`
	if _, err := c.Revisions().Create(context.Background(), "solo", &api.RevisionCreateRequest{ID: "s1", Specs: map[string]string{"solo.fn.hcl": text}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Run to pick up the revision", func() bool { return patterns(gw) == "POST /echo -> echo@s1" })
	cancel()
	wg.Wait()
}

// waitFor checks cond every 10 ms until it holds, for up to 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// twoProjects is a control plane where projects alpha and beta both route
// POST /orders. Their revisions record no routes, as a client other than
// `butter deploy` may send them, so the control plane's conflict check
// (which reads the recorded routes) lets both through: the gateway's
// table is the last line.
func twoProjects(t *testing.T) (*api.Client, func(project, id string, routes ...string)) {
	t.Helper()
	_, c := schedtest.Single(t, nil)
	deploy := func(project, id string, routes ...string) {
		t.Helper()
		text := "project \"" + project + "\" {}\n"
		for i, r := range routes {
			text += fmt.Sprintf("function \"f%d\" {\n  runtime = \"exec\"\n  command = [\"cat\"]\n  trigger \"http\" {\n    route = %q\n  }\n}\n", i, r)
		}
		if _, err := c.Revisions().Create(context.Background(), project, &api.RevisionCreateRequest{ID: id, Specs: map[string]string{project + ".fn.hcl": text}}); err != nil {
			t.Fatal(err)
		}
	}
	deploy("alpha", "a1", "POST /orders", "GET /alpha")
	deploy("beta", "b1", "POST /orders", "GET /beta")
	return c, deploy
}

// TestIsolateAndRetry: a project whose routes the gateway refuses keeps
// only itself back: the other project's routes serve, the refused
// revision is not recorded as applied, it is reported, and it is retried
// once its backoff has passed (not before), until it applies. A project
// whose new revision is refused keeps serving its last good routes. The
// clock is moved by hand.
func TestIsolateAndRetry(t *testing.T) {
	c, deploy := twoProjects(t)
	ctx := context.Background()
	gw := gateway.New(gateway.NewStaticResolver(), gateway.WithLogger(hclog.NewNullLogger()))
	defer gw.Close()
	s := routesync.New(c, gateway.NewMemKeys(), nil, routesync.WithRetry(time.Second, 4*time.Second))
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	routesync.SetClock(s, func() time.Time { return now })
	failure := func(project, revision, serving string, attempts int, after, notAfter time.Duration) {
		t.Helper()
		fs := s.Failures()
		if len(fs) != 1 {
			t.Fatalf("failures %+v, want one, of %s", fs, project)
		}
		f := fs[0]
		if f.Project != project || f.Revision != revision || f.Serving != serving || f.Attempts != attempts || f.Err == nil {
			t.Fatalf("failure %+v, want project %s revision %s serving %q attempt %d", f, project, revision, serving, attempts)
		}
		if wait := f.NextRetry.Sub(now); wait < after || wait > notAfter {
			t.Fatalf("next retry in %s, want in [%s, %s] (backoff, jittered down by up to half)", wait, after, notAfter)
		}
	}

	err := s.Once(ctx, gw)
	if err == nil || !strings.Contains(err.Error(), `route "POST /orders" of project "beta" is also a route of project "alpha"`) {
		t.Fatalf("a refused project: %v", err)
	}
	if got, want := patterns(gw), "GET /alpha -> f1@a1, POST /orders -> f0@a1"; got != want {
		t.Fatalf("routes %s, want alpha's alone: %s", got, want)
	}
	failure("beta", "b1", "", 1, 500*time.Millisecond, time.Second)

	// Not due yet: beta is not tried again.
	now = now.Add(400 * time.Millisecond)
	if err := s.Once(ctx, gw); err != nil {
		t.Fatalf("a refresh before the retry is due: %v", err)
	}
	failure("beta", "b1", "", 1, 100*time.Millisecond, 600*time.Millisecond)

	// Due: tried, refused again, with a longer backoff.
	now = now.Add(time.Second)
	if err := s.Once(ctx, gw); err == nil {
		t.Fatal("the retry applied beta while alpha still holds POST /orders")
	}
	failure("beta", "b1", "", 2, time.Second, 2*time.Second)

	// Alpha lets go of POST /orders: beta's next retry applies it.
	deploy("alpha", "a2", "POST /payments", "GET /alpha")
	now = now.Add(2 * time.Second)
	if err := s.Once(ctx, gw); err != nil {
		t.Fatal(err)
	}
	if got, want := patterns(gw), "GET /alpha -> f1@a2, GET /beta -> f1@b1, POST /orders -> f0@b1, POST /payments -> f0@a2"; got != want {
		t.Fatalf("routes %s, want %s", got, want)
	}
	if fs := s.Failures(); len(fs) != 0 {
		t.Fatalf("failures after both applied: %+v", fs)
	}

	// Alpha's next revision takes POST /orders back: refused, and alpha
	// keeps serving a2 while beta serves on.
	deploy("alpha", "a3", "POST /orders")
	if err := s.Once(ctx, gw); err == nil || !strings.Contains(err.Error(), "serving the routes of revision a2") {
		t.Fatalf("a refused revision of a serving project: %v", err)
	}
	if got, want := patterns(gw), "GET /alpha -> f1@a2, GET /beta -> f1@b1, POST /orders -> f0@b1, POST /payments -> f0@a2"; got != want {
		t.Fatalf("routes %s, want %s", got, want)
	}
	failure("alpha", "a3", "a2", 1, 500*time.Millisecond, time.Second)
}

// TestRunRetries: Run wakes for a refused project's retry, well before its
// next refresh, and applies it once it can; it returns when its context
// ends.
func TestRunRetries(t *testing.T) {
	c, deploy := twoProjects(t)
	gw := gateway.New(gateway.NewStaticResolver(), gateway.WithLogger(hclog.NewNullLogger()))
	defer gw.Close()
	s := routesync.New(c, gateway.NewMemKeys(), nil, routesync.WithRetry(10*time.Millisecond, 50*time.Millisecond))
	if err := s.Once(context.Background(), gw); err == nil {
		t.Fatal("beta applied beside alpha")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx, gw, time.Hour) // only a retry wakes it within the test
	}()
	waitFor(t, "beta to be retried", func() bool {
		fs := s.Failures()
		return len(fs) == 1 && fs[0].Attempts >= 3
	})
	deploy("alpha", "a2", "GET /alpha")
	waitFor(t, "beta's retry to apply it", func() bool {
		return patterns(gw) == "GET /alpha -> f0@a2, GET /beta -> f1@b1, POST /orders -> f0@b1"
	})
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// rateRecorder is a RouteSetter and RateSetter that records the rates.
type rateRecorder struct {
	mu    sync.Mutex
	rates map[string]float64
	calls int
}

func (r *rateRecorder) SetRoutes([]gateway.Route) error { return nil }
func (r *rateRecorder) SetProjectRates(m map[string]float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rates, r.calls = m, r.calls+1
}

// TestQuotasReachTheGateway: a project's requests-per-second quota set in
// the control plane reaches the gateway with the next refresh, projects
// without one are left out, and removing it removes it.
func TestQuotasReachTheGateway(t *testing.T) {
	_, c := schedtest.Single(t, nil)
	ctx := context.Background()
	if _, err := c.Projects().SetQuota(ctx, "shop", &api.Quota{RequestsPerSecond: 2.5}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Projects().SetQuota(ctx, "bank", &api.Quota{MaxFunctions: 3}); err != nil {
		t.Fatal(err)
	}
	s := routesync.New(c, gateway.NewMemKeys(), nil)
	rec := &rateRecorder{}
	if err := s.Once(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if rec.calls != 1 || len(rec.rates) != 1 || rec.rates["shop"] != 2.5 {
		t.Fatalf("rates %v after %d calls, want shop 2.5 only", rec.rates, rec.calls)
	}
	if _, err := c.Projects().SetQuota(ctx, "shop", &api.Quota{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Once(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if len(rec.rates) != 0 {
		t.Fatalf("rates %v after the quota was removed", rec.rates)
	}
}

// TestOlderKeyListKept: a key list older (by Raft index) than the one
// applied, as a server that restarted and has not replayed its log yet
// answers a stale read, does not revoke the keys; a newer one applies.
// Two real control planes stand for the caught-up and the lagging server,
// behind a proxy that the test points at one or the other.
func TestOlderKeyListKept(t *testing.T) {
	ahead, aheadClient := schedtest.Single(t, nil)
	behind, behindClient := schedtest.Single(t, nil)
	ctx := context.Background()
	if _, err := aheadClient.Projects().Put(ctx, "shop"); err != nil {
		t.Fatal(err)
	}
	key, err := aheadClient.Keys().Create(ctx, "shop", nil)
	if err != nil {
		t.Fatal(err)
	}
	var target atomic.Pointer[string]
	target.Store(new(ahead.Addr()))
	proxy := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(&url.URL{Scheme: "http", Host: *target.Load()})
	}})
	defer proxy.Close()
	c, err := api.NewClient(&api.Config{Address: proxy.URL})
	if err != nil {
		t.Fatal(err)
	}
	keys := gateway.NewMemKeys()
	s := routesync.New(c, keys, nil)
	gw := gateway.New(gateway.NewStaticResolver(), gateway.WithLogger(hclog.NewNullLogger()), gateway.WithKeys(keys))
	defer gw.Close()
	if err := s.Once(ctx, gw); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := keys.Lookup(key.Hash); !ok {
		t.Fatal("the key was not applied")
	}
	if behind.FSM().Index() >= ahead.FSM().Index() {
		t.Fatalf("the lagging server is at index %d, the other at %d: the test needs it behind", behind.FSM().Index(), ahead.FSM().Index())
	}
	target.Store(new(behind.Addr()))
	if err := s.Once(ctx, gw); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := keys.Lookup(key.Hash); !ok {
		t.Fatal("an older key list revoked the key")
	}
	// Once that server has moved past the applied index, its list applies.
	for behind.FSM().Index() <= ahead.FSM().Index() {
		if _, err := behindClient.Projects().Put(ctx, "filler"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Once(ctx, gw); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := keys.Lookup(key.Hash); ok {
		t.Fatal("a newer key list without the key left it in place")
	}
}

// TestOpenFaaSPathHeldBack: on a gateway serving the OpenFaaS API, a
// project whose route takes one of its paths (which the control plane,
// knowing nothing of the gateways' -openfaas, lets through) is held back
// alone, with an error saying what to change; the other project's later
// revisions still apply, and the OpenFaaS API lists the applied
// projects' functions (Sync.Functions).
func TestOpenFaaSPathHeldBack(t *testing.T) {
	c, deploy := twoProjects(t)
	ctx := context.Background()
	deploy("beta", "b2", "POST /function/f0", "GET /beta")
	gw := gateway.New(gateway.NewStaticResolver(), gateway.WithLogger(hclog.NewNullLogger()), gateway.WithOpenFaaS(gateway.OpenFaaS{}))
	defer gw.Close()
	s := routesync.New(c, gateway.NewMemKeys(), nil)
	err := s.Once(ctx, gw)
	if err == nil || !strings.Contains(err.Error(), `route "POST /function/f0" of project "beta" is on a path of the OpenFaaS API`) {
		t.Fatalf("beta's route on /function/: %v", err)
	}
	if got, want := patterns(gw), "GET /alpha -> f1@a1, POST /orders -> f0@a1"; got != want {
		t.Fatalf("routes %s, want alpha's alone: %s", got, want)
	}
	deploy("alpha", "a2", "POST /payments")
	if err := s.Once(ctx, gw); err != nil {
		t.Fatalf("the second refresh, beta's retry not yet due: %v", err)
	}
	if got, want := patterns(gw), "POST /payments -> f0@a2"; got != want {
		t.Fatalf("routes %s, want alpha's new revision: %s", got, want)
	}
	if fs := s.Failures(); len(fs) != 1 || fs[0].Project != "beta" || fs[0].Revision != "b2" || fs[0].Serving != "" {
		t.Fatalf("failures %+v, want beta's b2 alone, serving nothing", fs)
	}
	var fns []string
	for _, f := range s.Functions() {
		fns = append(fns, f.Project+"/"+f.Name+"@"+f.Revision+" "+f.Runtime+" "+f.Process)
	}
	if got, want := strings.Join(fns, ", "), "alpha/f0@a2 exec cat"; got != want {
		t.Fatalf("functions %s, want %s", got, want)
	}
}
