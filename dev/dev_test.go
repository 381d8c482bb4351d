package dev_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/dev"
	"github.com/butterfn/butter/internal/testport"
	"github.com/butterfn/butter/sandbox"
)

// TestMain lets the test binary serve as the sandbox shim, as the butter
// binary does under butter dev: every pool confines its instances.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == sandbox.Command {
		os.Exit(sandbox.Main(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// lines is a UI that records what Run reports.
type lines struct {
	mu  sync.Mutex
	out []string
}

func (l *lines) Output(s string) { l.mu.Lock(); l.out = append(l.out, s); l.mu.Unlock() }
func (l *lines) Error(s string)  { l.Output("ERROR " + s) }
func (l *lines) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.out, "\n")
}

// devRun is a dev.Run in this process, which the test's cleanup stops.
type devRun struct {
	ui      *lines
	cancel  context.CancelFunc
	stopped chan struct{} // closed once Run has returned err
	err     error
}

// runDev runs dev.Run on cfg, with the test's UI (and a temporary data
// dir, a free control-plane port and no diagnostics, unless cfg sets
// them), and waits until it reports ready. The test's cleanup ends it and
// waits up to a minute for it to return.
func runDev(t *testing.T, cfg dev.Config) *devRun {
	t.Helper()
	r := &devRun{ui: &lines{}, stopped: make(chan struct{})}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.ServerAddr == "" {
		cfg.ServerAddr = testport.Addr(t)
	}
	if cfg.Diagnostics == nil {
		cfg.Diagnostics = io.Discard
	}
	cfg.UI = r.ui
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		r.err = dev.Run(ctx, cfg)
		close(r.stopped)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.stopped:
		case <-time.After(time.Minute):
			t.Error("Run did not return within a minute of its context ending")
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(r.ui.text(), "butter dev ready") {
		select {
		case <-r.stopped:
			t.Fatalf("Run returned before ready: %v\n%s", r.err, r.ui.text())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within 2 minutes:\n%s", r.ui.text())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r
}

func project(t *testing.T, spec string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.fn.hcl"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestRun runs the whole dev platform in this process on an exec
// function: the ready line and routes are reported, the gateway serves
// the route through the pool, and ending the context stops everything.
func TestRun(t *testing.T) {
	dir := project(t, `project "up" {}

function "upper" {
  runtime = "exec"
  command = ["tr", "a-z", "A-Z"]

  trigger "http" {
    route = "POST /upper"
  }
}
`)
	listen := testport.Addr(t)
	r := runDev(t, dev.Config{Dir: dir, Listen: listen})
	ui := r.ui
	out := ui.text()
	for _, want := range []string{`==> project "up" deployed (revision `, "POST    http://" + listen + "/upper -> upper", "control plane: http://", "try: curl"} {
		if !strings.Contains(out, want) {
			t.Errorf("the report lacks %q:\n%s", want, out)
		}
	}
	resp, err := http.Post("http://"+listen+"/upper", "text/plain", strings.NewReader("shout"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(body, []byte("SHOUT")) {
		t.Fatalf("POST /upper: %s %q", resp.Status, body)
	}
	r.cancel()
	select {
	case <-r.stopped:
		if r.err != nil {
			t.Fatal(r.err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run did not return within a minute of its context ending")
	}
	if !strings.HasSuffix(ui.text(), "==> stopping") {
		t.Fatalf("no stopping line:\n%s", ui.text())
	}
}

// TestRunInvalid: a spec that does not load is ErrInvalid, with its
// diagnostics written, and nothing starts.
func TestRunInvalid(t *testing.T) {
	dir := project(t, `function "f" { runtime = "cobol" }`)
	var diag bytes.Buffer
	err := dev.Run(context.Background(), dev.Config{Dir: dir, UI: &lines{}, Diagnostics: &diag})
	if !errors.Is(err, dev.ErrInvalid) || !strings.Contains(diag.String(), "cobol") {
		t.Fatalf("got %v, diagnostics:\n%s", err, diag.String())
	}
	if _, err := os.Stat(filepath.Join(dir, ".butter")); !os.IsNotExist(err) {
		t.Fatalf("an invalid project left state behind: %v", err)
	}
}
