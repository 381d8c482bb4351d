package fsm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/hashicorp/raft"
)

// applyAt applies a project upsert as the log entry at index.
func applyAt(t *testing.T, f *fsm.FSM, index uint64, project string) {
	t.Helper()
	if err, _ := f.Apply(&raft.Log{Index: index, Data: entry(t, fsm.ProjectUpsertType, fsm.Project{Name: project})}).(error); err != nil {
		t.Fatal(err)
	}
}

type waited struct {
	index uint64
	err   error
}

// waitAsync runs WaitIndex on its own goroutine.
func waitAsync(ctx context.Context, f *fsm.FSM, after uint64) <-chan waited {
	out := make(chan waited, 1)
	go func() {
		i, err := f.WaitIndex(ctx, after)
		out <- waited{i, err}
	}()
	return out
}

// blocked waits until n goroutines are blocked in f.WaitIndex.
func blocked(t *testing.T, f *fsm.FSM, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for fsm.Waiting(f) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines in WaitIndex after 30s, want %d", fsm.Waiting(f), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func receive(t *testing.T, ch <-chan waited) waited {
	t.Helper()
	select {
	case w := <-ch:
		return w
	case <-time.After(30 * time.Second):
		t.Fatal("WaitIndex did not return within 30s")
		return waited{}
	}
}

// Index follows every applied entry, a rejected one too (raft applied it),
// and never goes back.
func TestIndex(t *testing.T) {
	f := fsm.New()
	if f.Index() != 0 {
		t.Fatalf("a new FSM's index = %d", f.Index())
	}
	applyAt(t, f, 3, "a")
	if f.Index() != 3 {
		t.Errorf("index after applying entry 3 = %d", f.Index())
	}
	if err, _ := f.Apply(&raft.Log{Index: 4, Data: []byte{250, 1}}).(error); !errors.Is(err, fsm.ErrUnknownCommand) {
		t.Fatalf("unknown command: %v", err)
	}
	if f.Index() != 4 {
		t.Errorf("index after the rejected entry 4 = %d, want 4", f.Index())
	}
	applyAt(t, f, 2, "b") // out of order: cannot happen under raft, must not rewind
	if f.Index() != 4 {
		t.Errorf("index went back to %d", f.Index())
	}
}

// WaitIndex returns at once when the index is already past after, wakes on
// the first apply past after (every waiter), and not on one at or below it.
func TestWaitIndex(t *testing.T) {
	f := fsm.New()
	applyAt(t, f, 5, "a")
	ctx := context.Background()
	if i, err := f.WaitIndex(ctx, 4); i != 5 || err != nil {
		t.Fatalf("WaitIndex(4) at index 5 = %d, %v", i, err)
	}

	// Entries up to after do not wake a waiter: cancelled, it says so.
	cctx, cancel := context.WithCancel(ctx)
	early := waitAsync(cctx, f, 7)
	blocked(t, f, 1)
	applyAt(t, f, 6, "b")
	applyAt(t, f, 7, "c")
	cancel()
	if w := receive(t, early); w.index != 7 || !errors.Is(w.err, context.Canceled) {
		t.Errorf("waiting past 7, cancelled at 7: %d, %v; want 7, context.Canceled", w.index, w.err)
	}

	// Every waiter wakes on the entry past after.
	var waiters []<-chan waited
	for range 3 {
		waiters = append(waiters, waitAsync(ctx, f, 7))
	}
	blocked(t, f, 3)
	applyAt(t, f, 8, "d")
	for _, ch := range waiters {
		if w := receive(t, ch); w.index != 8 || w.err != nil {
			t.Errorf("waiter past 7 = %d, %v; want 8", w.index, w.err)
		}
	}
	// The state of the entry is visible when the waiter wakes.
	got := waitAsync(ctx, f, 8)
	blocked(t, f, 1)
	applyAt(t, f, 9, "e")
	receive(t, got)
	f.Read(func(s *fsm.State) {
		if s.Projects["e"] == nil {
			t.Error("woken at index 9 before entry 9's state was visible")
		}
	})

	// A deadline ends the wait.
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer dcancel()
	if i, err := f.WaitIndex(dctx, 100); i != 9 || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("past a deadline: %d, %v", i, err)
	}
}

// persist writes f's snapshot and returns its bytes.
func persist(t *testing.T, f *fsm.FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	store := raft.NewInmemSnapshotStore()
	sink, err := store.Create(raft.SnapshotVersionMax, 1, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	_, rc, err := store.Open(sink.ID())
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A snapshot carries the index; restoring it sets the index and wakes the
// waiters, even one waiting past it. A snapshot of the older format (no
// index) still restores, with index 0, and the older format's reader can
// read the new one.
func TestIndexAcrossSnapshots(t *testing.T) {
	f := fsm.New()
	applyAt(t, f, 7, "p")
	b := persist(t, f)

	g := fsm.New()
	applyAt(t, g, 10, "q")
	waiter := waitAsync(context.Background(), g, 10)
	blocked(t, g, 1)
	if err := g.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
		t.Fatal(err)
	}
	if w := receive(t, waiter); w.index != 7 || w.err != nil {
		t.Errorf("a waiter past 10 across a restore to 7: %d, %v; want 7, nil", w.index, w.err)
	}
	if g.Index() != 7 {
		t.Errorf("index after restore = %d, want the snapshot's 7", g.Index())
	}
	g.Read(func(s *fsm.State) {
		if s.Projects["p"] == nil || s.Projects["q"] != nil {
			t.Errorf("restored projects = %v", s.Projects)
		}
	})

	var old fsm.State // what a node without the index reads
	if err := json.Unmarshal(b, &old); err != nil || old.Projects["p"] == nil {
		t.Errorf("the older reader: %v, %+v", err, old)
	}
	h := fsm.New()
	applyAt(t, h, 3, "x")
	older := `{"projects":{"p":{"name":"p","created":"2026-01-01T00:00:00Z"}},"revisions":{},"active":{},"timers":{},"timer_defs":{},"api_keys":{}}`
	if err := h.Restore(io.NopCloser(bytes.NewReader([]byte(older)))); err != nil {
		t.Fatal(err)
	}
	if h.Index() != 0 {
		t.Errorf("index after restoring an older snapshot = %d, want 0", h.Index())
	}
	h.Read(func(s *fsm.State) {
		if s.Projects["p"] == nil {
			t.Error("the older snapshot's project is missing")
		}
	})
}

// On a real raft cluster a follower's WaitIndex, given the index the
// leader's ApplyFuture reports, returns once the write is in its state.
func TestWaitIndexOnFollower(t *testing.T) {
	nodes := cluster(t)
	_, index := commit(t, nodes, nil, entry(t, fsm.ProjectUpsertType, fsm.Project{Name: "seen"}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range nodes {
		if i, err := n.fsm.WaitIndex(ctx, index-1); err != nil || i < index {
			t.Fatalf("node %s: WaitIndex = %d, %v; want >= %d", n.id, i, err, index)
		}
		n.fsm.Read(func(s *fsm.State) {
			if s.Projects["seen"] == nil {
				t.Errorf("node %s at index %d lacks the write", n.id, n.fsm.Index())
			}
		})
	}
}
