package runtime

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/butterfn/butter/sdk/go/proto"
	"github.com/butterfn/butter/wasmmod"
)

// Wasm runs WebAssembly modules (WASI preview 1) in the pool's own
// process on wazero: no process per instance or per call. A module is
// compiled once (to machine code, by wazero's compiler) and kept in a
// compilation cache on disk beside the Go builds (SDKs.BuildDir/wasm),
// so a pool that starts again, or another instance, does not compile it
// again. Each call instantiates the module afresh, runs its _start with
// the call's input on stdin and its stdout as the output, as exec does
// with a process; its stderr goes to the function's log. A trap, a
// non-zero exit or a module over its memory limit fails that call only
// (an Exception with the exit code or the trap, and the tail of stderr);
// the deadline stops the module where it runs (a Timeout). Memory per
// instance is the function's memory (64 KiB pages). Of the context API,
// log, emit, call (emit-and-await) and state are host functions (module
// "butter", below; the Go guest package is sdk/go/wasm); secrets are the
// function's environment, as for exec.
type Wasm struct {
	// SDKs locates the compilation cache (BuildDir); nil keeps it in
	// memory only.
	SDKs *SDKs
}

// wasmCaches are the compilation caches by directory, shared by every
// Wasm runtime of the process (wazero's cache is safe for concurrent use).
var wasmCaches sync.Map // dir -> wazero.CompilationCache

var memCache = wazero.NewCompilationCache()

func (w Wasm) cache() wazero.CompilationCache {
	if w.SDKs == nil || w.SDKs.BuildDir == "" {
		return memCache
	}
	dir := filepath.Join(w.SDKs.BuildDir, "wasm")
	if c, ok := wasmCaches.Load(dir); ok {
		return c.(wazero.CompilationCache)
	}
	c, err := wazero.NewCompilationCacheWithDir(dir)
	if err != nil {
		return memCache
	}
	actual, _ := wasmCaches.LoadOrStore(dir, c)
	return actual.(wazero.CompilationCache)
}

// WasmModule returns the module file of a wasm function: its handler, a
// path in its directory, or else the one .wasm file there.
func WasmModule(dir, handler string) (string, error) {
	if handler != "" {
		return filepath.Join(dir, filepath.FromSlash(handler)), nil
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "*.wasm"))
	switch len(matches) {
	case 1:
		return matches[0], nil
	case 0:
		return "", fmt.Errorf("no .wasm module in the function's bundle")
	}
	names := make([]string, len(matches))
	for i, m := range matches {
		names[i] = filepath.Base(m)
	}
	sort.Strings(names)
	return "", fmt.Errorf("%d .wasm modules in the function's bundle (%s): name one as its handler", len(names), strings.Join(names, ", "))
}

// Start compiles the function's module (from the cache when it was
// compiled before) into a runtime of its own, limited to the function's
// memory.
func (w Wasm) Start(ctx context.Context, fn *Function) (Instance, error) {
	file, err := WasmModule(fn.Dir, fn.Handler)
	if err != nil {
		return nil, fmt.Errorf("wasm function %s: %w", fn.Name, err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the server's path stays out of the caller's answer
		}
		return nil, fmt.Errorf("wasm function %s: read its module %s: %w", fn.Name, filepath.Base(file), err)
	}
	cfg := wazero.NewRuntimeConfig().WithCompilationCache(w.cache()).WithCloseOnContextDone(true)
	if fn.MemoryMiB > 0 {
		cfg = cfg.WithMemoryLimitPages(uint32(fn.MemoryMiB) * 16) // 64 KiB pages
	}
	rt := wazero.NewRuntimeWithConfig(context.WithoutCancel(ctx), cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		_ = rt.Close(context.Background())
		return nil, fmt.Errorf("wasm function %s: %w", fn.Name, err)
	}
	if err := instantiateHost(ctx, rt); err != nil {
		_ = rt.Close(context.Background())
		return nil, fmt.Errorf("wasm function %s: %w", fn.Name, err)
	}
	if err := wasmmod.Check(ctx, filepath.Base(file), b); err != nil {
		_ = rt.Close(context.Background())
		return nil, fmt.Errorf("wasm function %s: %w", fn.Name, err)
	}
	cm, err := rt.CompileModule(ctx, b)
	if err != nil {
		_ = rt.Close(context.Background())
		return nil, fmt.Errorf("wasm function %s: compile %s: %w", fn.Name, filepath.Base(file), err)
	}
	return &wasmInstance{fn: fn, rt: rt, cm: cm, exited: make(chan struct{})}, nil
}

