package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/secrets/vaultsetup"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/cli"
	vault "github.com/hashicorp/vault/api"
	"golang.org/x/sys/unix"
)

// `butter secrets put|get` write and read a project's secrets where
// `butter setup vault` lets its jobs read them (docs/vault.md): KV v2, at
// <mount>/butter/<project>/<name>, which a spec references as
// vault = "<mount>/data/butter/<project>/<name>#<key>".

// secretsTimeout bounds one command's calls to Vault.
const secretsTimeout = time.Minute

// secretNameRE is a secret's name: one path segment under the project.
var secretNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

type secretsCommand struct{}

func (c *secretsCommand) Synopsis() string { return "Write and read a project's secrets in Vault" }
func (c *secretsCommand) Help() string {
	return trimHelp(`
Usage: butter secrets <subcommand>

  A project's secrets live in Vault's KV version 2 engine at
  secret/butter/<project>/<name>, where its Nomad jobs may read them once
  ` + "`butter setup vault -project <project>`" + ` has run. A function declares one
  with secret "ENV_NAME" { vault = "secret/data/butter/<project>/<name>#<key>" }.
  butter dev does not read Vault: see docs/secrets-dev.md.
`)
}
func (c *secretsCommand) Run(args []string) int { return cli.RunResultHelp }

const secretsVaultHelp = `
  -vault-addr=<url>
    Vault's address. Default: $VAULT_ADDR.

  -token=<token>
    A Vault token. Default: $VAULT_TOKEN.

  -mount=secret
    Where the KV version 2 engine is mounted.
`

// kvTarget is the secret a command works on, and how to reach Vault.
type kvTarget struct {
	addr, token, mount string
	project, name      string
}

func (k *kvTarget) flags(fs *flag.FlagSet) {
	fs.StringVar(&k.addr, "vault-addr", os.Getenv("VAULT_ADDR"), "")
	fs.StringVar(&k.token, "token", os.Getenv("VAULT_TOKEN"), "")
	fs.StringVar(&k.mount, "mount", vaultsetup.KVMount, "")
}

// args takes the project and the secret's name from pos, checks them and
// the flags, and returns the rest of pos.
func (k *kvTarget) args(pos []string) ([]string, error) {
	k.mount = strings.Trim(k.mount, "/")
	switch {
	case len(pos) < 2:
		return nil, errors.New("give the project and the secret's name")
	case !names.Valid(pos[0]):
		return nil, fmt.Errorf("%q is not a project name: lower-case letters, digits, '-' and '_', starting with a letter", pos[0])
	case !secretNameRE.MatchString(pos[1]):
		return nil, fmt.Errorf("%q is not a secret name: letters, digits, '_', '-' and '.', without '/'", pos[1])
	case k.mount == "":
		return nil, errors.New("-mount is empty")
	case k.addr == "":
		return nil, errors.New("no Vault address: set -vault-addr or VAULT_ADDR")
	case k.token == "":
		return nil, errors.New("no Vault token: set -token or VAULT_TOKEN")
	}
	k.project, k.name = pos[0], pos[1]
	return pos[2:], nil
}

// path is the secret's path inside the mount.
func (k *kvTarget) path() string { return names.KVPath(k.project, k.name) }

// display is the secret as `vault kv` names it.
func (k *kvTarget) display() string { return k.mount + "/" + k.path() }

// apiPath is the secret's path in Vault's API, which policies and specs
// name.
func (k *kvTarget) apiPath() string { return k.mount + "/data/" + k.path() }

// connect returns a client once Vault answers and takes the token.
func (k *kvTarget) connect(ui cli.Ui) (*vault.KVv2, error) {
	cfg := vault.DefaultConfig()
	if cfg.Error != nil {
		return nil, fmt.Errorf("vault client configuration: %w", cfg.Error)
	}
	cfg.Address = k.addr
	client, err := vault.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	client.SetToken(k.token)
	if err := vaultsetup.Check(client, k.addr); err != nil {
		return nil, err
	}
	return client.KVv2(k.mount), nil
}

// opError explains a failed call on the secret (vaultOpError), and a
// mount that is not there.
func (k *kvTarget) opError(what, caps string, err error) error {
	var re *vault.ResponseError
	if errors.As(err, &re) && re.StatusCode == 404 {
		return vaultsetup.WithHint(fmt.Errorf("%s: %v", what, vaultsetup.ShortErr(err)),
			fmt.Sprintf("Is a KV version 2 engine mounted at %s/? `butter setup vault` mounts one at secret/; set -mount for another.", k.mount))
	}
	return vaultsetup.OpError(what, k.apiPath(), caps, err)
}

