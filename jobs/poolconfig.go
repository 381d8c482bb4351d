package jobs

import (
	"fmt"
	"github.com/butterfn/butter/names"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/secrets"
)

// A pool's configuration has one shape, pool.Config, built from the spec
// here and nowhere else: Compile builds one per task group and encodes it
// into the task's config (taskConfig), the driver decodes that config back
// into a pool.Config, and LocalConfig builds the one `butter dev` and
// `butter invoke -local` run. Only where the files are differs: a job's
// pool finds bundles and schemas where the task's artifacts put them, a
// local pool in the project's own tree.

// locator says where a pool finds the file or directory at a
// project-relative path: a function's source (schema false) or a JSON
// Schema (schema true). It returns the location the pool reads, and the
// content digest when it is known.
type locator func(path string, schema bool) (loc, digest string)

// poolConfig builds the config of the pool name, which hosts fns, of
// project p at revision rev.
func poolConfig(p *spec.Project, rev, name string, fns []*spec.Function, locate locator) *pool.Config {
	c := &pool.Config{Project: p.Name, Revision: rev, Pool: name, Topics: topics(p, locate)}
	if k := p.Kafka; k != nil {
		c.Kafka = &broker.KafkaBlock{Brokers: k.Brokers, TLS: k.TLS, SASLMechanism: k.SASLMechanism, SASLUsername: k.SASLUsername, SASLPasswordEnv: k.SASLPasswordEnv, SASLPasswordEncrypted: k.SASLPasswordEncrypted}
	}
	for _, f := range fns {
		c.Functions = append(c.Functions, functionConfig(p, f, locate))
	}
	return c
}

// topics are the topics every pool of the project creates when missing:
// the project's streams, as their stream blocks say (partitions,
// retention, compaction), and its functions' tick and request topics.
func topics(p *spec.Project, locate locator) []pool.TopicConfig {
	var out []pool.TopicConfig
	for _, s := range p.Streams {
		t := pool.TopicConfig{Name: names.Topic(p.Name, s.Name), Partitions: s.Partitions, Compact: s.Compact}
		if s.Retention > 0 {
			t.Retention = s.Retention.String()
		}
		if s.Schema != "" {
			// The stream's own schema, which what a function produces or
			// emits to it must match (enforced by the events work).
			t.Schema, _ = locate(s.Schema, true)
		}
		out = append(out, t)
	}
	for _, f := range p.Functions {
		if hasCronTrigger(f) {
			// One partition, not compacted, the broker's retention.
			out = append(out, pool.TopicConfig{Name: names.TimerTopic(p.Name, f.Name), Partitions: TimerPartitions})
		}
		if consumesRequests(p, f) {
			out = append(out, pool.TopicConfig{Name: names.RequestTopic(p.Name, f.Name), Partitions: RequestPartitions})
		}
	}
	return out
}

// functionConfig is one function of a pool. The locator is called in the
// order the task's artifacts are listed: the source, the input and output
// schemas, then the schemas of the streams it consumes.
func functionConfig(p *spec.Project, f *spec.Function, locate locator) pool.FunctionConfig {
	fc := pool.FunctionConfig{
		Name: f.Name, Runtime: f.Runtime, Handler: f.Handler, Command: f.Command,
		Timeout: f.Timeout.String(), Memory: f.Memory, CPU: f.CPU,
		MinInstances: f.Instances.Min, MaxInstances: f.Instances.Max, Concurrency: f.Instances.Concurrency,
		SpareInstances: f.Instances.Spare,
		Env:            f.Env, Options: f.Options, Unconfined: f.NoSandbox, ExecMode: f.ExecMode,
	}
	if f.Source != "" {
		fc.Bundle, fc.Digest = locate(f.Source, false)
	}
	if f.InputSchema != "" {
		fc.InputSchema, _ = locate(f.InputSchema, true)
	}
	if f.OutputSchema != "" {
		fc.OutputSchema, _ = locate(f.OutputSchema, true)
	}
	if f.Output != nil {
		fc.Output = names.Topic(p.Name, f.Output.Name)
	}
	if f.DeadLetter != nil {
		fc.DeadLetter = names.Topic(p.Name, f.DeadLetter.Name)
	}
	for _, s := range f.Emits {
		// The pool refuses an emit to any stream but these and the output.
		fc.Emits = append(fc.Emits, names.Topic(p.Name, s.Name))
	}
	fc.Calls = callTargets(p, f)
	if f.Retry != nil {
		fc.Retry = &pool.RetryConfig{Attempts: f.Retry.Attempts, Backoff: f.Retry.Backoff.String(), MaxBackoff: f.Retry.MaxBackoff.String()}
	}
	if e := f.Executions; e != nil {
		fc.Executions = &pool.ExecutionsConfig{Redact: e.Redact}
		for _, k := range e.Keep {
			kc := pool.ExecKeepConfig{Age: k.Age.String()}
			if k.OnePer > 0 {
				kc.OnePer = k.OnePer.String()
			}
			fc.Executions.Keep = append(fc.Executions.Keep, kc)
		}
	}
	if f.State != nil {
		fc.State = &pool.StateConfig{Key: f.State.Key}
		if f.State.TTL > 0 {
			fc.State.TTL = f.State.TTL.String()
		}
	}
	// The pool consumes the function's streams, its tick topic when it
	// has cron triggers (the control plane fires the ticks into it), and
	// its request topic when it has queued or async http triggers. HTTP
	// routes live in the gateway.
	for _, t := range f.Triggers {
		if t.Type != spec.TriggerStream || t.Stream == nil {
			continue
		}
		tr := pool.StreamTrigger{
			Stream: names.Topic(p.Name, t.Stream.Name),
			Group:  names.ConsumerGroup(p.Name, f.Name, t.Stream.Name),
			Offset: t.Offset.String(),
		}
		if t.Order == "key" {
			tr.Order = "key" // "partition" is the default, left out
		}
		tr.ExactlyOnce = t.ExactlyOnce
		if t.Stream.Schema != "" {
			tr.Schema, _ = locate(t.Stream.Schema, true)
		}
		fc.Streams = append(fc.Streams, tr)
	}
	if hasCronTrigger(f) {
		// One tick topic per function, however many cron triggers: each
		// tick's record key is its timer's ID.
		fc.Streams = append(fc.Streams, timerTrigger(p.Name, f.Name))
	}
	if consumesRequests(p, f) {
		fc.Streams = append(fc.Streams, requestTrigger(p.Name, f.Name))
	}
	for _, s := range f.Secrets {
		fc.Secrets = append(fc.Secrets, secrets.Ref{Name: s.Name, Path: s.Path, Key: s.Key})
	}
	return fc
}

