package spec

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Connectors: `sink "<type>" "<name>" { stream = stream.x ... }` carries a
// stream's records out of Butter, and `source "<type>" "<name>" { stream =
// stream.x ... }` carries external messages into a stream. A connector is
// decoded as a function whose runtime is the platform's own ("sink.http",
// "sink.mqtt", "source.mqtt"), its settings in Options, so it is placed,
// scaled, retried, dead-lettered and given secrets as a function is; a
// sink has one stream trigger on its stream, a source has its stream as
// its output. The pool runs them in its process (plugins/runtime/sink.go,
// plugins/pool/sources.go, connectors/mqtt).

// Connectors are the connector types built, as "sink.<type>" and
// "source.<type>".
var Connectors = []string{"sink.http", "sink.influxdb", "sink.mqtt", "sink.postgres", "source.mqtt", "source.postgres"}

// plannedConnectors are those the connectors issue asks for and this
// version does not have yet.
var plannedConnectors = []string{}

var connectorShared = []hcl.AttributeSchema{
	{Name: "stream", Required: true}, {Name: "pool"}, {Name: "timeout"}, {Name: "memory"}, {Name: "cpu"},
	// enabled = false leaves the connector out of the project (read when
	// declaring: connectorEnabled).
	{Name: "enabled"},
}

var connectorBlocks = []hcl.BlockHeaderSchema{
	{Type: "instances"},
	{Type: "retry"},
	{Type: "secret", LabelNames: []string{"name"}},
}

var connectorSchemas = map[string]*hcl.BodySchema{
	"sink.http": {
		Attributes: append([]hcl.AttributeSchema{
			{Name: "url", Required: true}, {Name: "method"}, {Name: "headers"}, {Name: "signature"}, {Name: "offset"}, {Name: "dead_letter"},
			{Name: "tls_ca"}, {Name: "tls_cert"}, {Name: "tls_key"},
		}, connectorShared...),
		Blocks: connectorBlocks,
	},
	"sink.mqtt": {
		Attributes: append([]hcl.AttributeSchema{
			{Name: "address"}, {Name: "topic", Required: true}, {Name: "qos"}, {Name: "retain"},
			{Name: "client_id"}, {Name: "username"}, {Name: "password"}, {Name: "offset"}, {Name: "dead_letter"},
			{Name: "tls_ca"}, {Name: "tls_cert"}, {Name: "tls_key"},
		}, connectorShared...),
		Blocks: connectorBlocks,
	},
	"sink.postgres": {
		Attributes: append([]hcl.AttributeSchema{
			{Name: "dsn", Required: true}, {Name: "table", Required: true}, {Name: "columns"}, {Name: "id_column"},
			{Name: "upsert"}, {Name: "password"}, {Name: "offset"}, {Name: "dead_letter"},
			{Name: "tls_ca"}, {Name: "tls_cert"}, {Name: "tls_key"},
		}, connectorShared...),
		Blocks: connectorBlocks,
	},
	"sink.influxdb": {
		Attributes: append([]hcl.AttributeSchema{
			{Name: "url", Required: true}, {Name: "measurement", Required: true}, {Name: "database"}, {Name: "bucket"}, {Name: "org"},
			{Name: "tags"}, {Name: "fields"}, {Name: "time"}, {Name: "token"}, {Name: "offset"}, {Name: "dead_letter"},
			{Name: "username"}, {Name: "password"},
			{Name: "tls_ca"}, {Name: "tls_cert"}, {Name: "tls_key"},
		}, connectorShared...),
		Blocks: connectorBlocks,
	},
	"source.postgres": {
		Attributes: append([]hcl.AttributeSchema{
			{Name: "dsn", Required: true}, {Name: "query", Required: true}, {Name: "cursor", Required: true},
			{Name: "key"}, {Name: "interval"}, {Name: "password"},
			{Name: "tls_ca"}, {Name: "tls_cert"}, {Name: "tls_key"},
		}, connectorShared...),
		Blocks: connectorBlocks,
	},
	"source.mqtt": {
		Attributes: append([]hcl.AttributeSchema{
			{Name: "address"}, {Name: "topics", Required: true}, {Name: "qos"}, {Name: "key"},
			{Name: "share"}, {Name: "client_id"}, {Name: "username"}, {Name: "password"},
			{Name: "tls_ca"}, {Name: "tls_cert"}, {Name: "tls_key"},
		}, connectorShared...),
		Blocks: connectorBlocks,
	},
}

