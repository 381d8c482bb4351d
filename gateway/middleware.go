package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/butterfn/butter/names"
)

// Middleware. A route may list functions that see each request before
// its handler and the answer after it (Route.Middleware, the spec's
// middleware = [function.auth, function.audit]), as Funcatron's
// middleware does. They are ordinary functions called through their
// pools' invoke endpoint, so any runtime can be one; what they answer is
// read through the worker protocol's HEAD (the status and headers a
// handler sets, marked names.HeaderStatus by the pool).
//
// Each middleware is called twice per request, with the option phase:
//
//   - phase=request, in list order, after the route's auth, limits and
//     deadline and before the handler: no input (the body streams to the
//     handler alone), the request as the handler sees it (ctx.request).
//     A middleware that sets a status short-circuits: its status,
//     headers and output are the answer, and neither the later
//     middleware nor the handler run. Headers it sets without a status
//     are added to the request (replacing the client's of that name) for
//     the later middleware and the handler. A failure (a typed error, a
//     crash) is the answer, with its type's status.
//   - phase=response, in reverse order, for each middleware whose
//     request phase ran and did not short-circuit, once the answer's
//     status and headers are known and before its body: the option
//     status and the input {"status": 201, "headers": {...}}
//     (application/json). Headers it sets without a status are set on
//     the answer; a status replaces the answer with its own (status,
//     headers, output), which the middleware before it see; a failure
//     replaces it with the failure.
//
// The answer's body never passes through a middleware: it streams from
// the handler to the client as without middleware.

// The values of a middleware call's phase option (Butter-Option-Phase).
const (
	PhaseRequest  = "request"
	PhaseResponse = "response"
)

// maxMiddlewareOutput bounds the output of a middleware that does not
// short-circuit, which is read and dropped.
const maxMiddlewareOutput = 64 << 10

// poolHeaders are the headers of a pool's answer that are the pool's,
// not the handler's: a middleware's answer adds none of them.
var poolHeaders = map[string]bool{
	"Content-Length": true, "Content-Type": true, "Date": true, HeaderRequestID: true,
}

// requestForbidden are the request headers a middleware cannot set: the
// connection's, the body's, the client's credentials (a handler never
// sees those) and the call's identity and trace.
var requestForbidden = map[string]bool{
	"Host": true, "Content-Encoding": true, "Authorization": true, "Proxy-Authorization": true,
	"Cookie": true, http.CanonicalHeaderKey(HeaderAPIKey): true, "Traceparent": true, "Tracestate": true,
}

// middlewareHeader says whether a middleware may set header k on the
// request (forRequest) or on the answer.
func middlewareHeader(k string, forRequest bool) bool {
	ck := http.CanonicalHeaderKey(k)
	switch {
	case hopHeaders[ck], poolHeaders[ck], strings.HasPrefix(ck, "Butter-"):
		return false
	case forRequest:
		return !requestForbidden[ck] && !strings.HasPrefix(ck, "Ce-")
	}
	return true
}

// callMiddleware calls middleware s in phase, with base's headers and
// body as its input. It returns the pool's answer and the status the
// middleware set (0: none), or the call's failure.
func (g *Gateway) callMiddleware(ctx context.Context, rt *route, s step, base http.Header, phase string, status int, body []byte) (*http.Response, int, *CallError) {
	hdr := base.Clone()
	hdr.Set(names.HeaderOptionPrefix+"Phase", phase)
	if phase == PhaseResponse {
		hdr.Set(names.HeaderOptionPrefix+"Status", strconv.Itoa(status))
		hdr.Set("Content-Type", "application/json")
	}
	if d, ok := ctx.Deadline(); ok {
		hdr.Set(names.HeaderTimeout, timeoutHeader(d))
	}
	fail := func(e *CallError) (*http.Response, int, *CallError) {
		out := *e
		out.Message = fmt.Sprintf("middleware %s (%s phase): %s", s.Function, phase, e.Message)
		out.Step = -1
		return nil, 0, &out
	}
	resp, err := g.forward(ctx, rt.Project, s, hdr, bytes.NewReader(body), int64(len(body)))
	if err != nil {
		var ce *CallError
		switch {
		case errors.As(err, &ce):
			return fail(ce)
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return fail(callError(http.StatusGatewayTimeout, "Timeout", "the deadline passed before it answered"))
		case ctx.Err() != nil:
			return fail(callError(http.StatusBadGateway, "Canceled", "the client went away"))
		}
		return fail(callError(http.StatusBadGateway, "InstanceFailed", "the call on pool %q failed after it was sent (not retried): %v", s.pool, err))
	}
	mark := resp.Header.Get(names.HeaderStatus)
	if resp.StatusCode != http.StatusOK && mark == "" {
		ce := readPoolError(resp)
		_ = resp.Body.Close()
		return fail(ce)
	}
	set, _ := strconv.Atoi(mark)
	if set < 0 {
		set = 0
	}
	return resp, set, nil
}

// requestPhase runs the request phase of rt's middleware for r. It
// returns the headers for the handler's calls (base, with the headers
// the middleware added to the request), how many middleware ran it
// without a short-circuit or a failure, and either the answer of the one
// that short-circuited (with its status) or its failure.
func (g *Gateway) requestPhase(ctx context.Context, r *http.Request, rt *route, base http.Header) (http.Header, int, *http.Response, int, *CallError) {
	for i, s := range rt.middleware {
		resp, set, e := g.callMiddleware(ctx, rt, s, base, PhaseRequest, 0, nil)
		if e != nil {
			return base, i, nil, 0, e
		}
		if set > 0 {
			return base, i, resp, set, nil
		}
		added := false
		for k, vs := range resp.Header {
			if middlewareHeader(k, true) {
				r.Header[http.CanonicalHeaderKey(k)] = vs
				added = true
			}
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxMiddlewareOutput))
		_ = resp.Body.Close()
		if added {
			// The request the next calls see: its headers (the
			// CloudEvents extension ctx.request reads) and Accept.
			base = base.Clone()
			base.Set("Ce-Httpheaders", httpAttributes(r, rt)["ce_httpheaders"])
			if vs := r.Header.Values("Accept"); len(vs) > 0 {
				base["Accept"] = vs
			}
		}
	}
	return base, len(rt.middleware), nil, 0, nil
}

