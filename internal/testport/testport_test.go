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
	// A port in use is skipped: hold the next bindable one.
	var l net.Listener
	for l == nil {
		mu.Lock()
		p := next
		mu.Unlock()
		if ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))); err == nil {
			l = ln
		} else {
			Port(t) // taken by another process: move past it
		}
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	if p := Port(t); p == busy {
		t.Fatalf("handed out port %d while it was bound", p)
	}
}
