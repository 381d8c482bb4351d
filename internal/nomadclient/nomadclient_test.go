package nomadclient

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
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
