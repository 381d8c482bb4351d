package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/gateway"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/sdk"
)

// The HTTP function contract (docs/gateway.md, "The HTTP contract"):
// these tests run real Go, Node and Python workers in a real pool behind
// the real gateway.

// startSDKPool starts a pool of project "test" with the language SDKs
// installed, hosting fns, and returns its address.
func startSDKPool(t *testing.T, fns ...pool.FunctionConfig) string {
	t.Helper()
	sdks, err := sdk.Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p, err := pool.New(&pool.Config{Project: "test", Pool: "default", Functions: fns}, nil, pool.WithSDKs(sdks))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		p.Close()
		t.Fatal(err)
	}
	addr := httptestServer(t, p.Handler())
	t.Cleanup(p.Close)
	return addr
}

// contractFns are the contract functions of gateway/testdata/contract in
// the three SDKs, named by runtime.
func contractFns(t *testing.T) []pool.FunctionConfig {
	t.Helper()
	dir, _ := filepath.Abs("testdata/contract")
	mk := func(rt, sub, handler string) pool.FunctionConfig {
		return pool.FunctionConfig{Name: rt, Runtime: rt, Bundle: filepath.Join(dir, sub), Handler: handler,
			Timeout: "1m", MaxInstances: 2, Concurrency: 4, Env: map[string]string{"PYTHONDONTWRITEBYTECODE": "1"}}
	}
	return []pool.FunctionConfig{mk("node", "node", "index.handle"), mk("python", "python", "main.handle"), mk("go", "go", "")}
}

// TestHTTPContract: in each SDK, a function sees the whole request (method,
// path, route pattern, path and query parameters, raw and parsed query,
// headers without the hop-by-hop ones and the credentials, remote address,
// request id, traceparent) and answers with the status and headers it set:
// 201 with Location and a header of two values; nothing set answers 200;
// a typed error keeps its status (422), whatever the handler set.
func TestHTTPContract(t *testing.T) {
	addr := startSDKPool(t, contractFns(t)...)
	var routes []gateway.Route
	for _, rt := range []string{"node", "python", "go"} {
		routes = append(routes,
			gateway.Route{Method: "PUT", Path: "/" + rt + "/things/{id}", Project: "test", Function: rt},
			gateway.Route{Method: "POST", Path: "/" + rt + "/items", Project: "test", Pipeline: []string{rt + " mode=create"}},
			gateway.Route{Method: "POST", Path: "/" + rt + "/refuse", Project: "test", Pipeline: []string{rt + " mode=refuse"}},
		)
	}
	_, url := startGateway(t, resolverFor(addr), routes)
	trace := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, rt := range []string{"node", "python", "go"} {
		t.Run(rt, func(t *testing.T) {
			a := call(t, "PUT", url+"/"+rt+"/things/t1?color=red&size=1&size=2", strings.NewReader("the body"), map[string]string{
				"X-Custom": "v1", "Authorization": "Bearer secret", "Connection": "X-Hop", "X-Hop": "dropped",
				"traceparent": trace, "X-Request-Id": "req-" + rt})
			if a.code != 200 {
				t.Fatalf("request echo: %d %s", a.code, a.body)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(a.body), &got); err != nil {
				t.Fatalf("request echo %q: %v", a.body, err)
			}
			want := map[string]any{
				"method": "PUT", "path": "/" + rt + "/things/t1", "route": "PUT /" + rt + "/things/{id}",
				"params":   map[string]any{"id": "t1", "color": "red", "size": "1"},
				"rawQuery": "color=red&size=1&size=2",
				"query":    map[string]any{"color": []any{"red"}, "size": []any{"1", "2"}},
				"custom":   "v1", "hop": nil, "auth": nil,
				"requestId": "req-" + rt, "traceparent": trace, "body": "the body",
			}
			remote, _ := got["remote"].(string)
			delete(got, "remote")
			if !reflect.DeepEqual(got, want) {
				t.Errorf("the request as the function sees it:\n got  %v\n want %v", got, want)
			}
			if !strings.HasPrefix(remote, "127.0.0.1:") {
				t.Errorf("remote address %q, want the client's 127.0.0.1:port", remote)
			}
			if a.header.Get("Butter-Status") != "" {
				t.Errorf("Butter-Status reached the client: %v", a.header)
			}

			a = post(t, url+"/"+rt+"/items", `{"name":"pear"}`, map[string]string{"Content-Type": "application/json"})
			if a.code != 201 || a.header.Get("Location") != "/items/pear" || strings.ReplaceAll(a.body, " ", "") != `{"created":"pear"}` {
				t.Errorf("create: %d Location %q body %q, want 201 /items/pear {\"created\":\"pear\"}", a.code, a.header.Get("Location"), a.body)
			}
			if got := a.header.Values("X-Multi"); !reflect.DeepEqual(got, []string{"a", "b"}) {
				t.Errorf("create: X-Multi %q, want two values a and b", got)
			}
			if ct := a.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("create: Content-Type %q, want the handler's application/json", ct)
			}

			a = post(t, url+"/"+rt+"/refuse", "x", nil)
			if a.code != 422 || a.err.Type != "PreconditionFailed" {
				t.Errorf("typed error: %d %s, want 422 PreconditionFailed", a.code, a.body)
			}
		})
	}
}

