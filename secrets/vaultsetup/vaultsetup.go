// Package vaultsetup prepares a Vault for Butter, as `nomad setup vault`
// does for Nomad: a JWT auth method trusting Nomad's workload identities,
// the KV v2 and transit engines, and per project a policy, a transit key
// and a role (names.VaultPolicy, names.TransitKey, names.VaultRole). It is
// idempotent and repairs drift. `butter setup vault` calls it; its errors
// say which capability a token lacks.
package vaultsetup

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/butterfn/butter/names"
	vault "github.com/hashicorp/vault/api"
)

// What `butter setup vault` creates. It mirrors `nomad setup vault`
// (Nomad's command/setup_vault.go and its asset/vault-wi-*.json): a JWT
// auth method that trusts Nomad's workload identities, and one role and
// one policy per project instead of Nomad's single templated
// nomad-workloads policy.
const (
	JWTPath      = "jwt-nomad"
	DefaultRole  = "butter-default"
	Audience     = "vault.io"
	KVMount      = "secret"
	TransitMount = "transit"
	TokenPeriod  = 30 * time.Minute
)

// JWTAlgs are the signing algorithms of Nomad's workload identities.
var JWTAlgs = []string{"RS256", "EdDSA"}

// Setup holds one run of `butter setup vault`: make it with New.
type Setup struct {
	c       *vault.Client
	out     io.Writer
	addr    string
	jwksURL string

	created, updated, unchanged int
}

// report prints one item's outcome: "created", "updated" or "unchanged".
func (s *Setup) report(outcome, item string) {
	switch outcome {
	case "created":
		s.created++
	case "updated":
		s.updated++
	default:
		s.unchanged++
	}
	s.printf("%-10s %s\n", outcome, item)
}

// New prepares a setup of the Vault that client talks to (at addr, as
// people reach it), trusting the workload identities that Nomad signs with
// the keys at jwksURL. Run prints each step's outcome to out.
func New(client *vault.Client, addr, jwksURL string, out io.Writer) *Setup {
	return &Setup{c: client, out: out, addr: addr, jwksURL: jwksURL}
}

func (s *Setup) printf(format string, args ...any) { fmt.Fprintf(s.out, format, args...) }

