// Package fsm is the control plane's replicated state machine: what Raft
// keeps that Nomad does not — projects, revisions, the active revision of
// each project, timers' last firings and hashed API keys. Blobs and secret
// values never enter it.
//
// Every log entry is a typed, versioned command: one byte of MessageType,
// one byte of command version, then the JSON payload. Like Nomad's and
// Consul's FSMs, Apply rejects a type or version it does not know, and
// changes nothing: a newer leader's entry never silently corrupts an older
// follower.
//
// Neighbours: package scheduler runs the Raft node around it and serves
// the HTTP API; the deployer and the timer service read and write through
// it.
package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// MessageType is the first byte of a log entry.
type MessageType uint8

// The command types. Never renumber: logs on disk carry them.
const (
	ProjectUpsertType    MessageType = 1
	RevisionCreateType   MessageType = 2
	RevisionActivateType MessageType = 3
	TimerFiredType       MessageType = 4
	APIKeyPutType        MessageType = 5
	APIKeyDeleteType     MessageType = 6
	TimerPutType         MessageType = 7
	TimerDeleteType      MessageType = 8
	RevisionStatusType   MessageType = 9
	TimersSyncType       MessageType = 10
)

// commandVersion is the version of the payloads this FSM understands;
// bump it (and keep decoding the old one) when a payload changes shape.
const commandVersion = 1

// ErrUnknownCommand is returned by Apply for a type or version this FSM
// does not know. Nothing is applied.
var ErrUnknownCommand = errors.New("unknown command")

// Encode builds a log entry.
func Encode(t MessageType, payload any) ([]byte, error) {
	b, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("encode command %d: %w", t, err)
	}
	return append([]byte{byte(t), commandVersion}, b...), nil
}

// Project is a project known to the control plane.
type Project struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

// Revision is one deployable version of a project.
type Revision struct {
	Project string `json:"project"`
	ID      string `json:"id"`
	// Specs are the spec files, by project-relative name.
	Specs map[string]string `json:"specs"`
	// Bundles are the blob digests by project-relative source path.
	Bundles map[string]string `json:"bundles"`
	GitSHA  string            `json:"git_sha,omitempty"`
	Dirty   bool              `json:"dirty,omitempty"`
	Author  string            `json:"author,omitempty"`
	Created time.Time         `json:"created"`
	// Routes and Streams are derived from the specs, for the gateway and
	// the consumers.
	Routes  []string `json:"routes,omitempty"`
	Streams []string `json:"streams,omitempty"`
	// Job is the rendered Nomad job (JSON, as `nomad job run -json`
	// takes it): no secret values ever appear in it.
	Job json.RawMessage `json:"job,omitempty"`
	// Timers are the revision's cron triggers; activating the revision
	// makes them the project's timers.
	Timers []*Timer `json:"timers,omitempty"`

	// Deployment is what the deployer last saw of this revision in Nomad.
	Deployment DeployStatus `json:"deployment"`
}

// The deployment states of a revision.
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

// DeployStatus is a revision's deployment state, written by the deployer.
type DeployStatus struct {
	Status string `json:"status,omitempty"`
	// Message says what happened, in words (Nomad's deployment
	// description, allocation counts, the rollback).
	Message string `json:"message,omitempty"`
	// NomadDeployment and JobVersion identify Nomad's deployment.
	NomadDeployment string    `json:"nomad_deployment,omitempty"`
	JobVersion      uint64    `json:"job_version,omitempty"`
	Updated         time.Time `json:"updated,omitempty"`
	// HealthyAt is when the revision last became healthy: an automatic
	// rollback returns to the revision most recently healthy.
	HealthyAt time.Time `json:"healthy_at,omitempty"`
}

// RevisionStatus sets a revision's deployment state.
type RevisionStatus struct {
	Project  string       `json:"project"`
	Revision string       `json:"revision"`
	Status   DeployStatus `json:"status"`
}

// TimersSync replaces a project's timers with the given set (the active
// revision's cron triggers). Last firings of timers that remain are
// kept.
type TimersSync struct {
	Project string   `json:"project"`
	Timers  []*Timer `json:"timers"`
}

