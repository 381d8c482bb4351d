package driver

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/secrets"
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
})

// Config is the decoded plugin configuration.
type Config struct {
	ButterPath   string   `codec:"butter_path"`
	KafkaBrokers []string `codec:"kafka_brokers"`
	VaultAddr    string   `codec:"vault_addr"`
}

// taskConfigSpec decodes the task config that package jobs renders
// (jobs/compile.go). Change both together.
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
		"name":          hclspec.NewAttr("name", "string", true),
		"runtime":       hclspec.NewAttr("runtime", "string", true),
		"bundle":        hclspec.NewAttr("bundle", "string", false),
		"digest":        hclspec.NewAttr("digest", "string", false),
		"handler":       hclspec.NewAttr("handler", "string", false),
		"command":       hclspec.NewAttr("command", "list(string)", false),
		"timeout":       hclspec.NewAttr("timeout", "string", true),
		"memory":        hclspec.NewAttr("memory", "number", false),
		"cpu":           hclspec.NewAttr("cpu", "number", false),
		"min_instances": hclspec.NewAttr("min_instances", "number", false),
		"max_instances": hclspec.NewAttr("max_instances", "number", true),
		"concurrency":   hclspec.NewAttr("concurrency", "number", false),
		"output":        hclspec.NewAttr("output", "string", false),
		"dead_letter":   hclspec.NewAttr("dead_letter", "string", false),
		"env":           hclspec.NewBlockAttrs("env", "string", false),
		"options":       hclspec.NewBlockAttrs("options", "string", false),
		"input_schema":  hclspec.NewAttr("input_schema", "string", false),
		"output_schema": hclspec.NewAttr("output_schema", "string", false),
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
		"state": hclspec.NewBlock("state", false, hclspec.NewObject(map[string]*hclspec.Spec{
			"key": hclspec.NewAttr("key", "string", true),
			"ttl": hclspec.NewAttr("ttl", "string", false),
		})),
		"stream": hclspec.NewBlockList("stream", hclspec.NewObject(map[string]*hclspec.Spec{
			"stream": hclspec.NewAttr("stream", "string", true),
			"group":  hclspec.NewAttr("group", "string", true),
			"offset": hclspec.NewAttr("offset", "string", false),
			"order":  hclspec.NewAttr("order", "string", false),
			"schema": hclspec.NewAttr("schema", "string", false),
		})),
	})),
})

// TaskConfig is the decoded task config.
type TaskConfig struct {
	Project   string             `codec:"project"`
	Revision  string             `codec:"revision"`
	Pool      string             `codec:"pool"`
	Port      string             `codec:"port"`
	Functions []FunctionConfig   `codec:"function"`
	Kafka     *KafkaBlock        `codec:"kafka"`
	Topics    []pool.TopicConfig `codec:"topic"`
}

// KafkaBlock is the project's kafka block.
type KafkaBlock struct {
	Brokers               []string `codec:"brokers"`
	TLS                   bool     `codec:"tls"`
	SASLMechanism         string   `codec:"sasl_mechanism"`
	SASLUsername          string   `codec:"sasl_username"`
	SASLPasswordEnv       string   `codec:"sasl_password_env"`
	SASLPasswordEncrypted string   `codec:"sasl_password_encrypted"`
}

// FunctionConfig is one function block of the task config.
type FunctionConfig struct {
	Name         string            `codec:"name"`
	Runtime      string            `codec:"runtime"`
	Bundle       string            `codec:"bundle"`
	Digest       string            `codec:"digest"`
	Handler      string            `codec:"handler"`
	Command      []string          `codec:"command"`
	Timeout      string            `codec:"timeout"`
	Memory       int               `codec:"memory"`
	CPU          int               `codec:"cpu"`
	MinInstances int               `codec:"min_instances"`
	MaxInstances int               `codec:"max_instances"`
	Concurrency  int               `codec:"concurrency"`
	Output       string            `codec:"output"`
	DeadLetter   string            `codec:"dead_letter"`
	Env          map[string]string `codec:"env"`
	Options      map[string]string `codec:"options"`
	InputSchema  string            `codec:"input_schema"`
	OutputSchema string            `codec:"output_schema"`
	Retry        *RetryBlock       `codec:"retry"`
	Streams      []StreamBlock     `codec:"stream"`
	State        *StateBlock       `codec:"state"`
	Secrets      []secrets.Ref     `codec:"secret"`
}

// StateBlock is a function's state block.
type StateBlock struct {
	Key string `codec:"key"`
	TTL string `codec:"ttl"`
}

// RetryBlock is a function's retry block.
type RetryBlock struct {
	Attempts   int    `codec:"attempts"`
	Backoff    string `codec:"backoff"`
	MaxBackoff string `codec:"max_backoff"`
}

// StreamBlock is one stream block: a stream trigger.
type StreamBlock struct {
	Stream string `codec:"stream"`
	Group  string `codec:"group"`
	Offset string `codec:"offset"`
	Order  string `codec:"order"`
	Schema string `codec:"schema"`
}

// poolConfig converts the task config into the pool's JSON config and
// returns the drain the pool needs: the longest function timeout plus a
// second, so that in-flight calls can finish.
func (tc *TaskConfig) poolConfig() ([]byte, time.Duration, error) {
	pc := pool.Config{Project: tc.Project, Revision: tc.Revision, Pool: tc.Pool, Topics: tc.Topics}
	if k := tc.Kafka; k != nil && len(k.Brokers) > 0 {
		pc.Kafka = &pool.KafkaConfig{Brokers: k.Brokers, TLS: k.TLS, SASLMechanism: k.SASLMechanism, SASLUsername: k.SASLUsername, SASLPasswordEnv: k.SASLPasswordEnv, SASLPasswordEncrypted: k.SASLPasswordEncrypted}
	}
	var longest time.Duration
	for _, f := range tc.Functions {
		d, err := time.ParseDuration(f.Timeout)
		if err != nil {
			return nil, 0, fmt.Errorf("function %s: timeout %q: %w", f.Name, f.Timeout, err)
		}
		longest = max(longest, d)
		fc := pool.FunctionConfig{
			Name: f.Name, Runtime: f.Runtime, Bundle: f.Bundle, Digest: f.Digest, Handler: f.Handler,
			Command: f.Command, Timeout: f.Timeout, Memory: f.Memory, CPU: f.CPU,
			MinInstances: f.MinInstances, MaxInstances: f.MaxInstances, Concurrency: f.Concurrency,
			Output: f.Output, DeadLetter: f.DeadLetter, Env: f.Env, Options: f.Options,
		}
		if f.Retry != nil && f.Retry.Attempts > 0 {
			fc.Retry = &pool.RetryConfig{Attempts: f.Retry.Attempts, Backoff: f.Retry.Backoff, MaxBackoff: f.Retry.MaxBackoff}
		}
		fc.Secrets = f.Secrets
		if f.State != nil && f.State.Key != "" {
			fc.State = &pool.StateConfig{Key: f.State.Key, TTL: f.State.TTL}
		}
		for _, s := range f.Streams {
			order := s.Order
			if order == "" {
				order = "partition" // the default; jobs render only "key"
			}
			fc.Streams = append(fc.Streams, pool.StreamTrigger{Stream: s.Stream, Group: s.Group, Offset: s.Offset, Order: order})
		}
		pc.Functions = append(pc.Functions, fc)
	}
	b, err := json.MarshalIndent(pc, "", "  ")
	return b, longest + time.Second, err
}
