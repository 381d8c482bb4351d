package scheduler_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/butterfn/butter/scheduler/schedtest"
)

// These tests run clusters in this process on raft's in-memory transports
// and stores (package schedtest): fakes, so that a failover takes
// milliseconds. cmd/butter's TestLeaderLoss does the same with processes,
// TCP and BoltDB.

var apiClient = &http.Client{Timeout: 5 * time.Second}

// putProject writes a project through a node's HTTP API (a follower
// forwards it to the leader).
func putProject(n *schedtest.Node, name string) error {
	req, _ := http.NewRequest("PUT", n.URL()+"/v1/projects/"+name, nil)
	resp, err := apiClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		var e struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("PUT %s on %s: %s: %s", name, n.ID, resp.Status, e.Error)
	}
	return nil
}

// putEventually retries a write through n until it is acknowledged: n may
// not know the new leader yet.
func putEventually(t *testing.T, n *schedtest.Node, name string) {
	t.Helper()
	var err error
	schedtest.WaitFor(t, 30*time.Second, "write "+name+" acknowledged through "+n.ID, func() bool {
		err = putProject(n, name)
		return err == nil
	})
}

// unread reports which of names a read through n's API does not find: a
// default (not stale) read, which a leader answers itself.
func unread(t *testing.T, n *schedtest.Node, names ...string) []string {
	t.Helper()
	var out []string
	for _, name := range names {
		resp, err := apiClient.Get(n.URL() + "/v1/projects/" + name)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			out = append(out, fmt.Sprintf("%s (%s)", name, resp.Status))
		}
	}
	return out
}

// missing reports which of names are missing from a node's state.
func missing(n *schedtest.Node, names ...string) []string {
	var out []string
	n.FSM().Read(func(st *fsm.State) {
		for _, name := range names {
			if st.Projects[name] == nil {
				out = append(out, name)
			}
		}
	})
	return out
}

// stateJSON is a node's whole state, comparable between nodes.
func stateJSON(t *testing.T, n *schedtest.Node) []byte {
	t.Helper()
	var b []byte
	n.FSM().Read(func(st *fsm.State) {
		var err error
		if b, err = json.Marshal(st); err != nil {
			t.Fatal(err)
		}
	})
	return b
}

// caughtUp waits until n has applied what the leader has, and checks that
// both hold the same state.
func caughtUp(t *testing.T, leader, n *schedtest.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := leader.FSM().Index()
	if got, err := n.FSM().WaitIndex(ctx, want-1); err != nil {
		t.Fatalf("node %s at index %d, leader at %d: %v", n.ID, got, want, err)
	}
	if a, b := stateJSON(t, leader), stateJSON(t, n); !bytes.Equal(a, b) {
		t.Fatalf("node %s differs from the leader:\n%s\n%s", n.ID, b, a)
	}
}

// TestInProcessLeaderLoss: writes through a follower are forwarded to the
// leader; the leader stops; the two left elect a new leader that holds
// every write acknowledged before, and a follower's writes are forwarded
// to it. The stopped node comes back after the leader has compacted its
// log past it, and catches up by installing the leader's snapshot.
func TestInProcessLeaderLoss(t *testing.T) {
	c := schedtest.MakeCluster(t, schedtest.Options{NoTimers: true, SnapshotThreshold: 8})
	old := c.Leader()
	var before []string
	for i := range 10 {
		name := fmt.Sprintf("before-%d", i)
		if err := putProject(c.Followers(old)[i%2], name); err != nil {
			t.Fatal(err)
		}
		before = append(before, name)
	}

	c.Stop(old)
	nu := c.Leader(old)
	// Read through the API at once: a new leader may not have applied
	// every committed entry yet, and must not answer before it has.
	if m := unread(t, nu, before...); len(m) > 0 {
		t.Fatalf("the new leader %s does not answer acknowledged writes %v", nu.ID, m)
	}
	follower := c.Followers(nu)[0]
	putEventually(t, follower, "after")
	if m := missing(nu, "after"); len(m) > 0 {
		t.Fatalf("a write acknowledged by follower %s is not on the leader %s", follower.ID, nu.ID)
	}
	caughtUp(t, nu, follower)

	for i := range 20 {
		putEventually(t, follower, fmt.Sprintf("after-%d", i))
	}
	if err := nu.Server.Raft().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	first, err := nu.Logs.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	last, err := old.Logs.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	if first <= last+1 {
		t.Fatalf("the leader's log starts at %d, the stopped node's ends at %d: it could catch up without a snapshot", first, last)
	}
	c.Start(old)
	caughtUp(t, c.Leader(), old)
}

// TestInProcessPartition: the leader is cut off. The majority elects a new
// leader and takes writes; the old leader cannot commit, directly or
// through its API. After healing, the old leader holds the majority's
// state and not its own uncommitted write.
func TestInProcessPartition(t *testing.T) {
	c := schedtest.MakeCluster(t, schedtest.Options{NoTimers: true})
	old := c.Leader()
	if err := putProject(old, "before"); err != nil {
		t.Fatal(err)
	}

	c.Partition(old)
	if err := old.Server.Apply(fsm.ProjectUpsertType, fsm.Project{Name: "lost"}); err == nil {
		t.Fatal("a leader cut off from the majority committed a write")
	}
	if err := putProject(old, "lost-too"); err == nil {
		t.Fatal("the cut-off leader's API acknowledged a write")
	}
	nu := c.Leader(old)
	other := c.Followers(nu)
	for _, n := range other {
		if n != old {
			putEventually(t, n, "after") // through the majority's follower
		}
	}
	if m := missing(nu, "before", "after"); len(m) > 0 {
		t.Fatalf("the new leader lacks %v", m)
	}

	c.Heal(old)
	leader := c.Leader()
	for _, n := range c.Followers(leader) {
		caughtUp(t, leader, n) // followers apply what the leader commits in their own time
	}
	for _, n := range c.Nodes {
		if m := missing(n, "lost", "lost-too"); len(m) != 2 {
			t.Errorf("node %s holds an uncommitted write of the cut-off leader", n.ID)
		}
		if m := missing(n, "before", "after"); len(m) > 0 {
			t.Errorf("node %s lacks %v", n.ID, m)
		}
	}
}
