// Package secrets gives each function the values of the secrets it
// declares, and nothing else.
//
// A function declares a secret in its spec (secret "DB_PASSWORD" { vault =
// "secret/data/butter/iot/db#password" }); the pool asks a Source for the
// declared values when it starts the function's instances, and hands them
// to those instances only, as environment variables. Where the values come
// from is the Source's business:
//
//   - under Nomad, Nomad's template runner reads them from Vault with the
//     task's workload identity and renders one JSON file per function into
//     the task's secrets directory (Rendered reads those files);
//   - in `butter dev` and `butter invoke --local`, from a local dotenv file
//     (Dotenv) or the environment (Env), chained (Chain).
//
// A Source never returns an empty value for a declared secret: a missing
// one is an error naming the secret and where it was looked for, so no
// function starts with an empty secret. Values are never logged.
package secrets

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Ref is one declared secret: the environment variable the function sees
// and where the value lives in Vault.
type Ref struct {
	Name string `json:"name" codec:"name"`
	// Path and Key locate the value in Vault (vault = "path#key").
	Path string `json:"path" codec:"path"`
	Key  string `json:"key" codec:"key"`
}

// String is the reference as the spec writes it, never the value.
func (r Ref) String() string { return r.Path + "#" + r.Key }

// Source looks up secret values.
type Source interface {
	// Values returns the value of each of function's refs, by Name. It
	// fails, naming the secret, if any is missing or empty.
	Values(function string, refs []Ref) (map[string]string, error)
}

// MissingError says a declared secret has no value in a source.
type MissingError struct {
	Function string
	Ref      Ref
	// Where says where it was looked for and how to provide it.
	Where string
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("function %s: secret %s (%s) has no value: %s", e.Function, e.Ref.Name, e.Ref, e.Where)
}

// Rendered reads the files Nomad's template runner renders into a task's
// secrets directory: <Dir>/<function>.json, a JSON object from secret
// name to value (null when Vault has no such key).
type Rendered struct {
	Dir string
}

// File is the file of function's secrets under dir.
func File(dir, function string) string {
	return filepath.Join(dir, function+".json")
}

// Values implements Source.
func (r Rendered) Values(function string, refs []Ref) (map[string]string, error) {
	if len(refs) == 0 {
		return map[string]string{}, nil
	}
	path := File(r.Dir, function)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("function %s: read its secrets: %w (Nomad renders this file from Vault before the task starts; see the task's events)", function, err)
	}
	var got map[string]*string
	if err := json.Unmarshal(b, &got); err != nil {
		// The error from encoding/json never quotes the input.
		return nil, fmt.Errorf("function %s: secrets file %s is not a JSON object: %w", function, path, err)
	}
	out := make(map[string]string, len(refs))
	for _, ref := range refs {
		v := got[ref.Name]
		if v == nil || *v == "" {
			return nil, &MissingError{Function: function, Ref: ref, Where: fmt.Sprintf("Vault has no key %q at %s (write it with `butter secrets put` or `vault kv put`)", ref.Key, ref.Path)}
		}
		out[ref.Name] = *v
	}
	return out, nil
}

// Env takes each secret from the environment variable of its name, for
// `butter dev`. Lookup defaults to os.LookupEnv.
type Env struct {
	Lookup func(string) (string, bool)
}

// Values implements Source.
func (e Env) Values(function string, refs []Ref) (map[string]string, error) {
	lookup := e.Lookup
	if lookup == nil {
		lookup = os.LookupEnv
	}
	out := make(map[string]string, len(refs))
	for _, ref := range refs {
		v, ok := lookup(ref.Name)
		if !ok || v == "" {
			return nil, &MissingError{Function: function, Ref: ref, Where: fmt.Sprintf("set the environment variable %s", ref.Name)}
		}
		out[ref.Name] = v
	}
	return out, nil
}

// Chain tries each source in turn for each secret: the first that has a
// value wins. An error other than a missing secret stops the lookup.
type Chain []Source

// Values implements Source.
func (c Chain) Values(function string, refs []Ref) (map[string]string, error) {
	out := make(map[string]string, len(refs))
	var wheres []string
	for _, ref := range refs {
		found := false
		wheres = wheres[:0]
		for _, s := range c {
			vals, err := s.Values(function, []Ref{ref})
			var miss *MissingError
			if errors.As(err, &miss) {
				wheres = append(wheres, miss.Where)
				continue
			}
			if err != nil {
				return nil, err
			}
			out[ref.Name], found = vals[ref.Name], true
			break
		}
		if !found {
			return nil, &MissingError{Function: function, Ref: ref, Where: strings.Join(wheres, ", or ")}
		}
	}
	return out, nil
}
