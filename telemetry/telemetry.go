// Package telemetry sets up OpenTelemetry tracing for Butter's processes
// (the control plane, the gateway, pools, butter dev), configured the
// standard way, by the OpenTelemetry environment variables, and off when
// none asks for it.
//
// Tracing is on when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (or OTEL_TRACES_EXPORTER is
// "otlp"), unless OTEL_SDK_DISABLED is "true" or OTEL_TRACES_EXPORTER is
// "none". Spans go by OTLP over HTTP (protobuf); the exporter reads its
// headers, timeout, compression and TLS from the OTEL_EXPORTER_OTLP_*
// variables, the sampler from OTEL_TRACES_SAMPLER (parent-based, always
// on, by default), the batching from OTEL_BSP_*, and the resource from
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
//
// A trace crosses Kafka in each record's ce_traceparent header (W3C trace
// context, the CloudEvents distributed-tracing extension's attribute):
// Traceparent formats a span's context for it and Context reads it back.
package telemetry

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Enabled reports whether the environment asks for traces, and why not
// when it does not.
func Enabled() (bool, string) {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return false, "OTEL_SDK_DISABLED is true"
	}
	switch exp := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER"))); exp {
	case "none":
		return false, "OTEL_TRACES_EXPORTER is none"
	case "otlp":
		return true, ""
	case "":
	default:
		return false, fmt.Sprintf("OTEL_TRACES_EXPORTER %q is not supported (only otlp and none)", exp)
	}
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
		return true, ""
	}
	return false, "neither OTEL_EXPORTER_OTLP_ENDPOINT nor OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set"
}

// Disabled reports whether the environment turns tracing off outright
// (OTEL_SDK_DISABLED=true, OTEL_TRACES_EXPORTER=none), as opposed to not
// asking for it.
func Disabled() bool {
	return strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") || strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")), "none")
}

// Setup installs the global tracer provider and the W3C propagators for
// the process, named service (OTEL_SERVICE_NAME overrides it), when the
// environment asks for traces (Enabled). Otherwise it installs nothing:
// the global tracer stays OpenTelemetry's no-op one, whose spans cost a
// few nanoseconds and are never recording. The returned shutdown flushes
// the spans still buffered; call it before the process exits.
func Setup(ctx context.Context, service string, logger hclog.Logger) (shutdown func(context.Context) error, err error) {
	return SetupWith(ctx, service, logger, nil)
}

// SetupWith is Setup with a local exporter: when local is not nil,
// tracing is on whatever the environment says, every span goes to local
// as it ends (the process keeps its own spans: butter dev's control
// plane, package spanstore) and, when the environment asks for traces,
// also by OTLP.
func SetupWith(ctx context.Context, service string, logger hclog.Logger, local sdktrace.SpanExporter) (shutdown func(context.Context) error, err error) {
	noop := func(context.Context) error { return nil }
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	enabled, why := Enabled()
	if !enabled && local == nil {
		if logger != nil {
			logger.Debug("tracing off", "reason", why)
		}
		return noop, nil
	}
	smp, err := samplerFromEnv()
	if err != nil {
		return noop, err
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithIDGenerator(ids{}), sdktrace.WithSampler(smp)}
	if local != nil {
		opts = append(opts, sdktrace.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(local)))
	}
	if enabled {
		if p := protocol(); p != "http/protobuf" {
			return noop, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q: Butter exports traces by OTLP over HTTP only; set it to http/protobuf (the default) and point OTEL_EXPORTER_OTLP_ENDPOINT at the collector's HTTP port (4318)", p)
		}
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return noop, fmt.Errorf("tracing: the OTLP exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithSpanProcessor(newBatcher(exp)))
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(service)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
		resource.WithProcessPID(),
		resource.WithHost(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return noop, fmt.Errorf("tracing: the resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(append(opts, sdktrace.WithResource(res))...)
	otel.SetTracerProvider(tp)
	sampler.Store(&smp)
	defaultSampler.Store(isDefaultSampler())
	on.Store(true)
	if logger != nil {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			logger.Warn("tracing: exporting spans failed", "error", err)
		}))
		if enabled {
			logger.Info("tracing on: spans exported by OTLP/HTTP", "endpoint", endpoint())
		}
		if local != nil {
			logger.Debug("tracing on: spans kept by this process")
		}
	}
	return func(ctx context.Context) error {
		on.Store(false)
		Flush() // the spans that ended and wait for their window
		sampler.Store(nil)
		defaultSampler.Store(false)
		return tp.Shutdown(ctx)
	}, nil
}

// samplerFromEnv is the sampler OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG name, as the SDK reads them (parent-based,
// always on, by default). Butter reads them itself because Start samples
// on a call's path as the provider does, and the SDK does not export the
// sampler it makes from them; an unknown name or a bad ratio is refused
// here, where the SDK would only log it.
func samplerFromEnv() (sdktrace.Sampler, error) {
	name := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER")))
	arg := strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER_ARG"))
	ratio := func() (sdktrace.Sampler, error) {
		if arg == "" {
			return sdktrace.TraceIDRatioBased(1), nil
		}
		v, err := strconv.ParseFloat(arg, 64)
		if err != nil || v < 0 || v > 1 {
			return nil, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG %q: the sampler %s takes a ratio from 0 to 1 (0.25 samples a quarter of the traces)", arg, name)
		}
		return sdktrace.TraceIDRatioBased(v), nil
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio":
		return ratio()
	case "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.ParentBased(r), nil
	}
	return nil, fmt.Errorf("OTEL_TRACES_SAMPLER %q is not supported: use always_on, always_off, traceidratio, parentbased_always_on (the default), parentbased_always_off or parentbased_traceidratio", name)
}

