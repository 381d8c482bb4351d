// Package butter is the Go SDK for Butter functions. A function is a main
// package that calls Serve with its handler:
//
//	func handle(ctx context.Context, event []byte) ([]byte, error) {
//		return bytes.ToUpper(event), nil
//	}
//
//	func main() { butter.Serve(handle) }
//
// A handler that returns nothing (a nil or empty output) writes no record
// to its output stream; one that returns Outputs(a, b, ...) writes one
// record for each.
//
// FromContext(ctx) returns the Call: its options, its metadata (Event:
// id, source, subject, stream, partition, offset, time, traceparent, ttl,
// the HTTP request of a route), the HTTP route and query parameters
// (Params, names lower-case) and, for a function with a state block, the
// state of the call's key:
//
//	st := butter.FromContext(ctx).State()
//	var count int
//	if _, err := st.Get(&count); err != nil {
//		return nil, err
//	}
//	count++
//	if err := st.Set(count); err != nil { // saved only if handle succeeds
//		return nil, err
//	}
//
// For a call that came from HTTP, Call.Request is the request (method,
// path, route, query, headers, remote address), and Call.SetStatus and
// Call.Header set the answer's status and headers (docs/gateway.md, "The
// HTTP contract"):
//
//	c := butter.FromContext(ctx)
//	c.SetStatus(201)
//	c.Header().Set("Location", "/items/"+id)
//
// Call.Call emits and awaits: it sends a value to a function or stream of
// the spec's calls list and returns the reply, or a *CallError whose Type
// is the callee's error type, Timeout, CircuitOpen, ... (docs/events.md,
// "Emit and await"):
//
//	out, err := butter.FromContext(ctx).Call("score", "", in, 500*time.Millisecond)
//	var ce *butter.CallError
//	if errors.As(err, &ce) && ce.Type == proto.CircuitOpen {
//		return []byte(`{"score": null}`), nil
//	}
//
// The pool builds the package with go build and runs it as a worker that
// speaks the worker protocol (package proto) on file descriptors 3 and 4.
// Standard output and standard error are the function's log.
package butter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/butterfn/butter/sdk/go/proto"
)

// Handler handles one event: it gets the whole input and returns the
// output. The context carries the deadline and the Call (see FromContext).
type Handler func(ctx context.Context, input []byte) ([]byte, error)

// Typed errors: return one (or wrap one) to tell the platform why a call
// failed. Any other error is an Exception.
var (
	ErrPreconditionFailed  = errors.New(proto.PreconditionFailed)
	ErrPostconditionFailed = errors.New(proto.PostconditionFailed)
)

// Call describes the invocation in progress.
type Call struct {
	Function string
	Options  map[string]string
	// Meta is the call's metadata (docs/worker-protocol.md, "INVOKE
	// metadata"); Event reads it. In a batch, an event's
	// butter.position and ce_subject are in Event only.
	Meta map[string]string
	// Params are the HTTP route and query parameters, from the meta keys
	// param.<name>. Names are lower-case: parameter names are
	// case-insensitive.
	Params map[string]string
	state  *State
	w      *worker
	id     uint32
	index  int // in a batch: the event's index
	// emits numbers the call's emits, for their ids (proto.CallMsg.Number).
	emits atomic.Int32
	// pos is where a batch's event is (Event).
	pos position
	// status and header are the answer's head (SetStatus, Header).
	status int
	header map[string][]string
	// span is the handler's (span.go), made when the call starts if the
	// pool traces it, else on Span's first use.
	span *Span
	// ctx is the handler's context (context).
	ctx callContext
}

// State returns the call's per-key state (docs/state.md). It is never nil.
func (c *Call) State() *State { return c.state }

// State is the state a function with a state block keeps per key. Get
// reads it; Set and Delete change it, and the change is saved by the pool
// only when the handler succeeds.
type State struct {
	mu      sync.Mutex
	enabled bool
	fn      string
	key     string
	field   string
	value   json.RawMessage // nil: none
	changed bool
}

func newState(fn string, m *proto.StateMsg) *State {
	s := &State{fn: fn}
	if m != nil {
		s.enabled, s.key, s.field = true, m.Key, m.Field
		if len(m.Value) > 0 && string(m.Value) != "null" {
			s.value = m.Value
		}
	}
	return s
}

