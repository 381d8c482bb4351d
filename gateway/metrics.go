package gateway

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the gateway's Prometheus metrics, in their own registry,
// served at GET /metrics. Routes are labelled by pattern ("POST /shout");
// requests no route matched by "unmatched", CORS preflights that matched
// no route by "preflight".
type Metrics struct {
	Registry     *prometheus.Registry
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	dialFailures prometheus.Counter
	async        *prometheus.GaugeVec
}

// NewMetrics registers the gateway's metrics in a new registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "butter_gateway_requests_total", Help: "Requests answered, by route and status.",
		}, []string{"route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "butter_gateway_request_duration_seconds", Help: "Time from a request's arrival to the end of its answer, streaming included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"route"}),
		dialFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "butter_gateway_dial_failures_total", Help: "Connections to pool endpoints that failed (each retried on another endpoint when one is left).",
		}),
		async: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "butter_gateway_async_invocations", Help: "Async invocations held in memory, by state (pending, done).",
		}, []string{"state"}),
	}
	m.Registry.MustRegister(m.requests, m.duration, m.dialFailures, m.async,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *Metrics) observe(route string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

func (m *Metrics) setAsync(pending, done int) {
	m.async.WithLabelValues("pending").Set(float64(pending))
	m.async.WithLabelValues("done").Set(float64(done))
}

func (m *Metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}
