package butter

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime/debug"
	"sync"

	"github.com/butterfn/butter/sdk/go/proto"
)

// StreamHandler handles one event as a stream: it reads the input from in
// as the body arrives and writes the output to out as it goes, so a body
// of any size passes through in bounded memory. Set the answer's status
// and headers (Call.SetStatus, Call.Header) before the first write. The
// context carries the deadline and the Call, as for a Handler.
type StreamHandler func(ctx context.Context, in io.Reader, out io.Writer) error

// ServeStream is Serve for a streaming handler. On a stream, a batch's
// event is read whole and its output collected, as for a Handler.
func ServeStream(h StreamHandler) {
	serve(buffered(h), h)
}

// ServeStreamConn is ServeConn for a streaming handler, for tests.
func ServeStreamConn(in io.Reader, out io.Writer, h StreamHandler) error {
	return serveConn(in, out, buffered(h), h)
}

// buffered turns a streaming handler into a Handler, for whole inputs.
func buffered(h StreamHandler) Handler {
	return func(ctx context.Context, in []byte) ([]byte, error) {
		var out bytes.Buffer
		err := h(ctx, bytes.NewReader(in), &out)
		return out.Bytes(), err
	}
}

// streamHWM is how much input a streaming invocation buffers before the
// worker stops reading the pool's frames (the pool's writes then wait:
// back-pressure to the caller), unless a context call awaits its REPLY,
// which must get through.
const streamHWM = 4 << 20

// errHandlerDone ends the input of a handler that returned before reading
// it all: the rest is dropped.
var errHandlerDone = errors.New("butter: the handler returned")

// streamInput is a streaming invocation's input: the DATA frames, queued
// by the frame reader and read by the handler.
type streamInput struct {
	mu     sync.Mutex
	cond   sync.Cond
	chunks [][]byte
	queued int
	ended  bool  // END came
	err    error // cancelled, closed, or the handler returned
}

func newStreamInput() *streamInput {
	s := &streamInput{}
	s.cond.L = &s.mu
	return s
}

// push queues a chunk and waits, while more than streamHWM is queued and
// no context call is pending, for the handler to read.
func (s *streamInput) push(p []byte, pending func() bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.err != nil {
		return
	}
	s.chunks = append(s.chunks, bytes.Clone(p))
	s.queued += len(p)
	s.cond.Broadcast()
	for s.queued > streamHWM && s.err == nil && !pending() {
		s.cond.Wait()
	}
}

// end marks the input's end (err nil) or its failure.
func (s *streamInput) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.ended = true
	} else if s.err == nil {
		s.err = err
	}
	s.cond.Broadcast()
}

// wake lets a push waiting for room look again (a context call began).
func (s *streamInput) wake() {
	s.mu.Lock()
	s.cond.Broadcast()
	s.mu.Unlock()
}

func (s *streamInput) Read(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.chunks) == 0 && !s.ended && s.err == nil {
		s.cond.Wait()
	}
	if s.err != nil {
		return 0, s.err
	}
	if len(s.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(b, s.chunks[0])
	if n == len(s.chunks[0]) {
		s.chunks[0] = nil
		s.chunks = s.chunks[1:]
	} else {
		s.chunks[0] = s.chunks[0][n:]
	}
	s.queued -= n
	s.cond.Broadcast()
	return n, nil
}

// streamOutput is a streaming invocation's output: each write goes out at
// once in DATA frames, after the answer's head.
type streamOutput struct {
	w        *worker
	id       uint32
	call     *Call
	headSent bool
}

func (o *streamOutput) head() error {
	if o.headSent {
		return nil
	}
	o.headSent = true
	if h := o.call.head(); h != nil {
		return o.w.w.Write(proto.Head, o.id, h)
	}
	return nil
}

func (o *streamOutput) Write(p []byte) (int, error) {
	if err := o.head(); err != nil {
		return 0, err
	}
	n := 0
	for n < len(p) {
		c := min(len(p)-n, proto.ChunkSize)
		if err := o.w.w.Write(proto.Data, o.id, p[n:n+c]); err != nil {
			return n, err
		}
		n += c
	}
	return n, nil
}

// runStream runs a streaming invocation from its INVOKE on.
func (w *worker) runStream(id uint32, inv *inflight) {
	defer w.wg.Done()
	w.sem <- struct{}{}
	defer func() { <-w.sem }()
	ctx, cancel, call := w.startCall(id, inv)
	defer cancel()
	out := &streamOutput{w: w, id: id, call: call}
	err := safeStream(w.stream, call.context(ctx), inv.stream, out)
	inv.stream.end(errHandlerDone)
	if err == nil {
		err = out.head()
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

func safeStream(h StreamHandler, ctx context.Context, in io.Reader, out io.Writer) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicked{value: r, stack: debug.Stack()}
		}
	}()
	return h(ctx, in, out)
}

// wakeStreams lets the frame reader, held back by a full streaming input,
// read on: a context call began, whose REPLY must get through.
func (w *worker) wakeStreams() {
	w.mu.Lock()
	var ins []*streamInput
	for _, inv := range w.calls {
		if inv.stream != nil {
			ins = append(ins, inv.stream)
		}
	}
	w.mu.Unlock()
	for _, s := range ins {
		s.wake()
	}
}
