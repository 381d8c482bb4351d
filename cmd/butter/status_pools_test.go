package main

import (
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/butterfn/butter/scheduler/schedtest"
	"github.com/hashicorp/cli"
)

// TestStatusShowsScaling: `butter status <project>` shows each pool of the
// active revision with its functions, its bounds, and the autoscaler's
// last decision with its reason, read from the control plane's replicated
// state.
func TestStatusShowsScaling(t *testing.T) {
	s, _ := schedtest.Single(t, nil)
	if err := s.Apply(fsm.ProjectUpsertType, fsm.Project{Name: "shop", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	job, bundles := schedtest.RevisionJob(t, "shop", "aaaaaaaaaaaa", nil)
	if err := s.Apply(fsm.RevisionCreateType, fsm.Revision{Project: "shop", ID: "aaaaaaaaaaaa", Job: job, Bundles: bundles, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(fsm.RevisionActivateType, fsm.Activation{Project: "shop", Revision: "aaaaaaaaaaaa"}); err != nil {
		t.Fatal(err)
	}
	run := func() string {
		t.Helper()
		ui := cli.NewMockUi()
		if code := (&statusCommand{ui: ui}).Run([]string{"-address", "http://" + s.Addr(), "shop"}); code != exitOK {
			t.Fatalf("status: exit %d\n%s", code, ui.ErrorWriter.String())
		}
		return ui.OutputWriter.String()
	}
	out := run()
	for _, want := range []string{"Pools\n  main: f\n", "allocations  min 1, max 10; the autoscaler sets the count", "autoscaler   no decision yet"} {
		if !strings.Contains(out, want) {
			t.Errorf("status without a decision lacks %q:\n%s", want, out)
		}
	}
	at := time.Date(2026, 12, 3, 8, 30, 0, 0, time.UTC)
	if err := s.Apply(fsm.ScalingDecisionType, fsm.ScalingDecision{Project: "shop", Job: "butter-shop", Group: "main", At: at, Kind: fsm.ScaleScaled, Count: 1, To: 2, Reason: "1 -> 2: lag: 1500 records at target 1000 per allocation -> 2", LastScaled: at}); err != nil {
		t.Fatal(err)
	}
	out = run()
	for _, want := range []string{"count        1 at 2026-12-03T08:30:00Z", "last         scaled 1 -> 2 at 2026-12-03T08:30:00Z: 1 -> 2: lag: 1500 records"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
}
