package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/names"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/http/httpguts"
)

// serveRoute serves one request of a route, in this order: request id
// and trace context, CORS headers, auth (401/403), the route's rate limit
// and then the project's quota (429),
// declared body size (413), deadline, the request phase of the route's
// middleware (middleware.go), then the call in the route's mode; the
// middleware's response phase runs as the answer's head goes out.
// Every request is logged and counted once it is answered.
func (g *Gateway) serveRoute(w http.ResponseWriter, r *http.Request, rt *route) {
	start := time.Now()
	id := requestID(r)
	rec := &recorder{ResponseWriter: w}
	rec.Header().Set(HeaderRequestID, id)
	r, span := routeSpan(r, rt, id)
	var observeCohort func(status int, d time.Duration) // during a canary (canary.go)
	defer func() {
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		endRouteSpan(span, status, rec.failure)
		d := time.Since(start)
		rt.observe(g.metrics, status, d)
		if observeCohort != nil {
			observeCohort(status, d)
		}
		if !g.log.IsInfo() {
			return // no access log: skip building its line
		}
		args := []any{"method", r.Method, "path", r.URL.Path, "route", rt.pattern, "project", rt.Project,
			"function", rt.target(), "mode", rt.Mode, "status", status, "bytes", rec.bytes,
			"duration", d, "request_id", id}
		if rec.failure != "" {
			args = append(args, "error", rec.failure)
		}
		g.log.Info("request", args...)
	}()
	fail := func(e *CallError) {
		rec.failure = e.Error()
		writeError(rec, e.Status, e.Type, id, e.Message)
	}

	if len(rt.CORSOrigins) > 0 {
		rec.Header().Add("Vary", "Origin")
		if origin := r.Header.Get("Origin"); rt.allowsOrigin(origin) {
			rec.Header().Set("Access-Control-Allow-Origin", origin)
			rec.Header().Set("Access-Control-Expose-Headers", strings.Join([]string{HeaderRequestID, names.HeaderError, "Location", "Retry-After"}, ", "))
		}
	}
	if e := g.authorize(r, rt); e != nil {
		if e.Status == http.StatusUnauthorized {
			rec.Header().Set("WWW-Authenticate", `Bearer realm="butter"`)
		}
		fail(e)
		return
	}
	if rt.limiter != nil && !rt.limiter.Allow() {
		rec.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(1/float64(rt.limiter.Limit())))))
		fail(callError(http.StatusTooManyRequests, "RateLimited", "route %s takes at most %g requests per second (burst %d): retry after Retry-After seconds", rt.pattern, rt.Rate, rt.limiter.Burst()))
		return
	}
	if e := g.overQuota(rec, rt.Project); e != nil {
		fail(e)
		return
	}
	// A queued or async body larger than a broker record goes direct
	// (queuedBody, oversize.go): only the route's own max_body refuses.
	limit := rt.MaxBody
	if limit > 0 && r.ContentLength > limit {
		fail(callError(http.StatusRequestEntityTooLarge, "PayloadTooLarge", "the request body of %d bytes is larger than this route's limit of %d bytes (max_body)", r.ContentLength, limit))
		return
	}
	ctx := r.Context()
	if split, rev, cohort, e, ok := g.pickRevision(r, rt.Project); e != nil {
		fail(e)
		return
	} else if ok {
		ctx = withRevision(ctx, rev, r.Header.Get(api.HeaderRevision) != "")
		rec.Header().Set(api.HeaderRevision, rev)
		if cohort != cohortNone && rt.Mode == ModeDirect {
			observeCohort = func(status int, d time.Duration) { g.observeCohort(rt.Project, split, cohort, status, d) }
		}
	}
	timeout := rt.Timeout
	if v := r.Header.Get(names.HeaderTimeout); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			fail(callError(http.StatusBadRequest, "BadRequest", "header %s: %q is not a positive duration such as 1.5s", names.HeaderTimeout, v))
			return
		}
		// A caller may shorten the route's deadline, never extend it.
		if timeout == 0 || d < timeout {
			timeout = d
		}
	}
	if timeout == 0 && rt.Mode != ModeDirect {
		timeout = g.opts.queuedTimeout
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = start.Add(timeout)
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	// Serializers (serialize.go): the function sees JSON.
	var conv *codec
	if rt.JSONOutput {
		rec.Header().Add("Vary", "Accept")
	}
	if rt.JSONInput || rt.JSONOutput {
		var e *CallError
		if conv, limit, e = g.negotiate(r, rt, limit); e != nil {
			fail(e)
			return
		}
	}
	base, perr := g.baseHeader(r, rt, id)
	if perr != nil {
		fail(perr)
		return
	}
	if len(rt.middleware) > 0 {
		var ran, set int
		var short *http.Response
		var e *CallError
		base, ran, short, set, e = g.requestPhase(ctx, r, rt, base)
		if ran > 0 {
			phase := &responsePhase{g: g, rt: rt, id: id, base: base, mw: rt.middleware[:ran], ctx: ctx, timeout: timeout}
			if phase.timeout <= 0 {
				phase.timeout = g.opts.queuedTimeout
			}
			rec.beforeHead = phase.run
		}
		switch {
		case e != nil:
			rec.failure = e.Error()
			writeCallError(rec, e, id, e.Message)
			return
		case short != nil:
			g.writeShort(rec, short, set)
			return
		}
	}
	in := &inputBody{r: r.Body, limit: limit}
	switch rt.Mode {
	case ModeQueued, ModeAsync:
		body, direct, e := g.queuedBody(in, r.ContentLength)
		switch {
		case e != nil:
			fail(e)
			return
		case !direct:
			g.serveQueued(broker.WithHeaders(ctx, queuedHeaders(r, rt, base)), rec, rt, id, body, deadline, conv, fail)
			return
		case rt.Mode == ModeAsync:
			g.serveAsyncDirect(rec, rt, id, base, r.Header.Get("Content-Type"), in, deadline, fail)
			return
		}
		rec.Header().Set(HeaderMode, ModeDirect)
	}
	// The pools stream output while they read input (cat): let the
	// client's body and our response flow at once on HTTP/1.
	rc := http.NewResponseController(rec)
	if rc.EnableFullDuplex() == nil {
		// In full duplex, Go's server panics if the handler returns with
		// the body unread (golang/go#68560): close it here, after the
		// answer is flushed. Close waits for a read in progress.
		defer func() {
			_ = rc.Flush()
			_ = r.Body.Close()
		}()
	}
	c := &chain{g: g, project: rt.Project, steps: rt.steps, base: base, contentType: r.Header.Get("Content-Type"),
		in: in, length: r.ContentLength, deadline: deadline}
	resp, err := c.run(ctx)
	if err != nil {
		e := err.(*CallError)
		rec.failure = e.Error()
		writeCallError(rec, e, id, c.describe(e))
		c.close()
		return
	}
	defer c.close()
	if conv != nil {
		g.respondConverted(ctx, rec, resp, c, conv)
		return
	}
	g.respond(ctx, rec, resp, c)
}

