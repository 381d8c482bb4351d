// Package proto is the codec of Butter's worker protocol, versions 1 to 3
// (docs/worker-protocol.md): length-prefixed frames carrying a type, an
// invocation id and a payload; version 2 adds batches of events in one
// frame (batch.go), version 3 the response head (HEAD: status and
// headers of an HTTP call's answer). The pool (host side) and the Go SDK (worker
// side) both use it, so the two can never disagree on the wire format.
//
// It has no dependencies beyond the standard library, so that functions
// written in Go pull in nothing else.
package proto

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Version is the newest protocol version this package speaks. A pool
// tells a worker the newest it speaks (BUTTER_PROTOCOL) and the worker
// answers, in HELLO, the one they will speak: MinVersion to Version.
const Version = 3

// HeadVersion is the first version with the HEAD frame: a worker sends
// HEAD only when it speaks this version or a newer one.
const HeadVersion = 3

// MinVersion is the oldest protocol version this package speaks.
const MinVersion = 1

// MaxFrame is the largest frame length (type + id + payload) accepted.
const MaxFrame = 16 << 20

// ChunkSize is the payload size senders use when splitting data into DATA
// frames.
const ChunkSize = 64 << 10

// Type is a frame type.
type Type uint8

// The frame types of version 1.
const (
	Hello  Type = 1 // worker -> pool: JSON HelloMsg
	Invoke Type = 2 // pool -> worker: JSON InvokeMsg
	Data   Type = 3 // both: raw bytes
	End    Type = 4 // pool -> worker: input complete
	Result Type = 5 // worker -> pool: JSON ResultMsg; ends the invocation
	Cancel Type = 6 // pool -> worker: stop the invocation
	Call   Type = 7 // worker -> pool: JSON CallMsg
	Reply  Type = 8 // pool -> worker: JSON ReplyMsg
	// Version 2.
	Batch   Type = 9  // pool -> worker: binary events of a batch
	Results Type = 10 // worker -> pool: binary results of a batch
	// Version 3.
	Head Type = 11 // worker -> pool: JSON HeadMsg, before the call's first DATA
)

func (t Type) String() string {
	names := [...]string{"", "HELLO", "INVOKE", "DATA", "END", "RESULT", "CANCEL", "CALL", "REPLY", "BATCH", "RESULTS", "HEAD"}
	if int(t) < len(names) && t != 0 {
		return names[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// Frame is one message.
type Frame struct {
	Type    Type
	ID      uint32
	Payload []byte
}

// ErrFrameTooLarge is returned for a frame longer than MaxFrame.
var ErrFrameTooLarge = errors.New("worker protocol: frame too large")

// Reader reads frames.
type Reader struct{ r *bufio.Reader }

// NewReader returns a frame reader over r.
func NewReader(r io.Reader) *Reader { return &Reader{bufio.NewReaderSize(r, 64<<10)} }

// Read reads the next frame. It returns io.EOF at a clean end of stream
// and io.ErrUnexpectedEOF inside a frame. The payload is a new slice the
// caller owns.
func (r *Reader) Read() (Frame, error) {
	var hdr [9]byte
	if _, err := io.ReadFull(r.r, hdr[:4]); err != nil {
		return Frame{}, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n < 5 {
		return Frame{}, fmt.Errorf("worker protocol: frame length %d is below the header size", n)
	}
	if n > MaxFrame {
		return Frame{}, ErrFrameTooLarge
	}
	if _, err := io.ReadFull(r.r, hdr[4:9]); err != nil {
		return Frame{}, unexpected(err)
	}
	f := Frame{Type: Type(hdr[4]), ID: binary.BigEndian.Uint32(hdr[5:9])}
	if f.Type < Hello || f.Type > Head {
		return Frame{}, fmt.Errorf("worker protocol: unknown frame type %d", hdr[4])
	}
	f.Payload = make([]byte, n-5)
	if _, err := io.ReadFull(r.r, f.Payload); err != nil {
		return Frame{}, unexpected(err)
	}
	return f, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Writer writes frames. It is safe for concurrent use: each frame is
// written whole. Frames may also be queued (Queue) and written later with
// one write (Flush): a Write, or WriteFrames, writes the queued frames
// first, in the same write, so frames keep their order.
type Writer struct {
	mu      sync.Mutex
	w       io.Writer
	pending []byte // queued frames, not yet written
}

// NewWriter returns a frame writer over w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// AppendFrame appends the encoding of one frame to dst.
func AppendFrame(dst []byte, t Type, id uint32, payload []byte) ([]byte, error) {
	if len(payload)+5 > MaxFrame {
		return dst, ErrFrameTooLarge
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(5+len(payload)))
	dst = append(dst, byte(t))
	dst = binary.BigEndian.AppendUint32(dst, id)
	return append(dst, payload...), nil
}

// AppendFrameHead appends the head of a frame whose payload of n bytes
// the caller appends next.
func AppendFrameHead(dst []byte, t Type, id uint32, n int) ([]byte, error) {
	if n+5 > MaxFrame {
		return dst, ErrFrameTooLarge
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(5+n))
	dst = append(dst, byte(t))
	return binary.BigEndian.AppendUint32(dst, id), nil
}

// Write writes one frame, after the queued ones.
func (w *Writer) Write(t Type, id uint32, payload []byte) error {
	buf, err := AppendFrame(make([]byte, 0, 9+len(payload)), t, id, payload)
	if err != nil {
		return err
	}
	return w.WriteFrames(buf)
}

// WriteFrames writes frames already encoded with AppendFrame, after the
// queued ones, in one write.
func (w *Writer) WriteFrames(b []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.pending) > 0 {
		w.pending = append(w.pending, b...)
		return w.flushLocked()
	}
	_, err := w.w.Write(b)
	return err
}

// Queue adds one frame to those to write at the next Flush, Write or
// WriteFrames. Once a chunk's worth is queued, it writes them.
func (w *Writer) Queue(t Type, id uint32, payload []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var err error
	if w.pending, err = AppendFrame(w.pending, t, id, payload); err != nil {
		return err
	}
	if len(w.pending) >= ChunkSize {
		return w.flushLocked()
	}
	return nil
}

// QueueJSON queues a frame whose payload is v encoded as JSON.
func (w *Writer) QueueJSON(t Type, id uint32, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("worker protocol: encode %s: %w", t, err)
	}
	return w.Queue(t, id, b)
}

// Queued reports whether frames are queued.
func (w *Writer) Queued() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending) > 0
}

// Flush writes the queued frames.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flushLocked()
}

