package api

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// The deployment states of a revision (DeployStatus.Status).
const (
	// StatusPending: activated, not yet registered with Nomad.
	StatusPending = "pending"
	// StatusDeploying: registered; Nomad's deployment is in progress.
	StatusDeploying = "deploying"
	// StatusHealthy: Nomad's deployment succeeded.
	StatusHealthy = "healthy"
	// StatusFailed: Nomad's deployment failed (or the job could not be
	// registered).
	StatusFailed = "failed"
)

// Revision is one deployable version of a project.
type Revision struct {
	Project string `json:"project"`
	// ID is the revision's content hash.
	ID string `json:"id"`
	// Specs are the spec files, by project-relative name. Lists and
	// project status leave them out; GET of one revision has them.
	Specs map[string]string `json:"specs"`
	// Bundles are the blob digests ("sha256:<hex>") by project-relative
	// source path.
	Bundles map[string]string `json:"bundles"`
	GitSHA  string            `json:"git_sha,omitempty"`
	Dirty   bool              `json:"dirty,omitempty"`
	Author  string            `json:"author,omitempty"`
	Created time.Time         `json:"created"`
	// Routes ("METHOD /path -> target") and Streams ("fn <- topic
	// (group)", "fn -> topic") are derived from the specs.
	Routes  []string `json:"routes,omitempty"`
	Streams []string `json:"streams,omitempty"`
	// Job is the rendered Nomad job (JSON, as `nomad job run -json` takes
	// it). Lists and project status leave it out.
	Job json.RawMessage `json:"job,omitempty"`
	// Timers are the revision's cron triggers.
	Timers []*Timer `json:"timers,omitempty"`
	// Deployment is what the deployer last saw of the revision in Nomad.
	Deployment DeployStatus `json:"deployment"`
}

// DeployStatus is a revision's deployment state.
type DeployStatus struct {
	// Status is one of StatusPending, StatusDeploying, StatusHealthy and
	// StatusFailed ("" before the first activation).
	Status string `json:"status,omitempty"`
	// Message says what happened, in words.
	Message string `json:"message,omitempty"`
	// NomadDeployment and JobVersion identify Nomad's deployment.
	NomadDeployment string    `json:"nomad_deployment,omitempty"`
	JobVersion      uint64    `json:"job_version,omitempty"`
	Updated         time.Time `json:"updated,omitzero"`
	// HealthyAt is when the revision last became healthy.
	HealthyAt time.Time `json:"healthy_at,omitzero"`
	// RolledBackTo is, on a failed revision, the revision activated in
	// its place by the automatic rollback ("" when none is).
	RolledBackTo string `json:"rolled_back_to,omitempty"`
	// Allocations are the allocations Nomad's deployment placed, as the
	// control plane last read them (none before Nomad placed any, and
	// none without Nomad).
	Allocations []AllocState `json:"allocations,omitempty"`
}

// AllocState is one allocation of a revision's deployment.
type AllocState struct {
	ID    string `json:"id"`
	Group string `json:"group"`
	Node  string `json:"node,omitempty"`
	// Status is Nomad's client status: pending, running, failed,
	// complete or lost. Healthy is its deployment health, nil while
	// Nomad has not judged it.
	Status  string `json:"status"`
	Healthy *bool  `json:"healthy,omitempty"`
	// Task says why a task of it is not running, when Nomad says.
	Task string `json:"task,omitempty"`
}

// RevisionListStub is a revision in a list: without its spec files and
// job, and marked when it is the project's active one.
type RevisionListStub struct {
	Revision
	Active bool `json:"active"`
}

// RevisionCreateRequest is the body of POST /v1/projects/{name}/revisions:
// what the deploying client says about a revision. The server sets the
// project (from the path), the creation time and the deployment state.
type RevisionCreateRequest struct {
	// ID is the revision's content hash; required.
	ID      string            `json:"id"`
	Specs   map[string]string `json:"specs"`
	Bundles map[string]string `json:"bundles"`
	GitSHA  string            `json:"git_sha,omitempty"`
	Dirty   bool              `json:"dirty,omitempty"`
	Author  string            `json:"author,omitempty"`
	Routes  []string          `json:"routes,omitempty"`
	Streams []string          `json:"streams,omitempty"`
	Job     json.RawMessage   `json:"job,omitempty"`
	Timers  []*Timer          `json:"timers,omitempty"`
	// Canary keeps the serving revision and sends a share of the calls to
	// this one (see CanaryRequest); nil replaces the serving revision.
	Canary *CanaryRequest `json:"canary,omitempty"`
}

// RevisionCreateResponse answers a revision's creation.
type RevisionCreateResponse struct {
	Project  string `json:"project"`
	Revision string `json:"revision"`
	// New is false when the revision existed (the same content) and was
	// only activated again.
	New bool `json:"new"`
	// Deployer says the control plane deploys to Nomad, so the revision's
	// deployment state will move on from pending.
	Deployer bool `json:"deployer"`
}

// RollbackResponse answers POST /v1/projects/{name}/rollback.
type RollbackResponse struct {
	Project string `json:"project"`
	// Revision is the revision now active.
	Revision string `json:"revision"`
	Deployer bool   `json:"deployer"`
}

// Revisions creates, reads and activates a project's revisions.
type Revisions struct{ c *Client }

// Revisions returns the revision endpoints.
func (c *Client) Revisions() *Revisions { return &Revisions{c} }

// Create records a revision of project (creating the project when it is
// new) and makes it the active one. A revision that exists is only
// activated.
func (r *Revisions) Create(ctx context.Context, project string, rev *RevisionCreateRequest) (*RevisionCreateResponse, error) {
	var out RevisionCreateResponse
	if err := r.c.write(ctx, http.MethodPost, "/v1/projects/"+seg(project)+"/revisions", rev, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// List returns the project's revisions, oldest first. It supports
// blocking queries.
func (r *Revisions) List(ctx context.Context, project string, q *QueryOptions) ([]RevisionListStub, *QueryMeta, error) {
	var out []RevisionListStub
	meta, err := r.c.query(ctx, "/v1/projects/"+seg(project)+"/revisions", q, &out)
	if err != nil {
		return nil, nil, err
	}
	return out, meta, nil
}

// Get returns one revision with its spec files and job; an unknown one is
// a 404 *StatusError.
func (r *Revisions) Get(ctx context.Context, project, id string, q *QueryOptions) (*Revision, *QueryMeta, error) {
	var out Revision
	meta, err := r.c.query(ctx, "/v1/projects/"+seg(project)+"/revisions/"+seg(id), q, &out)
	if err != nil {
		return nil, nil, err
	}
	return &out, meta, nil
}

// Rollback activates the revision created before the active one. With
// none before it, the answer is a 409 *StatusError.
func (r *Revisions) Rollback(ctx context.Context, project string) (*RollbackResponse, error) {
	var out RollbackResponse
	if err := r.c.write(ctx, http.MethodPost, "/v1/projects/"+seg(project)+"/rollback", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
