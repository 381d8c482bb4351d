package nomad

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/e2e/e2etest"
	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/butterfn/butter/internal/testport"
)

// iotExtra is added to a copy of examples/iot, whose only cron trigger
// fires nightly and which has no queued route: a cron function that
// fires every two seconds into the reports stream, and a queued route.
const iotExtra = `
function "tick" {
  runtime = "exec"
  command = ["cat"]
  output  = stream.reports
  timeout = "5s"
  trigger "cron" {
    schedule = "*/2 * * * * *"
  }
}

function "shout" {
  runtime = "exec"
  command = ["tr", "a-z", "A-Z"]
  timeout = "5s"
  trigger "http" {
    route = "POST /shout"
    mode  = "queued"
  }
}
`

// serverPolicy and gatewayPolicy are the least-privilege Nomad ACL
// policies of the control plane and the gateway, as docs/jobs.md gives
// them (TestIoTOnNomadACL checks that the doc carries them).
const (
	serverPolicy = `namespace "default" {
  capabilities = ["list-jobs", "read-job", "submit-job"]
}
`
	gatewayPolicy = `namespace "default" {
  capabilities = ["list-jobs", "read-job"]
}
`
)

func secret(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestIoTOnNomadACL runs the platform jobs of jobs/platform/ on a Nomad
// dev agent with ACLs enabled and bootstrapped, and the broker job as a
// Kafka-protocol broker (kfake over TCP) that requires SASL: each job's
// secrets come from its Nomad variable (nomad/jobs/<job>) through its
// template, the control plane and the gateway with least-privilege Nomad
// tokens of their own and their own SASL users, the pools with the
// driver plugin's SASL settings (password in a file). examples/iot (with
// a per-two-seconds cron function and a queued route added) deploys, a
// reading jump gives an alert, ticks reach the reports stream, and the
// queued route answers through Kafka. Then the server's variable gets a
// token Nomad does not know: the server restarts with it, the running
// revision keeps serving, and a new deploy fails with an error that
// names the cause.
func TestIoTOnNomadACL(t *testing.T) {
	root := e2etest.Root()
	kafkaPort, httpPort, raftPort, gwPort := testport.Port(t), testport.Port(t), testport.Port(t), testport.Port(t)
	brokers := fmt.Sprintf("127.0.0.1:%d", kafkaPort)

	// The SASL users: one per component, each mechanism used.
	type user struct{ mech, name, pw string }
	serverUser := user{"SCRAM-SHA-512", "butter-server", secret(t)}
	gatewayUser := user{"PLAIN", "butter-gateway", secret(t)}
	poolUser := user{"SCRAM-SHA-256", "butter-pools", secret(t)}
	testUser := user{"PLAIN", "test", secret(t)}
	var usersFile strings.Builder
	for _, u := range []user{serverUser, gatewayUser, poolUser, testUser} {
		fmt.Fprintf(&usersFile, "%s %s %s\n", u.mech, u.name, u.pw)
	}
	pwFile := filepath.Join(t.TempDir(), "kafka-password")
	if err := os.WriteFile(pwFile, []byte(poolUser.pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	agent := nomadtest.StartWith(t, nomadtest.Options{
		ACL:       true,
		PluginDir: e2etest.PluginDir(),
		HCL: fmt.Sprintf(`
plugin "raw_exec" {
  config {
    enabled = true
  }
}
plugin "nomad-driver-butter" {
  config {
    butter_path              = %q
    kafka_brokers            = [%q]
    kafka_sasl_mechanism     = %q
    kafka_sasl_username      = %q
    kafka_sasl_password_file = %q
  }
}
`, e2etest.Bin(), brokers, poolUser.mech, poolUser.name, pwFile),
		NodeReady: func(n *api.Node) bool {
			d, r := n.Drivers["butter"], n.Drivers["raw_exec"]
			return d != nil && d.Healthy && r != nil && r.Healthy
		},
	})

	// The tokens, from the policies docs/jobs.md gives.
	doc, err := os.ReadFile(filepath.Join(root, "docs", "jobs.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{serverPolicy, gatewayPolicy} {
		if !strings.Contains(string(doc), p) {
			t.Errorf("docs/jobs.md does not give the policy\n%s", p)
		}
	}
	serverToken := agent.Token(t, "butter-server", serverPolicy)
	gatewayToken := agent.Token(t, "butter-gateway", gatewayPolicy)

	putVar := func(path string, items map[string]string) {
		t.Helper()
		if _, _, err := agent.Client.Variables().Create(&api.Variable{Path: path, Items: items}, nil); err != nil {
			t.Fatalf("put the Nomad variable %s: %v", path, err)
		}
	}
	putVar("nomad/jobs/butter-broker", map[string]string{"sasl_users": usersFile.String()})
	putVar("nomad/jobs/butter-server", map[string]string{
		"NOMAD_TOKEN":           serverToken,
		broker.EnvSASLMechanism: serverUser.mech, broker.EnvSASLUsername: serverUser.name, broker.EnvSASLPassword: serverUser.pw,
	})

	serverAddr := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	runPlatformJob(t, agent, root, "broker.nomad.hcl", map[string]string{"butter_bin": e2etest.Bin(), "kafka_port": fmt.Sprint(kafkaPort), "sasl": "true"})
	common := map[string]string{"butter_bin": e2etest.Bin(), "nomad_addr": agent.Addr, "kafka_brokers": brokers, "server_addr": serverAddr}
	runPlatformJob(t, agent, root, "server.nomad.hcl", with(common, "http_port", fmt.Sprint(httpPort), "raft_port", fmt.Sprint(raftPort)))

	kcfg := broker.Config{Brokers: []string{brokers}, SASLMechanism: testUser.mech, SASLUser: testUser.name, SASLPassword: testUser.pw}
	kopts, err := kcfg.Opts()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			for _, id := range []string{"butter-broker", "butter-server", "butter-gateway", "butter-iot"} {
				nomadtest.LogTasks(t, agent.Client, id, 6000, "stderr", "stdout")
			}
			dumpTopicsOpts(t, kopts, "iot.readings", "iot.reports", "iot.failed-readings")
		}
	}()

	e2etest.WaitFor(t, 4*time.Minute, "the SASL broker running on Nomad", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return kcfg.Check(ctx) == nil
	})
	// The broker requires SASL: a client without a login is refused.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	err = broker.Config{Brokers: []string{brokers}}.Check(ctx)
	cancel()
	if err == nil {
		t.Fatal("the broker let a client in without SASL")
	}
	t.Logf("a client without SASL: %v", err)

	e2etest.WaitFor(t, 4*time.Minute, "the control plane running on Nomad", func() bool { return leader(serverAddr) != "" })
	// Butter's own ACLs: bootstrapped, and the gateway's read-only token
	// in its variable next to its Nomad token and SASL login.
	mgmt, butterGatewayToken := butterACL(t, serverAddr)
	putVar("nomad/jobs/butter-gateway", map[string]string{
		"NOMAD_TOKEN":           gatewayToken,
		"BUTTER_TOKEN":          butterGatewayToken,
		broker.EnvSASLMechanism: gatewayUser.mech, broker.EnvSASLUsername: gatewayUser.name, broker.EnvSASLPassword: gatewayUser.pw,
	})
	runPlatformJob(t, agent, root, "gateway.nomad.hcl", with(common, "http_port", fmt.Sprint(gwPort)))

	dir := filepath.Join(t.TempDir(), "iot")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(root, "examples", "iot"))); err != nil {
		t.Fatal(err)
	}
	appendFile(t, filepath.Join(dir, "iot.fn.hcl"), iotExtra)
	r := e2etest.Butter(t, ".", "deploy", "-address", serverAddr, "-token", mgmt, "-timeout", "6m", dir)
	t.Logf("deploy:\n%s%s", r.Stdout, r.Stderr)
	if r.Code != 0 {
		t.Fatalf("deploy examples/iot: %+v", r)
	}
	r = e2etest.Butter(t, ".", "keys", "create", "-address", serverAddr, "-token", mgmt, "iot")
	key := strings.TrimSpace(r.Stdout)
	if r.Code != 0 || key == "" {
		t.Fatalf("keys create: %+v", r)
	}

	gw := fmt.Sprintf("http://127.0.0.1:%d", gwPort)
	post := func(path, auth, body string) (int, string) {
		req, _ := http.NewRequest("POST", gw+path, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	reading := func(device string, temp float64) (int, string) {
		return post("/devices/"+device+"/readings", key, fmt.Sprintf(`{"device":%q,"temperature":%v}`, device, temp))
	}
	e2etest.WaitFor(t, 4*time.Minute, "the ingest route answering through the gateway", func() bool {
		code, _ := reading("d1", 20)
		return code == 200
	})
	if code, body := reading("d1", 31.5); code != 200 {
		t.Fatalf("second reading: %d %s", code, body)
	}

	// The queued route: gateway → Kafka (SASL, the gateway's user) →
	// pool (SASL, the pools' user) → Kafka → gateway.
	var queued string
	e2etest.WaitFor(t, 4*time.Minute, "the queued route answering through Kafka", func() bool {
		code, body := post("/shout", "", "through kafka")
		queued = fmt.Sprint(code, " ", body)
		return code == 200
	})
	if queued != "200 THROUGH KAFKA" {
		t.Errorf("queued route: %s, want 200 THROUGH KAFKA", queued)
	}

	// The alert (detect's output) and ticks (the server's timer producer
	// with its SASL user, then tick's output) on Kafka.
	cl, err := kgo.NewClient(append(kopts, kgo.ConsumeTopics("iot.alerts", "iot.reports"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer pcancel()
	var alert bool
	ticks := 0
	for !alert || ticks < 2 {
		fs := cl.PollFetches(pctx)
		if pctx.Err() != nil {
			t.Fatalf("within 5 minutes: alert for d1 %v, %d ticks on iot.reports (want 2)", alert, ticks)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			switch rec.Topic {
			case "iot.alerts":
				var a struct {
					Device   string
					From, To float64
				}
				if json.Unmarshal(rec.Value, &a) == nil && a.Device == "d1" {
					t.Logf("alert: %s", rec.Value)
					if a.From != 20 || a.To != 31.5 {
						t.Errorf("alert %s, want d1 from 20 to 31.5", rec.Value)
					}
					alert = true
				}
			case "iot.reports":
				if strings.Contains(string(rec.Value), `"timer":"iot.tick.0"`) {
					if ticks == 0 {
						t.Logf("tick: %s", rec.Value)
					}
					ticks++
				}
			}
		})
	}

	// The control plane's token replaced, in its variable, by one Nomad
	// does not know: the template re-renders and Nomad restarts the
	// server, which keeps its Raft data. The healthy revision stays
	// healthy; a new deploy fails, and the error says why.
	restarts := taskRestarts(t, agent, "butter-server", "server")
	putVar("nomad/jobs/butter-server", map[string]string{
		"NOMAD_TOKEN":           "00000000-0000-0000-0000-000000000000",
		broker.EnvSASLMechanism: serverUser.mech, broker.EnvSASLUsername: serverUser.name, broker.EnvSASLPassword: serverUser.pw,
	})
	e2etest.WaitFor(t, 4*time.Minute, "the server restarted with the new variable, and leading", func() bool {
		return taskRestarts(t, agent, "butter-server", "server") > restarts && leader(serverAddr) != ""
	})
	appendFile(t, filepath.Join(dir, "iot.fn.hcl"), "\n# a change, for a new revision\n")
	r = e2etest.Butter(t, ".", "deploy", "-address", serverAddr, "-token", mgmt, "-timeout", "4m", dir)
	t.Logf("deploy with a wrong Nomad token: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	if r.Code == 0 {
		t.Fatal("deploy with a wrong Nomad token succeeded")
	}
	// Nomad answers an unknown token with 403 "ACL token not found" on
	// some endpoints and "Permission denied" on others (the job read).
	if out := r.Stdout + r.Stderr; !strings.Contains(out, "$NOMAD_TOKEN") ||
		(!strings.Contains(out, "ACL token not found") && !strings.Contains(out, "Permission denied")) {
		t.Errorf("the deploy's error does not name the refused Nomad token")
	}
	// The failed revision was rolled back to the healthy one, which
	// still serves.
	// (Right after the server's restart and the rollback, the gateway
	// answered 401 "the API key is not valid" once; it is given time to
	// resync, and what it answered meanwhile is logged.)
	seen := map[string]bool{}
	e2etest.WaitFor(t, 2*time.Minute, "a reading served after the failed deploy", func() bool {
		code, body := reading("d3", 5)
		var e struct{ Error string }
		_ = json.Unmarshal([]byte(body), &e)
		if what := fmt.Sprint(code, e.Error); code != 200 && !seen[what] {
			seen[what] = true
			t.Logf("a reading after the failed deploy: %d %s", code, body)
		}
		return code == 200
	})
}

// taskRestarts returns how often the job's task has restarted in its
// newest allocation.
func taskRestarts(t *testing.T, agent *nomadtest.Agent, job, task string) uint64 {
	allocs, _, err := agent.Client.Jobs().Allocations(job, false, nil)
	if err != nil {
		return 0
	}
	var n uint64
	var newest uint64
	for _, a := range allocs {
		if ts := a.TaskStates[task]; ts != nil && a.CreateIndex >= newest {
			newest, n = a.CreateIndex, ts.Restarts
		}
	}
	return n
}

// runPlatformJob parses jobs/platform/<file> with the variables it
// declares among vars, and registers it.
func runPlatformJob(t *testing.T, agent *nomadtest.Agent, root, file string, vars map[string]string) {
	t.Helper()
	hcl, err := os.ReadFile(filepath.Join(root, "jobs", "platform", file))
	if err != nil {
		t.Fatal(err)
	}
	var v []string
	for name, val := range vars {
		if strings.Contains(string(hcl), "variable \""+name+"\"") {
			v = append(v, fmt.Sprintf("%s = %q", name, val))
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

// with returns a copy of m with the pairs kv added.
func with(m map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(m)+len(kv)/2)
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// leader returns the leader a control plane's API names, or "".
func leader(addr string) string {
	var out struct{ Leader string }
	resp, err := http.Get(addr + "/v1/status/leader")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return out.Leader
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// dumpTopicsOpts logs the records of topics with a client made of opts,
// for a failing test.
func dumpTopicsOpts(t *testing.T, opts []kgo.Opt, topics ...string) {
	cl, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			t.Logf("%s[%d]@%d key=%s %s", r.Topic, r.Partition, r.Offset, r.Key, r.Value)
		})
	}
}
