package secrets_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/butterfn/butter/secrets"
)

var (
	dbPassword = secrets.Ref{Name: "DB_PASSWORD", Path: "secret/data/butter/iot/db", Key: "password"}
	apiToken   = secrets.Ref{Name: "API_TOKEN", Path: "secret/data/butter/iot/api", Key: "token"}
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// missing checks that err is a MissingError for ref whose message has
// each of wants.
func missing(t *testing.T, err error, ref secrets.Ref, wants ...string) {
	t.Helper()
	var miss *secrets.MissingError
	if !errors.As(err, &miss) {
		t.Fatalf("got %v, want a MissingError", err)
	}
	if miss.Ref != ref {
		t.Errorf("MissingError names %v, want %v", miss.Ref, ref)
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%q lacks %q", err, w)
		}
	}
}

func TestDotenv(t *testing.T) {
	path := writeFile(t, "secrets.env", `# dev secrets

DB_PASSWORD=plain value   # a comment
export API_TOKEN="a \"quoted\" # value\n"
billing.DB_PASSWORD = 'single # quoted'
EMPTY=
HASH=no#comment
`)
	src := secrets.Dotenv{Path: path}
	for _, c := range []struct {
		function string
		want     map[string]string
	}{
		{"iot", map[string]string{"DB_PASSWORD": "plain value", "API_TOKEN": "a \"quoted\" # value\n"}},
		{"billing", map[string]string{"DB_PASSWORD": "single # quoted", "API_TOKEN": "a \"quoted\" # value\n"}},
	} {
		got, err := src.Values(c.function, []secrets.Ref{dbPassword, apiToken})
		if err != nil {
			t.Fatalf("%s: %v", c.function, err)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %q, want %q", c.function, got, c.want)
		}
	}
	if got, err := src.Values("x", []secrets.Ref{{Name: "HASH"}}); err != nil || got["HASH"] != "no#comment" {
		t.Errorf("a # inside a value: %q, %v", got, err)
	}
	if key, err := src.Key("billing", "DB_PASSWORD"); err != nil || key != "billing.DB_PASSWORD" {
		t.Errorf("Key(billing) = %q, %v", key, err)
	}
	if key, err := src.Key("iot", "DB_PASSWORD"); err != nil || key != "DB_PASSWORD" {
		t.Errorf("Key(iot) = %q, %v", key, err)
	}
	if key, err := src.Key("iot", "NOPE"); err != nil || key != "" {
		t.Errorf("Key of an absent name = %q, %v", key, err)
	}

	// An empty value, an absent name: missing, with where to add it.
	empty := secrets.Ref{Name: "EMPTY", Path: "p", Key: "k"}
	_, err := src.Values("iot", []secrets.Ref{dbPassword, empty})
	missing(t, err, empty, "function iot: secret EMPTY (p#k)", "add a line EMPTY=<value> (or iot.EMPTY=<value> for this function only) to "+path)

	// The file is read on every call.
	if err := os.WriteFile(path, []byte("DB_PASSWORD=changed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := src.Values("iot", []secrets.Ref{dbPassword}); err != nil || got["DB_PASSWORD"] != "changed" {
		t.Errorf("after an edit: %q, %v", got, err)
	}
}

func TestDotenvMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.env")
	src := secrets.Dotenv{Path: path}
	_, err := src.Values("iot", []secrets.Ref{dbPassword})
	missing(t, err, dbPassword, "create "+path+" with a line DB_PASSWORD=<value>")
	if got, err := src.Values("iot", nil); err != nil || len(got) != 0 {
		t.Errorf("no refs: %v, %v", got, err)
	}
}

// TestDotenvMalformed: errors name the file and line, never the value.
func TestDotenvMalformed(t *testing.T) {
	const secret = "s3cr3t-value"
	for _, c := range []struct {
		name, content, want string
	}{
		{"no equals", "OK=1\n" + secret + "\n", ":2: not NAME=value"},
		{"bad name", "1BAD=" + secret + "\n", ":1: the name before = is not NAME"},
		{"value as name", secret + " x=" + secret + "\n", ":1: the name before = is not NAME"},
		{"open double quote", "\n\nA=\"" + secret + "\n", `:3: A: the double-quoted value is not closed`},
		{"bad escape", "A=\"" + secret + `\q"` + "\n", `:1: A: the double-quoted value is not closed, or has an invalid escape`},
		{"open single quote", "A='" + secret + "\n", ":1: A: the single-quoted value is not closed"},
		{"after the quote", "A='x'" + secret + "\n", ":1: A: text after the closing quote"},
		{"twice", "A=1\n# c\nA=" + secret + "\n", ":3: A is already set on line 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, "secrets.env", c.content)
			_, err := secrets.Dotenv{Path: path}.Values("iot", []secrets.Ref{{Name: "A"}})
			if err == nil {
				t.Fatal("no error")
			}
			var miss *secrets.MissingError
			if errors.As(err, &miss) {
				t.Errorf("a malformed file is not a missing secret: %v", err)
			}
			if !strings.Contains(err.Error(), path+c.want) {
				t.Errorf("%q lacks %q", err, path+c.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("the error shows the value: %q", err)
			}
		})
	}
}