// Timer is a cron trigger the leader fires: each tick is produced as an
// event to Topic.
type Timer struct {
	ID string `json:"id"`
	// Project is set for timers derived from a project's cron triggers.
	Project  string `json:"project,omitempty"`
	Schedule string `json:"schedule"`
	Timezone string `json:"timezone,omitempty"`
	Topic    string `json:"topic"`
}

// TimerFiring records that a timer fired for a tick.
type TimerFiring struct {
	Timer string    `json:"timer"`
	Tick  time.Time `json:"tick"`
}

// APIKey is an API key's hash and what it may call.
type APIKey struct {
	Hash    string   `json:"hash"`
	Project string   `json:"project"`
	Routes  []string `json:"routes,omitempty"`
}

// Activation makes a revision the active one of its project.
type Activation struct {
	Project  string `json:"project"`
	Revision string `json:"revision"`
	// Reason says why, for the revision's status message ("deployed by
	// ana", "rolled back by ana", "automatic rollback: ...").
	Reason string `json:"reason,omitempty"`
}

// State is the replicated state.
type State struct {
	Projects  map[string]*Project             `json:"projects"`
	Revisions map[string]map[string]*Revision `json:"revisions"`
	Active    map[string]string               `json:"active"`
	Timers    map[string]time.Time            `json:"timers"`
	TimerDefs map[string]*Timer               `json:"timer_defs"`
	APIKeys   map[string]*APIKey              `json:"api_keys"`
}

func newState() *State {
	return &State{
		Projects:  map[string]*Project{},
		Revisions: map[string]map[string]*Revision{},
		Active:    map[string]string{},
		Timers:    map[string]time.Time{},
		TimerDefs: map[string]*Timer{},
		APIKeys:   map[string]*APIKey{},
	}
}

// FSM implements raft.FSM over State.
type FSM struct {
	mu sync.RWMutex
	st *State

	watch watch // the applied index and its waiters (watch.go)
}

// New returns an empty FSM.
func New() *FSM { return &FSM{st: newState()} }

