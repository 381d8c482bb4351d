package scheduler

import (
	"encoding/json"
	"sort"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/scheduler/fsm"
	nomad "github.com/hashicorp/nomad/api"
)

// poolStatuses lists the pools of a revision's job, with their functions,
// scaling bounds and the autoscaler's last decision for each.
func poolStatuses(st *fsm.State, rev *fsm.Revision) []api.PoolStatus {
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
			ps.LastDecision = &api.ScalingDecision{At: d.At, Kind: d.Kind, Count: d.Count, To: d.To, Reason: d.Reason, LastScaled: d.LastScaled}
		}
		out = append(out, ps)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pool < out[j].Pool })
	return out
}
