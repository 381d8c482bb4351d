package nomadtest

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
)

// TestACL starts a dev agent with ACLs enabled and bootstrapped: an
// anonymous client is refused, the management token may do anything (and
// reaches the CLI through Run), and a token made by Token has its
// policy's rights and no more.
func TestACL(t *testing.T) {
	a := StartWith(t, Options{ACL: true})
	if a.ManagementToken == "" {
		t.Fatal("no management token")
	}
	anon, err := api.NewClient(&api.Config{Address: a.Addr})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := anon.Jobs().List(nil); err == nil || !strings.Contains(err.Error(), "Permission denied") {
		t.Errorf("anonymous job list: %v, want Permission denied", err)
	}
	if _, _, err := a.Client.Jobs().List(nil); err != nil {
		t.Errorf("job list with the management token: %v", err)
	}
	if out, code := a.Run(t, "acl", "token", "self"); code != 0 || !strings.Contains(out, "management") {
		t.Errorf("nomad acl token self: exit %d\n%s", code, out)
	}

	secret := a.Token(t, "reader", `namespace "default" { policy = "read" }`)
	reader, err := api.NewClient(&api.Config{Address: a.Addr, SecretID: secret})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := reader.Jobs().List(nil); err != nil {
		t.Errorf("job list with the read token: %v", err)
	}
	job := api.NewBatchJob("x", "x", "global", 50)
	job.Datacenters = []string{"*"}
	tg := api.NewTaskGroup("g", 1)
	tg.AddTask(api.NewTask("t", "raw_exec"))
	job.AddTaskGroup(tg)
	if _, _, err := reader.Jobs().Register(job, nil); err == nil || !strings.Contains(err.Error(), "Permission denied") {
		t.Errorf("register with the read token: %v, want Permission denied", err)
	}
}

// TestCluster starts a server and three clients, runs a raw_exec job of
// three allocations spread over the nodes, kills a node that runs one,
// and waits until the server marks it down and replaces its allocation on
// a surviving node.
func TestCluster(t *testing.T) {
	a := StartCluster(t, ClusterOptions{Clients: 3, Options: Options{HCL: `
plugin "raw_exec" {
  config {
    enabled = true
  }
}
`}})
	nodes := a.Nodes(t)
	if len(nodes) != 3 {
		t.Fatalf("%d nodes, want 3", len(nodes))
	}
	job := api.NewServiceJob("spread", "spread", "global", 50)
	job.Datacenters = []string{"*"}
	tg := api.NewTaskGroup("g", 3)
	tg.Spreads = []*api.Spread{{Attribute: "${node.unique.id}", Weight: new(int8(100))}}
	task := api.NewTask("t", "raw_exec")
	task.Config = map[string]any{"command": "/bin/sleep", "args": []string{"600"}}
	tg.AddTask(task)
	job.AddTaskGroup(tg)
	if _, _, err := a.Client.Jobs().Register(job, nil); err != nil {
		t.Fatal(err)
	}
	onNodes := func() map[string]int {
		per := map[string]int{}
		for _, al := range a.RunningAllocs(t, "spread", "g") {
			per[al.NodeID]++
		}
		return per
	}
	WaitFor(t, 90*time.Second, "three allocations on three nodes", func() bool { return len(onNodes()) == 3 })
	victim := nodes[1]
	a.KillNode(t, victim.Name)
	start := time.Now()
	WaitFor(t, 60*time.Second, "the killed node marked down", func() bool {
		n, _, err := a.Client.Nodes().Info(victim.ID, nil)
		return err == nil && n.Status == api.NodeStatusDown
	})
	t.Logf("node down %v after the kill", time.Since(start).Round(100*time.Millisecond))
	WaitFor(t, 60*time.Second, "three allocations on the two surviving nodes", func() bool {
		per := onNodes()
		n := 0
		for id, c := range per {
			if id == victim.ID {
				return false
			}
			n += c
		}
		return n == 3
	})
	t.Logf("replaced %v after the kill", time.Since(start).Round(100*time.Millisecond))
}
