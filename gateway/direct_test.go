package gateway_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/butterfn/butter/gateway"
)

func TestDirectRouteToCat(t *testing.T) {
	b := startPool(t, standardFns()...)
	_, url := startGateway(t, resolverFor(b.addr), []gateway.Route{
		{Method: "POST", Path: "/echo/{name}", Project: "test", Function: "cat"},
		{Method: "GET", Path: "/count", Project: "test", Function: "wc"},
	})
	a := post(t, url+"/echo/x", "hello butter", map[string]string{"X-Request-Id": "req-1"})
	if a.code != 200 || a.body != "hello butter" {
		t.Fatalf("POST /echo/x: %d %q, want 200 %q", a.code, a.body, "hello butter")
	}
	if got := a.header.Get("X-Request-Id"); got != "req-1" {
		t.Errorf("X-Request-Id %q, want the client's req-1", got)
	}
	if a.trailer.Get("Butter-Error") != "" {
		t.Errorf("Butter-Error trailer %q on a success", a.trailer.Get("Butter-Error"))
	}
	// A request id is made when the client sends none (or a bad one).
	a = post(t, url+"/echo/x", "", map[string]string{"X-Request-Id": "bad id\twith blanks"})
	if id := a.header.Get("X-Request-Id"); len(id) != 32 {
		t.Errorf("generated X-Request-Id %q, want 32 hex digits", id)
	}
	// GET with no body reaches wc with an empty input.
	a = call(t, "GET", url+"/count", nil, nil)
	if a.code != 200 || strings.TrimSpace(a.body) != "0" {
		t.Errorf("GET /count: %d %q", a.code, a.body)
	}
	// Unknown paths and methods answer JSON errors that say what to do.
	a = post(t, url+"/nowhere", "", nil)
	if a.code != 404 || !strings.Contains(a.err.Error, "GET /v1/routes") || a.err.RequestID == "" {
		t.Errorf("unknown path: %d %+v", a.code, a.err)
	}
	a = call(t, "DELETE", url+"/echo/x", nil, nil)
	if a.code != 405 || a.header.Get("Allow") != "POST" {
		t.Errorf("wrong method: %d Allow=%q %+v", a.code, a.header.Get("Allow"), a.err)
	}
}

// TestAnyMethodRoute: a route whose method is ANY answers every method on
// its path, and a route of one method on the same path still wins for it.
func TestAnyMethodRoute(t *testing.T) {
	b := startPool(t, standardFns()...)
	_, url := startGateway(t, resolverFor(b.addr), []gateway.Route{
		{Method: "ANY", Path: "/echo/{name}", Project: "test", Function: "cat"},
		{Method: "GET", Path: "/echo/count", Project: "test", Function: "wc"},
	})
	for _, m := range []string{"POST", "PUT", "PATCH", "DELETE", "GET"} {
		a := call(t, m, url+"/echo/x", strings.NewReader("any "+m), nil)
		if a.code != 200 || a.body != "any "+m {
			t.Errorf("%s /echo/x on an ANY route: %d %q %+v, want 200 %q", m, a.code, a.body, a.err, "any "+m)
		}
	}
	if a := call(t, "GET", url+"/echo/count", nil, nil); a.code != 200 || strings.TrimSpace(a.body) != "0" {
		t.Errorf("GET /echo/count (its own route): %d %q", a.code, a.body)
	}
	if a := post(t, url+"/echo/count", "through ANY", nil); a.code != 200 || a.body != "through ANY" {
		t.Errorf("POST /echo/count (the ANY route): %d %q", a.code, a.body)
	}
}

// TestFunctionErrorsKeepTheirStatus: a pool's failure status reaches the
// client unchanged, with the gateway's JSON error body.
func TestFunctionErrorsKeepTheirStatus(t *testing.T) {
	b := startPool(t, standardFns()...)
	_, url := startGateway(t, resolverFor(b.addr), []gateway.Route{
		{Method: "POST", Path: "/fail", Project: "test", Function: "fail"},
		{Method: "POST", Path: "/missing", Project: "test", Function: "nosuch"},
		{Method: "POST", Path: "/elsewhere", Project: "test", Function: "cat", Pool: "gpu"},
	})
	a := post(t, url+"/fail", "x", nil)
	if a.code != 500 || a.err.Type != "Exception" || !strings.Contains(a.err.Error, "broken") {
		t.Errorf("failing function: %d %+v, want 500 Exception with its stderr", a.code, a.err)
	}
	a = post(t, url+"/missing", "x", nil)
	if a.code != 404 || a.err.Type != "NotFound" {
		t.Errorf("function the pool lacks: %d %+v", a.code, a.err)
	}
	a = post(t, url+"/elsewhere", "x", nil)
	if a.code != 503 || !strings.Contains(a.err.Error, `pool "gpu"`) {
		t.Errorf("pool with no endpoint: %d %+v", a.code, a.err)
	}
}

