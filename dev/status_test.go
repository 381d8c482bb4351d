package dev_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"io"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/dev"
	"github.com/butterfn/butter/internal/testport"
)

// TestStatusHealthy: once `butter dev` serves a project, the control
// plane reports its active revision healthy, as `butter status` shows it
// (the deployer does that on Nomad; under butter dev there is no Nomad).
func TestStatusHealthy(t *testing.T) {
	dir := project(t, `project "st" {}

function "upper" {
  runtime = "exec"
  command = ["tr", "a-z", "A-Z"]

  trigger "http" {
    route = "POST /upper"
  }
}
`)
	listen, server, data := testport.Addr(t), testport.Addr(t), t.TempDir()
	runDev(t, dev.Config{Dir: dir, ServerAddr: server, Listen: listen, DataDir: data})
	resp, err := http.Post("http://"+listen+"/upper", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST /upper: %s", resp.Status)
	}
	// ACLs are on: the management token butter dev wrote is needed.
	client := devClient(t, server, data)
	// The ready line comes after the deploy recorded its status: no wait.
	st, _, err := client.Projects().Status(context.Background(), "st", nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Active == nil || st.Active.Deployment.Status != api.StatusHealthy || st.Active.Deployment.HealthyAt.IsZero() ||
		!strings.Contains(st.Active.Deployment.Message, "butter dev") {
		t.Fatalf("status of a project butter dev serves: %+v; want its active revision healthy, saying butter dev serves it", st.Active)
	}
}

// devClient is a control-plane client with the management token butter
// dev wrote to data/dev.TokenFile.
func devClient(t *testing.T, server, data string) *api.Client {
	t.Helper()
	tok, err := os.ReadFile(filepath.Join(data, dev.TokenFile))
	if err != nil {
		t.Fatalf("butter dev's management token: %v", err)
	}
	c, err := api.NewClient(&api.Config{Address: "http://" + server, Token: strings.TrimSpace(string(tok))})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDevACL: butter dev enforces ACLs with the management token it
// prints and writes (anonymous calls are refused; the printed token is
// the one in the file, and it may do everything); -acl=false is refused
// on a non-loopback address before anything starts, and runs without
// ACLs on a loopback one.
func TestDevACL(t *testing.T) {
	dir := project(t, `project "acl" {}

function "upper" {
  runtime = "exec"
  command = ["tr", "a-z", "A-Z"]

  trigger "http" {
    route = "POST /upper"
  }
}
`)
	server, data := testport.Addr(t), t.TempDir()
	r := runDev(t, dev.Config{Dir: dir, ServerAddr: server, DataDir: data, Listen: testport.Addr(t)})
	ctx := context.Background()
	anon, err := api.NewClient(&api.Config{Address: "http://" + server})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := anon.Projects().Status(ctx, "acl", nil); api.StatusCode(err) != 403 || !strings.Contains(err.Error(), "ACL token required") {
		t.Fatalf("an anonymous status under butter dev: %v; want 403 ACL token required", err)
	}
	c := devClient(t, server, data)
	self, err := c.ACL().TokenSelf(ctx)
	if err != nil || self.Type != "management" {
		t.Fatalf("the token butter dev wrote: %+v %v; want a management token", self, err)
	}
	tok, _ := os.ReadFile(filepath.Join(data, dev.TokenFile))
	if !strings.Contains(r.ui.text(), "ACL management token: "+strings.TrimSpace(string(tok))) {
		t.Fatalf("butter dev did not print the token it wrote:\n%s", r.ui.text())
	}

	err = dev.Run(ctx, dev.Config{Dir: dir, ServerAddr: "0.0.0.0:1", NoACL: true, UI: &lines{}, Diagnostics: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("-acl=false on 0.0.0.0: %v; want a refusal naming loopback", err)
	}

	off := testport.Addr(t)
	r2 := runDev(t, dev.Config{Dir: dir, ServerAddr: off, NoACL: true, Listen: testport.Addr(t)})
	anonOff, _ := api.NewClient(&api.Config{Address: "http://" + off})
	if _, _, err := anonOff.Projects().Status(ctx, "acl", nil); err != nil {
		t.Fatalf("butter dev -acl=false: an anonymous status: %v", err)
	}
	if !strings.Contains(r2.ui.text(), "ACLs are OFF") {
		t.Fatalf("butter dev -acl=false does not say ACLs are off:\n%s", r2.ui.text())
	}
}

// TestStatusTraffic: butter dev reads its pool's metrics, so the control
// plane's status has each function's instances and traffic (calls,
// errors, rates, p50 and p99 over the window) as on Nomad, where the
// leader's autoscaler reads every allocation's.
func TestStatusTraffic(t *testing.T) {
	dir := project(t, `project "tr" {}

function "upper" {
  runtime = "exec"
  command = ["tr", "a-z", "A-Z"]
  trigger "http" {
    route = "POST /upper"
  }
}

function "fail" {
  runtime = "exec"
  command = ["sh", "-c", "exit 3"]
  trigger "http" {
    route = "POST /fail"
  }
}

function "strict" {
  runtime      = "exec"
  command      = ["cat"]
  input_schema = "in.json"
  trigger "http" {
    route = "POST /strict"
  }
}
`)
	if err := os.WriteFile(filepath.Join(dir, "in.json"), []byte(`{"type": "object"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	listen, server, data := testport.Addr(t), testport.Addr(t), t.TempDir()
	r := runDev(t, dev.Config{Dir: dir, ServerAddr: server, Listen: listen, DataDir: data})
	call := func(path string, want int) {
		t.Helper()
		// JSON, so that /strict's schema (not the gateway's serializers,
		// which refuse other types to a JSON function with 415) refuses it.
		resp, err := http.Post("http://"+listen+path, "application/json", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("POST %s: %s, want %d", path, resp.Status, want)
		}
	}
	for range 6 {
		call("/upper", 200)
	}
	for range 2 {
		call("/fail", 500)
	}
	call("/strict", 400) // refused before running: an error too
	client := devClient(t, server, data)
	var fns map[string]api.FunctionSignals
	waitFor(t, r.ui, 30*time.Second, "the status showing both functions' traffic", func() bool {
		st, _, err := client.Projects().Status(context.Background(), "tr", nil)
		if err != nil {
			t.Fatal(err)
		}
		fns = map[string]api.FunctionSignals{}
		for _, p := range st.Pools {
			if p.Signals == nil {
				continue
			}
			for _, f := range p.Signals.Functions {
				fns[f.Function] = f
			}
		}
		u, f, s := fns["upper"].Traffic, fns["fail"].Traffic, fns["strict"].Traffic
		return u != nil && u.Calls == 6 && f != nil && f.Calls == 2 && s != nil && s.Calls == 1
	})
	u, f := fns["upper"], fns["fail"]
	if u.Traffic.Errors != 0 || u.Traffic.Rate <= 0 || u.Traffic.P50Seconds == nil || u.Traffic.P99Seconds == nil || *u.Traffic.P50Seconds <= 0 || u.Instances < 1 || u.Capacity < 1 {
		t.Errorf("upper: %+v, traffic %+v", u, *u.Traffic)
	}
	if f.Traffic.Errors != 2 || f.Traffic.ErrorRate <= 0 || f.Traffic.ErrorRate != f.Traffic.Rate {
		t.Errorf("fail: traffic %+v; want its 2 calls failed", *f.Traffic)
	}
	if s := fns["strict"].Traffic; s.Errors != 1 {
		t.Errorf("strict: traffic %+v; want its refused call failed", *s)
	}
}
