package driver

import (
	"encoding/json"
	"fmt"
	"time"

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
})

// Config is the decoded plugin configuration.
type Config struct {
	ButterPath   string   `codec:"butter_path"`
	KafkaBrokers []string `codec:"kafka_brokers"`
	VaultAddr    string   `codec:"vault_addr"`
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
		"emits":         hclspec.NewAttr("emits", "list(string)", false),
		"unconfined":    hclspec.NewAttr("unconfined", "bool", false),
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