// TestHTTPContractNotHTTP: an event that did not come from HTTP (an
// ad-hoc pipeline through Gateway.Invoke) has no request.
func TestHTTPContractNotHTTP(t *testing.T) {
	addr := startSDKPool(t, contractFns(t)...)
	g, _ := startGateway(t, resolverFor(addr), nil)
	for _, rt := range []string{"node", "python", "go"} {
		var out strings.Builder
		if err := g.Invoke(context.Background(), "test", []string{rt}, strings.NewReader("x"), &out); err != nil {
			t.Fatalf("%s: %v", rt, err)
		}
		if strings.ReplaceAll(out.String(), " ", "") != `{"request":null}` {
			t.Errorf("%s: %q, want no request", rt, out.String())
		}
	}
}

// TestPipelineHeads: what the caller of a pipeline gets (docs/gateway.md,
// "Pipelines"): the headers every step's handler set, a later step's over
// an earlier one's, and the status the last step that set one set; a
// step whose handler answers 4xx ends the chain with its answer, and the
// steps after it do not run.
func TestPipelineHeads(t *testing.T) {
	addr := startSDKPool(t, contractFns(t)...)
	_, url := startGateway(t, resolverFor(addr), []gateway.Route{
		{Method: "POST", Path: "/chain", Project: "test", Pipeline: []string{"go mode=create", "node mode=tag", "python mode=tag"}},
		{Method: "POST", Path: "/stop", Project: "test", Pipeline: []string{"go mode=tag", "node mode=notfound", "python mode=refuse"}},
	})
	a := post(t, url+"/chain", `{"name":"fig"}`, nil)
	if a.code != 201 || a.header.Get("Location") != "/items/fig" || a.header.Get("X-Tag") != "python" || a.body != `{"created":"fig"}` {
		t.Errorf("chain: %d Location %q X-Tag %q body %q, want 201 from step 1, its Location, step 3's X-Tag python, the output", a.code, a.header.Get("Location"), a.header.Get("X-Tag"), a.body)
	}
	a = rawPost(t, url+"/stop", "x")
	if a.code != 404 || a.body != "no such item" || a.header.Get("X-Step") != "node" || a.header.Get("X-Tag") != "go" {
		t.Errorf("stop: %d %q X-Step %q X-Tag %q, want step 2's 404 and body with its header and step 1's (step 3 refuses: it must not run)", a.code, a.body, a.header.Get("X-Step"), a.header.Get("X-Tag"))
	}
}

