package broker_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/scheduler"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// testCA makes a CA and a server certificate for 127.0.0.1 signed by it,
// and writes the CA's PEM to a file.
func testCA(t *testing.T) (caFile string, server tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "butter test kafka CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "kafka-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestSecureKafka: the settings the server and the gateway read
// (broker.Resolve with their -kafka-brokers flag and the $BUTTER_KAFKA_*
// environment) reach a Kafka-protocol broker that serves only TLS and
// requires SASL, for each mechanism: the server's timer producer fires a
// tick, and the gateway's queued-route requester connects and gets a
// reply. With a wrong password, or without the CA, both fail with an
// error that names the cause. The broker is kfake over TCP with the real
// franz-go client.
func TestSecureKafka(t *testing.T) {
	caFile, cert := testCA(t)
	users := map[string][2]string{
		"PLAIN":         {"plain-user", "plain-pass"},
		"SCRAM-SHA-256": {"scram256-user", "scram256-pass"},
		"SCRAM-SHA-512": {"scram512-user", "scram512-pass"},
	}
	opts := []kfake.Opt{kfake.Ports(0), kfake.EnableSASL(), kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})}
	for mech, up := range users {
		opts = append(opts, kfake.Superuser(mech, up[0], up[1]))
	}
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	addr := cluster.ListenAddrs()[0]

	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			t.Setenv(broker.EnvBrokers, "")
			t.Setenv(broker.EnvCAFile, caFile)
			t.Setenv(broker.EnvSASLMechanism, strings.ToLower(mech))
			t.Setenv(broker.EnvSASLUsername, users[mech][0])
			t.Setenv(broker.EnvSASLPassword, users[mech][1])
			cfg, err := broker.Resolve(context.Background(), addr, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := fire(cfg, "butter._timers."+strings.ToLower(mech)); err != nil {
				t.Fatalf("timer producer: %v", err)
			}
			reply, err := queuedCall(t, cfg, "butter.req."+strings.ToLower(mech))
			if err != nil || string(reply) != "pong" {
				t.Fatalf("queued call: %q, %v", reply, err)
			}

			bad := cfg
			bad.SASLPassword = "wrong"
			if err := bad.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "SASL") {
				t.Errorf("check with a wrong password: %v, want a SASL error", err)
			}
			if err := lazyError(t, bad); !strings.Contains(err.Error(), "SASL") {
				t.Errorf("requester with a wrong password: %v, want a SASL error", err)
			}
			noCA := cfg
			noCA.CAFile = ""
			noCA.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
			if err := noCA.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "not trusted") {
				t.Errorf("check without the CA: %v, want a certificate error", err)
			}
			if err := lazyError(t, noCA); !strings.Contains(err.Error(), "not trusted") {
				t.Errorf("requester without the CA: %v, want a certificate error", err)
			}
		})
	}
}

// fire is the server's timer path: Config.NewProducer and a KafkaFirer.
func fire(cfg broker.Config, topic string) error {
	cl, err := cfg.NewProducer()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return (&scheduler.KafkaFirer{Client: cl}).Fire(ctx, &fsm.Timer{ID: "t", Schedule: "@every 1m", Topic: topic}, time.Now())
}

// queuedCall is the gateway's queued path: a LazyRequester, answered by
// a responder that uses the same settings.
func queuedCall(t *testing.T, cfg broker.Config, topic string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts, err := cfg.Opts()
	if err != nil {
		return nil, err
	}
	resp, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		return nil, err
	}
	defer resp.Close()
	if err := broker.EnsureTopics(ctx, kadm.NewClient(resp), []broker.Topic{{Name: topic, Partitions: 1}}); err != nil {
		return nil, err
	}
	go func() {
		for {
			fs := resp.PollFetches(ctx)
			if fs.IsClientClosed() || ctx.Err() != nil {
				return
			}
			fs.EachRecord(func(r *kgo.Record) {
				out := &kgo.Record{Topic: broker.Header(r, broker.HeaderReplyTo), Value: []byte("pong")}
				broker.SetHeader(out, broker.HeaderCorrelation, broker.Header(r, broker.HeaderCorrelation))
				resp.Produce(ctx, out, nil)
			})
		}
	}()
	l := broker.NewLazyRequester(ctx, hclog.NewNullLogger(), cfg, topic+".replies")
	defer l.Close()
	for !l.Connected() {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		time.Sleep(10 * time.Millisecond)
	}
	return l.Call(ctx, topic, []byte("k"), []byte("ping"), time.Now().Add(20*time.Second))
}

// lazyError waits until the gateway's requester has tried to connect and
// returns the error its calls get.
func lazyError(t *testing.T, cfg broker.Config) error {
	t.Helper()
	l := broker.NewLazyRequester(context.Background(), hclog.NewNullLogger(), cfg, "butter._replies.bad")
	defer l.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := l.Call(context.Background(), "t", nil, nil, time.Now().Add(time.Second))
		if err == nil {
			t.Fatal("a call succeeded with a wrong password")
		}
		if !strings.Contains(err.Error(), "see the log") || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}
