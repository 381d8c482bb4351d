package dev

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/butterfn/butter/scheduler/fsm"
)

// recordServing records in the control plane that revision serves,
// which `butter status` shows. On Nomad the deployer does this once
// Nomad's deployment succeeded; under butter dev there is no Nomad, and a
// revision is healthy once its pool serves it, or failed when the pool
// reports functions it cannot keep running. The message carries the
// pool's warnings: what it cannot enforce (pool.Warnings).
func (d *env) recordServing(project, revision string, p *livePool) error {
	now := time.Now().UTC()
	st := fsm.DeployStatus{Status: fsm.StatusHealthy, Updated: now, HealthyAt: now,
		Message: fmt.Sprintf("butter dev serves it (pool on %s)", p.addr)}
	if bad := p.pool.Unhealthy(); len(bad) > 0 {
		why := make([]string, 0, len(bad))
		for fn, reason := range bad {
			why = append(why, fn+": "+reason)
		}
		sort.Strings(why)
		st = fsm.DeployStatus{Status: fsm.StatusFailed, Updated: now,
			Message: "butter dev serves it, but some functions cannot keep their minimum instances: " + strings.Join(why, "; ")}
	}
	if w := p.pool.Warnings(); len(w) > 0 {
		// What the pool cannot enforce (an unconfined function, limits
		// that are off), which `butter status` then shows.
		st.Message += "; NOT ENFORCED: " + strings.Join(w, "; ")
	}
	if err := d.server.Apply(fsm.RevisionStatusType, fsm.RevisionStatus{Project: project, Revision: revision, Status: st}); err != nil {
		return fmt.Errorf("record the status of revision %s: %w", revision, err)
	}
	return nil
}
