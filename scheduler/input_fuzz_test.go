package scheduler_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/scheduler"
)

// fuzzRoutes are the API's routes that take a JSON body, as the fuzz
// target picks them.
var fuzzRoutes = []struct{ method, path string }{
	{"POST", "/v1/projects/fz/revisions"},
	{"PUT", "/v1/timers/fz-timer"},
	{"POST", "/v1/projects/fz/keys"},
}

// FuzzAPIBodies sends arbitrary bodies to the API's JSON routes of a real
// single-node control plane: no body may make it fail (5xx), and a body
// it refuses (4xx) must change nothing (the state's applied index does not move). make
// fuzz runs it for a bounded time; go test runs the seeds.
func FuzzAPIBodies(f *testing.F) {
	digest := "sha256:" + digestOf([]byte("bundle"))
	for _, seed := range []struct {
		route uint8
		body  string
	}{
		{0, `{"id":"r1"}`},
		{0, `{"id":"0a1b2c3d4e5f","specs":{"fz.fn.hcl":"function \"a\" {}"},"bundles":{"a/index.js":"` + digest + `"},` +
			`"git_sha":"abc","dirty":true,"author":"ana","routes":["GET /a -> a"],"streams":["a -> fz.out"],` +
			`"job":{"ID":"butter-fz"},"timers":[{"id":"fz.a.0","schedule":"0 3 * * *","timezone":"Europe/Paris","topic":"fz._timers.a"}]}`},
		{0, `{"id":"r2","routes":["POST /v1/x -> a"]}`},
		{0, `{"id":"r3","specs":{"x":1}}`},
		{1, `{"schedule":"@hourly","topic":"ticks"}`},
		{1, `{"id":"fz-timer","schedule":"*/5 * * * * *","timezone":"UTC","topic":"ticks"}`},
		{2, `{"routes":["GET /a"]}`},
		{2, ``},
	} {
		f.Add(seed.route, []byte(seed.body))
	}
	s, c, dir := inputServer(f, scheduler.Config{MaxRequestBytes: 64 << 10})
	// The project exists, so that keys can be made.
	if _, err := c.Revisions().Create(context.Background(), "fz", &api.RevisionCreateRequest{ID: "r0"}); err != nil {
		f.Fatal(err)
	}
	base := "http://" + s.Addr()
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		rt := fuzzRoutes[int(route)%len(fuzzRoutes)]
		last := s.FSM().Index()
		req, err := http.NewRequest(rt.method, base+rt.path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", rt.method, rt.path, err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode >= 500:
			t.Fatalf("%s %s %q: %d %s", rt.method, rt.path, body, resp.StatusCode, msg)
		case resp.StatusCode >= 400:
			unchanged(t, s, dir, last, rt.method+" "+rt.path+" refused")
		case resp.StatusCode != 200:
			t.Fatalf("%s %s %q: %d %s", rt.method, rt.path, body, resp.StatusCode, msg)
		}
	})
}
