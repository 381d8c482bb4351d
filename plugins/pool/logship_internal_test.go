package pool

import "testing"

// TestLineLevel: a line's level is its hclog-style prefix, info without
// one or with a prefix that is not a level.
func TestLineLevel(t *testing.T) {
	for line, want := range map[string]string{
		"[WARN] disk almost full\n": "warn",
		"[ERROR] boom":              "error",
		"[warning] lower case":      "warn",
		"[DEBUG] x":                 "debug",
		"[TRACE] x":                 "trace",
		"plain line":                "info",
		"[not a level] x":           "info",
		"[]":                        "info",
		"":                          "info",
	} {
		if got := lineLevel([]byte(line)); got != want {
			t.Errorf("lineLevel(%q) = %q, want %q", line, got, want)
		}
	}
}