// The options a connector's settings travel in to the pool.
const (
	SinkURL       = "url"
	SinkMethod    = "method"
	SinkSignature = "signature"
	// SinkHeader prefixes each header's name.
	SinkHeader = "header."
)

// functionName is the name a function, sink or source block declares.
func functionName(b *hcl.Block) string {
	if b.Type == "sink" || b.Type == "source" {
		return b.Labels[1]
	}
	return b.Labels[0]
}

// connectorType checks a sink or source block's type.
func (d *decoder) connectorType(b *hcl.Block) bool {
	kind := b.Type + "." + b.Labels[0]
	var types []string
	for _, c := range Connectors {
		if t, ok := strings.CutPrefix(c, b.Type+"."); ok {
			types = append(types, t)
		}
		if c == kind {
			return true
		}
	}
	r := b.LabelRanges[0]
	for _, c := range plannedConnectors {
		if c == kind {
			d.errorf(&r, "Connector not built yet", "%s %q is planned and not built in this version of Butter; the %ss are %s.", b.Type, b.Labels[0], b.Type, strings.Join(types, ", "))
			return false
		}
	}
	detail := fmt.Sprintf("%q is not a %s type; the %ss are %s.", b.Labels[0], b.Type, b.Type, strings.Join(types, ", "))
	if s := suggest(b.Labels[0], types); s != "" {
		detail = fmt.Sprintf("%q is not a %s type. Did you mean %q? The %ss are %s.", b.Labels[0], b.Type, s, b.Type, strings.Join(types, ", "))
	}
	d.errorf(&r, "Unknown "+b.Type+" type", "%s", detail)
	return false
}

var enabledSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "enabled"}}}

// connectorEnabled reads a connector block's enabled argument, usually
// written from a variable (enabled = var.postgres_dsn != ""). A disabled
// connector is not declared: nothing else in the project may refer to
// one, so leaving it out changes nothing else.
func (d *decoder) connectorEnabled(b *hcl.Block) bool {
	content, _, _ := b.Body.PartialContent(enabledSchema)
	a := content.Attributes["enabled"]
	if a == nil {
		return true
	}
	on, ok := d.boolean(a)
	if !ok {
		return false
	}
	if !on {
		d.disabled = append(d.disabled, b.Type+" "+strconv.Quote(b.Labels[0])+" "+strconv.Quote(b.Labels[1]))
	}
	return on
}

// decodeConnector reads a connector's own arguments into f;
// decodeFunction reads those it shares with functions (pool, dead_letter,
// timeout, memory, cpu, instances, retry, secret).
func (d *decoder) decodeConnector(f *Function, b *hcl.Block, attrs hcl.Attributes) {
	f.Runtime = f.Connector
	f.Options = map[string]string{}
	var stream *Stream
	if a := attrs["stream"]; a != nil {
		if _, name, ok := d.ref(a.Expr, "stream", "stream"); ok {
			stream = d.streams[name]
		}
	}
	if strings.HasPrefix(f.Connector, "sink.") {
		t := &Trigger{Type: TriggerStream, Stream: stream, Offset: Offset{Kind: OffsetLatest}, Order: "partition", DeclRange: b.DefRange}
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
	} else {
		f.Output = stream
	}
	switch f.Connector {
	case "sink.http":
		d.decodeHTTPSink(f, attrs)
	case "sink.mqtt", "source.mqtt":
		d.decodeMQTT(f, attrs)
	case "sink.postgres", "source.postgres":
		d.decodePostgres(f, attrs)
	case "sink.influxdb":
		d.decodeInflux(f, attrs)
	}
}

func (d *decoder) decodeHTTPSink(f *Function, attrs hcl.Attributes) {
	defer d.decodeHTTPSTLS(f, attrs) // after url
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
	d.secretRef(f, attrs, SinkSignature, "signs with")
}

// mqttTLSSchemes are the broker URL schemes that connect over TLS.
var mqttTLSSchemes = []string{"ssl", "tls", "mqtts", "wss"}