// TestHeadersReachThePool checks the request the pool gets, on a
// recording server standing in for a pool.
func TestHeadersReachThePool(t *testing.T) {
	var mu sync.Mutex
	var seen []*http.Request
	recorded := func() []*http.Request {
		mu.Lock()
		defer mu.Unlock()
		out := seen
		seen = nil
		return out
	}
	rec := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Clone(r.Context()))
		mu.Unlock()
		w.Header().Set("Trailer", "Butter-Error")
		_, _ = io.Copy(w, r.Body)
	}))
	_, url := startGateway(t, resolverFor(rec), []gateway.Route{
		{Method: "POST", Path: "/d/{device}/r/{rest...}", Project: "test", Pipeline: []string{`sed e="s/a b/c/"`, "tr"}, Timeout: 5 * time.Second},
	})
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	a := post(t, url+"/d/d1/r/x/y?room=kitchen&device=ignored", "abc", map[string]string{
		"traceparent": tp, "Authorization": "Bearer secret", "Butter-Option-X": "injected",
		"Content-Type": "text/plain", "Ce-Type": "reading",
	})
	if a.code != 200 || a.body != "abc" {
		t.Fatalf("%d %q", a.code, a.body)
	}
	got := recorded()
	if len(got) != 2 {
		t.Fatalf("%d calls reached the pool, want 2 (one per step)", len(got))
	}
	first, second := got[0], got[1]
	for _, c := range []struct{ r *http.Request }{{first}, {second}} {
		r := c.r
		checks := map[string]string{
			"Traceparent": tp, "X-Request-Id": a.header.Get("X-Request-Id"),
			"Butter-Param-Device": "d1", "Butter-Param-Rest": "x/y", "Butter-Param-Room": "kitchen",
			"Ce-Type": "reading", "Authorization": "", "Butter-Option-X": "",
		}
		for k, want := range checks {
			if g := r.Header.Get(k); g != want {
				t.Errorf("%s: header %s = %q, want %q", r.URL.Path, k, g, want)
			}
		}
		if d, err := time.ParseDuration(r.Header.Get("Butter-Timeout")); err != nil || d <= 0 || d > 5*time.Second {
			t.Errorf("%s: Butter-Timeout %q, want the time left of the route's 5s", r.URL.Path, r.Header.Get("Butter-Timeout"))
		}
	}
	if first.URL.Path != "/v1/invoke/sed" || first.Header.Get("Butter-Option-E") != "s/a b/c/" || first.Header.Get("Content-Type") != "text/plain" {
		t.Errorf("first step: %s, option e %q, content type %q", first.URL.Path, first.Header.Get("Butter-Option-E"), first.Header.Get("Content-Type"))
	}
	if second.URL.Path != "/v1/invoke/tr" || second.Header.Get("Butter-Option-E") != "" {
		t.Errorf("second step: %s, option e %q (options belong to their step)", second.URL.Path, second.Header.Get("Butter-Option-E"))
	}
	// With no traceparent, a new one is started.
	post(t, url+"/d/d1/r/x", "abc", nil)
	got = recorded()
	if tp := got[0].Header.Get("Traceparent"); len(tp) != 55 || !strings.HasPrefix(tp, "00-") || tp != got[1].Header.Get("Traceparent") {
		t.Errorf("generated traceparent %q, %q: want one W3C traceparent for the whole call", tp, got[1].Header.Get("Traceparent"))
	}
}

func TestPipelineCatToUpper(t *testing.T) {
	b := startPool(t, standardFns()...)
	_, url := startGateway(t, resolverFor(b.addr), []gateway.Route{
		{Method: "POST", Path: "/shout", Project: "test", Pipeline: []string{"cat", "tr"}},
		{Method: "POST", Path: "/love", Project: "test", Pipeline: []string{"sed e=s/hate/love/", "tr"}},
		{Method: "POST", Path: "/broken", Project: "test", Pipeline: []string{"cat", "fail", "tr"}},
	})
	if a := post(t, url+"/shout", "hello butter", nil); a.code != 200 || a.body != "HELLO BUTTER" {
		t.Errorf("cat | tr: %d %q", a.code, a.body)
	}
	if a := post(t, url+"/love", "i hate mondays", nil); a.code != 200 || a.body != "I LOVE MONDAYS" {
		t.Errorf("sed e=s/hate/love/ | tr: %d %q", a.code, a.body)
	}
	a := post(t, url+"/broken", "x", nil)
	if a.code != 500 || a.err.Type != "Exception" || !strings.Contains(a.err.Error, "step 2 of 3 (fail)") {
		t.Errorf("failing middle step: %d %+v, want 500 naming step 2", a.code, a.err)
	}
	// A large body streams through all the steps.
	big := strings.Repeat("butter ", 1<<20)
	if a := post(t, url+"/shout", big, nil); a.code != 200 || a.body != strings.ToUpper(big) {
		t.Errorf("7 MiB through cat | tr: %d, %d bytes", a.code, len(a.body))
	}
}

