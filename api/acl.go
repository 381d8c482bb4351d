package api

import (
	"context"
	"net/http"
	"time"
)

// The ACL endpoints, shaped like Nomad's: a one-time bootstrap that
// answers the first management token, tokens (a secret shown once, an
// accessor ID to name it by) and HCL policies (package acl's language).

// Token types.
const (
	ACLClientToken     = "client"
	ACLManagementToken = "management"
)

// ACLToken is a token. SecretID is set only in the answers of bootstrap
// and create: the control plane keeps only its hash.
type ACLToken struct {
	AccessorID string    `json:"accessor_id"`
	SecretID   string    `json:"secret_id,omitempty"`
	Name       string    `json:"name,omitempty"`
	Type       string    `json:"type"`
	Policies   []string  `json:"policies,omitempty"`
	Created    time.Time `json:"created"`
	// Expires is zero for a token that does not expire.
	Expires time.Time `json:"expires,omitzero"`
}

// ACLTokenCreateRequest is the body of POST /v1/acl/tokens.
type ACLTokenCreateRequest struct {
	Name string `json:"name,omitempty"`
	// Type is "client" (the default; needs at least one policy) or
	// "management" (no policies: it may do everything).
	Type     string   `json:"type,omitempty"`
	Policies []string `json:"policies,omitempty"`
	// TTL, a Go duration such as "24h", makes the token expire.
	TTL string `json:"ttl,omitempty"`
}

// ACLTokenDeleteResponse answers DELETE /v1/acl/tokens/{accessor}.
type ACLTokenDeleteResponse struct {
	Deleted string `json:"deleted"`
}

// ACLPolicy is a named policy; Rules is its HCL text.
type ACLPolicy struct {
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	Rules       string    `json:"rules"`
	Created     time.Time `json:"created,omitzero"`
	Modified    time.Time `json:"modified,omitzero"`
}

// ACLPolicyApplyRequest is the body of PUT /v1/acl/policies/{name}.
type ACLPolicyApplyRequest struct {
	Description string `json:"description,omitempty"`
	Rules       string `json:"rules"`
}

// ACLPolicyDeleteResponse answers DELETE /v1/acl/policies/{name}.
type ACLPolicyDeleteResponse struct {
	Deleted string `json:"deleted"`
}

// ACL manages tokens and policies. Every call but Bootstrap and
// TokenSelf needs a management token.
type ACL struct{ c *Client }

// ACL returns the ACL endpoints.
func (c *Client) ACL() *ACL { return &ACL{c} }

// Bootstrap creates the first management token, once per cluster: a
// second bootstrap answers 400 "ACL bootstrap already done".
func (a *ACL) Bootstrap(ctx context.Context) (*ACLToken, error) {
	var out ACLToken
	if err := a.c.write(ctx, http.MethodPost, "/v1/acl/bootstrap", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// TokenCreate creates a token; its SecretID is answered this once.
func (a *ACL) TokenCreate(ctx context.Context, req *ACLTokenCreateRequest) (*ACLToken, error) {
	var out ACLToken
	if err := a.c.write(ctx, http.MethodPost, "/v1/acl/tokens", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// TokenList lists the tokens (without secrets), sorted by name then
// accessor.
func (a *ACL) TokenList(ctx context.Context) ([]ACLToken, error) {
	var out []ACLToken
	if err := a.c.write(ctx, http.MethodGet, "/v1/acl/tokens", nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// TokenSelf is the calling token (without its secret).
func (a *ACL) TokenSelf(ctx context.Context) (*ACLToken, error) {
	var out ACLToken
	if err := a.c.write(ctx, http.MethodGet, "/v1/acl/token/self", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// TokenDelete deletes the token with this accessor ID (404 when there is
// none); it is refused from then on.
func (a *ACL) TokenDelete(ctx context.Context, accessor string) error {
	return a.c.write(ctx, http.MethodDelete, "/v1/acl/tokens/"+seg(accessor), nil, &ACLTokenDeleteResponse{})
}

// PolicyApply creates or replaces a policy. Rules that do not parse are
// refused (400) with the line and column.
func (a *ACL) PolicyApply(ctx context.Context, name, description, rules string) (*ACLPolicy, error) {
	var out ACLPolicy
	if err := a.c.write(ctx, http.MethodPut, "/v1/acl/policies/"+seg(name), &ACLPolicyApplyRequest{Description: description, Rules: rules}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PolicyList lists the policies, sorted by name.
func (a *ACL) PolicyList(ctx context.Context) ([]ACLPolicy, error) {
	var out []ACLPolicy
	if err := a.c.write(ctx, http.MethodGet, "/v1/acl/policies", nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// PolicyGet is one policy, with its rules.
func (a *ACL) PolicyGet(ctx context.Context, name string) (*ACLPolicy, error) {
	var out ACLPolicy
	if err := a.c.write(ctx, http.MethodGet, "/v1/acl/policies/"+seg(name), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PolicyDelete deletes a policy (404 when there is none). Tokens that
// name it keep the others.
func (a *ACL) PolicyDelete(ctx context.Context, name string) error {
	return a.c.write(ctx, http.MethodDelete, "/v1/acl/policies/"+seg(name), nil, &ACLPolicyDeleteResponse{})
}
