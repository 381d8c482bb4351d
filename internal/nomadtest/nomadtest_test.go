package nomadtest

import (
	"strings"
	"testing"

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
