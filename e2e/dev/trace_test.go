package dev

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/e2e/e2etest"
	"github.com/butterfn/butter/internal/testport"
	"github.com/butterfn/butter/telemetry/otlptest"
)

// TestOneTraceThroughIoT: with OTEL_EXPORTER_OTLP_ENDPOINT pointing at a
// real OTLP/HTTP receiver, one HTTP call into examples/iot under butter
// dev (its own process; node and python workers) produces one trace: the
// gateway's route span, the child of the caller's traceparent; ingest's
// call; its emit to the readings stream; detect's processing of that
// reading (a Kafka record of the embedded broker, read back by the
// pool's consumer); and the alert detect sends to the alerts stream, each
// span the child of the one before.
func TestOneTraceThroughIoT(t *testing.T) {
	rcv, err := otlptest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Close()
	dir := filepath.Join(t.TempDir(), "iot")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(e2etest.Root(), "examples", "iot"))); err != nil {
		t.Fatal(err)
	}
	gw := testport.Addr(t)
	cmd := exec.Command(e2etest.Bin(), "dev", "-listen", gw, "-server-addr", testport.Addr(t), "-api-key", "k1", dir)
	cmd.Env = append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+rcv.Endpoint, "OTEL_BSP_SCHEDULE_DELAY=200", "OTEL_SERVICE_NAME=")
	d := startDev(t, cmd)
	if !strings.Contains(d.out.String(), "tracing on") {
		t.Errorf("butter dev did not say tracing is on:\n%s", e2etest.Tail(d.out.String(), 3000))
	}

	post := func(temp float64, traceparent string) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+gw+"/devices/d1/readings", strings.NewReader(fmt.Sprintf(`{"device":"d1","temperature":%v}`, temp)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer k1")
		if traceparent != "" {
			req.Header.Set("traceparent", traceparent)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("POST a reading: %s", resp.Status)
		}
	}
	post(20, "")
	// The second reading jumps by 15 degrees: detect alerts.
	const traceID, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	post(35, "00-"+traceID+"-"+clientSpan+"-01")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var chain []otlptest.Span
	spans, err := rcv.Wait(ctx, func(all []otlptest.Span) bool {
		chain = traceChain(all, traceID, clientSpan)
		return chain != nil
	})
	if err != nil {
		var names []string
		for _, s := range spans {
			if s.TraceID == traceID {
				names = append(names, fmt.Sprintf("%s (%s ← %s)", s.Name, s.SpanID, s.ParentSpanID))
			}
		}
		t.Fatalf("no trace from the route to the alert after 2 minutes; the call's trace has %d spans: %s", len(names), strings.Join(names, "; "))
	}
	for _, s := range chain {
		t.Logf("%-40s %s ← %s  %v", s.Name, s.SpanID, s.ParentSpanID, s.End.Sub(s.Start))
	}
	// The handlers' own spans, from the Node and Python workers: under
	// their call's span, with what the handlers set (examples/iot sets the
	// device, and detect's alert event).
	var handlers []otlptest.Span
	spans, err = rcv.Wait(ctx, func(all []otlptest.Span) bool {
		handlers = handlers[:0]
		for _, s := range all {
			if s.TraceID == traceID && (s.Name == "handler ingest" || s.Name == "handler detect") {
				handlers = append(handlers, s)
			}
		}
		return len(handlers) >= 2
	})
	if err != nil {
		t.Fatalf("no handler spans of ingest and detect in the trace: %v", err)
	}
	byID := map[string]otlptest.Span{}
	for _, s := range spans {
		byID[s.SpanID] = s
	}
	for _, h := range handlers {
		parent := byID[h.ParentSpanID]
		if !strings.HasPrefix(parent.Name, "call ") || h.Attributes["device"] != "d1" {
			t.Errorf("%s: parent %q, attributes %v; want a call span's child with device=d1", h.Name, parent.Name, h.Attributes)
		}
		if h.Name == "handler detect" && !slices.Contains(h.Events, "alert") {
			t.Errorf("handler detect has events %v, want the alert", h.Events)
		}
	}
	// The control plane's spans: butter dev deployed examples/iot through
	// its API (deploy.Push), whose writes are server spans.
	var deploySpan otlptest.Span
	if _, err := rcv.Wait(ctx, func(all []otlptest.Span) bool {
		for _, s := range all {
			if s.Name == "POST /v1/projects/{name}/revisions" && s.Attributes["butter.project"] == "iot" {
				deploySpan = s
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatalf("no span of the control plane's revision write for iot: %v", err)
	}
	if deploySpan.Kind != 2 || deploySpan.Attributes["http.response.status_code"] != "200" {
		t.Errorf("the control plane's revision span: kind %d, attributes %v; want a server span answering 200", deploySpan.Kind, deploySpan.Attributes)
	}
}

// traceChain finds, among the spans of trace traceID, the path from the
// route span (the child of the client's span) to the alert: the route,
// ingest's invocation, its send to readings, detect's processing, its
// send to alerts, each the descendant of the one before (through any
// spans between, such as the call on an instance). nil until all are
// there.
func traceChain(all []otlptest.Span, traceID, clientSpan string) []otlptest.Span {
	byID := map[string]otlptest.Span{}
	for _, s := range all {
		if s.TraceID == traceID {
			byID[s.SpanID] = s
		}
	}
	descends := func(s otlptest.Span, from string) bool {
		for hops := 0; hops < 10; hops++ {
			if s.ParentSpanID == from {
				return true
			}
			p, ok := byID[s.ParentSpanID]
			if !ok {
				return false
			}
			s = p
		}
		return false
	}
	want := []struct {
		kind int32
		name func(string) bool
	}{
		{2, func(n string) bool { return n == "POST /devices/{device}/readings" }},
		{2, func(n string) bool { return n == "invoke ingest" }},
		{4, func(n string) bool { return strings.HasPrefix(n, "send ") && strings.HasSuffix(n, "readings") }},
		{5, func(n string) bool { return n == "process readings detect" }},
		{4, func(n string) bool { return strings.HasPrefix(n, "send ") && strings.HasSuffix(n, "alerts") }},
	}
	var chain []otlptest.Span
	from := clientSpan
	for _, w := range want {
		found := false
		for _, s := range byID {
			if s.Kind == w.kind && w.name(s.Name) && descends(s, from) {
				chain, from, found = append(chain, s), s.SpanID, true
				break
			}
		}
		if !found {
			return nil
		}
	}
	return chain
}
