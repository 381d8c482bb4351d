package pool_test

import (
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/internal/testlog"
	"github.com/butterfn/butter/plugins/pool"
)

// TestStreamingHandlers passes a 1 GiB body through a streaming echo in
// each SDK (Node butter.stream, Python @butter.stream, Go
// butter.ServeStream), real workers behind the pool's HTTP endpoint: the
// answer is the input byte for byte (by SHA-256), streamed with the
// header the handler set, and the worker's peak RSS, which it logs, stays
// bounded (printed; far below the body). Each handler makes a context
// call 300 ms in, before it reads, while its input backs up past the
// worker's limit: its REPLY gets through (else the call would hang). A
// stream that fails after some output ends with the error in the
// Butter-Error trailer.
func TestStreamingHandlers(t *testing.T) {
	logs := &testlog.Buffer{}
	fns := []pool.FunctionConfig{
		testdataFn("snode", "node", "streamfn", "index.handle"),
		testdataFn("spython", "python", "streamfn", "main.handle"),
		testdataFn("sgo", "go", "streamgo", ""),
	}
	for i := range fns {
		fns[i].Timeout = "5m"
	}
	srv := javaPool(t, nil, logs, fns...)
	const size = 1 << 30
	// The workers' peaks (VmHWM) were 86-88 MiB for Node, 18 for Python
	// and 14-15 for Go here, with and without -race; the bound is an
	// eighth of the body. (An earlier version read getrusage's maxrss,
	// which counts the parent's RSS at the fork: it reported the test
	// process's 600 MiB under -race.)
	const limit = 128 << 10 // KiB
	for _, f := range fns {
		rt := strings.TrimPrefix(f.Name, "s")
		t.Run(rt, func(t *testing.T) {
			src := rand.New(rand.NewPCG(1, 2))
			in := sha256.New()
			body := io.TeeReader(io.LimitReader(randReader{src}, size), in)
			req, _ := http.NewRequest("POST", srv.URL+"/v1/invoke/"+f.Name, body)
			req.ContentLength = size
			start := time.Now()
			resp, err := (&http.Client{Timeout: 5 * time.Minute}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			out := sha256.New()
			n, err := io.Copy(out, resp.Body)
			resp.Body.Close()
			took := time.Since(start)
			if err != nil || resp.StatusCode != 200 || n != size {
				t.Fatalf("answer: %d, %d bytes, %v", resp.StatusCode, n, err)
			}
			if fmt.Sprintf("%x", out.Sum(nil)) != fmt.Sprintf("%x", in.Sum(nil)) {
				t.Fatal("the answer is not the input")
			}
			if h := resp.Header.Get("X-Streamed"); h != rt {
				t.Errorf("X-Streamed: %q, want %q", h, rt)
			}
			re := regexp.MustCompile(rt + ` stream maxrss_kib=(\d+)`)
			var m []string
			for end := time.Now().Add(10 * time.Second); m == nil; {
				if m = re.FindStringSubmatch(logs.String()); m == nil && time.Now().After(end) {
					t.Fatalf("no peak RSS logged by the %s worker", rt)
				}
				time.Sleep(20 * time.Millisecond)
			}
			kib, _ := strconv.Atoi(m[1])
			t.Logf("%s: 1 GiB through a streaming echo in %s (%.0f MiB/s); the worker's peak RSS %d MiB", rt, took.Round(time.Millisecond), float64(size)/(1<<20)/took.Seconds(), kib>>10)
			if kib > limit {
				t.Errorf("the %s worker's peak RSS is %d MiB, over %d MiB: the body was not streamed", rt, kib>>10, limit>>10)
			}

			// A failure after some output: the trailer says so.
			a := invoke(t, srv, f.Name, strings.NewReader("fail and more"), nil)
			if !strings.Contains(a.body+a.trailer, rt+" stream refuses fail") {
				t.Errorf("a failing stream: %+v, want the error after the partial output", a)
			}
		})
	}
}

// randReader reads pseudo-random bytes.
type randReader struct{ r *rand.Rand }

func (r randReader) Read(p []byte) (int, error) {
	for i := 0; i+8 <= len(p); i += 8 {
		v := r.r.Uint64()
		for j := range 8 {
			p[i+j] = byte(v >> (8 * j))
		}
	}
	for i := len(p) &^ 7; i < len(p); i++ {
		p[i] = byte(r.r.Uint32())
	}
	return len(p), nil
}
