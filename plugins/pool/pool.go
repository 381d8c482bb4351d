// Package pool hosts the functions of one Nomad task: every function with
// its instances, started on demand up to max and retired when idle down to
// min (which may be 0), behind an invoke endpoint that streams request and
// response bodies.
//
// The same code runs under the butter task driver (`butter pool`), in
// `butter invoke --local` and in `butter dev`.
//
// Contract: a call holds one unit of an instance's concurrency from the
// moment it is admitted until its result. A call never waits longer than
// its deadline; past it the caller gets a Timeout and a worker that does
// not stop is killed and replaced. An instance that dies fails the calls
// it was running (their input is spent, so they are not retried) and is
// replaced; its neighbours are untouched.
//
// A function with a state block gets the state of its call's key with each
// call and returns the new one with its result; calls of one key run one
// at a time, and with Kafka the state is kept in a changelog topic
// (state.go, docs/state.md).
//
// Neighbours: package runtime runs the instances; package driver starts
// pools under Nomad; cmd/butter wires the flags.
package pool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	goruntime "runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/butterfn/butter/plugins/runtime"
	"github.com/butterfn/butter/sandbox"
	"github.com/butterfn/butter/sdk/go/proto"
	"github.com/butterfn/butter/secrets"
	"github.com/butterfn/butter/telemetry"
	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Options configure a Pool. The zero value of each is documented.
type options struct {
	logger      hclog.Logger
	idleTimeout time.Duration
	stopGrace   time.Duration
	sdks        *runtime.SDKs
	metrics     *Metrics
	runtimes    map[string]runtime.Runtime
	limits      *runtime.Limits
	// sessionTimeout is the stream consumers' group session timeout.
	sessionTimeout time.Duration
	secrets        secrets.Source
	sandbox        *sandbox.Config
	// noPreflight skips loading the functions whose min is 0 at Start,
	// except those in preflightOnly.
	noPreflight   bool
	preflightOnly map[string]bool
	// startProgress gets Start's progress (WithStartProgress).
	startProgress func(StartProgress)
	// sandboxAvailable is sandbox.Available, replaced by tests.
	sandboxAvailable func() error
	// capture keeps what functions emit instead of Kafka (capture.go).
	capture *Capture
	// breaker configures the context calls' circuit breakers (calls.go).
	breaker breakerOptions
	// instanceID names this pool among those running the same functions,
	// stable across its restarts and replacements (WithInstanceID): stream
	// consumers are static group members with it (static.go), and
	// exactly-once triggers derive their transactional IDs from it
	// (transact.go).
	instanceID string
}

// maxProcs is the process limit of one instance: room for a runtime's
// threads-as-tasks and a few children, not for a fork bomb.
const maxProcs = 256

// Option configures New.
type Option func(*options)

// WithLogger sets the logger. The default discards.
func WithLogger(l hclog.Logger) Option { return func(o *options) { o.logger = l } }

// WithIdleTimeout sets how long an instance above min may stay idle
// before it is retired. The default is 30s.
func WithIdleTimeout(d time.Duration) Option { return func(o *options) { o.idleTimeout = d } }

// WithStopGrace bounds a drain: how long in-flight calls may take to
// finish when the pool stops. The default is 10s.
func WithStopGrace(d time.Duration) Option { return func(o *options) { o.stopGrace = d } }

// WithSDKs tells process runtimes where the language SDKs are.
func WithSDKs(s *runtime.SDKs) Option { return func(o *options) { o.sdks = s } }

// WithMetrics records the pool's metrics in m.
func WithMetrics(m *Metrics) Option { return func(o *options) { o.metrics = m } }

// WithLimits applies per-instance memory and process limits through l.
// Without it, instances run without those limits.
func WithLimits(l *runtime.Limits) Option { return func(o *options) { o.limits = l } }

// WithSessionTimeout sets the stream consumers' group session timeout: how
// long a crashed pool keeps its partitions before the others take them
// over. The default is 10s; Kafka brokers refuse values below their
// group.min.session.timeout.ms (6s by default).
func WithSessionTimeout(d time.Duration) Option { return func(o *options) { o.sessionTimeout = d } }

// StartProgress is how far Start is: Loaded of Total functions have
// loaded (their first instances started, or their preflight passed or
// failed), and Pending are those still loading, by name. A function that
// builds (go, java), installs or starts a runtime takes seconds the first
// time: the CLI shows what it waits for.
type StartProgress struct {
	Loaded, Total int
	Pending       []string
}

// WithStartProgress calls f as Start begins and each time a function has
// loaded, never concurrently. Default: no reports.
func WithStartProgress(f func(StartProgress)) Option {
	return func(o *options) { o.startProgress = f }
}

// WithSecrets sets where the values of the functions' secrets come from.
// A pool hosting a function with secrets needs it.
func WithSecrets(s secrets.Source) Option { return func(o *options) { o.secrets = s } }

// WithSandbox confines every instance (package sandbox) but those of a
// function with sandbox = false, so that no function reads another's
// files, environment or secrets, or the task's Vault token. Each
// function's instances also lose the other functions' bundles. A pool
// hosting a function with secrets refuses to start without it, or where
// the kernel cannot confine; any other pool then starts unconfined and
// says so (Warnings).
func WithSandbox(c sandbox.Config) Option { return func(o *options) { o.sandbox = &c } }

