package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/butterfn/butter/gateway"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/hashicorp/go-hclog"
)

// These tests run real pools (package pool, exec functions such as cat,
// tr and wc) behind real HTTP servers on 127.0.0.1, and the gateway in
// front of them behind another.

func fn(name string, cmd ...string) pool.FunctionConfig {
	return pool.FunctionConfig{Name: name, Runtime: "exec", Command: cmd, Timeout: "10s", MaxInstances: 8, Concurrency: 1}
}

// backend is a real pool served on 127.0.0.1, with counts of the calls
// that reached it.
type backend struct {
	addr     string
	srv      *httptest.Server
	calls    atomic.Int64 // invoke requests received
	inflight atomic.Int64 // invoke requests not yet answered
}

func (b *backend) ServeHTTP(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/invoke/") {
			b.calls.Add(1)
			b.inflight.Add(1)
			defer b.inflight.Add(-1)
		}
		h.ServeHTTP(w, r)
	})
}

// startPool starts a pool of project "test" hosting fns.
func startPool(t *testing.T, fns ...pool.FunctionConfig) *backend {
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
	b := &backend{}
	b.srv = httptest.NewServer(b.ServeHTTP(p.Handler()))
	b.addr = b.srv.Listener.Addr().String()
	t.Cleanup(func() {
		b.srv.Close()
		p.Close()
	})
	return b
}

// standardFns are the functions most tests route to.
func standardFns() []pool.FunctionConfig {
	// slow outlasts by far every deadline the tests give it.
	slow := fn("slow", "sh", "-c", "sleep 600; cat")
	slow.Timeout = "2m"
	return []pool.FunctionConfig{
		fn("cat", "cat"), fn("tr", "tr", "a-z", "A-Z"), fn("wc", "wc", "-c"),
		fn("sed", "sed"), fn("fail", "sh", "-c", "echo broken >&2; exit 3"), slow,
	}
}

// startGateway serves a gateway on 127.0.0.1 with routes.
func startGateway(t *testing.T, res gateway.Resolver, routes []gateway.Route, opts ...gateway.Option) (*gateway.Gateway, string) {
	t.Helper()
	opts = append([]gateway.Option{gateway.WithLogger(hclog.New(&hclog.LoggerOptions{Output: testWriter{t}, Level: hclog.Info}))}, opts...)
	g := gateway.New(res, opts...)
	if err := g.SetRoutes(routes); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(func() {
		srv.Close()
		g.Close()
	})
	return g, srv.URL
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// resolverFor points project "test", pool "default" at backends.
func resolverFor(addrs ...string) *gateway.StaticResolver {
	r := gateway.NewStaticResolver()
	r.Set("test", "default", addrs...)
	return r
}

type answer struct {
	code    int
	body    string
	header  http.Header
	trailer http.Header
	err     struct {
		Error     string `json:"error"`
		Type      string `json:"type"`
		RequestID string `json:"request_id"`
	}
}

var client = &http.Client{Timeout: 60 * time.Second}

func call(t *testing.T, method, url string, body io.Reader, hdr map[string]string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, url, err)
		return answer{}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("%s %s: reading the body: %v", method, url, err)
	}
	a := answer{code: resp.StatusCode, body: string(b), header: resp.Header, trailer: resp.Trailer}
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(b, &a.err); err != nil {
			t.Errorf("%s %s: error answer %d is not the gateway's JSON: %q", method, url, resp.StatusCode, b)
		}
	}
	return a
}

func post(t *testing.T, url, body string, hdr map[string]string) answer {
	t.Helper()
	return call(t, http.MethodPost, url, strings.NewReader(body), hdr)
}

// eventually polls cond until it holds, failing the test after d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// deadAddr returns an address on 127.0.0.1 that refuses connections.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// heldBody is a request body that the test releases: the request stays
// in flight until then.
type heldBody struct {
	pr *io.PipeReader
	pw *io.PipeWriter
}

func newHeldBody(t *testing.T) *heldBody {
	pr, pw := io.Pipe()
	// A test that fails early must not leave the request open: the
	// servers' Close would wait for it.
	t.Cleanup(func() { _ = pw.CloseWithError(io.ErrUnexpectedEOF) })
	return &heldBody{pr: pr, pw: pw}
}

// send starts a request with the held body and returns its answer later.
func (h *heldBody) send(t *testing.T, url string) <-chan answer {
	ch := make(chan answer, 1)
	go func() { ch <- call(t, http.MethodPost, url, h.pr, nil) }()
	return ch
}

func (h *heldBody) finish(s string) {
	_, _ = io.WriteString(h.pw, s)
	_ = h.pw.Close()
}

func wait(t *testing.T, ch <-chan answer) answer {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(30 * time.Second):
		t.Fatal("no answer after 30s")
	}
	return answer{}
}

// httptestServer serves h on 127.0.0.1 and returns its address.
func httptestServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// metricValue sums a metric's samples in the gateway's registry.
func metricValue(t *testing.T, g *gateway.Gateway, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Metrics().Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}
