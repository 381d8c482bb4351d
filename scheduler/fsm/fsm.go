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
	"maps"
	"slices"
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
	QuotaPutType         MessageType = 20
	// 11 to 19: ACLs (acl.go).
	ACLBootstrapType    MessageType = 11
	ACLTokenUpsertType  MessageType = 12
	ACLTokenDeleteType  MessageType = 13
	ACLPolicyUpsertType MessageType = 14
	ACLPolicyDeleteType MessageType = 15
	BlobKeySetType      MessageType = 16
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
	// Quota bounds the project; nil is unlimited.
	Quota *Quota `json:"quota,omitempty"`
	// Deleting is set while the project is being deleted (delete.go).
	Deleting *Deletion `json:"deleting,omitempty"`
}

// Quota is a project's limits; 0 leaves one unlimited.
type Quota struct {
	// MaxFunctions bounds the functions of a revision.
	MaxFunctions int `json:"max_functions,omitempty"`
	// MaxInstances bounds the sum, over a revision's functions, of their
	// maximum instances per allocation.
	MaxInstances int `json:"max_instances,omitempty"`
	// RequestsPerSecond bounds the calls the gateways take on the
	// project's routes, each gateway on its own.
	RequestsPerSecond float64 `json:"requests_per_second,omitempty"`
}

// QuotaPut sets a project's quota (creating the project when it does not
// exist); a nil Quota removes it.
type QuotaPut struct {
	Project string    `json:"project"`
	Quota   *Quota    `json:"quota,omitempty"`
	At      time.Time `json:"at"`
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
	// Registered is when the deployer registered the revision's job
	// with Nomad (the deploy's duration starts there).
	Registered time.Time `json:"registered,omitempty"`
	// HealthyAt is when the revision last became healthy: an automatic
	// rollback returns to the revision most recently healthy.
	HealthyAt time.Time `json:"healthy_at,omitempty"`
	// RolledBackTo is, on a failed revision, the revision the control
	// plane activates in its place: recorded in the same entry as the
	// failure, so a reader never sees "failed" without knowing whether a
	// rollback follows.
	RolledBackTo string `json:"rolled_back_to,omitempty"`
	// Allocations are the allocations Nomad's deployment placed, as the
	// deployer last read them.
	Allocations []AllocState `json:"allocations,omitempty"`
}

// AllocState is one allocation of a revision's deployment.
type AllocState struct {
	ID    string `json:"id"`
	Group string `json:"group"`
	Node  string `json:"node,omitempty"`
	// Status is Nomad's client status (pending, running, failed,
	// complete, lost); Healthy its deployment health, nil while unknown.
	Status  string `json:"status"`
	Healthy *bool  `json:"healthy,omitempty"`
	// Task is the last event of its task that says why it is not
	// running ("" when it is, or nothing is known).
	Task string `json:"task,omitempty"`
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

	// ACLBootstrapped is set by the one bootstrap (acl.go).
	ACLBootstrapped bool `json:"acl_bootstrapped,omitempty"`
	// ACLPolicies by name, ACLTokens by accessor ID.
	ACLPolicies map[string]*ACLPolicy `json:"acl_policies,omitempty"`
	ACLTokens   map[string]*ACLToken  `json:"acl_tokens,omitempty"`
	// BlobKey signs blob URLs (hex), created once on first need.
	BlobKey string `json:"blob_key,omitempty"`
	// Scaling is the autoscaler's last decision per task group, by
	// "<project>/<group>" (scaling.go).
	Scaling map[string]*ScalingDecision `json:"scaling,omitempty"`
	// Canaries are the projects' canaries, in progress or the last one
	// ended (canary.go).
	Canaries map[string]*Canary `json:"canaries,omitempty"`
}