// Key is the call's state key, or "" when it has none.
func (s *State) Key() string { return s.key }

// Get decodes the current state into v, as json.Unmarshal does. It
// reports false, and leaves v alone, when there is no state: none was set
// for the key yet, it expired, or the call has no key.
func (s *State) Get(v any) (bool, error) {
	s.mu.Lock()
	raw := s.value
	s.mu.Unlock()
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("butter: state: %w", err)
	}
	return true, nil
}

// Raw returns the current state as JSON, or nil when there is none.
func (s *State) Raw() json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append(json.RawMessage(nil), s.value...)
}

// Set replaces the state with v encoded as JSON; a nil v (or one that
// encodes as null) deletes it.
func (s *State) Set(v any) error {
	if err := s.usable(); err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("butter: state: %w", err)
	}
	if string(b) == "null" {
		b = nil
	}
	s.mu.Lock()
	s.value, s.changed = b, true
	s.mu.Unlock()
	return nil
}

// Delete removes the state of the call's key.
func (s *State) Delete() error { return s.Set(nil) }

func (s *State) usable() error {
	if !s.enabled {
		return fmt.Errorf("butter: state: function %s has no state block", s.fn)
	}
	if s.key == "" {
		return fmt.Errorf("butter: state: this call has no state key (the event has no %q field, no record key and no Butter-State-Key header)", s.field)
	}
	return nil
}

// result is the state change to report in RESULT, or nil.
func (s *State) result() *proto.StateMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.changed {
		return nil
	}
	if s.value == nil {
		return &proto.StateMsg{Deleted: true}
	}
	return &proto.StateMsg{Value: s.value}
}

type callKey struct{}

// callContext is a handler's context: its parent, with the Call as the
// value of callKey. It is context.WithValue's, kept in the Call
// (Call.context), so a call costs one allocation less: a batch makes a
// Call per event.
type callContext struct {
	context.Context
	call *Call
}

func (c *callContext) Value(key any) any {
	if _, ok := key.(callKey); ok {
		return c.call
	}
	return c.Context.Value(key)
}

// context returns the call's context, whose parent is parent.
func (c *Call) context(parent context.Context) context.Context {
	c.ctx = callContext{Context: parent, call: c}
	return &c.ctx
}

// FromContext returns the invocation a handler's context belongs to.
func FromContext(ctx context.Context) *Call {
	c, _ := ctx.Value(callKey{}).(*Call)
	return c
}

// Log writes a log line tagged with the invocation.
func (c *Call) Log(level, message string) error {
	_, err := c.w.call(c.id, proto.CallMsg{Op: "log", Index: c.index, Level: level, Message: message})
	return err
}

// Emit sends value to a stream of the project, keyed by key (empty: the
// input's key). It returns once the pool has accepted the event. The
// event's id derives from the input's and the emit's place among the
// call's emits, so a retried call's emits have the same ids.
func (c *Call) Emit(stream, key string, value []byte) error {
	n := int(c.emits.Add(1))
	_, err := c.w.call(c.id, proto.CallMsg{Op: "emit", Index: c.index, Number: n, Stream: stream, Key: key, Value: value})
	return err
}

type worker struct {
	w       *proto.Writer
	seq     atomic.Uint64
	mu      sync.Mutex
	replies map[uint64]chan proto.ReplyMsg
	calls   map[uint32]*inflight
	wg      sync.WaitGroup
	sem     chan struct{}
	handler Handler
	// stream is the handler when it is a streaming one (ServeStream);
	// handler then reads a batch's whole events through it.
	stream StreamHandler
	// pending counts the context calls awaiting their REPLY.
	pending atomic.Int64
	closed  bool
	// protocol is the version spoken: 2 when the pool speaks it.
	protocol int
	// function is the function's name ($BUTTER_FUNCTION), for batches.
	function string
	// noState is the State of every call of a batch: batches are for
	// functions without state.
	noState *State
}

type inflight struct {
	meta   proto.InvokeMsg
	input  []byte
	cancel context.CancelFunc
	// started: its END came (or it is a batch); before that, a CANCEL
	// drops it (protocol 2).
	started bool
	// stream is a streaming invocation's input (stream.go).
	stream *streamInput
}

