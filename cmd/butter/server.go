package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/butterfn/butter/autoscaler"
	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/internal/nomadclient"
	"github.com/butterfn/butter/internal/tlsutil"
	"github.com/butterfn/butter/scheduler"
	"github.com/hashicorp/cli"
	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kadm"
)

type serverCommand struct{ ui cli.Ui }

func (c *serverCommand) Synopsis() string { return "Run a control-plane server" }

func (c *serverCommand) Help() string {
	return trimHelp(`
Usage: butter server [options]

  Runs a control-plane node: a member of a Raft cluster of 1, 3 or 5 servers
  with the v1 HTTP API. Writes go to the leader (followers forward them).

Options:

  -data-dir=<dir>
    Where the Raft log, stable store and snapshots live. Required.

  -http-addr=127.0.0.1:4750
    The API address. It is also the node's ID, so keep it stable.

  -raft-addr=127.0.0.1:4751
    The Raft TCP address.

  -bootstrap-expect=1
    How many servers form a new cluster: 1 starts alone; 3 or 5 wait until
    the -join peers answer.

  -join=<host:port,...>
    Other servers' API addresses.

  -nomad-addr=<url>
    The Nomad API the leader deploys active revisions to. Defaults to
    $NOMAD_ADDR; without either, revisions are recorded but not deployed.
    $NOMAD_TOKEN, $NOMAD_CACERT, $NOMAD_NAMESPACE, $NOMAD_REGION and the
    other NOMAD_* variables apply, as for the nomad CLI.

  -kafka-brokers=<host:port,...>
    Where the leader's timer service produces cron ticks, and where every
    node reads the projects' dead letters and log lines for the web UI
    (and replays dead letters). Defaults to $BUTTER_KAFKA_BROKERS; without
    either, timers do not fire and those API routes answer 503. TLS and
    SASL come from $BUTTER_KAFKA_TLS, $BUTTER_KAFKA_CA_FILE and
    $BUTTER_KAFKA_SASL_{MECHANISM,USERNAME,PASSWORD} (docs/events.md).

  -autoscale=true
    Run the autoscaler on the leader when Nomad is configured: it scales
    each pool's allocations within its scaling block, on calls in flight
    (read from the pools' /metrics) and consumer lag (from Kafka, with
    -kafka-brokers), through Nomad's Scale API (docs/autoscaling.md).

  -autoscale-interval=2s, -autoscale-stale-after=15s
    How often the autoscaler looks, and the age past which it does not act
    on a signal.

  -max-request-bytes=4194304
    The largest JSON body the API takes (a revision with its spec files
    and job, a timer, a key); a larger one is answered 413.

  -max-blob-bytes=268435456
    The largest blob (a function's bundle or a schema) the API stores or
    fetches from a peer; a larger one is answered 413.

TLS options (docs/security.md; make the files with butter tls):

  -tls-ca-file=<file>, -tls-cert-file=<file>, -tls-key-file=<file>
    The cluster's CA and this server's certificate and key (butter tls
    cert create -server). With them the API serves HTTPS, Raft runs over
    mutual TLS, and the server calls its peers (-join, forwarding to the
    leader, blob fetches) over HTTPS with its own certificate.

  -tls-verify-client=true
    Require a client certificate signed by the CA on every API request,
    except GET /v1/blobs/... (Nomad's artifact getter presents none). Raft
    peers always need one.

  -tls-verify-server-hostname=true
    Require peers' certificates (Raft, and the APIs this server calls) to
    be server certificates: for -tls-server-name. A client certificate
    then cannot join Raft.

  -tls-server-name=server.global.butter
    The name server certificates carry (server.<region>.<domain>).

  -acl=true
    Enforce ACLs: every API route but the public ones needs a token that
    grants it (docs/security.md). Run butter acl bootstrap once to get the
    management token. -acl=false serves everyone and logs a warning.
`)
}

