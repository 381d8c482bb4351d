package scheduler

import (
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/butterfn/butter/acl"
	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/telemetry/spanstore"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// The traces of recent invocations, for the web UI: the control plane
// keeps the spans of the newest traces in memory (Config.Traces, package
// spanstore) and serves them per project. It receives them as an
// OpenTelemetry collector does, by OTLP over HTTP at POST /v1/traces
// (the path an exporter appends to OTEL_EXPORTER_OTLP_ENDPOINT), so
// Butter's processes (and any other) export to it with the standard
// variables: OTEL_EXPORTER_OTLP_ENDPOINT=http://<server>:4750 and
// OTEL_EXPORTER_OTLP_HEADERS=X-Butter-Token=<secret> when ACLs are on.
// butter dev records its own spans into it without OTLP. Each node keeps
// what it was sent: the UI reads the node it talks to.

// tracePath checks a trace ID in a path.
var tracePath = pathRule{"trace", "trace ID", regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString, "32 lower-case hex digits (a W3C trace id)"}

// maxSpansBody bounds an export request once decompressed.
const maxSpansBody = 64 << 20

// receiveSpans is POST /v1/traces: an OTLP/HTTP export request
// (protobuf, or JSON with Content-Type application/json; gzip allowed).
// With ACLs on, the token must allow deploy on some project, and a span
// that names a project (spanstore.Project) is kept only when the token
// may deploy it; a span that names none joins its trace. The others are
// rejected, and counted in the answer's partial success, as OTLP says.
func (s *Server) receiveSpans(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			writeErr(w, 400, fmt.Errorf("spans: gzip: %w", err))
			return
		}
		defer zr.Close()
		body = zr
	}
	b, err := io.ReadAll(io.LimitReader(body, maxSpansBody))
	if err != nil {
		s.bodyError(w, r, "spans", err)
		return
	}
	var req coltrace.ExportTraceServiceRequest
	asJSON := strings.HasPrefix(r.Header.Get("Content-Type"), "application/json")
	if asJSON {
		err = protojson.Unmarshal(b, &req)
	} else {
		err = proto.Unmarshal(b, &req)
	}
	if err != nil {
		writeErr(w, 400, fmt.Errorf("spans: not an OTLP ExportTraceServiceRequest: %w", err))
		return
	}
	spans := spanstore.FromOTLP(&req)
	kept, rejected := spans, 0
	if a := aclFrom(r); a != nil {
		kept, rejected = s.allowedSpans(a, spans)
	}
	s.traces.Add(kept...)
	resp := &coltrace.ExportTraceServiceResponse{}
	if rejected > 0 {
		resp.PartialSuccess = &coltrace.ExportTracePartialSuccess{RejectedSpans: int64(rejected),
			ErrorMessage: "spans of projects this token may not deploy were rejected"}
	}
	var out []byte
	if asJSON {
		w.Header().Set("Content-Type", "application/json")
		out, _ = protojson.Marshal(resp)
	} else {
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ = proto.Marshal(resp)
	}
	_, _ = w.Write(out)
}

// allowedSpans are the spans a token that holds a may record: those
// that name a project it may deploy, and those that name none (they join
// their trace, which shows under the projects its other spans name: a
// call's inner spans often reach the receiver before its route's).
func (s *Server) allowedSpans(a *acl.ACL, spans []spanstore.Span) ([]spanstore.Span, int) {
	var kept []spanstore.Span
	rejected := 0
	for _, sp := range spans {
		if p := spanstore.Project(sp); p == "" || a.AllowProject(p, acl.CapDeploy) {
			kept = append(kept, sp)
		} else {
			rejected++
		}
	}
	return kept, rejected
}

// listTraces is GET /v1/projects/{name}/traces: the newest traces of the
// project this node was sent (?limit, 50 by default, at most 1,000),
// newest first.
func (s *Server) listTraces(w http.ResponseWriter, r *http.Request) {
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > spanstore.DefaultMaxTraces {
			writeErr(w, 400, fmt.Errorf("limit %q: want a number of traces from 1 to %d", clip(v), spanstore.DefaultMaxTraces))
			return
		}
		limit = n
	}
	p := r.PathValue("name")
	writeJSON(w, 200, api.TraceList{Project: p, Traces: s.traces.List(p, limit)})
}

// getTrace is GET /v1/projects/{name}/traces/{trace}: a trace's spans,
// sorted by start; 404 when this node has none of it for the project.
func (s *Server) getTrace(w http.ResponseWriter, r *http.Request) {
	p, id := r.PathValue("name"), r.PathValue("trace")
	spans, ok := s.traces.Get(p, id)
	if !ok {
		writeErr(w, 404, fmt.Errorf("no trace %s of project %q on this server: it keeps the newest %d traces it was sent, in memory", id, p, spanstore.DefaultMaxTraces))
		return
	}
	writeJSON(w, 200, api.TraceSpans{Project: p, TraceID: id, Spans: spans})
}
