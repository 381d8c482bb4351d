package deploy

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/butterfn/butter/api"
)

// Outcome is how following a revision's deployment ended.
type Outcome int

const (
	// Healthy: the revision's Nomad deployment succeeded.
	Healthy Outcome = iota + 1
	// Failed: it failed. Result.Active says whether the project was
	// rolled back (another revision is active) or stays on it.
	Failed
	// Replaced: another revision became active before this one ended.
	Replaced
)

// Result is where a revision's deployment ended up.
type Result struct {
	Outcome Outcome
	// Status and Message are the revision's last deployment state.
	Status, Message string
	// Active is the project's active revision at the end.
	Active string
	// Deployment is the revision's last deployment state, its
	// allocations with it.
	Deployment api.DeployStatus
}

// stateKey is what progress reports changes of: the status, the message
// and each allocation's state.
func stateKey(d api.DeployStatus) string {
	var b strings.Builder
	b.WriteString(d.Status + "\x00" + d.Message)
	for _, a := range d.Allocations {
		h := "?"
		if a.Healthy != nil {
			h = fmt.Sprint(*a.Healthy)
		}
		b.WriteString("\x00" + a.ID + "/" + a.Status + "/" + h + "/" + a.Task)
	}
	return b.String()
}

// Watch follows a revision's deployment until it is healthy, failed or
// replaced, calling progress (when not nil) with the revision's
// deployment state each time its status, message or allocations change. Each round waits on a blocking query of the project's
// revisions, so a change is seen at once; against a server that answers
// no index it polls every pollEvery. It returns ctx's error, wrapped with
// the last status, when ctx ends first.
func Watch(ctx context.Context, client *api.Client, project, revision string, progress func(api.DeployStatus)) (Result, error) {
	const pollEvery = 500 * time.Millisecond
	var res Result
	last := "\x00"
	q := &api.QueryOptions{WaitTime: 30 * time.Second}
	for {
		revs, meta, err := client.Revisions().List(ctx, project, q)
		if err == nil {
			q.WaitIndex = meta.LastIndex
			var st *api.ProjectStatus
			if st, _, err = client.Projects().Status(ctx, project, nil); err == nil {
				res.Status, res.Message, res.Active = "", "", ""
				rolledBackTo := ""
				for _, r := range revs {
					if r.ID == revision {
						res.Status, res.Message = r.Deployment.Status, r.Deployment.Message
						rolledBackTo = r.Deployment.RolledBackTo
						res.Deployment = r.Deployment
					}
				}
				if st.Active != nil {
					res.Active = st.Active.ID
				}
				if res.Status == api.StatusFailed && rolledBackTo != "" {
					// The rollback's activation is the next entry after
					// the failure: report where the project goes.
					res.Active = rolledBackTo
				}
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return res, fmt.Errorf("revision %s still %s: %w", revision, orPending(res.Status), ctx.Err())
			}
			return res, err
		}
		if line := stateKey(res.Deployment); line != last {
			last = line
			if progress != nil {
				progress(res.Deployment)
			}
		}
		switch {
		case res.Status == api.StatusHealthy:
			res.Outcome = Healthy
			return res, nil
		case res.Status == api.StatusFailed:
			res.Outcome = Failed
			return res, nil
		case res.Active != "" && res.Active != revision:
			res.Outcome = Replaced
			return res, nil
		}
		if meta.LastIndex == 0 {
			select {
			case <-ctx.Done():
			case <-time.After(pollEvery):
			}
		}
		if ctx.Err() != nil {
			return res, fmt.Errorf("revision %s still %s: %w", revision, orPending(res.Status), ctx.Err())
		}
	}
}

func orPending(status string) string {
	if status == "" {
		return "pending"
	}
	return status
}
