package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/names"
)

// The API checks what it is sent before it reads or writes anything: every
// path segment that names something against that thing's rule (a project
// against the spec language's name rule, names.Rule, since project names
// become Nomad jobs, Kafka topics and Vault paths), and every body against
// a size limit and its type, field by field. A request that fails answers
// 400 (413 for a body over its limit) with an api.ErrorResponse that
// names the field and the rule, and changes nothing.

// Default request body limits (Config.MaxRequestBytes, Config.MaxBlobBytes).
const (
	DefaultMaxRequestBytes = 4 << 20
	DefaultMaxBlobBytes    = 256 << 20
)

// The settings that raise the limits, as a 413 names them.
const (
	maxRequestSetting = "butter server -max-request-bytes (scheduler.Config.MaxRequestBytes)"
	maxBlobSetting    = "butter server -max-blob-bytes (scheduler.Config.MaxBlobBytes)"
)

// A body over its limit is read on (and thrown away) up to drainMax bytes,
// for at most drainTime, after its 413 is sent, so that a client still
// sending it can read the answer: a server that closes a connection with
// unread data in it resets the connection, and the client sees the reset
// instead of the 413. A client that sends more than that gets the reset.
const (
	drainMax  = 64 << 20
	drainTime = 10 * time.Second
)

// The rules of the identifiers that are not names.
var (
	// revisionRE: a revision ID is its content hash (12 hex digits, as
	// butter deploy computes it), or any word of the same alphabet.
	revisionRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	revisionRule = "lower-case letters, digits, '-' and '_', starting with a letter or digit, at most 64 characters (a revision's content hash)"
	hexRule      = "a SHA-256 in hex: 64 digits 0-9a-f"
	digestRule   = "sha256:<64 hex digits>"
	peerRule     = "a server's API address, host:port"
	// projectTimerRE: a revision's timer is "<project>.<function>.<n>"
	// as butter deploy names it (jobs.Timers), or another word or two
	// after the project.
	projectTimerRE   = regexp.MustCompile(`^([a-z][a-z0-9_-]{0,62})(\.[a-z0-9][a-z0-9_-]{0,62}){1,2}$`)
	projectTimerRule = "<project>.<function>.<n>: the revision's project, then one or two dot-separated words of lower-case letters, digits, '-' and '_'"
	// topicRE is Kafka's own rule for topic names.
	topicRE   = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
	topicRule = "a Kafka topic: letters, digits, '.', '_' and '-', at most 249 characters"
)

// pathRule is the rule of one wildcard of a route's pattern.
type pathRule struct {
	wildcard string // as the pattern names it: "name"
	field    string // as errors name it: "project name"
	valid    func(string) bool
	rule     string
}

var (
	projectPath  = pathRule{"name", "project name", names.Valid, names.RuleText}
	revisionPath = pathRule{"id", "revision ID", revisionRE.MatchString, revisionRule}
	timerPath    = pathRule{"id", "timer ID", names.Valid, names.RuleText}
	keyPath      = pathRule{"hash", "key hash", hexRE.MatchString, hexRule}
	blobPath     = pathRule{"hex", "blob digest", hexRE.MatchString, hexRule}
	peerPath     = pathRule{"id", "server ID", validPeer, peerRule}
)

func validPeer(s string) bool {
	host, port, err := net.SplitHostPort(s)
	return err == nil && host != "" && port != "" && len(s) <= 261
}

// checkPath answers 400 when a wildcard of the request's path breaks its
// rule, and runs h otherwise. It runs before anything else, forwarding to
// the leader included.
func checkPath(h http.HandlerFunc, rules ...pathRule) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for _, pr := range rules {
			if v := r.PathValue(pr.wildcard); !pr.valid(v) {
				writeErr(w, 400, ruleError(pr.field, v, pr.rule))
				return
			}
		}
		h(w, r)
	}
}

// ruleError says that field's value v breaks rule.
func ruleError(field, v, rule string) error {
	if v == "" {
		return fmt.Errorf("%s is empty: want %s", field, rule)
	}
	return fmt.Errorf("%s %q is not valid: want %s", field, clip(v), rule)
}

// clip shortens a value for an error message.
func clip(s string) string {
	const n = 80
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:n], len(s))
}

// bodyLimit is a request's body limit; limitBody puts it in the request's
// context, so that tooLarge can answer and the wrapper can drain.
type bodyLimit struct {
	max      int64
	setting  string
	orig     io.ReadCloser
	unsent   bool // refused before 100 Continue: the client sends no body
	exceeded bool
}

type bodyLimitKey struct{}

