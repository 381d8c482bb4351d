package nomad

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	vault "github.com/hashicorp/vault/api"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/butterfn/butter/e2e/e2etest"
	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/butterfn/butter/internal/vaulttest"
)

// probeJS is the code of both functions of the secrets test: it answers
// its environment variables, the content of files, its pid, and emits.
const probeJS = `const fs = require('fs');
exports.handle = async (input, ctx) => {
  const q = JSON.parse(Buffer.from(input).toString());
  switch (q.op) {
    case 'env': return process.env[q.name] || '';
    case 'pid': return String(process.pid);
    case 'read':
      try {
        const st = fs.statSync(q.path);
        return st.isDirectory() ? 'dir: ' + fs.readdirSync(q.path).join(',') : fs.readFileSync(q.path, 'utf8');
      } catch (e) { return 'error: ' + e.code; }
    case 'emit':
      await ctx.emit('audit', JSON.stringify({ from: process.env.BUTTER_FUNCTION, has_db: Boolean(process.env.DB_PASSWORD) }));
      return 'emitted';
  }
  return 'unknown op';
};
`

// secretsSpec is a project of two functions in one pool: holder declares
// two secrets (one in KV version 1 with a short ttl, so that Nomad's
// template runner re-reads it within seconds; one in KV version 2, the
// layout butter setup vault grants), nosy declares none. The project's
// Kafka needs a SASL password, given encrypted with the project's transit
// key. A connector, an HTTP sink of the audit stream, signs each record
// with a key given encrypted with the same transit key.
const secretsSpec = `project "%s" {
  deploy {
    min_healthy_time = "1s"
    healthy_deadline = "2m"
  }
  kafka {
    brokers = [%q]
    sasl {
      mechanism          = "PLAIN"
      username           = "butter"
      password_encrypted = %q
    }
  }
}

stream "audit" {
  partitions = 1
}

function "holder" {
  runtime = "node"
  source  = "probe"
  handler = "index.handle"
  timeout = "5s"
  memory  = 64
  emits   = [stream.audit]
  instances {
    min = 1
    max = 4
  }
  secret "DB_PASSWORD" {
    vault = "kv1/butter/%s/db#password"
  }
  secret "API_KEY" {
    vault = "secret/data/butter/%s/api#key"
  }
}

function "nosy" {
  runtime = "node"
  source  = "probe"
  handler = "index.handle"
  timeout = "5s"
  memory  = 64
  instances {
    min = 1
    max = 2
  }
}

sink "http" "audit-hook" {
  stream              = stream.audit
  url                 = %q
  offset              = "first"
  signature_encrypted = %q
}
`

