package schedtest

import (
	"testing"
	"time"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/internal/testport"
	"github.com/butterfn/butter/scheduler"
	"github.com/hashicorp/raft"
)

// Single runs a real single-node control plane on real Raft stores and
// TCP transport (as `butter dev` does), with nomad as its deployer's Nomad
// (nil runs no deployer), and returns it with a client of its API once it
// leads. The server is closed when the test ends.
func Single(t testing.TB, nomad scheduler.Nomad) (*scheduler.Server, *api.Client) {
	t.Helper()
	return SingleConfig(t, scheduler.Config{Nomad: nomad})
}

// SingleConfig is Single with cfg's settings (its limits, its Nomad, its
// data dir when set, else a temporary one); the addresses and Alone are
// Single's.
func SingleConfig(t testing.TB, cfg scheduler.Config) (*scheduler.Server, *api.Client) {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	cfg.HTTPAddr, cfg.RaftAddr, cfg.Alone = testport.Addr(t), testport.Addr(t), true
	s, err := scheduler.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	deadline := time.Now().Add(30 * time.Second)
	for s.Raft().State() != raft.Leader {
		if time.Now().After(deadline) {
			t.Fatal("the single node did not lead within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c, err := api.NewClient(&api.Config{Address: "http://" + s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}
