package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/butterfn/butter/names"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/cli"

	"github.com/butterfn/butter/deps"
	"github.com/butterfn/butter/dev"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/pipeline"
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

  An option is name=value; a value with blanks or | is quoted as a Go
  string: 'sed e="s/hate/really like/" | to-upper'.

  A pipeline declared in the spec can be named too: butter invoke -local . shout

  With -local, nothing goes to Kafka: what the functions emit (ctx.emit to
  their output or emits streams), the output of a function that has an
  output stream, and the state a function with state keeps are captured
  and, after the answer, printed to standard error (or to the -emits
  file), one JSON object a line, in order:

    {"kind":"emit","function":"ingest","stream":"readings",
     "topic":"iot.readings","key":"d1","id":"local-.../emit",
     "source":"butter/iot/ingest","type":"butter.emit","time":"...",
     "headers":{"ce_specversion":"1.0"},"data":{"temperature":21}}

  "kind" is emit, output or state; the other fields are those of butter
  tail (without partition, offset and timestamp): the record as the pool
  would have produced it. A state line is a key's state after the call,
  as the function's changelog topic would hold it ("data" null: the
  function deleted it); each run starts with no state but what -state
  gives. An emit to a stream the function may not emit to fails as it
  does on the platform. Standard output keeps only the answer; what the
  functions write to stderr, and their ctx.log calls ("warn: message"),
  go to standard error, each line tagged [function].

  Exit status: 0 on success, 1 when a step fails (the error, with its type,
  goes to standard error), 2 for a usage error.

Options:

  -local
    Run the project locally, in this process.

  -key=<key>
    With -local: the key of the event the input stands for. It is the
    state key of a function with state when the input has no key field (as
    the Butter-State-Key header is for an HTTP call), and the key of the
    captured outputs and of the emits that give none.

  -param=<name=value>
    With -local: a route parameter, as a route such as
    "POST /devices/{device}" gives it: the functions see it in ctx.params,
    and it is the state key of a function with state whose key it names.
    May be repeated.

  -replay=<file>
    With -local: run a recorded execution again (butter executions
    <project>/<function> <invocation> > file; "-" reads it from standard
    input): its input, key, path and query parameters, and the state its
    function had before it, unless -key, -param or -state say otherwise.

  -state=<key=json>
    With -local: the state of key before the first call, for each function
    of the pipeline with state (a JSON value), so that a call can be tried
    against a given state:
      butter invoke -local -state 'd1={"temperature":21}' examples/iot detect
    May be repeated, once per key.

  -emits=<file>
    With -local: write the captured records to file instead of standard
    error ("-" is standard error).

  -gateway=http://127.0.0.1:8080
    The gateway to call. Default: $BUTTER_GATEWAY, else http://127.0.0.1:8080.

  -project=<name>
    The project whose functions the steps name. Default: the project in the
    current directory.

  -api-key=<key>
    An API key of the project. Default: $BUTTER_API_KEY. butter dev needs none.