// TestAdHocPipeline: POST /v1/invoke/{project} with Butter-Pipeline, and
// the Go API.
func TestAdHocPipeline(t *testing.T) {
	b := startPool(t, standardFns()...)
	keys := gateway.NewMemKeys()
	keys.Put(gateway.HashKey("k-test"), "test")
	keys.Put(gateway.HashKey("k-other"), "other")
	g, url := startGateway(t, resolverFor(b.addr), nil, gateway.WithKeys(keys))
	auth := map[string]string{"X-API-Key": "k-test", "Butter-Pipeline": "sed e=s/a/o/ | tr"}
	if a := post(t, url+"/v1/invoke/test", "banana", auth); a.code != 200 || a.body != "BONANA" {
		t.Errorf("ad-hoc pipeline: %d %q %+v", a.code, a.body, a.err)
	}
	if a := post(t, url+"/v1/invoke/test?pipeline=cat+%7C+tr", "x", map[string]string{"X-API-Key": "k-test"}); a.code != 200 || a.body != "X" {
		t.Errorf("ad-hoc pipeline in the query: %d %q %+v", a.code, a.body, a.err)
	}
	if a := post(t, url+"/v1/invoke/test", "x", map[string]string{"Butter-Pipeline": "cat"}); a.code != 401 {
		t.Errorf("ad-hoc without a key: %d, want 401", a.code)
	}
	if a := post(t, url+"/v1/invoke/test", "x", map[string]string{"X-API-Key": "k-other", "Butter-Pipeline": "cat"}); a.code != 403 {
		t.Errorf("ad-hoc with another project's key: %d, want 403", a.code)
	}
	if a := post(t, url+"/v1/invoke/test", "x", map[string]string{"X-API-Key": "k-test", "Butter-Pipeline": "cat | | tr"}); a.code != 400 || !strings.Contains(a.err.Error, "empty step") {
		t.Errorf("bad pipeline: %d %+v", a.code, a.err)
	}

	var out strings.Builder
	if err := g.Invoke(t.Context(), "test", []string{"cat", "tr"}, strings.NewReader("go api"), &out); err != nil || out.String() != "GO API" {
		t.Errorf("Invoke: %q %v", out.String(), err)
	}
	err := g.Invoke(t.Context(), "test", []string{"cat", "fail"}, strings.NewReader("x"), io.Discard)
	ce, ok := err.(*gateway.CallError)
	if !ok || ce.Status != 500 || ce.Step != 1 {
		t.Errorf("Invoke of a failing step: %#v, want a CallError with status 500 at step 1", err)
	}
}

// TestLeastOutstanding: with a call held open on one pool, the next goes
// to the other; sequential calls spread over both.
func TestLeastOutstanding(t *testing.T) {
	b1, b2 := startPool(t, standardFns()...), startPool(t, standardFns()...)
	_, url := startGateway(t, resolverFor(b1.addr, b2.addr), []gateway.Route{
		{Method: "POST", Path: "/cat", Project: "test", Function: "cat"},
	})
	h1, h2 := newHeldBody(t), newHeldBody(t)
	a1 := h1.send(t, url+"/cat")
	eventually(t, 30*time.Second, "the first call is in flight", func() bool { return b1.inflight.Load()+b2.inflight.Load() == 1 })
	a2 := h2.send(t, url+"/cat")
	eventually(t, 30*time.Second, "one call in flight on each pool", func() bool { return b1.inflight.Load() == 1 && b2.inflight.Load() == 1 })
	h1.finish("one")
	h2.finish("two")
	if a := wait(t, a1); a.body != "one" {
		t.Errorf("first call: %d %q", a.code, a.body)
	}
	if a := wait(t, a2); a.body != "two" {
		t.Errorf("second call: %d %q", a.code, a.body)
	}
	c1, c2 := b1.calls.Load(), b2.calls.Load()
	for range 20 {
		post(t, url+"/cat", "x", nil)
	}
	d1, d2 := b1.calls.Load()-c1, b2.calls.Load()-c2
	if d1 < 5 || d2 < 5 {
		t.Errorf("20 sequential calls went %d and %d to the two pools, want them spread", d1, d2)
	}
}

