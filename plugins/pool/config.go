package pool

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/secrets"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Config is what a pool hosts. It is the one shape of a pool's
// configuration: package jobs builds it from the spec, with one builder
// (jobs.Compile for each task group, giving Compiled.Pools; jobs.LocalConfig
// for `butter dev` and `butter invoke -local`), and encodes it into the task
// config by its codec tags; the
// driver decodes the task config straight into it (by the same tags, after
// Nomad has checked it against the driver's hclspec) and hands it to
// `butter pool` as JSON (by the json tags, the same names). A field added
// here needs its entry in the driver's taskConfigSpec: a driver test fails
// until both agree.
//
// Durations travel as Go duration strings ("5s", "720h0m0s"); Check
// parses each of them, and the pool reads them through duration, the one
// parser, after it.
type Config struct {
	Project  string `json:"project" codec:"project"`
	Revision string `json:"revision" codec:"revision,omitempty"`
	Pool     string `json:"pool" codec:"pool"`
	// Port is the label of the task group's port that the invoke endpoint
	// listens on (jobs.PortLabel); Nomad gives its number to the pool as
	// $NOMAD_PORT_<label>. Empty outside Nomad.
	Port      string           `json:"port,omitempty" codec:"port"`
	Functions []FunctionConfig `json:"function" codec:"function"`
	// Topics are the project's streams as their stream blocks declare
	// them; the pool creates the missing ones with these settings.
	Topics []TopicConfig `json:"topic,omitempty" codec:"topic,omitempty"`
	// Kafka is the project's kafka block; the pool's -kafka-brokers flag
	// overrides it, and $BUTTER_KAFKA_BROKERS stands in when it is absent
	// (broker.Resolve).
	Kafka *broker.KafkaBlock `json:"kafka,omitempty" codec:"kafka,omitempty"`
}

// TopicConfig is one stream block's topic settings.
type TopicConfig struct {
	Name       string `json:"name" codec:"name"`
	Partitions int    `json:"partitions" codec:"partitions"`
	Retention  string `json:"retention,omitempty" codec:"retention,omitempty"`
	Compact    bool   `json:"compact,omitempty" codec:"compact,omitempty"`
	// Schema is the JSON Schema file the stream's records must match,
	// located like a function's InputSchema; empty for none.
	Schema string `json:"schema,omitempty" codec:"schema,omitempty"`
}

// FunctionConfig is one function of a pool.
type FunctionConfig struct {
	Name    string `json:"name" codec:"name"`
	Runtime string `json:"runtime" codec:"runtime"`
	// Bundle is the function's code: a directory, relative to the task
	// directory in a job (where its artifact puts it) until Resolve makes
	// it absolute; empty for the task directory itself.
	Bundle  string   `json:"bundle,omitempty" codec:"bundle,omitempty"`
	Digest  string   `json:"digest,omitempty" codec:"digest,omitempty"`
	Handler string   `json:"handler,omitempty" codec:"handler,omitempty"`
	Command []string `json:"command,omitempty" codec:"command,omitempty"`
	Timeout string   `json:"timeout" codec:"timeout"`
	Memory  int      `json:"memory" codec:"memory"`
	CPU     int      `json:"cpu" codec:"cpu"`

	MinInstances int `json:"min_instances" codec:"min_instances"`
	MaxInstances int `json:"max_instances" codec:"max_instances"`
	Concurrency  int `json:"concurrency" codec:"concurrency"`
	// SpareInstances is how many instances with no call in flight the
	// pool keeps started beyond the busy ones (up to MaxInstances) while
	// the function is called, so that a rise in load finds an instance
	// ready instead of waiting for one to start; they retire with the
	// rest once the function has been idle for the idle timeout.
	SpareInstances int `json:"spare_instances,omitempty" codec:"spare_instances,omitempty"`

	Output     string `json:"output,omitempty" codec:"output,omitempty"`
	DeadLetter string `json:"dead_letter,omitempty" codec:"dead_letter,omitempty"`
	// Emits are the topics of the streams the function may emit to
	// besides its Output (the spec's emits list): the pool answers an
	// emit to any other with "unknown stream" and writes nothing.
	Emits   []string          `json:"emits,omitempty" codec:"emits,omitempty"`
	Env     map[string]string `json:"env,omitempty" codec:"env,omitempty"`
	Options map[string]string `json:"options,omitempty" codec:"options,omitempty"`

	// Calls are the targets the function may call and await (the spec's
	// calls list, calls.go): the pool refuses a call to any other.
	Calls []CallTarget `json:"calls,omitempty" codec:"calls,omitempty"`

	// InputSchema and OutputSchema are the JSON Schema files of the
	// function's input and output, located like Bundle (in a job, where
	// their artifacts put them); empty for none.
	InputSchema  string `json:"input_schema,omitempty" codec:"input_schema,omitempty"`
	OutputSchema string `json:"output_schema,omitempty" codec:"output_schema,omitempty"`

	// Retry is how failed stream events are retried; nil tries once.
	Retry *RetryConfig `json:"retry,omitempty" codec:"retry,omitempty"`
	// State turns on per-key state (docs/state.md); nil has none.
	State *StateConfig `json:"state,omitempty" codec:"state,omitempty"`
	// Executions, when set, records each call in the execution log
	// (executions.go).
	Executions *ExecutionsConfig `json:"executions,omitempty" codec:"executions,omitempty"`
	// Streams are the function's stream triggers: the pool consumes each
	// with its own consumer group.
	Streams []StreamTrigger `json:"stream,omitempty" codec:"stream,omitempty"`
	// Secrets are the secrets the function declares: references only.
	// The pool's secrets.Source gives their values to this function's
	// instances alone (docs/secrets.md).
	Secrets []secrets.Ref `json:"secret,omitempty" codec:"secret,omitempty"`
	// Unconfined is the spec's sandbox = false: the function's instances
	// run without the sandbox every other instance has (package sandbox).
	// A pool hosting a function with secrets refuses it.
	Unconfined bool `json:"unconfined,omitempty" codec:"unconfined,omitempty"`
	// ExecMode is an exec function's mode = "lines" (one process per
	// instance, a line per call: runtime.ExecModeLines); empty forks a
	// process per call.
	ExecMode string `json:"exec_mode,omitempty" codec:"exec_mode,omitempty"`
}

