package api

import (
	"context"
	"net/http"
)

// APIKey is an API key's hash and what it may call (GET /v1/keys).
type APIKey struct {
	// Hash is the key's SHA-256, in hex: the control plane keeps only it.
	Hash    string `json:"hash"`
	Project string `json:"project"`
	// Routes limits the key to these routes ("METHOD /path"); empty means
	// every route of the project.
	Routes []string `json:"routes,omitempty"`
}

// KeyCreateRequest is the body of POST /v1/projects/{name}/keys.
type KeyCreateRequest struct {
	Routes []string `json:"routes,omitempty"`
}

// KeyCreateResponse answers a key's creation. Key is shown this once.
type KeyCreateResponse struct {
	Key     string   `json:"key"`
	Hash    string   `json:"hash"`
	Project string   `json:"project"`
	Routes  []string `json:"routes,omitempty"`
}

// KeyRevokeResponse answers DELETE /v1/keys/{hash}.
type KeyRevokeResponse struct {
	Deleted string `json:"deleted"`
}

// Keys creates, lists and revokes the API keys gateways accept.
type Keys struct{ c *Client }

// Keys returns the API key endpoints.
func (c *Client) Keys() *Keys { return &Keys{c} }

// Create makes an API key of project, limited to routes when any are
// given. The project must exist (404 otherwise).
func (k *Keys) Create(ctx context.Context, project string, routes []string) (*KeyCreateResponse, error) {
	var out KeyCreateResponse
	if err := k.c.write(ctx, http.MethodPost, "/v1/projects/"+seg(project)+"/keys", &KeyCreateRequest{Routes: routes}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// List returns every API key's hash, project and routes, sorted by hash.
// It supports blocking queries.
func (k *Keys) List(ctx context.Context, q *QueryOptions) ([]APIKey, *QueryMeta, error) {
	var out []APIKey
	meta, err := k.c.query(ctx, "/v1/keys", q, &out)
	if err != nil {
		return nil, nil, err
	}
	return out, meta, nil
}

// Revoke deletes the API key with this hash. Revoking a key that does not
// exist succeeds.
func (k *Keys) Revoke(ctx context.Context, hash string) error {
	return k.c.write(ctx, http.MethodDelete, "/v1/keys/"+seg(hash), nil, &KeyRevokeResponse{})
}