// baseHeader builds the headers every step of the call gets: the request
// id, the trace context, the client's CloudEvents and Accept headers, and
// the route's path parameters and the query parameters as
// Butter-Param-<name> (a path parameter wins over a query parameter of
// the same name). Nothing else of the client's reaches a pool: not its
// credentials, nor Butter-* headers it may have set.
func (g *Gateway) baseHeader(r *http.Request, rt *route, id string) (http.Header, *CallError) {
	h := http.Header{}
	h.Set(HeaderRequestID, id)
	if !injectSpan(r.Context(), h) {
		injectTrace(r.Header, h)
	}
	for k, vs := range r.Header {
		if lk := strings.ToLower(k); strings.HasPrefix(lk, "ce-") && !strings.HasPrefix(lk, "ce-http") || lk == "accept" {
			h[k] = vs
		}
	}
	// The request itself, as CloudEvents extensions (docs/events.md):
	// the gateway's, never the client's.
	for k, v := range httpAttributes(r, rt) {
		h.Set("Ce-"+strings.TrimPrefix(k, "ce_"), v)
	}
	set := func(name, value, what string) *CallError {
		if !httpguts.ValidHeaderFieldName(names.HeaderParamPrefix + name) {
			return nil // a name no header can carry is left out
		}
		if !httpguts.ValidHeaderFieldValue(value) {
			return callError(http.StatusBadRequest, "BadRequest", "%s %q holds control characters: encode them", what, name)
		}
		h.Set(names.HeaderParamPrefix+name, value)
		return nil
	}
	if !rt.adhoc {
		for _, name := range pathParams(rt.Path) {
			if e := set(name, r.PathValue(name), "path parameter"); e != nil {
				return nil, e
			}
		}
	}
	q := r.URL.Query()
	keys := make([]string, 0, len(q))
	for name := range q {
		keys = append(keys, name)
	}
	sort.Strings(keys)
	for _, name := range keys {
		if h.Get(names.HeaderParamPrefix+name) != "" || (rt.adhoc && name == "pipeline") {
			continue
		}
		if e := set(name, q.Get(name), "query parameter"); e != nil {
			return nil, e
		}
	}
	return h, nil
}

// secretHeaders are the request headers ce_httpheaders leaves out: the
// client's credentials.
var secretHeaders = map[string]bool{"authorization": true, "proxy-authorization": true, "cookie": true, strings.ToLower(HeaderAPIKey): true}

// hopRequestHeaders are the request headers that concern one connection
// (RFC 9110 7.6.1), which ce_httpheaders leaves out, with those the
// Connection header names.
var hopRequestHeaders = map[string]bool{"connection": true, "keep-alive": true, "proxy-connection": true,
	"te": true, "trailer": true, "transfer-encoding": true, "upgrade": true}