// TestRetryOnlyOnDialFailure: an endpoint that refuses connections is
// passed over; an endpoint that took the request and then died is not
// retried, since the function may have run.
func TestRetryOnlyOnDialFailure(t *testing.T) {
	live := startPool(t, standardFns()...)
	dead := deadAddr(t)
	g, url := startGateway(t, resolverFor(dead, live.addr), []gateway.Route{
		{Method: "POST", Path: "/cat", Project: "test", Function: "cat"},
	}, gateway.WithEjectTime(0))
	for i := range 10 {
		if a := post(t, url+"/cat", "x", nil); a.code != 200 || a.body != "x" {
			t.Fatalf("call %d with one dead endpoint: %d %q %+v", i, a.code, a.body, a.err)
		}
	}
	if n := metricValue(t, g, "butter_gateway_dial_failures_total"); n < 1 {
		t.Errorf("dial failures %v: the dead endpoint was never tried", n)
	}

	// A backend that accepts, reads the request's headers and dies.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var accepted atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			br := bufio.NewReader(c)
			for {
				line, err := br.ReadString('\n')
				if err != nil || line == "\r\n" {
					break
				}
			}
			c.Close()
		}
	}()
	before := live.calls.Load()
	_, url2 := startGateway(t, resolverFor(l.Addr().String(), live.addr), []gateway.Route{
		{Method: "POST", Path: "/cat", Project: "test", Function: "cat"},
	})
	a := post(t, url2+"/cat", "x", nil)
	if a.code != 502 || a.err.Type != "InstanceFailed" || !strings.Contains(a.err.Error, "not retried") {
		t.Errorf("backend died after the request was sent: %d %+v, want 502 InstanceFailed", a.code, a.err)
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("the dying backend accepted %d connections, want 1", n)
	}
	if n := live.calls.Load() - before; n != 0 {
		t.Errorf("the call was retried on the live pool %d times, want 0", n)
	}
}

// TestRouteSwapInFlight: a request keeps the table it started with.
func TestRouteSwapInFlight(t *testing.T) {
	b := startPool(t, standardFns()...)
	g, url := startGateway(t, resolverFor(b.addr), []gateway.Route{
		{Method: "POST", Path: "/x", Project: "test", Function: "cat", Revision: "r1"},
	})
	h := newHeldBody(t)
	old := h.send(t, url+"/x")
	eventually(t, 30*time.Second, "the call is in flight", func() bool { return b.inflight.Load() == 1 })
	if err := g.SetRoutes([]gateway.Route{{Method: "POST", Path: "/x", Project: "test", Pipeline: []string{"cat", "tr"}, Revision: "r2"}}); err != nil {
		t.Fatal(err)
	}
	if a := post(t, url+"/x", "new", nil); a.body != "NEW" {
		t.Errorf("after the swap: %d %q, want the new route's NEW", a.code, a.body)
	}
	h.finish("old")
	if a := wait(t, old); a.code != 200 || a.body != "old" {
		t.Errorf("the call in flight: %d %q, want the old route's answer", a.code, a.body)
	}
	if r := g.Routes(); len(r) != 1 || r[0].Revision != "r2" {
		t.Errorf("Routes() = %+v", r)
	}
}

// TestRetryOnDialTimeout: an endpoint that never completes a connection
// (a lost machine drops the SYN instead of refusing it) is given up
// after the dial timeout and the call goes to another endpoint: nothing
// was sent. The endpoint here is a listener whose accept queue is full
// (backlog 0, never accepted), so the kernel drops further SYNs.
func TestRetryOnDialTimeout(t *testing.T) {
	live := startPool(t, standardFns()...)
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	black := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	// Fill the accept queue; the first connect that hangs proves it full.
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", black, 300*time.Millisecond)
		if err != nil {
			break
		}
		t.Cleanup(func() { c.Close() })
		if i > 16 {
			t.Skip("the kernel keeps accepting connections to a full backlog-0 listener: no dial timeout to test")
		}
	}
	g, url := startGateway(t, resolverFor(black, live.addr), []gateway.Route{
		{Method: "POST", Path: "/cat", Project: "test", Function: "cat"},
	}, gateway.WithEjectTime(0), gateway.WithDialTimeout(300*time.Millisecond))
	for i := range 6 {
		if a := post(t, url+"/cat", "x", nil); a.code != 200 || a.body != "x" {
			t.Fatalf("call %d with one endpoint that never connects: %d %q %+v", i, a.code, a.body, a.err)
		}
	}
	if n := metricValue(t, g, "butter_gateway_dial_failures_total"); n < 1 {
		t.Errorf("dial failures %v: the endpoint that never connects was never tried", n)
	}
}
