// Package runtime runs function instances. Every runtime sits behind the
// same small interface: Start an Instance, Invoke it, Stop it.
//
//   - exec: a fork per call, stdin to stdout, like the OpenFaaS classic
//     watchdog, so sed and tr are functions.
//   - process: a long-lived worker per instance speaking the worker
//     protocol (docs/worker-protocol.md) for Node, Python and Go.
//   - http: a child HTTP server per instance, as OpenFaaS of-watchdog's
//     http mode runs one, so OpenFaaS-style handlers run unchanged.
//   - wasm: a WebAssembly module (WASI preview 1) in the pool's own
//     process on wazero, instantiated per call, stdin to stdout.
//
// Each instance runs in its own process group with only its own function's
// environment, and with per-instance limits on open files. The pool (package
// pool) decides how many instances run; this package only runs them.
package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/butterfn/butter/sandbox"
	"github.com/butterfn/butter/sdk/go/proto"
)

// Function is what a runtime needs to know about a function.
type Function struct {
	Name    string
	Runtime string
	// Dir is the function's bundle directory: the working directory of
	// its processes.
	Dir     string
	Handler string
	Command []string
	// Env is the function's own environment; instances see nothing else
	// of the pool's environment but PATH, HOME and the locale.
	Env         map[string]string
	Concurrency int
	// MaxOpenFiles limits each instance's open file descriptors.
	MaxOpenFiles uint64
	// MemoryMiB limits each instance's memory (its process and children);
	// 0 means no limit. An instance over it is killed and replaced.
	MemoryMiB int
	// MaxProcs limits the processes of each instance; 0 means no limit.
	MaxProcs int
	// Limits applies MemoryMiB and MaxProcs; nil applies neither.
	Limits *Limits
	// Logs receives the instances' standard output and error (exec
	// functions: standard error only).
	Logs io.Writer
	// Sandbox, when set, confines each instance's processes (package
	// sandbox): the pool sets it when it hosts secrets.
	Sandbox *sandbox.Config
	// Options are the function's own options (a call's may override
	// them): the connectors' settings (sink.go).
	Options map[string]string
	// ExecMode is an exec function's mode: "" or "fork" (a process per
	// call, Exec) or ExecModeLines (one process per instance, a line per
	// call, execlines.go).
	ExecMode string
}

// Invocation is one call of a function.
type Invocation struct {
	Deadline time.Time
	Options  map[string]string
	Meta     map[string]string
	Input    io.Reader
	Output   io.Writer
	// Calls answers the worker's context calls (log, emit); nil answers
	// every call with an error.
	Calls CallHandler
	// State is the call's per-key state (docs/state.md), sent to workers
	// of the process runtime and given to wasm modules; nil for a
	// function without state.
	State *proto.StateMsg
	// NewState is set by Invoke, when the call succeeded, to the state
	// change the worker (or module) made; nil means unchanged. Only the
	// process and wasm runtimes carry state.
	NewState *proto.StateMsg
	// Span is set by Invoke to the handler's span, when the worker
	// recorded one (the metadata asked with proto.MetaSpan).
	Span *proto.SpanMsg
	// CallSpan, for an instance that is a SpanRecorder, is the
	// traceparent of the pool's span of this call: the worker gets it as
	// the call's ce_traceparent, over Meta's, and is asked for the
	// handler's span (proto.MetaSpan), without Meta being copied.
	CallSpan string
	// Head, set for a call that came from HTTP, gets the answer's status
	// and headers as the function set them (docs/worker-protocol.md,
	// "HEAD"), at most once and before the first Write to Output; it is
	// never called when the function set neither. nil: the call did not
	// come from HTTP, and a function's head is dropped (the http
	// runtime then fails a call answered with a status that is not 2xx,
	// as an Exception).
	Head func(proto.HeadMsg)
}

// SpanRecorder is an Instance whose workers record the handler's span
// of a call whose CallSpan is set (the process runtime's).
type SpanRecorder interface {
	RecordsHandlerSpans()
}

// CallHandler answers a worker's context call.
type CallHandler func(ctx context.Context, call proto.CallMsg) proto.ReplyMsg

// Instance is one running instance of a function.
type Instance interface {
	// Invoke runs one call. It returns a *proto.Error for a typed function
	// failure; any other error means the instance itself failed and must
	// be replaced.
	Invoke(ctx context.Context, inv *Invocation) error
	// Stop ends the instance: in-flight calls get grace to finish, then
	// the process group is killed. Stop waits for the exit.
	Stop(grace time.Duration) error
	// Exited is closed once the instance can serve no more calls.
	Exited() <-chan struct{}
	// Pid is the instance's process, or 0 when it has none between calls.
	Pid() int
}

