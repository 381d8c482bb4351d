// Package broker is Butter's event backbone on Kafka, through franz-go:
// how to reach a cluster (Config), the embedded Kafka-protocol broker for
// `butter broker -dev`, `butter dev` and tests (Dev, on franz-go's kfake),
// topic creation from stream blocks (EnsureTopics), the session timeouts
// consumer groups accept (GroupSessionLimits), and the CloudEvents
// binary-mode envelope every record carries (envelope.go).
//
// Neighbours: the pool's stream consumers (plugins/pool) consume and
// produce through it; package jobs names topics and consumer groups.
package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// The environment variables that say how to reach Kafka when no flag or
// kafka block does (and, for everything but the brokers, when a
// -kafka-brokers flag does). They apply to every Kafka client the server,
// the gateway and pools without a kafka block make.
const (
	// EnvBrokers lists the brokers, host:port, comma-separated.
	EnvBrokers = "BUTTER_KAFKA_BROKERS"
	// EnvTLS, when true, connects over TLS, trusting the system's roots.
	EnvTLS = "BUTTER_KAFKA_TLS"
	// EnvCAFile names a PEM file of CA certificates to trust instead of
	// the system's roots; it implies TLS.
	EnvCAFile = "BUTTER_KAFKA_CA_FILE"
	// EnvSASLMechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	EnvSASLMechanism = "BUTTER_KAFKA_SASL_MECHANISM"
	// EnvSASLUsername and EnvSASLPassword are the SASL login.
	EnvSASLUsername = "BUTTER_KAFKA_SASL_USERNAME"
	EnvSASLPassword = "BUTTER_KAFKA_SASL_PASSWORD"
)

// Config says how to reach a Kafka cluster.
type Config struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string
	// TLS, when set, is used for every connection.
	TLS *tls.Config
	// CAFile, when set, is a PEM file of the CA certificates to trust
	// (instead of the system's roots); it implies TLS.
	CAFile string
	// SASLMechanism is "", "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512".
	SASLMechanism string
	SASLUser      string
	SASLPassword  string
}

// ConfigFromEnv reads the brokers from $BUTTER_KAFKA_BROKERS, and TLS and
// SASL from $BUTTER_KAFKA_TLS, $BUTTER_KAFKA_CA_FILE and
// $BUTTER_KAFKA_SASL_{MECHANISM,USERNAME,PASSWORD}. A setting that cannot
// be used (a TLS value that is not a boolean, a mechanism without a
// password) is an error, never a connection without it.
func ConfigFromEnv() (Config, error) {
	c := Config{
		Brokers:       splitBrokers(os.Getenv(EnvBrokers)),
		CAFile:        os.Getenv(EnvCAFile),
		SASLMechanism: strings.ToUpper(strings.TrimSpace(os.Getenv(EnvSASLMechanism))),
		SASLUser:      os.Getenv(EnvSASLUsername),
		SASLPassword:  os.Getenv(EnvSASLPassword),
	}
	if v := os.Getenv(EnvTLS); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return c, fmt.Errorf("$%s=%q is not true or false", EnvTLS, v)
		}
		if on {
			c.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		}
	}
	if c.SASLMechanism != "" && (c.SASLUser == "" || c.SASLPassword == "") {
		return c, fmt.Errorf("$%s is %s, but $%s or $%s is empty", EnvSASLMechanism, c.SASLMechanism, EnvSASLUsername, EnvSASLPassword)
	}
	return c, nil
}

// Opts returns the franz-go options that reach the cluster.
func (c Config) Opts() ([]kgo.Opt, error) {
	if len(c.Brokers) == 0 {
		return nil, fmt.Errorf("no Kafka brokers: pass -kafka-brokers, set $%s, or add a kafka block", EnvBrokers)
	}
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...)}
	tc := c.TLS
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("the Kafka CA file: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("the Kafka CA file %s holds no PEM certificate", c.CAFile)
		}
		if tc == nil {
			tc = &tls.Config{MinVersion: tls.VersionTLS12}
		} else {
			tc = tc.Clone()
		}
		tc.RootCAs = roots
	}
	if tc != nil {
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	var mech sasl.Mechanism
	switch c.SASLMechanism {
	case "":
	case "PLAIN":
		mech = plain.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsMechanism()
	case "SCRAM-SHA-256":
		mech = scram.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsSha256Mechanism()
	case "SCRAM-SHA-512":
		mech = scram.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsSha512Mechanism()
	default:
		return nil, fmt.Errorf("unknown SASL mechanism %q: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.SASLMechanism)
	}
	if mech != nil {
		opts = append(opts, kgo.SASL(mech))
	}
	return opts, nil
}

// NewProducer returns a client with ProducerOpts (and extra) that reaches
// the cluster: the server's timer producer and every other Butter
// producer that is not also a consumer.
func (c Config) NewProducer(extra ...kgo.Opt) (*kgo.Client, error) {
	opts, err := c.Opts()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(append(opts, ProducerOpts()...), extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	return cl, nil
}

// ProducerOpts are the options of every Butter producer: idempotent (the
// franz-go default) with acks from all in-sync replicas, so that an
// acknowledged record survives a broker loss.
func ProducerOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
	}
}

// Check connects to the cluster once (a metadata request, through TLS and
// the SASL login) and returns Explain's account of why it cannot.
func (c Config) Check(ctx context.Context) error {
	opts, err := c.Opts()
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append(opts, kgo.RequestRetries(0))...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	return c.Explain(cl.Ping(ctx))
}

// Explain adds to a Kafka client's error what it most likely means for
// these settings: a broker that refuses the SASL login or closes the
// connection during it (some, like kfake, close it on a wrong password),
// or a TLS certificate the CA file does not vouch for. Other errors and
// nil are returned as they are.
func (c Config) Explain(err error) error {
	if err == nil {
		return nil
	}
	brokers := strings.Join(c.Brokers, ",")
	var uerr x509.UnknownAuthorityError
	var herr x509.HostnameError
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		return fmt.Errorf("kafka at %s refused the SASL %s login as %q: check $%s and $%s: %w", brokers, c.SASLMechanism, c.SASLUser, EnvSASLUsername, EnvSASLPassword, err)
	case errors.As(err, &uerr), errors.As(err, &herr):
		return fmt.Errorf("kafka at %s: its TLS certificate is not trusted (a CA file in $%s trusts a private CA): %w", brokers, EnvCAFile, err)
	case c.SASLMechanism != "" && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)):
		return fmt.Errorf("kafka at %s closed the connection during the SASL %s login as %q: most likely a wrong username or password (check $%s and $%s), or a broker that expects TLS: %w", brokers, c.SASLMechanism, c.SASLUser, EnvSASLUsername, EnvSASLPassword, err)
	}
	return err
}
