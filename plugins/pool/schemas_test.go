package pool

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSchemasLoaded: New reads every schema the config names, relative
// ones against the directory Resolve is given, and refuses a missing or
// malformed one by function and field instead of starting without it.
func TestSchemasLoaded(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("in.json", `{"type": "object"}`)
	write("any.json", " true\n")
	write("broken.json", `{"type": `)
	write("array.json", `[1]`)
	cfg := func(in, out, stream string) *Config {
		c := &Config{Functions: []FunctionConfig{{
			Name: "f", Runtime: "exec", Command: []string{"cat"}, Timeout: "1s", MaxInstances: 1,
			InputSchema: in, OutputSchema: out,
			Streams: []StreamTrigger{{Stream: "p.s", Group: "g", Offset: "first", Schema: stream}},
		}}}
		c.Resolve(dir)
		return c
	}

	p, err := New(cfg("in.json", "", "any.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(p.schemas.Input["f"]); got != `{"type": "object"}` {
		t.Errorf("input schema = %q", got)
	}
	if got := string(p.schemas.Stream["f"]["p.s"]); got != "true" {
		t.Errorf("stream schema = %q", got)
	}
	if _, ok := p.schemas.Output["f"]; ok {
		t.Error("an output schema was loaded where none is declared")
	}

	for _, c := range []struct {
		in, out, stream string
		want            string
	}{
		{"missing.json", "", "", "function f: input_schema: read the JSON Schema"},
		{"", "broken.json", "", "function f: output_schema: JSON Schema " + filepath.Join(dir, "broken.json") + " is not valid JSON"},
		{"", "", "array.json", "function f: stream p.s: schema: JSON Schema " + filepath.Join(dir, "array.json") + " is neither an object nor a boolean"},
	} {
		_, err := New(cfg(c.in, c.out, c.stream), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("schemas %q %q %q: error %v, want one containing %q", c.in, c.out, c.stream, err, c.want)
		}
	}
}

// TestConfigDurationsChecked: every duration of the config is checked
// once, by Check, so that the pool's readers need not.
// TestTopicSchemaLoaded: a stream's own schema (the one what is produced
// to it must match) travels in the pool's topics and is loaded, relative
// to the directory Resolve is given; a broken one names the stream.
func TestTopicSchemaLoaded(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "reading.json"), []byte(`{"type": "object"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &Config{Topics: []TopicConfig{{Name: "p.readings", Partitions: 1, Schema: "reading.json"}, {Name: "p.other", Partitions: 1}}}
	c.Resolve(dir)
	p, err := New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if got := string(p.schemas.Topic["p.readings"]); got != `{"type": "object"}` {
		t.Errorf("topic schema = %q", got)
	}
	if _, ok := p.schemas.Topic["p.other"]; ok {
		t.Error("a schema was loaded for a stream that declares none")
	}
	c = &Config{Topics: []TopicConfig{{Name: "p.readings", Partitions: 1, Schema: "missing.json"}}}
	c.Resolve(dir)
	if _, err := New(c, nil); err == nil || !strings.Contains(err.Error(), "stream p.readings: schema") {
		t.Errorf("a missing topic schema: %v, want an error naming the stream", err)
	}
}

func TestConfigDurationsChecked(t *testing.T) {
	ok := FunctionConfig{Name: "f", Timeout: "1s", MaxInstances: 1}
	bad := []*Config{
		{Functions: []FunctionConfig{{Name: "f", Timeout: "soon", MaxInstances: 1}}},
		{Functions: []FunctionConfig{{Name: "f", Timeout: "-1s", MaxInstances: 1}}},
		{Functions: []FunctionConfig{{Name: "f", Timeout: "1s", MaxInstances: 1, Retry: &RetryConfig{Attempts: 2, Backoff: "1 second"}}}},
		{Functions: []FunctionConfig{ok}, Topics: []TopicConfig{{Name: "t", Partitions: 1, Retention: "7d"}}},
	}
	for _, c := range bad {
		if err := c.Check(); err == nil {
			t.Errorf("%+v passed the check", c)
		}
	}
	good := &Config{Functions: []FunctionConfig{ok, {Name: "g", Timeout: "2m0s", MaxInstances: 1, Retry: &RetryConfig{Attempts: 2}}}, Topics: []TopicConfig{{Name: "t", Retention: "168h0m0s"}}}
	if err := good.Check(); err != nil {
		t.Fatal(err)
	}
	if got := good.LongestTimeout(); got.String() != "2m0s" {
		t.Errorf("longest timeout = %v", got)
	}
}