// writeShort answers with the answer of a middleware that short-circuited
// in its request phase, status set.
func (g *Gateway) writeShort(w *recorder, resp *http.Response, set int) {
	defer resp.Body.Close()
	h := w.Header()
	for k, vs := range resp.Header {
		if k == "Content-Type" || middlewareHeader(k, false) {
			h[k] = vs
		}
	}
	w.WriteHeader(set)
	if w.replaced {
		return
	}
	readErr, writeErr := copyFlush(w, http.NewResponseController(w), resp.Body)
	switch {
	case writeErr != nil && !errors.Is(writeErr, errReplaced):
		w.failure = "client gone: " + writeErr.Error()
	case readErr != nil:
		w.failure = "the answer of a middleware broke off: " + readErr.Error()
	case resp.Trailer.Get(names.HeaderError) != "":
		w.failure = resp.Trailer.Get(names.HeaderError)
	}
}

// replacement is an answer that replaces the route's in the response
// phase: a middleware's, or a middleware's failure.
type replacement struct {
	status  int
	header  http.Header
	body    io.ReadCloser
	failure string // why, for the access log, when it is a failure
}

func (rp *replacement) close() {
	if rp != nil {
		_ = rp.body.Close()
	}
}

// responsePhase runs the response phase of the middleware whose request
// phase ran.
type responsePhase struct {
	g       *Gateway
	rt      *route
	id      string
	base    http.Header
	mw      []step
	ctx     context.Context // the request's; its cancellation is ignored
	timeout time.Duration
}

// run runs the response phase for an answer of status with headers h,
// just before its head goes out. Headers the middleware set are set on
// h; a replacement, when one replaced the answer, is returned, with done
// to call once it is written.
func (p *responsePhase) run(status int, h http.Header) (rep *replacement, done func()) {
	// The route's deadline may have passed (a 504 is an answer too), and
	// the client may be gone: the phase gets a deadline of its own.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.ctx), p.timeout)
	for i := len(p.mw) - 1; i >= 0; i-- {
		st, hh := status, h
		if rep != nil {
			st, hh = rep.status, rep.header
		}
		doc, _ := json.Marshal(map[string]any{"status": st, "headers": visibleHeaders(hh)})
		resp, set, e := p.g.callMiddleware(ctx, p.rt, p.mw[i], p.base, PhaseResponse, st, doc)
		switch {
		case e != nil:
			rep.close()
			b, _ := json.Marshal(errorBody{Error: e.Message, Type: e.Type, RequestID: p.id, Details: e.Details})
			hdr := http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}}
			rep = &replacement{status: e.Status, header: hdr, body: io.NopCloser(bytes.NewReader(append(b, '\n'))), failure: e.Error()}
		case set > 0:
			rep.close()
			hdr := http.Header{}
			for k, vs := range resp.Header {
				if k == "Content-Type" || middlewareHeader(k, false) {
					hdr[k] = vs
				}
			}
			rep = &replacement{status: set, header: hdr, body: resp.Body}
		default:
			for k, vs := range resp.Header {
				if middlewareHeader(k, false) {
					hh[http.CanonicalHeaderKey(k)] = vs
				}
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxMiddlewareOutput))
			_ = resp.Body.Close()
		}
	}
	if rep == nil {
		cancel()
		return nil, nil
	}
	return rep, func() { rep.close(); cancel() }
}

// visibleHeaders are the headers of an answer as a middleware's response
// phase sees them: without the hop-by-hop ones.
func visibleHeaders(h http.Header) http.Header {
	out := http.Header{}
	for k, vs := range h {
		if !hopHeaders[k] || k == "Content-Length" {
			out[k] = vs
		}
	}
	return out
}

// errReplaced is what writes of an answer that the response phase
// replaced return: the client got the middleware's instead.
var errReplaced = errors.New("the answer was replaced by a middleware's")

// keepOnReplace are the gateway's own headers, which a replaced answer
// keeps.
var keepOnReplace = map[string]bool{
	HeaderRequestID: true, "Vary": true, "Access-Control-Allow-Origin": true, "Access-Control-Expose-Headers": true,
}

// writeReplacement writes rp in place of the answer whose head was about
// to go out.
func (r *recorder) writeReplacement(rp *replacement, done func()) {
	defer done()
	h := r.Header()
	for k := range h {
		if !keepOnReplace[k] {
			delete(h, k)
		}
	}
	for k, vs := range rp.header {
		h[k] = vs
	}
	if rp.failure != "" {
		r.failure = rp.failure
	}
	r.status = rp.status
	r.ResponseWriter.WriteHeader(rp.status)
	rc := http.NewResponseController(r.ResponseWriter)
	buf := make([]byte, 32<<10)
	for {
		n, err := rp.body.Read(buf)
		if n > 0 {
			m, werr := r.ResponseWriter.Write(buf[:n])
			r.bytes += int64(m)
			if werr != nil {
				r.failure = "client gone: " + werr.Error()
				return
			}
			_ = rc.Flush()
		}
		if err != nil {
			if err != io.EOF {
				r.failure = "the answer of a middleware broke off: " + err.Error()
			}
			return
		}
	}
}
