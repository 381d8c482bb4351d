package dev

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/butterfn/butter/e2e/e2etest"
	"github.com/butterfn/butter/internal/testport"
)

// TestWasmUnderDev: a wasm function (the Go module of
// plugins/pool/testdata/wasmfn, built for wasip1 by the test) runs under
// `butter dev` behind its gateway route: it answers, keeps per-key state
// (dev's embedded broker holds its changelog) and emits to a stream its
// spec declares.
func TestWasmUnderDev(t *testing.T) {
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "fn.wasm"), ".")
	build.Dir = filepath.Join(e2etest.Root(), "plugins", "pool", "testdata", "wasmfn")
	build.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the wasm module: %v\n%s", err, out)
	}
	spec := `project "w" {}

stream "alerts" {}

function "up" {
  runtime = "wasm"
  source  = "fn.wasm"
  memory  = 64
  emits   = [stream.alerts]
  trigger "http" {
    route = "POST /up"
  }
  state {
    key = "device"
  }
}
`
	if err := os.WriteFile(filepath.Join(dir, "w.fn.hcl"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	gw := testport.Addr(t)
	startDev(t, exec.Command(e2etest.Bin(), "dev", "-listen", gw, "-server-addr", testport.Addr(t), dir))
	post := func(body string) (int, string) {
		t.Helper()
		resp, err := http.Post("http://"+gw+"/up", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post("abc"); code != 200 || body != "ABC" {
		t.Errorf("POST /up abc: %d %q, want 200 ABC", code, body)
	}
	for i, want := range []string{`{"key":"d1","n":1}`, `{"key":"d1","n":2}`} {
		if code, body := post(`{"count":1,"device":"d1"}`); code != 200 || body != want {
			t.Errorf("count %d: %d %q, want %s", i+1, code, body, want)
		}
	}
	if code, body := post("emit"); code != 200 || body != "emitted" {
		t.Errorf("POST /up emit: %d %q, want 200 emitted", code, body)
	}
}
