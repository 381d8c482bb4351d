package spec

import (
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Sinks: `sink "<type>" "<name>" { stream = stream.x ... }` delivers a
// stream's records out of Butter. A sink is decoded as a function whose
// runtime is the platform's own ("sink.http"), with one stream trigger on
// its stream and its settings in Options, so it is placed, scaled,
// retried, dead-lettered and given secrets as a function is; the pool runs
// it in-process (plugins/runtime/sink.go).

// SinkTypes are the sink types built.
var SinkTypes = []string{"http"}

// plannedSinks are the sink types the connectors issue asks for and this
// version does not have yet.
var plannedSinks = []string{"mqtt", "postgres", "influxdb"}

var sinkSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "stream", Required: true}, {Name: "url", Required: true}, {Name: "method"},
		{Name: "headers"}, {Name: "signature"}, {Name: "offset"},
		{Name: "pool"}, {Name: "dead_letter"}, {Name: "timeout"}, {Name: "memory"}, {Name: "cpu"},
	},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "instances"},
		{Type: "retry"},
		{Type: "secret", LabelNames: []string{"name"}},
	},
}

// The options a sink's settings travel in to the pool.
const (
	SinkURL       = "url"
	SinkMethod    = "method"
	SinkSignature = "signature"
	// SinkHeader prefixes each header's name.
	SinkHeader = "header."
)

// functionName is the name a function or sink block declares.
func functionName(b *hcl.Block) string {
	if b.Type == "sink" {
		return b.Labels[1]
	}
	return b.Labels[0]
}

// sinkType checks a sink block's type.
func (d *decoder) sinkType(b *hcl.Block) bool {
	typ := b.Labels[0]
	for _, t := range SinkTypes {
		if t == typ {
			return true
		}
	}
	r := b.LabelRanges[0]
	for _, t := range plannedSinks {
		if t == typ {
			d.errorf(&r, "Sink not built yet", "sink %q is planned and not built in this version of Butter; the sinks are %s.", typ, strings.Join(SinkTypes, ", "))
			return false
		}
	}
	detail := "%q is not a sink type; the sinks are %s."
	if s := suggest(typ, SinkTypes); s != "" {
		detail = "%q is not a sink type. Did you mean \"" + s + "\"? The sinks are %s."
	}
	d.errorf(&r, "Unknown sink type", detail, typ, strings.Join(SinkTypes, ", "))
	return false
}

// decodeSink reads a sink's own arguments into f; decodeFunction reads
// the ones it shares with functions (pool, dead_letter, timeout, memory,
// cpu, instances, retry, secret).
func (d *decoder) decodeSink(f *Function, b *hcl.Block, attrs hcl.Attributes) {
	f.Runtime = "sink." + f.Sink
	f.Options = map[string]string{}
	t := &Trigger{Type: TriggerStream, Offset: Offset{Kind: OffsetLatest}, Order: "partition", DeclRange: b.DefRange}
	if a := attrs["stream"]; a != nil {
		if _, name, ok := d.ref(a.Expr, "stream", "stream"); ok {
			t.Stream = d.streams[name]
		}
	}
	if a := attrs["offset"]; a != nil {
		if s, ok := d.scalarString(a, "\"first\", \"latest\", an offset number, or an RFC 3339 time"); ok {
			if o, err := ParseOffset(s); err != nil {
				r := a.Expr.Range()
				d.errorf(&r, "Invalid offset", "%v. A sink starts its stream at \"latest\" (the default: records produced from its first deploy on), \"first\", an offset number or an RFC 3339 time.", err)
			} else {
				t.Offset = o
			}
		}
	}
	f.Triggers = append(f.Triggers, t)
	if a := attrs["url"]; a != nil {
		if s, ok := d.str(a); ok {
			u, err := url.Parse(s)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				r := a.Expr.Range()
				d.errorf(&r, "Invalid URL", "%q is not an http or https URL, like \"https://hooks.example.com/alerts\".", s)
			} else {
				f.Options[SinkURL] = s
			}
		}
	}
	f.Options[SinkMethod] = http.MethodPost
	if a := attrs["method"]; a != nil {
		f.Options[SinkMethod] = d.oneOf(a, []string{http.MethodPost, http.MethodPut, http.MethodPatch}, http.MethodPost)
	}
	if a := attrs["headers"]; a != nil {
		if m, ok := d.strMap(a); ok {
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				ck := http.CanonicalHeaderKey(k)
				if ck == "Content-Length" || ck == "Host" || strings.HasPrefix(ck, "Butter-") || strings.ContainsAny(k, " :\r\n") {
					r := a.Expr.Range()
					d.errorf(&r, "Invalid header", "Header %q cannot be set by a sink: Host, Content-Length and Butter-* are the platform's, and a name has no spaces or colons.", k)
					continue
				}
				f.Options[SinkHeader+ck] = m[k]
			}
		}
	}
	if a := attrs["signature"]; a != nil {
		if s, ok := d.str(a); ok {
			f.Options[SinkSignature] = s
			d.sinkSignatures = append(d.sinkSignatures, sinkSignature{f: f, name: s, rng: a.Expr.Range()})
		}
	}
}

// sinkSignature is a sink's signature argument, checked once the sink's
// secret blocks are read.
type sinkSignature struct {
	f    *Function
	name string
	rng  hcl.Range
}

// checkSinkSignatures checks that each sink's signature names one of its
// secrets.
func (d *decoder) checkSinkSignatures() {
	for _, s := range d.sinkSignatures {
		found := false
		var declared []string
		for _, sec := range s.f.Secrets {
			found = found || sec.Name == s.name
			declared = append(declared, sec.Name)
		}
		if !found {
			r := s.rng
			detail := "Sink %q signs with secret %q, which it does not declare: add secret %q { vault = \"<path>#<key>\" } to the sink."
			if len(declared) > 0 {
				detail += " It declares " + strings.Join(declared, ", ") + "."
			}
			d.errorf(&r, "Unknown signature secret", detail, s.f.Name, s.name, s.name)
		}
	}
}
