package jobs_test

import (
	"encoding/json"
	"github.com/butterfn/butter/names"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/plugins/pool"
)

// TestLocalConfigTicks: a local pool consumes the tick topic of each
// function with cron triggers, with the names and settings the compiled
// job gives the pools on Nomad.
func TestLocalConfigTicks(t *testing.T) {
	proj, rep := spec.Load(filepath.Join("..", "examples", "iot"))
	if proj == nil {
		t.Fatal(rep.Diags)
	}
	c := jobs.LocalConfig(proj)
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	var nightly, detect *pool.FunctionConfig
	for i := range c.Functions {
		switch c.Functions[i].Name {
		case "nightly":
			nightly = &c.Functions[i]
		case "detect":
			detect = &c.Functions[i]
		}
	}
	want := pool.StreamTrigger{Stream: "iot._timers.nightly", Group: "butter.iot.nightly._timers", Offset: "first"}
	if len(nightly.Streams) != 1 || nightly.Streams[0] != want {
		t.Errorf("nightly's streams = %+v, want [%+v]", nightly.Streams, want)
	}
	if len(detect.Streams) != 1 || detect.Streams[0].Stream != "iot.readings" || !detect.Streams[0].ExactlyOnce {
		t.Errorf("detect's streams = %+v", detect.Streams)
	}
	last := c.Topics[len(c.Topics)-1]
	if len(c.Topics) != len(proj.Streams)+1 || last != (pool.TopicConfig{Name: names.TimerTopic("iot", "nightly"), Partitions: 1}) {
		t.Errorf("topics = %+v", c.Topics)
	}

	// The same as the compiled job's task config.
	compiled, err := jobs.Compile(proj)
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range compiled.Job.TaskGroups {
		topics := tg.Tasks[0].Config["topic"].([]map[string]any)
		if len(topics) != len(c.Topics) {
			t.Errorf("group %s renders %d topics, the local config has %d", *tg.Name, len(topics), len(c.Topics))
		}
		for i, tp := range topics {
			if tp["name"] != c.Topics[i].Name || tp["partitions"] != c.Topics[i].Partitions {
				t.Errorf("group %s topic %d = %v, local %+v", *tg.Name, i, tp, c.Topics[i])
			}
		}
	}
}

// TestLocalConfigState: a function's state block reaches the local pool
// config as the compiled job renders it.
func TestLocalConfigState(t *testing.T) {
	proj, rep := spec.Load(filepath.Join("..", "examples", "iot"))
	if proj == nil {
		t.Fatal(rep.Diags)
	}
	c := jobs.LocalConfig(proj)
	var detect *pool.FunctionConfig
	for i := range c.Functions {
		if c.Functions[i].Name == "detect" {
			detect = &c.Functions[i]
		}
	}
	if detect == nil || detect.State == nil || *detect.State != (pool.StateConfig{Key: "device", TTL: "720h0m0s"}) {
		t.Fatalf("detect's state = %+v", detect)
	}
	compiled, err := jobs.Compile(proj)
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range compiled.Job.TaskGroups {
		for _, fn := range tg.Tasks[0].Config["function"].([]map[string]any) {
			if fn["name"] != "detect" {
				continue
			}
			st := fn["state"].([]map[string]any)[0]
			if st["key"] != detect.State.Key || st["ttl"] != detect.State.TTL {
				t.Errorf("compiled state %v, local %+v", st, detect.State)
			}
			return
		}
	}
	t.Error("the compiled job has no function detect")
}

// TestEmitsReachPools: a function's emits list reaches its pool as the
// streams' topics, locally and in the compiled job's task config; a
// function without one gets none, so the pool lets it emit only to its
// output.
func TestEmitsReachPools(t *testing.T) {
	proj, rep := spec.Load(filepath.Join("..", "examples", "iot"))
	if proj == nil {
		t.Fatal(rep.Diags)
	}
	want := map[string][]string{"ingest": {"iot.readings"}, "detect": nil, "nightly": nil}
	for _, f := range jobs.LocalConfig(proj).Functions {
		if !reflect.DeepEqual(f.Emits, want[f.Name]) {
			t.Errorf("local: function %s emits %q, want %q", f.Name, f.Emits, want[f.Name])
		}
	}
	compiled, err := jobs.Compile(proj)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, tg := range compiled.Job.TaskGroups {
		for _, fn := range tg.Tasks[0].Config["function"].([]map[string]any) {
			seen++
			got, _ := fn["emits"].([]string)
			if name := fn["name"].(string); !reflect.DeepEqual(got, want[name]) {
				t.Errorf("job: function %s emits %q, want %q", name, got, want[name])
			}
		}
	}
	if seen != len(want) {
		t.Errorf("%d functions in the job, want %d", seen, len(want))
	}
}

