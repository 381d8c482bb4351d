package pool

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/butterfn/butter/plugins/runtime"
	"github.com/butterfn/butter/sdk/go/proto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Request headers of the invoke endpoint.
const (
	// HeaderTimeout bounds the call, as a Go duration ("1.5s").
	HeaderTimeout = "Butter-Timeout"
	// HeaderDeadline bounds the call, as an RFC 3339 time.
	HeaderDeadline = "Butter-Deadline"
	// HeaderOptionPrefix passes a named option: Butter-Option-E: s/a/b/.
	HeaderOptionPrefix = "Butter-Option-"
	// HeaderParamPrefix passes a route or query parameter, as the gateway
	// forwards them: Butter-Param-Device: d1. The function sees it in its
	// meta as param.device: HTTP does not keep the case of header names,
	// so parameter names are case-insensitive and reach functions
	// lower-cased.
	HeaderParamPrefix = "Butter-Param-"
	// HeaderError is the trailer that reports a failure after the output
	// has started streaming.
	HeaderError = "Butter-Error"
)

// Handler returns the pool's HTTP API:
//
//	POST /v1/invoke/{function}   stream the body in, the output out; headers
//	                             Butter-Timeout, Butter-Deadline, Butter-Option-*,
//	                             Butter-Param-*, Butter-State-Key
//	GET  /v1/functions           the hosted functions
//	GET  /v1/health              200 while the pool serves; 503 when a function
//	                             cannot keep its minimum instances
//	GET  /metrics                Prometheus metrics
func (p *Pool) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/invoke/{function}", p.serveInvoke)
	mux.HandleFunc("GET /v1/functions", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"project": p.cfg.Project, "revision": p.cfg.Revision, "functions": p.Functions()})
	})
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		if p.ctx == nil || p.ctx.Err() != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "stopping"})
			return
		}
		if bad := p.Unhealthy(); len(bad) > 0 {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unhealthy", "functions": bad})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "functions": len(p.fns)})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.opts.metrics.Registry, promhttp.HandlerOpts{}))
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// streamWriter sends the status on the first byte and flushes every write,
// so output reaches the caller as the function produces it.
type streamWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
}

func (s *streamWriter) Write(b []byte) (int, error) {
	if !s.started {
		s.started = true
		s.w.WriteHeader(http.StatusOK)
	}
	n, err := s.w.Write(b)
	if err == nil {
		_ = s.rc.Flush()
	}
	return n, err
}

func (p *Pool) serveInvoke(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("function")
	if _, ok := p.fns[name]; !ok {
		writeJSON(w, http.StatusNotFound, errorBody("NotFound", fmt.Sprintf("this pool hosts no function %q; it hosts %s", name, strings.Join(p.Functions(), ", "))))
		return
	}
	c := &Call{Input: r.Body, Options: map[string]string{}, Meta: map[string]string{}}
	if r.ContentLength >= 0 {
		c.Meta["content-length"] = strconv.FormatInt(r.ContentLength, 10)
	}
	if v := r.Header.Get(HeaderTimeout); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			writeJSON(w, http.StatusBadRequest, errorBody("BadRequest", fmt.Sprintf("header %s: %q is not a positive duration such as 1.5s", HeaderTimeout, v)))
			return
		}
		c.Deadline = time.Now().Add(d)
	}
	if v := r.Header.Get(HeaderDeadline); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody("BadRequest", fmt.Sprintf("header %s: %q is not an RFC 3339 time", HeaderDeadline, v)))
			return
		}
		if c.Deadline.IsZero() || t.Before(c.Deadline) {
			c.Deadline = t
		}
	}
	for k, vs := range r.Header {
		lk := strings.ToLower(k)
		switch {
		case strings.HasPrefix(k, HeaderOptionPrefix):
			c.Options[strings.ToLower(strings.TrimPrefix(k, HeaderOptionPrefix))] = vs[0]
		case strings.HasPrefix(lk, strings.ToLower(HeaderParamPrefix)) && len(lk) > len(HeaderParamPrefix):
			c.Meta["param."+lk[len(HeaderParamPrefix):]] = vs[0]
		case lk == "content-type" || lk == "traceparent" || lk == "tracestate" || strings.HasPrefix(lk, "ce-"):
			c.Meta[lk] = vs[0]
		}
	}
	c.StateKey = r.Header.Get(HeaderStateKey)
	id := r.Header.Get("X-Request-Id")
	if id == "" {
		id = "http-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	c.Calls = p.httpCalls(p.fns[name], id)
	// Read the body while the answer streams: without full duplex, Go's
	// server discards up to 256 KiB of a chunked body once the handler
	// writes, and a pipeline step would lose input. Closing the body
	// before returning avoids golang/go#68560 in full-duplex mode.
	_ = http.NewResponseController(w).EnableFullDuplex()
	defer r.Body.Close()
	w.Header().Set("Trailer", HeaderError)
	sw := &streamWriter{w: w, rc: http.NewResponseController(w)}
	c.Output = sw
	err := p.Invoke(r.Context(), name, c)
	if err == nil {
		if !sw.started {
			w.WriteHeader(http.StatusOK)
		}
		return
	}
	typ, code, msg := "InstanceFailed", http.StatusBadGateway, err.Error()
	var pe *proto.Error
	switch {
	case errors.As(err, &pe):
		typ, msg = pe.Type, pe.Message
		switch pe.Type {
		case proto.Timeout:
			code = http.StatusGatewayTimeout
		case proto.PreconditionFailed:
			code = http.StatusUnprocessableEntity
		default:
			code = http.StatusInternalServerError
		}
	case errors.Is(err, runtime.ErrInstanceGone):
		typ, code = "InstanceFailed", http.StatusBadGateway
	}
	if sw.started {
		w.Header().Set(HeaderError, typ+": "+msg)
		return
	}
	writeJSON(w, code, errorBody(typ, msg))
}

func errorBody(typ, msg string) map[string]any {
	return map[string]any{"error": map[string]string{"type": typ, "message": msg}}
}
