package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/gateway"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/sdk"
)

// callCounter counts the invoke calls a pool gets, by function.
type callCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *callCounter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fn, ok := strings.CutPrefix(r.URL.Path, "/v1/invoke/"); ok {
			c.mu.Lock()
			c.n[fn]++
			c.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
}

// take returns the counts since the last take.
func (c *callCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = map[string]int{}
	return n
}

// startMiddlewarePool starts a pool of project "test" with real Node and
// Python workers: auth (Node), audit (Python) and echo (Node, a handler)
// from testdata/middleware. It returns the pool's address and its call
// counts.
func startMiddlewarePool(t *testing.T) (string, *callCounter) {
	t.Helper()
	return startMiddlewarePoolOn(t, nil)
}

// startMiddlewarePoolOn is startMiddlewarePool whose echo also consumes
// its request topic on kafka, when set, for queued and async routes.
func startMiddlewarePoolOn(t *testing.T, kafka *broker.Config) (string, *callCounter) {
	t.Helper()
	dir, _ := filepath.Abs("testdata/middleware")
	mk := func(name, rt, sub, handler string) pool.FunctionConfig {
		return pool.FunctionConfig{Name: name, Runtime: rt, Bundle: filepath.Join(dir, sub), Handler: handler,
			Timeout: "1m", MaxInstances: 2, Concurrency: 4, Env: map[string]string{"PYTHONDONTWRITEBYTECODE": "1"}}
	}
	sdks, err := sdk.Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	echo := mk("echo", "node", "node", "auth.echo")
	if kafka != nil {
		echo.Streams = []pool.StreamTrigger{{Stream: names.RequestTopic("test", "echo"), Group: "butter.test.echo.requests", Offset: "first"}}
	}
	p, err := pool.New(&pool.Config{Project: "test", Pool: "default", Functions: []pool.FunctionConfig{
		mk("auth", "node", "node", "auth.handle"), echo, mk("audit", "python", "python", "audit.handle"),
	}}, nil, pool.WithSDKs(sdks))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		p.Close()
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if kafka != nil {
		if err := p.StartStreams(ctx, *kafka); err != nil {
			t.Fatal(err)
		}
	}
	c := &callCounter{n: map[string]int{}}
	addr := httptestServer(t, c.wrap(p.Handler()))
	return addr, c
}

