// Package dev is `butter dev`: the whole platform in one process on one
// machine, with a project deployed and redeployed as its files change.
// It runs a single-node control plane (package scheduler), the embedded
// Kafka-protocol broker (package broker), a local pool (the pool code the
// Nomad driver runs, package plugins/pool) and the gateway (package
// gateway), pushes each version of the project as a revision through
// package deploy and the api client, and swaps pools without dropping a
// call. docs/dev.md describes it.
//
// cmd/butter parses the flags and calls Run.
package dev

import (
	"context"
	"errors"
	"fmt"
	"github.com/butterfn/butter/names"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/connectors/mqtt"
	"github.com/butterfn/butter/gateway"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/plugins/runtime"
	"github.com/butterfn/butter/routes"
	"github.com/butterfn/butter/scheduler"
	"github.com/butterfn/butter/sdk"
	"github.com/butterfn/butter/telemetry/spanstore"
	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kgo"
)

// UI is where Run reports to the developer: the routes, the ready line,
// each redeploy. A hashicorp/cli Ui is one.
type UI interface {
	Output(string)
	Error(string)
}

// Config configures Run. Zero values take the defaults given.
type Config struct {
	// Dir is the project's directory. Default: the current directory.
	Dir string
	// Vars set the specs' variables (-var, -var-file, BUTTER_VAR_*), on
	// the first load and on every reload after a change.
	Vars []spec.LoadOption
	// DataDir is where the control plane and the broker keep their state.
	// Default: Dir/.butter/dev.
	DataDir string
	// SecretsFile holds the values of the functions' secrets (NAME=value
	// or function.NAME=value lines; docs/secrets-dev.md). Default:
	// Dir/.butter/secrets.env.
	SecretsFile string
	// ServerAddr is the control plane's HTTP API. Default: 127.0.0.1:4750.
	ServerAddr string
	// Listen is the gateway's address. Default: 127.0.0.1:8080.
	Listen string
	// KafkaPort is the embedded broker's port; 0 takes a free one.
	KafkaPort int
	// MQTTPort is the port of the embedded MQTT broker, started once a
	// deploy has an MQTT connector without an address (mqtt.go); 0 takes
	// 1883 when it is free, any free port otherwise.
	MQTTPort int
	// APIKeys are the keys the gateway accepts on api_key routes.
	// Default: "dev-key".
	APIKeys []string
	// Logger logs the parts' events. Default: none.
	Logger hclog.Logger
	// UI gets the developer's messages. Required.
	UI UI
	// Diagnostics gets the spec's errors and warnings. Default: os.Stderr.
	Diagnostics io.Writer
	// NoACL runs the control plane without ACLs (butter dev -acl=false);
	// it is refused unless ServerAddr is a loopback address. By default
	// the control plane enforces ACLs: Run bootstraps it, prints the
	// management token, writes it to DataDir/TokenFile and uses it itself.
	NoACL bool
	// Traces is where the control plane keeps the spans the web UI shows
	// (scheduler.Config.Traces): butter dev records its own into it. Nil
	// leaves the control plane its own store, fed only over OTLP.
	Traces *spanstore.Store
	// OpenFaaS also serves OpenFaaS's gateway API on the gateway
	// (/function/{name}, /async-function/{name}, /system/functions;
	// docs/gateway.md), with the project as the default for bare names
	// and no auth, as the ad-hoc invoke endpoint in dev.
	OpenFaaS bool
}

// TokenFile is the file, in Config.DataDir, that holds the dev control
// plane's management token (mode 0600), for
// export BUTTER_TOKEN=$(cat .butter/dev/management-token).
const TokenFile = "management-token"

// ErrInvalid is returned by Run when the project's spec does not load;
// the diagnostics went to Config.Diagnostics.
var ErrInvalid = errors.New("the project's spec is invalid")

