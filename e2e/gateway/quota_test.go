package gateway

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/e2e/e2etest"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/internal/testport"
	"github.com/butterfn/butter/jobs"
)

const quotaProject = `project "metered" {}

function "echo" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route = "POST /echo"
  }
}
`

// TestQuotaProcesses: `butter project quota set` on a real `butter
// server`: `quota get` shows it, a real `butter gateway` picks the
// requests-per-second quota up at its next refresh and answers 429
// QuotaExceeded over it, and `butter deploy` of a revision over
// max_functions fails naming the limit.
func TestQuotaProcesses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "metered")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "metered.fn.hcl"), []byte(quotaProject), 0o644); err != nil {
		t.Fatal(err)
	}
	s := e2etest.StartServer(t)
	addr := "http://" + s.HTTP
	if r := e2etest.Butter(t, ".", "deploy", "-address", addr, dir); r.Code != 0 {
		t.Fatalf("deploy: %+v", r)
	}
	proj, rep := spec.Load(dir)
	if rep.HasErrors() {
		t.Fatal("spec")
	}
	cfgJSON, _ := json.Marshal(jobs.LocalConfig(proj))
	cfgPath := filepath.Join(t.TempDir(), "pool.json")
	if err := os.WriteFile(cfgPath, cfgJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	poolAddr, gwAddr := testport.Addr(t), testport.Addr(t)
	startProc(t, "pool", "pool", "-config", cfgPath, "-dir", dir, "-listen", poolAddr)
	startProc(t, "gateway", "gateway", "-address", addr, "-endpoint", "metered/default="+poolAddr, "-listen", gwAddr, "-refresh", "200ms")
	post := func() (int, string) {
		resp, err := http.Post("http://"+gwAddr+"/echo", "text/plain", strings.NewReader("hi"))
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		var body struct{ Error, Type string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Type + ": " + body.Error
	}
	e2etest.WaitFor(t, time.Minute, "the route answering", func() bool { code, _ := post(); return code == 200 })

	r := e2etest.Butter(t, ".", "project", "quota", "set", "-address", addr, "-rps", "0.001", "-max-functions", "1", "metered")
	if r.Code != 0 || !strings.Contains(r.Stdout, "requests per second  0.001") {
		t.Fatalf("quota set: %+v", r)
	}
	r = e2etest.Butter(t, ".", "project", "quota", "get", "-address", addr, "metered")
	if r.Code != 0 || !strings.Contains(r.Stdout, "max functions        1") || !strings.Contains(r.Stdout, "max instances        no limit") {
		t.Fatalf("quota get: %+v", r)
	}
	// At 0.001 per second, the burst of one is spent by the first call
	// after the gateway's refresh, and nothing refills within the test.
	var last string
	e2etest.WaitFor(t, time.Minute, "a 429 from the project's quota", func() bool {
		code, msg := post()
		last = msg
		return code == 429
	})
	if !strings.HasPrefix(last, "QuotaExceeded: project metered takes at most 0.001 requests per second") {
		t.Errorf("429 answer %q", last)
	}

	// A second function is over max_functions = 1: the deploy fails,
	// naming the limit, and the active revision stays.
	two := quotaProject + "\nfunction \"shout\" {\n  runtime = \"exec\"\n  command = [\"cat\"]\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "metered.fn.hcl"), []byte(two), 0o644); err != nil {
		t.Fatal(err)
	}
	r = e2etest.Butter(t, ".", "deploy", "-address", addr, dir)
	if r.Code == 0 || !strings.Contains(r.Stderr+r.Stdout, "may have 1 (max_functions)") {
		t.Fatalf("deploy over the quota: %+v", r)
	}
}
