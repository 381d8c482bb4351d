package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestVanishedPath is the race Confine retries: a path listed by Grants
// that is gone when Landlock opens it. go-landlock reports it as an open
// error; vanished must recognise it (and nothing else).
func TestVanishedPath(t *testing.T) {
	_, err := os.Open(filepath.Join(t.TempDir(), "gone"))
	if !vanished(fmt.Errorf("populating ruleset: %w", err)) {
		t.Errorf("vanished(%v) = false", err)
	}
	if vanished(errors.New("permission denied")) {
		t.Error("vanished(permission denied) = true")
	}
}
