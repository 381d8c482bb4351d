// Package gateway tests `butter gateway` as a process in the production
// shape: routes and API keys read from a `butter server`, requests sent
// to a `butter pool`, JWT auth, a streamed 1 GiB body, and butter invoke
// through the gateway.
package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/butterfn/butter/e2e/e2etest"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/internal/testlog"
	"github.com/butterfn/butter/internal/testport"
	"github.com/butterfn/butter/jobs"
)

func TestMain(m *testing.M) { e2etest.Main(m) }

// proc is a butter process the test started.
type proc struct {
	cmd *exec.Cmd
	out *testlog.Buffer
}

func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(e2etest.Bin(), args...), out: &testlog.Buffer{}}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		if t.Failed() {
			t.Logf("%s output (tail):\n%s", name, e2etest.Tail(p.out.String(), 4000))
		}
	})
	return p
}

// vmHWM reads a process's peak resident set size, in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

const gatewayProject = `project "front" {}

function "count" {
  runtime = "exec"
  command = ["wc", "-c"]
  timeout = "5m"
  trigger "http" {
    route = "POST /count"
  }
}

function "echo" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route = "POST /keyed"
    auth  = "api_key"
  }
  trigger "http" {
    route    = "POST /signed"
    auth     = "jwt"
    jwks_url = "%s"
    audience = "butter-test"
  }
}
`

// TestGatewayProcess runs the production shape on one machine: a butter
// server holding the revision and the API keys, a butter pool, and a
// butter gateway that reads its routes and keys from the server. It checks
// API-key and JWT auth, a 1 GiB body streamed to wc -c with the gateway's
// peak RSS printed and bounded, a route added by a new revision without a
// restart, and butter invoke through the gateway.
func TestGatewayProcess(t *testing.T) {
	// A JWKS served over HTTP on 127.0.0.1, and tokens signed with its key.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	}))
	defer jwks.Close()
	sign := func(aud string) string {
		sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.Signed(sig).Claims(jwt.Claims{Subject: "tester", Audience: jwt.Audience{aud}, Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	dir := filepath.Join(t.TempDir(), "front")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	specFile := filepath.Join(dir, "front.fn.hcl")
	if err := os.WriteFile(specFile, []byte(fmt.Sprintf(gatewayProject, jwks.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	s := e2etest.StartServer(t)
	addr := "http://" + s.HTTP
	if r := e2etest.Butter(t, ".", "deploy", "-address", addr, dir); r.Code != 0 {
		t.Fatalf("deploy: %+v", r)
	}
	r := e2etest.Butter(t, ".", "keys", "create", "-address", addr, "front")
	apiKey := strings.TrimSpace(r.Stdout)
	if r.Code != 0 || !strings.HasPrefix(apiKey, "bk_") {
		t.Fatalf("keys create: %+v", r)
	}

	// The pool, on the project's local config.
	proj, rep := spec.Load(dir)
	if rep.HasErrors() {
		t.Fatal("spec")
	}
	cfgJSON, _ := json.Marshal(jobs.LocalConfig(proj))
	cfgPath := filepath.Join(t.TempDir(), "pool.json")
	if err := os.WriteFile(cfgPath, cfgJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	poolAddr := testport.Addr(t)
	startProc(t, "pool", "pool", "-config", cfgPath, "-dir", dir, "-listen", poolAddr)
	gwAddr := testport.Addr(t)
	gw := startProc(t, "gateway", "gateway", "-address", addr, "-endpoint", "front/default="+poolAddr, "-listen", gwAddr, "-refresh", "200ms")
	base := "http://" + gwAddr

	call := func(path, auth string, body io.Reader) (int, string) {
		req, _ := http.NewRequest("POST", base+path, body)
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	e2etest.WaitFor(t, 30*time.Second, "the gateway serving the deployed routes", func() bool {
		code, _ := call("/count", "", strings.NewReader("abc"))
		return code == 200
	})

	// API keys.
	for _, c := range []struct {
		name, key string
		code      int
	}{{"no key", "", 401}, {"wrong key", "bk_wrong", 401}, {"right key", apiKey, 200}} {
		code, body := call("/keyed", c.key, strings.NewReader("hi"))
		if code != c.code || (c.code == 200 && body != "hi") {
			t.Errorf("%s: %d %s, want %d", c.name, code, body, c.code)
		}
	}
	// JWT.
	if code, body := call("/signed", sign("someone-else"), strings.NewReader("hi")); code != 401 {
		t.Errorf("JWT for the wrong audience: %d %s, want 401", code, body)
	}
	if code, body := call("/signed", sign("butter-test"), strings.NewReader("hi")); code != 200 || body != "hi" {
		t.Errorf("JWT for the right audience: %d %s, want 200 hi", code, body)
	}
	if code, body := call("/signed", "", strings.NewReader("hi")); code != 401 {
		t.Errorf("no JWT: %d %s, want 401", code, body)
	}

	// 1 GiB streamed through the gateway to wc -c.
	const size = 1 << 30
	before := vmHWM(t, gw.cmd.Process.Pid)
	start := time.Now()
	code, body := call("/count", "", io.LimitReader(zeros{}, size))
	took := time.Since(start)
	peak := vmHWM(t, gw.cmd.Process.Pid)
	t.Logf("1 GiB through the gateway in %s (%.0f MiB/s); gateway peak RSS %.1f MiB (%.1f MiB before)", took.Round(time.Millisecond), float64(size)/(1<<20)/took.Seconds(), float64(peak)/(1<<20), float64(before)/(1<<20))
	if code != 200 || body != strconv.Itoa(size) {
		t.Fatalf("wc -c answered %d %q, want %d", code, body, size)
	}
	if peak > 100<<20 {
		t.Errorf("the gateway's peak RSS is %.1f MiB; streaming should keep it under 100 MiB", float64(peak)/(1<<20))
	}

	// A new revision's route applies without a restart.
	f, err := os.OpenFile(specFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString("\nfunction \"shout\" {\n  runtime = \"exec\"\n  command = [\"tr\", \"a-z\", \"A-Z\"]\n  trigger \"http\" {\n    route = \"POST /shout\"\n  }\n}\n")
	f.Close()
	if r := e2etest.Butter(t, ".", "deploy", "-address", addr, dir); r.Code != 0 {
		t.Fatalf("deploy of the new route: %+v", r)
	}
	// (The pool learns the new function from the new revision's job in
	// production; here only the gateway's table is checked.)
	e2etest.WaitFor(t, 30*time.Second, "the new route in the gateway's table", func() bool {
		resp, err := http.Get(base + "/v1/routes")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), "/shout")
	})

	// butter invoke through the gateway: an ad-hoc pipeline.
	inv := exec.Command(e2etest.Bin(), "invoke", "-gateway", base, "-project", "front", "-api-key", apiKey, "echo | count")
	inv.Stdin = strings.NewReader("twelve bytes")
	out, err := inv.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "12" {
		t.Errorf("butter invoke \"echo | count\" through the gateway: %v %q, want 12", err, out)
	}
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
