package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/butterfn/butter/names"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// forward sends one step's call to an endpoint of its pool and returns
// the pool's response once its headers arrive; the request body keeps
// streaming while the response is read. A body in memory (a
// *bytes.Reader of length bytes, see chain.run) goes through the gateway's
// own client (poolclient.go), any other through net/http's Transport. The caller closes the response
// body, which ends the request's count as outstanding.
//
// Retries: when connecting to the chosen endpoint fails, nothing was sent
// and the next-best endpoint is tried, each endpoint at most once. Any
// later failure (a reset, a pool that dies mid-call) is returned as is:
// the function may have run, and the body is spent.
func (g *Gateway) forward(ctx context.Context, project string, s step, hdr http.Header, body io.Reader, length int64) (*http.Response, error) {
	eps := g.resolver.Endpoints(project, s.pool)
	if g.wake != nil && (len(eps) == 0 || g.wake.waking(project, s.pool)) {
		// No allocation, or one that is starting: hold the call while
		// the pool wakes (wake.go).
		var err error
		if eps, err = g.wake.hold(ctx, project, s.pool); err != nil {
			return nil, err
		}
	}
	if len(eps) == 0 {
		return nil, callError(http.StatusServiceUnavailable, "Unavailable",
			"no endpoint of pool %q of project %q is known, so function %s cannot be reached: is the pool running (nomad job status %s)?",
			s.pool, project, s.Function, names.JobID(project))
	}
	if rev, pinned := revisionOf(ctx); rev != "" {
		// A canary: the call goes to its revision's allocations
		// (canary.go); one that did not ask for the revision goes to any
		// when that revision has none.
		if rr, ok := g.resolver.(RevisionResolver); ok {
			if reps := rr.RevisionEndpoints(project, s.pool, rev); len(reps) > 0 {
				eps = reps
			} else if pinned {
				return nil, callError(http.StatusServiceUnavailable, "Unavailable",
					"no endpoint of revision %s of pool %q of project %q is known: its allocations are starting or stopping (nomad job status %s)",
					rev, s.pool, project, names.JobID(project))
			}
		}
	}
	tried := map[string]bool{}
	var lastErr error
	for {
		addr := g.lb.pick(eps, tried)
		if addr == "" {
			return nil, callError(http.StatusServiceUnavailable, "Unavailable",
				"could not connect to any of the %d endpoints of pool %q of project %q (last: %v)", len(eps), s.pool, project, lastErr)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+names.InvokePath(url.PathEscape(s.Function)), nil)
		if err != nil {
			g.lb.release(addr)
			return nil, err
		}
		req.Header = hdr
		roundTrip := g.client.roundTrip
		switch br, inMemory := body.(*bytes.Reader); {
		case length == 0 || body == nil:
			req.Body, req.ContentLength = http.NoBody, 0
		case inMemory && int64(br.Len()) == length:
			// A failed dial leaves the reader unread: the body outlives
			// an attempt.
			req.Body, req.ContentLength = io.NopCloser(body), length
		default:
			// A body that streams is written by the transport's write
			// loop while the answer streams back. The transport closes
			// a request body when it is done with it, even after a
			// failed dial: the body outlives an attempt.
			req.Body, req.ContentLength = io.NopCloser(body), length
			roundTrip = g.transport.RoundTrip
		}
		resp, err := roundTrip(req)
		if err != nil {
			g.lb.release(addr)
			if ctx.Err() == nil && isDialError(err) {
				ejected := g.lb.eject(addr)
				g.metrics.dialFailures.Inc()
				g.log.Warn("could not connect to the pool endpoint (refused or timed out): nothing was sent; trying another", "endpoint", addr, "project", project, "pool", s.pool, "passed_over_for", ejected, "error", err)
				tried[addr] = true
				lastErr = err
				continue
			}
			return nil, err
		}
		g.lb.connected(addr)
		resp.Body = &releaseBody{ReadCloser: resp.Body, release: func() { g.lb.release(addr) }}
		if g.faas != nil {
			g.faas.count(project, s.Function) // for GET /system/functions
		}
		return resp, nil
	}
}

// releaseBody releases its endpoint once, on Close.
type releaseBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (b *releaseBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
}

// hopHeaders are not forwarded from a pool's response (RFC 9110 7.6.1),
// nor Content-Length: a streamed answer announces a trailer, so it goes
// out chunked, and a whole one gets the length the gateway read.
var hopHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Proxy-Authenticate": true,
	"Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Content-Length": true,
}

// maxWhole is the longest answer of a pool the gateway reads whole
// before answering (see respondWhole). The pool answers whole up to
// 32 KiB (plugins/pool/http.go).
const maxWhole = 64 << 10