// TestMiddleware runs a route's middleware, a Node function (auth) and a
// Python one (audit), around Node handlers on a real pool behind the real
// gateway: the request phase in order (a short-circuit with the
// middleware's own 401, a typed error, a header added to the request and
// seen by the later middleware and the handler), the response phase in
// reverse order (headers added to the answer, an answer replaced, a
// failure), and which functions ran.
func TestMiddleware(t *testing.T) {
	addr, calls := startMiddlewarePool(t)
	mw := []string{"auth", "audit"}
	_, url := startGateway(t, resolverFor(addr), []gateway.Route{
		{Method: "POST", Path: "/items", Project: "test", Pipeline: []string{"echo mode=create"}, Middleware: mw},
		{Method: "POST", Path: "/fail", Project: "test", Pipeline: []string{"echo mode=fail"}, Middleware: mw},
		{Method: "POST", Path: "/audit-first", Project: "test", Function: "echo", Middleware: []string{"audit", "auth"}},
		{Method: "POST", Path: "/bare", Project: "test", Function: "echo"},
	})
	token := map[string]string{"X-Token": "letmein"}
	expectCalls := func(what string, want map[string]int) {
		t.Helper()
		got := calls.take()
		for fn, n := range want {
			if got[fn] != n {
				t.Errorf("%s: %s called %d times, want %d (all calls: %v)", what, fn, got[fn], n, got)
			}
		}
	}

	// No token: auth answers 401 itself; neither audit nor the handler
	// runs, and no middleware saw the request before auth, so no
	// response phase runs.
	a := post(t, url+"/items", "pear", nil)
	if a.code != 401 || a.header.Get("WWW-Authenticate") != "Token" || a.header.Get("Content-Type") != "application/json" ||
		!strings.Contains(a.body, `"no valid token"`) || a.header.Get("X-Request-Id") == "" || a.header.Get("Butter-Status") != "" {
		t.Errorf("no token: %d %v %q, want auth's own 401", a.code, a.header, a.body)
	}
	if a.header.Get("X-Order") != "" || a.header.Get("X-Audit") != "" {
		t.Errorf("no token: a response phase ran: %v", a.header)
	}
	expectCalls("no token", map[string]int{"auth": 1, "audit": 0, "echo": 0})

	// A good token: auth adds X-User to the request, audit sees it and
	// adds its own; the handler sees both (and the client's X-User is
	// replaced); its 201 and Location reach the client with the
	// response phase's headers, audit's first, then auth's.
	a = post(t, url+"/items", "pear", map[string]string{"X-Token": "letmein", "X-User": "mallory"})
	var seen map[string]any
	_ = json.Unmarshal([]byte(a.body), &seen)
	if a.code != 201 || a.header.Get("Location") != "/items/1" || seen["user"] != "alice" || seen["saw"] != "alice" || seen["body"] != "pear" {
		t.Errorf("good token: %d Location %q body %q, want 201 /items/1 with user and saw alice", a.code, a.header.Get("Location"), a.body)
	}
	if a.header.Get("X-Audit") != "201" || a.header.Get("X-Order") != "audit,auth" || a.header.Get("X-Auth-Saw") != "201 201" {
		t.Errorf("good token: response phase headers %v, want X-Audit 201, X-Order audit,auth, X-Auth-Saw 201 201", a.header)
	}
	if a.header.Get("X-User") != "" || a.header.Get("X-Audit-Saw-User") != "" {
		t.Errorf("good token: request headers the middleware added reached the answer: %v", a.header)
	}
	expectCalls("good token", map[string]int{"auth": 2, "audit": 2, "echo": 1})

	// A typed error in a request phase is the answer, with its status.
	a = post(t, url+"/items", "pear", map[string]string{"X-Token": "boom"})
	if a.code != 422 || a.err.Type != "PreconditionFailed" || !strings.Contains(a.err.Error, "middleware auth (request phase)") || !strings.Contains(a.err.Error, "a token that explodes") {
		t.Errorf("a middleware's typed error: %d %+v, want 422 PreconditionFailed naming auth", a.code, a.err)
	}
	expectCalls("typed error", map[string]int{"auth": 1, "audit": 0, "echo": 0})

	// The handler fails: the response phase sees its 500 and adds
	// headers to the error; or audit replaces it with its own 503,
	// which auth's response phase then sees.
	a = post(t, url+"/fail", "x", token)
	if a.code != 500 || a.err.Type != "Exception" || a.header.Get("X-Audit") != "500" || a.header.Get("X-Order") != "audit,auth" {
		t.Errorf("failing handler: %d %+v %v, want 500 Exception with the response phase's headers", a.code, a.err, a.header)
	}
	req, _ := http.NewRequest("POST", url+"/fail", strings.NewReader("x"))
	req.Header.Set("X-Token", "letmein")
	req.Header.Set("X-Mask", "1")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || string(body) != "masked by audit" || resp.Header.Get("Content-Type") != "text/plain" ||
		resp.Header.Get("X-Auth-Saw") != "503 503" || resp.Header.Get("X-Order") != "auth" || resp.Header.Get("X-Request-Id") == "" {
		t.Errorf("masked failure: %d %q %v, want audit's 503 seen by auth", resp.StatusCode, body, resp.Header)
	}
	expectCalls("masked failure", map[string]int{"auth": 4, "audit": 4, "echo": 2})

	// A middleware failing in its response phase replaces the answer
	// with its failure, which the middleware before it see.
	a = post(t, url+"/items", "pear", map[string]string{"X-Token": "letmein", "X-Audit-Fail": "1"})
	if a.code != 500 || a.err.Type != "Exception" || !strings.Contains(a.err.Error, "middleware audit (response phase)") ||
		a.header.Get("X-Auth-Saw") != "500 500" || a.header.Get("Location") != "" {
		t.Errorf("failing response phase: %d %+v %v, want audit's failure seen by auth, without the handler's Location", a.code, a.err, a.header)
	}

	// audit before auth: audit's response phase sees auth's 401.
	a = post(t, url+"/audit-first", "x", nil)
	if a.code != 401 || a.header.Get("X-Audit") != "401" || a.header.Get("X-Order") != "audit" {
		t.Errorf("audit, then auth without a token: %d %v, want auth's 401 with audit's X-Audit 401", a.code, a.header)
	}
	calls.take()

	// A route without middleware calls the handler alone.
	a = post(t, url+"/bare", "x", token)
	if a.code != 200 || a.header.Get("X-Order") != "" || !strings.Contains(a.body, `"user":null`) {
		t.Errorf("no middleware: %d %q %v", a.code, a.body, a.header)
	}
	expectCalls("no middleware", map[string]int{"auth": 0, "audit": 0, "echo": 1})
}

