// Package driver is nomad-driver-butter, the Nomad task driver that runs
// Butter pools: one pool process per task, hosting many function
// instances in one allocation.
//
// It is shaped like Nomad's raw_exec driver, and for the same reasons uses
// Nomad's shared executor: the pool runs under an executor process outside
// this plugin, so a client restart (which kills the plugin) leaves the
// pool serving, and RecoverTask reattaches through the executor's go-plugin
// reattach config kept in the task handle. The executor also gives
// TaskStats for the pool's whole process tree and a graceful stop: the
// kill signal, then kill_timeout for the pool to drain, then SIGKILL.
//
// Neighbours: package pool is what runs inside the task, and its Config is
// the task config; package jobs encodes it into the job, and
// taskConfigSpec is the schema Nomad checks it against.
package driver

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/consul-template/signals"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/client/lib/cpustats"
	"github.com/hashicorp/nomad/drivers/shared/eventer"
	"github.com/hashicorp/nomad/drivers/shared/executor"
	"github.com/hashicorp/nomad/plugins/base"
	"github.com/hashicorp/nomad/plugins/drivers"
	"github.com/hashicorp/nomad/plugins/drivers/fsisolation"
	"github.com/hashicorp/nomad/plugins/shared/hclspec"
	pstructs "github.com/hashicorp/nomad/plugins/shared/structs"
)

const (
	// pluginName is the driver name jobs use: driver = "butter".
	pluginName = "butter"

	// fingerprintPeriod is how often the runtimes present are reported.
	fingerprintPeriod = 30 * time.Second

	// taskHandleVersion is the version of task handle which this driver
	// sets and understands.
	taskHandleVersion = 1

	// poolConfigFile is where StartTask writes the pool's config, in the
	// task's local directory.
	poolConfigFile = "butter-pool.json"
)

var (
	pluginInfo = &base.PluginInfoResponse{
		Type:              base.PluginTypeDriver,
		PluginApiVersions: []string{drivers.ApiVersion010},
		PluginVersion:     "0.1.0",
		Name:              pluginName,
	}

	capabilities = &drivers.Capabilities{
		SendSignals: true,
		Exec:        false,
		FSIsolation: fsisolation.None,
		NetIsolationModes: []drivers.NetIsolationMode{
			drivers.NetIsolationModeHost,
			drivers.NetIsolationModeGroup,
		},
		MountConfigs: drivers.MountConfigSupportNone,
	}
)

// The Nomad SDK interfaces the driver implements: a driver plugin (which
// includes the base plugin). It implements no optional ones
// (ExecTaskStreaming, DriverNetworkManager): exec into a pool is refused.
var (
	_ drivers.DriverPlugin = (*Driver)(nil)
	_ base.BasePlugin      = (*Driver)(nil)
)

// TaskState is what the handle keeps to reattach after a client restart.
type TaskState struct {
	ReattachConfig *pstructs.ReattachConfig
	TaskConfig     *drivers.TaskConfig
	Pid            int
	StartedAt      time.Time
}

// Driver is the butter task driver.
type Driver struct {
	eventer     *eventer.Eventer
	config      *Config
	nomadConfig *base.ClientDriverConfig
	compute     cpustats.Compute
	tasks       *taskStore
	ctx         context.Context
	logger      hclog.Logger
}

// New returns the driver plugin.
func New(ctx context.Context, logger hclog.Logger) drivers.DriverPlugin {
	logger = logger.Named(pluginName)
	return &Driver{
		eventer: eventer.NewEventer(ctx, logger),
		config:  &Config{},
		tasks:   newTaskStore(),
		ctx:     ctx,
		logger:  logger,
	}
}

func (d *Driver) PluginInfo() (*base.PluginInfoResponse, error) { return pluginInfo, nil }

func (d *Driver) ConfigSchema() (*hclspec.Spec, error) { return configSpec, nil }

func (d *Driver) SetConfig(cfg *base.Config) error {
	var config Config
	if len(cfg.PluginConfig) != 0 {
		if err := base.MsgPackDecode(cfg.PluginConfig, &config); err != nil {
			return err
		}
	}
	if err := config.Check(); err != nil {
		return err
	}
	d.config = &config
	if cfg.AgentConfig != nil {
		d.nomadConfig = cfg.AgentConfig.Driver
		d.compute = cfg.AgentConfig.Compute()
	}
	return nil
}

