package nomad

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/butterfn/butter/e2e/e2etest"
)

// gatewayACLPolicy is the gateway's control-plane policy, as
// docs/security.md gives it: read on every project (routes, revisions'
// specs, API keys' hashes).
const gatewayACLPolicy = `project "*" {
  capabilities = ["read"]
}
`

var secretIDRE = regexp.MustCompile(`(?m)^Secret ID +=\s*(\S+)$`)

// butterACL bootstraps the control plane's ACLs on a platform server the
// way an operator does (butter acl bootstrap, policy apply, token create)
// and returns the management token and the gateway's read-only token.
// Every command also gets tlsArgs (the CLI's TLS flags, if any).
func butterACL(t *testing.T, serverAddr string, tlsArgs ...string) (mgmt, gateway string) {
	t.Helper()
	secret := func(r e2etest.Result, what string) string {
		t.Helper()
		m := secretIDRE.FindStringSubmatch(r.Stdout)
		if r.Code != 0 || m == nil {
			t.Fatalf("%s: %+v", what, r)
		}
		return m[1]
	}
	mgmt = secret(e2etest.Butter(t, ".", append([]string{"acl", "bootstrap", "-address", serverAddr}, tlsArgs...)...), "butter acl bootstrap")
	policy := filepath.Join(t.TempDir(), "gateway.hcl")
	if err := os.WriteFile(policy, []byte(gatewayACLPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := e2etest.Butter(t, ".", append(append([]string{"acl", "policy", "apply", "-address", serverAddr, "-token", mgmt}, tlsArgs...), "gateway", policy)...); r.Code != 0 {
		t.Fatalf("butter acl policy apply: %+v", r)
	}
	gateway = secret(e2etest.Butter(t, ".", append(append([]string{"acl", "token", "create", "-address", serverAddr, "-token", mgmt}, tlsArgs...), "-name", "gateway", "-policy", "gateway")...), "butter acl token create")
	return mgmt, gateway
}
