package fsm_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

func entry(t *testing.T, typ fsm.MessageType, v any) []byte {
	t.Helper()
	b, err := fsm.Encode(typ, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestApplyAndRejectUnknown(t *testing.T) {
	f := fsm.New()
	apply := func(data []byte) any { return f.Apply(&raft.Log{Data: data}) }
	if err := apply(entry(t, fsm.ProjectUpsertType, fsm.Project{Name: "iot"})); err != nil {
		t.Fatal(err)
	}
	if err := apply(entry(t, fsm.RevisionCreateType, fsm.Revision{Project: "iot", ID: "r1", Created: time.Now()})); err != nil {
		t.Fatal(err)
	}
	if err := apply(entry(t, fsm.RevisionActivateType, fsm.Activation{Project: "iot", Revision: "r1"})); err != nil {
		t.Fatal(err)
	}
	// A revision of an unknown project, and activating a missing revision,
	// are refused.
	if err, _ := apply(entry(t, fsm.RevisionCreateType, fsm.Revision{Project: "nope", ID: "x"})).(error); err == nil {
		t.Error("revision of an unknown project accepted")
	}
	if err, _ := apply(entry(t, fsm.RevisionActivateType, fsm.Activation{Project: "iot", Revision: "r9"})).(error); err == nil {
		t.Error("activation of a missing revision accepted")
	}
	// Unknown type and unknown version: rejected, state unchanged.
	before := persist(t, f)
	for name, data := range map[string][]byte{
		"unknown type":    append([]byte{250, 1}, []byte(`{}`)...),
		"unknown version": append([]byte{byte(fsm.ProjectUpsertType), 9}, []byte(`{"name":"evil"}`)...),
		"too short":       {1},
	} {
		err, _ := apply(data).(error)
		if !errors.Is(err, fsm.ErrUnknownCommand) {
			t.Errorf("%s: %v, want ErrUnknownCommand", name, err)
		}
	}
	if after := persist(t, f); !bytes.Equal(before, after) {
		t.Error("a rejected command changed the state")
	}
	f.Read(func(s *fsm.State) {
		if s.Active["iot"] != "r1" || s.Projects["evil"] != nil {
			t.Errorf("state = %+v", s)
		}
	})
	// A timer tick fires at most once.
	tick := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
	if err := apply(entry(t, fsm.TimerFiredType, fsm.TimerFiring{Timer: "iot/nightly", Tick: tick})); err != nil {
		t.Fatal(err)
	}
	if err, _ := apply(entry(t, fsm.TimerFiredType, fsm.TimerFiring{Timer: "iot/nightly", Tick: tick})).(error); err == nil {
		t.Error("the same tick fired twice")
	}
}

// A snapshot is a copy: commands applied between Snapshot and Persist
// (which raft runs on another goroutine) do not reach it, those that change
// a revision in place included.
func TestSnapshotIsACopy(t *testing.T) {
	f := fsm.New()
	apply := func(index uint64, typ fsm.MessageType, v any) {
		t.Helper()
		if err, _ := f.Apply(&raft.Log{Index: index, Data: entry(t, typ, v)}).(error); err != nil {
			t.Fatal(err)
		}
	}
	tick := time.Date(2026, 1, 1, 3, 0, 0, 0, time.UTC)
	apply(1, fsm.ProjectUpsertType, fsm.Project{Name: "p"})
	apply(2, fsm.RevisionCreateType, fsm.Revision{Project: "p", ID: "r1", Specs: map[string]string{"butter.hcl": "v1"},
		Timers: []*fsm.Timer{{ID: "p.t", Schedule: "@hourly", Topic: "t"}}})
	apply(3, fsm.RevisionActivateType, fsm.Activation{Project: "p", Revision: "r1", Reason: "first"})
	apply(4, fsm.TimerFiredType, fsm.TimerFiring{Timer: "p.t", Tick: tick})
	apply(5, fsm.APIKeyPutType, fsm.APIKey{Hash: "h", Project: "p", Routes: []string{"a"}})
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	apply(6, fsm.RevisionStatusType, fsm.RevisionStatus{Project: "p", Revision: "r1", Status: fsm.DeployStatus{Status: fsm.StatusHealthy}})
	apply(7, fsm.TimerFiredType, fsm.TimerFiring{Timer: "p.t", Tick: tick.Add(time.Hour)})
	apply(8, fsm.ProjectUpsertType, fsm.Project{Name: "q"})
	apply(9, fsm.APIKeyDeleteType, fsm.APIKey{Hash: "h"})
	f.Read(func(s *fsm.State) { s.Revisions["p"]["r1"].Specs["butter.hcl"] = "changed behind the FSM's back" })

	store := raft.NewInmemSnapshotStore()
	sink, err := store.Create(raft.SnapshotVersionMax, 5, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	_, rc, err := store.Open(sink.ID())
	if err != nil {
		t.Fatal(err)
	}
	g := fsm.New()
	if err := g.Restore(rc); err != nil {
		t.Fatal(err)
	}
	if g.Index() != 5 {
		t.Errorf("restored index = %d, want 5", g.Index())
	}
	g.Read(func(s *fsm.State) {
		r1 := s.Revisions["p"]["r1"]
		if r1.Deployment.Status != fsm.StatusPending || r1.Deployment.Message != "first" {
			t.Errorf("r1 deployment = %+v, want the pending one of the snapshot", r1.Deployment)
		}
		if r1.Specs["butter.hcl"] != "v1" {
			t.Errorf("r1 specs = %v", r1.Specs)
		}
		if !s.Timers["p.t"].Equal(tick) || s.TimerDefs["p.t"] == nil {
			t.Errorf("timers = %v, %v", s.Timers, s.TimerDefs)
		}
		if s.Projects["q"] != nil || s.APIKeys["h"] == nil || s.Active["p"] != "r1" {
			t.Errorf("state = %+v", s)
		}
	})
}

// snapshotRoundTrip persists a snapshot and restores it into a fresh FSM.
func TestSnapshotRestore(t *testing.T) {
	f := fsm.New()
	f.Apply(&raft.Log{Data: entry(t, fsm.ProjectUpsertType, fsm.Project{Name: "p"})})
	f.Apply(&raft.Log{Data: entry(t, fsm.APIKeyPutType, fsm.APIKey{Hash: "h1", Project: "p"})})
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	store := raft.NewInmemSnapshotStore()
	sink, err := store.Create(raft.SnapshotVersionMax, 1, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	metas, _ := store.List()
	_, rc, err := store.Open(metas[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	g := fsm.New()
	if err := g.Restore(io.NopCloser(rc)); err != nil {
		t.Fatal(err)
	}
	g.Read(func(s *fsm.State) {
		if s.Projects["p"] == nil || s.APIKeys["h1"] == nil {
			t.Errorf("restored state = %+v", s)
		}
	})
}

type node struct {
	id    raft.ServerID
	raft  *raft.Raft
	fsm   *fsm.FSM
	trans *raft.InmemTransport
}

// cluster builds a 3-node Raft cluster on in-memory transports, the way
// hashicorp/raft's own tests do, with our FSM.
func cluster(t *testing.T) []*node {
	t.Helper()
	var nodes []*node
	var servers []raft.Server
	for i := range 3 {
		id := raft.ServerID(fmt.Sprintf("n%d", i))
		addr, trans := raft.NewInmemTransport(raft.ServerAddress(id))
		nodes = append(nodes, &node{id: id, fsm: fsm.New(), trans: trans})
		servers = append(servers, raft.Server{ID: id, Address: addr})
	}
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				a.trans.Connect(b.trans.LocalAddr(), b.trans)
			}
		}
	}
	for _, n := range nodes {
		cfg := raft.DefaultConfig()
		cfg.LocalID = n.id
		cfg.HeartbeatTimeout = 100 * time.Millisecond
		cfg.ElectionTimeout = 100 * time.Millisecond
		cfg.LeaderLeaseTimeout = 50 * time.Millisecond
		cfg.CommitTimeout = 5 * time.Millisecond
		cfg.Logger = hclog.NewNullLogger()
		logs, stable := raft.NewInmemStore(), raft.NewInmemStore()
		snaps := raft.NewInmemSnapshotStore()
		if err := raft.BootstrapCluster(cfg, logs, stable, snaps, n.trans, raft.Configuration{Servers: servers}); err != nil {
			t.Fatal(err)
		}
		r, err := raft.NewRaft(cfg, n.fsm, logs, stable, snaps, n.trans)
		if err != nil {
			t.Fatal(err)
		}
		n.raft = r
		t.Cleanup(func() { _ = r.Shutdown().Error() })
	}
	return nodes
}

func leader(t *testing.T, nodes []*node, except *node) *node {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range nodes {
			if n != except && n.raft.State() == raft.Leader {
				return n
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no leader within 30s")
	return nil
}

// commit applies an entry through the leader (not except), and through
// the next one if leadership moves before it commits: with 100 ms
// election timeouts, a loaded machine can see a leader lose its lease.
// It returns the leader that committed the entry and the entry's index.
func commit(t *testing.T, nodes []*node, except *node, b []byte) (*node, uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		l := leader(t, nodes, except)
		f := l.raft.Apply(b, 5*time.Second)
		err := f.Error()
		if err == nil {
			return l, f.Index()
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader committed the entry within 30s: %v", err)
		}
	}
}

// TestPartitionedLeader: a leader cut off from the majority cannot commit a
// write, and the majority elects a new leader that can. After healing, the
// old leader follows and holds every committed write.
func TestPartitionedLeader(t *testing.T) {
	nodes := cluster(t)
	old, _ := commit(t, nodes, nil, entry(t, fsm.ProjectUpsertType, fsm.Project{Name: "before"}))
	// Cut the leader off.
	for _, n := range nodes {
		if n != old {
			old.trans.Disconnect(n.trans.LocalAddr())
			n.trans.Disconnect(old.trans.LocalAddr())
		}
	}
	f := old.raft.Apply(entry(t, fsm.ProjectUpsertType, fsm.Project{Name: "lost"}), 500*time.Millisecond)
	if err := f.Error(); err == nil {
		t.Fatal("a leader cut off from the majority committed a write")
	}
	commit(t, nodes, old, entry(t, fsm.ProjectUpsertType, fsm.Project{Name: "after"}))
	// Heal: the old leader steps down and catches up.
	for _, n := range nodes {
		if n != old {
			old.trans.Connect(n.trans.LocalAddr(), n.trans)
			n.trans.Connect(old.trans.LocalAddr(), old.trans)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var ok bool
		old.fsm.Read(func(s *fsm.State) {
			ok = s.Projects["after"] != nil && s.Projects["before"] != nil && s.Projects["lost"] == nil
		})
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the healed node did not converge on the majority's log")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, n := range nodes {
		n.fsm.Read(func(s *fsm.State) {
			if s.Projects["lost"] != nil {
				t.Errorf("node %s holds the uncommitted write", n.id)
			}
		})
	}
}

// Activating a revision makes its cron triggers the project's timers:
// timers the new revision drops go away with their last firing, timers it
// keeps keep theirs, and other projects' timers are untouched. The
// activation resets the revision's deployment to pending, and a status
// update records it, keeping when it was last healthy.
func TestActivationSyncsTimersAndResetsStatus(t *testing.T) {
	f := fsm.New()
	apply := func(typ fsm.MessageType, v any) {
		t.Helper()
		if err, _ := f.Apply(&raft.Log{Data: entry(t, typ, v)}).(error); err != nil {
			t.Fatal(err)
		}
	}
	apply(fsm.ProjectUpsertType, fsm.Project{Name: "iot"})
	apply(fsm.TimerPutType, fsm.Timer{ID: "other", Schedule: "@daily", Topic: "x"})
	nightly := &fsm.Timer{ID: "iot.nightly.0", Schedule: "0 3 * * *", Topic: "iot._timers.nightly"}
	hourly := &fsm.Timer{ID: "iot.hourly.0", Schedule: "@hourly", Topic: "iot._timers.hourly"}
	apply(fsm.RevisionCreateType, fsm.Revision{Project: "iot", ID: "r1", Timers: []*fsm.Timer{nightly, hourly}})
	apply(fsm.RevisionCreateType, fsm.Revision{Project: "iot", ID: "r2", Timers: []*fsm.Timer{nightly}})
	apply(fsm.RevisionActivateType, fsm.Activation{Project: "iot", Revision: "r1"})
	tick := time.Date(2026, 1, 1, 3, 0, 0, 0, time.UTC)
	apply(fsm.TimerFiredType, fsm.TimerFiring{Timer: "iot.nightly.0", Tick: tick})
	apply(fsm.TimerFiredType, fsm.TimerFiring{Timer: "iot.hourly.0", Tick: tick})
	healthy := time.Date(2026, 1, 1, 4, 0, 0, 0, time.UTC)
	apply(fsm.RevisionStatusType, fsm.RevisionStatus{Project: "iot", Revision: "r1", Status: fsm.DeployStatus{Status: fsm.StatusHealthy, Updated: healthy}})
	apply(fsm.RevisionActivateType, fsm.Activation{Project: "iot", Revision: "r2", Reason: "deployed by ana"})
	f.Read(func(st *fsm.State) {
		var ids []string
		for id, tm := range st.TimerDefs {
			ids = append(ids, id+"="+tm.Project)
		}
		sort.Strings(ids)
		if got := strings.Join(ids, ","); got != "iot.nightly.0=iot,other=" {
			t.Errorf("timers after activating r2 = %s", got)
		}
		if !st.Timers["iot.nightly.0"].Equal(tick) {
			t.Errorf("the kept timer lost its last firing: %v", st.Timers["iot.nightly.0"])
		}
		if _, ok := st.Timers["iot.hourly.0"]; ok {
			t.Error("the dropped timer kept its last firing")
		}
		r1, r2 := st.Revisions["iot"]["r1"].Deployment, st.Revisions["iot"]["r2"].Deployment
		if r2.Status != fsm.StatusPending || r2.Message != "deployed by ana" {
			t.Errorf("r2 deployment = %+v, want pending", r2)
		}
		if r1.Status != fsm.StatusHealthy || !r1.HealthyAt.Equal(healthy) {
			t.Errorf("r1 deployment = %+v, want healthy since %v", r1, healthy)
		}
	})
	// A later status keeps HealthyAt.
	apply(fsm.RevisionStatusType, fsm.RevisionStatus{Project: "iot", Revision: "r1", Status: fsm.DeployStatus{Status: fsm.StatusDeploying}})
	f.Read(func(st *fsm.State) {
		if d := st.Revisions["iot"]["r1"].Deployment; !d.HealthyAt.Equal(healthy) {
			t.Errorf("HealthyAt lost: %+v", d)
		}
	})
}

// A snapshot of the format written before snapshots carried their index
// (the State as JSON, which is what Snapshot encoded) restores whole.
func TestRestoreFormerSnapshot(t *testing.T) {
	f := fsm.New()
	for _, c := range []struct {
		typ fsm.MessageType
		v   any
	}{
		{fsm.ProjectUpsertType, fsm.Project{Name: "p", Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{fsm.RevisionCreateType, fsm.Revision{Project: "p", ID: "r1", Specs: map[string]string{"a": "b"}, Job: []byte(`{"Job":{"ID":"p"}}`),
			Timers: []*fsm.Timer{{ID: "p.t", Schedule: "@hourly", Topic: "t"}}}},
		{fsm.RevisionActivateType, fsm.Activation{Project: "p", Revision: "r1"}},
		{fsm.TimerFiredType, fsm.TimerFiring{Timer: "p.t", Tick: time.Date(2026, 1, 1, 3, 0, 0, 0, time.UTC)}},
		{fsm.APIKeyPutType, fsm.APIKey{Hash: "h", Project: "p"}},
	} {
		if err, _ := f.Apply(&raft.Log{Data: entry(t, c.typ, c.v)}).(error); err != nil {
			t.Fatal(err)
		}
	}
	var former []byte
	f.Read(func(s *fsm.State) {
		var err error
		if former, err = json.Marshal(s); err != nil {
			t.Fatal(err)
		}
	})
	g := fsm.New()
	if err := g.Restore(io.NopCloser(bytes.NewReader(former))); err != nil {
		t.Fatal(err)
	}
	g.Read(func(s *fsm.State) {
		got, _ := json.Marshal(s)
		if !bytes.Equal(got, former) {
			t.Errorf("restored state differs:\n got %s\nwant %s", got, former)
		}
	})
}
