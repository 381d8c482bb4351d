package dev

import (
	"context"
	"errors"
	"fmt"
	"github.com/butterfn/butter/deps"
	"github.com/butterfn/butter/jobs"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/butterfn/butter/deploy"
	"github.com/butterfn/butter/gateway"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/routes"
	"github.com/butterfn/butter/sandbox"
	"github.com/butterfn/butter/secrets"
	"github.com/hashicorp/go-hclog"
)

// drainDelay is how long a replaced pool keeps serving before it drains.
const drainDelay = 2 * time.Second

// livePool is one revision's pool and its HTTP server.
type livePool struct {
	revision string
	cfg      *pool.Config
	pool     *pool.Pool
	srv      *http.Server
	addr     string
	// started is when the pool started: its counters were zero then
	// (stats.go).
	started time.Time
	// pycache is the pool's own tree of Python bytecode
	// (PYTHONPYCACHEPREFIX), removed when the pool stops; "" when the
	// project has no python function.
	pycache string
}

// pycacheSeq numbers the pools' bytecode trees.
var pycacheSeq atomic.Int64

// SeparatePycache gives each python function of cfg a bytecode tree of
// this pool's own (PYTHONPYCACHEPREFIX, under the temp dir), and returns
// it, "" when cfg has no python function; the caller removes it when the
// pool stops. butter dev (and butter invoke -local) runs
// functions from the project's own files: with Python's default
// __pycache__ beside them, an edit that keeps a file's size within the
// second of its last compilation would be served from the stale
// bytecode (Python compares the source's size and mtime in whole
// seconds). A fresh tree per pool compiles what each revision runs, and
// leaves no __pycache__ in the project.
func SeparatePycache(cfg *pool.Config) string {
	dir := ""
	for i := range cfg.Functions {
		f := &cfg.Functions[i]
		if f.Runtime != "python" {
			continue
		}
		if dir == "" {
			dir = filepath.Join(os.TempDir(), "butter-dev-pycache", fmt.Sprintf("%d-%d", os.Getpid(), pycacheSeq.Add(1)))
		}
		env := map[string]string{"PYTHONPYCACHEPREFIX": dir}
		for k, v := range f.Env {
			env[k] = v // the function's own setting wins
		}
		f.Env = env
	}
	return dir
}

// deploy starts a pool running proj, which loads every function (the
// pool's preflight, one instance each even with min = 0), records the
// revision and switches the gateway to the new pool; the previous pool
// drains in the background.
//
// When a function of the new pool cannot start while a previous revision
// serves it, nothing switches: the new pool is stopped, no revision is
// recorded, and the error wraps the *pool.LoadError naming each function
// with its error and the worker's stderr. The first revision has nothing
// to keep, so it serves with its failed functions answering 503
// (reported through d.ui) until a change fixes them; a later change in
// which only those still fail is switched to the same way.
func (d *env) deploy(ctx context.Context, proj *spec.Project) error {
	return d.deployAs(ctx, proj, "")
}

// deployAs is deploy; with a revision, proj is that revision, recorded
// and active already (followActive), and nothing is pushed.
func (d *env) deployAs(ctx context.Context, proj *spec.Project, revision string) error {
	p, err := d.startPool(ctx, proj)
	var le *pool.LoadError
	switch {
	case errors.As(err, &le):
		d.mu.Lock()
		serving := d.current
		d.mu.Unlock()
		if serving != nil && worse(le, serving.pool.Unhealthy()) {
			d.stopPool(p)
			return fmt.Errorf("the new revision does not load: %w", err)
		}
		d.ui.Error("==> some functions cannot start; their calls answer 503 Unavailable until a change fixes them:")
		d.reportLoad(le)
	case err != nil:
		return err
	}
	if revision == "" {
		rev, err := deploy.Push(ctx, d.client, d.dir, proj, deploy.ForDev())
		if err != nil {
			d.stopPool(p)
			return fmt.Errorf("record the revision: %w", err)
		}
		revision = rev.Revision
	}
	p.revision, p.cfg.Revision = revision, revision
	if err := d.serve(p); err != nil {
		d.stopPool(p)
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
	if err := d.gw.SetRoutes(routes.FromSpec(proj, revision)); err != nil {
		d.mu.Lock()
		if d.current != nil {
			// The routes did not change: point them back at the pool
			// that keeps serving before this one stops.
			for _, name := range poolNames(d.proj) {
				d.resolver.Set(d.proj.Name, name, d.current.addr)
			}
		}
		d.mu.Unlock()
		d.stopPool(p)
		return fmt.Errorf("routes: %w", err)
	}
	d.mu.Lock()
	old := d.current
	d.current, d.proj = p, proj
	d.mu.Unlock()
	if err := d.recordServing(proj.Name, revision, p); err != nil {
		d.log.Warn("butter status will not show the revision serving", "error", err)
	}
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
	} else if err := p.pool.StartLogs(d.broker.Config()); err != nil {
		return fmt.Errorf("ship the functions' logs: %w", err)
	}
	return nil
}

