package gateway_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/gateway"
	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/hashicorp/nomad/api"
)

// TestNomadResolver follows a pool's Nomad-native service on a real Nomad
// dev agent: the endpoints appear when an allocation registers the
// service and go when the job stops, each within one blocking query.
func TestNomadResolver(t *testing.T) {
	agent := nomadtest.Start(t)
	r := gateway.NewNomadResolver(agent.Client, nil)
	t.Cleanup(r.Close)
	if eps := r.Endpoints("test", "web"); len(eps) != 0 {
		t.Fatalf("endpoints before any job: %v", eps)
	}

	// A stand-in for a pool: a raw_exec task with the service a pool's
	// task group registers (names.ServiceName).
	job := api.NewServiceJob("butter-test", "butter-test", "global", 50)
	job.Datacenters = []string{"*"}
	tg := api.NewTaskGroup("web", 1)
	tg.Networks = []*api.NetworkResource{{DynamicPorts: []api.Port{{Label: "invoke"}}}}
	tg.Services = []*api.Service{{Name: "butter-test-web", PortLabel: "invoke", Provider: "nomad"}}
	task := api.NewTask("pool", "raw_exec")
	task.Config = map[string]any{"command": "/bin/sleep", "args": []string{"600"}}
	tg.AddTask(task)
	job.AddTaskGroup(tg)
	if _, _, err := agent.Client.Jobs().Register(job, nil); err != nil {
		t.Fatal(err)
	}
	var eps []string
	eventually(t, 60*time.Second, "the service's endpoint", func() bool {
		eps = r.Endpoints("test", "web")
		return len(eps) == 1
	})
	if !strings.Contains(eps[0], ":") || strings.HasSuffix(eps[0], ":0") {
		t.Errorf("endpoint %q is not host:port", eps[0])
	}
	regs, _, err := agent.Client.Services().Get("butter-test-web", nil)
	if err != nil || len(regs) != 1 {
		t.Fatalf("the service in Nomad: %v %v", regs, err)
	}
	if want := regs[0].Address + ":" + strconv.Itoa(regs[0].Port); !slices.Equal(eps, []string{want}) {
		t.Errorf("endpoints %v, want %s", eps, want)
	}
	if _, _, err := agent.Client.Jobs().Deregister("butter-test", true, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "no endpoint once the job stopped", func() bool {
		return len(r.Endpoints("test", "web")) == 0
	})
}
