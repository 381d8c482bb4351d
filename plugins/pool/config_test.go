package pool

import (
	"path/filepath"
	"testing"

	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/jobs"
)

// TestLocalConfigTicks: a local pool consumes the tick topic of each
// function with cron triggers, with the names and settings the compiled
// job gives the pools on Nomad.
func TestLocalConfigTicks(t *testing.T) {
	proj, rep := spec.Load(filepath.Join("..", "..", "examples", "iot"))
	if proj == nil {
		t.Fatal(rep.Diags)
	}
	c := LocalConfig(proj)
	if err := c.check(); err != nil {
		t.Fatal(err)
	}
	var nightly, detect *FunctionConfig
	for i := range c.Functions {
		switch c.Functions[i].Name {
		case "nightly":
			nightly = &c.Functions[i]
		case "detect":
			detect = &c.Functions[i]
		}
	}
	want := StreamTrigger{Stream: "iot._timers.nightly", Group: "butter.iot.nightly._timers", Offset: "first"}
	if len(nightly.Streams) != 1 || nightly.Streams[0] != want {
		t.Errorf("nightly's streams = %+v, want [%+v]", nightly.Streams, want)
	}
	if len(detect.Streams) != 1 || detect.Streams[0].Stream != "iot.readings" {
		t.Errorf("detect's streams = %+v", detect.Streams)
	}
	last := c.Topics[len(c.Topics)-1]
	if len(c.Topics) != len(proj.Streams)+1 || last != (TopicConfig{Name: jobs.TimerTopic("iot", "nightly"), Partitions: 1}) {
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
	proj, rep := spec.Load(filepath.Join("..", "..", "examples", "iot"))
	if proj == nil {
		t.Fatal(rep.Diags)
	}
	c := LocalConfig(proj)
	var detect *FunctionConfig
	for i := range c.Functions {
		if c.Functions[i].Name == "detect" {
			detect = &c.Functions[i]
		}
	}
	if detect == nil || detect.State == nil || *detect.State != (StateConfig{Key: "device", TTL: "720h0m0s"}) {
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

func TestConfigStateChecked(t *testing.T) {
	for _, st := range []StateConfig{{Key: ""}, {Key: "k", TTL: "30 days"}, {Key: "k", TTL: "-1h"}} {
		c := &Config{Functions: []FunctionConfig{{Name: "f", Timeout: "1s", MaxInstances: 1, State: &st}}}
		if err := c.check(); err == nil {
			t.Errorf("state %+v passed the check", st)
		}
	}
}
