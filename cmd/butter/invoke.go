package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/hashicorp/cli"

	"github.com/butterfn/butter/gateway"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/plugins/runtime"
	"github.com/butterfn/butter/sandbox"
	"github.com/butterfn/butter/sdk"
	"github.com/butterfn/butter/secrets"
)

type invokeCommand struct{ ui cli.Ui }

func (c *invokeCommand) Synopsis() string { return "Invoke a function or a pipeline" }

func (c *invokeCommand) Help() string {
	return trimHelp(`
Usage: butter invoke [options] <function | "a | b | c">
       butter invoke -local [dir] <function | "a | b | c">

  Reads the input from standard input, runs the function (or the pipeline)
  and writes its output to standard output, as it streams. Without -local,
  the call goes to a running platform's gateway (butter dev, or butter
  gateway): POST /v1/invoke/<project> with the steps in the Butter-Pipeline
  header. With -local, the project in dir
  (default: the current directory) runs in a pool inside this process: the
  same pool code Nomad runs, with no cluster at all.

  A pipeline streams each step's output into the next step's input. A step
  may carry options, which reach the function next to its input (an exec
  function gets them as flags):

      echo "I hate this" | butter invoke -local examples/pipeline "sed | to-upper"
      echo "I hate this" | butter invoke -local examples/pipeline "sed e=s/hate/like/ | to-upper"

  A pipeline declared in the spec can be named too: butter invoke -local . shout

  Exit status: 0 on success, 1 when a step fails (the error, with its type,
  goes to standard error), 2 for a usage error.

Options:

  -local
    Run the project locally, in this process.

  -gateway=http://127.0.0.1:8080
    The gateway to call. Default: $BUTTER_GATEWAY, else http://127.0.0.1:8080.

  -project=<name>
    The project whose functions the steps name. Default: the project in the
    current directory.

  -api-key=<key>
    An API key of the project. Default: $BUTTER_API_KEY. butter dev needs none.
`)
}

// step is one parsed pipeline step.
type step struct {
	function string
	options  map[string]string
}

// parsePipeline parses `a k=v | b`. Names of pipelines declared in the
// project expand into their steps.
func parsePipeline(expr string, proj *spec.Project) ([]step, error) {
	var out []step
	for _, part := range strings.Split(expr, "|") {
		fields := strings.Fields(part)
		if len(fields) == 0 {
			return nil, fmt.Errorf("empty step in %q", expr)
		}
		s := step{function: fields[0], options: map[string]string{}}
		for _, kv := range fields[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("step %q: option %q is not name=value", fields[0], kv)
			}
			s.options[k] = v
		}
		if pl := proj.Pipeline(s.function); pl != nil {
			if len(s.options) > 0 {
				return nil, fmt.Errorf("step %q is a pipeline; options go on its functions", s.function)
			}
			out = append(out, expand(pl)...)
			continue
		}
		if proj.Function(s.function) == nil {
			names := make([]string, 0)
			for _, f := range proj.Functions {
				names = append(names, f.Name)
			}
			for _, p := range proj.Pipelines {
				names = append(names, p.Name)
			}
			return nil, fmt.Errorf("no function or pipeline %q in project %s (it has: %s)", s.function, proj.Name, strings.Join(names, ", "))
		}
		out = append(out, s)
	}
	return out, nil
}

func expand(pl *spec.Pipeline) []step {
	var out []step
	for _, st := range pl.Steps {
		if st.Pipeline != nil {
			out = append(out, expand(st.Pipeline)...)
			continue
		}
		out = append(out, step{function: st.Function.Name, options: st.Options})
	}
	return out
}