// Apply applies one log entry. It returns nil or an error, which Raft hands
// back to the writer through ApplyFuture.Response.
func (f *FSM) Apply(l *raft.Log) any {
	defer f.watch.applied(l.Index) // after the state lock is released
	if len(l.Data) < 2 {
		return fmt.Errorf("%w: entry of %d bytes", ErrUnknownCommand, len(l.Data))
	}
	t, v, body := MessageType(l.Data[0]), l.Data[1], l.Data[2:]
	if v != commandVersion {
		return fmt.Errorf("%w: type %d version %d (this node understands version %d)", ErrUnknownCommand, t, v, commandVersion)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch t {
	case ProjectUpsertType:
		var p Project
		if err := json.Unmarshal(body, &p); err != nil {
			return err
		}
		if old, ok := f.st.Projects[p.Name]; ok {
			p.Created = old.Created
		}
		f.st.Projects[p.Name] = &p
	case RevisionCreateType:
		var r Revision
		if err := json.Unmarshal(body, &r); err != nil {
			return err
		}
		if _, ok := f.st.Projects[r.Project]; !ok {
			return fmt.Errorf("revision %s: no project %q", r.ID, r.Project)
		}
		if f.st.Revisions[r.Project] == nil {
			f.st.Revisions[r.Project] = map[string]*Revision{}
		}
		f.st.Revisions[r.Project][r.ID] = &r
	case RevisionActivateType:
		var a Activation
		if err := json.Unmarshal(body, &a); err != nil {
			return err
		}
		if _, ok := f.st.Revisions[a.Project][a.Revision]; !ok {
			return fmt.Errorf("activate: project %q has no revision %q", a.Project, a.Revision)
		}
		f.st.Active[a.Project] = a.Revision
		// An activation always deploys: the deployer takes it from here.
		rev := f.st.Revisions[a.Project][a.Revision]
		rev.Deployment.Status = StatusPending
		rev.Deployment.Message = a.Reason
		rev.Deployment.NomadDeployment = ""
		rev.Deployment.JobVersion = 0
		rev.Deployment.Updated = l.AppendedAt
		f.syncTimers(a.Project, rev.Timers)
	case RevisionStatusType:
		var rs RevisionStatus
		if err := json.Unmarshal(body, &rs); err != nil {
			return err
		}
		rev, ok := f.st.Revisions[rs.Project][rs.Revision]
		if !ok {
			return fmt.Errorf("status: project %q has no revision %q", rs.Project, rs.Revision)
		}
		healthyAt := rev.Deployment.HealthyAt
		rev.Deployment = rs.Status
		if rs.Status.Status == StatusHealthy && rs.Status.HealthyAt.IsZero() {
			rev.Deployment.HealthyAt = rs.Status.Updated
		} else if rs.Status.HealthyAt.IsZero() {
			rev.Deployment.HealthyAt = healthyAt
		}
	case TimersSyncType:
		var ts TimersSync
		if err := json.Unmarshal(body, &ts); err != nil {
			return err
		}
		f.syncTimers(ts.Project, ts.Timers)
	case TimerFiredType:
		var tf TimerFiring
		if err := json.Unmarshal(body, &tf); err != nil {
			return err
		}
		if last, ok := f.st.Timers[tf.Timer]; ok && !tf.Tick.After(last) {
			// A tick already recorded: the firing is refused, so a tick
			// fires at most once across leaders.
			return fmt.Errorf("timer %s: tick %s already fired", tf.Timer, tf.Tick.Format(time.RFC3339Nano))
		}
		f.st.Timers[tf.Timer] = tf.Tick
	case TimerPutType:
		var tm Timer
		if err := json.Unmarshal(body, &tm); err != nil {
			return err
		}
		f.st.TimerDefs[tm.ID] = &tm
	case TimerDeleteType:
		var tm Timer
		if err := json.Unmarshal(body, &tm); err != nil {
			return err
		}
		delete(f.st.TimerDefs, tm.ID)
		delete(f.st.Timers, tm.ID)
	case APIKeyPutType:
		var k APIKey
		if err := json.Unmarshal(body, &k); err != nil {
			return err
		}
		f.st.APIKeys[k.Hash] = &k
	case APIKeyDeleteType:
		var k APIKey
		if err := json.Unmarshal(body, &k); err != nil {
			return err
		}
		delete(f.st.APIKeys, k.Hash)
	default:
		return fmt.Errorf("%w: type %d", ErrUnknownCommand, t)
	}
	return nil
}

// syncTimers makes timers the project's timer set: timers of the project
// that are not in it are deleted with their last firing.
func (f *FSM) syncTimers(project string, timers []*Timer) {
	keep := map[string]bool{}
	for _, t := range timers {
		cp := *t
		cp.Project = project
		f.st.TimerDefs[cp.ID] = &cp
		keep[cp.ID] = true
	}
	for id, t := range f.st.TimerDefs {
		if t.Project == project && !keep[id] {
			delete(f.st.TimerDefs, id)
			delete(f.st.Timers, id)
		}
	}
}

// Read runs fn with the state under a read lock. fn must not keep
// references past its return.
func (f *FSM) Read(fn func(*State)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.st)
}

// RevisionList lists a project's revisions, oldest first.
func (s *State) RevisionList(project string) []*Revision {
	var out []*Revision
	for _, r := range s.Revisions[project] {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}

// Snapshot captures the state as JSON.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	b, err := json.Marshal(indexedState{State: f.st, Index: f.Index()})
	if err != nil {
		return nil, err
	}
	return snapshot(b), nil
}

// Restore replaces the state with a snapshot's.
func (f *FSM) Restore(r io.ReadCloser) error {
	defer r.Close()
	st := indexedState{State: newState()}
	if err := json.NewDecoder(r).Decode(&st); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	f.mu.Lock()
	f.st = st.State
	f.mu.Unlock()
	f.watch.restored(st.Index)
	return nil
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s snapshot) Release() {}