func (d *Driver) TaskConfigSchema() (*hclspec.Spec, error) { return taskConfigSpec, nil }

func (d *Driver) Capabilities() (*drivers.Capabilities, error) { return capabilities, nil }

// butterPath finds the butter binary: the configured path, the one beside
// this plugin, or the one on the PATH.
func (d *Driver) butterPath() (string, error) {
	if p := d.config.ButterPath; p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("butter_path %s: %w", p, err)
		}
		return p, nil
	}
	if self, err := os.Executable(); err == nil {
		beside := filepath.Join(filepath.Dir(self), "butter")
		if _, err := os.Stat(beside); err == nil {
			return beside, nil
		}
	}
	p, err := exec.LookPath("butter")
	if err != nil {
		return "", fmt.Errorf("no butter binary: set butter_path in the plugin config, or put butter on the PATH")
	}
	return p, nil
}

func (d *Driver) Fingerprint(ctx context.Context) (<-chan *drivers.Fingerprint, error) {
	ch := make(chan *drivers.Fingerprint)
	go d.handleFingerprint(ctx, ch)
	return ch, nil
}

func (d *Driver) handleFingerprint(ctx context.Context, ch chan<- *drivers.Fingerprint) {
	defer close(ch)
	ticker := time.NewTimer(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.ctx.Done():
			return
		case <-ticker.C:
			ticker.Reset(fingerprintPeriod)
			ch <- d.buildFingerprint()
		}
	}
}

// runtimeVersions are the commands whose output names each runtime's
// version, reported as node attributes driver.butter.<runtime>.
var runtimeVersions = map[string][]string{
	"node":    {"node", "--version"},
	"python3": {"python3", "--version"},
	"go":      {"go", "env", "GOVERSION"},
	// java functions are compiled on the client (plugins/runtime/java.go):
	// javac, which JDKs have and JREs lack, is the attribute.
	"javac": {"javac", "-version"},
}

func (d *Driver) buildFingerprint() *drivers.Fingerprint {
	attrs := map[string]*pstructs.Attribute{}
	bin, err := d.butterPath()
	if err != nil {
		return &drivers.Fingerprint{Health: drivers.HealthStateUndetected, HealthDescription: err.Error()}
	}
	attrs["driver.butter"] = pstructs.NewBoolAttribute(true)
	attrs["driver.butter.path"] = pstructs.NewStringAttribute(bin)
	names := make([]string, 0, len(runtimeVersions))
	for name := range runtimeVersions {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		args := runtimeVersions[name]
		if name == "javac" {
			if v, ok := jdkRelease(); ok {
				attrs["driver.butter.javac"] = pstructs.NewStringAttribute(v)
				continue
			}
		}
		ctx, cancel := context.WithTimeout(d.ctx, 5*time.Second)
		out, err := exec.CommandContext(ctx, args[0], args[1:]...).Output()
		cancel()
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(out))
		v = strings.TrimPrefix(strings.TrimPrefix(strings.TrimPrefix(strings.TrimPrefix(v, "Python "), "v"), "go"), "javac ")
		attrs["driver.butter."+name] = pstructs.NewStringAttribute(v)
	}
	attrs["driver.butter.exec"] = pstructs.NewBoolAttribute(true)
	return &drivers.Fingerprint{Attributes: attrs, Health: drivers.HealthStateHealthy, HealthDescription: drivers.DriverHealthy}
}

func (d *Driver) RecoverTask(handle *drivers.TaskHandle) error {
	if handle == nil {
		return fmt.Errorf("handle cannot be nil")
	}
	if _, ok := d.tasks.Get(handle.Config.ID); ok {
		return nil
	}
	var taskState TaskState
	if err := handle.GetDriverState(&taskState); err != nil {
		return fmt.Errorf("failed to decode task state from handle: %v", err)
	}
	plugRC, err := pstructs.ReattachConfigToGoPlugin(taskState.ReattachConfig)
	if err != nil {
		return fmt.Errorf("failed to build ReattachConfig from task state: %v", err)
	}
	execImpl, pluginClient, err := executor.ReattachToExecutor(plugRC,
		d.logger.With("task_name", handle.Config.Name, "alloc_id", handle.Config.AllocID), d.compute)
	if err != nil {
		return fmt.Errorf("failed to reattach to the pool's executor: %v", err)
	}
	h := &taskHandle{
		exec:         execImpl,
		pid:          taskState.Pid,
		pluginClient: pluginClient,
		taskConfig:   taskState.TaskConfig,
		procState:    drivers.TaskStateRunning,
		startedAt:    taskState.StartedAt,
		exitResult:   &drivers.ExitResult{},
		logger:       d.logger,
		doneCh:       make(chan struct{}),
	}
	d.tasks.Set(taskState.TaskConfig.ID, h)
	d.logger.Info("reattached to pool", "task_id", handle.Config.ID, "pid", taskState.Pid)
	go h.run()
	return nil
}

