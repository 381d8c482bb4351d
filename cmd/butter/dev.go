package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/gateway"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/plugins/runtime"
	"github.com/butterfn/butter/routes"
	"github.com/butterfn/butter/sandbox"
	"github.com/butterfn/butter/scheduler"
	"github.com/butterfn/butter/sdk"
	"github.com/butterfn/butter/secrets"
	"github.com/hashicorp/cli"
	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kgo"
)

type devCommand struct{ ui cli.Ui }

func (c *devCommand) Synopsis() string {
	return "Run the whole platform on one machine, with a project deployed"
}
func (c *devCommand) Help() string {
	return trimHelp(`
Usage: butter dev [options] [dir]

  Runs a single-node control plane, the embedded Kafka-protocol broker, a
  local pool (the pool code the Nomad driver runs) and the gateway in one
  process, deploys the project in dir (default: the current directory), and
  prints its routes and a ready line.

  It watches the project's files. A valid change is deployed as a new
  revision: a new pool starts, the gateway switches to it, and the old pool
  drains (requests in flight finish on the old revision). An invalid change
  is reported and the running revision keeps serving. Ctrl-C stops
  everything.

Options:

  -listen=127.0.0.1:8080
    The gateway's address.

  -server-addr=127.0.0.1:4750
    The control plane's HTTP API (butter status, butter revisions use it).

  -kafka-port=0
    The embedded broker's port (0: any free port). Printed at start.

  -data-dir=<dir>/.butter/dev
    Where the control plane and the broker keep their state.

  -api-key=KEY
    An API key the gateway accepts on api_key routes (repeatable through a
    comma-separated list). Default: $BUTTER_DEV_API_KEY, or "dev-key".

  -secrets=<dir>/.butter/secrets.env
    Where the values of the functions' secrets come from, before the
    environment of butter dev: NAME=value lines, or function.NAME=value to
    give one function its own value (docs/secrets-dev.md). Only a project
    whose functions declare secrets reads it; its functions then run
    confined, unable to read this file, the data dir or each other's
    environment. A missing secret fails the deploy. A change to the file
    redeploys.
`)
}

