package pool_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/butterfn/butter/names"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/plugins/pool"
)

// TestInvokeAnswers checks how the invoke endpoint answers: a small output
// of a call that ends within the hold window whole, with Content-Length
// and no trailer; a large output streamed with the Butter-Error trailer; a
// failure after output as the output and the trailer, as if it had
// streamed. The window is an hour here, so that a busy machine, on which
// cat may take longer than the 2ms default, cannot turn the first case into
// the streamed one (TestInvokeStreamsSlowOutput checks that branch).
func TestInvokeAnswers(t *testing.T) {
	p, srv := start(t, []pool.FunctionConfig{
		fn("cat", "exec", "cat"),
		fn("partial", "exec", "sh", "-c", "echo partial; exit 3"),
	})
	pool.SetOutputHold(p, time.Hour)
	post := func(function string, body []byte) (*http.Response, []byte) {
		t.Helper()
		resp, err := http.Post(srv.URL+"/v1/invoke/"+function, "text/plain", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("invoke %s: %v", function, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("invoke %s: read: %v", function, err)
		}
		return resp, b
	}

	resp, b := post("cat", []byte("hello, butter"))
	if resp.StatusCode != 200 || string(b) != "hello, butter" {
		t.Fatalf("small output: %d %q", resp.StatusCode, b)
	}
	if resp.ContentLength != int64(len("hello, butter")) || len(resp.TransferEncoding) != 0 || len(resp.Trailer) != 0 {
		t.Errorf("small output: Content-Length %d, Transfer-Encoding %v, trailers %v: want whole, with Content-Length and no trailer",
			resp.ContentLength, resp.TransferEncoding, resp.Trailer)
	}

	large := bytes.Repeat([]byte("butter "), (256<<10)/7)
	resp, b = post("cat", large)
	if resp.StatusCode != 200 || !bytes.Equal(b, large) {
		t.Fatalf("large output: %d, %d bytes, want %d", resp.StatusCode, len(b), len(large))
	}
	if _, announced := resp.Trailer[names.HeaderError]; resp.ContentLength != -1 || !announced || resp.Trailer.Get(names.HeaderError) != "" {
		t.Errorf("large output: Content-Length %d, trailers %v: want streamed, announcing an empty %s trailer",
			resp.ContentLength, resp.Trailer, names.HeaderError)
	}

	resp, b = post("partial", nil)
	if resp.StatusCode != 200 || string(b) != "partial\n" || !strings.HasPrefix(resp.Trailer.Get(names.HeaderError), "Exception: ") {
		t.Errorf("failure after output: %d %q, trailer %q: want 200, the output and an Exception trailer",
			resp.StatusCode, b, resp.Trailer.Get(names.HeaderError))
	}
}

// slowOutput is a call to a function that writes its first line, then
// waits for a line of input before it writes the second and ends: the
// call cannot end before the test sends that line, so the first line
// reaches the caller only if the pool stops holding it back while the
// call runs.
type slowOutput struct {
	resp *http.Response
	in   *io.PipeWriter
	out  *bufio.Reader
}

// slowFn is the function slowOutput calls.
func slowFn() pool.FunctionConfig {
	f := fn("slow", "exec", "sh", "-c", "echo first; read line; echo second")
	f.Timeout = "5m"
	return f
}

// firstLineWait bounds the wait for the first line: far longer than a
// busy machine needs, and the line never comes if it is held back until
// the call ends.
const firstLineWait = time.Minute

// callSlow starts a call of slowFn and reads its first line, failing the
// test if the line has not come after a minute (it would come only at
// the end of the call if held back).
func callSlow(t *testing.T, srv *httptest.Server) (*slowOutput, error) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	// The transport waits for the body's writer on a cancel: break the
	// body off too.
	timer := time.AfterFunc(firstLineWait, func() { cancel(); _ = pw.CloseWithError(errors.New("no first line in time")) })
	t.Cleanup(func() { timer.Stop(); cancel(); _ = pw.Close() })
	req, err := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/invoke/slow", pr)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("no answer while the call runs (the output held back until it ends?): %w", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	s := &slowOutput{resp: resp, in: pw, out: bufio.NewReader(resp.Body)}
	line, err := s.out.ReadString('\n')
	if err != nil || line != "first\n" {
		return nil, fmt.Errorf("first line while the call runs: %q, %v (the output held back until it ends?)", line, err)
	}
	timer.Stop()
	return s, nil
}

// finish lets the call end and checks the rest of its answer: streamed,
// with an empty Butter-Error trailer.
func (s *slowOutput) finish() error {
	if _, err := io.WriteString(s.in, "go on\n"); err != nil {
		return err
	}
	_ = s.in.Close()
	rest, err := io.ReadAll(s.out)
	if err != nil || string(rest) != "second\n" {
		return fmt.Errorf("the rest: %q, %v", rest, err)
	}
	if _, announced := s.resp.Trailer[names.HeaderError]; s.resp.ContentLength != -1 || !announced || s.resp.Trailer.Get(names.HeaderError) != "" {
		return fmt.Errorf("Content-Length %d, trailers %v: a streamed answer announces an empty %s trailer",
			s.resp.ContentLength, s.resp.Trailer, names.HeaderError)
	}
	return nil
}

// TestInvokeStreamsSlowOutput checks that output held back for a whole
// answer still reaches the caller while the call runs, and is then
// answered streamed, with the trailer: the branch of a small output that
// is not complete within the hold window (the default window).
func TestInvokeStreamsSlowOutput(t *testing.T) {
	_, srv := start(t, []pool.FunctionConfig{slowFn()})
	s, err := callSlow(t, srv)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.finish(); err != nil {
		t.Error(err)
	}
}

// TestInvokeStreamsSlowOutputs checks the same of calls held back at
// once, which share the pool's hold timer.
func TestInvokeStreamsSlowOutputs(t *testing.T) {
	_, srv := start(t, []pool.FunctionConfig{slowFn()})
	const calls = 3
	var mu sync.Mutex
	var running []*slowOutput
	errs := make(chan error, calls)
	for range calls {
		go func() {
			s, err := callSlow(t, srv)
			if err == nil {
				mu.Lock()
				running = append(running, s)
				mu.Unlock()
			}
			errs <- err
		}()
	}
	for range calls {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	// Every first line came while all the calls ran: none can end before
	// finish.
	for _, s := range running {
		if err := s.finish(); err != nil {
			t.Error(err)
		}
	}
}
