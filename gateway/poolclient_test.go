package gateway

import (
	"bytes"
	"context"
	"errors"
	"github.com/butterfn/butter/names"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// connCounter counts the connections a test server accepted and keeps
// them, so that a test can close them from the server's side.
type connCounter struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (c *connCounter) hook(conn net.Conn, s http.ConnState) {
	if s == http.StateNew {
		c.mu.Lock()
		c.conns = append(c.conns, conn)
		c.mu.Unlock()
	}
}

func (c *connCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.conns)
}

func (c *connCounter) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		_ = conn.Close()
	}
}

func testClient(t *testing.T) *poolClient {
	t.Helper()
	d := &net.Dialer{Timeout: time.Second}
	pc := &poolClient{
		dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, &dialError{addr: addr, err: err}
			}
			return c, nil
		},
		maxIdle: 4, idleTimeout: time.Minute,
	}
	t.Cleanup(pc.close)
	return pc
}

func startServer(t *testing.T, h http.Handler) (string, *connCounter) {
	t.Helper()
	cc := &connCounter{}
	s := httptest.NewUnstartedServer(h)
	s.Config.ConnState = cc.hook
	s.Start()
	t.Cleanup(s.Close)
	return s.Listener.Addr().String(), cc
}

func post(t *testing.T, pc *poolClient, ctx context.Context, addr, body string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/invoke/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Body, req.ContentLength = io.NopCloser(strings.NewReader(body)), int64(len(body))
	return pc.roundTrip(req)
}

// TestPoolClientReuse: a connection whose answer was read to its end
// carries the next call; one whose body was closed early does not; one
// the server closed while idle is not used.
func TestPoolClientReuse(t *testing.T) {
	addr, cc := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(w, r.Body)
	}))
	pc := testClient(t)
	for i, body := range []string{"one", "two", "three"} {
		resp, err := post(t, pc, context.Background(), addr, body)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		got, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil || string(got) != body {
			t.Fatalf("call %d: %q, %v; want %q", i, got, err, body)
		}
	}
	if n := cc.count(); n != 1 {
		t.Fatalf("3 calls read to their end took %d connections, want 1", n)
	}

	resp, err := post(t, pc, context.Background(), addr, "closed early")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close() // unread
	resp, err = post(t, pc, context.Background(), addr, "next")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(resp.Body); string(got) != "next" {
		t.Fatalf("after a body closed early: %q", got)
	}
	_ = resp.Body.Close()
	if n := cc.count(); n != 2 {
		t.Fatalf("a body closed unread left its connection in use: %d connections, want 2", n)
	}

	// The server closes every connection, the idle one included.
	cc.closeAll()
	deadline := time.Now().Add(30 * time.Second)
	for pc.idleOpen() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	resp, err = post(t, pc, context.Background(), addr, "after close")
	if err != nil {
		t.Fatalf("a call after the server closed the idle connection failed: %v", err)
	}
	if got, _ := io.ReadAll(resp.Body); string(got) != "after close" {
		t.Fatalf("after the server closed the idle connection: %q", got)
	}
	_ = resp.Body.Close()
	if n := cc.count(); n != 3 {
		t.Fatalf("%d connections, want 3: a new one after the server closed the idle one", n)
	}
}

// idleOpen reports whether an idle connection still looks open: the test
// waits for the server's close to reach it.
func (pc *poolClient) idleOpen() bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	for _, conns := range pc.idle {
		for _, cn := range conns {
			if open(cn.conn) {
				return true
			}
		}
	}
	return false
}

// TestPoolClientStreamAndTrailer: a streamed answer arrives as it is
// written, with its trailer, and the connection is reused after it.
func TestPoolClientStreamAndTrailer(t *testing.T) {
	next := make(chan struct{})
	addr, cc := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", names.HeaderError)
		_, _ = w.Write([]byte("first "))
		w.(http.Flusher).Flush()
		<-next
		_, _ = w.Write([]byte("second"))
		w.Header().Set(names.HeaderError, "Exception: it broke")
	}))
	pc := testClient(t)
	resp, err := post(t, pc, context.Background(), addr, "in")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first " {
		t.Fatalf("first chunk: %q, %v", buf, err)
	}
	close(next) // the rest is written only once the first chunk was read
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "second" {
		t.Fatalf("rest: %q, %v", rest, err)
	}
	if got := resp.Trailer.Get(names.HeaderError); got != "Exception: it broke" {
		t.Fatalf("trailer %q", got)
	}
	_ = resp.Body.Close()
	resp, err = post(t, pc, context.Background(), addr, "again")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if n := cc.count(); n != 1 {
		t.Fatalf("%d connections, want 1: a streamed answer read to its end frees its connection", n)
	}
}

// TestPoolClientCancel: ending the context closes the connection, both
// while waiting for the answer and while reading it; the server sees its
// caller gone.
func TestPoolClientCancel(t *testing.T) {
	gone := make(chan string, 2)
	started := make(chan struct{}, 2)
	addr, _ := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body) // the server watches its caller once the body is read
		started <- struct{}{}
		if r.URL.Query().Get("stream") != "" {
			_, _ = w.Write([]byte("started"))
			w.(http.Flusher).Flush()
		}
		<-r.Context().Done()
		gone <- r.URL.RawQuery
	}))
	pc := testClient(t)
	for _, q := range []string{"", "stream=1"} {
		ctx, cancel := context.WithCancel(context.Background())
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/?"+q, bytes.NewReader([]byte("in")))
		if err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() {
			resp, err := pc.roundTrip(req)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				_ = resp.Body.Close()
			}
			errc <- err
		}()
		select {
		case err := <-errc:
			t.Fatalf("%q: the call ended before it was cancelled: %v", q, err)
		case <-started:
		case <-time.After(30 * time.Second):
			t.Fatalf("%q: the server did not get the call within 30s", q)
		}
		cancel()
		select {
		case err := <-errc:
			if err == nil {
				t.Fatalf("%q: a cancelled call succeeded", q)
			}
			if q == "" && !errors.Is(err, context.Canceled) {
				t.Errorf("%q: %v, want context.Canceled", q, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%q: the call did not end within 30s of its cancel", q)
		}
		select {
		case got := <-gone:
			if got != q {
				t.Errorf("the server saw %q gone, want %q", got, q)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%q: the server did not see its caller gone within 30s", q)
		}
	}
}

// TestPoolClientDialError: a refused connection is a dialError, which
// forward retries on another endpoint.
func TestPoolClientDialError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	_, err = post(t, testClient(t), context.Background(), addr, "in")
	if !isDialError(err) {
		t.Fatalf("%v: want a dial error", err)
	}
}