// TestSecretsOnNomad is issue 7's acceptance on a real Nomad agent
// configured for workload identity and a real Vault dev server: the
// isolation of a function's secrets from its neighbour in the same pool
// (environment, files, /proc) and of the task's Vault token from every
// function; a rotation under a client loop with no failed call; no secret
// value in the rendered job, a Raft snapshot, any topic's records or any
// log; and a clear task event, with no function started, when Vault is
// down.
func TestSecretsOnNomad(t *testing.T) {
	root := e2etest.Root()
	v := vaulttest.Start(t)
	// A Kafka-protocol broker that requires SASL: the pool reaches it only
	// with the password it decrypts.
	const saslPass = "kafka-sasl-password-3d9b"
	kafka, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(1), kfake.EnableSASL(), kfake.Superuser("PLAIN", "butter", saslPass))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kafka.Close)
	kafkaAddr := kafka.ListenAddrs()[0]
	saslOpt := kgo.SASL(plain.Auth{User: "butter", Pass: saslPass}.AsMechanism())
	pluginDir := e2etest.PluginDir()
	agent := nomadtest.StartWith(t, nomadtest.Options{
		PluginDir: pluginDir,
		HCL: fmt.Sprintf(`
plugin "nomad-driver-butter" {
  config {
    butter_path = %q
    vault_addr  = %q
  }
}
vault {
  enabled               = true
  address               = %q
  jwt_auth_backend_path = "jwt-nomad/"
  default_identity {
    aud = ["vault.io"]
    ttl = "1h"
  }
}
`, e2etest.Bin(), v.Addr, v.Addr),
		NodeReady: func(n *api.Node) bool { d := n.Drivers["butter"]; return d != nil && d.Healthy },
	})
	if r := e2etest.Butter(t, root, "setup", "vault", "-vault-addr", v.Addr, "-token", v.RootToken, "-nomad-addr", agent.Addr, "-project", "vt,vtdown"); r.Code != 0 {
		t.Fatalf("butter setup vault: %+v", r)
	}
	// The KV version 1 mount, readable by the project's policy as an
	// operator would grant it.
	if err := v.Client.Sys().Mount("kv1", &vault.MountInput{Type: "kv", Options: map[string]string{"version": "1"}}); err != nil {
		t.Fatal(err)
	}
	policy, err := v.Client.Sys().GetPolicy("butter-vt")
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Client.Sys().PutPolicy("butter-vt", policy+"\npath \"kv1/butter/vt/*\" {\n  capabilities = [\"read\"]\n}\n"); err != nil {
		t.Fatal(err)
	}
	const (
		first  = "first-db-password-7f3a"
		second = "second-db-password-91c2"
		apiKey = "api-key-value-55e0"
	)
	putDB := func(value string) {
		t.Helper()
		if _, err := v.Client.Logical().Write("kv1/butter/vt/db", map[string]any{"password": value, "ttl": "3s"}); err != nil {
			t.Fatal(err)
		}
	}
	putDB(first)
	r := e2etest.Butter(t, root, "secrets", "encrypt", "-vault-addr", v.Addr, "-token", v.RootToken, "vt", saslPass)
	ciphertext := strings.TrimSpace(r.Stdout)
	if r.Code != 0 || !strings.HasPrefix(ciphertext, "vault:v1:") {
		t.Fatalf("butter secrets encrypt: %+v", r)
	}
	// The audit stream's webhook, and its signing key encrypted.
	const hookKey = "audit-hook-key-6c1d"
	r = e2etest.Butter(t, root, "secrets", "encrypt", "-vault-addr", v.Addr, "-token", v.RootToken, "vt", hookKey)
	hookCiphertext := strings.TrimSpace(r.Stdout)
	if r.Code != 0 || !strings.HasPrefix(hookCiphertext, "vault:v1:") {
		t.Fatalf("butter secrets encrypt: %+v", r)
	}
	var hookMu sync.Mutex
	var hooked []string // the bodies delivered with a valid signature
	var badSigs int
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(hookKey))
		mac.Write(b)
		hookMu.Lock()
		if r.Header.Get("Butter-Signature") == "sha256="+hex.EncodeToString(mac.Sum(nil)) {
			hooked = append(hooked, string(b))
		} else {
			badSigs++
		}
		hookMu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)
	if _, err := v.Client.KVv2("secret").Put(context.Background(), "butter/vt/api", map[string]any{"key": apiKey}); err != nil {
		t.Fatal(err)
	}

	s := e2etest.StartServer(t, "-nomad-addr", agent.Addr)
	addr := "http://" + s.HTTP
	dir := filepath.Join(t.TempDir(), "vt")
	writeFiles(t, dir, map[string]string{
		"vt.fn.hcl":      fmt.Sprintf(secretsSpec, "vt", kafkaAddr, ciphertext, "vt", "vt", hook.URL, hookCiphertext),
		"probe/index.js": probeJS,
	})
	r = e2etest.Butter(t, ".", "deploy", "-address", addr, dir)
	if r.Code != 0 || !strings.Contains(r.Stdout, "is healthy") {
		t.Fatalf("deploy: %+v", r)
	}
	logs := []string{r.Stdout, r.Stderr}

	// The pool's address, from Nomad's service registry.
	var poolURL string
	e2etest.WaitFor(t, time.Minute, "the pool's service", func() bool {
		regs, _, err := agent.Client.Services().Get("butter-vt-default", nil)
		if err != nil || len(regs) == 0 {
			return false
		}
		poolURL = fmt.Sprintf("http://%s:%d", regs[0].Address, regs[0].Port)
		return true
	})
	call := func(fn, body string) (string, error) {
		resp, err := http.Post(poolURL+"/v1/invoke/"+fn, "application/json", strings.NewReader(body))
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return string(b), fmt.Errorf("%s: %s", resp.Status, b)
		}
		return string(b), nil
	}
	must := func(fn, body string) string {
		t.Helper()
		out, err := call(fn, body)
		if err != nil {
			t.Fatalf("%s %s: %v", fn, body, err)
		}
		return out
	}
	env := func(fn, name string) string { return must(fn, fmt.Sprintf(`{"op":"env","name":%q}`, name)) }
	read := func(fn, path string) string { return must(fn, fmt.Sprintf(`{"op":"read","path":%q}`, path)) }

	// The holder reads both values from Vault.
	if got := env("holder", "DB_PASSWORD"); got != first {
		t.Fatalf("holder's DB_PASSWORD = %q, want the Vault value", got)
	}
	if got := env("holder", "API_KEY"); got != apiKey {
		t.Fatalf("holder's API_KEY = %q, want the Vault value", got)
	}
	// Where things are: the holder's pid, its parent the pool, whose
	// environment (readable by this root test, not by the functions)
	// names the task's directories.
	holderPid := must("holder", `{"op":"pid"}`)
	poolPid := parentOf(t, holderPid)
	poolEnv := procEnv(t, poolPid)
	secretsDir, allocDir := poolEnv["NOMAD_SECRETS_DIR"], poolEnv["NOMAD_ALLOC_DIR"]
	if secretsDir == "" || allocDir == "" {
		t.Fatalf("the pool (pid %s) runs without NOMAD_SECRETS_DIR or NOMAD_ALLOC_DIR: %v", poolPid, poolEnv)
	}
	token := filepath.Join(secretsDir, "vault_token")
	rendered := filepath.Join(secretsDir, "butter", "holder.json")
	// Controls: everything the functions must not read exists and holds
	// what it should, so that a refusal below means something.
	if b, err := os.ReadFile(token); err != nil || len(bytes.TrimSpace(b)) == 0 {
		t.Fatalf("the task has no Vault token at %s (%v)", token, err)
	}
	if b, err := os.ReadFile(rendered); err != nil || !strings.Contains(string(b), first) {
		t.Fatalf("Nomad did not render the holder's secrets into %s (%v): %s", rendered, err, b)
	}
	if e := procEnv(t, holderPid); e["DB_PASSWORD"] != first {
		t.Fatalf("the holder's /proc environ lacks its secret")
	}
	if v := poolEnv["VAULT_TOKEN"]; v != "" {
		t.Errorf("the pool's environment holds VAULT_TOKEN")
	}

	// Isolation: the neighbour cannot see the secret in its environment,
	// its files, or the holder's /proc; no function reads the token.
	for _, name := range []string{"DB_PASSWORD", "API_KEY", "VAULT_TOKEN"} {
		if got := env("nosy", name); got != "" {
			t.Errorf("the neighbour's %s = %q", name, got)
		}
	}
	for _, path := range []string{
		"/proc/" + holderPid + "/environ",
		"/proc/" + holderPid + "/mem",
		"/proc/" + holderPid + "/cwd",
		"/proc/" + poolPid + "/environ",
		token, rendered, secretsDir, filepath.Dir(allocDir),
	} {
		if got := read("nosy", path); !strings.HasPrefix(got, "error: ") {
			t.Errorf("the neighbour reads %s: %.60q", path, got)
		}
	}
	for _, path := range []string{token, rendered} {
		if got := read("holder", path); !strings.HasPrefix(got, "error: ") {
			t.Errorf("the holder reads %s: %.60q", path, got)
		}
	}
	if got := must("holder", `{"op":"emit"}`); got != "emitted" {
		t.Fatalf("emit: %q", got)
	}
	// The sink, a connector running in the same pool on Nomad, delivers
	// the emit signed with the key the pool decrypted with its task's
	// Vault token.
	e2etest.WaitFor(t, time.Minute, "the audit record delivered signed by the sink", func() bool {
		hookMu.Lock()
		defer hookMu.Unlock()
		return len(hooked) > 0
	})
	hookMu.Lock()
	if badSigs > 0 || !strings.Contains(hooked[0], `"from":"holder"`) {
		t.Errorf("the sink delivered %q (and %d with a wrong signature)", hooked, badSigs)
	}
	hookMu.Unlock()
	nosyPid := must("nosy", `{"op":"pid"}`)

	// Rotation under a client loop: no call fails, and only the holder's
	// instances are replaced.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var calls, failed atomic.Int64
	var sawNew atomic.Bool
	var firstFailure atomic.Value
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				got, err := call("holder", `{"op":"env","name":"DB_PASSWORD"}`)
				calls.Add(1)
				switch {
				case err == nil && got == second:
					sawNew.Store(true)
				case err == nil && got == first:
				default:
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("%q %v", got, err))
				}
			}
		}()
	}
	e2etest.WaitFor(t, 30*time.Second, "calls before the rotation", func() bool { return calls.Load() > 50 })
	putDB(second)
	t.Cleanup(func() {
		if t.Failed() {
			b, err := os.ReadFile(filepath.Join(allocDir, "logs", "pool.stderr.0"))
			t.Logf("the pool's log (%v, tail):\n%s", err, e2etest.Tail(string(b), 4000))
			b, err = os.ReadFile(rendered)
			t.Logf("the rendered holder.json now (%v): %s", err, bytes.ReplaceAll(bytes.ReplaceAll(b, []byte(first), []byte("<first>")), []byte(second), []byte("<second>")))
			sec, err := v.Client.Logical().Read("kv1/butter/vt/db")
			if err == nil && sec != nil {
				t.Logf("Vault's kv1/butter/vt/db holds the new value: %v (lease %ds)", sec.Data["password"] == second, sec.LeaseDuration)
			}
			var lines []string
			for _, l := range strings.Split(agent.Log(), "\n") {
				if strings.Contains(l, "kv1") || strings.Contains(l, "Signal") || strings.Contains(l, "signal") || strings.Contains(l, "rendered") {
					lines = append(lines, l)
				}
			}
			t.Logf("the agent's template lines:\n%s", e2etest.Tail(strings.Join(lines, "\n"), 4000))
		}
	})
	e2etest.WaitFor(t, 90*time.Second, "the rotated value reaching the holder", sawNew.Load)
	before := calls.Load()
	e2etest.WaitFor(t, 30*time.Second, "calls after the rotation", func() bool { return calls.Load() > before+50 })
	cancel()
	wg.Wait()
	t.Logf("%d calls over the rotation, %d failed", calls.Load(), failed.Load())
	if n := failed.Load(); n > 0 {
		t.Errorf("%d calls failed over the rotation, the first: %v", n, firstFailure.Load())
	}
	if got := env("holder", "DB_PASSWORD"); got != second {
		t.Errorf("after the rotation the holder reads %q", got)
	}
	if got := must("nosy", `{"op":"pid"}`); got != nosyPid {
		t.Errorf("the neighbour was restarted by the holder's rotation (pid %s, then %s)", nosyPid, got)
	}
	if got := must("holder", `{"op":"emit"}`); got != "emitted" {
		t.Fatalf("emit: %q", got)
	}

	// No leaks: the rendered job, a Raft snapshot, every topic's records,
	// every log.
	job, _, err := agent.Client.Jobs().Info("butter-vt", nil)
	if err != nil {
		t.Fatal(err)
	}
	jobJSON, _ := json.Marshal(job)
	if r := e2etest.Butter(t, ".", "job", "render", dir); r.Code == 0 {
		logs = append(logs, r.Stdout)
	} else {
		t.Errorf("butter job render: %+v", r)
	}
	snap := filepath.Join(t.TempDir(), "snap")
	if r := e2etest.Butter(t, ".", "operator", "snapshot", "save", "-address", addr, snap); r.Code != 0 {
		t.Fatalf("snapshot save: %+v", r)
	}
	snapshot := readMaybeGzip(t, snap)
	records := allRecords(t, kafkaAddr, saslOpt)
	if !bytes.Contains(records, []byte(`"from":"holder"`)) {
		t.Fatalf("the holder's emits are not in the topics: the record search cannot tell anything")
	}
	var poolLogs []byte
	for _, name := range []string{"pool.stdout.0", "pool.stderr.0"} {
		b, err := os.ReadFile(filepath.Join(allocDir, "logs", name))
		if err != nil {
			t.Errorf("read the pool's log %s: %v", name, err)
		}
		poolLogs = append(poolLogs, b...)
	}
	if !bytes.Contains(poolLogs, []byte("secrets changed")) {
		t.Errorf("the pool's logs do not show the rotation:\n%s", e2etest.Tail(string(poolLogs), 3000))
	}
	executorLog, _ := os.ReadFile(filepath.Join(filepath.Dir(secretsDir), "executor.out"))
	for what, hay := range map[string][]byte{
		"the job in Nomad":      jobJSON,
		"the Raft snapshot":     snapshot,
		"the topics' records":   records,
		"the pool's logs":       poolLogs,
		"the executor's log":    executorLog,
		"the Nomad agent's log": []byte(agent.Log()),
		"the server's log":      []byte(s.Log.String()),
		"the CLI's output":      []byte(strings.Join(logs, "\n")),
	} {
		for _, secret := range []string{first, second, apiKey, saslPass, hookKey} {
			if bytes.Contains(hay, []byte(secret)) {
				t.Errorf("%s holds a secret value", what)
			}
		}
	}
	if !bytes.Contains(jobJSON, []byte("kv1/butter/vt/db")) || !bytes.Contains(jobJSON, []byte(ciphertext)) {
		t.Errorf("the job does not reference the secret's path and the SASL ciphertext: the job search cannot tell anything")
	}
	if !bytes.Contains(snapshot, []byte("password_encrypted")) {
		t.Errorf("the snapshot does not hold the spec's encrypted password: the snapshot search cannot tell anything")
	}

	// Vault down: a project deployed while Vault is unreachable gets a task
	// event naming Vault, and its pool never starts.
	v.Stop()
	down := filepath.Join(t.TempDir(), "vtdown")
	writeFiles(t, down, map[string]string{
		"vtdown.fn.hcl":  fmt.Sprintf(secretsSpec, "vtdown", kafkaAddr, ciphertext, "vtdown", "vtdown", hook.URL, hookCiphertext),
		"probe/index.js": probeJS,
	})
	if r := e2etest.Butter(t, ".", "deploy", "-detach", "-address", addr, down); r.Code != 0 {
		t.Fatalf("deploy -detach: %+v", r)
	}
	var event string
	e2etest.WaitFor(t, 2*time.Minute, "a task event naming Vault", func() bool {
		allocs, _, err := agent.Client.Jobs().Allocations("butter-vtdown", true, nil)
		if err != nil {
			return false
		}
		for _, a := range allocs {
			for _, ts := range a.TaskStates {
				for _, e := range ts.Events {
					msg := e.Type + ": " + e.DisplayMessage
					if strings.Contains(strings.ToLower(msg), "vault") {
						event = msg
					}
					if e.Type == api.TaskStarted {
						t.Fatalf("the pool started while Vault was down: %+v", ts.Events)
					}
				}
			}
		}
		return event != ""
	})
	t.Logf("task event with Vault down: %s", event)
}