func newState() *State {
	return &State{
		Projects:  map[string]*Project{},
		Revisions: map[string]map[string]*Revision{},
		Active:    map[string]string{},
		Timers:    map[string]time.Time{},
		TimerDefs: map[string]*Timer{},
		APIKeys:   map[string]*APIKey{},

		ACLPolicies: map[string]*ACLPolicy{},
		ACLTokens:   map[string]*ACLToken{},
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
// back to the writer through ApplyFuture.Response. A refused command (an
// unknown type or version, a payload that does not decode, or one that
// names what does not exist) changes nothing.
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
	var err error
	switch t {
	case ProjectUpsertType:
		err = decodeThen(body, f.applyProjectUpsert)
	case RevisionCreateType:
		err = decodeThen(body, f.applyRevisionCreate)
	case RevisionActivateType:
		err = decodeThen(body, func(a *Activation) error { return f.applyRevisionActivate(a, l.AppendedAt) })
	case RevisionStatusType:
		err = decodeThen(body, f.applyRevisionStatus)
	case TimersSyncType:
		err = decodeThen(body, f.applyTimersSync)
	case TimerFiredType:
		err = decodeThen(body, f.applyTimerFired)
	case TimerPutType:
		err = decodeThen(body, f.applyTimerPut)
	case TimerDeleteType:
		err = decodeThen(body, f.applyTimerDelete)
	case APIKeyPutType:
		err = decodeThen(body, f.applyAPIKeyPut)
	case APIKeyDeleteType:
		err = decodeThen(body, f.applyAPIKeyDelete)
	case QuotaPutType:
		err = decodeThen(body, f.applyQuotaPut)
	case ACLBootstrapType:
		err = decodeThen(body, f.applyACLBootstrap)
	case ACLTokenUpsertType:
		err = decodeThen(body, f.applyACLTokenUpsert)
	case ACLTokenDeleteType:
		err = decodeThen(body, f.applyACLTokenDelete)
	case ACLPolicyUpsertType:
		err = decodeThen(body, f.applyACLPolicyUpsert)
	case ACLPolicyDeleteType:
		err = decodeThen(body, f.applyACLPolicyDelete)
	case BlobKeySetType:
		err = decodeThen(body, f.applyBlobKeySet)
	case ScalingDecisionType:
		err = decodeThen(body, f.applyScalingDecision)
	case ProjectDeleteType:
		err = decodeThen(body, f.applyProjectDelete)
	case ProjectPurgedType:
		err = decodeThen(body, f.applyProjectPurged)
	case CanaryPutType:
		err = decodeThen(body, func(c *CanaryPut) error { return f.applyCanaryPut(c, l.AppendedAt) })
	default:
		return fmt.Errorf("%w: type %d", ErrUnknownCommand, t)
	}
	return err // a nil error is a nil response
}

// decodeThen decodes a command's JSON payload and applies it with fn.
func decodeThen[T any](body []byte, fn func(*T) error) error {
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("decode %T: %w", v, err)
	}
	return fn(&v)
}

// The command methods run under f.mu, from Apply only.

func (f *FSM) applyProjectUpsert(p *Project) error {
	if old, ok := f.st.Projects[p.Name]; ok {
		p.Created, p.Quota, p.Deleting = old.Created, old.Quota, old.Deleting
	}
	f.st.Projects[p.Name] = p
	return nil
}

func (f *FSM) applyQuotaPut(q *QuotaPut) error {
	p, ok := f.st.Projects[q.Project]
	if !ok {
		p = &Project{Name: q.Project, Created: q.At}
		f.st.Projects[q.Project] = p
	}
	p.Quota = q.Quota
	return nil
}

func (f *FSM) applyRevisionCreate(r *Revision) error {
	if _, ok := f.st.Projects[r.Project]; !ok {
		return fmt.Errorf("revision %s: no project %q", r.ID, r.Project)
	}
	if f.st.Revisions[r.Project] == nil {
		f.st.Revisions[r.Project] = map[string]*Revision{}
	}
	f.st.Revisions[r.Project][r.ID] = r
	return nil
}

// applyRevisionActivate makes a revision the active one and resets its
// deployment to pending; at is when the leader appended the entry.
func (f *FSM) applyRevisionActivate(a *Activation, at time.Time) error {
	rev, ok := f.st.Revisions[a.Project][a.Revision]
	if !ok {
		return fmt.Errorf("activate: project %q has no revision %q", a.Project, a.Revision)
	}
	if p := f.st.Projects[a.Project]; p != nil && p.Deleting != nil {
		return fmt.Errorf("activate: project %q is being deleted", a.Project)
	}
	f.endCanary(a.Project, a.Revision, a.Reason, at)
	f.st.Active[a.Project] = a.Revision
	// An activation always deploys: the deployer takes it from here.
	rev.Deployment.Status = StatusPending
	rev.Deployment.Message = a.Reason
	rev.Deployment.NomadDeployment = ""
	rev.Deployment.JobVersion = 0
	rev.Deployment.Updated = at
	f.syncTimers(a.Project, rev.Timers)
	return nil
}

func (f *FSM) applyRevisionStatus(rs *RevisionStatus) error {
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
	return nil
}

func (f *FSM) applyTimersSync(ts *TimersSync) error {
	f.syncTimers(ts.Project, ts.Timers)
	return nil
}