func (c *devCommand) Run(args []string) int {
	fset := newFlagSet("dev")
	listen := fset.String("listen", "127.0.0.1:8080", "")
	serverAddr := fset.String("server-addr", "127.0.0.1:4750", "")
	kafkaPort := fset.Int("kafka-port", 0, "")
	dataDir := fset.String("data-dir", "", "")
	apiKeys := fset.String("api-key", "", "")
	secretsFile := fset.String("secrets", "", "")
	pos, err := parseInterspersed(fset, args)
	if err != nil || len(pos) > 1 {
		return usageError(c.ui, c.Help(), err, pos, 1)
	}
	dir := "."
	if len(pos) == 1 {
		dir = pos[0]
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	if *dataDir == "" {
		*dataDir = filepath.Join(dir, ".butter", "dev")
	}
	if *secretsFile == "" {
		*secretsFile = filepath.Join(dir, ".butter", "secrets.env")
	}
	for _, p := range []*string{dataDir, secretsFile} {
		if abs, err := filepath.Abs(*p); err == nil {
			*p = abs
		}
	}
	if *apiKeys == "" {
		*apiKeys = os.Getenv("BUTTER_DEV_API_KEY")
	}
	if *apiKeys == "" {
		*apiKeys = "dev-key"
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "dev", Output: os.Stderr, Level: hclog.LevelFromString(or(os.Getenv("BUTTER_LOG_LEVEL"), "info"))})

	proj, rep := spec.Load(dir)
	if err := rep.WriteText(os.Stderr); err != nil || proj == nil {
		return exitInvalid
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	d := &devEnv{ui: c.ui, log: log, dir: dir, dataDir: *dataDir, secretsFile: *secretsFile}
	defer d.close()
	if err := d.start(ctx, *dataDir, *serverAddr, *listen, *kafkaPort, strings.Split(*apiKeys, ",")); err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	if err := d.deploy(ctx, proj); err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	d.printReady(proj)
	d.watch(ctx)
	c.ui.Output("==> stopping")
	return exitOK
}

// devEnv is everything `butter dev` runs.
type devEnv struct {
	ui  cli.Ui
	log hclog.Logger
	dir string
	// dataDir and secretsFile are hidden from the functions of a project
	// with secrets; secretsFile is read on each deploy (devSecrets).
	dataDir     string
	secretsFile string

	broker    *broker.Dev
	kcl       *kgo.Client
	server    *scheduler.Server
	base      string
	gw        *gateway.Gateway
	gwSrv     *http.Server
	gwAddr    string
	resolver  *gateway.StaticResolver
	memKeys   *gateway.MemKeys
	requester *broker.Requester
	apiKeys   []string
	sdks      *runtime.SDKs
	limits    *runtime.Limits

	mu      sync.Mutex
	current *devPool
	proj    *spec.Project
	drains  sync.WaitGroup
}

// drainDelay is how long a replaced pool keeps serving before it drains.
const drainDelay = 2 * time.Second

// devPool is one revision's pool and its HTTP server.
type devPool struct {
	revision string
	cfg      *pool.Config
	pool     *pool.Pool
	srv      *http.Server
	addr     string
}

func (d *devEnv) start(ctx context.Context, dataDir, serverAddr, listen string, kafkaPort int, keys []string) error {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	b, err := broker.StartDev(kafkaPort, filepath.Join(dataDir, "broker"))
	if err != nil {
		return fmt.Errorf("start the embedded broker: %w", err)
	}
	d.broker = b
	opts, err := b.Config().Opts()
	if err != nil {
		return err
	}
	if d.kcl, err = kgo.NewClient(append(opts, broker.ProducerOpts()...)...); err != nil {
		return fmt.Errorf("broker client: %w", err)
	}
	// The dev control plane starts empty each time, like nomad agent
	// -dev: its Raft node is named after its address, which may change
	// between runs. The broker keeps its topics.
	if err := os.RemoveAll(filepath.Join(dataDir, "server")); err != nil {
		return fmt.Errorf("reset the dev control plane: %w", err)
	}
	raftAddr, err := freeLocalAddr()
	if err != nil {
		return err
	}
	d.server, err = scheduler.Start(scheduler.Config{
		DataDir: filepath.Join(dataDir, "server"), HTTPAddr: serverAddr, RaftAddr: raftAddr, BootstrapExpect: 1, Alone: true,
		Logger: d.log.Named("server"), Firer: &scheduler.KafkaFirer{Client: d.kcl},
	})
	if err != nil {
		return fmt.Errorf("start the control plane on %s: %w (another butter dev or server running? pick another -server-addr)", serverAddr, err)
	}
	d.base = "http://" + d.server.Addr()
	if err := waitLeader(ctx, d.base); err != nil {
		return err
	}
	if d.sdks, err = sdk.Install(filepath.Join(os.TempDir(), "butter-sdk")); err != nil {
		return fmt.Errorf("install the SDKs: %w", err)
	}
	d.limits = runtime.SystemLimits()
	if err := d.limits.Available(); err != nil {
		d.log.Debug("per-instance memory and process limits are off", "reason", err)
	}
	if d.requester, err = broker.NewRequester(ctx, b.Config(), "butter._replies.dev"); err != nil {
		return fmt.Errorf("queued routes: %w", err)
	}
	memKeys := gateway.NewMemKeys()
	d.resolver = gateway.NewStaticResolver()
	d.gw = gateway.New(d.resolver, gateway.WithLogger(d.log.Named("gateway")), gateway.WithKeys(memKeys),
		gateway.WithInvokeAuth(gateway.AuthNone), gateway.WithRequester(d.requester), gateway.WithPlacement(routes.Placement(func(string) *spec.Project {
			d.mu.Lock()
			defer d.mu.Unlock()
			return d.proj
		})))
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("gateway: %w (pick another -listen)", err)
	}
	d.gwAddr = ln.Addr().String()
	d.gwSrv = &http.Server{Handler: d.gw, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = d.gwSrv.Serve(ln) }()
	d.memKeys, d.apiKeys = memKeys, keys
	return nil
}