// Batch is a batch of events for InvokeBatch, run one at a time, in order.
type Batch struct {
	// Deadline bounds the whole batch; zero means none.
	Deadline time.Time
	// Count is the number of events in Events.
	Count int
	// Events are the events, each encoded with proto.AppendEventHead,
	// proto.AppendPair and proto.AppendInput.
	Events []byte
	// Reserved says that Events came from BatchEvents: their first
	// BatchHeadroom bytes are room for the BATCH frame's head, not
	// events. The runtime writes the head there instead of copying the
	// events into a frame, and takes the buffer back for another batch
	// once it has written it: the caller must not touch Events after
	// InvokeBatch.
	Reserved bool
	// Calls answers the context calls (log, emit) of the event at index;
	// nil answers each with an error.
	Calls func(ctx context.Context, index int, call proto.CallMsg) proto.ReplyMsg
	// OK, when set, gets the events that succeeded, in order, as their
	// results come (so that their outputs can go on while later events
	// run), on the goroutine that called InvokeBatch: outputs[k] is the
	// output of event first+k, as the Result's Output.
	OK func(first int, outputs [][]byte)
}

// Encoded returns b's events, without the room Reserved keeps before
// them.
func (b *Batch) Encoded() []byte {
	if b.Reserved {
		return b.Events[BatchHeadroom:]
	}
	return b.Events
}

// BatchHeadroom is the room at the start of a buffer from BatchEvents:
// a frame's head and a BATCH payload's (deadline and count).
const BatchHeadroom = 9 + 12

// batchBuffers are the events buffers of batches already written, for
// the next ones: a stream's batches are up to a megabyte each, and a new
// buffer each would be cleared and collected each time.
var batchBuffers sync.Pool

// maxPooledBatch bounds the buffers kept for reuse.
const maxPooledBatch = 4 << 20

// BatchEvents returns an empty events buffer for a Batch with Reserved
// set, with room for about n bytes of events: its length is
// BatchHeadroom, the room for the frame's head; the events go after it.
func BatchEvents(n int) []byte {
	if b, ok := batchBuffers.Get().(*[]byte); ok && cap(*b) >= BatchHeadroom+n {
		return (*b)[:BatchHeadroom]
	} else if ok {
		batchBuffers.Put(b)
	}
	return make([]byte, BatchHeadroom, BatchHeadroom+n)
}

// releaseBatch gives a buffer from BatchEvents back once written.
func releaseBatch(b []byte) {
	if cap(b) <= maxPooledBatch {
		batchBuffers.Put(&b)
	}
}

// Result is the outcome of one event of a batch: its output, and nil, a
// *proto.Error, or an instance failure.
type Result struct {
	Output []byte
	Err    error
}

// Batcher is implemented by instances that can run a batch of events in
// one round trip (docs/worker-protocol.md, "Batches"): the process
// runtime's, when its worker speaks protocol 2.
type Batcher interface {
	// Batches reports whether InvokeBatch may be used.
	Batches() bool
	// InvokeBatch sends b to the instance at once, which runs its events
	// one at a time, in order, each once the one before it succeeded. It
	// returns one Result per event. An event that was not run, because
	// one before it failed or ctx ended before it started, fails with a
	// *proto.Error of type proto.Skipped; after the first failure, no
	// event of the batch has run. The whole batch is bounded by ctx and
	// b.Deadline.
	InvokeBatch(ctx context.Context, b *Batch) []Result
}

// Runtime starts instances.
type Runtime interface {
	Start(ctx context.Context, fn *Function) (Instance, error)
}

// ErrInstanceGone is returned by Invoke on an instance that has exited.
var ErrInstanceGone = errors.New("instance exited")

// ErrNotSent is returned, wrapped with ErrInstanceGone, by Invoke for a
// call that never reached its instance: the instance had exited, or was
// stopping, or its input pipe was broken before the call's INVOKE (or,
// for a small input, its END) was written. Nothing ran, and an input in
// memory (a *bytes.Reader) is left unread, so the call may go to another
// instance without counting as an attempt.
var ErrNotSent = errors.New("the call was not sent")

// errGone is the error of a call made on an instance that had exited.
var errGone = fmt.Errorf("%w: %w", ErrInstanceGone, ErrNotSent)

// OutputError is a failure that an instance's own output explains: Err
// says what happened, Output is the tail of the instance's standard
// error (a traceback, a compiler's messages). Its Error is both, as one
// string; the pool logs Output and answers callers with Err only.
type OutputError struct {
	Err    error
	Output string
}

func (e *OutputError) Error() string {
	if e.Output == "" {
		return e.Err.Error()
	}
	return e.Err.Error() + ": " + e.Output
}

func (e *OutputError) Unwrap() error { return e.Err }

// ErrInput is returned, wrapped, by Invoke when the call's input could
// not be read to its end (the caller broke off): the call is abandoned,
// and the instance, when its protocol allows (version 2), kept.
var ErrInput = errors.New("read input")

