package pool_test

import (
	"bytes"
	"fmt"
	"github.com/butterfn/butter/names"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/plugins/pool"
)

// TestDensity is a functional density check, not a benchmark: one pool
// hosts 200 functions (150 exec functions running cat, 50 Go workers of
// testdata/gofn with one warm instance each), every function must answer
// correctly, and the test logs what that costs:
//
//   - the time to start the pool (the 50 Go workers start with it; the Go
//     binary they share is built beforehand, so the build is not counted);
//   - for each function, the time from the pool's start to its first
//     successful answer, with the calls made 16 at a time, as p50 and max;
//   - the pool's memory: the VmRSS of the test process (which hosts the
//     pool, and is built with -race under `go test -race`) plus that of
//     every process descending from it (the workers), and that total per
//     process instance.
//
// The figures depend on the machine and are only logged; what fails the
// test is a wrong answer or a missing instance.
func TestDensity(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 50 Go workers; skipped with -short")
	}
	const (
		execFns     = 150
		goFns       = 50
		parallelism = 16
	)

	// All Go functions share one bundle directory, so one SDKs value builds
	// the binary once. A one-function pool builds it and is stopped before
	// the measured pool starts.
	gosdks := sdks(t)
	build := time.Now()
	warm := fn("warm", "go")
	warmPool, warmSrv := start(t, []pool.FunctionConfig{warm}, pool.WithSDKs(gosdks))
	if a := invoke(t, warmSrv, "warm", strings.NewReader("warm"), nil); a.code != 200 || a.body != "WARM" {
		t.Fatalf("the Go test function does not build or answer: %+v", a)
	}
	buildTime := time.Since(build)
	warmSrv.Close()
	warmPool.Close()

	var fns []pool.FunctionConfig
	want := map[string]string{} // function -> its input; the answer is derived from it
	for i := range execFns {
		f := fn(fmt.Sprintf("cat-%03d", i), "exec", "cat")
		fns = append(fns, f)
	}
	var goNames []string
	for i := range goFns {
		f := fn(fmt.Sprintf("go-%03d", i), "go")
		f.MinInstances = 1
		fns = append(fns, f)
		goNames = append(goNames, f.Name)
	}
	for _, f := range fns {
		want[f.Name] = "density check for " + f.Name
	}

	begin := time.Now()
	_, srv := start(t, fns, pool.WithSDKs(gosdks))
	startTime := time.Since(begin)

	// One call per function, 16 at a time; each records when its first
	// answer arrived, counted from the pool's start.
	client := &http.Client{Timeout: time.Minute}
	type outcome struct {
		name  string
		after time.Duration
		err   error
	}
	results := make(chan outcome, len(fns))
	sem := make(chan struct{}, parallelism)
	var wg sync.WaitGroup
	for _, f := range fns {
		wg.Add(1)
		sem <- struct{}{}
		go func(f pool.FunctionConfig) {
			defer wg.Done()
			defer func() { <-sem }()
			expect := want[f.Name]
			if f.Runtime == "go" {
				expect = strings.ToUpper(expect)
			}
			err := call(client, srv, f.Name, want[f.Name], expect)
			results <- outcome{f.Name, time.Since(begin), err}
		}(f)
	}
	wg.Wait()
	close(results)
	var firsts []time.Duration
	for r := range results {
		if r.err != nil {
			t.Errorf("%s: %v", r.name, r.err)
			continue
		}
		firsts = append(firsts, r.after)
	}
	if len(firsts) != len(fns) {
		t.Fatalf("%d of %d functions answered correctly", len(firsts), len(fns))
	}
	slices.Sort(firsts)

	// The memory is measured first, before anything else allocates.
	self, workers, err := treeRSS(os.Getpid())
	if err != nil {
		t.Fatalf("measure RSS: %v", err)
	}
	if len(workers) < goFns {
		t.Errorf("%d processes descend from the test, want at least the %d Go workers", len(workers), goFns)
	}

	// One scrape of /metrics: with 200 functions each scrape is large, so
	// metric(), which scrapes per function, would take seconds here.
	gauge := instancesByFunction(t, srv)
	goInstances, instances := 0.0, 0.0
	for _, f := range fns {
		instances += gauge[f.Name]
		if f.Runtime == "go" {
			goInstances += gauge[f.Name]
		}
	}
	if goInstances < goFns {
		t.Errorf("butter_instances summed over the Go functions = %v, want >= %d", goInstances, goFns)
	}
	// The scrape agrees with the helper the other tests use.
	if one := metric(t, srv, "butter_instances", goNames[0]); one != gauge[goNames[0]] || one < 1 {
		t.Errorf("butter_instances of %s: metric() says %v, the scrape %v", goNames[0], one, gauge[goNames[0]])
	}
	var workerKiB int
	for _, kib := range workers {
		workerKiB += kib
	}
	mib := func(kib int) float64 { return float64(kib) / 1024 }
	t.Logf("functions: %d (%d exec, %d go); instances: %.0f (%d with a process)", len(fns), execFns, goFns, instances, len(workers))
	t.Logf("total RSS: %.1f MiB = test process (hosts the pool) %.1f MiB + %d worker processes %.1f MiB",
		mib(self+workerKiB), mib(self), len(workers), mib(workerKiB))
	t.Logf("RSS per process instance: %.2f MiB (workers only), %.2f MiB (total / process instances)",
		mib(workerKiB)/float64(len(workers)), mib(self+workerKiB)/float64(len(workers)))
	t.Logf("Go build before the pool (not counted below): %s", buildTime.Round(time.Millisecond))
	t.Logf("pool start (%d Go workers to HELLO): %s", goFns, startTime.Round(time.Millisecond))
	t.Logf("time from pool start to first answer, %d calls %d at a time: p50 %s, max %s",
		len(firsts), parallelism, firsts[len(firsts)/2].Round(time.Millisecond), firsts[len(firsts)-1].Round(time.Millisecond))
}

