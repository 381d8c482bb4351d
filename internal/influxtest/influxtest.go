// Package influxtest runs a real InfluxDB 1.x (Debian's influxdb, which
// `make test-deps` installs) on 127.0.0.1 for tests, with its data in a
// temporary directory, and queries it.
package influxtest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/butterfn/butter/internal/testport"
	"github.com/butterfn/butter/internal/testproc"
)

// Server is a running influxd.
type Server struct {
	*testproc.Proc
	// URL is its HTTP API, http://127.0.0.1:<port> (https:// for a
	// server started with StartTLS).
	URL string
	// User and Password are its admin's login, for a server started with
	// StartWithAuth; the queries log in with them.
	User, Password string

	t      testing.TB
	client *http.Client
}

// Start starts influxd and creates database db.
func Start(t testing.TB, db string) *Server {
	t.Helper()
	return start(t, db, "", "", nil)
}

// TLS is the certificate an https server presents (PEM), and the CA
// that signed it, which its own queries trust.
type TLS struct {
	Cert, Key, CA []byte
}

// StartTLS starts influxd serving its HTTP API over https only
// (https-enabled), with the certificate of tc.
func StartTLS(t testing.TB, db string, tc TLS) *Server {
	t.Helper()
	return start(t, db, "", "", &tc)
}

// StartWithAuth starts influxd with authentication on (auth-enabled):
// an admin user and password are created first, and every request
// without a login is refused.
func StartWithAuth(t testing.TB, db, user, password string) *Server {
	t.Helper()
	return start(t, db, user, password, nil)
}

func start(t testing.TB, db, user, password string, tc *TLS) *Server {
	t.Helper()
	if _, err := exec.LookPath("influxd"); err != nil {
		t.Fatalf("influxd is needed (apt-get install influxdb; make test-deps does): %v", err)
	}
	s := &Server{t: t, client: http.DefaultClient}
	dir := t.TempDir()
	port, rpc := testport.Port(t), testport.Port(t)
	s.URL = fmt.Sprintf("http://127.0.0.1:%d", port)
	https := ""
	if tc != nil {
		s.URL = fmt.Sprintf("https://127.0.0.1:%d", port)
		cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		if err := os.WriteFile(cert, tc.Cert, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(key, tc.Key, 0o600); err != nil {
			t.Fatal(err)
		}
		https = fmt.Sprintf("  https-enabled = true\n  https-certificate = %q\n  https-private-key = %q\n", cert, key)
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(tc.CA) {
			t.Fatal("influxtest: TLS.CA holds no PEM certificate")
		}
		s.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	}
	conf := fmt.Sprintf(`reporting-disabled = true
bind-address = "127.0.0.1:%d"
[meta]
  dir = "%s/meta"
[data]
  dir = "%s/data"
  wal-dir = "%s/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:%d"
  log-enabled = false
  auth-enabled = %t
%s`, rpc, dir, dir, dir, port, user != "", https)
	path := filepath.Join(dir, "influxdb.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	s.Proc = testproc.Start(t, "influxd", func() *exec.Cmd { return exec.Command("influxd", "-config", path) }, func() error {
		resp, err := s.client.Get(s.URL + "/ping")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("/ping: %s", resp.Status)
		}
		return nil
	})
	if user != "" {
		// With no user yet, InfluxDB takes the first admin's creation
		// without a login.
		s.Query(fmt.Sprintf("CREATE USER %s WITH PASSWORD '%s' WITH ALL PRIVILEGES", user, password))
		s.User, s.Password = user, password
	}
	s.Query("CREATE DATABASE " + db)
	return s
}

// Query runs an InfluxQL query (on database db when given with "db:"
// prefix omitted: use QueryDB) and returns the first series' values.
func (s *Server) Query(q string) [][]any { return s.QueryDB("", q) }

// QueryDB runs an InfluxQL query on db and returns the first series'
// values (each row's columns).
func (s *Server) QueryDB(db, q string) [][]any {
	s.t.Helper()
	v := url.Values{"q": {q}}
	if db != "" {
		v.Set("db", db)
	}
	req, err := http.NewRequest(http.MethodPost, s.URL+"/query", strings.NewReader(v.Encode()))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if s.User != "" {
		req.SetBasicAuth(s.User, s.Password)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s: %v", q, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out struct {
		Results []struct {
			Error  string
			Series []struct{ Values [][]any }
		}
	}
	if err := json.Unmarshal(b, &out); err != nil || resp.StatusCode != 200 {
		s.t.Fatalf("%s: %d %s", q, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if len(out.Results) == 0 || out.Results[0].Error != "" {
		s.t.Fatalf("%s: %s", q, b)
	}
	if len(out.Results[0].Series) == 0 {
		return nil
	}
	return out.Results[0].Series[0].Values
}