type secretsPutCommand struct{ ui cli.Ui }

func (c *secretsPutCommand) Synopsis() string { return "Write keys of a project's secret in Vault" }
func (c *secretsPutCommand) Help() string {
	return trimHelp(`
Usage: butter secrets put [options] <project> <name> KEY=VALUE...

  Writes the keys to the secret <mount>/butter/<project>/<name> (KV version
  2), merged into the keys it has unless -replace is given, and prints the
  names of the keys written and the new version; never the values.

  A VALUE of - is read from standard input (a terminal does not echo it;
  one trailing newline is dropped), so that it stays out of the shell's
  history; a VALUE of @<file> is the content of the file, as it is. Empty
  values are refused: a function does not start with an empty secret.

Options:

  -replace
    Replace the secret's keys with these, instead of merging (KV v2 patch,
    which needs the "patch" capability).
` + secretsVaultHelp)
}

func (c *secretsPutCommand) Run(args []string) int {
	fs := newFlagSet("secrets put")
	var k kvTarget
	k.flags(fs)
	replace := fs.Bool("replace", false, "")
	pos, err := parseInterspersed(fs, args)
	if err == nil {
		pos, err = k.args(pos)
	}
	if err == nil && len(pos) == 0 {
		err = errors.New("give at least one KEY=VALUE")
	}
	var pairs []kvPair
	if err == nil {
		pairs, err = parsePairs(pos)
	}
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 0)
	}
	data := map[string]any{}
	var keys []string
	for _, p := range pairs {
		v, err := p.value(c.ui)
		if err != nil {
			c.ui.Error("Error: " + err.Error())
			return exitInvalid
		}
		data[p.key] = v
		keys = append(keys, p.key)
	}
	sort.Strings(keys)

	kv, err := k.connect(c.ui)
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	ctx, cancel := context.WithTimeout(context.Background(), secretsTimeout)
	defer cancel()
	what := "write " + k.display()
	var s *vault.KVSecret
	if *replace {
		if s, err = kv.Put(ctx, k.path(), data); err != nil {
			err = k.opError(what, `"create" and "update"`, err)
		}
	} else if s, err = kv.Patch(ctx, k.path(), data); errors.Is(err, vault.ErrSecretNotFound) {
		// Nothing to merge into: a new secret (or its latest version was
		// deleted).
		if s, err = kv.Put(ctx, k.path(), data); err != nil {
			err = k.opError(what, `"create"`, err)
		}
	} else if err != nil {
		err = k.opError(what, `"patch" (to merge into its keys; "create" for a new secret, "create" and "update" with -replace)`, err)
	}
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	version := "a new version"
	if s != nil && s.VersionMetadata != nil {
		version = fmt.Sprintf("version %d", s.VersionMetadata.Version)
	}
	c.ui.Output(fmt.Sprintf("Wrote %s of %s: %s", version, k.display(), strings.Join(keys, ", ")))
	c.ui.Output(fmt.Sprintf("A function declares one with: secret \"ENV_NAME\" { vault = \"%s#%s\" }", k.apiPath(), keys[0]))
	return exitOK
}

// kvPair is one KEY=VALUE argument, its value not yet read.
type kvPair struct{ key, raw string }

func parsePairs(args []string) ([]kvPair, error) {
	var out []kvPair
	seen := map[string]bool{}
	stdin := false
	for _, a := range args {
		key, raw, ok := strings.Cut(a, "=")
		if !ok || key == "" {
			// Not quoted back: it may be a value typed without its key.
			return nil, errors.New("arguments after the secret's name are KEY=VALUE, KEY=- or KEY=@file")
		}
		if seen[key] {
			return nil, fmt.Errorf("key %s is given twice", key)
		}
		if raw == "-" {
			if stdin {
				return nil, errors.New("only one value may be read from standard input (-)")
			}
			stdin = true
		}
		seen[key] = true
		out = append(out, kvPair{key, raw})
	}
	return out, nil
}

