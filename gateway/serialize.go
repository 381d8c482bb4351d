package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"mime"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/fxamacker/cbor/v2"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/butterfn/butter/names"
)

// Serializers. A route whose function declares JSON input (an
// input_schema: Route.JSONInput) takes its request body as JSON, CBOR
// (RFC 8949, fxamacker/cbor) or MessagePack (vmihailenco/msgpack), by
// the request's Content-Type; one whose function declares JSON output (an
// output_schema: Route.JSONOutput) answers in the one of the three the
// client's Accept prefers. The function always sees JSON: a CBOR or
// MessagePack body is converted before any function is called (the
// request then says Content-Type: application/json), the function is
// asked for JSON (Accept: application/json), and its JSON output is
// converted after. JSON passes through untouched and streams; a
// converted body or output is read whole, up to WithConvertMaxBody.
//
// Other Content-Types answer 415 UnsupportedMediaType, an Accept that
// admits none of the three 406 NotAcceptable, both before any function
// runs. A request without a Content-Type is taken as JSON (and says so
// to the function), and one without an Accept gets JSON, as before
// serializers.
//
// The conversion is the data model the three share: maps with string
// keys, arrays, strings, numbers, booleans and null. Integers keep their
// exact value (up to 64 bits, and CBOR's bignums into JSON); byte strings
// become base64 strings in JSON, and timestamps RFC 3339 strings, as Go's
// encoding/json writes them; a CBOR or MessagePack map whose keys are not
// strings, NaN and the infinities have no JSON form and answer 400.

// codec is a serialization the gateway converts JSON to and from.
type codec struct {
	name        string // as errors name it
	contentType string // what the gateway answers with
	decode      func([]byte) (any, error)
	encode      func(any) ([]byte, error)
}

var (
	cborCodec = &codec{name: "CBOR", contentType: "application/cbor", decode: decodeCBOR, encode: encodeCBOR}
	msgpCodec = &codec{name: "MessagePack", contentType: "application/msgpack", decode: decodeMsgpack, encode: encodeMsgpack}
)

// The media types of the serializers. MessagePack has no registered
// type: application/msgpack is the IANA-proposed one, and the others
// are in use.
var (
	msgpackTypes = []string{"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"}
	accepted     = "application/json, application/cbor or application/msgpack"
)

// requestCodec reads a request's Content-Type: nil for JSON (or none),
// the codec of CBOR or MessagePack, or the 415 for anything else.
func requestCodec(ct string) (*codec, *CallError) {
	if ct == "" {
		return nil, nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	switch {
	case err != nil:
		return nil, callError(http.StatusUnsupportedMediaType, "UnsupportedMediaType", "Content-Type %q cannot be read (%v): this route takes %s", ct, err, accepted)
	case isJSONType(mt):
		return nil, nil
	case mt == "application/cbor":
		return cborCodec, nil
	case contains(msgpackTypes, mt):
		return msgpCodec, nil
	}
	hint := ""
	if mt == "application/x-www-form-urlencoded" {
		hint = " (curl -d sends this type: add -H 'Content-Type: application/json')"
	}
	return nil, callError(http.StatusUnsupportedMediaType, "UnsupportedMediaType", "Content-Type %s: this route's function takes JSON (it declares an input_schema), so the body is %s%s", mt, accepted, hint)
}

func isJSONType(mt string) bool {
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// responseCodec reads a request's Accept: nil for JSON, the codec the
// client prefers, or the 406 when it accepts none of the three. Of the
// media ranges that admit a serialization, the most specific one gives
// its quality (RFC 9110 12.5.1); the highest quality wins, then a type
// named over a wildcard, then the order written, then JSON.
func responseCodec(accept []string) (*codec, *CallError) {
	if len(accept) == 0 {
		return nil, nil
	}
	type rng struct {
		typ, sub string
		q        float64
		pos      int
	}
	var ranges []rng
	for _, line := range accept {
		for _, part := range strings.Split(line, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			mt, params, err := mime.ParseMediaType(part)
			if err != nil {
				continue
			}
			if mt == "*" {
				mt = "*/*" // "*" alone, which some clients send
			}
			q := 1.0
			if v, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f <= 1 {
					q = f
				}
			}
			typ, sub, _ := strings.Cut(mt, "/")
			ranges = append(ranges, rng{typ, sub, q, len(ranges)})
		}
	}
	type choice struct {
		c        *codec
		q        float64
		specific int // 2: named, 1: type/*, 0: */*
		pos      int
		rank     int // JSON first, on a tie
	}
	var choices []choice
	for rank, cand := range []struct {
		c     *codec
		types []string
	}{{nil, []string{"application/json"}}, {cborCodec, []string{"application/cbor"}}, {msgpCodec, msgpackTypes}} {
		best := choice{c: cand.c, specific: -1, rank: rank}
		for _, r := range ranges {
			s := -1
			for _, t := range cand.types {
				typ, sub, _ := strings.Cut(t, "/")
				switch {
				case r.typ == typ && r.sub == sub:
					s = max(s, 2)
				case r.typ == typ && r.sub == "*":
					s = max(s, 1)
				case r.typ == "*" && r.sub == "*":
					s = max(s, 0)
				}
			}
			if s > best.specific || s == best.specific && s >= 0 && r.pos < best.pos {
				best.specific, best.q, best.pos = s, r.q, r.pos
			}
		}
		if best.specific >= 0 && best.q > 0 {
			choices = append(choices, best)
		}
	}
	if len(choices) == 0 {
		return nil, callError(http.StatusNotAcceptable, "NotAcceptable", "Accept %q admits none of what this route answers: %s", strings.Join(accept, ", "), accepted)
	}
	sort.SliceStable(choices, func(i, j int) bool {
		a, b := choices[i], choices[j]
		switch {
		case a.q != b.q:
			return a.q > b.q
		case a.specific != b.specific:
			return a.specific > b.specific
		case a.pos != b.pos:
			return a.pos < b.pos
		}
		return a.rank < b.rank
	})
	return choices[0].c, nil
}

// toJSON converts a body in codec c to JSON.
func toJSON(c *codec, body []byte) ([]byte, *CallError) {
	v, err := c.decode(body)
	if err != nil {
		return nil, callError(http.StatusBadRequest, "BadRequest", "the request body is not valid %s: %v", c.name, err)
	}
	out, err := json.Marshal(v)
	if err != nil {
		return nil, callError(http.StatusBadRequest, "BadRequest", "the %s request body has no JSON form: %v", c.name, err)
	}
	return out, nil
}

// fromJSON converts a function's JSON output to codec c.
func fromJSON(c *codec, out []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, &notJSON{fmt.Sprintf("it is not JSON: %v", err)}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &notJSON{"it is not one JSON value: more follows it"}
	}
	b, err := c.encode(numbers(v))
	if err != nil {
		return nil, err
	}
	return b, nil
}

