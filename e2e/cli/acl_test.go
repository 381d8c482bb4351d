package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/butterfn/butter/e2e/e2etest"
)

// TestACLCommands drives the control plane's ACLs through the real binary
// against a real `butter server -acl=true`: bootstrap once (a second one
// is refused), a policy file with an unknown capability refused at
// file:line:col, policy apply, token create; then butter deploy is
// refused without a token, refused with another project's token (naming
// the capability and project it needs), accepted with the right one (from
// -token, and from $BUTTER_TOKEN), and refused again once that token is
// deleted.
func TestACLCommands(t *testing.T) {
	s := e2etest.StartServer(t, "-acl=true")
	addr := "http://" + s.HTTP
	tmp := t.TempDir()
	butter := func(args ...string) e2etest.Result {
		t.Helper()
		return e2etest.Butter(t, tmp, append(args[:1:1], append([]string{"-address", addr}, args[1:]...)...)...)
	}
	// "acl bootstrap" is two words: put the flags after them.
	acl := func(words int, args ...string) e2etest.Result {
		t.Helper()
		cmd := append([]string{}, args[:words]...)
		cmd = append(cmd, "-address", addr)
		return e2etest.Butter(t, tmp, append(cmd, args[words:]...)...)
	}
	secretRE := regexp.MustCompile(`(?m)^Secret ID +=\s*(\S+)$`)
	secretOf := func(r e2etest.Result) string {
		t.Helper()
		m := secretRE.FindStringSubmatch(r.Stdout)
		if r.Code != 0 || m == nil {
			t.Fatalf("no secret printed: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		return m[1]
	}
	boot := acl(2, "acl", "bootstrap")
	mgmt := secretOf(boot)
	if !strings.Contains(boot.Stdout, "Type         = management") {
		t.Errorf("bootstrap output:\n%s", boot.Stdout)
	}
	if r := acl(2, "acl", "bootstrap"); r.Code != 1 || !strings.Contains(r.Stderr, "ACL bootstrap already done") {
		t.Fatalf("second bootstrap: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	write := func(name, text string) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bad := write("bad.hcl", "project \"hello\" {\n  capabilities = [\"deploy\", \"launch\"]\n}\n")
	if r := acl(3, "acl", "policy", "apply", "-token", mgmt, "bad", bad); r.Code != 1 || !strings.Contains(r.Stderr, bad+":2:") || !strings.Contains(r.Stderr, `"launch"`) || !strings.Contains(r.Stderr, `"deploy"`) {
		t.Fatalf("policy with an unknown capability: exit %d\n%s%s\nwant it to name %s:2:col, the capability and the valid ones", r.Code, r.Stdout, r.Stderr, bad)
	}
	if r := acl(3, "acl", "policy", "list", "-token", mgmt); r.Code != 0 || strings.Contains(r.Stdout, "bad") {
		t.Fatalf("policy list after a refused apply: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	for name, text := range map[string]string{
		"hello-deploy": `project "hello" { capabilities = ["deploy", "read"] }`,
		"other-deploy": `project "other" { capabilities = ["deploy", "read"] }`,
	} {
		if r := acl(3, "acl", "policy", "apply", "-token", mgmt, "-description", "test", name, write(name+".hcl", text)); r.Code != 0 {
			t.Fatalf("policy apply %s: exit %d\n%s%s", name, r.Code, r.Stdout, r.Stderr)
		}
	}
	if r := acl(3, "acl", "policy", "info", "-token", mgmt, "hello-deploy"); r.Code != 0 || !strings.Contains(r.Stdout, `project "hello"`) {
		t.Fatalf("policy info: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	right := secretOf(acl(3, "acl", "token", "create", "-token", mgmt, "-name", "deployer", "-policy", "hello-deploy", "-ttl", "1h"))
	wrong := secretOf(acl(3, "acl", "token", "create", "-token", mgmt, "-name", "intruder", "-policy", "other-deploy"))
	if r := acl(3, "acl", "token", "create", "-token", right, "-name", "x", "-policy", "hello-deploy"); r.Code != 1 || !strings.Contains(r.Stderr, "management") {
		t.Fatalf("a client token creating a token: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	dir := filepath.Join(tmp, "hello")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(e2etest.Root(), "examples", "hello"))); err != nil {
		t.Fatal(err)
	}
	if r := butter("deploy", dir); r.Code != 1 || !strings.Contains(r.Stderr, "ACL token required") {
		t.Fatalf("deploy without a token: exit %d\n%s%s\nwant ACL token required", r.Code, r.Stdout, r.Stderr)
	}
	if r := butter("deploy", "-token", wrong, dir); r.Code != 1 || !strings.Contains(r.Stderr, `"deploy" on project "hello"`) {
		t.Fatalf("deploy with another project's token: exit %d\n%s%s\nwant a refusal naming deploy on project hello", r.Code, r.Stdout, r.Stderr)
	}
	if r := butter("deploy", "-token", "not-a-token", dir); r.Code != 1 || !strings.Contains(r.Stderr, "malformed ACL token") {
		t.Fatalf("deploy with a malformed token: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := butter("deploy", "-token", right, dir); r.Code != 0 || !strings.Contains(r.Stdout, "(new)") {
		t.Fatalf("deploy with the right token: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	// $BUTTER_TOKEN works as -token does.
	cmd := exec.Command(e2etest.Bin(), "status", "-address", addr, "hello")
	cmd.Dir, cmd.Env = tmp, append(os.Environ(), "BUTTER_TOKEN="+right)
	if r := e2etest.Run(t, cmd); r.Code != 0 || !strings.Contains(r.Stdout, "hello") {
		t.Fatalf("status with $BUTTER_TOKEN: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	self := acl(3, "acl", "token", "self", "-token", right)
	accessor := regexp.MustCompile(`(?m)^Accessor ID +=\s*(\S+)$`).FindStringSubmatch(self.Stdout)
	if self.Code != 0 || accessor == nil || !strings.Contains(self.Stdout, "deployer") || strings.Contains(self.Stdout, right) {
		t.Fatalf("token self: exit %d\n%s%s\nwant the token's accessor and name, not its secret", self.Code, self.Stdout, self.Stderr)
	}
	if r := acl(3, "acl", "token", "list", "-token", mgmt); r.Code != 0 || !strings.Contains(r.Stdout, accessor[1]) || strings.Contains(r.Stdout, right) {
		t.Fatalf("token list: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := acl(3, "acl", "token", "delete", "-token", mgmt, accessor[1]); r.Code != 0 {
		t.Fatalf("token delete: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := butter("status", "-token", right, "hello"); r.Code != 1 || !strings.Contains(r.Stderr, "ACL token not found") {
		t.Fatalf("status with a deleted token: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := acl(3, "acl", "policy", "delete", "-token", mgmt, "other-deploy"); r.Code != 0 {
		t.Fatalf("policy delete: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}
