package pool

import (
	"errors"
	"time"

	"github.com/butterfn/butter/plugins/runtime"
	"github.com/butterfn/butter/sdk/go/proto"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are a pool's Prometheus metrics.
type Metrics struct {
	Registry    *prometheus.Registry
	invocations *prometheus.CounterVec
	errors      *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	instances   *prometheus.GaugeVec
	inflight    *prometheus.GaugeVec
	queued      *prometheus.GaugeVec
	coldStarts  *prometheus.CounterVec
	restarts    *prometheus.CounterVec
	batches     *prometheus.CounterVec
	failed      *prometheus.GaugeVec
	deadLetters *prometheus.CounterVec
	lag         *prometheus.GaugeVec
	logShipped  *prometheus.CounterVec
	logDropped  *prometheus.CounterVec
	execDropped *prometheus.CounterVec
	sourced     *prometheus.CounterVec // messages a source produced (sources.go)
	calls       *callMetrics           // of context calls (calls.go)
}

// DurationBuckets are the upper bounds of butter_invocation_duration_seconds:
// 100 µs to 26 s, each twice the one before, so that a quantile estimated
// from them (the control plane's p50 and p99, Prometheus's
// histogram_quantile) is within a factor of two of the bucket it falls in.
var DurationBuckets = prometheus.ExponentialBuckets(0.0001, 2, 19)

// NewMetrics registers the pool's metrics in a new registry.
func NewMetrics() *Metrics {
	fn := []string{"function"}
	m := &Metrics{
		Registry:    prometheus.NewRegistry(),
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "butter_invocations_total", Help: "Calls completed, by function and outcome (ok or error)."}, []string{"function", "outcome"}),
		errors:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "butter_invocation_errors_total", Help: "Failed calls, by function and error type."}, []string{"function", "type"}),
		duration:    prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "butter_invocation_duration_seconds", Help: "Call duration, queueing included.", Buckets: DurationBuckets}, fn),
		instances:   prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "butter_instances", Help: "Running instances."}, fn),
		inflight:    prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "butter_inflight_calls", Help: "Calls in flight."}, fn),
		queued:      prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "butter_queued_calls", Help: "Calls waiting for an instance: every instance busy and max reached (the autoscaler reads it)."}, fn),
		coldStarts:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "butter_cold_starts_total", Help: "Instances started because every instance was busy or none ran."}, fn),
		restarts:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "butter_instance_restarts_total", Help: "Instances that exited without being asked to (crashed, killed as hung)."}, fn),
		batches:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "butter_ordered_batches_total", Help: "Ordered batches of stream events sent to a worker at once."}, fn),
		failed:      prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "butter_function_failed", Help: "1 while a function cannot start the instances it needs (its calls answer Unavailable), else 0."}, fn),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "butter_dead_letters_total", Help: "Stream events sent to a dead-letter topic, by function and error type."}, []string{"function", "type"}),
		lag:         prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "butter_consumer_lag", Help: "Records of a partition this pool consumes that it had not fetched at its last poll (the high watermark minus the next offset), by function, stream and partition; gone when the partition is revoked."}, []string{"function", "stream", "partition"}),
		logShipped:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "butter_log_lines_total", Help: "Lines of a function's log produced to the project's log topic."}, []string{"function"}),
		logDropped:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "butter_log_lines_dropped_total", Help: "Lines of a function's log not produced to the log topic, by reason (rate: over 1000 a second; produce: Kafka failed); they are in the pool's own log."}, []string{"function", "reason"}),
		execDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "butter_executions_dropped_total", Help: "Records of a function's execution log Kafka did not take."}, []string{"function"}),
		sourced:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "butter_source_messages_total", Help: "Messages a source (an MQTT subscription) produced to its stream."}, fn),
	}
	m.Registry.MustRegister(m.invocations, m.errors, m.duration, m.instances, m.inflight, m.coldStarts, m.restarts, m.batches, m.failed, m.deadLetters, m.lag, m.logShipped, m.logDropped, m.execDropped, m.sourced,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.calls = newCallMetrics(m.Registry)
	m.Registry.MustRegister(m.queued)
	return m
}

// observeBatch observes the events of a batch that ran, each taking per.
func (m *Metrics) observeBatch(function string, per time.Duration, res []runtime.Result) {
	dur := m.duration.WithLabelValues(function)
	ok := m.invocations.WithLabelValues(function, "ok")
	for _, r := range res {
		switch {
		case r.Err == nil:
			dur.Observe(per.Seconds())
			ok.Inc()
		case !skipped(r.Err):
			m.observe(function, per, r.Err)
		}
	}
}

func (m *Metrics) observe(function string, d time.Duration, err error) {
	m.duration.WithLabelValues(function).Observe(d.Seconds())
	if err == nil {
		m.invocations.WithLabelValues(function, "ok").Inc()
		return
	}
	m.invocations.WithLabelValues(function, "error").Inc()
	typ := "InstanceFailed"
	var pe *proto.Error
	var se *SchemaError
	switch {
	case errors.As(err, &se):
		typ = se.Type
	case errors.As(err, &pe):
		typ = pe.Type
	}
	m.errors.WithLabelValues(function, typ).Inc()
}

// refused counts a call refused before it ran (an input that fails its
// schema): an error of its type, but no invocation, which counts calls
// run.
func (m *Metrics) refused(function, typ string) {
	m.errors.WithLabelValues(function, typ).Inc()
}
