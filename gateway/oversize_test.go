package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/gateway"
	"github.com/butterfn/butter/plugins/pool"
)

// TestQueuedOversizeGoesDirect checks size-aware routing: a queued or
// async call whose body fits in a broker record goes through Kafka (the
// embedded kfake broker, real client), a larger one goes direct to the
// same real pool over HTTP instead of answering 413, declared or chunked;
// the route's own max_body still refuses.
func TestQueuedOversizeGoesDirect(t *testing.T) {
	dev, err := broker.StartDev(0, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dev.Close)
	dir := t.TempDir()
	fns := []pool.FunctionConfig{requestFn("wc", "wc", "-c"), requestFn("cat", "cat")}
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
	b := &backend{}
	b.srv = httptest.NewServer(b.ServeHTTP(p.Handler()))
	t.Cleanup(b.srv.Close)
	req, err := broker.NewRequester(ctx, dev.Config(), "test.gateway.replies")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(req.Close)

	const recordMax = 4096
	_, url := startGateway(t, resolverFor(b.srv.Listener.Addr().String()), []gateway.Route{
		{Method: "POST", Path: "/q/wc", Project: "test", Function: "wc", Mode: "queued", Timeout: 20 * time.Second},
		{Method: "POST", Path: "/q/capped", Project: "test", Function: "wc", Mode: "queued", MaxBody: 50000, Timeout: 20 * time.Second},
		{Method: "POST", Path: "/a/wc", Project: "test", Function: "wc", Mode: "async", Timeout: 20 * time.Second},
		{Method: "POST", Path: "/a/cat", Project: "test", Function: "cat", Mode: "async", Timeout: 20 * time.Second},
	}, gateway.WithRequester(req), gateway.WithQueuedMaxBody(recordMax))

	count := func(a answer) string { return strings.TrimSpace(a.body) }
	// Fits in a record: through Kafka, the pool's HTTP endpoint unused.
	if a := post(t, url+"/q/wc", strings.Repeat("x", recordMax), nil); a.code != 200 || count(a) != "4096" || a.header.Get(gateway.HeaderMode) != "" {
		t.Fatalf("queued call that fits a record: %d %q %s=%q", a.code, a.body, gateway.HeaderMode, a.header.Get(gateway.HeaderMode))
	}
	if n := b.calls.Load(); n != 0 {
		t.Fatalf("a call that fits a record reached the pool over HTTP (%d calls): it should travel through Kafka", n)
	}
	// Declared larger: direct, the body streamed.
	if a := post(t, url+"/q/wc", strings.Repeat("x", 100000), nil); a.code != 200 || count(a) != "100000" || a.header.Get(gateway.HeaderMode) != "direct" {
		t.Errorf("queued call over the record limit: %d %q %s=%q, want 200 100000 direct", a.code, a.body, gateway.HeaderMode, a.header.Get(gateway.HeaderMode))
	}
	if n := b.calls.Load(); n != 1 {
		t.Errorf("pool invoke calls over HTTP: %d, want 1 (the oversized call)", n)
	}
	// Chunked (no Content-Length): read up to the limit, then direct,
	// with the bytes already read sent first.
	body := strings.Repeat("0123456789", 10000)
	chunked := io.MultiReader(strings.NewReader(body[:50000]), strings.NewReader(body[50000:]))
	if a := call(t, "POST", url+"/q/wc", io.NopCloser(chunked), nil); a.code != 200 || count(a) != "100000" || a.header.Get(gateway.HeaderMode) != "direct" {
		t.Errorf("chunked queued call over the record limit: %d %q", a.code, a.body)
	}
	if n := b.calls.Load(); n != 2 {
		t.Errorf("pool invoke calls over HTTP: %d, want 2", n)
	}
	// The route's max_body still refuses.
	if a := post(t, url+"/q/capped", strings.Repeat("x", 60000), nil); a.code != 413 || a.err.Type != "PayloadTooLarge" {
		t.Errorf("body over the route's max_body: %d %+v, want 413", a.code, a.err)
	}

	result := func(a answer) answer {
		t.Helper()
		var r struct{ ID string }
		if err := json.Unmarshal([]byte(a.body), &r); a.code != 202 || err != nil || r.ID == "" {
			t.Fatalf("async call: %d %s", a.code, a.body)
		}
		var res answer
		eventually(t, 20*time.Second, "invocation "+r.ID+" done", func() bool {
			res = call(t, "GET", url+"/v1/invocations/"+r.ID, nil, nil)
			return res.code != 202
		})
		return res
	}
	a := post(t, url+"/a/wc", strings.Repeat("y", 200000), nil)
	if a.header.Get(gateway.HeaderMode) != "direct" {
		t.Errorf("async call over the record limit: %s=%q, want direct", gateway.HeaderMode, a.header.Get(gateway.HeaderMode))
	}
	if r := result(a); r.code != 200 || count(r) != "200000" {
		t.Errorf("async result of an oversized call: %d %q", r.code, r.body)
	}
	if n := b.calls.Load(); n != 3 {
		t.Errorf("pool invoke calls over HTTP: %d, want 3", n)
	}
	// Its output is kept in memory like a reply record, so bounded alike.
	if r := result(post(t, url+"/a/cat", strings.Repeat("z", 10000), nil)); r.code != 502 || r.err.Type != "OutputTooLarge" {
		t.Errorf("async oversized output: %d %+v, want 502 OutputTooLarge", r.code, r.err)
	}
	if a := result(post(t, url+"/a/wc", "small", nil)); a.code != 200 || count(a) != "5" {
		t.Errorf("async call that fits a record: %d %q", a.code, a.body)
	}
	if n := b.calls.Load(); n != 4 {
		t.Errorf("pool invoke calls over HTTP: %d, want 4 (the small async call goes through Kafka)", n)
	}
}
