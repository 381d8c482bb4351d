package scheduler_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/scheduler"
	"github.com/butterfn/butter/scheduler/schedtest"
)

// FuzzACLBodies sends arbitrary ACL bodies (token and policy writes, with
// the management token) and arbitrary token headers (on a read) to a real
// single-node control plane with ACLs on: nothing may make it fail (5xx),
// and whatever it refuses (4xx) changes nothing. make fuzz runs it for a
// bounded time; go test runs the seeds.
func FuzzACLBodies(f *testing.F) {
	for _, seed := range []struct {
		route uint8
		body  string
	}{
		{0, `{"name":"t","policies":["read"]}`},
		{0, `{"name":"t","type":"management"}`},
		{0, `{"policies":["read"],"ttl":"1h"}`},
		{0, `{"policies":["nope"],"ttl":"x"}`},
		{0, `{"type":"root"}`},
		{1, `{"rules":"project \"*\" { capabilities = [\"read\"] }"}`},
		{1, `{"description":"d","rules":"operator { capabilities = [\"raft\", \"snapshot\"] }"}`},
		{1, `{"rules":"project \"x\" { capabilities = [\"fly\"] }"}`},
		{1, `{"rules":1}`},
		{2, `0b1c2d3e-4f50-4a61-8b72-93a4b5c6d7e8`},
		{2, `Bearer x`},
		{2, ``},
	} {
		f.Add(seed.route, []byte(seed.body))
	}
	s, _ := schedtest.SingleConfig(f, scheduler.Config{ACL: true, MaxRequestBytes: 64 << 10})
	base := "http://" + s.Addr()
	mgmt, root := schedtest.Bootstrap(f, base)
	schedtest.Token(f, mgmt, base, "read", `project "*" { capabilities = ["read"] }`)
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		var req *http.Request
		var err error
		switch route % 3 {
		case 0:
			req, err = http.NewRequest("POST", base+"/v1/acl/tokens", bytes.NewReader(body))
			req.Header.Set(api.HeaderToken, root.SecretID)
		case 1:
			req, err = http.NewRequest("PUT", base+"/v1/acl/policies/fz", bytes.NewReader(body))
			req.Header.Set(api.HeaderToken, root.SecretID)
		case 2:
			req, err = http.NewRequest("GET", base+"/v1/projects", nil)
			if err == nil {
				// Not every byte string is a valid header value: those are
				// the HTTP client's to refuse.
				if !validHeader(body) {
					return
				}
				req.Header.Set(api.HeaderToken, string(body))
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		last := s.FSM().Index()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode >= 500:
			t.Fatalf("%s %s %q: %d %s", req.Method, req.URL.Path, body, resp.StatusCode, msg)
		case resp.StatusCode >= 400:
			if got := s.FSM().Index(); got != last {
				t.Errorf("%s %s %q refused (%d %s), yet the state moved from index %d to %d", req.Method, req.URL.Path, body, resp.StatusCode, msg, last, got)
			}
		case resp.StatusCode != 200:
			t.Fatalf("%s %s %q: %d %s", req.Method, req.URL.Path, body, resp.StatusCode, msg)
		}
	})
}

// validHeader says whether b may be sent as a header value.
func validHeader(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return len(b) == len(bytes.TrimSpace(b))
}
