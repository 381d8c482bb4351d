package scheduler

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/butterfn/butter/acl"
	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/scheduler/fsm"
	nomad "github.com/hashicorp/nomad/api"
	"github.com/hashicorp/raft"
)

// ACLs, shaped like Nomad's. With Config.ACL on, every route is
// registered through the table in routes() with a Rule, and guard checks
// the request's token against it before the handler runs: deny by
// default, because a route cannot be registered without a rule. Tokens
// come in X-Butter-Token or "Authorization: Bearer <secret>"; the Raft
// state keeps only their secrets' SHA-256 (fsm.ACLToken).
//
// Public (no token): GET /v1/status/leader (as Nomad's), GET
// /v1/agent/self (a node's ID and Raft address, which servers read from
// each other to form a cluster before any token can exist) and POST
// /v1/acl/bootstrap (which works once). Nomad's artifact getter sends no
// token, so the leader signs the blob URLs of the jobs it registers
// (signArtifacts): GET /v1/blobs/sha256/{hex} takes either a token with
// read on some project or a valid signature.
//
// A follower that does not know a token yet (it has not replicated it)
// forwards the request to the leader, which decides: a token just created
// is never wrongly refused.

// Access says how a route's request is checked.
type Access string

// The kinds of Rule.
const (
	// AccessPublic: no token.
	AccessPublic Access = "public"
	// AccessToken: any valid token.
	AccessToken Access = "any token"
	// AccessManagement: a management token.
	AccessManagement Access = "management"
	// AccessOperator: the operator capability Rule.Capability.
	AccessOperator Access = "operator"
	// AccessProject: the capability on the project of the path's {name}.
	AccessProject Access = "project"
	// AccessSomeProject: the capability on at least one project; a list
	// answers only the projects the token may read.
	AccessSomeProject Access = "some project"
	// AccessKeyProject: the capability on the project of the API key
	// {hash} (on some project when there is no such key).
	AccessKeyProject Access = "the key's project"
	// AccessBlob: read on some project, or a URL signed by the leader.
	AccessBlob Access = "blob"
)

// Rule is what a route requires of a request's token.
type Rule struct {
	Access     Access
	Capability string
}

func (r Rule) String() string {
	if r.Capability == "" {
		return string(r.Access)
	}
	return string(r.Access) + " " + r.Capability
}

// RouteRule is one route of the API with its rule, as Routes lists them.
type RouteRule struct {
	// Pattern is the http.ServeMux pattern, "METHOD /path/{wildcard}".
	Pattern string
	Rule    Rule
}

// route is one entry of the table handler registers.
type route struct {
	pattern string
	rule    Rule
	h       http.HandlerFunc
}

// Routes lists every route the API serves with its ACL rule: the same
// table the server registers its mux from.
func Routes() []RouteRule {
	var out []RouteRule
	for _, rt := range (&Server{}).routes() {
		out = append(out, RouteRule{Pattern: rt.pattern, Rule: rt.rule})
	}
	return out
}

var (
	public     = Rule{Access: AccessPublic}
	anyToken   = Rule{Access: AccessToken}
	management = Rule{Access: AccessManagement}
	blobRead   = Rule{Access: AccessBlob, Capability: acl.CapRead}
)

func operator(c string) Rule    { return Rule{Access: AccessOperator, Capability: c} }
func project(c string) Rule     { return Rule{Access: AccessProject, Capability: c} }
func someProject(c string) Rule { return Rule{Access: AccessSomeProject, Capability: c} }
func keysProject(c string) Rule { return Rule{Access: AccessKeyProject, Capability: c} }

var (
	// uuidRE is the shape of a token's secret and accessor.
	uuidRE   = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	uuidRule = "a UUID: 36 characters, 8-4-4-4-12 lower-case hex digits"

	accessorPath = pathRule{"accessor", "token accessor ID", uuidRE.MatchString, uuidRule}
	policyPath   = pathRule{"name", "policy name", names.Valid, names.RuleText}
)

// The 403s of guard.
var (
	errTokenRequired = fmt.Errorf("ACL token required: send a token's secret in the %s header or as Authorization: Bearer <secret> (butter -token, or $BUTTER_TOKEN); `butter acl bootstrap` makes the first one", api.HeaderToken)
	errTokenNotFound = errors.New("ACL token not found: no token has this secret (it was deleted, or never existed); ask an operator for a token (butter acl token create)")
)

type aclKey struct{}