// Serve runs the worker loop with handler until the pool closes the
// protocol stream, then returns after in-flight calls finish. It exits
// the process if the worker was not started by a pool.
func Serve(handler Handler) {
	serve(handler, nil)
}

func serve(handler Handler, stream StreamHandler) {
	// The pipes come in blocking mode (os/exec hands them over so): made
	// non-blocking, they are read and written through the Go runtime's
	// poller, which parks the reading goroutine instead of a thread in a
	// system call that the scheduler must notice and work around.
	setNonblock(3)
	setNonblock(4)
	in, out := os.NewFile(3, "butter-in"), os.NewFile(4, "butter-out")
	if os.Getenv("BUTTER_PROTOCOL") == "" || in == nil || out == nil {
		fmt.Fprintln(os.Stderr, "butter: this program is a Butter function; run it with `butter invoke --local` or in a pool")
		os.Exit(2)
	}
	if err := serveConn(in, out, handler, stream); err != nil {
		fmt.Fprintln(os.Stderr, "butter:", err)
		// Exit status (docs/worker-protocol.md, "Exit status"): 2 for a
		// breach of the protocol, 1 for a failure to read or write fds
		// 3 and 4.
		if errors.Is(err, ErrProtocol) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// ErrProtocol wraps the error ServeConn returns when the pool's side
// breaks the worker protocol: a bad frame length, a frame cut by the end
// of the stream, an unknown frame type, malformed JSON, an INVOKE or
// BATCH for an id in flight. Serve then exits with status 2.
var ErrProtocol = errors.New("worker protocol error")

// protocolError marks err, a failure to read or handle the pool's
// frames, as ErrProtocol unless it is a failure of the stream itself
// (an *fs.PathError from reading fd 3 or writing fd 4).
func protocolError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrProtocol, err)
}

// ServeConn runs the worker loop over the given streams. It is Serve
// without the process plumbing, for tests.
func ServeConn(in io.Reader, out io.Writer, handler Handler) error {
	return serveConn(in, out, handler, nil)
}

func serveConn(in io.Reader, out io.Writer, handler Handler, stream StreamHandler) error {
	conc, _ := strconv.Atoi(os.Getenv("BUTTER_CONCURRENCY"))
	if conc < 1 {
		conc = 1
	}
	// The pool names the newest version it speaks; the worker speaks the
	// newest both know.
	protocol := proto.MinVersion
	if v, err := strconv.Atoi(os.Getenv("BUTTER_PROTOCOL")); err == nil && v > protocol {
		protocol = min(v, proto.Version)
	}
	fn := os.Getenv("BUTTER_FUNCTION")
	w := &worker{
		w:        proto.NewWriter(out),
		replies:  map[uint64]chan proto.ReplyMsg{},
		calls:    map[uint32]*inflight{},
		sem:      make(chan struct{}, conc),
		handler:  handler,
		stream:   stream,
		protocol: protocol,
		function: fn,
		noState:  newState(fn, nil),
	}
	if err := w.w.WriteJSON(proto.Hello, 0, proto.HelloMsg{Protocol: protocol, SDK: "go/0.2"}); err != nil {
		return err
	}
	r := proto.NewReader(in)
	defer w.wg.Wait()
	defer w.close()
	for {
		f, err := r.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return protocolError(err)
		}
		if err := w.dispatch(f); err != nil {
			return protocolError(err)
		}
	}
}

// close fails the context calls waiting for a reply, and those to come:
// once the pool has closed its stream, no reply can arrive.
func (w *worker) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	for _, inv := range w.calls {
		if inv.stream != nil {
			inv.stream.end(errors.New("butter: the pool closed the worker stream"))
		}
	}
	for seq, ch := range w.replies {
		delete(w.replies, seq)
		ch <- proto.ReplyMsg{Seq: seq, Error: "the pool closed the worker stream"}
	}
}

