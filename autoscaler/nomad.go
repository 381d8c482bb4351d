package autoscaler

import (
	"context"
	"fmt"
	"sort"

	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/names"
	"github.com/hashicorp/nomad/api"
)

// NomadScaler is the Scaler over Nomad's HTTP API: the groups of every job
// whose meta names a Butter project, and Nomad's Scale API
// (`nomad job scale`), whose message Nomad keeps in the job's scaling
// events (`nomad job scaling-events <job>`).
type NomadScaler struct {
	Client *api.Client
}

var _ Scaler = (*NomadScaler)(nil)

// Groups lists the task groups of running Butter jobs (job meta
// butter_project) that have a scaling block, each with its active
// deployment.
func (n *NomadScaler) Groups(ctx context.Context) ([]Group, error) {
	q := (&api.QueryOptions{Prefix: "butter-"}).WithContext(ctx)
	stubs, _, err := n.Client.Jobs().List(q)
	if err != nil {
		return nil, fmt.Errorf("list Nomad jobs: %w", err)
	}
	sort.Slice(stubs, func(i, j int) bool { return stubs[i].ID < stubs[j].ID })
	var out []Group
	for _, s := range stubs {
		if s.Stop || s.Type != api.JobTypeService {
			continue
		}
		job, _, err := n.Client.Jobs().Info(s.ID, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("read Nomad job %s: %w", s.ID, err)
		}
		project := job.Meta[names.MetaProject]
		if project == "" {
			continue // not a project's job (a platform job, say)
		}
		active := ""
		dep, _, err := n.Client.Jobs().LatestDeployment(s.ID, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("read the latest deployment of Nomad job %s: %w", s.ID, err)
		}
		if dep != nil && deploymentActive(dep.Status) {
			active = dep.ID
		}
		for _, tg := range job.TaskGroups {
			if tg.Name == nil || tg.Scaling == nil {
				continue
			}
			g := Group{Target: Target{Project: project, Job: s.ID, Group: *tg.Name}, Deployment: active}
			if tg.Count != nil {
				g.Count = *tg.Count
			}
			for _, t := range tg.Tasks {
				if t != nil && t.Resources != nil {
					if t.Resources.CPU != nil {
						g.CPUMHz += *t.Resources.CPU
					}
					if t.Resources.MemoryMB != nil {
						g.MemoryMB += *t.Resources.MemoryMB
					}
				}
			}
			g.Policy, g.PolicyErr = jobs.ParseScalingPolicy(tg.Scaling)
			if len(tg.Scaling.Policy) == 0 {
				g.Unmanaged = "the scaling block has no policy of Butter's (the job was compiled before the autoscaler existed): deploy the project again to have it autoscaled"
			}
			out = append(out, g)
		}
	}
	return out, nil
}

// deploymentActive says whether a deployment in this status blocks
// scaling: every status but the final ones.
func deploymentActive(status string) bool {
	switch status {
	case api.DeploymentStatusSuccessful, api.DeploymentStatusFailed, api.DeploymentStatusCancelled:
		return false
	}
	return true
}

// Scale sets the group's count through Nomad's Scale API.
func (n *NomadScaler) Scale(ctx context.Context, t Target, count int, reason string) error {
	_, _, err := n.Client.Jobs().Scale(t.Job, t.Group, &count, reason, false, map[string]any{"source": "butter-autoscaler"}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("scale %s to %d: %w", t, count, err)
	}
	return nil
}
