package pipeline_test

import (
	"maps"
	"strings"
	"testing"

	"github.com/butterfn/butter/pipeline"
)

// equal compares steps, reading nil and empty options as the same.
func equal(a, b []pipeline.Step) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Function != b[i].Function || !maps.Equal(a[i].Options, b[i].Options) {
			return false
		}
	}
	return true
}

type opts = map[string]string

func TestParse(t *testing.T) {
	for _, c := range []struct {
		name, expr string
		want       []pipeline.Step
	}{
		{"one function", "sed", []pipeline.Step{{Function: "sed"}}},
		{"blanks around", " \t sed \n", []pipeline.Step{{Function: "sed"}}},
		{"two steps", "sed | to-upper", []pipeline.Step{{Function: "sed"}, {Function: "to-upper"}}},
		{"no blanks around the bar", "a|b|c", []pipeline.Step{{Function: "a"}, {Function: "b"}, {Function: "c"}}},
		{"an option", "sed e=s/hate/love/ | to-upper",
			[]pipeline.Step{{Function: "sed", Options: opts{"e": "s/hate/love/"}}, {Function: "to-upper"}}},
		{"= in the value", "sed e=a=b x==", []pipeline.Step{{Function: "sed", Options: opts{"e": "a=b", "x": "="}}}},
		{"an empty value", "sed e=", []pipeline.Step{{Function: "sed", Options: opts{"e": ""}}}},
		{"a quoted value with blanks and a bar", `sed e="s/a b/c|d/" | tr`,
			[]pipeline.Step{{Function: "sed", Options: opts{"e": "s/a b/c|d/"}}, {Function: "tr"}}},
		{"a quoted empty value", `sed e=""`, []pipeline.Step{{Function: "sed", Options: opts{"e": ""}}}},
		{"escapes in quotes", `f q="say \"hi\"\n\\" t="\t"`,
			[]pipeline.Step{{Function: "f", Options: opts{"q": "say \"hi\"\n\\", "t": "\t"}}}},
		{"a backslash outside quotes is itself", `sed e=s/\./,/`, []pipeline.Step{{Function: "sed", Options: opts{"e": `s/\./,/`}}}},
		{"quoted and unquoted text join", `sed e=s/"a b"/c/`, []pipeline.Step{{Function: "sed", Options: opts{"e": "s/a b/c/"}}}},
		{"a quoted function name", `"sed" e=x`, []pipeline.Step{{Function: "sed", Options: opts{"e": "x"}}}},
		{"option names in lower case", "sed E=x Foo_Bar-1=y", []pipeline.Step{{Function: "sed", Options: opts{"e": "x", "foo_bar-1": "y"}}}},
		{"the last of a repeated option wins", "sed e=1 E=2", []pipeline.Step{{Function: "sed", Options: opts{"e": "2"}}}},
		{"unicode values", "greet name=Zoë msg=\"héllo wörld ✓\" | translate to=日本語",
			[]pipeline.Step{{Function: "greet", Options: opts{"name": "Zoë", "msg": "héllo wörld ✓"}}, {Function: "translate", Options: opts{"to": "日本語"}}}},
		{"unicode escapes", `f v="\u00e9\U0001F600"`, []pipeline.Step{{Function: "f", Options: opts{"v": "é😀"}}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := pipeline.Parse(c.expr)
			if err != nil {
				t.Fatalf("Parse(%q): %v", c.expr, err)
			}
			if !equal(got, c.want) {
				t.Fatalf("Parse(%q) = %+v, want %+v", c.expr, got, c.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		name, expr string
		want       []string // each must be in the error
	}{
		{"empty", "", []string{"no steps", "name at least one function"}},
		{"blank", "  \t", []string{"no steps"}},
		{"||", "cat || tr", []string{"empty step 2", "`a | b`"}},
		{"an empty middle step", "cat | | tr", []string{"empty step 2"}},
		{"a trailing bar", "sed | ", []string{"empty step 2", `"sed | "`}},
		{"a leading bar", "| sed", []string{"empty step 1"}},
		{"only a bar", "|", []string{"empty step 1"}},
		{"an option without =", "sed e", []string{`step "sed e"`, `option "e" is not name=value`}},
		{"an option without a name", "sed =x", []string{`option "=x" is not name=value`}},
		{"an option name with a dot", "sed a.b=x", []string{`option "a.b=x" is not name=value`}},
		{"a bad function name", "s.ed", []string{`step "s.ed"`, "a function name is letters, digits"}},
		{"a unicode function name", "翻訳", []string{"a function name is letters, digits"}},
		{"a function name too long", strings.Repeat("a", 129), []string{"a function name"}},
		{"an unterminated quote", `sed e="s/a/b/ | tr`, []string{"unterminated quote", `end the quoted value with "`}},
		{"an escaped closing quote", `sed e="a\"`, []string{"unterminated quote"}},
		{"a bad escape", `sed e="\q"`, []string{"bad quoted value", "Go string"}},
		{"a quoted bar is no separator", `sed "|" tr`, []string{`option "|" is not name=value`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := pipeline.Parse(c.expr)
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want an error", c.expr, got)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse(%q): %q lacks %q", c.expr, err, w)
				}
			}
		})
	}
}

func TestParseStep(t *testing.T) {
	s, err := pipeline.ParseStep(`sed e="s/a b/c/" X=1`)
	if err != nil || !equal([]pipeline.Step{s}, []pipeline.Step{{Function: "sed", Options: opts{"e": "s/a b/c/", "x": "1"}}}) {
		t.Fatalf("ParseStep: %+v %v", s, err)
	}
	for _, bad := range []struct{ in, want string }{
		{"", "empty step"},
		{" ", "empty step"},
		{"a | b", "holds a |"},
		{"sed oops", "not name=value"},
		{`sed e="x`, "unterminated quote"},
	} {
		if _, err := pipeline.ParseStep(bad.in); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("ParseStep(%q): %v, want an error with %q", bad.in, err, bad.want)
		}
	}
}

