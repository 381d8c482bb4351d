package pool_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/sandbox"
	"github.com/butterfn/butter/secrets"
)

// TestMain lets the test binary serve as the sandbox shim, as the butter
// binary does under `butter pool`.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == sandbox.Command {
		os.Exit(sandbox.Main(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// memSource is an in-memory secrets.Source whose values the test changes,
// standing in for the files Nomad renders (secrets.Rendered is tested on
// Nomad with Vault in e2e/nomad).
type memSource struct {
	mu   sync.Mutex
	vals map[string]map[string]string
}

func (m *memSource) set(fn, name, v string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.vals[fn] = map[string]string{name: v}
}

func (m *memSource) Values(fn string, refs []secrets.Ref) (map[string]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]string{}
	for _, r := range refs {
		v := m.vals[fn][r.Name]
		if v == "" {
			return nil, &secrets.MissingError{Function: fn, Ref: r, Where: "the test's map"}
		}
		out[r.Name] = v
	}
	return out, nil
}

func requireSandbox(t *testing.T) {
	t.Helper()
	if err := sandbox.Available(); err != nil {
		if os.Getenv("CI") != "" || os.Getenv("BUTTER_REQUIRE_NOMAD") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// TestSecretsReachOnlyTheirFunctionAndRotate: a function's secret is in
// its own instances' environment and nowhere its neighbour can reach (its
// environment, the hidden secrets directory, the holder's /proc); a
// changed value replaces the holder's instances only, under a client loop
// that sees no failure.
func TestSecretsReachOnlyTheirFunctionAndRotate(t *testing.T) {
	requireSandbox(t)
	task := t.TempDir()
	secretsDir := filepath.Join(task, "secrets")
	if err := os.MkdirAll(secretsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(secretsDir, "vault_token")
	if err := os.WriteFile(token, []byte("hvs.TASKTOKEN"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := &memSource{vals: map[string]map[string]string{}}
	src.set("holder", "DB_PASSWORD", "first-value")
	holder := fn("holder", "go")
	holder.MinInstances = 2
	holder.Secrets = []secrets.Ref{{Name: "DB_PASSWORD", Path: "secret/data/butter/test/db", Key: "password"}}
	nosy := fn("nosy", "go")
	nosy.MinInstances = 1
	p, srv := start(t, []pool.FunctionConfig{holder, nosy}, pool.WithSecrets(src),
		pool.WithSandbox(sandbox.Config{Exe: os.Args[0], Hide: []string{task}}))

	if a := invoke(t, srv, "holder", strings.NewReader("env:DB_PASSWORD"), nil); a.body != "first-value" {
		t.Fatalf("the holder reads DB_PASSWORD as %+v", a)
	}
	if a := invoke(t, srv, "nosy", strings.NewReader("env:DB_PASSWORD"), nil); a.code != 200 || a.body != "" {
		t.Fatalf("the neighbour's environment: %+v", a)
	}
	pid := invoke(t, srv, "holder", strings.NewReader("pid"), nil).body
	if b, err := os.ReadFile("/proc/" + pid + "/environ"); err != nil || !strings.Contains(string(b), "first-value") {
		t.Fatalf("the pool itself cannot see the holder's secret in /proc/%s/environ (%v): the test cannot tell anything", pid, err)
	}
	for _, path := range []string{"/proc/" + pid + "/environ", "/proc/" + pid + "/mem", token, secretsDir + "/"} {
		a := invoke(t, srv, "nosy", strings.NewReader("read:"+path), nil)
		if !strings.HasPrefix(a.body, "error: ") || strings.Contains(a.body, "first-value") || strings.Contains(a.body, "TASKTOKEN") {
			t.Errorf("the neighbour reads %s: %.80s", path, a.body)
		}
	}
	if a := invoke(t, srv, "holder", strings.NewReader("read:"+token), nil); !strings.HasPrefix(a.body, "error: ") {
		t.Errorf("a function reads the task's Vault token: %+v", a)
	}
	nosyPid := invoke(t, srv, "nosy", strings.NewReader("pid"), nil).body

	// Rotation under load.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var calls, failed atomic.Int64
	var sawNew atomic.Bool
	var failures sync.Map
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				a := invoke(t, srv, "holder", strings.NewReader("env:DB_PASSWORD"), nil)
				calls.Add(1)
				switch a.body {
				case "second-value":
					sawNew.Store(true)
				case "first-value":
				default:
					failed.Add(1)
					failures.Store(fmt.Sprint(i, a), true)
				}
			}
		}()
	}
	eventually(t, 30*time.Second, "calls before the rotation", func() bool { return calls.Load() > 20 })
	src.set("holder", "DB_PASSWORD", "second-value")
	if err := p.ReloadSecrets(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the new value", sawNew.Load)
	before := calls.Load()
	eventually(t, 30*time.Second, "calls after the rotation", func() bool { return calls.Load() > before+20 })
	cancel()
	wg.Wait()
	if n := failed.Load(); n > 0 {
		failures.Range(func(k, _ any) bool { t.Log(k); return true })
		t.Fatalf("%d of %d calls failed over the rotation", n, calls.Load())
	}
	if a := invoke(t, srv, "holder", strings.NewReader("env:DB_PASSWORD"), nil); a.body != "second-value" {
		t.Errorf("after the rotation the holder reads %+v", a)
	}
	eventually(t, 30*time.Second, "the old instance "+pid+" retired", func() bool {
		_, err := os.Stat("/proc/" + pid)
		return os.IsNotExist(err)
	})
	if got := invoke(t, srv, "nosy", strings.NewReader("pid"), nil).body; got != nosyPid {
		t.Errorf("the neighbour's instance was replaced too (pid %s, then %s)", nosyPid, got)
	}
	t.Logf("%d calls over the rotation, none failed", calls.Load())

	// A missing value keeps the old instances and says which secret.
	src.set("holder", "DB_PASSWORD", "")
	if err := p.ReloadSecrets(context.Background()); err == nil || !strings.Contains(err.Error(), "DB_PASSWORD") {
		t.Errorf("reload with a missing value: %v", err)
	}
	if a := invoke(t, srv, "holder", strings.NewReader("env:DB_PASSWORD"), nil); a.body != "second-value" {
		t.Errorf("after a failed reload the holder reads %+v", a)
	}
}

// A pool refuses to start a function whose secret has no value, and one
// with secrets but no sandbox.
func TestSecretsRefusals(t *testing.T) {
	requireSandbox(t)
	holder := fn("holder", "go")
	holder.Secrets = []secrets.Ref{{Name: "DB_PASSWORD", Path: "secret/data/x", Key: "password"}}
	cfg := &pool.Config{Project: "test", Pool: "p", Functions: []pool.FunctionConfig{holder}}
	src := &memSource{vals: map[string]map[string]string{}}
	if _, err := pool.New(cfg, nil, pool.WithSecrets(src), pool.WithSandbox(sandbox.Config{})); err == nil || !strings.Contains(err.Error(), "DB_PASSWORD") {
		t.Errorf("missing value: %v", err)
	}
	src.set("holder", "DB_PASSWORD", "x")
	if _, err := pool.New(cfg, nil, pool.WithSecrets(src)); err == nil || !strings.Contains(err.Error(), "confine") {
		t.Errorf("no sandbox: %v", err)
	}
	if _, err := pool.New(cfg, nil); err == nil || !strings.Contains(err.Error(), "no source") {
		t.Errorf("no source: %v", err)
	}
}
