package schedtest

import (
	"context"
	"testing"
	"time"

	"github.com/butterfn/butter/api"
)

// Bootstrap bootstraps the ACLs of the control plane at addr and returns
// a client with the management token.
func Bootstrap(t testing.TB, addr string) (*api.Client, *api.ACLToken) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	anon := Client(t, addr, "")
	tok, err := anon.ACL().Bootstrap(ctx)
	if err != nil {
		t.Fatalf("ACL bootstrap: %v", err)
	}
	return Client(t, addr, tok.SecretID), tok
}

// Token applies a policy of rules named name and returns a client with a
// new token of it; mgmt is a management client.
func Token(t testing.TB, mgmt *api.Client, addr, name, rules string) (*api.Client, *api.ACLToken) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := mgmt.ACL().PolicyApply(ctx, name, "", rules); err != nil {
		t.Fatalf("apply policy %s: %v", name, err)
	}
	tok, err := mgmt.ACL().TokenCreate(ctx, &api.ACLTokenCreateRequest{Name: name, Policies: []string{name}})
	if err != nil {
		t.Fatalf("create a token of policy %s: %v", name, err)
	}
	return Client(t, addr, tok.SecretID), tok
}

// Client is an API client of addr (host:port or a URL) with token.
func Client(t testing.TB, addr, token string) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: addr, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