func (d *Driver) StartTask(cfg *drivers.TaskConfig) (*drivers.TaskHandle, *drivers.DriverNetwork, error) {
	if _, ok := d.tasks.Get(cfg.ID); ok {
		return nil, nil, fmt.Errorf("task with ID %q already started", cfg.ID)
	}
	poolJSON, drain, err := poolConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	bin, err := d.butterPath()
	if err != nil {
		return nil, nil, err
	}
	confPath := filepath.Join(cfg.TaskDir().LocalDir, poolConfigFile)
	if err := os.WriteFile(confPath, poolJSON, 0o644); err != nil {
		return nil, nil, fmt.Errorf("write pool config: %v", err)
	}

	kenv, err := d.config.kafkaEnv(cfg.Env)
	if err != nil {
		return nil, nil, err
	}
	handle := drivers.NewTaskHandle(taskHandleVersion)
	handle.Config = cfg
	logger := d.logger.With("task_name", cfg.Name, "alloc_id", cfg.AllocID)
	execImpl, pluginClient, err := executor.CreateExecutor(logger, d.nomadConfig, &executor.ExecutorConfig{
		LogFile:  filepath.Join(cfg.TaskDir().Dir, "executor.out"),
		LogLevel: "debug",
		Compute:  d.compute,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("failed to create executor: %v", err)
	}
	env := make([]string, 0, len(cfg.Env)+1)
	for k, v := range cfg.Env {
		env = append(env, k+"="+v)
	}
	env = append(env, kenv...)
	if a := d.config.VaultAddr; a != "" && cfg.Env["BUTTER_VAULT_ADDR"] == "" {
		env = append(env, "BUTTER_VAULT_ADDR="+a)
	}
	for k, v := range d.config.OTelEnv {
		if _, own := cfg.Env[k]; !own {
			env = append(env, k+"="+v)
		}
	}
	sort.Strings(env)
	ps, err := execImpl.Launch(&executor.ExecCommand{
		Cmd: bin,
		Args: []string{"pool",
			"-config", confPath,
			"-dir", cfg.TaskDir().Dir,
			"-drain", drain.String(),
		},
		Env:              env,
		User:             cfg.User,
		TaskDir:          cfg.TaskDir().Dir,
		StdoutPath:       cfg.StdoutPath,
		StderrPath:       cfg.StderrPath,
		NetworkIsolation: cfg.NetworkIsolation,
		Resources:        cfg.Resources.Copy(),
	})
	if err != nil {
		pluginClient.Kill()
		return nil, nil, fmt.Errorf("failed to launch the pool: %v", err)
	}
	h := &taskHandle{
		exec:         execImpl,
		pid:          ps.Pid,
		pluginClient: pluginClient,
		taskConfig:   cfg,
		procState:    drivers.TaskStateRunning,
		startedAt:    time.Now().Round(time.Millisecond),
		logger:       d.logger,
		doneCh:       make(chan struct{}),
	}
	state := TaskState{
		ReattachConfig: pstructs.ReattachConfigFromGoPlugin(pluginClient.ReattachConfig()),
		Pid:            ps.Pid,
		TaskConfig:     cfg,
		StartedAt:      h.startedAt,
	}
	if err := handle.SetDriverState(&state); err != nil {
		_ = execImpl.Shutdown("", 0)
		pluginClient.Kill()
		return nil, nil, fmt.Errorf("failed to set driver state: %v", err)
	}
	d.tasks.Set(cfg.ID, h)
	go h.run()
	return handle, nil, nil
}

func (d *Driver) WaitTask(ctx context.Context, taskID string) (<-chan *drivers.ExitResult, error) {
	handle, ok := d.tasks.Get(taskID)
	if !ok {
		return nil, drivers.ErrTaskNotFound
	}
	ch := make(chan *drivers.ExitResult)
	go d.handleWait(ctx, handle, ch)
	return ch, nil
}

// handleWait reports the pool's exit once the handle's own wait on the
// executor (run) has recorded it. It does not make a second Wait call on the
// executor: StopTask kills the executor as soon as run has returned, and a
// second in-flight Wait would then end with the executor's EOF instead of
// the pool's exit status.
func (d *Driver) handleWait(ctx context.Context, handle *taskHandle, ch chan *drivers.ExitResult) {
	defer close(ch)
	select {
	case <-ctx.Done():
		return
	case <-d.ctx.Done():
		return
	case <-handle.doneCh:
	}
	result := handle.exitSnapshot()
	select {
	case <-ctx.Done():
	case <-d.ctx.Done():
	case ch <- result:
	}
}

// StopTask sends the kill signal (SIGINT unless the job says otherwise):
// the pool stops taking calls and drains those in flight. After timeout
// (the task's kill_timeout) the executor kills it.
func (d *Driver) StopTask(taskID string, timeout time.Duration, signal string) error {
	handle, ok := d.tasks.Get(taskID)
	if !ok {
		return drivers.ErrTaskNotFound
	}
	if signal == "" {
		signal = "SIGINT"
	}
	if err := handle.exec.Shutdown(signal, timeout); err != nil {
		if handle.pluginClient.Exited() {
			return nil
		}
		return fmt.Errorf("executor Shutdown failed: %v", err)
	}
	<-handle.doneCh
	handle.pluginClient.Kill()
	return nil
}

func (d *Driver) DestroyTask(taskID string, force bool) error {
	handle, ok := d.tasks.Get(taskID)
	if !ok {
		return drivers.ErrTaskNotFound
	}
	if handle.IsRunning() && !force {
		return fmt.Errorf("cannot destroy running task")
	}
	if !handle.pluginClient.Exited() {
		if err := handle.exec.Shutdown("", 0); err != nil {
			handle.logger.Error("destroying executor failed", "error", err)
		}
		handle.pluginClient.Kill()
	}
	d.tasks.Delete(taskID)
	return nil
}

func (d *Driver) InspectTask(taskID string) (*drivers.TaskStatus, error) {
	handle, ok := d.tasks.Get(taskID)
	if !ok {
		return nil, drivers.ErrTaskNotFound
	}
	return handle.TaskStatus(), nil
}

// TaskStats reports the CPU and memory of the pool's whole process tree:
// the pool and every worker it started.
func (d *Driver) TaskStats(ctx context.Context, taskID string, interval time.Duration) (<-chan *drivers.TaskResourceUsage, error) {
	handle, ok := d.tasks.Get(taskID)
	if !ok {
		return nil, drivers.ErrTaskNotFound
	}
	return handle.exec.Stats(ctx, interval)
}

func (d *Driver) TaskEvents(ctx context.Context) (<-chan *drivers.TaskEvent, error) {
	return d.eventer.TaskEvents(ctx)
}

func (d *Driver) SignalTask(taskID string, signal string) error {
	handle, ok := d.tasks.Get(taskID)
	if !ok {
		return drivers.ErrTaskNotFound
	}
	sig := os.Interrupt
	if s, ok := signals.SignalLookup[signal]; ok {
		sig = s
	} else {
		d.logger.Warn("unknown signal to send to task, using SIGINT instead", "signal", signal, "task_id", handle.taskConfig.ID)
	}
	return handle.exec.Signal(sig)
}

func (d *Driver) ExecTask(taskID string, cmd []string, timeout time.Duration) (*drivers.ExecTaskResult, error) {
	return nil, fmt.Errorf("the butter driver does not support exec into a pool")
}

// jdkRelease reads the version of the JDK whose javac is on PATH from its
// release file (JAVA_VERSION="17.0.15"), so that the fingerprint, every
// fingerprintPeriod, does not start a JVM (javac -version takes about
// 0.4 s of CPU).
func jdkRelease() (string, bool) {
	javac, err := exec.LookPath("javac")
	if err != nil {
		return "", false
	}
	if real, err := filepath.EvalSymlinks(javac); err == nil {
		javac = real
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(javac)), "release"))
	if err != nil {
		return "", false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "JAVA_VERSION="); ok {
			return strings.Trim(strings.TrimSpace(v), `"`), true
		}
	}
	return "", false
}
