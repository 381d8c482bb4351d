package spec_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/butterfn/butter/hcl/spec"
)

const varsSpec = `
variable "broker" {
  description = "the MQTT broker devices publish to; empty leaves the source out"
  default     = ""
}
variable "topic_root" {
  default = "sensors"
}
variable "replicas" {
  default = 2
}
variable "strict" {
  type = bool
}

project "vars" {}

stream "readings" {
  partitions = var.replicas * 3
}

function "f" {
  runtime = "exec"
  command = ["cat", "--${var.topic_root}"]
  timeout = var.strict ? "1s" : "5s"
}

source "mqtt" "in" {
  enabled = var.broker != ""
  stream  = stream.readings
  address = var.broker
  topics  = ["${var.topic_root}/+/reading"]
  key     = 2
}
`

// TestVariables: variable blocks take their defaults, then the values
// file, then the values given (-var, BUTTER_VAR_*), later ones winning;
// var.NAME reads them in any argument, in templates and expressions;
// values convert to the variable's type; a connector whose enabled is
// false is left out and named in Project.Disabled; the environment's
// values for undeclared variables are ignored, a -var's are refused.
func TestVariables(t *testing.T) {
	fsys := fstest.MapFS{"main.fn.hcl": {Data: []byte(varsSpec)}}
	p, rep := spec.LoadFS(fsys, "vars", spec.WithVars(spec.VarValue{Name: "strict", Value: "true", From: "-var"}))
	if p == nil {
		t.Fatalf("load: %s", reportText(rep))
	}
	if len(p.Functions) != 1 || p.Functions[0].Name != "f" {
		t.Fatalf("functions %v, want f alone (the source disabled)", names(p))
	}
	if len(p.Disabled) != 1 || p.Disabled[0] != `source "mqtt" "in"` {
		t.Fatalf("disabled %q, want the mqtt source", p.Disabled)
	}
	f := p.Functions[0]
	if got := strings.Join(f.Command, " "); got != "cat --sensors" {
		t.Errorf("command %q, want the template filled", got)
	}
	if f.Timeout.String() != "1s" {
		t.Errorf("timeout %v, want 1s (strict set to true by -var)", f.Timeout)
	}
	if p.Streams[0].Partitions != 6 {
		t.Errorf("partitions %d, want 6 (the number default times 3)", p.Streams[0].Partitions)
	}
	want := map[string]string{"broker": "", "topic_root": "sensors", "replicas": "2", "strict": "true"}
	if len(p.Vars) != len(want) {
		t.Fatalf("vars %+v, want %v", p.Vars, want)
	}
	for _, v := range p.Vars {
		if want[v.Name] != v.Value {
			t.Errorf("var %s = %q, want %q", v.Name, v.Value, want[v.Name])
		}
	}

	// The values file, then the environment, then -var.
	fsys[spec.ValuesFile] = &fstest.MapFile{Data: []byte("broker = \"tcp://127.0.0.1:1883\"\ntopic_root = \"file\"\nstrict = false\n")}
	env := spec.VarsFromEnv([]string{"BUTTER_VAR_topic_root=env", "BUTTER_VAR_other_project=x", "HOME=/root", "BUTTER_VAR_replicas=4"})
	if len(env) != 3 || !env[0].Optional {
		t.Fatalf("VarsFromEnv = %+v, want the three BUTTER_VAR_ values, optional", env)
	}
	flag, err := spec.ParseVarFlag("topic_root=flag")
	if err != nil {
		t.Fatal(err)
	}
	p, rep = spec.LoadFS(fsys, "vars", spec.WithVars(env...), spec.WithVars(flag))
	if p == nil {
		t.Fatalf("load with values: %s", reportText(rep))
	}
	if len(p.Functions) != 2 || len(p.Disabled) != 0 {
		t.Fatalf("functions %v disabled %q, want f and the enabled source", names(p), p.Disabled)
	}
	src := p.Functions[1]
	if src.Name != "in" || src.Options["address"] != "tcp://127.0.0.1:1883" || !strings.Contains(src.Options["topics"], "flag/+/reading") {
		t.Errorf("source %s options %v, want the file's address and -var's topic root", src.Name, src.Options)
	}
	if p.Streams[0].Partitions != 12 {
		t.Errorf("partitions %d, want 12 (BUTTER_VAR_replicas=4)", p.Streams[0].Partitions)
	}
	for _, v := range p.Vars {
		if v.Name == "topic_root" && (v.Value != "flag" || v.Set != "-var") {
			t.Errorf("topic_root %+v, want flag from -var", v)
		}
		if v.Name == "strict" && (v.Value != "false" || v.Set != spec.ValuesFile) {
			t.Errorf("strict %+v, want false from the values file", v)
		}
	}

	// Refusals: a -var for an undeclared variable; a value of the wrong type.
	for _, c := range []struct {
		v    spec.VarValue
		want string
	}{
		{spec.VarValue{Name: "brokr", Value: "x", From: "-var"}, `-var sets variable "brokr", which no variable block declares. Did you mean "broker"?`},
		{spec.VarValue{Name: "replicas", Value: "many", From: "-var"}, `-var sets variable "replicas" to "many", and it is a number`},
	} {
		_, rep := spec.LoadFS(fsys, "vars", spec.WithVars(c.v))
		if !rep.HasErrors() || !strings.Contains(reportText(rep), c.want) {
			t.Errorf("-var %s=%s: %s, want an error saying %q", c.v.Name, c.v.Value, reportText(rep), c.want)
		}
	}
	if _, err := spec.ParseVarFlag("novalue"); err == nil || !strings.Contains(err.Error(), "NAME=VALUE") {
		t.Errorf("ParseVarFlag(novalue) = %v, want the form explained", err)
	}

	// A -var-file reads like the values file.
	path := filepath.Join(t.TempDir(), "prod.vars.hcl")
	if err := os.WriteFile(path, []byte("broker = \"tcp://mqtt.prod:1883\"\nreplicas = 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	vals, err := spec.ReadVarFile(path)
	if err != nil || len(vals) != 2 || vals[0].Value != "tcp://mqtt.prod:1883" || vals[1].Value != "5" {
		t.Fatalf("ReadVarFile = %+v, %v", vals, err)
	}
	if err := os.WriteFile(path, []byte("broker = [1]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := spec.ReadVarFile(path); err == nil || !strings.Contains(err.Error(), "a string, a number or a bool") {
		t.Errorf("ReadVarFile of a list = %v, want a refusal", err)
	}
}

func reportText(r *spec.Report) string {
	var b strings.Builder
	_ = r.WriteText(&b)
	return b.String()
}

func names(p *spec.Project) []string {
	var out []string
	for _, f := range p.Functions {
		out = append(out, f.Name)
	}
	return out
}
