package api

import (
	"context"
	"time"
)

// Span is one span of a trace the control plane keeps
// (docs/observability.md, "Traces in the control plane").
type Span struct {
	TraceID  string `json:"trace_id"`
	SpanID   string `json:"span_id"`
	ParentID string `json:"parent_id,omitempty"`
	Name     string `json:"name"`
	// Service is the resource's service.name (butter-gateway,
	// butter-pool, butter-dev, ...).
	Service string `json:"service,omitempty"`
	// Kind is OpenTelemetry's: internal, server, client, producer,
	// consumer.
	Kind       string            `json:"kind"`
	Start      time.Time         `json:"start"`
	End        time.Time         `json:"end"`
	Attributes map[string]string `json:"attributes,omitempty"`
	// Error is set for a span whose status is an error, with its message.
	Error   bool        `json:"error,omitempty"`
	Message string      `json:"message,omitempty"`
	Events  []SpanEvent `json:"events,omitempty"`
}

// SpanEvent is a span's event.
type SpanEvent struct {
	Name       string            `json:"name"`
	Time       time.Time         `json:"time"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// TraceSummary is a trace in a list.
type TraceSummary struct {
	TraceID string `json:"trace_id"`
	// Root is the name of the earliest span without a parent in the
	// trace (the earliest span when each has its parent elsewhere), and
	// RootService its service.
	Root        string    `json:"root"`
	RootService string    `json:"root_service,omitempty"`
	Start       time.Time `json:"start"`
	// DurationSeconds is from the first span's start to the last one's
	// end.
	DurationSeconds float64 `json:"duration_seconds"`
	Spans           int     `json:"spans"`
	// Errors counts the spans whose status is an error.
	Errors int `json:"errors"`
	// Functions are the butter.function attributes of its spans.
	Functions []string `json:"functions,omitempty"`
	// Invocation is the first faas.invocation_id of its spans: a request
	// or event id, the key of its log lines.
	Invocation string `json:"invocation,omitempty"`
}

// TraceList answers GET /v1/projects/{name}/traces.
type TraceList struct {
	Project string         `json:"project"`
	Traces  []TraceSummary `json:"traces"`
}

// TraceSpans answers GET /v1/projects/{name}/traces/{trace}.
type TraceSpans struct {
	Project string `json:"project"`
	TraceID string `json:"trace_id"`
	Spans   []Span `json:"spans"`
}

// Traces returns the newest traces of a project the answering server
// keeps, newest first.
func (p *Projects) Traces(ctx context.Context, project string) (*TraceList, error) {
	var out TraceList
	if _, err := p.c.query(ctx, "/v1/projects/"+seg(project)+"/traces", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Trace returns a trace's spans, sorted by start; 404 when the answering
// server keeps none of it for the project.
func (p *Projects) Trace(ctx context.Context, project, id string) (*TraceSpans, error) {
	var out TraceSpans
	if _, err := p.c.query(ctx, "/v1/projects/"+seg(project)+"/traces/"+seg(id), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
