// Package cli tests the butter commands that run and exit (validate, job
// render, init, invoke -local, secrets put/get, emit and tail) through
// the built binary, as a user runs them: their output and exit codes, the
// rendered jobs against a real Nomad agent, the secrets against a real
// Vault, emit and tail against the embedded broker over TCP.
package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/nomad/api"

	"github.com/butterfn/butter/e2e/e2etest"
	"github.com/butterfn/butter/internal/nomadtest"
)

func TestMain(m *testing.M) { e2etest.Main(m) }

var examples = []string{"hello", "pipeline", "iot"}

func TestExitCodes(t *testing.T) {
	root := e2etest.Root()
	invalid := filepath.Join(root, "hcl", "spec", "testdata", "invalid", "many-errors")
	for _, c := range []struct {
		name string
		args []string
		code int
		out  string // expected in stdout+stderr
	}{
		{"valid", []string{"validate", "examples/iot"}, 0, `The project "iot" is valid`},
		{"valid json", []string{"validate", "-json", "examples/iot"}, 0, `"valid": true`},
		{"invalid", []string{"validate", invalid}, 1, "6 errors"},
		{"invalid json", []string{"validate", invalid, "-json"}, 1, `"error_count": 6`},
		{"missing dir", []string{"validate", "no/such/dir"}, 1, "Cannot read project directory"},
		{"connectors left out", []string{"validate", "examples/iot"}, 0, `Left out by enabled = false: source "mqtt" "readings-in", sink "postgres" "alerts-db", sink "influxdb" "readings-ts".`},
		{"connectors on by -var", []string{"validate", "-var", "mqtt=tcp://127.0.0.1:1883", "-var", "postgres_dsn=postgres://iot@127.0.0.1/iot", "examples/iot", "-var", "influxdb_url=http://127.0.0.1:8086"}, 0, `"iot" is valid: 6 functions`},
		{"undeclared -var", []string{"validate", "-var", "mqt=x", "examples/iot"}, 1, `Did you mean "mqtt"?`},
		{"bad -var", []string{"validate", "-var", "mqtt", "examples/iot"}, 2, `"mqtt" is not NAME=VALUE`},
		{"bad -var-file", []string{"validate", "-var-file", "no/such.vars.hcl", "examples/iot"}, 2, "no/such.vars.hcl"},
		{"sandbox opt-out warns", []string{"validate", filepath.Join(root, "hcl", "spec", "testdata", "warn", "sandbox-off")}, 0, "sandbox-off/main.fn.hcl:6:3"},
		{"unknown flag", []string{"validate", "-jsn", "examples/iot"}, 2, "flag provided but not defined: -jsn"},
		{"too many args", []string{"validate", "a", "b"}, 2, "too many arguments"},
		{"unknown command", []string{"deploi"}, 2, "Usage: butter"},
		{"job alone", []string{"job"}, 2, "render"},
		{"bad format", []string{"job", "render", "examples/iot", "-format", "yaml"}, 2, "-format must be hcl or json"},
		{"render invalid", []string{"job", "render", invalid}, 1, "Unknown runtime"},
		{"init bad runtime", []string{"init", t.TempDir(), "-runtime", "cobol"}, 2, "-runtime must be one of"},
		{"version", []string{"version"}, 0, "Butter v"},
		{"version flag", []string{"-version"}, 0, "Butter v"},
		{"help", []string{"validate", "-help"}, 0, "Usage: butter validate"},
		{"render help", []string{"job", "render", "-h"}, 0, "-format=hcl"},
		{"init help", []string{"init", "-help"}, 0, "-runtime=node"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e2etest.Butter(t, root, c.args...)
			if r.Code != c.code {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.Code, c.code, r.Stdout, r.Stderr)
			}
			if !strings.Contains(r.Stdout+r.Stderr, c.out) {
				t.Errorf("output lacks %q\nstdout:\n%s\nstderr:\n%s", c.out, r.Stdout, r.Stderr)
			}
		})
	}
}

func TestRenderOut(t *testing.T) {
	root := e2etest.Root()
	out := filepath.Join(t.TempDir(), "iot.nomad.json")
	r := e2etest.Butter(t, root, "job", "render", "examples/iot", "-format=json", "-out", out)
	if r.Code != 0 {
		t.Fatalf("exit %d: %s", r.Code, r.Stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	stdout := e2etest.Butter(t, root, "job", "render", "-format", "json", "examples/iot").Stdout
	if string(b) != stdout {
		t.Error("-out wrote something other than what stdout gets")
	}
	golden, err := os.ReadFile(filepath.Join(root, "jobs", "testdata", "iot.nomad.json"))
	if err != nil || string(golden) != stdout {
		t.Errorf("CLI output differs from the golden job (err %v)", err)
	}
}

func TestInit(t *testing.T) {
	for _, rt := range []string{"node", "python", "go", "exec"} {
		t.Run(rt, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "my-"+rt)
			r := e2etest.Butter(t, ".", "init", dir, "-runtime", rt)
			if r.Code != 0 {
				t.Fatalf("init: exit %d: %s", r.Code, r.Stderr)
			}
			if v := e2etest.Butter(t, ".", "validate", dir); v.Code != 0 {
				t.Fatalf("the new project does not validate: %s", v.Stderr)
			}
			if gi, err := os.ReadFile(filepath.Join(dir, ".gitignore")); err != nil || !strings.Contains(string(gi), ".butter/") {
				t.Errorf("the new project's .gitignore should keep .butter/ (dev state, local secrets) out of git: %q %v", gi, err)
			}
			before, _ := os.ReadFile(filepath.Join(dir, "my-"+rt+".fn.hcl"))
			again := e2etest.Butter(t, ".", "init", dir, "-runtime", rt)
			if again.Code != 1 || !strings.Contains(again.Stderr, "already exists") {
				t.Errorf("a second init must refuse to overwrite: exit %d: %s", again.Code, again.Stderr)
			}
			after, _ := os.ReadFile(filepath.Join(dir, "my-"+rt+".fn.hcl"))
			if !bytes.Equal(before, after) {
				t.Error("a refused init changed the spec file")
			}
		})
	}
}

