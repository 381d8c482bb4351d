package spec_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"

	"github.com/butterfn/butter/hcl/spec"
)

// FuzzDecode feeds arbitrary bytes to the decoder as one spec file in a
// project that also holds a source file and a schema. Decoding must never
// panic, and a rejected project must say why. Crashers the fuzzer finds
// are kept under testdata/fuzz/FuzzDecode and run as seeds by `go test`.
func FuzzDecode(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/invalid/*/*.fn.hcl")
	examples, _ := filepath.Glob("../../examples/*/*.fn.hcl")
	for _, p := range append(seeds, examples...) {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		// A hang is a bug too: crash the worker so that the fuzzer keeps
		// the input that caused it.
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				panic(fmt.Sprintf("decoding hung for 10s on %q", src))
			}
		}()
		fsys := fstest.MapFS{
			"main.fn.hcl":                  {Data: src},
			"functions/ingest/index.js":    {Data: []byte("exports.handle = x => x")},
			"schemas/reading.json":         {Data: []byte(`{"type":"object"}`)},
			"functions/report/report.sh":   {Data: []byte("#!/bin/sh\n"), Mode: 0o755},
			"functions/detect/detect.py":   {Data: []byte("def handle(e, c): return e\n")},
			"functions/echo-go/main.go":    {Data: []byte("package main\n")},
			"functions/echo-node/index.js": {Data: []byte("exports.handle = x => x")},
		}
		proj, rep := spec.LoadFS(fsys, "fuzz")
		if proj == nil && !rep.HasErrors() {
			t.Fatal("project rejected without an error")
		}
		for _, d := range rep.Diags {
			if d.Summary == "" {
				t.Fatalf("diagnostic without a summary: %+v", d)
			}
		}
		_ = rep.WriteText(discard{})
		_ = rep.WriteJSON(discard{})
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
