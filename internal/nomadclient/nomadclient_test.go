package nomadclient

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/butterfn/butter/internal/testlog"
	"github.com/butterfn/butter/internal/testport"
	"github.com/hashicorp/nomad/api"
)

// TestNewCarriesEnvironment: a client made with an explicit address still
// carries NOMAD_TOKEN, NOMAD_NAMESPACE and NOMAD_REGION on its calls, and
// trusts the TLS server only through NOMAD_CACERT. The server is an
// httptest TLS server standing in for Nomad's HTTP API (it records what a
// call carries, which a real agent does not show).
func TestNewCarriesEnvironment(t *testing.T) {
	var mu sync.Mutex
	var token, ns, region string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		token, ns, region = r.Header.Get("X-Nomad-Token"), r.URL.Query().Get("namespace"), r.URL.Query().Get("region")
		mu.Unlock()
		w.Header().Set("X-Nomad-Index", "1")
		_, _ = w.Write([]byte("[]"))
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOMAD_ADDR", "http://127.0.0.1:1") // the flag wins over it
	t.Setenv("NOMAD_TOKEN", "secret-token")
	t.Setenv("NOMAD_NAMESPACE", "butter")
	t.Setenv("NOMAD_REGION", "eu")
	t.Setenv("NOMAD_CACERT", ca)

	if got := Address(srv.URL); got != srv.URL {
		t.Errorf("Address(flag) = %q", got)
	}
	if got := Address(""); got != "http://127.0.0.1:1" {
		t.Errorf("Address(\"\") = %q, want $NOMAD_ADDR", got)
	}
	cfg := Config(srv.URL)
	if cfg.Address != srv.URL || cfg.SecretID != "secret-token" || cfg.Namespace != "butter" || cfg.Region != "eu" || cfg.TLSConfig.CACert != ca {
		t.Errorf("Config = %+v (TLS %+v)", cfg, cfg.TLSConfig)
	}
	if got := Config("").Address; got != "http://127.0.0.1:1" {
		t.Errorf("Config(\"\").Address = %q, want $NOMAD_ADDR", got)
	}

	c, err := New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Jobs().List(nil); err != nil {
		t.Fatalf("list jobs over TLS with NOMAD_CACERT: %v", err)
	}
	mu.Lock()
	if token != "secret-token" || ns != "butter" || region != "eu" {
		t.Errorf("the call carried token %q, namespace %q, region %q", token, ns, region)
	}
	mu.Unlock()

	// Without the CA the same server is not trusted: the CA is what made
	// the call above work.
	t.Setenv("NOMAD_CACERT", "")
	c, err = New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Jobs().List(nil); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("list jobs without the CA: %v, want a certificate error", err)
	}
}

// TestACLAgent runs a real Nomad dev agent with ACLs enabled and
// bootstrapped: with NOMAD_TOKEN set to the management token, the client
// New makes lists jobs; without a token, or with a wrong one, Check's
// error names the cause.
func TestACLAgent(t *testing.T) {
	bin := nomadtest.Binary(t)
	dir := t.TempDir()
	httpPort, rpc, serf := testport.Port(t), testport.Port(t), testport.Port(t)
	cfg := fmt.Sprintf(`
bind_addr = "127.0.0.1"
ports {
  http = %d
  rpc  = %d
  serf = %d
}
acl {
  enabled = true
}
client {
  options = {
    "fingerprint.denylist" = "env_aws,env_gce,env_azure,env_digitalocean"
  }
}
`, httpPort, rpc, serf)
	cfgPath := filepath.Join(dir, "agent.hcl")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var log testlog.Buffer
	cmd := exec.Command(bin, "agent", "-dev", "-config", cfgPath)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, &log, &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		// SIGINT lets the dev agent remove its temporary data dir.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("nomad log:\n%s", log.String())
		}
	})
	addr := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	t.Setenv("NOMAD_ADDR", "")
	t.Setenv("NOMAD_TOKEN", "")
	t.Setenv("NOMAD_NAMESPACE", "")
	t.Setenv("NOMAD_REGION", "")
	anon, err := New(addr)
	if err != nil {
		t.Fatal(err)
	}
	// Bootstrap once the agent has a leader (needs no token).
	var mgmt *api.ACLToken
	deadline := time.Now().Add(90 * time.Second)
	for {
		if leader, err := anon.Status().Leader(); err == nil && leader != "" {
			if mgmt, _, err = anon.ACLTokens().Bootstrap(nil); err == nil {
				break
			}
		}
		select {
		case <-exited:
			t.Fatal("nomad exited")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no leader to bootstrap ACLs after 90s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	ctx := context.Background()

	err = Check(ctx, anon)
	if err == nil || !strings.Contains(err.Error(), "no token was given (set $NOMAD_TOKEN)") || !strings.Contains(err.Error(), "403") {
		t.Errorf("without a token: %v", err)
	}
	t.Setenv("NOMAD_TOKEN", "00000000-0000-0000-0000-000000000000")
	wrong, err := New(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(ctx, wrong); err == nil || !strings.Contains(err.Error(), "refused the token in $NOMAD_TOKEN") {
		t.Errorf("with a wrong token: %v", err)
	}
	t.Setenv("NOMAD_TOKEN", mgmt.SecretID)
	c, err := New(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(ctx, c); err != nil {
		t.Errorf("with the management token: %v", err)
	}
}
