package scheduler_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/autoscaler"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/scheduler"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/butterfn/butter/scheduler/schedtest"
)

// oneGroup is an in-memory Nomad of one task group, shared by the nodes
// of a cluster as a real cluster shares its Nomad.
type oneGroup struct {
	mu     sync.Mutex
	count  int
	scales []string
}

func (n *oneGroup) Groups(context.Context) ([]autoscaler.Group, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := jobs.ScalingPolicy{Enabled: true, Min: 1, Max: 10, Cooldown: time.Hour, ScaleInDelay: time.Hour, TargetLag: 100, ConsumerGroups: []string{"butter.p.f.s"}}
	return []autoscaler.Group{{Target: autoscaler.Target{Project: "p", Job: "butter-p", Group: "g"}, Count: n.count, Policy: p}}, nil
}

func (n *oneGroup) Scale(_ context.Context, _ autoscaler.Target, count int, reason string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.count = count
	n.scales = append(n.scales, reason)
	return nil
}

func (n *oneGroup) calls() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.scales...)
}

// lagOf reports a fresh lag, set by the test.
type lagOf struct {
	mu  sync.Mutex
	lag int64
}

func (l *lagOf) Load(context.Context, autoscaler.Group) (autoscaler.Load, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return autoscaler.Load{At: time.Now(), Allocations: 1, Lag: l.lag}, nil
}

func (l *lagOf) set(v int64) { l.mu.Lock(); l.lag = v; l.mu.Unlock() }

// TestAutoscalerOnLeaderOnly: in a cluster of three, only the leader's
// autoscaler acts, its decision reaches every node, and a new leader,
// within the old one's cooldown, does not scale again however the load
// grows: it records the hold, naming the cooldown.
func TestAutoscalerOnLeaderOnly(t *testing.T) {
	nomad := &oneGroup{count: 1}
	signals := &lagOf{lag: 300}
	c := schedtest.MakeCluster(t, schedtest.Options{Nodes: 3, NoTimers: true, Autoscale: &scheduler.AutoscaleConfig{Scaler: nomad, Signals: signals, Interval: 50 * time.Millisecond}})
	schedtest.WaitFor(t, 10*time.Second, "the group scaled to 3", func() bool { return len(nomad.calls()) > 0 })
	// A later pass on the leader holds at 3; every node's loop had as
	// long to act.
	schedtest.WaitFor(t, 10*time.Second, "a hold after the step", func() bool {
		var d fsm.ScalingDecision
		c.Leader().FSM().Read(func(st *fsm.State) {
			if x := st.Scaling["p/g"]; x != nil {
				d = *x
			}
		})
		return d.Kind == fsm.ScaleHold && d.Count == 3
	})
	if calls := nomad.calls(); len(calls) != 1 || !strings.Contains(calls[0], "1 -> 3: lag: 300 records") {
		t.Fatalf("scale calls: %q; want one, from the leader", calls)
	}
	for _, n := range c.Running() {
		schedtest.WaitFor(t, 5*time.Second, "the decision on node "+n.ID, func() bool {
			var d *fsm.ScalingDecision
			n.FSM().Read(func(st *fsm.State) {
				if x := st.Scaling["p/g"]; x != nil {
					cp := *x
					d = &cp
				}
			})
			return d != nil && d.To == 3 && !d.LastScaled.IsZero()
		})
	}

	old := c.Leader()
	c.Stop(old)
	next := c.Leader(old)
	signals.set(1000)
	schedtest.WaitFor(t, 10*time.Second, "the new leader's hold", func() bool {
		var d fsm.ScalingDecision
		next.FSM().Read(func(st *fsm.State) {
			if x := st.Scaling["p/g"]; x != nil {
				d = *x
			}
		})
		return d.Kind == fsm.ScaleHold && strings.Contains(d.Reason, "wants 10, cooling down until")
	})
	if calls := nomad.calls(); len(calls) != 1 {
		t.Errorf("the new leader scaled within the cooldown: %q", calls)
	}
}
