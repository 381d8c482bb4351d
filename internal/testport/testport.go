// Package testport hands tests free TCP ports on 127.0.0.1 for servers
// they start in other processes (Nomad, Vault, butter itself), where
// listening on port 0 and reading the address back is not possible.
//
// The usual trick, listening on port 0 and closing the listener, returns a
// port from the kernel's ephemeral range, the very range from which every
// other process binding port 0 and every outgoing connection draws: under
// `go test ./...` another package's test can take the port before the
// server that was meant to have it binds. Ports here come from 10000-19999
// instead, below the ephemeral range (32768-60999 on Linux) and below
// Nomad's dynamic ports (20000-32000), starting at a random point per
// process and never handed out twice by one process; each is checked to
// be bindable before it is returned.
package testport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
)

const (
	low  = 10000
	high = 20000
)

var (
	mu   sync.Mutex
	next = low + rand.IntN(high-low)
)

// Port returns a port on 127.0.0.1 that is free now and that this
// process has not handed out before.
func Port(t testing.TB) int {
	t.Helper()
	p, err := take()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Addr returns "127.0.0.1:<port>" for a Port.
func Addr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(Port(t)))
}

func take() (int, error) {
	mu.Lock()
	defer mu.Unlock()
	for range high - low {
		p := next
		next++
		if next >= high {
			next = low
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		_ = l.Close()
		return p, nil
	}
	return 0, fmt.Errorf("testport: no free port in %d-%d on 127.0.0.1", low, high-1)
}