// decodeMQTTTLS reads an MQTT connector's TLS settings (decodeTLS); its
// address must have a TLS scheme.
func (d *decoder) decodeMQTTTLS(f *Function, attrs hcl.Attributes) {
	if !d.decodeTLS(f, attrs) {
		return
	}
	if addr := f.Options["address"]; addr != "" {
		u, _ := url.Parse(addr)
		if u != nil && !slices.Contains(mqttTLSSchemes, u.Scheme) {
			r := attrs["address"].Expr.Range()
			d.errorf(&r, "TLS settings without TLS", "%q connects without TLS, so tls_ca, tls_cert and tls_key would be ignored: use one of the schemes %s (like \"ssl://%s\"), or drop the TLS settings.", addr, strings.Join(mqttTLSSchemes, ", "), u.Host)
		}
	}
}

// decodeHTTPSTLS reads the TLS settings (decodeTLS) of a connector that
// speaks HTTP (a webhook, InfluxDB); its url must be https.
func (d *decoder) decodeHTTPSTLS(f *Function, attrs hcl.Attributes) {
	if !d.decodeTLS(f, attrs) {
		return
	}
	if target := f.Options[SinkURL]; target != "" {
		if u, _ := url.Parse(target); u != nil && u.Scheme != "https" {
			r := attrs["url"].Expr.Range()
			rest := u.RequestURI()
			if u.Path == "" && u.RawQuery == "" {
				rest = "" // InfluxDB's base URL: no "/" to add
			}
			d.errorf(&r, "TLS settings without TLS", "%q is not https, so tls_ca, tls_cert and tls_key would be ignored: use \"https://%s%s\", or drop the TLS settings.", target, u.Host, rest)
		}
	}
}

// decodePostgresTLS reads a PostgreSQL connector's TLS settings
// (decodeTLS); its DSN must not say sslmode=disable.
func (d *decoder) decodePostgresTLS(f *Function, attrs hcl.Attributes) {
	if !d.decodeTLS(f, attrs) {
		return
	}
	if dsn := f.Options["dsn"]; dsn != "" {
		if u, _ := url.Parse(dsn); u != nil && u.Query().Get("sslmode") == "disable" {
			r := attrs["dsn"].Expr.Range()
			d.errorf(&r, "TLS settings without TLS", "%q says sslmode=disable, so tls_ca, tls_cert and tls_key would be ignored: drop sslmode=disable (with TLS settings the connection is TLS only, verified as sslmode=verify-full does), or drop the TLS settings.", dsn)
		}
	}
}

// decodeTLS reads a connector's TLS settings (connectors/tlsconf):
// tls_ca, the PEM certificates of the CAs to trust instead of the
// system's; tls_cert, the client's PEM certificate, and tls_key, the
// secret holding its key (or tls_key_encrypted), for servers that require
// client certificates. It reports whether any is set.
func (d *decoder) decodeTLS(f *Function, attrs hcl.Attributes) bool {
	for _, name := range []string{"tls_ca", "tls_cert"} {
		a := attrs[name]
		if a == nil {
			continue
		}
		s, ok := d.str(a)
		if !ok {
			continue
		}
		if why := checkPEMCerts(s); why != "" {
			r := a.Expr.Range()
			d.errorf(&r, "Invalid "+name, "%s takes PEM certificates (-----BEGIN CERTIFICATE-----, in a heredoc or a variable): %s.", name, why)
			continue
		}
		f.Options[name] = s
	}
	d.secretRef(f, attrs, "tls_key", "presents the client key in")
	hasCert := attrs["tls_cert"] != nil
	hasKey := attrs["tls_key"] != nil || attrs["tls_key"+EncryptedSuffix] != nil
	if hasCert != hasKey {
		r := f.DeclRange
		d.errorf(&r, "Client certificate incomplete", "A client certificate needs both tls_cert (the PEM certificate) and tls_key (the secret holding its PEM key, or tls_key%s): give both, or neither.", EncryptedSuffix)
	}
	return attrs["tls_ca"] != nil || hasCert || hasKey
}

// checkPEMCerts says what is wrong with s as PEM certificates, "" when
// it holds at least one and nothing else.
func checkPEMCerts(s string) string {
	rest := []byte(s)
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return fmt.Sprintf("it holds a %s block; a key goes in a secret (tls_key)", b.Type)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Sprintf("certificate %d does not parse: %v", n+1, err)
		}
		n++
	}
	if n == 0 {
		return "it holds no PEM certificate"
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return "it holds text after its certificates"
	}
	return ""
}

