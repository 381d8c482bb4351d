package scheduler

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/scheduler/fsm"
)

// poolPath checks a pool name in a path.
var poolPath = pathRule{"pool", "pool name", names.Valid, names.RuleText}

// wakePool is POST /v1/projects/{name}/pools/{pool}/wake (leader): a
// gateway holds calls for a pool with no allocation. The leader's
// autoscaler takes it as a signal (autoscaler.Autoscaler.Wake): it scales
// the pool's group 0 -> 1 at once and keeps one allocation while wakes
// keep coming. Nothing is written to Raft; the scaling decision is. A
// pool of the active revision's job that the autoscaler does not scale to
// zero is refused 409 (404 when the job has no such pool): the gateway
// then stops holding its calls.
func (s *Server) wakePool(w http.ResponseWriter, r *http.Request) {
	var req api.WakeRequest
	if r.ContentLength != 0 {
		if err := json.NewDecoder(io.LimitReader(r.Body, 4<<10)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			writeErr(w, http.StatusBadRequest, fmt.Errorf("the wake request's body is not {\"held\": N}: %w", err))
			return
		}
	}
	project, pool := r.PathValue("name"), r.PathValue("pool")
	// A pool the active revision has, but that the autoscaler never
	// scales to zero, has no allocation for another reason (a failed
	// job, an operator's scale): say so, and the gateway stops holding
	// its calls. A revision without a job (or a project without one) is
	// not known well enough to refuse.
	var known bool
	var ps api.PoolStatus
	s.fsm.Read(func(st *fsm.State) {
		rev := st.Revisions[project][st.Active[project]]
		if rev == nil || len(rev.Job) == 0 {
			return
		}
		known = true
		for _, p := range poolStatuses(st, rev) {
			if p.Pool == pool {
				ps = p
			}
		}
	})
	switch {
	case known && ps.Pool == "":
		writeErr(w, http.StatusNotFound, fmt.Errorf("project %s's active revision has no pool %q, so there is nothing to wake", project, pool))
		return
	case known && (ps.Min > 0 || !ps.Enabled):
		writeErr(w, http.StatusConflict, fmt.Errorf("pool %q of project %s is not one the autoscaler scales to zero (min %d, enabled %t), so waking it would change nothing: it has no allocation for another reason (nomad job status %s)", pool, project, ps.Min, ps.Enabled, names.JobID(project)))
		return
	}
	a := s.scaler.Load()
	if a == nil {
		writeErr(w, http.StatusServiceUnavailable, errors.New("no autoscaler runs on the leader (started with -autoscale=false or without Nomad), so nothing wakes a pool scaled to zero: scale it with `nomad job scale`"))
		return
	}
	a.Wake(project, pool, req.Held)
	writeJSON(w, http.StatusOK, api.WakeResponse{Project: project, Pool: pool})
}
