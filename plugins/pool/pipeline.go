package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/butterfn/butter/pipeline"
)

// RunPipeline streams in through steps, functions of this pool, each
// step's output piped into the next one's input, all running at once; the
// last step's output goes to out as it streams. `butter invoke -local`
// runs pipelines with it.
//
// A step that fails cancels the others. The error names the step that
// failed first, "step 2 (sed): ...", not the steps it cancelled.
//
// With WithCapture, the steps' emits, outputs and states are captured
// (capture.go).
func (p *Pool) RunPipeline(ctx context.Context, steps []pipeline.Step, in io.Reader, out io.Writer) error {
	return p.RunPipelineAs(ctx, steps, Event{}, in, out)
}

// Event is what every call of a pipeline that RunPipelineAs runs gets
// besides its input, as if the input came as an event with it.
type Event struct {
	// Key is the event's key: the state key of a function with state
	// when the input has no key field (as the Butter-State-Key header
	// gives it to an HTTP call) and, with WithCapture, the key of
	// captured outputs and of emits that name none.
	Key string
	// Params are route parameters, by name, as a route gives them to an
	// HTTP call: the functions' ctx.params, and a state key when one is
	// named like the state block's key.
	Params map[string]string
	// State is, by key, the state each function of the pipeline with
	// state has before the first call: JSON values. Only a pool without
	// Kafka keeps it (in memory); one with a changelog refuses it.
	State map[string][]byte
}

// RunPipelineAs is RunPipeline with every step's call given ev.
func (p *Pool) RunPipelineAs(ctx context.Context, steps []pipeline.Step, ev Event, in io.Reader, out io.Writer) error {
	if len(steps) == 0 {
		return errors.New("a pipeline needs at least one step")
	}
	fns := make([]string, 0, len(steps))
	for _, s := range steps {
		fns = append(fns, s.Function)
	}
	if err := p.seedState(ctx, fns, ev.State); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(steps))
	for i, s := range steps {
		var next io.Reader
		var w io.Writer = out
		var pw *io.PipeWriter
		if i < len(steps)-1 {
			var pr *io.PipeReader
			pr, pw = io.Pipe()
			next, w = pr, pw
		}
		go func(i int, s pipeline.Step, in io.Reader, w io.Writer, pw *io.PipeWriter) {
			var meta map[string]string
			if len(ev.Params) > 0 {
				meta = make(map[string]string, len(ev.Params))
				for k, v := range ev.Params {
					meta["param."+strings.ToLower(k)] = v
				}
			}
			call, end := p.localCall(p.fns[s.Function], i, &Call{Input: in, Output: w, Options: s.Options, Meta: meta, StateKey: ev.Key})
			err := end(p.Invoke(ctx, s.Function, call))
			if err != nil {
				p.logDetail(s.Function, err)
				err = fmt.Errorf("step %d (%s): %w", i+1, s.Function, err)
				cancel()
			}
			if pw != nil {
				pw.CloseWithError(err)
			}
			// Drain what the previous step still sends, so it can finish.
			if r, ok := in.(*io.PipeReader); ok {
				r.CloseWithError(errors.New("the next step finished"))
			}
			errs <- err
		}(i, s, in, w, pw)
		in = next
	}
	// Report the step that failed first, not the steps it cancelled.
	var first, cause error
	for range steps {
		err := <-errs
		if err != nil && first == nil {
			first = err
		}
		if err != nil && cause == nil && !errors.Is(err, context.Canceled) {
			cause = err
		}
	}
	p.captureState(fns, ev.State)
	if cause != nil {
		return cause
	}
	return first
}
