package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
)

// KafkaBlock is a project's kafka block as a pool's config carries it
// (plugins/pool.Config.Kafka, encoded into the job by its codec tags):
// where the project's own Kafka is and how to log in. The SASL password is
// never in it, only the environment variable that holds it or the
// password encrypted with the project's Vault transit key.
type KafkaBlock struct {
	Brokers         []string `json:"brokers" codec:"brokers"`
	TLS             bool     `json:"tls,omitempty" codec:"tls,omitempty"`
	SASLMechanism   string   `json:"sasl_mechanism,omitempty" codec:"sasl_mechanism,omitempty"`
	SASLUsername    string   `json:"sasl_username,omitempty" codec:"sasl_username,omitempty"`
	SASLPasswordEnv string   `json:"sasl_password_env,omitempty" codec:"sasl_password_env,omitempty"`
	// SASLPasswordEncrypted is the password as a Vault transit ciphertext
	// of the project's key; only the pool decrypts it, at start.
	SASLPasswordEncrypted string `json:"sasl_password_encrypted,omitempty" codec:"sasl_password_encrypted,omitempty"`
}

// Decrypter turns a Vault transit ciphertext of the project's key into
// the plain text (secrets.Decrypt with a task's Vault client).
type Decrypter func(ctx context.Context, ciphertext string) (string, error)

// Resolve picks how a process reaches Kafka, most specific first: flag
// (-kafka-brokers, host:port,...) with TLS and SASL from the environment
// (ConfigFromEnv), then the project's kafka block (pools only; the server
// and the gateway pass nil), then the environment alone. A block with
// tls = true trusts $BUTTER_KAFKA_CA_FILE when it is set, the system's
// roots otherwise. The block's SASL password is read from the
// environment variable it names, or decrypted with decrypt, which is
// called only then; a password that cannot be had is an error, not an
// attempt without one.
func Resolve(ctx context.Context, flag string, block *KafkaBlock, decrypt Decrypter) (Config, error) {
	switch {
	case flag != "":
		c, err := ConfigFromEnv()
		c.Brokers = splitBrokers(flag)
		return c, err
	case block != nil && len(block.Brokers) > 0:
		c := Config{Brokers: block.Brokers, SASLMechanism: block.SASLMechanism, SASLUser: block.SASLUsername}
		if block.TLS {
			c.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
			c.CAFile = os.Getenv(EnvCAFile)
		}
		switch {
		case block.SASLMechanism == "":
		case block.SASLPasswordEncrypted != "":
			if decrypt == nil {
				return c, errors.New("the kafka block's SASL password is encrypted, and this pool cannot decrypt")
			}
			pw, err := decrypt(ctx, block.SASLPasswordEncrypted)
			if err != nil {
				return c, fmt.Errorf("the kafka block's SASL password: %w", err)
			}
			c.SASLPassword = pw
		default:
			c.SASLPassword = os.Getenv(block.SASLPasswordEnv)
			if c.SASLPassword == "" {
				return c, fmt.Errorf("the kafka block's SASL password is read from $%s, which is empty in the pool's environment", block.SASLPasswordEnv)
			}
		}
		return c, nil
	}
	return ConfigFromEnv()
}

// splitBrokers splits host:port,host:port, dropping blanks.
func splitBrokers(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}
