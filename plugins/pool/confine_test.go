package pool_test

import (
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/sandbox"
	"github.com/butterfn/butter/secrets"
)

// bundles copies the Go test function into n bundle directories of their
// own, each with a file of its own that only the function may read.
func bundles(t *testing.T, names ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range names {
		dir := filepath.Join(t.TempDir(), n)
		if err := os.CopyFS(dir, os.DirFS("testdata/gofn")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "private.txt"), []byte("private to "+n), 0o644); err != nil {
			t.Fatal(err)
		}
		out[n] = dir
	}
	return out
}

// confinedPair starts a pool of two functions, holder and nosy, each with
// a bundle of its own and no secrets, and the holder with a variable in
// its environment; nosy's config is changed by tune.
func confinedPair(t *testing.T, tune func(*pool.FunctionConfig), opts ...pool.Option) (*pool.Pool, map[string]string, func(fn, in string) answer, *httptest.Server) {
	t.Helper()
	b := bundles(t, "holder", "nosy")
	holder := fn("holder", "go")
	holder.Bundle, holder.MinInstances = b["holder"], 1
	holder.Env = map[string]string{"PRIVATE_SETTING": "holder-only-value"}
	nosy := fn("nosy", "go")
	nosy.Bundle, nosy.MinInstances = b["nosy"], 1
	if tune != nil {
		tune(&nosy)
	}
	p, srv := start(t, []pool.FunctionConfig{holder, nosy}, opts...)
	call := func(f, in string) answer { return invoke(t, srv, f, strings.NewReader(in), nil) }
	return p, b, call, srv
}

// TestPoolWithoutSecretsIsConfined: in a pool that hosts no secrets, a
// function cannot read its neighbour's bundle or its instance's
// /proc/<pid>/environ, and still reads its own bundle; the same reads
// succeed from this unconfined test process, so the test cannot pass by
// reading nothing.
func TestPoolWithoutSecretsIsConfined(t *testing.T) {
	requireSandbox(t)
	p, b, call, _ := confinedPair(t, nil, pool.WithSandbox(sandbox.Config{Exe: os.Args[0]}))
	holderBundle := b["holder"]
	if w := p.Warnings(); len(w) != 0 {
		t.Errorf("a confined pool warns: %q", w)
	}
	pid := call("holder", "pid").body
	environ := "/proc/" + pid + "/environ"
	if b, err := os.ReadFile(environ); err != nil || !strings.Contains(string(b), "holder-only-value") {
		t.Fatalf("the test cannot see the holder's environment in %s (%v): it cannot tell anything", environ, err)
	}
	for _, path := range []string{filepath.Join(holderBundle, "private.txt"), holderBundle + "/", environ, "/proc/" + pid + "/mem"} {
		if a := call("nosy", "read:"+path); !strings.HasPrefix(a.body, "error: ") || strings.Contains(a.body, "private to holder") || strings.Contains(a.body, "holder-only-value") {
			t.Errorf("the neighbour reads %s: %.80s", path, a.body)
		}
	}
	if a := call("holder", "read:"+filepath.Join(holderBundle, "private.txt")); a.body != "private to holder" {
		t.Errorf("the holder cannot read its own bundle: %+v", a)
	}
	if a := call("holder", "env:PRIVATE_SETTING"); a.body != "holder-only-value" {
		t.Errorf("the holder lost its own environment: %+v", a)
	}
}