// worse reports whether a function fails in the new pool (le) that does
// not in the serving one (failed): switching would break it. A change
// that fixes nothing but breaks nothing more (a function that failed
// already still fails) is switched to, so that a function broken since
// the first revision does not hold back every other change.
func worse(le *pool.LoadError, failed map[string]string) bool {
	for name := range le.Functions {
		if _, ok := failed[name]; !ok {
			return true
		}
	}
	return false
}

// startPool starts a pool for proj, not yet serving (serve). A
// *pool.LoadError comes with the pool, which runs the other functions;
// any other error with none.
func (d *env) startPool(ctx context.Context, proj *spec.Project) (*livePool, error) {
	cfg := jobs.LocalConfig(proj) // every path absolute
	if err := deps.SetNodePaths(ctx, deps.Default(), cfg); err != nil {
		return nil, err
	}
	if err := d.useEmbeddedMQTT(cfg); err != nil {
		return nil, err
	}
	if err := cfg.Decrypt(ctx, secrets.EnvDecrypter(proj.Name)); err != nil {
		return nil, fmt.Errorf("%w: butter dev decrypts with the Vault at $VAULT_ADDR (token $VAULT_TOKEN) when set; or name one of the connector's secrets instead (docs/secrets-dev.md)", err)
	}
	pycache := SeparatePycache(cfg)
	plog := d.log.Named("pool")
	// Every instance runs confined, each function's losing the other
	// functions' bundles, butter dev's data and the secrets file; the
	// butter binary runs the shim itself (Exe ""): see main.
	opts := []pool.Option{pool.WithLogger(plog), pool.WithSDKs(d.sdks), pool.WithLimits(d.limits),
		pool.WithSandbox(sandbox.Config{Hide: []string{d.dataDir, d.secretsFile}})}
	if HasSecrets(proj) {
		opts = append(opts, pool.WithSecrets(d.secrets()))
	}
	progress := newStartReporter(d.ui)
	defer progress.finish()
	opts = append(opts, pool.WithStartProgress(progress.update))
	p, err := pool.New(cfg, func(fn string) io.Writer {
		return plog.Named(fn).StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true})
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("pool: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	lp := &livePool{cfg: cfg, pool: p, started: time.Now().UTC(), pycache: pycache}
	if err := p.Start(sctx); err != nil {
		var le *pool.LoadError
		if errors.As(err, &le) {
			return lp, err
		}
		p.Close()
		if pycache != "" {
			_ = os.RemoveAll(pycache)
		}
		return nil, fmt.Errorf("pool: %w", err)
	}
	return lp, nil
}

// serve starts p's HTTP server on a free local port.
func (d *env) serve(p *livePool) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	p.srv = &http.Server{Handler: p.pool.Handler(), ReadHeaderTimeout: 10 * time.Second}
	p.addr = ln.Addr().String()
	go func() { _ = p.srv.Serve(ln) }()
	return nil
}

// reportLoad tells the developer why each function of le could not start:
// its error, with the worker's stderr (a traceback) indented below.
func (d *env) reportLoad(le *pool.LoadError) {
	for _, name := range le.Names() {
		lines := strings.Split(strings.TrimRight(le.Functions[name].Error(), "\n"), "\n")
		d.ui.Error(fmt.Sprintf("    function %s: %s", name, lines[0]))
		for _, l := range lines[1:] {
			d.ui.Error("      " + l)
		}
	}
}

// stopPool waits for the pool's calls in flight, then stops it.
func (d *env) stopPool(p *livePool) {
	if p.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = p.srv.Shutdown(ctx)
	}
	p.pool.Close()
	if p.pycache != "" {
		_ = os.RemoveAll(p.pycache)
	}
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
