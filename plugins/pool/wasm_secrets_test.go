package pool_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/sandbox"
	"github.com/butterfn/butter/secrets"
)

// TestWasmSecrets: a wasm module reads its function's secret from its
// environment, as every other runtime does (docs/secrets.md); a wasm
// neighbour in the same pool does not see it; a rotated value reaches
// the holder's next call.
func TestWasmSecrets(t *testing.T) {
	requireSandbox(t)
	dir := buildWasm(t)
	src := &memSource{vals: map[string]map[string]string{}}
	src.set("holder", "DB_PASSWORD", "first-value")
	holder := pool.FunctionConfig{Name: "holder", Runtime: "wasm", Bundle: dir, Handler: "fn.wasm", Timeout: "1m", MaxInstances: 2, Concurrency: 4,
		Secrets: []secrets.Ref{{Name: "DB_PASSWORD", Path: "secret/data/butter/test/db", Key: "password"}}}
	nosy := pool.FunctionConfig{Name: "nosy", Runtime: "wasm", Bundle: dir, Handler: "fn.wasm", Timeout: "1m", MaxInstances: 2, Concurrency: 4}
	p, srv := start(t, []pool.FunctionConfig{holder, nosy}, pool.WithSecrets(src), pool.WithSandbox(sandbox.Config{Exe: os.Args[0]}))

	if a := invoke(t, srv, "holder", strings.NewReader("env:DB_PASSWORD"), nil); a.code != 200 || a.body != "first-value" {
		t.Fatalf("the holder reads DB_PASSWORD as %+v", a)
	}
	if a := invoke(t, srv, "nosy", strings.NewReader("env:DB_PASSWORD"), nil); a.code != 200 || a.body != "" {
		t.Errorf("the neighbour's environment: %+v", a)
	}
	src.set("holder", "DB_PASSWORD", "second-value")
	if err := p.ReloadSecrets(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the rotated secret in the holder's calls", func() bool {
		return invoke(t, srv, "holder", strings.NewReader("env:DB_PASSWORD"), nil).body == "second-value"
	})
}
