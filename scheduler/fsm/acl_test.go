package fsm_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/hashicorp/raft"
)

// TestACLCommands: bootstrap works once (a second is refused, whatever
// the leader sent), a token may name only existing policies, deletes of
// what does not exist are refused, the blob key is set once; every refusal
// changes nothing. A snapshot keeps the ACL state, as a copy.
func TestACLCommands(t *testing.T) {
	f := fsm.New()
	var index uint64
	apply := func(typ fsm.MessageType, v any) error {
		t.Helper()
		index++
		err, _ := f.Apply(&raft.Log{Index: index, Data: entry(t, typ, v)}).(error)
		return err
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	root := fsm.ACLToken{AccessorID: "a1", SecretHash: "h1", Type: fsm.TokenManagement, Created: now}
	if err := apply(fsm.ACLBootstrapType, root); err != nil {
		t.Fatal(err)
	}
	second := fsm.ACLToken{AccessorID: "a2", SecretHash: "h2", Type: fsm.TokenManagement}
	if err := apply(fsm.ACLBootstrapType, second); !errors.Is(err, fsm.ErrACLBootstrapped) {
		t.Fatalf("second bootstrap: %v, want ErrACLBootstrapped", err)
	}
	if err := apply(fsm.ACLTokenUpsertType, fsm.ACLToken{AccessorID: "a3", SecretHash: "h3", Type: fsm.TokenClient, Policies: []string{"nope"}}); err == nil || !strings.Contains(err.Error(), `no policy "nope"`) {
		t.Fatalf("token of a missing policy: %v", err)
	}
	if err := apply(fsm.ACLPolicyUpsertType, fsm.ACLPolicy{Name: "read", Rules: `project "*" { capabilities = ["read"] }`, Created: now}); err != nil {
		t.Fatal(err)
	}
	// Replacing a policy keeps its creation time.
	if err := apply(fsm.ACLPolicyUpsertType, fsm.ACLPolicy{Name: "read", Rules: `project "*" { capabilities = ["read"] }`, Created: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := apply(fsm.ACLTokenUpsertType, fsm.ACLToken{AccessorID: "a3", SecretHash: "h3", Type: fsm.TokenClient, Policies: []string{"read"}}); err != nil {
		t.Fatal(err)
	}
	for what, err := range map[string]error{
		"delete a missing token":  apply(fsm.ACLTokenDeleteType, fsm.ACLToken{AccessorID: "zz"}),
		"delete a missing policy": apply(fsm.ACLPolicyDeleteType, fsm.ACLPolicy{Name: "zz"}),
		"a token without a hash":  apply(fsm.ACLTokenUpsertType, fsm.ACLToken{AccessorID: "a4"}),
		"an empty blob key":       apply(fsm.BlobKeySetType, fsm.BlobKey{}),
	} {
		if err == nil {
			t.Errorf("%s: accepted", what)
		}
	}
	if err := apply(fsm.BlobKeySetType, fsm.BlobKey{Key: "k1"}); err != nil {
		t.Fatal(err)
	}
	if err := apply(fsm.BlobKeySetType, fsm.BlobKey{Key: "k2"}); err == nil {
		t.Error("a second blob key: accepted")
	}
	f.Read(func(s *fsm.State) {
		if len(s.ACLTokens) != 2 || s.ACLTokens["a2"] != nil || !s.ACLBootstrapped || s.BlobKey != "k1" {
			t.Errorf("state after refusals: tokens %v bootstrapped %v key %q", s.ACLTokens, s.ACLBootstrapped, s.BlobKey)
		}
		if !s.ACLPolicies["read"].Created.Equal(now) {
			t.Errorf("policy created %v, want %v", s.ACLPolicies["read"].Created, now)
		}
		if tok := s.TokenBySecretHash("h3"); tok == nil || tok.AccessorID != "a3" {
			t.Errorf("TokenBySecretHash(h3) = %+v", tok)
		}
		if s.TokenBySecretHash("h9") != nil {
			t.Error("TokenBySecretHash found a hash nobody has")
		}
	})

	// A snapshot is a copy and restores the ACL state.
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := apply(fsm.ACLTokenDeleteType, fsm.ACLToken{AccessorID: "a3"}); err != nil {
		t.Fatal(err)
	}
	if err := apply(fsm.ACLPolicyDeleteType, fsm.ACLPolicy{Name: "read"}); err != nil {
		t.Fatal(err)
	}
	store := raft.NewInmemSnapshotStore()
	sink, err := store.Create(raft.SnapshotVersionMax, index, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	_, rc, err := store.Open(sink.ID())
	if err != nil {
		t.Fatal(err)
	}
	g := fsm.New()
	if err := g.Restore(rc); err != nil {
		t.Fatal(err)
	}
	g.Read(func(s *fsm.State) {
		if !s.ACLBootstrapped || s.BlobKey != "k1" || s.ACLTokens["a3"] == nil || s.ACLPolicies["read"] == nil || s.ACLTokens["a3"].Policies[0] != "read" {
			t.Errorf("restored ACL state: %+v %+v", s.ACLTokens, s.ACLPolicies)
		}
	})
}
