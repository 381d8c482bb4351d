package scheduler

import (
	"encoding/json"
	"math"
	"sort"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/autoscaler"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/scheduler/fsm"
	nomad "github.com/hashicorp/nomad/api"
)

// poolStatuses lists the pools of a revision's job, with their functions,
// scaling bounds and the autoscaler's last decision for each.
func poolStatuses(st *fsm.State, rev *fsm.Revision) []api.PoolStatus {
	return poolStatusesWith(st, rev, nil)
}

// poolStatusesWith is poolStatuses with the autoscaler's last
// observations (by "<project>/<pool>"), when this node runs it.
func poolStatusesWith(st *fsm.State, rev *fsm.Revision, obs map[string]autoscaler.Observation) []api.PoolStatus {
	var wrapped struct{ Job *nomad.Job }
	if json.Unmarshal(rev.Job, &wrapped) != nil || wrapped.Job == nil {
		return nil
	}
	var out []api.PoolStatus
	for _, tg := range wrapped.Job.TaskGroups {
		if tg == nil || tg.Name == nil {
			continue
		}
		ps := api.PoolStatus{Pool: *tg.Name}
		if len(tg.Tasks) == 1 && tg.Tasks[0] != nil {
			if fns, ok := tg.Tasks[0].Config["function"].([]any); ok {
				for _, f := range fns {
					if m, ok := f.(map[string]any); ok {
						if n, ok := m["name"].(string); ok {
							ps.Functions = append(ps.Functions, n)
						}
					}
				}
			}
		}
		sort.Strings(ps.Functions)
		if p, err := jobs.ParseScalingPolicy(tg.Scaling); err == nil {
			ps.Min, ps.Max, ps.Enabled = p.Min, p.Max, p.Enabled
		}
		if d := st.Scaling[rev.Project+"/"+*tg.Name]; d != nil {
			ps.LastDecision = &api.ScalingDecision{At: d.At, Kind: d.Kind, Count: d.Count, To: d.To, Reason: d.Reason, LastScaled: d.LastScaled, LastStep: d.LastStep}
		}
		if o, ok := obs[rev.Project+"/"+*tg.Name]; ok {
			ps.Signals = apiSignals(o)
		}
		out = append(out, ps)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pool < out[j].Pool })
	return out
}

// apiSignals is an observation as the API shows it.
func apiSignals(o autoscaler.Observation) *api.PoolSignals {
	l := o.Load
	out := &api.PoolSignals{At: o.At, ReadAt: l.At, Allocations: o.Count, Reporting: l.Allocations, Signal: o.Signal, Lag: l.Lag, Held: l.Held, Problems: l.Problems, Error: o.Err}
	if o.Want >= 0 {
		out.Want = new(o.Want)
	}
	if r := l.Resources; r != nil && r.Allocations > 0 {
		if r.CPUReservedMHz > 0 {
			out.CPU = new(r.CPUShare())
		}
		if r.MemoryReservedMB > 0 {
			out.Memory = new(r.MemoryShare())
		}
	}
	fns := make([]string, 0, len(o.Capacity))
	for f := range o.Capacity {
		fns = append(fns, f)
	}
	for f := range l.Functions {
		if _, ok := o.Capacity[f]; !ok {
			fns = append(fns, f)
		}
	}
	sort.Strings(fns)
	for _, f := range fns {
		fl := l.Functions[f]
		out.Functions = append(out.Functions, api.FunctionSignals{Function: f, Instances: fl.Instances, InFlight: fl.InFlight, Queued: fl.Queued, Capacity: o.Capacity[f],
			Lag: fl.Lag, Traffic: apiTraffic(fl.Traffic)})
	}
	return out
}

// apiTraffic is a function's traffic as the API shows it.
func apiTraffic(t *autoscaler.Traffic) *api.Traffic {
	if t == nil {
		return nil
	}
	out := &api.Traffic{WindowSeconds: t.Window.Seconds(), Calls: t.Calls, Errors: t.Errors, Rate: t.Rate, ErrorRate: t.ErrorRate}
	if !math.IsNaN(t.P50) {
		out.P50Seconds = new(t.P50)
	}
	if !math.IsNaN(t.P99) {
		out.P99Seconds = new(t.P99)
	}
	return out
}
