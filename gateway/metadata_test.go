package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/gateway"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestRouteMetadata: an event that came from an HTTP route carries the
// request's method, path, raw query and headers (ce_httpmethod,
// ce_httppath, ce_httpquery, ce_httpheaders, docs/events.md) and its
// trace context: the request events of queued and async routes, read
// from the request topic of the embedded broker over TCP, and the call
// of a direct route, as the real pool behind it receives it. The
// client's credentials are left out, and ce-http* headers the client
// sends are not taken.
func TestRouteMetadata(t *testing.T) {
	dev, err := broker.StartDev(0, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dev.Close)
	fns := []pool.FunctionConfig{requestFn("meta", "cat"), fn("direct", "cat")}
	dir := t.TempDir()
	for i := range fns {
		fns[i].Bundle = dir
	}
	p, err := pool.New(&pool.Config{Project: "test", Pool: "default", Functions: fns}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if err := p.StartStreams(ctx, dev.Config()); err != nil {
		t.Fatal(err)
	}
	// The direct route's pool: what reaches its invoke endpoint is kept.
	var mu sync.Mutex
	var direct http.Header
	ph := p.Handler()
	psrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/invoke/") {
			mu.Lock()
			direct = r.Header.Clone()
			mu.Unlock()
		}
		ph.ServeHTTP(w, r)
	}))
	t.Cleanup(psrv.Close)
	res := gateway.NewStaticResolver()
	res.Set("test", "default", psrv.Listener.Addr().String())
	req, err := broker.NewRequester(ctx, dev.Config(), "test.gateway.replies")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(req.Close)
	_, url := startGateway(t, res, []gateway.Route{
		{Method: "POST", Path: "/q/{device}", Project: "test", Function: "meta", Mode: "queued", Timeout: 20 * time.Second},
		{Method: "PUT", Path: "/a/{device}", Project: "test", Function: "meta", Mode: "async", Timeout: 20 * time.Second},
		{Method: "POST", Path: "/d/{device}", Project: "test", Function: "direct", Pool: "default"},
	}, gateway.WithRequester(req))

	trace := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	hdr := map[string]string{"X-Custom": "v1", "Authorization": "Bearer secret", "X-API-Key": "secret", "Cookie": "s=secret",
		"Ce-Httpmethod": "FORGED", "traceparent": trace}
	if a := post(t, url+"/q/d1?x=1&y=a%20b", "queued", hdr); a.code != 200 || a.body != "queued" {
		t.Fatalf("queued call: %d %q", a.code, a.body)
	}
	a := call(t, "PUT", url+"/a/d2?z=2", strings.NewReader("async"), hdr)
	if a.code != 202 {
		t.Fatalf("async call: %d %s", a.code, a.body)
	}
	if a := post(t, url+"/d/d3?w=3", "direct", hdr); a.code != 200 || a.body != "direct" {
		t.Fatalf("direct call: %d %q", a.code, a.body)
	}

	check := func(what string, get func(string) string, method, path, query string) {
		t.Helper()
		if get("ce_httpmethod") != method || get("ce_httppath") != path || get("ce_httpquery") != query {
			t.Errorf("%s: method %q path %q query %q, want %s %s %s", what, get("ce_httpmethod"), get("ce_httppath"), get("ce_httpquery"), method, path, query)
		}
		var hs map[string]string
		if err := json.Unmarshal([]byte(get("ce_httpheaders")), &hs); err != nil {
			t.Fatalf("%s: ce_httpheaders %q: %v", what, get("ce_httpheaders"), err)
		}
		if hs["x-custom"] != "v1" {
			t.Errorf("%s: headers %v, want x-custom", what, hs)
		}
		for _, secret := range []string{"authorization", "x-api-key", "cookie"} {
			if _, ok := hs[secret]; ok {
				t.Errorf("%s: headers carry the client's %s: %v", what, secret, hs)
			}
		}
	}
	recs, ok := readRequests(t, dev.Addr, names.RequestTopic("test", "meta"), 2)
	if !ok {
		t.Fatalf("%d request events, want 2", len(recs))
	}
	for _, r := range recs {
		get := func(k string) string { return broker.Header(r, k) }
		if get("ce_traceparent") != trace {
			t.Errorf("request %s: ce_traceparent %q, want the caller's %s", r.Value, get("ce_traceparent"), trace)
		}
		switch string(r.Value) {
		case "queued":
			check("queued", get, "POST", "/q/d1", "x=1&y=a%20b")
		case "async":
			check("async", get, "PUT", "/a/d2", "z=2")
		default:
			t.Errorf("request %q", r.Value)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	check("direct", func(k string) string { return direct.Get("Ce-" + strings.TrimPrefix(k, "ce_")) }, "POST", "/d/d3", "w=3")
}

// readRequests reads topic from its start until n records came, or a
// minute passed.
func readRequests(t *testing.T, addr, topic string, n int) ([]*kgo.Record, bool) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out, len(out) >= n
}
