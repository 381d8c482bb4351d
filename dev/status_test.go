package dev_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/dev"
	"github.com/butterfn/butter/internal/testport"
)

// TestStatusHealthy: once `butter dev` serves a project, the control
// plane reports its active revision healthy, as `butter status` shows it
// (the deployer does that on Nomad; under butter dev there is no Nomad).
func TestStatusHealthy(t *testing.T) {
	dir := project(t, `project "st" {}

function "upper" {
  runtime = "exec"
  command = ["tr", "a-z", "A-Z"]

  trigger "http" {
    route = "POST /upper"
  }
}
`)
	listen, server := testport.Addr(t), testport.Addr(t)
	runDev(t, dev.Config{Dir: dir, ServerAddr: server, Listen: listen})
	resp, err := http.Post("http://"+listen+"/upper", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST /upper: %s", resp.Status)
	}
	client, err := api.NewClient(&api.Config{Address: "http://" + server})
	if err != nil {
		t.Fatal(err)
	}
	// The ready line comes after the deploy recorded its status: no wait.
	st, _, err := client.Projects().Status(context.Background(), "st", nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Active == nil || st.Active.Deployment.Status != api.StatusHealthy || st.Active.Deployment.HealthyAt.IsZero() ||
		!strings.Contains(st.Active.Deployment.Message, "butter dev") {
		t.Fatalf("status of a project butter dev serves: %+v; want its active revision healthy, saying butter dev serves it", st.Active)
	}
}
