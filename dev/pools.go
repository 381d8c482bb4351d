package dev

import (
	"context"
	"fmt"
	"github.com/butterfn/butter/jobs"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/butterfn/butter/deploy"
	"github.com/butterfn/butter/gateway"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/routes"
	"github.com/butterfn/butter/sandbox"
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
}

// deploy records a revision of proj and switches the gateway to a new
// pool running it; the previous pool drains in the background.
func (d *env) deploy(ctx context.Context, proj *spec.Project) error {
	rev, err := deploy.Push(ctx, d.client, d.dir, proj)
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
	if err := d.recordServing(proj.Name, rev.Revision, p); err != nil {
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
	}
	return nil
}

func (d *env) startPool(ctx context.Context, proj *spec.Project, revision string) (*livePool, error) {
	cfg := jobs.LocalConfig(proj) // every path absolute
	cfg.Revision = revision
	plog := d.log.Named("pool")
	opts := []pool.Option{pool.WithLogger(plog), pool.WithSDKs(d.sdks), pool.WithLimits(d.limits)}
	if HasSecrets(proj) {
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
		p.Close()
		return nil, err
	}
	srv := &http.Server{Handler: p.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &livePool{revision: revision, cfg: cfg, pool: p, srv: srv, addr: ln.Addr().String()}, nil
}

// stopPool waits for the pool's calls in flight, then stops it.
func (d *env) stopPool(p *livePool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = p.srv.Shutdown(ctx)
	p.pool.Close()
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