func (f *FSM) applyTimerFired(tf *TimerFiring) error {
	if last, ok := f.st.Timers[tf.Timer]; ok && !tf.Tick.After(last) {
		// A tick already recorded: the firing is refused, so a tick
		// fires at most once across leaders.
		return fmt.Errorf("timer %s: tick %s already fired", tf.Timer, tf.Tick.Format(time.RFC3339Nano))
	}
	f.st.Timers[tf.Timer] = tf.Tick
	return nil
}

func (f *FSM) applyTimerPut(tm *Timer) error {
	f.st.TimerDefs[tm.ID] = tm
	return nil
}

func (f *FSM) applyTimerDelete(tm *Timer) error {
	delete(f.st.TimerDefs, tm.ID)
	delete(f.st.Timers, tm.ID)
	return nil
}

func (f *FSM) applyAPIKeyPut(k *APIKey) error {
	f.st.APIKeys[k.Hash] = k
	return nil
}

func (f *FSM) applyAPIKeyDelete(k *APIKey) error {
	delete(f.st.APIKeys, k.Hash)
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

// Snapshot captures the state for Raft: a deep copy taken under the read
// lock, so that Apply may go on while Persist encodes it. Raft calls it on
// the goroutine that applies the log, so the copy and its index agree.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &snapshot{st: f.st.clone(), index: f.Index()}, nil
}

// Restore replaces the state with a snapshot's. It reads the JSON that
// Persist writes, and the older format without an index.
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

// snapshot is a point-in-time copy of the state, owned by the snapshot:
// nothing else refers to it.
type snapshot struct {
	st    *State
	index uint64
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.FSMSnapshot = (*snapshot)(nil)
)

// Persist encodes the copy as JSON (the state's fields and the index) into
// the sink, outside any lock of the FSM.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(indexedState{State: s.st, Index: s.index}); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release does nothing: the copy is garbage once the snapshot is dropped.
func (s *snapshot) Release() {}

// clone copies the state deeply: every map, every struct behind a
// pointer, every slice. Strings are shared (they are immutable).
func (s *State) clone() *State {
	c := &State{
		ACLBootstrapped: s.ACLBootstrapped,
		BlobKey:         s.BlobKey,
		ACLPolicies:     make(map[string]*ACLPolicy, len(s.ACLPolicies)),
		ACLTokens:       make(map[string]*ACLToken, len(s.ACLTokens)),
		Projects:        make(map[string]*Project, len(s.Projects)),
		Revisions:       make(map[string]map[string]*Revision, len(s.Revisions)),
		Active:          make(map[string]string, len(s.Active)),
		Timers:          make(map[string]time.Time, len(s.Timers)),
		TimerDefs:       make(map[string]*Timer, len(s.TimerDefs)),
		APIKeys:         make(map[string]*APIKey, len(s.APIKeys)),
	}
	maps.Copy(c.Active, s.Active)
	maps.Copy(c.Timers, s.Timers)
	for k, p := range s.Projects {
		cp := *p
		if p.Quota != nil {
			q := *p.Quota
			cp.Quota = &q
		}
		if p.Deleting != nil {
			d := *p.Deleting
			cp.Deleting = &d
		}
		c.Projects[k] = &cp
	}
	for project, revs := range s.Revisions {
		m := make(map[string]*Revision, len(revs))
		for id, r := range revs {
			m[id] = r.clone()
		}
		c.Revisions[project] = m
	}
	for k, t := range s.TimerDefs {
		cp := *t
		c.TimerDefs[k] = &cp
	}
	for k, a := range s.APIKeys {
		cp := *a
		cp.Routes = slices.Clone(a.Routes)
		c.APIKeys[k] = &cp
	}
	for k, p := range s.ACLPolicies {
		cp := *p
		c.ACLPolicies[k] = &cp
	}
	for k, t := range s.ACLTokens {
		cp := *t
		cp.Policies = slices.Clone(t.Policies)
		c.ACLTokens[k] = &cp
	}
	if s.Scaling != nil {
		c.Scaling = make(map[string]*ScalingDecision, len(s.Scaling))
		for k, d := range s.Scaling {
			cp := *d
			c.Scaling[k] = &cp
		}
	}
	if s.Canaries != nil {
		c.Canaries = make(map[string]*Canary, len(s.Canaries))
		for k, cn := range s.Canaries {
			c.Canaries[k] = cn.clone()
		}
	}
	return c
}

func (r *Revision) clone() *Revision {
	c := *r
	c.Specs = maps.Clone(r.Specs)
	c.Bundles = maps.Clone(r.Bundles)
	c.Routes = slices.Clone(r.Routes)
	c.Streams = slices.Clone(r.Streams)
	c.Job = slices.Clone(r.Job)
	c.Timers = nil
	for _, t := range r.Timers {
		cp := *t
		c.Timers = append(c.Timers, &cp)
	}
	return &c
}
