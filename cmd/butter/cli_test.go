package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/hashicorp/nomad/api"
)

// butterBin is the butter binary under test, built once by TestMain: the
// tests drive the CLI exactly as a user does.
var butterBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "butter-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	butterBin = filepath.Join(dir, "butter")
	out, err := exec.Command("go", "build", "-o", butterBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build butter: %v\n%s", err, out)
		os.Exit(1)
	}
	// The small sandbox shim beside it, as make build installs it: pools
	// with secrets start their instances through it.
	out, err = exec.Command("go", "build", "-o", filepath.Join(dir, "butter-sandbox"), "../butter-sandbox").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build butter-sandbox: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

func butter(t *testing.T, dir string, args ...string) result {
	t.Helper()
	cmd := exec.Command(butterBin, args...)
	cmd.Dir = dir
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("butter %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return result{so.String(), se.String(), code}
}

var examples = []string{"hello", "pipeline", "iot"}

func repo(t *testing.T) string { return nomadtest.RepoRoot(t) }

func TestExitCodes(t *testing.T) {
	root := repo(t)
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
			r := butter(t, root, c.args...)
			if r.code != c.code {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, c.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout+r.stderr, c.out) {
				t.Errorf("output lacks %q\nstdout:\n%s\nstderr:\n%s", c.out, r.stdout, r.stderr)
			}
		})
	}
}

func TestRenderOut(t *testing.T) {
	root := repo(t)
	out := filepath.Join(t.TempDir(), "iot.nomad.json")
	r := butter(t, root, "job", "render", "examples/iot", "-format=json", "-out", out)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	stdout := butter(t, root, "job", "render", "-format", "json", "examples/iot").stdout
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
			r := butter(t, ".", "init", dir, "-runtime", rt)
			if r.code != 0 {
				t.Fatalf("init: exit %d: %s", r.code, r.stderr)
			}
			if v := butter(t, ".", "validate", dir); v.code != 0 {
				t.Fatalf("the new project does not validate: %s", v.stderr)
			}
			if gi, err := os.ReadFile(filepath.Join(dir, ".gitignore")); err != nil || !strings.Contains(string(gi), ".butter/") {
				t.Errorf("the new project's .gitignore should keep .butter/ (dev state, local secrets) out of git: %q %v", gi, err)
			}
			before, _ := os.ReadFile(filepath.Join(dir, "my-"+rt+".fn.hcl"))
			again := butter(t, ".", "init", dir, "-runtime", rt)
			if again.code != 1 || !strings.Contains(again.stderr, "already exists") {
				t.Errorf("a second init must refuse to overwrite: exit %d: %s", again.code, again.stderr)
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
	root := repo(t)
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
		if r := butter(t, ".", "init", dir, "-runtime", rt); r.code != 0 {
			t.Fatalf("init %s: %s", rt, r.stderr)
		}
		projects["init-"+rt] = dir
	}

	for name, dir := range projects {
		t.Run(name, func(t *testing.T) {
			hclFile := filepath.Join(work, name+".nomad.hcl")
			jsonFile := filepath.Join(work, name+".nomad.json")
			for file, format := range map[string]string{hclFile: "hcl", jsonFile: "json"} {
				if r := butter(t, root, "job", "render", dir, "-format", format, "-out", file); r.code != 0 {
					t.Fatalf("render %s: %s", format, r.stderr)
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
