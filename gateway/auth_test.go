package gateway_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/butterfn/butter/gateway"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func TestAPIKeyAuth(t *testing.T) {
	b := startPool(t, standardFns()...)
	keys := gateway.NewMemKeys()
	keys.Put(gateway.HashKey("k-all"), "test")
	keys.Put(gateway.HashKey("k-secret-only"), "test", "POST /secret")
	keys.Put(gateway.HashKey("k-other"), "other")
	_, url := startGateway(t, resolverFor(b.addr), []gateway.Route{
		{Method: "POST", Path: "/cat", Project: "test", Function: "cat", Auth: "api_key"},
		{Method: "POST", Path: "/secret", Project: "test", Function: "cat", Auth: "api_key"},
	}, gateway.WithKeys(keys))
	for _, c := range []struct {
		name, path string
		hdr        map[string]string
		code       int
		says       string
	}{
		{"no key", "/cat", nil, 401, "X-API-Key"},
		{"unknown key", "/cat", map[string]string{"X-API-Key": "k-wrong"}, 401, "not valid"},
		{"unknown bearer key", "/cat", map[string]string{"Authorization": "Bearer k-wrong"}, 401, "not valid"},
		{"key of another project", "/cat", map[string]string{"X-API-Key": "k-other"}, 403, "project other"},
		{"key for another route", "/cat", map[string]string{"X-API-Key": "k-secret-only"}, 403, "only POST /secret"},
		{"key in X-API-Key", "/cat", map[string]string{"X-API-Key": "k-all"}, 200, ""},
		{"key as a bearer token", "/cat", map[string]string{"Authorization": "Bearer k-all"}, 200, ""},
		{"route-restricted key on its route", "/secret", map[string]string{"X-API-Key": "k-secret-only"}, 200, ""},
	} {
		a := post(t, url+c.path, "hi", c.hdr)
		if a.code != c.code || !strings.Contains(a.err.Error, c.says) {
			t.Errorf("%s: %d %+v, want %d saying %q", c.name, a.code, a.err, c.code, c.says)
		}
		if c.code == 401 && (a.header.Get("WWW-Authenticate") == "" || a.err.RequestID == "" || a.err.Type != "Unauthorized") {
			t.Errorf("%s: a 401 needs WWW-Authenticate, a type and a request id: %v %+v", c.name, a.header, a.err)
		}
		if c.code == 200 && a.body != "hi" {
			t.Errorf("%s: body %q", c.name, a.body)
		}
	}
	// A deleted key stops working at once.
	keys.Delete(gateway.HashKey("k-all"))
	if a := post(t, url+"/cat", "hi", map[string]string{"X-API-Key": "k-all"}); a.code != 401 {
		t.Errorf("deleted key: %d, want 401", a.code)
	}
}

// jwks is an issuer's JWKS endpoint on 127.0.0.1, with keys the test
// rotates and a count of fetches.
type jwks struct {
	mu      sync.Mutex
	keys    map[string]*ecdsa.PrivateKey
	fetches atomic.Int64
	url     string
}

func newJWKS(t *testing.T) *jwks {
	j := &jwks{keys: map[string]*ecdsa.PrivateKey{}}
	addr := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.fetches.Add(1)
		j.mu.Lock()
		var set jose.JSONWebKeySet
		for kid, k := range j.keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: string(jose.ES256), Use: "sig"})
		}
		j.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	}))
	j.url = "http://" + addr + "/.well-known/jwks.json"
	return j
}

func (j *jwks) add(t *testing.T, kid string) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	j.mu.Lock()
	j.keys[kid] = k
	j.mu.Unlock()
	return k
}

