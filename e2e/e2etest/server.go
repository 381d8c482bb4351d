package e2etest

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/butterfn/butter/internal/testlog"
	"github.com/butterfn/butter/internal/testport"
)

// Server is a `butter server` process: one node of the control plane.
type Server struct {
	// HTTP and Raft are its listen addresses (host:port), Dir its data
	// directory.
	HTTP, Raft, Dir string
	// Args follow the flags above on its command line.
	Args []string
	// Log is what the process has printed since it was last started.
	Log *testlog.Buffer

	cmd  *exec.Cmd
	done chan error
}

// Start starts the process: `butter server -data-dir Dir -http-addr HTTP
// -raft-addr Raft Args...`, with a new Log. It does not wait for it to
// serve.
//
// Unless Args set -acl, the server runs with -acl=false: the tests whose
// subject is not the ACLs call the API without a token. A test of the
// ACLs passes -acl=true and bootstraps (e2e/cli's TestACLCommands).
func (s *Server) Start(t testing.TB) {
	t.Helper()
	s.Log = &testlog.Buffer{}
	args := []string{"server", "-data-dir", s.Dir, "-http-addr", s.HTTP, "-raft-addr", s.Raft}
	if !slices.ContainsFunc(s.Args, func(a string) bool {
		return a == "-acl" || strings.HasPrefix(a, "-acl=") || a == "--acl" || strings.HasPrefix(a, "--acl=")
	}) {
		args = append(args, "-acl=false")
	}
	args = append(args, s.Args...)
	s.cmd = exec.Command(Bin(), args...)
	s.cmd.Stdout, s.cmd.Stderr = s.Log, s.Log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.done = make(chan error, 1)
	go func() { s.done <- s.cmd.Wait() }()
}

// Kill stops the process with SIGKILL and waits for it; it does nothing
// if the process is not running.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
	s.cmd = nil
}

// Running reports whether the process was started and not killed.
func (s *Server) Running() bool { return s.cmd != nil }

// StartServer starts a one-node control plane with extra flags, waits
// until it leads, and kills it when the test ends.
func StartServer(t testing.TB, extra ...string) *Server {
	t.Helper()
	s := &Server{HTTP: testport.Addr(t), Raft: testport.Addr(t), Dir: t.TempDir(), Args: extra}
	s.Start(t)
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			t.Logf("server log (tail):\n%s", Tail(s.Log.String(), 3000))
		}
	})
	WaitFor(t, 30*time.Second, "the server leads", func() bool { return LeaderOf(s) != "" })
	return s
}

var statusClient = &http.Client{Timeout: 3 * time.Second}

// LeaderOf returns the leader the first running server that knows one
// names, or "".
func LeaderOf(servers ...*Server) string {
	for _, s := range servers {
		if !s.Running() {
			continue
		}
		var out struct{ Leader string }
		resp, err := statusClient.Get("http://" + s.HTTP + "/v1/status/leader")
		if err != nil {
			continue
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if out.Leader != "" {
			return out.Leader
		}
	}
	return ""
}
