package fsm

import (
	"fmt"
	"strings"
	"time"
)

// Deleting a project takes two entries. ProjectDelete marks it deleting
// and removes at once what would serve it or bring it back: its active
// revision (so the deployer registers nothing, and gateways drop its
// routes), its timers, API keys and scaling decisions. The leader's
// deployer then stops and purges its Nomad job (and, when asked, its
// Kafka topics) and records ProjectPurged, which removes the project and
// its revisions. A new leader resumes from the mark: a deletion is never
// half-forgotten, and the deployer never re-registers a deleted
// project's job.

// Command types 40 to 49: project lifecycle. Never renumber.
const (
	ProjectDeleteType MessageType = 40
	ProjectPurgedType MessageType = 41
)

// Deletion is a project's deletion in progress.
type Deletion struct {
	At time.Time `json:"at"`
	// PurgeTopics deletes the project's Kafka topics too (kept by
	// default: they hold its events).
	PurgeTopics bool `json:"purge_topics,omitempty"`
	// Job is the Nomad job to stop and purge ("" when the project never
	// had a revision with a job).
	Job string `json:"job,omitempty"`
	// Message says what the deletion waits for, for `butter status`.
	Message string `json:"message,omitempty"`
}

// ProjectDelete starts deleting a project.
type ProjectDelete struct {
	Project string   `json:"project"`
	Delete  Deletion `json:"delete"`
}

// ProjectPurged ends a project's deletion: it is gone.
type ProjectPurged struct {
	Project string `json:"project"`
}

func (f *FSM) applyProjectDelete(d *ProjectDelete) error {
	p, ok := f.st.Projects[d.Project]
	if !ok {
		return fmt.Errorf("delete project %q: no such project", d.Project)
	}
	if p.Deleting != nil {
		// A repeated delete (a retry, another operator) only updates
		// what it says.
		p.Deleting.Message = d.Delete.Message
		p.Deleting.PurgeTopics = p.Deleting.PurgeTopics || d.Delete.PurgeTopics
		return nil
	}
	del := d.Delete
	p.Deleting = &del
	delete(f.st.Active, d.Project)
	delete(f.st.Canaries, d.Project)
	for id, t := range f.st.TimerDefs {
		if t.Project == d.Project {
			delete(f.st.TimerDefs, id)
			delete(f.st.Timers, id)
		}
	}
	for hash, k := range f.st.APIKeys {
		if k.Project == d.Project {
			delete(f.st.APIKeys, hash)
		}
	}
	for key := range f.st.Scaling {
		if strings.HasPrefix(key, d.Project+"/") {
			delete(f.st.Scaling, key)
		}
	}
	return nil
}

func (f *FSM) applyProjectPurged(d *ProjectPurged) error {
	p, ok := f.st.Projects[d.Project]
	if !ok {
		return nil // purged already
	}
	if p.Deleting == nil {
		return fmt.Errorf("purge project %q: it is not being deleted", d.Project)
	}
	delete(f.st.Projects, d.Project)
	delete(f.st.Revisions, d.Project)
	delete(f.st.Active, d.Project)
	return nil
}