// deploy records a revision of proj and switches the gateway to a new
// pool running it; the previous pool drains in the background.
func (d *devEnv) deploy(ctx context.Context, proj *spec.Project) error {
	quiet := cli.Ui(&cli.BasicUi{Writer: io.Discard, ErrorWriter: os.Stderr})
	rev, err := recordRevision(quiet, d.base, d.dir, proj)
	if err != nil {
		return fmt.Errorf("record the revision: %w", err)
	}
	p, err := d.startPool(ctx, proj, rev.Revision)
	if err != nil {
		return err
	}
	for _, k := range d.apiKeys {
		if k = strings.TrimSpace(k); k != "" {
			d.memKeys.Put(gateway.HashKey(k), proj.Name)
		}
	}
	for _, name := range poolNames(proj) {
		d.resolver.Set(proj.Name, name, p.addr)
	}
	if err := d.gw.SetRoutes(routes.FromSpec(proj, rev.Revision)); err != nil {
		d.stopPool(p)
		return fmt.Errorf("routes: %w", err)
	}
	d.mu.Lock()
	old := d.current
	d.current, d.proj = p, proj
	d.mu.Unlock()
	if old != nil {
		d.drains.Add(1)
		go func() {
			defer d.drains.Done()
			// Like a load balancer's deregistration delay: a call that
			// resolved the old pool just before the switch may still be
			// about to reuse a keep-alive connection to it; closing idle
			// connections now (Shutdown, or turning keep-alives off)
			// would close that connection under it. Nothing resolves the
			// old pool after the switch, so after the delay they are idle
			// for good.
			select {
			case <-ctx.Done():
			case <-time.After(drainDelay):
			}
			d.stopPool(old)
			d.log.Info("previous revision drained", "revision", old.revision)
		}()
	}
	if p.cfg.HasStreams() {
		if err := p.pool.StartStreams(ctx, d.broker.Config()); err != nil {
			return fmt.Errorf("consume the project's streams: %w", err)
		}
	}
	return nil
}

func (d *devEnv) startPool(ctx context.Context, proj *spec.Project, revision string) (*devPool, error) {
	cfg := jobs.LocalConfig(proj)
	cfg.Revision = revision
	for i := range cfg.Functions {
		if b := cfg.Functions[i].Bundle; b != "" && !filepath.IsAbs(b) {
			cfg.Functions[i].Bundle = filepath.Join(d.dir, b)
		} else if b == "" {
			cfg.Functions[i].Bundle = d.dir
		}
	}
	plog := d.log.Named("pool")
	opts := []pool.Option{pool.WithLogger(plog), pool.WithSDKs(d.sdks), pool.WithLimits(d.limits)}
	if hasSecrets(proj) {
		// The butter binary runs the shim itself (Exe ""): see main.
		opts = append(opts, pool.WithSecrets(d.secrets()),
			pool.WithSandbox(sandbox.Config{Hide: []string{d.dataDir, d.secretsFile}}))
	}
	p, err := pool.New(cfg, func(fn string) io.Writer {
		return plog.Named(fn).StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true})
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("pool: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := p.Start(sctx); err != nil {
		d.log.Warn("some minimum instances did not start", "error", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		p.Stop()
		return nil, err
	}
	srv := &http.Server{Handler: p.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &devPool{revision: revision, cfg: cfg, pool: p, srv: srv, addr: ln.Addr().String()}, nil
}

// stopPool waits for the pool's calls in flight, then stops it.
func (d *devEnv) stopPool(p *devPool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = p.srv.Shutdown(ctx)
	p.pool.Stop()
}

func (d *devEnv) close() {
	if d.gwSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = d.gwSrv.Shutdown(ctx)
		cancel()
	}
	if d.gw != nil {
		d.gw.Close()
	}
	d.drains.Wait()
	d.mu.Lock()
	cur := d.current
	d.current = nil
	d.mu.Unlock()
	if cur != nil {
		d.stopPool(cur)
	}
	if d.requester != nil {
		d.requester.Close()
	}
	if d.server != nil {
		d.server.Shutdown()
	}
	if d.kcl != nil {
		d.kcl.Close()
	}
	if d.broker != nil {
		d.broker.Close()
	}
}

func (d *devEnv) printReady(proj *spec.Project) {
	gw := "http://" + d.gwAddr
	d.ui.Output(fmt.Sprintf("==> project %q deployed (revision %s)", proj.Name, d.current.revision))
	d.ui.Output("    routes:")
	var example string
	for _, r := range d.gw.Routes() {
		target := r.Function
		if len(r.Pipeline) > 0 {
			target = strings.Join(r.Pipeline, " | ")
		}
		auth := ""
		if r.Auth != "" && r.Auth != gateway.AuthNone {
			auth = " (" + r.Auth + ")"
		}
		d.ui.Output(fmt.Sprintf("      %-7s %s%s -> %s%s", r.Method, gw, r.Path, target, auth))
		if example == "" && r.Method == "POST" && !strings.Contains(r.Path, "{") && (r.Auth == "" || r.Auth == gateway.AuthNone) {
			example = fmt.Sprintf("curl -s -X POST --data-binary 'hello, butter' %s%s", gw, r.Path)
		}
	}
	d.printSecrets(proj)
	d.ui.Output(fmt.Sprintf("    control plane: %s   broker: %s", d.base, d.broker.Addr))
	if example != "" {
		d.ui.Output("    try: " + example)
	}
	d.ui.Output(fmt.Sprintf("==> butter dev ready: gateway %s (watching %s; Ctrl-C stops)", gw, d.dir))
}

// watch redeploys on file changes until ctx ends.
func (d *devEnv) watch(ctx context.Context) {
	last := d.stamp()
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(300 * time.Millisecond):
		}
		fp := d.stamp()
		if fp == last {
			continue
		}
		// Let a burst of saves settle.
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			next := d.stamp()
			if next == fp {
				break
			}
			fp = next
		}
		last = fp
		d.ui.Output("==> change detected; redeploying")
		proj, rep := spec.Load(d.dir)
		if err := rep.WriteText(os.Stderr); err != nil || proj == nil {
			d.ui.Error("==> the change is invalid; the running revision keeps serving")
			continue
		}
		start := time.Now()
		if err := d.deploy(ctx, proj); err != nil {
			d.ui.Error("==> redeploy failed; the running revision keeps serving: " + err.Error())
			continue
		}
		d.ui.Output(fmt.Sprintf("==> revision %s serving (deployed in %s)", d.current.revision, time.Since(start).Round(time.Millisecond)))
		d.printSecrets(proj)
	}
}

