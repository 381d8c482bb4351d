package scheduler

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// deleteProject is DELETE /v1/projects/{name}[?purge_topics=true]: it
// records the deletion (fsm/delete.go), which removes the project's
// active revision, timers, API keys and scaling state at once; the
// leader's deployer then stops and purges its Nomad job, deletes its
// consumer groups (and topics when asked) and removes it. Without a
// deployer (no Nomad) that happens here. Deleting a project being
// deleted again answers the same (and may add purge_topics).
func (s *Server) deleteProject(w http.ResponseWriter, r *http.Request) {
	project := r.PathValue("name")
	purge := false
	switch v := r.URL.Query().Get("purge_topics"); v {
	case "", "false":
	case "true":
		purge = true
	default:
		writeErr(w, 400, fmt.Errorf("purge_topics=%q: want true or false", v))
		return
	}
	var known, hasJob bool
	s.fsm.Read(func(st *fsm.State) {
		_, known = st.Projects[project]
		for _, rev := range st.Revisions[project] {
			hasJob = hasJob || len(rev.Job) > 0
		}
	})
	if !known {
		writeErr(w, 404, fmt.Errorf("no project %q; butter status lists the projects", project))
		return
	}
	d := fsm.Deletion{At: time.Now().UTC(), PurgeTopics: purge, Message: "deleting"}
	if hasJob {
		d.Job = names.JobID(project)
		d.Message = "stopping and purging Nomad job " + d.Job
	}
	if err := s.Apply(fsm.ProjectDeleteType, fsm.ProjectDelete{Project: project, Delete: d}); err != nil {
		writeErr(w, 500, err)
		return
	}
	s.log.Info("deleting project", "project", project, "job", d.Job, "purge_topics", purge)
	if s.cfg.Nomad == nil {
		if err := s.finishDeletion(r.Context(), nil, project); err != nil {
			writeErr(w, 500, fmt.Errorf("delete project %q: %w (the deletion is recorded; DELETE again to retry)", project, err))
			return
		}
	}
	writeJSON(w, 200, api.ProjectDeleteResponse{Project: project, Job: d.Job, Deployer: s.cfg.Nomad != nil})
}

// isDeleting reports whether the project is being deleted; when it is,
// it answers 409 saying so.
func (s *Server) isDeleting(w http.ResponseWriter, project string) bool {
	var deleting bool
	s.fsm.Read(func(st *fsm.State) {
		p := st.Projects[project]
		deleting = p != nil && p.Deleting != nil
	})
	if deleting {
		writeErr(w, http.StatusConflict, fmt.Errorf("project %q is being deleted; wait until butter status %s answers that it does not exist, then deploy it again", project, project))
	}
	return deleting
}

// runDeletions takes one step of each project's deletion: called by the
// deployer on the leader.
func (s *Server) runDeletions(ctx context.Context, nomad Nomad) {
	var projects []string
	s.fsm.Read(func(st *fsm.State) {
		for name, p := range st.Projects {
			if p.Deleting != nil {
				projects = append(projects, name)
			}
		}
	})
	for _, p := range projects {
		if err := s.finishDeletion(ctx, nomad, p); err != nil {
			s.log.Warn("project deletion step failed; will retry", "project", p, "error", err)
		}
	}
}

// finishDeletion stops and purges the project's job (with nomad), then
// deletes its consumer groups and, when asked, its topics (with the
// server's Kafka), then records that the project is gone. A step that
// cannot finish yet records why in the deletion's message and returns.
func (s *Server) finishDeletion(ctx context.Context, nomad Nomad, project string) error {
	var d fsm.Deletion
	s.fsm.Read(func(st *fsm.State) {
		if p := st.Projects[project]; p != nil && p.Deleting != nil {
			d = *p.Deleting
		}
	})
	if d.At.IsZero() {
		return nil // gone already
	}
	say := func(msg string) {
		if msg != d.Message {
			d.Message = msg
			_ = s.Apply(fsm.ProjectDeleteType, fsm.ProjectDelete{Project: project, Delete: d})
		}
	}
	if d.Job != "" && nomad != nil {
		_, err := nomad.Job(ctx, d.Job)
		switch {
		case err == nil:
			if err := nomad.DeregisterJob(ctx, d.Job, true); err != nil {
				say(fmt.Sprintf("Nomad did not stop and purge job %s: %v", d.Job, err))
				return fmt.Errorf("stop and purge job %s: %w", d.Job, err)
			}
			s.log.Info("stopped and purged the deleted project's job", "project", project, "job", d.Job)
		case !errors.Is(err, ErrNomadNotFound):
			say(fmt.Sprintf("cannot read Nomad job %s: %v", d.Job, err))
			return fmt.Errorf("read job %s: %w", d.Job, err)
		}
	}
	if s.cfg.Kafka != nil {
		if err := purgeKafka(ctx, s.cfg.Kafka, project, d.PurgeTopics); err != nil {
			if nomad == nil {
				// No deployer: nothing stops the consumers (butter dev's
				// own pool still runs), so waiting would never end. The
				// groups stay, and say so.
				s.log.Warn("project deleted, but not all its Kafka groups or topics", "project", project, "error", err)
			} else {
				say("Kafka: " + err.Error())
				return err
			}
		}
	}
	if err := s.Apply(fsm.ProjectPurgedType, fsm.ProjectPurged{Project: project}); err != nil {
		return err
	}
	s.log.Info("project deleted", "project", project)
	return nil
}

// purgeKafka deletes the project's consumer groups ("butter.<project>.")
// and, with topics, its topics ("<project>."). A group whose consumers
// have not left yet (the job's allocations are stopping) is an error:
// the next step tries again.
func purgeKafka(ctx context.Context, adm *kadm.Client, project string, topics bool) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	listed, err := adm.ListGroups(ctx)
	if err != nil {
		return fmt.Errorf("list consumer groups: %w", err)
	}
	var groups []string
	for _, g := range listed.Groups() {
		if strings.HasPrefix(g, "butter."+project+".") {
			groups = append(groups, g)
		}
	}
	if len(groups) > 0 {
		res, err := adm.DeleteGroups(ctx, groups...)
		if err != nil {
			return fmt.Errorf("delete consumer groups: %w", err)
		}
		for _, g := range res.Sorted() {
			if g.Err != nil && !errors.Is(g.Err, kerr.GroupIDNotFound) {
				return fmt.Errorf("delete consumer group %s: %w", g.Group, g.Err)
			}
		}
	}
	if !topics {
		return nil
	}
	all, err := adm.ListTopics(ctx)
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	var names []string
	for _, t := range all.Names() {
		if strings.HasPrefix(t, project+".") {
			names = append(names, t)
		}
	}
	if len(names) == 0 {
		return nil
	}
	res, err := adm.DeleteTopics(ctx, names...)
	if err != nil {
		return fmt.Errorf("delete topics: %w", err)
	}
	for _, t := range res.Sorted() {
		if t.Err != nil && !errors.Is(t.Err, kerr.UnknownTopicOrPartition) {
			return fmt.Errorf("delete topic %s: %w", t.Topic, t.Err)
		}
	}
	return nil
}
