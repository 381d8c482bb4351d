package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/butterfn/butter/plugins/runtime"
	"github.com/butterfn/butter/sdk/go/proto"
	"github.com/hashicorp/go-hclog"
)

// How a failed call is told. The caller gets the error's type, a short
// message and the request id: the message is one line, names no file of
// the server and holds at most MaxErrorMessage bytes. What explains the
// failure to its operator (a Python traceback, a Node or Go stack, the
// output of a worker that could not start) goes to the pool's log, in an
// entry carrying the request id, and never to the caller; but an exec
// function's stderr, which is in the function's log already, line by line,
// is not repeated there (stderrLogged). Dead letters, which operators
// read, keep the whole message and the detail.

// MaxErrorMessage is the longest error message a caller gets, in bytes.
const MaxErrorMessage = 300

// failure is a failed call as the pool tells it.
type failure struct {
	Type   string
	Status int
	// Message is what the caller is told (publicMessage).
	Message string
	// Full is the whole message, and Detail what explains it: both for
	// the log and dead letters only.
	Full, Detail string
	// Violations are the schema violations of a SchemaError: the caller
	// gets them whole (HTTP "details"), and so do dead letters
	// (ce_errordetails).
	Violations []Violation
	canceled   bool
}

// failureOf classifies err, the failure of a call of function fn.
func failureOf(fn string, err error) failure {
	f := failure{Type: "InstanceFailed", Status: http.StatusBadGateway, Full: err.Error()}
	var pe *proto.Error
	var oe *runtime.OutputError
	var se *SchemaError
	switch {
	case errors.As(err, &se):
		f.Type, f.Status, f.Full, f.Detail, f.Violations = se.Type, se.status(), se.Error(), se.detail(), se.Violations
	case errors.As(err, &pe):
		f.Type, f.Status, f.Full, f.Detail = pe.Type, statusOf(pe.Type), pe.Message, pe.Detail
	case errors.Is(err, runtime.ErrInput):
		f.Type, f.Status, f.Full = "BadRequest", http.StatusBadRequest, "reading the request body failed: "+err.Error()
	case errors.As(err, &oe):
		f.Full, f.Detail = oe.Err.Error(), oe.Output
	case errors.Is(err, context.Canceled):
		f.canceled = true // the caller went away: nothing to look at
	}
	f.Message = publicMessage(f.Full)
	if f.Message == "" {
		f.Message = fmt.Sprintf("the call to %s failed (%s)", fn, f.Type)
	}
	return f
}

// startFailure reports whether pe is the failure of a call for which no
// instance of its function could start (fnPool.unavailable): its detail,
// the worker's output, is in the function's log already.
func startFailure(pe *proto.Error) bool { return pe.Type == Unavailable }

// logDetail writes the detail of a failed call of fn to the function's
// log, where a worker's stderr goes, for a local pipeline (butter invoke
// -local): it has no request id to log the failure with, and its user
// reads the functions' logs, where the SDKs printed their tracebacks
// before RESULT carried them. An exec function's detail is its stderr,
// and a start failure's the worker's: both are in that log already.
func (p *Pool) logDetail(fn string, err error) {
	f := p.fns[fn]
	var pe *proto.Error
	if f == nil || f.cfg.Runtime == "exec" || !errors.As(err, &pe) || pe.Detail == "" || startFailure(pe) {
		return
	}
	f.mu.Lock()
	logs := f.fn.Logs
	f.mu.Unlock()
	if logs != nil {
		_, _ = fmt.Fprintln(logs, strings.TrimRight(pe.Detail, "\n"))
	}
}

