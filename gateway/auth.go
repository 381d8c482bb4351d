package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Keys looks up API keys. Keys are stored hashed, as the control plane
// keeps them (fsm.APIKey): the lowercase hex SHA-256 of the key
// (HashKey). A key may call the routes of its project; when routes is
// not empty, only those (by Route.Pattern, "POST /shout").
type Keys interface {
	Lookup(hash string) (project string, routes []string, ok bool)
}

// HashKey returns the hash an API key is stored and looked up by.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// MemKeys is an in-memory Keys, for `butter dev` and tests, and for a
// gateway that mirrors the control plane's keys.
type MemKeys struct {
	mu   sync.RWMutex
	keys map[string]memKey
}

type memKey struct {
	project string
	routes  []string
}

// NewMemKeys returns an empty key store.
func NewMemKeys() *MemKeys { return &MemKeys{keys: map[string]memKey{}} }

// Put adds or replaces the key with this hash.
func (k *MemKeys) Put(hash, project string, routes ...string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys[hash] = memKey{project: project, routes: slices.Clone(routes)}
}

// Delete removes the key with this hash.
func (k *MemKeys) Delete(hash string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.keys, hash)
}

// Lookup implements Keys.
func (k *MemKeys) Lookup(hash string) (string, []string, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	e, ok := k.keys[hash]
	return e.project, e.routes, ok
}

func bearer(r *http.Request) string {
	a := r.Header.Get("Authorization")
	if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

// authorize checks the request's credentials against the route's auth:
// nil, or a 401 (no or bad credentials), 403 (good credentials, wrong
// route) or 503 (the JWKS cannot be fetched).
func (g *Gateway) authorize(r *http.Request, rt *route) *CallError {
	switch rt.Auth {
	case AuthNone:
		return nil
	case AuthAPIKey:
		key := r.Header.Get(HeaderAPIKey)
		if key == "" {
			key = bearer(r)
		}
		if key == "" {
			return callError(http.StatusUnauthorized, "Unauthorized", "%s needs an API key of project %s: send it as `Authorization: Bearer <key>` or `%s: <key>`", rt.pattern, rt.Project, HeaderAPIKey)
		}
		if g.opts.keys == nil {
			return callError(http.StatusUnauthorized, "Unauthorized", "this gateway has no API keys configured, so %s cannot be called", rt.pattern)
		}
		project, routes, ok := g.opts.keys.Lookup(HashKey(key))
		if !ok {
			return callError(http.StatusUnauthorized, "Unauthorized", "the API key is not valid: check it, or ask for a new key of project %s", rt.Project)
		}
		if project != rt.Project {
			return callError(http.StatusForbidden, "Forbidden", "the API key belongs to project %s; %s belongs to project %s", project, rt.pattern, rt.Project)
		}
		if len(routes) > 0 && !slices.Contains(routes, rt.pattern) {
			return callError(http.StatusForbidden, "Forbidden", "the API key may call only %s, not %s", strings.Join(routes, ", "), rt.pattern)
		}
		return nil
	case AuthJWT:
		tok := bearer(r)
		if tok == "" {
			return callError(http.StatusUnauthorized, "Unauthorized", "%s needs a JWT: send it as `Authorization: Bearer <token>`", rt.pattern)
		}
		return g.jwks.verify(r.Context(), rt, tok)
	}
	return callError(http.StatusInternalServerError, "Internal", "route %s has unknown auth %q", rt.pattern, rt.Auth)
}

// signatureAlgs are the algorithms a route's tokens may be signed with:
// asymmetric only, since the keys come from a public JWKS.
var signatureAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// jwtLeeway is the clock skew allowed on exp, nbf and iat.
const jwtLeeway = 30 * time.Second

// jwksCaches holds one key cache per JWKS URL, shared by every route and
// every table that names it.
type jwksCaches struct {
	client  *http.Client
	refetch time.Duration
	maxAge  time.Duration

	mu   sync.Mutex
	sets map[string]*jwksCache
}

func newJWKSCaches(client *http.Client, refetch, maxAge time.Duration) *jwksCaches {
	return &jwksCaches{client: client, refetch: refetch, maxAge: maxAge, sets: map[string]*jwksCache{}}
}

func (c *jwksCaches) get(url string) *jwksCache {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sets[url]
	if s == nil {
		s = &jwksCache{parent: c, url: url}
		c.sets[url] = s
	}
	return s
}

// jwksCache is one JWKS: its keys are fetched on first use, again when
// older than maxAge, and again when a token names an unknown key id (a
// rotation), at most once per refetch. Fetches are single-flight. When a
// fetch fails, the keys already held stay in use.
type jwksCache struct {
	parent *jwksCaches
	url    string

	fetchMu sync.Mutex // one fetch at a time

	mu      sync.Mutex
	keys    []jose.JSONWebKey
	fetched time.Time // last successful fetch
	tried   time.Time // last attempt
	lastErr error     // of the last attempt
}

func (s *jwksCache) snapshot() (keys []jose.JSONWebKey, fetched, tried time.Time, lastErr error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys, s.fetched, s.tried, s.lastErr
}

// candidates returns the keys that may have signed a token with this key
// id: those with that id, or every key when the token names none.
func candidates(keys []jose.JSONWebKey, kid string) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, k := range keys {
		if (kid == "" || k.KeyID == kid) && (k.Use == "" || k.Use == "sig") {
			out = append(out, k)
		}
	}
	return out
}

