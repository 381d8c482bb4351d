// Package pipeline is the one grammar of pipeline expressions, such as
//
//	sed e=s/hate/love/ | to-upper
//
// which `butter invoke` (local and remote), the gateway's ad-hoc invoke
// endpoint and its routes all read. Parse turns an expression into steps,
// each a function name and its options; Format writes steps back so that
// Parse reads them unchanged; Resolve checks the steps against a project's
// spec and expands the pipelines it declares into their functions.
//
// The grammar:
//
//   - Steps are separated by "|". Every step names a function (letters,
//     digits, '-' and '_'), followed by options written name=value. An
//     option's name is a name as above and is read in lower case (options
//     travel as HTTP headers, Butter-Option-<name>, whose names are
//     case-insensitive); its value runs to the next blank and may hold "=".
//   - Blanks (space, tab, newline) separate words. Double quotes make a Go
//     string literal (escapes as in Go: \" \\ \n \u00e9), so a value can
//     hold blanks, "|" or nothing at all: sed e="s/a b/c|d/" x="". Quoted
//     and unquoted text next to each other form one word. Outside quotes a
//     backslash is an ordinary character.
//   - An empty step ("a | | b", "a |", "| b") is an error; so is an empty
//     expression.
//
// Neighbours: package spec holds the projects that Resolve reads; the
// gateway turns steps into calls of pools over HTTP, and package pool runs
// them in one process (Pool.RunPipeline) for `butter invoke -local`.
package pipeline

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Step is one step of a pipeline: the function it calls and the options
// that reach the function next to its input. Options is nil when there
// are none.
type Step struct {
	Function string
	Options  map[string]string
}

// String writes the step as Parse reads it: the function, then its
// options sorted by name, each value quoted when it must be.
func (s Step) String() string {
	var b strings.Builder
	b.WriteString(s.Function)
	keys := make([]string, 0, len(s.Options))
	for k := range s.Options {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteByte(' ')
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(quote(s.Options[k]))
	}
	return b.String()
}

// quote returns v as one word of the grammar: unchanged when it reads back
// as itself, else as a Go string literal.
func quote(v string) string {
	q := strconv.Quote(v)
	if v == "" || strings.ContainsAny(v, " |") || q[1:len(q)-1] != v {
		return q
	}
	return v
}

// Format writes steps as one expression, "a k=v | b", that Parse reads
// back into the same steps.
func Format(steps []Step) string {
	parts := make([]string, len(steps))
	for i, s := range steps {
		parts[i] = s.String()
	}
	return strings.Join(parts, " | ")
}

// Functions returns the names of the steps' functions, in order.
func Functions(steps []Step) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.Function
	}
	return out
}

// Parse reads an expression, "a | b k=v | c", into its steps. Its errors
// name the step at fault and say how to write it.
func Parse(expr string) ([]Step, error) {
	toks, err := lex(expr)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return nil, errors.New("no steps: name at least one function, as in `sed e=s/a/b/ | to-upper`")
	}
	var out []Step
	var cur []string
	n := 1 // the number of the step being read
	end := func() error {
		if len(cur) == 0 {
			return fmt.Errorf("empty step %d in %q: write steps as `a | b`, each a function name with its options", n, expr)
		}
		s, err := parseWords(cur)
		if err != nil {
			return err
		}
		out = append(out, s)
		cur = nil
		n++
		return nil
	}
	for _, t := range toks {
		if t.bar {
			if err := end(); err != nil {
				return nil, err
			}
			continue
		}
		cur = append(cur, t.text)
	}
	if err := end(); err != nil {
		return nil, err
	}
	return out, nil
}

// ParseStep reads one step, "name k=v ...", as a route's pipeline lists
// them.
func ParseStep(s string) (Step, error) {
	toks, err := lex(s)
	if err != nil {
		return Step{}, err
	}
	var words []string
	for _, t := range toks {
		if t.bar {
			return Step{}, fmt.Errorf("step %q holds a |: give each step of the pipeline on its own", s)
		}
		words = append(words, t.text)
	}
	if len(words) == 0 {
		return Step{}, errors.New("empty step: name a function, with its options, as in `sed e=s/a/b/`")
	}
	return parseWords(words)
}

// parseWords reads a step's words: the function, then name=value options.
func parseWords(words []string) (Step, error) {
	s := Step{Function: words[0]}
	if !ValidName(s.Function) {
		return s, fmt.Errorf("step %q: a function name is letters, digits, '-' and '_'", strings.Join(words, " "))
	}
	for _, w := range words[1:] {
		k, v, ok := strings.Cut(w, "=")
		if !ok || !ValidName(k) {
			return s, fmt.Errorf("step %q: option %q is not name=value (a name is letters, digits, '-' and '_'; quote a value with blanks or |: e=\"s/a b/c/\")", strings.Join(words, " "), w)
		}
		if s.Options == nil {
			s.Options = map[string]string{}
		}
		s.Options[strings.ToLower(k)] = v
	}
	return s, nil
}

// ValidName says whether s may name a function or an option: 1 to 128
// letters, digits, '-' and '_'.
func ValidName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// token is a word of an expression, or the bar between two steps.
type token struct {
	text string
	bar  bool
}

// lex splits an expression into words and bars. Blanks separate words;
// a double-quoted Go string literal is read as its value and joins the
// text next to it.
func lex(s string) ([]token, error) {
	var toks []token
	var cur strings.Builder
	in := false // a word has started
	word := func() {
		if in {
			toks = append(toks, token{text: cur.String()})
			cur.Reset()
			in = false
		}
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			// A quoted value runs to the matching quote, escapes included.
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' {
					j++
				}
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated quote in %q: end the quoted value with \"", s)
			}
			v, err := strconv.Unquote(s[i : j+1])
			if err != nil {
				return nil, fmt.Errorf("bad quoted value %s: %v (a quoted value is a Go string: escape \" and \\ with \\, and write a newline as \\n)", s[i:j+1], err)
			}
			cur.WriteString(v)
			in = true
			i = j
		case ' ', '\t', '\n':
			word()
		case '|':
			word()
			toks = append(toks, token{bar: true})
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	word()
	return toks, nil
}