// respond streams a successful last step to the client: its status and
// headers, its body flushed as it arrives, and its trailers. A failure
// after the first byte is reported in the Butter-Error trailer, as the
// pool does. A single step the pool answered whole is answered whole
// (respondWhole).
func (g *Gateway) respond(ctx context.Context, w *recorder, resp *http.Response, c *chain) {
	if n := resp.ContentLength; len(c.steps) == 1 && n >= 0 && n <= maxWhole && len(resp.Trailer) == 0 {
		g.respondWhole(ctx, w, resp, c)
		return
	}
	h := w.Header()
	status := c.head(h, resp)
	trailers := []string{names.HeaderError}
	for k := range resp.Trailer {
		if k != names.HeaderError {
			trailers = append(trailers, k)
		}
	}
	h["Trailer"] = []string{strings.Join(trailers, ", ")}
	w.WriteHeader(status)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	readErr, writeErr := copyFlush(w, rc, resp.Body)
	if writeErr != nil {
		if !errors.Is(writeErr, errReplaced) {
			// The client went away: nothing left to tell it.
			w.failure = "client gone: " + writeErr.Error()
		}
		return
	}
	if f := c.failure(ctx, readErr); f != nil {
		w.failure = f.Error()
		h.Set(names.HeaderError, f.Type+": "+c.describe(f))
		return
	}
	for k, vs := range resp.Trailer {
		if len(vs) > 0 {
			h[k] = vs
		}
	}
	if e := resp.Trailer.Get(names.HeaderError); e != "" {
		w.failure = e
	}
}

// respondWhole answers a single step whose pool answered with a
// Content-Length and no trailer: the call had ended, so the answer is read
// whole and sent with its length, in one write. A body that breaks off
// becomes an error status instead of a Butter-Error trailer, since
// nothing was sent yet.
func (g *Gateway) respondWhole(ctx context.Context, w *recorder, resp *http.Response, c *chain) {
	body, readErr := readWhole(resp.Body, resp.ContentLength)
	if f := c.failure(ctx, readErr); f != nil {
		w.failure = f.Error()
		writeError(w, f.Status, f.Type, w.Header().Get(HeaderRequestID), c.describe(f))
		return
	}
	h := w.Header()
	status := c.head(h, resp)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if _, err := w.Write(body); err != nil && !errors.Is(err, errReplaced) {
		w.failure = "client gone: " + err.Error()
	}
}

// readWhole reads a body of n bytes to its end. Reading up to io.EOF, not
// just n bytes, lets the transport reuse the connection.
func readWhole(r io.Reader, n int64) ([]byte, error) {
	buf := make([]byte, n+1)
	m := 0
	for {
		k, err := r.Read(buf[m:])
		m += k
		switch {
		case err == io.EOF:
			return buf[:m], nil
		case err != nil:
			return buf[:m], err
		case m == len(buf):
			return buf[:m], fmt.Errorf("the body is longer than its Content-Length of %d bytes", n)
		}
	}
}

// copyHeader copies a pool's response headers but the hop-by-hop ones,
// keeping the gateway's request id.
func copyHeader(h, from http.Header) {
	id := h.Get(HeaderRequestID)
	for k, vs := range from {
		if !hopHeaders[k] {
			h[k] = vs
		}
	}
	h.Set(HeaderRequestID, id)
}

// copyFlush copies src to w, flushing after every write so that output
// reaches the client as the function produces it. It tells read errors
// from write errors.
func copyFlush(w io.Writer, rc *http.ResponseController, src io.Reader) (readErr, writeErr error) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil, werr
			}
			if ferr := rc.Flush(); ferr != nil && !errors.Is(ferr, http.ErrNotSupported) {
				return nil, ferr
			}
		}
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			return err, nil
		}
	}
}

// recorder records the status and the size of a response for the access
// log and the metrics. Unwrap lets http.ResponseController reach the
// connection's Flush and full-duplex switches.
//
// beforeHead, when set, runs once, when the answer's head is about to go
// out: the response phase of a route's middleware (middleware.go), which
// may set headers on it or replace it. Writes of a replaced answer are
// dropped and return errReplaced.
type recorder struct {
	http.ResponseWriter
	status  int
	bytes   int64
	failure string // why the call failed, for the log

	beforeHead func(status int, h http.Header) (*replacement, func())
	replaced   bool
}

func (r *recorder) WriteHeader(code int) {
	if r.replaced {
		return
	}
	if r.status == 0 && r.beforeHead != nil {
		hook := r.beforeHead
		r.beforeHead = nil
		if rp, done := hook(code, r.Header()); rp != nil {
			r.replaced = true
			r.writeReplacement(rp, done)
			return
		}
	}
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	if r.replaced {
		return 0, errReplaced
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// timeoutHeader renders the time left before deadline as Butter-Timeout.
func timeoutHeader(deadline time.Time) string {
	left := time.Until(deadline).Round(time.Millisecond)
	if left < time.Millisecond {
		left = time.Millisecond
	}
	return left.String()
}