// WithPreflight sets whether Start loads every function, starting (and
// stopping again) one instance of each whose min is 0, so that a function
// that cannot load is failed before the pool serves (load.go). The
// default is on; `butter invoke -local`, which runs only the functions it
// is asked for, turns it off.
func WithPreflight(on bool) Option { return func(o *options) { o.noPreflight = !on } }

// WithPreflightOnly loads at Start only the named functions (and those
// with a minimum), as `butter invoke -local` does for the functions of
// its pipeline: a Go function is built, and a function that cannot load
// fails before any input is read, rather than within a call's deadline.
func WithPreflightOnly(functions ...string) Option {
	return func(o *options) {
		o.noPreflight = true
		o.preflightOnly = map[string]bool{}
		for _, f := range functions {
			o.preflightOnly[f] = true
		}
	}
}

// WithRuntime replaces the runtime used for a runtime name; tests use it
// to inject an in-memory runtime.
func WithRuntime(name string, r runtime.Runtime) Option {
	return func(o *options) { o.runtimes[name] = r }
}

// Pool hosts a set of functions.
type Pool struct {
	cfg  *Config
	opts options
	fns  map[string]*fnPool
	// randomID stands for a missing instance ID in transactional IDs.
	randomID     string
	randomIDOnce sync.Once

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	streamCancel context.CancelFunc
	// sources are the running sources (sources.go), stopped by Close.
	sources []source
	// producer sends what functions emit from HTTP calls; nil until
	// StartStreams connects the pool to Kafka.
	producer *kgo.Client
	streamWG sync.WaitGroup

	holds holder // of the invoke endpoint's held outputs (http.go)

	// warnings are what the pool cannot enforce, set by New (Warnings).
	warnings []string

	// schemas are the functions' JSON Schemas, loaded by New; nothing
	// checks events against them yet (issue 16).
	schemas *schemaSet

	// calls answers the functions' context calls "call" (calls.go).
	calls *callers

	// shipper sends the functions' log lines to the project's log topic
	// once StartStreams has connected the pool to Kafka (logship.go);
	// logStop flushes and closes it.
	shipper atomic.Pointer[logShipper]
	logStop func()
}

// ErrUnknownFunction is returned by Invoke for a function the pool does
// not host.
var ErrUnknownFunction = errors.New("unknown function")

// errStopping is a call's error once the pool is closing.
var errStopping = errors.New("the pool is stopping")

// errAbandoned marks a start given up because its context ended.
var errAbandoned = errors.New("the start was abandoned")

// New prepares a pool. Start starts it.
func New(cfg *Config, logs func(function string) io.Writer, opts ...Option) (*Pool, error) {
	o := options{sandboxAvailable: sandbox.Available, logger: hclog.NewNullLogger(), idleTimeout: 30 * time.Second, stopGrace: 10 * time.Second, sessionTimeout: 10 * time.Second, runtimes: map[string]runtime.Runtime{}}
	for _, opt := range opts {
		opt(&o)
	}
	if o.metrics == nil {
		o.metrics = NewMetrics()
	}
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	schemas, err := cfg.loadSchemas()
	if err != nil {
		return nil, fmt.Errorf("pool config: %w", err)
	}
	p := &Pool{cfg: cfg, opts: o, fns: map[string]*fnPool{}, schemas: schemas}
	base, err := p.sandboxFor(cfg)
	if err != nil {
		return nil, err
	}
	p.limitWarnings(cfg)
	bundles := make([]string, 0, len(cfg.Functions))
	for _, fc := range cfg.Functions {
		bundles = append(bundles, fc.Bundle)
	}
	for _, fc := range cfg.Functions {
		rt := o.runtimes[fc.Runtime]
		if rt == nil {
			var err error
			if rt, err = runtime.For(fc.Runtime, o.sdks); err != nil {
				// This function fails; its neighbours serve (load.go).
				o.logger.Error("function cannot run here", "function", fc.Name, "error", err)
				rt = failedRuntime{err}
			}
		}
		timeout := duration(fc.Timeout)
		var lw io.Writer = io.Discard
		if logs != nil {
			lw = logs(fc.Name)
		}
		lw = &fnLogs{w: lw, p: p, fn: fc.Name}
		f := &fnPool{
			pool: p,
			cfg:  fc,
			rt:   rt,
			fn: &runtime.Function{
				Name: fc.Name, Runtime: fc.Runtime, Dir: fc.Bundle, Handler: fc.Handler,
				Command: fc.Command, Env: fc.Env, Concurrency: max(fc.Concurrency, 1),
				MaxOpenFiles: 1024, MemoryMiB: fc.Memory, MaxProcs: maxProcs, Limits: o.limits, Logs: lw,
				Sandbox: confineFunction(base, fc, bundles),
				Options: fc.Options, ExecMode: fc.ExecMode,
			},
			timeout:   timeout,
			log:       o.logger.Named(fc.Name),
			wake:      make(chan struct{}),
			spanNames: newSpanNames(fc.Name),
		}
		if len(fc.Secrets) > 0 {
			vals, err := o.secrets.Values(fc.Name, fc.Secrets)
			if err != nil {
				return nil, err
			}
			f.fn = f.withSecrets(vals)
			f.secretVals = vals
		}
		if fc.Executions != nil {
			if f.exec, err = newExecLog(fc.Executions); err != nil {
				return nil, fmt.Errorf("function %s: %w", fc.Name, err)
			}
		}
		p.fns[fc.Name] = f
		if fc.State != nil {
			p.fns[fc.Name].state = newStateStore(fc.Name, fc.State, o.logger.Named(fc.Name))
			_, isProc := rt.(*runtime.Process)
			if _, isWasm := rt.(runtime.Wasm); !isProc && !isWasm {
				o.logger.Warn("only the node, python, go and wasm runtimes carry state: this function never sees its state", "function", fc.Name, "runtime", fc.Runtime)
			}
		}
	}
	p.calls = newCallers(p)
	return p, nil
}

