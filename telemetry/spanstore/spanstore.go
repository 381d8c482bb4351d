// Package spanstore keeps the spans of recent traces in memory, for the
// control plane's web UI and API (package scheduler): what its OTLP/HTTP
// receiver (POST /v1/traces) is sent by Butter's processes and by
// anything else that exports OpenTelemetry traces, and, under butter dev,
// what the process itself records (Exporter).
//
// It is bounded: the newest MaxTraces traces (by their first span's
// arrival) of at most MaxSpans spans each; the oldest trace goes when a
// new one comes. Nothing is written to disk: a restart forgets them, as
// an OpenTelemetry collector's memory does. A trace belongs to the
// projects its spans name (butter.project, or the project of a Kafka
// topic a span produced to or consumed from).
package spanstore

import (
	"context"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/butterfn/butter/api"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
)

// Defaults of Store's bounds.
const (
	DefaultMaxTraces = 1000
	DefaultMaxSpans  = 500
)

// Span, Event and Summary are the API's (package api): what the control
// plane answers.
type (
	Span    = api.Span
	Event   = api.SpanEvent
	Summary = api.TraceSummary
)

// Store is the bounded store of recent traces. It is safe for concurrent
// use.
type Store struct {
	// MaxTraces and MaxSpans bound it; zero takes the defaults.
	MaxTraces, MaxSpans int

	mu      sync.Mutex
	traces  map[string]*trace
	order   []string // trace ids, oldest first
	dropped int64
}

type trace struct {
	spans    []Span
	projects map[string]bool
}

func (s *Store) bounds() (int, int) {
	mt, ms := s.MaxTraces, s.MaxSpans
	if mt <= 0 {
		mt = DefaultMaxTraces
	}
	if ms <= 0 {
		ms = DefaultMaxSpans
	}
	return mt, ms
}

// Add keeps spans, each in its trace.
func (s *Store) Add(spans ...Span) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mt, ms := s.bounds()
	if s.traces == nil {
		s.traces = map[string]*trace{}
	}
	for _, sp := range spans {
		t := s.traces[sp.TraceID]
		if t == nil {
			t = &trace{projects: map[string]bool{}}
			s.traces[sp.TraceID] = t
			s.order = append(s.order, sp.TraceID)
			for len(s.order) > mt {
				delete(s.traces, s.order[0])
				s.order = s.order[1:]
			}
		}
		if len(t.spans) >= ms {
			s.dropped++
			continue
		}
		t.spans = append(t.spans, sp)
		if p := Project(sp); p != "" {
			t.projects[p] = true
		}
	}
}

// Project is the project a span names: its butter.project attribute, or
// the project of the Kafka topic it sent to or read from
// (<project>.<stream>); "" when it names none.
func Project(sp Span) string {
	if p := sp.Attributes["butter.project"]; p != "" {
		return p
	}
	if t := sp.Attributes["messaging.destination.name"]; t != "" {
		if p, _, ok := strings.Cut(t, "."); ok {
			return p
		}
	}
	return ""
}

