package fsm

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"time"
)

// ACL state: policies and tokens, as Nomad keeps them. A token's secret
// never enters the log: only its SHA-256 (SecretHash), so a snapshot or a
// stolen data dir gives no usable token.

// Token types.
const (
	TokenClient     = "client"
	TokenManagement = "management"
)

// ErrACLBootstrapped refuses a second bootstrap.
var ErrACLBootstrapped = errors.New("ACL bootstrap already done")

// ACLPolicy is a named policy; Rules is its HCL text (package acl).
type ACLPolicy struct {
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	Rules       string    `json:"rules"`
	Created     time.Time `json:"created"`
	Modified    time.Time `json:"modified"`
}

// ACLToken is a token without its secret.
type ACLToken struct {
	AccessorID string `json:"accessor_id"`
	// SecretHash is the hex SHA-256 of the secret.
	SecretHash string    `json:"secret_hash"`
	Name       string    `json:"name,omitempty"`
	Type       string    `json:"type"`
	Policies   []string  `json:"policies,omitempty"`
	Created    time.Time `json:"created"`
	// Expires, when set, is when the token stops being accepted.
	Expires time.Time `json:"expires,omitempty"`
}

// BlobKey is the payload of BlobKeySetType.
type BlobKey struct {
	Key string `json:"key"`
}

func (f *FSM) applyACLBootstrap(t *ACLToken) error {
	if f.st.ACLBootstrapped {
		return ErrACLBootstrapped
	}
	if t.Type != TokenManagement {
		return fmt.Errorf("ACL bootstrap: token type %q, want %q", t.Type, TokenManagement)
	}
	f.st.ACLBootstrapped = true
	f.st.ACLTokens[t.AccessorID] = t
	return nil
}

func (f *FSM) applyACLTokenUpsert(t *ACLToken) error {
	if t.AccessorID == "" || t.SecretHash == "" {
		return errors.New("ACL token: accessor and secret hash are required")
	}
	for _, p := range t.Policies {
		if _, ok := f.st.ACLPolicies[p]; !ok {
			return fmt.Errorf("ACL token %q: no policy %q", t.Name, p)
		}
	}
	f.st.ACLTokens[t.AccessorID] = t
	return nil
}

func (f *FSM) applyACLTokenDelete(t *ACLToken) error {
	if _, ok := f.st.ACLTokens[t.AccessorID]; !ok {
		return fmt.Errorf("no ACL token with accessor %q", t.AccessorID)
	}
	delete(f.st.ACLTokens, t.AccessorID)
	return nil
}

func (f *FSM) applyACLPolicyUpsert(p *ACLPolicy) error {
	if old, ok := f.st.ACLPolicies[p.Name]; ok {
		p.Created = old.Created
	}
	f.st.ACLPolicies[p.Name] = p
	return nil
}

func (f *FSM) applyACLPolicyDelete(p *ACLPolicy) error {
	if _, ok := f.st.ACLPolicies[p.Name]; !ok {
		return fmt.Errorf("no ACL policy %q", p.Name)
	}
	delete(f.st.ACLPolicies, p.Name)
	return nil
}

// applyBlobKeySet sets the blob signing key once: a second key (two
// leaders' racing first needs) is refused, and both read the first.
func (f *FSM) applyBlobKeySet(k *BlobKey) error {
	if f.st.BlobKey != "" {
		return errors.New("the blob signing key is set already")
	}
	if k.Key == "" {
		return errors.New("empty blob signing key")
	}
	f.st.BlobKey = k.Key
	return nil
}

// TokenBySecretHash finds a token by its secret's hash, comparing in
// constant time.
func (s *State) TokenBySecretHash(hash string) *ACLToken {
	var found *ACLToken
	for _, t := range s.ACLTokens {
		if subtle.ConstantTimeCompare([]byte(t.SecretHash), []byte(hash)) == 1 {
			found = t
		}
	}
	return found
}