func TestRendered(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(secrets.File(dir, "iot"), []byte(`{"DB_PASSWORD":"pw","API_TOKEN":null,"EMPTY":""}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secrets.File(dir, "broken"), []byte(`{"DB_PASSWORD":"leaked`), 0o600); err != nil {
		t.Fatal(err)
	}
	src := secrets.Rendered{Dir: dir}

	got, err := src.Values("iot", []secrets.Ref{dbPassword})
	if err != nil || !reflect.DeepEqual(got, map[string]string{"DB_PASSWORD": "pw"}) {
		t.Errorf("got %q, %v", got, err)
	}
	// null (Vault has no such key), an empty string, an absent name.
	for _, ref := range []secrets.Ref{apiToken, {Name: "EMPTY", Path: "p", Key: "k"}, {Name: "ABSENT", Path: "p", Key: "k"}} {
		_, err := src.Values("iot", []secrets.Ref{dbPassword, ref})
		missing(t, err, ref, "function iot: secret "+ref.Name, "Vault has no key \""+ref.Key+"\" at "+ref.Path)
	}
	// No file for the function: not a MissingError, it says Nomad renders it.
	if _, err := src.Values("other", []secrets.Ref{dbPassword}); err == nil || !strings.Contains(err.Error(), "Nomad renders this file") {
		t.Errorf("no file: %v", err)
	}
	// Not JSON: the error does not quote it.
	if _, err := src.Values("broken", []secrets.Ref{dbPassword}); err == nil || !strings.Contains(err.Error(), "is not a JSON object") || strings.Contains(err.Error(), "leaked") {
		t.Errorf("broken file: %v", err)
	}
	// A function without secrets needs no file.
	if got, err := src.Values("other", nil); err != nil || len(got) != 0 {
		t.Errorf("no refs: %v, %v", got, err)
	}
}

func fakeEnv(m map[string]string) secrets.Env {
	return secrets.Env{Lookup: func(k string) (string, bool) { v, ok := m[k]; return v, ok }}
}

func TestEnv(t *testing.T) {
	src := fakeEnv(map[string]string{"DB_PASSWORD": "pw", "API_TOKEN": ""})
	got, err := src.Values("iot", []secrets.Ref{dbPassword})
	if err != nil || !reflect.DeepEqual(got, map[string]string{"DB_PASSWORD": "pw"}) {
		t.Errorf("got %q, %v", got, err)
	}
	_, err = src.Values("iot", []secrets.Ref{dbPassword, apiToken})
	missing(t, err, apiToken, "set the environment variable API_TOKEN")

	// The default looks up the process's environment.
	t.Setenv("BUTTER_SECRETS_TEST", "from-env")
	ref := secrets.Ref{Name: "BUTTER_SECRETS_TEST"}
	if got, err := (secrets.Env{}).Values("iot", []secrets.Ref{ref}); err != nil || got[ref.Name] != "from-env" {
		t.Errorf("os env: %q, %v", got, err)
	}
}

// failing is a Source that fails with something else than a missing secret.
type failing struct{}

func (failing) Values(string, []secrets.Ref) (map[string]string, error) {
	return nil, errors.New("the source is broken")
}

func TestChain(t *testing.T) {
	path := writeFile(t, "secrets.env", "iot.DB_PASSWORD=from-file\n")
	file := secrets.Dotenv{Path: path}
	env := fakeEnv(map[string]string{"DB_PASSWORD": "from-env", "API_TOKEN": "token-env"})
	chain := secrets.Chain{file, env}

	// Each secret from the first source that has it.
	got, err := chain.Values("iot", []secrets.Ref{dbPassword, apiToken})
	want := map[string]string{"DB_PASSWORD": "from-file", "API_TOKEN": "token-env"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("iot: got %q, %v; want %q", got, err, want)
	}
	got, err = chain.Values("web", []secrets.Ref{dbPassword})
	if err != nil || got["DB_PASSWORD"] != "from-env" {
		t.Errorf("web: got %q, %v", got, err)
	}

	// Missing everywhere: the error says every place it looked.
	ref := secrets.Ref{Name: "NOPE", Path: "p", Key: "k"}
	_, err = chain.Values("iot", []secrets.Ref{dbPassword, ref})
	missing(t, err, ref, "function iot: secret NOPE (p#k) has no value: add a line NOPE=<value>", path+", or set the environment variable NOPE")

	// A missing file, then the environment: both named.
	absent := filepath.Join(t.TempDir(), "secrets.env")
	_, err = secrets.Chain{secrets.Dotenv{Path: absent}, fakeEnv(nil)}.Values("iot", []secrets.Ref{dbPassword})
	missing(t, err, dbPassword, "create "+absent, "or set the environment variable DB_PASSWORD")

	// Any other error stops the lookup, even if a later source has it.
	if _, err := (secrets.Chain{failing{}, env}).Values("iot", []secrets.Ref{dbPassword}); err == nil || !strings.Contains(err.Error(), "the source is broken") {
		t.Errorf("a failing source: %v", err)
	}
	bad := writeFile(t, "bad.env", "garbage\n")
	if _, err := (secrets.Chain{secrets.Dotenv{Path: bad}, env}).Values("iot", []secrets.Ref{dbPassword}); err == nil || !strings.Contains(err.Error(), bad+":1:") {
		t.Errorf("a malformed file: %v", err)
	}
	// An empty chain has nothing.
	_, err = secrets.Chain{}.Values("iot", []secrets.Ref{dbPassword})
	missing(t, err, dbPassword)
}
