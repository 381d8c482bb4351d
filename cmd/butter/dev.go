package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/butterfn/butter/dev"
	"github.com/butterfn/butter/telemetry"
	"github.com/butterfn/butter/telemetry/spanstore"
	"github.com/hashicorp/cli"
	"github.com/hashicorp/go-hclog"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
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

  -mqtt-port=0
    The port of the embedded MQTT broker, which butter dev starts when a
    source or sink "mqtt" declares no address (0: 1883 when it is free,
    any free port otherwise). Printed at start.

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

  -acl=true
    Enforce the control plane's ACLs. butter dev bootstraps them, prints
    the management token and writes it to <data-dir>/management-token
    (export BUTTER_TOKEN=$(cat .butter/dev/management-token) for butter
    status and the like). -acl=false runs without ACLs, and only with a
    loopback -server-addr.

  -openfaas
    Also serve OpenFaaS's gateway API on the gateway (/function/{name},
    /async-function/{name}, GET /system/functions), without auth; a bare
    name is a function of this project (docs/gateway.md).
` + varHelp)
}

func (c *devCommand) Run(args []string) int {
	fset := newFlagSet("dev")
	vf := addVarFlags(fset)
	listen := fset.String("listen", "127.0.0.1:8080", "")
	serverAddr := fset.String("server-addr", "127.0.0.1:4750", "")
	kafkaPort := fset.Int("kafka-port", 0, "")
	mqttPort := fset.Int("mqtt-port", 0, "")
	dataDir := fset.String("data-dir", "", "")
	apiKeys := fset.String("api-key", "", "")
	secretsFile := fset.String("secrets", "", "")
	aclOn := fset.Bool("acl", true, "")
	openfaas := fset.Bool("openfaas", false, "")
	pos, err := parseInterspersed(fset, args)
	if err != nil || len(pos) > 1 {
		return usageError(c.ui, c.Help(), err, pos, 1)
	}
	dir := "."
	if len(pos) == 1 {
		dir = pos[0]
	}
	if *apiKeys == "" {
		*apiKeys = os.Getenv("BUTTER_DEV_API_KEY")
	}
	if *apiKeys == "" {
		*apiKeys = "dev-key"
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "dev", Output: os.Stderr, Level: hclog.LevelFromString(or(os.Getenv("BUTTER_LOG_LEVEL"), "info"))})
	// Every call is traced into the control plane's memory, for the web
	// UI's traces (docs/ui.md), unless the environment turns tracing off;
	// with OTEL_EXPORTER_OTLP_ENDPOINT the spans are exported too.
	traces := &spanstore.Store{}
	var local sdktrace.SpanExporter
	if !telemetry.Disabled() {
		local = spanstore.Exporter(traces)
	}
	stopTracing, terr := startTracingWith("butter-dev", log, local)
	if terr != nil {
		log.Error("cannot start tracing", "error", terr)
		return exitInvalid
	}
	defer stopTracing()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = dev.Run(ctx, dev.Config{
		Dir: dir, Vars: vf.options(), DataDir: *dataDir, SecretsFile: *secretsFile,
		ServerAddr: *serverAddr, Listen: *listen, KafkaPort: *kafkaPort, MQTTPort: *mqttPort,
		APIKeys: strings.Split(*apiKeys, ","), Logger: log, UI: c.ui, Diagnostics: os.Stderr,
		NoACL: !*aclOn, OpenFaaS: *openfaas, Traces: traces,
	})
	switch {
	case errors.Is(err, dev.ErrInvalid):
		return exitInvalid // the diagnostics are printed
	case err != nil:
		return failed(c.ui, err)
	}
	return exitOK
}

// hasSecrets is butter dev's rule for confining a project's functions,
// which invoke -local applies too.
var hasSecrets = dev.HasSecrets
