package server

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/e2e/e2etest"
	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/butterfn/butter/internal/testlog"
	"github.com/butterfn/butter/internal/testport"
	"github.com/hashicorp/nomad/api"
)

const wakeProject = `project "zz" {}

pool "default" {
  scaling {
    min            = 0
    max            = 2
    cooldown       = "1s"
    scale_in_delay = "3s"
  }
}

function "hi" {
  runtime = "node"
  source  = "fn"
  handler = "index.hi"
  timeout = "60s"
  trigger "http" {
    route = "POST /hi"
  }
}
`

// TestWakeAcrossProcesses is scale to zero and back with every part in
// its own process, as on a cluster: a real Nomad agent with the butter
// driver, `butter server` (whose leader runs the autoscaler), `butter
// gateway` (which learns routes and endpoints from them) and the
// deployed pool. The idle pool goes to zero allocations after its
// scale-in delay; a call through the gateway is held while the gateway's
// wake, over the control plane's HTTP API, makes the autoscaler scale it
// 0 -> 1, and is answered 200; Nomad's scaling events say why.
func TestWakeAcrossProcesses(t *testing.T) {
	agent := nomadtest.StartWith(t, nomadtest.Options{
		PluginDir: e2etest.PluginDir(),
		HCL:       fmt.Sprintf("plugin \"nomad-driver-butter\" {\n  config {\n    butter_path = %q\n  }\n}\n", e2etest.Bin()),
		NodeReady: func(n *api.Node) bool { d := n.Drivers["butter"]; return d != nil && d.Healthy },
	})
	s := e2etest.StartServer(t, "-nomad-addr", agent.Addr, "-autoscale-interval", "500ms")
	addr := "http://" + s.HTTP
	gwAddr := testport.Addr(t)
	gwOut := &testlog.Buffer{}
	gw := exec.Command(e2etest.Bin(), "gateway", "-listen", gwAddr, "-nomad-addr", agent.Addr, "-address", addr, "-refresh", "200ms")
	gw.Stdout, gw.Stderr = gwOut, gwOut
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = gw.Process.Kill()
		_ = gw.Wait()
		if t.Failed() {
			t.Logf("gateway output (tail):\n%s", e2etest.Tail(gwOut.String(), 4000))
		}
	})

	dir := filepath.Join(t.TempDir(), "zz")
	for name, body := range map[string]string{"zz.fn.hcl": wakeProject, "fn/index.js": "exports.hi = async () => 'hi';\n"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if r := e2etest.Butter(t, ".", "deploy", "-address", addr, "-timeout", "4m", dir); r.Code != 0 {
		t.Fatalf("deploy: %+v", r)
	}
	count := func() int {
		job, _, err := agent.Client.Jobs().Info("butter-zz", nil)
		if err != nil || len(job.TaskGroups) == 0 || job.TaskGroups[0].Count == nil {
			return -1
		}
		return *job.TaskGroups[0].Count
	}
	running := func() int {
		allocs, _, err := agent.Client.Jobs().Allocations("butter-zz", false, nil)
		if err != nil {
			return -1
		}
		n := 0
		for _, a := range allocs {
			if a.ClientStatus == "running" {
				n++
			}
		}
		return n
	}
	e2etest.WaitFor(t, 2*time.Minute, "the idle pool scaled to zero allocations", func() bool { return count() == 0 && running() == 0 })

	client := &http.Client{Timeout: 2 * time.Minute}
	start := time.Now()
	resp, err := client.Post("http://"+gwAddr+"/hi", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatalf("the call to the sleeping pool: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "hi" {
		t.Fatalf("the call to the sleeping pool: %d %q, want 200 \"hi\"", resp.StatusCode, b)
	}
	t.Logf("answered %v after the call, through the wake", time.Since(start).Round(time.Millisecond))
	if c := count(); c < 1 {
		t.Errorf("count %d after the wake, want at least 1", c)
	}
	st, _, err := agent.Client.Jobs().ScaleStatus("butter-zz", nil)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, ev := range st.TaskGroups["default"].Events {
		msgs = append(msgs, ev.Message)
	}
	if all := strings.Join(msgs, "\n"); !strings.Contains(all, "butter autoscaler: 0 -> 1: wake: a gateway holds") {
		t.Errorf("Nomad's scaling events lack the wake:\n%s", all)
	}
	if !strings.Contains(gwOut.String(), "waking a pool with no allocation") {
		t.Errorf("the gateway did not say it woke the pool")
	}
}
