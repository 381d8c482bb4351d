package broker

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestResolve: the flag wins over the kafka block, which wins over
// $BUTTER_KAFKA_BROKERS; the block's password comes from the variable it
// names or from decrypt, and is an error when it cannot be had.
func TestResolve(t *testing.T) {
	t.Setenv(EnvBrokers, "env:9092")
	t.Setenv("KAFKA_PW", "from-env")
	ctx := context.Background()
	noDecrypt := func(context.Context, string) (string, error) {
		t.Error("decrypt called for a block without a ciphertext")
		return "", nil
	}
	block := &KafkaBlock{Brokers: []string{"block:9092"}, TLS: true, SASLMechanism: "PLAIN", SASLUsername: "u", SASLPasswordEnv: "KAFKA_PW"}

	c, err := Resolve(ctx, "a:1, b:2,", block, noDecrypt)
	if err != nil || !reflect.DeepEqual(c.Brokers, []string{"a:1", "b:2"}) || c.SASLMechanism != "" || c.TLS != nil {
		t.Errorf("flag: %+v, %v", c, err)
	}
	c, err = Resolve(ctx, "", block, noDecrypt)
	if err != nil || !reflect.DeepEqual(c.Brokers, []string{"block:9092"}) || c.TLS == nil || c.SASLUser != "u" || c.SASLPassword != "from-env" {
		t.Errorf("block: %+v, %v", c, err)
	}
	for _, b := range []*KafkaBlock{nil, {}} {
		c, err = Resolve(ctx, "", b, noDecrypt)
		if err != nil || !reflect.DeepEqual(c.Brokers, []string{"env:9092"}) {
			t.Errorf("block %+v: %+v, %v; want the environment's brokers", b, c, err)
		}
	}
	// No password in the named variable: an error, not a login without.
	_, err = Resolve(ctx, "", &KafkaBlock{Brokers: []string{"b:1"}, SASLMechanism: "PLAIN", SASLPasswordEnv: "KAFKA_PW_UNSET"}, noDecrypt)
	if err == nil || !strings.Contains(err.Error(), "$KAFKA_PW_UNSET") {
		t.Errorf("unset password variable: %v", err)
	}

	enc := &KafkaBlock{Brokers: []string{"b:1"}, SASLMechanism: "SCRAM-SHA-256", SASLUsername: "u", SASLPasswordEncrypted: "vault:v1:abc"}
	c, err = Resolve(ctx, "", enc, func(_ context.Context, ct string) (string, error) {
		if ct != "vault:v1:abc" {
			t.Errorf("decrypt got %q", ct)
		}
		return "plain", nil
	})
	if err != nil || c.SASLPassword != "plain" || c.SASLMechanism != "SCRAM-SHA-256" {
		t.Errorf("encrypted: %+v, %v", c, err)
	}
	if _, err = Resolve(ctx, "", enc, func(context.Context, string) (string, error) { return "", errors.New("vault sealed") }); err == nil || !strings.Contains(err.Error(), "vault sealed") {
		t.Errorf("failed decryption: %v", err)
	}
	if _, err = Resolve(ctx, "", enc, nil); err == nil {
		t.Error("an encrypted password without a decrypter passed")
	}
}

// TestConfigFromEnv: TLS, the CA file and the SASL login come from the
// environment, also under a -kafka-brokers flag; unusable settings are
// errors.
func TestConfigFromEnv(t *testing.T) {
	t.Setenv(EnvBrokers, "env:9092")
	t.Setenv(EnvTLS, "true")
	t.Setenv(EnvCAFile, "/ca.pem")
	t.Setenv(EnvSASLMechanism, "scram-sha-512")
	t.Setenv(EnvSASLUsername, "u")
	t.Setenv(EnvSASLPassword, "p")
	c, err := Resolve(context.Background(), "flag:1", nil, nil)
	if err != nil || !reflect.DeepEqual(c.Brokers, []string{"flag:1"}) || c.TLS == nil || c.CAFile != "/ca.pem" ||
		c.SASLMechanism != "SCRAM-SHA-512" || c.SASLUser != "u" || c.SASLPassword != "p" {
		t.Errorf("flag with the environment: %+v, %v", c, err)
	}
	// A kafka block with tls = true trusts the CA file too.
	c, err = Resolve(context.Background(), "", &KafkaBlock{Brokers: []string{"b:1"}, TLS: true}, nil)
	if err != nil || c.CAFile != "/ca.pem" || c.SASLMechanism != "" {
		t.Errorf("block: %+v, %v", c, err)
	}
	if _, err := c.Opts(); err == nil || !strings.Contains(err.Error(), "CA file") {
		t.Errorf("a missing CA file: %v", err)
	}
	t.Setenv(EnvTLS, "maybe")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), EnvTLS) {
		t.Errorf("TLS=maybe: %v", err)
	}
	t.Setenv(EnvTLS, "")
	t.Setenv(EnvSASLPassword, "")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), EnvSASLPassword) {
		t.Errorf("a mechanism without a password: %v", err)
	}
	t.Setenv(EnvSASLMechanism, "GSSAPI")
	t.Setenv(EnvSASLPassword, "p")
	t.Setenv(EnvCAFile, "")
	c, err = ConfigFromEnv()
	if err == nil {
		_, err = c.Opts()
	}
	if err == nil || !strings.Contains(err.Error(), "GSSAPI") {
		t.Errorf("an unknown mechanism: %v", err)
	}
}
