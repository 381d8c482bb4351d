package main

import (
	"flag"
	"io"
	"strings"
)

// parseInterspersed parses flags that may come before or after positional
// arguments, as in `butter job render ./fns -format json`. It returns the
// positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// newFlagSet returns a flag set that reports errors without printing the
// usage twice: commands print their own help on a usage error.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// trimHelp removes the leading newline of a raw help string.
func trimHelp(s string) string { return strings.TrimSpace(s) }
