package pool

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/secrets"
)

// Config is what a pool hosts: the task config that package jobs renders
// and the driver passes on, in the same field names.
type Config struct {
	Project   string           `json:"project"`
	Revision  string           `json:"revision"`
	Pool      string           `json:"pool"`
	Functions []FunctionConfig `json:"function"`
	// Kafka is the project's kafka block; flags and the environment
	// override it.
	Kafka *KafkaConfig `json:"kafka,omitempty"`
	// Topics are the project's streams as their stream blocks declare
	// them; the pool creates the missing ones with these settings.
	Topics []TopicConfig `json:"topic,omitempty"`
}

// TopicConfig is one stream block's topic settings.
type TopicConfig struct {
	Name       string `json:"name" codec:"name"`
	Partitions int    `json:"partitions" codec:"partitions"`
	Retention  string `json:"retention,omitempty" codec:"retention"`
	Compact    bool   `json:"compact,omitempty" codec:"compact"`
}

// KafkaConfig is how the pool reaches Kafka. The SASL password is read from
// the environment variable PasswordEnv names, never stored here.
type KafkaConfig struct {
	Brokers         []string `json:"brokers"`
	TLS             bool     `json:"tls,omitempty"`
	SASLMechanism   string   `json:"sasl_mechanism,omitempty"`
	SASLUsername    string   `json:"sasl_username,omitempty"`
	SASLPasswordEnv string   `json:"sasl_password_env,omitempty"`
	// SASLPasswordEncrypted is the password as a Vault transit ciphertext
	// of the project's key; the pool decrypts it at start.
	SASLPasswordEncrypted string `json:"sasl_password_encrypted,omitempty"`
}

// FunctionConfig is one function of a pool.
type FunctionConfig struct {
	Name    string   `json:"name"`
	Runtime string   `json:"runtime"`
	Bundle  string   `json:"bundle,omitempty"`
	Digest  string   `json:"digest,omitempty"`
	Handler string   `json:"handler,omitempty"`
	Command []string `json:"command,omitempty"`
	Timeout string   `json:"timeout"`
	Memory  int      `json:"memory"`
	CPU     int      `json:"cpu"`

	MinInstances int `json:"min_instances"`
	MaxInstances int `json:"max_instances"`
	Concurrency  int `json:"concurrency"`

	Output     string            `json:"output,omitempty"`
	DeadLetter string            `json:"dead_letter,omitempty"`
	Env        map[string]string `json:"env,omitempty"`
	Options    map[string]string `json:"options,omitempty"`

	// Streams are the function's stream triggers: the pool consumes each
	// with its own consumer group.
	Streams []StreamTrigger `json:"stream,omitempty"`
	// Retry is how failed stream events are retried; nil tries once.
	Retry *RetryConfig `json:"retry,omitempty"`
	// State turns on per-key state (docs/state.md); nil has none.
	State *StateConfig `json:"state,omitempty"`
	// Secrets are the secrets the function declares: references only.
	// The pool's secrets.Source gives their values to this function's
	// instances alone (docs/secrets.md).
	Secrets []secrets.Ref `json:"secret,omitempty"`
}

// StateConfig is a function's state block.
type StateConfig struct {
	// Key names the field of a JSON event that selects the state, or
	// "$key" for the record key (or the Butter-State-Key header) alone.
	Key string `json:"key"`
	// TTL drops the state of a key not written for this long; "" or 0
	// keeps it.
	TTL string `json:"ttl,omitempty"`
}

// StateTopic is the compacted changelog topic of a function's state.
func StateTopic(project, function string) string {
	return project + "._state." + function
}

// StreamTrigger is one stream a function consumes.
type StreamTrigger struct {
	Stream string `json:"stream"` // the topic
	Group  string `json:"group"`  // the consumer group
	// Offset is where a group with no committed offset starts: first,
	// latest, an offset, or an RFC 3339 time.
	Offset string `json:"offset"`
	// Order is "partition" (the default: a partition's events one at a
	// time) or "key" (different keys in parallel, each key in order).
	Order string `json:"order,omitempty"`
}

// RetryConfig is a function's retry policy for stream events.
type RetryConfig struct {
	Attempts   int    `json:"attempts"`
	Backoff    string `json:"backoff"`
	MaxBackoff string `json:"max_backoff"`
}

// LoadConfig reads a pool config written as JSON.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read pool config: %w", err)
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("pool config %s: %w", path, err)
	}
	return &c, c.check()
}

func (c *Config) check() error {
	seen := map[string]bool{}
	for _, f := range c.Functions {
		if f.Name == "" || seen[f.Name] {
			return fmt.Errorf("pool config: function name %q is empty or repeated", f.Name)
		}
		seen[f.Name] = true
		if _, err := time.ParseDuration(f.Timeout); err != nil {
			return fmt.Errorf("pool config: function %s: timeout: %w", f.Name, err)
		}
		if f.MaxInstances < 1 || f.MinInstances > f.MaxInstances {
			return fmt.Errorf("pool config: function %s: instances min %d, max %d", f.Name, f.MinInstances, f.MaxInstances)
		}
		if st := f.State; st != nil {
			if st.Key == "" {
				return fmt.Errorf("pool config: function %s: state: empty key", f.Name)
			}
			if d, err := time.ParseDuration(st.TTL); st.TTL != "" && (err != nil || d < 0) {
				return fmt.Errorf("pool config: function %s: state: ttl %q is not a duration such as 720h", f.Name, st.TTL)
			}
		}
	}
	return nil
}

