package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/cli"
)

// TestACLPolicyApplyChecksTheFile: `butter acl policy apply` refuses a
// policy file with an unknown block or capability before it calls the
// control plane (the address given answers nothing), naming the file's
// line and column and the valid choices; and the token flags are checked
// before any call.
func TestACLPolicyApplyChecksTheFile(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ text, want string }{
		{"project \"iot\" {\n  capabilities = [\"deploy\", \"rule\"]\n}\n", ":2:"},
		{"namespace \"x\" {}\n", ":1:1"},
	} {
		file := filepath.Join(dir, "p.hcl")
		if err := os.WriteFile(file, []byte(c.text), 0o644); err != nil {
			t.Fatal(err)
		}
		ui := cli.NewMockUi()
		code := (&aclPolicyApplyCommand{ui: ui}).Run([]string{"-address", "http://127.0.0.1:1", "p", file})
		if out := ui.ErrorWriter.String(); code != exitInvalid || !strings.Contains(out, file+c.want) || !strings.Contains(out, "not applied") {
			t.Errorf("apply of %q: exit %d\n%s\nwant exit 1 naming %s%s", c.text, code, out, file, c.want)
		}
	}
	for _, args := range [][]string{
		{"-name", "x"},                         // a client token without a policy
		{"-policy", "p", "-ttl", "soon"},       // not a duration
		{"-policy", "p", "-type", "root"},      // no such type
		{"-type", "management", "-ttl", "-1h"}, // negative
	} {
		ui := cli.NewMockUi()
		if code := (&aclTokenCreateCommand{ui: ui}).Run(append([]string{"-address", "http://127.0.0.1:1"}, args...)); code != exitUsage {
			t.Errorf("token create %q: exit %d, want %d\n%s", args, code, exitUsage, ui.ErrorWriter.String())
		}
	}
}
