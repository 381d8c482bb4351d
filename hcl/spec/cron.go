package spec

import (
	"sort"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Daylight saving time, the way ISC cron handles it (cron(8), "Daylight
// saving time and other time changes"): a job that runs at a particular
// wall-clock time, with no '*' at the start of its minute or hour field,
//
//   - whose time is skipped when the clocks go forward fires once, at the
//     first valid minute after the gap (30 2 * * * in Europe/Paris fires at
//     03:00 on the spring-forward day), and
//   - whose time is repeated when the clocks go back fires once, the first
//     time (02:30 CEST, not again at 02:30 CET).
//
// A job with '*' in its minute or hour field, @hourly, or @every, follows
// real time instead: it fires through a repeated hour and goes on after a
// gap, as ISC cron runs such jobs "based on the new time immediately".
//
// robfig/cron, which parses the schedule, does neither: it skips the
// spring-forward day's job and runs the fall-back day's twice.

// wallSchedule evaluates a fixed-time schedule on wall clocks in loc.
type wallSchedule struct {
	loc *time.Location
	// naive is the schedule evaluated in UTC, where every wall-clock time
	// exists once: it says which wall-clock time comes next.
	naive *cron.SpecSchedule
}

// wall is t's wall-clock reading in loc, as the same reading in UTC.
func wall(t time.Time, loc *time.Location) time.Time {
	l := t.In(loc)
	return time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), l.Minute(), l.Second(), l.Nanosecond(), time.UTC)
}

// instants returns, in order, the instants whose wall clock in loc reads
// w: none in a gap, two in a repeated hour, one otherwise.
func instants(w time.Time, loc *time.Location) []time.Time {
	base := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), w.Nanosecond(), loc)
	var out []time.Time
	for _, d := range []time.Duration{-3 * time.Hour, 0, 3 * time.Hour} {
		_, off := base.Add(d).Zone()
		c := w.Add(-time.Duration(off) * time.Second).In(loc)
		if wall(c, loc).Equal(w) && !containsTime(out, c) {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

func containsTime(ts []time.Time, t time.Time) bool {
	for _, x := range ts {
		if x.Equal(t) {
			return true
		}
	}
	return false
}

// Next returns the first firing after t.
func (s *wallSchedule) Next(t time.Time) time.Time {
	w := wall(t, s.loc)
	for range 8 {
		nw := s.naive.Next(w)
		if nw.IsZero() {
			return nw
		}
		for _, c := range instants(nw, s.loc) {
			if c.After(t) {
				return c
			}
		}
		if len(instants(nw, s.loc)) > 0 {
			// Every instant of that reading is past (t is in the second
			// pass of a repeated hour): look further.
			w = nw
			continue
		}
		// nw is skipped by a gap: fire at the first valid minute after it.
		m := nw.Truncate(time.Minute)
		for range 24 * 60 {
			m = m.Add(time.Minute)
			if cs := instants(m, s.loc); len(cs) > 0 && cs[0].After(t) {
				return cs[0]
			}
		}
		return time.Time{}
	}
	return time.Time{}
}

// followsRealTime reports whether a schedule runs in real time through DST
// changes rather than at a fixed wall-clock time: @every, @hourly, or '*'
// at the start of the minute or hour field.
func followsRealTime(schedule string) bool {
	f := strings.Fields(schedule)
	if len(f) > 0 && (strings.HasPrefix(f[0], "CRON_TZ=") || strings.HasPrefix(f[0], "TZ=")) {
		f = f[1:]
	}
	if len(f) == 0 {
		return true
	}
	if strings.HasPrefix(f[0], "@") {
		return f[0] == "@hourly" || f[0] == "@every"
	}
	if len(f) == 6 { // a leading seconds field
		f = f[1:]
	}
	return len(f) < 2 || strings.HasPrefix(f[0], "*") || strings.HasPrefix(f[1], "*")
}

// withDST wraps a parsed schedule with ISC cron's DST rules where they
// apply.
func withDST(schedule string, s cron.Schedule) cron.Schedule {
	spec, ok := s.(*cron.SpecSchedule)
	if !ok || followsRealTime(schedule) || spec.Location == time.UTC {
		return s
	}
	naive := *spec
	naive.Location = time.UTC
	return &wallSchedule{loc: spec.Location, naive: &naive}
}
