package scheduler

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/scheduler/fsm"
)

// putQuota serves PUT /v1/projects/{name}/quota: it sets the project's
// limits (creating the project when it does not exist). A zero quota
// removes every limit. Revisions already active keep running; the limits
// apply to the next revision and, for requests per second, to the
// gateways at their next refresh.
func (s *Server) putQuota(w http.ResponseWriter, r *http.Request) {
	var q api.Quota
	if !s.decodeBody(w, r, "quota body", &q) {
		return
	}
	if err := checkQuota(&q); err != nil {
		writeErr(w, 400, err)
		return
	}
	put := fsm.QuotaPut{Project: r.PathValue("name"), At: time.Now().UTC()}
	if q != (api.Quota{}) {
		put.Quota = &fsm.Quota{MaxFunctions: q.MaxFunctions, MaxInstances: q.MaxInstances, RequestsPerSecond: q.RequestsPerSecond}
	}
	if err := s.Apply(fsm.QuotaPutType, put); err != nil {
		writeErr(w, 500, err)
		return
	}
	writeJSON(w, 200, q)
}

// checkQuota refuses negative or unusable limits.
func checkQuota(q *api.Quota) error {
	switch {
	case q.MaxFunctions < 0:
		return fmt.Errorf("quota body: max_functions %d: want 0 (no limit) or more", q.MaxFunctions)
	case q.MaxInstances < 0:
		return fmt.Errorf("quota body: max_instances %d: want 0 (no limit) or more", q.MaxInstances)
	case q.RequestsPerSecond < 0 || math.IsNaN(q.RequestsPerSecond) || math.IsInf(q.RequestsPerSecond, 0):
		return fmt.Errorf("quota body: requests_per_second %v: want 0 (no limit) or a positive number", q.RequestsPerSecond)
	}
	return nil
}

func apiQuota(q *fsm.Quota) *api.Quota {
	if q == nil {
		return nil
	}
	return &api.Quota{MaxFunctions: q.MaxFunctions, MaxInstances: q.MaxInstances, RequestsPerSecond: q.RequestsPerSecond}
}

// errOverQuota marks a revision over its project's quota (422).
var errOverQuota = errors.New("over the project's quota")

// checkRevisionQuota holds a revision's job to the project's quota: its
// functions and the sum of their maximum instances.
func checkRevisionQuota(project string, q *fsm.Quota, job []byte) error {
	if q == nil || (q.MaxFunctions == 0 && q.MaxInstances == 0) || len(job) == 0 {
		return nil
	}
	fns, err := jobs.Functions(job)
	if err != nil {
		return err
	}
	instances := 0
	for _, f := range fns {
		instances += f.MaxInstances
	}
	raise := fmt.Sprintf("remove functions or lower instances.max, or ask an operator to raise it: butter project quota set %s", project)
	if q.MaxFunctions > 0 && len(fns) > q.MaxFunctions {
		return fmt.Errorf("%w: the revision has %d functions, and project %q may have %d (max_functions); %s -max-functions N", errOverQuota, len(fns), project, q.MaxFunctions, raise)
	}
	if q.MaxInstances > 0 && instances > q.MaxInstances {
		return fmt.Errorf("%w: the revision's functions may run %d instances in all (the sum of their instances.max), and project %q may run %d (max_instances); %s -max-instances N", errOverQuota, instances, project, q.MaxInstances, raise)
	}
	return nil
}
