package driver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/internal/testport"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/plugins/driver"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/nomad/ci"
	"github.com/hashicorp/nomad/client/allocdir"
	"github.com/hashicorp/nomad/client/lib/cgroupslib"
	"github.com/hashicorp/nomad/client/lib/numalib"
	"github.com/hashicorp/nomad/client/logmon"
	"github.com/hashicorp/nomad/helper/pluginutils/hclspecutils"
	"github.com/hashicorp/nomad/helper/pluginutils/hclutils"
	"github.com/hashicorp/nomad/helper/testlog"
	"github.com/hashicorp/nomad/helper/uuid"
	nstructs "github.com/hashicorp/nomad/nomad/structs"
	"github.com/hashicorp/nomad/plugins/base"
	"github.com/hashicorp/nomad/plugins/drivers"
	"github.com/hashicorp/nomad/plugins/drivers/fsisolation"
)

// The tests here drive the real driver in-process through the plugin's
// gRPC server and client, as the Nomad client talks to it, with the real
// executor (this test binary serves it, as nomad-driver-butter does,
// through the executor package's init) and a real `butter pool`. Only the
// Nomad client around the driver is absent: the tests do its part
// (allocation dir, cgroup, task env, interpolated and schema-checked task
// config).

// driverHarness is Nomad's driver harness, plugins/drivers/testutils'
// DriverHarness, rebuilt from the same parts: that package imports
// nomad/mock, whose dependencies this module's go.mod does not list. The
// driver is served and dispensed over go-plugin's in-memory gRPC
// connection; mkAllocDir and makeTaskCgroup are the harness's MkAllocDir
// and MakeTaskCgroup, without the mock allocation MkAllocDir builds the
// task env from (mkAllocDir sets the env a pool reads itself).
type driverHarness struct {
	drivers.DriverPlugin
	client *plugin.GRPCClient
	logger hclog.Logger
	kill   sync.Once
}

func newDriverHarness(t *testing.T, d drivers.DriverPlugin) *driverHarness {
	t.Helper()
	logger := testlog.HCLogger(t).Named("driver_harness")
	client, _ := plugin.TestPluginGRPCConn(t, true, map[string]plugin.Plugin{
		base.PluginTypeDriver: drivers.NewDriverPlugin(d, logger),
		base.PluginTypeBase:   &base.PluginBase{Impl: d},
	})
	raw, err := client.Dispense(base.PluginTypeDriver)
	if err != nil {
		t.Fatalf("dispense the driver: %v", err)
	}
	h := &driverHarness{DriverPlugin: raw.(drivers.DriverPlugin), client: client, logger: logger}
	t.Cleanup(h.Kill)
	return h
}

// Kill closes the plugin connection, as when the plugin process dies.
// Closing the client asks the server to stop over the connection and
// waits for it (go-plugin's controller Shutdown), so, unlike testutils'
// Kill, it does not also call the server's Stop: the two Stops race.
func (h *driverHarness) Kill() {
	h.kill.Do(func() { _ = h.client.Close() })
}

// mkAllocDir builds the task's allocation and task dirs (no filesystem
// isolation, as the driver's capabilities say), sets the task env Nomad
// gives a driver without isolation (the host's, and the task dirs), and
// starts logmon on the task's stdout and stderr.
func (h *driverHarness) mkAllocDir(t *testing.T, task *drivers.TaskConfig) {
	t.Helper()
	mounts := t.TempDir()
	if err := os.Chmod(mounts, 0o755); err != nil {
		t.Fatal(err)
	}
	ad := allocdir.NewAllocDir(h.logger, t.TempDir(), mounts, task.AllocID)
	if err := ad.Build(); err != nil {
		t.Fatalf("build the alloc dir: %v", err)
	}
	t.Cleanup(func() { _ = ad.Destroy() })
	task.AllocDir = ad.AllocDir
	td := ad.NewTaskDir(&nstructs.Task{Name: task.Name, Env: task.Env})
	if err := td.Build(fsisolation.None, ci.TinyChroot, task.User); err != nil {
		t.Fatalf("build the task dir: %v", err)
	}
	if task.Env == nil {
		task.Env = map[string]string{}
	}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			if _, set := task.Env[k]; !set {
				task.Env[k] = v
			}
		}
	}
	task.Env["NOMAD_ALLOC_DIR"] = td.SharedAllocDir
	task.Env["NOMAD_TASK_DIR"] = td.LocalDir
	task.Env["NOMAD_SECRETS_DIR"] = td.SecretsDir
	task.Env["NOMAD_ALLOC_ID"] = task.AllocID
	task.Env["NOMAD_TASK_NAME"] = task.Name

	task.StdoutPath = filepath.Join(td.LogDir, "."+task.Name+".stdout.fifo")
	task.StderrPath = filepath.Join(td.LogDir, "."+task.Name+".stderr.fifo")
	lm := logmon.NewLogMon(h.logger.Named("logmon"))
	err := lm.Start(&logmon.LogConfig{
		LogDir:        td.LogDir,
		StdoutLogFile: task.Name + ".stdout",
		StderrLogFile: task.Name + ".stderr",
		StdoutFifo:    task.StdoutPath,
		StderrFifo:    task.StderrPath,
		MaxFiles:      2,
		MaxFileSizeMB: 10,
	})
	if err != nil {
		t.Fatalf("logmon: %v", err)
	}
	t.Cleanup(func() { _ = lm.Stop() })
}

