package pool

import "time"

// SetOutputHold sets how long the invoke endpoint holds a call's first
// output back waiting for the call to end (outputHold by default), so
// that a test chooses the branch it checks, a whole answer or a streamed
// one, instead of racing the 2ms window on a busy machine. Set it before
// the pool serves calls.
func SetOutputHold(p *Pool, d time.Duration) {
	p.holds.mu.Lock()
	defer p.holds.mu.Unlock()
	p.holds.window = d
}

// PublicMessage is publicMessage, for TestPublicMessage.
var PublicMessage = publicMessage

// SetStateClock sets the clock that the state of function fn expires by
// (time.Now by default), so that a test steps past a TTL instead of
// waiting it out. Set it before the function's first call.
func SetStateClock(p *Pool, fn string, now func() time.Time) {
	s := p.fns[fn].state
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// WithSandboxAvailable replaces sandbox.Available, the check of whether
// the kernel can confine, so that a test runs the pool of a kernel
// without Landlock.
func WithSandboxAvailable(f func() error) Option {
	return func(o *options) { o.sandboxAvailable = f }
}
