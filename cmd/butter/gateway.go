package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing/fstest"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/gateway"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/routes"
	"github.com/hashicorp/cli"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/api"
)

type gatewayCommand struct{ ui cli.Ui }

func (c *gatewayCommand) Synopsis() string { return "Run the HTTP gateway in front of the pools" }
func (c *gatewayCommand) Help() string {
	return trimHelp(`
Usage: butter gateway [options]

  Serves every active revision's http routes. Routes and API keys come from
  the control plane (-address), read every -refresh with stale reads, so the
  gateway keeps serving through a control-plane election; a new revision's
  routes apply without a restart. Pools are found through Nomad's service
  API (blocking queries on butter-<project>-<pool>) or, without Nomad, the
  -endpoint list.

Options:

  -listen=127.0.0.1:8080
    The address to serve on.

  -refresh=1s
    How often to read routes and keys from the control plane.

  -nomad-addr=<addr>
    Nomad's HTTP API, for pool discovery. Default: $NOMAD_ADDR.

  -endpoint=project/pool=host:port[,...]
    Static pool addresses, instead of Nomad.

  -kafka-brokers=host:port[,...]
    Kafka, for queued and async routes. Default: $BUTTER_KAFKA_BROKERS.
` + addrHelp)
}

func (c *gatewayCommand) Run(args []string) int {
	fset := newFlagSet("gateway")
	listen := fset.String("listen", "127.0.0.1:8080", "")
	refresh := fset.Duration("refresh", time.Second, "")
	nomadAddr := fset.String("nomad-addr", "", "")
	endpoints := fset.String("endpoint", "", "")
	kafka := fset.String("kafka-brokers", "", "")
	addr := fset.String("address", "", "")
	pos, err := parseInterspersed(fset, args)
	if err != nil || len(pos) > 0 {
		return usageError(c.ui, c.Help(), err, pos, 0)
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "gateway", Output: os.Stderr, Level: hclog.LevelFromString(or(os.Getenv("BUTTER_LOG_LEVEL"), "info"))})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var resolver gateway.Resolver
	if *nomadAddr == "" {
		*nomadAddr = os.Getenv("NOMAD_ADDR")
	}
	switch {
	case *endpoints != "":
		st := gateway.NewStaticResolver()
		for _, e := range strings.Split(*endpoints, ",") {
			key, hostport, ok := strings.Cut(strings.TrimSpace(e), "=")
			project, pool, ok2 := strings.Cut(key, "/")
			if !ok || !ok2 || project == "" || pool == "" || hostport == "" {
				return usageError(c.ui, c.Help(), fmt.Errorf("-endpoint %q is not project/pool=host:port", e), nil, 0)
			}
			st.Set(project, pool, hostport)
		}
		resolver = st
	case *nomadAddr != "":
		nc, err := api.NewClient(&api.Config{Address: *nomadAddr})
		if err != nil {
			log.Error("cannot reach Nomad", "error", err)
			return exitInvalid
		}
		nr := gateway.NewNomadResolver(nc, log.Named("nomad"))
		defer nr.Close()
		resolver = nr
	default:
		return usageError(c.ui, c.Help(), errors.New("give -nomad-addr (or $NOMAD_ADDR) or -endpoint, so the gateway can find the pools"), nil, 0)
	}

	keys := gateway.NewMemKeys()
	rs := &routeSync{base: serverAddr(*addr), keys: keys, log: log, specs: map[string]*spec.Project{}, active: map[string]string{}}
	opts := []gateway.Option{gateway.WithLogger(log), gateway.WithKeys(keys), gateway.WithPlacement(rs.placement)}
	kcfg := broker.ConfigFromEnv()
	if *kafka != "" {
		kcfg = broker.Config{Brokers: strings.Split(*kafka, ",")}
	}
	// Queued and async routes always get a requester, so that one such
	// route cannot keep a whole table out when Kafka is absent: without
	// brokers, its calls fail with a clear error instead.
	lr := &lazyRequester{}
	defer lr.close()
	if len(kcfg.Brokers) > 0 {
		host, _ := os.Hostname()
		go lr.connect(ctx, log, kcfg, "butter._replies.gateway-"+sanitize(host)+"-"+fmt.Sprint(os.Getpid()))
	} else {
		lr.missing = "this gateway has no Kafka: start it with -kafka-brokers or $BUTTER_KAFKA_BROKERS for queued and async routes"
	}
	opts = append(opts, gateway.WithRequester(lr))
	gw := gateway.New(resolver, opts...)
	defer gw.Close()
	rs.gw = gw
	if err := rs.once(ctx); err != nil {
		log.Warn("no routes yet from the control plane; retrying", "address", rs.base, "error", err)
	}
	go rs.run(ctx, *refresh)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Error("cannot listen", "addr", *listen, "error", err)
		return exitInvalid
	}
	srv := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Printf("gateway listening on %s\n", ln.Addr())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return exitOK
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, strings.ToLower(s))
}

// routeSync mirrors the control plane's active revisions' routes and the
// API keys into the gateway.
type routeSync struct {
	base string
	gw   *gateway.Gateway
	keys *gateway.MemKeys
	log  hclog.Logger

	mu       sync.Mutex
	specs    map[string]*spec.Project
	active   map[string]string // project → revision the routes come from
	keyState map[string]string // hash → project, for deletes
}

