package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/cli"
	vault "github.com/hashicorp/vault/api"
)

// What `butter setup vault` creates. It mirrors `nomad setup vault`
// (Nomad's command/setup_vault.go and its asset/vault-wi-*.json): a JWT
// auth method that trusts Nomad's workload identities, and one role and
// one policy per project instead of Nomad's single templated
// nomad-workloads policy.
const (
	vaultJWTPath     = "jwt-nomad"
	vaultDefaultRole = "butter-default"
	vaultAudience    = "vault.io"
	vaultKVPath      = "secret"
	vaultTransitPath = "transit"
	vaultTokenPeriod = 30 * time.Minute
)

// vaultJWTAlgs are the signing algorithms of Nomad's workload identities.
var vaultJWTAlgs = []string{"RS256", "EdDSA"}

// vaultProjectRE is what hcl/spec accepts as a project name.
var vaultProjectRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

type setupVaultCommand struct{ ui cli.Ui }

func (c *setupVaultCommand) Synopsis() string {
	return "Configure Vault for the workload identities of Butter's Nomad jobs"
}

func (c *setupVaultCommand) Help() string {
	return trimHelp(`
Usage: butter setup vault [options]

  Configures Vault so that Butter's Nomad jobs log in with their workload
  identity, as ` + "`nomad setup vault`" + ` does, with one role and one policy per
  project. It creates what is missing and leaves what is right alone, so it
  is safe to run again (every item then reports "unchanged"):

    - the JWT auth method at jwt-nomad/, trusting Nomad's JWKS
      (jwks_url = <nomad addr>/.well-known/jwks.json, default_role =
      butter-default);
    - a KV version 2 secrets engine at secret/ and transit at transit/;
    - for each project P: the policy butter-P (read on
      secret/data/butter/P/*, encrypt and decrypt with the transit key
      butter-P), the transit key butter-P, and the JWT role butter-P, bound
      to the Nomad job butter-P.

  A project's job then asks for its token with vault { role = "butter-P" }.
  Vault must reach Nomad's address to fetch the JWKS. See docs/vault.md for
  the Nomad agent's vault block and the token policy this command needs.

Options:

  -vault-addr=<url>
    Vault's address. Default: $VAULT_ADDR.

  -token=<token>
    A Vault token allowed to configure auth methods, mounts, policies and
    transit keys (docs/vault.md lists the policy). Default: $VAULT_TOKEN.

  -nomad-addr=<url>
    Nomad's HTTP address, as Vault reaches it. Default: $NOMAD_ADDR, or
    http://127.0.0.1:4646.

  -project=<name>
    A project to give a role, a policy and a transit key. Repeat the flag
    or give a comma-separated list.
`)
}

// commaList is a flag that may be repeated and takes comma-separated
// lists; it drops duplicates.
type commaList []string

func (l *commaList) String() string { return strings.Join(*l, ",") }
func (l *commaList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" && !slices.Contains(*l, s) {
			*l = append(*l, s)
		}
	}
	return nil
}

func (c *setupVaultCommand) Run(args []string) int {
	fs := newFlagSet("setup vault")
	addr := fs.String("vault-addr", os.Getenv("VAULT_ADDR"), "")
	token := fs.String("token", os.Getenv("VAULT_TOKEN"), "")
	nomadAddr := fs.String("nomad-addr", os.Getenv("NOMAD_ADDR"), "")
	var projects commaList
	fs.Var(&projects, "project", "")
	pos, err := parseInterspersed(fs, args)
	if err == nil && len(pos) > 0 {
		err = fmt.Errorf("unexpected arguments %q: name projects with -project", pos)
	}
	if err == nil {
		for _, p := range projects {
			if !vaultProjectRE.MatchString(p) {
				err = fmt.Errorf("-project %q is not a project name: lower-case letters, digits, '-' and '_', starting with a letter", p)
				break
			}
		}
	}
	if err == nil && *addr == "" {
		err = errors.New("no Vault address: set -vault-addr or VAULT_ADDR")
	}
	if err == nil && *token == "" {
		err = errors.New("no Vault token: set -token or VAULT_TOKEN")
	}
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 0)
	}
	if *nomadAddr == "" {
		*nomadAddr = "http://127.0.0.1:4646"
	}

	cfg := vault.DefaultConfig()
	if cfg.Error != nil {
		c.ui.Error("Error: Vault client configuration: " + cfg.Error.Error())
		return exitInvalid
	}
	cfg.Address = *addr
	client, err := vault.NewClient(cfg)
	if err != nil {
		c.ui.Error("Error: Vault client: " + err.Error())
		return exitInvalid
	}
	client.SetToken(*token)

	s := &vaultSetup{c: client, ui: c.ui, addr: *addr, jwksURL: strings.TrimRight(*nomadAddr, "/") + "/.well-known/jwks.json"}
	if err := s.run(projects); err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	return exitOK
}