// ExecutionsConfig is a function's execution log: its tiers of
// retention, by increasing age, and the fields it never records.
type ExecutionsConfig struct {
	Keep   []ExecKeepConfig `json:"keep" codec:"keep"`
	Redact []string         `json:"redact,omitempty" codec:"redact,omitempty"`
}

// ExecKeepConfig is one tier: up to Age, one execution per OnePer (""
// keeps every one).
type ExecKeepConfig struct {
	Age    string `json:"age" codec:"age"`
	OnePer string `json:"one_per,omitempty" codec:"one_per,omitempty"`
}

// StateConfig is a function's state block.
type StateConfig struct {
	// Key names the field of a JSON event that selects the state, or
	// "$key" for the record key (or the Butter-State-Key header) alone.
	Key string `json:"key" codec:"key"`
	// TTL drops the state of a key not written for this long; "" or 0
	// keeps it.
	TTL string `json:"ttl,omitempty" codec:"ttl,omitempty"`
}

// StateTopic is the compacted changelog topic of a function's state.
func StateTopic(project, function string) string {
	return project + "._state." + function
}

// StreamTrigger is one stream a function consumes.
type StreamTrigger struct {
	Stream string `json:"stream" codec:"stream"` // the topic
	Group  string `json:"group" codec:"group"`   // the consumer group
	// Offset is where a group with no committed offset starts: first,
	// latest, an offset, or an RFC 3339 time.
	Offset string `json:"offset" codec:"offset"`
	// Order is "key" (different keys in parallel, each key in order), or
	// "" or "partition" for the default: a partition's events one at a
	// time.
	Order string `json:"order,omitempty" codec:"order,omitempty"`
	// Schema is the JSON Schema file of the stream's events, located like
	// a function's InputSchema; empty for none.
	Schema string `json:"schema,omitempty" codec:"schema,omitempty"`
	// ExactlyOnce handles each poll of the trigger in one Kafka
	// transaction (transact.go, docs/events.md "Delivery").
	ExactlyOnce bool `json:"exactly_once,omitempty" codec:"exactly_once,omitempty"`
}

// RetryConfig is a function's retry policy for stream events.
type RetryConfig struct {
	Attempts   int    `json:"attempts" codec:"attempts"`
	Backoff    string `json:"backoff" codec:"backoff"`
	MaxBackoff string `json:"max_backoff" codec:"max_backoff"`
}

// LoadConfig reads a pool config written as JSON, and checks it.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read pool config: %w", err)
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("pool config %s: %w", path, err)
	}
	return &c, c.Check()
}

// Resolve makes the config's relative file locations (bundles, schemas)
// relative to dir instead: the task directory in a job, the project
// directory locally (absolute there, or as the user gave it). A function
// without a bundle gets dir itself.
func (c *Config) Resolve(dir string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, filepath.FromSlash(p))
	}
	for i := range c.Functions {
		f := &c.Functions[i]
		if f.Bundle == "" {
			f.Bundle = dir
		} else {
			f.Bundle = abs(f.Bundle)
		}
		f.InputSchema = abs(f.InputSchema)
		f.OutputSchema = abs(f.OutputSchema)
		for j := range f.Streams {
			f.Streams[j].Schema = abs(f.Streams[j].Schema)
		}
	}
	for i := range c.Topics {
		c.Topics[i].Schema = abs(c.Topics[i].Schema)
	}
}