// mqttSchemes are the broker URL schemes Paho takes.
var mqttSchemes = []string{"tcp", "ssl", "tls", "mqtt", "mqtts", "ws", "wss"}

func (d *decoder) decodeMQTT(f *Function, attrs hcl.Attributes) {
	if a := attrs["address"]; a != nil {
		if s, ok := d.str(a); ok {
			u, err := url.Parse(s)
			known := false
			if err == nil {
				for _, sc := range mqttSchemes {
					known = known || u.Scheme == sc
				}
			}
			if !known || u.Host == "" {
				r := a.Expr.Range()
				d.errorf(&r, "Invalid broker address", "%q is not an MQTT broker's address, like \"tcp://mqtt.example.com:1883\" (schemes: %s).", s, strings.Join(mqttSchemes, ", "))
			} else {
				f.Options["address"] = s
			}
		}
	}
	f.Options["qos"] = "1"
	if a := attrs["qos"]; a != nil {
		f.Options["qos"] = d.oneOf(a, []string{"0", "1", "2"}, "1")
	}
	for _, name := range []string{"client_id", "username", "share"} {
		if a := attrs[name]; a != nil {
			if s, ok := d.str(a); ok {
				f.Options[name] = s
			}
		}
	}
	d.secretRef(f, attrs, "password", "logs in with the password in")
	d.decodeMQTTTLS(f, attrs)
	if a := attrs["retain"]; a != nil {
		if v, ok := d.boolean(a); ok {
			f.Options["retain"] = strconv.FormatBool(v)
		}
	}
	if a := attrs["topic"]; a != nil {
		if s, ok := d.str(a); ok {
			if strings.ContainsAny(s, "+#") || s == "" {
				r := a.Expr.Range()
				d.errorf(&r, "Invalid topic", "%q: a sink publishes to one topic, without wildcards (+, #); {key} and {stream} are replaced by the record's key and stream, like \"alerts/{key}\".", s)
			} else {
				f.Options["topic"] = s
			}
		}
	}
	if a := attrs["topics"]; a != nil {
		if list, ok := d.strList(a); ok {
			for _, filter := range list {
				if why := badFilter(filter); why != "" {
					r := a.Expr.Range()
					d.errorf(&r, "Invalid topic filter", "%q: %s.", filter, why)
				}
			}
			if len(list) == 0 {
				r := a.Expr.Range()
				d.errorf(&r, "No topics", "A source subscribes to at least one topic filter, like topics = [\"sensors/+/reading\"].")
			}
			f.Options["topics"] = strings.Join(list, ",")
		}
	}
	if a := attrs["key"]; a != nil {
		if s, ok := d.scalarString(a, "a topic level, counted from 1"); ok {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				r := a.Expr.Range()
				d.errorf(&r, "Invalid key", "key is the topic level (from 1) whose value keys the records, like 2 for the device of sensors/<device>/reading; 0 for none.")
			} else {
				f.Options["key"] = s
			}
		}
	}
}

// badFilter says what is wrong with an MQTT topic filter ("" if nothing).
func badFilter(f string) string {
	if f == "" {
		return "a filter is not empty"
	}
	if strings.Contains(f, ",") {
		return "a filter has no comma"
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return "# is the last level only"
		case l != "#" && l != "+" && strings.ContainsAny(l, "+#"):
			return "+ and # stand alone in a level, like sensors/+/reading or sensors/#"
		}
	}
	return ""
}

// secretRef is a connector's argument that names one of its secrets,
// checked once the connector's secret blocks are read.
type secretRef struct {
	f    *Function
	arg  string
	name string
	rng  hcl.Range
	verb string
}

// EncryptedSuffix ends the option of a connector's credential given as a
// Vault transit ciphertext (password_encrypted, token_encrypted,
// signature_encrypted) rather than as the name of one of its secrets. The
// pool decrypts it at start (pool.Config.Decrypt).
const EncryptedSuffix = "_encrypted"

// credentialArgs are the connector arguments that name a secret, each of
// which may instead be given encrypted as <arg>_encrypted.
var credentialArgs = []string{"password", "token", "signature", "tls_key"}

