// Command report turns `go test -bench` output into bench/RESULTS.md: the
// machine, date, commit and method, then a table per benchmark group with
// the median, its confidence interval, and the ratio against the group's
// baseline measured in the same run.
//
// Convention: a benchmark's sub-benchmark named "baseline" is the baseline
// of its siblings (BenchmarkDecode/baseline, BenchmarkDecode/spec). Parsing
// and statistics come from golang.org/x/perf (benchfmt, benchmath), the
// same code benchstat uses.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"

	"golang.org/x/perf/benchfmt"
	"golang.org/x/perf/benchmath"
)

type key struct{ pkg, group, variant string }

func main() {
	in := flag.String("in", "bench/raw/bench.txt", "go test -bench output")
	out := flag.String("out", "bench/RESULTS.md", "the report to write")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	samples := map[key]map[string][]float64{}
	var order []key
	var cpu string
	r := benchfmt.NewReader(f, in)
	for r.Scan() {
		res, ok := r.Result().(*benchfmt.Result)
		if !ok {
			continue
		}
		if c := res.GetConfig("cpu"); c != "" {
			cpu = c
		}
		base, parts := res.Name.Parts()
		variant := ""
		if len(parts) > 0 {
			variant = strings.TrimPrefix(string(parts[0]), "/")
		}
		k := key{res.GetConfig("pkg"), strings.TrimPrefix(string(base), "Benchmark"), variant}
		if samples[k] == nil {
			samples[k] = map[string][]float64{}
			order = append(order, k)
		}
		for _, v := range res.Values {
			samples[k][v.Unit] = append(samples[k][v.Unit], v.Value)
		}
	}
	if err := r.Err(); err != nil {
		return err
	}
	if len(order) == 0 {
		return fmt.Errorf("no benchmark results in %s", in)
	}
	sort.SliceStable(order, func(i, j int) bool {
		a, b := order[i], order[j]
		if a.pkg != b.pkg {
			return a.pkg < b.pkg
		}
		if a.group != b.group {
			return a.group < b.group
		}
		if (a.variant == "baseline") != (b.variant == "baseline") {
			return a.variant == "baseline"
		}
		return a.variant < b.variant
	})

	th := benchmath.DefaultThresholds
	median := func(k key, unit string) (benchmath.Summary, bool) {
		vals := samples[k][unit]
		if len(vals) == 0 {
			return benchmath.Summary{}, false
		}
		return benchmath.AssumeNothing.Summary(benchmath.NewSample(vals, &th), 0.95), true
	}

	var b bytes.Buffer
	commit, _ := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	fmt.Fprintf(&b, "# Benchmark results\n\n")
	fmt.Fprintf(&b, "Written by `make bench` on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Machine: %s/%s, %d cores, %s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), orUnknown(cpu))
	fmt.Fprintf(&b, "- Go: %s\n", runtime.Version())
	fmt.Fprintf(&b, "- Commit: %s\n", orUnknown(strings.TrimSpace(string(commit))))
	fmt.Fprintf(&b, "- Method: `go test -bench -count=6`; the median of the runs and its 95%% confidence interval (golang.org/x/perf/benchmath, as benchstat computes them). Each ratio divides a median by the median of the baseline measured in the same run, because this machine is shared and noisy: compare ratios across runs, not absolute times.\n\n")
	fmt.Fprintf(&b, "| package | benchmark | median | ±95%% CI | ratio to baseline | B/op | allocs/op |\n")
	fmt.Fprintf(&b, "|---|---|---:|---:|---:|---:|---:|\n")
	for _, k := range order {
		s, ok := median(k, "sec/op")
		if !ok {
			continue
		}
		ratio := "—"
		if k.variant == "baseline" {
			ratio = "1 (baseline)"
		} else if bs, ok := median(key{k.pkg, k.group, "baseline"}, "sec/op"); ok && bs.Center > 0 {
			ratio = fmt.Sprintf("%.2f×", s.Center/bs.Center)
		}
		name := k.group
		if k.variant != "" {
			name += "/" + k.variant
		}
		bop, allocs := "", ""
		if m, ok := median(k, "B/op"); ok {
			bop = fmt.Sprintf("%.0f", m.Center)
		}
		if m, ok := median(k, "allocs/op"); ok {
			allocs = fmt.Sprintf("%.0f", m.Center)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", strings.TrimPrefix(k.pkg, "github.com/butterfn/butter/"), name, dur(s.Center), s.PctRangeString(), ratio, bop, allocs)
	}
	notes, err := os.ReadFile("bench/NOTES.md")
	if err == nil {
		fmt.Fprintf(&b, "\n%s", notes)
	}
	return os.WriteFile(out, b.Bytes(), 0o644)
}

func dur(sec float64) string {
	return time.Duration(sec * float64(time.Second)).Round(time.Duration(1)).String()
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
