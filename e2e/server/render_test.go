package server

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/e2e/e2etest"
	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/hashicorp/nomad/api"
)

// TestRenderUploadToNomad is the GitOps path without butter deploy:
// `butter job render -upload` stores examples/hello's bundles on a real
// control plane with ACLs on and renders the job with signed artifact
// URLs, and the real `nomad job run -` runs it on a real Nomad agent with
// the butter driver: the allocation fetches its bundles without a token
// and its pool becomes healthy.
func TestRenderUploadToNomad(t *testing.T) {
	root := e2etest.Root()
	agent := nomadtest.StartWith(t, nomadtest.Options{
		PluginDir: e2etest.PluginDir(),
		HCL:       fmt.Sprintf("plugin \"nomad-driver-butter\" {\n  config {\n    butter_path = %q\n  }\n}\n", e2etest.Bin()),
		NodeReady: func(n *api.Node) bool { d := n.Drivers["butter"]; return d != nil && d.Healthy },
	})
	s := e2etest.StartServer(t, "-acl=true")
	addr := "http://" + s.HTTP
	boot := e2etest.Butter(t, ".", "acl", "bootstrap", "-address", addr)
	m := regexp.MustCompile(`Secret ID\s+= (\S+)`).FindStringSubmatch(boot.Stdout)
	if boot.Code != 0 || m == nil {
		t.Fatalf("acl bootstrap: %+v", boot)
	}
	token := m[1]

	dir := filepath.Join(t.TempDir(), "hello")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(root, "examples", "hello"))); err != nil {
		t.Fatal(err)
	}
	r := e2etest.Butter(t, ".", "job", "render", "-upload", "-address", addr, "-token", token, dir)
	if r.Code != 0 || !strings.Contains(r.Stderr, "Uploaded ") {
		t.Fatalf("job render -upload: %+v", r)
	}
	if !regexp.MustCompile(`source\s+= "` + regexp.QuoteMeta(addr) + `/v1/blobs/sha256/[0-9a-f]{64}\?butter_sig=[^"]+"`).MatchString(r.Stdout) {
		t.Fatalf("the rendered job's artifacts should fetch from %s with a signature:\n%s", addr, r.Stdout)
	}
	if strings.Contains(r.Stdout, token) {
		t.Fatal("the rendered job holds the ACL token")
	}

	run := exec.Command(nomadtest.Binary(t), "job", "run", "-detach", "-")
	run.Env = append(os.Environ(), "NOMAD_ADDR="+agent.Addr)
	run.Stdin = strings.NewReader(r.Stdout)
	if out := e2etest.Run(t, run); out.Code != 0 {
		t.Fatalf("nomad job run -: %+v", out)
	}
	e2etest.WaitFor(t, 3*time.Minute, "the rendered job's allocation running and healthy", func() bool {
		allocs, _, err := agent.Client.Jobs().Allocations("butter-hello", false, nil)
		if err != nil {
			return false
		}
		for _, a := range allocs {
			if a.ClientStatus == "failed" {
				t.Fatalf("allocation %s failed: %+v", a.ID, a.TaskStates)
			}
			if a.ClientStatus == "running" && a.DeploymentStatus != nil && a.DeploymentStatus.Healthy != nil && *a.DeploymentStatus.Healthy {
				return true
			}
		}
		return false
	})
}

// TestRuntimeConstraints: a pool's job requires the runtimes of its
// functions on the client (`${attr.driver.butter.<runtime>}` is_set, the
// butter driver's fingerprint). A real Nomad agent whose PATH has node
// and python3 but no go toolchain plans examples/hello's pool (Go, Node
// and Python functions) nowhere, saying it is the go constraint; a pool
// of Node and Python functions alone is placed there.
func TestRuntimeConstraints(t *testing.T) {
	agent := nomadtest.StartWith(t, nomadtest.Options{
		PluginDir: e2etest.PluginDir(),
		HCL:       fmt.Sprintf("plugin \"nomad-driver-butter\" {\n  config {\n    butter_path = %q\n  }\n}\n", e2etest.Bin()),
		Env:       []string{"PATH=/usr/bin:/bin"},
		NodeReady: func(n *api.Node) bool {
			d := n.Drivers["butter"]
			return d != nil && d.Healthy && n.Attributes["driver.butter.node"] != ""
		},
	})
	nodes, _, err := agent.Client.Nodes().List(nil)
	if err != nil || len(nodes) != 1 {
		t.Fatalf("nodes: %v %v", nodes, err)
	}
	node, _, err := agent.Client.Nodes().Info(nodes[0].ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if node.Attributes["driver.butter.go"] != "" {
		t.Skipf("a go toolchain is in /usr/bin or /bin here (%s): this test needs a client without one", node.Attributes["driver.butter.go"])
	}

	dir := filepath.Join(t.TempDir(), "hello")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(e2etest.Root(), "examples", "hello"))); err != nil {
		t.Fatal(err)
	}
	plan := func() *api.JobPlanResponse {
		t.Helper()
		r := e2etest.Butter(t, ".", "job", "render", "-format", "json", dir)
		if r.Code != 0 {
			t.Fatalf("job render: %+v", r)
		}
		var wrapped struct{ Job *api.Job }
		if err := json.Unmarshal([]byte(r.Stdout), &wrapped); err != nil {
			t.Fatalf("the rendered job: %v", err)
		}
		resp, _, err := agent.Client.Jobs().Plan(wrapped.Job, true, nil)
		if err != nil {
			t.Fatalf("plan: %v", err)
		}
		return resp
	}
	failed := plan().FailedTGAllocs["default"]
	byGo := 0
	if failed != nil {
		for c, n := range failed.ConstraintFiltered {
			if strings.HasPrefix(c, "${attr.driver.butter.go} is_set") { // Nomad writes "is_set " with an empty right side
				byGo += n
			}
		}
	}
	if byGo != 1 || len(failed.ConstraintFiltered) != 1 {
		t.Fatalf("the pool with a Go function should be refused by the go constraint: %+v", failed)
	}

	// Without its Go function, the pool needs node and python3 only.
	spec := filepath.Join(dir, "hello.fn.hcl")
	b, err := os.ReadFile(spec)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, `function "echo-go"`)
	if start < 0 {
		t.Fatal(`examples/hello has no function "echo-go"`)
	}
	end := strings.Index(text[start:], "\n}\n")
	if err := os.WriteFile(spec, []byte(text[:start]+text[start+end+3:]), 0o644); err != nil {
		t.Fatal(err)
	}
	if failed := plan().FailedTGAllocs; len(failed) != 0 {
		t.Errorf("the Node and Python pool should be placed: %+v", failed["default"])
	}
}
