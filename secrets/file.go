package secrets

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// Dotenv reads secrets from a local dotenv-style file, for `butter dev`
// (which keeps it at <project>/.butter/secrets.env by default, out of git
// and hidden from the functions by the sandbox). One secret a line:
//
//	# a comment
//	DB_PASSWORD=hunter2             # the secret DB_PASSWORD, for every function
//	export API_TOKEN="a b \"c\""    # double quotes: Go escapes (\n, \", \\)
//	billing.DB_PASSWORD='other'     # single quotes: taken as written
//
// A name prefixed with a function's name and a dot gives that function its
// own value, which wins over the plain name. An unquoted value ends at
// " #" (a comment) and is trimmed. A name may appear once.
//
// The file is read on every call to Values, so a redeploy sees its
// current content. A missing file has no values: every lookup is a
// MissingError saying to create it. A malformed line is an error naming
// the file and the line, never its content: it may hold a value.
//
// (It is not called File: that name is the function giving the path of a
// function's rendered secrets file, which Rendered reads.)
type Dotenv struct {
	Path string
}

// Values implements Source.
func (d Dotenv) Values(function string, refs []Ref) (map[string]string, error) {
	vals, err := d.read()
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(refs))
	for _, ref := range refs {
		v, _ := lookup(vals, function, ref.Name)
		if v == "" {
			return nil, &MissingError{Function: function, Ref: ref, Where: d.where(vals, function, ref.Name)}
		}
		out[ref.Name] = v
	}
	return out, nil
}

// Key says which line of the file gives function's secret name: its key
// ("billing.DB_PASSWORD" or "DB_PASSWORD"), or "" when none does. It lets
// `butter dev` say where each secret comes from without showing values.
func (d Dotenv) Key(function, name string) (string, error) {
	vals, err := d.read()
	if err != nil {
		return "", err
	}
	if v, key := lookup(vals, function, name); v != "" {
		return key, nil
	}
	return "", nil
}

// lookup returns function's value of name and the key it came from.
func lookup(vals map[string]string, function, name string) (value, key string) {
	if v := vals[function+"."+name]; v != "" {
		return v, function + "." + name
	}
	return vals[name], name
}

// where is the MissingError's advice.
func (d Dotenv) where(vals map[string]string, function, name string) string {
	if vals == nil {
		return fmt.Sprintf("create %s with a line %s=<value> (or %s.%s=<value> for this function only)", d.Path, name, function, name)
	}
	return fmt.Sprintf("add a line %s=<value> (or %s.%s=<value> for this function only) to %s", name, function, name, d.Path)
}

// dotenvKeyRE is a key: a secret's name, optionally after a function's.
var dotenvKeyRE = regexp.MustCompile(`^([a-z][a-z0-9_-]{0,62}\.)?[A-Za-z_][A-Za-z0-9_]*$`)

// read parses the file; nil without error when it does not exist.
func (d Dotenv) read() (map[string]string, error) {
	b, err := os.ReadFile(d.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the secrets file: %w", err)
	}
	vals := map[string]string{}
	lines := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		key, val, err := parseDotenvLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", d.Path, n, err)
		}
		if key == "" {
			continue
		}
		if first, dup := lines[key]; dup {
			return nil, fmt.Errorf("%s:%d: %s is already set on line %d; keep one", d.Path, n, key, first)
		}
		vals[key], lines[key] = val, n
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", d.Path, err)
	}
	return vals, nil
}

// parseDotenvLine returns a line's key and value, or an empty key for a
// blank or comment line. Its errors never quote the line.
func parseDotenvLine(line string) (key, val string, err error) {
	line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
	if line == "" || strings.HasPrefix(line, "#") {
		return "", "", nil
	}
	line = strings.TrimPrefix(line, "export ")
	key, val, ok := strings.Cut(line, "=")
	if !ok {
		return "", "", errors.New("not NAME=value (nor a # comment)")
	}
	key = strings.TrimSpace(key)
	if !dotenvKeyRE.MatchString(key) {
		return "", "", errors.New("the name before = is not NAME or function.NAME (letters, digits and '_', not starting with a digit)")
	}
	val = strings.TrimSpace(val)
	switch {
	case strings.HasPrefix(val, `"`):
		q, err := strconv.QuotedPrefix(val)
		if err != nil {
			return "", "", fmt.Errorf("%s: the double-quoted value is not closed, or has an invalid escape", key)
		}
		rest := strings.TrimSpace(val[len(q):])
		if rest != "" && !strings.HasPrefix(rest, "#") {
			return "", "", fmt.Errorf("%s: text after the closing quote", key)
		}
		val, _ = strconv.Unquote(q)
	case strings.HasPrefix(val, "'"):
		end := strings.IndexByte(val[1:], '\'')
		if end < 0 {
			return "", "", fmt.Errorf("%s: the single-quoted value is not closed", key)
		}
		rest := strings.TrimSpace(val[end+2:])
		if rest != "" && !strings.HasPrefix(rest, "#") {
			return "", "", fmt.Errorf("%s: text after the closing quote", key)
		}
		val = val[1 : end+1]
	default:
		if i := strings.Index(val, " #"); i >= 0 {
			val = strings.TrimSpace(val[:i])
		}
	}
	return key, val, nil
}