func (c *invokeCommand) Run(args []string) int {
	fs := newFlagSet("invoke")
	local := fs.Bool("local", false, "")
	gw := fs.String("gateway", "", "")
	project := fs.String("project", "", "")
	apiKey := fs.String("api-key", "", "")
	pos, err := parseInterspersed(fs, args)
	if err == nil && !*local {
		if len(pos) != 1 {
			return usageError(c.ui, c.Help(), errors.New("give one function or pipeline to invoke (-local takes a project directory too)"), nil, 2)
		}
		return c.remote(pos[0], *gw, *project, *apiKey)
	}
	if err == nil && (len(pos) < 1 || len(pos) > 2) {
		err = errors.New("give a function or pipeline to invoke, and optionally the project directory before it")
	}
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 2)
	}
	dir, expr := ".", pos[0]
	if len(pos) == 2 {
		dir, expr = pos[0], pos[1]
	}
	proj, rep := spec.Load(dir)
	if err := rep.WriteText(os.Stderr); err != nil || proj == nil {
		return exitInvalid
	}
	steps, err := parsePipeline(expr, proj)
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	sdks, err := sdk.Install(cache + "/butter")
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	var logs []*lineWriter
	defer func() {
		for _, l := range logs {
			l.Close() // after the pool stopped: flush what the functions logged last
		}
	}()
	opts := []pool.Option{pool.WithSDKs(sdks), pool.WithLimits(runtime.SystemLimits())}
	if hasSecrets(proj) {
		// As butter dev: the project's .butter/secrets.env, then the
		// environment (docs/secrets-dev.md).
		file := filepath.Join(proj.Dir, ".butter", "secrets.env")
		opts = append(opts, pool.WithSecrets(secrets.Chain{secrets.Dotenv{Path: file}, secrets.Env{}}),
			pool.WithSandbox(sandbox.Config{Hide: []string{file}}))
	}
	p, err := pool.New(jobs.LocalConfig(proj), func(fn string) io.Writer {
		l := newLineWriter(os.Stderr, "["+fn+"] ")
		logs = append(logs, l)
		return l
	}, opts...)
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	if err := p.Start(ctx); err != nil {
		c.ui.Error("Error: " + err.Error())
	}
	defer p.Stop()
	if err := runSteps(ctx, p, steps, os.Stdin, os.Stdout); err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	return exitOK
}

// runSteps streams input through the steps, each step's output piped into
// the next one's input, all running at once.
func runSteps(ctx context.Context, p *pool.Pool, steps []step, in io.Reader, out io.Writer) error {
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
		go func(i int, s step, in io.Reader, w io.Writer, pw *io.PipeWriter) {
			err := p.Invoke(ctx, s.function, &pool.Call{Input: in, Output: w, Options: s.options})
			if err != nil {
				err = fmt.Errorf("step %d (%s): %w", i+1, s.function, err)
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
	if cause != nil {
		return cause
	}
	return first
}

// lineWriter tags each line a function logs with the function's name.
// It is safe for concurrent use; Close writes a last partial line.
type lineWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func newLineWriter(w io.Writer, prefix string) *lineWriter {
	return &lineWriter{w: w, prefix: prefix}
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		fmt.Fprintf(l.w, "%s%s\n", l.prefix, l.buf[:i])
		l.buf = l.buf[i+1:]
	}
}

func (l *lineWriter) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		fmt.Fprintf(l.w, "%s%s\n", l.prefix, l.buf)
		l.buf = nil
	}
	return nil
}

// remote invokes through a running platform's gateway.
func (c *invokeCommand) remote(expr, gw, project, apiKey string) int {
	if gw == "" {
		gw = or(os.Getenv("BUTTER_GATEWAY"), "http://127.0.0.1:8080")
	}
	if apiKey == "" {
		apiKey = os.Getenv("BUTTER_API_KEY")
	}
	if project == "" {
		proj, rep := spec.Load(".")
		if proj == nil || rep.HasErrors() {
			return usageError(c.ui, c.Help(), errors.New("give -project: there is no valid project in the current directory to take its name from"), nil, 2)
		}
		project = proj.Name
	}
	req, err := http.NewRequest("POST", strings.TrimRight(gw, "/")+"/v1/invoke/"+project, os.Stdin)
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	req.Header.Set(gateway.HeaderPipeline, expr)
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.ui.Error(fmt.Sprintf("Error: cannot reach the gateway at %s (is butter dev running? set -gateway or $BUTTER_GATEWAY): %v", gw, err))
		return exitInvalid
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error, Type string }
		b, _ := io.ReadAll(resp.Body)
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			c.ui.Error(fmt.Sprintf("Error (%s, %s): %s", resp.Status, e.Type, e.Error))
		} else {
			c.ui.Error(fmt.Sprintf("Error (%s): %s", resp.Status, strings.TrimSpace(string(b))))
		}
		return exitInvalid
	}
	if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
		c.ui.Error("Error: the answer was cut: " + err.Error())
		return exitInvalid
	}
	if e := resp.Trailer.Get("Butter-Error"); e != "" {
		c.ui.Error("Error: " + e)
		return exitInvalid
	}
	return exitOK
}