// Check reports the first thing wrong with the config: a function name
// empty or repeated, a duration that does not parse, instance bounds that
// cannot hold.
func (c *Config) Check() error {
	seen := map[string]bool{}
	for _, t := range c.Topics {
		if _, err := parseDuration(t.Retention, true); err != nil {
			return fmt.Errorf("pool config: topic %s: retention: %w", t.Name, err)
		}
	}
	for _, f := range c.Functions {
		if f.Name == "" || seen[f.Name] {
			return fmt.Errorf("pool config: function name %q is empty or repeated", f.Name)
		}
		seen[f.Name] = true
		if _, err := parseDuration(f.Timeout, false); err != nil {
			return fmt.Errorf("pool config: function %s: timeout: %w", f.Name, err)
		}
		if f.MaxInstances < 1 || f.MinInstances > f.MaxInstances {
			return fmt.Errorf("pool config: function %s: instances min %d, max %d", f.Name, f.MinInstances, f.MaxInstances)
		}
		if f.SpareInstances < 0 || f.SpareInstances > f.MaxInstances {
			return fmt.Errorf("pool config: function %s: spare instances %d, not between 0 and max %d", f.Name, f.SpareInstances, f.MaxInstances)
		}
		if r := f.Retry; r != nil {
			for name, s := range map[string]string{"backoff": r.Backoff, "max_backoff": r.MaxBackoff} {
				if _, err := parseDuration(s, true); err != nil {
					return fmt.Errorf("pool config: function %s: retry: %s: %w", f.Name, name, err)
				}
			}
		}
		for _, t := range f.Emits {
			// A stream's topic, never an internal one (_state, _timers,
			// requests): the pool would let the function write there.
			if s, ok := strings.CutPrefix(t, c.Project+"."); !ok || !names.Valid(s) {
				return fmt.Errorf("pool config: function %s: emits: %q is not a stream of project %s", f.Name, t, c.Project)
			}
		}
		if err := checkCalls(c, f); err != nil {
			return err
		}
		if st := f.State; st != nil {
			if st.Key == "" {
				return fmt.Errorf("pool config: function %s: state: empty key", f.Name)
			}
			if _, err := parseDuration(st.TTL, true); err != nil {
				return fmt.Errorf("pool config: function %s: state: ttl %q is not a duration such as 720h", f.Name, st.TTL)
			}
		}
	}
	return nil
}

// parseDuration is the one parser of the config's durations: a Go
// duration string, not negative; "" is 0 where optional.
func parseDuration(s string, optional bool) (time.Duration, error) {
	if s == "" && optional {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return d, nil
}

// duration reads a duration that Check has accepted; anything else is 0.
func duration(s string) time.Duration {
	d, _ := parseDuration(s, true)
	return d
}

// LongestTimeout is the longest timeout of the config's functions: how
// long a drain must wait for the calls in flight.
func (c *Config) LongestTimeout() time.Duration {
	var longest time.Duration
	for _, f := range c.Functions {
		longest = max(longest, duration(f.Timeout))
	}
	return longest
}

// HasStreams says whether the pool needs Kafka: a function consumes a
// stream, produces an output, keeps state, or the project declares streams
// its functions may emit to.
func (c *Config) HasStreams() bool {
	if len(c.Topics) > 0 {
		return true
	}
	for _, f := range c.Functions {
		if len(f.Streams) > 0 || f.Output != "" || f.State != nil {
			return true
		}
	}
	return false
}

// schemaSet holds the JSON Schemas a pool's functions declare, read and
// compiled once when the pool is created: a missing, malformed or
// uncompilable schema file fails New rather than a call later. The calls
// are checked against them (schemas.go).
type schemaSet struct {
	// Input and Output are by function name.
	Input, Output map[string]json.RawMessage
	// Stream is by function name, then by topic.
	Stream map[string]map[string]json.RawMessage
	// Topic is the schema of the project's streams, by topic.
	Topic map[string]json.RawMessage

	// in, out, stream and topic are the same schemas compiled.
	in, out map[string]*schema
	stream  map[string]map[string]*schema
	topic   map[string]*schema
}

// loadSchemas reads the schema files the config names. Paths are read as
// they are: Resolve first makes them absolute.
func (c *Config) loadSchemas() (*schemaSet, error) {
	s := &schemaSet{Input: map[string]json.RawMessage{}, Output: map[string]json.RawMessage{}, Stream: map[string]map[string]json.RawMessage{}, Topic: map[string]json.RawMessage{},
		in: map[string]*schema{}, out: map[string]*schema{}, stream: map[string]map[string]*schema{}, topic: map[string]*schema{}}
	type compiled struct {
		raw json.RawMessage
		s   *jsonschema.Schema
	}
	cache := map[string]compiled{}
	// load reads and compiles the schema file path, once per file; owner
	// and field name it in errors ("function f: input_schema").
	load := func(owner, field, path string) (json.RawMessage, *schema, error) {
		cs, ok := cache[path]
		if !ok {
			b, err := readSchema(path)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %s: %w", owner, field, err)
			}
			sch, err := compileSchema(path, b)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %s: %w", owner, field, err)
			}
			cs = compiled{b, sch}
			cache[path] = cs
		}
		return cs.raw, &schema{field: field, file: path, s: cs.s}, nil
	}
	for _, f := range c.Functions {
		var err error
		owner := "function " + f.Name
		if f.InputSchema != "" {
			if s.Input[f.Name], s.in[f.Name], err = load(owner, "input_schema", f.InputSchema); err != nil {
				return nil, err
			}
		}
		if f.OutputSchema != "" {
			if s.Output[f.Name], s.out[f.Name], err = load(owner, "output_schema", f.OutputSchema); err != nil {
				return nil, err
			}
		}
		for _, tr := range f.Streams {
			if tr.Schema == "" {
				continue
			}
			b, sch, err := load(owner, "stream "+tr.Stream+": schema", tr.Schema)
			if err != nil {
				return nil, err
			}
			if s.Stream[f.Name] == nil {
				s.Stream[f.Name] = map[string]json.RawMessage{}
				s.stream[f.Name] = map[string]*schema{}
			}
			s.Stream[f.Name][tr.Stream] = b
			s.stream[f.Name][tr.Stream] = sch
		}
	}
	for _, t := range c.Topics {
		if t.Schema == "" {
			continue
		}
		b, sch, err := load("stream "+t.Name, "schema", t.Schema)
		if err != nil {
			return nil, err
		}
		s.Topic[t.Name], s.topic[t.Name] = b, sch
	}
	return s, nil
}

