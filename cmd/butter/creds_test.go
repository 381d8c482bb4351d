package main

import (
	"testing"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/internal/testport"
	"github.com/hashicorp/cli"
)

// TestKafkaSettingsReachServerAndGateway: `butter server` and `butter
// gateway` read their Kafka settings through broker.Resolve, so the
// $BUTTER_KAFKA_* TLS and SASL settings apply under -kafka-brokers too:
// an unusable one stops them at start (before the fix, both ignored the
// environment when the flag was given, and started).
func TestKafkaSettingsReachServerAndGateway(t *testing.T) {
	t.Setenv(broker.EnvSASLMechanism, "SCRAM-SHA-256")
	t.Setenv(broker.EnvSASLUsername, "u")
	t.Setenv(broker.EnvSASLPassword, "") // a mechanism without a password
	t.Setenv("NOMAD_ADDR", "")
	ui := cli.NewMockUi()
	if code := (&serverCommand{ui: ui}).Run([]string{"-data-dir", t.TempDir(), "-http-addr", testport.Addr(t), "-raft-addr", testport.Addr(t), "-kafka-brokers", "127.0.0.1:1"}); code != exitInvalid {
		t.Errorf("server: exit %d, want %d", code, exitInvalid)
	}
	if code := (&gatewayCommand{ui: ui}).Run([]string{"-listen", testport.Addr(t), "-endpoint", "p/default=127.0.0.1:1", "-kafka-brokers", "127.0.0.1:1", "-address", "http://127.0.0.1:1"}); code != exitInvalid {
		t.Errorf("gateway: exit %d, want %d", code, exitInvalid)
	}
}