// Projects are the projects trace id belongs to so far.
func (s *Store) Projects(id string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.traces[id]
	if t == nil {
		return nil
	}
	out := make([]string, 0, len(t.projects))
	for p := range t.projects {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// List summarizes the newest traces of project (at most limit), newest
// first.
func (s *Store) List(project string, limit int) []Summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []Summary{}
	for i := len(s.order) - 1; i >= 0 && len(out) < limit; i-- {
		t := s.traces[s.order[i]]
		if t.projects[project] {
			out = append(out, summarize(s.order[i], t.spans))
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.After(out[j].Start) })
	return out
}

// Get returns the spans of trace id, sorted by start, when it belongs to
// project.
func (s *Store) Get(project, id string) ([]Span, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.traces[id]
	if t == nil || !t.projects[project] {
		return nil, false
	}
	out := append([]Span(nil), t.spans...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out, true
}

func summarize(id string, spans []Span) Summary {
	sum := Summary{TraceID: id, Spans: len(spans)}
	ids := map[string]bool{}
	for _, sp := range spans {
		ids[sp.SpanID] = true
	}
	var first, last time.Time
	var root *Span
	fns := map[string]bool{}
	for i := range spans {
		sp := &spans[i]
		if first.IsZero() || sp.Start.Before(first) {
			first = sp.Start
		}
		if sp.End.After(last) {
			last = sp.End
		}
		if sp.Error {
			sum.Errors++
		}
		if f := sp.Attributes["butter.function"]; f != "" {
			fns[f] = true
		}
		if sum.Invocation == "" {
			sum.Invocation = sp.Attributes["faas.invocation_id"]
		}
		orphan := sp.ParentID == "" || !ids[sp.ParentID]
		rootOrphan := root != nil && (root.ParentID == "" || !ids[root.ParentID])
		switch {
		case root == nil, orphan && !rootOrphan:
			root = sp
		case orphan == rootOrphan && sp.Start.Before(root.Start):
			root = sp
		}
	}
	for f := range fns {
		sum.Functions = append(sum.Functions, f)
	}
	sort.Strings(sum.Functions)
	sum.Start, sum.DurationSeconds = first, last.Sub(first).Seconds()
	if root != nil {
		sum.Root, sum.RootService = root.Name, root.Service
	}
	return sum
}

// FromOTLP flattens an OTLP export request's spans.
func FromOTLP(req *coltrace.ExportTraceServiceRequest) []Span {
	var out []Span
	for _, rs := range req.ResourceSpans {
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.Key == "service.name" {
				service = text(a.Value)
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				sp := Span{Service: service, Name: s.Name, TraceID: hex.EncodeToString(s.TraceId), SpanID: hex.EncodeToString(s.SpanId),
					Kind: kindName(int32(s.Kind)), Start: time.Unix(0, int64(s.StartTimeUnixNano)).UTC(), End: time.Unix(0, int64(s.EndTimeUnixNano)).UTC(),
					Attributes: map[string]string{}}
				if len(s.ParentSpanId) > 0 {
					sp.ParentID = hex.EncodeToString(s.ParentSpanId)
				}
				for _, a := range s.Attributes {
					sp.Attributes[a.Key] = text(a.Value)
				}
				if s.Status != nil && s.Status.Code == 2 {
					sp.Error, sp.Message = true, s.Status.Message
				}
				for _, e := range s.Events {
					ev := Event{Name: e.Name, Time: time.Unix(0, int64(e.TimeUnixNano)).UTC()}
					for _, a := range e.Attributes {
						if ev.Attributes == nil {
							ev.Attributes = map[string]string{}
						}
						ev.Attributes[a.Key] = text(a.Value)
					}
					sp.Events = append(sp.Events, ev)
				}
				out = append(out, sp)
			}
		}
	}
	return out
}

// kindName is OTLP's SpanKind (1 internal ... 5 consumer) in words.
func kindName(k int32) string {
	switch k {
	case 2:
		return "server"
	case 3:
		return "client"
	case 4:
		return "producer"
	case 5:
		return "consumer"
	}
	return "internal"
}

func text(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *commonpb.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	case *commonpb.AnyValue_DoubleValue:
		return fmt.Sprint(x.DoubleValue)
	}
	return v.String()
}

// Exporter is an OpenTelemetry span exporter into s: a process's own
// spans, without OTLP (butter dev's).
func Exporter(s *Store) sdktrace.SpanExporter { return exporter{s} }

type exporter struct{ s *Store }

func (e exporter) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	out := make([]Span, 0, len(spans))
	for _, ro := range spans {
		sc := ro.SpanContext()
		sp := Span{TraceID: sc.TraceID().String(), SpanID: sc.SpanID().String(), Name: ro.Name(), Kind: ro.SpanKind().String(),
			Start: ro.StartTime().UTC(), End: ro.EndTime().UTC(), Attributes: attrs(ro.Attributes())}
		if p := ro.Parent(); p.IsValid() {
			sp.ParentID = p.SpanID().String()
		}
		if r := ro.Resource(); r != nil {
			if v, ok := r.Set().Value("service.name"); ok {
				sp.Service = v.String()
			}
		}
		if st := ro.Status(); st.Code == codes.Error {
			sp.Error, sp.Message = true, st.Description
		}
		for _, e := range ro.Events() {
			sp.Events = append(sp.Events, Event{Name: e.Name, Time: e.Time.UTC(), Attributes: attrs(e.Attributes)})
		}
		out = append(out, sp)
	}
	e.s.Add(out...)
	return nil
}

func (exporter) Shutdown(context.Context) error { return nil }

func attrs(kvs []attribute.KeyValue) map[string]string {
	if len(kvs) == 0 {
		return nil
	}
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		out[string(kv.Key)] = kv.Value.String()
	}
	return out
}
