// Package otlptest is an OTLP/HTTP trace receiver for tests: it listens on
// 127.0.0.1, decodes the protobuf export requests that Butter's processes
// send (exactly what a collector's otlp receiver accepts on port 4318),
// and keeps the spans for a test to wait on. It is the receiving end of a
// real export, not a fake of the exporter.
package otlptest

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"
)

// Span is one received span, flattened.
type Span struct {
	Service      string // the resource's service.name
	Name         string
	TraceID      string // hex
	SpanID       string
	ParentSpanID string // "" for a root
	Kind         int32  // OTLP's SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer
	Start, End   time.Time
	Attributes   map[string]string // values as text
	Error        bool              // status code ERROR
	StatusMsg    string
	Events       []string
}

// Receiver is a running OTLP/HTTP receiver.
type Receiver struct {
	// Endpoint is its base URL, for OTEL_EXPORTER_OTLP_ENDPOINT.
	Endpoint string

	srv *http.Server
	mu  sync.Mutex
	raw []*coltrace.ExportTraceServiceRequest // not yet flattened
	got []Span
	ch  chan struct{} // closed and replaced when spans arrive
}

// Start starts a receiver on a free port of 127.0.0.1.
func Start() (*Receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("otlptest: listen: %w", err)
	}
	r := &Receiver{Endpoint: "http://" + ln.Addr().String(), ch: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", r.traces)
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// Close stops the receiver.
func (r *Receiver) Close() error { return r.srv.Close() }

func (r *Receiver) traces(w http.ResponseWriter, req *http.Request) {
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// Checked now, so that a sender of garbage hears of it; flattened
	// when a test looks (Spans, Wait), so that receiving costs a sender
	// on the same machine little (BenchmarkTracing).
	var msg coltrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &msg); err != nil {
		http.Error(w, "not an OTLP ExportTraceServiceRequest: "+err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.raw = append(r.raw, &msg)
	close(r.ch)
	r.ch = make(chan struct{})
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	_, _ = w.Write(out)
}

// flatten turns the requests received since the last call into spans;
// r.mu is held.
func (r *Receiver) flatten() {
	for _, msg := range r.raw {
		for _, rs := range msg.ResourceSpans {
			service := ""
			for _, a := range rs.GetResource().GetAttributes() {
				if a.Key == "service.name" {
					service = text(a.Value)
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					sp := Span{Service: service, Name: s.Name, TraceID: hex.EncodeToString(s.TraceId), SpanID: hex.EncodeToString(s.SpanId),
						Kind: int32(s.Kind), Start: time.Unix(0, int64(s.StartTimeUnixNano)), End: time.Unix(0, int64(s.EndTimeUnixNano)),
						Attributes: map[string]string{}}
					if len(s.ParentSpanId) > 0 {
						sp.ParentSpanID = hex.EncodeToString(s.ParentSpanId)
					}
					for _, a := range s.Attributes {
						sp.Attributes[a.Key] = text(a.Value)
					}
					if s.Status != nil && s.Status.Code == 2 {
						sp.Error, sp.StatusMsg = true, s.Status.Message
					}
					for _, e := range s.Events {
						sp.Events = append(sp.Events, e.Name)
					}
					r.got = append(r.got, sp)
				}
			}
		}
	}
	r.raw = nil
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

// Spans is every span received so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flatten()
	return append([]Span(nil), r.got...)
}

// Wait waits until done holds of the spans received, or ctx ends (then
// it returns ctx's error with the spans it had).
func (r *Receiver) Wait(ctx context.Context, done func([]Span) bool) ([]Span, error) {
	for {
		r.mu.Lock()
		r.flatten()
		got, ch := append([]Span(nil), r.got...), r.ch
		r.mu.Unlock()
		if done(got) {
			return got, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return got, ctx.Err()
		}
	}
}
