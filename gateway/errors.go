package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/butterfn/butter/sdk/go/proto"
)

// CallError is a failed call: the HTTP status the gateway answers with,
// the error's type (a proto error type such as Timeout or Exception, or
// one of the gateway's: Unauthorized, PayloadTooLarge, ...) and what to
// fix. Invoke returns it; the handler writes it as
//
//	{"error": "<message>", "type": "<type>", "request_id": "<id>"}
type CallError struct {
	Status  int
	Type    string
	Message string
	// Step is the pipeline step that failed (0-based), or -1.
	Step int
	// Details are a pool's error details, passed on as they came: the
	// schema violations of a PreconditionFailed or PostconditionFailed,
	// each {"pointer", "message"} (plugins/pool, schemas.go).
	Details json.RawMessage
	// RetryAfter, when above 0, is sent as the Retry-After header, in
	// seconds.
	RetryAfter int
}

func (e *CallError) Error() string { return e.Type + ": " + e.Message }

func callError(status int, typ, format string, args ...any) *CallError {
	return &CallError{Status: status, Type: typ, Message: fmt.Sprintf(format, args...), Step: -1}
}

// statusOf maps a proto error type to the status the pool answers it
// with (plugins/pool/http.go), so that queued calls fail like direct ones.
func statusOf(typ string) int {
	switch typ {
	case proto.Timeout:
		return http.StatusGatewayTimeout
	case proto.PreconditionFailed:
		return http.StatusUnprocessableEntity
	case "InstanceFailed":
		return http.StatusBadGateway
	}
	return http.StatusInternalServerError
}

// typeOf is the inverse of statusOf for statuses that carry no type.
func typeOf(status int) string {
	switch status {
	case http.StatusGatewayTimeout:
		return proto.Timeout
	case http.StatusUnprocessableEntity:
		return proto.PreconditionFailed
	case http.StatusBadGateway:
		return "InstanceFailed"
	case http.StatusRequestEntityTooLarge:
		return "PayloadTooLarge"
	}
	return http.StatusText(status)
}

// dialError marks a failure to connect to an endpoint: the request was
// not sent, so another endpoint may be tried.
type dialError struct {
	addr string
	err  error
}

func (e *dialError) Error() string { return "connect to " + e.addr + ": " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

func isDialError(err error) bool {
	var de *dialError
	if errors.As(err, &de) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// maxPoolMessage bounds the message of a pool's error that the gateway
// passes on, in bytes.
const maxPoolMessage = 512

// poolMessage is a pool's error message as the gateway passes it on: its
// first line, at most maxPoolMessage bytes. A Butter pool already tells
// callers one short line and keeps the rest (a traceback, a worker's
// output) for its log (plugins/pool, errors.go); this keeps an older pool,
// or whatever else answers on a pool's address, from reaching clients
// with more.
func poolMessage(msg string) string {
	msg = strings.TrimSpace(msg)
	if i := strings.IndexAny(msg, "\r\n"); i >= 0 {
		msg = strings.TrimSpace(msg[:i])
	}
	if len(msg) > maxPoolMessage {
		cut := maxPoolMessage
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "..."
	}
	return msg
}

// errorBody is the gateway's error document.
type errorBody struct {
	Error     string `json:"error"`
	Type      string `json:"type"`
	RequestID string `json:"request_id"`
	// Details are a pool's error details (CallError.Details).
	Details json.RawMessage `json:"details,omitempty"`
}

func writeError(w http.ResponseWriter, code int, typ, id, msg string) {
	writeJSON(w, code, errorBody{Error: msg, Type: typ, RequestID: id})
}

// writeCallError writes e, with msg as its message and its details.
func writeCallError(w http.ResponseWriter, e *CallError, id, msg string) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	writeJSON(w, e.Status, errorBody{Error: msg, Type: e.Type, RequestID: id, Details: e.Details})
}
