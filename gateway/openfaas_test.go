package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/gateway"
	"github.com/butterfn/butter/plugins/pool"
)

// faasPool is a real pool of project "test" whose invoke requests'
// headers are kept, served on 127.0.0.1.
type faasPool struct {
	addr string
	mu   sync.Mutex
	seen map[string]http.Header // function → the last call's headers
}

func (p *faasPool) last(function string) http.Header {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[function]
}

func startFaaSPool(t *testing.T, kafka *broker.Dev, fns ...pool.FunctionConfig) *faasPool {
	t.Helper()
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
	if kafka != nil {
		if err := p.StartStreams(ctx, kafka.Config()); err != nil {
			t.Fatal(err)
		}
	}
	fp := &faasPool{seen: map[string]http.Header{}}
	h := p.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fn, ok := strings.CutPrefix(r.URL.Path, "/v1/invoke/"); ok {
			fp.mu.Lock()
			fp.seen[fn] = r.Header.Clone()
			fp.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	fp.addr = srv.Listener.Addr().String()
	return fp
}

// faasKeys holds a key of project test, one of project other, and one of
// test restricted to one route.
func faasKeys() *gateway.MemKeys {
	k := gateway.NewMemKeys()
	k.Put(gateway.HashKey("test-key"), "test")
	k.Put(gateway.HashKey("other-key"), "other")
	k.Put(gateway.HashKey("narrow-key"), "test", "POST /cat")
	return k
}

// testFunctions lists project test's functions for WithFunctions.
func testFunctions(names ...string) gateway.Option {
	var fns []gateway.FunctionInfo
	for _, n := range names {
		fns = append(fns, gateway.FunctionInfo{Project: "test", Name: n, Revision: "r1", Runtime: "exec"})
	}
	return gateway.WithFunctions(func() []gateway.FunctionInfo { return fns })
}

func basic(key string) map[string]string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth("admin", key)
	return map[string]string{"Authorization": req.Header.Get("Authorization")}
}

// TestOpenFaaSOffByDefault: without WithOpenFaaS, OpenFaaS's paths are
// no endpoints of the gateway (404), and routes may take them.
func TestOpenFaaSOffByDefault(t *testing.T) {
	p := startFaaSPool(t, nil, fn("cat", "cat"))
	g, url := startGateway(t, resolverFor(p.addr), []gateway.Route{{Method: "POST", Path: "/cat", Project: "test", Function: "cat"}},
		gateway.WithKeys(faasKeys()))
	for _, c := range []struct{ method, path string }{
		{"POST", "/function/cat.test"}, {"GET", "/function/cat.test/x"}, {"POST", "/async-function/cat.test"}, {"GET", "/system/functions"},
	} {
		a := call(t, c.method, url+c.path, strings.NewReader("hi"), basic("test-key"))
		if a.code != http.StatusNotFound || a.err.Type != "NotFound" {
			t.Errorf("%s %s with OpenFaaS off: %d %q, want 404 NotFound", c.method, c.path, a.code, a.body)
		}
	}
	if p.last("cat") != nil {
		t.Error("a call reached the pool through an OpenFaaS path while OpenFaaS is off")
	}
	if err := g.SetRoutes([]gateway.Route{{Method: "POST", Path: "/function/cat", Project: "test", Function: "cat"}}); err != nil {
		t.Errorf("with OpenFaaS off, a route on /function/ is an ordinary route: %v", err)
	}
}