// stamp is what watch compares: the project's files and, when the
// running project has secrets, the secrets file (a dot-directory, which
// fingerprint skips).
func (d *devEnv) stamp() string {
	fp := fingerprint(d.dir)
	d.mu.Lock()
	proj := d.proj
	d.mu.Unlock()
	if proj != nil && hasSecrets(proj) {
		if info, err := os.Stat(d.secretsFile); err == nil {
			fp += fmt.Sprintf(" %d %d", info.Size(), info.ModTime().UnixNano())
		}
	}
	return fp
}

// hasSecrets says whether any function of p declares a secret: only then
// does butter dev read secrets and confine the functions.
func hasSecrets(p *spec.Project) bool {
	for _, f := range p.Functions {
		if len(f.Secrets) > 0 {
			return true
		}
	}
	return false
}

// secrets is where butter dev finds the values of the functions'
// secrets: the secrets file, then its own environment. Both are read on
// each deploy.
func (d *devEnv) secrets() secrets.Source {
	return secrets.Chain{secrets.Dotenv{Path: d.secretsFile}, secrets.Env{}}
}

// printSecrets says which secrets each function gets and from where,
// never their values.
func (d *devEnv) printSecrets(proj *spec.Project) {
	if !hasSecrets(proj) {
		return
	}
	file := secrets.Dotenv{Path: d.secretsFile}
	shown := d.secretsFile
	if rel, err := filepath.Rel(d.dir, d.secretsFile); err == nil && !strings.HasPrefix(rel, "..") {
		shown = rel
	}
	d.ui.Output("    secrets (functions run confined):")
	for _, f := range proj.Functions {
		if len(f.Secrets) == 0 {
			continue
		}
		var from []string
		for _, s := range f.Secrets {
			where := "environment"
			if key, err := file.Key(f.Name, s.Name); err == nil && key != "" {
				where = shown + " " + key
			}
			from = append(from, fmt.Sprintf("%s (%s)", s.Name, where))
		}
		d.ui.Output(fmt.Sprintf("      %s: %s", f.Name, strings.Join(from, ", ")))
	}
}

// fingerprint hashes the names, sizes and modification times of the
// project's files, skipping dot-directories, node_modules and caches.
func fingerprint(dir string) string {
	h := sha256.New()
	var lines []string
	_ = filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		name := e.Name()
		if e.IsDir() && path != dir && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "__pycache__") {
			return filepath.SkipDir
		}
		if e.IsDir() {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return nil
		}
		lines = append(lines, fmt.Sprintf("%s %d %d", path, info.Size(), info.ModTime().UnixNano()))
		return nil
	})
	sort.Strings(lines)
	for _, l := range lines {
		io.WriteString(h, l+"\n")
	}
	return hex.EncodeToString(h.Sum(nil))
}

func poolNames(p *spec.Project) []string {
	seen := map[string]bool{gateway.DefaultPool: true}
	out := []string{gateway.DefaultPool}
	for _, f := range p.Functions {
		if f.Pool != "" && !seen[f.Pool] {
			seen[f.Pool] = true
			out = append(out, f.Pool)
		}
	}
	return out
}

func freeLocalAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitLeader(ctx context.Context, base string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var out struct{ Leader string }
		if err := getJSON(base+"/v1/status/leader", &out); err == nil && out.Leader != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errors.New("the control plane elected no leader within 30s")
}
