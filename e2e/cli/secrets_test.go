package cli

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	vault "github.com/hashicorp/vault/api"

	"github.com/butterfn/butter/e2e/e2etest"
	"github.com/butterfn/butter/internal/vaulttest"
)

// secretsCLI runs butter with stdin and the environment's VAULT_*
// variables replaced by env.
func secretsCLI(t *testing.T, env []string, stdin string, args ...string) e2etest.Result {
	t.Helper()
	cmd := exec.Command(e2etest.Bin(), args...)
	cmd.Env = append(envWithoutPrefix("VAULT_"), env...)
	cmd.Stdin = strings.NewReader(stdin)
	return e2etest.Run(t, cmd)
}

func envWithoutPrefix(prefix string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, prefix) {
			out = append(out, kv)
		}
	}
	return out
}

// kvData is the latest data of secret/butter/<project>/<name>, read with
// Vault's API.
func kvData(t *testing.T, v *vaulttest.Server, project, name string) (map[string]any, int) {
	t.Helper()
	s, err := v.Client.KVv2("secret").Get(context.Background(), "butter/"+project+"/"+name)
	if err != nil {
		t.Fatalf("read secret/butter/%s/%s: %v", project, name, err)
	}
	return s.Data, s.VersionMetadata.Version
}

// TestSecretsPutGet writes a secret's keys from the command line, standard
// input and a file, merges and replaces them, and reads them back, against
// a real Vault dev server.
func TestSecretsPutGet(t *testing.T) {
	v := vaulttest.Start(t)
	env := v.Env()
	const (
		inline  = "inline-pw-5d1e"
		piped   = "piped-pw-0b7c"
		fromDoc = "line one\nline two # not a comment\n"
	)
	file := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(file, []byte(fromDoc), 0o600); err != nil {
		t.Fatal(err)
	}

	r := secretsCLI(t, env, piped+"\n", "secrets", "put", "iot", "db", "user="+inline, "password=-", "cert=@"+file)
	if r.Code != 0 {
		t.Fatalf("put: exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
	}
	if !strings.Contains(r.Stdout, "Wrote version 1 of secret/butter/iot/db: cert, password, user\n") ||
		!strings.Contains(r.Stdout, `vault = "secret/data/butter/iot/db#cert"`) {
		t.Errorf("put's output:\n%s", r.Stdout)
	}
	for _, val := range []string{inline, piped, "line one"} {
		if strings.Contains(r.Stdout+r.Stderr, val) {
			t.Errorf("put shows a value %q:\n%s%s", val, r.Stdout, r.Stderr)
		}
	}
	data, version := kvData(t, v, "iot", "db")
	want := map[string]any{"user": inline, "password": piped, "cert": fromDoc}
	if version != 1 || !reflect.DeepEqual(data, want) {
		t.Errorf("Vault holds version %d: %q, want version 1: %q", version, data, want)
	}

	// get: sorted lines, the multi-line value quoted; one field as it is;
	// JSON.
	r = secretsCLI(t, env, "", "secrets", "get", "iot", "db")
	wantText := `cert="line one\nline two # not a comment\n"` + "\npassword=" + piped + "\nuser=" + inline + "\n"
	if r.Code != 0 || r.Stdout != wantText {
		t.Errorf("get: exit %d\nstdout:\n%s\nwant:\n%s\nstderr:\n%s", r.Code, r.Stdout, wantText, r.Stderr)
	}
	r = secretsCLI(t, env, "", "secrets", "get", "-field", "cert", "iot", "db")
	if r.Code != 0 || r.Stdout != fromDoc+"\n" {
		t.Errorf("get -field cert: exit %d %q, want %q", r.Code, r.Stdout, fromDoc+"\n")
	}
	r = secretsCLI(t, env, "", "secrets", "get", "iot", "db", "-format", "json")
	var got map[string]any
	if err := json.Unmarshal([]byte(r.Stdout), &got); r.Code != 0 || err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("get -format json: exit %d, %v\n%s", r.Code, err, r.Stdout)
	}

	// A second put merges: the other keys stay. The flags come from the
	// environment here, from flags above.
	r = secretsCLI(t, []string{"VAULT_ADDR=" + v.Addr, "VAULT_TOKEN=" + v.RootToken}, "", "secrets", "put", "iot", "db", "password=rotated")
	if r.Code != 0 || !strings.Contains(r.Stdout, "Wrote version 2 of secret/butter/iot/db: password\n") {
		t.Errorf("merge: exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
	}
	want["password"] = "rotated"
	if data, version = kvData(t, v, "iot", "db"); version != 2 || !reflect.DeepEqual(data, want) {
		t.Errorf("after a merge Vault holds version %d: %q, want version 2: %q", version, data, want)
	}

	// -replace keeps only the keys given.
	r = secretsCLI(t, env, "", "secrets", "put", "-replace", "iot", "db", "token=t0k")
	if r.Code != 0 || !strings.Contains(r.Stdout, "Wrote version 3 of secret/butter/iot/db: token\n") {
		t.Errorf("replace: exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
	}
	if data, version = kvData(t, v, "iot", "db"); version != 3 || !reflect.DeepEqual(data, map[string]any{"token": "t0k"}) {
		t.Errorf("after -replace Vault holds version %d: %q", version, data)
	}

	// Another mount.
	if err := v.Client.Sys().Mount("kv2", &vault.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
		t.Fatal(err)
	}
	r = secretsCLI(t, env, "", "secrets", "put", "-mount", "kv2", "web", "api", "key=k")
	if r.Code != 0 || !strings.Contains(r.Stdout, "Wrote version 1 of kv2/butter/web/api: key\n") {
		t.Errorf("-mount kv2: exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
	}
	if r = secretsCLI(t, env, "", "secrets", "get", "-mount", "kv2", "-field", "key", "web", "api"); r.Stdout != "k\n" {
		t.Errorf("get -mount kv2: exit %d %q\n%s", r.Code, r.Stdout, r.Stderr)
	}
}

// TestSecretsErrors: usage, Vault unreachable or refusing the token, a
// token without the capability, a secret or key that is not there.
func TestSecretsErrors(t *testing.T) {
	v := vaulttest.Start(t)
	env := v.Env()
	if r := secretsCLI(t, env, "", "secrets", "put", "iot", "db", "password=pw"); r.Code != 0 {
		t.Fatalf("put: exit %d\n%s", r.Code, r.Stderr)
	}
	for _, c := range []struct {
		name  string
		env   []string
		stdin string
		args  []string
		code  int
		out   string
	}{
		{"no token", []string{"VAULT_ADDR=" + v.Addr}, "", []string{"get", "iot", "db"}, 2, "no Vault token: set -token or VAULT_TOKEN"},
		{"no address", []string{"VAULT_TOKEN=x"}, "", []string{"put", "iot", "db", "a=b"}, 2, "no Vault address: set -vault-addr or VAULT_ADDR"},
		{"no name", env, "", []string{"get", "iot"}, 2, "give the project and the secret's name"},
		{"bad project", env, "", []string{"get", "IoT", "db"}, 2, `"IoT" is not a project name`},
		{"bad name", env, "", []string{"get", "iot", "a/b"}, 2, `"a/b" is not a secret name`},
		{"no pairs", env, "", []string{"put", "iot", "db"}, 2, "give at least one KEY=VALUE"},
		{"not a pair", env, "", []string{"put", "iot", "db", "hunter2"}, 2, "arguments after the secret's name are KEY=VALUE"},
		{"twice", env, "", []string{"put", "iot", "db", "a=1", "a=2"}, 2, "key a is given twice"},
		{"two stdins", env, "", []string{"put", "iot", "db", "a=-", "b=-"}, 2, "only one value may be read from standard input"},
		{"empty", env, "", []string{"put", "iot", "db", "a="}, 1, "a's value is empty"},
		{"empty stdin", env, "\n", []string{"put", "iot", "db", "a=-"}, 1, "a's value is empty"},
		{"no file", env, "", []string{"put", "iot", "db", "a=@/nonexistent/f"}, 1, "read a's value: open /nonexistent/f"},
		{"bad format", env, "", []string{"get", "-format", "yaml", "iot", "db"}, 2, `-format "yaml": text or json`},
		{"vault down", []string{"VAULT_ADDR=http://127.0.0.1:1", "VAULT_TOKEN=x"}, "", []string{"get", "iot", "db"}, 1, "cannot reach Vault at http://127.0.0.1:1"},
		{"bad token", []string{"VAULT_ADDR=" + v.Addr, "VAULT_TOKEN=nope"}, "", []string{"put", "iot", "db", "a=b"}, 1, "rejects the token"},
		{"no secret", env, "", []string{"get", "iot", "nope"}, 1, "secret/butter/iot/nope has no data (no such secret, or its latest version was deleted): write it with `butter secrets put iot nope KEY=VALUE`"},
		{"no field", env, "", []string{"get", "-field", "user", "iot", "db"}, 1, `secret/butter/iot/db has no key "user"; its keys: password`},
		{"no mount", env, "", []string{"put", "-mount", "nowhere", "iot", "db", "a=b"}, 1, "Is a KV version 2 engine mounted at nowhere/?"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := secretsCLI(t, c.env, c.stdin, append([]string{"secrets"}, c.args...)...)
			if r.Code != c.code || !strings.Contains(r.Stderr, c.out) {
				t.Errorf("exit %d, want %d with %q\nstdout:\n%s\nstderr:\n%s", r.Code, c.code, c.out, r.Stdout, r.Stderr)
			}
			if strings.Contains(r.Stderr, "hunter2") {
				t.Errorf("the error shows a value:\n%s", r.Stderr)
			}
		})
	}

	// A token that may only read iot's secrets, as a project's jobs may.
	if err := v.Client.Sys().PutPolicy("iot-read", `path "secret/data/butter/iot/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	tok, err := v.Client.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{"iot-read"}})
	if err != nil {
		t.Fatal(err)
	}
	reader := []string{"VAULT_ADDR=" + v.Addr, "VAULT_TOKEN=" + tok.Auth.ClientToken}
	if r := secretsCLI(t, reader, "", "secrets", "get", "-field", "password", "iot", "db"); r.Code != 0 || r.Stdout != "pw\n" {
		t.Errorf("get with read: exit %d %q\n%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, c := range []struct {
		name string
		args []string
		out  []string
	}{
		{"merge", []string{"put", "iot", "db", "password=new"}, []string{
			"write secret/butter/iot/db: permission denied (403 on secret/data/butter/iot/db)",
			`The token needs "patch" (to merge into its keys; "create" for a new secret, "create" and "update" with -replace) on "secret/data/butter/iot/db"`}},
		// Vault checks "patch" before it looks for the secret.
		{"new", []string{"put", "iot", "other", "a=b"}, []string{
			"write secret/butter/iot/other: permission denied (403 on secret/data/butter/iot/other)",
			`The token needs "patch" (to merge into its keys; "create" for a new secret`}},
		{"replace", []string{"put", "-replace", "iot", "db", "a=b"}, []string{
			"write secret/butter/iot/db: permission denied (403 on secret/data/butter/iot/db)",
			`The token needs "create" and "update" on "secret/data/butter/iot/db"`}},
		{"other project", []string{"get", "web", "db"}, []string{
			"read secret/butter/web/db: permission denied (403 on secret/data/butter/web/db)",
			`The token needs "read" on "secret/data/butter/web/db"`}},
	} {
		t.Run("403 "+c.name, func(t *testing.T) {
			r := secretsCLI(t, reader, "", append([]string{"secrets"}, c.args...)...)
			if r.Code != 1 {
				t.Errorf("exit %d, want 1", r.Code)
			}
			for _, o := range c.out {
				if !strings.Contains(r.Stderr, o) {
					t.Errorf("stderr lacks %q:\n%s", o, r.Stderr)
				}
			}
		})
	}
	if data, version := kvData(t, v, "iot", "db"); version != 1 || !reflect.DeepEqual(data, map[string]any{"password": "pw"}) {
		t.Errorf("after the refused writes Vault holds version %d: %q", version, data)
	}
}