// sandboxFor checks the pool's sandbox and returns the confinement its
// instances share (nil: none), noting in p.warnings what is not confined
// and why. Every instance is confined when the pool has a sandbox
// (WithSandbox) and the kernel has Landlock, but those of a function
// with sandbox = false. A pool hosting a function with secrets refuses
// to start without that, or with an unconfined function; any other pool
// starts, unconfined, and says so in its log and in its health and
// functions answers (Warnings).
func (p *Pool) sandboxFor(cfg *Config) (*sandbox.Config, error) {
	o := p.opts
	var unconfined, all []string
	for _, fc := range cfg.Functions {
		all = append(all, fc.Name)
		if fc.Unconfined {
			unconfined = append(unconfined, fc.Name)
		}
	}
	if withSecrets := cfg.withSecrets(); len(withSecrets) > 0 {
		if o.secrets == nil {
			return nil, fmt.Errorf("functions %s declare secrets, and this pool has no source for them", strings.Join(withSecrets, ", "))
		}
		if o.sandbox == nil {
			return nil, fmt.Errorf("functions %s declare secrets, and this pool does not confine its instances: their neighbours could read them", strings.Join(withSecrets, ", "))
		}
		if err := o.sandboxAvailable(); err != nil {
			return nil, fmt.Errorf("functions %s declare secrets, and this pool cannot keep them from their neighbours: %w", strings.Join(withSecrets, ", "), err)
		}
		if len(unconfined) > 0 {
			return nil, fmt.Errorf("functions %s declare secrets, and functions %s in the same pool have sandbox = false, so they could read them: remove sandbox = false, or move them to another pool", strings.Join(withSecrets, ", "), strings.Join(unconfined, ", "))
		}
		return o.sandbox, nil
	}
	var why string
	if o.sandbox == nil {
		why = "this pool was started without a sandbox"
	} else if err := o.sandboxAvailable(); err != nil {
		why = err.Error()
	}
	if why != "" {
		w := "the instances of every function in this pool run unconfined, each can read its neighbours' files and /proc/<pid>/environ: " + why
		o.logger.Error("SANDBOX OFF: "+w, "functions", strings.Join(all, ", "))
		p.warnings = append(p.warnings, w)
		return nil, nil
	}
	for _, name := range unconfined {
		w := fmt.Sprintf("function %s runs unconfined (sandbox = false in its spec): it can read its neighbours' files and /proc/<pid>/environ", name)
		o.logger.Warn(w)
		p.warnings = append(p.warnings, w)
	}
	return o.sandbox, nil
}

// limitWarnings notes in p.warnings, and logs, the per-instance limits
// the pool's limiter (WithLimits) cannot enforce, when a function asks
// for one (memory, or the process limit every instance gets).
func (p *Pool) limitWarnings(cfg *Config) {
	if p.opts.limits == nil || len(cfg.Functions) == 0 {
		return
	}
	for _, off := range p.opts.limits.Off() {
		w := "per-instance " + off
		p.opts.logger.Error("LIMITS OFF: "+w, "cgroup_version", p.opts.limits.Version())
		p.warnings = append(p.warnings, w)
	}
}

// confineFunction is the confinement of fc's instances: the pool's, minus
// the other functions' bundles, but fc's own; nil when base is nil or fc
// has sandbox = false.
func confineFunction(base *sandbox.Config, fc FunctionConfig, bundles []string) *sandbox.Config {
	if base == nil || fc.Unconfined {
		return nil
	}
	c := sandbox.ForFunction(*base, fc.Bundle, bundles)
	return &c
}

// Warnings says what the pool cannot enforce (confinement, per-instance
// limits), one sentence each; none when every instance runs confined and
// limited. The health and functions answers carry them, and the pool
// logs them at start.
func (p *Pool) Warnings() []string { return append([]string{}, p.warnings...) }

// Start loads every function and starts the idle reaper: it starts each
// function's minimum instances, and one instance of a function whose min
// is 0, stopped again at once (a preflight, load.go), so that a function
// that cannot load is known failed before the pool serves. Functions
// start in parallel, at most 4 × GOMAXPROCS at a time (a worker's start
// is mostly waiting for its HELLO), each function's own instances one
// after the other. It returns a *LoadError naming every function that
// could not start, with its error; the pool keeps running either way,
// serving the others, and answers calls to a failed function with an
// Unavailable error until a retry starts it.
func (p *Pool) Start(ctx context.Context) error {
	p.ctx, p.cancel = context.WithCancel(context.Background())
	names := p.Functions()
	errs := make([]error, len(names))
	sem := make(chan struct{}, 4*goruntime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	// pending are the functions still loading, for WithStartProgress.
	var progressMu sync.Mutex
	pending := map[string]bool{}
	loads := func(name string) bool {
		return p.fns[name].cfg.MinInstances > 0 || !p.opts.noPreflight || p.opts.preflightOnly[name]
	}
	for _, name := range names {
		if loads(name) {
			pending[name] = true
		}
	}
	total := len(pending)
	report := func(done string) {
		if p.opts.startProgress == nil {
			return
		}
		progressMu.Lock()
		defer progressMu.Unlock()
		delete(pending, done)
		p.opts.startProgress(StartProgress{Loaded: total - len(pending), Total: total, Pending: slices.Sorted(maps.Keys(pending))})
	}
	report("")
	for i, name := range names {
		f := p.fns[name]
		if !loads(name) {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done(); report(name) }()
			if f.cfg.MinInstances == 0 {
				errs[i] = f.preflight(ctx)
				return
			}
			for range f.cfg.MinInstances {
				if _, err := f.startInstance(ctx, false); err != nil && errs[i] == nil {
					errs[i] = err
				}
			}
		}()
	}
	wg.Wait()
	p.wg.Add(1)
	go p.reap()
	failed := &LoadError{Functions: map[string]error{}}
	for i, err := range errs {
		if err != nil {
			failed.Functions[names[i]] = err
		}
	}
	if len(failed.Functions) > 0 {
		return failed
	}
	return nil
}

