package gateway_test

import (
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/gateway"
	"github.com/butterfn/butter/internal/testlog"
	"github.com/hashicorp/go-hclog"
)

// unsized hides a reader's length, so the request is sent chunked.
type unsized struct{ io.Reader }

func TestBodyLimit(t *testing.T) {
	b := startPool(t, standardFns()...)
	_, url := startGateway(t, resolverFor(b.addr), []gateway.Route{
		{Method: "POST", Path: "/wc", Project: "test", Function: "wc", MaxBody: 1000},
		{Method: "POST", Path: "/cat", Project: "test", Function: "cat", MaxBody: 1000},
	})
	// A declared length over the limit is refused before any pool sees it.
	a := post(t, url+"/wc", strings.Repeat("x", 2000), nil)
	if a.code != 413 || a.err.Type != "PayloadTooLarge" || !strings.Contains(a.err.Error, "1000 bytes") {
		t.Errorf("declared 2000 bytes: %d %+v", a.code, a.err)
	}
	if n := b.calls.Load(); n != 0 {
		t.Errorf("the pool got %d calls for a body over the limit", n)
	}
	// A chunked body is cut at the limit.
	a = call(t, "POST", url+"/wc", unsized{strings.NewReader(strings.Repeat("x", 5000))}, nil)
	if a.code != 413 || a.err.Type != "PayloadTooLarge" {
		t.Errorf("chunked 5000 bytes: %d %+v", a.code, a.err)
	}
	// Exactly the limit passes, declared or not.
	if a := post(t, url+"/wc", strings.Repeat("x", 1000), nil); a.code != 200 || strings.TrimSpace(a.body) != "1000" {
		t.Errorf("declared 1000 bytes: %d %q", a.code, a.body)
	}
	if a := call(t, "POST", url+"/wc", unsized{strings.NewReader(strings.Repeat("x", 1000))}, nil); a.code != 200 || strings.TrimSpace(a.body) != "1000" {
		t.Errorf("chunked 1000 bytes: %d %q", a.code, a.body)
	}
	// When the output had started (cat), the failure is in the trailer.
	a = call(t, "POST", url+"/cat", unsized{strings.NewReader(strings.Repeat("x", 1<<20))}, nil)
	if !(a.code == 413 || a.code == 200 && strings.HasPrefix(a.trailer.Get("Butter-Error"), "PayloadTooLarge")) || len(a.body) > 1<<16 {
		t.Errorf("chunked 1 MiB to cat: %d, %d bytes, trailer %q: want 413, or 200 with a PayloadTooLarge trailer", a.code, len(a.body), a.trailer.Get("Butter-Error"))
	}
}

func TestDeadline(t *testing.T) {
	b := startPool(t, standardFns()...)
	_, url := startGateway(t, resolverFor(b.addr), []gateway.Route{
		{Method: "POST", Path: "/slow", Project: "test", Function: "slow", Timeout: 300 * time.Millisecond},
		{Method: "POST", Path: "/slow-untimed", Project: "test", Function: "slow"},
	})
	start := time.Now()
	a := post(t, url+"/slow", "x", nil)
	if a.code != 504 || a.err.Type != "Timeout" {
		t.Errorf("route timeout: %d %+v, want 504 Timeout", a.code, a.err)
	}
	if el := time.Since(start); el > 30*time.Second {
		t.Errorf("the 300ms deadline answered after %s", el)
	}
	// A caller may shorten the deadline with Butter-Timeout.
	start = time.Now()
	a = post(t, url+"/slow-untimed", "x", map[string]string{"Butter-Timeout": "200ms"})
	if a.code != 504 || time.Since(start) > 30*time.Second {
		t.Errorf("Butter-Timeout 200ms: %d after %s", a.code, time.Since(start))
	}
	if a := post(t, url+"/slow-untimed", "x", map[string]string{"Butter-Timeout": "soon"}); a.code != 400 || !strings.Contains(a.err.Error, "1.5s") {
		t.Errorf("bad Butter-Timeout: %d %+v", a.code, a.err)
	}
}

func TestRateLimit(t *testing.T) {
	b := startPool(t, standardFns()...)
	routes := []gateway.Route{
		{Method: "POST", Path: "/limited", Project: "test", Function: "cat", Rate: 0.001, Burst: 2},
		{Method: "POST", Path: "/free", Project: "test", Function: "cat"},
	}
	g, url := startGateway(t, resolverFor(b.addr), routes)
	for i, want := range []int{200, 200, 429} {
		a := post(t, url+"/limited", "x", nil)
		if a.code != want {
			t.Errorf("request %d: %d, want %d", i+1, a.code, want)
		}
		if want == 429 && (a.header.Get("Retry-After") == "" || a.err.Type != "RateLimited") {
			t.Errorf("429 without Retry-After or type: %v %+v", a.header, a.err)
		}
	}
	if a := post(t, url+"/free", "x", nil); a.code != 200 {
		t.Errorf("another route is not limited: %d", a.code)
	}
	// Replacing the table with the same limits keeps the bucket.
	if err := g.SetRoutes(routes); err != nil {
		t.Fatal(err)
	}
	if a := post(t, url+"/limited", "x", nil); a.code != 429 {
		t.Errorf("after an unchanged swap: %d, want 429 still", a.code)
	}
	if n := metricValue(t, g, "butter_gateway_requests_total", "route", "POST /limited", "status", "429"); n != 2 {
		t.Errorf("429s counted: %v, want 2", n)
	}
}

