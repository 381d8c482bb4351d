package jobs

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/butterfn/butter/hcl/spec"
)

// A function with a queued or async http trigger consumes its request
// topic (from the first request: the pool skips expired ones), its pool
// creates the topic, and the group keeps an allocation up.
func TestQueuedTriggerConsumesRequestTopic(t *testing.T) {
	src := `project "q" {}
function "slow" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route = "POST /slow"
    mode  = "async"
  }
}
function "fast" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route = "POST /fast"
  }
}
`
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "q.fn.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	p, rep := spec.Load(dir)
	if p == nil || rep.HasErrors() {
		t.Fatalf("spec: %v", rep.Diags)
	}
	c, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	tg := c.Job.TaskGroups[0]
	if *tg.Scaling.Min != 1 {
		t.Errorf("scaling min = %d, want 1: a request consumer must run", *tg.Scaling.Min)
	}
	cfg := tg.Tasks[0].Config
	for _, f := range cfg["function"].([]map[string]any) {
		streams, _ := f["stream"].([]map[string]any)
		switch f["name"] {
		case "slow":
			if len(streams) != 1 || streams[0]["stream"] != "q.slow.requests" || streams[0]["group"] != "butter.q.slow._requests" || streams[0]["offset"] != "first" {
				t.Errorf("slow's request trigger = %v", streams)
			}
		case "fast":
			if len(streams) != 0 {
				t.Errorf("a direct-only function consumes %v", streams)
			}
		}
	}
	topics := cfg["topic"].([]map[string]any)
	if len(topics) != 1 || topics[0]["name"] != "q.slow.requests" || topics[0]["partitions"] != RequestPartitions {
		t.Errorf("topics = %v", topics)
	}
}
