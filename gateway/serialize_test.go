package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/gateway"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/sdk"
)

// order is the input of the serializers' tests: numbers of every kind
// (2^53+1 is exact only as an integer), text beyond ASCII, null, a bool.
var order = map[string]any{
	"id":    uint64(9007199254740993),
	"note":  "crème brûlée ☕",
	"gift":  nil,
	"rush":  true,
	"items": []any{map[string]any{"price": 2.5, "qty": 2}, map[string]any{"price": 10, "qty": -1}},
}

// wantTotal is what total answers for order, as JSON.
const wantTotal = `{"total": -5.0, "seen": {"content_type": "application/json", "accept": %s},
  "echo": {"id": 9007199254740993, "note": "crème brûlée ☕", "gift": null, "rush": true,
           "items": [{"price": 2.5, "qty": 2}, {"price": 10, "qty": -1}]}}`

// sameJSON says whether a and b hold the same JSON value, numbers compared
// by their text.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	for _, c := range []struct {
		in  []byte
		out *any
	}{{a, &va}, {b, &vb}} {
		d := json.NewDecoder(bytes.NewReader(c.in))
		d.UseNumber()
		if err := d.Decode(c.out); err != nil {
			t.Errorf("not JSON: %q: %v", c.in, err)
			return false
		}
	}
	return reflect.DeepEqual(normalizeNumbers(va), normalizeNumbers(vb))
}

// normalizeNumbers writes -5.0 and -5 alike (Python answers a float total).
func normalizeNumbers(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			v[k] = normalizeNumbers(x)
		}
	case []any:
		for i, x := range v {
			v[i] = normalizeNumbers(x)
		}
	case json.Number:
		if _, err := v.Int64(); err != nil {
			if f, err := v.Float64(); err == nil && f == float64(int64(f)) && f < 1<<53 && f > -(1<<53) {
				return json.Number(strings.TrimSuffix(strings.TrimSuffix(v.String(), "0"), "."))
			}
		}
	}
	return v
}