// Functions lists the hosted functions by name.
func (p *Pool) Functions() []string {
	names := make([]string, 0, len(p.fns))
	for n := range p.fns {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Function returns a hosted function's config.
func (p *Pool) Function(name string) (FunctionConfig, bool) {
	f, ok := p.fns[name]
	if !ok {
		return FunctionConfig{}, false
	}
	return f.cfg, true
}

// Call is one invocation request.
type Call struct {
	// Deadline, if set and earlier than the function's timeout, bounds the
	// call.
	Deadline time.Time
	Options  map[string]string
	Meta     map[string]string
	Input    io.Reader
	Output   io.Writer
	Calls    runtime.CallHandler
	// StateKey is the state key of a call of a function with state when
	// its input has no key field (docs/state.md): the record key of a
	// stream event, the Butter-State-Key header of an HTTP call.
	StateKey string
	// Head, for an HTTP call, gets the status and headers the function
	// set (runtime.Invocation.Head); nil for other events.
	Head func(proto.HeadMsg)
	// stream is the topic of a stream-triggered call's event: its
	// trigger's schema applies to the input (checkInput).
	stream string
	// txn, for an event of an exactly-once trigger, holds the state
	// changes of the event's transaction (transact.go).
	txn *stateTxn
	// exec records the call in its function's execution log, nil when
	// it has none (executions.go).
	exec *execRec
}

// Invoke runs one call of a function. It returns a *proto.Error for typed
// failures (Timeout, Exception, Unavailable when no instance can start,
// ...), a *SchemaError for an input or output that fails its JSON Schema
// (schemas.go), ErrUnknownFunction, or an error saying the instance died.
func (p *Pool) Invoke(ctx context.Context, function string, c *Call) error {
	f, ok := p.fns[function]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownFunction, function)
	}
	if err := p.checkInput(f, c); err != nil {
		// Not run: an error, but no invocation.
		p.opts.metrics.refused(function, proto.PreconditionFailed)
		return err
	}
	deadline := time.Now().Add(f.timeout)
	if !c.Deadline.IsZero() && c.Deadline.Before(deadline) {
		deadline = c.Deadline
	}
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	start := time.Now()
	rec := p.beginExec(f, c)
	var err error
	if f.state != nil {
		err = f.invokeStateful(ctx, dctx, c, deadline)
	} else {
		_, err = f.invoke(dctx, c, deadline, nil)
	}
	p.opts.metrics.observe(function, time.Since(start), err)
	p.endExec(f, c, rec, err)
	return err
}

// Close drains the pool: new calls are refused, calls in flight get the
// stop grace to finish, then every instance is stopped.
func (p *Pool) Close() {
	// Sources first (their last message produced before the producer
	// closes), then streams: their batches in flight finish and are
	// committed while the instances still run.
	for _, s := range p.sources {
		s.Close()
	}
	p.sources = nil
	if p.streamCancel != nil {
		p.streamCancel()
	}
	p.streamWG.Wait()
	if p.producer != nil {
		p.producer.Close()
	}
	if p.cancel != nil {
		p.cancel()
	}
	var wg sync.WaitGroup
	for _, f := range p.fns {
		wg.Add(1)
		go func(f *fnPool) {
			defer wg.Done()
			f.stopAll(p.opts.stopGrace)
		}(f)
	}
	wg.Wait()
	// No context call is in flight any more.
	p.calls.close()
	telemetry.Flush() // the spans of the last calls
	if p.logStop != nil {
		p.logStop() // the instances' last lines included
	}
	p.wg.Wait() // the reaper and the instance watchers
	for _, f := range p.fns {
		if f.state != nil {
			f.state.close()
		}
	}
}

func (p *Pool) reap() {
	defer p.wg.Done()
	t := time.NewTicker(min(max(p.opts.idleTimeout/4, 10*time.Millisecond), time.Second))
	defer t.Stop()
	var swept time.Time
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
			sweep := time.Since(swept) > time.Minute
			if sweep {
				swept = time.Now()
			}
			for _, f := range p.fns {
				f.retireIdle(p.opts.idleTimeout)
				f.restoreMin()
				if sweep && f.state != nil {
					f.state.sweep()
				}
			}
		}
	}
}