// limitBody bounds the request's body to max bytes (the setting raises
// it): a Content-Length over it is refused at once, and a longer body
// fails its reads with an *http.MaxBytesError, which the handler passes
// to bodyError. It runs before forwarding to the leader, so followers
// apply the limit too.
func (s *Server) limitBody(max int64, setting string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		lim := &bodyLimit{max: max, setting: setting, orig: r.Body}
		r = r.WithContext(context.WithValue(r.Context(), bodyLimitKey{}, lim))
		if r.ContentLength > max {
			// A client that waits for 100 Continue before it sends the
			// body (as the api package's blob upload does) sends none.
			lim.unsent = strings.EqualFold(r.Header.Get("Expect"), "100-continue")
			s.tooLarge(w, r, lim)
		} else {
			r.Body = http.MaxBytesReader(w, r.Body, max)
			h(w, r)
		}
		if lim.exceeded && !lim.unsent {
			// The client is still sending: let it finish (within bounds),
			// so that it reads the 413 instead of a reset.
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(drainTime))
			_, _ = io.CopyN(io.Discard, lim.orig, drainMax)
		}
	}
}

// tooLarge answers 413 for a body over its limit.
func (s *Server) tooLarge(w http.ResponseWriter, r *http.Request, lim *bodyLimit) {
	lim.exceeded = true
	w.Header().Set("Connection", "close")
	writeErr(w, http.StatusRequestEntityTooLarge, fmt.Errorf("%s %s: the body is larger than this server's limit of %s; %s raises it",
		r.Method, r.URL.Path, byteSize(lim.max), lim.setting))
	_ = http.NewResponseController(w).Flush()
}

// bodyError answers a body that could not be read or decoded: 413 when
// it is over its limit, 400 otherwise, naming what: "revision body".
func (s *Server) bodyError(w http.ResponseWriter, r *http.Request, what string, err error) {
	var mbe *http.MaxBytesError
	if lim, ok := r.Context().Value(bodyLimitKey{}).(*bodyLimit); ok && errors.As(err, &mbe) {
		s.tooLarge(w, r, lim)
		return
	}
	writeErr(w, 400, fmt.Errorf("%s: %w", what, jsonError(err)))
}

// jsonError says what is wrong with a JSON body in words.
func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return errors.New("empty: want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("malformed JSON: it ends early")
	case errors.As(err, &syn):
		return fmt.Errorf("malformed JSON at byte %d: %v", syn.Offset, err)
	case errors.As(err, &typ):
		return fmt.Errorf("field %q: want a JSON %s, not %s", typ.Field, typ.Type, typ.Value)
	}
	return err
}

// decodeBody decodes r's JSON body into v: one JSON value, with no field
// that v lacks (the api package's types are the whole contract) and
// nothing after it. It answers the request and says no when it cannot.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, what string, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		s.bodyError(w, r, what, err)
		return false
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err == nil {
			err = errors.New("more than one JSON value")
		}
		s.bodyError(w, r, what, err)
		return false
	}
	return true
}

// checkRevision checks a revision body's identifiers: its ID, its timers'
// IDs and topics, and its bundles' digests.
func checkRevision(project string, req *api.RevisionCreateRequest) error {
	if !revisionRE.MatchString(req.ID) {
		return ruleError("revision body: id", req.ID, revisionRule)
	}
	for i, t := range req.Timers {
		if t == nil {
			return fmt.Errorf("revision body: timers[%d] is null", i)
		}
		m := projectTimerRE.FindStringSubmatch(t.ID)
		if m == nil || m[1] != project {
			return ruleError(fmt.Sprintf("revision body: timers[%d].id", i), t.ID, projectTimerRule)
		}
		if err := checkTimer(fmt.Sprintf("revision body: timers[%d]", i), t); err != nil {
			return err
		}
	}
	for path, d := range req.Bundles {
		if !strings.HasPrefix(d, "sha256:") || !hexRE.MatchString(strings.TrimPrefix(d, "sha256:")) {
			return ruleError(fmt.Sprintf("revision body: bundles[%q]", clip(path)), d, digestRule)
		}
	}
	return nil
}

// checkTimer checks a timer's schedule and topic.
func checkTimer(what string, t *api.Timer) error {
	if _, err := spec.ParseCron(t.Schedule, t.Timezone); err != nil {
		return fmt.Errorf("%s: schedule %q: %w", what, clip(t.Schedule), err)
	}
	if t.Topic == "" {
		return fmt.Errorf("%s: a topic is required", what)
	}
	if !topicRE.MatchString(t.Topic) {
		return ruleError(what+": topic", t.Topic, topicRule)
	}
	return nil
}

// byteSize says n bytes in words: "4 MiB (4194304 bytes)".
func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB (%d bytes)", n>>20, n)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB (%d bytes)", n>>10, n)
	}
	return fmt.Sprintf("%d bytes", n)
}