func init() {
	for _, s := range connectorSchemas {
		for _, a := range s.Attributes {
			if slices.Contains(credentialArgs, a.Name) {
				s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: a.Name + EncryptedSuffix})
			}
		}
	}
}

// secretRef reads the credential arg of a connector into f's option of
// the same name: either the name of one of its secrets (arg), or a Vault
// transit ciphertext (arg_encrypted, kept in option arg_encrypted), not
// both.
func (d *decoder) secretRef(f *Function, attrs hcl.Attributes, arg, verb string) {
	a, enc := attrs[arg], attrs[arg+EncryptedSuffix]
	if a != nil && enc != nil {
		r := enc.NameRange
		d.errorf(&r, "Credential given twice", "%s names a secret and %s%s gives a ciphertext: keep one of them.", arg, arg, EncryptedSuffix)
		return
	}
	if enc != nil {
		if s, ok := d.str(enc); ok {
			if !strings.HasPrefix(s, "vault:v") {
				r := enc.Expr.Range()
				d.errorf(&r, "Invalid encrypted "+arg, "%s%s takes a Vault transit ciphertext (vault:v1:...): run `butter secrets encrypt %s -` with the value on stdin and paste its output. Never put the value itself in a spec; or declare a secret block and name it with %s = \"<secret name>\".", arg, EncryptedSuffix, d.projectName(), arg)
				return
			}
			f.Options[arg+EncryptedSuffix] = s
		}
		return
	}
	if a == nil {
		return
	}
	if s, ok := d.str(a); ok {
		f.Options[arg] = s
		d.secretRefs = append(d.secretRefs, secretRef{f: f, arg: a.Name, name: s, rng: a.Expr.Range(), verb: verb})
	}
}

// checkSecretRefs checks that each connector's secret arguments name one
// of its secrets.
func (d *decoder) checkSecretRefs() {
	for _, s := range d.secretRefs {
		found := false
		var declared []string
		for _, sec := range s.f.Secrets {
			found = found || sec.Name == s.name
			declared = append(declared, sec.Name)
		}
		if !found {
			r := s.rng
			detail := fmt.Sprintf("%q %s secret %q (its %s argument), which it does not declare: add secret %q { vault = \"<path>#<key>\" } to it.", s.f.Name, s.verb, s.name, s.arg, s.name)
			if len(declared) > 0 {
				detail += " It declares " + strings.Join(declared, ", ") + "."
			}
			d.errorf(&r, "Unknown secret", "%s", detail)
		}
	}
}

func (d *decoder) decodePostgres(f *Function, attrs hcl.Attributes) {
	defer d.decodePostgresTLS(f, attrs) // after dsn
	if a := attrs["dsn"]; a != nil {
		if s, ok := d.str(a); ok {
			u, err := url.Parse(s)
			if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
				r := a.Expr.Range()
				d.errorf(&r, "Invalid DSN", "%q is not a PostgreSQL URL, like \"postgres://butter@db.example.com:5432/iot?sslmode=require\"; give the password with password = \"<secret name>\", not in the URL.", s)
			} else if _, has := u.User.Password(); has {
				r := a.Expr.Range()
				d.errorf(&r, "Password in the DSN", "The DSN carries a password, which would be in the job and the revision for anyone who reads them: declare a secret and name it with password = \"PG_PASSWORD\", or give password_encrypted (`butter secrets encrypt`).")
			} else {
				f.Options["dsn"] = s
			}
		}
	}
	ident := func(a *hcl.Attribute, s, what string) bool {
		for _, part := range strings.Split(s, ".") {
			if part == "" || strings.ContainsAny(part, "\" \t\n;") {
				r := a.Expr.Range()
				d.errorf(&r, "Invalid "+what, "%q is not a %s name (letters, digits, _; schema.table for a table).", s, what)
				return false
			}
		}
		return true
	}
	if a := attrs["table"]; a != nil {
		if s, ok := d.str(a); ok && ident(a, s, "table") {
			f.Options["table"] = s
		}
	}
	if a := attrs["columns"]; a != nil {
		if m, ok := d.strMap(a); ok {
			for col, field := range m {
				if ident(a, col, "column") && field != "" {
					f.Options["column."+col] = field
				}
			}
		}
	}
	if a := attrs["id_column"]; a != nil {
		if s, ok := d.str(a); ok && ident(a, s, "column") {
			f.Options["id_column"] = s
		}
	}
	if a := attrs["upsert"]; a != nil {
		if list, ok := d.strList(a); ok {
			for _, c := range list {
				if !ident(a, c, "column") {
					return
				}
			}
			f.Options["upsert"] = strings.Join(list, ",")
		}
	}
	d.secretRef(f, attrs, "password", "logs in with the password in")
	for _, name := range []string{"query", "cursor", "key"} {
		if a := attrs[name]; a != nil {
			if v, ok := d.str(a); ok {
				f.Options[name] = v
			}
		}
	}
	if a := attrs["query"]; a != nil && !strings.Contains(f.Options["query"], "$1") {
		r := a.Expr.Range()
		d.errorf(&r, "Query without the cursor", "A source's query selects the rows after the cursor, $1 (NULL at the start), in the cursor's order, like \"SELECT id, customer, total FROM orders WHERE $1::bigint IS NULL OR id > $1::bigint ORDER BY id LIMIT 1000\".")
	}
	if a := attrs["interval"]; a != nil {
		if v, ok := d.duration(a); ok {
			if v <= 0 {
				r := a.Expr.Range()
				d.errorf(&r, "Invalid interval", "The polling interval is longer than zero, like \"1s\".")
			} else {
				f.Options["interval"] = v.String()
			}
		}
	}
}

