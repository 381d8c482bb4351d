package nomad

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	vault "github.com/hashicorp/vault/api"

	"github.com/butterfn/butter/e2e/e2etest"
	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/butterfn/butter/internal/vaulttest"
)

// butterEnv runs butter with the environment's VAULT_* and NOMAD_*
// variables replaced by env.
func butterEnv(t *testing.T, env []string, args ...string) e2etest.Result {
	t.Helper()
	cmd := exec.Command(e2etest.Bin(), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") && !strings.HasPrefix(kv, "NOMAD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	return e2etest.Run(t, cmd)
}

// wantPolicy is the policy setup writes for the project iot.
const wantPolicy = `# Written by butter setup vault: the secrets and transit key of the
# project "iot", for its Nomad jobs (JWT role "butter-iot").
path "secret/data/butter/iot/*" {
  capabilities = ["read"]
}

path "secret/metadata/butter/iot/*" {
  capabilities = ["list"]
}

path "transit/encrypt/butter-iot" {
  capabilities = ["update"]
}

path "transit/decrypt/butter-iot" {
  capabilities = ["update"]
}
`

// TestSetupVault runs `butter setup vault` twice against a real Vault dev
// server whose JWT auth method trusts a real Nomad agent, checks what it
// created through Vault's API, repairs drift, runs a Nomad job that logs
// in with the project's role, and one that may not.
func TestSetupVault(t *testing.T) {
	v := vaulttest.Start(t)
	agent := nomadtest.StartWith(t, nomadtest.Options{HCL: fmt.Sprintf(`
vault {
  enabled               = true
  address               = %q
  jwt_auth_backend_path = "jwt-nomad/"
  default_identity {
    aud = ["vault.io"]
    ttl = "1h"
  }
}
`, v.Addr)})
	root := e2etest.Root()
	flags := []string{"setup", "vault", "-vault-addr", v.Addr, "-token", v.RootToken, "-nomad-addr", agent.Addr}

	// The first run creates everything but secret/, which dev servers have.
	r := e2etest.Butter(t, root, append(flags, "-project", "iot", "-project", "web,iot")...)
	if r.Code != 0 {
		t.Fatalf("first run: exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
	}
	t.Logf("first run:\n%s", r.Stdout)
	for _, line := range []string{
		"created    auth method jwt-nomad/ (jwt)",
		"created    auth/jwt-nomad/config (jwks_url " + agent.Addr + "/.well-known/jwks.json, default_role butter-default)",
		"unchanged  secrets engine secret/ (kv v2)",
		"created    secrets engine transit/ (transit)",
		"created    policy butter-iot",
		"created    transit key transit/keys/butter-iot",
		"created    role auth/jwt-nomad/role/butter-iot",
		"created    policy butter-web",
		"created    transit key transit/keys/butter-web",
		"created    role auth/jwt-nomad/role/butter-web",
		"9 created, 0 updated, 1 unchanged",
		`jwt_auth_backend_path = "jwt-nomad/"`,
	} {
		if !strings.Contains(r.Stdout, line) {
			t.Errorf("first run's output lacks %q", line)
		}
	}

	// The second run, configured through the environment, changes nothing.
	env := []string{"VAULT_ADDR=" + v.Addr, "VAULT_TOKEN=" + v.RootToken, "NOMAD_ADDR=" + agent.Addr}
	r = butterEnv(t, env, "setup", "vault", "-project", "iot,web")
	if r.Code != 0 {
		t.Fatalf("second run: exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
	}
	checkAllUnchanged(t, r.Stdout, 10)

	// What Vault holds.
	c := v.Client
	auths, err := c.Sys().ListAuth()
	if err != nil {
		t.Fatal(err)
	}
	if m := auths["jwt-nomad/"]; m == nil || m.Type != "jwt" {
		t.Errorf("auth method jwt-nomad/: %+v", m)
	}
	cfg, err := c.Logical().Read("auth/jwt-nomad/config")
	if err != nil || cfg == nil {
		t.Fatalf("read the jwt config: %v %v", cfg, err)
	}
	if u := cfg.Data["jwks_url"]; u != agent.Addr+"/.well-known/jwks.json" {
		t.Errorf("jwks_url = %v", u)
	}
	if r := cfg.Data["default_role"]; r != "butter-default" {
		t.Errorf("default_role = %v", r)
	}
	if a := fmt.Sprint(cfg.Data["jwt_supported_algs"]); a != "[RS256 EdDSA]" {
		t.Errorf("jwt_supported_algs = %v", a)
	}
	mounts, err := c.Sys().ListMounts()
	if err != nil {
		t.Fatal(err)
	}
	if m := mounts["transit/"]; m == nil || m.Type != "transit" {
		t.Errorf("transit/: %+v", m)
	}
	if m := mounts["secret/"]; m == nil || m.Type != "kv" || m.Options["version"] != "2" {
		t.Errorf("secret/: %+v", m)
	}
	for _, p := range []string{"iot", "web"} {
		name := "butter-" + p
		role, err := c.Logical().Read("auth/jwt-nomad/role/" + name)
		if err != nil || role == nil {
			t.Fatalf("read role %s: %v %v", name, role, err)
		}
		d := role.Data
		for k, want := range map[string]string{
			"role_type":               "jwt",
			"bound_audiences":         "[vault.io]",
			"user_claim":              "/nomad_job_id",
			"user_claim_json_pointer": "true",
			"claim_mappings":          "map[nomad_job_id:nomad_job_id nomad_namespace:nomad_namespace nomad_task:nomad_task]",
			"token_type":              "service",
			"token_policies":          "[" + name + "]",
			"token_period":            "1800",
			"bound_claims":            "map[nomad_job_id:" + name + "]",
			"bound_claims_type":       "string",
		} {
			if got := fmt.Sprint(d[k]); got != want {
				t.Errorf("role %s: %s = %s, want %s", name, k, got, want)
			}
		}
		key, err := c.Logical().Read("transit/keys/" + name)
		if err != nil || key == nil {
			t.Errorf("transit key %s: %v %v", name, key, err)
		}
	}
	policy, err := c.Sys().GetPolicy("butter-iot")
	if err != nil {
		t.Fatal(err)
	}
	if policy != wantPolicy {
		t.Errorf("policy butter-iot:\n%s\nwant:\n%s", policy, wantPolicy)
	}

	// Drift is repaired and reported as such, then all is unchanged again.
	if _, err := c.Logical().Write("auth/jwt-nomad/role/butter-web", map[string]any{"role_type": "jwt", "token_period": "1h", "bound_claims": map[string]any{"nomad_job_id": "*"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Sys().PutPolicy("butter-web", `path "secret/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	r = e2etest.Butter(t, root, append(flags, "-project", "iot,web")...)
	if r.Code != 0 {
		t.Fatalf("repair run: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, line := range []string{
		"updated    policy butter-web (its rules differed)",
		"updated    role auth/jwt-nomad/role/butter-web (bound_claims, token_period)",
		"0 created, 2 updated, 8 unchanged",
	} {
		if !strings.Contains(r.Stdout, line) {
			t.Errorf("repair run's output lacks %q:\n%s", line, r.Stdout)
		}
	}
	r = e2etest.Butter(t, root, append(flags, "-project", "iot,web")...)
	if r.Code != 0 {
		t.Fatalf("run after the repair: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	checkAllUnchanged(t, r.Stdout, 10)

	// The job butter-iot logs in with its role: its template reads the
	// project's secret and encrypts with the project's transit key.
	if _, err := c.KVv2("secret").Put(t.Context(), "butter/iot/db", map[string]any{"password": "s3cret"}); err != nil {
		t.Fatal(err)
	}
	allocID := runVaultJob(t, agent, "butter-iot", "butter-iot")
	e2etest.WaitFor(t, 90*time.Second, "the job's template rendered from Vault", func() bool {
		out, err := agent.Client.AllocFS().Cat(&api.Allocation{ID: allocID}, "alloc/logs/fn.stdout.0", nil)
		if err != nil {
			return false
		}
		defer out.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(out)
		s := b.String()
		if strings.Contains(s, "DB_PASSWORD=s3cret") && strings.Contains(s, "CIPHERTEXT=vault:v1:") {
			t.Logf("the job's output:\n%s", s)
			return true
		}
		return false
	})

	// Another job cannot log in with butter-iot's role: it is bound to
	// the job butter-iot.
	intruder := runVaultJob(t, agent, "intruder", "butter-iot")
	e2etest.WaitFor(t, 90*time.Second, "the intruder's Vault login refused", func() bool {
		a, _, err := agent.Client.Allocations().Info(intruder, nil)
		if err != nil || a.TaskStates["fn"] == nil {
			return false
		}
		for _, e := range a.TaskStates["fn"].Events {
			if strings.Contains(e.DisplayMessage, `claim "nomad_job_id" does not match any associated bound claim values`) {
				return true
			}
			if e.Type == api.TaskStarted {
				t.Fatalf("the intruder's task started: %+v", a.TaskStates["fn"].Events)
			}
		}
		return false
	})
}

// checkAllUnchanged checks that every one of the n items is reported
// unchanged, and nothing else.
func checkAllUnchanged(t *testing.T, stdout string, n int) {
	t.Helper()
	lines := 0
	for _, line := range strings.Split(stdout, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "unchanged":
			lines++
		case "created", "updated":
			t.Errorf("expected no change, got %q", line)
		}
	}
	if lines != n {
		t.Errorf("%d unchanged items, want %d:\n%s", lines, n, stdout)
	}
	if !strings.Contains(stdout, fmt.Sprintf("0 created, 0 updated, %d unchanged", n)) {
		t.Errorf("summary missing:\n%s", stdout)
	}
	if strings.Contains(stdout, "vault {") {
		t.Errorf("the Nomad config hint is printed although nothing changed:\n%s", stdout)
	}
}

// runVaultJob registers a raw_exec job that asks Vault for a token with
// the role, renders a template with the project iot's secret and a
// transit ciphertext, and prints it. It returns the allocation's ID.
func runVaultJob(t *testing.T, agent *nomadtest.Agent, jobID, role string) string {
	t.Helper()
	job := api.NewServiceJob(jobID, jobID, "global", 50)
	job.Datacenters = []string{"*"}
	tg := api.NewTaskGroup("fn", 1)
	task := api.NewTask("fn", "raw_exec")
	task.Config = map[string]any{"command": "/bin/sh", "args": []string{"-c", `cat "$NOMAD_SECRETS_DIR/fn.env"; exec sleep 600`}}
	task.Vault = &api.Vault{Role: role}
	task.Templates = []*api.Template{{
		EmbeddedTmpl: new(`{{ with secret "secret/data/butter/iot/db" }}DB_PASSWORD={{ .Data.data.password }}{{ end }}
{{ with secret "transit/encrypt/butter-iot" "plaintext=aGVsbG8=" }}CIPHERTEXT={{ .Data.ciphertext }}{{ end }}
`),
		DestPath: new("secrets/fn.env"),
	}}
	tg.AddTask(task)
	job.AddTaskGroup(tg)
	if _, _, err := agent.Client.Jobs().Register(job, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _, _ = agent.Client.Jobs().Deregister(jobID, true, nil) })
	var allocID string
	e2etest.WaitFor(t, 60*time.Second, "an allocation of "+jobID, func() bool {
		allocs, _, err := agent.Client.Jobs().Allocations(jobID, true, nil)
		if err != nil || len(allocs) == 0 {
			return false
		}
		allocID = allocs[0].ID
		return true
	})
	return allocID
}

// vaultDocPolicy is the operator policy docs/vault.md gives, so that the
// test checks the documentation.
func vaultDocPolicy(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e2etest.Root(), "docs", "vault.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile("(?s)```hcl\n(.*?)```").FindAllStringSubmatch(string(b), -1) {
		if strings.Contains(m[1], `path "sys/auth"`) {
			return m[1]
		}
	}
	t.Fatal(`docs/vault.md has no hcl block with path "sys/auth"`)
	return ""
}

// TestSetupVaultErrors checks the command's errors: usage, an unreachable
// Vault or Nomad, a token without permission; and that the operator
// policy in docs/vault.md is enough.
func TestSetupVaultErrors(t *testing.T) {
	v := vaulttest.Start(t)

	for _, c := range []struct {
		name string
		env  []string
		args []string
		code int
		out  string
	}{
		{"no token", []string{"VAULT_ADDR=" + v.Addr}, nil, 2, "no Vault token: set -token or VAULT_TOKEN"},
		{"no address", []string{"VAULT_TOKEN=x"}, nil, 2, "no Vault address: set -vault-addr or VAULT_ADDR"},
		{"bad project", v.Env(), []string{"-project", "IoT"}, 2, `-project "IoT" is not a project name`},
		{"argument", v.Env(), []string{"iot"}, 2, "name projects with -project"},
		{"vault down", []string{"VAULT_ADDR=http://127.0.0.1:1", "VAULT_TOKEN=x"}, nil, 1, "cannot reach Vault at http://127.0.0.1:1"},
		{"bad token", []string{"VAULT_ADDR=" + v.Addr, "VAULT_TOKEN=nope"}, nil, 1, "rejects the token"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := butterEnv(t, c.env, append([]string{"setup", "vault"}, c.args...)...)
			if r.Code != c.code || !strings.Contains(r.Stderr, c.out) {
				t.Errorf("exit %d, want %d with %q\nstdout:\n%s\nstderr:\n%s", r.Code, c.code, c.out, r.Stdout, r.Stderr)
			}
		})
	}

	// A token with the default policy only may look itself up, no more.
	tok, err := v.Client.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{"default"}})
	if err != nil {
		t.Fatal(err)
	}
	r := butterEnv(t, []string{"VAULT_ADDR=" + v.Addr, "VAULT_TOKEN=" + tok.Auth.ClientToken}, "setup", "vault", "-project", "iot")
	if r.Code != 1 || !strings.Contains(r.Stderr, "list the auth methods: permission denied (403 on sys/auth)\n") ||
		!strings.Contains(r.Stderr, `The token needs "read" on "sys/auth"`) {
		t.Errorf("a token without permission: exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
	}

	// Nomad is not where -nomad-addr says: Vault cannot fetch the JWKS.
	r = butterEnv(t, v.Env(), "setup", "vault", "-nomad-addr", "http://127.0.0.1:1")
	if r.Code != 1 || !strings.Contains(r.Stderr, "Vault could not fetch Nomad's JWKS from http://127.0.0.1:1/.well-known/jwks.json") ||
		!strings.Contains(r.Stderr, "Set -nomad-addr") {
		t.Errorf("Nomad unreachable: exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
	}

	// The operator policy of docs/vault.md is enough, from a fresh server
	// (but for the auth method the run above enabled) to a second run.
	agent := nomadtest.Start(t)
	if err := v.Client.Sys().PutPolicy("butter-operator", vaultDocPolicy(t)); err != nil {
		t.Fatal(err)
	}
	tok, err = v.Client.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{"butter-operator"}})
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"VAULT_ADDR=" + v.Addr, "VAULT_TOKEN=" + tok.Auth.ClientToken, "NOMAD_ADDR=" + agent.Addr}
	r = butterEnv(t, env, "setup", "vault", "-project", "iot")
	if r.Code != 0 || !strings.Contains(r.Stdout, "5 created, 0 updated, 2 unchanged") {
		t.Fatalf("with the operator policy: exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
	}
	r = butterEnv(t, env, "setup", "vault", "-project", "iot")
	if r.Code != 0 {
		t.Fatalf("with the operator policy, again: exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
	}
	checkAllUnchanged(t, r.Stdout, 7)
	if !slices.Contains(strings.Fields(r.Stdout), "butter-iot") {
		t.Errorf("second run does not name the policy:\n%s", r.Stdout)
	}
}
