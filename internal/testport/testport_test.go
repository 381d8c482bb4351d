package testport

import (
	"net"
	"strconv"
	"testing"
)

func TestPortsAreDistinctBindableAndOutsideEphemeralRange(t *testing.T) {
	seen := map[int]bool{}
	for range 200 {
		p := Port(t)
		if p < low || p >= high {
			t.Fatalf("port %d outside %d-%d", p, low, high-1)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
	// A port in use is skipped.
	mu.Lock()
	busy := next
	mu.Unlock()
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(busy)))
	if err != nil {
		t.Skipf("port %d already taken by another process: %v", busy, err)
	}
	defer l.Close()
	if p := Port(t); p == busy {
		t.Fatalf("handed out port %d while it was bound", p)
	}
}
