package scheduler

import (
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// serveMetrics is GET /metrics: the node's Prometheus metrics, in the
// text format: the control plane's own (serverMetrics: Raft, the API,
// deploys, timers, ACL denials), the autoscaler's (autoscaler.Metrics:
// the decisions it took, the counts it wants and the signals it read,
// per project, pool and function), and the Go runtime's and process's.
// The leader's work (deploys, timers, the autoscaler) is counted on the
// node that did it; each node answers for itself, never forwarding, so
// that Prometheus scrapes every node and sums what it must.
//
// Like Nomad's /v1/metrics it needs no token: Prometheus scrapes without
// one, and what it shows (project, pool, function and timer names, counts)
// is what each allocation's Nomad service and each pool's /metrics already
// show to whoever reaches them.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	promhttp.HandlerFor(s.metrics, promhttp.HandlerOpts{}).ServeHTTP(w, r)
}

// Reasons an API request is refused for its token
// (butter_server_acl_denied_total's reason).
const (
	deniedNoToken    = "no_token"   // none sent, or malformed
	deniedUnknown    = "unknown"    // no such token (or expired)
	deniedPermission = "permission" // the token's policies do not allow it
)

// serverMetrics are the control plane's own series.
type serverMetrics struct {
	requests      *prometheus.CounterVec   // route, code
	duration      *prometheus.HistogramVec // route
	aclDenied     *prometheus.CounterVec   // reason
	deploys       *prometheus.CounterVec   // project, outcome
	deployTime    *prometheus.HistogramVec // outcome
	activations   *prometheus.CounterVec   // project, cause
	timerTicks    *prometheus.CounterVec   // project, timer
	timerFailures *prometheus.CounterVec   // project, timer
	timerDelay    prometheus.Histogram
}

func newServerMetrics(reg prometheus.Registerer, s *Server) *serverMetrics {
	m := &serverMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "butter_server_http_requests_total",
			Help: "API requests answered by this node, by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "butter_server_http_request_duration_seconds",
			Help:    "Time to answer an API request, by route pattern (a blocking query's wait included).",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 30, 60},
		}, []string{"route"}),
		aclDenied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "butter_server_acl_denied_total",
			Help: "API requests refused for their ACL token: no_token (none or malformed), unknown (no such token), permission (its policies do not allow the request).",
		}, []string{"reason"}),
		deploys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "butter_server_deploys_total",
			Help: "Revisions the deployer brought to an outcome on this node while it led: healthy or failed.",
		}, []string{"project", "outcome"}),
		deployTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "butter_server_deploy_duration_seconds",
			Help:    "From a revision's job registered with Nomad to its deployment's outcome.",
			Buckets: []float64{1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800},
		}, []string{"outcome"}),
		activations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "butter_server_revision_activations_total",
			Help: "Revisions activated through this node: deploy (a new or re-activated revision), rollback (butter rollback), auto_rollback (a failed deploy).",
		}, []string{"project", "cause"}),
		timerTicks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "butter_server_timer_ticks_total",
			Help: "Timer ticks fired (their event written and the tick recorded) by this node while it led; project is empty for a timer outside projects.",
		}, []string{"project", "timer"}),
		timerFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "butter_server_timer_failures_total",
			Help: "Timer ticks whose event could not be written or recorded (retried on the next pass).",
		}, []string{"project", "timer"}),
		timerDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "butter_server_timer_delay_seconds",
			Help:    "From a tick's scheduled time to its firing recorded: late ticks fired after a leader change show here.",
			Buckets: []float64{.01, .05, .1, .5, 1, 5, 30, 60, 300},
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.aclDenied, m.deploys, m.deployTime, m.activations,
		m.timerTicks, m.timerFailures, m.timerDelay, raftCollector{s},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// instrument counts and times the API route pattern's requests.
func (m *serverMetrics) instrument(pattern string, h http.HandlerFunc) http.HandlerFunc {
	labels := prometheus.Labels{"route": pattern}
	return promhttp.InstrumentHandlerDuration(m.duration.MustCurryWith(labels),
		promhttp.InstrumentHandlerCounter(m.requests.MustCurryWith(labels), h))
}

// deployed counts a revision's outcome, timed from its registration when
// the status recorded it.
func (m *serverMetrics) deployed(project, outcome string, registered time.Time) {
	m.deploys.WithLabelValues(project, outcome).Inc()
	if !registered.IsZero() {
		m.deployTime.WithLabelValues(outcome).Observe(time.Since(registered).Seconds())
	}
}

// raftCollector reads this node's Raft state when Prometheus scrapes.
type raftCollector struct{ s *Server }

var (
	raftStateDesc = prometheus.NewDesc("butter_server_raft_state",
		"1 for this node's Raft state (Leader, Follower, Candidate, Shutdown), 0 for the others.", []string{"state"}, nil)
	raftGauges = []struct {
		stat string
		desc *prometheus.Desc
	}{
		{"term", prometheus.NewDesc("butter_server_raft_term", "The Raft term this node is in.", nil, nil)},
		{"last_log_index", prometheus.NewDesc("butter_server_raft_last_log_index", "The index of the last entry in this node's Raft log.", nil, nil)},
		{"commit_index", prometheus.NewDesc("butter_server_raft_commit_index", "The index of the last entry this node knows committed.", nil, nil)},
		{"applied_index", prometheus.NewDesc("butter_server_raft_applied_index", "The index of the last entry applied to this node's state.", nil, nil)},
		{"fsm_pending", prometheus.NewDesc("butter_server_raft_fsm_pending", "Committed entries waiting to be applied to this node's state.", nil, nil)},
		{"last_snapshot_index", prometheus.NewDesc("butter_server_raft_last_snapshot_index", "The index of the last entry in this node's latest snapshot.", nil, nil)},
	}
	raftVotersDesc = prometheus.NewDesc("butter_server_raft_voters",
		"Voting servers in the Raft configuration as this node has it (itself included).", nil, nil)
	raftContactDesc = prometheus.NewDesc("butter_server_raft_last_contact_seconds",
		"On a follower, the time since it last heard from the leader (absent until it has); 0 on the leader.", nil, nil)
)

func (c raftCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- raftStateDesc
	for _, g := range raftGauges {
		ch <- g.desc
	}
	ch <- raftVotersDesc
	ch <- raftContactDesc
}

func (c raftCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.s.raft
	if r == nil {
		return // not started yet
	}
	state := r.State()
	for _, st := range []raft.RaftState{raft.Leader, raft.Follower, raft.Candidate, raft.Shutdown} {
		v := 0.0
		if st == state {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(raftStateDesc, prometheus.GaugeValue, v, st.String())
	}
	stats := r.Stats()
	for _, g := range raftGauges {
		if v, err := strconv.ParseFloat(stats[g.stat], 64); err == nil {
			ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v)
		}
	}
	if f := r.GetConfiguration(); f.Error() == nil {
		voters := 0
		for _, srv := range f.Configuration().Servers {
			if srv.Suffrage == raft.Voter {
				voters++
			}
		}
		ch <- prometheus.MustNewConstMetric(raftVotersDesc, prometheus.GaugeValue, float64(voters))
	}
	switch t := r.LastContact(); {
	case state == raft.Leader:
		ch <- prometheus.MustNewConstMetric(raftContactDesc, prometheus.GaugeValue, 0)
	case !t.IsZero():
		ch <- prometheus.MustNewConstMetric(raftContactDesc, prometheus.GaugeValue, time.Since(t).Seconds())
	}
}
