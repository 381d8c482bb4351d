package scheduler

import (
	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/scheduler/fsm"
)

// The API's types (package api) and the Raft log's (package fsm) are kept
// apart: the log's shapes are versioned for what is on disk, the API's
// for what clients see. The handlers convert at this edge, and nothing
// decodes an HTTP body into a log type.

// apiRevision converts a stored revision; full keeps its spec files and
// job, which lists and status leave out.
func apiRevision(r *fsm.Revision, full bool) api.Revision {
	out := api.Revision{
		Project: r.Project, ID: r.ID, Bundles: r.Bundles,
		GitSHA: r.GitSHA, Dirty: r.Dirty, Author: r.Author, Created: r.Created,
		Routes: r.Routes, Streams: r.Streams, Timers: apiTimers(r.Timers),
		Deployment: api.DeployStatus{
			Status: r.Deployment.Status, Message: r.Deployment.Message,
			NomadDeployment: r.Deployment.NomadDeployment, JobVersion: r.Deployment.JobVersion,
			Updated: r.Deployment.Updated, HealthyAt: r.Deployment.HealthyAt, RolledBackTo: r.Deployment.RolledBackTo,
		},
	}
	for _, a := range r.Deployment.Allocations {
		out.Deployment.Allocations = append(out.Deployment.Allocations, api.AllocState{ID: a.ID, Group: a.Group, Node: a.Node, Status: a.Status, Healthy: a.Healthy, Task: a.Task})
	}
	if full {
		out.Specs, out.Job = r.Specs, r.Job
	}
	return out
}

func apiTimer(t *fsm.Timer) *api.Timer {
	return &api.Timer{ID: t.ID, Project: t.Project, Schedule: t.Schedule, Timezone: t.Timezone, Topic: t.Topic}
}

func apiTimers(ts []*fsm.Timer) []*api.Timer {
	if ts == nil {
		return nil
	}
	out := make([]*api.Timer, len(ts))
	for i, t := range ts {
		out[i] = apiTimer(t)
	}
	return out
}

func fsmTimer(t *api.Timer) *fsm.Timer {
	return &fsm.Timer{ID: t.ID, Project: t.Project, Schedule: t.Schedule, Timezone: t.Timezone, Topic: t.Topic}
}

// fsmRevision is the log's revision of a create request; the caller sets
// the project and the creation time.
func fsmRevision(req *api.RevisionCreateRequest) fsm.Revision {
	rev := fsm.Revision{
		ID: req.ID, Specs: req.Specs, Bundles: req.Bundles,
		GitSHA: req.GitSHA, Dirty: req.Dirty, Author: req.Author,
		Routes: req.Routes, Streams: req.Streams, Job: req.Job,
	}
	for _, t := range req.Timers {
		if t != nil {
			rev.Timers = append(rev.Timers, fsmTimer(t))
		}
	}
	return rev
}

func apiKey(k *fsm.APIKey) api.APIKey {
	return api.APIKey{Hash: k.Hash, Project: k.Project, Routes: k.Routes}
}
