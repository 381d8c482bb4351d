// Package mqtttest runs a real Mosquitto broker (Debian's mosquitto, which
// `make test-deps` installs) on 127.0.0.1 for tests, with persistence on so
// that a restart keeps the sessions and their queued messages, as a broker
// in production would.
package mqtttest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/internal/testlog"
	"github.com/butterfn/butter/internal/testport"
)

// Broker is a running mosquitto.
type Broker struct {
	// Port is the broker's TCP port on 127.0.0.1; Address its
	// tcp://127.0.0.1:<port>.
	Port    int
	Address string

	t    testing.TB
	dir  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *testlog.Buffer
}

// Start starts mosquitto; it is stopped when the test ends. It fails the
// test when mosquitto is not installed (make test-deps installs it).
func Start(t testing.TB) *Broker {
	t.Helper()
	if _, err := exec.LookPath("mosquitto"); err != nil {
		t.Fatalf("mosquitto is needed (apt-get install mosquitto mosquitto-clients; make test-deps does): %v", err)
	}
	// Not t.TempDir: its parent is private to root, and mosquitto, started
	// as root, drops to its own user.
	dir, err := os.MkdirTemp("", "butter-mqtt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	b := &Broker{t: t, dir: dir, log: &testlog.Buffer{}}
	// Started as root, mosquitto drops to its own user: its database
	// directory must be writable by it.
	if err := os.Chmod(b.dir, 0o777); err != nil {
		t.Fatal(err)
	}
	b.Port = testport.Port(t)
	b.Address = fmt.Sprintf("tcp://127.0.0.1:%d", b.Port)
	conf := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nautosave_interval 1\nmax_queued_messages 100000\n", b.Port, b.dir)
	if err := os.WriteFile(filepath.Join(b.dir, "mosquitto.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	b.start()
	t.Cleanup(func() {
		b.Stop()
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", b.log.String())
		}
	})
	return b
}

func (b *Broker) start() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	cmd := exec.Command("mosquitto", "-c", filepath.Join(b.dir, "mosquitto.conf"), "-v")
	cmd.Stdout, cmd.Stderr = b.log, b.log
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("start mosquitto: %v", err)
	}
	b.cmd, b.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(b.done)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", b.Port), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("mosquitto did not listen on %d within 10s: %v\n%s", b.Port, err, b.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops mosquitto (SIGTERM: it saves its sessions) and waits for it.
func (b *Broker) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Signal(os.Interrupt)
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
	b.cmd = nil
}

// Restart stops mosquitto and starts it again on the same port with its
// saved sessions.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	b.start()
}

// Publish publishes each message to topic with the real mosquitto_pub at
// QoS 1.
func (b *Broker) Publish(topic string, messages ...string) {
	b.t.Helper()
	for _, m := range messages {
		out, err := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", fmt.Sprint(b.Port), "-q", "1", "-t", topic, "-m", m).CombinedOutput()
		if err != nil {
			b.t.Fatalf("mosquitto_pub to %s: %v\n%s", topic, err, out)
		}
	}
}

// Log is what mosquitto logged (-v: connections and subscriptions).
func (b *Broker) Log() string { return b.log.String() }
