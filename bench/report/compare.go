package main

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// A run is compared with the last committed one (-previous: the
// RESULTS.txt of HEAD, which bench/run.sh extracts before it writes its
// own): each figure's ratio to its baseline, in each run, so that the
// machine's speed on the day cancels out. A figure whose ratio moved
// further than its noise band is listed, regressions first; make bench
// prints the regressions too, and fails nothing (issue 23, item 5).

// minBand is the smallest noise band: ratios of this shared machine move
// by this much between runs with nothing changed.
const minBand = 0.10

// fewRunsBand is the band of a figure with fewer than three runs in
// either run, whose spread says little.
const fewRunsBand = 0.25

// change is one figure's ratio in the previous run and in this one.
type change struct {
	k          key
	old, new   float64
	band       float64
	rate       bool // higher is better
	regression bool
}

// spread is half the range of a unit's samples over their median: how
// far one run's figure strays from the middle; ok is false with fewer
// than three samples.
func spread(rs *results, k key, unit string) (float64, bool) {
	vs := rs.samples[k][unit]
	m, ok := rs.median(k, unit)
	if len(vs) < 3 || !ok || m == 0 {
		return 0, false
	}
	return (slices.Max(vs) - slices.Min(vs)) / 2 / m, true
}

// band is the noise band of k's ratio in rs: its spread plus its
// baseline's.
func band(rs *results, k key, unit string) float64 {
	s1, ok1 := spread(rs, k, unit)
	s2, ok2 := spread(rs, k.baseline(), unit)
	if !ok1 || !ok2 {
		return fewRunsBand
	}
	return max(minBand, s1+s2)
}

// compare lists the figures whose ratio to their baseline moved beyond
// their noise band between prev and rs, and how many stayed within it.
func compare(rs, prev *results) (moved []change, within int) {
	for _, k := range rs.order {
		if k.isBaseline() || k.baseline() == k {
			continue
		}
		unit := rs.headline(k)
		if prev.samples[k] == nil || prev.headline(k) != unit {
			continue
		}
		r1, ok1 := prev.ratio(k)
		r2, ok2 := rs.ratio(k)
		if !ok1 || !ok2 || r1 == 0 {
			continue
		}
		c := change{k: k, old: r1, new: r2, rate: isRate(unit), band: max(band(rs, k, unit), band(prev, k, unit))}
		rel := r2/r1 - 1
		switch {
		case c.rate && rel < -c.band, !c.rate && rel > c.band:
			c.regression = true
			moved = append(moved, c)
		case c.rate && rel > c.band, !c.rate && rel < -c.band:
			moved = append(moved, c)
		default:
			within++
		}
	}
	slices.SortStableFunc(moved, func(a, b change) int {
		if a.regression != b.regression {
			if a.regression {
				return -1
			}
			return 1
		}
		return 0
	})
	return moved, within
}

// comparison writes the section that compares rs with prev.
func comparison(b *bytes.Buffer, rs, prev *results) []change {
	moved, within := compare(rs, prev)
	fmt.Fprintf(b, "\n## Against the last committed run\n\n")
	fmt.Fprintf(b, "Each figure's ratio to its baseline here against the same ratio in the last committed bench/RESULTS.txt (commit %s), listed when it moved beyond its noise band: half the range of the figure's runs and of its baseline's, over their medians, the larger of the two runs' (at least %.0f%%; %.0f%% with fewer than three runs). Ratios, not absolute figures, so that the machine's speed on the day cancels out.\n\n",
		orUnknown(prev.config["commit"]), minBand*100, fewRunsBand*100)
	if len(moved) == 0 {
		fmt.Fprintf(b, "No figure moved beyond its band (%d compared).\n\n", within)
		return nil
	}
	fmt.Fprintf(b, "| figure | before | now | change | band | |\n|---|---:|---:|---:|---:|---|\n")
	var regressions []change
	for _, c := range moved {
		verdict := "better"
		if c.regression {
			verdict, regressions = "**regressed**", append(regressions, c)
		}
		fmt.Fprintf(b, "| %s (%s) | %.3g× | %.3g× | %+.0f%% | ±%.0f%% | %s |\n", c.k.name, c.k.pkg, c.old, c.new, (c.new/c.old-1)*100, c.band*100, verdict)
	}
	fmt.Fprintf(b, "\n%d other figures within their band.\n\n", within)
	return regressions
}

// regressionLines are make bench's words for the regressions.
func regressionLines(rs []change) string {
	var lines []string
	for _, c := range rs {
		lines = append(lines, fmt.Sprintf("%s (%s): %.3g× of its baseline, was %.3g× (%+.0f%%, band ±%.0f%%)", c.k.name, c.k.pkg, c.new, c.old, (c.new/c.old-1)*100, c.band*100))
	}
	return strings.Join(lines, "\n")
}
