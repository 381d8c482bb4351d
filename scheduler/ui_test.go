package scheduler_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/butterfn/butter/scheduler"
	"github.com/butterfn/butter/scheduler/schedtest"
)

// TestUIAssets: the web UI's assets are served under /ui/ without a
// token (they hold no data), with a Content-Security-Policy that allows
// only the page's own scripts, styles and API; / redirects to it; the
// API behind it still wants a token.
func TestUIAssets(t *testing.T) {
	s, _ := schedtest.SingleConfig(t, scheduler.Config{ACL: true})
	base := "http://" + s.Addr()
	for path, want := range map[string]string{
		"/ui/":          `<script src="app.js" defer></script>`,
		"/ui/app.js":    "X-Butter-Token",
		"/ui/style.css": ".fn-block",
		"/":             `<main id="view">`,
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("GET %s: %s, want 200 with %q", path, resp.Status, want)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
	resp, err := http.Get(base + "/v1/projects")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("the API without a token: %s, want 403", resp.Status)
	}
}
