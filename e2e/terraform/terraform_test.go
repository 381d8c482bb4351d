// Package terraform tests the Terraform provider (terraform/provider)
// with the real OpenTofu (bin/tofu, which `make tools` builds from the Go
// module proxy) against a real `butter server` whose deployer runs on a
// real Nomad agent with the butter driver. The provider is installed from
// a filesystem mirror, as a team without registry access would install
// it.
package terraform

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/e2e/e2etest"
	hclspec "github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/butterfn/butter/internal/testport"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/terraform/provider"
)

func TestMain(m *testing.M) { e2etest.Main(m) }

// spec is the project Terraform deploys: two exec functions, each behind
// a route.
const spec = `project "tf" {
  deploy {
    min_healthy_time = "1s"
    healthy_deadline = "2m"
  }
}

function "up" {
  runtime = "exec"
  command = ["tr", "a-z", "A-Z"]
  timeout = "5s"
  trigger "http" {
    route = "POST /up"
  }
}

function "echo" {
  runtime = "exec"
  command = ["cat"]
  timeout = "5s"
  trigger "http" {
    route = "POST /echo"
  }
}

variable "greet_path" {
  default = "/greet"
}

function "greet" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route = "POST ${var.greet_path}"
  }
}
`

const mainTF = `terraform {
  required_providers {
    butter = {
      source = "butterfn/butter"
    }
  }
}

provider "butter" {}

module "tf" {
  source = "./modules/project"

  name         = "tf"
  directory    = "${path.module}/project"
  variables    = { greet_path = "/hi" }
  timeout      = "4m"
  api_keys     = { caller = ["POST /up"] }
  deploy_token = true
}

data "butter_routes" "tf" {
  project    = "tf"
  depends_on = [module.tf]
}

output "revision" {
  value = module.tf.revision
}

output "routes" {
  value = data.butter_routes.tf.routes
}

resource "butter_timer" "hourly" {
  name     = "tf-hourly"
  schedule = "@every 1h"
  topic    = "tf.ticks"
}

data "butter_project" "tf" {
  name       = "tf"
  depends_on = [module.tf]
}

output "status" {
  value = data.butter_project.tf.status
}
`

// badSpec is a project whose only function cannot start (its module
// throws when loaded, and min 1 starts it with the pool), so its first
// deployment fails at the healthy deadline.
const badSpec = `project "tfbad" {
  deploy {
    min_healthy_time = "1s"
    healthy_deadline = "15s"
  }
}

function "broken" {
  runtime = "node"
  source  = "fn"
  handler = "index.handle"
  timeout = "5s"
  trigger "http" {
    route = "POST /broken"
  }
  instances {
    min = 1
  }
}
`

const badTF = `terraform {
  required_providers {
    butter = {
      source = "butterfn/butter"
    }
  }
}

resource "butter_project" "bad" {
  name      = "tfbad"
  directory = "${path.module}/project"
  timeout   = "3m"
}
`