// aclFrom is the ACL guard resolved for r; nil when ACLs are off.
func aclFrom(r *http.Request) *acl.ACL {
	a, _ := r.Context().Value(aclKey{}).(*acl.ACL)
	return a
}

type tokenKey struct{}

// tokenFromCtx is the token guard resolved for r.
func tokenFromCtx(r *http.Request) *fsm.ACLToken {
	t, _ := r.Context().Value(tokenKey{}).(*fsm.ACLToken)
	return t
}

// guard checks r against rule, then runs h.
func (s *Server) guard(rule Rule, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.cfg.ACL || rule.Access == AccessPublic {
			h(w, r)
			return
		}
		if rule.Access == AccessBlob && s.validBlobSignature(r.PathValue("hex"), r.URL.Query().Get(blobSigParam)) {
			h(w, r)
			return
		}
		secret, err := secretOf(r)
		if err != nil {
			s.obs.aclDenied.WithLabelValues(deniedNoToken).Inc()
			writeErr(w, http.StatusForbidden, err)
			return
		}
		a, tok, err := s.resolveToken(secret)
		if errors.Is(err, errTokenNotFound) && s.raft.State() != raft.Leader && r.Header.Get("X-Butter-Forwarded") == "" {
			// The leader may know a token this node has not replicated
			// yet: it decides.
			s.forward(w, r)
			return
		}
		if err != nil {
			s.obs.aclDenied.WithLabelValues(deniedUnknown).Inc()
			writeErr(w, http.StatusForbidden, err)
			return
		}
		if err := s.allowed(rule, r, a); err != nil {
			s.obs.aclDenied.WithLabelValues(deniedPermission).Inc()
			writeErr(w, http.StatusForbidden, fmt.Errorf("permission denied: token %q (accessor %s) %w", tok.Name, tok.AccessorID, err))
			return
		}
		ctx := context.WithValue(context.WithValue(r.Context(), aclKey{}, a), tokenKey{}, tok)
		h(w, r.WithContext(ctx))
	}
}

// secretOf reads the token's secret from r.
func secretOf(r *http.Request) (string, error) {
	secret := r.Header.Get(api.HeaderToken)
	if secret == "" {
		if auth := r.Header.Get("Authorization"); auth != "" {
			v, ok := strings.CutPrefix(auth, "Bearer ")
			if !ok {
				return "", errors.New("malformed Authorization header: want \"Bearer <secret>\" with a token's secret")
			}
			secret = strings.TrimSpace(v)
		}
	}
	if secret == "" {
		return "", errTokenRequired
	}
	if !uuidRE.MatchString(secret) {
		return "", fmt.Errorf("malformed ACL token: a token's secret is %s (as `butter acl bootstrap` or `butter acl token create` printed it), not %d characters like %q", uuidRule, len(secret), clip(secret))
	}
	return secret, nil
}

// resolveToken finds the token with secret in this node's state and the
// ACL of its policies.
func (s *Server) resolveToken(secret string) (*acl.ACL, *fsm.ACLToken, error) {
	sum := sha256.Sum256([]byte(secret))
	var tok *fsm.ACLToken
	rules := map[string]string{}
	s.fsm.Read(func(st *fsm.State) {
		if t := st.TokenBySecretHash(hex.EncodeToString(sum[:])); t != nil {
			cp := *t
			tok = &cp
			for _, p := range t.Policies {
				if pol := st.ACLPolicies[p]; pol != nil {
					rules[p] = pol.Rules
				}
			}
		}
	})
	if tok == nil {
		return nil, nil, errTokenNotFound
	}
	if !tok.Expires.IsZero() && !time.Now().Before(tok.Expires) {
		return nil, nil, fmt.Errorf("ACL token expired: token %q (accessor %s) expired at %s; ask for a new one (butter acl token create -ttl)", tok.Name, tok.AccessorID, tok.Expires.UTC().Format(time.RFC3339))
	}
	if tok.Type == fsm.TokenManagement {
		return acl.Management(), tok, nil
	}
	var pols []*acl.Policy
	for name, text := range rules {
		p, err := s.policies.parse(name, text)
		if err != nil {
			// Stored policies were parsed on the way in; one that no longer
			// parses (a newer server wrote it) grants nothing.
			s.log.Warn("an ACL policy does not parse; it grants nothing", "policy", name, "error", err)
			continue
		}
		pols = append(pols, p)
	}
	return acl.New(pols...), tok, nil
}

