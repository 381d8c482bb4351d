package routesync

import "time"

// SetClock makes s read the time from now, so that a test moves it by
// hand past a retry's backoff.
func SetClock(s *Sync, now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}
