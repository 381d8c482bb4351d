package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/hashicorp/raft"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The timer service fires cron triggers from the leader. Semantics (see
// docs/timers.md): at least once per tick. The leader produces the tick's
// event, waits for the broker's acknowledgement, and only then records the
// firing in Raft. A leader that dies between the two leaves the tick
// unrecorded, and the next leader fires it again: a duplicate, never a
// loss. Ticks missed while the cluster had no leader are fired late by the
// next leader, oldest first, in passes of at most maxCatchUp per timer about
// a second apart, until the timer has caught up: none is skipped. Each event's
// ce_id is "<timer>@<tick>", so consumers can drop the duplicates.

// maxCatchUp bounds how many missed ticks of one timer one pass fires, so
// one timer far behind cannot hold up the others' due ticks for long.
const maxCatchUp = 100

// Firer delivers one tick.
type Firer interface {
	Fire(ctx context.Context, t *fsm.Timer, tick time.Time) error
}

var _ Firer = (*KafkaFirer)(nil)

// KafkaFirer produces ticks to the timer's topic, creating the topic
// (one partition) before its first tick: kfake and many clusters do not
// create topics on produce.
type KafkaFirer struct {
	Client *kgo.Client

	mu      sync.Mutex
	ensured map[string]bool
}

// Fire produces the tick's event and waits for the acknowledgement.
func (k *KafkaFirer) Fire(ctx context.Context, t *fsm.Timer, tick time.Time) error {
	k.mu.Lock()
	ok := k.ensured[t.Topic]
	k.mu.Unlock()
	if !ok {
		if err := broker.EnsureTopics(ctx, kadm.NewClient(k.Client), []broker.Topic{{Name: t.Topic, Partitions: 1}}); err != nil {
			return fmt.Errorf("create tick topic %s: %w", t.Topic, err)
		}
		k.mu.Lock()
		if k.ensured == nil {
			k.ensured = map[string]bool{}
		}
		k.ensured[t.Topic] = true
		k.mu.Unlock()
	}
	id := t.ID + "@" + tick.UTC().Format(time.RFC3339Nano)
	body := `{"timer":"` + t.ID + `","tick":"` + tick.UTC().Format(time.RFC3339Nano) + `"}`
	rec := broker.NewEvent(t.Topic, []byte(t.ID), []byte(body), id, "butter/timers", "butter.timer")
	return k.Client.ProduceSync(ctx, rec).FirstErr()
}

// runTimers fires timers while this node leads, until ctx ends.
func (s *Server) runTimers(ctx context.Context, firer Firer) {
	for ctx.Err() == nil {
		// Wait for leadership.
		for s.raft.State() != raft.Leader {
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		// A new leader first makes sure it has applied everything the old
		// one committed, so it sees every recorded firing.
		if err := s.raft.Barrier(5 * time.Second).Error(); err != nil {
			continue
		}
		s.leadTimers(ctx, firer)
	}
}

// leadTimers fires due ticks until leadership is lost or ctx ends.
func (s *Server) leadTimers(ctx context.Context, firer Firer) {
	for ctx.Err() == nil && s.raft.State() == raft.Leader {
		now := time.Now()
		next := now.Add(time.Second)
		var timers []fsm.Timer
		last := map[string]time.Time{}
		s.fsm.Read(func(st *fsm.State) {
			for id, t := range st.TimerDefs {
				timers = append(timers, *t)
				last[id] = st.Timers[id]
			}
		})
		for i := range timers {
			t := &timers[i]
			sched, err := spec.ParseCron(t.Schedule, t.Timezone)
			if err != nil {
				continue
			}
			from := last[t.ID]
			if from.IsZero() {
				from = now.Add(-time.Second) // a new timer starts now
			}
			for n := 0; n < maxCatchUp; n++ {
				tick := sched.Next(from)
				if tick.After(now) {
					if tick.Before(next) {
						next = tick
					}
					break
				}
				if err := s.fire(ctx, firer, t, tick); err != nil {
					if !errors.Is(err, raft.ErrNotLeader) && !strings.Contains(err.Error(), "already fired") {
						s.log.Warn("timer tick not fired; will retry", "timer", t.ID, "tick", tick, "error", err)
					}
					break
				}
				from = tick
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
	}
}

func (s *Server) fire(ctx context.Context, firer Firer, t *fsm.Timer, tick time.Time) error {
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := firer.Fire(fctx, t, tick); err != nil {
		s.obs.timerFailures.WithLabelValues(t.Project, t.ID).Inc()
		return fmt.Errorf("deliver: %w", err)
	}
	if err := s.Apply(fsm.TimerFiredType, fsm.TimerFiring{Timer: t.ID, Tick: tick}); err != nil {
		if !errors.Is(err, raft.ErrNotLeader) && !strings.Contains(err.Error(), "already fired") {
			s.obs.timerFailures.WithLabelValues(t.Project, t.ID).Inc()
		}
		return err
	}
	s.obs.timerTicks.WithLabelValues(t.Project, t.ID).Inc()
	s.obs.timerDelay.Observe(time.Since(tick).Seconds())
	return nil
}
