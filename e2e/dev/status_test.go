package dev

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/e2e/e2etest"
	"github.com/butterfn/butter/internal/testport"
)

// TestDevStatus: `butter status` against butter dev shows the revision it
// serves as healthy, first the one it started with, then the one a change
// deployed (issue 22: it showed them pending, as no Nomad deployer runs in
// dev).
func TestDevStatus(t *testing.T) {
	dir, _ := writeDevProject(t, "v1")
	server := testport.Addr(t)
	d := startDev(t, exec.Command(e2etest.Bin(), "dev", "-listen", testport.Addr(t), "-server-addr", server, dir))
	// butter dev enforces ACLs and prints its management token.
	m := regexp.MustCompile(`ACL management token: (\S+)`).FindStringSubmatch(d.out.String())
	if m == nil {
		t.Fatalf("butter dev printed no management token:\n%s", d.out.String())
	}
	if r := e2etest.Butter(t, dir, "status", "-address", "http://"+server, "live"); r.Code == 0 || !strings.Contains(r.Stderr, "ACL token required") {
		t.Fatalf("butter status without a token under butter dev: exit %d\n%s%s\nwant ACL token required", r.Code, r.Stdout, r.Stderr)
	}
	status := func(want string) {
		t.Helper()
		r := e2etest.Butter(t, dir, "status", "-address", "http://"+server, "-token", m[1], "live")
		if r.Code != 0 || !strings.Contains(r.Stdout, "Active     "+want+" ") || !regexp.MustCompile(`(?m)^Status +healthy$`).MatchString(r.Stdout) ||
			!strings.Contains(r.Stdout, "butter dev serves it") {
			t.Fatalf("butter status live: exit %d\n%s%s\nwant revision %s healthy", r.Code, r.Stdout, r.Stderr, want)
		}
		r = e2etest.Butter(t, dir, "status", "-address", "http://"+server, "-token", m[1])
		if r.Code != 0 || !regexp.MustCompile(`(?m)^live +`+want+` +healthy `).MatchString(r.Stdout) {
			t.Fatalf("butter status: exit %d\n%s%s\nwant live at %s, healthy", r.Code, r.Stdout, r.Stderr, want)
		}
	}
	first := regexp.MustCompile(`project "live" deployed \(revision ([0-9a-f]+)\)`).FindStringSubmatch(d.out.String())
	if first == nil {
		t.Fatalf("no deployed line:\n%s", d.out.String())
	}
	status(first[1])

	writeGreet(t, dir, "v2")
	served := regexp.MustCompile(`revision ([0-9a-f]+) serving \(deployed in`)
	e2etest.WaitFor(t, 30*time.Second, "the redeploy", func() bool { return served.MatchString(d.out.String()) })
	second := served.FindStringSubmatch(d.out.String())[1]
	if second == first[1] {
		t.Fatalf("the change deployed the same revision %s", second)
	}
	status(second)
	d.interrupt(t)
}
