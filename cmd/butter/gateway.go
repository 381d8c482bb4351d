package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/butterfn/butter/names"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/gateway"
	"github.com/butterfn/butter/gateway/routesync"
	"github.com/butterfn/butter/internal/nomadclient"
	"github.com/hashicorp/cli"
	"github.com/hashicorp/go-hclog"
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
    $NOMAD_TOKEN, $NOMAD_CACERT, $NOMAD_NAMESPACE, $NOMAD_REGION and the
    other NOMAD_* variables apply, as for the nomad CLI.

  -endpoint=project/pool=host:port[,...]
    Static pool addresses, instead of Nomad.

  -wake-queue=100
    With Nomad: how many calls, per pool, wait while a pool scaled to zero
    allocations wakes (the control plane's autoscaler scales it 0 -> 1);
    more answer 503 with Retry-After. A call waits at most its route's
    timeout (1m without one).

  -openfaas
    Also serve OpenFaaS's gateway API (/function/{name}, /async-function/
    {name}, GET /system/functions), for faas-cli and OpenFaaS clients. A
    name is <function>.<project>; the password of basic auth is an API key
    of the project (docs/gateway.md). Off by default; while on, routes on
    those paths are refused.

  -openfaas-project=<project>
    With -openfaas: the project of a function called by its bare name.

  -kafka-brokers=host:port[,...]
    Kafka, for queued and async routes. Default: $BUTTER_KAFKA_BROKERS.
    TLS and SASL come from $BUTTER_KAFKA_TLS, $BUTTER_KAFKA_CA_FILE and
    $BUTTER_KAFKA_SASL_{MECHANISM,USERNAME,PASSWORD} (docs/events.md).
` + addrHelp)
}

func (c *gatewayCommand) Run(args []string) int {
	fset := newFlagSet("gateway")
	listen := fset.String("listen", "127.0.0.1:8080", "")
	refresh := fset.Duration("refresh", time.Second, "")
	nomadAddr := fset.String("nomad-addr", "", "")
	endpoints := fset.String("endpoint", "", "")
	kafka := fset.String("kafka-brokers", "", "")
	wakeQueue := fset.Int("wake-queue", gateway.DefaultWakeQueue, "")
	openfaas := fset.Bool("openfaas", false, "")
	openfaasProject := fset.String("openfaas-project", "", "")
	af := addAPIFlags(fset)
	pos, err := parseInterspersed(fset, args)
	if err != nil || len(pos) > 0 {
		return usageError(c.ui, c.Help(), err, pos, 0)
	}
	client, err := af.client()
	if err != nil {
		return failed(c.ui, err)
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "gateway", Output: os.Stderr, Level: hclog.LevelFromString(or(os.Getenv("BUTTER_LOG_LEVEL"), "info"))})
	stopTracing, terr := startTracing("butter-gateway", log)
	if terr != nil {
		log.Error("cannot start tracing", "error", terr)
		return exitInvalid
	}
	defer stopTracing()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var resolver gateway.Resolver
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
	case nomadclient.Address(*nomadAddr) != "":
		nc, err := nomadclient.New(*nomadAddr)
		if err != nil {
			log.Error("cannot reach Nomad", "error", err)
			return exitInvalid
		}
		// Name a missing or refused token at start; discovery keeps
		// retrying.
		go func() {
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := nomadclient.Check(cctx, nc); err != nil {
				log.Error("cannot use Nomad for pool discovery", "error", err)
			}
		}()
		nr := gateway.NewNomadResolver(nc, log.Named("nomad"))
		defer nr.Close()
		resolver = nr
	default:
		return usageError(c.ui, c.Help(), errors.New("give -nomad-addr (or $NOMAD_ADDR) or -endpoint, so the gateway can find the pools"), nil, 0)
	}

	keys := gateway.NewMemKeys()
	rs := routesync.New(client, keys, log)
	opts := []gateway.Option{gateway.WithLogger(log), gateway.WithKeys(keys), gateway.WithPlacement(rs.Placement)}
	if *openfaas {
		opts = append(opts, gateway.WithOpenFaaS(gateway.OpenFaaS{DefaultProject: *openfaasProject}), gateway.WithFunctions(rs.Functions))
	} else if *openfaasProject != "" {
		return usageError(c.ui, c.Help(), errors.New("-openfaas-project needs -openfaas"), nil, 0)
	}
	if _, ok := resolver.(*gateway.NomadResolver); ok {
		// A pool scaled to zero allocations is woken through the
		// control plane's autoscaler while its calls wait.
		opts = append(opts, gateway.WithWaker(rs), gateway.WithWakeQueue(*wakeQueue))
	}
	kcfg, err := broker.Resolve(ctx, *kafka, nil, nil)
	if err != nil {
		log.Error("cannot configure Kafka for queued and async routes", "error", err)
		return exitInvalid
	}
	// Queued and async routes always get a requester, so that one such
	// route cannot keep a whole table out when Kafka is absent: without
	// brokers, its calls fail with a clear error instead.
	var lr *broker.LazyRequester
	if len(kcfg.Brokers) > 0 {
		host, _ := os.Hostname()
		lr = broker.NewLazyRequester(ctx, log, kcfg, names.ReplyTopic("gateway-"+sanitize(host)+"-"+fmt.Sprint(os.Getpid())))
	} else {
		lr = broker.NoKafka("this gateway has no Kafka: start it with -kafka-brokers or $BUTTER_KAFKA_BROKERS for queued and async routes")
	}
	defer lr.Close()
	opts = append(opts, gateway.WithRequester(lr))
	gw := gateway.New(resolver, opts...)
	defer gw.Close()
	if err := rs.Once(ctx, gw); err != nil {
		log.Warn("no routes yet from the control plane; retrying", "address", client.Address(), "error", err)
	}
	// The sync stops (and is waited for) before the gateway closes.
	syncCtx, stopSync := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopSync()
	wg.Add(1)
	go func() {
		defer wg.Done()
		rs.Run(syncCtx, gw, *refresh)
	}()

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
