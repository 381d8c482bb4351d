package api

import (
	"context"
	"net/http"
	"time"
)

// Project is a project known to the control plane
// (PUT /v1/projects/{name} answers it).
type Project struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

// ProjectList answers GET /v1/projects.
type ProjectList struct {
	// Projects are the names, sorted.
	Projects []string `json:"projects"`
	// Stale says the answering node was not the leader.
	Stale bool `json:"stale"`
}

// ProjectStatus answers GET /v1/projects/{name}: what `butter status`
// shows of a project.
type ProjectStatus struct {
	Project string `json:"project"`
	// Active is the active revision, without its spec files and job; nil
	// before the first deploy.
	Active *Revision `json:"active,omitempty"`
	// Revisions counts the project's revisions.
	Revisions int `json:"revisions"`
	// Timers are the project's timers (the active revision's cron
	// triggers), sorted by ID.
	Timers []TimerStatus `json:"timers,omitempty"`
	// Stale says the answering node was not the leader.
	Stale bool `json:"stale"`
}

// TimerStatus is one of a project's timers and its last firing.
type TimerStatus struct {
	Timer
	// LastFired is the last tick fired; zero when it never fired.
	LastFired time.Time `json:"last_fired,omitzero"`
}

// Projects reads and creates projects.
type Projects struct{ c *Client }

// Projects returns the project endpoints.
func (c *Client) Projects() *Projects { return &Projects{c} }

// List returns the projects' names, sorted. It supports blocking queries.
func (p *Projects) List(ctx context.Context, q *QueryOptions) (*ProjectList, *QueryMeta, error) {
	var out ProjectList
	meta, err := p.c.query(ctx, "/v1/projects", q, &out)
	if err != nil {
		return nil, nil, err
	}
	return &out, meta, nil
}

// Status returns a project's active revision, its deployment and its
// timers. A project that does not exist is a 404 *StatusError.
func (p *Projects) Status(ctx context.Context, name string, q *QueryOptions) (*ProjectStatus, *QueryMeta, error) {
	var out ProjectStatus
	meta, err := p.c.query(ctx, "/v1/projects/"+seg(name), q, &out)
	if err != nil {
		return nil, nil, err
	}
	return &out, meta, nil
}

// Put creates a project (or leaves an existing one as it is) and returns
// it. Creating a revision creates its project too.
func (p *Projects) Put(ctx context.Context, name string) (*Project, error) {
	var out Project
	if err := p.c.write(ctx, http.MethodPut, "/v1/projects/"+seg(name), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