// TestNomadAcceptsRenderedJobs is the acceptance check against a real
// Nomad: every example (and every `butter init` template) is rendered by
// the CLI in both formats, and the agent's `nomad job validate` must pass
// both. The agent's own HCL parser must also read the HCL rendering back
// into the same job as the JSON rendering.
func TestNomadAcceptsRenderedJobs(t *testing.T) {
	agent := nomadtest.Start(t)
	root := e2etest.Root()
	work := t.TempDir()

	projects := map[string]string{}
	for _, ex := range examples {
		projects[ex] = filepath.Join(root, "examples", ex)
	}
	// A project with a kafka block: it reaches the task config.
	kdir := filepath.Join(work, "kafka-project")
	if err := os.MkdirAll(kdir, 0o755); err != nil {
		t.Fatal(err)
	}
	kspec := `project "kafka-project" {
  kafka {
    brokers = ["kafka-1:9092", "kafka-2:9092"]
    tls     = true
    sasl {
      mechanism    = "SCRAM-SHA-512"
      username     = "butter"
      password_env = "KAFKA_PASSWORD"
    }
  }
}
stream "in" {}
function "f" {
  runtime = "exec"
  command = ["cat"]
  trigger "stream" {
    stream = stream.in
  }
}
`
	if err := os.WriteFile(filepath.Join(kdir, "k.fn.hcl"), []byte(kspec), 0o644); err != nil {
		t.Fatal(err)
	}
	projects["kafka-block"] = kdir
	for _, rt := range []string{"node", "python", "go", "exec"} {
		dir := filepath.Join(work, "init-"+rt)
		if r := e2etest.Butter(t, ".", "init", dir, "-runtime", rt); r.Code != 0 {
			t.Fatalf("init %s: %s", rt, r.Stderr)
		}
		projects["init-"+rt] = dir
	}

	for name, dir := range projects {
		t.Run(name, func(t *testing.T) {
			hclFile := filepath.Join(work, name+".nomad.hcl")
			jsonFile := filepath.Join(work, name+".nomad.json")
			for file, format := range map[string]string{hclFile: "hcl", jsonFile: "json"} {
				if r := e2etest.Butter(t, root, "job", "render", dir, "-format", format, "-out", file); r.Code != 0 {
					t.Fatalf("render %s: %s", format, r.Stderr)
				}
			}
			out, code := agent.Run(t, "job", "validate", hclFile)
			if code != 0 || !strings.Contains(out, "Job validation successful") {
				t.Errorf("nomad job validate (HCL) exit %d:\n%s", code, out)
			}
			out, code = agent.Run(t, "job", "validate", "-json", jsonFile)
			if code != 0 || !strings.Contains(out, "Job validation successful") {
				t.Errorf("nomad job validate -json exit %d:\n%s", code, out)
			}

			// Nomad's parser reads our HCL into the job our JSON describes.
			src, _ := os.ReadFile(hclFile)
			fromHCL, err := agent.Client.Jobs().ParseHCLOpts(&api.JobsParseRequest{JobHCL: string(src), Canonicalize: true})
			if err != nil {
				t.Fatalf("agent cannot parse the HCL: %v", err)
			}
			raw, _ := os.ReadFile(jsonFile)
			var wrapped struct{ Job *api.Job }
			if err := json.Unmarshal(raw, &wrapped); err != nil {
				t.Fatal(err)
			}
			fromJSON := wrapped.Job
			fromJSON.Canonicalize()
			if diff := jobDiff(fromHCL, fromJSON); diff != "" {
				t.Errorf("the HCL and JSON renderings describe different jobs:\n%s", diff)
			}
		})
	}

	// The check can fail: a job Nomad must reject is rejected.
	bad := filepath.Join(work, "bad.nomad.hcl")
	src, _ := os.ReadFile(filepath.Join(work, "iot.nomad.hcl"))
	broken := strings.Replace(string(src), "max     = 10", "max     = -1", 1)
	if broken == string(src) {
		t.Fatal("could not break the job for the negative check")
	}
	if err := os.WriteFile(bad, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := agent.Run(t, "job", "validate", bad); code == 0 {
		t.Errorf("nomad accepted a scaling block with max < min:\n%s", out)
	}
}

// jobDiff compares two jobs through their JSON forms, field by field, and
// describes the first differences.
func jobDiff(a, b *api.Job) string {
	var ma, mb any
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	_ = json.Unmarshal(ja, &ma)
	_ = json.Unmarshal(jb, &mb)
	var diffs []string
	walkDiff("Job", ma, mb, &diffs)
	if len(diffs) > 20 {
		diffs = append(diffs[:20], "...")
	}
	return strings.Join(diffs, "\n")
}

func walkDiff(path string, a, b any, out *[]string) {
	if reflect.DeepEqual(a, b) {
		return
	}
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			break
		}
		keys := map[string]bool{}
		for k := range av {
			keys[k] = true
		}
		for k := range bv {
			keys[k] = true
		}
		for k := range keys {
			walkDiff(path+"."+k, av[k], bv[k], out)
		}
		return
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			break
		}
		for i := range av {
			walkDiff(fmt.Sprintf("%s[%d]", path, i), av[i], bv[i], out)
		}
		return
	}
	*out = append(*out, fmt.Sprintf("%s: HCL %v, JSON %v", path, a, b))
}
