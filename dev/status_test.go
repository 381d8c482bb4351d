package dev_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

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
	ui := &lines{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- dev.Run(ctx, dev.Config{Dir: dir, DataDir: t.TempDir(), ServerAddr: server, Listen: listen, UI: ui, Diagnostics: io.Discard})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Error("Run did not return within a minute of its context ending")
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(ui.text(), "butter dev ready") {
		select {
		case err := <-done:
			t.Fatalf("Run returned before ready: %v\n%s", err, ui.text())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within 2 minutes:\n%s", ui.text())
		}
		time.Sleep(20 * time.Millisecond)
	}
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
