package driver

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/hashicorp/nomad/helper/pluginutils/hclutils"
)

// TestTaskConfigContract decodes the task config that package jobs renders
// for every example with the driver's hclspec, the way the Nomad client
// does, and checks it arrives whole in the pool's config.
func TestTaskConfigContract(t *testing.T) {
	for _, ex := range []string{"hello", "pipeline", "iot"} {
		t.Run(ex, func(t *testing.T) {
			proj, rep := spec.Load(filepath.Join("..", "..", "examples", ex))
			if proj == nil {
				t.Fatal(rep.Diags)
			}
			c, err := jobs.Compile(proj)
			if err != nil {
				t.Fatal(err)
			}
			for _, tg := range c.Job.TaskGroups {
				raw, err := json.Marshal(tg.Tasks[0].Config)
				if err != nil {
					t.Fatal(err)
				}
				var tc TaskConfig
				hclutils.NewConfigParser(taskConfigSpec).ParseJson(t, `{"Config":`+string(raw)+`}`, &tc)
				if tc.Project != proj.Name || tc.Pool != *tg.Name {
					t.Errorf("project/pool = %q/%q", tc.Project, tc.Pool)
				}
				want := 0
				for _, f := range proj.Functions {
					if f.Pool == *tg.Name {
						want++
					}
				}
				if len(tc.Functions) != want {
					t.Fatalf("%d functions decoded, want %d", len(tc.Functions), want)
				}
				pcJSON, _, err := tc.poolConfig()
				if err != nil {
					t.Fatal(err)
				}
				var pc struct {
					Topic    []map[string]any
					Function []map[string]any
				}
				_ = json.Unmarshal(pcJSON, &pc)
				// The streams' topics, and one tick topic per function
				// with cron triggers.
				ticked := map[string]bool{}
				for _, tm := range jobs.Timers(proj) {
					ticked[tm.Function] = true
				}
				if len(pc.Topic) != len(proj.Streams)+len(ticked) {
					t.Errorf("topics in the pool config: %d, want %d", len(pc.Topic), len(proj.Streams)+len(ticked))
				}
				// What the driver hands the pool matches what a local pool
				// builds from the spec, field by field where they can agree.
				var got pool.Config
				if err := json.Unmarshal(pcJSON, &got); err != nil {
					t.Fatal(err)
				}
				local := map[string]pool.FunctionConfig{}
				for _, f := range pool.LocalConfig(proj).Functions {
					for i := range f.Streams {
						if f.Streams[i].Order == "" {
							f.Streams[i].Order = "partition" // the same default
						}
					}
					local[f.Name] = f
				}
				for _, f := range got.Functions {
					l := local[f.Name]
					for _, c := range []struct {
						field     string
						got, want any
					}{
						{"state", f.State, l.State}, {"retry", f.Retry, l.Retry}, {"stream", f.Streams, l.Streams},
						{"output", f.Output, l.Output}, {"dead_letter", f.DeadLetter, l.DeadLetter},
						{"instances", [3]int{f.MinInstances, f.MaxInstances, f.Concurrency}, [3]int{l.MinInstances, l.MaxInstances, l.Concurrency}},
					} {
						if !reflect.DeepEqual(c.got, c.want) {
							t.Errorf("function %s: %s from the driver = %#v, a local pool has %#v", f.Name, c.field, c.got, c.want)
						}
					}
				}
				for _, f := range tc.Functions {
					sf := proj.Function(f.Name)
					if f.Runtime != sf.Runtime || f.MaxInstances != sf.Instances.Max || len(f.Options) != len(sf.Options) {
						t.Errorf("function %s decoded as %+v", f.Name, f)
					}
					streams := 0
					for _, tr := range sf.Triggers {
						if tr.Type == spec.TriggerStream {
							streams++
						}
					}
					if ticked[sf.Name] {
						streams++ // the tick topic of its cron triggers
					}
					if len(f.Streams) != streams || (sf.Retry != nil) != (f.Retry != nil) {
						t.Errorf("function %s: %d stream triggers, retry %v; want %d, %v", f.Name, len(f.Streams), f.Retry, streams, sf.Retry)
					}
				}
			}
		})
	}
}