// keysFor returns the candidate keys for kid, fetching the JWKS when it
// is stale or does not hold kid, unless a fetch was tried less than
// refetch ago: then it answers from the keys held.
func (s *jwksCache) keysFor(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	keys, fetched, tried, lastErr := s.snapshot()
	fresh := !fetched.IsZero() && time.Since(fetched) < s.parent.maxAge
	if c := candidates(keys, kid); fresh && len(c) > 0 {
		return c, nil
	}
	if !tried.IsZero() && time.Since(tried) < s.parent.refetch {
		if len(keys) == 0 && lastErr != nil {
			return nil, lastErr
		}
		return candidates(keys, kid), nil
	}
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()
	// Another request may have fetched while this one waited.
	if keys, _, t, lastErr := s.snapshot(); t.After(tried) {
		if len(keys) == 0 && lastErr != nil {
			return nil, lastErr
		}
		return candidates(keys, kid), nil
	}
	newKeys, err := s.fetch(ctx)
	s.mu.Lock()
	s.tried, s.lastErr = time.Now(), err
	if err == nil {
		s.keys, s.fetched = newKeys, s.tried
	}
	keys = s.keys
	s.mu.Unlock()
	if err != nil && len(keys) == 0 {
		return nil, err
	}
	return candidates(keys, kid), nil
}

func (s *jwksCache) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	// The fetch serves every request waiting on it: one client going away
	// must not fail it for the others.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS %s: %w", s.url, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.parent.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS %s: %w", s.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch JWKS %s: %s", s.url, resp.Status)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return nil, fmt.Errorf("fetch JWKS %s: not a JSON Web Key Set: %w", s.url, err)
	}
	return set.Keys, nil
}

// verify checks a bearer token against the route: signed by a key of the
// route's JWKS, unexpired (exp is required), for the route's audience
// and, when set, its issuer.
func (c *jwksCaches) verify(ctx context.Context, rt *route, raw string) *CallError {
	unauthorized := func(format string, args ...any) *CallError {
		return callError(http.StatusUnauthorized, "Unauthorized", format, args...)
	}
	tok, err := jwt.ParseSigned(raw, signatureAlgs)
	if err != nil {
		return unauthorized("the bearer token is not a JWT signed with an asymmetric algorithm (RS*, PS*, ES*, EdDSA): %v", err)
	}
	hdr := tok.Headers[0]
	keys, err := c.get(rt.JWKSURL).keysFor(ctx, hdr.KeyID)
	if err != nil {
		return callError(http.StatusServiceUnavailable, "Unavailable", "cannot check the token: %v", err)
	}
	var claims jwt.Claims
	verified := false
	for _, k := range keys {
		if k.Algorithm != "" && k.Algorithm != hdr.Algorithm {
			continue
		}
		key := k.Key
		if !k.IsPublic() {
			pk := k.Public()
			key = pk.Key
		}
		if err := tok.Claims(key, &claims); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		if hdr.KeyID != "" && len(keys) == 0 {
			return unauthorized("the token's key id %q is not in the JWKS at %s", hdr.KeyID, rt.JWKSURL)
		}
		return unauthorized("the token's signature does not verify with the keys at %s", rt.JWKSURL)
	}
	if claims.Expiry == nil {
		return unauthorized("the token has no exp claim: tokens for this gateway must expire")
	}
	err = claims.ValidateWithLeeway(jwt.Expected{Issuer: rt.Issuer, AnyAudience: jwt.Audience{rt.Audience}, Time: time.Now()}, jwtLeeway)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jwt.ErrInvalidAudience):
		return unauthorized("the token's audience %q does not include %q, the audience of %s", []string(claims.Audience), rt.Audience, rt.pattern)
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return unauthorized("the token's issuer %q is not %q", claims.Issuer, rt.Issuer)
	case errors.Is(err, jwt.ErrExpired):
		return unauthorized("the token expired at %s: get a new one", claims.Expiry.Time().UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrNotValidYet):
		return unauthorized("the token is not valid before %s", claims.NotBefore.Time().UTC().Format(time.RFC3339))
	}
	return unauthorized("the token's claims are not valid: %v", err)
}
