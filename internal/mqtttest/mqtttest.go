// Package mqtttest runs a real Mosquitto broker (Debian's mosquitto, which
// `make test-deps` installs) on 127.0.0.1 for tests, with persistence on so
// that a restart keeps the sessions and their queued messages, as a broker
// in production would.
package mqtttest

import (
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/butterfn/butter/internal/testport"
	"github.com/butterfn/butter/internal/testproc"
	"github.com/butterfn/butter/internal/tlsutil"
)

// Broker is a running mosquitto.
type Broker struct {
	*testproc.Proc
	// Port is the broker's TCP port on 127.0.0.1; Address its
	// tcp://127.0.0.1:<port>.
	Port    int
	Address string
	// User and Password are the login of Publish, for a broker started
	// with StartWithUsers.
	User, Password string
	// TLS is the broker's CA and a client certificate it accepts, for a
	// broker started with StartTLS; Address is then ssl://127.0.0.1:<port>.
	TLS *TLSFiles

	t testing.TB
}

// Start starts mosquitto; it is stopped when the test ends. It fails the
// test when mosquitto is not installed (make test-deps installs it).
func Start(t testing.TB) *Broker {
	t.Helper()
	return start(t, nil, false)
}

// StartWithUsers starts mosquitto refusing anonymous clients: only the
// users given (name to password), in a password file written by the real
// mosquitto_passwd, may connect. Publish logs in as the first user in
// name order.
func StartWithUsers(t testing.TB, users map[string]string) *Broker {
	t.Helper()
	return start(t, users, false)
}

// TLSFiles are a TLS broker's CA and a client certificate it accepts, in
// PEM, with the files mosquitto_pub reads them from.
type TLSFiles struct {
	CA, ClientCert, ClientKey             string
	CAFile, ClientCertFile, ClientKeyFile string
}

// StartTLS starts mosquitto listening over TLS only and requiring a
// client certificate signed by its own CA (made with internal/tlsutil),
// as a broker facing the internet would; Publish presents the client
// certificate.
func StartTLS(t testing.TB) *Broker {
	t.Helper()
	return start(t, nil, true)
}

func start(t testing.TB, users map[string]string, withTLS bool) *Broker {
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
	auth := "allow_anonymous true\n"
	if len(users) > 0 {
		pw := filepath.Join(dir, "passwd")
		for _, name := range slices.Sorted(maps.Keys(users)) {
			args := []string{"-b", pw, name, users[name]}
			if _, err := os.Stat(pw); err != nil {
				args = append([]string{"-c"}, args...)
			}
			if out, err := exec.Command("mosquitto_passwd", args...).CombinedOutput(); err != nil {
				t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
			}
			if b.User == "" {
				b.User, b.Password = name, users[name]
			}
		}
		if err := os.Chmod(pw, 0o644); err != nil {
			t.Fatal(err)
		}
		auth = fmt.Sprintf("allow_anonymous false\npassword_file %s\n", pw)
	}
	listener := ""
	if withTLS {
		b.TLS = writeTLS(t, dir)
		b.Address = fmt.Sprintf("ssl://127.0.0.1:%d", b.Port)
		listener = fmt.Sprintf("cafile %s\ncertfile %s/server.pem\nkeyfile %s/server-key.pem\nrequire_certificate true\n", b.TLS.CAFile, dir, dir)
	}
	text := fmt.Sprintf("listener %d 127.0.0.1\n"+listener+"%spersistence true\npersistence_location %s/\nautosave_interval 1\nmax_queued_messages 100000\n", b.Port, auth, dir)
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
		args := []string{"-h", "127.0.0.1", "-p", fmt.Sprint(b.Port), "-q", "1", "-t", topic, "-m", m}
		if b.User != "" {
			args = append(args, "-u", b.User, "-P", b.Password)
		}
		if b.TLS != nil {
			args = append(args, "--cafile", b.TLS.CAFile, "--cert", b.TLS.ClientCertFile, "--key", b.TLS.ClientKeyFile)
		}
		out, err := exec.Command("mosquitto_pub", args...).CombinedOutput()
		if err != nil {
			b.t.Fatalf("mosquitto_pub to %s: %v\n%s", topic, err, out)
		}
	}
}

// Log is what mosquitto logged (-v: connections and subscriptions).
func (b *Broker) Log() string { return b.Proc.Log.String() }

// writeTLS makes a CA, a server certificate for 127.0.0.1 and a client
// certificate, and writes them into dir, readable by mosquitto's user.
func writeTLS(t testing.TB, dir string) *TLSFiles {
	t.Helper()
	caCert, caKey, err := tlsutil.CreateCA("mqtt.test", 1)
	if err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey, err := tlsutil.CreateCert(caCert, caKey, tlsutil.CertRequest{Kind: tlsutil.Server, Days: 1})
	if err != nil {
		t.Fatal(err)
	}
	cliCert, cliKey, err := tlsutil.CreateCert(caCert, caKey, tlsutil.CertRequest{Kind: tlsutil.Client, Days: 1})
	if err != nil {
		t.Fatal(err)
	}
	f := &TLSFiles{CA: string(caCert), ClientCert: string(cliCert), ClientKey: string(cliKey),
		CAFile: filepath.Join(dir, "ca.pem"), ClientCertFile: filepath.Join(dir, "client.pem"), ClientKeyFile: filepath.Join(dir, "client-key.pem")}
	for name, data := range map[string][]byte{"ca.pem": caCert, "server.pem": srvCert, "server-key.pem": srvKey, "client.pem": cliCert, "client-key.pem": cliKey} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return f
}