func (c *serverCommand) Run(args []string) int {
	fs := newFlagSet("server")
	dataDir := fs.String("data-dir", "", "")
	httpAddr := fs.String("http-addr", "127.0.0.1:4750", "")
	raftAddr := fs.String("raft-addr", "127.0.0.1:4751", "")
	expect := fs.Int("bootstrap-expect", 1, "")
	join := fs.String("join", "", "")
	snapEvery := fs.Uint64("snapshot-threshold", 0, "")
	kafkaBrokers := fs.String("kafka-brokers", "", "")
	nomadAddr := fs.String("nomad-addr", "", "")
	maxRequest := fs.Int64("max-request-bytes", scheduler.DefaultMaxRequestBytes, "")
	maxBlob := fs.Int64("max-blob-bytes", scheduler.DefaultMaxBlobBytes, "")
	var tc scheduler.TLSConfig
	fs.StringVar(&tc.CAFile, "tls-ca-file", "", "")
	fs.StringVar(&tc.CertFile, "tls-cert-file", "", "")
	fs.StringVar(&tc.KeyFile, "tls-key-file", "", "")
	fs.BoolVar(&tc.VerifyClient, "tls-verify-client", true, "")
	fs.BoolVar(&tc.VerifyServerHostname, "tls-verify-server-hostname", true, "")
	fs.StringVar(&tc.ServerName, "tls-server-name", tlsutil.ServerName(tlsutil.DefaultRegion, tlsutil.DefaultDomain), "")
	aclOn := fs.Bool("acl", true, "")
	autoscale := fs.Bool("autoscale", true, "")
	scaleEvery := fs.Duration("autoscale-interval", autoscaler.DefaultInterval, "")
	staleAfter := fs.Duration("autoscale-stale-after", autoscaler.DefaultStaleAfter, "")
	pos, err := parseInterspersed(fs, args)
	if err == nil && *dataDir == "" {
		err = errors.New("-data-dir is required")
	}
	if err == nil && *expect != 1 && *expect != 3 && *expect != 5 {
		err = fmt.Errorf("-bootstrap-expect must be 1, 3 or 5, not %d", *expect)
	}
	if err == nil && (*scaleEvery <= 0 || *staleAfter <= 0) {
		err = errors.New("-autoscale-interval and -autoscale-stale-after must be positive")
	}
	if err == nil && (*maxRequest <= 0 || *maxBlob <= 0) {
		err = errors.New("-max-request-bytes and -max-blob-bytes must be positive")
	}
	if err == nil && (tc.CAFile != "" || tc.CertFile != "" || tc.KeyFile != "") && (tc.CAFile == "" || tc.CertFile == "" || tc.KeyFile == "") {
		err = errors.New("TLS needs all of -tls-ca-file, -tls-cert-file and -tls-key-file")
	}
	if err != nil || len(pos) > 0 {
		return usageError(c.ui, c.Help(), err, pos, 0)
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "server", Output: os.Stderr, Level: hclog.Info})
	stopTracing, terr := startTracing("butter-server", log)
	if terr != nil {
		log.Error("cannot start tracing", "error", terr)
		return exitInvalid
	}
	defer stopTracing()
	var peers []string
	for _, p := range strings.Split(*join, ",") {
		if p = strings.TrimSpace(p); p != "" {
			peers = append(peers, p)
		}
	}
	if !*aclOn {
		log.Warn("ACLS ARE OFF (-acl=false): anyone who reaches the API can deploy code to every Nomad client, mint API keys, restore snapshots and remove servers; run with ACLs on (the default) anywhere but a closed test network")
	}
	var firer scheduler.Firer
	var lagClient *kadm.Client // the autoscaler's consumer lag
	kcfg, err := broker.Resolve(context.Background(), *kafkaBrokers, nil, nil)
	if err != nil {
		log.Error("cannot configure Kafka for the timer service", "error", err)
		return exitInvalid
	}
	if len(kcfg.Brokers) > 0 {
		cl, err := kcfg.NewProducer()
		if err != nil {
			log.Error("cannot reach Kafka for the timer service", "error", err)
			return exitInvalid
		}
		defer cl.Close()
		firer = &scheduler.KafkaFirer{Client: cl}
		lagClient = kadm.NewClient(cl)
		// Say at start, naming the cause, when the login or the
		// certificate is wrong; ticks are retried, so this only logs.
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := kcfg.Check(ctx); err != nil {
				log.Error("cannot reach Kafka for the timer service; ticks fail until it can", "error", err)
			}
		}()
	} else {
		log.Warn("no Kafka brokers: the timer service is off (-kafka-brokers or $" + broker.EnvBrokers + ")")
	}
	var nomad scheduler.Nomad
	var scale *scheduler.AutoscaleConfig
	if nomadclient.Address(*nomadAddr) != "" {
		nc, err := nomadclient.New(*nomadAddr)
		if err != nil {
			log.Error("cannot reach Nomad", "error", err)
			return exitInvalid
		}
		nomad = scheduler.NewNomadClient(nc)
		if *autoscale {
			scale = &scheduler.AutoscaleConfig{
				Scaler:   &autoscaler.NomadScaler{Client: nc},
				Signals:  &autoscaler.PoolSignals{Nomad: nc, Kafka: lagClient},
				Interval: *scaleEvery, StaleAfter: *staleAfter,
			}
			if lagClient == nil {
				log.Warn("no Kafka brokers: the autoscaler scales on calls in flight only, not on consumer lag")
			}
		}
		// Name a missing or refused token at start (an ACL-enabled Nomad
		// refuses every deploy without one); deploys keep retrying.
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := nomadclient.Check(ctx, nc); err != nil {
				log.Error("cannot use Nomad; revisions are not deployed until it can", "error", err)
			}
		}()
	} else {
		log.Warn("no Nomad address: revisions are recorded but not deployed (-nomad-addr or $NOMAD_ADDR)")
	}
	s, err := scheduler.Start(scheduler.Config{
		DataDir: *dataDir, HTTPAddr: *httpAddr, RaftAddr: *raftAddr,
		BootstrapExpect: *expect, Join: peers, SnapshotThreshold: *snapEvery, Logger: log, Firer: firer, Kafka: lagClient, Nomad: nomad, Autoscale: scale,
		MaxRequestBytes: *maxRequest, MaxBlobBytes: *maxBlob, TLS: tc, ACL: *aclOn, KafkaConfig: kcfg,
	})
	if err != nil {
		log.Error("cannot start", "error", err)
		return exitInvalid
	}
	if tc.Enabled() {
		fmt.Printf("server listening on https://%s (raft %s, mutual TLS)\n", s.Addr(), *raftAddr)
	} else {
		fmt.Printf("server listening on %s (raft %s)\n", s.Addr(), *raftAddr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	s.Close()
	return exitOK
}