func token(t *testing.T, key any, alg jose.SignatureAlgorithm, kid string, c jwt.Claims) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jwt.Signed(sig).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestJWTAuth(t *testing.T) {
	b := startPool(t, standardFns()...)
	iss := newJWKS(t)
	k1 := iss.add(t, "k1")
	route := gateway.Route{Method: "POST", Path: "/cat", Project: "test", Function: "cat", Auth: "jwt",
		JWKSURL: iss.url, Audience: "butter-api", Issuer: "https://issuer.example"}
	_, url := startGateway(t, resolverFor(b.addr), []gateway.Route{route}, gateway.WithJWKSRefetch(0))

	exp := jwt.NewNumericDate(time.Now().Add(time.Hour))
	good := jwt.Claims{Audience: jwt.Audience{"butter-api"}, Issuer: "https://issuer.example", Expiry: exp, Subject: "alice"}
	with := func(f func(c *jwt.Claims)) jwt.Claims {
		c := good
		f(&c)
		return c
	}
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, c := range []struct {
		name  string
		token string
		code  int
		says  string
	}{
		{"no token", "", 401, "needs a JWT"},
		{"not a JWT", "abc.def", 401, "not a JWT"},
		{"wrong audience", token(t, k1, jose.ES256, "k1", with(func(c *jwt.Claims) { c.Audience = jwt.Audience{"other-api"} })), 401, "audience"},
		{"wrong issuer", token(t, k1, jose.ES256, "k1", with(func(c *jwt.Claims) { c.Issuer = "https://evil.example" })), 401, "issuer"},
		{"expired", token(t, k1, jose.ES256, "k1", with(func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(time.Now().Add(-time.Hour)) })), 401, "expired"},
		{"no expiry", token(t, k1, jose.ES256, "k1", with(func(c *jwt.Claims) { c.Expiry = nil })), 401, "no exp"},
		{"signed by another key", token(t, stranger, jose.ES256, "k1", good), 401, "signature"},
		{"symmetric algorithm", token(t, []byte("0123456789abcdef0123456789abcdef"), jose.HS256, "k1", good), 401, "asymmetric"},
		{"right audience", token(t, k1, jose.ES256, "k1", good), 200, ""},
		{"no kid, one key fits", token(t, k1, jose.ES256, "", good), 200, ""},
	} {
		hdr := map[string]string{}
		if c.token != "" {
			hdr["Authorization"] = "Bearer " + c.token
		}
		a := post(t, url+"/cat", "hi", hdr)
		if a.code != c.code || !strings.Contains(a.err.Error, c.says) {
			t.Errorf("%s: %d %+v, want %d saying %q", c.name, a.code, a.err, c.code, c.says)
		}
	}
	// A rotated-in key is fetched when a token names it.
	before := iss.fetches.Load()
	k2 := iss.add(t, "k2")
	if a := post(t, url+"/cat", "hi", map[string]string{"Authorization": "Bearer " + token(t, k2, jose.ES256, "k2", good)}); a.code != 200 {
		t.Errorf("token of a new key: %d %+v", a.code, a.err)
	}
	if n := iss.fetches.Load() - before; n != 1 {
		t.Errorf("the JWKS was fetched %d times for the new key, want 1", n)
	}
}

// TestJWKSRefetchIsBounded: tokens naming unknown key ids do not turn
// into a JWKS fetch each.
func TestJWKSRefetchIsBounded(t *testing.T) {
	b := startPool(t, standardFns()...)
	iss := newJWKS(t)
	k1 := iss.add(t, "k1")
	_, url := startGateway(t, resolverFor(b.addr), []gateway.Route{{Method: "POST", Path: "/cat", Project: "test", Function: "cat",
		Auth: "jwt", JWKSURL: iss.url, Audience: "a"}}, gateway.WithJWKSRefetch(time.Hour))
	c := jwt.Claims{Audience: jwt.Audience{"a"}, Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}
	if a := post(t, url+"/cat", "hi", map[string]string{"Authorization": "Bearer " + token(t, k1, jose.ES256, "k1", c)}); a.code != 200 {
		t.Fatalf("good token: %d %+v", a.code, a.err)
	}
	forged := token(t, k1, jose.ES256, "nope", c)
	for range 5 {
		if a := post(t, url+"/cat", "hi", map[string]string{"Authorization": "Bearer " + forged}); a.code != 401 || !strings.Contains(a.err.Error, "not in the JWKS") {
			t.Errorf("unknown kid: %d %+v", a.code, a.err)
		}
	}
	if n := iss.fetches.Load(); n != 1 {
		t.Errorf("the JWKS was fetched %d times, want 1: unknown kids refetch at most once per WithJWKSRefetch", n)
	}
}
