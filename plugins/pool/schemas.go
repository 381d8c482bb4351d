package pool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/butterfn/butter/sdk/go/proto"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Schemas enforced (docs/spec-language.md, "Schemas"). Every schema file
// a pool's config names is compiled once, when the pool is created (New),
// with santhosh-tekuri/jsonschema (draft 2020-12 unless the schema says
// otherwise; "format" is an annotation, not checked). Then:
//
//   - a call's input is checked against the function's input_schema and,
//     for a stream-triggered call, the trigger's schema, before the call
//     is run: a failure is a PreconditionFailed, never retried;
//   - a call's output is checked against the function's output_schema
//     once the call has ended (the output is held whole for that), and,
//     when it goes to the function's output stream, against that
//     stream's own schema; an emit is checked against the schema of the
//     stream it goes to before it is produced: a failure is a
//     PostconditionFailed, and what failed is not produced.
//
// Only JSON is checked: an input or output that is not JSON, where a
// schema applies, fails the check as "not JSON". An empty output is no
// output, and is not checked.

// schema is one compiled JSON Schema.
type schema struct {
	// field says where the schema was declared: "input_schema",
	// "output_schema", "stream p.s schema".
	field string
	file  string
	s     *jsonschema.Schema
}

// compileSchema compiles the JSON Schema raw, read from file (absolute:
// Resolve made it so), resolving its $refs to other files against it.
func compileSchema(file string, raw []byte) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("JSON Schema %s is not valid JSON: %w", file, err)
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(jsonschema.FileLoader{})
	if err := c.AddResource(file, doc); err != nil {
		return nil, fmt.Errorf("JSON Schema %s: %w", file, err)
	}
	s, err := c.Compile(file)
	if err != nil {
		return nil, fmt.Errorf("JSON Schema %s does not compile (fix it to follow JSON Schema draft 2020-12, or name its draft in $schema): %v", file, oneLine(err.Error()))
	}
	return s, nil
}

// oneLine joins the lines of a multi-line library message.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// Violation is one way a value fails its schema: where in the value
// (a JSON pointer, "" for the whole value) and what is wrong.
type Violation struct {
	Pointer string `json:"pointer"`
	Message string `json:"message"`
}

// SchemaError is a call's input, output or emit that fails its JSON
// Schema. Its Type is proto.PreconditionFailed for an input and
// proto.PostconditionFailed for an output or emit.
type SchemaError struct {
	Type string
	// What is what failed: "the input", "the output", "the emit to
	// stream p.alerts".
	What string
	// Field is where the schema is declared ("input_schema", ...) and
	// File its file.
	Field, File string
	Violations  []Violation
}

func (e *SchemaError) Error() string {
	msg := fmt.Sprintf("%s does not match %s", e.What, e.Field)
	if len(e.Violations) > 0 {
		v := e.Violations[0]
		msg += fmt.Sprintf(": at %q: %s", v.Pointer, v.Message)
		if n := len(e.Violations) - 1; n > 0 {
			msg += fmt.Sprintf(" (and %d more)", n)
		}
	}
	return msg
}

// status is the HTTP status of the failure: 400 for an input the caller
// must fix, 502 for an output the function must fix.
func (e *SchemaError) status() int {
	if e.Type == proto.PreconditionFailed {
		return http.StatusBadRequest
	}
	return http.StatusBadGateway
}

// detail lists every violation, one a line, with the schema's file: for
// the log and dead letters.
func (e *SchemaError) detail() string {
	var b strings.Builder
	fmt.Fprintf(&b, "schema: %s (%s)", e.File, e.Field)
	for _, v := range e.Violations {
		fmt.Fprintf(&b, "\n%q: %s", v.Pointer, v.Message)
	}
	return b.String()
}

// printer formats the library's messages.
var printer = message.NewPrinter(language.English)

// check checks the JSON value b against s; typ is the failure's type and
// what names the value.
func (s *schema) check(typ, what string, b []byte) *SchemaError {
	e := &SchemaError{Type: typ, What: what, Field: s.field, File: s.file}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		e.Violations = []Violation{{Pointer: "", Message: "not JSON: " + err.Error()}}
		return e
	}
	err = s.s.Validate(v)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		e.Violations = []Violation{{Pointer: "", Message: oneLine(err.Error())}}
		return e
	}
	leaves(ve, &e.Violations)
	if len(e.Violations) == 0 {
		e.Violations = []Violation{{Pointer: "", Message: oneLine(ve.Error())}}
	}
	return e
}

// maxViolations bounds the violations told of one value.
const maxViolations = 20

