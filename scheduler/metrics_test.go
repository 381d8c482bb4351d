package scheduler_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/butterfn/butter/scheduler/nomadfake"
	"github.com/butterfn/butter/scheduler/schedtest"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrapeServer reads a node's GET /metrics, as Prometheus does.
func scrapeServer(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("GET /metrics: not Prometheus's text format: %v", err)
	}
	return fams
}

// sample is the value of the series of name whose labels include want
// ("k=v" pairs), summed over the series that match, and whether any did.
// A histogram's value is its count.
func sample(fams map[string]*dto.MetricFamily, name string, want ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	var sum float64
	found := false
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for _, kv := range want {
			k, v, _ := strings.Cut(kv, "=")
			if have[k] != v {
				continue next
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum, found
}

// TestControlPlaneMetricsRaftAndTimers: on a three-node cluster (real
// hashicorp/raft over its in-memory transport), each node's /metrics
// says its Raft state, term, indexes, voters and (on a follower) the
// leader's last contact; the leader counts the timer ticks it fired and
// their delay, and the process and Go collectors are there.
func TestControlPlaneMetricsRaftAndTimers(t *testing.T) {
	const timer = "every-second"
	c := schedtest.MakeCluster(t, schedtest.Options{})
	leader := c.Leader()
	if err := leader.Server.Apply(fsm.TimerPutType, fsm.Timer{ID: timer, Schedule: "* * * * * *", Topic: "ticks"}); err != nil {
		t.Fatal(err)
	}
	schedtest.WaitFor(t, 30*time.Second, "two ticks fired", func() bool { return len(c.Firer.Fired(timer)) >= 2 })

	var fams map[string]*dto.MetricFamily
	schedtest.WaitFor(t, 10*time.Second, "the leader's tick counter at 2", func() bool {
		fams = scrapeServer(t, leader.URL())
		n, _ := sample(fams, "butter_server_timer_ticks_total", "timer="+timer, "project=")
		return n >= 2
	})
	ticks, _ := sample(fams, "butter_server_timer_ticks_total", "timer="+timer)
	if delays, _ := sample(fams, "butter_server_timer_delay_seconds"); delays < ticks {
		t.Errorf("%v tick delays observed for %v ticks", delays, ticks)
	}
	if fired := len(c.Firer.Fired(timer)); ticks > float64(fired) {
		t.Errorf("the leader counts %v ticks, but only %d were delivered", ticks, fired)
	}
	if v, _ := sample(fams, "butter_server_raft_state", "state=Leader"); v != 1 {
		t.Errorf("leader: butter_server_raft_state{state=Leader} = %v, want 1", v)
	}
	if v, _ := sample(fams, "butter_server_raft_voters"); v != 3 {
		t.Errorf("leader: butter_server_raft_voters = %v, want 3", v)
	}
	for _, name := range []string{"butter_server_raft_term", "butter_server_raft_applied_index", "butter_server_raft_commit_index", "butter_server_raft_last_log_index"} {
		if v, ok := sample(fams, name); !ok || v < 1 {
			t.Errorf("leader: %s = %v (present %v), want ≥ 1", name, v, ok)
		}
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := sample(fams, name); !ok {
			t.Errorf("leader: no %s (Go and process collectors)", name)
		}
	}
	if v, _ := sample(fams, "butter_server_raft_last_contact_seconds"); v != 0 {
		t.Errorf("leader: last contact %v, want 0", v)
	}

	follower := c.Followers(leader)[0]
	ff := scrapeServer(t, follower.URL())
	if v, _ := sample(ff, "butter_server_raft_state", "state=Follower"); v != 1 {
		t.Errorf("follower: butter_server_raft_state{state=Follower} = %v, want 1", v)
	}
	if v, ok := sample(ff, "butter_server_raft_last_contact_seconds"); !ok || v > 5 {
		t.Errorf("follower: last contact %v s ago (present %v), want a recent one", v, ok)
	}
	if v, _ := sample(ff, "butter_server_timer_ticks_total"); v != 0 {
		t.Errorf("follower: %v ticks counted, want 0 (the leader fires)", v)
	}
}

// TestControlPlaneMetricsDeploys: the deployer (against the fake Nomad of
// package nomadfake) counts a revision that became healthy, one that
// failed, and the automatic rollback, and times them from registration.
func TestControlPlaneMetricsDeploys(t *testing.T) {
	e := newDeployEnv(t)
	e.deploy("r1", nomadfake.Plan{Outcome: nomadfake.Succeed}, true)
	e.waitStatus("r1", fsm.StatusHealthy)
	e.deploy("r2", nomadfake.Plan{Outcome: nomadfake.Fail, Reason: "GET /healthz: 503"}, true)
	e.waitStatus("r2", fsm.StatusFailed)
	schedtest.WaitFor(t, 30*time.Second, "r1 active and healthy again", func() bool {
		d, active := e.state("r1")
		return active == "r1" && d.Status == fsm.StatusHealthy && e.lastRegistered() == "r1"
	})
	var fams map[string]*dto.MetricFamily
	schedtest.WaitFor(t, 10*time.Second, "two healthy deploys counted", func() bool {
		fams = scrapeServer(t, e.c.Leader().URL())
		n, _ := sample(fams, "butter_server_deploys_total", "project="+project, "outcome=healthy")
		return n == 2
	})
	for _, c := range []struct {
		name string
		sel  []string
		want float64
	}{
		{"butter_server_deploys_total", []string{"project=" + project, "outcome=failed"}, 1},
		{"butter_server_deploy_duration_seconds", []string{"outcome=healthy"}, 2},
		{"butter_server_deploy_duration_seconds", []string{"outcome=failed"}, 1},
		{"butter_server_revision_activations_total", []string{"project=" + project, "cause=auto_rollback"}, 1},
	} {
		if v, _ := sample(fams, c.name, c.sel...); v != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.sel, v, c.want)
		}
	}
}

