package pool_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/plugins/pool"
)

// TestInvokeAnswers checks how the invoke endpoint answers: a small output
// that ends quickly whole, with Content-Length and no trailer; a large
// output streamed with the Butter-Error trailer; a failure after output
// as the output and the trailer, as if it had streamed.
func TestInvokeAnswers(t *testing.T) {
	_, srv := start(t, []pool.FunctionConfig{
		fn("cat", "exec", "cat"),
		fn("partial", "exec", "sh", "-c", "echo partial; exit 3"),
	})
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
	if _, announced := resp.Trailer[pool.HeaderError]; resp.ContentLength != -1 || !announced || resp.Trailer.Get(pool.HeaderError) != "" {
		t.Errorf("large output: Content-Length %d, trailers %v: want streamed, announcing an empty %s trailer",
			resp.ContentLength, resp.Trailer, pool.HeaderError)
	}

	resp, b = post("partial", nil)
	if resp.StatusCode != 200 || string(b) != "partial\n" || !strings.HasPrefix(resp.Trailer.Get(pool.HeaderError), "Exception: ") {
		t.Errorf("failure after output: %d %q, trailer %q: want 200, the output and an Exception trailer",
			resp.StatusCode, b, resp.Trailer.Get(pool.HeaderError))
	}
}

// TestInvokeStreamsSlowOutput checks that output held back for a whole
// answer still reaches the caller while the call runs.
func TestInvokeStreamsSlowOutput(t *testing.T) {
	_, srv := start(t, []pool.FunctionConfig{fn("slow", "exec", "sh", "-c", "echo first; sleep 3; echo second")})
	start := time.Now()
	resp, err := http.Post(srv.URL+"/v1/invoke/slow", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first line: %q, %v", line, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the first line arrived after %s: held back until the call ended", d)
	}
	if _, announced := resp.Trailer[pool.HeaderError]; !announced {
		t.Errorf("trailers %v: a streamed answer announces %s", resp.Trailer, pool.HeaderError)
	}
}

// TestInvokeStreamsSlowOutputs checks the same of calls held back at
// once, which share the pool's hold timer.
func TestInvokeStreamsSlowOutputs(t *testing.T) {
	_, srv := start(t, []pool.FunctionConfig{fn("slow", "exec", "sh", "-c", "echo first; sleep 3; echo second")})
	const calls = 3
	errs := make(chan error, calls)
	for range calls {
		go func() {
			start := time.Now()
			resp, err := http.Post(srv.URL+"/v1/invoke/slow", "text/plain", nil)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			line, err := bufio.NewReader(resp.Body).ReadString('\n')
			switch d := time.Since(start); {
			case err != nil || line != "first\n":
				errs <- fmt.Errorf("first line: %q, %v", line, err)
			case d > 2*time.Second:
				errs <- fmt.Errorf("the first line arrived after %s: held back until the call ended", d)
			default:
				errs <- nil
			}
		}()
	}
	for range calls {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
