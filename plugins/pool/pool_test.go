package pool_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/butterfn/butter/names"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/plugins/runtime"
	"github.com/butterfn/butter/sdk"
	gosdk "github.com/butterfn/butter/sdk/go"
	"github.com/hashicorp/go-hclog"
)

// sdks installs the Go SDK's source for building the Go test function.
func sdks(t testing.TB) *runtime.SDKs {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "go"), gosdk.Source); err != nil {
		t.Fatal(err)
	}
	return &runtime.SDKs{GoSDK: filepath.Join(dir, "go"), BuildDir: filepath.Join(dir, "builds")}
}

// fn is a function of the test pool. Its timeout is a minute: the first
// call of a Go function builds it (go build, in the call's deadline),
// which takes seconds on a busy machine; a test that needs a timeout to
// fire sets its own.
func fn(name, rt string, cmd ...string) pool.FunctionConfig {
	return pool.FunctionConfig{Name: name, Runtime: rt, Command: cmd, Timeout: "1m", MaxInstances: 4, Concurrency: 1}
}

func start(t testing.TB, fns []pool.FunctionConfig, opts ...pool.Option) (*pool.Pool, *httptest.Server) {
	t.Helper()
	abs, _ := filepath.Abs("testdata/gofn")
	for i := range fns {
		if fns[i].Bundle == "" {
			fns[i].Bundle = abs
		}
	}
	p, err := pool.New(&pool.Config{Project: "test", Pool: "p", Functions: fns}, nil, append([]pool.Option{pool.WithSDKs(sdks(t))}, opts...)...)
	return serveNew(t, p, err)
}

// serveNew starts p, which pool.New returned with err, and serves its
// endpoint; both stop when t ends.
func serveNew(t testing.TB, p *pool.Pool, err error) (*pool.Pool, *httptest.Server) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(func() {
		srv.Close()
		p.Close()
	})
	return p, srv
}

// startLogged starts, as start does, a pool of project hosting fns whose
// functions' lines and the pool's own go to logger (hclog inferring each
// line's level), and serves its endpoint; both stop when t ends.
func startLogged(t testing.TB, project string, fns []pool.FunctionConfig, logger hclog.Logger) (*pool.Pool, *httptest.Server) {
	t.Helper()
	p, err := pool.New(&pool.Config{Project: project, Pool: "p", Functions: fns}, func(fn string) io.Writer {
		return logger.Named(fn).StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true})
	}, pool.WithLogger(logger))
	return serveNew(t, p, err)
}

type answer struct {
	code    int
	body    string
	errType string
	trailer string
	header  http.Header
}

func invoke(t *testing.T, srv *httptest.Server, function string, body io.Reader, hdr map[string]string) answer {
	t.Helper()
	req, _ := http.NewRequest("POST", srv.URL+"/v1/invoke/"+function, body)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		// Errorf, not Fatalf: callers run this from goroutines too.
		t.Errorf("invoke %s: %v", function, err)
		return answer{body: err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{code: resp.StatusCode, body: string(b), trailer: resp.Trailer.Get(names.HeaderError), header: resp.Header}
	if resp.StatusCode != 200 {
		var e struct {
			Error struct{ Type, Message string }
		}
		_ = json.Unmarshal(b, &e)
		a.errType = e.Error.Type
	}
	return a
}

func metric(t *testing.T, srv *httptest.Server, name, function string) float64 {
	t.Helper()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+"{") && strings.Contains(line, `function="`+function+`"`) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			return v
		}
	}
	return 0
}

