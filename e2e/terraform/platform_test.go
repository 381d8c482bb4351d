package terraform

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/e2e/e2etest"
	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/butterfn/butter/internal/testport"
)

// platformTF runs terraform/modules/platform: the broker, the control
// plane and a gateway as Nomad jobs.
const platformTF = `terraform {
  required_providers {
    butter = {
      source = "butterfn/butter"
    }
  }
}

provider "butter" {
  nomad_address = %q
}

module "platform" {
  source = "./modules/platform"

  butter_bin        = %q
  datacenters       = ["dc1"]
  nomad_addr        = %q
  broker            = true
  kafka_port        = %d
  kafka_brokers     = %q
  server_http_port  = %d
  server_raft_port  = %d
  gateway_http_port = %d
  timeout           = "4m"
}

output "server_address" {
  value = module.platform.server_address
}
`

// appTF deploys a project, and the gateway's read-only policy and token,
// on the control plane the platform module runs.
const appTF = `terraform {
  required_providers {
    butter = {
      source = "butterfn/butter"
    }
  }
}

provider "butter" {
  address = %q
}

module "tf" {
  source = "./modules/project"

  name      = "tf"
  directory = "${path.module}/project"
  timeout   = "4m"
}

resource "butter_acl_policy" "gateway" {
  name  = "gateway"
  rules = "project \"*\" { capabilities = [\"read\"] }\n"
}

resource "butter_acl_token" "gateway" {
  name     = "gateway"
  policies = [butter_acl_policy.gateway.name]
}

output "gateway_token" {
  value     = butter_acl_token.gateway.secret_id
  sensitive = true
}
`

