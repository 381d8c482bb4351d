package pool_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/pipeline"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/sdk/go/proto"
)

// TestRunPipeline: steps of real exec functions stream into each other in
// one process, options reach each step, and a failure names its step.
func TestRunPipeline(t *testing.T) {
	p, _ := start(t, []pool.FunctionConfig{
		fn("sed", "exec", "sed", "-u"),
		fn("tr", "exec", "tr", "a-z", "A-Z"),
		fn("cat", "exec", "cat"),
		fn("fail", "exec", "sh", "-c", "cat >/dev/null; echo broken >&2; exit 3"),
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run := func(expr, in string) (string, error) {
		t.Helper()
		steps, err := pipeline.Parse(expr)
		if err != nil {
			t.Fatalf("Parse(%q): %v", expr, err)
		}
		var out bytes.Buffer
		err = p.RunPipeline(ctx, steps, strings.NewReader(in), &out)
		return out.String(), err
	}

	if out, err := run(`sed e="s/hate/love it or/" | tr`, "I hate this\n"); err != nil || out != "I LOVE IT OR THIS\n" {
		t.Errorf("sed | tr: %q %v", out, err)
	}
	// 1 MiB, more than every pipe buffer on the way, through three steps.
	big := strings.Repeat("butter ", (1<<20)/7)
	if out, err := run("cat | cat | tr", big); err != nil || out != strings.ToUpper(big) {
		t.Errorf("1 MiB through cat | cat | tr: %d bytes back, %v", len(out), err)
	}

	_, err := run("cat | fail | tr", "x\n")
	var pe *proto.Error
	if err == nil || !strings.HasPrefix(err.Error(), "step 2 (fail): ") || !errors.As(err, &pe) || pe.Type != "Exception" {
		t.Errorf("a failing middle step: %v, want step 2's Exception", err)
	}
	if _, err := run("cat | nope", "x"); !errors.Is(err, pool.ErrUnknownFunction) || !strings.HasPrefix(err.Error(), "step 2 (nope): ") {
		t.Errorf("an unknown function: %v, want step 2's ErrUnknownFunction", err)
	}
	if err := p.RunPipeline(ctx, nil, strings.NewReader(""), &bytes.Buffer{}); err == nil {
		t.Error("no steps: want an error")
	}
}