// instancesByFunction scrapes the butter_instances gauge of every function.
func instancesByFunction(t *testing.T, srv *httptest.Server) map[string]float64 {
	t.Helper()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		// butter_instances{function="go-007"} 1
		rest, ok := strings.CutPrefix(line, `butter_instances{function="`)
		if !ok {
			continue
		}
		name, value, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[name] = v
	}
	return out
}

// call invokes a function once and checks its answer. It reports instead
// of failing the test, so that goroutines may use it.
func call(client *http.Client, srv *httptest.Server, function, input, want string) error {
	resp, err := client.Post(srv.URL+"/v1/invoke/"+function, "text/plain", strings.NewReader(input))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read the answer: %w", err)
	}
	if resp.StatusCode != 200 || string(b) != want || resp.Trailer.Get(names.HeaderError) != "" {
		return fmt.Errorf("answered %d %q (trailer %q), want 200 %q", resp.StatusCode, b, resp.Trailer.Get(names.HeaderError), want)
	}
	return nil
}

// treeRSS returns the VmRSS, in KiB, of process root and of each of its
// descendants (found by walking /proc and following parent pids).
func treeRSS(root int) (self int, descendants map[int]int, err error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, nil, err
	}
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], pid)
	}
	if self, err = vmRSS(root); err != nil {
		return 0, nil, err
	}
	descendants = map[int]int{}
	queue := slices.Clone(children[root])
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if kib, err := vmRSS(pid); err == nil {
			descendants[pid] = kib
		}
		queue = append(queue, children[pid]...)
	}
	return self, descendants, nil
}

func vmRSS(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v) // "1234 kB"
			if len(f) > 0 {
				return strconv.Atoi(f[0])
			}
		}
	}
	return 0, fmt.Errorf("process %d has no VmRSS (a zombie?)", pid)
}