// Run loads the project, starts every part, deploys the project, reports
// its routes and a ready line, then redeploys on each change until ctx
// ends. It says "==> stopping", stops everything (replaced pools drain
// first) and returns nil. An error before the ready line stops what had
// started and is returned.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.defaults(); err != nil {
		return err
	}
	proj, rep := spec.Load(cfg.Dir, cfg.Vars...)
	if err := rep.WriteText(cfg.Diagnostics); err != nil || proj == nil {
		return ErrInvalid
	}
	d := &env{mqttPort: cfg.MQTTPort, traces: cfg.Traces, noACL: cfg.NoACL, openfaas: cfg.OpenFaaS, ui: cfg.UI, log: cfg.Logger, dir: cfg.Dir, vars: cfg.Vars, dataDir: cfg.DataDir, secretsFile: cfg.SecretsFile, diag: cfg.Diagnostics}
	defer d.close()
	if err := d.start(ctx, proj.Name, cfg.DataDir, cfg.ServerAddr, cfg.Listen, cfg.KafkaPort, cfg.APIKeys); err != nil {
		return err
	}
	if err := d.deploy(ctx, proj); err != nil {
		return err
	}
	d.printReady(proj)
	d.goLoop(func(lctx context.Context) { d.followActive(lctx, proj.Name) })
	d.watch(ctx)
	d.ui.Output("==> stopping")
	return nil
}

func (c *Config) defaults() error {
	if c.UI == nil {
		return errors.New("dev: Config.UI is required")
	}
	if c.Dir == "" {
		c.Dir = "."
	}
	if abs, err := filepath.Abs(c.Dir); err == nil {
		c.Dir = abs
	}
	if c.DataDir == "" {
		c.DataDir = filepath.Join(c.Dir, ".butter", "dev")
	}
	if c.SecretsFile == "" {
		c.SecretsFile = filepath.Join(c.Dir, ".butter", "secrets.env")
	}
	for _, p := range []*string{&c.DataDir, &c.SecretsFile} {
		if abs, err := filepath.Abs(*p); err == nil {
			*p = abs
		}
	}
	if c.ServerAddr == "" {
		c.ServerAddr = "127.0.0.1:4750"
	}
	if c.NoACL && !loopback(c.ServerAddr) {
		return fmt.Errorf("-acl=false with -server-addr %s: a control plane without ACLs lets anyone who reaches it deploy code; without ACLs it may listen only on a loopback address (127.0.0.1:PORT or [::1]:PORT)", c.ServerAddr)
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	if len(c.APIKeys) == 0 {
		c.APIKeys = []string{"dev-key"}
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.Diagnostics == nil {
		c.Diagnostics = os.Stderr
	}
	return nil
}

// env is everything `butter dev` runs.
type env struct {
	traces   *spanstore.Store // Config.Traces
	noACL    bool
	openfaas bool // Config.OpenFaaS
	// token is the management token's secret (ACLs on).
	token string
	ui    UI
	log   hclog.Logger
	dir   string
	vars  []spec.LoadOption // Config.Vars
	diag  io.Writer
	// dataDir and secretsFile are hidden from the functions of a project
	// with secrets; secretsFile is read on each deploy (secrets).
	dataDir     string
	secretsFile string

	broker *broker.Dev
	kcl    *kgo.Client
	// mqtt is the embedded MQTT broker, nil until a deploy needs it
	// (mqtt.go); mqttPort is Config.MQTTPort.
	mqtt      *mqtt.Broker
	mqttPort  int
	server    *scheduler.Server
	client    *api.Client
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
	current *livePool
	proj    *spec.Project
	drains  sync.WaitGroup

	// deployMu is held by a deploy, from its pool's start to the switch:
	// a change (watch) and an activation (followActive) one at a time.
	deployMu sync.Mutex

	// stats is what runStats last read of the serving pool (stats.go);
	// loopCtx ends, by stopLoops, runStats and followActive, and loops
	// waits for them.
	stats     stats
	loopCtx   context.Context
	stopLoops context.CancelFunc
	loops     sync.WaitGroup
}

func (d *env) start(ctx context.Context, project, dataDir, serverAddr, listen string, kafkaPort int, keys []string) error {
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
		Logger: d.log.Named("server"), Firer: &scheduler.KafkaFirer{Client: d.kcl}, ACL: !d.noACL,
		Observer: d, KafkaConfig: b.Config(), Traces: d.traces,
	})
	if err != nil {
		return fmt.Errorf("start the control plane on %s: %w (another butter dev or server running? pick another -server-addr)", serverAddr, err)
	}
	if d.client, err = api.NewClient(&api.Config{Address: "http://" + d.server.Addr()}); err != nil {
		return err
	}
	if err := waitLeader(ctx, d.client); err != nil {
		return err
	}
	if !d.noACL {
		if err := d.bootstrapACL(ctx, dataDir); err != nil {
			return err
		}
	}
	if d.sdks, err = sdk.Install(filepath.Join(os.TempDir(), "butter-sdk")); err != nil {
		return fmt.Errorf("install the SDKs: %w", err)
	}
	d.limits = runtime.SystemLimits()
	if err := d.limits.Available(); err != nil {
		d.log.Debug("per-instance memory and process limits are off", "reason", err)
	}
	if d.requester, err = broker.NewRequester(ctx, b.Config(), names.ReplyTopic("dev")); err != nil {
		return fmt.Errorf("queued routes: %w", err)
	}
	memKeys := gateway.NewMemKeys()
	d.resolver = gateway.NewStaticResolver()
	gwOpts := []gateway.Option{gateway.WithLogger(d.log.Named("gateway")), gateway.WithKeys(memKeys),
		gateway.WithInvokeAuth(gateway.AuthNone), gateway.WithRequester(d.requester), gateway.WithPlacement(routes.Placement(func(string) *spec.Project {
			d.mu.Lock()
			defer d.mu.Unlock()
			return d.proj
		}))}
	if d.openfaas {
		gwOpts = append(gwOpts, gateway.WithOpenFaaS(gateway.OpenFaaS{DefaultProject: project, Auth: gateway.AuthNone}),
			gateway.WithFunctions(func() []gateway.FunctionInfo {
				d.mu.Lock()
				defer d.mu.Unlock()
				if d.proj == nil || d.current == nil {
					return nil
				}
				return routes.Functions(d.proj, d.current.revision)
			}))
	}
	d.gw = gateway.New(d.resolver, gwOpts...)
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("gateway: %w (pick another -listen)", err)
	}
	d.gwAddr = ln.Addr().String()
	d.gwSrv = &http.Server{Handler: d.gw, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = d.gwSrv.Serve(ln) }()
	d.memKeys, d.apiKeys = memKeys, keys
	d.loopCtx, d.stopLoops = context.WithCancel(context.Background())
	d.goLoop(d.runStats)
	return nil
}