// TestMiddlewareQueued: the middleware of queued and async routes run in
// the gateway around the call through Kafka (the embedded kfake broker,
// real client): a short-circuit sends nothing to Kafka, the headers the
// request phase adds travel in the request event (the handler, consuming
// its request topic, sees them), and the response phase sees the 200 of
// the reply, or the 202 of an async call.
func TestMiddlewareQueued(t *testing.T) {
	dev, err := broker.StartDev(0, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dev.Close)
	kafka := dev.Config()
	addr, calls := startMiddlewarePoolOn(t, &kafka)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := broker.NewRequester(ctx, kafka, "test.gateway.replies")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(req.Close)
	mw := []string{"auth", "audit"}
	_, url := startGateway(t, resolverFor(addr), []gateway.Route{
		{Method: "POST", Path: "/q", Project: "test", Function: "echo", Mode: "queued", Timeout: 20 * time.Second, Middleware: mw},
		{Method: "POST", Path: "/a", Project: "test", Function: "echo", Mode: "async", Timeout: 20 * time.Second, Middleware: mw},
	}, gateway.WithRequester(req))

	if a := post(t, url+"/q", "pear", nil); a.code != 401 || !strings.Contains(a.body, "no valid token") {
		t.Errorf("queued, no token: %d %q, want auth's 401", a.code, a.body)
	}
	if got := calls.take(); got["auth"] != 1 || got["audit"] != 0 {
		t.Errorf("queued, no token: calls %v, want auth once, audit never", got)
	}
	a := post(t, url+"/q", "pear", map[string]string{"X-Token": "letmein"})
	var seen map[string]any
	_ = json.Unmarshal([]byte(a.body), &seen)
	if a.code != 200 || seen["user"] != "alice" || seen["saw"] != "alice" || seen["body"] != "pear" ||
		a.header.Get("X-Audit") != "200" || a.header.Get("X-Order") != "audit,auth" {
		t.Errorf("queued, good token: %d %q %v, want the handler to see alice, X-Audit 200 and X-Order audit,auth", a.code, a.body, a.header)
	}
	if got := calls.take(); got["auth"] != 2 || got["audit"] != 2 || got["echo"] != 0 {
		t.Errorf("queued, good token: HTTP calls %v, want auth and audit twice and echo through Kafka only", got)
	}
	a = post(t, url+"/a", "pear", map[string]string{"X-Token": "letmein"})
	if a.code != 202 || a.header.Get("X-Audit") != "202" || a.header.Get("Location") == "" {
		t.Errorf("async, good token: %d %q %v, want 202 with X-Audit 202", a.code, a.body, a.header)
	}
}
