package pool_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/internal/testlog"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/pipeline"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/sdk"
	"github.com/butterfn/butter/sdk/go/proto"
	"github.com/hashicorp/go-hclog"
)

// entries returns the JSON log entries whose request_id is id.
func logEntries(t *testing.T, b *testlog.Buffer, id string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			continue // a line some writer printed without hclog
		}
		if e["request_id"] == id {
			out = append(out, e)
		}
	}
	return out
}

// TestErrorAnswers: a failed call answers its caller with the error's
// type, a short message of one line that names no file of the server,
// and the request id; the detail (a Python traceback, a Node stack, the
// output of a worker that could not start) goes to the pool's log, in an
// entry carrying that request id. Real Python and Node workers, and an
// exec function that fails after its output started (the Butter-Error
// trailer).
func TestErrorAnswers(t *testing.T) {
	bundle, _ := filepath.Abs(filepath.Join("testdata", "errfn"))
	broken, _ := filepath.Abs(filepath.Join("testdata", "brokenfn"))
	sdks, err := sdk.Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	logs := &testlog.Buffer{}
	logger := hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug, JSONFormat: true})
	fns := []pool.FunctionConfig{
		testdataFn("pyerr", "python", "errfn", "main.handle"),
		testdataFn("nodeerr", "node", "errfn", "index.handle"),
		testdataFn("pybroken", "python", "brokenfn", "main.handle"),
		fn("partial", "exec", "sh", "-c", `echo partial; printf 'Traceback (most recent call last):\n  File "%s/secret.py", line 1\nValueError: broken\n' "$PWD" >&2; exit 3`),
	}
	fns[3].Bundle = bundle
	p, err := pool.New(&pool.Config{Project: "errs", Pool: "p", Functions: fns}, nil, pool.WithSDKs(sdks), pool.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// pybroken cannot load: the pool's preflight says so, and serves the
	// others.
	var le *pool.LoadError
	if err := p.Start(ctx); !errors.As(err, &le) || strings.Join(le.Names(), ",") != "pybroken" {
		t.Fatalf("Start: %v, want a LoadError naming pybroken alone", err)
	}
	pool.SetOutputHold(p, time.Hour) // "partial" answers whole: the trailer case is the held output's
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(func() {
		srv.Close()
		p.Close()
	})

	cases := []struct {
		name, function, input string
		code                  int
		typ                   string
		message               string   // what the message holds, when set
		detail                []string // what the log entry holds
	}{
		{"python exception naming a file", "pyerr", "file", 500, "Exception", "missing.json", []string{"Traceback (most recent call last)", bundle, "FileNotFoundError"}},
		{"python exception of two lines", "pyerr", "lines", 500, "Exception", "first line", []string{"Traceback (most recent call last)", "second line"}},
		{"node error naming a file", "nodeerr", "file", 500, "Exception", "missing.json", []string{"ENOENT", "    at ", bundle}},
		{"node error of two lines", "nodeerr", "lines", 500, "Exception", "first line", []string{"    at ", "second line"}},
		{"python handler that cannot load", "pybroken", "x", 503, pool.Unavailable, "pybroken", []string{"Traceback (most recent call last)", "butter_no_such_module", broken}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := "req-" + c.function + "-" + string(rune('a'+i))
			req, _ := http.NewRequest("POST", srv.URL+"/v1/invoke/"+c.function, strings.NewReader(c.input))
			req.Header.Set("X-Request-Id", id)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var body struct {
				Error     struct{ Type, Message string }
				RequestID string `json:"request_id"`
			}
			if err := json.Unmarshal(b, &body); err != nil || resp.StatusCode != c.code {
				t.Fatalf("%d %s: want %d and a JSON error (%v)", resp.StatusCode, b, c.code, err)
			}
			checkPublic(t, string(b), body.Error.Message, bundle, broken)
			if body.Error.Type != c.typ || body.RequestID != id || resp.Header.Get("X-Request-Id") != id {
				t.Errorf("type %q, request id %q (header %q): want %s and %s", body.Error.Type, body.RequestID, resp.Header.Get("X-Request-Id"), c.typ, id)
			}
			if !strings.Contains(body.Error.Message, c.message) {
				t.Errorf("message %q: want it to say %q", body.Error.Message, c.message)
			}
			entries := logEntries(t, logs, id)
			if len(entries) == 0 {
				t.Fatalf("no log entry with request_id %s:\n%s", id, logs.String())
			}
			all, _ := json.Marshal(entries)
			logged := strings.NewReplacer(`\n`, "\n", `\"`, `"`).Replace(string(all))
			for _, want := range c.detail {
				if !strings.Contains(logged, want) {
					t.Errorf("the log entries of %s lack %q:\n%s", id, want, logged)
				}
			}
		})
	}

	t.Run("trailer after output", func(t *testing.T) {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/invoke/partial", nil)
		req.Header.Set("X-Request-Id", "req-partial")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr := resp.Trailer.Get(names.HeaderError)
		if resp.StatusCode != 200 || string(b) != "partial\n" || !strings.HasPrefix(tr, "Exception: ") {
			t.Fatalf("%d %q, trailer %q: want 200, the output and an Exception trailer", resp.StatusCode, b, tr)
		}
		checkPublic(t, tr, strings.TrimPrefix(tr, "Exception: "), bundle, broken)
		if !strings.HasSuffix(tr, "exit status 3: ValueError: broken") {
			t.Errorf("trailer %q: want the exit and the last line of stderr", tr)
		}
		all, _ := json.Marshal(logEntries(t, logs, "req-partial"))
		if logged := strings.NewReplacer(`\n`, "\n", `\"`, `"`).Replace(string(all)); !strings.Contains(logged, `File "`+bundle+`/secret.py"`) {
			t.Errorf("no log entry of req-partial with the command's stderr:\n%s", logged)
		}
	})

	t.Run("request id made by the pool", func(t *testing.T) {
		resp, err := http.Post(srv.URL+"/v1/invoke/pyerr", "text/plain", strings.NewReader("lines"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var body struct {
			RequestID string `json:"request_id"`
		}
		_ = json.Unmarshal(b, &body)
		if body.RequestID == "" || resp.Header.Get("X-Request-Id") != body.RequestID || len(logEntries(t, logs, body.RequestID)) == 0 {
			t.Errorf("%s, header %q: want the request id the pool made, in the body, the header and the log", b, resp.Header.Get("X-Request-Id"))
		}
	})
}

// checkPublic fails when what a caller got leaks the server's internals.
func checkPublic(t *testing.T, answer, message string, dirs ...string) {
	t.Helper()
	for _, bad := range append([]string{"Traceback", "    at ", "File \""}, dirs...) {
		if strings.Contains(answer, bad) {
			t.Errorf("the caller's answer holds %q: %s", bad, answer)
		}
	}
	if strings.ContainsAny(message, "\r\n") || len(message) > pool.MaxErrorMessage || message == "" {
		t.Errorf("message %q: want one line of 1 to %d bytes", message, pool.MaxErrorMessage)
	}
}

// TestPublicMessage: what a caller is told of an error message.
func TestPublicMessage(t *testing.T) {
	tmp := t.TempDir() // a path whose first element exists here
	long := strings.Repeat("é", pool.MaxErrorMessage)
	for _, c := range []struct{ in, want string }{
		{"boom", "boom"},
		{"  first line\n  File \"/srv/x.py\", line 3\n", "first line"},
		{"open '" + tmp + "/data.json' failed", "open '.../data.json' failed"},
		{"cannot read " + tmp + "/dir/", "cannot read .../dir"},
		{"two: " + tmp + "/a.txt and (" + tmp + "/b.txt)", "two: .../a.txt and (.../b.txt)"},
		{`at C:\srv\app\main.py`, "at .../main.py"},
		{"GET /v1/items/42 is not a route here", "GET /v1/items/42 is not a route here"},
		{"fetch http://example.com" + tmp + "/x failed", "fetch http://example.com" + tmp + "/x failed"},
		{"a\x1b[31mred\x00", "a [31mred"},
		{long, long[:pool.MaxErrorMessage-4] + "..."}, // "é" is 2 bytes: the cut keeps whole runes
	} {
		if got := pool.PublicMessage(c.in); got != c.want {
			t.Errorf("%q:\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

// TestStreamErrors: a queued request to a Python handler that raises gets
// the short message, as an HTTP caller does; the dead letter, which
// operators read, keeps the whole message and the traceback.
func TestStreamErrors(t *testing.T) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "se.in", Partitions: 1})
	sdks, err := sdk.Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	bundle, _ := filepath.Abs(filepath.Join("testdata", "errfn"))
	f := testdataFn("pyerr", "python", "errfn", "main.handle")
	f.Streams = []pool.StreamTrigger{{Stream: "se.in", Group: "butter.test.pyerr.se.in", Offset: "first"}}
	f.Retry = &pool.RetryConfig{Attempts: 1}
	p, err := pool.New(&pool.Config{Project: "se", Pool: "p", Functions: []pool.FunctionConfig{f}}, nil, pool.WithSDKs(sdks))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if err := p.StartStreams(ctx, dev.Config()); err != nil {
		t.Fatal(err)
	}
	req, err := broker.NewRequester(ctx, dev.Config(), "se.replies.test")
	if err != nil {
		t.Fatal(err)
	}
	defer req.Close()
	_, err = req.Call(ctx, "se.in", nil, []byte("file"), time.Now().Add(time.Minute))
	var pe *proto.Error
	if !errors.As(err, &pe) || pe.Type != proto.Exception || !strings.Contains(pe.Message, ".../missing.json") {
		t.Fatalf("queued call: %v; want an Exception naming .../missing.json", err)
	}
	checkPublic(t, pe.Message, pe.Message, bundle)
	dl := readAll(t, dev.Addr, "se.in.dlq", 1)[0]
	if msg := broker.Header(dl, broker.HeaderErrorMessage); !strings.Contains(msg, "Traceback (most recent call last)") || !strings.Contains(msg, bundle+"/missing.json") {
		t.Errorf("dead letter message %q: want the whole message and the traceback", msg)
	}
}

// TestPipelineErrorDetail: a local pipeline (butter invoke -local) has no
// request id to log a failure with: the traceback of a Python step goes
// to that function's log, where the worker's stderr goes, and the error
// returned keeps the one-line message.
func TestPipelineErrorDetail(t *testing.T) {
	sdks, err := sdk.Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	logs := &testlog.Buffer{}
	p, err := pool.New(&pool.Config{Project: "pe", Pool: "p", Functions: []pool.FunctionConfig{testdataFn("pyerr", "python", "errfn", "main.handle")}},
		func(string) io.Writer { return logs }, pool.WithSDKs(sdks))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	steps, err := pipeline.Parse("pyerr")
	if err != nil {
		t.Fatal(err)
	}
	err = p.RunPipeline(ctx, steps, strings.NewReader("lines"), io.Discard)
	if err == nil || !strings.HasSuffix(err.Error(), "Exception: first line\nsecond line") {
		t.Fatalf("RunPipeline = %v, want step 1's Exception", err)
	}
	if l := logs.String(); !strings.Contains(l, "Traceback (most recent call last)") || !strings.Contains(l, "RuntimeError: first line\nsecond line") {
		t.Errorf("the function's log lacks the traceback:\n%s", l)
	}
}
