package jobs_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/jobs"
	"github.com/hashicorp/nomad/api"
)

// scalingProject has a stream function in a pool with a scaling block and
// an http function in the default pool without one.
func scalingProject(t *testing.T) string {
	dir := t.TempDir()
	src := `project "shop" {}
stream "orders" {}
function "pay" {
  runtime = "exec"
  command = ["cat"]
  pool    = "payers"
  trigger "stream" {
    stream = stream.orders
  }
  instances {
    max         = 4
    concurrency = 2
    spare       = 1
  }
}
function "web" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route = "POST /web"
  }
}
pool "payers" {
  scaling {
    min            = 0
    max            = 3
    cooldown       = "10s"
    scale_in_delay = "1m"
    target = {
      lag    = 200
      cpu    = 0.8
      memory = 0.9
    }
  }
}
`
	if err := os.WriteFile(filepath.Join(dir, "shop.fn.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestScalingCompiled compiles each pool's scaling block into its task
// group (count, min, max, enabled, the policy map) and reads the policy
// back, as the autoscaler does, the same from the job as compiled and
// from its JSON as Nomad returns it.
func TestScalingCompiled(t *testing.T) {
	c, err := jobs.Compile(load(t, scalingProject(t)))
	if err != nil {
		t.Fatal(err)
	}
	groups := map[string]*api.TaskGroup{}
	for _, tg := range c.Job.TaskGroups {
		groups[*tg.Name] = tg
	}
	payers := groups["payers"]
	if *payers.Count != 1 || *payers.Scaling.Min != 0 || *payers.Scaling.Max != 3 {
		t.Errorf("payers: count %d, scaling %d..%d; want 1, 0..3", *payers.Count, *payers.Scaling.Min, *payers.Scaling.Max)
	}
	want := jobs.ScalingPolicy{
		Enabled: true, Min: 0, Max: 3, Cooldown: 10 * time.Second, ScaleInDelay: time.Minute,
		TargetInFlight: 0.7, TargetLag: 200, TargetCPU: 0.8, TargetMemory: 0.9,
		Capacity:       map[string]int{"pay": 8},
		ConsumerGroups: []string{"butter.shop.pay.orders"},
		Streams:        []jobs.ConsumedStream{{Group: "butter.shop.pay.orders", Topic: "shop.orders", Offset: "latest"}},
	}
	got, err := jobs.ParseScalingPolicy(payers.Scaling)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("payers policy:\n got %+v\nwant %+v", got, want)
	}
	// Through JSON, the way a job read back from Nomad has it.
	raw, _ := json.Marshal(payers.Scaling)
	var back api.ScalingPolicy
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if got, err := jobs.ParseScalingPolicy(&back); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("payers policy through JSON: %+v, %v", got, err)
	}
	// The function's spare instances reach its pool's task config (and
	// an unset spare is left out of it).
	for _, fn := range payers.Tasks[0].Config["function"].([]map[string]any) {
		if fn["name"] == "pay" && fn["spare_instances"] != 1 {
			t.Errorf("pay's spare_instances in the task config = %v (%T), want 1", fn["spare_instances"], fn["spare_instances"])
		}
	}
	for _, fn := range groups["default"].Tasks[0].Config["function"].([]map[string]any) {
		if v, ok := fn["spare_instances"]; ok {
			t.Errorf("web has spare_instances = %v in its task config, though its spec sets none", v)
		}
	}
	def, err := jobs.ParseScalingPolicy(groups["default"].Scaling)
	if err != nil {
		t.Fatal(err)
	}
	if def.Min != 1 || def.Max != 10 || def.ScaleInDelay != 5*time.Minute || def.TargetLag != 1000 || def.ConsumerGroups != nil || def.Capacity["web"] != 10 {
		t.Errorf("default policy: %+v", def)
	}
}

// TestScalingPolicyRefused: what the compiler cannot have written is
// refused, by ParseScalingPolicy and so by Check.
func TestScalingPolicyRefused(t *testing.T) {
	raw, e := compiled(t, scalingProject(t))
	cases := []struct {
		name   string
		tamper func(s *api.ScalingPolicy)
		want   string
	}{
		{"an unknown key", func(s *api.ScalingPolicy) { s.Policy["query"] = "x" }, "query: not a key"},
		{"min above max", func(s *api.ScalingPolicy) { s.Min = new(int64(5)) }, "min 5 is greater than max 3"},
		{"a negative cooldown", func(s *api.ScalingPolicy) { s.Policy["cooldown"] = "-1s" }, "cooldown: -1s is negative"},
		{"a target out of range", func(s *api.ScalingPolicy) { s.Policy["target_inflight"] = 3 }, "target_inflight: 3 is not above 0"},
		{"a cpu target above 1", func(s *api.ScalingPolicy) { s.Policy["target_cpu"] = 1.5 }, "target_cpu: 1.5 is not above 0 and at most 1"},
		{"a memory target of 0", func(s *api.ScalingPolicy) { s.Policy["target_memory"] = 0 }, "target_memory: 0 is not above 0 and at most 1"},
		{"a capacity of zero", func(s *api.ScalingPolicy) { s.Policy["capacity"] = map[string]any{"pay": 0} }, "capacity: function pay"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var wrapped struct{ Job *api.Job }
			if err := json.Unmarshal(raw, &wrapped); err != nil {
				t.Fatal(err)
			}
			var tg *api.TaskGroup
			for _, g := range wrapped.Job.TaskGroups {
				if *g.Name == "payers" {
					tg = g
				}
			}
			tc.tamper(tg.Scaling)
			b, _ := json.Marshal(wrapped)
			_, err := jobs.Check(b, e)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Check: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
