package dev_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/butterfn/butter/dev"
	"github.com/butterfn/butter/internal/testport"
)

// TestOpenFaaSUnderDev: butter dev -openfaas serves OpenFaaS's API
// without auth, a bare name being a function of the dev project, and
// lists the project's functions with the running revision; without
// -openfaas, /function/ is 404.
func TestOpenFaaSUnderDev(t *testing.T) {
	spec := `project "faas" {}

function "upper" {
  runtime = "exec"
  command = ["tr", "a-z", "A-Z"]
}
`
	listen := testport.Addr(t)
	runDev(t, dev.Config{Dir: project(t, spec), Listen: listen, OpenFaaS: true})
	for _, path := range []string{"/function/upper/x?y=1", "/function/upper.faas"} {
		resp, err := http.Post("http://"+listen+path, "text/plain", strings.NewReader("shout"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "SHOUT" {
			t.Errorf("POST %s: %s %q", path, resp.Status, body)
		}
	}
	resp, err := http.Get("http://" + listen + "/system/functions")
	if err != nil {
		t.Fatal(err)
	}
	var list []struct {
		Name, Namespace, Image, EnvProcess string
		AvailableReplicas                  int `json:"availableReplicas"`
		InvocationCount                    int `json:"invocationCount"`
	}
	err = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if err != nil || len(list) != 1 {
		t.Fatalf("GET /system/functions: %v %+v", err, list)
	}
	f := list[0]
	if f.Name != "upper" || f.Namespace != "faas" || !strings.HasPrefix(f.Image, "faas/upper:") || len(f.Image) == len("faas/upper:") ||
		f.EnvProcess != "tr a-z A-Z" || f.AvailableReplicas != 1 || f.InvocationCount != 2 {
		t.Errorf("the function listed: %+v", f)
	}

	off := testport.Addr(t)
	runDev(t, dev.Config{Dir: project(t, spec), Listen: off})
	resp, err = http.Post("http://"+off+"/function/upper", "text/plain", strings.NewReader("shout"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("without -openfaas, POST /function/upper: %s, want 404", resp.Status)
	}
}
