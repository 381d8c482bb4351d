package dev

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/plugins/pool"
)

type recordUI struct {
	mu  sync.Mutex
	out []string
}

func (u *recordUI) Output(s string) { u.mu.Lock(); u.out = append(u.out, s); u.mu.Unlock() }
func (u *recordUI) Error(s string)  { u.Output("ERROR " + s) }

// TestStartReporter: a pool start says nothing for its first two seconds,
// then what it waits for at most every five, and its total time at the
// end; a quick start says nothing at all. The clock is the test's.
func TestStartReporter(t *testing.T) {
	ui := &recordUI{}
	clock := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	r := &startReporter{ui: ui, now: func() time.Time { return clock }, begin: clock, stop: make(chan struct{}), done: make(chan struct{})}
	close(r.done) // no ticker: the test calls sayIfDue
	r.update(pool.StartProgress{Loaded: 0, Total: 7, Pending: []string{"a", "b", "c", "d", "e", "f", "greet"}})
	clock = clock.Add(time.Second)
	r.sayIfDue()
	if len(ui.out) != 0 {
		t.Fatalf("said %q within the first two seconds", ui.out)
	}
	clock = clock.Add(1500 * time.Millisecond)
	r.sayIfDue()
	r.update(pool.StartProgress{Loaded: 6, Total: 7, Pending: []string{"greet"}})
	clock = clock.Add(3 * time.Second)
	r.sayIfDue() // within five seconds of the line before
	clock = clock.Add(3 * time.Second)
	r.sayIfDue()
	r.update(pool.StartProgress{Loaded: 7, Total: 7})
	clock = clock.Add(6 * time.Second)
	r.sayIfDue() // nothing pending
	r.finish()
	want := []string{
		"==> starting the pool: 0 of 7 functions loaded; waiting for a, b, c, d, e and 2 more (3s)",
		"==> starting the pool: 6 of 7 functions loaded; waiting for greet (9s)",
		"==> the pool's 7 functions loaded in 14.5s",
	}
	if strings.Join(ui.out, "\n") != strings.Join(want, "\n") {
		t.Errorf("said:\n%s\nwant:\n%s", strings.Join(ui.out, "\n"), strings.Join(want, "\n"))
	}

	quiet := &recordUI{}
	q := newStartReporter(quiet)
	q.update(pool.StartProgress{Loaded: 1, Total: 1})
	q.finish()
	if len(quiet.out) != 0 {
		t.Errorf("a quick start said %q", quiet.out)
	}
}
