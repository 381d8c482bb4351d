// Package butter is the Go SDK for Butter functions. A function is a main
// package that calls Serve with its handler:
//
//	func handle(ctx context.Context, event []byte) ([]byte, error) {
//		return bytes.ToUpper(event), nil
//	}
//
//	func main() { butter.Serve(handle) }
//
// FromContext(ctx) returns the Call: its options, its metadata, the HTTP
// route and query parameters (Params, names lower-case) and, for a
// function with a state block, the state of the call's key:
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
	"os"
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
	Meta     map[string]string
	// Params are the HTTP route and query parameters, from the meta keys
	// param.<name>. Names are lower-case: parameter names are
	// case-insensitive.
	Params map[string]string
	state  *State
	w      *worker
	id     uint32
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

// FromContext returns the invocation a handler's context belongs to.
func FromContext(ctx context.Context) *Call {
	c, _ := ctx.Value(callKey{}).(*Call)
	return c
}

// Log writes a log line tagged with the invocation.
func (c *Call) Log(level, message string) error {
	_, err := c.w.call(c.id, proto.CallMsg{Op: "log", Level: level, Message: message})
	return err
}

// Emit sends value to a stream of the project, keyed by key (may be
// empty). It returns once the pool has accepted the event.
func (c *Call) Emit(stream, key string, value []byte) error {
	_, err := c.w.call(c.id, proto.CallMsg{Op: "emit", Stream: stream, Key: key, Value: value})
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
	closed  bool
	// chains are the ordered batches being run, by batch number.
	chains map[uint32]*chain
}

type inflight struct {
	meta   proto.InvokeMsg
	input  []byte
	cancel context.CancelFunc
	// cancelled: a CANCEL came before the invocation started (only an
	// ordered one waits to start once its input is complete).
	cancelled bool
}

// chain runs the invocations of one ordered batch one at a time, in
// order; once one fails, the rest are skipped.
type chain struct {
	batch   uint32
	queue   []queued
	running bool
	failed  bool
	left    int // invocations of the batch not finished yet
}

type queued struct {
	id  uint32
	inv *inflight
}

// Serve runs the worker loop with handler until the pool closes the
// protocol stream, then returns after in-flight calls finish. It exits
// the process if the worker was not started by a pool.
func Serve(handler Handler) {
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
	if err := ServeConn(in, out, handler); err != nil {
		fmt.Fprintln(os.Stderr, "butter:", err)
		os.Exit(1)
	}
}

// ServeConn runs the worker loop over the given streams. It is Serve
// without the process plumbing, for tests.
func ServeConn(in io.Reader, out io.Writer, handler Handler) error {
	conc, _ := strconv.Atoi(os.Getenv("BUTTER_CONCURRENCY"))
	if conc < 1 {
		conc = 1
	}
	w := &worker{
		w:       proto.NewWriter(out),
		replies: map[uint64]chan proto.ReplyMsg{},
		calls:   map[uint32]*inflight{},
		chains:  map[uint32]*chain{},
		sem:     make(chan struct{}, conc),
		handler: handler,
	}
	if err := w.w.WriteJSON(proto.Hello, 0, proto.HelloMsg{Protocol: proto.Version, SDK: "go/0.1", Ordered: true}); err != nil {
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
			return err
		}
		if err := w.dispatch(f); err != nil {
			return err
		}
	}
}

// close fails the context calls waiting for a reply, and those to come:
// once the pool has closed its stream, no reply can arrive.
func (w *worker) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	for seq, ch := range w.replies {
		delete(w.replies, seq)
		ch <- proto.ReplyMsg{Seq: seq, Error: "the pool closed the worker stream"}
	}
}

