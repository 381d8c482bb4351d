// Package influxtest runs a real InfluxDB 1.x (Debian's influxdb, which
// `make test-deps` installs) on 127.0.0.1 for tests, with its data in a
// temporary directory, and queries it.
package influxtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/internal/testlog"
	"github.com/butterfn/butter/internal/testport"
)

// Server is a running influxd.
type Server struct {
	// URL is its HTTP API, http://127.0.0.1:<port>.
	URL string

	t    testing.TB
	dir  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *testlog.Buffer
}

// Start starts influxd and creates database db.
func Start(t testing.TB, db string) *Server {
	t.Helper()
	if _, err := exec.LookPath("influxd"); err != nil {
		t.Fatalf("influxd is needed (apt-get install influxdb; make test-deps does): %v", err)
	}
	s := &Server{t: t, dir: t.TempDir(), log: &testlog.Buffer{}}
	port, rpc := testport.Port(t), testport.Port(t)
	s.URL = fmt.Sprintf("http://127.0.0.1:%d", port)
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
`, rpc, s.dir, s.dir, s.dir, port)
	if err := os.WriteFile(filepath.Join(s.dir, "influxdb.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	s.start()
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("influxd log (tail):\n%s", tail(s.log.String(), 3000))
		}
	})
	s.Query("CREATE DATABASE " + db)
	return s
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (s *Server) start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command("influxd", "-config", filepath.Join(s.dir, "influxdb.conf"))
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start influxd: %v", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(s.done)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("influxd did not answer /ping within 30s: %v\n%s", err, tail(s.log.String(), 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops influxd and waits for it.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// Restart stops influxd and starts it again with its data.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
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
	resp, err := http.PostForm(s.URL+"/query", v)
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