func TestFormat(t *testing.T) {
	steps := []pipeline.Step{
		{Function: "sed", Options: opts{"e": "s/a b/c/", "b": "plain", "z": "", "q": `a"b`, "bs": `a\b`, "bar": "x|y", "nl": "a\nb", "u": "Zoë", "eq": "a=b"}},
		{Function: "to-upper"},
	}
	want := `sed b=plain bar="x|y" bs="a\\b" e="s/a b/c/" eq=a=b nl="a\nb" q="a\"b" u=Zoë z="" | to-upper`
	if got := pipeline.Format(steps); got != want {
		t.Fatalf("Format:\n got %s\nwant %s", got, want)
	}
	back, err := pipeline.Parse(want)
	if err != nil || !equal(back, steps) {
		t.Fatalf("Parse(Format(steps)) = %+v %v, want %+v", back, err, steps)
	}
	if got := pipeline.Functions(steps); strings.Join(got, ",") != "sed,to-upper" {
		t.Errorf("Functions = %q", got)
	}
}

// FuzzParse: Parse never panics, and whatever it reads, Format writes so
// that Parse reads the same steps back, and formats them the same again.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"sed", "sed e=s/hate/love/ | to-upper", `sed e="s/a b/c|d/" | tr`, "a||b", "a |", "| a",
		`f q="say \"hi\"\n"`, "sed e=a=b", `sed e=""`, "greet name=Zoë", `f v="\u00e9"`, `e="\xff"`,
		"sed\te=1\nx=2", `"unterminated`, "a.b", "A_b-1 K=V",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		steps, err := pipeline.Parse(expr)
		if err != nil {
			return
		}
		if len(steps) == 0 {
			t.Fatalf("Parse(%q) succeeded with no steps", expr)
		}
		text := pipeline.Format(steps)
		back, err := pipeline.Parse(text)
		if err != nil {
			t.Fatalf("Parse(%q) = %+v, formatted %q, which does not parse: %v", expr, steps, text, err)
		}
		if !equal(back, steps) {
			t.Fatalf("Parse(%q) = %+v, formatted %q, read back as %+v", expr, steps, text, back)
		}
		if again := pipeline.Format(back); again != text {
			t.Fatalf("Format is not stable: %q then %q", text, again)
		}
		for _, s := range steps {
			one, err := pipeline.ParseStep(s.String())
			if err != nil || !equal([]pipeline.Step{one}, []pipeline.Step{s}) {
				t.Fatalf("ParseStep(%q) = %+v %v, want %+v", s.String(), one, err, s)
			}
		}
	})
}