// fnPool holds one function's instances.
type fnPool struct {
	pool      *Pool
	spanNames spanNames
	cfg       FunctionConfig
	exec      *execLog // nil: no execution log
	rt        runtime.Runtime
	fn        *runtime.Function
	timeout   time.Duration
	log       hclog.Logger
	state     *stateStore // nil: no state block
	// noBatches is set once an instance could not run batches: its
	// worker speaks protocol 1 (invokeBatch).
	noBatches atomic.Bool

	mu        sync.Mutex
	instances []*slot
	starting  int
	stopping  bool
	wake      chan struct{} // closed and replaced when capacity frees up
	// startErr is the last start failure, cleared by a successful start;
	// with fewer than min instances it makes the pool unhealthy.
	startErr  error
	lastStart time.Time
	restoring bool
	// prewarming counts the spare instances being started (keepSpare);
	// lastCall is when a call last claimed an instance.
	prewarming int
	lastCall   time.Time
	// secretVals are the secret values the current instances run with.
	secretVals map[string]string
	// gen counts the secret rotations: instances of an older generation
	// run old values, take no new calls and retire once idle.
	gen int
}

type slot struct {
	inst     runtime.Instance
	inflight int
	lastUsed time.Time
	dead     bool
	// gone: a call found the instance exited (runtime.ErrNotSent); no
	// call goes to it any more, and watch removes it.
	gone bool
	// gen is the generation of secrets the instance runs with (fnPool.gen);
	// one above the pool's is being started by a rotation.
	gen int
	// pid is the instance's pid as its calls' spans have it.
	pid attribute.KeyValue
}

// acquire returns an instance with spare concurrency, starting one when
// all are busy and max allows, or waiting for one to free up.
func (f *fnPool) acquire(ctx context.Context) (*slot, error) {
	conc := max(f.cfg.Concurrency, 1)
	for {
		f.mu.Lock()
		if f.stopping {
			f.mu.Unlock()
			return nil, errStopping
		}
		var best *slot
		live := 0
		for _, s := range f.instances {
			if s.dead || s.gen != f.gen {
				continue
			}
			live++
			if !s.gone && s.inflight < conc && (best == nil || s.inflight < best.inflight) {
				best = s
			}
		}
		if best != nil {
			best.inflight++
			f.pool.opts.metrics.inflight.WithLabelValues(f.cfg.Name).Inc()
			if f.cfg.SpareInstances > 0 {
				f.lastCall = time.Now()
				f.keepSpare()
			}
			f.mu.Unlock()
			return best, nil
		}
		if live == 0 && f.starting == 0 && f.startErr != nil && time.Since(f.lastStart) < minRetry {
			// The last start failed just now: answer at once rather
			// than start (and fail) again for every call.
			err := f.startErr
			f.mu.Unlock()
			return nil, f.unavailable(err)
		}
		if live+f.starting+f.prewarming < f.cfg.MaxInstances {
			f.mu.Unlock()
			_, span := childSpan(ctx, "start instance", attribute.String("butter.function", f.cfg.Name))
			s, err := f.startInstance(ctx, true)
			endSpan(span, err)
			if err != nil {
				switch {
				case errors.Is(err, errStopping):
					return nil, err
				case errors.Is(err, errAbandoned):
					return nil, &proto.Error{Type: proto.Timeout, Message: fmt.Sprintf("the deadline passed while an instance of %s started", f.cfg.Name)}
				}
				return nil, f.unavailable(err)
			}
			_ = s // the new instance is in f.instances; loop to claim a unit
			continue
		}
		wake := f.wake
		f.mu.Unlock()
		queued := f.pool.opts.metrics.queued.WithLabelValues(f.cfg.Name)
		queued.Inc()
		trace.SpanFromContext(ctx).AddEvent("queued: every instance busy")
		select {
		case <-wake:
			queued.Dec()
		case <-ctx.Done():
			queued.Dec()
			return nil, &proto.Error{Type: proto.Timeout, Message: fmt.Sprintf("all %d instances of %s stayed busy until the deadline", f.cfg.MaxInstances, f.cfg.Name)}
		}
	}
}

func (f *fnPool) release(s *slot) {
	f.mu.Lock()
	s.inflight--
	s.lastUsed = time.Now()
	f.pool.opts.metrics.inflight.WithLabelValues(f.cfg.Name).Dec()
	f.signal()
	f.mu.Unlock()
}

// signal wakes every waiter; f.mu must be held.
func (f *fnPool) signal() {
	close(f.wake)
	f.wake = make(chan struct{})
}

func (f *fnPool) startInstance(ctx context.Context, cold bool) (*slot, error) {
	f.mu.Lock()
	fn, gen := f.fn, f.gen
	f.mu.Unlock()
	return f.startGen(ctx, fn, gen, cold)
}

// keepSpare starts instances in the background until SpareInstances
// have no call in flight (counting those starting for it), within
// MaxInstances; f.mu must be held. A spare is an instance with no call
// at all, whatever the concurrency: the next burst's first calls each
// find one ready. After a failed start it waits minRetry, so that a
// function that cannot start is not started again on every call.
func (f *fnPool) keepSpare() {
	if f.stopping || (f.startErr != nil && time.Since(f.lastStart) < minRetry) {
		return
	}
	live, idle := 0, 0
	for _, s := range f.instances {
		if s.dead || s.gen != f.gen {
			continue
		}
		live++
		if !s.gone && s.inflight == 0 {
			idle++
		}
	}
	need := min(f.cfg.SpareInstances-idle-f.prewarming, f.cfg.MaxInstances-live-f.starting-f.prewarming)
	for range max(need, 0) {
		f.starting++
		f.prewarming++
		fn, gen := f.fn, f.gen
		f.pool.wg.Add(1)
		go func() {
			defer f.pool.wg.Done()
			_, _ = f.started(f.pool.ctx, fn, gen, false) // a failure is logged there
			f.mu.Lock()
			f.prewarming--
			f.mu.Unlock()
		}()
	}
}