// readSchema reads one JSON Schema file: a JSON object, or true or false
// (the schemas that accept everything and nothing).
func readSchema(path string) (json.RawMessage, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the JSON Schema: %w", err)
	}
	b = bytes.TrimSpace(b)
	if !json.Valid(b) {
		return nil, fmt.Errorf("JSON Schema %s is not valid JSON", path)
	}
	if b[0] != '{' && string(b) != "true" && string(b) != "false" {
		return nil, fmt.Errorf("JSON Schema %s is neither an object nor a boolean", path)
	}
	return json.RawMessage(b), nil
}

// encryptedSuffix ends a connector's option that holds a credential as a
// Vault transit ciphertext (spec.EncryptedSuffix).
const encryptedSuffix = "_encrypted"

// NeedsDecrypt says whether the config holds ciphertexts that the pool
// decrypts at start (Decrypt, and the kafka block's SASL password in
// broker.Resolve): a pool on Nomad needs a Vault token for them.
func (c *Config) NeedsDecrypt() bool {
	if c.Kafka != nil && c.Kafka.SASLPasswordEncrypted != "" {
		return true
	}
	for _, f := range c.Functions {
		for k := range f.Options {
			if strings.HasSuffix(k, encryptedSuffix) {
				return true
			}
		}
	}
	return false
}

// Decrypt replaces each connector credential given as a Vault transit
// ciphertext (option "<arg>_encrypted") by its plaintext in the
// function's environment, under a name that option <arg> then names, as
// a credential naming one of the function's secrets does: the connector
// reads both the same way. decrypt is called once per ciphertext; an
// error names the function and the argument. Only connectors, which run
// in the pool's process, have such options, so no worker sees the value.
func (c *Config) Decrypt(ctx context.Context, decrypt broker.Decrypter) error {
	for i := range c.Functions {
		f := &c.Functions[i]
		for k, ct := range f.Options {
			arg, ok := strings.CutSuffix(k, encryptedSuffix)
			if !ok {
				continue
			}
			if decrypt == nil {
				return fmt.Errorf("function %s: its %s is a Vault transit ciphertext, and this pool has no Vault to decrypt it", f.Name, k)
			}
			plain, err := decrypt(ctx, ct)
			if err != nil {
				return fmt.Errorf("function %s: decrypt %s: %w", f.Name, k, err)
			}
			env := "BUTTER_CONNECTOR_" + strings.ToUpper(arg)
			opts := maps.Clone(f.Options)
			delete(opts, k)
			opts[arg] = env
			f.Options = opts
			vars := maps.Clone(f.Env)
			if vars == nil {
				vars = map[string]string{}
			}
			vars[env] = plain
			f.Env = vars
		}
	}
	return nil
}