// TestOpenFaaSSync: /function/{name}[/path] calls the function through a
// real pool, any method, with the path after the name, the query and
// the method as the function's request; names are <function>.<project>
// or bare with a default project; auth is an API key of the function's
// project, by basic auth (any user) or as usual, and nothing else.
func TestOpenFaaSSync(t *testing.T) {
	p := startFaaSPool(t, nil, fn("cat", "cat"), fn("fail", "sh", "-c", "echo broken >&2; exit 3"))
	_, url := startGateway(t, resolverFor(p.addr), []gateway.Route{{Method: "POST", Path: "/cat", Project: "test", Function: "cat"}},
		gateway.WithKeys(faasKeys()), gateway.WithOpenFaaS(gateway.OpenFaaS{DefaultProject: "test"}), testFunctions("cat", "fail"))

	a := call(t, "PUT", url+"/function/cat.test/orders/42?x=1&y=two%20words", strings.NewReader("hello"), basic("test-key"))
	if a.code != http.StatusOK || a.body != "hello" {
		t.Fatalf("PUT /function/cat.test/orders/42: %d %q, want 200 hello", a.code, a.body)
	}
	if a.header.Get("X-Call-Id") == "" || a.header.Get("X-Call-Id") != a.header.Get(gateway.HeaderRequestID) {
		t.Errorf("X-Call-Id %q, want the request id %q", a.header.Get("X-Call-Id"), a.header.Get(gateway.HeaderRequestID))
	}
	if _, err := strconv.ParseInt(a.header.Get("X-Start-Time"), 10, 64); err != nil {
		t.Errorf("X-Start-Time %q: %v", a.header.Get("X-Start-Time"), err)
	}
	h := p.last("cat")
	for k, want := range map[string]string{
		"Ce-Httpmethod": "PUT", "Ce-Httppath": "/orders/42", "Ce-Httpquery": "x=1&y=two%20words",
		"Butter-Param-X": "1", "Butter-Param-Y": "two words", "Authorization": "", "Butter-Param-Name": "",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("the pool got %s %q, want %q", k, got, want)
		}
	}

	// GET, no path, a bare name (the default project), a bearer key.
	a = call(t, "GET", url+"/function/cat", nil, map[string]string{"Authorization": "Bearer test-key"})
	if a.code != http.StatusOK || a.body != "" {
		t.Errorf("GET /function/cat: %d %q", a.code, a.body)
	}
	if h := p.last("cat"); h.Get("Ce-Httpmethod") != "GET" || h.Get("Ce-Httppath") != "/" {
		t.Errorf("GET /function/cat reached the function as %s %s", h.Get("Ce-Httpmethod"), h.Get("Ce-Httppath"))
	}
	// The function's failure keeps its typed status.
	if a := post(t, url+"/function/fail.test", "x", basic("test-key")); a.code != http.StatusInternalServerError || a.err.Type != "Exception" {
		t.Errorf("a failing function: %d %q", a.code, a.body)
	}

	for _, c := range []struct {
		what, path string
		hdr        map[string]string
		code       int
		typ        string
	}{
		{"no credentials", "/function/cat.test", nil, 401, "Unauthorized"},
		{"an unknown key", "/function/cat.test", basic("nope"), 401, "Unauthorized"},
		{"another project's key", "/function/cat.test", basic("other-key"), 403, "Forbidden"},
		{"a key restricted to routes", "/function/cat.test", basic("narrow-key"), 403, "Forbidden"},
		{"an unknown function", "/function/dog.test", basic("test-key"), 404, "NotFound"},
		{"an unknown project", "/function/cat.nowhere", basic("test-key"), 403, "Forbidden"},
	} {
		a := post(t, url+c.path, "x", c.hdr)
		if a.code != c.code || a.err.Type != c.typ {
			t.Errorf("%s: %d %q, want %d %s", c.what, a.code, a.body, c.code, c.typ)
		}
		if c.code == 401 && !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("%s: WWW-Authenticate %q, want Basic", c.what, a.header.Get("WWW-Authenticate"))
		}
	}
}

type received struct {
	header http.Header
	body   string
}

func startCallbacks(t *testing.T) (string, chan received) {
	ch := make(chan received, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost {
			t.Errorf("callback with %s, want POST", r.Method)
		}
		ch <- received{header: r.Header.Clone(), body: string(b)}
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/done", ch
}

func waitCallback(t *testing.T, ch chan received) received {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("no callback within 30s")
	}
	return received{}
}