// makeTaskCgroup creates the task's cgroup, as the Nomad client does
// before it starts a task: the executor, running as root, refuses to start
// without it. Processes left in it are killed when the test ends.
func makeTaskCgroup(t *testing.T, allocID, taskName string) {
	t.Helper()
	f := cgroupslib.Factory(allocID, taskName, false)
	if err := f.Setup(); err != nil {
		t.Fatalf("task cgroup: %v", err)
	}
	t.Cleanup(func() {
		_ = f.Kill()
		_ = f.Teardown()
	})
}

// harnessTaskName is the task's name, as jobs.Compile names it.
const harnessTaskName = "pool"

// newHarness starts a driver behind the driver harness, configured
// with the butter binary and the host topology as a Nomad client would.
func newHarness(t *testing.T, butter string) *driverHarness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h := newDriverHarness(t, driver.New(ctx, testlog.HCLogger(t)))
	var data []byte
	if err := base.MsgPackEncode(&data, &driver.Config{ButterPath: butter}); err != nil {
		t.Fatal(err)
	}
	err := h.SetConfig(&base.Config{
		PluginConfig: data,
		AgentConfig: &base.AgentConfig{Driver: &base.ClientDriverConfig{
			Topology: numalib.Scan(numalib.PlatformScanners(false)),
		}},
	})
	if err != nil {
		t.Fatalf("SetConfig: %v", err)
	}
	return h
}