// statusOf is the HTTP status of a failure of type typ.
func statusOf(typ string) int {
	switch typ {
	case proto.Timeout:
		return http.StatusGatewayTimeout
	case proto.PreconditionFailed:
		return http.StatusUnprocessableEntity
	case Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// deadLetter is the message a dead letter carries: the whole message and
// the detail.
func (f failure) deadLetter() string {
	if f.Detail == "" {
		return f.Full
	}
	return f.Full + "\n" + f.Detail
}

// log logs a failed call of the function whose logger is l, with its
// request id (or a stream event's id) and the detail: at error level for
// what the function's operator should look at, lower for the caller's
// own mistakes and deadlines.
func (f failure) log(l hclog.Logger, idKey, id string) {
	level := hclog.Error
	switch f.Type {
	case proto.Timeout:
		level = hclog.Warn
	case proto.PreconditionFailed, "BadRequest", proto.Skipped:
		level = hclog.Debug
	}
	if f.canceled {
		level = hclog.Debug
	}
	args := []any{idKey, id, "type", f.Type, "error", f.Full}
	if f.Detail != "" {
		args = append(args, "detail", f.Detail)
	}
	l.Log(level, "call failed", args...)
}

// pathLike finds absolute paths of at least two elements (and Windows
// drive paths) that start a word: after a space, a quote, a bracket, =
// or a comma, so that the path of a URL is left alone.
var pathLike = regexp.MustCompile(`(?:^|[\s'"(\[=,])((?:/[^\s'"()\[\],:;/]+){2,}/?|[A-Za-z]:\\[^\s'"]+)`)

// publicMessage is msg as a caller may see it: its first line, with the
// paths of this machine's files cut to their base name (".../x.json"),
// control characters replaced, and at most MaxErrorMessage bytes. A path
// is taken for a file of the server when its first element exists here
// (/srv, /home, /tmp, ...): a route such as /v1/items/42 in a message is
// kept.
func publicMessage(msg string) string {
	msg = strings.TrimSpace(msg)
	if i := strings.IndexAny(msg, "\r\n"); i >= 0 {
		msg = strings.TrimSpace(msg[:i])
	}
	var b strings.Builder
	last := 0
	for _, m := range pathLike.FindAllStringSubmatchIndex(msg, -1) {
		start, end := m[2], m[3]
		p := msg[start:end]
		if !serverPath(p) {
			continue
		}
		b.WriteString(msg[last:start])
		b.WriteString(".../" + path.Base(strings.ReplaceAll(strings.TrimRight(p, `/\`), `\`, "/")))
		last = end
	}
	b.WriteString(msg[last:])
	msg = strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return ' '
		}
		return r
	}, b.String())
	msg = strings.TrimSpace(msg)
	if len(msg) > MaxErrorMessage {
		cut := MaxErrorMessage - len("...")
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "..."
	}
	return msg
}

// serverPath reports whether p, an absolute path, looks like one of this
// machine's files: a Windows path, or one whose first element exists.
func serverPath(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return true
	}
	first, _, _ := strings.Cut(p[1:], "/")
	_, err := os.Stat("/" + first)
	return err == nil
}

// UnspecifiedError is the type of a function error whose type Butter does
// not know: a worker's RESULT may carry any type (a Node error's
// butterType, a Python exception's butter_type), or none. It is retried
// as an Exception is, and answered 500 (docs/events.md, "Error types").
const UnspecifiedError = "UnspecifiedError"

// errorTypes are the error types a call's failure may have; any other
// type a worker sends becomes UnspecifiedError (specified).
var errorTypes = map[string]bool{
	proto.Exception: true, proto.PreconditionFailed: true, proto.PostconditionFailed: true,
	proto.Timeout: true, proto.Skipped: true, Unavailable: true, "InstanceFailed": true, UnspecifiedError: true,
}

// specified returns err, or, for a typed error whose type is none of
// errorTypes, an UnspecifiedError whose message names the type it had,
// so that callers, dead letters and the metrics' type label only ever
// see the types docs/events.md lists.
func specified(err error) error {
	if err == nil {
		// errors.As's target escapes: no allocation for a success.
		return nil
	}
	var pe *proto.Error
	if !errors.As(err, &pe) || errorTypes[pe.Type] {
		return err
	}
	msg := pe.Message
	if pe.Type == "" {
		msg = "(no error type) " + msg
	} else {
		msg = fmt.Sprintf("(error type %q) %s", pe.Type, msg)
	}
	return &proto.Error{Type: UnspecifiedError, Message: msg, Detail: pe.Detail}
}

// stderrLogged reports whether the detail of a failed call of function
// fn is in the function's log already, so that the pool's own entry for
// the failure does not repeat it: an exec function's detail is its
// stderr, which went to the function's log line by line as the command
// wrote it (when the pool has function logs: pool.New's logs). The
// entry keeps the message, which ends with stderr's last line; dead
// letters keep the detail.
func (p *Pool) stderrLogged(fn string) bool {
	f := p.fns[fn]
	if f == nil || f.cfg.Runtime != "exec" {
		return false
	}
	f.mu.Lock()
	logs := f.fn.Logs
	f.mu.Unlock()
	if l, ok := logs.(*fnLogs); ok {
		logs = l.w
	}
	return logs != nil && logs != io.Discard
}