func (w *worker) dispatch(f proto.Frame) error {
	if f.Type == proto.Data {
		// A streaming invocation's input may hold the reader back until
		// the handler reads: not under w.mu, which context calls take.
		w.mu.Lock()
		inv := w.calls[f.ID]
		w.mu.Unlock()
		if inv != nil && inv.stream != nil {
			inv.stream.push(f.Payload, func() bool { return w.pending.Load() > 0 })
			return nil
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch f.Type {
	case proto.Invoke:
		if w.calls[f.ID] != nil {
			return fmt.Errorf("%s for invocation %d, which is in flight", f.Type, f.ID)
		}
		inv := &inflight{}
		if err := proto.DecodeInvoke(f.Payload, &inv.meta); err != nil {
			return fmt.Errorf("worker protocol: bad JSON payload: %w", err)
		}
		w.calls[f.ID] = inv
		if w.stream != nil {
			inv.started, inv.stream = true, newStreamInput()
			w.wg.Add(1)
			go w.runStream(f.ID, inv)
		}
	case proto.Data:
		if inv := w.calls[f.ID]; inv != nil {
			inv.input = append(inv.input, f.Payload...)
		}
	case proto.End:
		if inv := w.calls[f.ID]; inv != nil && inv.stream != nil {
			inv.stream.end(nil)
		} else if inv != nil && !inv.started {
			inv.started = true
			w.wg.Add(1)
			go w.run(f.ID, inv)
		}
	case proto.Batch:
		if w.protocol < 2 {
			return fmt.Errorf("unexpected %s frame from the pool: protocol %d has none", f.Type, w.protocol)
		}
		if w.calls[f.ID] != nil {
			return fmt.Errorf("%s for id %d, which is in flight", f.Type, f.ID)
		}
		deadline, _, events, err := proto.NewBatchReader(f.Payload)
		if err != nil {
			return err
		}
		var ctx context.Context
		var cancel context.CancelFunc
		if deadline != 0 {
			ctx, cancel = context.WithDeadline(context.Background(), time.UnixMilli(deadline))
		} else {
			ctx, cancel = context.WithCancel(context.Background())
		}
		w.calls[f.ID] = &inflight{cancel: cancel, started: true}
		w.wg.Add(1)
		go w.runBatch(ctx, cancel, f.ID, events)
	case proto.Cancel:
		inv := w.calls[f.ID]
		switch {
		case inv == nil:
		case !inv.started && w.protocol >= 2:
			// Its input will not end (the pool's caller broke off):
			// drop it, never run it.
			delete(w.calls, f.ID)
			return w.w.WriteJSON(proto.Result, f.ID, proto.ResultMsg{Error: &proto.Error{Type: proto.Skipped, Message: "cancelled before its input ended"}})
		case inv.cancel != nil:
			inv.cancel()
			if inv.stream != nil {
				inv.stream.end(context.Canceled)
			}
		case inv.stream != nil:
			inv.stream.end(context.Canceled)
		}
	case proto.Reply:
		var rep proto.ReplyMsg
		if err := jsonUnmarshal(f.Payload, &rep); err != nil {
			return err
		}
		if ch := w.replies[rep.Seq]; ch != nil {
			delete(w.replies, rep.Seq)
			ch <- rep
		}
	default:
		return fmt.Errorf("unexpected %s frame from the pool", f.Type)
	}
	return nil
}

func (w *worker) run(id uint32, inv *inflight) {
	defer w.wg.Done()
	w.execute(id, inv)
}

// startCall makes an invocation's context (its deadline; a missing or
// zero one means none: docs/worker-protocol.md), records its cancel for a
// CANCEL, and makes its Call.
func (w *worker) startCall(id uint32, inv *inflight) (context.Context, context.CancelFunc, *Call) {
	var ctx context.Context
	var cancel context.CancelFunc
	if inv.meta.Deadline > 0 {
		ctx, cancel = context.WithDeadline(context.Background(), time.UnixMilli(inv.meta.Deadline))
	} else {
		ctx, cancel = context.WithCancel(context.Background())
	}
	w.mu.Lock()
	inv.cancel = cancel
	w.mu.Unlock()
	params := map[string]string{}
	for k, v := range inv.meta.Meta {
		if name, ok := strings.CutPrefix(k, "param."); ok {
			params[name] = v
		}
	}
	call := &Call{Function: inv.meta.Function, Options: inv.meta.Options, Meta: inv.meta.Meta, Params: params,
		state: newState(inv.meta.Function, inv.meta.State), w: w, id: id}
	if inv.meta.Meta[proto.MetaSpan] == "1" {
		call.span = newSpan(call.Meta) // its start is the handler's
	}
	return ctx, cancel, call
}

// execute runs one invocation and sends its output and RESULT.
func (w *worker) execute(id uint32, inv *inflight) {
	w.sem <- struct{}{}
	defer func() { <-w.sem }()
	ctx, cancel, call := w.startCall(id, inv)
	defer cancel()
	out, err := safeCall(w.handler, call.context(ctx), inv.input)
	if err == nil && len(out) <= proto.ChunkSize {
		w.answer(id, out, call)
		return
	}
	if h := call.head(); err == nil && h != nil {
		err = w.w.Write(proto.Head, id, h)
	}
	for len(out) > 0 && err == nil {
		n := min(len(out), proto.ChunkSize)
		err = w.w.Write(proto.Data, id, out[:n])
		out = out[n:]
	}
	res := proto.ResultMsg{Span: call.span.result()}
	if err != nil {
		res.Error = typed(err)
	} else {
		res.State = call.state.result()
	}
	w.mu.Lock()
	delete(w.calls, id)
	w.mu.Unlock()
	_ = w.w.WriteJSON(proto.Result, id, res)
}

// typed returns a handler's error as the protocol's typed error.
func typed(err error) *proto.Error {
	typ := proto.Exception
	switch {
	case errors.Is(err, ErrPreconditionFailed):
		typ = proto.PreconditionFailed
	case errors.Is(err, ErrPostconditionFailed):
		typ = proto.PostconditionFailed
	case errors.Is(err, context.DeadlineExceeded):
		typ = proto.Timeout
	}
	e := &proto.Error{Type: typ, Message: err.Error()}
	var p *panicked
	if errors.As(err, &p) {
		e.Detail = string(p.stack)
	}
	return e
}

// panicked is a handler's panic: its value, the caller's message, and
// the stack, which goes to the pool's log (proto.Error.Detail).
type panicked struct {
	value any
	stack []byte
}

func (p *panicked) Error() string { return fmt.Sprintf("panic: %v", p.value) }

// answer sends a successful invocation's output, at most one chunk, and
// its RESULT in one write.
func (w *worker) answer(id uint32, out []byte, call *Call) {
	st, sp := call.state.result(), call.span.result()
	var res []byte
	var err error
	if st == nil && sp != nil && len(sp.Attributes) == 0 && len(sp.Events) == 0 {
		// A traced call's usual RESULT, written as json.Marshal writes
		// it and as the pool reads it fastest (proto.DecodeResult).
		res = proto.AppendSpanResult(make([]byte, 0, 96), sp)
	} else {
		res, err = json.Marshal(proto.ResultMsg{State: st, Span: sp})
	}
	if err != nil {
		// Not expected: the state was encoded by Set.
		res, _ = json.Marshal(proto.ResultMsg{Error: &proto.Error{Type: proto.Exception, Message: "encode RESULT: " + err.Error()}})
		out = nil
	}
	head := call.head()
	buf := make([]byte, 0, 27+len(head)+len(out)+len(res))
	if head != nil {
		buf, _ = proto.AppendFrame(buf, proto.Head, id, head)
	}
	if len(out) > 0 {
		buf, _ = proto.AppendFrame(buf, proto.Data, id, out)
	}
	buf, _ = proto.AppendFrame(buf, proto.Result, id, res)
	w.mu.Lock()
	delete(w.calls, id)
	w.mu.Unlock()
	_ = w.w.WriteFrames(buf)
}

func safeCall(h Handler, ctx context.Context, in []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicked{value: r, stack: debug.Stack()}
		}
	}()
	return h(ctx, in)
}

func (w *worker) call(id uint32, msg proto.CallMsg) (proto.ReplyMsg, error) {
	msg.Seq = w.seq.Add(1)
	ch := make(chan proto.ReplyMsg, 1)
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return proto.ReplyMsg{}, fmt.Errorf("%s: the pool closed the worker stream", msg.Op)
	}
	w.replies[msg.Seq] = ch
	w.mu.Unlock()
	w.pending.Add(1)
	defer w.pending.Add(-1)
	if w.stream != nil {
		w.wakeStreams() // the REPLY must get through a held-back reader
	}
	if err := w.w.WriteJSON(proto.Call, id, msg); err != nil {
		return proto.ReplyMsg{}, err
	}
	rep := <-ch
	if !rep.OK {
		return rep, fmt.Errorf("%s: %s", msg.Op, rep.Error)
	}
	return rep, nil
}
