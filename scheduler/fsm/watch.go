package fsm

import (
	"context"
	"sync"
)

// watch tracks the Raft index of the last log the FSM applied and wakes
// the goroutines waiting for it to move. Its zero value is ready to use.
//
// Waiters share one channel, made when the first of them asks and closed
// (then forgotten) on the next change: an Apply with nobody waiting costs
// a lock and no allocation.
type watch struct {
	mu sync.Mutex
	// index is the Raft index of the last command applied, or the one
	// recorded in the last snapshot restored.
	index uint64
	// restores counts snapshot restores: a waiter returns after one even
	// when the restored index is not past the one it waits for.
	restores uint64
	ch       chan struct{}
	// waiting counts the goroutines blocked in WaitIndex (for tests).
	waiting int
}

// applied records a command applied at index; the index never goes back.
func (w *watch) applied(index uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if index > w.index {
		w.index = index
	}
	w.wake()
}

// restored records a snapshot restore: the index becomes the snapshot's,
// which may be lower than before (an operator restoring an old snapshot).
func (w *watch) restored(index uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.index = index
	w.restores++
	w.wake()
}

// wake closes the waiters' channel; w.mu must be held.
func (w *watch) wake() {
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
}

// Index returns the Raft index of the last command this FSM applied (or,
// until the next command, the index recorded in the snapshot it last
// restored). It is 0 before the first command, and after restoring a
// snapshot written before snapshots carried their index.
//
// A writer that got index i from raft's ApplyFuture.Index sees its write
// in this node's state once Index() >= i.
func (f *FSM) Index() uint64 {
	f.watch.mu.Lock()
	defer f.watch.mu.Unlock()
	return f.watch.index
}

// WaitIndex blocks until the applied index exceeds after, and returns it.
// It also returns, with the new index, when a snapshot restore replaces the
// state while it waits, even if that index is not past after: the state a
// caller read at after is gone either way, and waiting on could block until
// the next write. When ctx ends first it returns the current index and
// ctx's error.
//
// It does not poll: every Apply and Restore wakes the waiters.
func (f *FSM) WaitIndex(ctx context.Context, after uint64) (uint64, error) {
	w := &f.watch
	w.mu.Lock()
	restores := w.restores
	for w.index <= after && w.restores == restores {
		if w.ch == nil {
			w.ch = make(chan struct{})
		}
		ch := w.ch
		w.waiting++
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		w.mu.Lock()
		w.waiting--
		if err := ctx.Err(); err != nil && w.index <= after && w.restores == restores {
			index := w.index
			w.mu.Unlock()
			return index, err
		}
	}
	index := w.index
	w.mu.Unlock()
	return index, nil
}

// indexedState is a snapshot's JSON: the state's fields, plus the index of
// the last command applied before it. Snapshots written before the index
// was added decode with Index 0, and older nodes ignore the field.
type indexedState struct {
	*State
	Index uint64 `json:"index,omitempty"`
}
