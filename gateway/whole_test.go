package gateway_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/butterfn/butter/gateway"
)

// TestWholeAndStreamedAnswers: a single step that the pool answered whole
// (Content-Length, no trailer) is answered whole; a large output and a
// pipeline's output stream with the Butter-Error trailer announced; a
// whole answer that breaks off is a clean 502.
//
// Whether a real pool answers a small output whole depends on the process
// finishing within the pool's hold window (plugins/pool tests both
// branches with the window under their control), so the whole answer here
// comes from a pool stand-in that always answers whole: what is tested is
// that the gateway keeps it whole.
func TestWholeAndStreamedAnswers(t *testing.T) {
	b := startPool(t, standardFns()...)
	_, url := startGateway(t, resolverFor(b.addr), []gateway.Route{
		{Method: "POST", Path: "/echo", Project: "test", Function: "cat"},
		{Method: "POST", Path: "/shout", Project: "test", Pipeline: []string{"cat", "tr"}},
	})
	whole := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	}))
	t.Cleanup(whole.Close)
	_, wurl := startGateway(t, resolverFor(whole.Listener.Addr().String()), []gateway.Route{
		{Method: "POST", Path: "/echo", Project: "test", Function: "cat"},
	})
	a := post(t, wurl+"/echo", "hello, butter", nil)
	if a.code != 200 || a.body != "hello, butter" {
		t.Fatalf("small answer: %d %q", a.code, a.body)
	}
	if a.header.Get("Content-Length") != "13" || len(a.trailer) != 0 || a.header.Get("X-Request-Id") == "" {
		t.Errorf("small answer: Content-Length %q, trailers %v, X-Request-Id %q: want whole, with its length, no trailer and the request id",
			a.header.Get("Content-Length"), a.trailer, a.header.Get("X-Request-Id"))
	}

	large := strings.Repeat("butter ", (256<<10)/7)
	a = post(t, url+"/echo", large, nil)
	if a.code != 200 || a.body != large {
		t.Fatalf("large answer: %d, %d bytes, want %d", a.code, len(a.body), len(large))
	}
	if _, announced := a.trailer["Butter-Error"]; !announced || a.trailer.Get("Butter-Error") != "" {
		t.Errorf("large answer: trailers %v: want streamed, announcing an empty Butter-Error", a.trailer)
	}

	a = post(t, url+"/shout", "hello", nil)
	if _, announced := a.trailer["Butter-Error"]; a.code != 200 || a.body != "HELLO" || !announced {
		t.Errorf("pipeline: %d %q, trailers %v: want streamed", a.code, a.body, a.trailer)
	}

	// A pool that promises 100 bytes and sends 5.
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Length", strconv.Itoa(100))
		_, _ = w.Write([]byte("short"))
	}))
	t.Cleanup(broken.Close)
	_, burl := startGateway(t, resolverFor(broken.Listener.Addr().String()), []gateway.Route{
		{Method: "POST", Path: "/echo", Project: "test", Function: "cat"},
	})
	a = post(t, burl+"/echo", "hello", nil)
	if a.code != 502 || a.err.Type != "InstanceFailed" || !strings.Contains(a.err.Error, "broke off") {
		t.Errorf("a whole answer that breaks off: %d %q %+v, want 502 InstanceFailed", a.code, a.body, a.err)
	}
}
