package gateway_test

import (
	"context"
	"encoding/json"
	"github.com/butterfn/butter/names"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/gateway"
	"github.com/butterfn/butter/plugins/pool"
)

// requestFn is a function that serves its request topic, as a queued
// route expects.
func requestFn(name string, cmd ...string) pool.FunctionConfig {
	f := fn(name, cmd...)
	topic := names.RequestTopic("test", name)
	f.Streams = []pool.StreamTrigger{{Stream: topic, Group: "butter.test." + name + ".requests", Offset: "first"}}
	return f
}

// TestQueuedAndAsync runs queued and async routes through the embedded
// Kafka-protocol broker (kfake, real client and wire protocol) to a real
// pool consuming the request topics, with broker.Requester in the
// gateway.
func TestQueuedAndAsync(t *testing.T) {
	dev, err := broker.StartDev(0, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dev.Close)
	// nap answers once the test opens its gate (creates the file): until
	// then its calls are pending, however long this machine takes.
	dir := t.TempDir()
	gate := filepath.Join(dir, "gate")
	openGate := func() {
		if err := os.WriteFile(gate, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	napFn := requestFn("nap", "sh", "-c", `while [ ! -e "$0" ]; do sleep 0.05; done; cat`, gate)
	napFn.Timeout = "1m"
	fns := []pool.FunctionConfig{
		requestFn("upper", "tr", "a-z", "A-Z"), requestFn("fail", "sh", "-c", "echo no >&2; exit 1"),
		napFn,
	}
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
	t.Cleanup(openGate) // before the pool stops: no nap left to drain
	if err := p.StartStreams(ctx, dev.Config()); err != nil {
		t.Fatal(err)
	}
	req, err := broker.NewRequester(ctx, dev.Config(), "test.gateway.replies")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(req.Close)

	_, url := startGateway(t, gateway.NewStaticResolver(), []gateway.Route{
		{Method: "POST", Path: "/q/upper", Project: "test", Function: "upper", Mode: "queued", Timeout: 20 * time.Second},
		{Method: "POST", Path: "/q/fail", Project: "test", Function: "fail", Mode: "queued", Timeout: 20 * time.Second},
		{Method: "POST", Path: "/q/nap", Project: "test", Function: "nap", Mode: "queued", Timeout: 300 * time.Millisecond},
		{Method: "POST", Path: "/q/small", Project: "test", Function: "upper", Mode: "queued", MaxBody: 10},
		{Method: "POST", Path: "/a/upper", Project: "test", Function: "upper", Mode: "async", Timeout: 20 * time.Second},
		{Method: "POST", Path: "/a/nap", Project: "test", Function: "nap", Mode: "async", Timeout: 20 * time.Second},
		{Method: "POST", Path: "/a/fail", Project: "test", Function: "fail", Mode: "async", Timeout: 20 * time.Second},
	}, gateway.WithRequester(req))

	if a := post(t, url+"/q/upper", "hello kafka", nil); a.code != 200 || a.body != "HELLO KAFKA" {
		t.Fatalf("queued call: %d %q %+v", a.code, a.body, a.err)
	}
	if a := post(t, url+"/q/fail", "x", nil); a.code != 500 || a.err.Type != "Exception" || !strings.Contains(a.err.Error, "no") {
		t.Errorf("queued failing call: %d %+v, want 500 Exception", a.code, a.err)
	}
	start := time.Now()
	if a := post(t, url+"/q/nap", "x", nil); a.code != 504 || a.err.Type != "Timeout" || time.Since(start) > 30*time.Second {
		t.Errorf("queued call past its deadline: %d %+v after %s, want 504 Timeout", a.code, a.err, time.Since(start))
	}
	if a := post(t, url+"/q/small", strings.Repeat("x", 11), nil); a.code != 413 {
		t.Errorf("queued body over max_body: %d", a.code)
	}

	accept := func(path, body string) string {
		t.Helper()
		a := post(t, url+path, body, nil)
		var r struct{ ID, Status, Location string }
		if err := json.Unmarshal([]byte(a.body), &r); a.code != 202 || err != nil || r.ID == "" || a.header.Get("Location") != "/v1/invocations/"+r.ID {
			t.Fatalf("async %s: %d %s Location=%q", path, a.code, a.body, a.header.Get("Location"))
		}
		return r.ID
	}
	result := func(id string) answer {
		t.Helper()
		var a answer
		eventually(t, 20*time.Second, "invocation "+id+" done", func() bool {
			a = call(t, "GET", url+"/v1/invocations/"+id, nil, nil)
			return a.code != 202
		})
		return a
	}
	nap := accept("/a/nap", "slept")
	if a := call(t, "GET", url+"/v1/invocations/"+nap, nil, nil); a.code != 202 || !strings.Contains(a.body, "pending") || a.header.Get("Retry-After") == "" {
		t.Errorf("pending invocation: %d %s", a.code, a.body)
	}
	openGate()
	up := accept("/a/upper", "async hello")
	failed := accept("/a/fail", "x")
	if a := result(up); a.code != 200 || a.body != "ASYNC HELLO" {
		t.Errorf("async result: %d %q", a.code, a.body)
	}
	if a := result(failed); a.code != 500 || a.err.Type != "Exception" {
		t.Errorf("async failure: %d %+v", a.code, a.err)
	}
	if a := result(nap); a.code != 200 || a.body != "slept" {
		t.Errorf("async nap: %d %q", a.code, a.body)
	}
	if a := call(t, "GET", url+"/v1/invocations/0123456789abcdef0123456789abcdef", nil, nil); a.code != 404 || !strings.Contains(a.err.Error, "expired") {
		t.Errorf("unknown invocation: %d %+v", a.code, a.err)
	}

	// The store is bounded: with every slot pending, a new call is refused.
	if err := os.Remove(gate); err != nil {
		t.Fatal(err)
	}
	_, small := startGateway(t, gateway.NewStaticResolver(), []gateway.Route{
		{Method: "POST", Path: "/a/nap", Project: "test", Function: "nap", Mode: "async", Timeout: 20 * time.Second},
	}, gateway.WithRequester(req), gateway.WithMaxResults(1))
	if a := post(t, small+"/a/nap", "x", nil); a.code != 202 {
		t.Fatalf("first async call: %d", a.code)
	}
	if a := post(t, small+"/a/nap", "x", nil); a.code != 503 || !strings.Contains(a.err.Error, "pending") {
		t.Errorf("async call over the bound: %d %+v, want 503", a.code, a.err)
	}
}