type wasmInstance struct {
	fn *Function
	rt wazero.Runtime
	cm wazero.CompiledModule

	mu       sync.Mutex
	stopped  bool
	wg       sync.WaitGroup
	cancels  map[*context.CancelFunc]bool
	exited   chan struct{}
	stopOnce sync.Once
}

func (i *wasmInstance) Invoke(ctx context.Context, inv *Invocation) error {
	i.mu.Lock()
	if i.stopped {
		i.mu.Unlock()
		return errGone
	}
	i.wg.Add(1)
	ctx, cancel := context.WithCancel(ctx)
	if i.cancels == nil {
		i.cancels = map[*context.CancelFunc]bool{}
	}
	i.cancels[&cancel] = true
	i.mu.Unlock()
	defer func() {
		i.mu.Lock()
		delete(i.cancels, &cancel)
		i.mu.Unlock()
		cancel()
		i.wg.Done()
	}()

	info := callInfo(inv.Meta)
	stderrLog, flushStderr := attributedLines(i.fn.Logs, "stderr", func() CallInfo { return info })
	stderr := &tailBuffer{n: stderrTail, w: stderrLog}
	fatal := &fatalLine{w: stderr}
	env := requestEnv(inv.Meta)
	env["BUTTER_FUNCTION"] = i.fn.Name
	mc := wazero.NewModuleConfig().
		WithName(""). // anonymous: instantiated once per call, concurrently
		WithArgs(append([]string{i.fn.Name}, optionArgs(inv.Options)...)...).
		WithStdin(inv.Input).WithStdout(inv.Output).WithStderr(fatal).
		WithSysWalltime().WithSysNanotime().WithSysNanosleep().WithRandSource(rand.Reader)
	for _, kv := range environ(i.fn, env) {
		k, v, _ := strings.Cut(kv, "=")
		mc = mc.WithEnv(k, v)
	}
	wc := &wasmCall{calls: inv.Calls, state: inv.State}
	mod, err := i.rt.InstantiateModule(context.WithValue(ctx, wasmCallKey{}, wc), i.cm, mc)
	if mod != nil {
		_ = mod.Close(context.Background())
	}
	flushStderr()
	var exit *sys.ExitError
	if err == nil || errors.As(err, &exit) && exit.ExitCode() == 0 {
		if wc.changed {
			inv.NewState = wc.newState
		}
		return nil
	}
	if errors.As(err, &exit) {
		switch code := exit.ExitCode(); {
		case code == sys.ExitCodeDeadlineExceeded || errors.Is(ctx.Err(), context.DeadlineExceeded):
			return &proto.Error{Type: proto.Timeout, Message: fmt.Sprintf("%s did not finish before its deadline", i.fn.Name)}
		case code == sys.ExitCodeContextCanceled:
			// The caller went away, or Stop ended the call.
			if err := ctx.Err(); err != nil {
				return err
			}
			return errGone
		default:
			msg := fmt.Sprintf("%s exited with code %d", i.fn.Name, code)
			tail := stderr.String()
			if line := fatal.found; line != "" {
				msg += ": " + line
			} else if line := lastLine(tail); line != "" {
				msg += ": " + line
			}
			return &proto.Error{Type: proto.Exception, Message: msg, Detail: tail}
		}
	}
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &proto.Error{Type: proto.Timeout, Message: fmt.Sprintf("%s did not finish before its deadline", i.fn.Name)}
	}
	// A trap (unreachable, an access out of bounds, memory over the
	// limit): that call fails, the instance stays.
	return &proto.Error{Type: proto.Exception, Message: fmt.Sprintf("%s trapped: %v", i.fn.Name, err), Detail: stderr.String()}
}