func (w *Writer) flushLocked() error {
	if len(w.pending) == 0 {
		return nil
	}
	_, err := w.w.Write(w.pending)
	if cap(w.pending) > 4*ChunkSize {
		w.pending = nil // do not hold a large batch's buffer
	} else {
		w.pending = w.pending[:0]
	}
	return err
}

// WriteJSON writes a frame whose payload is v encoded as JSON.
func (w *Writer) WriteJSON(t Type, id uint32, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("worker protocol: encode %s: %w", t, err)
	}
	return w.Write(t, id, b)
}

// HelloMsg is the payload of HELLO.
type HelloMsg struct {
	Protocol int    `json:"protocol"`
	SDK      string `json:"sdk"`
	// Executable is the absolute path of the interpreter that runs the
	// worker (Python's sys.executable, Node's process.execPath), read
	// before the handler's code runs. When `python3` or `node` on PATH
	// is a version manager's shim (pyenv, asdf: a script that finds and
	// execs the interpreter), the pool starts the function's next
	// instances with this path instead and skips the shim. Optional.
	Executable string `json:"executable,omitempty"`
}

// InvokeMsg is the payload of INVOKE.
type InvokeMsg struct {
	Function string            `json:"function"`
	Deadline int64             `json:"deadline"` // Unix milliseconds
	Options  map[string]string `json:"options,omitempty"`
	Meta     map[string]string `json:"meta,omitempty"`
	// State is set only for a function with a state block
	// (docs/state.md): the call's state key and its current state.
	State *StateMsg `json:"state,omitempty"`
}

// StateMsg carries per-key state (docs/state.md). In INVOKE, Key is the
// call's state key ("" when the event has none, and then Field says what
// was looked for) and Value the current state, absent when there is none.
// In RESULT it is present only when the handler changed the state: Value
// is the new state, or Deleted is true. Value is always JSON.
type StateMsg struct {
	Key     string          `json:"key,omitempty"`
	Field   string          `json:"field,omitempty"`
	Value   json.RawMessage `json:"value,omitempty"`
	Deleted bool            `json:"deleted,omitempty"`
}

