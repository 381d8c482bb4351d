package dev_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/butterfn/butter/dev"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/internal/testport"
)

// TestVariablesInDev: butter dev loads the project with the variables it
// is given (here -var's, as the CLI passes them), and loads it again with
// them on every change: an edit of the project's butter.vars.hcl, which
// the -var does not set, redeploys with the new value.
func TestVariablesInDev(t *testing.T) {
	dir := project(t, `project "vars" {}

variable "path" {
  default = "/default"
}

variable "word" {
  default = "x"
}

function "echo" {
  runtime = "exec"
  command = ["sh", "-c", "printf '%s:' \"$0\"; cat", var.word]

  trigger "http" {
    route = "POST ${var.path}"
  }
}
`)
	listen := testport.Addr(t)
	ui := runDev(t, dev.Config{Dir: dir, Listen: listen,
		Vars: []spec.LoadOption{spec.WithVars(spec.VarValue{Name: "path", Value: "/given", From: "-var"})}}).ui
	if code, body := post(t, "http://"+listen+"/given", "hi"); code != 200 || body != "x:hi" {
		t.Fatalf("POST /given: %d %q, want the -var's route answering x:hi", code, body)
	}
	if err := os.WriteFile(filepath.Join(dir, spec.ValuesFile), []byte("word = \"y\"\npath = \"/file\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The values file changes word; path stays the -var's, which wins.
	waitFor(t, ui, time.Minute, "the redeploy with word = y", func() bool {
		code, body := post(t, "http://"+listen+"/given", "hi")
		return code == 200 && body == "y:hi"
	})
	if code, _ := post(t, "http://"+listen+"/file", "hi"); code != 404 {
		t.Errorf("POST /file answered %d: the values file's path won over -var", code)
	}
}
