package spec_test

import (
	"testing"
	"time"
	_ "time/tzdata" // the zones below, whatever the machine has installed

	"github.com/butterfn/butter/hcl/spec"
)

// The schedules below are evaluated on a fake clock: Next is a pure
// function of the time it is given, so the tests walk it across the 2026
// transitions of Europe/Paris (29 March 02:00 CET → 03:00 CEST, 25 October
// 03:00 CEST → 02:00 CET) without waiting for anything.

func mustCron(t *testing.T, sched, tz string) interface{ Next(time.Time) time.Time } {
	t.Helper()
	s, err := spec.ParseCron(sched, tz)
	if err != nil {
		t.Fatalf("ParseCron(%q, %q): %v", sched, tz, err)
	}
	return s
}

// firings lists the firings of s in (from, to].
func firings(s interface{ Next(time.Time) time.Time }, from, to time.Time) []time.Time {
	var out []time.Time
	for t := s.Next(from); !t.IsZero() && !t.After(to); t = s.Next(t) {
		out = append(out, t)
		if len(out) > 10000 {
			break
		}
	}
	return out
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func wantTimes(t *testing.T, got []time.Time, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d firings %v, want %d %v", len(got), got, len(want), want)
	}
	for i := range want {
		if !got[i].Equal(utc(want[i])) {
			t.Errorf("firing %d at %s, want %s", i, got[i].UTC().Format(time.RFC3339), want[i])
		}
	}
}

func TestCronSpringForwardFiresOnce(t *testing.T) {
	s := mustCron(t, "30 2 * * *", "Europe/Paris")
	got := firings(s, utc("2026-03-27T12:00:00Z"), utc("2026-03-30T12:00:00Z"))
	wantTimes(t, got,
		"2026-03-28T01:30:00Z", // 02:30 CET
		"2026-03-29T01:00:00Z", // 02:30 is skipped: 03:00 CEST, the first valid minute
		"2026-03-30T00:30:00Z", // 02:30 CEST
	)
}

func TestCronFallBackFiresOnce(t *testing.T) {
	s := mustCron(t, "30 2 * * *", "Europe/Paris")
	got := firings(s, utc("2026-10-23T12:00:00Z"), utc("2026-10-26T12:00:00Z"))
	wantTimes(t, got,
		"2026-10-24T00:30:00Z", // 02:30 CEST
		"2026-10-25T00:30:00Z", // 02:30 CEST, the first of the two 02:30s
		"2026-10-26T01:30:00Z", // 02:30 CET
	)
}

// Several times in one skipped hour fire once, together, after the gap.
func TestCronSkippedHourFiresOnce(t *testing.T) {
	s := mustCron(t, "0,15,30,45 2 * * *", "Europe/Paris")
	got := firings(s, utc("2026-03-28T23:00:00Z"), utc("2026-03-29T12:00:00Z"))
	wantTimes(t, got, "2026-03-29T01:00:00Z")
}

// A job with '*' in its hour or minute field follows real time, as ISC
// cron runs such jobs: through the repeated hour and on after a gap.
func TestCronWildcardsFollowRealTime(t *testing.T) {
	s := mustCron(t, "*/30 * * * *", "Europe/Paris")
	got := firings(s, utc("2026-10-24T23:45:00Z"), utc("2026-10-25T01:45:00Z"))
	// Every 30 minutes of real time, the repeated 02:xx included.
	wantTimes(t, got, "2026-10-25T00:00:00Z", "2026-10-25T00:30:00Z", "2026-10-25T01:00:00Z", "2026-10-25T01:30:00Z")

	h := mustCron(t, "0 * * * *", "Europe/Paris")
	got = firings(h, utc("2026-03-28T23:30:00Z"), utc("2026-03-29T02:30:00Z"))
	// 01:00 CET, then 03:00 CEST (an hour later), then 04:00 CEST.
	wantTimes(t, got, "2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z")
}

// A daily job fires exactly once on every local day of a year, across
// both transitions, in zones with one-hour and half-hour shifts.
func TestCronDailyOncePerDay(t *testing.T) {
	for _, tz := range []string{"Europe/Paris", "America/New_York", "Australia/Lord_Howe", "UTC"} {
		for _, sched := range []string{"30 2 * * *", "0 2 * * *", "59 1 * * *", "15 3 * * *"} {
			loc, err := time.LoadLocation(tz)
			if err != nil {
				t.Fatalf("load %s: %v", tz, err)
			}
			s := mustCron(t, sched, tz)
			from := time.Date(2026, 1, 1, 0, 0, 0, 0, loc)
			to := time.Date(2027, 1, 1, 0, 0, 0, 0, loc)
			days := map[string]int{}
			for _, f := range firings(s, from, to) {
				days[f.In(loc).Format("2006-01-02")]++
			}
			if len(days) != 365 {
				t.Errorf("%s in %s: fired on %d days of 2026, want 365", sched, tz, len(days))
			}
			for d, n := range days {
				if n != 1 {
					t.Errorf("%s in %s: fired %d times on %s, want once", sched, tz, n, d)
				}
			}
		}
	}
}

// An empty time zone is UTC, whatever the machine's zone.
func TestCronEmptyZoneIsUTC(t *testing.T) {
	old := time.Local
	time.Local = time.FixedZone("elsewhere", 5*3600)
	defer func() { time.Local = old }()
	s := mustCron(t, "0 3 * * *", "")
	if got := s.Next(utc("2026-06-01T00:00:00Z")); !got.Equal(utc("2026-06-01T03:00:00Z")) {
		t.Errorf("0 3 * * * with no zone fires at %s, want 03:00 UTC", got.UTC())
	}
}
