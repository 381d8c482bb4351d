package main

import (
	"flag"
	"io"
	"strings"

	"github.com/butterfn/butter/hcl/spec"
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

// varFlags are the -var and -var-file flags of the commands that load
// specs, in the order given.
type varFlags struct{ vals []spec.VarValue }

// varHelp documents varFlags in a command's help.
const varHelp = `
  -var NAME=VALUE
    Set a variable the specs declare (a variable block), read as var.NAME.
    Repeatable; later values win. BUTTER_VAR_NAME in the environment sets
    one too, below -var-file and -var; the project's butter.vars.hcl
    below those, and the variable's default below all.

  -var-file FILE
    Set variables from a file of NAME = value lines. Repeatable.
`

func addVarFlags(fs *flag.FlagSet) *varFlags {
	v := &varFlags{}
	fs.Func("var", "", func(s string) error {
		val, err := spec.ParseVarFlag(s)
		if err != nil {
			return err
		}
		v.vals = append(v.vals, val)
		return nil
	})
	fs.Func("var-file", "", func(s string) error {
		vals, err := spec.ReadVarFile(s)
		if err != nil {
			return err
		}
		v.vals = append(v.vals, vals...)
		return nil
	})
	return v
}

// options are the spec load options: the environment's values, then the
// flags'.
func (v *varFlags) options() []spec.LoadOption {
	return []spec.LoadOption{spec.WithVars(spec.VarsFromEnv(nil)...), spec.WithVars(v.vals...)}
}