func TestCORS(t *testing.T) {
	b := startPool(t, standardFns()...)
	_, url := startGateway(t, resolverFor(b.addr), []gateway.Route{
		{Method: "POST", Path: "/items/{id}", Project: "test", Function: "cat", CORSOrigins: []string{"https://app.example"}},
		{Method: "POST", Path: "/private", Project: "test", Function: "cat"},
	})
	preflight := func(path, origin, method string) answer {
		return call(t, "OPTIONS", url+path, nil, map[string]string{
			"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": "content-type, x-api-key",
		})
	}
	a := preflight("/items/7", "https://app.example", "POST")
	if a.code != 204 || a.header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		a.header.Get("Access-Control-Allow-Methods") != "POST" || !strings.Contains(a.header.Get("Access-Control-Allow-Headers"), "x-api-key") {
		t.Errorf("allowed preflight: %d %v", a.code, a.header)
	}
	if a := preflight("/items/7", "https://evil.example", "POST"); a.code != 403 || a.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from another origin: %d %v", a.code, a.header)
	}
	if a := preflight("/private", "https://app.example", "POST"); a.code != 403 {
		t.Errorf("preflight of a route with no origins: %d", a.code)
	}
	if a := preflight("/items/7", "https://app.example", "DELETE"); a.code != 404 {
		t.Errorf("preflight of a method no route serves: %d", a.code)
	}
	a = post(t, url+"/items/7", "x", map[string]string{"Origin": "https://app.example"})
	if a.code != 200 || a.header.Get("Access-Control-Allow-Origin") != "https://app.example" || !strings.Contains(a.header.Get("Access-Control-Expose-Headers"), "X-Request-Id") {
		t.Errorf("request from an allowed origin: %d %v", a.code, a.header)
	}
	if a := post(t, url+"/items/7", "x", map[string]string{"Origin": "https://evil.example"}); a.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("request from another origin got CORS headers: %v", a.header)
	}
}

// TestOwnEndpoints: routes, health, metrics and the access log.
func TestOwnEndpoints(t *testing.T) {
	b := startPool(t, standardFns()...)
	logs := &testlog.Buffer{}
	g, url := startGateway(t, resolverFor(b.addr), []gateway.Route{
		{Method: "POST", Path: "/cat", Project: "test", Function: "cat", Timeout: 2 * time.Second, Revision: "r7"},
		{Method: "POST", Path: "/shout", Project: "test", Pipeline: []string{"cat", "tr"}},
	}, gateway.WithLogger(hclog.New(&hclog.LoggerOptions{Output: logs, JSONFormat: true})))
	post(t, url+"/cat", "hello", map[string]string{"X-Request-Id": "log-me"})

	a := call(t, "GET", url+"/v1/routes", nil, nil)
	var rs struct {
		Routes []struct {
			Pattern, Function, Revision, Timeout string
			Pipeline                             []string
		}
	}
	if err := json.Unmarshal([]byte(a.body), &rs); err != nil || len(rs.Routes) != 2 {
		t.Fatalf("GET /v1/routes: %d %s (%v)", a.code, a.body, err)
	}
	if r := rs.Routes[0]; r.Pattern != "POST /cat" || r.Function != "cat" || r.Revision != "r7" || r.Timeout != "2s" {
		t.Errorf("first route: %+v", r)
	}
	if r := rs.Routes[1]; len(r.Pipeline) != 2 || r.Pipeline[1] != "tr" {
		t.Errorf("second route: %+v", r)
	}
	if a := call(t, "GET", url+"/v1/health", nil, nil); a.code != 200 || !strings.Contains(a.body, `"ok"`) {
		t.Errorf("health: %d %s", a.code, a.body)
	}
	a = call(t, "GET", url+"/metrics", nil, nil)
	if !strings.Contains(a.body, `butter_gateway_requests_total{route="POST /cat",status="200"} 1`) ||
		!strings.Contains(a.body, `butter_gateway_request_duration_seconds_count{route="POST /cat"} 1`) {
		t.Errorf("metrics lack the call:\n%s", a.body)
	}
	if n := metricValue(t, g, "butter_gateway_requests_total", "route", "POST /cat"); n != 1 {
		t.Errorf("requests of POST /cat: %v", n)
	}
	var entry map[string]any
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `"log-me"`) {
			_ = json.Unmarshal([]byte(line), &entry)
		}
	}
	for k, want := range map[string]any{"@message": "request", "method": "POST", "path": "/cat", "route": "POST /cat",
		"function": "cat", "status": float64(200), "bytes": float64(5), "request_id": "log-me"} {
		if entry[k] != want {
			t.Errorf("access log %s = %v, want %v (entry %v)", k, entry[k], want, entry)
		}
	}
	if _, ok := entry["duration"]; !ok {
		t.Errorf("access log lacks the duration: %v", entry)
	}
}

