package spec

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Report holds the diagnostics of a load and the files they point into.
type Report struct {
	Diags hcl.Diagnostics
	Files map[string]*hcl.File
}

// HasErrors reports whether any diagnostic is an error.
func (r *Report) HasErrors() bool { return r.Diags.HasErrors() }

// Counts returns the number of errors and warnings.
func (r *Report) Counts() (errs, warns int) {
	for _, d := range r.Diags {
		if d.Severity == hcl.DiagError {
			errs++
		} else {
			warns++
		}
	}
	return errs, warns
}

// sort orders diagnostics by file and position, those without a position
// first, so that output is stable and reads top to bottom.
func (r *Report) sort() {
	sort.SliceStable(r.Diags, func(i, j int) bool {
		a, b := r.Diags[i].Subject, r.Diags[j].Subject
		switch {
		case a == nil || b == nil:
			return a == nil && b != nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		default:
			return a.Start.Byte < b.Start.Byte
		}
	})
}

// WriteText prints every diagnostic the way terraform validate does: the
// severity and summary, the position as file:line:col with the enclosing
// block, the source line with the subject underlined, and the detail.
func (r *Report) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	for _, d := range r.Diags {
		sev := "Error"
		if d.Severity == hcl.DiagWarning {
			sev = "Warning"
		}
		fmt.Fprintf(bw, "%s: %s\n\n", sev, d.Summary)
		if d.Subject != nil {
			s := d.Subject
			fmt.Fprintf(bw, "  on %s:%d:%d", s.Filename, s.Start.Line, s.Start.Column)
			if c := r.context(s); c != "" {
				fmt.Fprintf(bw, ", in %s", c)
			}
			fmt.Fprintln(bw, ":")
			if line, ok := r.line(s.Filename, s.Start.Line); ok {
				prefix := fmt.Sprintf("  %4d: ", s.Start.Line)
				fmt.Fprintf(bw, "%s%s\n", prefix, line)
				start := s.Start.Column - 1
				end := len(line)
				if s.End.Line == s.Start.Line {
					end = s.End.Column - 1
				}
				if start > len(line) {
					start = len(line)
				}
				if end <= start {
					end = start + 1
				}
				pad := strings.Repeat(" ", len(prefix)) + expandTabs(line[:start])
				fmt.Fprintf(bw, "%s%s\n", pad, strings.Repeat("^", runeLen(line, start, end)))
			}
			fmt.Fprintln(bw)
		}
		if d.Detail != "" {
			fmt.Fprintf(bw, "%s\n\n", d.Detail)
		}
	}
	errs, warns := r.Counts()
	if errs+warns > 0 {
		fmt.Fprintf(bw, "%s, %s.\n", plural(errs, "error"), plural(warns, "warning"))
	}
	return bw.Flush()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// expandTabs keeps the caret line aligned under a line with tabs.
func expandTabs(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r == '\t' {
			b.WriteRune('\t')
		} else {
			b.WriteByte(' ')
		}
	}
	return b.String()
}

func runeLen(line string, start, end int) int {
	if end > len(line) {
		end = len(line)
	}
	if end <= start {
		return 1
	}
	return len([]rune(line[start:end]))
}

func (r *Report) line(filename string, n int) (string, bool) {
	f := r.Files[filename]
	if f == nil {
		return "", false
	}
	lines := bytes.Split(f.Bytes, []byte("\n"))
	if n < 1 || n > len(lines) {
		return "", false
	}
	return strings.TrimRight(string(lines[n-1]), "\r"), true
}

func (r *Report) context(s *hcl.Range) string {
	f := r.Files[s.Filename]
	if f == nil {
		return ""
	}
	if cs, ok := f.Nav.(interface{ ContextString(int) string }); ok {
		return cs.ContextString(s.Start.Byte)
	}
	return ""
}

// JSON shapes, modelled on terraform validate -json.
type (
	jsonReport struct {
		Valid        bool             `json:"valid"`
		ErrorCount   int              `json:"error_count"`
		WarningCount int              `json:"warning_count"`
		Diagnostics  []jsonDiagnostic `json:"diagnostics"`
	}
	jsonDiagnostic struct {
		Severity string       `json:"severity"`
		Summary  string       `json:"summary"`
		Detail   string       `json:"detail,omitempty"`
		Range    *jsonRange   `json:"range,omitempty"`
		Snippet  *jsonSnippet `json:"snippet,omitempty"`
	}
	jsonRange struct {
		Filename string  `json:"filename"`
		Start    jsonPos `json:"start"`
		End      jsonPos `json:"end"`
	}
	jsonPos struct {
		Line   int `json:"line"`
		Column int `json:"column"`
		Byte   int `json:"byte"`
	}
	jsonSnippet struct {
		Context   string `json:"context,omitempty"`
		Code      string `json:"code"`
		StartLine int    `json:"start_line"`
	}
)

// WriteJSON prints the report as one JSON document for tools.
func (r *Report) WriteJSON(w io.Writer) error {
	errs, warns := r.Counts()
	out := jsonReport{Valid: errs == 0, ErrorCount: errs, WarningCount: warns, Diagnostics: []jsonDiagnostic{}}
	for _, d := range r.Diags {
		jd := jsonDiagnostic{Severity: "error", Summary: d.Summary, Detail: d.Detail}
		if d.Severity == hcl.DiagWarning {
			jd.Severity = "warning"
		}
		if s := d.Subject; s != nil {
			jd.Range = &jsonRange{
				Filename: s.Filename,
				Start:    jsonPos{s.Start.Line, s.Start.Column, s.Start.Byte},
				End:      jsonPos{s.End.Line, s.End.Column, s.End.Byte},
			}
			if line, ok := r.line(s.Filename, s.Start.Line); ok {
				jd.Snippet = &jsonSnippet{Context: r.context(s), Code: line, StartLine: s.Start.Line}
			}
		}
		out.Diagnostics = append(out.Diagnostics, jd)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
