package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// poolClient is the gateway's HTTP/1.1 client for calls whose request
// body is in memory (a small body read whole, or none): the great
// majority of direct calls. It writes the request and reads the answer
// on the caller's goroutine, where net/http's Transport hands each
// request to a connection's write loop and each answer back from its read
// loop: on a small machine those handoffs between goroutines, each a
// wakeup of a parked thread, cost more than the HTTP itself (bench/NOTES.md,
// "Overhead after the lean pool client"). A body that streams (a pipeline
// step's input, a large or chunked client body) still goes through the
// Transport, which writes it while the answer streams back.
//
// Contract, as the Transport's for these requests:
//   - a connection is dialed with dial, whose errors say that nothing was
//     sent (dialError), so forward may try another endpoint;
//   - the request's context bounds the call: when it ends, the connection
//     is closed, which fails the read in progress and tells the pool its
//     caller went away;
//   - a connection is reused only when its answer was read to its end (and
//     the pool did not ask to close it); closing a body before its end
//     closes the connection;
//   - an idle connection that the pool closed is noticed before reuse (a
//     non-blocking peek), so a request is not sent on it; idle connections
//     are closed after idleTimeout, at most maxIdle are kept per address.
type poolClient struct {
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle     int
	idleTimeout time.Duration

	mu     sync.Mutex
	idle   map[string][]*poolConn // per address, most recently used last
	prune  *time.Timer            // set while connections are idle
	closed bool
}

// poolConn is one keep-alive connection to a pool endpoint.
type poolConn struct {
	addr      string
	conn      net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time
}

// roundTrip sends req, whose Body must be nil, http.NoBody or in memory,
// and returns the answer once its headers are read. The caller reads the
// body on its own goroutine and closes it.
func (pc *poolClient) roundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		closeBody(req)
		return nil, err
	}
	cn := pc.get(req.URL.Host)
	if cn == nil {
		c, err := pc.dial(ctx, "tcp", req.URL.Host)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		cn = &poolConn{addr: req.URL.Host, conn: c, br: bufio.NewReader(c), bw: bufio.NewWriter(c)}
	}
	stop := context.AfterFunc(ctx, func() { _ = cn.conn.Close() })
	resp, err := cn.send(req)
	if err != nil {
		stop()
		_ = cn.conn.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("call to %s: %w (%v)", cn.addr, ctx.Err(), err)
		}
		return nil, fmt.Errorf("call to %s: %w", cn.addr, err)
	}
	b := &connBody{pc: pc, cn: cn, body: resp.Body, stop: stop, keep: !resp.Close}
	if resp.Body == http.NoBody {
		b.finish(true)
		return resp, nil
	}
	resp.Body = b
	return resp, nil
}

// closeBody closes a request body the call did not send, as the Transport
// does.
func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// send writes req and reads the answer's headers, skipping informational
// (1xx) answers.
func (cn *poolConn) send(req *http.Request) (*http.Response, error) {
	if err := req.Write(cn.bw); err != nil {
		return nil, fmt.Errorf("write the request: %w", err)
	}
	if err := cn.bw.Flush(); err != nil {
		return nil, fmt.Errorf("write the request: %w", err)
	}
	for {
		resp, err := http.ReadResponse(cn.br, req)
		if err != nil {
			return nil, fmt.Errorf("read the answer: %w", err)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
	}
}

// connBody is an answer's body. Read and Close may come from different
// goroutines (a pipeline's next step reads it in the Transport's write
// loop while the handler closes the chain), so the end of the body, which
// decides the connection's fate, is decided once, under mu. Close does not
// wait for a Read in progress: it closes the connection, which ends it.
type connBody struct {
	pc   *poolClient
	cn   *poolConn
	body io.ReadCloser
	stop func() bool // stops the context's watch; false once it closed the connection
	keep bool        // the pool keeps the connection open

	mu     sync.Mutex
	ended  bool
	closed bool
}

var errBodyClosed = errors.New("read on a closed answer body")

func (b *connBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	ended, closed := b.ended, b.closed
	b.mu.Unlock()
	switch {
	case closed:
		return 0, errBodyClosed
	case ended:
		return 0, io.EOF
	}
	n, err := b.body.Read(p)
	if err != nil {
		b.finish(err == io.EOF)
	}
	return n, err
}

func (b *connBody) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.finish(false)
	return nil
}

// finish ends the body once: read to its end, the connection goes back
// to the idle ones; otherwise it is closed.
func (b *connBody) finish(read bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ended {
		return
	}
	b.ended = true
	if read && b.stop() && b.keep && b.cn.br.Buffered() == 0 {
		b.pc.put(b.cn)
		return
	}
	b.stop()
	_ = b.cn.conn.Close()
}

// get takes the most recently used idle connection to addr that is still
// open, or returns nil.
func (pc *poolClient) get(addr string) *poolConn {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	for {
		conns := pc.idle[addr]
		if len(conns) == 0 {
			return nil
		}
		cn := conns[len(conns)-1]
		conns[len(conns)-1] = nil
		pc.idle[addr] = conns[:len(conns)-1]
		if time.Since(cn.idleSince) < pc.idleTimeout && open(cn.conn) {
			return cn
		}
		_ = cn.conn.Close()
	}
}

// put keeps an idle connection for reuse, or closes it when maxIdle are
// kept already or the client is closed.
func (pc *poolClient) put(cn *poolConn) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.closed || len(pc.idle[cn.addr]) >= pc.maxIdle {
		_ = cn.conn.Close()
		return
	}
	cn.idleSince = time.Now()
	if pc.idle == nil {
		pc.idle = map[string][]*poolConn{}
	}
	pc.idle[cn.addr] = append(pc.idle[cn.addr], cn)
	if pc.prune == nil {
		pc.prune = time.AfterFunc(pc.idleTimeout, pc.closeStale)
	}
}

// closeStale closes the connections idle for idleTimeout, and runs again
// while some remain idle.
func (pc *poolClient) closeStale() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.prune = nil
	if pc.closed {
		return
	}
	now := time.Now()
	next := pc.idleTimeout
	for addr, conns := range pc.idle {
		keep := conns[:0]
		for _, cn := range conns {
			if idle := now.Sub(cn.idleSince); idle >= pc.idleTimeout {
				_ = cn.conn.Close()
			} else {
				keep = append(keep, cn)
				next = min(next, pc.idleTimeout-idle)
			}
		}
		clear(conns[len(keep):])
		if len(keep) == 0 {
			delete(pc.idle, addr)
		} else {
			pc.idle[addr] = keep
		}
	}
	if len(pc.idle) > 0 {
		pc.prune = time.AfterFunc(next, pc.closeStale)
	}
}

// close closes the idle connections; those in use close when their body
// ends.
func (pc *poolClient) close() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.closed = true
	if pc.prune != nil {
		pc.prune.Stop()
		pc.prune = nil
	}
	for _, conns := range pc.idle {
		for _, cn := range conns {
			_ = cn.conn.Close()
		}
	}
	pc.idle = nil
}

// open reports whether an idle connection is still open: a peek that
// does not wait finds nothing to read. End of stream (the pool closed it),
// an error or stray bytes all mean it must not carry a request.
func open(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var buf [1]byte
	err = raw.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK
		return true // never wait for readiness
	})
	return err == nil && alive
}
