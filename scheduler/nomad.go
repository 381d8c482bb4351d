package scheduler

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"github.com/hashicorp/nomad/api"
)

// Nomad is what the deployer asks of Nomad: the calls it makes, and no
// more. NomadClient is the real one, over Nomad's HTTP API; package
// nomadfake is an in-memory one whose deployments tests script.
//
// Every method honours ctx. An error from Nomad's own answer is a
// *NomadError (errors.Is(err, ErrNomadNotFound) for a 404,
// errors.Is(err, ErrNomadRefused) for any 4xx); any other error means
// Nomad could not be asked (unreachable, a 5xx), and the deployer retries.
type Nomad interface {
	// Job returns the job with this ID as Nomad runs it now.
	Job(ctx context.Context, id string) (*api.Job, error)
	// RegisterJob creates the job or updates it to a new version. With
	// preserveCounts, the groups Nomad already runs keep their counts
	// (Nomad's PreserveCounts): a deploy does not undo the autoscaler.
	RegisterJob(ctx context.Context, job *api.Job, preserveCounts bool) error
	// JobDeployments lists the deployments of every version of the job.
	JobDeployments(ctx context.Context, jobID string) ([]*api.Deployment, error)
	// DeploymentAllocations lists the allocations a deployment placed.
	DeploymentAllocations(ctx context.Context, deploymentID string) ([]*api.AllocationListStub, error)
	// AllocationChecks returns the latest results of an allocation's
	// Nomad-native service checks.
	AllocationChecks(ctx context.Context, allocID string) (api.AllocCheckStatuses, error)
	// DeregisterJob stops the job; with purge Nomad forgets it too.
	DeregisterJob(ctx context.Context, id string, purge bool) error
	// PromoteDeployment promotes every group's canaries of a deployment;
	// FailDeployment marks it failed (Nomad stops placing it).
	PromoteDeployment(ctx context.Context, deploymentID string) error
	FailDeployment(ctx context.Context, deploymentID string) error
}

var (
	// ErrNomadRefused matches a *NomadError of any 4xx: Nomad refused the
	// request itself, and asking again unchanged will not help.
	ErrNomadRefused = errors.New("refused by Nomad")
	// ErrNomadNotFound matches a *NomadError of 404.
	ErrNomadNotFound = errors.New("not found in Nomad")
)

// NomadError is an answer from Nomad with an error status.
type NomadError struct {
	// StatusCode is the HTTP status Nomad answered.
	StatusCode int
	// Err is what Nomad said (for NomadClient, the api package's error).
	Err error
}

func (e *NomadError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("Nomad answered %d", e.StatusCode)
	}
	return e.Err.Error()
}

func (e *NomadError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrNomadRefused) true for a 4xx, and
// errors.Is(err, ErrNomadNotFound) for a 404.
func (e *NomadError) Is(target error) bool {
	switch target {
	case ErrNomadRefused:
		return e.StatusCode >= 400 && e.StatusCode < 500
	case ErrNomadNotFound:
		return e.StatusCode == 404
	}
	return false
}

// NomadClient is the Nomad the deployer uses in production: Nomad's HTTP
// API through its api package.
type NomadClient struct {
	c *api.Client
}

var _ Nomad = (*NomadClient)(nil)

// NewNomadClient wraps a Nomad API client.
func NewNomadClient(c *api.Client) *NomadClient { return &NomadClient{c: c} }

func (n *NomadClient) Job(ctx context.Context, id string) (*api.Job, error) {
	job, _, err := n.c.Jobs().Info(id, (&api.QueryOptions{}).WithContext(ctx))
	return job, nomadErr(err)
}

func (n *NomadClient) RegisterJob(ctx context.Context, job *api.Job, preserveCounts bool) error {
	_, _, err := n.c.Jobs().RegisterOpts(job, &api.RegisterOptions{PreserveCounts: preserveCounts}, (&api.WriteOptions{}).WithContext(ctx))
	return nomadErr(err)
}

func (n *NomadClient) JobDeployments(ctx context.Context, jobID string) ([]*api.Deployment, error) {
	deps, _, err := n.c.Jobs().Deployments(jobID, false, (&api.QueryOptions{}).WithContext(ctx))
	return deps, nomadErr(err)
}

func (n *NomadClient) DeploymentAllocations(ctx context.Context, deploymentID string) ([]*api.AllocationListStub, error) {
	allocs, _, err := n.c.Deployments().Allocations(deploymentID, (&api.QueryOptions{}).WithContext(ctx))
	return allocs, nomadErr(err)
}

func (n *NomadClient) AllocationChecks(ctx context.Context, allocID string) (api.AllocCheckStatuses, error) {
	checks, err := n.c.Allocations().Checks(allocID, (&api.QueryOptions{}).WithContext(ctx))
	return checks, nomadErr(err)
}

func (n *NomadClient) DeregisterJob(ctx context.Context, id string, purge bool) error {
	_, _, err := n.c.Jobs().Deregister(id, purge, (&api.WriteOptions{}).WithContext(ctx))
	return nomadErr(err)
}

func (n *NomadClient) PromoteDeployment(ctx context.Context, id string) error {
	_, _, err := n.c.Deployments().PromoteAll(id, (&api.WriteOptions{}).WithContext(ctx))
	return nomadErr(err)
}

func (n *NomadClient) FailDeployment(ctx context.Context, id string) error {
	_, _, err := n.c.Deployments().Fail(id, (&api.WriteOptions{}).WithContext(ctx))
	return nomadErr(err)
}

// responseCode finds the status in an api error that is not an
// UnexpectedResponseError: "Unexpected response code: 404 (...)".
var responseCode = regexp.MustCompile(`Unexpected response code: (\d{3})`)

// nomadErr makes an error status of Nomad's a *NomadError.
func nomadErr(err error) error {
	if err == nil {
		return nil
	}
	var ue api.UnexpectedResponseError
	if errors.As(err, &ue) && ue.HasStatusCode() {
		return &NomadError{StatusCode: ue.StatusCode(), Err: err}
	}
	if m := responseCode.FindStringSubmatch(err.Error()); m != nil {
		code, _ := strconv.Atoi(m[1])
		return &NomadError{StatusCode: code, Err: err}
	}
	return err
}
