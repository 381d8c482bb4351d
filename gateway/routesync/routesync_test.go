package routesync_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"github.com/butterfn/butter/scheduler/schedtest"
	"sort"
	"strings"
	"sync"
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