// openGate creates the file a test function waits for ("while [ ! -e
// gate ]"), so that the test, not the machine's speed, says when it ends.
func openGate(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestExecStreamsLargeBodies(t *testing.T) {
	_, srv := start(t, []pool.FunctionConfig{fn("wc", "exec", "wc", "-c"), fn("cat", "exec", "cat")})
	const size = 64 << 20
	a := invoke(t, srv, "wc", io.LimitReader(zeros{}, size), nil)
	if a.code != 200 || strings.TrimSpace(a.body) != strconv.Itoa(size) {
		t.Fatalf("wc -c of %d bytes: %d %q", size, a.code, a.body)
	}
	// cat streams 16 MiB back unchanged.
	src := bytes.Repeat([]byte("butter "), (16<<20)/7)
	a = invoke(t, srv, "cat", bytes.NewReader(src), nil)
	if a.code != 200 || sha256.Sum256([]byte(a.body)) != sha256.Sum256(src) {
		t.Fatalf("cat returned %d bytes (code %d), want %d", len(a.body), a.code, len(src))
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestExecErrorsAndOptions(t *testing.T) {
	// The call's deadline (300ms) is far shorter than the function's
	// timeout, which is far longer than the bound below: a deadline not
	// kept shows however busy the machine is.
	sleepFn := fn("sleep", "exec", "sleep", "600")
	sleepFn.Timeout = "2m"
	_, srv := start(t, []pool.FunctionConfig{
		fn("fail", "exec", "sh", "-c", "echo something broke >&2; exit 3"),
		fn("sed", "exec", "sed", "-u"),
		sleepFn,
	})
	a := invoke(t, srv, "fail", strings.NewReader("x"), nil)
	if a.code != 500 || a.errType != "Exception" || !strings.Contains(a.body, "something broke") || !strings.Contains(a.body, "exit status 3") {
		t.Errorf("failing command: %+v", a)
	}
	a = invoke(t, srv, "sed", strings.NewReader("I hate this\n"), map[string]string{"Butter-Option-E": "s/hate/love/"})
	if a.code != 200 || a.body != "I love this\n" {
		t.Errorf("sed with option e: %+v", a)
	}
	start := time.Now()
	a = invoke(t, srv, "sleep", nil, map[string]string{names.HeaderTimeout: "300ms"})
	if a.code != 504 || a.errType != "Timeout" {
		t.Errorf("past its deadline: %+v", a)
	}
	if el := time.Since(start); el > time.Minute {
		t.Errorf("the 300ms timeout answered after %s", el)
	}
	if a := invoke(t, srv, "nope", nil, nil); a.code != 404 || !strings.Contains(a.body, "fail, sed, sleep") {
		t.Errorf("unknown function: %+v", a)
	}
	if a := invoke(t, srv, "sleep", nil, map[string]string{names.HeaderTimeout: "soon"}); a.code != 400 {
		t.Errorf("bad timeout header: %+v", a)
	}
}

func TestProcessWorkerLifecycle(t *testing.T) {
	gofn := fn("gofn", "go")
	gofn.MinInstances = 1
	gofn.Concurrency = 2
	gofn.Timeout = "1m" // far longer than any wait below: the deadlines here are the calls'

	neighbour := fn("neighbour", "go")
	neighbour.MinInstances = 1
	_, srv := start(t, []pool.FunctionConfig{gofn, neighbour}, pool.WithIdleTimeout(200*time.Millisecond))

	if a := invoke(t, srv, "gofn", strings.NewReader("hello"), nil); a.code != 200 || a.body != "HELLO" {
		t.Fatalf("echo: %+v", a)
	}
	if a := invoke(t, srv, "gofn", strings.NewReader("fail"), nil); a.code != 422 || a.errType != "PreconditionFailed" {
		t.Errorf("typed error: %+v", a)
	}

	// A worker that exits fails its call clearly; the next call works on a
	// replacement, and the neighbour never notices.
	if a := invoke(t, srv, "gofn", strings.NewReader("exit"), nil); a.code != 502 || a.errType != "InstanceFailed" || !strings.Contains(a.body, "exit status 3") {
		t.Errorf("worker exit: %+v", a)
	}
	if a := invoke(t, srv, "gofn", strings.NewReader("again"), nil); a.code != 200 || a.body != "AGAIN" {
		t.Errorf("after the exit: %+v", a)
	}
	eventually(t, 30*time.Second, "restart counted", func() bool { return metric(t, srv, "butter_instance_restarts_total", "gofn") == 1 })

	// SIGKILL in the middle of a call.
	pid, _ := strconv.Atoi(invoke(t, srv, "gofn", strings.NewReader("pid"), nil).body)
	if pid == 0 {
		t.Fatal("no worker pid")
	}
	var wg sync.WaitGroup
	var killed answer
	wg.Add(1)
	go func() {
		defer wg.Done()
		// hang, not slow: the call is still in flight whenever the kill
		// comes, not only within 300ms.
		killed = invoke(t, srv, "gofn", strings.NewReader("hang"), nil)
	}()
	eventually(t, 30*time.Second, "hanging call in flight", func() bool { return metric(t, srv, "butter_inflight_calls", "gofn") >= 1 })
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if killed.code != 502 || !strings.Contains(killed.body, "killed") {
		t.Errorf("call whose worker was killed: %+v", killed)
	}
	// The pool learns of the death when the process is reaped; a call
	// sent before that still reaches the dead instance (the dead-instance
	// race, noted in the closing notes). Wait for the replacement to be
	// counted, so the next call tests the replacement, not the race.
	eventually(t, 30*time.Second, "the kill counted", func() bool { return metric(t, srv, "butter_instance_restarts_total", "gofn") == 2 })
	if a := invoke(t, srv, "gofn", strings.NewReader("next"), nil); a.code != 200 || a.body != "NEXT" {
		t.Errorf("after the kill: %+v", a)
	}
	if a := invoke(t, srv, "neighbour", strings.NewReader("fine"), nil); a.code != 200 || a.body != "FINE" {
		t.Errorf("neighbour: %+v", a)
	}
	if n := metric(t, srv, "butter_invocation_errors_total", "neighbour"); n != 0 {
		t.Errorf("neighbour saw %v errors", n)
	}

	// A hung worker: the caller gets 504 at the deadline and the worker
	// is killed and replaced.
	before := metric(t, srv, "butter_instance_restarts_total", "gofn")
	a := invoke(t, srv, "gofn", strings.NewReader("hang"), map[string]string{names.HeaderTimeout: "300ms"})
	if a.code != 504 || a.errType != "Timeout" {
		t.Errorf("hung worker: %+v", a)
	}
	eventually(t, 30*time.Second, "hung worker replaced", func() bool { return metric(t, srv, "butter_instance_restarts_total", "gofn") == before+1 })
	if a := invoke(t, srv, "gofn", strings.NewReader("ok"), nil); a.code != 200 {
		t.Errorf("after the hang: %+v", a)
	}

	// Scale out under concurrent load, then back down to min when idle.
	// Scaling out is read from the cold starts (a counter), not from the
	// instances gauge, which the idle timeout may have brought back down
	// before a look at it on a busy machine.
	coldBefore := metric(t, srv, "butter_cold_starts_total", "gofn")
	var load sync.WaitGroup
	for range 6 {
		load.Add(1)
		go func() {
			defer load.Done()
			if a := invoke(t, srv, "gofn", strings.NewReader("slow"), nil); a.code != 200 {
				t.Errorf("under load: %+v", a)
			}
		}()
	}
	load.Wait()
	if cold := metric(t, srv, "butter_cold_starts_total", "gofn"); cold <= coldBefore {
		t.Errorf("cold starts: %v before and %v after 6 concurrent calls on an instance of concurrency 2: no scale out", coldBefore, cold)
	}
	eventually(t, 30*time.Second, "scaled back to min", func() bool { return metric(t, srv, "butter_instances", "gofn") == 1 })
}

func TestScaleToZero(t *testing.T) {
	cat := fn("cat", "exec", "cat")
	_, srv := start(t, []pool.FunctionConfig{cat}, pool.WithIdleTimeout(100*time.Millisecond))
	if n := metric(t, srv, "butter_instances", "cat"); n != 0 {
		t.Fatalf("min 0 but %v instances at start", n)
	}
	if a := invoke(t, srv, "cat", strings.NewReader("x"), nil); a.code != 200 || a.body != "x" {
		t.Fatalf("%+v", a)
	}
	eventually(t, 30*time.Second, "back to zero", func() bool { return metric(t, srv, "butter_instances", "cat") == 0 })
}

func TestHealth(t *testing.T) {
	_, srv := start(t, []pool.FunctionConfig{fn("cat", "exec", "cat")})
	resp, err := http.Get(srv.URL + "/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Status   string
		Warnings []string
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// 200 when healthy, 203 when healthy with warnings (on this machine,
	// typically no cgroup v2 or landlock): never one without the other.
	if want := map[bool]int{false: 200, true: 203}[len(h.Warnings) > 0]; h.Status != "ok" || resp.StatusCode != want {
		t.Fatalf("health %d %+v, want %d and status ok", resp.StatusCode, h, want)
	}
	resp, err = http.Get(srv.URL + "/v1/functions")
	if err != nil {
		t.Fatal(err)
	}
	var body struct{ Functions []string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if fmt.Sprint(body.Functions) != "[cat]" {
		t.Errorf("functions = %v", body.Functions)
	}
}

// TestMemoryLimit: an instance that outgrows its memory is killed and
// replaced, the call fails clearly, and the next call works. The limit is
// a real cgroup, so this runs as root (as make test and CI do).
func TestMemoryLimit(t *testing.T) {
	lim := runtime.SystemLimits()
	if err := lim.Available(); err != nil {
		t.Fatalf("per-instance limits unavailable: %v", err)
	}
	leaky := fn("leaky", "go")
	leaky.Memory = 48
	hog := fn("hog", "exec", "python3", "-c", "x = bytearray(200 << 20); x[::4096] = b'1' * len(x[::4096])")
	hog.Memory = 32
	_, srv := start(t, []pool.FunctionConfig{leaky, hog}, pool.WithLimits(lim))

	if a := invoke(t, srv, "leaky", strings.NewReader("leak"), nil); a.code != 502 || a.errType != "InstanceFailed" || !strings.Contains(a.body, "killed") {
		t.Errorf("leaking worker: %+v", a)
	}
	eventually(t, 30*time.Second, "leak counted as a restart", func() bool { return metric(t, srv, "butter_instance_restarts_total", "leaky") == 1 })
	if a := invoke(t, srv, "leaky", strings.NewReader("fine"), nil); a.code != 200 || a.body != "FINE" {
		t.Errorf("after the leak: %+v", a)
	}
	if a := invoke(t, srv, "hog", nil, nil); a.code != 500 || !strings.Contains(a.body, "killed") {
		t.Errorf("exec over its memory: %+v", a)
	}
}

// forkBomb is a small, bounded fork bomb: it starts up to 300 sleeping
// children, more than an instance's process limit (256), and reports the
// first fork the kernel refuses (sh exits: "Cannot fork"). The children
// it leaves are killed with the instance's cgroup (release), which the
// test checks.
const forkBomb = `i=0; while [ $i -lt 300 ]; do sleep 61 & i=$((i+1)); done; echo "all $i forked" >&2; kill 0`

// TestProcessLimit: an instance's forks past its process limit fail (the
// pids cgroup, v1 on this machine, v2 where the unified hierarchy has the
// pids controller), the call fails, and the function keeps serving.
func TestProcessLimit(t *testing.T) {
	lim := runtime.SystemLimits()
	if err := lim.Available(); err != nil {
		t.Fatalf("per-instance limits unavailable: %v", err)
	}
	for _, off := range lim.Off() {
		if strings.HasPrefix(off, "process limit") {
			t.Fatal(off)
		}
	}
	bomb := fn("bomb", "exec", "sh", "-c", forkBomb)
	_, srv := start(t, []pool.FunctionConfig{bomb}, pool.WithLimits(lim))
	a := invoke(t, srv, "bomb", nil, nil)
	if a.code == 200 || strings.Contains(a.body, "all 300 forked") || !strings.Contains(strings.ToLower(a.body), "fork") {
		t.Errorf("a fork bomb past the process limit (cgroup v%d): %+v", lim.Version(), a)
	}
	t.Logf("cgroup v%d: %.200s", lim.Version(), a.body)
	eventually(t, 30*time.Second, "the fork bomb's children killed with its cgroup", func() bool { return countProcs("sleep\x0061\x00") == 0 })
}

// countProcs counts the processes whose command line is cmdline.
func countProcs(cmdline string) int {
	n := 0
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if b, err := os.ReadFile("/proc/" + d.Name() + "/cmdline"); err == nil && string(b) == cmdline {
			n++
		}
	}
	return n
}

// TestHTTPRuntime runs an OpenFaaS-style http-mode function (the shape of
// the python3-http template) unchanged: port from $http_port, a POST per
// call; a call through the invoke endpoint is an HTTP call, so the
// handler's 500 is its answer, status and body (marked Butter-Status),
// not a pool error. Two instances run side by side.
func TestHTTPRuntime(t *testing.T) {
	abs, _ := filepath.Abs("testdata/httpfn")
	web := fn("web", "http", "python3", "index.py")
	web.Bundle = abs
	web.MaxInstances = 2
	_, srv := start(t, []pool.FunctionConfig{web})
	if a := invoke(t, srv, "web", strings.NewReader("abc"), nil); a.code != 200 || a.body != "ABC" {
		t.Errorf("echo: %+v", a)
	}
	if a := invoke(t, srv, "web", strings.NewReader("fail"), nil); a.code != 500 || a.body != "handler refused" || a.header.Get(names.HeaderStatus) != "500" {
		t.Errorf("a 500 from the handler: %+v", a)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := fmt.Sprintf("call %d", i)
			if a := invoke(t, srv, "web", strings.NewReader(in), nil); a.code != 200 || a.body != strings.ToUpper(in) {
				t.Errorf("concurrent call: %+v", a)
			}
		}()
	}
	wg.Wait()
	if n := metric(t, srv, "butter_instances", "web"); n < 1 || n > 2 {
		t.Errorf("instances = %v, want 1 or 2", n)
	}
}

// TestInstanceIsolation: an instance sees its own function's environment
// and nothing of the pool's, and runs in a process group of its own.
func TestInstanceIsolation(t *testing.T) {
	t.Setenv("POOL_SECRET", "must-not-leak")
	envFn := fn("env", "exec", "sh", "-c", "env; echo pgid=$(ps -o pgid= $$)")
	envFn.Env = map[string]string{"OWN": "yes"}
	other := fn("other", "exec", "env")
	other.Env = map[string]string{"NEIGHBOUR_ONLY": "x"}
	_, srv := start(t, []pool.FunctionConfig{envFn, other})
	a := invoke(t, srv, "env", nil, nil)
	if a.code != 200 {
		t.Fatalf("%+v", a)
	}
	if strings.Contains(a.body, "POOL_SECRET") || strings.Contains(a.body, "NEIGHBOUR_ONLY") {
		t.Errorf("the instance sees the pool's or a neighbour's environment:\n%s", a.body)
	}
	if !strings.Contains(a.body, "OWN=yes") || !strings.Contains(a.body, "BUTTER_FUNCTION=env") {
		t.Errorf("the instance lacks its own environment:\n%s", a.body)
	}
	var pgid int
	for _, line := range strings.Split(a.body, "\n") {
		if v, ok := strings.CutPrefix(line, "pgid="); ok {
			pgid, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if own := syscall.Getpgrp(); pgid == 0 || pgid == own {
		t.Errorf("instance process group %d, the pool's is %d: want a group of its own", pgid, own)
	}
}

// A function whose minimum instances cannot start makes the pool
// unhealthy, naming the function and the reason, while its neighbours
// serve; when the cause is fixed, the pool's retries make it healthy.
func TestHealthFailsWhileMinimumCannotStart(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.js"), []byte("throw new Error('broken at load')\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	broken := fn("broken", "node")
	broken.Handler, broken.Bundle, broken.MinInstances = "index.handle", dir, 1
	sdks, err := sdk.Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p, err := pool.New(&pool.Config{Project: "test", Pool: "p", Functions: []pool.FunctionConfig{broken, fn("cat", "exec", "cat")}}, nil, pool.WithSDKs(sdks))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Start(ctx); err == nil || !strings.Contains(err.Error(), "broken at load") {
		t.Fatalf("Start error = %v, want the worker's load error", err)
	}
	srv := httptest.NewServer(p.Handler())
	defer func() { srv.Close(); p.Close() }()
	health := func() (int, string) {
		resp, err := http.Get(srv.URL + "/v1/health")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := health()
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "broken") || !strings.Contains(body, "0 of 1 minimum") {
		t.Fatalf("health = %d %s, want 503 naming the broken function", code, body)
	}
	if a := invoke(t, srv, "cat", strings.NewReader("still serving"), nil); a.code != 200 || a.body != "still serving" {
		t.Fatalf("neighbour: %+v", a)
	}
	// Fix the source: a retry brings the minimum back and the pool is healthy.
	if err := os.WriteFile(filepath.Join(dir, "index.js"), []byte("exports.handle = async (input) => input\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "healthy after the fix", func() bool { c, _ := health(); return c == 200 || c == 203 }) // 203: healthy with warnings
}

// TestGoWorkerGOMAXPROCS: a Go worker gets GOMAXPROCS equal to its
// concurrency when that is below the machine's CPUs (on one CPU, never),
// unless the function's env sets it.
func TestGoWorkerGOMAXPROCS(t *testing.T) {
	wantOne := "1"
	if goruntime.NumCPU() < 2 {
		wantOne = "" // concurrency 1 is not below one CPU
	}
	one := fn("one", "go")
	own := fn("own", "go")
	own.Env = map[string]string{"GOMAXPROCS": "7"}
	many := fn("many", "go")
	many.Concurrency = goruntime.NumCPU() + 1
	_, srv := start(t, []pool.FunctionConfig{one, own, many})
	for name, want := range map[string]string{"one": wantOne, "own": "7", "many": ""} {
		if a := invoke(t, srv, name, strings.NewReader("env:GOMAXPROCS"), nil); a.code != 200 || a.body != want {
			t.Errorf("%s: GOMAXPROCS %d %q, want %q", name, a.code, a.body, want)
		}
	}
}

// TestInputBreaksOff: a call whose input breaks off midway (its caller
// went away) is abandoned with the read error, and its worker, of
// protocol 2 in every SDK, drops the invocation and is kept: the next
// call reaches the same process.
func TestInputBreaksOff(t *testing.T) {
	fns := []pool.FunctionConfig{
		testdataFn("gobreak", "go", "gofn", ""),
		testdataFn("nodebreak", "node", "nodefn", "index.handle"),
		testdataFn("pybreak", "python", "pyfn", "main.handle"),
	}
	for i := range fns {
		fns[i].MaxInstances = 1
	}
	p, _ := sdkPool(t, nil, fns...)
	ctx := context.Background()
	for _, f := range fns {
		pid := func() string {
			t.Helper()
			var out bytes.Buffer
			if err := p.Invoke(ctx, f.Name, &pool.Call{Input: strings.NewReader("pid"), Output: &out}); err != nil {
				t.Fatalf("%s: %v", f.Name, err)
			}
			return out.String()
		}
		before := pid()
		broken := io.MultiReader(strings.NewReader("the first part of an input"), iotest.ErrReader(errors.New("connection reset by peer")))
		err := p.Invoke(ctx, f.Name, &pool.Call{Input: broken, Output: io.Discard})
		if !errors.Is(err, runtime.ErrInput) {
			t.Errorf("%s: a broken input gave %v, want an input error", f.Name, err)
		}
		if after := pid(); after != before {
			t.Errorf("%s: the worker was replaced (pid %s, then %s): a broken input killed it", f.Name, before, after)
		}
	}
}