// TestOpenFaaSTemplates runs Butter's node20-style and python3-http-style
// fixtures (plugins/runtime/testdata/README.md: our own, following the
// templates' contract; not the official sources) as http functions behind
// routes: the child sees the request's method, path, query, headers and
// JSON body, and its status, headers and body come back: 201 with
// Location, and a 500 of the handler as the handler's answer.
func TestOpenFaaSTemplates(t *testing.T) {
	fixtures, _ := filepath.Abs("../plugins/runtime/testdata")
	var fns []pool.FunctionConfig
	// make test installs npm, Flask and waitress (make test-deps), and
	// sets BUTTER_REQUIRE_NOMAD: a missing one fails there and in CI, and
	// is skipped elsewhere.
	required := os.Getenv("CI") != "" || os.Getenv("BUTTER_REQUIRE_NOMAD") != ""
	if _, err := exec.LookPath("npm"); err != nil {
		if required {
			t.Fatal("npm is not installed: run make test-deps")
		}
		t.Log("npm is not installed (make test-deps): the node20-style fixture is skipped")
	} else {
		dir := t.TempDir()
		if err := os.CopyFS(dir, os.DirFS(filepath.Join(fixtures, "node20"))); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("npm", "install", "--no-audit", "--no-fund", "--omit=dev")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm install in the node20-style fixture: %v\n%s", err, out)
		}
		fns = append(fns, pool.FunctionConfig{Name: "node20", Runtime: "http", Bundle: dir, Command: []string{"node", "index.js"},
			Timeout: "30s", MaxInstances: 2, Concurrency: 4})
	}
	// Debian's packages are for Debian's python3, which may not be the
	// first on PATH (a pyenv's).
	python := ""
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(py, "-c", "import flask, waitress").Run() == nil {
			python = py
			break
		}
	}
	if python == "" {
		if required {
			t.Fatal("no python3 imports Flask and waitress: run make test-deps (python3-flask, python3-waitress)")
		}
		t.Log("python3-flask or python3-waitress is not installed (make test-deps): the python3-http-style fixture is skipped")
	} else {
		// upstream_url names the port, as the template's Dockerfile does
		// for of-watchdog: the runtime reaches the server there.
		port := strings.TrimPrefix(deadAddr(t), "127.0.0.1:")
		fns = append(fns, pool.FunctionConfig{Name: "python3-http", Runtime: "http", Bundle: filepath.Join(fixtures, "python3-http"),
			Command: []string{python, "index.py"}, Timeout: "30s", MaxInstances: 1, Concurrency: 4,
			Env: map[string]string{"upstream_url": "http://127.0.0.1:" + port, "PYTHONDONTWRITEBYTECODE": "1"}})
	}
	if len(fns) == 0 {
		t.Skip("neither npm nor Flask and waitress are installed")
	}
	addr := startSDKPool(t, fns...)
	var routes []gateway.Route
	for _, f := range fns {
		routes = append(routes,
			gateway.Route{Method: "GET", Path: "/" + f.Name + "/{rest...}", Project: "test", Function: f.Name},
			gateway.Route{Method: "POST", Path: "/" + f.Name + "/{rest...}", Project: "test", Function: f.Name})
	}
	_, url := startGateway(t, resolverFor(addr), routes)
	for _, f := range fns {
		t.Run(f.Name, func(t *testing.T) {
			base := url + "/" + f.Name
			a := call(t, "GET", base+"/echo/me?a=1&b=x&b=y", nil, map[string]string{"X-Custom": "c1"})
			var got struct {
				Method, Path, Custom string
				Query                map[string]any
			}
			if a.code != 200 || json.Unmarshal([]byte(a.body), &got) != nil {
				t.Fatalf("GET: %d %q", a.code, a.body)
			}
			// node20's event.query is express's (one value: a string);
			// python3-http's is Flask's args, read as lists here.
			wantQuery := map[string]any{"a": "1", "b": []any{"x", "y"}}
			if f.Name == "python3-http" {
				wantQuery = map[string]any{"a": []any{"1"}, "b": []any{"x", "y"}}
			}
			if got.Method != "GET" || got.Path != "/"+f.Name+"/echo/me" || got.Custom != "c1" || !reflect.DeepEqual(got.Query, wantQuery) {
				t.Errorf("GET: the child saw %+v, want GET /%s/echo/me, X-Custom c1, query %v", got, f.Name, wantQuery)
			}

			a = post(t, base+"/items", `{"name":"kiwi","count":41}`, map[string]string{"Content-Type": "application/json"})
			var created struct {
				Created string
				Count   int
			}
			if a.code != 201 || a.header.Get("Location") != "/items/kiwi" || a.header.Get("X-Fixture") != f.Name ||
				json.Unmarshal([]byte(a.body), &created) != nil || created.Created != "kiwi" || created.Count != 42 {
				t.Errorf("POST JSON: %d Location %q X-Fixture %q %q, want 201 /items/kiwi, the JSON answer", a.code, a.header.Get("Location"), a.header.Get("X-Fixture"), a.body)
			}
			if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("POST JSON: Content-Type %q, want the child's application/json", ct)
			}

			a = post(t, base+"/echo", "plain words", map[string]string{"Content-Type": "text/plain"})
			if a.code != 200 || !strings.Contains(a.body, `"plain words"`) || !strings.Contains(a.body, `"text/plain"`) {
				t.Errorf("POST text: %d %q, want the body and its Content-Type echoed", a.code, a.body)
			}

			a = rawPost(t, base+"/boom", "x")
			if a.code != http.StatusInternalServerError || !strings.Contains(a.body, "the handler failed on purpose") {
				t.Errorf("a 500 from the handler: %d %q, want 500 with the handler's body", a.code, a.body)
			}
		})
	}
}