// Run makes Vault ready for Nomad's workload identities and for projects:
// the JWT auth method and its config, the KV v2 and transit engines, and a
// policy, transit key and role per project. What exists and matches is
// left alone; what differs is updated.
func (s *Setup) Run(projects []string) error {
	if err := s.check(); err != nil {
		return err
	}
	if err := s.authMethod(); err != nil {
		return err
	}
	if err := s.authConfig(); err != nil {
		return err
	}
	if err := s.secretsEngine(KVMount, "kv", "2"); err != nil {
		return err
	}
	if err := s.secretsEngine(TransitMount, "transit", ""); err != nil {
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
	s.printf("\nVault at %s is set up for Nomad workload identity: %d created, %d updated, %d unchanged.\n",
		s.addr, s.created, s.updated, s.unchanged)
	if s.created+s.updated > 0 {
		s.printf("%s\n", `
Nomad's agents need a vault block like this one (docs/vault.md):

  vault {
    enabled               = true
    address               = "`+s.addr+`"
    jwt_auth_backend_path = "`+JWTPath+`/"
    default_identity {
      aud = ["`+Audience+`"]
      ttl = "1h"
    }
  }`)
	}
	return nil
}

func (s *Setup) check() error { return Check(s.c, s.addr) }

// Check makes sure the Vault at addr answers, is unsealed, and takes the
// client's token, with an error that says how to fix what is not.
func Check(c *vault.Client, addr string) error {
	h, err := c.Sys().Health()
	if err != nil {
		return WithHint(fmt.Errorf("cannot reach Vault at %s: %v", addr, ShortErr(err)),
			"Is Vault running there? Set -vault-addr or VAULT_ADDR.")
	}
	if !h.Initialized {
		return fmt.Errorf("the Vault at %s is not initialized: run `vault operator init` first", addr)
	}
	if h.Sealed {
		return fmt.Errorf("the Vault at %s is sealed: unseal it (`vault operator unseal`) first", addr)
	}
	if _, err := c.Auth().Token().LookupSelf(); err != nil {
		return WithHint(fmt.Errorf("the Vault at %s rejects the token: %v", addr, ShortErr(err)),
			"Set -token or VAULT_TOKEN to a valid token.")
	}
	return nil
}

// OpError explains a failed step: what it was, what Vault said and,
// for a permission error, which capabilities the token lacks.
func OpError(what, path, caps string, err error) error {
	var re *vault.ResponseError
	if errors.As(err, &re) && re.StatusCode == 403 {
		return WithHint(fmt.Errorf("%s: permission denied (403 on %s)", what, path),
			fmt.Sprintf("The token needs %s on %q: use a token with such a policy (docs/vault.md lists one), or a root token.", caps, path))
	}
	return fmt.Errorf("%s: %v", what, ShortErr(err))
}

// hintError is an error followed, on its own line, by how to fix it.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() + "\n" + e.hint }
func (e *hintError) Unwrap() error { return e.err }

func WithHint(err error, hint string) error { return &hintError{err, hint} }

// ShortErr is Vault's error in one line: the API client's errors
// span several lines with the URL and code.
func ShortErr(err error) string {
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
func (s *Setup) authMethod() error {
	item := fmt.Sprintf("auth method %s/ (jwt)", JWTPath)
	mounts, err := s.c.Sys().ListAuth()
	if err != nil {
		return OpError("list the auth methods", "sys/auth", `"read"`, err)
	}
	if m, ok := mounts[JWTPath+"/"]; ok {
		if m.Type != "jwt" {
			return fmt.Errorf("an auth method of type %q is already enabled at %s/, where Butter expects the jwt method: disable it (`vault auth disable %s`) or move it", m.Type, JWTPath, JWTPath)
		}
		s.report("unchanged", item)
		return nil
	}
	err = s.c.Sys().EnableAuthWithOptions(JWTPath, &vault.EnableAuthOptions{
		Type:        "jwt",
		Description: "Nomad workload identities (butter setup vault)",
	})
	if err != nil {
		return OpError("enable the jwt auth method at "+JWTPath+"/", "sys/auth/"+JWTPath, `"create", "update" and "sudo"`, err)
	}
	s.report("created", item)
	return nil
}

// authConfig points the JWT auth method at Nomad's JWKS.
func (s *Setup) authConfig() error {
	path := "auth/" + JWTPath + "/config"
	item := fmt.Sprintf("%s (jwks_url %s, default_role %s)", path, s.jwksURL, DefaultRole)
	cur, err := s.c.Logical().Read(path)
	if err != nil {
		return OpError("read the jwt auth method's configuration", path, `"read"`, err)
	}
	want := map[string]any{
		"jwks_url":           s.jwksURL,
		"jwt_supported_algs": JWTAlgs,
		"default_role":       DefaultRole,
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
			return WithHint(fmt.Errorf("configure the jwt auth method: Vault could not fetch Nomad's JWKS from %s: %s", s.jwksURL, strings.Join(re.Errors, "; ")),
				"Is Nomad running there, and can Vault reach it? Set -nomad-addr (or NOMAD_ADDR) to Nomad's address as Vault sees it.")
		}
		return OpError("configure the jwt auth method", path, `"create" and "update"`, err)
	}
	s.report(outcome, item)
	return nil
}

// secretsEngine mounts a secrets engine of the type at path, unless it is
// there already. version is the KV version ("" for other types).
func (s *Setup) secretsEngine(path, typ, version string) error {
	kind := typ
	if version != "" {
		kind += " v" + version
	}
	item := fmt.Sprintf("secrets engine %s/ (%s)", path, kind)
	mounts, err := s.c.Sys().ListMounts()
	if err != nil {
		return OpError("list the secrets engines", "sys/mounts", `"read"`, err)
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
		return OpError("enable the "+kind+" secrets engine at "+path+"/", "sys/mounts/"+path, `"create" and "update"`, err)
	}
	s.report("created", item)
	return nil
}

// policyText is the policy of a project's jobs: read its secrets, list
// their names, and encrypt and decrypt with its transit key.
func policyText(project string) string {
	return fmt.Sprintf(`# Written by butter setup vault: the secrets and transit key of the
# project %[1]q, for its Nomad jobs (JWT role %[2]q).
path "%[3]s/data/%[5]s" {
  capabilities = ["read"]
}

path "%[3]s/metadata/%[5]s" {
  capabilities = ["list"]
}

path "%[4]s/encrypt/%[6]s" {
  capabilities = ["update"]
}

path "%[4]s/decrypt/%[6]s" {
  capabilities = ["update"]
}
`, project, names.VaultRole(project), KVMount, TransitMount, names.KVPath(project, "*"), names.TransitKey(project))
}

// policy writes the project's policy.
func (s *Setup) policy(project string) error {
	name := names.VaultPolicy(project)
	path := "sys/policies/acl/" + name
	item := "policy " + name
	cur, err := s.c.Sys().GetPolicy(name)
	if err != nil {
		return OpError("read the policy "+name, path, `"read"`, err)
	}
	want := policyText(project)
	if cur == want {
		s.report("unchanged", item)
		return nil
	}
	if err := s.c.Sys().PutPolicy(name, want); err != nil {
		return OpError("write the policy "+name, path, `"create" and "update"`, err)
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
func (s *Setup) transitKey(project string) error {
	name := names.TransitKey(project)
	path := TransitMount + "/keys/" + name
	item := "transit key " + path
	cur, err := s.c.Logical().Read(path)
	if err != nil {
		return OpError("read the transit key "+name, path, `"read"`, err)
	}
	if cur != nil {
		s.report("unchanged", item)
		return nil
	}
	if _, err := s.c.Logical().Write(path, map[string]any{"type": "aes256-gcm96"}); err != nil {
		return OpError("create the transit key "+name, path, `"create" and "update"`, err)
	}
	s.report("created", item)
	return nil
}

// roleFields is a project's JWT role, as in Nomad's
// asset/vault-wi-default-role.json but bound to the project's job and
// policy.
func roleFields(project string) map[string]any {
	return map[string]any{
		"role_type":               "jwt",
		"bound_audiences":         []string{Audience},
		"user_claim":              "/nomad_job_id",
		"user_claim_json_pointer": true,
		"claim_mappings": map[string]any{
			"nomad_namespace": "nomad_namespace",
			"nomad_job_id":    "nomad_job_id",
			"nomad_task":      "nomad_task",
		},
		"token_type":     "service",
		"token_policies": []string{names.VaultPolicy(project)},
		"token_period":   int(TokenPeriod / time.Second),
		"bound_claims":   map[string]any{"nomad_job_id": names.JobID(project)},
	}
}

// role writes the project's JWT role.
func (s *Setup) role(project string) error {
	name := names.VaultRole(project)
	path := "auth/" + JWTPath + "/role/" + name
	item := "role " + path
	cur, err := s.c.Logical().Read(path)
	if err != nil {
		return OpError("read the jwt role "+name, path, `"read"`, err)
	}
	want := roleFields(project)
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
		return OpError("write the jwt role "+name, path, `"create" and "update"`, err)
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