// TestLocalConfigFiles: a local pool's bundles are the source directories
// (a source file's directory) and its schemas the project's files, all
// absolute; a job's are where the task's artifacts put them, relative to
// the task directory. Everything else is the same config.
func TestLocalConfigFiles(t *testing.T) {
	dir, err := filepath.Abs(filepath.Join("..", "examples", "iot"))
	if err != nil {
		t.Fatal(err)
	}
	proj, rep := spec.Load(dir)
	if proj == nil {
		t.Fatal(rep.Diags)
	}
	local := jobs.LocalConfig(proj)
	byName := map[string]pool.FunctionConfig{}
	for _, f := range local.Functions {
		byName[f.Name] = f
		if !filepath.IsAbs(f.Bundle) {
			t.Errorf("function %s: local bundle %q is not absolute", f.Name, f.Bundle)
		}
		if fi, err := os.Stat(f.Bundle); err != nil || !fi.IsDir() {
			t.Errorf("function %s: local bundle %q is not a directory (%v)", f.Name, f.Bundle, err)
		}
	}
	reading := filepath.Join(dir, "schemas", "reading.json")
	if got := byName["ingest"].InputSchema; got != reading {
		t.Errorf("ingest's input schema = %q, want %q", got, reading)
	}
	if got := byName["detect"].Streams[0].Schema; got != reading {
		t.Errorf("detect's stream schema = %q, want %q", got, reading)
	}
	for _, tc := range local.Topics {
		if tc.Name == "iot.readings" && tc.Schema != reading {
			t.Errorf("the readings stream's own schema = %q, want %q", tc.Schema, reading)
		}
	}

	compiled, err := jobs.Compile(proj)
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range compiled.Job.TaskGroups {
		var job pool.Config
		if err := decodeTaskConfig(tg.Tasks[0].Config, &job); err != nil {
			t.Fatal(err)
		}
		if job.Project != proj.Name || job.Pool != *tg.Name || job.Revision != compiled.Revision || job.Port != jobs.PortLabel {
			t.Errorf("group %s: project/pool/revision/port = %q/%q/%q/%q", *tg.Name, job.Project, job.Pool, job.Revision, job.Port)
		}
		// Topics differ only in where their schema is: the stream's
		// schema travels with the job to the task's schema directory.
		for i := range job.Topics {
			if (job.Topics[i].Schema == "") != (local.Topics[i].Schema == "") {
				t.Errorf("group %s: topic %s schema %q, local %q", *tg.Name, job.Topics[i].Name, job.Topics[i].Schema, local.Topics[i].Schema)
			}
			if job.Topics[i].Schema != "" && !strings.HasPrefix(job.Topics[i].Schema, jobs.SchemaDir+"/") {
				t.Errorf("group %s: topic %s schema %q is not under %s", *tg.Name, job.Topics[i].Name, job.Topics[i].Schema, jobs.SchemaDir)
			}
			job.Topics[i].Schema = local.Topics[i].Schema
		}
		if !reflect.DeepEqual(job.Topics, local.Topics) || !reflect.DeepEqual(job.Kafka, local.Kafka) {
			t.Errorf("group %s: topics/kafka %+v %+v, local %+v %+v", *tg.Name, job.Topics, job.Kafka, local.Topics, local.Kafka)
		}
		for _, f := range job.Functions {
			l := byName[f.Name]
			if f.Digest == "" || filepath.IsAbs(f.Bundle) {
				t.Errorf("function %s: job bundle %q digest %q", f.Name, f.Bundle, f.Digest)
			}
			// Only the locations differ.
			f.Bundle, f.Digest, f.InputSchema, f.OutputSchema = l.Bundle, l.Digest, l.InputSchema, l.OutputSchema
			for i := range f.Streams {
				f.Streams[i].Schema = l.Streams[i].Schema
			}
			if !reflect.DeepEqual(f, l) {
				t.Errorf("function %s:\njob   %+v\nlocal %+v", f.Name, f, l)
			}
		}
	}
}

// decodeTaskConfig reads a rendered task config back by the pool config's
// json tags, which name the same fields as its codec tags. Blocks are
// lists of one map in the task config, so those are unwrapped first; the
// driver's tests decode it as Nomad does, with the driver's hclspec.
func decodeTaskConfig(cfg map[string]any, into *pool.Config) error {
	b, err := json.Marshal(unwrap(reflect.ValueOf(cfg)))
	if err != nil {
		return err
	}
	return json.Unmarshal(b, into)
}

func unwrap(v reflect.Value) any {
	for v.Kind() == reflect.Interface {
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.Map:
		m := map[string]any{}
		for _, k := range v.MapKeys() {
			ev := v.MapIndex(k)
			for ev.Kind() == reflect.Interface {
				ev = ev.Elem()
			}
			// A block (retry, state, kafka, env, options) is a list of one
			// map; stream, secret, topic and function stay lists.
			switch k.String() {
			case "retry", "state", "kafka", "env", "options":
				m[k.String()] = unwrap(ev.Index(0))
			default:
				m[k.String()] = unwrap(ev)
			}
		}
		return m
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.String {
			return v.Interface()
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = unwrap(v.Index(i))
		}
		return out
	}
	return v.Interface()
}

// TestLocalConfigRelativeDir: a project loaded from a relative directory
// keeps its paths relative to where it was loaded from, as before: a
// function without a source runs in the project directory itself, not in
// the directory joined to itself.
func TestLocalConfigRelativeDir(t *testing.T) {
	dir := filepath.Join("..", "examples", "hello")
	proj, rep := spec.Load(dir)
	if proj == nil {
		t.Fatal(rep.Diags)
	}
	for _, f := range jobs.LocalConfig(proj).Functions {
		want := filepath.Join(dir, "functions", f.Name)
		if f.Name == "echo-exec" {
			want = dir
		}
		if f.Bundle != want {
			t.Errorf("function %s: bundle %q, want %q", f.Name, f.Bundle, want)
		}
	}
}
