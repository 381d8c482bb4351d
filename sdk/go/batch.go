package butter

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/butterfn/butter/sdk/go/proto"
)

// Batches (protocol 2, docs/worker-protocol.md "Batches"): the events of
// a BATCH frame run one at a time, in order, on one goroutine holding one
// unit of the worker's concurrency. Their results are held and written
// together in RESULTS frames: when the batch ends, once flushEvery results
// or 64 KiB are held, and every flushAfter while it runs, so that a slow
// event does not hold back the results of those before it. The first failure ends the batch:
// the events after it do not run.

// flushAfter is how long results may be held while a batch runs, and
// flushEvery how many: the pool sends outputs on as their results come,
// so results held too long leave it idle.
// The first results go sooner (flushFirst), to set the pool going.
const (
	flushAfter = time.Millisecond
	flushFirst = 8
	flushEvery = 32
)

// runBatch runs a batch's events; ctx carries the batch's deadline and
// ends early on CANCEL.
func (w *worker) runBatch(ctx context.Context, cancel context.CancelFunc, id uint32, events *proto.BatchReader) {
	defer w.wg.Done()
	defer cancel()
	w.sem <- struct{}{}
	defer func() { <-w.sem }()
	out := &batchOut{w: w, id: id, next: flushFirst}
	out.mu.Lock() // tick reads timer
	out.timer = time.AfterFunc(flushAfter, out.tick)
	out.mu.Unlock()
	var ev proto.BatchEvent
	for k := 0; events.Next(&ev); k++ {
		if ctx.Err() != nil {
			out.add(k, nil, &proto.Error{Type: proto.Skipped, Message: "the batch was cancelled before this event ran"})
			break
		}
		// Where the event is goes to the Call's fields, not to Meta
		// (Call.Event reads them): a map of more than 8 entries costs
		// twice a small one to build, for every event.
		n := len(ev.Meta)
		for _, p := range ev.Meta {
			if positionKey(bytesString(p.Key)) {
				n--
			}
		}
		call := &Call{Function: w.function, Meta: make(map[string]string, n), state: w.noState, w: w, id: id, index: k}
		for _, p := range ev.Meta {
			// The strings share the frame's payload, which nothing
			// writes to once read (the reader allocates each payload).
			k, v := bytesString(p.Key), bytesString(p.Value)
			if call.setPosition(k, v) {
				continue
			}
			call.Meta[k] = v
			if name, ok := strings.CutPrefix(k, "param."); ok {
				if call.Params == nil {
					call.Params = map[string]string{}
				}
				call.Params[name] = v
			}
		}
		res, err := safeCall(w.handler, call.context(ctx), ev.Input)
		if err == nil && len(res) > proto.MaxFrame-64 {
			err = fmt.Errorf("%w: an output of %d bytes is more than one frame carries (%d)", ErrPostconditionFailed, len(res), proto.MaxFrame-64)
		}
		if err != nil {
			e := typed(err)
			if e.Detail != "" {
				// RESULTS carry no detail: it goes to the function's log.
				fmt.Fprintf(os.Stderr, "%s\n%s\n", e.Message, e.Detail)
			}
			out.add(k, nil, e)
			break
		}
		out.add(k, res, nil)
	}
	w.mu.Lock()
	delete(w.calls, id)
	w.mu.Unlock()
	out.finish()
}

func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// frameHead is the size of a frame's head (length, type, id).
const frameHead = 9

// batchOut holds a batch's results: buf is one RESULTS frame being
// built, its heads written when it is sent.
type batchOut struct {
	w     *worker
	id    uint32
	timer *time.Timer

	mu    sync.Mutex
	buf   []byte
	first int // index of the first result held
	n     int // results held
	next  int // results to hold before writing them
	done  bool
}

// add holds event k's result: its output, or its error.
func (b *batchOut) add(k int, output []byte, e *proto.Error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.n == 0 {
		b.first = k
		b.buf = append(b.buf[:0], make([]byte, frameHead+proto.ResultsHeadSize)...)
	}
	// A large output goes in a frame of its own.
	if b.n > 0 && len(b.buf)+len(output) > proto.ChunkSize {
		b.flushLocked()
		b.first = k
		b.buf = append(b.buf[:0], make([]byte, frameHead+proto.ResultsHeadSize)...)
	}
	if e != nil {
		b.buf = proto.AppendResultError(b.buf, e)
	} else {
		b.buf = proto.AppendResultOK(b.buf, output)
	}
	b.n++
	if b.n >= b.next || len(b.buf) >= proto.ChunkSize {
		b.flushLocked()
	}
}

// tick writes the results held, every flushAfter until the batch ends.
func (b *batchOut) tick() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return
	}
	b.flushLocked()
	b.timer.Reset(flushAfter)
}

// finish writes the results still held.
func (b *batchOut) finish() {
	b.timer.Stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done = true
	b.flushLocked()
	b.buf = nil
}

func (b *batchOut) flushLocked() {
	if b.n == 0 {
		return
	}
	binary.BigEndian.PutUint32(b.buf, uint32(len(b.buf)-4))
	b.buf[4] = byte(proto.Results)
	binary.BigEndian.PutUint32(b.buf[5:], b.id)
	proto.PutResultsHead(b.buf[frameHead:], b.first, b.n)
	// An error writing means the pool is gone; the reader sees it too.
	_ = b.w.w.WriteFrames(b.buf)
	b.n, b.next = 0, flushEvery
	if cap(b.buf) > 4*proto.ChunkSize {
		b.buf = nil
	}
}
