package scheduler

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// serveMetrics is GET /metrics: the node's Prometheus metrics, in the
// text format. Today these are the autoscaler's (autoscaler.Metrics: the
// decisions it took, the counts it wants and the signals it read, per
// project, pool and function), which only the leader has values for;
// each node answers for itself, never forwarding, so that Prometheus
// scrapes every node and the leader's series are the current ones.
//
// Like Nomad's /v1/metrics it needs no token: Prometheus scrapes without
// one, and what it shows (project, pool and function names, counts) is
// what each allocation's Nomad service and each pool's /metrics already
// show to whoever reaches them.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	promhttp.HandlerFor(s.metrics, promhttp.HandlerOpts{}).ServeHTTP(w, r)
}