// For returns the runtime named by a spec's runtime argument.
func For(name string, sdks *SDKs) (Runtime, error) {
	switch name {
	case "exec":
		return Exec{}, nil
	case "node", "python", "go", "java":
		return &Process{SDKs: sdks}, nil
	case "http":
		return HTTP{}, nil
	case "wasm":
		return Wasm{SDKs: sdks}, nil
	case "sink.http":
		return HTTPSink{}, nil
	case "sink.mqtt":
		return MQTTSink{}, nil
	case "sink.postgres":
		return PostgresSink{}, nil
	case "sink.influxdb":
		return InfluxSink{}, nil
	case "source.mqtt", "source.postgres":
		return Source{}, nil
	}
	return nil, fmt.Errorf("runtime %q is not supported by this pool yet", name)
}

// environ builds an instance's environment: a minimal base plus the
// function's own variables, sorted for stable output. The pool's own
// environment (and whatever secrets it holds) never leaks through.
func environ(fn *Function, extra map[string]string) []string {
	env := map[string]string{
		"PATH": os.Getenv("PATH"),
		"HOME": fn.Dir,
		"LANG": "C.UTF-8",
	}
	for k, v := range fn.Env {
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// tailBuffer keeps the last n bytes written to it.
type tailBuffer struct {
	n   int
	buf []byte
	w   io.Writer // also copied here when not nil
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	if t.w != nil {
		_, _ = t.w.Write(p)
	}
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.n {
		t.buf = t.buf[len(t.buf)-t.n:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return strings.TrimSpace(string(t.buf)) }

// maxLogLine is the longest line lineWriter holds: a longer one is passed
// on in pieces of this size.
const maxLogLine = 64 << 10

// CallInfo is what a line an instance printed is attributed to: the
// call it was running (its event or request id, ce_id, and its
// traceparent). Zero when the line cannot be pinned on one call: none
// ran, or several at once on the instance, or a batch.
type CallInfo struct {
	ID, Traceparent string
}

// callInfo is the CallInfo of an invocation whose metadata is meta.
func callInfo(meta map[string]string) CallInfo {
	return CallInfo{ID: meta["ce_id"], Traceparent: meta["ce_traceparent"]}
}

// LineLogger is a Function's Logs that takes each line with its stream
// ("stdout" or "stderr") and the call it is attributed to; a plain
// io.Writer gets the line alone.
type LineLogger interface {
	io.Writer
	WriteLine(line []byte, stream string, call CallInfo)
}

// lineWriter passes what an instance writes to its standard output or
// error on to w one whole line per Write, however the pipe cut or merged
// the instance's writes, so that a log writer that reads a level off each
// line's start (hclog's InferLevels: "[WARN] disk almost full") gives
// every line its own. One lineWriter serves one stream; flush passes on
// a last line that lacks its newline, once the stream has ended.
type lineWriter struct {
	w   io.Writer
	buf []byte
	// ll is w as a LineLogger, when it is one: it gets stream and the
	// call attr names.
	ll     LineLogger
	stream string
	attr   func() CallInfo
}

// logLines returns the writer for one output stream of an instance whose
// log is w, and the function that passes on its last line. For a nil w,
// both do nothing.
func logLines(w io.Writer) (io.Writer, func()) {
	return attributedLines(w, "", nil)
}

// attributedLines is logLines for stream ("stdout" or "stderr"), each
// line attributed to the call attr (which may be nil) names, when w is a
// LineLogger.
func attributedLines(w io.Writer, stream string, attr func() CallInfo) (io.Writer, func()) {
	if w == nil {
		return nil, func() {}
	}
	l := &lineWriter{w: w, stream: stream, attr: attr}
	l.ll, _ = w.(LineLogger)
	return l, l.flush
}

// emit passes one line on.
func (l *lineWriter) emit(line []byte) {
	if l.ll == nil {
		_, _ = l.w.Write(line)
		return
	}
	var c CallInfo
	if l.attr != nil {
		c = l.attr()
	}
	l.ll.WriteLine(line, l.stream, c)
}

func (l *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.buf = append(l.buf, p...)
			if len(l.buf) >= maxLogLine {
				l.flush()
			}
			break
		}
		if len(l.buf) > 0 {
			l.buf = append(l.buf, p[:i+1]...)
			l.emit(l.buf)
			l.buf = l.buf[:0]
		} else {
			l.emit(p[:i+1])
		}
		p = p[i+1:]
	}
	// A log that fails must not fail the instance: its output is dropped.
	return n, nil
}

func (l *lineWriter) flush() {
	if len(l.buf) > 0 {
		l.emit(l.buf)
		l.buf = l.buf[:0]
	}
}
