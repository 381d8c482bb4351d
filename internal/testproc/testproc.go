// Package testproc runs a server process for a test (Mosquitto,
// PostgreSQL, InfluxDB: internal/mqtttest, pgtest, influxtest): started
// and waited for until it is ready, stopped with SIGINT (killed after 20
// s), restartable, its output kept and logged when the test fails.
package testproc

import (
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/internal/testlog"
)

// Proc is a server process of a test.
type Proc struct {
	// Log is the process's output, across restarts.
	Log *testlog.Buffer

	t     testing.TB
	name  string
	cmd   func() *exec.Cmd
	ready func() error
	mu    sync.Mutex
	c     *exec.Cmd
	done  chan struct{}
}

// Start starts the process cmd makes and waits up to 30 s for ready to
// return nil; it is stopped when the test ends, and its output logged
// then if the test failed.
func Start(t testing.TB, name string, cmd func() *exec.Cmd, ready func() error) *Proc {
	t.Helper()
	p := &Proc{Log: &testlog.Buffer{}, t: t, name: name, cmd: cmd, ready: ready}
	p.start()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			out := p.Log.String()
			if len(out) > 4000 {
				out = out[len(out)-4000:]
			}
			t.Logf("%s output (tail):\n%s", name, out)
		}
	})
	return p
}

func (p *Proc) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.cmd()
	c.Stdout, c.Stderr = p.Log, p.Log
	if err := c.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	p.c, p.done = c, make(chan struct{})
	go func(done chan struct{}) {
		_ = c.Wait()
		close(done)
	}(p.done)
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := p.ready()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s was not ready within 30s: %v\n%s", p.name, err, p.Log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops the process (SIGINT, then SIGKILL after 20 s) and waits for
// it.
func (p *Proc) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.c == nil {
		return
	}
	_ = p.c.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.c.Process.Kill()
		<-p.done
	}
	p.c = nil
}

// Restart stops the process and starts it again.
func (p *Proc) Restart() {
	p.t.Helper()
	p.Stop()
	p.start()
}
