package vaulttest_test

import (
	"testing"

	"github.com/butterfn/butter/internal/vaulttest"
)

// TestStart starts a dev server and uses it: a KV v2 write and read with
// the root token.
func TestStart(t *testing.T) {
	s := vaulttest.Start(t)
	if s.Addr == "" || s.RootToken == "" {
		t.Fatalf("server %+v", s)
	}
	kv := s.Client.KVv2("secret")
	if _, err := kv.Put(t.Context(), "butter/test", map[string]any{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	got, err := kv.Get(t.Context(), "butter/test")
	if err != nil {
		t.Fatal(err)
	}
	if got.Data["k"] != "v" {
		t.Errorf("read back %v", got.Data)
	}
	h, err := s.Client.Sys().Health()
	if err != nil || h.Sealed || !h.Initialized {
		t.Errorf("health %+v %v", h, err)
	}
}
