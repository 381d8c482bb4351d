package scheduler_test

import (
	"testing"
	"time"

	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/butterfn/butter/scheduler/schedtest"
)

// TestInProcessTimersAcrossFailover runs a per-second timer on a 3-node
// in-process cluster whose recording Firer notes every tick delivered, and
// changes leader twice:
//
//  1. the leader stops; another takes over;
//  2. with the first back, a follower is cut off and the leader stops, so
//     that the node left cannot be elected: ticks fall due while nobody
//     leads; then the follower returns and the new leader fires them late.
//
// Every second from the first tick to the last must have been delivered
// exactly once: a leader that stops finishes (and records) the tick it is
// firing, and the next leader starts after the last recorded one. (A
// leader that crashes may deliver a tick twice: cmd/butter's
// TestTimersUnderFailover, which kills processes, allows that.)
func TestInProcessTimersAcrossFailover(t *testing.T) {
	const timer = "every-second"
	c := schedtest.MakeCluster(t, schedtest.Options{})
	leader := c.Leader()
	if err := leader.Server.Apply(fsm.TimerPutType, fsm.Timer{ID: timer, Schedule: "* * * * * *", Topic: "ticks"}); err != nil {
		t.Fatal(err)
	}
	delivered := func() int { return len(c.Firer.Fired(timer)) }
	// ticksPast waits until a tick after `after` has been delivered.
	ticksPast := func(after time.Time) {
		t.Helper()
		schedtest.WaitFor(t, 30*time.Second, "a tick after "+after.Format(time.TimeOnly), func() bool {
			_, ticks := c.Firer.Ticks(timer)
			return len(ticks) > 0 && ticks[len(ticks)-1].After(after)
		})
	}
	start := time.Now()
	ticksPast(start.Add(time.Second)) // two ticks at least

	// 1. The leader stops.
	c.Stop(leader)
	first := leader
	c.Leader(first) // waits until another node leads
	ticksPast(time.Now().Add(time.Second))

	// 2. No leader for a while.
	c.Start(first)
	leader = c.Leader()
	cut := c.Followers(leader)[0]
	c.Partition(cut)
	c.Stop(leader)
	stopped, n := time.Now(), delivered()
	// Wait until the tick after next falls due: at least one tick is due
	// while no node can lead.
	due := stopped.Truncate(time.Second).Add(2 * time.Second)
	schedtest.WaitFor(t, 5*time.Second, "a tick falls due while no node leads", func() bool { return time.Now().After(due) })
	if got := delivered(); got != n {
		t.Fatalf("%d ticks delivered while no node could lead", got-n)
	}
	c.Heal(cut)
	c.Leader()
	leaderless := time.Since(stopped)
	ticksPast(time.Now().Add(time.Second))

	counts, ticks := c.Firer.Ticks(timer)
	for _, tick := range ticks {
		if counts[tick] != 1 {
			t.Errorf("tick %s delivered %d times", tick.Format(time.TimeOnly), counts[tick])
		}
	}
	for i := 1; i < len(ticks); i++ {
		if gap := ticks[i].Sub(ticks[i-1]); gap != time.Second {
			t.Errorf("ticks %s and %s are %s apart: a tick was lost", ticks[i-1].Format(time.TimeOnly), ticks[i].Format(time.TimeOnly), gap)
		}
	}
	if !ticks[0].Before(stopped) || ticks[len(ticks)-1].Before(due) {
		t.Errorf("ticks from %s to %s do not span the leaderless time %s to %s",
			ticks[0].Format(time.TimeOnly), ticks[len(ticks)-1].Format(time.TimeOnly), stopped.Format(time.TimeOnly), due.Format(time.TimeOnly))
	}
	if t.Failed() {
		return
	}
	t.Logf("%d ticks from %s to %s, each delivered once, across two leader changes, one after %s without a leader",
		len(ticks), ticks[0].Format(time.TimeOnly), ticks[len(ticks)-1].Format(time.TimeOnly), leaderless.Round(100*time.Millisecond))
}