// startGen starts an instance of fn, of secrets generation gen.
func (f *fnPool) startGen(ctx context.Context, fn *runtime.Function, gen int, cold bool) (*slot, error) {
	f.mu.Lock()
	f.starting++
	f.mu.Unlock()
	return f.started(ctx, fn, gen, cold)
}

// started starts an instance whose start f.starting already counts.
func (f *fnPool) started(ctx context.Context, fn *runtime.Function, gen int, cold bool) (*slot, error) {
	var inst runtime.Instance
	var err error
	if _, isExec := f.rt.(runtime.Exec); isExec {
		err = checkCommand(fn)
	}
	if err == nil {
		inst, err = f.rt.Start(ctx, fn)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.starting--
	if err != nil && ctx.Err() != nil {
		// Abandoned, not failed: the call that wanted the instance
		// reached its deadline (or went away) while it started, which
		// says nothing against the function.
		f.signal()
		f.log.Warn("instance start abandoned", "error", err)
		return nil, fmt.Errorf("%w: %w", errAbandoned, err)
	}
	f.lastStart = time.Now()
	if err != nil {
		f.startErr = err
		f.setFailed()
		f.signal()
		// A call that asked for the instance logs the failure with its
		// request id and the worker's output (errors.go); other starts
		// (min, restores) log it here.
		if cold {
			f.log.Debug("instance failed to start", "error", err)
		} else {
			f.log.Error("instance failed to start", "error", err)
		}
		return nil, err
	}
	if f.stopping {
		// The pool began to stop while this instance started: stopAll
		// has already taken its list, so stop this one here.
		f.mu.Unlock()
		_ = inst.Stop(0)
		f.mu.Lock()
		return nil, errStopping
	}
	f.startErr = nil
	s := &slot{inst: inst, lastUsed: time.Now(), gen: gen, pid: pidAttr(inst.Pid())}
	f.instances = append(f.instances, s)
	m := f.pool.opts.metrics
	m.instances.WithLabelValues(f.cfg.Name).Set(float64(len(f.instances)))
	f.setFailed()
	if cold {
		m.coldStarts.WithLabelValues(f.cfg.Name).Inc()
	}
	f.signal()
	f.pool.wg.Add(1)
	go f.watch(s)
	return s, nil
}

// watch removes an instance once it exits. An exit the pool did not ask
// for is a crash: it is counted, and min is restored.
func (f *fnPool) watch(s *slot) {
	defer f.pool.wg.Done()
	<-s.inst.Exited()
	f.mu.Lock()
	crashed := !s.dead
	s.dead = true
	f.remove(s)
	below := len(f.instances)+f.starting < f.cfg.MinInstances && !f.stopping
	f.signal()
	f.mu.Unlock()
	if crashed {
		f.pool.opts.metrics.restarts.WithLabelValues(f.cfg.Name).Inc()
		f.log.Warn("instance exited; replacing it", "pid", s.inst.Pid())
	}
	if below && f.pool.ctx.Err() == nil {
		if _, err := f.startInstance(f.pool.ctx, false); err != nil {
			f.log.Error("could not restore the minimum instances", "error", err)
		}
	}
}

// minRetry is how often the pool retries starting a function's minimum
// instances after a start failed.
const minRetry = 2 * time.Second

// restoreMin retries starting the minimum instances after a failure, at
// most every minRetry; a failed function whose min is 0 is retried for
// one instance, which then retires when idle.
func (f *fnPool) restoreMin() {
	f.mu.Lock()
	need := max(f.cfg.MinInstances, 1) - len(f.instances) - f.starting
	retry := need > 0 && !f.stopping && !f.restoring && f.startErr != nil && time.Since(f.lastStart) >= minRetry
	if retry {
		f.restoring = true
	}
	f.mu.Unlock()
	if retry {
		f.pool.wg.Add(1)
		go func() {
			defer f.pool.wg.Done()
			_, err := f.startInstance(f.pool.ctx, false)
			f.mu.Lock()
			f.restoring = false
			f.mu.Unlock()
			if err != nil {
				f.log.Error("could not restore the minimum instances", "error", err)
			}
		}()
	}
}

// unhealthy says why the function is failed, or "" when it is not; f.mu
// must be held. A function is failed when its last start failed and it
// runs fewer instances than its min, or none at all when its min is 0.
func (f *fnPool) unhealthyLocked() string {
	if f.startErr == nil || len(f.instances) >= max(f.cfg.MinInstances, 1) {
		return ""
	}
	// In one line: Nomad shows the check's output truncated, and the
	// pool's log has the whole error.
	if f.cfg.MinInstances == 0 {
		return "no instance could start: " + Summary(f.startErr)
	}
	return fmt.Sprintf("%d of %d minimum instances running; the last start failed: %s", len(f.instances), f.cfg.MinInstances, Summary(f.startErr))
}

func (f *fnPool) unhealthy() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.unhealthyLocked()
}

// setFailed sets the function's butter_function_failed gauge; f.mu must
// be held.
func (f *fnPool) setFailed() {
	v := 0.0
	if f.unhealthyLocked() != "" {
		v = 1
	}
	f.pool.opts.metrics.failed.WithLabelValues(f.cfg.Name).Set(v)
}