// LocalConfig builds the config of a pool hosting every function of a
// project straight from its source tree, for `butter invoke --local` and
// `butter dev`: bundles are the source directories themselves.
func LocalConfig(p *spec.Project) *Config {
	c := &Config{Project: p.Name, Pool: "local"}
	for _, s := range p.Streams {
		tc := TopicConfig{Name: jobs.Topic(p.Name, s.Name), Partitions: s.Partitions, Compact: s.Compact}
		if s.Retention > 0 {
			tc.Retention = s.Retention.String()
		}
		c.Topics = append(c.Topics, tc)
	}
	// Tick topics of the functions with cron triggers, as jobs renders
	// them: the control plane's timer service produces the ticks there.
	ticked := map[string]bool{}
	for _, t := range jobs.Timers(p) {
		if !ticked[t.Function] {
			ticked[t.Function] = true
			c.Topics = append(c.Topics, TopicConfig{Name: t.Topic, Partitions: jobs.TimerPartitions})
		}
	}
	for _, f := range p.Functions {
		if jobs.HasQueuedTrigger(f) {
			c.Topics = append(c.Topics, TopicConfig{Name: jobs.RequestTopic(p.Name, f.Name), Partitions: jobs.RequestPartitions})
		}
	}
	if k := p.Kafka; k != nil {
		c.Kafka = &KafkaConfig{Brokers: k.Brokers, TLS: k.TLS, SASLMechanism: k.SASLMechanism, SASLUsername: k.SASLUsername, SASLPasswordEnv: k.SASLPasswordEnv, SASLPasswordEncrypted: k.SASLPasswordEncrypted}
	}
	for _, f := range p.Functions {
		fc := FunctionConfig{
			Name: f.Name, Runtime: f.Runtime, Handler: f.Handler, Command: f.Command,
			Timeout: f.Timeout.String(), Memory: f.Memory, CPU: f.CPU,
			MinInstances: f.Instances.Min, MaxInstances: f.Instances.Max, Concurrency: f.Instances.Concurrency,
			Env: f.Env, Options: f.Options,
		}
		switch {
		case f.Source == "":
			fc.Bundle = p.Dir
		default:
			src := filepath.Join(p.Dir, filepath.FromSlash(f.Source))
			if fi, err := os.Stat(src); err == nil && !fi.IsDir() {
				fc.Bundle = filepath.Dir(src)
			} else {
				fc.Bundle = src
			}
		}
		if f.Output != nil {
			fc.Output = jobs.Topic(p.Name, f.Output.Name)
		}
		if f.DeadLetter != nil {
			fc.DeadLetter = jobs.Topic(p.Name, f.DeadLetter.Name)
		}
		for _, t := range f.Triggers {
			if t.Type == spec.TriggerStream && t.Stream != nil {
				fc.Streams = append(fc.Streams, StreamTrigger{
					Stream: jobs.Topic(p.Name, t.Stream.Name),
					Group:  jobs.ConsumerGroup(p.Name, f.Name, t.Stream.Name),
					Offset: t.Offset.String(),
					Order:  t.Order,
				})
			}
		}
		if ticked[f.Name] {
			// One tick topic per function, whatever its number of cron
			// triggers; a new group starts from the first tick.
			fc.Streams = append(fc.Streams, StreamTrigger{
				Stream: jobs.TimerTopic(p.Name, f.Name),
				Group:  jobs.TimerGroup(p.Name, f.Name),
				Offset: string(spec.OffsetFirst),
			})
		}
		if jobs.HasQueuedTrigger(f) {
			fc.Streams = append(fc.Streams, StreamTrigger{
				Stream: jobs.RequestTopic(p.Name, f.Name),
				Group:  jobs.RequestGroup(p.Name, f.Name),
				Offset: string(spec.OffsetFirst),
			})
		}
		if f.Retry != nil {
			fc.Retry = &RetryConfig{Attempts: f.Retry.Attempts, Backoff: f.Retry.Backoff.String(), MaxBackoff: f.Retry.MaxBackoff.String()}
		}
		for _, s := range f.Secrets {
			fc.Secrets = append(fc.Secrets, secrets.Ref{Name: s.Name, Path: s.Path, Key: s.Key})
		}
		if f.State != nil {
			fc.State = &StateConfig{Key: f.State.Key}
			if f.State.TTL > 0 {
				fc.State.TTL = f.State.TTL.String()
			}
		}
		c.Functions = append(c.Functions, fc)
	}
	return c
}
