package dev

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/e2e/e2etest"
	"github.com/butterfn/butter/internal/testport"
)

// devSecretsSpec is a project whose two functions share butter dev's one
// pool: holder declares a secret, neighbour does not.
const devSecretsSpec = `project "sec" {}

function "holder" {
  runtime = "node"
  source  = "functions/holder"
  handler = "index.handle"
  secret "DB_PASSWORD" {
    vault = "secret/data/butter/sec/db#password"
  }
  trigger "http" {
    route = "POST /holder"
  }
}

function "neighbour" {
  runtime = "node"
  source  = "functions/neighbour"
  handler = "index.handle"
  trigger "http" {
    route = "POST /neighbour"
  }
}
`

// holderJS answers its secret and its pid.
const holderJS = `exports.handle = async () =>
  Buffer.from(JSON.stringify({value: process.env.DB_PASSWORD || null, pid: process.pid}));
`

// neighbourJS tries every way to the holder's secret it is told of, and
// answers what it saw: its own environment, and each read's content or
// error code.
const neighbourJS = `const fs = require('fs');
function attempt(f) {
  try { return {ok: String(f())}; } catch (e) { return {code: e.code || String(e)}; }
}
exports.handle = async (input) => {
  const q = JSON.parse(input.toString());
  return Buffer.from(JSON.stringify({
    env: Object.entries(process.env).map(([k, v]) => k + '=' + v).join('\n'),
    holderEnviron: attempt(() => fs.readFileSync('/proc/' + q.pid + '/environ', 'latin1')),
    poolEnviron: attempt(() => fs.readFileSync('/proc/' + process.ppid + '/environ', 'latin1')),
    secretsFile: attempt(() => fs.readFileSync(q.secretsFile, 'utf8')),
    dataDir: attempt(() => fs.readdirSync(q.dataDir).join(',')),
  }));
};
`