// Unhealthy lists, by function, why functions are failed: their last
// start failed, and they run fewer instances than their min (none, for a
// min of 0). An empty map means healthy: Nomad's health check (GET
// /v1/health) fails otherwise, so a revision whose functions cannot start
// fails its deployment, while the pool serves the other functions.
func (p *Pool) Unhealthy() map[string]string {
	out := map[string]string{}
	for name, f := range p.fns {
		if why := f.unhealthy(); why != "" {
			out[name] = why
		}
	}
	return out
}

// remove drops s from the instance list; f.mu must be held.
func (f *fnPool) remove(s *slot) {
	for i, x := range f.instances {
		if x == s {
			f.instances = append(f.instances[:i], f.instances[i+1:]...)
			break
		}
	}
	f.pool.opts.metrics.instances.WithLabelValues(f.cfg.Name).Set(float64(len(f.instances)))
	f.setFailed()
}

func (f *fnPool) retireIdle(idle time.Duration) {
	f.mu.Lock()
	var retire []*slot
	live := len(f.instances)
	for _, s := range f.instances {
		if s.gen < f.gen && !s.dead && s.inflight == 0 {
			s.dead = true
			retire = append(retire, s)
			live--
		}
	}
	// While the function is called, its spare instances stay, though
	// no call reaches them.
	keepIdle, idleLive := 0, 0
	if f.cfg.SpareInstances > 0 && time.Since(f.lastCall) <= idle {
		keepIdle = f.cfg.SpareInstances
	}
	for _, s := range f.instances {
		if !s.dead && s.inflight == 0 {
			idleLive++
		}
	}
	for _, s := range f.instances {
		if live <= f.cfg.MinInstances || idleLive <= keepIdle {
			break
		}
		if !s.dead && s.inflight == 0 && time.Since(s.lastUsed) > idle {
			s.dead = true
			retire = append(retire, s)
			live--
			idleLive--
		}
	}
	f.mu.Unlock()
	for _, s := range retire {
		_ = s.inst.Stop(time.Second)
	}
}

func (f *fnPool) stopAll(grace time.Duration) {
	f.mu.Lock()
	f.stopping = true
	all := append([]*slot(nil), f.instances...)
	for _, s := range all {
		s.dead = true
	}
	f.signal()
	f.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Add(1)
		go func(s *slot) {
			defer wg.Done()
			_ = s.inst.Stop(grace)
		}(s)
	}
	wg.Wait()
}

// invoke runs a call on an instance, with st as its state, and returns
// the state change the function made.
func (f *fnPool) invoke(ctx context.Context, c *Call, deadline time.Time, st *proto.StateMsg) (*proto.StateMsg, error) {
	inv := &runtime.Invocation{
		Deadline: deadline, Options: f.options(c.Options), Meta: c.Meta,
		Input: c.Input, Output: c.Output, Calls: f.pool.calls.wrap(f, c.Calls), State: st, Head: c.Head,
	}
	// An output with a schema is held whole, and checked once the call
	// ends, before its state change is applied (invokeStateful): an
	// output that fails is neither produced nor followed by its state.
	var held *bytes.Buffer
	if f.pool.schemas.out[f.cfg.Name] != nil {
		held = new(bytes.Buffer)
		inv.Output = held
	}
	if err := f.send(ctx, inv); err != nil {
		// A failed call's held output is dropped: an output with a
		// schema is only ever given whole and checked.
		return nil, err
	}
	if held != nil {
		if se := f.pool.checkOutput(f, held.Bytes(), true, false); se != nil {
			return nil, se
		}
		if c.Output != nil && held.Len() > 0 {
			if _, err := c.Output.Write(held.Bytes()); err != nil {
				return nil, fmt.Errorf("writing the output of %s: %w", f.cfg.Name, err)
			}
		}
	}
	return inv.NewState, nil
}

// maxResends bounds how many times one call goes to another instance
// because the one it had reached had exited (send).
const maxResends = 3

// send runs inv on an instance. A call that never reached its instance
// (runtime.ErrNotSent: the instance exited between the pool's choosing it
// and the call's first frame) goes to another one, up to maxResends
// times: nothing ran, so for a stream event it is no attempt.
func (f *fnPool) send(ctx context.Context, inv *runtime.Invocation) error {
	for resent := 0; ; resent++ {
		s, err := f.acquire(ctx)
		if err != nil {
			return err
		}
		sctx, span := childSpan(ctx, f.spanNames.call, s.pid)
		meta := inv.Meta
		if span.IsRecording() {
			// The handler's span is the call's child.
			if _, ok := s.inst.(runtime.SpanRecorder); ok {
				inv.CallSpan = telemetry.Traceparent(span.SpanContext())
			} else {
				inv.Meta = spanMeta(meta, span)
			}
		}
		err = s.inst.Invoke(ctx, inv)
		inv.Meta, inv.CallSpan = meta, ""
		if span.IsRecording() {
			// The handler's span and the call's end are recorded
			// after the answer, not before it (telemetry.Later):
			// their timestamps are taken now.
			sm, end := inv.Span, time.Now()
			telemetry.Later(func() {
				f.handlerSpan(sctx, sm, err)
				endSpan(span, err, trace.WithTimestamp(end))
			})
		}
		inv.Span = nil
		if errors.Is(err, runtime.ErrNotSent) && resent < maxResends && ctx.Err() == nil {
			f.mu.Lock()
			s.gone = true
			f.mu.Unlock()
			f.release(s)
			f.log.Debug("a call reached an instance that had exited; sending it to another", "pid", s.inst.Pid(), "error", err)
			continue
		}
		f.release(s)
		return specified(err)
	}
}