// TestPlatformModule brings Butter up on Nomad with Terraform alone,
// through OpenTofu: the platform module (terraform/modules/platform)
// registers jobs/platform's broker, control plane and gateway through
// butter_nomad_job on a real Nomad agent and waits for their
// deployments; a second plan has no changes (Nomad's own plan diff); a
// job stopped outside Terraform is planned for creation and brought back.
// Then, with the ACLs bootstrapped, a second configuration deploys a
// project and the gateway's token on that control plane; with the token
// in the gateway's Nomad variable, a call through the gateway reaches
// the function, and a wasm function and a java function (compiled by
// javac on the client) of the same project answer through the gateway
// from their pool on Nomad. Destroying both leaves no job in Nomad.
func TestPlatformModule(t *testing.T) {
	tofuBin = tofuBinary(t)
	kafkaPort, httpPort, raftPort, gwPort := testport.Port(t), testport.Port(t), testport.Port(t), testport.Port(t)
	brokers := fmt.Sprintf("127.0.0.1:%d", kafkaPort)
	agent := nomadtest.StartWith(t, nomadtest.Options{
		PluginDir: e2etest.PluginDir(),
		HCL: fmt.Sprintf(`
plugin "raw_exec" {
  config {
    enabled = true
  }
}
plugin "nomad-driver-butter" {
  config {
    butter_path   = %q
    kafka_brokers = [%q]
  }
}
`, e2etest.Bin(), brokers),
		NodeReady: func(n *nomadapi.Node) bool {
			d, r := n.Drivers["butter"], n.Drivers["raw_exec"]
			return d != nil && d.Healthy && r != nil && r.Healthy
		},
	})
	root := t.TempDir()
	cliConfig := installProvider(t, root)
	modules := map[string]string{}
	for _, m := range []string{"platform", "project"} {
		for _, f := range []string{"main.tf", "variables.tf", "outputs.tf"} {
			modules[filepath.Join("terraform", "modules", m, f)] = readFile(t, filepath.Join(e2etest.Root(), "terraform", "modules", m, f))
		}
	}
	// The platform module finds the jobspecs at ../../../jobs/platform,
	// as in a checkout of the repository (or a git source of it).
	for _, j := range []string{"broker", "server", "gateway", "prometheus"} {
		modules[filepath.Join("jobs", "platform", j+".nomad.hcl")] = readFile(t, filepath.Join(e2etest.Root(), "jobs", "platform", j+".nomad.hcl"))
	}
	tree := filepath.Join(root, "repo")
	write(t, tree, modules)

	pw := &workspace{t: t, dir: filepath.Join(tree, "platform-config"), env: tofuEnv(root, cliConfig)}
	// The tree is laid out as the repository is (terraform/modules/ and
	// jobs/platform/), the configurations beside them.
	write(t, pw.dir, map[string]string{"main.tf": strings.Replace(fmt.Sprintf(platformTF, agent.Addr, e2etest.Bin(), agent.Addr, kafkaPort, brokers, httpPort, raftPort, gwPort), "./modules/platform", "../terraform/modules/platform", 1)})
	defer func() {
		if t.Failed() {
			for _, id := range []string{"butter-broker", "butter-server", "butter-gateway", "butter-tf"} {
				nomadtest.LogTasks(t, agent.Client, id, 3000, "stderr")
			}
		}
	}()
	pw.must(0, "init", "-no-color")
	out := pw.must(0, "apply", "-auto-approve", "-no-color")
	t.Logf("platform apply:\n%s", e2etest.Tail(out, 1200))
	for _, id := range []string{"butter-broker", "butter-server", "butter-gateway"} {
		job, _, err := agent.Client.Jobs().Info(id, nil)
		if err != nil || job.Status == nil || *job.Status != "running" || len(job.Datacenters) != 1 || job.Datacenters[0] != "dc1" {
			t.Fatalf("job %s after the platform apply: %+v, %v; want running in dc1", id, job, err)
		}
	}
	serverAddr := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	e2etest.WaitFor(t, time.Minute, "the control plane on Nomad leading", func() bool { return leader(serverAddr) != "" })
	pw.must(0, "plan", "-detailed-exitcode", "-no-color")

	// Drift: the gateway stopped outside Terraform.
	if _, _, err := agent.Client.Jobs().Deregister("butter-gateway", false, nil); err != nil {
		t.Fatal(err)
	}
	out = pw.must(2, "plan", "-detailed-exitcode", "-no-color")
	if !strings.Contains(out, "module.platform.butter_nomad_job.gateway will be created") || !strings.Contains(out, "1 to add, 0 to change, 0 to destroy") {
		t.Errorf("the plan after the gateway was stopped outside Terraform:\n%s", out)
	}
	pw.must(0, "apply", "-auto-approve", "-no-color")
	if job, _, err := agent.Client.Jobs().Info("butter-gateway", nil); err != nil || job.Stop == nil || *job.Stop {
		t.Fatalf("the gateway after the apply: %+v, %v", job, err)
	}

	// The ACLs, bootstrapped by the operator once.
	boot := e2etest.Butter(t, ".", "acl", "bootstrap", "-address", serverAddr)
	m := regexp.MustCompile(`Secret ID\s+= (\S+)`).FindStringSubmatch(boot.Stdout)
	if boot.Code != 0 || m == nil {
		t.Fatalf("acl bootstrap: %+v", boot)
	}
	mgmt := m[1]

	aw := &workspace{t: t, dir: filepath.Join(tree, "app-config"), env: append(tofuEnv(root, cliConfig), "BUTTER_TOKEN="+mgmt)}
	write(t, aw.dir, map[string]string{
		"main.tf":           strings.Replace(fmt.Sprintf(appTF, serverAddr), "./modules/project", "../terraform/modules/project", 1),
		"project/tf.fn.hcl": spec,
		// A wasm function too: its module goes to Nomad as an artifact
		// and runs in the pool on the butter driver.
		"project/wasm.fn.hcl": "function \"wup\" {\n  runtime = \"wasm\"\n  source  = \"wasm/fn.wasm\"\n  memory  = 64\n  trigger \"http\" {\n    route = \"POST /wup\"\n  }\n}\n",
	})
	buildWasm(t, filepath.Join(aw.dir, "project", "wasm", "fn.wasm"))
	// And a java function, examples/java's greet: its sources are
	// compiled by the JDK's javac on the Nomad client.
	greet, err := os.ReadFile(filepath.Join(e2etest.Root(), "examples", "java", "functions", "greet", "example", "Greet.java"))
	if err != nil {
		t.Fatal(err)
	}
	write(t, aw.dir, map[string]string{
		"project/java.fn.hcl":               "function \"jgreet\" {\n  runtime = \"java\"\n  source  = \"jgreet\"\n  handler = \"example.Greet\"\n  memory  = 128\n  trigger \"http\" {\n    route = \"POST /jgreet/{name}\"\n  }\n}\n",
		"project/jgreet/example/Greet.java": string(greet),
	})
	aw.must(0, "init", "-no-color")
	aw.must(0, "apply", "-auto-approve", "-no-color")
	gwToken := strings.TrimSpace(aw.must(0, "output", "-raw", "gateway_token"))
	if _, _, err := agent.Client.Variables().Create(&nomadapi.Variable{Path: "nomad/jobs/butter-gateway", Items: map[string]string{"BUTTER_TOKEN": gwToken}}, nil); err != nil {
		t.Fatalf("put the gateway's Nomad variable: %v", err)
	}
	var answer string
	e2etest.WaitFor(t, 2*time.Minute, "POST /up through the gateway on Nomad answering ABC", func() bool {
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/up", gwPort), "text/plain", strings.NewReader("abc"))
		if err != nil {
			answer = err.Error()
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answer = fmt.Sprintf("%d %s", resp.StatusCode, b)
		return resp.StatusCode == 200 && string(b) == "ABC"
	})
	t.Logf("through the gateway: %s", answer)
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/wup", gwPort), "text/plain", strings.NewReader("wasm"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "WASM" {
		t.Errorf("POST /wup (a wasm function on Nomad) through the gateway: %d %q, want 200 WASM", resp.StatusCode, b)
	}
	resp, err = http.Post(fmt.Sprintf("http://127.0.0.1:%d/jgreet/Nomad", gwPort), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != `{"greeting":"Hello, Nomad!"}` {
		t.Errorf("POST /jgreet/Nomad (a java function on Nomad) through the gateway: %d %q", resp.StatusCode, b)
	}

	aw.must(0, "destroy", "-auto-approve", "-no-color")
	client, err := api.NewClient(&api.Config{Address: serverAddr, Token: mgmt})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := client.Projects().Status(context.Background(), "tf", nil); api.StatusCode(err) != 404 {
		t.Errorf("project tf after the app's destroy: %v, want 404", err)
	}
	pw.must(0, "destroy", "-auto-approve", "-no-color")
	jobs, _, err := agent.Client.Jobs().List(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		t.Errorf("job %s (%s) still in Nomad after both destroys", j.ID, j.Status)
	}
}

// buildWasm builds the wasm test module (plugins/pool/testdata/wasmfn:
// it answers its input in upper case) for wasip1 into out.
func buildWasm(t *testing.T, out string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = filepath.Join(e2etest.Root(), "plugins", "pool", "testdata", "wasmfn")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the wasm module: %v\n%s", err, b)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// leader returns the leader a control plane's API names, or "".
func leader(addr string) string {
	c, err := api.NewClient(&api.Config{Address: addr})
	if err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l, err := c.Status().Leader(ctx)
	if err != nil {
		return ""
	}
	return l
}