// value reads the pair's value: as given, from standard input (-) or from
// a file (@file). Errors never show a value.
func (p kvPair) value(ui cli.Ui) (string, error) {
	var v string
	switch {
	case p.raw == "-":
		b, err := readSecretStdin(p.key)
		if err != nil {
			return "", fmt.Errorf("read %s's value from standard input: %w", p.key, err)
		}
		v = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	case strings.HasPrefix(p.raw, "@"):
		b, err := os.ReadFile(p.raw[1:])
		if err != nil {
			return "", fmt.Errorf("read %s's value: %w", p.key, err)
		}
		v = string(b)
	default:
		v = p.raw
	}
	if v == "" {
		return "", fmt.Errorf("%s's value is empty: a function does not start with an empty secret", p.key)
	}
	return v, nil
}

// readSecretStdin reads standard input; from a terminal, one line
// without echoing it.
func readSecretStdin(key string) ([]byte, error) {
	fd := int(os.Stdin.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		// Not a terminal: a pipe or a file.
		return io.ReadAll(os.Stdin)
	}
	fmt.Fprintf(os.Stderr, "Value of %s (not echoed): ", key)
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return nil, err
	}
	defer func() {
		_ = unix.IoctlSetTermios(fd, unix.TCSETS, old)
		fmt.Fprintln(os.Stderr)
	}()
	line, err := bufio.NewReader(os.Stdin).ReadBytes('\n')
	if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
		return nil, err
	}
	return line, nil
}

type secretsGetCommand struct{ ui cli.Ui }

func (c *secretsGetCommand) Synopsis() string { return "Read a project's secret from Vault" }
func (c *secretsGetCommand) Help() string {
	return trimHelp(`
Usage: butter secrets get [options] <project> <name>

  Prints the keys and values of the secret <mount>/butter/<project>/<name>
  (KV version 2, latest version) as KEY=VALUE lines sorted by key. A value
  with a newline, a quote, " #" or spaces at either end is printed
  double-quoted with Go escapes, as butter dev's secrets file reads it; a
  value that is not a string is printed as JSON.

Options:

  -field=KEY
    Print only this key's value, as it is.

  -format=text
    text, or json: the secret's data as a JSON object.
` + secretsVaultHelp)
}

func (c *secretsGetCommand) Run(args []string) int {
	fs := newFlagSet("secrets get")
	var k kvTarget
	k.flags(fs)
	field := fs.String("field", "", "")
	format := fs.String("format", "text", "")
	pos, err := parseInterspersed(fs, args)
	if err == nil {
		pos, err = k.args(pos)
	}
	if err == nil && len(pos) > 0 {
		err = fmt.Errorf("unexpected arguments %q", pos)
	}
	if err == nil && *format != "text" && *format != "json" {
		err = fmt.Errorf("-format %q: text or json", *format)
	}
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 0)
	}
	kv, err := k.connect(c.ui)
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	ctx, cancel := context.WithTimeout(context.Background(), secretsTimeout)
	defer cancel()
	s, err := kv.Get(ctx, k.path())
	if errors.Is(err, vault.ErrSecretNotFound) || (err == nil && s.Data == nil) {
		err = fmt.Errorf("%s has no data (no such secret, or its latest version was deleted): write it with `butter secrets put %s %s KEY=VALUE`", k.display(), k.project, k.name)
	} else if err != nil {
		err = k.opError("read "+k.display(), `"read"`, err)
	}
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	keys := make([]string, 0, len(s.Data))
	for key := range s.Data {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	switch {
	case *field != "":
		v, ok := s.Data[*field]
		if !ok {
			c.ui.Error(fmt.Sprintf("Error: %s has no key %q; its keys: %s", k.display(), *field, strings.Join(keys, ", ")))
			return exitInvalid
		}
		c.ui.Output(valueString(v))
	case *format == "json":
		b, err := json.MarshalIndent(s.Data, "", "  ")
		if err != nil {
			c.ui.Error("Error: " + err.Error())
			return exitInvalid
		}
		c.ui.Output(string(b))
	default:
		for _, key := range keys {
			c.ui.Output(key + "=" + quoteIfNeeded(valueString(s.Data[key])))
		}
	}
	return exitOK
}

// valueString is a KV value as text: a string as it is, anything else as
// JSON.
func valueString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// quoteIfNeeded quotes a value that a KEY=VALUE line (and a dotenv
// reader) would not give back as it is.
func quoteIfNeeded(v string) string {
	if strings.ContainsAny(v, "\n\r\"") || strings.HasPrefix(v, "'") || strings.Contains(v, " #") || strings.TrimSpace(v) != v {
		return strconv.Quote(v)
	}
	return v
}
