// Command report turns `go test -bench` output into bench/RESULTS.md: the
// machine, date, commit and method; the targets, met or not; then a table
// per benchmark with, for each figure, the median across the -count runs,
// its p99, and its ratio against the baseline measured in the same run;
// and the reading of bench/NOTES.md.
//
// Conventions:
//
//   - The baseline of a benchmark is its sibling named "baseline": that
//     of BenchmarkThroughput/c16/go is BenchmarkThroughput/c16/baseline.
//   - Each figure has a headline metric: a rate when the benchmark
//     reports one (a unit ending in "/s", higher is better), else its p50
//     ("p50-ns" from bench/harness, which benchfmt reads as "p50-sec"),
//     else its ns/op ("sec/op"). The median, the
//     ratio and the targets use it; a latency's row also shows its
//     distance to the baseline (Δ), which is the overhead a layer adds.
//   - Every metric is summarized by its median across runs, with the 95%
//     confidence interval golang.org/x/perf/benchmath computes, as
//     benchstat does (it needs 6 runs or more: with fewer it is "—").
//   - Configuration lines in the input ("node: v20.20.2", as
//     bench/run.sh writes them) describe the machine.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"

	"golang.org/x/perf/benchfmt"
	"golang.org/x/perf/benchmath"
)

func main() {
	in := flag.String("in", "bench/raw/bench.txt", "go test -bench output")
	out := flag.String("out", "bench/RESULTS.md", "the report to write")
	notes := flag.String("notes", "bench/NOTES.md", "the reading appended to the report")
	flag.StringVar(&loadEnd, "loadavg-end", "", "the load average when the runs ended")
	flag.StringVar(&rawName, "raw", "bench/RESULTS.txt", "where the run's raw output is kept, named in the report")
	flag.StringVar(&previous, "previous", "", "the last committed run's raw output, to compare with (none: no comparison)")
	flag.Parse()
	if err := run(*in, *out, *notes); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(in, out, notesPath string) error {
	rs, err := read(in)
	if err != nil {
		return err
	}
	if err := sameCommit(in, rs.config["commit"], headCommit()); err != nil {
		return err
	}
	var b bytes.Buffer
	header(&b, rs)
	targetTable(&b, rs)
	if previous != "" {
		prev, err := read(previous)
		if err != nil {
			fmt.Fprintf(os.Stderr, "report: no comparison with the last committed run: %v\n", err)
		} else if regs := comparison(&b, rs, prev); len(regs) > 0 {
			// Reported, not failed: the machine is shared and noisy.
			fmt.Fprintf(os.Stderr, "==> regressions against the last committed run (commit %s), beyond their noise band:\n%s\n", orUnknown(prev.config["commit"]), regressionLines(regs))
		}
	}
	tables(&b, rs)
	if notes, err := os.ReadFile(notesPath); err == nil {
		fmt.Fprintf(&b, "\n%s", notes)
	}
	return os.WriteFile(out, b.Bytes(), 0o644)
}

// loadEnd is the load average when the runs ended (-loadavg-end).
var loadEnd string

// rawName is where the run's raw output is kept in the repository (-raw).
var rawName string

// previous is the last committed run's raw output (-previous).
var previous string

// headCommit is the checkout's abbreviated commit, or "" outside git.
func headCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// sameCommit refuses raw output that a run at another commit (or with
// uncommitted changes) wrote: RESULTS.md must come from one run at the
// commit it names, never from an older run's output.
func sameCommit(in, ran, head string) error {
	switch {
	case ran == "":
		return fmt.Errorf("%s names no commit (a \"commit:\" line, which bench/run.sh writes): run make bench", in)
	case strings.Contains(ran, "uncommitted"):
		return fmt.Errorf("%s comes from a run with uncommitted changes (%s): commit, then run make bench", in, ran)
	case head != "" && !strings.HasPrefix(head, ran) && !strings.HasPrefix(ran, head):
		return fmt.Errorf("%s comes from a run at commit %s, but the checkout is at %s: run make bench at this commit", in, ran, head)
	}
	return nil
}

// key names one benchmark: its package and its name without "Benchmark"
// and the GOMAXPROCS suffix ("Throughput/c16/go").
type key struct{ pkg, name string }

// group is the top-level benchmark ("Throughput").
func (k key) group() string { g, _, _ := strings.Cut(k.name, "/"); return g }

// baseline is the key of k's baseline sibling, or k itself when k is a
// baseline or has no parent.
func (k key) baseline() key {
	i := strings.LastIndexByte(k.name, '/')
	if i < 0 {
		return k
	}
	return key{k.pkg, k.name[:i+1] + "baseline"}
}

func (k key) isBaseline() bool { return strings.HasSuffix(k.name, "/baseline") }

// results holds every sample of every unit of every benchmark, in the
// order they first appeared, and the input's configuration.
type results struct {
	samples map[key]map[string][]float64
	units   map[key][]string
	order   []key
	config  map[string]string
}

func read(path string) (*results, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rs := &results{samples: map[key]map[string][]float64{}, units: map[key][]string{}, config: map[string]string{}}
	r := benchfmt.NewReader(f, path)
	for r.Scan() {
		res, ok := r.Result().(*benchfmt.Result)
		if !ok {
			continue
		}
		for _, c := range res.Config {
			if c.File {
				rs.config[c.Key] = string(c.Value)
			}
		}
		base, parts := res.Name.Parts()
		name := strings.TrimPrefix(string(base), "Benchmark")
		for _, p := range parts {
			if !bytes.HasPrefix(p, []byte("-")) { // the GOMAXPROCS suffix
				name += string(p)
			}
		}
		k := key{strings.TrimPrefix(res.GetConfig("pkg"), "github.com/butterfn/butter/"), name}
		if rs.samples[k] == nil {
			rs.samples[k] = map[string][]float64{}
			rs.order = append(rs.order, k)
		}
		for _, v := range res.Values {
			if rs.samples[k][v.Unit] == nil {
				rs.units[k] = append(rs.units[k], v.Unit)
			}
			rs.samples[k][v.Unit] = append(rs.samples[k][v.Unit], v.Value)
		}
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	if len(rs.order) == 0 {
		return nil, fmt.Errorf("no benchmark results in %s", path)
	}
	return rs, nil
}

// summary is the median of a unit's samples and its confidence interval.
func (rs *results) summary(k key, unit string) (benchmath.Summary, bool) {
	vals := rs.samples[k][unit]
	if len(vals) == 0 {
		return benchmath.Summary{}, false
	}
	th := benchmath.DefaultThresholds
	return benchmath.AssumeNothing.Summary(benchmath.NewSample(vals, &th), 0.95), true
}

func (rs *results) median(k key, unit string) (float64, bool) {
	s, ok := rs.summary(k, unit)
	return s.Center, ok
}

// headline is the unit of k's headline metric: its rate, else its p50,
// else sec/op.
func (rs *results) headline(k key) string {
	for _, u := range rs.units[k] {
		if isRate(u) {
			return u
		}
	}
	if _, ok := rs.samples[k][unitP50]; ok {
		return unitP50
	}
	return "sec/op"
}

// The units of bench/harness's percentiles, as benchfmt normalizes them
// (it reads "p50-ns" as seconds).
const (
	unitP50 = "p50-sec"
	unitP99 = "p99-sec"
)

// seconds reports whether unit is a time in seconds.
func seconds(unit string) bool {
	return unit == "sec/op" || strings.HasSuffix(unit, "-sec") || strings.HasSuffix(unit, "-s")
}

func isRate(unit string) bool { return strings.HasSuffix(unit, "/s") }

// ratio is k's headline over its baseline's, in the same unit.
func (rs *results) ratio(k key) (float64, bool) {
	if k.isBaseline() {
		return 1, true
	}
	unit := rs.headline(k)
	v, ok1 := rs.median(k, unit)
	base, ok2 := rs.median(k.baseline(), unit)
	if !ok1 || !ok2 || base == 0 {
		return 0, false
	}
	return v / base, true
}

// delta is k's headline latency minus its baseline's, in ns.
func (rs *results) delta(k key) (float64, bool) {
	unit := rs.headline(k)
	if k.isBaseline() || isRate(unit) {
		return 0, false
	}
	v, ok1 := rs.median(k, unit)
	base, ok2 := rs.median(k.baseline(), unit)
	if !ok1 || !ok2 {
		return 0, false
	}
	return (v - base) * 1e9, true
}

func header(b *bytes.Buffer, rs *results) {
	cfg := func(k string) string { return orUnknown(rs.config[k]) }
	commit := rs.config["commit"] // as bench/run.sh found it when the runs began (run checks it is HEAD)
	fmt.Fprintf(b, "# Benchmark results\n\n")
	fmt.Fprintf(b, "Written by `make bench` on %s (the runs began %s).\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), cfg("started"))
	fmt.Fprintf(b, "- Machine: %s/%s, %d cores, %s, %s of memory, Linux %s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cfg("cpu-model"), cfg("memory"), cfg("kernel"))
	fmt.Fprintf(b, "- Load average (1, 5, 15 min) when the runs began: %s; when they ended: %s. Other work on the machine during the runs moves the figures: compare the ratios.\n", cfg("loadavg"), orUnknown(loadEnd))
	fmt.Fprintf(b, "- Go: %s; wrk: %s; node: %s; python3: %s; java: %s\n", runtime.Version(), cfg("wrk"), cfg("node"), cfg("python3"), cfg("java"))
	fmt.Fprintf(b, "- Commit: %s\n", commit)
	fmt.Fprintf(b, "- Raw output: [%s](%s), this run's `go test -bench` output as benchstat reads it; every figure below can be derived again from it (`benchstat %s`).\n", rawName, strings.TrimPrefix(rawName, "bench/"), rawName)
	fmt.Fprintf(b, "- Method: `go test -bench` with `-count` runs of each benchmark (the runs column), all in one `make bench`; docs/benchmarks.md describes each benchmark. ")
	fmt.Fprintf(b, "Each figure is the median across the runs (±: its 95%% confidence interval, as benchstat computes it, given 6 runs or more); a latency's p50 and p99 are those of every operation of a run, then the median across runs. ")
	fmt.Fprintf(b, "Each ratio divides a figure by its baseline's, measured in the same run: this machine is shared and noisy, so compare ratios across runs rather than absolute values. ")
	fmt.Fprintf(b, "Rates are higher-is-better (a ratio of 0.5 is half the baseline's rate); times are lower-is-better (a ratio of 2 takes twice the baseline's time).\n\n")
}

func tables(b *bytes.Buffer, rs *results) {
	fmt.Fprintf(b, "\n## Figures\n")
	order := append([]key(nil), rs.order...)
	sort.SliceStable(order, func(i, j int) bool {
		a, c := order[i], order[j]
		if a.pkg != c.pkg {
			return groupRank(a) < groupRank(c)
		}
		return a.group() < c.group() // within a package; runs keep their order
	})
	var cur string
	for _, k := range order {
		if g := k.pkg + " " + k.group(); g != cur {
			cur = g
			fmt.Fprintf(b, "\n### %s (%s)\n\n", k.group(), k.pkg)
			if d := descriptions[k.group()]; d != "" {
				fmt.Fprintf(b, "%s\n\n", d)
			}
			fmt.Fprintf(b, "| figure | median | ±95%% | p99 | ratio to baseline | Δ baseline | runs | also (medians) |\n")
			fmt.Fprintf(b, "|---|---:|---:|---:|---:|---:|---:|---|\n")
		}
		row(b, rs, k)
	}
}

// groupRank orders the tables: the platform's hot path first, then the
// control plane, then the offline tools.
func groupRank(k key) int {
	for i, p := range []string{"gateway", "plugins/pool", "broker", "scheduler", "e2e/server"} {
		if k.pkg == p {
			return i
		}
	}
	return 100
}

func row(b *bytes.Buffer, rs *results, k key) {
	unit := rs.headline(k)
	s, ok := rs.summary(k, unit)
	if !ok {
		return
	}
	ci := s.PctRangeString()
	if ci == "∞" || ci == "?" {
		ci = "—"
	}
	p99 := "—"
	if v, ok := rs.median(k, unitP99); ok {
		p99 = format(unitP99, v)
	}
	ratio := "—"
	if k.isBaseline() {
		ratio = "1 (baseline)"
	} else if r, ok := rs.ratio(k); ok && r >= 100 {
		ratio = group(r) + "×"
	} else if ok {
		ratio = fmt.Sprintf("%.3g×", r)
	}
	delta := "—"
	if d, ok := rs.delta(k); ok {
		sign := "+"
		if d < 0 {
			sign, d = "−", -d
		}
		delta = sign + dur(d)
	}
	var also []string
	for _, u := range rs.units[k] {
		if u == unit || u == unitP99 || (u == "sec/op" && unit != "sec/op") {
			continue
		}
		if (u == "B/op" || u == "allocs/op") && !perCall[k.group()] {
			continue // an operation of these is a whole run, not a call
		}
		if v, ok := rs.median(k, u); ok {
			also = append(also, label(u)+" "+format(u, v))
		}
	}
	runs := len(rs.samples[k][unit])
	fmt.Fprintf(b, "| %s | %s %s | %s | %s | %s | %s | %d | %s |\n", k.name, format(unit, s.Center), label(unit), ci, p99, ratio, delta, runs, strings.Join(also, ", "))
}

// label names a unit in a table cell.
func label(unit string) string {
	switch unit {
	case unitP50:
		return "p50"
	case "sec/op":
		return "/op"
	}
	return strings.TrimSuffix(strings.TrimSuffix(unit, "-sec"), "-s")
}

// format renders a value of unit: durations for times, grouped digits
// for rates and counts.
func format(unit string, v float64) string {
	switch {
	case seconds(unit):
		return dur(v * 1e9)
	case isRate(unit) || unit == "functions" || unit == "instances" || unit == "allocs/op" || unit == "B/op":
		return group(v)
	}
	return fmt.Sprintf("%.3g", v)
}

// dur renders ns with three significant digits.
func dur(ns float64) string {
	d := time.Duration(ns)
	var unit time.Duration
	switch {
	case d >= time.Second:
		unit = time.Second
	case d >= time.Millisecond:
		unit = time.Millisecond
	case d >= time.Microsecond:
		unit = time.Microsecond
	default:
		return fmt.Sprintf("%.0f ns", ns)
	}
	name := map[time.Duration]string{time.Second: "s", time.Millisecond: "ms", time.Microsecond: "µs"}[unit]
	return fmt.Sprintf("%.3g %s", ns/float64(unit), name)
}

// group renders v rounded, with thousands separated by commas.
func group(v float64) string {
	if v < 100 && v != math.Trunc(v) {
		return fmt.Sprintf("%.3g", v)
	}
	s := fmt.Sprintf("%.0f", v)
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