// httpAttributes are the CloudEvents extensions of an event that came
// from request r through route rt (docs/events.md, "Envelope"):
// ce_httpmethod, ce_httppath, ce_httpquery (the raw query, without "?"),
// ce_httproute (the route's pattern; none for an ad-hoc pipeline),
// ce_httpremoteaddr (the client's address as this gateway saw it) and
// ce_httpheaders, a JSON object of the request's headers, names
// lower-case, a repeated header's values joined by ", ", without the
// credentials (secretHeaders) and the hop-by-hop headers.
func httpAttributes(r *http.Request, rt *route) map[string]string {
	hop := func(string) bool { return false }
	if c := r.Header.Values("Connection"); len(c) > 0 {
		named := map[string]bool{}
		for _, v := range c {
			for _, n := range strings.Split(v, ",") {
				named[strings.ToLower(strings.TrimSpace(n))] = true
			}
		}
		hop = func(k string) bool { return named[k] }
	}
	hs := make(map[string]string, len(r.Header))
	for k, vs := range r.Header {
		if lk := strings.ToLower(k); !secretHeaders[lk] && !hopRequestHeaders[lk] && !hop(lk) {
			hs[lk] = strings.Join(vs, ", ")
		}
	}
	hj, _ := json.Marshal(hs)
	a := map[string]string{"ce_httpmethod": r.Method, "ce_httppath": r.URL.Path, "ce_httpquery": r.URL.RawQuery,
		"ce_httpheaders": string(hj), "ce_httpremoteaddr": r.RemoteAddr}
	if rt != nil && !rt.adhoc {
		a["ce_httproute"] = rt.pattern
	}
	return a
}

// queuedHeaders are the headers of the request event of a queued or async
// call of request r, base its headers to the pools (baseHeader): the
// request's ce_http* attributes and its trace context.
func queuedHeaders(r *http.Request, rt *route, base http.Header) map[string]string {
	hs := httpAttributes(r, rt)
	if tp := base.Get("traceparent"); tp != "" {
		hs[broker.HeaderTraceparent] = tp
	}
	return hs
}

// pathParams lists the wildcard names of a ServeMux path.
func pathParams(path string) []string {
	var out []string
	for _, seg := range strings.Split(path, "/") {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			name := strings.TrimSuffix(strings.TrimSuffix(seg[1:len(seg)-1], "..."), "$")
			if name != "" {
				out = append(out, name)
			}
		}
	}
	return out
}

// requestID keeps a client's X-Request-Id when it is a sane token (up to
// 128 letters, digits and -_.:), else makes one.
func requestID(r *http.Request) string {
	id := r.Header.Get(HeaderRequestID)
	if id == "" || len(id) > 128 {
		return newID()
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return newID()
		}
	}
	return id
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

var traceContext = propagation.TraceContext{}

// injectTrace copies a valid W3C traceparent (and tracestate) from in to
// out, or starts a new sampled trace when there is none. The gateway
// records no span of its own, so it passes the caller's span on as the
// parent rather than inventing one no backend would ever see.
func injectTrace(in, out http.Header) {
	ctx := context.Background()
	if in != nil {
		ctx = traceContext.Extract(ctx, propagation.HeaderCarrier(in))
	}
	if !trace.SpanContextFromContext(ctx).IsValid() {
		var tid trace.TraceID
		var sid trace.SpanID
		_, _ = rand.Read(tid[:])
		_, _ = rand.Read(sid[:])
		ctx = trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true,
		}))
	}
	traceContext.Inject(ctx, propagation.HeaderCarrier(out))
}

// servePreflight answers a CORS preflight for the route that would serve
// the requested method on this path.
func (g *Gateway) servePreflight(w http.ResponseWriter, r *http.Request, t *table, id string) {
	method := r.Header.Get("Access-Control-Request-Method")
	origin := r.Header.Get("Origin")
	rt := t.lookup(r, method)
	w.Header().Add("Vary", "Origin")
	w.Header().Add("Vary", "Access-Control-Request-Method")
	w.Header().Add("Vary", "Access-Control-Request-Headers")
	switch {
	case rt == nil:
		writeError(w, http.StatusNotFound, "NotFound", id, fmt.Sprintf("preflight: no route matches %s %s", method, r.URL.Path))
		g.metrics.observe("preflight", http.StatusNotFound, 0)
		return
	case !rt.allowsOrigin(origin):
		writeError(w, http.StatusForbidden, "CORSForbidden", id,
			fmt.Sprintf("preflight: origin %s may not call %s; add it to the route's cors origins", origin, rt.pattern))
		g.metrics.observe(rt.pattern, http.StatusForbidden, 0)
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Methods", rt.Method)
	allow := []string{"Content-Type", "Authorization", HeaderAPIKey, HeaderRequestID, names.HeaderTimeout, "traceparent", "tracestate"}
	if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
		// Any header may be sent; only those listed above mean something.
		allow = []string{req}
	}
	h.Set("Access-Control-Allow-Headers", strings.Join(allow, ", "))
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
	g.metrics.observe(rt.pattern, http.StatusNoContent, 0)
}