// TestSandboxOptOut: a function with sandbox = false (Unconfined) reads
// what a confined neighbour could not, and the pool says so in its
// warnings and its health answer; in a pool with secrets it refuses to
// start.
func TestSandboxOptOut(t *testing.T) {
	requireSandbox(t)
	p, b, call, srv := confinedPair(t, func(f *pool.FunctionConfig) { f.Unconfined = true }, pool.WithSandbox(sandbox.Config{Exe: os.Args[0]}))
	holderBundle := b["holder"]
	if a := call("nosy", "read:"+filepath.Join(holderBundle, "private.txt")); a.body != "private to holder" {
		t.Errorf("the unconfined function cannot read its neighbour's bundle: %+v", a)
	}
	pid := call("holder", "pid").body
	if a := call("nosy", "read:/proc/"+pid+"/environ"); !strings.Contains(a.body, "holder-only-value") {
		t.Errorf("the unconfined function cannot read its neighbour's environment: %.80s", a.body)
	}
	// The holder stays confined: it cannot read the opted-out bundle.
	if a := call("holder", "read:"+filepath.Join(b["nosy"], "private.txt")); !strings.HasPrefix(a.body, "error: ") {
		t.Errorf("the confined neighbour of an unconfined function reads its bundle: %+v", a)
	}
	if w := strings.Join(p.Warnings(), "\n"); !strings.Contains(w, "function nosy runs unconfined (sandbox = false") {
		t.Errorf("warnings = %q", w)
	}
	if _, body := health(t, srv); !strings.Contains(body, "function nosy runs unconfined") {
		t.Errorf("the health answer does not say that nosy runs unconfined: %s", body)
	}

	holder := fn("holder", "go")
	holder.Secrets = []secrets.Ref{{Name: "DB_PASSWORD", Path: "secret/data/x", Key: "password"}}
	nosy := fn("nosy", "go")
	nosy.Unconfined = true
	src := &memSource{vals: map[string]map[string]string{}}
	src.set("holder", "DB_PASSWORD", "x")
	cfg := &pool.Config{Project: "test", Pool: "p", Functions: []pool.FunctionConfig{holder, nosy}}
	if _, err := pool.New(cfg, nil, pool.WithSecrets(src), pool.WithSandbox(sandbox.Config{})); err == nil || !strings.Contains(err.Error(), "functions nosy in the same pool have sandbox = false") {
		t.Errorf("a pool with secrets and an unconfined function: %v", err)
	}
}

// TestSandboxUnavailable: on a kernel without Landlock (the check
// injected), a pool without secrets starts with its instances
// unconfined, and says so in its warnings and health answer; a pool with
// secrets refuses to start, naming the cause.
func TestSandboxUnavailable(t *testing.T) {
	noLandlock := func() error { return errors.New("landlock is not available on this kernel (test)") }
	p, b, call, srv := confinedPair(t, nil, pool.WithSandbox(sandbox.Config{Exe: os.Args[0]}), pool.WithSandboxAvailable(noLandlock))
	holderBundle := b["holder"]
	if a := call("nosy", "read:"+filepath.Join(holderBundle, "private.txt")); a.body != "private to holder" {
		t.Errorf("without Landlock the pool still confined its instances, or failed: %+v", a)
	}
	w := strings.Join(p.Warnings(), "\n")
	if !strings.Contains(w, "run unconfined") || !strings.Contains(w, "landlock is not available on this kernel (test)") {
		t.Errorf("warnings = %q", w)
	}
	if code, body := health(t, srv); code != 203 || !strings.Contains(body, "landlock is not available") {
		t.Errorf("the health answer does not say that the pool is unconfined (203 with the warning): %d %s", code, body)
	}

	holder := fn("holder", "go")
	holder.Secrets = []secrets.Ref{{Name: "DB_PASSWORD", Path: "secret/data/x", Key: "password"}}
	src := &memSource{vals: map[string]map[string]string{}}
	src.set("holder", "DB_PASSWORD", "x")
	cfg := &pool.Config{Project: "test", Pool: "p", Functions: []pool.FunctionConfig{holder}}
	if _, err := pool.New(cfg, nil, pool.WithSecrets(src), pool.WithSandbox(sandbox.Config{}), pool.WithSandboxAvailable(noLandlock)); err == nil || !strings.Contains(err.Error(), "landlock is not available") {
		t.Errorf("a pool with secrets without Landlock: %v", err)
	}
}
