// Package nomad tests Butter on a real Nomad agent (and a real Vault dev
// server): the whole platform as Nomad jobs running examples/iot, a
// function's secrets isolated from its neighbours and rotated, and
// `butter setup vault`.
package nomad

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/butterfn/butter/e2e/e2etest"
	"github.com/butterfn/butter/internal/influxtest"
	"github.com/butterfn/butter/internal/mqtttest"
	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/butterfn/butter/internal/pgtest"
	"github.com/butterfn/butter/internal/testport"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/telemetry/otlptest"
)

func TestMain(m *testing.M) { e2etest.Main(m) }

// TestIoTOnNomad runs the whole platform as Nomad jobs from jobs/platform/
// (broker, control plane and gateway on raw_exec; the project's pools on
// the butter driver), deploys examples/iot, and POSTs readings to the
// ingest route: they flow through the readings stream and the detector,
// which keeps per-device state, to the alerts stream, which the test
// consumes. examples/iot's connectors are on (deployed with -var naming
// a real Mosquitto, PostgreSQL and InfluxDB): the alert lands as a row,
// every reading as a point, and a reading published over MQTT reaches
// the detector through the MQTT source, all in the pools on Nomad.
//
// The control plane runs with its ACLs and with TLS (-var tls=true, the
// certificates made by `butter tls` and put in the jobs' Nomad variables):
// the CLI, the gateway and the test call its API over mutual TLS, and
// Nomad's artifact getter fetches the bundles from its https:// blob URLs,
// trusting the CA through SSL_CERT_FILE, which the client's artifact block
// passes into the getter's sandbox (docs/security.md).
func TestIoTOnNomad(t *testing.T) {
	root := e2etest.Root()
	pluginDir := e2etest.PluginDir()
	kafkaPort, httpPort, raftPort, gwPort := testport.Port(t), testport.Port(t), testport.Port(t), testport.Port(t)
	brokers := fmt.Sprintf("127.0.0.1:%d", kafkaPort)
	certs := makeCerts(t)
	// The pools' spans go to this receiver through the driver's otel_env.
	rcv, err := otlptest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Close()
	agent := nomadtest.StartWith(t, nomadtest.Options{
		PluginDir: pluginDir,
		Env:       []string{"SSL_CERT_FILE=" + certs.ca},
		ClientHCL: fmt.Sprintf(`
  artifact {
    set_environment_variables        = "SSL_CERT_FILE"
    filesystem_isolation_extra_paths = ["f:r:%s"]
  }
`, certs.ca),
		HCL: fmt.Sprintf(`
plugin "raw_exec" {
  config {
    enabled = true
  }
}
plugin "nomad-driver-butter" {
  config {
    butter_path   = %q
    kafka_brokers = [%q]
    otel_env {
      OTEL_EXPORTER_OTLP_ENDPOINT = %q
      OTEL_BSP_SCHEDULE_DELAY     = "200"
    }
  }
}
`, e2etest.Bin(), brokers, rcv.Endpoint),
		NodeReady: func(n *api.Node) bool {
			d, r := n.Drivers["butter"], n.Drivers["raw_exec"]
			return d != nil && d.Healthy && r != nil && r.Healthy
		},
	})
	serverAddr := fmt.Sprintf("https://127.0.0.1:%d", httpPort)
	vars := fmt.Sprintf("butter_bin = %q\nnomad_addr = %q\nkafka_brokers = %q\nkafka_port = %d\nserver_addr = %q\ntls = true\n",
		e2etest.Bin(), agent.Addr, brokers, kafkaPort, serverAddr)
	run := func(file string, extra string) {
		t.Helper()
		hcl, err := os.ReadFile(filepath.Join(root, "jobs", "platform", file))
		if err != nil {
			t.Fatal(err)
		}
		// Each job declares only the variables it uses: pass those.
		var v []string
		for _, line := range strings.Split(vars+extra, "\n") {
			name, _, _ := strings.Cut(line, " =")
			if name != "" && strings.Contains(string(hcl), "variable \""+name+"\"") {
				v = append(v, line)
			}
		}
		job, err := agent.Client.Jobs().ParseHCLOpts(&api.JobsParseRequest{JobHCL: string(hcl), Variables: strings.Join(v, "\n"), Canonicalize: true})
		if err != nil {
			t.Fatalf("parse %s: %v", file, err)
		}
		if _, _, err := agent.Client.Jobs().Register(job, nil); err != nil {
			t.Fatalf("run %s: %v", file, err)
		}
	}
	run("broker.nomad.hcl", "")
	// The server's certificate and key, and the CA, as the operator puts
	// them: items of the job's Nomad variable, which its templates render
	// into the task's secrets dir. Its tracing is on the same way: the
	// variable's other items are the task's environment (docs/jobs.md).
	if _, _, err := agent.Client.Variables().Create(&api.Variable{Path: "nomad/jobs/butter-server", Items: map[string]string{
		"tls_ca": certs.read(t, certs.ca), "tls_cert": certs.read(t, certs.serverCert), "tls_key": certs.read(t, certs.serverKey),
		"OTEL_EXPORTER_OTLP_ENDPOINT": rcv.Endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200",
	}}, nil); err != nil {
		t.Fatalf("put the server's Nomad variable: %v", err)
	}
	run("server.nomad.hcl", fmt.Sprintf("http_port = %d\nraft_port = %d\n", httpPort, raftPort))
	defer func() {
		if t.Failed() {
			for _, id := range []string{"butter-broker", "butter-server", "butter-gateway", "butter-iot"} {
				nomadtest.LogTasks(t, agent.Client, id, 6000, "stderr", "stdout")
			}
			dumpTopics(t, brokers, "iot.readings", "iot.failed-readings", "iot._state.detect")
		}
	}()
	httpsClient := certs.client(t, true)
	e2etest.WaitFor(t, 4*time.Minute, "the control plane running on Nomad", func() bool {
		var out struct{ Leader string }
		resp, err := httpsClient.Get(serverAddr + "/v1/status/leader")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(&out) == nil && out.Leader != ""
	})
	// The control plane runs with ACLs (butter server's default): the
	// operator bootstraps them, and gives the gateway a read-only token
	// through its Nomad variable, which its template turns into
	// $BUTTER_TOKEN (docs/jobs.md).
	// TLS is on and verifies clients: without a client certificate, even
	// a client that trusts the CA is refused (403), and plain HTTP gets 400.
	if resp, err := certs.client(t, false).Get(serverAddr + "/v1/status/leader"); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("GET /v1/status/leader without a client certificate: %v %v, want 403", resp, err)
	} else {
		resp.Body.Close()
	}
	if resp, err := http.Get(strings.Replace(serverAddr, "https://", "http://", 1) + "/v1/status/leader"); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("GET /v1/status/leader over plain HTTP: %v %v, want 400", resp, err)
	} else {
		resp.Body.Close()
	}
	mgmt, gatewayToken := butterACL(t, serverAddr, certs.args()...)
	// The gateway's token, and its client certificate and the CA.
	if _, _, err := agent.Client.Variables().Create(&api.Variable{Path: "nomad/jobs/butter-gateway", Items: map[string]string{
		"BUTTER_TOKEN": gatewayToken,
		"tls_ca":       certs.read(t, certs.ca), "tls_cert": certs.read(t, certs.clientCert), "tls_key": certs.read(t, certs.clientKey),
	}}, nil); err != nil {
		t.Fatalf("put the gateway's Nomad variable: %v", err)
	}
	run("gateway.nomad.hcl", fmt.Sprintf("http_port = %d\n", gwPort))

	dir := filepath.Join(t.TempDir(), "iot")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(root, "examples", "iot"))); err != nil {
		t.Fatal(err)
	}
	// The connectors' servers.
	mq := mqtttest.Start(t)
	pg := pgtest.Start(t)
	ddl, err := os.ReadFile(filepath.Join(dir, "alerts.sql"))
	if err != nil {
		t.Fatal(err)
	}
	pg.Exec(pg.DSN, string(ddl))
	ix := influxtest.Start(t, "iot")
	connVars := []string{"-var", "mqtt=" + mq.Address, "-var", "postgres_dsn=" + pg.DSN, "-var", "influxdb_url=" + ix.URL}
	r := e2etest.Butter(t, ".", append(append(append([]string{"deploy", "-address", serverAddr, "-token", mgmt, "-timeout", "6m"}, certs.args()...), connVars...), dir)...)
	t.Logf("deploy:\n%s%s", r.Stdout, r.Stderr)
	if r.Code != 0 {
		t.Fatalf("deploy examples/iot: %+v", r)
	}
	// Nomad fetched the pools' bundles over HTTPS: the deploy waits for
	// them to run, and their artifacts are the server's https:// blob URLs.
	pools, _, err := agent.Client.Jobs().List(&api.QueryOptions{Prefix: "butter-iot"})
	if err != nil || len(pools) == 0 {
		t.Fatalf("list the project's jobs: %v %v", pools, err)
	}
	revisions := map[string]string{} // job ID -> the revision it runs
	for _, stub := range pools {
		job, _, err := agent.Client.Jobs().Info(stub.ID, nil)
		if err != nil {
			t.Fatalf("read job %s: %v", stub.ID, err)
		}
		revisions[stub.ID] = job.Meta[names.MetaRevision]
		for _, g := range job.TaskGroups {
			for _, task := range g.Tasks {
				for _, a := range task.Artifacts {
					if a.GetterSource == nil || !strings.HasPrefix(*a.GetterSource, serverAddr+"/v1/blobs/") {
						t.Errorf("job %s task %s: artifact %v, want one under %s/v1/blobs/", stub.ID, task.Name, a.GetterSource, serverAddr)
					}
				}
			}
		}
	}
	r = e2etest.Butter(t, ".", append(append([]string{"keys", "create", "-address", serverAddr, "-token", mgmt}, certs.args()...), "iot")...)
	key := strings.TrimSpace(r.Stdout)
	if r.Code != 0 || key == "" {
		t.Fatalf("keys create: %+v", r)
	}

	gw := fmt.Sprintf("http://127.0.0.1:%d", gwPort)
	post := func(device string, temp float64) (int, string) {
		body := fmt.Sprintf(`{"device":%q,"temperature":%v}`, device, temp)
		req, _ := http.NewRequest("POST", gw+"/devices/"+device+"/readings", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// The gateway picks the route and the key up at its next refresh.
	e2etest.WaitFor(t, 4*time.Minute, "the ingest route answering through the gateway", func() bool {
		code, _ := post("d1", 20)
		return code == 200
	})
	if code, body := post("d1", 31.5); code != 200 {
		t.Fatalf("second reading: %d %s", code, body)
	}
	if code, body := post("d2", 10); code != 200 {
		t.Fatalf("reading of d2: %d %s", code, body)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics("iot.alerts"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("no alert for d1 on iot.alerts within 4 minutes")
		}
		var found bool
		fs.EachRecord(func(rec *kgo.Record) {
			var a struct {
				Device   string
				From, To float64
			}
			if json.Unmarshal(rec.Value, &a) == nil && a.Device == "d1" {
				t.Logf("alert: %s", rec.Value)
				if a.From != 20 || a.To != 31.5 {
					t.Errorf("alert %s, want d1 from 20 to 31.5", rec.Value)
				}
				found = true
			}
			if strings.Contains(string(rec.Value), `"d2"`) {
				t.Errorf("d2 had one reading and no jump, yet: %s", rec.Value)
			}
		})
		if found {
			break
		}
	}

	// The connectors, in the pools on Nomad: the alert is a row, the
	// three readings are points; a reading published over MQTT goes
	// through the source and the detector (d3's jump, an alert row).
	alertRows := func(device string) int {
		var n int
		fmt.Sscan(pg.Query(fmt.Sprintf("SELECT count(*) FROM alerts WHERE device = '%s'", device))[0][0], &n)
		return n
	}
	e2etest.WaitFor(t, 2*time.Minute, "d1's alert as a PostgreSQL row and 3 readings as InfluxDB points", func() bool {
		v := ix.QueryDB("iot", "SELECT count(temperature) FROM reading")
		return alertRows("d1") == 1 && len(v) > 0 && int(v[0][1].(float64)) == 3
	})
	e2etest.WaitFor(t, 2*time.Minute, "the MQTT source's subscription", func() bool {
		return strings.Contains(mq.Log(), "$share/butter-iot-readings-in/sensors/+/reading")
	})
	mq.Publish("sensors/d3/reading", `{"device":"d3","temperature":20}`, `{"device":"d3","temperature":35}`)
	e2etest.WaitFor(t, 2*time.Minute, "d3's alert from MQTT readings as a PostgreSQL row", func() bool { return alertRows("d3") == 1 })
	if rows := pg.Query("SELECT from_c, to_c FROM alerts WHERE device = 'd3'"); len(rows) != 1 || rows[0][0] != "20" || rows[0][1] != "35" {
		t.Errorf("d3's alert row: %v, want from 20 to 35", rows)
	}

	// Prometheus (Debian's, make test-deps installs it), run as
	// jobs/platform/prometheus.nomad.hcl runs it: it finds the pools, the
	// gateway and the control plane (over mutual TLS, with a client
	// certificate from its Nomad variable) through Nomad's services, and
	// scrapes their /metrics.
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus is not installed (make test-deps installs Debian's): %v", err)
	}
	if _, _, err := agent.Client.Variables().Create(&api.Variable{Path: "nomad/jobs/butter-prometheus", Items: map[string]string{
		"tls_ca": certs.read(t, certs.ca), "tls_cert": certs.read(t, certs.clientCert), "tls_key": certs.read(t, certs.clientKey),
	}}, nil); err != nil {
		t.Fatalf("put Prometheus's Nomad variable: %v", err)
	}
	promPort := testport.Port(t)
	run("prometheus.nomad.hcl", fmt.Sprintf("prometheus_bin = %q\nhttp_port = %d\nscrape_interval = \"2s\"\n", promBin, promPort))
	defer func() {
		if t.Failed() {
			nomadtest.LogTasks(t, agent.Client, "butter-prometheus", 6000, "stderr", "stdout")
		}
	}()
	prom := fmt.Sprintf("http://127.0.0.1:%d", promPort)
	query := func(q string) (float64, bool) {
		resp, err := http.Get(prom + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return 0, false
		}
		defer resp.Body.Close()
		var out struct {
			Data struct {
				Result []struct {
					Value [2]any
				}
			}
		}
		if json.NewDecoder(resp.Body).Decode(&out) != nil || len(out.Data.Result) == 0 {
			return 0, false
		}
		s, _ := out.Data.Result[0].Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		return v, err == nil
	}
	for _, q := range []struct{ what, query string }{
		{"ingest's three calls, scraped from its pool with the project's labels", `sum(butter_invocations_total{job="butter-pools",project="iot",pool="default",function="ingest",outcome="ok"}) >= 3`},
		{"the readings stream's lag, from detect's pool", `count(butter_consumer_lag{job="butter-pools",project="iot",function="detect",stream="readings"}) >= 1`},
		{"the gateway's requests", `sum(butter_gateway_requests_total{job="butter-gateway"}) >= 3`},
		{"the control plane scraped over mutual TLS", `up{job="butter-server"} == 1`},
		{"the Go collector of the pools", `count(go_goroutines{job="butter-pools"}) >= 1`},
		{"the control plane's Raft leader", `butter_server_raft_state{job="butter-server",state="Leader"} == 1`},
		{"the control plane's deploys of examples/iot, healthy on real Nomad", `sum(butter_server_deploys_total{job="butter-server",project="iot",outcome="healthy"}) >= 1`},
		{"the control plane's API requests", `sum(butter_server_http_requests_total{job="butter-server"}) >= 1`},
	} {
		e2etest.WaitFor(t, 3*time.Minute, "Prometheus: "+q.what, func() bool {
			_, ok := query(q.query)
			return ok
		})
	}

	// The pools under Nomad traced through the driver's otel_env: the
	// receiver got ingest's invocation from a butter pool.
	e2etest.WaitFor(t, time.Minute, "a span of ingest's invocation from a pool under Nomad", func() bool {
		for _, s := range rcv.Spans() {
			if s.Service == "butter-pool" && s.Name == "invoke ingest" {
				return true
			}
		}
		return false
	})
	// The control plane on Nomad, traced through its Nomad variable: the
	// deployer's calls to Nomad that registered the project's jobs, each a
	// client span naming the job, the project and the revision the job
	// runs.
	e2etest.WaitFor(t, time.Minute, "the control plane's spans of registering examples/iot's jobs with Nomad", func() bool {
		seen := map[string]bool{}
		for _, s := range rcv.Spans() {
			id, ok := strings.CutPrefix(s.Name, "register job ")
			if s.Service != "butter-server" || !ok {
				continue
			}
			if rev, known := revisions[id]; !known || rev == "" || s.Kind != 3 || s.Error || s.Attributes["butter.project"] != "iot" || s.Attributes["butter.revision"] != rev {
				t.Fatalf("a span of registering a job: %+v; want a client span without error, of project iot, for one of the jobs Nomad runs, with its revision (%v)", s, revisions)
			}
			seen[id] = true
		}
		return len(seen) == len(revisions)
	})
}

// dumpTopics logs the records of topics, for a failing test.
func dumpTopics(t *testing.T, brokers string, topics ...string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			var hdrs []string
			for _, h := range r.Headers {
				hdrs = append(hdrs, h.Key+"="+string(h.Value))
			}
			t.Logf("%s[%d]@%d key=%s %s %v", r.Topic, r.Partition, r.Offset, r.Key, r.Value, hdrs)
		})
	}
}

