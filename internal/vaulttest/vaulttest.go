// Package vaulttest starts a real Vault dev server (`vault server -dev`,
// from the build pinned in tools/vault/) for tests, on a free port on
// 127.0.0.1 with a random root token, and stops it when the test ends.
//
// The binary is bin/vault at the repository root, built by `make tools`,
// or the path in $BUTTER_VAULT. When it is missing, tests fail under
// `make test` (which sets BUTTER_REQUIRE_NOMAD=1) and in CI, and are
// skipped with a hint otherwise, as in internal/nomadtest.
package vaulttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/butterfn/butter/internal/testlog"
	"github.com/butterfn/butter/internal/testport"
)

// Server is a running Vault dev server: unsealed, in memory, with KV v2
// mounted at secret/ as every dev server has.
type Server struct {
	// Addr is the server's address, like http://127.0.0.1:43123.
	Addr string
	// RootToken is the dev server's root token.
	RootToken string
	// Bin is the vault binary.
	Bin string
	// Client talks to the server with the root token.
	Client *api.Client

	log    *testlog.Buffer
	cmd    *exec.Cmd
	exited chan error
}

// Binary returns the vault binary, failing or skipping the test when it
// is missing (see the package doc).
func Binary(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("BUTTER_VAULT")
	if bin == "" {
		bin = filepath.Join(nomadtest.RepoRoot(t), "bin", "vault")
	}
	if _, err := os.Stat(bin); err != nil {
		msg := fmt.Sprintf("vault binary %s not found: run `make tools` first", bin)
		if os.Getenv("BUTTER_REQUIRE_NOMAD") != "" || os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

// readyTimeout bounds the wait for a dev server to be unsealed and
// active; it takes about a second when the machine is idle.
const readyTimeout = 60 * time.Second

// Start starts a dev server and waits until it is initialized, unsealed
// and active. The server is stopped when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	token := randomToken(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := &Server{Addr: "http://" + addr, RootToken: token, Bin: bin, log: &testlog.Buffer{}}

	cfg := api.DefaultConfig()
	cfg.Address = s.Addr
	cfg.MaxRetries = 0
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	client.SetToken(token)
	s.Client = client

	cmd := exec.Command(bin, "server", "-dev",
		"-dev-root-token-id="+token,
		"-dev-listen-address="+addr,
		"-dev-no-store-token")
	cmd.Dir = dir
	// The dev server must not pick up the caller's Vault settings, and
	// HOME keeps any token helper file inside the test's directory.
	cmd.Env = append(filteredEnv(), "HOME="+dir)
	cmd.Stdout = s.log
	cmd.Stderr = s.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start vault server: %v", err)
	}
	s.cmd = cmd
	s.exited = make(chan error, 1)
	go func() { s.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("vault server log (tail):\n%s", tail(s.log.String(), 6000))
		}
	})
	s.waitReady(t)
	return s
}

// waitReady polls sys/health until the server is initialized, unsealed
// and active, and the root token works.
func (s *Server) waitReady(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	var last error
	for {
		h, err := s.Client.Sys().HealthWithContext(ctx)
		switch {
		case err != nil:
			last = err
		case !h.Initialized || h.Sealed || h.Standby:
			last = fmt.Errorf("initialized=%v sealed=%v standby=%v", h.Initialized, h.Sealed, h.Standby)
		default:
			if _, err := s.Client.Auth().Token().LookupSelfWithContext(ctx); err != nil {
				last = err
			} else {
				return
			}
		}
		select {
		case err := <-s.exited:
			s.exited <- err // for stop
			t.Fatalf("vault server exited before it was ready: %v\n%s", err, tail(s.log.String(), 6000))
		case <-ctx.Done():
			t.Fatalf("vault server not ready after %v (last: %v):\n%s", readyTimeout, last, tail(s.log.String(), 6000))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop interrupts the server and waits for it to exit.
func (s *Server) stop() {
	if s.cmd == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
	s.cmd = nil
}

// Env returns VAULT_ADDR and VAULT_TOKEN for the server, to append to a
// child process's environment.
func (s *Server) Env() []string {
	return []string{"VAULT_ADDR=" + s.Addr, "VAULT_TOKEN=" + s.RootToken}
}

// Log returns what the server has printed so far.
func (s *Server) Log() string { return s.log.String() }

// filteredEnv is the environment without the VAULT_* variables.
func filteredEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if len(kv) >= 6 && kv[:6] == "VAULT_" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func randomToken(t testing.TB) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "root-" + hex.EncodeToString(b)
}

func freePort(t testing.TB) int { return testport.Port(t) }

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// Stop stops the server now, as an outage would; the test's cleanup then
// has nothing left to stop.
func (s *Server) Stop() { s.stop() }
