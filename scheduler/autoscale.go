package scheduler

import (
	"context"
	"time"

	"github.com/butterfn/butter/autoscaler"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/hashicorp/raft"
)

// AutoscaleConfig is what the leader's autoscaler uses (package
// autoscaler): Nomad, as a Scaler, and the signals.
type AutoscaleConfig struct {
	Scaler  autoscaler.Scaler
	Signals autoscaler.Signals
	// Interval and StaleAfter are autoscaler.Config's; 0 keeps its
	// defaults.
	Interval   time.Duration
	StaleAfter time.Duration
	// WakeFor is autoscaler.Config's: how long after a gateway's wake the
	// pool keeps at least one allocation; 0 keeps its default.
	WakeFor time.Duration
}

// runAutoscaler runs the autoscaler while this node leads, until ctx
// ends. Each term starts a new one, after a Raft barrier, so that it sees
// every decision the previous leader recorded: its cooldowns hold, and no
// step is taken twice. Leadership lost stops it before the next pass.
func (s *Server) runAutoscaler(ctx context.Context, cfg AutoscaleConfig) {
	for ctx.Err() == nil {
		for s.raft.State() != raft.Leader {
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		if err := s.raft.Barrier(5 * time.Second).Error(); err != nil {
			continue
		}
		a := autoscaler.New(autoscaler.Config{
			Scaler: cfg.Scaler, Signals: cfg.Signals, Store: raftStore{s},
			Interval: cfg.Interval, StaleAfter: cfg.StaleAfter, WakeFor: cfg.WakeFor,
			Metrics: s.scaleMetrics, Logger: s.log.Named("autoscaler"),
		})
		lctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		s.scaler.Store(a)
		go func() {
			defer close(done)
			a.Run(lctx)
		}()
		s.log.Info("autoscaler started on this leader")
		for ctx.Err() == nil && s.raft.State() == raft.Leader {
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
		s.scaler.Store(nil)
		cancel()
		<-done
		s.scaleMetrics.Reset() // a follower's readings would read as current
		if ctx.Err() == nil {
			s.log.Info("autoscaler stopped: this node no longer leads")
		}
	}
}

// raftStore keeps the autoscaler's decisions in the replicated state.
type raftStore struct{ s *Server }

func (r raftStore) Decisions() map[string]fsm.ScalingDecision {
	out := map[string]fsm.ScalingDecision{}
	r.s.fsm.Read(func(st *fsm.State) {
		for k, d := range st.Scaling {
			out[k] = *d
		}
	})
	return out
}

func (r raftStore) Record(d fsm.ScalingDecision) error {
	return r.s.Apply(fsm.ScalingDecisionType, d)
}
