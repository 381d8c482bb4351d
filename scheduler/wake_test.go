package scheduler_test

import (
	"context"
	"strings"
	"testing"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/scheduler/schedtest"
)

// TestWakeWithoutAutoscaler: a leader that runs no autoscaler answers a
// wake 503, saying so and what to do instead; a bad pool name is a 400.
// (A wake that scales a pool: autoscaler TestWakeOnNomad; the route's ACL:
// TestACLWalkEveryRoute.)
func TestWakeWithoutAutoscaler(t *testing.T) {
	c := schedtest.MakeCluster(t, schedtest.Options{Nodes: 1, NoTimers: true})
	cl, err := api.NewClient(&api.Config{Address: "http://" + c.Leader().Server.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	err = cl.Projects().Wake(context.Background(), "p", "main", 1)
	if api.StatusCode(err) != 503 || !strings.Contains(err.Error(), "no autoscaler runs on the leader") || !strings.Contains(err.Error(), "nomad job scale") {
		t.Errorf("wake without an autoscaler: %v; want 503 naming it", err)
	}
	if err := cl.Projects().Wake(context.Background(), "p", "Bad_Pool", 1); api.StatusCode(err) != 400 || !strings.Contains(err.Error(), "pool name") {
		t.Errorf("wake of a bad pool name: %v; want 400", err)
	}
}