// TestOpenFaaSAsync: /async-function/{name} answers 202 with X-Call-Id,
// runs the function through a real pool, and POSTs the result to
// X-Callback-Url with X-Call-Id, X-Function-Status, X-Function-Name and
// X-Duration-Seconds: in direct mode for a function without a queued
// route, through Kafka (the embedded broker, a real client) for one
// whose pool consumes its request topic; a failure is called back with
// its status. The result is also readable at /v1/invocations/{id}.
func TestOpenFaaSAsync(t *testing.T) {
	dev, err := broker.StartDev(0, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dev.Close)
	p := startFaaSPool(t, dev, fn("tr", "tr", "a-z", "A-Z"), fn("fail", "sh", "-c", "echo broken >&2; exit 3"), requestFn("meta", "cat"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := broker.NewRequester(ctx, dev.Config(), "test.gateway.replies")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(req.Close)
	_, url := startGateway(t, resolverFor(p.addr), []gateway.Route{
		{Method: "POST", Path: "/meta", Project: "test", Function: "meta", Mode: "queued", Timeout: 20 * time.Second},
	}, gateway.WithKeys(faasKeys()), gateway.WithRequester(req), gateway.WithOpenFaaS(gateway.OpenFaaS{AsyncTimeout: 20 * time.Second}), testFunctions("tr", "fail", "meta"))
	cb, got := startCallbacks(t)

	check := func(what, name string, a answer, status, body string) received {
		t.Helper()
		if a.code != http.StatusAccepted || a.header.Get("X-Call-Id") == "" {
			t.Fatalf("%s: %d %q, X-Call-Id %q, want 202 and a call id", what, a.code, a.body, a.header.Get("X-Call-Id"))
		}
		r := waitCallback(t, got)
		for k, want := range map[string]string{"X-Call-Id": a.header.Get("X-Call-Id"), "X-Function-Status": status, "X-Function-Name": name} {
			if got := r.header.Get(k); got != want {
				t.Errorf("%s: the callback's %s is %q, want %q", what, k, got, want)
			}
		}
		if d, err := strconv.ParseFloat(r.header.Get("X-Duration-Seconds"), 64); err != nil || d <= 0 {
			t.Errorf("%s: X-Duration-Seconds %q", what, r.header.Get("X-Duration-Seconds"))
		}
		if !strings.Contains(r.body, body) {
			t.Errorf("%s: the callback's body %q, want it to hold %q", what, r.body, body)
		}
		return r
	}

	// Direct: tr has no queued route.
	a := call(t, "POST", url+"/async-function/tr.test/sub?q=1", strings.NewReader("hello"), map[string]string{
		"Authorization": basic("test-key")["Authorization"], "X-Callback-Url": cb})
	check("direct", "tr.test", a, "200", "HELLO")
	if h := p.last("tr"); h.Get("Ce-Httppath") != "/sub" || h.Get("Ce-Httpquery") != "q=1" || h.Get("Ce-Httpmethod") != "POST" {
		t.Errorf("the async call reached the function as %s %s ? %s", h.Get("Ce-Httpmethod"), h.Get("Ce-Httppath"), h.Get("Ce-Httpquery"))
	}
	if r := call(t, "GET", url+"/v1/invocations/"+a.header.Get("X-Call-Id"), nil, nil); r.code != http.StatusOK || r.body != "HELLO" {
		t.Errorf("the invocation's result: %d %q", r.code, r.body)
	}

	// Through Kafka: meta consumes its request topic (a queued route).
	a = call(t, "POST", url+"/async-function/meta.test", strings.NewReader("via kafka"), map[string]string{
		"X-API-Key": "test-key", "X-Callback-Url": cb})
	check("kafka", "meta.test", a, "200", "via kafka")
	if p.last("meta") != nil {
		t.Error("meta was called on its invoke endpoint: the async call should have gone through Kafka")
	}

	// A failure is called back with its status and the error document.
	a = call(t, "POST", url+"/async-function/fail.test", strings.NewReader("x"), map[string]string{
		"X-API-Key": "test-key", "X-Callback-Url": cb})
	if r := check("failure", "fail.test", a, "500", `"type":"Exception"`); r.header.Get("Content-Type") != "application/json" {
		t.Errorf("a failure's callback has Content-Type %q, want the error document's", r.header.Get("Content-Type"))
	}

	// Refused before anything runs.
	if a := call(t, "POST", url+"/async-function/tr.test", strings.NewReader("x"), map[string]string{"X-Callback-Url": cb}); a.code != 401 {
		t.Errorf("no key: %d %q", a.code, a.body)
	}
	if a := call(t, "POST", url+"/async-function/tr.test", strings.NewReader("x"), map[string]string{"X-API-Key": "test-key", "X-Callback-Url": "file:///etc/passwd"}); a.code != 400 {
		t.Errorf("a callback that is no http URL: %d %q", a.code, a.body)
	}
	if a := call(t, "GET", url+"/async-function/tr.test", nil, map[string]string{"X-API-Key": "test-key"}); a.code != http.StatusMethodNotAllowed && a.code != http.StatusNotFound {
		t.Errorf("GET /async-function (OpenFaaS takes POST only): %d %q", a.code, a.body)
	}
	select {
	case r := <-got:
		t.Errorf("a refused call was called back: %+v", r)
	default:
	}
}

// TestOpenFaaSList: GET /system/functions lists the key's project's
// functions in OpenFaaS's FunctionStatus shape, with the calls this
// gateway made to each and the endpoints of its pool as replicas.
func TestOpenFaaSList(t *testing.T) {
	p := startFaaSPool(t, nil, fn("cat", "cat"), fn("wc", "wc", "-c"))
	res := resolverFor(p.addr)
	fns := []gateway.FunctionInfo{
		{Project: "test", Name: "cat", Revision: "r1", Runtime: "exec", Process: "cat", Secrets: []string{"TOKEN"}},
		{Project: "test", Name: "wc", Revision: "r1", Runtime: "exec", Process: "wc -c", Pool: "other"},
		{Project: "other", Name: "secret-fn", Revision: "o1", Runtime: "node"},
	}
	_, url := startGateway(t, res, []gateway.Route{{Method: "POST", Path: "/cat", Project: "test", Function: "cat"}},
		gateway.WithKeys(faasKeys()), gateway.WithOpenFaaS(gateway.OpenFaaS{}),
		gateway.WithFunctions(func() []gateway.FunctionInfo { return fns }))
	post(t, url+"/cat", "a", nil)
	post(t, url+"/function/cat.test", "b", basic("test-key"))

	a := call(t, "GET", url+"/system/functions", nil, basic("test-key"))
	if a.code != http.StatusOK || !strings.HasPrefix(a.header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /system/functions: %d %q", a.code, a.body)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(a.body), &list); err != nil {
		t.Fatalf("%v: %s", err, a.body)
	}
	if len(list) != 2 {
		t.Fatalf("listed %d functions, want test's 2 (not other's): %s", len(list), a.body)
	}
	cat, wc := list[0], list[1]
	want := map[string]any{
		"name": "cat", "namespace": "test", "image": "test/cat:r1", "envProcess": "cat",
		"invocationCount": 2.0, "replicas": 1.0, "availableReplicas": 1.0,
	}
	for k, v := range want {
		if cat[k] != v {
			t.Errorf("cat's %s = %v, want %v (%s)", k, cat[k], v, a.body)
		}
	}
	if l, _ := cat["labels"].(map[string]any); l["butter.runtime"] != "exec" || l["butter.pool"] != "default" {
		t.Errorf("cat's labels %v", cat["labels"])
	}
	if an, _ := cat["annotations"].(map[string]any); an["butter.revision"] != "r1" {
		t.Errorf("cat's annotations %v", cat["annotations"])
	}
	if s, _ := cat["secrets"].([]any); len(s) != 1 || s[0] != "TOKEN" {
		t.Errorf("cat's secrets %v", cat["secrets"])
	}
	if wc["name"] != "wc" || wc["invocationCount"] != 0.0 || wc["replicas"] != 0.0 || wc["availableReplicas"] != 0.0 {
		t.Errorf("wc (pool other, no endpoint, never called): %v", wc)
	}

	if a := call(t, "GET", url+"/system/functions", nil, nil); a.code != 401 {
		t.Errorf("no key: %d %q", a.code, a.body)
	}
	if a := call(t, "GET", url+"/system/functions", nil, basic("wrong")); a.code != 401 {
		t.Errorf("a wrong key: %d %q", a.code, a.body)
	}
	a = call(t, "GET", url+"/system/functions?namespace=test", nil, basic("other-key"))
	if a.code != 200 || a.body != "[]\n" {
		t.Errorf("another project's key lists only its own: %d %q", a.code, a.body)
	}
}

// TestOpenFaaSRoutes: with OpenFaaS on, a route on its paths, or one the
// router cannot tell apart from them, is refused with what to change;
// other routes are untouched.
func TestOpenFaaSRoutes(t *testing.T) {
	g := gateway.New(gateway.NewStaticResolver(), gateway.WithOpenFaaS(gateway.OpenFaaS{}))
	t.Cleanup(g.Close)
	for _, c := range []struct{ route, want string }{
		{"POST /function/cat", "path of the OpenFaaS API"},
		{"GET /system/functions", "path of the OpenFaaS API"},
		{"POST /async-function/{name...}", "path of the OpenFaaS API"},
		{"GET /{a}/{b}", "conflicts with another route or with the gateway's own endpoints"},
	} {
		m, p, _ := strings.Cut(c.route, " ")
		err := g.SetRoutes([]gateway.Route{{Method: "POST", Path: "/ok", Project: "good", Function: "f"}, {Method: m, Path: p, Project: "bad", Function: "f"}})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), `"bad"`) {
			t.Errorf("route %s: %v, want an error naming project bad and %q", c.route, err, c.want)
		}
	}
	if err := g.SetRoutes([]gateway.Route{{Method: "POST", Path: "/functions/cat", Project: "good", Function: "f"}}); err != nil {
		t.Errorf("a path beside OpenFaaS's: %v", err)
	}
}