// allowed checks rule against the ACL a for request r.
func (s *Server) allowed(rule Rule, r *http.Request, a *acl.ACL) error {
	switch rule.Access {
	case AccessToken:
		return nil
	case AccessManagement:
		if a.IsManagement() {
			return nil
		}
		return errors.New("is not a management token, which this request needs")
	case AccessOperator:
		if a.AllowOperator(rule.Capability) {
			return nil
		}
		return fmt.Errorf("lacks the operator capability %q: a policy needs operator { capabilities = [%q] }", rule.Capability, rule.Capability)
	case AccessProject:
		p := r.PathValue("name")
		if a.AllowProject(p, rule.Capability) {
			return nil
		}
		return fmt.Errorf("lacks the capability %q on project %q: a policy needs project %q { capabilities = [%q] }", rule.Capability, p, p, rule.Capability)
	case AccessKeyProject:
		var p string
		s.fsm.Read(func(st *fsm.State) {
			if k := st.APIKeys[r.PathValue("hash")]; k != nil {
				p = k.Project
			}
		})
		if p == "" {
			if a.AllowAnyProject(rule.Capability) {
				return nil
			}
			return fmt.Errorf("lacks the capability %q on any project", rule.Capability)
		}
		if a.AllowProject(p, rule.Capability) {
			return nil
		}
		return fmt.Errorf("lacks the capability %q on project %q, the key's: a policy needs project %q { capabilities = [%q] }", rule.Capability, p, p, rule.Capability)
	case AccessSomeProject, AccessBlob:
		if a.AllowAnyProject(rule.Capability) {
			return nil
		}
		return fmt.Errorf("lacks the capability %q on any project: a policy needs project \"<name>\" { capabilities = [%q] }", rule.Capability, rule.Capability)
	}
	return fmt.Errorf("route rule %q is unknown to this server", rule)
}

// policyCache keeps parsed policies by their text.
type policyCache struct {
	mu sync.Mutex
	m  map[string]*acl.Policy
}

func (c *policyCache) parse(name, text string) (*acl.Policy, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.m[text]; ok {
		return p, nil
	}
	p, err := acl.Parse("policy "+name, []byte(text))
	if err != nil {
		return nil, err
	}
	if c.m == nil || len(c.m) > 1024 {
		c.m = map[string]*acl.Policy{}
	}
	c.m[text] = p
	return p, nil
}

// newUUID is a random (version 4) UUID.
func newUUID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

// newToken makes a token and its secret; the token keeps the secret's hash.
func newToken(name, typ string, policies []string, ttl time.Duration) (*fsm.ACLToken, string, error) {
	accessor, err := newUUID()
	if err != nil {
		return nil, "", err
	}
	secret, err := newUUID()
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256([]byte(secret))
	t := &fsm.ACLToken{AccessorID: accessor, SecretHash: hex.EncodeToString(sum[:]), Name: name, Type: typ, Policies: policies, Created: time.Now().UTC()}
	if ttl > 0 {
		t.Expires = t.Created.Add(ttl)
	}
	return t, secret, nil
}

func apiToken(t *fsm.ACLToken, secret string) api.ACLToken {
	return api.ACLToken{AccessorID: t.AccessorID, SecretID: secret, Name: t.Name, Type: t.Type, Policies: t.Policies, Created: t.Created, Expires: t.Expires}
}

func (s *Server) aclBootstrap(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.ACL {
		writeErr(w, 400, errors.New("ACLs are off on this server (it runs with -acl=false): there is nothing to bootstrap"))
		return
	}
	var done bool
	s.fsm.Read(func(st *fsm.State) { done = st.ACLBootstrapped })
	if done {
		// Refused before any write; the FSM refuses a racing second one.
		writeErr(w, 400, fmt.Errorf("%w: the cluster has its management token; use it (or one made from it) to create others", fsm.ErrACLBootstrapped))
		return
	}
	t, secret, err := newToken("Bootstrap Token", fsm.TokenManagement, nil, 0)
	if err != nil {
		writeErr(w, 500, err)
		return
	}
	if err := s.Apply(fsm.ACLBootstrapType, t); err != nil {
		if errors.Is(err, fsm.ErrACLBootstrapped) || strings.Contains(err.Error(), fsm.ErrACLBootstrapped.Error()) {
			writeErr(w, 400, fmt.Errorf("%w: the cluster has its management token; use it (or one made from it) to create others", fsm.ErrACLBootstrapped))
			return
		}
		writeErr(w, 500, err)
		return
	}
	writeJSON(w, 200, apiToken(t, secret))
}

