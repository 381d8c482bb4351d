package fsm_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/hashicorp/raft"
)

// TestScalingDecisions records decisions by group, never moves the last
// step back, refuses one without a group, and keeps them in snapshots.
func TestScalingDecisions(t *testing.T) {
	f := fsm.New()
	t0 := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	apply := func(d fsm.ScalingDecision) error {
		err, _ := f.Apply(&raft.Log{Data: entry(t, fsm.ScalingDecisionType, d)}).(error)
		return err
	}
	if err := apply(fsm.ScalingDecision{Project: "p", Job: "butter-p", Group: "g", At: t0, Kind: fsm.ScaleScaled, Count: 1, To: 2, Reason: "lag", LastScaled: t0, LastStep: "lag"}); err != nil {
		t.Fatal(err)
	}
	// A hold written by a leader that did not know of the step keeps it,
	// with its reason.
	if err := apply(fsm.ScalingDecision{Project: "p", Job: "butter-p", Group: "g", At: t0.Add(time.Second), Kind: fsm.ScaleHold, Count: 2, To: 2, Reason: "cooldown"}); err != nil {
		t.Fatal(err)
	}
	if err := apply(fsm.ScalingDecision{Project: "p"}); err == nil {
		t.Error("a decision without a group was applied")
	}
	f.Read(func(s *fsm.State) {
		d := s.Scaling["p/g"]
		if d == nil || d.Kind != fsm.ScaleHold || !d.LastScaled.Equal(t0) || d.LastStep != "lag" || len(s.Scaling) != 1 {
			t.Errorf("scaling state: %+v", s.Scaling)
		}
	})
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.Persist(&sink{Buffer: &buf}); err != nil {
		t.Fatal(err)
	}
	g := fsm.New()
	if err := g.Restore(readCloser{&buf}); err != nil {
		t.Fatal(err)
	}
	g.Read(func(s *fsm.State) {
		if d := s.Scaling["p/g"]; d == nil || d.Reason != "cooldown" || !d.LastScaled.Equal(t0) || d.LastStep != "lag" {
			t.Errorf("restored scaling state: %+v", s.Scaling)
		}
	})
}

type sink struct{ *bytes.Buffer }

func (s *sink) ID() string    { return "test" }
func (s *sink) Cancel() error { return nil }
func (s *sink) Close() error  { return nil }

type readCloser struct{ *bytes.Buffer }

func (readCloser) Close() error { return nil }
