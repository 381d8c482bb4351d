package dev

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/e2e/e2etest"
	"github.com/butterfn/butter/internal/testport"
)

// TestJavaExample runs examples/java under `butter dev`, its sources
// compiled by the JDK's javac at the pool's start: greet answers behind
// its route with the route's parameter, the query and a header it sets,
// and refuses a name too long as PreconditionFailed (422); visits counts per
// user in per-key state. Then an edit of greet's source is served after
// dev's redeploy.
func TestJavaExample(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "java")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(e2etest.Root(), "examples", "java"))); err != nil {
		t.Fatal(err)
	}
	gw := testport.Addr(t)
	startDev(t, exec.Command(e2etest.Bin(), "dev", "-listen", gw, "-server-addr", testport.Addr(t), dir))
	post := func(path string) (int, string, http.Header) {
		t.Helper()
		resp, err := http.Post("http://"+gw+path, "text/plain", strings.NewReader(""))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	if code, body, h := post("/greet/Ada?shout=1"); code != 200 || body != `{"greeting":"HELLO, ADA!"}` || h.Get("X-Greeter") != "java" {
		t.Errorf("POST /greet/Ada?shout=1: %d %q %v", code, body, h)
	}
	if code, body, _ := post("/greet/" + strings.Repeat("x", 41)); code != 422 || !strings.Contains(body, "PreconditionFailed") || !strings.Contains(body, "at most 40 characters") {
		t.Errorf("a name too long: %d %q, want 422 PreconditionFailed", code, body)
	}
	for i, want := range []string{`"visits":1`, `"visits":2`} {
		if code, body, _ := post("/visits/ada"); code != 200 || !strings.Contains(body, want) || !strings.Contains(body, `"user":"ada"`) {
			t.Errorf("visit %d: %d %q, want %s", i+1, code, body, want)
		}
	}
	if code, body, _ := post("/visits/bob"); code != 200 || !strings.Contains(body, `"visits":1`) {
		t.Errorf("bob's first visit: %d %q", code, body)
	}

	src := filepath.Join(dir, "functions", "greet", "example", "Greet.java")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, []byte(strings.Replace(string(b), `"Hello, "`, `"Hi, "`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	e2etest.WaitFor(t, 2*time.Minute, "the edited greeting served", func() bool {
		_, body, _ := post("/greet/Ada")
		return body == `{"greeting":"Hi, Ada!"}`
	})
}
