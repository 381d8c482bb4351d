package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/names"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/hashicorp/nomad/api"
	"github.com/hashicorp/raft"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// The deployer runs on the leader. For each project it drives the active
// revision through pending → deploying → healthy | failed:
//
//   - pending: it registers the revision's job with Nomad (unless Nomad
//     already runs that revision, judged by the job's butter_revision meta)
//     and records the job version it got;
//   - deploying: it follows Nomad's deployment of that job version, and
//     records its progress (allocations placed and healthy per group);
//   - successful: the revision is healthy;
//   - failed: the revision is failed, with Nomad's reason and the failing
//     allocations' check output, and — unless the job's
//     butter_auto_rollback meta says "false" — the revision most recently
//     healthy is activated again, which deploys it the same way.
//
// A healthy revision whose job Nomad no longer runs (stopped, or replaced
// by hand) is registered again. Every step is recorded in Raft, so a new
// leader resumes where the old one stopped.

// DefaultDeploymentStart is Config.DeploymentStart's default: Nomad
// creates a deployment within seconds of a registration it can evaluate.
const DefaultDeploymentStart = 5 * time.Minute

// deployTick is how often the deployer looks at Nomad.
const deployTick = 500 * time.Millisecond

type deployWant struct {
	project, revision string
	job               json.RawMessage
	status            fsm.DeployStatus
	bundles           map[string]string
	// canary is the project's canary of this revision in progress, a
	// copy; nil without one (canary.go).
	canary *fsm.Canary
}

func (s *Server) runDeployer(ctx context.Context, nomad Nomad) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(deployTick):
		}
		if s.raft.State() != raft.Leader {
			continue
		}
		var wants []deployWant
		s.fsm.Read(func(st *fsm.State) {
			for p, id := range st.Active {
				if rev := st.Revisions[p][id]; rev != nil && len(rev.Job) > 0 {
					w := deployWant{project: p, revision: id, job: rev.Job, status: rev.Deployment, bundles: rev.Bundles}
					if c := st.Canaries[p]; c.Active() && c.Revision == id {
						w.canary = cloneCanary(c)
					}
					wants = append(wants, w)
				}
			}
		})
		s.runDeletions(ctx, nomad) // delete.go
		s.runCanaries()            // canary.go
		sort.Slice(wants, func(i, j int) bool { return wants[i].project < wants[j].project })
		for _, w := range wants {
			if err := s.reconcile(ctx, nomad, w); err != nil {
				s.log.Warn("deploy step failed; will retry", "project", w.project, "revision", w.revision, "error", err)
			}
		}
	}
}

func (s *Server) setStatus(project, revision string, st fsm.DeployStatus) error {
	st.Updated = time.Now().UTC()
	return s.Apply(fsm.RevisionStatusType, fsm.RevisionStatus{Project: project, Revision: revision, Status: st})
}

// jobExpect is what a revision's job is checked against: the project it
// was posted to, its id, and its blobs' digests.
func jobExpect(project, revision string, bundles map[string]string) jobs.Expect {
	e := jobs.Expect{Project: project, Revision: revision, Digests: map[string]bool{}}
	for _, d := range bundles {
		e.Digests[d] = true
	}
	return e
}