// fatalLine passes a module's stderr on to w and keeps the first line
// that says why it failed: a Go runtime's "panic: ..." or "fatal error:
// ..." (a goroutine dump of any length follows, so the tail of stderr
// does not hold it), or a Rust "panicked at".
type fatalLine struct {
	w     io.Writer
	line  []byte // the line being written, up to 512 bytes
	found string
}

func (f *fatalLine) Write(p []byte) (int, error) {
	if f.found == "" {
		for _, c := range p {
			if c != '\n' {
				if len(f.line) < 512 {
					f.line = append(f.line, c)
				}
				continue
			}
			if l := string(f.line); strings.HasPrefix(l, "panic: ") || strings.HasPrefix(l, "fatal error: ") || strings.Contains(l, "panicked at") {
				f.found = l
				break
			}
			f.line = f.line[:0]
		}
	}
	return f.w.Write(p)
}

// lastLine is the last line of s that is not empty.
func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndexByte(s, '\n')+1:]
}

// Stop lets calls in flight finish for grace, then stops them where they
// run, and closes the runtime.
func (i *wasmInstance) Stop(grace time.Duration) error {
	i.mu.Lock()
	i.stopped = true
	i.mu.Unlock()
	done := make(chan struct{})
	go func() { i.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		i.mu.Lock()
		for c := range i.cancels {
			(*c)()
		}
		i.mu.Unlock()
		<-done
	}
	i.stopOnce.Do(func() {
		_ = i.cm.Close(context.Background())
		_ = i.rt.Close(context.Background())
		close(i.exited)
	})
	return nil
}

func (i *wasmInstance) Exited() <-chan struct{} { return i.exited }
func (i *wasmInstance) Pid() int                { return 0 }

// The host functions of the import module "butter" (docs/wasm.md, "The
// context API"): what a module calls to log and emit, answered by the
// call's CallHandler as a worker's CALL frames are. Each returns 0, or
// else 1 with the reason kept for last_error.

// wasmCall is what the host functions of one call reach through the
// context its module runs with.
type wasmCall struct {
	calls   CallHandler
	seq     uint64
	emits   int
	lastErr string
	// reply is the value of the last call that returned 0, for reply.
	reply []byte
	// state is the call's state (nil: the function has no state block);
	// changed is set once the module set or deleted it, and then
	// newState is the change.
	state    *proto.StateMsg
	changed  bool
	newState *proto.StateMsg
}

type wasmCallKey struct{}

func instantiateHost(ctx context.Context, rt wazero.Runtime) error {
	i32 := api.ValueTypeI32
	_, err := rt.NewHostModuleBuilder(wasmmod.HostModule).
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostLog), []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}).
		WithParameterNames("level_ptr", "level_len", "message_ptr", "message_len").Export("log").
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostEmit), []api.ValueType{i32, i32, i32, i32, i32, i32}, []api.ValueType{i32}).
		WithParameterNames("stream_ptr", "stream_len", "key_ptr", "key_len", "value_ptr", "value_len").Export("emit").
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostLastError), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("buf_ptr", "buf_len").Export("last_error").
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostCallTarget), []api.ValueType{i32, i32, i32, i32, i32}, []api.ValueType{i32}).
		WithParameterNames("target_ptr", "target_len", "value_ptr", "value_len", "timeout_ms").Export("call").
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostReply), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("buf_ptr", "buf_len").Export("reply").
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostStateGet), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("buf_ptr", "buf_len").Export("state_get").
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostStateKey), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("buf_ptr", "buf_len").Export("state_key").
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostStateSet), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("value_ptr", "value_len").Export("state_set").
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostStateDelete), []api.ValueType{}, []api.ValueType{i32}).
		Export("state_delete").
		Instantiate(ctx)
	return err
}

