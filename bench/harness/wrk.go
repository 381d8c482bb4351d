package harness

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// WrkResult is what one wrk run measured.
type WrkResult struct {
	Requests    int
	PerSecond   float64
	P50, P99    time.Duration
	Errors      int // socket errors of any kind
	NonOK       int // answers other than 2xx or 3xx
	Duration    time.Duration
	Connections int
	Threads     int
	Output      string
	// CPU is the user and system time wrk itself used.
	CPU time.Duration
}

// Wrk runs wrk (Debian's package; `make bench` installs it) against url
// with conns connections for d, each request a POST of body, and parses
// its summary. Threads are min(conns, 2): this machine has 2 cores, and
// wrk shares them with what it measures.
func Wrk(tb testing.TB, url string, body []byte, conns int, d time.Duration) WrkResult {
	tb.Helper()
	bin, err := exec.LookPath("wrk")
	if err != nil {
		tb.Fatal("wrk is not installed: `make bench` installs it (apt-get install -y wrk)")
	}
	script := filepath.Join(tb.TempDir(), "post.lua")
	lua := fmt.Sprintf("wrk.method = \"POST\"\nwrk.body = %q\nwrk.headers[\"Content-Type\"] = \"text/plain\"\n", body)
	if err := os.WriteFile(script, []byte(lua), 0o644); err != nil {
		tb.Fatal(err)
	}
	threads := min(conns, 2)
	secs := max(int(d.Round(time.Second)/time.Second), 1)
	cmd := exec.Command(bin, "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", strconv.Itoa(secs)+"s",
		"--timeout", "10s", "--latency", "-s", script, url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("wrk: %v\n%s", err, out)
	}
	r, err := ParseWrk(string(out))
	if err != nil {
		tb.Fatalf("wrk output: %v\n%s", err, out)
	}
	r.Connections, r.Threads, r.Duration = conns, threads, time.Duration(secs)*time.Second
	r.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return r
}

var (
	wrkRequests = regexp.MustCompile(`(?m)^\s*(\d+) requests in ([0-9.]+\w+),`)
	wrkRate     = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	wrkPct      = regexp.MustCompile(`(?m)^\s+(50|99)(?:\.000)?%\s+([0-9.]+)(us|ms|s)\s*$`)
	wrkSocket   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNonOK    = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// ParseWrk reads wrk's --latency summary.
func ParseWrk(out string) (WrkResult, error) {
	var r WrkResult
	r.Output = out
	m := wrkRequests.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no request count")
	}
	r.Requests, _ = strconv.Atoi(m[1])
	m = wrkRate.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no Requests/sec")
	}
	r.PerSecond, _ = strconv.ParseFloat(m[1], 64)
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		m := wrkPct.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, _ := strconv.ParseFloat(m[2], 64)
		unit := map[string]float64{"us": 1e3, "ms": 1e6, "s": 1e9}[m[3]]
		d := time.Duration(v * unit)
		if m[1] == "50" {
			r.P50 = d
		} else {
			r.P99 = d
		}
	}
	if r.P50 == 0 || r.P99 == 0 {
		return r, fmt.Errorf("no 50%% and 99%% latency lines (run wrk with --latency)")
	}
	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.Atoi(s)
			r.Errors += n
		}
	}
	if m := wrkNonOK.FindStringSubmatch(out); m != nil {
		r.NonOK, _ = strconv.Atoi(m[1])
	}
	return r, nil
}

// Report reports a wrk run as b's result: requests per second ("req/s"),
// its p50 and p99 latency, and ns/op as the mean time per request over
// the run (1/throughput), replacing the benchmark loop's own.
func (r WrkResult) Report(b *testing.B) {
	b.ReportMetric(r.PerSecond, "req/s")
	b.ReportMetric(float64(r.P50.Nanoseconds()), UnitP50)
	b.ReportMetric(float64(r.P99.Nanoseconds()), UnitP99)
	if r.PerSecond > 0 {
		b.ReportMetric(1e9/r.PerSecond, "ns/op")
	}
}