func (s *Server) aclTokenCreate(w http.ResponseWriter, r *http.Request) {
	var req api.ACLTokenCreateRequest
	if !s.decodeBody(w, r, "token body", &req) {
		return
	}
	if req.Type == "" {
		req.Type = fsm.TokenClient
	}
	if len(req.Name) > 256 {
		writeErr(w, 400, fmt.Errorf("token body: name of %d characters: at most 256", len(req.Name)))
		return
	}
	switch req.Type {
	case fsm.TokenClient:
		if len(req.Policies) == 0 {
			writeErr(w, 400, errors.New("token body: a client token needs at least one policy (butter acl token create -policy NAME); a management token takes none"))
			return
		}
	case fsm.TokenManagement:
		if len(req.Policies) > 0 {
			writeErr(w, 400, errors.New("token body: a management token takes no policies: it may do everything"))
			return
		}
	default:
		writeErr(w, 400, fmt.Errorf("token body: type %q: want %q or %q", clip(req.Type), fsm.TokenClient, fsm.TokenManagement))
		return
	}
	var ttl time.Duration
	if req.TTL != "" {
		var err error
		if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl <= 0 {
			writeErr(w, 400, fmt.Errorf("token body: ttl %q: want a positive duration such as 24h", clip(req.TTL)))
			return
		}
	}
	var missing []string
	s.fsm.Read(func(st *fsm.State) {
		for _, p := range req.Policies {
			if _, ok := st.ACLPolicies[p]; !ok {
				missing = append(missing, p)
			}
		}
	})
	if len(missing) > 0 {
		writeErr(w, 400, fmt.Errorf("token body: no policy %q: apply it first (butter acl policy apply NAME FILE), or see butter acl policy list", missing))
		return
	}
	t, secret, err := newToken(req.Name, req.Type, req.Policies, ttl)
	if err != nil {
		writeErr(w, 500, err)
		return
	}
	if err := s.Apply(fsm.ACLTokenUpsertType, t); err != nil {
		writeErr(w, 500, err)
		return
	}
	writeJSON(w, 200, apiToken(t, secret))
}

func (s *Server) aclTokenList(w http.ResponseWriter, r *http.Request) {
	out := []api.ACLToken{}
	s.fsm.Read(func(st *fsm.State) {
		for _, t := range st.ACLTokens {
			out = append(out, apiToken(t, ""))
		}
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].AccessorID < out[j].AccessorID
	})
	writeJSON(w, 200, out)
}

func (s *Server) aclTokenSelf(w http.ResponseWriter, r *http.Request) {
	t := tokenFromCtx(r)
	if t == nil {
		writeErr(w, 400, errors.New("ACLs are off on this server: there is no token"))
		return
	}
	writeJSON(w, 200, apiToken(t, ""))
}

func (s *Server) aclTokenDelete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("accessor")
	var ok bool
	s.fsm.Read(func(st *fsm.State) { _, ok = st.ACLTokens[id] })
	if !ok {
		writeErr(w, 404, fmt.Errorf("no ACL token with accessor %s; butter acl token list shows them", id))
		return
	}
	if err := s.Apply(fsm.ACLTokenDeleteType, fsm.ACLToken{AccessorID: id}); err != nil {
		writeErr(w, 500, err)
		return
	}
	writeJSON(w, 200, api.ACLTokenDeleteResponse{Deleted: id})
}

func (s *Server) aclPolicyApply(w http.ResponseWriter, r *http.Request) {
	var req api.ACLPolicyApplyRequest
	if !s.decodeBody(w, r, "policy body", &req) {
		return
	}
	name := r.PathValue("name")
	if _, err := acl.Parse("policy "+name, []byte(req.Rules)); err != nil {
		writeErr(w, 400, fmt.Errorf("policy body: rules: %w", err))
		return
	}
	if len(req.Description) > 1024 {
		writeErr(w, 400, fmt.Errorf("policy body: description of %d characters: at most 1024", len(req.Description)))
		return
	}
	now := time.Now().UTC()
	p := fsm.ACLPolicy{Name: name, Description: req.Description, Rules: req.Rules, Created: now, Modified: now}
	if err := s.Apply(fsm.ACLPolicyUpsertType, &p); err != nil {
		writeErr(w, 500, err)
		return
	}
	s.fsm.Read(func(st *fsm.State) {
		if x := st.ACLPolicies[name]; x != nil {
			p = *x
		}
	})
	writeJSON(w, 200, apiPolicy(&p))
}

