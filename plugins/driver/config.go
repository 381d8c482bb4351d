package driver

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/hashicorp/nomad/plugins/drivers"
	"github.com/hashicorp/nomad/plugins/shared/hclspec"
)

// configSpec is the plugin's own configuration, in the agent's
// plugin "nomad-driver-butter" { config { ... } } block.
var configSpec = hclspec.NewObject(map[string]*hclspec.Spec{
	// butter_path is the butter binary that runs pools; by default the
	// one on the PATH, or beside this plugin.
	"butter_path": hclspec.NewAttr("butter_path", "string", false),
	// kafka_brokers is the cluster's Kafka, for pools whose project has no
	// kafka block: it reaches them as $BUTTER_KAFKA_BROKERS.
	"kafka_brokers": hclspec.NewAttr("kafka_brokers", "list(string)", false),
	// vault_addr is Vault's address as pools reach it, for the transit
	// decryption of connector secrets: it reaches them as
	// $BUTTER_VAULT_ADDR.
	"vault_addr": hclspec.NewAttr("vault_addr", "string", false),
	// The cluster's Kafka credentials, for pools whose project has no
	// kafka block (see kafkaEnv): kafka_tls connects over TLS;
	// kafka_ca_file, a PEM file on the client node, is the CA to trust
	// (it implies TLS); kafka_sasl_mechanism (PLAIN, SCRAM-SHA-256 or
	// SCRAM-SHA-512) with kafka_sasl_username logs in with the password
	// in kafka_sasl_password_file, a file on the client node read at
	// each task start, so the password is in neither job files nor the
	// agent's configuration.
	"kafka_tls":                hclspec.NewAttr("kafka_tls", "bool", false),
	"kafka_ca_file":            hclspec.NewAttr("kafka_ca_file", "string", false),
	"kafka_sasl_mechanism":     hclspec.NewAttr("kafka_sasl_mechanism", "string", false),
	"kafka_sasl_username":      hclspec.NewAttr("kafka_sasl_username", "string", false),
	"kafka_sasl_password_file": hclspec.NewAttr("kafka_sasl_password_file", "string", false),
	// otel_env is OpenTelemetry's standard environment for every pool on
	// this client (docs/observability.md), a block of attributes (the
	// agent's HCL reads `x = { }` as a list): otel_env {
	// OTEL_EXPORTER_OTLP_ENDPOINT = "http://127.0.0.1:4318" } turns
	// tracing on and sends the pools' spans to the node's collector. Only
	// OTEL_* names; a task's own env wins.
	"otel_env": hclspec.NewBlockAttrs("otel_env", "string", false),
})

// Config is the decoded plugin configuration.
type Config struct {
	ButterPath            string            `codec:"butter_path"`
	KafkaBrokers          []string          `codec:"kafka_brokers"`
	VaultAddr             string            `codec:"vault_addr"`
	KafkaTLS              bool              `codec:"kafka_tls"`
	KafkaCAFile           string            `codec:"kafka_ca_file"`
	KafkaSASLMechanism    string            `codec:"kafka_sasl_mechanism"`
	KafkaSASLUsername     string            `codec:"kafka_sasl_username"`
	KafkaSASLPasswordFile string            `codec:"kafka_sasl_password_file"`
	OTelEnv               map[string]string `codec:"otel_env"`
}

// pluginBlock names the agent configuration block errors point at.
const pluginBlock = `plugin "nomad-driver-butter" { config { ... } }`