func writeDevSecretsProject(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "sec")
	for name, src := range map[string]string{"holder": holderJS, "neighbour": neighbourJS} {
		if err := os.MkdirAll(filepath.Join(dir, "functions", name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "functions", name, "index.js"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "sec.fn.hcl"), []byte(devSecretsSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// envWithout is this process's environment without the named variables.
func envWithout(names ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+k+" ") {
			out = append(out, kv)
		}
	}
	return out
}

func postJSON(t *testing.T, url string, in, out any) {
	t.Helper()
	b, _ := json.Marshal(in)
	resp, err := http.Post(url, "application/json", strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("POST %s: %v: %s", url, err, body)
	}
}

type attempt struct {
	OK   *string `json:"ok"`
	Code string  `json:"code"`
}

// TestDevSecrets: butter dev gives a function the secret it declares,
// from its own environment, and then from the secrets file once that
// changes; the neighbour in the same pool sees it nowhere: not in its
// environment, not in the holder's or the pool's /proc/<pid>/environ, not
// in the secrets file or the data dir.
func TestDevSecrets(t *testing.T) {
	const fromEnv, fromFile = "env-pw-7f3a", "file-pw-91c2"
	dir := writeDevSecretsProject(t)
	gw := testport.Addr(t)
	cmd := exec.Command(e2etest.Bin(), "dev", "-listen", gw, "-server-addr", testport.Addr(t), dir)
	cmd.Env = append(envWithout("DB_PASSWORD"), "DB_PASSWORD="+fromEnv)
	d := startDev(t, cmd)
	if !strings.Contains(d.out.String(), "holder: DB_PASSWORD (environment)") {
		t.Errorf("the ready output does not say where holder's secret comes from:\n%s", d.out.String())
	}
	secretsFile := filepath.Join(dir, ".butter", "secrets.env")
	dataDir := filepath.Join(dir, ".butter", "dev")

	var holder struct {
		Value string
		PID   int
	}
	postJSON(t, "http://"+gw+"/holder", nil, &holder)
	if holder.Value != fromEnv {
		t.Fatalf("holder got DB_PASSWORD %q, want the value from the environment", holder.Value)
	}

	// probe fails unless every read fails with EACCES, but for the
	// secrets file before it exists.
	probe := func(wantSecret string, fileExists bool) {
		t.Helper()
		var seen struct {
			Env           string
			HolderEnviron attempt
			PoolEnviron   attempt
			SecretsFile   attempt
			DataDir       attempt
		}
		postJSON(t, "http://"+gw+"/neighbour", map[string]any{"pid": holder.PID, "secretsFile": secretsFile, "dataDir": dataDir}, &seen)
		if strings.Contains(seen.Env, "DB_PASSWORD") || strings.Contains(seen.Env, wantSecret) {
			t.Errorf("the neighbour's environment holds the secret:\n%s", seen.Env)
		}
		for what, a := range map[string]attempt{
			fmt.Sprintf("/proc/%d/environ (the holder)", holder.PID): seen.HolderEnviron,
			"/proc/<its parent>/environ (butter dev)":                seen.PoolEnviron,
			secretsFile: seen.SecretsFile,
			dataDir:     seen.DataDir,
		} {
			if what == secretsFile && !fileExists && a.Code == "ENOENT" {
				continue
			}
			if a.OK != nil || a.Code != "EACCES" {
				leak := a.OK != nil && strings.Contains(*a.OK, wantSecret)
				t.Errorf("the neighbour read %s: error %q, content read: %v, holds the secret: %v; want EACCES", what, a.Code, a.OK != nil, leak)
			}
		}
	}
	probe(fromEnv, false)

	// The secrets file wins over the environment, and a change to it
	// redeploys.
	if err := os.WriteFile(secretsFile, []byte("# dev secrets\nholder.DB_PASSWORD="+fromFile+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e2etest.WaitFor(t, 60*time.Second, "holder to get the value from the secrets file", func() bool {
		var h struct {
			Value string
			PID   int
		}
		postJSON(t, "http://"+gw+"/holder", nil, &h)
		if h.Value == fromFile {
			holder.PID = h.PID
			return true
		}
		return false
	})
	if !strings.Contains(d.out.String(), "holder: DB_PASSWORD (.butter/secrets.env holder.DB_PASSWORD)") {
		t.Errorf("the redeploy does not say holder's secret now comes from the file:\n%s", d.out.String())
	}
	probe(fromFile, true)

	// A malformed file fails the redeploy, without the value, and the
	// running revision keeps serving.
	if err := os.WriteFile(secretsFile, []byte("holder.DB_PASSWORD="+fromFile+"\n\"unclosed-"+fromFile+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e2etest.WaitFor(t, 60*time.Second, "the failed redeploy", func() bool {
		return strings.Contains(d.out.String(), "redeploy failed; the running revision keeps serving")
	})
	if !strings.Contains(d.out.String(), secretsFile+":2: ") {
		t.Errorf("the failed redeploy does not name the file and line:\n%s", d.out.String())
	}
	postJSON(t, "http://"+gw+"/holder", nil, &holder)
	if holder.Value != fromFile {
		t.Errorf("after a failed redeploy holder got %q, want the running revision's value", holder.Value)
	}
	d.interrupt(t)
	for _, v := range []string{fromEnv, fromFile} {
		if strings.Contains(d.out.String(), v) {
			t.Errorf("butter dev's output shows a secret's value %q", v)
		}
	}
}

// TestDevSecretMissing: a project whose secret has no value does not
// deploy; the error names the secret and everywhere butter dev looked.
func TestDevSecretMissing(t *testing.T) {
	dir := writeDevSecretsProject(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e2etest.Bin(), "dev", "-listen", testport.Addr(t), "-server-addr", testport.Addr(t), dir)
	cmd.Env = envWithout("DB_PASSWORD")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("butter dev did not exit within 3 minutes:\n%s", out)
	}
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("butter dev: %v, want exit 1\n%s", err, out)
	}
	want := "function holder: secret DB_PASSWORD (secret/data/butter/sec/db#password) has no value: create " +
		filepath.Join(dir, ".butter", "secrets.env") + " with a line DB_PASSWORD=<value> (or holder.DB_PASSWORD=<value> for this function only), or set the environment variable DB_PASSWORD"
	if !strings.Contains(string(out), want) {
		t.Errorf("the output lacks\n  %s\n%s", want, out)
	}
	if strings.Contains(string(out), "butter dev ready") {
		t.Errorf("butter dev was ready without the secret:\n%s", out)
	}
}