// vaultSetup holds one run of `butter setup vault`.
type vaultSetup struct {
	c       *vault.Client
	ui      cli.Ui
	addr    string
	jwksURL string

	created, updated, unchanged int
}

// report prints one item's outcome: "created", "updated" or "unchanged".
func (s *vaultSetup) report(outcome, item string) {
	switch outcome {
	case "created":
		s.created++
	case "updated":
		s.updated++
	default:
		s.unchanged++
	}
	s.ui.Output(fmt.Sprintf("%-10s %s", outcome, item))
}

func (s *vaultSetup) run(projects []string) error {
	if err := s.check(); err != nil {
		return err
	}
	if err := s.authMethod(); err != nil {
		return err
	}
	if err := s.authConfig(); err != nil {
		return err
	}
	if err := s.secretsEngine(vaultKVPath, "kv", "2"); err != nil {
		return err
	}
	if err := s.secretsEngine(vaultTransitPath, "transit", ""); err != nil {
		return err
	}
	for _, p := range projects {
		if err := s.policy(p); err != nil {
			return err
		}
		if err := s.transitKey(p); err != nil {
			return err
		}
		if err := s.role(p); err != nil {
			return err
		}
	}
	s.ui.Output(fmt.Sprintf("\nVault at %s is set up for Nomad workload identity: %d created, %d updated, %d unchanged.",
		s.addr, s.created, s.updated, s.unchanged))
	if s.created+s.updated > 0 {
		s.ui.Output(`
Nomad's agents need a vault block like this one (docs/vault.md):

  vault {
    enabled               = true
    address               = "` + s.addr + `"
    jwt_auth_backend_path = "` + vaultJWTPath + `/"
    default_identity {
      aud = ["` + vaultAudience + `"]
      ttl = "1h"
    }
  }`)
	}
	return nil
}

// check makes sure Vault answers, is unsealed, and takes the token.
func (s *vaultSetup) check() error {
	h, err := s.c.Sys().Health()
	if err != nil {
		return withHint(fmt.Errorf("cannot reach Vault at %s: %v", s.addr, shortVaultErr(err)),
			"Is Vault running there? Set -vault-addr or VAULT_ADDR.")
	}
	if !h.Initialized {
		return fmt.Errorf("the Vault at %s is not initialized: run `vault operator init` first", s.addr)
	}
	if h.Sealed {
		return fmt.Errorf("the Vault at %s is sealed: unseal it (`vault operator unseal`) first", s.addr)
	}
	if _, err := s.c.Auth().Token().LookupSelf(); err != nil {
		return withHint(fmt.Errorf("the Vault at %s rejects the token: %v", s.addr, shortVaultErr(err)),
			"Set -token or VAULT_TOKEN to a valid token.")
	}
	return nil
}

// vaultOpError explains a failed step: what it was, what Vault said and,
// for a permission error, which capabilities the token lacks.
func vaultOpError(what, path, caps string, err error) error {
	var re *vault.ResponseError
	if errors.As(err, &re) && re.StatusCode == 403 {
		return withHint(fmt.Errorf("%s: permission denied (403 on %s)", what, path),
			fmt.Sprintf("The token needs %s on %q: use a token with such a policy (docs/vault.md lists one), or a root token.", caps, path))
	}
	return fmt.Errorf("%s: %v", what, shortVaultErr(err))
}

// hintError is an error followed, on its own line, by how to fix it.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() + "\n" + e.hint }
func (e *hintError) Unwrap() error { return e.err }

func withHint(err error, hint string) error { return &hintError{err, hint} }

// shortVaultErr is Vault's error in one line: the API client's errors
// span several lines with the URL and code.
func shortVaultErr(err error) string {
	var re *vault.ResponseError
	if errors.As(err, &re) {
		msg := strings.Join(re.Errors, "; ")
		if msg == "" {
			msg = "no details"
		}
		return fmt.Sprintf("%d from %s %s: %s", re.StatusCode, re.HTTPMethod, re.URL, msg)
	}
	return err.Error()
}

