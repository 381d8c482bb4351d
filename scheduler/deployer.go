package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/hashicorp/nomad/api"
	"github.com/hashicorp/raft"
)

// The deployer runs on the leader: it registers each project's active
// revision's job with Nomad when it differs from what Nomad runs (the
// job's butter_revision meta). A new leader picks up where the old one
// stopped, because the comparison is with Nomad's own state.
//
// Not yet: following the Nomad deployment to healthy or failed, and the
// automatic rollback of a failed revision.

const metaRevision = "butter_revision"

func (s *Server) runDeployer(ctx context.Context, nomad *api.Client) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
		if s.raft.State() != raft.Leader {
			continue
		}
		type want struct {
			project, revision string
			job               json.RawMessage
		}
		var wants []want
		s.fsm.Read(func(st *fsm.State) {
			for p, id := range st.Active {
				if rev := st.Revisions[p][id]; rev != nil && len(rev.Job) > 0 {
					wants = append(wants, want{p, id, rev.Job})
				}
			}
		})
		sort.Slice(wants, func(i, j int) bool { return wants[i].project < wants[j].project })
		for _, w := range wants {
			if err := s.deploy(nomad, w.project, w.revision, w.job); err != nil {
				s.log.Warn("deploy failed; will retry", "project", w.project, "revision", w.revision, "error", err)
			}
		}
	}
}

// deploy registers the revision's job unless Nomad already runs it.
func (s *Server) deploy(nomad *api.Client, project, revision string, raw json.RawMessage) error {
	var wrapped struct{ Job *api.Job }
	if err := json.Unmarshal(raw, &wrapped); err != nil || wrapped.Job == nil || wrapped.Job.ID == nil {
		return fmt.Errorf("revision %s carries no valid job: %v", revision, err)
	}
	job := wrapped.Job
	current, _, err := nomad.Jobs().Info(*job.ID, nil)
	if err == nil && current.Meta[metaRevision] == revision && (current.Stop == nil || !*current.Stop) {
		return nil
	}
	if _, _, err := nomad.Jobs().Register(job, nil); err != nil {
		return fmt.Errorf("register job %s: %w", *job.ID, err)
	}
	s.log.Info("registered revision with Nomad", "project", project, "revision", revision, "job", *job.ID)
	return nil
}
