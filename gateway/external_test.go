package gateway_test

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/gateway"
)

// externalFn is an HTTP function outside Butter, as an OpenFaaS function
// behind its watchdog is: it answers a POST with its output.
type externalFn struct {
	mu      sync.Mutex
	headers http.Header // of the last /rev call
	release chan struct{}
}

func (e *externalFn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/rev":
		b, _ := io.ReadAll(r.Body)
		e.mu.Lock()
		e.headers = r.Header.Clone()
		e.mu.Unlock()
		if r.Method != http.MethodPost {
			http.Error(w, "want POST, got "+r.Method, http.StatusMethodNotAllowed)
			return
		}
		for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
			b[i], b[j] = b[j], b[i]
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(b)
	case "/created":
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Location", "/things/1")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(b)
	case "/fail":
		http.Error(w, "boom", http.StatusInternalServerError)
	case "/hang":
		// Read the input first: Go's server notices a closed connection
		// (and cancels r's context) only once the body is read.
		_, _ = io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	case "/stream":
		_, _ = io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-e.release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "second\n")
	}
}

// TestExternalSteps runs pipelines whose middle or last step is an
// external HTTP function by URL, between steps on a real pool: its output
// streams on, its failure and the route's deadline end the call, and a
// caller cannot name a URL in an ad-hoc pipeline.
func TestExternalSteps(t *testing.T) {
	b := startPool(t, standardFns()...)
	ext := &externalFn{release: make(chan struct{})}
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(ext.release) }) }
	extURL := "http://" + httptestServer(t, ext)
	t.Cleanup(release) // before the server's Close, which waits for /stream
	dead := "http://" + deadAddr(t) + "/function/gone"
	routes := []gateway.Route{
		{Method: "POST", Path: "/rev", Project: "test", Pipeline: []string{"cat", extURL + "/rev", "tr"}},
		{Method: "POST", Path: "/created", Project: "test", Pipeline: []string{"tr", extURL + "/created"}},
		{Method: "POST", Path: "/fail", Project: "test", Pipeline: []string{"cat", extURL + "/fail", "tr"}},
		{Method: "POST", Path: "/hang", Project: "test", Pipeline: []string{"cat", extURL + "/hang"}, Timeout: 500 * time.Millisecond},
		{Method: "POST", Path: "/stream", Project: "test", Pipeline: []string{"cat", extURL + "/stream", "cat"}},
		{Method: "POST", Path: "/dead", Project: "test", Pipeline: []string{"cat", dead}},
		// The step's own timeout, with no route deadline: before its
		// answer, and while its output streams.
		{Method: "POST", Path: "/step-timeout", Project: "test", Pipeline: []string{"cat", extURL + "/hang timeout=300ms"}},
		{Method: "POST", Path: "/stream-timeout", Project: "test", Pipeline: []string{extURL + "/stream timeout=2s", "cat"}},
	}
	g, url := startGateway(t, resolverFor(b.addr), routes, gateway.WithInvokeAuth("none"))

	if a := post(t, url+"/rev", "hello", map[string]string{"Authorization": "Bearer secret"}); a.code != 200 || a.body != "OLLEH" {
		t.Errorf("cat | external rev | tr: %d %q %+v, want 200 OLLEH", a.code, a.body, a.err)
	}
	if n := b.calls.Load(); n != 2 {
		t.Errorf("pool calls: %d, want 2 (cat and tr)", n)
	}
	ext.mu.Lock()
	h := ext.headers
	ext.mu.Unlock()
	if h.Get("X-Request-Id") == "" || h.Get("Traceparent") == "" || h.Get("Authorization") != "" {
		t.Errorf("the external step got X-Request-Id=%q traceparent=%q Authorization=%q; want the first two, never the client's credentials",
			h.Get("X-Request-Id"), h.Get("Traceparent"), h.Get("Authorization"))
	}

	// Last, its answer is the client's: a 2xx status and its headers.
	if a := post(t, url+"/created", "abc", nil); a.code != 201 || a.body != "ABC" || a.header.Get("Location") != "/things/1" {
		t.Errorf("tr | external created: %d %q Location=%q", a.code, a.body, a.header.Get("Location"))
	}

	before := b.calls.Load()
	if a := post(t, url+"/fail", "x", nil); a.code != 502 || a.err.Type != "ExternalFailed" ||
		!strings.Contains(a.err.Error, "step 2 of 3") || !strings.Contains(a.err.Error, "500") || !strings.Contains(a.err.Error, "boom") {
		t.Errorf("a failing external step: %d %+v, want 502 ExternalFailed naming step 2 and quoting its answer", a.code, a.err)
	}
	if n := b.calls.Load() - before; n != 1 {
		t.Errorf("pool calls for the failing pipeline: %d, want 1: tr must not run after the external step failed", n)
	}
	start := time.Now()
	if a := post(t, url+"/hang", "x", nil); a.code != 504 || a.err.Type != "Timeout" || time.Since(start) > 20*time.Second {
		t.Errorf("an external step past the route's deadline: %d %+v", a.code, a.err)
	}
	if a := post(t, url+"/dead", "x", nil); a.code != 502 || a.err.Type != "ExternalFailed" || !strings.Contains(a.err.Error, "connect") {
		t.Errorf("an unreachable external step: %d %+v", a.code, a.err)
	}

	if a := post(t, url+"/step-timeout", "x", nil); a.code != 504 || a.err.Type != "Timeout" || !strings.Contains(a.err.Error, "within its timeout of 300ms") {
		t.Errorf("an external step past its own timeout: %d %+v, want 504 Timeout naming the step's timeout", a.code, a.err)
	}
	if a := post(t, url+"/stream-timeout", "x", nil); a.code != 200 || a.body != "first\n" ||
		!strings.HasPrefix(a.trailer.Get("Butter-Error"), "Timeout: ") || !strings.Contains(a.trailer.Get("Butter-Error"), "still streaming its output at its timeout of 2s") {
		t.Errorf("an external step streaming past its own timeout: %d %q trailer %q, want its first line and a Timeout trailer", a.code, a.body, a.trailer.Get("Butter-Error"))
	}

	// Streaming: the first line reaches the client through the last step
	// while the external step still holds the second.
	resp, err := client.Post(url+"/stream", "text/plain", strings.NewReader("go"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first streamed line: %q %v", line, err)
	}
	release()
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "second\n" || resp.Trailer.Get("Butter-Error") != "" {
		t.Errorf("rest of the stream: %q %v trailer %q", rest, err, resp.Trailer.Get("Butter-Error"))
	}

	// Only routes name URLs: an ad-hoc pipeline cannot.
	if a := post(t, url+"/v1/invoke/test", "x", map[string]string{"Butter-Pipeline": "cat | " + extURL + "/rev"}); a.code != 400 {
		t.Errorf("an ad-hoc pipeline naming a URL: %d %q, want 400", a.code, a.body)
	}
	// SetRoutes checks URL steps with the spec's rule.
	for _, bad := range []string{"http://user:pw@" + strings.TrimPrefix(extURL, "http://") + "/rev", "http:///nohost", "ftp://example.com/x"} {
		err := g.SetRoutes([]gateway.Route{{Method: "POST", Path: "/x", Project: "test", Pipeline: []string{"cat", bad}}})
		if err == nil {
			t.Errorf("SetRoutes took the external step %q", bad)
		}
	}
}