// reconcile takes one step for the project's active revision.
func (s *Server) reconcile(ctx context.Context, nomad Nomad, w deployWant) error {
	// Checked at the revision's creation, and again here: a revision
	// restored from a snapshot, or written by an older server, is held
	// to the same rule before anything reaches Nomad.
	job, err := jobs.Check(w.job, jobExpect(w.project, w.revision, w.bundles))
	if err != nil {
		return s.fail(w, fmt.Sprintf("the revision's job is refused, and nothing was registered: %v", err))
	}
	current, err := nomad.Job(ctx, *job.ID)
	if err != nil && !errors.Is(err, ErrNomadNotFound) {
		// A revision not yet registered whose job Nomad refuses to show
		// (403: the token is unknown, or its policy lacks read-job) would
		// otherwise wait, pending, with the cause only in the server's
		// log: fail it, naming the cause, so that `butter deploy` says
		// it. A healthy revision is not failed for it (a token being
		// replaced must not fail what runs): that is only logged.
		var ne *NomadError
		if (w.status.Status == fsm.StatusPending || w.status.Status == "") && errors.As(err, &ne) && ne.StatusCode == 403 {
			return s.failAndRollback(w, fmt.Sprintf("Nomad refused to read job %s: %v. The control plane's Nomad token ($NOMAD_TOKEN) is unknown to Nomad, or its policy lacks read-job: give the server a token whose policy allows list-jobs, read-job and submit-job (docs/jobs.md), then deploy again", *job.ID, err), job.Meta[names.MetaAutoRollback] != "false")
		}
		return fmt.Errorf("read job %s: %w", *job.ID, err)
	}
	runs := err == nil && current.Meta[names.MetaRevision] == w.revision && (current.Stop == nil || !*current.Stop)

	switch w.status.Status {
	case fsm.StatusHealthy:
		if runs {
			return nil
		}
		// Drift: the job was stopped or replaced outside Butter.
		fallthrough
	case fsm.StatusPending, "":
		if !runs {
			if err := s.signArtifacts(job); err != nil { // acl.go
				return err
			}
			preserve := false
			if current != nil {
				preserve = s.keepCounts(w, job, current)
			}
			if w.canary.Active() {
				if current != nil && current.Meta[names.MetaRevision] == w.canary.Stable && (current.Stop == nil || !*current.Stop) {
					canaryJob(job) // canary.go
				} else {
					if err := s.endCanary(w, fsm.CanaryReplaced, fmt.Sprintf("Nomad does not run the stable revision %s, so there is nothing to keep beside the new one: revision %s replaces it at once", w.canary.Stable, w.revision)); err != nil {
						return err
					}
					w.canary = nil
				}
			}
			_, span := tracer.Start(ctx, "register job "+*job.ID, trace.WithSpanKind(trace.SpanKindClient),
				trace.WithAttributes(attribute.String("butter.project", w.project), attribute.String("butter.revision", w.revision)))
			err := nomad.RegisterJob(ctx, job, preserve)
			if err != nil {
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
			if err != nil {
				if errors.Is(err, ErrNomadRefused) {
					return s.failAndRollback(w, fmt.Sprintf("Nomad refused job %s: %v", *job.ID, err), job.Meta[names.MetaAutoRollback] != "false")
				}
				return fmt.Errorf("register job %s: %w", *job.ID, err)
			}
			current, err = nomad.Job(ctx, *job.ID)
			if err != nil {
				return fmt.Errorf("read job %s after registering it: %w", *job.ID, err)
			}
			s.log.Info("registered revision with Nomad", "project", w.project, "revision", w.revision, "job", *job.ID, "version", deref(current.Version))
		}
		return s.setStatus(w.project, w.revision, fsm.DeployStatus{
			Status:     fsm.StatusDeploying,
			Message:    fmt.Sprintf("job %s version %d registered; waiting for Nomad's deployment", *job.ID, deref(current.Version)),
			JobVersion: deref(current.Version),
			HealthyAt:  w.status.HealthyAt,
			Registered: time.Now().UTC(),
		})
	case fsm.StatusDeploying:
		if !runs {
			// Replaced while deploying: start over.
			return s.setStatus(w.project, w.revision, fsm.DeployStatus{Status: fsm.StatusPending, Message: "Nomad runs another job version; registering again", HealthyAt: w.status.HealthyAt})
		}
		return s.follow(ctx, nomad, w, *job.ID, job.Meta[names.MetaAutoRollback] != "false")
	}
	return nil // failed: stays until the next activation
}

// keepCounts makes a deploy keep the counts the groups of the job Nomad
// runs have now (set by the autoscaler or by `nomad job scale`), and says
// whether Nomad should preserve them (PreserveCounts). A count outside
// the new revision's scaling bounds is brought within them instead: the
// job is registered with each existing group's count, clamped, and
// without PreserveCounts, which would keep the out-of-bounds count.
func (s *Server) keepCounts(w deployWant, job, current *api.Job) bool {
	now := map[string]int{}
	for _, tg := range current.TaskGroups {
		if tg.Name != nil && tg.Count != nil {
			now[*tg.Name] = *tg.Count
		}
	}
	preserve := true
	for _, tg := range job.TaskGroups {
		c, ok := now[deref(tg.Name)]
		if !ok {
			continue // a new group starts at its compiled count
		}
		kept := c
		if sc := tg.Scaling; sc != nil && sc.Min != nil && sc.Max != nil {
			kept = min(max(c, int(*sc.Min)), int(*sc.Max))
		}
		if kept != c {
			preserve = false
			s.log.Info("a group's count is outside the new revision's scaling bounds; registering it at the nearest bound", "project", w.project, "revision", w.revision, "group", deref(tg.Name), "count", c, "now", kept)
		}
		tg.Count = new(kept)
	}
	return preserve
}

// follow reads Nomad's deployment of the revision's job version.
func (s *Server) follow(ctx context.Context, nomad Nomad, w deployWant, jobID string, autoRollback bool) error {
	deps, err := nomad.JobDeployments(ctx, jobID)
	if err != nil {
		return fmt.Errorf("list deployments of %s: %w", jobID, err)
	}
	var dep *api.Deployment
	for _, d := range deps {
		if d.JobVersion == w.status.JobVersion && (dep == nil || d.CreateIndex > dep.CreateIndex) {
			dep = d
		}
	}
	st := w.status
	if dep == nil {
		// Nomad has not created it yet: wait, up to DeploymentStart after
		// the version was registered (the status's last update).
		limit := s.cfg.DeploymentStart
		if limit <= 0 {
			limit = DefaultDeploymentStart
		}
		if waited := time.Since(st.Updated); !st.Updated.IsZero() && waited > limit {
			return s.failAndRollback(w, fmt.Sprintf("Nomad created no deployment for job %s version %d within %s; is the job evaluated (nomad job status %s)?", jobID, st.JobVersion, limit, jobID), autoRollback)
		}
		return nil
	}
	st.NomadDeployment = dep.ID
	st.Allocations = s.allocStates(ctx, nomad, dep.ID, st.Allocations)
	if took, err := s.canaryStep(ctx, nomad, w, dep); took {
		return err
	}
	switch dep.Status {
	case api.DeploymentStatusSuccessful:
		st.Status = fsm.StatusHealthy
		st.Message = "deployment " + short(dep.ID) + " successful: " + progress(dep)
		if warnings := s.poolWarnings(ctx, nomad, dep.ID); len(warnings) > 0 {
			st.Message += "; the pools warn: " + strings.Join(warnings, "; ")
		}
		st.HealthyAt = time.Now().UTC()
		s.log.Info("revision healthy", "project", w.project, "revision", w.revision, "deployment", dep.ID)
		if err := s.setStatus(w.project, w.revision, st); err != nil {
			return err
		}
		s.obs.deployed(w.project, "healthy", st.Registered)
		if c := w.canary; c.Active() {
			msg := fmt.Sprintf("revision %s promoted: it serves every call", w.revision)
			if c.Phase == fsm.CanaryStarting {
				msg = fmt.Sprintf("Nomad placed no canary (the change to the allocations is not destructive, so it updated them in place): revision %s serves every call", w.revision)
			}
			return s.endCanary(w, fsm.CanaryPromoted, msg)
		}
		return nil
	case api.DeploymentStatusFailed, api.DeploymentStatusCancelled:
		why := fmt.Sprintf("deployment %s %s: %s", short(dep.ID), dep.Status, dep.StatusDescription)
		if detail := s.failureDetail(ctx, nomad, dep.ID); detail != "" {
			why += "; " + detail
		}
		w.status.Allocations = st.Allocations
		return s.failAndRollback(w, why, autoRollback)
	default:
		msg := fmt.Sprintf("deployment %s %s: %s", short(dep.ID), dep.Status, progress(dep))
		if msg == st.Message && slices.EqualFunc(st.Allocations, w.status.Allocations, sameAlloc) {
			return nil
		}
		st.Message = msg
		return s.setStatus(w.project, w.revision, st)
	}
}

func (s *Server) fail(w deployWant, why string) error {
	return s.failAndRollback(w, why, true)
}

// failAndRollback records the failure and activates the revision most
// recently healthy, when there is one and rollback is on.
func (s *Server) failAndRollback(w deployWant, why string, autoRollback bool) error {
	s.activateMu.Lock()
	defer s.activateMu.Unlock()
	var target string
	var best time.Time
	var refused *routeError
	if w.canary.Active() {
		// A canary goes back to its stable revision, which still runs.
		autoRollback = true
	}
	s.fsm.Read(func(st *fsm.State) {
		for id, rev := range st.Revisions[w.project] {
			if id != w.revision && !rev.Deployment.HealthyAt.IsZero() && rev.Deployment.HealthyAt.After(best) {
				target, best = id, rev.Deployment.HealthyAt
			}
		}
		if c := w.canary; c.Active() && st.Revisions[w.project][c.Stable] != nil {
			target = c.Stable
		}
		if target != "" {
			refused = checkRoutes(st, w.project, st.Revisions[w.project][target].Routes)
		}
	})
	msg := why
	switch {
	case !autoRollback:
		msg += "; automatic rollback is off (deploy { auto_rollback = false })"
	case target == "":
		msg += "; no earlier revision was ever healthy, so there is nothing to roll back to"
	case refused != nil:
		msg += fmt.Sprintf("; cannot roll back to %s: %v", target, refused)
		target = ""
	default:
		msg += "; rolled back to " + target
	}
	s.log.Error("revision failed", "project", w.project, "revision", w.revision, "reason", msg)
	st := w.status
	st.Status, st.Message = fsm.StatusFailed, msg
	if autoRollback && target != "" {
		st.RolledBackTo = target
	}
	if err := s.setStatus(w.project, w.revision, st); err != nil {
		return err
	}
	s.obs.deployed(w.project, "failed", st.Registered)
	if err := s.endCanary(w, fsm.CanaryAborted, msg); err != nil {
		return err
	}
	if autoRollback && target != "" {
		if err := s.Apply(fsm.RevisionActivateType, fsm.Activation{Project: w.project, Revision: target, Reason: "automatic rollback: revision " + w.revision + " failed"}); err != nil {
			return err
		}
		s.obs.activations.WithLabelValues(w.project, "auto_rollback").Inc()
	}
	return nil
}

// failureDetail names the deployment's unhealthy allocations and what
// their checks and tasks said.
func (s *Server) failureDetail(ctx context.Context, nomad Nomad, deploymentID string) string {
	allocs, err := nomad.DeploymentAllocations(ctx, deploymentID)
	if err != nil {
		return ""
	}
	var parts []string
	for _, a := range allocs {
		if a.DeploymentStatus == nil || a.DeploymentStatus.Healthy == nil || *a.DeploymentStatus.Healthy {
			continue
		}
		part := "allocation " + short(a.ID) + " unhealthy"
		if checks, err := nomad.AllocationChecks(ctx, a.ID); err == nil {
			for _, c := range checks {
				if c.Status != "success" && c.Output != "" {
					part += ": check " + c.Check + " said " + strings.TrimSpace(truncate(c.Output, 800))
					break
				}
			}
		}
		for task, ts := range a.TaskStates {
			if ts.Failed && len(ts.Events) > 0 {
				ev := ts.Events[len(ts.Events)-1]
				part += fmt.Sprintf(": task %s failed: %s", task, ev.DisplayMessage)
			}
		}
		parts = append(parts, part)
		if len(parts) == 3 {
			break
		}
	}
	return strings.Join(parts, "; ")
}

// poolWarnings collects what the deployment's pools say they cannot
// enforce (an unconfined instance, a memory or process limit off): the
// "warnings" of their /v1/health answers, which Nomad keeps as the output
// of each allocation's service check. butter status shows them with the
// revision's deployment.
func (s *Server) poolWarnings(ctx context.Context, nomad Nomad, deploymentID string) []string {
	allocs, err := nomad.DeploymentAllocations(ctx, deploymentID)
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, a := range allocs {
		checks, err := nomad.AllocationChecks(ctx, a.ID)
		if err != nil {
			continue
		}
		for _, c := range checks {
			i := strings.IndexByte(c.Output, '{')
			if i < 0 {
				continue
			}
			var health struct{ Warnings []string }
			if json.Unmarshal([]byte(c.Output[i:]), &health) != nil {
				continue
			}
			for _, w := range health.Warnings {
				if !seen[w] {
					seen[w] = true
					out = append(out, w)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// allocStates reads the allocations of Nomad's deployment, sorted by
// group and id; the last reading, kept, when Nomad cannot be read.
func (s *Server) allocStates(ctx context.Context, nomad Nomad, deploymentID string, last []fsm.AllocState) []fsm.AllocState {
	allocs, err := nomad.DeploymentAllocations(ctx, deploymentID)
	if err != nil {
		return last
	}
	out := make([]fsm.AllocState, 0, len(allocs))
	for _, a := range allocs {
		st := fsm.AllocState{ID: a.ID, Group: a.TaskGroup, Node: a.NodeName, Status: a.ClientStatus}
		if a.DeploymentStatus != nil {
			st.Healthy = a.DeploymentStatus.Healthy
		}
		if a.ClientStatus != api.AllocClientStatusRunning && a.ClientStatus != api.AllocClientStatusComplete {
			st.Task = taskProblem(a.TaskStates)
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Group != out[j].Group {
			return out[i].Group < out[j].Group
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// taskProblem is the last event of a task that is not running, as
// "task: event: message".
func taskProblem(states map[string]*api.TaskState) string {
	names := make([]string, 0, len(states))
	for n := range states {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ts := states[n]
		if ts == nil || ts.State == "running" || len(ts.Events) == 0 {
			continue
		}
		e := ts.Events[len(ts.Events)-1]
		msg := e.DisplayMessage
		if msg == "" {
			msg = e.Message
		}
		return strings.TrimSpace(n + ": " + e.Type + ": " + msg)
	}
	return ""
}

func sameAlloc(a, b fsm.AllocState) bool {
	return a.ID == b.ID && a.Status == b.Status && a.Task == b.Task && a.Node == b.Node &&
		(a.Healthy == nil) == (b.Healthy == nil) && (a.Healthy == nil || *a.Healthy == *b.Healthy)
}

// progress summarises a deployment's groups: "main 1/1 placed, 0 healthy".
func progress(d *api.Deployment) string {
	var names []string
	for n := range d.TaskGroups {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		g := d.TaskGroups[n]
		p := fmt.Sprintf("%s %d/%d placed, %d healthy", n, g.PlacedAllocs, g.DesiredTotal, g.HealthyAllocs)
		if g.UnhealthyAllocs > 0 {
			p += fmt.Sprintf(", %d unhealthy", g.UnhealthyAllocs)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func short(id string) string { return truncate(id, 8) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