// hostCall runs op for the calling module: the call's context calls, its
// memory read at the pointers and lengths in stack.
func hostCall(ctx context.Context, mod api.Module, stack []uint64, op func(c *wasmCall, read func(i int) ([]byte, bool)) proto.ReplyMsg) {
	c, _ := ctx.Value(wasmCallKey{}).(*wasmCall)
	if c == nil {
		stack[0] = api.EncodeI32(1)
		return
	}
	read := func(i int) ([]byte, bool) {
		b, ok := mod.Memory().Read(api.DecodeU32(stack[2*i]), api.DecodeU32(stack[2*i+1]))
		return bytes.Clone(b), ok
	}
	var reply proto.ReplyMsg
	if c.calls == nil {
		reply = proto.ReplyMsg{Error: "this call takes no context calls"}
	} else {
		reply = op(c, read)
	}
	if reply.OK {
		stack[0] = api.EncodeI32(0)
		return
	}
	c.lastErr = reply.Error
	stack[0] = api.EncodeI32(1)
}

func outOfRange(what string) proto.ReplyMsg {
	return proto.ReplyMsg{Error: what + " is outside the module's memory"}
}

func hostLog(ctx context.Context, mod api.Module, stack []uint64) {
	hostCall(ctx, mod, stack, func(c *wasmCall, read func(int) ([]byte, bool)) proto.ReplyMsg {
		level, ok1 := read(0)
		msg, ok2 := read(1)
		if !ok1 || !ok2 {
			return outOfRange("log's level or message")
		}
		c.seq++
		return c.calls(ctx, proto.CallMsg{Seq: c.seq, Op: "log", Level: string(level), Message: string(msg)})
	})
}

func hostEmit(ctx context.Context, mod api.Module, stack []uint64) {
	hostCall(ctx, mod, stack, func(c *wasmCall, read func(int) ([]byte, bool)) proto.ReplyMsg {
		stream, ok1 := read(0)
		key, ok2 := read(1)
		value, ok3 := read(2)
		if !ok1 || !ok2 || !ok3 {
			return outOfRange("emit's stream, key or value")
		}
		c.seq++
		c.emits++
		return c.calls(ctx, proto.CallMsg{Seq: c.seq, Op: "emit", Number: c.emits, Stream: string(stream), Key: string(key), Value: value})
	})
}

// hostCallTarget emits a value to a function or stream and awaits its
// reply (ctx.call in the other SDKs: docs/worker-protocol.md, "call"),
// waiting at most timeout_ms (0: until the call's deadline). On success
// the reply is kept for reply; on failure last_error says
// "<type>: <message>" (the callee's error type, Timeout, CircuitOpen,
// ...), or the refusal alone when the call was never sent.
func hostCallTarget(ctx context.Context, mod api.Module, stack []uint64) {
	hostCall(ctx, mod, stack, func(c *wasmCall, read func(int) ([]byte, bool)) proto.ReplyMsg {
		target, ok1 := read(0)
		value, ok2 := read(1)
		if !ok1 || !ok2 {
			return outOfRange("call's target or value")
		}
		c.seq++
		r := c.calls(ctx, proto.CallMsg{Seq: c.seq, Op: "call", Target: string(target), Value: value, TimeoutMS: int64(api.DecodeU32(stack[4]))})
		if r.OK {
			c.reply = r.Value
		} else if r.ErrorType != "" {
			r.Error = r.ErrorType + ": " + r.Error
		}
		return r
	})
}

// hostReply copies the last successful call's reply into the module's
// buffer, as much as fits, and returns its whole length.
func hostReply(ctx context.Context, mod api.Module, stack []uint64) {
	c, _ := ctx.Value(wasmCallKey{}).(*wasmCall)
	var b []byte
	if c != nil {
		b = c.reply
	}
	n := min(uint32(len(b)), api.DecodeU32(stack[1]))
	mod.Memory().Write(api.DecodeU32(stack[0]), b[:n])
	stack[0] = api.EncodeU32(uint32(len(b)))
}

