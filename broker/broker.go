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
	"crypto/tls"
	"fmt"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// EnvBrokers is the environment variable that lists the Kafka brokers
// (host:port, comma-separated) when no flag or kafka block does.
const EnvBrokers = "BUTTER_KAFKA_BROKERS"

// Config says how to reach a Kafka cluster.
type Config struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string
	// TLS, when set, is used for every connection.
	TLS *tls.Config
	// SASLMechanism is "", "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512".
	SASLMechanism string
	SASLUser      string
	SASLPassword  string
}

// ConfigFromEnv reads the brokers from $BUTTER_KAFKA_BROKERS.
func ConfigFromEnv() Config {
	var c Config
	for _, b := range strings.Split(os.Getenv(EnvBrokers), ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.Brokers = append(c.Brokers, b)
		}
	}
	return c
}

// Opts returns the franz-go options that reach the cluster.
func (c Config) Opts() ([]kgo.Opt, error) {
	if len(c.Brokers) == 0 {
		return nil, fmt.Errorf("no Kafka brokers: pass -kafka-brokers, set $%s, or add a kafka block", EnvBrokers)
	}
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...)}
	if c.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(c.TLS))
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

// ProducerOpts are the options of every Butter producer: idempotent (the
// franz-go default) with acks from all in-sync replicas, so that an
// acknowledged record survives a broker loss.
func ProducerOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
	}
}
