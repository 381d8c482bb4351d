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
	"testing"
	"time"

	"github.com/butterfn/butter/internal/testport"
	"github.com/butterfn/butter/internal/testproc"
)

// Broker is a running mosquitto.
type Broker struct {
	*testproc.Proc
	// Port is the broker's TCP port on 127.0.0.1; Address its
	// tcp://127.0.0.1:<port>.
	Port    int
	Address string

	t testing.TB
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
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	b := &Broker{t: t, Port: testport.Port(t)}
	b.Address = fmt.Sprintf("tcp://127.0.0.1:%d", b.Port)
	conf := filepath.Join(dir, "mosquitto.conf")
	text := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nautosave_interval 1\nmax_queued_messages 100000\n", b.Port, dir)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	b.Proc = testproc.Start(t, "mosquitto", func() *exec.Cmd { return exec.Command("mosquitto", "-c", conf, "-v") }, func() error {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", b.Port), time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	return b
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
func (b *Broker) Log() string { return b.Proc.Log.String() }