// certs are the platform's TLS files, made by `butter tls` as an operator
// makes them: a CA, a server certificate (for 127.0.0.1, among its
// names) and a client certificate.
type certs struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

// makeCerts runs `butter tls ca create` and `butter tls cert create
// -server` and `-client` in a temporary directory.
func makeCerts(t *testing.T) certs {
	t.Helper()
	dir := t.TempDir()
	for _, args := range [][]string{{"tls", "ca", "create"}, {"tls", "cert", "create", "-server"}, {"tls", "cert", "create", "-client"}} {
		if r := e2etest.Butter(t, dir, args...); r.Code != 0 {
			t.Fatalf("butter %s: %+v", strings.Join(args, " "), r)
		}
	}
	f := func(name string) string { return filepath.Join(dir, name) }
	return certs{
		ca:         f("butter-agent-ca.pem"),
		serverCert: f("global-server-butter-0.pem"), serverKey: f("global-server-butter-0-key.pem"),
		clientCert: f("global-client-butter-0.pem"), clientKey: f("global-client-butter-0-key.pem"),
	}
}

// args are the CLI's TLS flags for the client certificate.
func (c certs) args() []string {
	return []string{"-ca-cert", c.ca, "-client-cert", c.clientCert, "-client-key", c.clientKey}
}

// read returns a file's contents (PEM).
func (c certs) read(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// client returns an HTTP client that trusts the CA and, with withCert,
// presents the client certificate.
func (c certs) client(t *testing.T, withCert bool) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(c.read(t, c.ca))) {
		t.Fatalf("no certificate in %s", c.ca)
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if withCert {
		pair, err := tls.LoadX509KeyPair(c.clientCert, c.clientKey)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}
