package driver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/plugins/base"
)

// TestKafkaPluginConfig checks the plugin's Kafka settings as the agent
// hands them over (msgpack through SetConfig): each mistake is refused
// with an error that names the setting, and a good config reaches a
// pool's environment as $BUTTER_KAFKA_*, with the password read from its
// file at task start, and the task's own environment winning.
func TestKafkaPluginConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pwFile := write("pw", "s3cret\n")
	empty := write("empty", "")
	notPEM := write("ca.txt", "not a certificate")
	caFile := write("ca.pem", testCAPEM(t))

	for _, c := range []struct {
		name string
		cfg  Config
		want string // "" = accepted
	}{
		{"nothing", Config{}, ""},
		{"sasl", Config{KafkaSASLMechanism: "scram-sha-256", KafkaSASLUsername: "u", KafkaSASLPasswordFile: pwFile, KafkaCAFile: caFile}, ""},
		{"unknown mechanism", Config{KafkaSASLMechanism: "GSSAPI", KafkaSASLUsername: "u", KafkaSASLPasswordFile: pwFile}, `kafka_sasl_mechanism "GSSAPI"`},
		{"no username", Config{KafkaSASLMechanism: "PLAIN", KafkaSASLPasswordFile: pwFile}, "kafka_sasl_username is empty"},
		{"no password file", Config{KafkaSASLMechanism: "PLAIN", KafkaSASLUsername: "u"}, "kafka_sasl_password_file is empty"},
		{"missing password file", Config{KafkaSASLMechanism: "PLAIN", KafkaSASLUsername: "u", KafkaSASLPasswordFile: filepath.Join(dir, "nope")}, "kafka_sasl_password_file in plugin"},
		{"empty password file", Config{KafkaSASLMechanism: "PLAIN", KafkaSASLUsername: "u", KafkaSASLPasswordFile: empty}, "is empty: write the SASL password"},
		{"username without mechanism", Config{KafkaSASLUsername: "u"}, "without kafka_sasl_mechanism"},
		{"missing CA", Config{KafkaCAFile: filepath.Join(dir, "nope.pem")}, "kafka_ca_file in plugin"},
		{"CA not PEM", Config{KafkaCAFile: notPEM}, "holds no PEM certificate"},
		{"otel_env", Config{OTelEnv: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}}, ""},
		{"otel_env with another name", Config{OTelEnv: map[string]string{"PATH": "/tmp"}}, `otel_env in plugin "nomad-driver-butter" { config { ... } } names "PATH"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			var raw []byte
			if err := base.MsgPackEncode(&raw, &c.cfg); err != nil {
				t.Fatal(err)
			}
			d := &Driver{}
			err := d.SetConfig(&base.Config{PluginConfig: raw})
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want one containing %q", err, c.want)
			case c.want != "" && d.config != nil:
				t.Errorf("a refused config was kept")
			}
		})
	}

	cfg := Config{KafkaBrokers: []string{"k1:9092", "k2:9092"}, KafkaTLS: true, KafkaCAFile: caFile,
		KafkaSASLMechanism: "scram-sha-512", KafkaSASLUsername: "pools", KafkaSASLPasswordFile: pwFile}
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	env, err := cfg.kafkaEnv(map[string]string{"BUTTER_KAFKA_BROKERS": "own:9092"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"BUTTER_KAFKA_TLS=true", "BUTTER_KAFKA_CA_FILE=" + caFile, "BUTTER_KAFKA_SASL_MECHANISM=SCRAM-SHA-512",
		"BUTTER_KAFKA_SASL_USERNAME=pools", "BUTTER_KAFKA_SASL_PASSWORD=s3cret",
	}
	if !slices.Equal(env, want) {
		t.Errorf("pool env:\n%q\nwant:\n%q", env, want)
	}
	// The password file is read at each start: a rotation reaches the next pool.
	write("pw", "rotated")
	env, _ = cfg.kafkaEnv(nil)
	if !slices.Contains(env, "BUTTER_KAFKA_SASL_PASSWORD=rotated") || !slices.Contains(env, "BUTTER_KAFKA_BROKERS=k1:9092,k2:9092") {
		t.Errorf("after rotation: %q", env)
	}
	if err := os.Remove(pwFile); err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.kafkaEnv(nil); err == nil || !strings.Contains(err.Error(), "kafka_sasl_password_file") {
		t.Errorf("password file gone: %v", err)
	}
}

// testCAPEM returns a self-signed CA certificate's PEM.
func testCAPEM(t *testing.T) string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
