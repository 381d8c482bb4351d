package influxdb

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestWriteRequests checks the requests the sink sends against an
// httptest server standing in for InfluxDB 2.x, which cannot be had on
// this machine (Debian packages 1.6, and 2.x does not build without a
// Rust toolchain): the contract checked is the documented 2.x write API
// (POST /api/v2/write?org=&bucket=&precision=ns, Authorization: Token).
// The 1.x requests are checked here too (the database, basic auth), and
// against a real InfluxDB 1.6 in plugins/pool's TestInfluxSink and
// TestSinkLogins. A 400 is a refusal of the records; any other failure
// (401, 5xx) is not, so the records are retried.
func TestWriteRequests(t *testing.T) {
	type seen struct {
		path, query, auth, body string
	}
	var last seen
	status := http.StatusNoContent
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		last = seen{r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), string(b)}
		w.WriteHeader(status)
		if status != http.StatusNoContent {
			_, _ = w.Write([]byte(`{"code":"invalid","message":"partial write"}`))
		}
	}))
	defer srv.Close()
	rec := Record{Value: []byte(`{"device":"d1","temperature":21.5,"at":"2026-12-05T10:00:00Z"}`)}
	for _, c := range []struct {
		name                          string
		opts, env                     map[string]string
		path, query, auth, bodyPrefix string
	}{
		{"2.x", map[string]string{"bucket": "iot", "org": "acme", "token": "TOK"}, map[string]string{"TOK": "s3cret"},
			"/api/v2/write", "bucket=iot&org=acme&precision=ns", "Token s3cret", "reading,device=d1 temperature=21.5 1796464800000000000"},
		{"1.x", map[string]string{"database": "iot", "username": "butter", "password": "PW"}, map[string]string{"PW": "pw"},
			"/write", "db=iot&precision=ns", "Basic YnV0dGVyOnB3", "reading,device=d1 temperature=21.5 1796464800000000000"},
	} {
		opts := map[string]string{"url": srv.URL, "measurement": "reading", "tag.device": "device", "field.temperature": "temperature", "time": "at"}
		for k, v := range c.opts {
			opts[k] = v
		}
		cfg, err := ConfigFrom(opts, c.env)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		s, err := NewSink(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		status = http.StatusNoContent
		if n, err := s.Write(ctx, []Record{rec}); err != nil || n != 1 {
			t.Fatalf("%s: write: %d, %v", c.name, n, err)
		}
		if last.path != c.path || last.query != c.query || last.auth != c.auth || !strings.HasPrefix(last.body, c.bodyPrefix) {
			t.Errorf("%s: sent %+v, want path %s, query %s, auth %q, body %q", c.name, last, c.path, c.query, c.auth, c.bodyPrefix)
		}
		var refused *RefusedError
		status = http.StatusBadRequest
		if _, err := s.Write(ctx, []Record{rec}); !errors.As(err, &refused) || !strings.Contains(err.Error(), "partial write") {
			t.Errorf("%s: a 400: %v, want a refusal with the server's words", c.name, err)
		}
		status = http.StatusUnauthorized
		if _, err := s.Write(ctx, []Record{rec}); err == nil || errors.As(err, &refused) {
			t.Errorf("%s: a 401: %v, want an error that is not a refusal", c.name, err)
		}
		cancel()
	}
}

// TestPointWithoutTags: a sink with no tags writes "measurement
// field=value time", as line protocol has it. (The InfluxDB client's
// PointToLineProtocol helpers, which the sink used before, wrote
// "measurement, field=..." for such a point, and InfluxDB refused every
// one with "missing tag key": plugins/pool TestInfluxSinkOverTLS found it
// against a real InfluxDB.)
func TestPointWithoutTags(t *testing.T) {
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		body = string(b)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	cfg, err := ConfigFrom(map[string]string{"url": srv.URL, "database": "iot", "measurement": "reading", "time": "at"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	recs := []Record{
		{Value: []byte(`{"temperature":21.5,"at":"2026-12-05T10:00:00Z"}`)},
		{Value: []byte(`{"temperature":22,"ok":true,"at":"2026-12-05T10:00:01Z"}`)},
	}
	if n, err := s.Write(context.Background(), recs); err != nil || n != 2 {
		t.Fatalf("write: %d, %v", n, err)
	}
	want := "reading temperature=21.5 1796464800000000000\nreading ok=true,temperature=22 1796464801000000000\n"
	if body != want {
		t.Errorf("sent %q, want %q", body, want)
	}
}