func TestSetRoutesChecks(t *testing.T) {
	g := gateway.New(gateway.NewStaticResolver())
	defer g.Close()
	ok := gateway.Route{Method: "POST", Path: "/ok", Project: "p", Function: "f"}
	if err := g.SetRoutes([]gateway.Route{ok}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		routes []gateway.Route
		says   []string
	}{
		{"everything missing", []gateway.Route{{Method: "post", Path: "x"}},
			[]string{"upper-case HTTP method", "starts with /", "no project", "no function and no pipeline"}},
		{"function and pipeline", []gateway.Route{{Method: "POST", Path: "/a", Project: "p", Function: "f", Pipeline: []string{"g"}}}, []string{"set one"}},
		{"bad step", []gateway.Route{{Method: "POST", Path: "/a", Project: "p", Pipeline: []string{"sed oops"}}}, []string{"not name=value"}},
		{"jwt without its settings", []gateway.Route{{Method: "POST", Path: "/a", Project: "p", Function: "f", Auth: "jwt"}}, []string{"jwks_url", "audience"}},
		{"api_key without keys", []gateway.Route{{Method: "POST", Path: "/a", Project: "p", Function: "f", Auth: "api_key"}}, []string{"WithKeys"}},
		{"queued without a broker", []gateway.Route{{Method: "POST", Path: "/a", Project: "p", Function: "f", Mode: "queued"}}, []string{"WithRequester"}},
		{"unknown mode and auth", []gateway.Route{{Method: "POST", Path: "/a", Project: "p", Function: "f", Mode: "fast", Auth: "magic"}}, []string{"direct, queued or async", "none, api_key or jwt"}},
		{"bad origin", []gateway.Route{{Method: "POST", Path: "/a", Project: "p", Function: "f", CORSOrigins: []string{"app.example"}}}, []string{"scheme://host"}},
		{"duplicate", []gateway.Route{ok, ok}, []string{"listed twice"}},
		{"same shape", []gateway.Route{{Method: "POST", Path: "/a/{x}", Project: "p", Function: "f"}, {Method: "POST", Path: "/a/{y}", Project: "p", Function: "f"}}, []string{"conflicts"}},
		{"the gateway's own endpoint", []gateway.Route{{Method: "GET", Path: "/v1/health", Project: "p", Function: "f"}}, []string{"conflicts"}},
	} {
		err := g.SetRoutes(c.routes)
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		for _, s := range c.says {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: %v\ndoes not say %q", c.name, err, s)
			}
		}
	}
	// A refused table leaves the current one in place.
	if r := g.Routes(); len(r) != 1 || r[0].Path != "/ok" {
		t.Errorf("after refused tables: %+v", r)
	}
	// A more specific route beside the gateway's own is fine.
	if err := g.SetRoutes([]gateway.Route{{Method: "GET", Path: "/v1/{thing}", Project: "p", Function: "f"}}); err != nil {
		t.Errorf("GET /v1/{thing}: %v", err)
	}
}

// TestProjectQuota: a project's requests-per-second quota is shared by
// all its routes; over it a route answers 429 QuotaExceeded with
// Retry-After, and another project is not affected. At 0.001 requests per
// second the burst of one is spent by the first call and nothing refills
// within the test, so no clock is involved.
func TestProjectQuota(t *testing.T) {
	b := startPool(t, standardFns()...)
	routes := []gateway.Route{
		{Method: "POST", Path: "/a", Project: "shop", Function: "cat"},
		{Method: "POST", Path: "/b", Project: "shop", Function: "cat"},
		{Method: "POST", Path: "/other", Project: "bank", Function: "cat"},
	}
	res := gateway.NewStaticResolver()
	res.Set("shop", "default", b.addr)
	res.Set("bank", "default", b.addr)
	g, url := startGateway(t, res, routes)
	g.SetProjectRates(map[string]float64{"shop": 0.001})
	if a := post(t, url+"/a", "x", nil); a.code != 200 {
		t.Fatalf("first call: %d", a.code)
	}
	for _, path := range []string{"/a", "/b"} {
		a := post(t, url+path, "x", nil)
		if a.code != 429 || a.header.Get("Retry-After") == "" || a.err.Type != "QuotaExceeded" || !strings.Contains(a.err.Error, "project shop takes at most 0.001 requests per second") {
			t.Errorf("%s over the quota: %d %v %+v", path, a.code, a.header, a.err)
		}
	}
	for range 3 {
		if a := post(t, url+"/other", "x", nil); a.code != 200 {
			t.Errorf("another project: %d", a.code)
		}
	}
	// The same rate keeps the spent bucket; no quota lifts the limit.
	g.SetProjectRates(map[string]float64{"shop": 0.001})
	if a := post(t, url+"/a", "x", nil); a.code != 429 {
		t.Errorf("after setting the same rate: %d, want 429 still", a.code)
	}
	g.SetProjectRates(nil)
	if a := post(t, url+"/a", "x", nil); a.code != 200 {
		t.Errorf("with the quota removed: %d", a.code)
	}
}