// installProvider puts the provider under test in a filesystem mirror
// under root, and writes a CLI configuration that installs it from there
// and nothing from a registry; it returns the configuration's path, for
// TF_CLI_CONFIG_FILE.
func installProvider(t *testing.T, root string) string {
	t.Helper()
	mirror := filepath.Join(root, "mirror")
	pluginPath := filepath.Join(mirror, strings.Replace(provider.Address, "/", string(filepath.Separator), -1), "0.1.0", "linux_amd64", "terraform-provider-butter_v0.1.0")
	if err := os.MkdirAll(filepath.Dir(pluginPath), 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(e2etest.Provider())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pluginPath, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cliConfig := filepath.Join(root, "tofurc")
	if err := os.WriteFile(cliConfig, []byte(fmt.Sprintf(`provider_installation {
  filesystem_mirror {
    path    = %q
    include = [%q]
  }
  direct {
    exclude = [%q]
  }
}
`, mirror, provider.Address, provider.Address)), 0o644); err != nil {
		t.Fatal(err)
	}
	return cliConfig
}

// tofuEnv is the environment every tofu run of the tests has.
func tofuEnv(root, cliConfig string) []string {
	return []string{"TF_CLI_CONFIG_FILE=" + cliConfig, "TF_IN_AUTOMATION=1", "TF_INPUT=0", "CHECKPOINT_DISABLE=1", "NO_COLOR=1", "HOME=" + root}
}

// write writes files (path relative to dir: text) under dir.
func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for rel, text := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// tofuBinary returns bin/tofu, failing under make test and CI when it is
// missing, skipping otherwise.
func tofuBinary(t *testing.T) string {
	bin := filepath.Join(e2etest.Root(), "bin", "tofu")
	if _, err := os.Stat(bin); err != nil {
		msg := fmt.Sprintf("OpenTofu %s not found: run `make tools` first", bin)
		if os.Getenv("BUTTER_REQUIRE_NOMAD") != "" || os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

// workspace is a Terraform configuration directory and how to run tofu
// in it.
type workspace struct {
	t   *testing.T
	dir string
	env []string
}

// tofu runs `tofu args...` in the workspace with extra environment, and
// returns its exit code and combined output.
func (w *workspace) tofu(extra []string, args ...string) (int, string) {
	w.t.Helper()
	cmd := exec.Command(tofuBin, args...)
	cmd.Dir = w.dir
	cmd.Env = append(append(os.Environ(), w.env...), extra...)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			w.t.Fatalf("tofu %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return code, string(out)
}

// must runs tofu and fails the test unless it exits with want.
func (w *workspace) must(want int, args ...string) string {
	w.t.Helper()
	start := time.Now()
	code, out := w.tofu(nil, args...)
	w.t.Logf("tofu %s: exit %d in %v", strings.Join(args, " "), code, time.Since(start).Round(10*time.Millisecond))
	if code != want {
		w.t.Fatalf("tofu %s exited %d, want %d:\n%s", strings.Join(args, " "), code, want, out)
	}
	return out
}

var tofuBin string

// TestProviderLifecycle drives the project module (terraform/modules/
// project: butter_project, butter_api_key, butter_acl_policy and
// butter_acl_token) and data "butter_routes" through OpenTofu: init from a filesystem mirror; apply (the project deployed
// and healthy on Nomad, the key, policy and token on the control plane);
// a second plan with no changes; an edit of one function that plans
// exactly that function's change, and its apply; an invalid spec whose
// diagnostics (file:line:col) reach tofu's output; a rollback outside
// Terraform that the plan shows as drift; import by name; a refused
// token and an unreachable control plane, each a clear error; destroy,
// after which the project, its Nomad job, the key, the policy and the
// token are gone.
func TestProviderLifecycle(t *testing.T) {
	tofuBin = tofuBinary(t)
	agent := nomadtest.StartWith(t, nomadtest.Options{
		PluginDir: e2etest.PluginDir(),
		HCL:       fmt.Sprintf("plugin \"nomad-driver-butter\" {\n  config {\n    butter_path = %q\n  }\n}\n", e2etest.Bin()),
		NodeReady: func(n *nomadapi.Node) bool { d := n.Drivers["butter"]; return d != nil && d.Healthy },
	})
	server := e2etest.StartServer(t, "-acl=true", "-nomad-addr", agent.Addr)
	addr := "http://" + server.HTTP
	boot := e2etest.Butter(t, ".", "acl", "bootstrap", "-address", addr)
	m := regexp.MustCompile(`Secret ID\s+= (\S+)`).FindStringSubmatch(boot.Stdout)
	if boot.Code != 0 || m == nil {
		t.Fatalf("acl bootstrap: %+v", boot)
	}
	token := m[1]
	client, err := api.NewClient(&api.Config{Address: addr, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	root := t.TempDir()
	cliConfig := installProvider(t, root)
	w := &workspace{t: t, dir: filepath.Join(root, "config"), env: append(tofuEnv(root, cliConfig), "BUTTER_ADDR="+addr, "BUTTER_TOKEN="+token)}
	write(t, w.dir, map[string]string{"main.tf": mainTF, "project/tf.fn.hcl": spec})
	writeSpec := func(text string) { write(t, w.dir, map[string]string{"project/tf.fn.hcl": text}) }
	if err := os.CopyFS(filepath.Join(w.dir, "modules", "project"), os.DirFS(filepath.Join(e2etest.Root(), "terraform", "modules", "project"))); err != nil {
		t.Fatal(err)
	}

	out := w.must(0, "init", "-no-color")
	if !strings.Contains(out, "butterfn/butter") {
		t.Errorf("tofu init does not name the provider:\n%s", out)
	}
	out = w.must(0, "apply", "-auto-approve", "-no-color")
	t.Logf("apply:\n%s", e2etest.Tail(out, 1500))
	st, _, err := client.Projects().Status(ctx, "tf", nil)
	if err != nil || st.Active == nil || st.Active.Deployment.Status != api.StatusHealthy {
		t.Fatalf("after the apply, project tf: %+v, %v; want an active healthy revision", st, err)
	}
	first := st.Active.ID
	if !strings.Contains(out, `revision = "`+first+`"`) {
		t.Errorf("the apply's output does not name the active revision %s", first)
	}
	if !strings.Contains(out, `status = "healthy"`) {
		t.Errorf("the butter_project data source's output does not say healthy")
	}
	if !strings.Contains(out, `"tf: POST /up`) && !strings.Contains(out, `"POST /up`) {
		t.Errorf("the routes data source's output lacks POST /up:\n%s", out)
	}
	// The module's variables reach the specs: greet's route is the
	// value given, and the revision records it.
	if !strings.Contains(out, "POST /hi") {
		t.Errorf("the routes data source's output lacks greet's route from the module's variables, POST /hi:\n%s", out)
	}
	if rev, _, err := client.Revisions().Get(ctx, "tf", first, nil); err != nil || !strings.Contains(rev.Specs[hclspec.ValuesFile], `greet_path = "/hi"`) {
		t.Errorf("revision %s records no %s with greet_path: %v", first, hclspec.ValuesFile, err)
	}
	if job, _, err := agent.Client.Jobs().Info(names.JobID("tf"), nil); err != nil || job.Status == nil || *job.Status != "running" {
		t.Errorf("Nomad job %s after the apply: %v", names.JobID("tf"), err)
	}
	keys, _, err := client.Keys().List(ctx, nil)
	if err != nil || !slices.ContainsFunc(keys, func(k api.APIKey) bool { return k.Project == "tf" && slices.Equal(k.Routes, []string{"POST /up"}) }) {
		t.Errorf("keys after the apply: %+v, %v; want one for tf's POST /up", keys, err)
	}
	if p, err := client.ACL().PolicyGet(ctx, "tf-deploy"); err != nil || !strings.Contains(p.Rules, `project "tf"`) {
		t.Errorf("policy tf-deploy: %+v, %v", p, err)
	}
	if tm, err := client.Timers().Get(ctx, "tf-hourly"); err != nil || tm.Schedule != "@every 1h" || tm.Topic != "tf.ticks" {
		t.Errorf("timer tf-hourly after the apply: %+v, %v", tm, err)
	}
	toks, err := client.ACL().TokenList(ctx)
	if err != nil || !slices.ContainsFunc(toks, func(tk api.ACLToken) bool {
		return tk.Name == "tf deployer" && slices.Equal(tk.Policies, []string{"tf-deploy"})
	}) {
		t.Errorf("tokens after the apply: %+v, %v", toks, err)
	}

	// Nothing changed: nothing planned (-detailed-exitcode: 0).
	w.must(0, "plan", "-detailed-exitcode", "-no-color")

	// One function edited: the plan names that function's fingerprint
	// and the revision, not the other function's.
	writeSpec(strings.Replace(spec, `command = ["tr", "a-z", "A-Z"]
  timeout = "5s"`, `command = ["tr", "a-z", "A-Z"]
  timeout = "7s"`, 1))
	out = w.must(2, "plan", "-detailed-exitcode", "-no-color")
	t.Logf("plan of the edit:\n%s", out)
	if !regexp.MustCompile(`~ "up"\s+= "sha256:[0-9a-f]+" -> "sha256:[0-9a-f]+"`).MatchString(out) {
		t.Errorf("the plan does not show function up's change")
	}
	if regexp.MustCompile(`"echo"\s+= "sha256:[0-9a-f]+" ->`).MatchString(out) {
		t.Errorf("the plan shows function echo changing, though only up was edited")
	}
	if !regexp.MustCompile(`~ revision\s+= "` + first + `" -> "[0-9a-f]+"`).MatchString(out) {
		t.Errorf("the plan does not show the revision changing from %s", first)
	}
	if !strings.Contains(out, "1 to change") || strings.Contains(out, "to destroy") && !strings.Contains(out, "0 to destroy") {
		t.Errorf("the edit plans more than one in-place change")
	}
	w.must(0, "apply", "-auto-approve", "-no-color")
	st, _, err = client.Projects().Status(ctx, "tf", nil)
	if err != nil || st.Active == nil || st.Active.ID == first || st.Active.Deployment.Status != api.StatusHealthy {
		t.Fatalf("after the edit's apply: %+v, %v; want a new healthy revision", st, err)
	}
	second := st.Active.ID
	w.must(0, "plan", "-detailed-exitcode", "-no-color")

	// An invalid spec: its diagnostics, with file:line:col, in tofu's
	// output; nothing applied.
	bad := strings.Replace(spec, `timeout = "5s"
  trigger "http" {
    route = "POST /echo"`, `timeout = "5 parsecs"
  trigger "http" {
    route = "POST /echo"`, 1)
	writeSpec(bad)
	out = w.must(1, "plan", "-no-color")
	if !regexp.MustCompile(`tf\.fn\.hcl:2[0-9]:\d+`).MatchString(out) || !strings.Contains(out, "Invalid Butter project") {
		t.Errorf("an invalid spec's plan does not name the file, line and column:\n%s", out)
	}
	writeSpec(strings.Replace(spec, `timeout = "5s"`, `timeout = "7s"`, 1))
	w.must(0, "plan", "-detailed-exitcode", "-no-color")

	// Drift: a rollback outside Terraform. The plan shows the revision
	// going back to the configuration's; the apply restores it.
	if _, err := client.Revisions().Rollback(ctx, "tf"); err != nil {
		t.Fatal(err)
	}
	e2etest.WaitFor(t, 2*time.Minute, "the rollback to the first revision healthy", func() bool {
		st, _, err := client.Projects().Status(ctx, "tf", nil)
		return err == nil && st.Active != nil && st.Active.ID == first && st.Active.Deployment.Status == api.StatusHealthy
	})
	out = w.must(2, "plan", "-detailed-exitcode", "-no-color")
	if !regexp.MustCompile(`~ revision\s+= "` + first + `" -> "` + second + `"`).MatchString(out) {
		t.Errorf("the plan after a rollback outside Terraform does not show revision %s -> %s:\n%s", first, second, out)
	}
	w.must(0, "apply", "-auto-approve", "-no-color")
	if st, _, err = client.Projects().Status(ctx, "tf", nil); err != nil || st.Active == nil || st.Active.ID != second {
		t.Fatalf("after restoring: %+v, %v; want revision %s", st, err, second)
	}

	// Import by name: forgotten by the state, imported back; the next
	// apply deploys nothing (the same revision) and then no changes.
	w.must(0, "state", "rm", "module.tf.butter_project.this")
	out = w.must(0, "import", "-no-color", "module.tf.butter_project.this", "tf")
	if !strings.Contains(out, "Import successful") {
		t.Errorf("tofu import:\n%s", out)
	}
	out = w.must(2, "plan", "-detailed-exitcode", "-no-color")
	if strings.Contains(out, "~ revision") || strings.Contains(out, "must be replaced") {
		t.Errorf("after import the plan changes the revision or replaces the project:\n%s", out)
	}
	revsBefore, _, _ := client.Revisions().List(ctx, "tf", nil)
	w.must(0, "apply", "-auto-approve", "-no-color")
	if revs, _, _ := client.Revisions().List(ctx, "tf", nil); len(revs) != len(revsBefore) {
		t.Errorf("the apply after import recorded a revision: %d before, %d after", len(revsBefore), len(revs))
	}
	w.must(0, "plan", "-detailed-exitcode", "-no-color")

	// A refused token and an unreachable control plane: clear errors.
	code, out := w.tofu([]string{"BUTTER_TOKEN=00000000-0000-0000-0000-000000000000"}, "plan", "-no-color")
	if code != 1 || !strings.Contains(out, "The token was refused") || !strings.Contains(out, addr) {
		t.Errorf("plan with a wrong token: exit %d\n%s", code, out)
	}
	closed := "http://" + testport.Addr(t)
	code, out = w.tofu([]string{"BUTTER_ADDR=" + closed}, "plan", "-no-color")
	if code != 1 || !strings.Contains(out, "No answer from the control plane at "+closed) {
		t.Errorf("plan against an unreachable control plane: exit %d\n%s", code, out)
	}

	// Destroy: everything gone, the Nomad job purged.
	w.must(0, "destroy", "-auto-approve", "-no-color")
	if _, _, err := client.Projects().Status(ctx, "tf", nil); api.StatusCode(err) != 404 {
		t.Errorf("project tf after destroy: %v, want 404", err)
	}
	if _, _, err := agent.Client.Jobs().Info(names.JobID("tf"), nil); err == nil {
		t.Errorf("Nomad job %s still registered after destroy", names.JobID("tf"))
	}
	if keys, _, err := client.Keys().List(ctx, nil); err != nil || slices.ContainsFunc(keys, func(k api.APIKey) bool { return k.Project == "tf" }) {
		t.Errorf("keys after destroy: %+v, %v", keys, err)
	}
	if _, err := client.ACL().PolicyGet(ctx, "tf-deploy"); api.StatusCode(err) != 404 {
		t.Errorf("policy tf-deploy after destroy: %v, want 404", err)
	}
	if toks, err := client.ACL().TokenList(ctx); err != nil || slices.ContainsFunc(toks, func(tk api.ACLToken) bool { return tk.Name == "tf deployer" }) {
		t.Errorf("tokens after destroy: %+v, %v", toks, err)
	}
	if _, err := client.Timers().Get(ctx, "tf-hourly"); api.StatusCode(err) != 404 {
		t.Errorf("timer tf-hourly after destroy: %v, want 404", err)
	}

	// A first deploy that fails: the apply fails saying why, and the
	// provider deletes the project again, so that neither the control
	// plane nor the state keeps anything of it.
	fw := &workspace{t: t, dir: filepath.Join(root, "bad"), env: w.env}
	write(t, fw.dir, map[string]string{
		"main.tf":                 badTF,
		"project/tfbad.fn.hcl":    badSpec,
		"project/fn/index.js":     "throw new Error('broken on purpose');\n",
		"project/fn/package.json": "{}\n",
	})
	fw.must(0, "init", "-no-color")
	code, out = fw.tofu(nil, "apply", "-auto-approve", "-no-color")
	t.Logf("apply of a project that cannot start: exit %d\n%s", code, e2etest.Tail(out, 1500))
	if code != 1 || !strings.Contains(out, `project "tfbad" did not become healthy`) || !strings.Contains(out, "The project was deleted again") {
		t.Errorf("the failed first deploy's apply: exit %d, want 1 with the failure and the project deleted again", code)
	}
	if _, _, err := client.Projects().Status(ctx, "tfbad", nil); api.StatusCode(err) != 404 {
		t.Errorf("project tfbad after its failed first deploy: %v, want 404", err)
	}
	if out := fw.must(0, "state", "list"); strings.TrimSpace(out) != "" {
		t.Errorf("the state holds %q after a failed create, want nothing", out)
	}
}
