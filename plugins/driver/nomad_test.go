package driver_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/bundle"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/butterfn/butter/jobs"
	"github.com/hashicorp/nomad/api"
)

// buildPlugin builds butter and nomad-driver-butter into a plugin dir.
func buildPlugin(t *testing.T) string {
	t.Helper()
	root := nomadtest.RepoRoot(t)
	dir := t.TempDir()
	for _, b := range []struct{ out, pkg string }{
		{"nomad-driver-butter", "./cmd/nomad-driver-butter"},
		{"butter", "./cmd/butter"},
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b.out), b.pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", b.pkg, err, out)
		}
	}
	return dir
}

// blobServer serves a compiled project's bundles and schemas by digest,
// as the control plane will: the job's artifact blocks fetch from it and
// verify the checksum.
func blobServer(t *testing.T, proj *spec.Project, c *jobs.Compiled) string {
	t.Helper()
	blobs := map[string][]byte{}
	for _, a := range c.Artifacts {
		var buf bytes.Buffer
		if a.IsSchema {
			b, err := os.ReadFile(filepath.Join(proj.Dir, a.Path))
			if err != nil {
				t.Fatal(err)
			}
			buf.Write(b)
		} else if _, err := bundle.Write(os.DirFS(proj.Dir), a.Path, &buf); err != nil {
			t.Fatal(err)
		}
		blobs[a.Digest.Hex()] = buf.Bytes()
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := blobs[strings.TrimPrefix(r.URL.Path, "/v1/blobs/sha256/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/v1/blobs"
}

func startAgent(t *testing.T) *nomadtest.Agent {
	pluginDir := buildPlugin(t)
	return nomadtest.StartWith(t, nomadtest.Options{
		PluginDir: pluginDir,
		HCL: fmt.Sprintf(`
plugin "nomad-driver-butter" {
  config {
    butter_path = %q
  }
}
`, filepath.Join(pluginDir, "butter")),
		NodeReady: func(n *api.Node) bool {
			d := n.Drivers["butter"]
			return d != nil && d.Healthy
		},
	})
}

// deploy compiles the project in dir, registers its job and returns the
// address of its default pool once Nomad's service registration has it.
func deploy(t *testing.T, agent *nomadtest.Agent, dir string) (*api.Job, string) {
	t.Helper()
	proj, rep := spec.Load(dir)
	if proj == nil {
		t.Fatalf("%v", rep.Diags)
	}
	c, err := jobs.Compile(proj)
	if err != nil {
		t.Fatal(err)
	}
	c, err = jobs.Compile(proj, jobs.WithBlobURL(blobServer(t, proj, c)))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := agent.Client.Jobs().Register(c.Job, nil); err != nil {
		t.Fatalf("register: %v", err)
	}
	service := jobs.ServiceName(proj.Name, "default")
	deadline := time.Now().Add(3 * time.Minute)
	for {
		regs, _, err := agent.Client.Services().Get(service, nil)
		if err == nil && len(regs) > 0 {
			addr := fmt.Sprintf("http://%s:%d", regs[0].Address, regs[0].Port)
			if resp, err := http.Get(addr + "/v1/health"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return c.Job, addr
				}
			}
		}
		if time.Now().After(deadline) {
			allocs, _, _ := agent.Client.Jobs().Allocations(*c.Job.ID, true, nil)
			for _, a := range allocs {
				for task, st := range a.TaskStates {
					for _, ev := range st.Events {
						t.Logf("alloc %s task %s: %s %s %s", a.ID[:8], task, ev.Type, ev.DisplayMessage, ev.DriverError)
					}
				}
			}
			t.Fatalf("service %s not healthy after 3m", service)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestOneAllocationManyRuntimes runs examples/hello with nomad job run's
// API: one allocation hosts the node, python, go and exec functions, found
// through Nomad's service registration, and each answers.
func TestOneAllocationManyRuntimes(t *testing.T) {
	agent := startAgent(t)
	job, addr := deploy(t, agent, filepath.Join(nomadtest.RepoRoot(t), "examples", "hello"))

	allocs, _, err := agent.Client.Jobs().Allocations(*job.ID, false, nil)
	if err != nil || len(allocs) != 1 {
		t.Fatalf("allocations: %d, %v; want exactly one", len(allocs), err)
	}
	for _, fn := range []string{"echo-node", "echo-python", "echo-go", "echo-exec"} {
		code, body := post(t, addr+"/v1/invoke/"+fn, "hello "+fn)
		if code != 200 || body != "hello "+fn {
			t.Errorf("%s: %d %q", fn, code, body)
		}
	}
	// The driver reports the pool's resource usage.
	stats, err := agent.Client.Allocations().Stats(&api.Allocation{ID: allocs[0].ID, NodeID: allocs[0].NodeID}, nil)
	if err != nil {
		t.Fatalf("alloc stats: %v", err)
	}
	if mem := stats.ResourceUsage.MemoryStats; mem == nil || mem.RSS == 0 {
		t.Errorf("no memory usage reported: %+v", stats.ResourceUsage)
	} else {
		t.Logf("pool RSS %.1f MiB", float64(mem.RSS)/(1<<20))
	}
}

// TestDrainOnStop: stopping the job while a slow call is in flight lets
// that call finish.
func TestDrainOnStop(t *testing.T) {
	agent := startAgent(t)
	job, addr := deploy(t, agent, "testdata/drain")
	var wg sync.WaitGroup
	var code int
	var body string
	wg.Add(1)
	go func() {
		defer wg.Done()
		code, body = post(t, addr+"/v1/invoke/slow", "")
	}()
	// Wait until the call is in flight, then stop the job.
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(addr + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), `butter_inflight_calls{function="slow"} 1`) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the slow call never started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, _, err := agent.Client.Jobs().Deregister(*job.ID, false, nil); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if code != 200 || body != "finished\n" {
		t.Errorf("the in-flight call during the stop got %d %q; want 200 \"finished\"", code, body)
	}
}