// notJSON is an output that is not one JSON value.
type notJSON struct{ msg string }

func (e *notJSON) Error() string { return e.msg }

// numbers replaces the json.Numbers of v with the exact integer they
// hold (int64, uint64, or a big.Int beyond), else the float64.
func numbers(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			v[k] = numbers(x)
		}
		return v
	case []any:
		for i, x := range v {
			v[i] = numbers(x)
		}
		return v
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		if u, err := strconv.ParseUint(string(v), 10, 64); err == nil {
			return u
		}
		if b, ok := new(big.Int).SetString(string(v), 10); ok {
			return b
		}
		f, _ := v.Float64() // the JSON grammar made it a number; beyond float64 it is ±Inf, which finite refuses
		return f
	}
	return v
}

var (
	cborDec, _ = cbor.DecOptions{
		DefaultMapType: reflect.TypeOf(map[string]any(nil)),
		DupMapKey:      cbor.DupMapKeyEnforcedAPF,
	}.DecMode()
	cborEnc, _ = cbor.EncOptions{Sort: cbor.SortCoreDeterministic, BigIntConvert: cbor.BigIntConvertShortest}.EncMode()
)

func decodeCBOR(b []byte) (any, error) {
	var v any
	if err := cborDec.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return v, finite(v)
}

func encodeCBOR(v any) ([]byte, error) {
	if err := finite(v); err != nil {
		return nil, err
	}
	return cborEnc.Marshal(v)
}

func decodeMsgpack(b []byte) (any, error) {
	r := bytes.NewReader(b)
	v, err := msgpack.NewDecoder(r).DecodeInterface()
	if err != nil {
		return nil, err
	}
	if r.Len() > 0 {
		return nil, fmt.Errorf("%d bytes follow the value", r.Len())
	}
	return v, finite(v)
}

func encodeMsgpack(v any) ([]byte, error) {
	if err := finite(v); err != nil {
		return nil, err
	}
	if err := fits64(v); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	enc.UseCompactInts(true)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// finite refuses NaN and the infinities, which JSON cannot hold.
func finite(v any) error {
	switch v := v.(type) {
	case map[string]any:
		for _, x := range v {
			if err := finite(x); err != nil {
				return err
			}
		}
	case []any:
		for _, x := range v {
			if err := finite(x); err != nil {
				return err
			}
		}
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%v has no JSON form", v)
		}
	case float32:
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("%v has no JSON form", v)
		}
	}
	return nil
}

// fits64 refuses integers beyond 64 bits, which MessagePack cannot hold.
func fits64(v any) error {
	switch v := v.(type) {
	case map[string]any:
		for _, x := range v {
			if err := fits64(x); err != nil {
				return err
			}
		}
	case []any:
		for _, x := range v {
			if err := fits64(x); err != nil {
				return err
			}
		}
	case *big.Int:
		return fmt.Errorf("the integer %s does not fit in MessagePack's 64 bits", v)
	}
	return nil
}

