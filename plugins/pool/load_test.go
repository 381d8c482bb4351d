package pool_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/sdk"
)

// pyBundle writes a Python handler module main.py into a new directory.
func pyBundle(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.py"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// importsMissing is a handler whose module imports one that is not
// installed, as a user adding `import humanize` without installing it.
const importsMissing = "import humanize\n\ndef handle(data, ctx):\n    return humanize.naturalsize(len(data))\n"

func health(t *testing.T, srv *httptest.Server) (int, string) {
	t.Helper()
	resp, err := http.Get(srv.URL + "/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestFunctionThatCannotStartFailsAlone (issue 22 items 2 and 12): a pool
// whose functions include one with a handler that cannot be imported,
// one whose command is missing and one of a runtime the pool lacks (all
// with min = 0) starts, names those three in Start's error, its health
// check and its butter_function_failed gauge, answers their calls with a
// 503 Unavailable that names the cause in one line (no traceback, no
// server path), and serves its other function.
func TestFunctionThatCannotStartFailsAlone(t *testing.T) {
	sdks, err := sdk.Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	broken := fn("broken", "python")
	broken.Bundle, broken.Handler = pyBundle(t, importsMissing), "main.handle"
	// A wasm function whose module is not WebAssembly.
	notWasm := fn("wasm", "wasm")
	notWasm.Bundle, notWasm.Handler = t.TempDir(), "fn.wasm"
	if err := os.WriteFile(filepath.Join(notWasm.Bundle, "fn.wasm"), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fns := []pool.FunctionConfig{fn("cat", "exec", "cat"), broken, fn("nobinary", "exec", "no-such-command-for-butter"), notWasm}
	p, err := pool.New(&pool.Config{Project: "test", Pool: "p", Functions: fns}, nil, pool.WithSDKs(sdks))
	if err != nil {
		t.Fatalf("one function's failure failed the whole pool: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err = p.Start(ctx)
	srv := httptest.NewServer(p.Handler())
	defer func() { srv.Close(); p.Close() }()

	var le *pool.LoadError
	if !errors.As(err, &le) {
		t.Fatalf("Start error = %v, want a *pool.LoadError", err)
	}
	if got, want := le.Names(), []string{"broken", "nobinary", "wasm"}; !reflect.DeepEqual(got, want) {
		t.Errorf("failed functions %v, want %v", got, want)
	}
	if e := le.Functions["broken"]; e == nil || !strings.Contains(e.Error(), "No module named 'humanize'") {
		t.Errorf("broken's error %v lacks the worker's import error", e)
	}

	if a := invoke(t, srv, "cat", strings.NewReader("still serving"), nil); a.code != 200 || a.body != "still serving" {
		t.Errorf("the neighbour: %+v, want 200 still serving", a)
	}
	for name, cause := range map[string]string{
		"broken":   "ModuleNotFoundError: No module named 'humanize'",
		"nobinary": "no-such-command-for-butter",
		"wasm":     "fn.wasm is not a WebAssembly binary module",
	} {
		// Twice: the first call may start the function again and fail;
		// the next, soon after, is answered from that failure.
		for range 2 {
			a := invoke(t, srv, name, strings.NewReader("x"), nil)
			if a.code != http.StatusServiceUnavailable || a.errType != pool.Unavailable || !strings.Contains(a.body, cause) {
				t.Errorf("%s: %d %s %s, want 503 Unavailable naming %q", name, a.code, a.errType, a.body, cause)
			}
			if strings.Contains(a.body, "Traceback") || strings.Contains(a.body, broken.Bundle) {
				t.Errorf("%s: the caller got the worker's traceback or a server path: %s", name, a.body)
			}
		}
	}

	code, body := health(t, srv)
	if code != http.StatusServiceUnavailable {
		t.Errorf("health %d %s, want 503", code, body)
	}
	for _, name := range []string{"broken", "nobinary", "wasm"} {
		if !strings.Contains(body, `"`+name+`"`) {
			t.Errorf("health does not name %s: %s", name, body)
		}
		if v := metric(t, srv, "butter_function_failed", name); v != 1 {
			t.Errorf("butter_function_failed{function=%q} = %v, want 1", name, v)
		}
	}
	if strings.Contains(body, `"cat"`) {
		t.Errorf("health names the healthy function: %s", body)
	}
	if !strings.Contains(body, "ModuleNotFoundError: No module named 'humanize'") || strings.Contains(body, "Traceback") {
		t.Errorf("health should give broken's cause in one line, without the traceback (Nomad truncates a check's output): %s", body)
	}
}

// TestFailedFunctionHeals: a function with min = 0 that failed its
// preflight is retried; once its cause is gone (the missing module
// appears) it starts, the pool turns healthy and its calls answer.
func TestFailedFunctionHeals(t *testing.T) {
	sdks, err := sdk.Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	broken := fn("broken", "python")
	broken.Bundle, broken.Handler = pyBundle(t, importsMissing), "main.handle"
	broken.Env = map[string]string{"PYTHONDONTWRITEBYTECODE": "1"}
	p, err := pool.New(&pool.Config{Project: "test", Pool: "p", Functions: []pool.FunctionConfig{broken}}, nil, pool.WithSDKs(sdks), pool.WithIdleTimeout(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := p.Start(ctx); err == nil {
		t.Fatal("Start of a handler that cannot import succeeded")
	}
	srv := httptest.NewServer(p.Handler())
	defer func() { srv.Close(); p.Close() }()
	if code, body := health(t, srv); code != http.StatusServiceUnavailable || !strings.Contains(body, "no instance could start") {
		t.Fatalf("health %d %s, want 503: no instance could start", code, body)
	}
	if err := os.WriteFile(filepath.Join(broken.Bundle, "humanize.py"), []byte("def naturalsize(n):\n    return f'{n} Bytes'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "healthy once the module exists", func() bool { c, _ := health(t, srv); return c == 200 || c == 203 }) // 203: healthy with warnings
	if v := metric(t, srv, "butter_function_failed", "broken"); v != 0 {
		t.Errorf("butter_function_failed = %v after the function started, want 0", v)
	}
	if a := invoke(t, srv, "broken", strings.NewReader("four"), nil); a.code != 200 || a.body != "4 Bytes" {
		t.Errorf("after the fix: %+v, want 200 4 Bytes", a)
	}
}

// TestSummary: a caller gets the exception a worker's load error names,
// not the traceback or the server's paths, for Python and Node alike.
func TestSummary(t *testing.T) {
	for _, c := range []struct{ err, want string }{
		{"start python worker for hello: exit status 1: butter worker: cannot load handler \"main.handle\" from /srv/app/hello:\n" +
			"Traceback (most recent call last):\n  File \"/srv/app/hello/main.py\", line 1, in <module>\n    import humanize\n" +
			"ModuleNotFoundError: No module named 'humanize'\n",
			"ModuleNotFoundError: No module named 'humanize'"},
		{"start node worker for n: EOF: butter worker: cannot load handler \"index.handle\" from /srv/app/n: Error: Cannot find module 'left-pad'\n" +
			"Require stack:\n- /srv/app/n/index.js\n- /srv/sdk/node/worker.js\n    at Module._resolveFilename (node:internal/modules/cjs/loader:1207:15)\n",
			"Error: Cannot find module 'left-pad'"},
		{`start http function h: exec: "no-such-server": executable file not found in $PATH`,
			`start http function h: exec: "no-such-server": executable file not found in $PATH`},
	} {
		if got := pool.Summary(errors.New(c.err)); got != c.want {
			t.Errorf("Summary(%q)\n = %q\nwant %q", c.err, got, c.want)
		}
	}
}