// options merges a call's options over the function's.
func (f *fnPool) options(call map[string]string) map[string]string {
	if len(f.cfg.Options) == 0 {
		return call
	}
	merged := map[string]string{}
	for k, v := range f.cfg.Options {
		merged[k] = v
	}
	for k, v := range call {
		merged[k] = v
	}
	return merged
}

// invokeBatch runs a batch of events of a function without state on one
// instance (runtime.Batcher, docs/worker-protocol.md "Batches"), holding
// one unit of its concurrency, the whole batch bounded by the function's
// timeout. It returns each event's result, as Invoke would; an event that
// was not run fails with a proto.Skipped error. ok is false, and nothing
// ran, when the instance cannot run batches (its worker speaks protocol
// 1), none could be had, or the one had had exited before the batch
// reached it (runtime.ErrNotSent).
func (f *fnPool) invokeBatch(ctx context.Context, b *runtime.Batch) (res []runtime.Result, ok bool) {
	if f.noBatches.Load() {
		return nil, false
	}
	start := time.Now()
	b.Deadline = start.Add(f.timeout)
	dctx, cancel := context.WithDeadline(ctx, b.Deadline)
	defer cancel()
	s, err := f.acquire(dctx)
	if err != nil {
		return nil, false
	}
	defer f.release(s)
	bi, isB := s.inst.(runtime.Batcher)
	if !isB || !bi.Batches() {
		f.noBatches.Store(true)
		return nil, false
	}
	b.Calls = f.pool.calls.wrapBatch(f, b.Calls)
	res = bi.InvokeBatch(dctx, b)
	if len(res) > 0 && errors.Is(res[0].Err, runtime.ErrNotSent) {
		// The instance had exited: nothing ran, and the events are
		// handled as if no batch had been tried.
		f.mu.Lock()
		s.gone = true
		f.mu.Unlock()
		return nil, false
	}
	m := f.pool.opts.metrics
	m.batches.WithLabelValues(f.cfg.Name).Inc()
	for k := range res {
		res[k].Err = specified(res[k].Err)
	}
	ran := 0
	for _, r := range res {
		if !skipped(r.Err) {
			ran++
		}
	}
	if ran > 0 {
		m.observeBatch(f.cfg.Name, time.Since(start)/time.Duration(ran), res)
	}
	return res, true
}

// skipped reports whether err says an event of a batch was not run.
func skipped(err error) bool {
	if err == nil {
		// errors.As's target escapes: no allocation for the common case.
		return false
	}
	var pe *proto.Error
	return errors.As(err, &pe) && pe.Type == proto.Skipped
}

// withSecrets lists the functions that declare secrets.
func (c *Config) withSecrets() []string {
	var out []string
	for _, fc := range c.Functions {
		if len(fc.Secrets) > 0 {
			out = append(out, fc.Name)
		}
	}
	return out
}

// withSecrets returns a copy of the function's runtime description whose
// environment carries vals; f.mu must be held or f not yet shared.
func (f *fnPool) withSecrets(vals map[string]string) *runtime.Function {
	fn := *f.fn
	fn.Env = make(map[string]string, len(f.cfg.Env)+len(vals))
	maps.Copy(fn.Env, f.cfg.Env)
	maps.Copy(fn.Env, vals)
	return &fn
}

// ReloadSecrets reads the secrets of every function that declares any,
// and replaces the instances of each function whose values changed: new
// instances start with the new values, then the old ones take no new calls
// and stop once their calls in flight are done, so no call fails. Other
// functions' instances are untouched. A function whose new values cannot
// be read, or whose new instances do not start, keeps its old instances;
// the errors are returned together. `butter pool` calls it on SIGHUP,
// which Nomad sends when it re-renders a secret.
func (p *Pool) ReloadSecrets(ctx context.Context) error {
	var errs []error
	for _, name := range p.Functions() {
		f := p.fns[name]
		if len(f.cfg.Secrets) == 0 {
			continue
		}
		vals, err := p.opts.secrets.Values(name, f.cfg.Secrets)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		f.mu.Lock()
		same := maps.Equal(vals, f.secretVals)
		f.mu.Unlock()
		if same {
			continue
		}
		if err := f.rotate(ctx, vals); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// rotate moves the function to new secret values (see ReloadSecrets):
// the new generation's instances start first, without taking calls; then
// the generation switches, and the old instances retire once idle.
func (f *fnPool) rotate(ctx context.Context, vals map[string]string) error {
	f.mu.Lock()
	if f.stopping {
		f.mu.Unlock()
		return nil
	}
	fn, gen := f.withSecrets(vals), f.gen+1
	live := 0
	for _, s := range f.instances {
		if !s.dead && s.gen == f.gen {
			live++
		}
	}
	want := min(max(live, f.cfg.MinInstances), f.cfg.MaxInstances)
	f.mu.Unlock()
	started := 0
	var startErr error
	for range want {
		if _, err := f.startGen(ctx, fn, gen, false); err != nil {
			startErr = err
			continue
		}
		started++
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if want > 0 && started == 0 {
		// Keep serving with the old values rather than not at all.
		return fmt.Errorf("function %s: new instances with the changed secrets did not start, the old ones keep serving: %w", f.cfg.Name, startErr)
	}
	f.fn, f.secretVals, f.gen = fn, vals, gen
	f.signal()
	f.log.Info("secrets changed: instances replaced", "new", started, "retiring", live)
	return nil
}