// HeadMsg is the payload of HEAD (version 3): the status and headers of
// the answer to an HTTP call, sent at most once per invocation, before
// its first DATA. Status 0 means 200. A pool ignores a HEAD after output,
// and for a call that did not come from HTTP.
type HeadMsg struct {
	Status  int                 `json:"status,omitempty"`
	Headers map[string][]string `json:"headers,omitempty"`
}

// Error is a typed function error. Type and Message are for the caller;
// Detail is for the operator: a traceback, a stack, the output of a
// worker that could not start. The pool logs Detail with the call's
// request id and never answers a caller with it (plugins/pool, errors.go).
type Error struct {
	Type    string `json:"type"`
	Message string `json:"message"`
	Detail  string `json:"detail,omitempty"`
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

// The error types.
const (
	Exception           = "Exception"
	PreconditionFailed  = "PreconditionFailed"
	PostconditionFailed = "PostconditionFailed"
	Timeout             = "Timeout"
	// Skipped is what the pool reports for an event of a batch that was
	// not run, because one before it failed or the batch was cancelled
	// before it ran; a worker sends it for the event it was about to run
	// when a CANCEL came.
	Skipped = "Skipped"
	// CircuitOpen is the failure of a context call ("call") to a target
	// whose circuit breaker is open: it was not sent.
	CircuitOpen = "CircuitOpen"
)

// ResultMsg is the payload of RESULT.
type ResultMsg struct {
	Error *Error `json:"error,omitempty"`
	// State is the handler's change to the call's state; nil leaves it
	// as it was. The pool ignores it when Error is set.
	State *StateMsg `json:"state,omitempty"`
	// Span is the handler's span, when the invocation's metadata asked
	// for one (MetaSpan): the pool exports it.
	Span *SpanMsg `json:"span,omitempty"`
}

// MetaSpan is the metadata key by which the pool asks a worker to record
// the handler's span ("1"; docs/worker-protocol.md, "Spans"): the pool
// traces the call, and the invocation's ce_traceparent is the span the
// handler's is the child of.
const MetaSpan = "butter.span"

// SpanMsg is a handler's span as a worker records it: its id (16 hex
// digits, the span id of the traceparent the handler's code saw), when
// it started and ended (Unix nanoseconds), and what the code added.
type SpanMsg struct {
	ID         string         `json:"id"`
	StartNS    int64          `json:"start_ns"`
	EndNS      int64          `json:"end_ns"`
	Attributes map[string]any `json:"attributes,omitempty"`
	Events     []SpanEvent    `json:"events,omitempty"`
}

// SpanEvent is an event a handler added to its span.
type SpanEvent struct {
	Name       string         `json:"name"`
	TimeNS     int64          `json:"time_ns"`
	Attributes map[string]any `json:"attributes,omitempty"`
}

// CallMsg is the payload of CALL.
type CallMsg struct {
	Seq uint64 `json:"seq"`
	// Index is the event of a batch the call acts for (protocol 2: the
	// frame's id is the batch's); 0 for an invocation.
	Index int `json:"index,omitempty"`
	// Number is an emit's place among its event's emits, from 1, as the
	// handler called emit: the emit's id derives from it
	// (docs/events.md, "Ids"). 0: not given; the pool numbers the emits
	// as their CALLs come.
	Number  int    `json:"number,omitempty"`
	Op      string `json:"op"`
	Level   string `json:"level,omitempty"`
	Message string `json:"message,omitempty"`
	Stream  string `json:"stream,omitempty"`
	Key     string `json:"key,omitempty"`
	Value   []byte `json:"value,omitempty"` // base64 in JSON
	// Target and TimeoutMS are op "call"'s (emit and await a reply,
	// docs/worker-protocol.md "call"): the function or stream called,
	// as the spec's calls list names it, and how long to wait for the
	// reply (0: until the invocation's deadline).
	Target    string `json:"target,omitempty"`
	TimeoutMS int64  `json:"timeout_ms,omitempty"`
}

// ReplyMsg is the payload of REPLY.
type ReplyMsg struct {
	Seq         uint64 `json:"seq"`
	OK          bool   `json:"ok"`
	Error       string `json:"error,omitempty"`
	RemainingMS int64  `json:"remaining_ms,omitempty"`
	// Value and ErrorType answer op "call": the reply's value when OK,
	// else the failure's type (the callee's own error type, Timeout,
	// CircuitOpen, ...; empty when the call was refused before it was
	// sent, for example an undeclared target).
	Value     []byte `json:"value,omitempty"` // base64 in JSON
	ErrorType string `json:"error_type,omitempty"`
}