// poolTask prepares a task as the Nomad client would for the pool of the
// project whose spec is fnHCL (functions only; one pool): its allocation
// dir and cgroup, $NOMAD_PORT_invoke, and the task config jobs.Compile
// renders, sent through JSON (as the job API carries it) and parsed with
// the schema the driver reports over the harness. In fnHCL, {{local}}
// stands for the task's local dir. It returns the task and the pool's address.
func poolTask(t *testing.T, h *driverHarness, fnHCL string) (*drivers.TaskConfig, string) {
	t.Helper()
	allocID := uuid.Generate()
	port := testport.Port(t)
	task := &drivers.TaskConfig{
		AllocID: allocID,
		ID:      uuid.Generate(),
		Name:    harnessTaskName,
		Env: map[string]string{
			"NOMAD_PORT_" + jobs.PortLabel: strconv.Itoa(port),
			"NOMAD_IP_" + jobs.PortLabel:   "127.0.0.1",
		},
		Resources: &drivers.Resources{
			NomadResources: &nstructs.AllocatedTaskResources{
				Memory: nstructs.AllocatedMemoryResources{MemoryMB: 256},
				Cpu:    nstructs.AllocatedCpuResources{CpuShares: 100},
			},
			LinuxResources: &drivers.LinuxResources{
				MemoryLimitBytes: 256 << 20,
				CPUShares:        100,
				CpusetCgroupPath: cgroupslib.LinuxResourcesPath(allocID, harnessTaskName, false),
			},
		},
	}
	h.mkAllocDir(t, task)
	makeTaskCgroup(t, allocID, harnessTaskName)

	dir := t.TempDir()
	src := "project \"harness\" {}\n" + strings.ReplaceAll(fnHCL, "{{local}}", task.TaskDir().LocalDir)
	if err := os.WriteFile(filepath.Join(dir, "harness.fn.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	proj, rep := spec.Load(dir)
	if proj == nil {
		t.Fatalf("%v", rep.Diags)
	}
	c, err := jobs.Compile(proj)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Job.TaskGroups) != 1 {
		t.Fatalf("%d task groups, want one pool", len(c.Job.TaskGroups))
	}
	raw, err := json.Marshal(c.Job.TaskGroups[0].Tasks[0].Config)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	schema, err := h.TaskConfigSchema()
	if err != nil {
		t.Fatalf("TaskConfigSchema: %v", err)
	}
	hs, diags := hclspecutils.Convert(schema)
	if diags.HasErrors() {
		t.Fatalf("convert the task config schema: %v", diags)
	}
	val, diags, errs := hclutils.ParseHclInterface(cfg, hs, nil)
	if diags.HasErrors() {
		t.Fatalf("the task config does not match the driver's schema: %v", errs)
	}
	if err := task.EncodeDriverConfig(val); err != nil {
		t.Fatal(err)
	}
	return task, fmt.Sprintf("http://127.0.0.1:%d", port)
}

// startPool starts the task and waits for the pool to answer its health
// check. If the test ends with the pool still up, it is destroyed.
func startPool(t *testing.T, h *driverHarness, task *drivers.TaskConfig, addr string) *drivers.TaskHandle {
	t.Helper()
	handle, _, err := h.StartTask(task)
	if err != nil {
		t.Fatalf("StartTask: %v", err)
	}
	t.Cleanup(func() { _ = h.DestroyTask(task.ID, true) })
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get(addr + "/v1/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 { // 203: healthy with warnings
				return handle
			}
		}
		if time.Now().After(deadline) {
			logPool(t, task)
			t.Fatalf("the pool at %s is not healthy after 90s: %v", addr, err)
		}
		if st, err := h.InspectTask(task.ID); err == nil && st.State != drivers.TaskStateRunning {
			logPool(t, task)
			t.Fatalf("the pool is %s before answering: %+v", st.State, st.ExitResult)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logPool logs the pool's stdout and stderr, as logmon wrote them.
func logPool(t *testing.T, task *drivers.TaskConfig) {
	for _, stream := range []string{"stdout", "stderr"} {
		b, _ := os.ReadFile(filepath.Join(task.TaskDir().LogDir, task.Name+"."+stream+".0"))
		t.Logf("pool %s:\n%s", stream, b)
	}
}

// poolCmdline is the command line of process pid.
func poolCmdline(t *testing.T, pid string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/cmdline")
	if err != nil {
		t.Fatalf("pool process %s: %v", pid, err)
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// checkRunning: InspectTask reports the task running, and its pid is a
// `butter pool` of this task's directory.
func checkRunning(t *testing.T, h *driverHarness, task *drivers.TaskConfig) *drivers.TaskStatus {
	t.Helper()
	st, err := h.InspectTask(task.ID)
	if err != nil {
		t.Fatalf("InspectTask: %v", err)
	}
	if st.ID != task.ID || st.Name != task.Name || st.State != drivers.TaskStateRunning || st.StartedAt.IsZero() {
		t.Fatalf("InspectTask = %+v, want %s running", st, task.ID)
	}
	args := poolCmdline(t, st.DriverAttributes["pid"])
	if len(args) < 2 || args[1] != "pool" || !strings.Contains(strings.Join(args, " "), task.TaskDir().Dir) {
		t.Fatalf("pid %s runs %q, not this task's pool", st.DriverAttributes["pid"], args)
	}
	return st
}

// waitExit waits for the WaitTask channel's result.
func waitExit(t *testing.T, ch <-chan *drivers.ExitResult) *drivers.ExitResult {
	t.Helper()
	select {
	case res := <-ch:
		if res == nil {
			t.Fatal("WaitTask's channel closed without a result")
		}
		return res
	case <-time.After(60 * time.Second):
		t.Fatal("WaitTask gave no result within 60s")
	}
	return nil
}

// TestHarness runs the driver through the driver harness: schema and
// fingerprint, a pool's whole life (start, a call, inspect, a draining
// stop, the exit result, destroy), and RecoverTask from a fresh driver.
func TestHarness(t *testing.T) {
	butter := filepath.Join(buildPlugin(t), "butter")

	t.Run("SchemaAndFingerprint", func(t *testing.T) {
		h := newHarness(t, butter)
		info, err := h.PluginInfo()
		if err != nil || info.Name != "butter" || info.Type != base.PluginTypeDriver {
			t.Fatalf("PluginInfo = %+v, %v", info, err)
		}
		schema, err := h.TaskConfigSchema()
		if err != nil {
			t.Fatal(err)
		}
		obj := schema.GetObject()
		if obj == nil {
			t.Fatalf("the task config schema is not an object: %v", schema)
		}
		for _, name := range []string{"project", "pool", "port", "function", "topic", "kafka"} {
			if obj.GetAttributes()[name] == nil {
				t.Errorf("the task config schema has no %q", name)
			}
		}
		if _, diags := hclspecutils.Convert(schema); diags.HasErrors() {
			t.Errorf("the Nomad client cannot convert the schema: %v", diags)
		}
		caps, err := h.Capabilities()
		if err != nil || !caps.SendSignals || caps.Exec {
			t.Errorf("Capabilities = %+v, %v", caps, err)
		}

		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ch, err := h.Fingerprint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var fp *drivers.Fingerprint
		select {
		case fp = <-ch:
		case <-time.After(60 * time.Second):
			t.Fatal("no fingerprint within 60s")
		}
		if fp.Health != drivers.HealthStateHealthy || fp.HealthDescription != drivers.DriverHealthy {
			t.Fatalf("fingerprint %s (%s), want healthy", fp.Health, fp.HealthDescription)
		}
		for attr, want := range map[string]string{
			"driver.butter":      "true",
			"driver.butter.exec": "true",
			"driver.butter.path": butter,
		} {
			a, ok := fp.Attributes[attr]
			if !ok {
				t.Errorf("fingerprint lacks %s: %v", attr, fp.Attributes)
				continue
			}
			if got := a.GoString(); got != want {
				t.Errorf("%s = %s, want %s", attr, got, want)
			}
		}

		// Without a butter binary the driver says so.
		missing := newHarness(t, filepath.Join(t.TempDir(), "butter"))
		ch, err = missing.Fingerprint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case fp = <-ch:
		case <-time.After(60 * time.Second):
			t.Fatal("no fingerprint within 60s")
		}
		if fp.Health != drivers.HealthStateUndetected || !strings.Contains(fp.HealthDescription, "butter_path") {
			t.Errorf("fingerprint without butter: %s (%s), want undetected naming butter_path", fp.Health, fp.HealthDescription)
		}
	})

	t.Run("PoolLifecycle", func(t *testing.T) {
		h := newHarness(t, butter)
		// held answers once the test creates the file "release" in the
		// task's local dir: the test holds a call in flight with it.
		task, addr := poolTask(t, h, `
function "echo" {
  runtime = "exec"
  command = ["cat"]
  timeout = "30s"
}

function "held" {
  runtime = "exec"
  command = ["sh", "-c", "while [ ! -e {{local}}/release ]; do sleep 0.05; done; cat"]
  timeout = "30s"
}
`)
		startPool(t, h, task, addr)
		if code, body := post(t, addr+"/v1/invoke/echo", "through the harness"); code != 200 || body != "through the harness" {
			t.Fatalf("echo: %d %q", code, body)
		}
		checkRunning(t, h, task)
		if err := h.DestroyTask(task.ID, false); err == nil {
			t.Fatal("DestroyTask without force destroyed a running pool")
		}
		checkRunning(t, h, task)

		// As the Nomad client does: wait on the task from the start.
		exitCh, err := h.WaitTask(context.Background(), task.ID)
		if err != nil {
			t.Fatalf("WaitTask: %v", err)
		}

		// A call in flight when the stop comes.
		type answer struct {
			code int
			body string
		}
		held := make(chan answer, 1)
		go func() {
			// Not post: t.Fatal belongs to the test's goroutine.
			resp, err := http.Post(addr+"/v1/invoke/held", "text/plain", strings.NewReader("drained"))
			if err != nil {
				held <- answer{0, err.Error()}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			held <- answer{resp.StatusCode, string(b)}
		}()
		deadline := time.Now().Add(30 * time.Second)
		for !inflight(addr, "held") {
			if time.Now().After(deadline) {
				t.Fatal("the held call never got in flight")
			}
			time.Sleep(20 * time.Millisecond)
		}

		// The kill signal Nomad sends by default ("" is SIGINT); the
		// timeout is the task's kill_timeout.
		stopped := make(chan error, 1)
		go func() { stopped <- h.StopTask(task.ID, 30*time.Second, "") }()

		// Draining: the pool stops taking connections, but the task stays
		// running while the held call is in flight.
		waitRefusing(t, addr, 30*time.Second, "StopTask")
		select {
		case err := <-stopped:
			t.Fatalf("StopTask returned (%v) with a call in flight", err)
		default:
		}
		checkRunning(t, h, task)

		if err := os.WriteFile(filepath.Join(task.TaskDir().LocalDir, "release"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		select {
		case a := <-held:
			if a.code != 200 || a.body != "drained" {
				t.Errorf("the call in flight during the stop got %d %q, want 200 \"drained\"", a.code, a.body)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("the call in flight did not finish within 60s of its release")
		}
		select {
		case err := <-stopped:
			if err != nil {
				t.Fatalf("StopTask: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("StopTask did not return within 60s of the drain")
		}

		res := waitExit(t, exitCh)
		if res.Err != nil || !res.Successful() {
			t.Errorf("WaitTask after a drained stop = %+v (err %v), want exit 0", res, res.Err)
		}
		st, err := h.InspectTask(task.ID)
		if err != nil {
			t.Fatal(err)
		}
		if st.State != drivers.TaskStateExited || st.CompletedAt.IsZero() || st.ExitResult == nil || !st.ExitResult.Successful() {
			t.Errorf("InspectTask after the stop = %+v (exit %+v), want exited 0", st, st.ExitResult)
		}

		if err := h.DestroyTask(task.ID, false); err != nil {
			t.Fatalf("DestroyTask: %v", err)
		}
		if _, err := h.InspectTask(task.ID); err == nil || !strings.Contains(err.Error(), drivers.ErrTaskNotFound.Error()) {
			t.Errorf("InspectTask after DestroyTask: %v, want %v", err, drivers.ErrTaskNotFound)
		}
	})

	t.Run("RecoverTask", func(t *testing.T) {
		first := newHarness(t, butter)
		task, addr := poolTask(t, first, `
function "echo" {
  runtime = "exec"
  command = ["cat"]
  timeout = "5s"
}
`)
		handle := startPool(t, first, task, addr)
		before := checkRunning(t, first, task)

		// The plugin goes away (as when the Nomad client restarts); the
		// pool, under its executor, keeps serving.
		first.Kill()
		if code, body := post(t, addr+"/v1/invoke/echo", "no plugin"); code != 200 || body != "no plugin" {
			t.Fatalf("echo without the plugin: %d %q", code, body)
		}

		// A new driver reattaches from the handle the client kept.
		second := newHarness(t, butter)
		if err := second.RecoverTask(handle); err != nil {
			t.Fatalf("RecoverTask: %v", err)
		}
		t.Cleanup(func() { _ = second.DestroyTask(task.ID, true) })
		after := checkRunning(t, second, task)
		if after.DriverAttributes["pid"] != before.DriverAttributes["pid"] || !after.StartedAt.Equal(before.StartedAt) {
			t.Errorf("recovered pid %s started %s; before pid %s started %s",
				after.DriverAttributes["pid"], after.StartedAt, before.DriverAttributes["pid"], before.StartedAt)
		}
		// Recovering a task the driver already has is a no-op.
		if err := second.RecoverTask(handle); err != nil {
			t.Errorf("RecoverTask again: %v", err)
		}
		if code, body := post(t, addr+"/v1/invoke/echo", "recovered"); code != 200 || body != "recovered" {
			t.Fatalf("echo after RecoverTask: %d %q", code, body)
		}

		// The recovered task stops and exits through the new driver.
		exitCh, err := second.WaitTask(context.Background(), task.ID)
		if err != nil {
			t.Fatalf("WaitTask: %v", err)
		}
		if err := second.StopTask(task.ID, 10*time.Second, ""); err != nil {
			t.Fatalf("StopTask: %v", err)
		}
		if res := waitExit(t, exitCh); res.Err != nil || !res.Successful() {
			t.Errorf("WaitTask after stopping the recovered pool = %+v (err %v), want exit 0", res, res.Err)
		}
		if err := second.DestroyTask(task.ID, false); err != nil {
			t.Fatalf("DestroyTask: %v", err)
		}
		if b, err := os.ReadFile("/proc/" + before.DriverAttributes["pid"] + "/cmdline"); err == nil && strings.Contains(string(b), task.TaskDir().Dir) {
			t.Errorf("the pool (pid %s) outlived StopTask", before.DriverAttributes["pid"])
		}
	})
}

// inflight reports whether the pool's metrics show a call of fn in flight.
func inflight(addr, fn string) bool {
	resp, err := http.Get(addr + "/metrics")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.Contains(string(b), `butter_inflight_calls{function="`+fn+`"} 1`)
}
