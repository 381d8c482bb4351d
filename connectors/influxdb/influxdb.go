// Package influxdb is Butter's InfluxDB sink: it writes a stream's JSON
// records as points (the InfluxDB Go client's write.Point), a batch of
// records in one request, in line protocol encoded as the client's own
// write API encodes it (github.com/influxdata/line-protocol), to InfluxDB
// 1.x's /write (database) or 2.x's /api/v2/write (bucket and org).
//
// A point's series and time identify it: a record written twice writes
// the same point twice, which InfluxDB keeps once, so the at-least-once
// delivery of streams gives each record one point. A record InfluxDB
// refuses (HTTP 400: a field of another type than the series has, a bad
// value) fails alone as refused; anything else fails the attempt, to be
// retried.
//
// Over https, the sink trusts the system's CAs, or those of tls_ca, and
// presents tls_cert with the key in the secret tls_key when given
// (connectors/tlsconf).
//
// Neighbours: hcl/spec decodes sink "influxdb" (connector.go);
// plugins/runtime runs it (sink.go).
package influxdb

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/butterfn/butter/connectors/tlsconf"
	"github.com/influxdata/influxdb-client-go/v2/api/write"
	lp "github.com/influxdata/line-protocol"
)

// Option names in a sink's options (hcl/spec/connector.go writes them).
const (
	OptURL         = "url"
	OptDatabase    = "database" // 1.x
	OptBucket      = "bucket"   // 2.x, with OptOrg
	OptOrg         = "org"
	OptToken       = "token" // the name of the secret holding it
	OptUsername    = "username"
	OptPassword    = "password" // the name of the secret holding it (1.x basic auth)
	OptMeasurement = "measurement"
	OptTime        = "time" // the record's field with the point's time
	OptTag         = "tag." // prefixes a tag's name; its value is the record's field
	OptField       = "field."
)

// Config is a sink's settings.
type Config struct {
	URL, Database, Bucket, Org, Token string
	// Username and Password log in to InfluxDB 1.x (basic auth).
	Username, Password string
	Measurement        string
	TimeField          string
	Tags, Fields       map[string]string // name -> record field (a dotted path)
	// TLS is the https client's configuration from the tls_* options;
	// nil: the system's CAs, no client certificate.
	TLS *tls.Config
}

// ConfigFrom reads a sink's settings from its options, the token from env
// under the secret's name.
func ConfigFrom(opts, env map[string]string) (Config, error) {
	c := Config{URL: opts[OptURL], Database: opts[OptDatabase], Bucket: opts[OptBucket], Org: opts[OptOrg],
		Measurement: opts[OptMeasurement], TimeField: opts[OptTime], Tags: map[string]string{}, Fields: map[string]string{}}
	if c.URL == "" || c.Measurement == "" || (c.Database == "" && c.Bucket == "") {
		return c, errors.New("influxdb: a sink needs a url, a measurement and a database (or a bucket)")
	}
	if name := opts[OptToken]; name != "" {
		v, ok := env[name]
		if !ok {
			return c, fmt.Errorf("influxdb: the token's secret %s has no value", name)
		}
		c.Token = v
	}
	c.Username = opts[OptUsername]
	if name := opts[OptPassword]; name != "" {
		v, ok := env[name]
		if !ok {
			return c, fmt.Errorf("influxdb: the password's secret %s has no value", name)
		}
		c.Password = v
	}
	tc, err := tlsconf.FromOptions(opts, env)
	if err != nil {
		return c, fmt.Errorf("influxdb: %w", err)
	}
	c.TLS = tc
	for k, v := range opts {
		if n, ok := strings.CutPrefix(k, OptTag); ok {
			c.Tags[n] = v
		} else if n, ok := strings.CutPrefix(k, OptField); ok {
			c.Fields[n] = v
		}
	}
	return c, nil
}

// Record is one record to write: its value and its time (the time of the
// event), used when the record has no time field.
type Record struct {
	Value []byte
	Time  time.Time
}

// RefusedError is a record InfluxDB (or the sink) refused: retrying it
// will not help.
type RefusedError struct{ Err error }

func (e *RefusedError) Error() string { return e.Err.Error() }
func (e *RefusedError) Unwrap() error { return e.Err }

// Sink writes records to InfluxDB.
type Sink struct {
	cfg    Config
	target string
	client *http.Client
}

