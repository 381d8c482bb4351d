package pool_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/internal/mqtttest"
	"github.com/butterfn/butter/internal/vaulttest"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/secrets"
	vault "github.com/hashicorp/vault/api"
)

// TestEncryptedConnectorCredentials gives connectors their credentials as
// Vault transit ciphertexts (password_encrypted, signature_encrypted),
// encrypted with the project's key on a real Vault dev server and
// decrypted by pool.Config.Decrypt as `butter pool` does at start: a
// `source "mqtt"` logs in to a real Mosquitto that refuses anonymous
// clients, and a `sink "http"` signs each record it delivers with the
// decrypted key. Readings published with mosquitto_pub (logged in) go
// through the source's stream to the sink and arrive signed. A ciphertext
// that Vault cannot decrypt fails Decrypt naming the function and the
// argument, and no plaintext is left in the functions' options.
func TestEncryptedConnectorCredentials(t *testing.T) {
	v := vaulttest.Start(t)
	vcfg := vault.DefaultConfig()
	vcfg.Address = v.Addr
	vc, err := vault.NewClient(vcfg)
	if err != nil {
		t.Fatal(err)
	}
	vc.SetToken(v.RootToken)
	if err := vc.Sys().Mount("transit", &vault.MountInput{Type: "transit"}); err != nil {
		t.Fatal(err)
	}
	if _, err := vc.Logical().Write("transit/keys/"+names.TransitKey("test"), nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	encrypt := func(plain string) string {
		ct, err := secrets.Encrypt(ctx, vc, "test", plain)
		if err != nil {
			t.Fatal(err)
		}
		return ct
	}
	const mqttPass, hookKey = "mqtt-pa55word", "hook-s3cret"
	mq := mqtttest.StartWithUsers(t, map[string]string{"sensors": mqttPass})
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "e.readings", Partitions: 1})

	var mu sync.Mutex
	type delivery struct{ body, sig string }
	var got []delivery
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, delivery{string(b), r.Header.Get("Butter-Signature")})
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)

	cfg := &pool.Config{Project: "test", Pool: "p", Functions: []pool.FunctionConfig{{
		Name: "readings-in", Runtime: "source.mqtt", Timeout: "5s", MaxInstances: 1, Concurrency: 1, Bundle: t.TempDir(),
		Output: "e.readings",
		Options: map[string]string{"address": mq.Address, "topics": "sensors/+/reading", "key": "2", "qos": "1",
			"username": "sensors", "password_encrypted": encrypt(mqttPass)},
	}, {
		Name: "notify", Runtime: "sink.http", Timeout: "5s", MaxInstances: 1, Concurrency: 1, Bundle: t.TempDir(),
		Options: map[string]string{"url": srv.URL, "method": "POST", "signature_encrypted": encrypt(hookKey)},
		Streams: []pool.StreamTrigger{{Stream: "e.readings", Group: "butter.test.notify.e.readings", Offset: "first"}},
		Retry:   &pool.RetryConfig{Attempts: 3, Backoff: "20ms"},
	}}}
	if !cfg.NeedsDecrypt() {
		t.Fatal("NeedsDecrypt is false for a config with ciphertexts")
	}
	decrypt := func(ctx context.Context, ct string) (string, error) { return secrets.Decrypt(ctx, vc, "test", ct) }

	// A ciphertext Vault cannot decrypt (another key's, a tampered one).
	bad := *cfg
	bad.Functions = []pool.FunctionConfig{cfg.Functions[1]}
	bad.Functions[0].Options = map[string]string{"url": srv.URL, "signature_encrypted": "vault:v1:bm90IGEgY2lwaGVydGV4dA=="}
	if err := bad.Decrypt(ctx, decrypt); err == nil || !strings.Contains(err.Error(), "function notify: decrypt signature_encrypted") {
		t.Fatalf("decrypting a bad ciphertext: %v, want an error naming function notify and signature_encrypted", err)
	}
	if err := bad.Decrypt(ctx, nil); err == nil || !strings.Contains(err.Error(), "no Vault") {
		t.Fatalf("decrypting without Vault: %v", err)
	}

	if err := cfg.Decrypt(ctx, decrypt); err != nil {
		t.Fatal(err)
	}
	if cfg.NeedsDecrypt() {
		t.Error("NeedsDecrypt is still true after Decrypt")
	}
	for _, f := range cfg.Functions {
		for k, val := range f.Options {
			if strings.HasSuffix(k, "_encrypted") || val == mqttPass || val == hookKey {
				t.Errorf("function %s keeps option %s=%q after Decrypt", f.Name, k, val)
			}
		}
	}
	p, _ := start(t, cfg.Functions)
	if err := p.StartStreams(ctx, dev.Config()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the source's subscription, logged in", func() bool {
		return strings.Contains(mq.Log(), "$share/butter-test-readings-in/sensors/+/reading")
	})
	if !strings.Contains(mq.Log(), " u'sensors'") {
		t.Errorf("mosquitto did not log the source's login as user sensors:\n%s", mq.Log())
	}
	mq.Publish("sensors/d1/reading", readings("d1", 0, 5)...)
	eventually(t, 30*time.Second, "5 signed deliveries", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= 5
	})
	mu.Lock()
	defer mu.Unlock()
	for i, d := range got {
		mac := hmac.New(sha256.New, []byte(hookKey))
		mac.Write([]byte(d.body))
		if want := "sha256=" + hex.EncodeToString(mac.Sum(nil)); d.sig != want {
			t.Errorf("delivery %d (%s): signature %q, want %q (HMAC with the decrypted key)", i, d.body, d.sig, want)
		}
	}
}