// parentOf is a process's parent pid.
func parentOf(t *testing.T, pid string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no PPid in /proc/%s/status", pid)
	return ""
}

// procEnv reads a process's environment.
func procEnv(t *testing.T, pid string) map[string]string {
	t.Helper()
	if _, err := strconv.Atoi(pid); err != nil {
		t.Fatalf("pid %q", pid)
	}
	b, err := os.ReadFile("/proc/" + pid + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if k, v, ok := strings.Cut(string(kv), "="); ok {
			out[k] = v
		}
	}
	return out
}

// readMaybeGzip reads a file, gunzipping it if it is gzipped.
func readMaybeGzip(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if zr, err := gzip.NewReader(bytes.NewReader(b)); err == nil {
		if u, err := io.ReadAll(zr); err == nil {
			return u
		}
	}
	return b
}

// allRecords reads every record of every topic of the broker, keys,
// values and headers concatenated.
func allRecords(t *testing.T, brokerAddr string, opts ...kgo.Opt) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	adm, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokerAddr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ends, err := kadm.NewClient(adm).ListEndOffsets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[int32]int64{}
	total := int64(0)
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			if want[o.Topic] == nil {
				want[o.Topic] = map[int32]int64{}
			}
			want[o.Topic][o.Partition] = o.Offset
			total += o.Offset
		}
	})
	if total == 0 {
		return nil
	}
	parts := map[string]map[int32]kgo.Offset{}
	for topic, ps := range want {
		parts[topic] = map[int32]kgo.Offset{}
		for p := range ps {
			parts[topic][p] = kgo.NewOffset().AtStart()
		}
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokerAddr), kgo.ConsumePartitions(parts)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out bytes.Buffer
	for total > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read the topics: %d records still missing", total)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset < want[r.Topic][r.Partition] {
				total--
			}
			out.Write(r.Key)
			out.Write(r.Value)
			for _, h := range r.Headers {
				out.WriteString(h.Key)
				out.Write(h.Value)
			}
		})
	}
	return out.Bytes()
}

// writeFiles writes files (relative path to content) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for path, content := range files {
		p := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
