package pool_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/sandbox"
	"github.com/butterfn/butter/secrets"
)

// TestHTTPSink runs a `sink "http"` (the pool's in-process runtime
// sink.http) on a stream of the embedded broker, delivering to a real
// HTTP server on 127.0.0.1: each record is one POST, in order, with the
// sink's headers, the record's event id and an HMAC-SHA256 signature
// under a secret; an endpoint that fails a record (503) gets it again
// after the backoff and it is delivered once accepted; an endpoint that
// refuses one (422) has it dead-lettered at once as PreconditionFailed
// with its answer, and the records after it go on; an endpoint that keeps
// failing one has it dead-lettered after the last attempt.
func TestHTTPSink(t *testing.T) {
	requireSandbox(t)
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "h.alerts", Partitions: 1})

	type delivery struct {
		body, id, sig, team, ctype string
	}
	var mu sync.Mutex
	var got []delivery
	failed := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		body := string(b)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case body == "flaky" && failed[body] < 2: // fails twice, then accepts
			failed[body]++
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		case body == "refused":
			http.Error(w, "field temperature is missing", http.StatusUnprocessableEntity)
			return
		case body == "broken":
			failed[body]++
			http.Error(w, "always down", http.StatusBadGateway)
			return
		}
		got = append(got, delivery{body, r.Header.Get("Butter-Event-Id"), r.Header.Get("Butter-Signature"), r.Header.Get("X-Team"), r.Header.Get("Content-Type")})
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)

	src := &memSource{vals: map[string]map[string]string{}}
	src.set("notify", "HOOK_KEY", "s3cret")
	sink := pool.FunctionConfig{
		Name: "notify", Runtime: "sink.http", Timeout: "5s", MaxInstances: 1, Concurrency: 1,
		Options: map[string]string{"url": srv.URL + "/hook", "method": "POST", "header.X-Team": "ops", "signature": "HOOK_KEY"},
		Streams: []pool.StreamTrigger{{Stream: "h.alerts", Group: "butter.test.notify.h.alerts", Offset: "first"}},
		Retry:   &pool.RetryConfig{Attempts: 3, Backoff: "20ms", MaxBackoff: "50ms"},
		Secrets: []secrets.Ref{{Name: "HOOK_KEY", Path: "secret/data/hooks", Key: "key"}},
		Bundle:  t.TempDir(),
	}
	p, _ := start(t, []pool.FunctionConfig{sink}, pool.WithSecrets(src), pool.WithSandbox(sandbox.Config{Exe: os.Args[0]}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.StartStreams(ctx, dev.Config()); err != nil {
		t.Fatal(err)
	}

	vals := append(events("alert", 0, 5), "flaky", "refused", "broken")
	vals = append(vals, events("alert", 5, 10)...)
	keyed(t, cl, "h.alerts", "d1", vals...)

	var delivered []delivery
	eventually(t, 30*time.Second, "11 records delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		delivered = append([]delivery(nil), got...)
		return len(delivered) >= 11
	})
	want := append(events("alert", 0, 5), "flaky")
	want = append(want, events("alert", 5, 10)...)
	for i, d := range delivered {
		if i >= len(want) || d.body != want[i] {
			t.Fatalf("delivery %d: %q, want %q (in order, each once): %v", i, d.body, want[i], delivered)
		}
		mac := hmac.New(sha256.New, []byte("s3cret"))
		mac.Write([]byte(d.body))
		if d.sig != "sha256="+hex.EncodeToString(mac.Sum(nil)) || d.id != d.body || d.team != "ops" {
			t.Errorf("delivery %q: signature %q, event id %q, X-Team %q", d.body, d.sig, d.id, d.team)
		}
	}
	if failed["flaky"] != 2 {
		t.Errorf("the flaky record was refused %d times before its delivery, want 2", failed["flaky"])
	}
	dls := readAll(t, dev.Addr, "h.alerts.dlq", 2)
	byValue := map[string]int{}
	for i, dl := range dls {
		byValue[string(dl.Value)] = i
	}
	refused, broken := dls[byValue["refused"]], dls[byValue["broken"]]
	if string(refused.Value) != "refused" || broker.Header(refused, broker.HeaderErrorType) != "PreconditionFailed" || broker.Attempts(refused) != 1 ||
		!strings.Contains(broker.Header(refused, broker.HeaderErrorMessage), "422 Unprocessable Entity: field temperature is missing") {
		t.Errorf("the refused record's dead letter: %s, type %q, attempts %d, message %q", refused.Value, broker.Header(refused, broker.HeaderErrorType), broker.Attempts(refused), broker.Header(refused, broker.HeaderErrorMessage))
	}
	if string(broken.Value) != "broken" || broker.Header(broken, broker.HeaderErrorType) != "Exception" || broker.Attempts(broken) != 3 || failed["broken"] != 3 ||
		!strings.Contains(broker.Header(broken, broker.HeaderErrorMessage), "502 Bad Gateway: always down") {
		t.Errorf("the broken record's dead letter: %s, type %q, attempts %d (the endpoint saw %d), message %q", broken.Value, broker.Header(broken, broker.HeaderErrorType), broker.Attempts(broken), failed["broken"], broker.Header(broken, broker.HeaderErrorMessage))
	}
}