// leaves collects the violations that explain ve: the errors without
// causes, each at its instance location.
func leaves(ve *jsonschema.ValidationError, out *[]Violation) {
	if len(*out) >= maxViolations {
		return
	}
	if len(ve.Causes) == 0 {
		if _, ok := ve.ErrorKind.(*kind.Schema); ok {
			return
		}
		*out = append(*out, Violation{Pointer: pointer(ve.InstanceLocation), Message: ve.ErrorKind.LocalizedString(printer)})
		return
	}
	for _, c := range ve.Causes {
		leaves(c, out)
	}
}

// pointer is the JSON pointer (RFC 6901) of a path of tokens.
func pointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(t))
	}
	return b.String()
}

// checkInput checks call c's input against function f's input_schema and,
// for a stream-triggered call, its trigger's schema, reading the input
// whole (and giving it back to c as a reader) when one applies.
func (p *Pool) checkInput(f *fnPool, c *Call) error {
	if !p.checksInput(f, c.stream) {
		return nil
	}
	ss := []*schema{p.schemas.in[f.cfg.Name]}
	if c.stream != "" {
		ss = append(ss, p.schemas.stream[f.cfg.Name][c.stream])
	}
	var b []byte
	read := false
	for _, s := range ss {
		if s == nil {
			continue
		}
		if !read {
			read = true
			if c.Input != nil {
				var err error
				if b, err = io.ReadAll(c.Input); err != nil {
					return &proto.Error{Type: "BadRequest", Message: "reading the input failed: " + err.Error()}
				}
			}
			c.Input = bytes.NewReader(b)
		}
		if e := s.check(proto.PreconditionFailed, "the input", b); e != nil {
			return e
		}
	}
	return nil
}

// checksInput reports whether a schema applies to the input of a call of
// f, from stream when that is not "".
func (p *Pool) checksInput(f *fnPool, stream string) bool {
	return p.schemas.in[f.cfg.Name] != nil || stream != "" && p.schemas.stream[f.cfg.Name][stream] != nil
}

// checkOutput checks out, the output of a call of f, against f's
// output_schema (when withSchema: a call through Invoke checked it
// already) and, when toStream, the schema of f's output stream. An empty
// output is none, and is not checked.
func (p *Pool) checkOutput(f *fnPool, out []byte, withSchema, toStream bool) *SchemaError {
	outSchema, topicSchema := p.schemas.out[f.cfg.Name], p.schemas.topic[f.cfg.Output]
	if !isEnvelope(out) && (withSchema && outSchema == nil || !withSchema) && (toStream && (f.cfg.Output == "" || topicSchema == nil) || !toStream) {
		// One output (or none) and no schema: nothing to check, and
		// nothing to allocate on every stream event's path.
		return nil
	}
	// Several outputs (records.go) are checked each.
	outs, se := outputs(out)
	if se != nil {
		return se
	}
	what := func(o output) string { return "the output" }
	if isEnvelope(out) {
		what = func(o output) string { return fmt.Sprintf("output %d", o.index) }
	}
	for _, o := range outs {
		if s := p.schemas.out[f.cfg.Name]; withSchema && s != nil {
			if e := s.check(proto.PostconditionFailed, what(o), o.value); e != nil {
				return e
			}
		}
		if s := p.schemas.topic[f.cfg.Output]; toStream && f.cfg.Output != "" && s != nil {
			if e := s.check(proto.PostconditionFailed, what(o)+" to stream "+f.cfg.Output, o.value); e != nil {
				return e
			}
		}
	}
	return nil
}

// checkEmit checks an emit to topic against the topic's schema.
func (p *Pool) checkEmit(topic string, value []byte) *SchemaError {
	if s := p.schemas.topic[topic]; s != nil {
		return s.check(proto.PostconditionFailed, "the emit to stream "+topic, value)
	}
	return nil
}

// emitFailure keeps the first emit of a call that failed its stream's
// schema: the call then fails with it, whatever the function did with
// the emit's error.
type emitFailure struct {
	mu  sync.Mutex
	err *SchemaError
	// emitted numbers the call's emits that come without a number
	// (emitIndex, records.go).
	emitted atomic.Int64
}

func (e *emitFailure) set(se *SchemaError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err == nil {
		e.err = se
	}
}

// or returns the emit failure, if any, in place of err.
func (e *emitFailure) or(err error) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err != nil {
		return e.err
	}
	return err
}

// violationsJSON is the violations as the ce_errordetails header of a
// dead letter carries them.
func violationsJSON(v []Violation) string {
	b, _ := json.Marshal(v)
	return string(b)
}