func (d *decoder) decodeInflux(f *Function, attrs hcl.Attributes) {
	defer d.decodeHTTPSTLS(f, attrs) // after url
	if a := attrs["url"]; a != nil {
		if s, ok := d.str(a); ok {
			u, err := url.Parse(s)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				r := a.Expr.Range()
				d.errorf(&r, "Invalid URL", "%q is not InfluxDB's http or https URL, like \"http://influxdb.example.com:8086\".", s)
			} else {
				f.Options["url"] = s
			}
		}
	}
	for _, name := range []string{"measurement", "database", "bucket", "org", "time"} {
		if a := attrs[name]; a != nil {
			if s, ok := d.str(a); ok {
				f.Options[name] = s
			}
		}
	}
	_, db := f.Options["database"]
	_, bucket := f.Options["bucket"]
	_, org := f.Options["org"]
	switch {
	case db && bucket:
		r := attrs["bucket"].Expr.Range()
		d.errorf(&r, "Database and bucket", "Give database (InfluxDB 1.x) or bucket and org (InfluxDB 2.x), not both.")
	case !db && !bucket && attrs["measurement"] != nil:
		r := attrs["measurement"].Expr.Range()
		d.errorf(&r, "Missing database", "Say where the points go: database = \"iot\" (InfluxDB 1.x), or bucket = \"iot\" and org = \"acme\" (InfluxDB 2.x).")
	case bucket && !org:
		r := attrs["bucket"].Expr.Range()
		d.errorf(&r, "Missing org", "A bucket (InfluxDB 2.x) belongs to an org: add org = \"<org>\".")
	}
	for _, kind := range []string{"tags", "fields"} {
		if a := attrs[kind]; a != nil {
			if m, ok := d.strMap(a); ok {
				for name, field := range m {
					f.Options[strings.TrimSuffix(kind, "s")+"."+name] = field
				}
			}
		}
	}
	d.secretRef(f, attrs, "token", "authenticates with the token in")
	// InfluxDB 1.x logs in with a user and password (basic auth); the
	// token scheme is 2.x's (and 1.8's).
	if a := attrs["username"]; a != nil {
		if s, ok := d.str(a); ok {
			f.Options["username"] = s
		}
	}
	d.secretRef(f, attrs, "password", "logs in with the password in")
	hasUser := attrs["username"] != nil
	hasPass := attrs["password"] != nil || attrs["password"+EncryptedSuffix] != nil
	hasToken := attrs["token"] != nil || attrs["token"+EncryptedSuffix] != nil
	switch {
	case hasUser != hasPass:
		r := f.DeclRange
		d.errorf(&r, "Login incomplete", "An InfluxDB 1.x login needs both username and password (the secret holding it, or password%s): give both, or neither.", EncryptedSuffix)
	case hasUser && hasToken:
		r := attrs["username"].NameRange
		d.errorf(&r, "Login given twice", "Give username and password (InfluxDB 1.x) or token (InfluxDB 2.x, and 1.8's \"user:password\" tokens), not both.")
	}
}
