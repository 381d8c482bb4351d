package pool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/butterfn/butter/names"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/butterfn/butter/sdk/go/proto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/http/httpguts"
)

// The invoke endpoint's request headers are names.HeaderTimeout,
// names.HeaderDeadline, names.HeaderOptionPrefix and names.HeaderParamPrefix
// (a parameter reaches the function lower-cased, as meta param.<name>:
// HTTP does not keep the case of header names); a failure after the
// output has started is the names.HeaderError trailer.

// headerRequestID carries a call's request id: the gateway sends it, and
// the pool answers with it (one it made when the caller sent none) and
// logs a failure with it. The gateway's name for it is
// gateway.HeaderRequestID.
const headerRequestID = "X-Request-Id"

// Handler returns the pool's HTTP API:
//
//	POST /v1/invoke/{function}   stream the body in, the output out; headers
//	                             Butter-Timeout, Butter-Deadline, Butter-Option-*,
//	                             Butter-Param-*, Butter-State-Key
//	GET  /v1/functions           the hosted functions
//	GET  /v1/health              200 while the pool serves (203 when it has
//	                             warnings); 503 naming each
//	                             function that cannot start the instances it
//	                             needs (its min, or one when min is 0)
//	                             Both answers carry "warnings": what the pool
//	                             cannot enforce (an unconfined function,
//	                             limits that are off), [] when none.
//	GET  /metrics                Prometheus metrics
func (p *Pool) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(names.InvokePattern, p.serveInvoke)
	mux.HandleFunc("GET /v1/functions", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"project": p.cfg.Project, "revision": p.cfg.Revision, "functions": p.Functions(), "warnings": p.Warnings()})
	})
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		if p.ctx == nil || p.ctx.Err() != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "stopping"})
			return
		}
		if bad := p.Unhealthy(); len(bad) > 0 {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unhealthy", "functions": bad, "warnings": p.Warnings()})
			return
		}
		// Healthy with warnings answers 203: still a passing check, and
		// Nomad keeps the body of a passing check only when its status
		// is not 200, so the control plane can show the warnings.
		code := http.StatusOK
		if len(p.Warnings()) > 0 {
			code = http.StatusNonAuthoritativeInfo
		}
		writeJSON(w, code, map[string]any{"status": "ok", "functions": len(p.fns), "warnings": p.Warnings()})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.opts.metrics.Registry, promhttp.HandlerOpts{}))
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Output of the invoke endpoint. A call that ends having written at most
// outputBufferSize bytes, none of them older than outputHold, is answered
// whole: Content-Length and no trailer, in one write. Any other output
// streams: the status goes out with the first bytes, every write is
// flushed, and a failure after that is reported in the Butter-Error
// trailer. Small answers thus cost one write instead of three (headers,
// a chunk, the last chunk with the trailer), while a slow stream still
// reaches the caller within outputHold of each write.
const (
	// outputBufferSize is the most output held back before it streams.
	outputBufferSize = 32 << 10
	// outputHold is how long the first output byte may be held back
	// waiting for the call to end.
	outputHold = 2 * time.Millisecond
	// maxWholeInput is the longest request body, by its Content-Length,
	// read whole before the call starts; longer or chunked bodies stream
	// to the function as they come.
	maxWholeInput = 32 << 10
)

// callOutput holds a call's output back as described above. Writes come
// from the runtime's goroutines and the holder's, so mu serializes every
// use of the ResponseWriter until the handler takes it back (end).
type callOutput struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	holds *holder

	mu        sync.Mutex
	head      *proto.HeadMsg // the function's status and headers, if it set them
	buf       []byte
	holding   bool // in holds: the first output is held back
	streaming bool // the status is sent: output flows as it comes
	ended     bool // the handler answers: nothing else may write
}

func (o *callOutput) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ended {
		return 0, errors.New("write after the call ended")
	}
	if !o.streaming {
		if len(o.buf)+len(b) <= outputBufferSize {
			if !o.holding && len(b) > 0 {
				o.holding = true
				o.holds.add(o)
			}
			o.buf = append(o.buf, b...)
			return len(b), nil
		}
		if err := o.stream(); err != nil {
			return 0, err
		}
	}
	n, err := o.w.Write(b)
	if err == nil {
		_ = o.rc.Flush()
	}
	return n, err
}

// setHead keeps the status and headers the function set, for the answer's
// first bytes (stream) or its whole answer (serveInvoke).
func (o *callOutput) setHead(h proto.HeadMsg) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.ended && !o.streaming {
		o.head = &h
	}
}