func apiPolicy(p *fsm.ACLPolicy) api.ACLPolicy {
	return api.ACLPolicy{Name: p.Name, Description: p.Description, Rules: p.Rules, Created: p.Created, Modified: p.Modified}
}

func (s *Server) aclPolicyList(w http.ResponseWriter, r *http.Request) {
	out := []api.ACLPolicy{}
	s.fsm.Read(func(st *fsm.State) {
		for _, p := range st.ACLPolicies {
			out = append(out, apiPolicy(p))
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(w, 200, out)
}

func (s *Server) aclPolicyGet(w http.ResponseWriter, r *http.Request) {
	var out *api.ACLPolicy
	s.fsm.Read(func(st *fsm.State) {
		if p := st.ACLPolicies[r.PathValue("name")]; p != nil {
			cp := apiPolicy(p)
			out = &cp
		}
	})
	if out == nil {
		writeErr(w, 404, fmt.Errorf("no ACL policy %q; butter acl policy list shows them", r.PathValue("name")))
		return
	}
	writeJSON(w, 200, out)
}

func (s *Server) aclPolicyDelete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var ok bool
	s.fsm.Read(func(st *fsm.State) { _, ok = st.ACLPolicies[name] })
	if !ok {
		writeErr(w, 404, fmt.Errorf("no ACL policy %q; butter acl policy list shows them", name))
		return
	}
	if err := s.Apply(fsm.ACLPolicyDeleteType, fsm.ACLPolicy{Name: name}); err != nil {
		writeErr(w, 500, err)
		return
	}
	writeJSON(w, 200, api.ACLPolicyDeleteResponse{Deleted: name})
}

// Signed blob URLs. blobSigParam carries HMAC-SHA256(key, "sha256:<hex>")
// in hex, the key being the Raft state's BlobKey: every server checks
// what the leader signed. The signature depends on the digest alone, so a
// job signed twice is the same job.
const blobSigParam = jobs.BlobSigParam

// blobKey returns the signing key, creating it (on the leader) on first
// need.
func (s *Server) blobKey() ([]byte, error) {
	var k string
	s.fsm.Read(func(st *fsm.State) { k = st.BlobKey })
	if k == "" {
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return nil, err
		}
		if err := s.Apply(fsm.BlobKeySetType, fsm.BlobKey{Key: hex.EncodeToString(raw)}); err != nil {
			s.log.Debug("blob key not set (another may have been)", "error", err)
		}
		s.fsm.Read(func(st *fsm.State) { k = st.BlobKey })
		if k == "" {
			return nil, errors.New("no blob signing key in the Raft state")
		}
	}
	return hex.DecodeString(k)
}

func blobSig(key []byte, hexsum string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("sha256:" + hexsum))
	return hex.EncodeToString(m.Sum(nil))
}

// validBlobSignature checks sig for the blob hexsum.
func (s *Server) validBlobSignature(hexsum, sig string) bool {
	if sig == "" || !hexRE.MatchString(hexsum) {
		return false
	}
	var k string
	s.fsm.Read(func(st *fsm.State) { k = st.BlobKey })
	key, err := hex.DecodeString(k)
	if err != nil || len(key) == 0 {
		return false
	}
	want, err := hex.DecodeString(sig)
	if err != nil {
		return false
	}
	got, _ := hex.DecodeString(blobSig(key, hexsum))
	return hmac.Equal(got, want)
}

// blobSigQuery is the query that signs the blob hexsum, or "" when there
// is no key yet.
func (s *Server) blobSigQuery(hexsum string) string {
	var k string
	s.fsm.Read(func(st *fsm.State) { k = st.BlobKey })
	key, err := hex.DecodeString(k)
	if err != nil || len(key) == 0 {
		return ""
	}
	return blobSigParam + "=" + blobSig(key, hexsum)
}

// signArtifacts adds the signature to every artifact of job that fetches
// a blob from the control plane (jobs.WithBlobURL's URLs). It replaces a
// signature already there, so signing is idempotent.
func (s *Server) signArtifacts(job *nomad.Job) error {
	if !s.cfg.ACL {
		return nil
	}
	var key []byte
	return jobs.SignArtifacts(job, func(hexsum string) (string, error) {
		if key == nil {
			var err error
			if key, err = s.blobKey(); err != nil {
				return "", err
			}
		}
		return blobSig(key, hexsum), nil
	})
}