func (s *routeSync) run(ctx context.Context, every time.Duration) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		if err := s.once(ctx); err != nil {
			s.log.Warn("cannot refresh routes from the control plane; serving the last ones", "error", err)
		}
	}
}

func (s *routeSync) once(ctx context.Context) error {
	var list struct{ Projects []string }
	if err := getJSON(s.base+"/v1/projects?stale", &list); err != nil {
		return err
	}
	changed := false
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range list.Projects {
		var st struct {
			Active *struct{ ID string }
		}
		if err := getJSON(s.base+"/v1/projects/"+name+"?stale", &st); err != nil {
			return err
		}
		if st.Active == nil || s.active[name] == st.Active.ID {
			continue
		}
		var rev struct {
			ID      string
			Specs   map[string]string
			Bundles map[string]string
		}
		if err := getJSON(s.base+"/v1/projects/"+name+"/revisions/"+st.Active.ID+"?stale", &rev); err != nil {
			return err
		}
		fsys, err := s.specFS(rev.Specs, rev.Bundles)
		if err != nil {
			return err
		}
		proj, rep := spec.LoadFS(fsys, name+"@"+rev.ID)
		if proj == nil || rep.HasErrors() {
			s.log.Error("the active revision's specs do not load; keeping the previous routes", "project", name, "revision", rev.ID)
			s.active[name] = st.Active.ID
			continue
		}
		s.specs[name] = proj
		s.active[name] = st.Active.ID
		changed = true
		s.log.Info("routes updated", "project", name, "revision", rev.ID)
	}
	if changed {
		var all []gateway.Route
		for name, proj := range s.specs {
			all = append(all, routes.FromSpec(proj, s.active[name])...)
		}
		if err := s.gw.SetRoutes(all); err != nil {
			return fmt.Errorf("set routes: %w", err)
		}
	}
	var keys []struct {
		Hash, Project string
		Routes        []string
	}
	if err := getJSON(s.base+"/v1/keys?stale", &keys); err != nil {
		return err
	}
	seen := map[string]string{}
	for _, k := range keys {
		s.keys.Put(k.Hash, k.Project, k.Routes...)
		seen[k.Hash] = k.Project
	}
	for h := range s.keyState {
		if _, ok := seen[h]; !ok {
			s.keys.Delete(h)
		}
	}
	s.keyState = seen
	return nil
}

func (s *routeSync) placement(project, function string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return routes.Placement(func(p string) *spec.Project { return s.specs[p] })(project, function)
}

// specFS rebuilds enough of a revision's tree for the spec to load: the
// spec files, the single-file blobs (JSON schemas and OpenAPI documents,
// JSON or YAML, fetched from the blob store, since validation reads them
// and the OpenAPI documents make routes) and an empty directory for each
// source bundle.
func (s *routeSync) specFS(specs, bundles map[string]string) (fstest.MapFS, error) {
	fsys := fstest.MapFS{}
	for path, text := range specs {
		fsys[path] = &fstest.MapFile{Data: []byte(text)}
	}
	for path, digest := range bundles {
		if !strings.HasSuffix(path, ".json") && !strings.HasSuffix(path, ".yaml") && !strings.HasSuffix(path, ".yml") {
			fsys[path] = &fstest.MapFile{Mode: fs.ModeDir | 0o755}
			continue
		}
		resp, err := callAPI("GET", s.base+"/v1/blobs/sha256/"+strings.TrimPrefix(digest, "sha256:"), nil, 0)
		if err != nil {
			return nil, fmt.Errorf("file %s: %w", path, err)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("file %s: %w", path, err)
		}
		fsys[path] = &fstest.MapFile{Data: b}
	}
	return fsys, nil
}

// lazyRequester connects to Kafka in the background, retrying, so the
// gateway serves direct routes while Kafka is not reachable yet; queued
// calls fail with a clear error until it is.
type lazyRequester struct {
	mu      sync.Mutex
	r       *broker.Requester
	missing string // set when no Kafka is configured at all
}

func (l *lazyRequester) connect(ctx context.Context, log hclog.Logger, cfg broker.Config, replyTopic string) {
	for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
		r, err := broker.NewRequester(ctx, cfg, replyTopic)
		if err == nil {
			l.mu.Lock()
			l.r = r
			l.mu.Unlock()
			log.Info("connected to Kafka for queued routes", "brokers", strings.Join(cfg.Brokers, ","))
			return
		}
		log.Warn("cannot reach Kafka for queued routes yet; retrying", "error", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (l *lazyRequester) Call(ctx context.Context, topic string, key, value []byte, deadline time.Time) ([]byte, error) {
	l.mu.Lock()
	r := l.r
	l.mu.Unlock()
	if r == nil && l.missing != "" {
		return nil, errors.New(l.missing)
	}
	if r == nil {
		return nil, errors.New("the gateway is not connected to Kafka yet (see its log); queued and async routes need it")
	}
	return r.Call(ctx, topic, key, value, deadline)
}

func (l *lazyRequester) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.r != nil {
		l.r.Close()
	}
}