// writeHead puts the function's headers on w and returns the answer's
// status: the function's, or 200. It marks the answer with
// names.HeaderStatus: the status the function set, or 0 when it set
// headers only. A status outside 200-599 is taken as not set; headers a
// handler may not set (hop-by-hop ones, Content-Length, X-Request-Id,
// Butter-*, malformed ones) are dropped.
func writeHead(w http.ResponseWriter, head *proto.HeadMsg) int {
	if head == nil {
		return http.StatusOK
	}
	status, set := head.Status, head.Status
	if status < 200 || status > 599 {
		status, set = http.StatusOK, 0
	}
	h := w.Header()
	for k, vs := range head.Headers {
		ck := http.CanonicalHeaderKey(k)
		if !httpguts.ValidHeaderFieldName(k) || handlerForbidden[ck] || strings.HasPrefix(ck, "Butter-") {
			continue
		}
		for _, v := range vs {
			if httpguts.ValidHeaderFieldValue(v) {
				h.Add(ck, v)
			}
		}
	}
	h.Set(names.HeaderStatus, strconv.Itoa(set))
	return status
}

// handlerForbidden are the response headers a function cannot set: the
// connection's (RFC 9110 7.6.1), the framing, and the request id.
var handlerForbidden = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Proxy-Authenticate": true,
	"Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Content-Length": true,
	headerRequestID: true,
}

// hold ends the hold of the first output: the call is slow, so its output
// streams from now on.
func (o *callOutput) hold() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.ended && !o.streaming {
		// A failed write is the client gone: the next Write reports it.
		_ = o.stream()
	}
}

// stream sends the status, announcing the Butter-Error trailer, and the
// output held so far; o.mu must be held.
func (o *callOutput) stream() error {
	o.streaming = true
	o.release()
	o.w.Header().Set("Trailer", names.HeaderError)
	o.w.WriteHeader(writeHead(o.w, o.head))
	if len(o.buf) > 0 {
		_, err := o.w.Write(o.buf)
		o.buf = nil
		if err != nil {
			return err
		}
	}
	_ = o.rc.Flush()
	return nil
}

// release takes the output out of the holder; o.mu must be held.
func (o *callOutput) release() {
	if o.holding {
		o.holding = false
		o.holds.remove(o)
	}
}

// end stops the hold and hands the ResponseWriter back to the handler. It
// reports whether the output is streaming, and returns what is held back
// otherwise.
func (o *callOutput) end() (streaming bool, held []byte, head *proto.HeadMsg) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ended = true
	o.release()
	return o.streaming, o.buf, o.head
}

// holder ends the hold of a pool's held outputs once they are outputHold
// old, with one timer for them all. A timer per call, armed by its first
// write and stopped when it ends 50 µs later, cost a wakeup of a sleeping
// thread per call (adding a timer sooner than any other wakes the network
// poller, bench/NOTES.md "Overhead, gateway hop"). The shared timer is not
// stopped when a call ends: it fires at most once per outputHold while
// calls come, and stops once none is held.
//
// Lock order: a callOutput's mu, then the holder's.
type holder struct {
	mu    sync.Mutex
	held  map[*callOutput]time.Time // the end of each output's hold
	timer *time.Timer
	armed bool // the timer fires before the end of every hold in held
	// window replaces outputHold when set: tests set it (export_test.go)
	// to choose the branch, whole or streamed, instead of racing 2ms.
	window time.Duration
}

func (h *holder) add(o *callOutput) {
	h.mu.Lock()
	defer h.mu.Unlock()
	hold := outputHold
	if h.window > 0 {
		hold = h.window
	}
	until := time.Now().Add(hold)
	if h.held == nil {
		h.held = map[*callOutput]time.Time{}
	}
	h.held[o] = until
	if h.armed {
		return // for an earlier hold, so before this one ends
	}
	h.armed = true
	if h.timer == nil {
		h.timer = time.AfterFunc(hold, h.expire)
	} else {
		h.timer.Reset(hold)
	}
}

func (h *holder) remove(o *callOutput) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.held, o)
}

// expire streams the outputs whose hold ended, and arms the timer for the
// next end while any output is still held.
func (h *holder) expire() {
	now := time.Now()
	var due []*callOutput
	var next time.Duration
	h.mu.Lock()
	h.armed = false
	for o, until := range h.held {
		if left := until.Sub(now); left <= 0 {
			due = append(due, o)
			delete(h.held, o)
		} else if next == 0 || left < next {
			next = left
		}
	}
	if next > 0 {
		h.armed = true
		h.timer.Reset(next)
	}
	h.mu.Unlock()
	for _, o := range due {
		// Each on its own, as with a timer each: a write to a client
		// that does not read must not hold back the others.
		go o.hold()
	}
}

