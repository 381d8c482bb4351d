package dev

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/butterfn/butter/plugins/pool"
)

// Progress of a pool's start, for a start that takes long (a Go or Java
// function built the first time, dependencies installed, a slow
// import): after startQuiet, butter dev says what it still waits for,
// at most every startEvery, and how long the whole start took.
const (
	startQuiet = 2 * time.Second
	startEvery = 5 * time.Second
)

// startReporter turns pool.StartProgress into butter dev's lines.
type startReporter struct {
	ui    UI
	now   func() time.Time
	begin time.Time

	mu      sync.Mutex
	last    time.Time // the last line said
	said    bool
	current pool.StartProgress
	stop    chan struct{}
	done    chan struct{}
}

// newStartReporter starts a reporter whose ticker says the progress while
// it lasts; finish ends it.
func newStartReporter(ui UI) *startReporter {
	r := &startReporter{ui: ui, now: time.Now, stop: make(chan struct{}), done: make(chan struct{})}
	r.begin = r.now()
	go r.tick()
	return r
}

// update records the pool's progress (pool.WithStartProgress).
func (r *startReporter) update(p pool.StartProgress) {
	r.mu.Lock()
	r.current = p
	r.mu.Unlock()
}

func (r *startReporter) tick() {
	defer close(r.done)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.sayIfDue()
		}
	}
}

// sayIfDue says what the start waits for, once it has lasted startQuiet
// and startEvery after the line before.
func (r *startReporter) sayIfDue() {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if now.Sub(r.begin) < startQuiet || now.Sub(r.last) < startEvery || len(r.current.Pending) == 0 {
		return
	}
	r.last, r.said = now, true
	r.ui.Output(r.line(now))
}

// line is the progress line at now.
func (r *startReporter) line(now time.Time) string {
	p := r.current
	waiting := p.Pending
	more := ""
	if len(waiting) > 5 {
		waiting, more = waiting[:5], fmt.Sprintf(" and %d more", len(p.Pending)-5)
	}
	return fmt.Sprintf("==> starting the pool: %d of %d functions loaded; waiting for %s%s (%s)",
		p.Loaded, p.Total, strings.Join(waiting, ", "), more, now.Sub(r.begin).Round(time.Second))
}

// finish stops the reporter; a start that was reported gets its total
// time.
func (r *startReporter) finish() {
	close(r.stop)
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.said {
		r.ui.Output(fmt.Sprintf("==> the pool's %d functions loaded in %s", r.current.Total, r.now().Sub(r.begin).Round(100*time.Millisecond)))
	}
}