// negotiate reads the Content-Type and Accept of a request to rt, a
// route whose function declares JSON input or output, before any
// function is called. A CBOR or MessagePack body is converted to JSON in
// place (r's body, Content-Type and length), within the route's body
// limit, which the JSON then no longer counts against (newLimit 0); when
// the client asks for CBOR or MessagePack, r asks the function for JSON
// and the codec to convert its output to is returned.
func (g *Gateway) negotiate(r *http.Request, rt *route, limit int64) (out *codec, newLimit int64, e *CallError) {
	newLimit = limit
	var in *codec
	if rt.JSONInput {
		if in, e = requestCodec(r.Header.Get("Content-Type")); e != nil {
			return nil, limit, e
		}
	}
	if rt.JSONOutput {
		if out, e = responseCodec(r.Header.Values("Accept")); e != nil {
			return nil, limit, e
		}
		if out != nil {
			r.Header.Set("Accept", "application/json")
		}
	}
	if in == nil {
		if rt.JSONInput && r.Header.Get("Content-Type") == "" {
			r.Header.Set("Content-Type", "application/json") // what it is taken as
		}
		return out, limit, nil
	}
	max := g.opts.convertMaxBody
	body := &inputBody{r: r.Body, limit: limit}
	b, err := io.ReadAll(io.LimitReader(body, max+1))
	if err != nil {
		if f := body.failure(); f != nil {
			return nil, limit, f
		}
		return nil, limit, callError(http.StatusBadRequest, "BadRequest", "reading the request body failed: %v", err)
	}
	if int64(len(b)) > max {
		return nil, limit, callError(http.StatusRequestEntityTooLarge, "PayloadTooLarge", "a %s body is converted to JSON whole, up to %d bytes (WithConvertMaxBody): send a smaller one, or JSON, which streams", in.name, max)
	}
	j, e := toJSON(in, b)
	if e != nil {
		return nil, limit, e
	}
	r.Body = io.NopCloser(bytes.NewReader(j))
	r.ContentLength = int64(len(j))
	r.Header.Set("Content-Type", "application/json")
	if r.Header.Get("Content-Length") != "" {
		r.Header.Set("Content-Length", strconv.Itoa(len(j)))
	}
	return out, 0, nil
}

// convertOutput converts the JSON output of function (or the last step
// of a pipeline) to codec c.
func (g *Gateway) convertOutput(c *codec, out []byte, function string) ([]byte, error) {
	if int64(len(out)) > g.opts.convertMaxBody {
		return nil, callError(http.StatusBadGateway, "OutputTooLarge", "the output of %s is converted to %s whole, up to %d bytes (WithConvertMaxBody), and is larger: ask for application/json, which streams", function, c.name, g.opts.convertMaxBody)
	}
	b, err := fromJSON(c, out)
	var nj *notJSON
	switch {
	case errors.As(err, &nj):
		return nil, callError(http.StatusBadGateway, "OutputNotJSON", "the output of %s cannot be sent as %s: %v", function, c.name, err)
	case err != nil:
		return nil, callError(http.StatusBadGateway, "OutputNotConvertible", "the output of %s cannot be sent as %s: %v", function, c.name, err)
	}
	return b, nil
}

// respondConverted answers a direct call whose client asked for codec
// conv: a success (a status below 300) has its output read whole and
// converted from JSON; an answer with a status of 300 or more that a
// handler set goes out as the handler made it, streamed.
func (g *Gateway) respondConverted(ctx context.Context, w *recorder, resp *http.Response, c *chain, conv *codec) {
	if status := c.head(http.Header{}, resp); status >= 300 {
		g.respond(ctx, w, resp, c)
		return
	}
	last := c.steps[len(c.steps)-1].Function
	id := w.Header().Get(HeaderRequestID)
	body, readErr := io.ReadAll(io.LimitReader(resp.Body, g.opts.convertMaxBody+1))
	f := c.failure(ctx, readErr)
	if t := resp.Trailer.Get(names.HeaderError); f == nil && t != "" {
		f = trailerError(t)
		f.Step = len(c.steps) - 1
	}
	if f != nil {
		w.failure = f.Error()
		writeCallError(w, f, id, c.describe(f))
		return
	}
	out, err := g.convertOutput(conv, body, last)
	if err != nil {
		e := err.(*CallError)
		e.Step = len(c.steps) - 1
		w.failure = e.Error()
		writeCallError(w, e, id, c.describe(e))
		return
	}
	h := w.Header()
	status := c.head(h, resp)
	h.Set("Content-Type", conv.contentType)
	h.Set("Content-Length", strconv.Itoa(len(out)))
	body = out
	w.WriteHeader(status)
	if _, err := w.Write(body); err != nil && !errors.Is(err, errReplaced) {
		w.failure = "client gone: " + err.Error()
	}
}
