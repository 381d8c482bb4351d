package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/butterfn/butter/api"
)

// showPools prints each pool of the active revision: its functions, its
// scaling bounds, its allocations as the autoscaler last counted them, and
// the autoscaler's last decision with its reason.
func (c *statusCommand) showPools(pools []api.PoolStatus) {
	if len(pools) == 0 {
		return
	}
	c.ui.Output("Pools")
	for _, p := range pools {
		c.ui.Output(fmt.Sprintf("  %s: %s", p.Pool, strings.Join(p.Functions, ", ")))
		mode := "the autoscaler sets the count"
		if !p.Enabled {
			mode = "scaling enabled = false: operators set the count"
		}
		c.ui.Output(fmt.Sprintf("    allocations  min %d, max %d; %s", p.Min, p.Max, mode))
		c.showSignals(p.Signals)
		d := p.LastDecision
		if d == nil {
			c.ui.Output("    autoscaler   no decision yet (none runs, or it has not looked)")
			continue
		}
		c.ui.Output(fmt.Sprintf("    count        %d at %s", d.Count, d.At.UTC().Format(time.RFC3339)))
		what := d.Kind
		switch d.Kind {
		case "scaled":
			what = fmt.Sprintf("scaled %d -> %d", d.Count, d.To)
		case "refused":
			what = fmt.Sprintf("Nomad refused %d -> %d", d.Count, d.To)
		case "hold":
			what = fmt.Sprintf("hold at %d (the load wants %d)", d.Count, d.To)
		}
		c.ui.Output(fmt.Sprintf("    last         %s at %s: %s", what, d.At.UTC().Format(time.RFC3339), d.Reason))
		if !d.LastScaled.IsZero() && d.Kind != "scaled" {
			step := d.LastScaled.UTC().Format(time.RFC3339)
			if d.LastStep != "" {
				step += ": " + d.LastStep
			}
			c.ui.Output("    last step    " + step)
		}
	}
}

// showSignals prints what the leader's autoscaler last read of a pool:
// per function its instances, calls in flight against capacity and
// queued calls; for the pool its lag, held calls, CPU and memory, and
// what the load wants.
func (c *statusCommand) showSignals(sg *api.PoolSignals) {
	if sg == nil {
		c.ui.Output("    signals      none (no autoscaler runs on the node that answered, or it has not looked)")
		return
	}
	want := "not judged"
	if sg.Want != nil {
		want = fmt.Sprintf("wants %d (%s)", *sg.Want, sg.Signal)
	}
	read := "never read"
	if !sg.ReadAt.IsZero() {
		read = "read " + sg.ReadAt.UTC().Format(time.RFC3339)
	}
	c.ui.Output(fmt.Sprintf("    signals      at %s (%s): %d allocations, %d reporting; %s", sg.At.UTC().Format(time.RFC3339), read, sg.Allocations, sg.Reporting, want))
	if sg.Error != "" {
		// Nothing was read: no readings to show, only why.
		c.ui.Output("      error      " + sg.Error)
		return
	}
	pool := []string{fmt.Sprintf("lag %d", sg.Lag)}
	if sg.Held > 0 {
		pool = append(pool, fmt.Sprintf("%d calls held in a gateway", sg.Held))
	}
	if sg.CPU != nil {
		pool = append(pool, fmt.Sprintf("cpu %.0f%% of reserved", 100**sg.CPU))
	}
	if sg.Memory != nil {
		pool = append(pool, fmt.Sprintf("memory %.0f%% of reserved", 100**sg.Memory))
	}
	c.ui.Output("      pool       " + strings.Join(pool, ", "))
	for _, f := range sg.Functions {
		line := fmt.Sprintf("      %-10s %d instances, in flight %d / capacity %d (%d per allocation × %d), queued %d",
			f.Function, f.Instances, f.InFlight, f.Capacity*sg.Allocations, f.Capacity, sg.Allocations, f.Queued)
		if f.Lag > 0 {
			line += fmt.Sprintf(", lag %d", f.Lag)
		}
		c.ui.Output(line)
		if t := f.Traffic; t != nil {
			c.ui.Output(fmt.Sprintf("      %-10s %s", "", trafficLine(t)))
		}
	}
	for _, p := range sg.Problems {
		c.ui.Output("      problem    " + p)
	}
}

// trafficLine is a function's traffic in words: "1.50 calls/s, errors
// 0.10/s (6.7%), p50 12ms, p99 80ms (over 58s)".
func trafficLine(t *api.Traffic) string {
	s := fmt.Sprintf("%.2f calls/s, errors %.2f/s", t.Rate, t.ErrorRate)
	if t.Calls > 0 {
		s += fmt.Sprintf(" (%.1f%%)", 100*t.Errors/t.Calls)
	}
	if t.P50Seconds != nil && t.P99Seconds != nil {
		s += fmt.Sprintf(", p50 %s, p99 %s", seconds(*t.P50Seconds), seconds(*t.P99Seconds))
	}
	return s + fmt.Sprintf(" (over %s)", time.Duration(t.WindowSeconds*float64(time.Second)).Round(time.Second))
}

// seconds is a latency rounded to what it is worth: 850µs, 12.3ms, 1.2s.
func seconds(v float64) string {
	d := time.Duration(v * float64(time.Second))
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}