// asJSON decodes a CBOR or MessagePack answer and writes it as JSON.
func asJSON(t *testing.T, ct string, b []byte) []byte {
	t.Helper()
	var v any
	var err error
	switch ct {
	case "application/cbor":
		dm, _ := cbor.DecOptions{DefaultMapType: reflect.TypeOf(map[string]any(nil))}.DecMode()
		err = dm.Unmarshal(b, &v)
	case "application/msgpack":
		v, err = msgpack.NewDecoder(bytes.NewReader(b)).DecodeInterface()
	default:
		return b
	}
	if err != nil {
		t.Fatalf("the %s answer does not decode: %v", ct, err)
	}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// startSerializePool starts a pool with total (Python, its input and
// output schemas), consuming its request topic on kafka when set, and
// returns its address and call counts.
func startSerializePool(t *testing.T, kafka *broker.Config) (string, *callCounter) {
	t.Helper()
	dir, _ := filepath.Abs("testdata/serialize")
	f := pool.FunctionConfig{Name: "total", Runtime: "python", Bundle: dir, Handler: "total.handle", Timeout: "1m", MaxInstances: 2, Concurrency: 4,
		InputSchema: filepath.Join(dir, "input.schema.json"), OutputSchema: filepath.Join(dir, "output.schema.json"),
		Env: map[string]string{"PYTHONDONTWRITEBYTECODE": "1"}}
	if kafka != nil {
		f.Streams = []pool.StreamTrigger{{Stream: names.RequestTopic("test", "total"), Group: "butter.test.total.requests", Offset: "first"}}
	}
	sdks, err := sdk.Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p, err := pool.New(&pool.Config{Project: "test", Pool: "default", Functions: []pool.FunctionConfig{f}}, nil, pool.WithSDKs(sdks))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		p.Close()
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if kafka != nil {
		if err := p.StartStreams(ctx, *kafka); err != nil {
			t.Fatal(err)
		}
	}
	c := &callCounter{n: map[string]int{}}
	return httptestServer(t, c.wrap(p.Handler())), c
}

type rawAnswer struct {
	code   int
	header http.Header
	body   []byte
}

func send(t *testing.T, url string, body []byte, hdr map[string]string) rawAnswer {
	t.Helper()
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	return rawAnswer{resp.StatusCode, resp.Header, b}
}

func errorType(b []byte) (typ, msg string) {
	var e struct{ Error, Type string }
	_ = json.Unmarshal(b, &e)
	return e.Type, e.Error
}

// TestSerializers runs a Python function that declares JSON input and
// output (input_schema, output_schema) on a real pool behind the real
// gateway, called in JSON, CBOR and MessagePack: the function always
// sees JSON, and the answer comes in the serialization Accept prefers;
// other types answer 415 and 406 without calling it.
func TestSerializers(t *testing.T) {
	addr, calls := startSerializePool(t, nil)
	_, url := startGateway(t, resolverFor(addr), []gateway.Route{
		{Method: "POST", Path: "/total", Project: "test", Function: "total", JSONInput: true, JSONOutput: true},
		{Method: "POST", Path: "/opaque", Project: "test", Function: "total"},
	}, gateway.WithConvertMaxBody(4096))
	asJSONBody, _ := json.Marshal(order)
	asCBOR, err := cbor.Marshal(order)
	if err != nil {
		t.Fatal(err)
	}
	asMsgpack, err := msgpack.Marshal(order)
	if err != nil {
		t.Fatal(err)
	}
	bodies := map[string][]byte{"application/json": asJSONBody, "application/cbor": asCBOR, "application/msgpack": asMsgpack}

	for _, c := range []struct {
		contentType, accept, want string
	}{
		{"", "", "application/json"},
		{"application/json", "", "application/json"},
		{"application/cbor", "application/cbor", "application/cbor"},
		{"application/msgpack", "application/msgpack", "application/msgpack"},
		{"application/x-msgpack", "application/json", "application/json"},
		{"application/cbor", "", "application/json"},
		{"application/json", "application/msgpack;q=0.5, application/cbor", "application/cbor"},
		{"application/json", "text/html, application/*;q=0.2", "application/json"},
		{"application/vnd.msgpack", "application/cbor;q=0.1, */*;q=0.5", "application/json"},
		{"application/cbor; charset=binary", "application/vnd.msgpack", "application/msgpack"},
	} {
		in := bodies[c.contentType]
		switch {
		case c.contentType == "":
			in = asJSONBody
		case strings.Contains(c.contentType, "msgpack"):
			in = asMsgpack
		case strings.HasPrefix(c.contentType, "application/cbor"):
			in = asCBOR
		}
		hdr := map[string]string{}
		if c.contentType != "" {
			hdr["Content-Type"] = c.contentType
		}
		if c.accept != "" {
			hdr["Accept"] = c.accept
		}
		a := send(t, url+"/total", in, hdr)
		if a.code != 200 || !strings.HasPrefix(a.header.Get("Content-Type"), c.want) || a.header.Get("Vary") != "Accept" {
			t.Errorf("Content-Type %q, Accept %q: %d %v %q, want 200 %s with Vary: Accept", c.contentType, c.accept, a.code, a.header, a.body, c.want)
			continue
		}
		// The function saw JSON, and was asked for JSON when the client
		// asked for something else.
		seenAccept := "null"
		switch {
		case c.want != "application/json":
			seenAccept = `"application/json"`
		case c.accept != "":
			seenAccept = `"` + c.accept + `"`
		}
		if got, want := asJSON(t, c.want, a.body), []byte(strings.Replace(wantTotal, "%s", seenAccept, 1)); !sameJSON(t, got, want) {
			t.Errorf("Content-Type %q, Accept %q: the answer as JSON is\n%s\nwant\n%s", c.contentType, c.accept, got, want)
		}
	}

	// A JSON answer streams untouched; a converted one is exact: the
	// JSON output converted to CBOR holds the same integer 2^53+1.
	a := send(t, url+"/total", asCBOR, map[string]string{"Content-Type": "application/cbor", "Accept": "application/cbor"})
	var got struct {
		Echo struct {
			ID uint64 `cbor:"id"`
		} `cbor:"echo"`
	}
	if err := cbor.Unmarshal(a.body, &got); err != nil || got.Echo.ID != 9007199254740993 {
		t.Errorf("the id through CBOR both ways: %d %v, want 9007199254740993", got.Echo.ID, err)
	}
	calls.take()

	// Refused before the function runs: a type it cannot read (415), an
	// Accept it cannot meet (406), a body that is not what it says, a
	// map whose keys JSON cannot hold (400), a converted body over the
	// limit (413).
	intKeys, _ := cbor.Marshal(map[int]any{1: "one"})
	for _, c := range []struct {
		name        string
		body        []byte
		hdr         map[string]string
		code        int
		typ, inText string
	}{
		{"text/plain", asJSONBody, map[string]string{"Content-Type": "text/plain"}, 415, "UnsupportedMediaType", "application/json, application/cbor or application/msgpack"},
		{"form", asJSONBody, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415, "UnsupportedMediaType", "input_schema"},
		{"accept html", asJSONBody, map[string]string{"Accept": "text/html"}, 406, "NotAcceptable", "text/html"},
		{"accept cbor never", asJSONBody, map[string]string{"Accept": "application/cbor;q=0, application/json;q=0"}, 406, "NotAcceptable", "application/cbor"},
		{"broken CBOR", []byte{0xa1, 0x61}, map[string]string{"Content-Type": "application/cbor"}, 400, "BadRequest", "not valid CBOR"},
		{"trailing msgpack", append(append([]byte{}, asMsgpack...), 0xc0), map[string]string{"Content-Type": "application/msgpack"}, 400, "BadRequest", "not valid MessagePack"},
		{"int keys", intKeys, map[string]string{"Content-Type": "application/cbor"}, 400, "BadRequest", "CBOR"},
		{"too large", bytes.Repeat([]byte{0x61}, 5000), map[string]string{"Content-Type": "application/cbor"}, 413, "PayloadTooLarge", "4096 bytes"},
	} {
		a := send(t, url+"/total", c.body, c.hdr)
		typ, msg := errorType(a.body)
		if a.code != c.code || typ != c.typ || !strings.Contains(msg, c.inText) {
			t.Errorf("%s: %d %s %q, want %d %s mentioning %q", c.name, a.code, typ, msg, c.code, c.typ, c.inText)
		}
	}
	if n := calls.take()["total"]; n != 0 {
		t.Errorf("refused requests called the function %d times", n)
	}

	// The pool still checks the schema, on the JSON the gateway made.
	bad, _ := cbor.Marshal(map[string]any{"items": []any{map[string]any{"price": "free", "qty": 1}}})
	a = send(t, url+"/total", bad, map[string]string{"Content-Type": "application/cbor", "Accept": "application/cbor"})
	if typ, _ := errorType(a.body); a.code != 400 || typ != "PreconditionFailed" || a.header.Get("Content-Type") != "application/json" {
		t.Errorf("a CBOR body failing the input_schema: %d %s %v, want the pool's 400 PreconditionFailed, in JSON", a.code, a.body, a.header)
	}
	// A status of 300 or more the handler set goes out as it made it.
	missing, _ := msgpack.Marshal(map[string]any{"items": []any{}, "missing": true})
	a = send(t, url+"/total", missing, map[string]string{"Content-Type": "application/msgpack", "Accept": "application/msgpack"})
	if a.code != 404 || a.header.Get("Content-Type") != "application/json" || !strings.Contains(string(a.body), "no such order") {
		t.Errorf("the handler's 404: %d %v %q, want it as the handler made it", a.code, a.header, a.body)
	}
	// An output over the limit cannot be converted; as JSON it streams.
	big := map[string]any{"items": []any{}, "note": strings.Repeat("x", 5000)}
	bigJSON, _ := json.Marshal(big)
	a = send(t, url+"/total", bigJSON, map[string]string{"Content-Type": "application/json", "Accept": "application/cbor"})
	if typ, msg := errorType(a.body); a.code != 502 || typ != "OutputTooLarge" || !strings.Contains(msg, "application/json") {
		t.Errorf("an output over the limit, as CBOR: %d %s %q, want 502 OutputTooLarge", a.code, typ, msg)
	}
	if a = send(t, url+"/total", bigJSON, map[string]string{"Content-Type": "application/json"}); a.code != 200 || len(a.body) < 5000 {
		t.Errorf("an output over the limit, as JSON: %d, %d bytes", a.code, len(a.body))
	}

	// A route whose function declares nothing: bodies and answers pass
	// through, whatever their types.
	a = send(t, url+"/opaque", asJSONBody, map[string]string{"Content-Type": "text/plain", "Accept": "text/html"})
	if a.code != 200 || a.header.Get("Vary") != "" {
		t.Errorf("a route without JSON declared: %d %v %q", a.code, a.header, a.body)
	}
}

// TestSerializersQueued: a queued route converts a MessagePack request to
// JSON before it goes through Kafka (the embedded kfake broker, real
// client) and the JSON reply to CBOR.
func TestSerializersQueued(t *testing.T) {
	dev, err := broker.StartDev(0, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dev.Close)
	kafka := dev.Config()
	addr, _ := startSerializePool(t, &kafka)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := broker.NewRequester(ctx, kafka, "test.gateway.replies")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(req.Close)
	_, url := startGateway(t, resolverFor(addr), []gateway.Route{
		{Method: "POST", Path: "/total", Project: "test", Function: "total", Mode: "queued", Timeout: 20 * time.Second, JSONInput: true, JSONOutput: true},
	}, gateway.WithRequester(req))
	in, _ := msgpack.Marshal(order)
	a := send(t, url+"/total", in, map[string]string{"Content-Type": "application/msgpack", "Accept": "application/cbor"})
	if a.code != 200 || a.header.Get("Content-Type") != "application/cbor" {
		t.Fatalf("queued, MessagePack in, CBOR out: %d %v %q", a.code, a.header, a.body)
	}
	if got, want := asJSON(t, "application/cbor", a.body), []byte(strings.Replace(wantTotal, "%s", `"application/json"`, 1)); !sameJSON(t, got, want) {
		t.Errorf("queued: the answer as JSON is\n%s\nwant\n%s", got, want)
	}
}
