package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// benchFile writes go test -bench output: for each benchmark of the
// Stream group, its runs' events/s, and for Overhead its p50s.
func benchFile(t *testing.T, commit string, stream map[string][]float64, overhead map[string][]float64) *results {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "commit: %s\ngoos: linux\ngoarch: amd64\npkg: github.com/butterfn/butter/broker\n", commit)
	for _, name := range []string{"baseline", "go", "exec"} {
		for _, v := range stream[name] {
			fmt.Fprintf(&b, "BenchmarkStream/%s-2 \t 1\t 1000 ns/op\t %g events/s\n", name, v)
		}
	}
	fmt.Fprintf(&b, "pkg: github.com/butterfn/butter/gateway\n")
	for _, name := range []string{"baseline", "gateway"} {
		for _, v := range overhead[name] {
			fmt.Fprintf(&b, "BenchmarkOverhead/%s-2 \t 100\t 1000 ns/op\t %g p50-ns\n", name, v)
		}
	}
	path := filepath.Join(t.TempDir(), commit+".txt")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	rs, err := read(path)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestCompare: figures are compared by their ratio to their baseline, so
// a machine twice as slow moves nothing; a rate ratio that fell beyond
// its band is a regression, a latency ratio that fell an improvement, and
// a ratio within the band of its runs' spread is not listed.
func TestCompare(t *testing.T) {
	prev := benchFile(t, "aaaaaaa",
		map[string][]float64{"baseline": {100, 101, 99}, "go": {70, 71, 69}, "exec": {10, 12, 8}},
		map[string][]float64{"baseline": {100, 101, 99}, "gateway": {300, 305, 295}})
	// Half as fast a machine: go's ratio falls from 0.70 to 0.50 (a
	// regression), exec's from 0.10 to 0.09 (within its wide band), the
	// gateway's latency ratio falls from 3 to 2 (an improvement).
	now := benchFile(t, "bbbbbbb",
		map[string][]float64{"baseline": {50, 51, 49}, "go": {25, 25.5, 24.5}, "exec": {4.5, 5.5, 3.5}},
		map[string][]float64{"baseline": {200, 202, 198}, "gateway": {400, 404, 396}})
	moved, within := compare(now, prev)
	if len(moved) != 2 || within != 1 {
		t.Fatalf("moved %+v, %d within; want go regressed and the gateway better, exec within", moved, within)
	}
	if c := moved[0]; c.k.name != "Stream/go" || !c.regression || fmt.Sprintf("%.2f→%.2f", c.old, c.new) != "0.70→0.50" {
		t.Errorf("first change %+v, want Stream/go regressed from 0.70 to 0.50", c)
	}
	if c := moved[1]; c.k.name != "Overhead/gateway" || c.regression {
		t.Errorf("second change %+v, want Overhead/gateway better", c)
	}
	var b bytes.Buffer
	regs := comparison(&b, now, prev)
	if len(regs) != 1 || !strings.Contains(b.String(), "| Stream/go (broker) | 0.7× | 0.5× | -29% | ±10% | **regressed** |") || !strings.Contains(b.String(), "commit aaaaaaa") {
		t.Errorf("section:\n%s", b.String())
	}
	if !strings.Contains(regressionLines(regs), "Stream/go (broker): 0.5× of its baseline, was 0.7×") {
		t.Errorf("make bench's lines: %s", regressionLines(regs))
	}

	// The same run against itself: nothing moved.
	if moved, _ := compare(prev, prev); len(moved) != 0 {
		t.Errorf("a run against itself: %+v", moved)
	}
}
