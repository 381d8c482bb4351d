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
			c.ui.Output(fmt.Sprintf("    last step    %s", d.LastScaled.UTC().Format(time.RFC3339)))
		}
	}
}
