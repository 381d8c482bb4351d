// Package breaker is a circuit breaker: it opens after a number of
// consecutive failures, fails calls at once while open, lets one trial
// call through once a delay has passed (half-open), and closes again when
// that trial succeeds or opens again when it fails. The pool keeps one per
// caller and target of a context call (plugins/pool, calls.go), so that a
// failing downstream fails its callers fast instead of stalling them
// until their timeouts.
package breaker

import (
	"sync"
	"time"
)

// State is a breaker's state.
type State int

// The states, as the metric butter_breaker_state reports them.
const (
	Closed   State = 0 // calls go through
	Open     State = 1 // calls fail at once
	HalfOpen State = 2 // one trial call goes through; the others fail at once
)

func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return "unknown"
}

// Breaker is one circuit breaker. Its zero value is not usable: use New.
// It is safe for concurrent use.
type Breaker struct {
	threshold int
	delay     time.Duration
	now       func() time.Time

	mu       sync.Mutex
	state    State
	failures int       // consecutive, while closed
	openedAt time.Time // when it last opened
	trial    bool      // a half-open trial is in flight
}

// New returns a closed breaker that opens after threshold consecutive
// failures (at least 1) and half-opens delay after it opened. now is the
// clock (nil: time.Now).
func New(threshold int, delay time.Duration, now func() time.Time) *Breaker {
	if now == nil {
		now = time.Now
	}
	return &Breaker{threshold: max(threshold, 1), delay: delay, now: now}
}

// advance moves an open breaker whose delay has passed to half-open; b.mu
// is held.
func (b *Breaker) advance() {
	if b.state == Open && !b.now().Before(b.openedAt.Add(b.delay)) {
		b.state = HalfOpen
		b.trial = false
	}
}

// Allow reports whether a call may go now. When it may, the caller must
// report the call's outcome with Done. When it may not, retryIn is how long
// until the breaker lets a trial call through (0 while a trial is in
// flight).
func (b *Breaker) Allow() (ok bool, retryIn time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance()
	switch b.state {
	case Closed:
		return true, 0
	case HalfOpen:
		if b.trial {
			return false, 0
		}
		b.trial = true
		return true, 0
	}
	return false, b.openedAt.Add(b.delay).Sub(b.now())
}

// Done reports the outcome of a call Allow let through: a failure counts
// towards opening (or, for the half-open trial, opens again), a success
// closes the breaker and resets the count.
func (b *Breaker) Done(success bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if success {
		b.state, b.failures, b.trial = Closed, 0, false
		return
	}
	switch b.state {
	case Closed:
		b.failures++
		if b.failures >= b.threshold {
			b.state, b.openedAt = Open, b.now()
		}
	case HalfOpen:
		b.state, b.openedAt, b.trial = Open, b.now(), false
	}
	// Open: a call let through before it opened failed too; it stays
	// open from when it opened.
}

// Release ends a call Allow let through without an outcome that says
// anything about the target (its caller gave up): the state stays, and a
// half-open breaker lets the next call through as its trial.
func (b *Breaker) Release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == HalfOpen {
		b.trial = false
	}
}

// State returns the breaker's state now: an open breaker whose delay has
// passed is half-open.
func (b *Breaker) State() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance()
	return b.state
}
