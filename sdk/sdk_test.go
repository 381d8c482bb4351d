package sdk

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestInstallByVersion: the SDKs go to a subdirectory named by their
// content's digest, so two butter versions on one machine never write
// over each other's workers; installing the same version again gives the
// same paths and the embedded files.
func TestInstallByVersion(t *testing.T) {
	dir := t.TempDir()
	s, err := Install(dir)
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(dir, s.Python)
	if err != nil || !regexp.MustCompile(`^[0-9a-f]{16}/python/butter_worker\.py$`).MatchString(filepath.ToSlash(rel)) {
		t.Fatalf("python worker at %s (%v), want <dir>/<16 hex>/python/butter_worker.py", s.Python, err)
	}
	want, _ := files.ReadFile("python/butter_worker.py")
	if got, err := os.ReadFile(s.Python); err != nil || string(got) != string(want) {
		t.Fatalf("installed worker differs from the embedded one (%v)", err)
	}
	again, err := Install(dir)
	if err != nil || again.Python != s.Python || again.Node != s.Node || again.GoSDK != s.GoSDK {
		t.Fatalf("second install: %+v (%v), want the same paths as %+v", again, err, s)
	}
}