// rawPost posts body and returns the answer whatever its status, without
// reading an error answer as the gateway's JSON: a handler's own 4xx or
// 5xx has the handler's body.
func rawPost(t *testing.T, url, body string) answer {
	t.Helper()
	resp, err := client.Post(url, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: reading the body: %v", url, err)
	}
	return answer{code: resp.StatusCode, body: string(b), header: resp.Header, trailer: resp.Trailer}
}

// TestHTTPContractExec: an exec function that came from HTTP has the
// request in its environment, as OpenFaaS's watchdogs set it (Http_*),
// with Butter's own (BUTTER_HTTP_*, BUTTER_PARAM_*, BUTTER_REQUEST_ID,
// BUTTER_TRACEPARENT), the body on stdin, and no credentials or
// hop-by-hop headers; an exec call that did not come from HTTP has none
// of them.
func TestHTTPContractExec(t *testing.T) {
	env := fn("env", "sh", "-c", "env | sort; echo ---; cat")
	addr := startSDKPool(t, env)
	g, url := startGateway(t, resolverFor(addr), []gateway.Route{{Method: "PUT", Path: "/exec/things/{id}", Project: "test", Function: "env"}})
	trace := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	a := call(t, "PUT", url+"/exec/things/t1?color=red&size=1&size=2", strings.NewReader("the body"), map[string]string{
		"X-Custom": "v1", "Content-Type": "text/plain", "Authorization": "Bearer secret", "Connection": "X-Hop", "X-Hop": "dropped",
		"traceparent": trace, "X-Request-Id": "req-exec"})
	if a.code != 200 {
		t.Fatalf("exec: %d %s", a.code, a.body)
	}
	vars, body, _ := strings.Cut(a.body, "---\n")
	got := map[string]string{}
	for _, line := range strings.Split(vars, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			got[k] = v
		}
	}
	for k, v := range map[string]string{
		"Http_Method": "PUT", "Http_Path": "/exec/things/t1", "Http_Query": "color=red&size=1&size=2", "Http_ContentLength": "8",
		"Http_Content_Type": "text/plain", "Http_X_Custom": "v1", "Http_X_Request_Id": "req-exec",
		"BUTTER_HTTP_ROUTE": "PUT /exec/things/{id}", "BUTTER_PARAM_id": "t1", "BUTTER_PARAM_color": "red", "BUTTER_PARAM_size": "1",
		"BUTTER_REQUEST_ID": "req-exec", "BUTTER_TRACEPARENT": trace,
	} {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if !strings.HasPrefix(got["BUTTER_HTTP_REMOTE_ADDR"], "127.0.0.1:") {
		t.Errorf("BUTTER_HTTP_REMOTE_ADDR = %q, want the client's 127.0.0.1:port", got["BUTTER_HTTP_REMOTE_ADDR"])
	}
	for _, k := range []string{"Http_Authorization", "Http_X_Hop", "Http_Connection"} {
		if v, ok := got[k]; ok {
			t.Errorf("%s = %q reached the function", k, v)
		}
	}
	if body != "the body" {
		t.Errorf("stdin: %q, want the request body", body)
	}

	var out strings.Builder
	if err := g.Invoke(context.Background(), "test", []string{"env"}, strings.NewReader("x"), &out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "Http_") || strings.Contains(out.String(), "BUTTER_HTTP_") {
		t.Errorf("a call that did not come from HTTP has request variables:\n%s", out.String())
	}
}