// authMethod enables the JWT auth method at jwt-nomad/.
func (s *vaultSetup) authMethod() error {
	item := fmt.Sprintf("auth method %s/ (jwt)", vaultJWTPath)
	mounts, err := s.c.Sys().ListAuth()
	if err != nil {
		return vaultOpError("list the auth methods", "sys/auth", `"read"`, err)
	}
	if m, ok := mounts[vaultJWTPath+"/"]; ok {
		if m.Type != "jwt" {
			return fmt.Errorf("an auth method of type %q is already enabled at %s/, where Butter expects the jwt method: disable it (`vault auth disable %s`) or move it", m.Type, vaultJWTPath, vaultJWTPath)
		}
		s.report("unchanged", item)
		return nil
	}
	err = s.c.Sys().EnableAuthWithOptions(vaultJWTPath, &vault.EnableAuthOptions{
		Type:        "jwt",
		Description: "Nomad workload identities (butter setup vault)",
	})
	if err != nil {
		return vaultOpError("enable the jwt auth method at "+vaultJWTPath+"/", "sys/auth/"+vaultJWTPath, `"create", "update" and "sudo"`, err)
	}
	s.report("created", item)
	return nil
}

// authConfig points the JWT auth method at Nomad's JWKS.
func (s *vaultSetup) authConfig() error {
	path := "auth/" + vaultJWTPath + "/config"
	item := fmt.Sprintf("%s (jwks_url %s, default_role %s)", path, s.jwksURL, vaultDefaultRole)
	cur, err := s.c.Logical().Read(path)
	if err != nil {
		return vaultOpError("read the jwt auth method's configuration", path, `"read"`, err)
	}
	want := map[string]any{
		"jwks_url":           s.jwksURL,
		"jwt_supported_algs": vaultJWTAlgs,
		"default_role":       vaultDefaultRole,
	}
	outcome := "created"
	if cur != nil && cur.Data != nil {
		diff := diffFields(cur.Data, want, map[string]bool{"jwt_supported_algs": true})
		if len(diff) == 0 {
			s.report("unchanged", item)
			return nil
		}
		outcome = "updated"
		item += " (" + strings.Join(diff, ", ") + ")"
		// A write replaces the whole configuration: keep what an operator
		// may have added for the same JWKS setup.
		for _, k := range []string{"bound_issuer", "jwks_ca_pem"} {
			if v, ok := cur.Data[k]; ok && v != "" && v != nil {
				want[k] = v
			}
		}
	}
	if _, err := s.c.Logical().Write(path, want); err != nil {
		var re *vault.ResponseError
		if errors.As(err, &re) && re.StatusCode != 403 && strings.Contains(strings.Join(re.Errors, " "), "jwks") {
			return withHint(fmt.Errorf("configure the jwt auth method: Vault could not fetch Nomad's JWKS from %s: %s", s.jwksURL, strings.Join(re.Errors, "; ")),
				"Is Nomad running there, and can Vault reach it? Set -nomad-addr (or NOMAD_ADDR) to Nomad's address as Vault sees it.")
		}
		return vaultOpError("configure the jwt auth method", path, `"create" and "update"`, err)
	}
	s.report(outcome, item)
	return nil
}

// secretsEngine mounts a secrets engine of the type at path, unless it is
// there already. version is the KV version ("" for other types).
func (s *vaultSetup) secretsEngine(path, typ, version string) error {
	kind := typ
	if version != "" {
		kind += " v" + version
	}
	item := fmt.Sprintf("secrets engine %s/ (%s)", path, kind)
	mounts, err := s.c.Sys().ListMounts()
	if err != nil {
		return vaultOpError("list the secrets engines", "sys/mounts", `"read"`, err)
	}
	if m, ok := mounts[path+"/"]; ok {
		got := m.Type
		if typ == "kv" && m.Type == "kv" {
			v := m.Options["version"]
			if v == "" {
				v = "1"
			}
			got = "kv v" + v
		}
		if got != kind {
			hint := fmt.Sprintf("move it elsewhere (`vault secrets move %s/ <path>/`) and run setup again", path)
			if got == "kv v1" {
				hint = fmt.Sprintf("upgrade it with `vault kv enable-versioning %s/`", path)
			}
			return fmt.Errorf("%s/ is a %s secrets engine, where Butter expects %s: %s", path, got, kind, hint)
		}
		s.report("unchanged", item)
		return nil
	}
	in := &vault.MountInput{Type: typ, Description: "Butter (butter setup vault)"}
	if version != "" {
		in.Options = map[string]string{"version": version}
	}
	if err := s.c.Sys().Mount(path, in); err != nil {
		return vaultOpError("enable the "+kind+" secrets engine at "+path+"/", "sys/mounts/"+path, `"create" and "update"`, err)
	}
	s.report("created", item)
	return nil
}

// vaultPolicyName is the policy, the role and the transit key of a
// project.
func vaultPolicyName(project string) string { return "butter-" + project }