func (p *Pool) serveInvoke(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("function")
	id := r.Header.Get(headerRequestID)
	if id == "" {
		id = newRequestID()
	}
	w.Header().Set(headerRequestID, id)
	errorBody := func(typ, msg string) map[string]any {
		return map[string]any{"error": map[string]string{"type": typ, "message": msg}, "request_id": id}
	}
	if _, ok := p.fns[name]; !ok {
		writeJSON(w, http.StatusNotFound, errorBody("NotFound", fmt.Sprintf("this pool hosts no function %q; it hosts %s", name, strings.Join(p.Functions(), ", "))))
		return
	}
	c := &Call{Input: r.Body, Options: map[string]string{}, Meta: map[string]string{}}
	if r.ContentLength >= 0 {
		c.Meta["content-length"] = strconv.FormatInt(r.ContentLength, 10)
	}
	if v := r.Header.Get(names.HeaderTimeout); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			writeJSON(w, http.StatusBadRequest, errorBody("BadRequest", fmt.Sprintf("header %s: %q is not a positive duration such as 1.5s", names.HeaderTimeout, v)))
			return
		}
		c.Deadline = time.Now().Add(d)
	}
	if v := r.Header.Get(names.HeaderDeadline); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody("BadRequest", fmt.Sprintf("header %s: %q is not an RFC 3339 time", names.HeaderDeadline, v)))
			return
		}
		if c.Deadline.IsZero() || t.Before(c.Deadline) {
			c.Deadline = t
		}
	}
	for k, vs := range r.Header {
		lk := strings.ToLower(k)
		switch {
		case strings.HasPrefix(k, names.HeaderOptionPrefix):
			c.Options[strings.ToLower(strings.TrimPrefix(k, names.HeaderOptionPrefix))] = vs[0]
		case strings.HasPrefix(lk, strings.ToLower(names.HeaderParamPrefix)) && len(lk) > len(names.HeaderParamPrefix):
			c.Meta["param."+lk[len(names.HeaderParamPrefix):]] = vs[0]
		case lk == "content-type" || lk == "traceparent" || lk == "tracestate" || strings.HasPrefix(lk, "ce-"):
			c.Meta[lk] = vs[0]
		}
	}
	httpMeta(c.Meta, id)
	ctx, span := p.httpSpan(r.Context(), name, id, c.Meta)
	var err error
	defer func() { endSpan(span, err) }()
	c.StateKey = r.Header.Get(names.HeaderStateKey)
	if n := r.ContentLength; n > 0 && n <= maxWholeInput {
		// A small body of declared length is read whole: the runtime
		// then sends it to the worker with the call, in one write and
		// without a goroutine to stream it (plugins/runtime/process.go).
		b := make([]byte, n)
		if _, err := io.ReadFull(r.Body, b); err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody("BadRequest", fmt.Sprintf("reading the request body failed: %v", err)))
			return
		}
		c.Input = bytes.NewReader(b)
	}
	// Read the body while the answer streams: without full duplex, Go's
	// server discards up to 256 KiB of a chunked body once the handler
	// writes, and a pipeline step would lose input. Closing the body
	// before returning avoids golang/go#68560 in full-duplex mode.
	_ = http.NewResponseController(w).EnableFullDuplex()
	defer r.Body.Close()
	out := &callOutput{w: w, rc: http.NewResponseController(w), holds: &p.holds}
	c.Output = out
	c.Head = out.setHead
	ef := &emitFailure{}
	c.Calls = p.httpCalls(p.fns[name], p.httpOrigin(p.fns[name], id, c.Meta), ef)
	err = ef.or(p.Invoke(ctx, name, c))
	streaming, held, head := out.end()
	if err == nil {
		if !streaming {
			status := writeHead(w, head)
			w.Header().Set("Content-Length", strconv.Itoa(len(held)))
			w.WriteHeader(status)
			_, _ = w.Write(held)
		}
		return
	}
	// The caller gets the type and a short message; the log gets the
	// whole message and its detail (errors.go).
	f := failureOf(name, err)
	if p.stderrLogged(name) {
		f.Detail = "" // in the function's log already
	}
	f.log(p.fns[name].log, "request_id", id)
	if !streaming && len(held) > 0 {
		// The call failed after it wrote output: that output goes out
		// as if it had streamed, with the failure in the trailer.
		w.Header().Set("Trailer", names.HeaderError)
		w.WriteHeader(writeHead(w, head))
		_, _ = w.Write(held)
		streaming = true
	}
	if streaming {
		w.Header().Set(names.HeaderError, f.Type+": "+f.Message)
		return
	}
	body := errorBody(f.Type, f.Message)
	if len(f.Violations) > 0 {
		// Each violation whole: where in the value, and what is wrong.
		body["details"] = f.Violations
	}
	writeJSON(w, f.Status, body)
}
