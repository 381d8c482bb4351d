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
	// Quota is the project's limits; nil is unlimited.
	Quota *Quota `json:"quota,omitempty"`
	// Timers are the project's timers (the active revision's cron
	// triggers), sorted by ID.
	Timers []TimerStatus `json:"timers,omitempty"`
	// Pools are the active revision's pools with their scaling, sorted
	// by name (scaling.go).
	Pools []PoolStatus `json:"pools,omitempty"`
	// Canary is the project's canary in progress, or the last one ended.
	Canary *Canary `json:"canary,omitempty"`
	// Deleting is set while the project is being deleted (DELETE
	// /v1/projects/{name}): its job is stopped and purged, then the
	// project is gone (404).
	Deleting *ProjectDeletion `json:"deleting,omitempty"`
	// Stale says the answering node was not the leader.
	Stale bool `json:"stale"`
}

// ProjectDeletion is a project's deletion in progress.
type ProjectDeletion struct {
	At time.Time `json:"at"`
	// PurgeTopics says its Kafka topics are deleted too.
	PurgeTopics bool `json:"purge_topics,omitempty"`
	// Job is the Nomad job being stopped and purged.
	Job string `json:"job,omitempty"`
	// Message says what the deletion waits for.
	Message string `json:"message,omitempty"`
}

// ProjectDeleteResponse answers DELETE /v1/projects/{name}.
type ProjectDeleteResponse struct {
	Project string `json:"project"`
	// Job is the Nomad job the leader stops and purges ("" when the
	// project never had one).
	Job string `json:"job,omitempty"`
	// Deployer says a deployer runs (the server has Nomad): the deletion
	// ends once it has purged the job. Without one the project is gone
	// at once.
	Deployer bool `json:"deployer"`
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

// Delete deletes a project (DELETE /v1/projects/{name}, deploy on the
// project): its routes, timers, API keys and autoscaling state go at
// once, the leader stops and purges its Nomad job, then the project and
// its revisions are gone. Its Kafka topics are kept unless purgeTopics.
// It returns once the deletion is recorded; Status answers 404 when it is
// done.
func (p *Projects) Delete(ctx context.Context, name string, purgeTopics bool) (*ProjectDeleteResponse, error) {
	path := "/v1/projects/" + seg(name)
	if purgeTopics {
		path += "?purge_topics=true"
	}
	var out ProjectDeleteResponse
	if err := p.c.write(ctx, http.MethodDelete, path, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Quota is a project's limits (PUT /v1/projects/{name}/quota); 0 leaves a
// limit off. Setting one needs a management token.
type Quota struct {
	// MaxFunctions bounds the functions of a revision: a revision with
	// more is refused (422).
	MaxFunctions int `json:"max_functions,omitempty"`
	// MaxInstances bounds the sum, over a revision's functions, of their
	// instances.max: a revision over it is refused (422).
	MaxInstances int `json:"max_instances,omitempty"`
	// RequestsPerSecond bounds the calls each gateway takes on the
	// project's routes, with a burst of as many (at least 1); over it a
	// route answers 429 with Retry-After.
	RequestsPerSecond float64 `json:"requests_per_second,omitempty"`
}

// SetQuota sets a project's quota (creating the project when it does not
// exist) and returns it; a zero Quota removes every limit.
func (p *Projects) SetQuota(ctx context.Context, name string, q *Quota) (*Quota, error) {
	var out Quota
	if err := p.c.write(ctx, http.MethodPut, "/v1/projects/"+seg(name)+"/quota", q, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// WakeRequest is the body of POST /v1/projects/{name}/pools/{pool}/wake.
type WakeRequest struct {
	// Held is how many calls the gateway holds for the pool.
	Held int `json:"held"`
}

// WakeResponse answers a wake: the leader's autoscaler has it.
type WakeResponse struct {
	Project string `json:"project"`
	Pool    string `json:"pool"`
}

// Wake tells the leader's autoscaler that a gateway holds calls for a
// project's pool that has no allocation: it scales the pool from 0 to 1
// at once (package autoscaler, Wake). It needs read on the project, the
// gateway's token. A leader without an autoscaler answers 503.
func (p *Projects) Wake(ctx context.Context, project, pool string, held int) error {
	return p.c.write(ctx, http.MethodPost, "/v1/projects/"+seg(project)+"/pools/"+seg(pool)+"/wake", &WakeRequest{Held: held}, &WakeResponse{})
}
