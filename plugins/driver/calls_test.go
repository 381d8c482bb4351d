package driver

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/hashicorp/nomad/helper/pluginutils/hclutils"
)

// TestCallsReachPools: a function's calls list reaches its pool through
// Nomad (jobs' encoding, the driver's decoding, the pool's check) as the
// targets' topics, and the function it calls consumes its request topic,
// which every pool creates, and keeps an allocation up to answer.
func TestCallsReachPools(t *testing.T) {
	src := `project "c" {}
stream "orders" {}
function "score" {
  runtime = "exec"
  command = ["cat"]
  pool    = "scoring"
}
function "caller" {
  runtime = "exec"
  command = ["cat"]
  calls   = [function.score, stream.orders]
}
`
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "c.fn.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	proj, rep := spec.Load(dir)
	if proj == nil || rep.HasErrors() {
		t.Fatalf("spec: %v", rep.Diags)
	}
	c, err := jobs.Compile(proj)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, tg := range c.Job.TaskGroups {
		raw, _ := json.Marshal(tg.Tasks[0].Config)
		var got pool.Config
		hclutils.NewConfigParser(taskConfigSpec).ParseJson(t, `{"Config":`+string(raw)+`}`, &got)
		if err := got.Check(); err != nil {
			t.Errorf("group %s: %v", *tg.Name, err)
		}
		hasTopic := false
		for _, tc := range got.Topics {
			hasTopic = hasTopic || tc.Name == "c.score.requests"
		}
		if !hasTopic {
			t.Errorf("group %s does not create c.score.requests: %+v", *tg.Name, got.Topics)
		}
		for _, f := range got.Functions {
			seen[f.Name] = true
			switch f.Name {
			case "caller":
				want := []pool.CallTarget{{Kind: "function", Name: "score", Topic: "c.score.requests"}, {Kind: "stream", Name: "orders", Topic: "c.orders"}}
				if !reflect.DeepEqual(f.Calls, want) {
					t.Errorf("caller's calls = %+v, want %+v", f.Calls, want)
				}
			case "score":
				if len(f.Streams) != 1 || f.Streams[0].Stream != "c.score.requests" || f.Streams[0].Group != "butter.c.score._requests" {
					t.Errorf("score's streams = %+v, want its request topic", f.Streams)
				}
				if *tg.Scaling.Min != 1 {
					t.Errorf("score's group scales to %d, want at least 1 to answer calls", *tg.Scaling.Min)
				}
			}
		}
	}
	if !seen["caller"] || !seen["score"] {
		t.Errorf("functions in the job: %v", seen)
	}
}
