package main

import (
	"strings"
	"testing"
	"time"
)

// TestParseSince: a duration back from now, an RFC 3339 time, and a
// clear error for anything else.
func TestParseSince(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	if s, err := parseSince("10m", now); err != nil || s.kind != "time" || !s.time.Equal(now.Add(-10*time.Minute)) {
		t.Errorf("10m: %+v, %v", s, err)
	}
	if s, err := parseSince("2026-12-01T00:00:00Z", now); err != nil || !s.time.Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("a time: %+v, %v", s, err)
	}
	for _, bad := range []string{"yesterday", "-5m", "0s"} {
		if _, err := parseSince(bad, now); err == nil || !strings.Contains(err.Error(), "-since=") {
			t.Errorf("%q: %v, want an error naming -since", bad, err)
		}
	}
}