// goLoop runs loop until close, which waits for it.
func (d *env) goLoop(loop func(context.Context)) {
	d.loops.Add(1)
	go func() {
		defer d.loops.Done()
		loop(d.loopCtx)
	}()
}

func (d *env) close() {
	if d.stopLoops != nil {
		d.stopLoops()
		d.loops.Wait()
	}
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
		d.server.Close()
	}
	if d.kcl != nil {
		d.kcl.Close()
	}
	if d.broker != nil {
		d.broker.Close()
	}
	if d.mqtt != nil {
		_ = d.mqtt.Close()
	}
}

func (d *env) printReady(proj *spec.Project) {
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
	d.ui.Output(fmt.Sprintf("    control plane: %s   broker: %s", d.client.Address(), d.broker.Addr))
	if d.mqtt != nil {
		d.ui.Output(fmt.Sprintf("    MQTT broker (embedded, for the connectors without an address): %s", d.mqtt.URL))
	}
	d.ui.Output(fmt.Sprintf("    web UI: %s%s", d.client.Address(), scheduler.UIPath))
	if d.token != "" {
		d.ui.Output(fmt.Sprintf("    ACL management token: %s (in %s; export BUTTER_TOKEN=$(cat %s))", d.token, filepath.Join(d.dataDir, TokenFile), filepath.Join(d.dataDir, TokenFile)))
	} else {
		d.ui.Output("    ACLs are OFF (-acl=false): anyone on this machine may use the control plane")
	}
	if example != "" {
		d.ui.Output("    try: " + example)
	}
	d.ui.Output(fmt.Sprintf("==> butter dev ready: gateway %s (watching %s; Ctrl-C stops)", gw, d.dir))
}

// bootstrapACL bootstraps the fresh dev control plane's ACLs, writes the
// management token to dataDir/TokenFile and makes d.client use it.
func (d *env) bootstrapACL(ctx context.Context, dataDir string) error {
	tok, err := d.client.ACL().Bootstrap(ctx)
	if err != nil {
		return fmt.Errorf("bootstrap the dev control plane's ACLs: %w", err)
	}
	path := filepath.Join(dataDir, TokenFile)
	if err := os.WriteFile(path, []byte(tok.SecretID+"\n"), 0o600); err != nil {
		return fmt.Errorf("write the management token to %s: %w", path, err)
	}
	d.token = tok.SecretID
	d.client, err = api.NewClient(&api.Config{Address: d.client.Address(), Token: tok.SecretID})
	return err
}

// loopback says whether addr (host:port) is on a loopback interface.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func freeLocalAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitLeader(ctx context.Context, client *api.Client) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if leader, err := client.Status().Leader(ctx); err == nil && leader != "" {
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