// Check validates the Kafka settings of the plugin configuration, so that
// a mistake fails the plugin's configuration (the agent says why) instead
// of every pool's start: the CA file must hold a PEM certificate, the
// mechanism must be one Butter speaks, and a mechanism needs a username
// and a readable, non-empty password file, which in turn need a
// mechanism.
func (c *Config) Check() error {
	for k := range c.OTelEnv {
		if !strings.HasPrefix(k, "OTEL_") {
			return fmt.Errorf("otel_env in %s names %q: it holds OpenTelemetry's OTEL_* variables only (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_SAMPLER, ...)", pluginBlock, k)
		}
	}
	if c.KafkaCAFile != "" {
		b, err := os.ReadFile(c.KafkaCAFile)
		if err != nil {
			return fmt.Errorf("kafka_ca_file in %s: %v", pluginBlock, err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(b) {
			return fmt.Errorf("kafka_ca_file %s in %s holds no PEM certificate: give the PEM file of the CA that signed the brokers' certificates", c.KafkaCAFile, pluginBlock)
		}
	}
	mech := strings.ToUpper(strings.TrimSpace(c.KafkaSASLMechanism))
	switch mech {
	case "":
		if c.KafkaSASLUsername != "" || c.KafkaSASLPasswordFile != "" {
			return fmt.Errorf("kafka_sasl_username or kafka_sasl_password_file is set in %s without kafka_sasl_mechanism: set it to PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", pluginBlock)
		}
		return nil
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
	default:
		return fmt.Errorf("kafka_sasl_mechanism %q in %s is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.KafkaSASLMechanism, pluginBlock)
	}
	c.KafkaSASLMechanism = mech
	if c.KafkaSASLUsername == "" {
		return fmt.Errorf("kafka_sasl_mechanism is %s in %s, but kafka_sasl_username is empty", mech, pluginBlock)
	}
	if c.KafkaSASLPasswordFile == "" {
		return fmt.Errorf("kafka_sasl_mechanism is %s in %s, but kafka_sasl_password_file is empty: name a file on the client node that holds the password", mech, pluginBlock)
	}
	if _, err := c.readPassword(); err != nil {
		return err
	}
	return nil
}

// readPassword reads the SASL password file, trimming one trailing
// newline (as `echo pw > file` writes).
func (c *Config) readPassword() (string, error) {
	b, err := os.ReadFile(c.KafkaSASLPasswordFile)
	if err != nil {
		return "", fmt.Errorf("kafka_sasl_password_file in %s: %v", pluginBlock, err)
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if pw == "" {
		return "", fmt.Errorf("kafka_sasl_password_file %s in %s is empty: write the SASL password into it", c.KafkaSASLPasswordFile, pluginBlock)
	}
	return pw, nil
}

// kafkaEnv returns the cluster's Kafka settings as the $BUTTER_KAFKA_*
// environment of a pool (package broker reads them: ConfigFromEnv), for
// each setting the task's own environment does not already carry. How a
// pool then picks is broker.Resolve's precedence: its -kafka-brokers
// flag, then the project's kafka block (which brings its own brokers and
// SASL login and takes only the CA file from here), then this
// environment. The password file is read now, at each task start, so a
// rotated password reaches the next pool started.
func (c *Config) kafkaEnv(taskEnv map[string]string) ([]string, error) {
	var env []string
	add := func(k, v string) {
		if v != "" && taskEnv[k] == "" {
			env = append(env, k+"="+v)
		}
	}
	add(broker.EnvBrokers, strings.Join(c.KafkaBrokers, ","))
	if c.KafkaTLS {
		add(broker.EnvTLS, "true")
	}
	add(broker.EnvCAFile, c.KafkaCAFile)
	if c.KafkaSASLMechanism != "" {
		pw, err := c.readPassword()
		if err != nil {
			return nil, err
		}
		add(broker.EnvSASLMechanism, c.KafkaSASLMechanism)
		add(broker.EnvSASLUsername, c.KafkaSASLUsername)
		add(broker.EnvSASLPassword, pw)
	}
	return env, nil
}

// taskConfigSpec is the schema Nomad checks a task's config against: the
// codec fields of pool.Config, which package jobs encodes into the job and
// poolConfig decodes back. TestTaskConfigSpecMatchesPoolConfig fails when
// the two differ.
var taskConfigSpec = hclspec.NewObject(map[string]*hclspec.Spec{
	"project":  hclspec.NewAttr("project", "string", true),
	"revision": hclspec.NewAttr("revision", "string", false),
	"pool":     hclspec.NewAttr("pool", "string", true),
	"port":     hclspec.NewAttr("port", "string", false),
	"topic": hclspec.NewBlockList("topic", hclspec.NewObject(map[string]*hclspec.Spec{
		"name":       hclspec.NewAttr("name", "string", true),
		"partitions": hclspec.NewAttr("partitions", "number", false),
		"retention":  hclspec.NewAttr("retention", "string", false),
		"compact":    hclspec.NewAttr("compact", "bool", false),
		"schema":     hclspec.NewAttr("schema", "string", false),
	})),
	"kafka": hclspec.NewBlock("kafka", false, hclspec.NewObject(map[string]*hclspec.Spec{
		"brokers":                 hclspec.NewAttr("brokers", "list(string)", true),
		"tls":                     hclspec.NewAttr("tls", "bool", false),
		"sasl_mechanism":          hclspec.NewAttr("sasl_mechanism", "string", false),
		"sasl_username":           hclspec.NewAttr("sasl_username", "string", false),
		"sasl_password_env":       hclspec.NewAttr("sasl_password_env", "string", false),
		"sasl_password_encrypted": hclspec.NewAttr("sasl_password_encrypted", "string", false),
	})),
	"function": hclspec.NewBlockList("function", hclspec.NewObject(map[string]*hclspec.Spec{
		"name":            hclspec.NewAttr("name", "string", true),
		"runtime":         hclspec.NewAttr("runtime", "string", true),
		"bundle":          hclspec.NewAttr("bundle", "string", false),
		"digest":          hclspec.NewAttr("digest", "string", false),
		"handler":         hclspec.NewAttr("handler", "string", false),
		"command":         hclspec.NewAttr("command", "list(string)", false),
		"timeout":         hclspec.NewAttr("timeout", "string", true),
		"memory":          hclspec.NewAttr("memory", "number", false),
		"cpu":             hclspec.NewAttr("cpu", "number", false),
		"min_instances":   hclspec.NewAttr("min_instances", "number", false),
		"max_instances":   hclspec.NewAttr("max_instances", "number", true),
		"concurrency":     hclspec.NewAttr("concurrency", "number", false),
		"spare_instances": hclspec.NewAttr("spare_instances", "number", false),
		"output":          hclspec.NewAttr("output", "string", false),
		"dead_letter":     hclspec.NewAttr("dead_letter", "string", false),
		"emits":           hclspec.NewAttr("emits", "list(string)", false),
		"unconfined":      hclspec.NewAttr("unconfined", "bool", false),
		"exec_mode":       hclspec.NewAttr("exec_mode", "string", false),
		"env":             hclspec.NewBlockAttrs("env", "string", false),
		"options":         hclspec.NewBlockAttrs("options", "string", false),
		"input_schema":    hclspec.NewAttr("input_schema", "string", false),
		"output_schema":   hclspec.NewAttr("output_schema", "string", false),
		"retry": hclspec.NewBlock("retry", false, hclspec.NewObject(map[string]*hclspec.Spec{
			"attempts":    hclspec.NewAttr("attempts", "number", true),
			"backoff":     hclspec.NewAttr("backoff", "string", false),
			"max_backoff": hclspec.NewAttr("max_backoff", "string", false),
		})),
		"secret": hclspec.NewBlockList("secret", hclspec.NewObject(map[string]*hclspec.Spec{
			"name": hclspec.NewAttr("name", "string", true),
			"path": hclspec.NewAttr("path", "string", true),
			"key":  hclspec.NewAttr("key", "string", true),
		})),
		"executions": hclspec.NewBlock("executions", false, hclspec.NewObject(map[string]*hclspec.Spec{
			"redact": hclspec.NewAttr("redact", "list(string)", false),
			"keep": hclspec.NewBlockList("keep", hclspec.NewObject(map[string]*hclspec.Spec{
				"age":     hclspec.NewAttr("age", "string", true),
				"one_per": hclspec.NewAttr("one_per", "string", false),
			})),
		})),
		"state": hclspec.NewBlock("state", false, hclspec.NewObject(map[string]*hclspec.Spec{
			"key": hclspec.NewAttr("key", "string", true),
			"ttl": hclspec.NewAttr("ttl", "string", false),
		})),
		"calls": hclspec.NewBlockList("calls", hclspec.NewObject(map[string]*hclspec.Spec{
			"kind":  hclspec.NewAttr("kind", "string", true),
			"name":  hclspec.NewAttr("name", "string", true),
			"topic": hclspec.NewAttr("topic", "string", true),
		})),
		"stream": hclspec.NewBlockList("stream", hclspec.NewObject(map[string]*hclspec.Spec{
			"stream":       hclspec.NewAttr("stream", "string", true),
			"group":        hclspec.NewAttr("group", "string", true),
			"offset":       hclspec.NewAttr("offset", "string", false),
			"order":        hclspec.NewAttr("order", "string", false),
			"schema":       hclspec.NewAttr("schema", "string", false),
			"exactly_once": hclspec.NewAttr("exactly_once", "bool", false),
		})),
	})),
})

// poolConfig decodes the task config straight into the pool's config,
// the shape package jobs encoded it from, checks it, and returns it as the
// JSON `butter pool -config` reads, with the drain the pool needs: the
// longest function timeout plus a second, so that in-flight calls can
// finish.
func poolConfig(cfg *drivers.TaskConfig) ([]byte, time.Duration, error) {
	var pc pool.Config
	if err := cfg.DecodeDriverConfig(&pc); err != nil {
		return nil, 0, fmt.Errorf("failed to decode driver config: %v", err)
	}
	if err := pc.Check(); err != nil {
		return nil, 0, fmt.Errorf("invalid butter task config: %v", err)
	}
	b, err := json.MarshalIndent(pc, "", "  ")
	return b, pc.LongestTimeout() + time.Second, err
}