// vaultPolicy is the policy of a project's jobs: read its secrets, list
// their names, and encrypt and decrypt with its transit key.
func vaultPolicy(project string) string {
	name := vaultPolicyName(project)
	return fmt.Sprintf(`# Written by butter setup vault: the secrets and transit key of the
# project %[1]q, for its Nomad jobs (JWT role %[2]q).
path "%[3]s/data/butter/%[1]s/*" {
  capabilities = ["read"]
}

path "%[3]s/metadata/butter/%[1]s/*" {
  capabilities = ["list"]
}

path "%[4]s/encrypt/%[2]s" {
  capabilities = ["update"]
}

path "%[4]s/decrypt/%[2]s" {
  capabilities = ["update"]
}
`, project, name, vaultKVPath, vaultTransitPath)
}

// policy writes the project's policy.
func (s *vaultSetup) policy(project string) error {
	name := vaultPolicyName(project)
	path := "sys/policies/acl/" + name
	item := "policy " + name
	cur, err := s.c.Sys().GetPolicy(name)
	if err != nil {
		return vaultOpError("read the policy "+name, path, `"read"`, err)
	}
	want := vaultPolicy(project)
	if cur == want {
		s.report("unchanged", item)
		return nil
	}
	if err := s.c.Sys().PutPolicy(name, want); err != nil {
		return vaultOpError("write the policy "+name, path, `"create" and "update"`, err)
	}
	if cur == "" {
		s.report("created", item)
	} else {
		s.report("updated", item+" (its rules differed)")
	}
	return nil
}

// transitKey creates the project's transit key. An existing key is kept
// as it is: its type and versions are the operator's business.
func (s *vaultSetup) transitKey(project string) error {
	name := vaultPolicyName(project)
	path := vaultTransitPath + "/keys/" + name
	item := "transit key " + path
	cur, err := s.c.Logical().Read(path)
	if err != nil {
		return vaultOpError("read the transit key "+name, path, `"read"`, err)
	}
	if cur != nil {
		s.report("unchanged", item)
		return nil
	}
	if _, err := s.c.Logical().Write(path, map[string]any{"type": "aes256-gcm96"}); err != nil {
		return vaultOpError("create the transit key "+name, path, `"create" and "update"`, err)
	}
	s.report("created", item)
	return nil
}

// vaultRole is a project's JWT role, as in Nomad's
// asset/vault-wi-default-role.json but bound to the project's job and
// policy.
func vaultRole(project string) map[string]any {
	name := vaultPolicyName(project)
	return map[string]any{
		"role_type":               "jwt",
		"bound_audiences":         []string{vaultAudience},
		"user_claim":              "/nomad_job_id",
		"user_claim_json_pointer": true,
		"claim_mappings": map[string]any{
			"nomad_namespace": "nomad_namespace",
			"nomad_job_id":    "nomad_job_id",
			"nomad_task":      "nomad_task",
		},
		"token_type":     "service",
		"token_policies": []string{name},
		"token_period":   int(vaultTokenPeriod / time.Second),
		"bound_claims":   map[string]any{"nomad_job_id": name},
	}
}

// role writes the project's JWT role.
func (s *vaultSetup) role(project string) error {
	name := vaultPolicyName(project)
	path := "auth/" + vaultJWTPath + "/role/" + name
	item := "role " + path
	cur, err := s.c.Logical().Read(path)
	if err != nil {
		return vaultOpError("read the jwt role "+name, path, `"read"`, err)
	}
	want := vaultRole(project)
	outcome := "created"
	if cur != nil && cur.Data != nil {
		diff := diffFields(cur.Data, want, map[string]bool{"bound_audiences": true, "token_policies": true})
		if len(diff) == 0 {
			s.report("unchanged", item)
			return nil
		}
		outcome = "updated"
		item += " (" + strings.Join(diff, ", ") + ")"
	}
	if _, err := s.c.Logical().Write(path, want); err != nil {
		return vaultOpError("write the jwt role "+name, path, `"create" and "update"`, err)
	}
	s.report(outcome, item)
	return nil
}

// diffFields returns, sorted, the keys of want whose value differs from
// the one Vault returned. Both sides go through JSON so that Vault's
// json.Numbers and []any compare with ints and []string; the keys in
// unordered are lists compared as sets.
func diffFields(got, want map[string]any, unordered map[string]bool) []string {
	var diff []string
	for k, w := range want {
		if !sameJSON(got[k], w, unordered[k]) {
			diff = append(diff, k)
		}
	}
	slices.Sort(diff)
	return diff
}

func sameJSON(a, b any, unordered bool) bool {
	norm := func(v any) any {
		buf, err := json.Marshal(v)
		if err != nil {
			return nil
		}
		var out any
		if json.Unmarshal(buf, &out) != nil {
			return nil
		}
		if l, ok := out.([]any); ok && unordered {
			s := make([]string, len(l))
			for i, e := range l {
				s[i] = fmt.Sprint(e)
			}
			slices.Sort(s)
			return s
		}
		return out
	}
	return reflect.DeepEqual(norm(a), norm(b))
}