// TestHTTPRuntimeStreams: an http function's status and headers reach the
// caller before its body ends, and its body streams: the caller reads
// the child's 201, X-Stream and first line while the child still waits
// to write the last (it writes it once the test released it).
func TestHTTPRuntimeStreams(t *testing.T) {
	dir, _ := filepath.Abs("testdata/contract/stream")
	addr := startSDKPool(t, pool.FunctionConfig{Name: "stream", Runtime: "http", Bundle: dir, Command: []string{"python3", "server.py"},
		Timeout: "1m", MaxInstances: 1, Concurrency: 4, Env: map[string]string{"PYTHONDONTWRITEBYTECODE": "1"}})
	_, url := startGateway(t, resolverFor(addr), []gateway.Route{
		{Method: "GET", Path: "/stream", Project: "test", Function: "stream"},
		{Method: "POST", Path: "/release", Project: "test", Function: "stream"},
	})
	resp, err := client.Get(url + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 201 || resp.Header.Get("X-Stream") != "yes" || resp.Header.Get("Butter-Status") != "" {
		t.Fatalf("stream: %d %v, want 201 with X-Stream and no Butter-Status", resp.StatusCode, resp.Header)
	}
	r := bufio.NewReader(resp.Body)
	if line, err := r.ReadString('\n'); line != "first\n" {
		t.Fatalf("first line %q (%v), want first", line, err)
	}
	if a := rawPost(t, url+"/release", ""); a.code != 204 {
		t.Fatalf("release: %d %q, want the child's 204", a.code, a.body)
	}
	rest, err := io.ReadAll(r)
	if err != nil || string(rest) != "last\n" {
		t.Errorf("rest %q (%v), want last", rest, err)
	}
	if e := resp.Trailer.Get("Butter-Error"); e != "" {
		t.Errorf("Butter-Error trailer %q", e)
	}
}

// TestHTTPRuntimeTimeout: the function's timeout bounds an http call, as
// of-watchdog's exec_timeout does: a child that does not answer within it
// fails the call as Timeout (504), and the instance serves the next call.
func TestHTTPRuntimeTimeout(t *testing.T) {
	dir, _ := filepath.Abs("testdata/contract/stream")
	addr := startSDKPool(t, pool.FunctionConfig{Name: "slow", Runtime: "http", Bundle: dir, Command: []string{"python3", "server.py"},
		Timeout: "1s", MaxInstances: 1, Concurrency: 4, Env: map[string]string{"PYTHONDONTWRITEBYTECODE": "1"}})
	_, url := startGateway(t, resolverFor(addr), []gateway.Route{
		{Method: "GET", Path: "/hang", Project: "test", Function: "slow"},
		{Method: "POST", Path: "/release", Project: "test", Function: "slow"},
	})
	// On a loaded machine the child may take longer than the 1 s timeout
	// to start: such a call also answers 504, but says so, and shows
	// nothing of a child past its timeout; the test calls again until an
	// instance is up (the pool keeps starting it), within a deadline.
	starting := func(a answer) bool {
		return a.code == http.StatusGatewayTimeout && strings.Contains(a.body, "while an instance of slow started")
	}
	deadline := time.Now().Add(60 * time.Second)
	a := call(t, "GET", url+"/hang", nil, nil)
	for starting(a) && time.Now().Before(deadline) {
		a = call(t, "GET", url+"/hang", nil, nil)
	}
	if a.code != http.StatusGatewayTimeout || a.err.Type != "Timeout" || starting(a) {
		t.Errorf("a child past the timeout: %d %s, want 504 Timeout from the running child", a.code, a.body)
	}
	a = rawPost(t, url+"/release", "")
	for starting(a) && time.Now().Before(deadline) {
		a = rawPost(t, url+"/release", "")
	}
	if a.code != 204 {
		t.Errorf("the next call: %d %q, want the child's 204", a.code, a.body)
	}
}