func (w *worker) dispatch(f proto.Frame) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch f.Type {
	case proto.Invoke:
		inv := &inflight{}
		if err := jsonUnmarshal(f.Payload, &inv.meta); err != nil {
			return err
		}
		w.calls[f.ID] = inv
	case proto.Data:
		if inv := w.calls[f.ID]; inv != nil {
			inv.input = append(inv.input, f.Payload...)
		}
	case proto.End:
		if inv := w.calls[f.ID]; inv != nil {
			if inv.meta.Ordered {
				w.enqueue(f.ID, inv)
			} else {
				w.wg.Add(1)
				go w.run(f.ID, inv)
			}
		}
	case proto.Cancel:
		if inv := w.calls[f.ID]; inv != nil {
			if inv.cancel != nil {
				inv.cancel()
			} else {
				inv.cancelled = true
			}
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
	w.execute(id, inv, false)
}

// enqueue adds an ordered invocation, whose input is complete, to its
// batch's chain, starting the chain's runner if it is idle; w.mu is held.
func (w *worker) enqueue(id uint32, inv *inflight) {
	ch := w.chains[inv.meta.Batch]
	if ch == nil {
		ch = &chain{batch: inv.meta.Batch, left: max(inv.meta.Count, 1)}
		w.chains[inv.meta.Batch] = ch
	}
	ch.queue = append(ch.queue, queued{id, inv})
	if !ch.running {
		ch.running = true
		w.wg.Add(1)
		go w.runChain(ch)
	}
}

// flushAfter is how long an invocation of an ordered batch may run while
// the frames of those before it wait to be written.
const flushAfter = time.Millisecond

// runChain runs a chain's queued invocations in order, their DATA and
// RESULT frames queued, and writes them all once nothing is queued, or
// once one has run for flushAfter.
func (w *worker) runChain(ch *chain) {
	defer w.wg.Done()
	for {
		w.mu.Lock()
		if len(ch.queue) == 0 {
			ch.running = false
			w.mu.Unlock()
			_ = w.w.Flush()
			return
		}
		q := ch.queue[0]
		ch.queue = ch.queue[1:]
		skip, cancelled := ch.failed, q.inv.cancelled
		w.mu.Unlock()
		failed := true
		if skip || cancelled {
			msg := "an invocation before it in its ordered batch failed"
			if !skip {
				msg = "cancelled before it ran"
			}
			w.mu.Lock()
			delete(w.calls, q.id)
			w.mu.Unlock()
			_ = w.w.QueueJSON(proto.Result, q.id, proto.ResultMsg{Error: &proto.Error{Type: proto.Skipped, Message: msg}})
		} else {
			// What the invocations before this one sent is written
			// once it has run for flushAfter: a slow or hung one must
			// not hold their RESULTs (the pool would blame the first
			// invocation without one for its timeout).
			var t *time.Timer
			if w.w.Queued() {
				t = time.AfterFunc(flushAfter, func() { _ = w.w.Flush() })
			}
			failed = w.execute(q.id, q.inv, true)
			if t != nil {
				t.Stop()
			}
		}
		w.mu.Lock()
		ch.failed = ch.failed || failed
		if ch.left--; ch.left <= 0 && w.chains[ch.batch] == ch {
			delete(w.chains, ch.batch)
		}
		w.mu.Unlock()
	}
}

// execute runs one invocation and sends its output and RESULT, or queues
// them when queue is set (see runChain). It reports whether it failed.
func (w *worker) execute(id uint32, inv *inflight, queue bool) bool {
	w.sem <- struct{}{}
	defer func() { <-w.sem }()
	ctx, cancel := context.WithDeadline(context.Background(), time.UnixMilli(inv.meta.Deadline))
	defer cancel()
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
	out, err := safeCall(w.handler, context.WithValue(ctx, callKey{}, call), inv.input)
	if !queue && err == nil && len(out) <= proto.ChunkSize {
		return w.answer(id, out, call)
	}
	write := w.w.Write
	if queue {
		write = w.w.Queue
	}
	for len(out) > 0 && err == nil {
		n := min(len(out), proto.ChunkSize)
		err = write(proto.Data, id, out[:n])
		out = out[n:]
	}
	res := proto.ResultMsg{}
	if err != nil {
		typ := proto.Exception
		switch {
		case errors.Is(err, ErrPreconditionFailed):
			typ = proto.PreconditionFailed
		case errors.Is(err, ErrPostconditionFailed):
			typ = proto.PostconditionFailed
		case errors.Is(err, context.DeadlineExceeded):
			typ = proto.Timeout
		}
		res.Error = &proto.Error{Type: typ, Message: err.Error()}
	} else {
		res.State = call.state.result()
	}
	w.mu.Lock()
	delete(w.calls, id)
	w.mu.Unlock()
	if queue {
		_ = w.w.QueueJSON(proto.Result, id, res)
	} else {
		_ = w.w.WriteJSON(proto.Result, id, res)
	}
	return res.Error != nil
}

// answer sends a successful invocation's output, at most one chunk, and
// its RESULT in one write.
func (w *worker) answer(id uint32, out []byte, call *Call) bool {
	res, err := json.Marshal(proto.ResultMsg{State: call.state.result()})
	failed := err != nil
	if failed {
		// Not expected: the state was encoded by Set.
		res, _ = json.Marshal(proto.ResultMsg{Error: &proto.Error{Type: proto.Exception, Message: "encode RESULT: " + err.Error()}})
		out = nil
	}
	buf := make([]byte, 0, 18+len(out)+len(res))
	if len(out) > 0 {
		buf, _ = proto.AppendFrame(buf, proto.Data, id, out)
	}
	buf, _ = proto.AppendFrame(buf, proto.Result, id, res)
	w.mu.Lock()
	delete(w.calls, id)
	w.mu.Unlock()
	_ = w.w.WriteFrames(buf)
	return failed
}

func safeCall(h Handler, ctx context.Context, in []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
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
	if err := w.w.WriteJSON(proto.Call, id, msg); err != nil {
		return proto.ReplyMsg{}, err
	}
	rep := <-ch
	if !rep.OK {
		return rep, fmt.Errorf("%s: %s", msg.Op, rep.Error)
	}
	return rep, nil
}