// TestControlPlaneMetricsACL: requests refused for their token are
// counted by reason, and every request by route pattern and code.
func TestControlPlaneMetricsACL(t *testing.T) {
	e := newACLEnv(t)
	before := scrapeServer(t, e.base)
	base := map[string]float64{}
	for _, r := range []string{"no_token", "unknown", "permission"} {
		base[r], _ = sample(before, "butter_server_acl_denied_total", "reason="+r)
	}
	if code, _ := e.do("GET", "/v1/projects/p1", nil, ""); code != 403 {
		t.Fatalf("no token: %d, want 403", code)
	}
	if code, _ := e.do("GET", "/v1/projects/p1", nil, "not-a-token"); code != 403 {
		t.Fatalf("malformed token: %d, want 403", code)
	}
	if code, _ := e.do("GET", "/v1/projects/p1", nil, "00000000-0000-4000-8000-000000000000"); code != 403 {
		t.Fatalf("unknown token: %d, want 403", code)
	}
	for range 3 {
		if code, _ := e.do("GET", "/v1/projects/p1", nil, e.secret["p2"]); code != 403 {
			t.Fatalf("p2's token on p1: %d, want 403", code)
		}
	}
	after := scrapeServer(t, e.base)
	for r, want := range map[string]float64{"no_token": 2, "unknown": 1, "permission": 3} {
		if v, _ := sample(after, "butter_server_acl_denied_total", "reason="+r); v-base[r] != want {
			t.Errorf("butter_server_acl_denied_total{reason=%s} went up by %v, want %v", r, v-base[r], want)
		}
	}
	if v, _ := sample(after, "butter_server_http_requests_total", "route=GET /v1/projects/{name}", "code=403"); v != 6 {
		t.Errorf("butter_server_http_requests_total{route=GET /v1/projects/{name},code=403} = %v, want 6", v)
	}
	if v, _ := sample(after, "butter_server_http_request_duration_seconds", "route=GET /v1/projects/{name}"); v != 6 {
		t.Errorf("request durations of GET /v1/projects/{name} = %v, want 6", v)
	}
}