` + varHelp)
}

func (c *invokeCommand) Run(args []string) int {
	fs := newFlagSet("invoke")
	vf := addVarFlags(fs)
	local := fs.Bool("local", false, "")
	gw := fs.String("gateway", "", "")
	project := fs.String("project", "", "")
	apiKey := fs.String("api-key", "", "")
	key := fs.String("key", "", "")
	emits := fs.String("emits", "", "")
	replay := fs.String("replay", "", "")
	var params, states stringList
	fs.Var(&params, "param", "")
	fs.Var(&states, "state", "")
	pos, err := parseInterspersed(fs, args)
	if err == nil && *replay != "" && !*local {
		err = errors.New("-replay goes with -local: it runs a recorded execution again on this machine")
	}
	if err == nil && !*local && (*key != "" || *emits != "" || len(params) > 0 || len(states) > 0) {
		err = errors.New("-key, -param, -state and -emits go with -local: through a gateway, the route gives the parameters, the platform keeps the state, and emits go to Kafka (read them with butter tail)")
	}
	ev := pool.Event{Key: *key}
	for _, p := range params {
		name, value, ok := strings.Cut(p, "=")
		if err == nil && (!ok || name == "") {
			err = fmt.Errorf("-param %q is not name=value", p)
		}
		if ev.Params == nil {
			ev.Params = map[string]string{}
		}
		ev.Params[name] = value
	}
	for _, st := range states {
		k, v, ok := strings.Cut(st, "=")
		if err == nil && (!ok || k == "" || !json.Valid([]byte(v))) {
			err = fmt.Errorf("-state %q is not key=JSON value, such as d1={\"temperature\":21}", st)
		}
		if ev.State == nil {
			ev.State = map[string][]byte{}
		}
		ev.State[k] = []byte(v)
	}
	var input io.Reader = os.Stdin
	if err == nil && *replay != "" {
		input, err = replayExecution(*replay, &ev, c.ui)
	}
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
	proj, rep := spec.Load(dir, vf.options()...)
	if err := rep.WriteText(os.Stderr); err != nil || proj == nil {
		return exitInvalid
	}
	steps, err := pipeline.Parse(expr)
	if err == nil {
		steps, err = pipeline.Resolve(proj, steps)
	}
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 2)
	}

	var emitsTo io.Writer = os.Stderr
	if *emits != "" && *emits != "-" {
		f, err := os.Create(*emits)
		if err != nil {
			c.ui.Error(fmt.Sprintf("Error: -emits: %v", err))
			return exitInvalid
		}
		defer f.Close()
		emitsTo = f
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
	// Only the functions of the pipeline run: load them (a Go function is
	// built) before reading any input, outside any call's deadline, and
	// no others.
	// Every instance runs confined, as under butter pool and butter dev.
	file := filepath.Join(proj.Dir, ".butter", "secrets.env")
	var fns []string
	for _, s := range steps {
		fns = append(fns, s.Function)
	}
	capture := pool.NewCapture(proj.Name)
	opts := []pool.Option{pool.WithCapture(capture), pool.WithSDKs(sdks), pool.WithLimits(runtime.SystemLimits()), pool.WithPreflightOnly(fns...),
		pool.WithSandbox(sandbox.Config{Hide: []string{file}})}
	if hasSecrets(proj) {
		// As butter dev: the project's .butter/secrets.env, then the
		// environment (docs/secrets-dev.md).
		opts = append(opts, pool.WithSecrets(secrets.Chain{secrets.Dotenv{Path: file}, secrets.Env{}}))
	}
	cfg := jobs.LocalConfig(proj)
	if err := deps.SetNodePaths(context.Background(), deps.Default(), cfg); err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	if err := cfg.Decrypt(context.Background(), secrets.EnvDecrypter(proj.Name)); err != nil {
		c.ui.Error("Error: " + err.Error() + ": butter invoke -local decrypts with the Vault at $VAULT_ADDR (token $VAULT_TOKEN) when set")
		return exitInvalid
	}
	// Python bytecode in a tree of this run's own, as butter dev does: a
	// __pycache__ beside the sources can be stale after a quick edit.
	if dir := dev.SeparatePycache(cfg); dir != "" {
		defer os.RemoveAll(dir)
	}
	// On a terminal, what the start waits for (a Go or Java function's
	// first build, a slow import); nothing in a pipe.
	live := newLiveLine(os.Stderr, isTerminal(os.Stderr))
	began := time.Now()
	opts = append(opts, pool.WithStartProgress(func(sp pool.StartProgress) {
		if len(sp.Pending) > 0 {
			live.Update(fmt.Sprintf("loading functions: %d of %d loaded; waiting for %s (%s)", sp.Loaded, sp.Total, strings.Join(sp.Pending, ", "), time.Since(began).Round(time.Second)))
		}
	}))
	p, err := pool.New(cfg, func(fn string) io.Writer {
		l := newLineWriter(os.Stderr, "["+fn+"] ")
		logs = append(logs, l)
		return l
	}, opts...)
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	err = p.Start(ctx)
	live.Clear()
	if err != nil {
		c.ui.Error("Error: " + err.Error())
	}
	defer p.Close()
	err = p.RunPipelineAs(ctx, steps, ev, input, os.Stdout)
	// What was captured is printed after the answer, failed or not: the
	// emits of a call that failed later were produced all the same.
	if werr := writeCaptured(emitsTo, capture.Records()); werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	return exitOK
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
	steps, err := pipeline.Parse(expr)
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 2)
	}
	if gw == "" {
		gw = or(os.Getenv("BUTTER_GATEWAY"), "http://127.0.0.1:8080")
	}
	if apiKey == "" {
		apiKey = os.Getenv("BUTTER_API_KEY")
	}
	if project == "" {
		proj, rep := spec.Load(".", spec.WithVars(spec.VarsFromEnv(nil)...))
		if proj == nil || rep.HasErrors() {
			return usageError(c.ui, c.Help(), errors.New("give -project: there is no valid project in the current directory to take its name from"), nil, 2)
		}
		project = proj.Name
	}
	req, err := http.NewRequest("POST", strings.TrimRight(gw, "/")+names.InvokePathPrefix+project, os.Stdin)
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	req.Header.Set(names.HeaderPipeline, pipeline.Format(steps))
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
	if e := resp.Trailer.Get(names.HeaderError); e != "" {
		c.ui.Error("Error: " + e)
		return exitInvalid
	}
	return exitOK
}

// replayExecution reads a recorded execution (butter executions prints
// one; "-" reads it from standard input) into ev and returns its input:
// the call's key, path and query parameters and state before the call
// are the recorded ones.
func replayExecution(file string, ev *pool.Event, ui cli.Ui) (io.Reader, error) {
	var b []byte
	var err error
	if file == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, fmt.Errorf("-replay: %w", err)
	}
	var e pool.Execution
	if err := json.Unmarshal(b, &e); err != nil || e.Function == "" {
		return nil, fmt.Errorf("-replay %s: not an execution record as butter executions <project>/<function> <invocation> prints it (%v)", file, err)
	}
	in := []byte(e.Input)
	if e.InputBase64 != "" {
		if in, err = base64.StdEncoding.DecodeString(e.InputBase64); err != nil {
			return nil, fmt.Errorf("-replay %s: input_base64: %w", file, err)
		}
	}
	if e.Truncated {
		ui.Warn("Warning: the recorded execution was cut (truncated): its input may be incomplete.")
	}
	if k := e.Meta["ce_subject"]; k != "" && ev.Key == "" {
		ev.Key = k
	}
	for k, v := range e.Meta {
		if name, ok := strings.CutPrefix(k, "param."); ok {
			if ev.Params == nil {
				ev.Params = map[string]string{}
			}
			if _, set := ev.Params[name]; !set {
				ev.Params[name] = v
			}
		}
	}
	if e.StateKey != "" && len(e.StateBefore) > 0 {
		if ev.State == nil {
			ev.State = map[string][]byte{}
		}
		if _, set := ev.State[e.StateKey]; !set {
			ev.State[e.StateKey] = e.StateBefore
		}
	}
	what := "succeeded"
	if e.Error != nil {
		what = "failed with " + e.Error.Type + ": " + e.Error.Message
	}
	// On standard error: standard output is the call's.
	fmt.Fprintf(os.Stderr, "==> replaying invocation %s of %s (revision %s, %s), which %s\n", e.Invocation, e.Function, or(e.Revision, "unknown"), e.Time.Format(time.RFC3339), what)
	return bytes.NewReader(in), nil
}