// copyOut copies b into the module's buffer at stack[0], stack[1] as far
// as it fits, and returns b's whole length in stack[0].
func copyOut(mod api.Module, stack []uint64, b []byte) {
	n := min(uint32(len(b)), api.DecodeU32(stack[1]))
	mod.Memory().Write(api.DecodeU32(stack[0]), b[:n])
	stack[0] = api.EncodeU32(uint32(len(b)))
}

// hostStateGet copies the call's current state (JSON, as the module
// last set it in this call, else as the call began) into the buffer and
// returns its length; -1 when there is none (no state yet for the key,
// deleted, or no state block).
func hostStateGet(ctx context.Context, mod api.Module, stack []uint64) {
	c, _ := ctx.Value(wasmCallKey{}).(*wasmCall)
	var cur json.RawMessage
	switch {
	case c == nil || c.state == nil:
	case c.changed:
		if !c.newState.Deleted {
			cur = c.newState.Value
		}
	default:
		cur = c.state.Value
	}
	if cur == nil {
		stack[0] = api.EncodeI32(-1)
		return
	}
	copyOut(mod, stack, cur)
}

// hostStateKey copies the call's state key into the buffer and returns
// its length (0: the call has none).
func hostStateKey(ctx context.Context, mod api.Module, stack []uint64) {
	c, _ := ctx.Value(wasmCallKey{}).(*wasmCall)
	var key string
	if c != nil && c.state != nil {
		key = c.state.Key
	}
	copyOut(mod, stack, []byte(key))
}

// stateChange checks that the call may change its state.
func stateChange(c *wasmCall) string {
	switch {
	case c == nil || c.state == nil:
		return "butter: state: the function has no state block (docs/state.md)"
	case c.state.Key == "":
		return fmt.Sprintf("butter: state: this call has no state key (the event has no %q field, no record key and no Butter-State-Key header)", c.state.Field)
	}
	return ""
}

// hostStateSet sets the call's state to a JSON value, applied when the
// call succeeds (as the other SDKs' ctx.state.set).
func hostStateSet(ctx context.Context, mod api.Module, stack []uint64) {
	c, _ := ctx.Value(wasmCallKey{}).(*wasmCall)
	if why := stateChange(c); why != "" {
		if c != nil {
			c.lastErr = why
		}
		stack[0] = api.EncodeI32(1)
		return
	}
	v, ok := mod.Memory().Read(api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	switch {
	case !ok:
		c.lastErr = "state_set's value is outside the module's memory"
	case !json.Valid(v):
		c.lastErr = "butter: state: the value is not JSON"
	default:
		c.changed, c.newState = true, &proto.StateMsg{Key: c.state.Key, Value: json.RawMessage(bytes.Clone(v))}
		stack[0] = api.EncodeI32(0)
		return
	}
	stack[0] = api.EncodeI32(1)
}

// hostStateDelete deletes the call's state when the call succeeds.
func hostStateDelete(ctx context.Context, mod api.Module, stack []uint64) {
	c, _ := ctx.Value(wasmCallKey{}).(*wasmCall)
	if why := stateChange(c); why != "" {
		if c != nil {
			c.lastErr = why
		}
		stack[0] = api.EncodeI32(1)
		return
	}
	c.changed, c.newState = true, &proto.StateMsg{Key: c.state.Key, Deleted: true}
	stack[0] = api.EncodeI32(0)
}

// hostLastError copies the reason of the last host function that
// returned 1 into the module's buffer, as much as fits, and returns its
// whole length.
func hostLastError(ctx context.Context, mod api.Module, stack []uint64) {
	c, _ := ctx.Value(wasmCallKey{}).(*wasmCall)
	msg := "no error"
	if c != nil && c.lastErr != "" {
		msg = c.lastErr
	}
	n := min(uint32(len(msg)), api.DecodeU32(stack[1]))
	mod.Memory().Write(api.DecodeU32(stack[0]), []byte(msg[:n]))
	stack[0] = api.EncodeU32(uint32(len(msg)))
}