// LocalConfig builds the config of a pool hosting every function of a
// project straight from its source tree, for `butter invoke -local` and
// `butter dev`: bundles are the source directories themselves (a source
// file's directory), schemas the project's own files, every path
// absolute.
func LocalConfig(p *spec.Project) *pool.Config {
	c := poolConfig(p, "", "local", p.Functions, func(src string, schema bool) (string, string) {
		if schema {
			return src, ""
		}
		if fi, err := os.Stat(filepath.Join(p.Dir, filepath.FromSlash(src))); err == nil && !fi.IsDir() {
			return path.Dir(src), ""
		}
		return src, ""
	})
	c.Resolve(p.Dir)
	return c
}

// taskConfig is the butter driver's task config: the pool's config,
// encoded by its codec tags, which are what the driver decodes it by
// (plugins/driver/config.go). Nested structs and string maps become lists
// of one map, and slices of structs lists of maps: the blocks of Nomad's
// jobspec, which is how Nomad's HCL parser reads `x { ... }` and
// `x = { ... }` in a driver config, so the JSON form must say the same.
// Fields tagged omitempty are left out when zero.
func taskConfig(c *pool.Config) map[string]any {
	m, err := configMap(reflect.ValueOf(c).Elem())
	if err != nil {
		// pool.Config's types are fixed at compile time, and the jobs
		// tests encode every one of them.
		panic(fmt.Sprintf("jobs: encode the pool config: %v", err))
	}
	return m
}

func configMap(v reflect.Value) (map[string]any, error) {
	t := v.Type()
	m := map[string]any{}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag, ok := sf.Tag.Lookup("codec")
		if !ok || !sf.IsExported() {
			return nil, fmt.Errorf("%s.%s has no codec tag", t, sf.Name)
		}
		name, opts, _ := strings.Cut(tag, ",")
		fv := v.Field(i)
		if opts == "omitempty" && isEmpty(fv) {
			continue
		}
		ev, err := configValue(fv)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		m[name] = ev
	}
	return m, nil
}

func configValue(v reflect.Value) (any, error) {
	switch {
	case v.Kind() == reflect.Pointer && v.Type().Elem().Kind() == reflect.Struct:
		if v.IsNil() {
			return []map[string]any(nil), nil
		}
		m, err := configMap(v.Elem())
		return []map[string]any{m}, err
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct:
		var out []map[string]any
		for i := 0; i < v.Len(); i++ {
			m, err := configMap(v.Index(i))
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
		return out, nil
	case v.Kind() == reflect.Map && v.Type().Key().Kind() == reflect.String && v.Type().Elem().Kind() == reflect.String:
		m := make(map[string]any, v.Len())
		for _, k := range v.MapKeys() {
			m[k.String()] = v.MapIndex(k).String()
		}
		return []map[string]any{m}, nil
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String,
		v.Kind() == reflect.String, v.Kind() == reflect.Bool, v.Kind() == reflect.Int:
		return v.Interface(), nil
	}
	return nil, fmt.Errorf("cannot encode %s in a task config", v.Type())
}