// isDefaultSampler reports whether OTEL_TRACES_SAMPLER names the
// default sampler, parentbased_always_on (samplerFromEnv).
func isDefaultSampler() bool {
	name := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER")))
	return name == "" || name == "parentbased_always_on"
}

func protocol() string {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := strings.TrimSpace(os.Getenv(k)); v != "" {
			return strings.ToLower(v)
		}
	}
	return "http/protobuf"
}

func endpoint() string {
	if v := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); v != "" {
		return v
	}
	if v := os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); v != "" {
		return v
	}
	return "http://localhost:4318 (the default)"
}

// Traceparent is the W3C traceparent of the span context sc
// ("00-<trace id>-<span id>-<flags>", the flags the propagator keeps:
// sampled and random), "" when it is not valid. It is made in one
// allocation: every traced call formats one or two.
func Traceparent(sc trace.SpanContext) string {
	if !sc.IsValid() {
		return ""
	}
	var b [55]byte
	tid, sid := sc.TraceID(), sc.SpanID()
	b[0], b[1], b[2] = '0', '0', '-'
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{byte(sc.TraceFlags() & (trace.FlagsSampled | trace.FlagsRandom))})
	return string(b[:])
}

// Context is ctx with the remote span context of traceparent (and
// tracestate, which may be ""), as a record's ce_traceparent header
// carries it: the parent of the span that handles the record. ctx is
// returned unchanged when traceparent is not valid.
func Context(ctx context.Context, traceparent, tracestate string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, carrier{traceparent, tracestate})
}

// ParseTraceparent is the remote span context of traceparent and
// tracestate (which may be ""), as Context reads it, without a context:
// the parent StartChild takes. It is not valid when traceparent is not.
// A version 00 traceparent is read here; any other goes to the W3C
// propagator.
func ParseTraceparent(traceparent, tracestate string) trace.SpanContext {
	if len(traceparent) != 55 || traceparent[:3] != "00-" || traceparent[35] != '-' || traceparent[52] != '-' {
		return trace.SpanContextFromContext(Context(context.Background(), traceparent, tracestate))
	}
	var cfg trace.SpanContextConfig
	var flags [1]byte
	if !unhex(cfg.TraceID[:], traceparent[3:35]) || !unhex(cfg.SpanID[:], traceparent[36:52]) || !unhex(flags[:], traceparent[53:]) || flags[0] > 3 {
		return trace.SpanContext{}
	}
	cfg.TraceFlags = trace.TraceFlags(flags[0]) & (trace.FlagsSampled | trace.FlagsRandom)
	if tracestate != "" {
		cfg.TraceState, _ = trace.ParseTraceState(tracestate) // a bad one is none, as the propagator has it
	}
	cfg.Remote = true
	if sc := trace.NewSpanContext(cfg); sc.IsValid() {
		return sc
	}
	return trace.SpanContext{}
}

// unhex decodes the lower-case hex digits of s (W3C trace context allows
// no other) into dst, which it fills exactly.
func unhex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, lo := unhexDigit(s[2*i]), unhexDigit(s[2*i+1])
		if hi > 15 || lo > 15 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func unhexDigit(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return 0xff
}

// carrier is a TextMapCarrier of one traceparent and tracestate.
type carrier struct{ parent, state string }

func (c carrier) Get(key string) string {
	switch key {
	case "traceparent":
		return c.parent
	case "tracestate":
		return c.state
	}
	return ""
}
func (c carrier) Set(string, string) {}
func (c carrier) Keys() []string     { return []string{"traceparent", "tracestate"} }

// on is set once Setup installs a tracer provider.
var on atomic.Bool

// On reports whether Setup turned tracing on in this process: the hot
// paths start no span, and format no traceparent, when it did not.
func On() bool { return on.Load() }

// Toggle turns the process's tracing off (false) and on again (true)
// without replacing its provider: a benchmark interleaves calls with
// tracing on and off in one process with it (gateway's BenchmarkTracing),
// every tracing path of Butter being gated on On. Toggle(true) before
// Setup turned tracing on traces into the global no-op provider.
func Toggle(enabled bool) { on.Store(enabled) }

// spanIDKey carries a span id chosen before the span starts (WithSpanID).
type spanIDKey struct{}

// WithSpanID makes the next span started with ctx take id: a span a
// worker recorded, whose id its code has already passed on in
// traceparents (the handler's span, docs/worker-protocol.md "Spans").
func WithSpanID(ctx context.Context, id trace.SpanID) context.Context {
	return context.WithValue(ctx, spanIDKey{}, id)
}

// ids generates trace and span ids as the SDK's default generator does
// (random), but for a span id WithSpanID chose, and a trace id Start
// chose for a root span.
type ids struct{}

func (ids) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	t, _ := ctx.Value(traceIDKey{}).(trace.TraceID) // a lazy root span's (Start)
	if t == (trace.TraceID{}) {
		t = newTraceID()
	}
	return t, ids{}.NewSpanID(ctx, t)
}

func (ids) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	if id, ok := ctx.Value(spanIDKey{}).(trace.SpanID); ok && id.IsValid() {
		return id
	}
	return newSpanID()
}

// newTraceID and newSpanID are random ids, never zero.
func newTraceID() trace.TraceID {
	var t trace.TraceID
	for t == (trace.TraceID{}) {
		binary.BigEndian.PutUint64(t[:8], rand.Uint64())
		binary.BigEndian.PutUint64(t[8:], rand.Uint64())
	}
	return t
}

func newSpanID() trace.SpanID {
	var s trace.SpanID
	for s == (trace.SpanID{}) {
		binary.BigEndian.PutUint64(s[:], rand.Uint64())
	}
	return s
}