// NewSink makes a sink.
func NewSink(cfg Config) (*Sink, error) {
	u, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil {
		return nil, fmt.Errorf("influxdb: url: %w", err)
	}
	q := url.Values{"precision": {"ns"}}
	if cfg.Bucket != "" {
		u.Path += "/api/v2/write"
		q.Set("bucket", cfg.Bucket)
		q.Set("org", cfg.Org)
	} else {
		u.Path += "/write"
		q.Set("db", cfg.Database)
	}
	u.RawQuery = q.Encode()
	client := &http.Client{}
	if cfg.TLS != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = cfg.TLS
		client.Transport = tr
	}
	return &Sink{cfg: cfg, target: u.String(), client: client}, nil
}

// point turns a record into a point.
func (s *Sink) point(r Record) (*write.Point, error) {
	var obj map[string]any
	if err := json.Unmarshal(r.Value, &obj); err != nil {
		return nil, &RefusedError{errors.New("the record is not a JSON object")}
	}
	tags := map[string]string{}
	for name, path := range s.cfg.Tags {
		if v := lookup(obj, path); v != nil {
			tags[name] = fmt.Sprint(v)
		}
	}
	fields := map[string]any{}
	if len(s.cfg.Fields) == 0 {
		// The record's scalar fields, but its tags and time.
		used := map[string]bool{s.cfg.TimeField: true}
		for _, path := range s.cfg.Tags {
			used[path] = true
		}
		for k, v := range obj {
			switch v.(type) {
			case float64, bool, string:
				if !used[k] {
					fields[k] = v
				}
			}
		}
	}
	for name, path := range s.cfg.Fields {
		if v := lookup(obj, path); v != nil {
			fields[name] = v
		}
	}
	if len(fields) == 0 {
		return nil, &RefusedError{errors.New("the record has no field to write (a point needs one)")}
	}
	t := r.Time
	if s.cfg.TimeField != "" {
		switch v := lookup(obj, s.cfg.TimeField).(type) {
		case string:
			pt, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return nil, &RefusedError{fmt.Errorf("time field %s: %q is not an RFC 3339 time", s.cfg.TimeField, v)}
			}
			t = pt
		case float64:
			t = time.Unix(0, int64(v*1e9)) // seconds since the epoch
		case nil:
		default:
			return nil, &RefusedError{fmt.Errorf("time field %s is neither a time nor a number of seconds", s.cfg.TimeField)}
		}
	}
	if t.IsZero() {
		t = time.Now()
	}
	return write.NewPoint(s.cfg.Measurement, tags, fields, t), nil
}

func lookup(obj map[string]any, path string) any {
	var cur any = obj
	for _, step := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[step]
	}
	return cur
}

// Write writes records in one request. When InfluxDB refuses it, it
// writes them one at a time, to say which: it returns how many were
// written (the first n, in order) and the error of the record after them.
func (s *Sink) Write(ctx context.Context, recs []Record) (int, error) {
	var body bytes.Buffer
	// The encoder the InfluxDB client's own write API uses (its
	// PointToLineProtocol helpers write "measurement, field=..." for a
	// point without tags, which InfluxDB refuses: "missing tag key").
	enc := lp.NewEncoder(&body)
	enc.SetFieldTypeSupport(lp.UintSupport)
	enc.FailOnFieldErr(true)
	enc.SetPrecision(time.Nanosecond)
	for i, r := range recs {
		p, err := s.point(r)
		if err == nil {
			if _, eerr := enc.Encode(p); eerr != nil {
				err = &RefusedError{fmt.Errorf("the record cannot be written as a point: %w", eerr)}
			}
		}
		if err != nil {
			if i == 0 {
				return 0, err
			}
			return s.oneByOne(ctx, recs)
		}
	}
	err := s.post(ctx, body.String())
	if err == nil {
		return len(recs), nil
	}
	var re *RefusedError
	if !errors.As(err, &re) || len(recs) == 1 {
		return 0, err
	}
	return s.oneByOne(ctx, recs)
}

func (s *Sink) oneByOne(ctx context.Context, recs []Record) (int, error) {
	for i, r := range recs {
		if _, err := s.Write(ctx, []Record{r}); err != nil {
			return i, err
		}
	}
	return len(recs), nil
}

func (s *Sink) post(ctx context.Context, lines string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.target, bytes.NewReader([]byte(lines)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	if s.cfg.Token != "" {
		req.Header.Set("Authorization", "Token "+s.cfg.Token)
	}
	if s.cfg.Username != "" {
		req.SetBasicAuth(s.cfg.Username, s.cfg.Password)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("influxdb: %w", err)
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 2<<10))
	resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		return nil
	}
	err = fmt.Errorf("InfluxDB answered %s: %s", resp.Status, strings.TrimSpace(string(answer)))
	if resp.StatusCode == http.StatusBadRequest {
		return &RefusedError{err}
	}
	return err
}
