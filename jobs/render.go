package jobs

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/hashicorp/nomad/api"
	"github.com/zclconf/go-cty/cty"
)

// RenderJSON renders the job as `nomad job run -json` and the jobs API
// take it: {"Job": {...}}, indented, with sorted map keys.
func RenderJSON(job *api.Job) ([]byte, error) {
	b, err := json.MarshalIndent(struct{ Job *api.Job }{job}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("render job %s as JSON: %w", deref(job.ID), err)
	}
	return append(b, '\n'), nil
}

// RenderHCL renders the job as a Nomad jobspec. It walks the nomad/api
// structs by their hcl tags, the same tags Nomad's own jobspec parser
// decodes with, so a field set on the struct appears under the name Nomad
// reads it by. Nil pointers, empty collections and zero scalars are left
// out; a non-nil pointer is written even when it points at zero, because
// for Nomad "min = 0" and "unset" differ.
func RenderHCL(job *api.Job) ([]byte, error) {
	f := hclwrite.NewEmptyFile()
	jb := f.Body().AppendNewBlock("job", []string{deref(job.ID)})
	w := &hclWriter{}
	// The job's label is its ID; its name is written only if it differs.
	copyJob := *job
	copyJob.ID = nil
	if deref(job.Name) == deref(job.ID) {
		copyJob.Name = nil
	}
	w.body(jb.Body(), reflect.ValueOf(copyJob))
	if w.err != nil {
		return nil, fmt.Errorf("render job %s as HCL: %w", deref(job.ID), w.err)
	}
	return hclwrite.Format(f.Bytes()), nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

type hclWriter struct{ err error }

type hclTag struct {
	name  string
	kind  string // "" (attribute), "optional", "block", "label", "remain"
	valid bool
}

func parseTag(f reflect.StructField) hclTag {
	t, ok := f.Tag.Lookup("hcl")
	if !ok || t == "-" {
		return hclTag{}
	}
	name, kind, _ := strings.Cut(t, ",")
	return hclTag{name: name, kind: kind, valid: true}
}

var durationType = reflect.TypeOf(time.Duration(0))

// body writes the attributes and blocks of struct v into b: attributes
// first, in field order, then blocks, so that output reads as Nomad's
// documentation writes jobs.
func (w *hclWriter) body(b *hclwrite.Body, v reflect.Value) {
	t := v.Type()
	var blocks []func()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := parseTag(sf)
		if !tag.valid || tag.kind == "label" || tag.kind == "remain" || !sf.IsExported() {
			continue
		}
		fv := v.Field(i)
		if isEmpty(fv) {
			continue
		}
		if tag.kind == "block" {
			name := tag.name
			blocks = append(blocks, func() { w.block(b, name, fv) })
			continue
		}
		w.attr(b, tag.name, fv)
	}
	for _, f := range blocks {
		f()
	}
}

func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		return v.IsNil()
	case reflect.Slice, reflect.Map:
		return v.Len() == 0
	default:
		return v.IsZero()
	}
}

// block writes field value v as one or more blocks named name.
func (w *hclWriter) block(b *hclwrite.Body, name string, v reflect.Value) {
	for v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.Struct:
		nb := b.AppendNewBlock(name, labels(v))
		w.body(nb.Body(), v)
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			w.block(b, name, v.Index(i))
		}
	case reflect.Map:
		keys := sortedKeys(v)
		if v.Type().Elem().Kind() == reflect.Pointer && v.Type().Elem().Elem().Kind() == reflect.Struct {
			// map[label]*T: one labelled block per entry.
			for _, k := range keys {
				nb := b.AppendNewBlock(name, []string{k.String()})
				w.body(nb.Body(), v.MapIndex(k).Elem())
			}
			return
		}
		nb := b.AppendNewBlock(name, nil)
		w.dynamic(nb.Body(), v)
	default:
		w.err = fmt.Errorf("cannot render %s (%s) as a block", name, v.Type())
	}
}

// dynamic writes a free-form map (meta, task config): scalars, lists and
// maps as attributes; lists of maps as repeated blocks, the way Nomad's
// jobspec reads nested blocks in a driver's config.
func (w *hclWriter) dynamic(b *hclwrite.Body, m reflect.Value) {
	var blocks []reflect.Value
	for _, k := range sortedKeys(m) {
		ev := m.MapIndex(k)
		for ev.Kind() == reflect.Interface {
			ev = ev.Elem()
		}
		if ev.Kind() == reflect.Slice && ev.Type().Elem().Kind() == reflect.Map {
			blocks = append(blocks, k)
			continue
		}
		w.attr(b, k.String(), ev)
	}
	for _, k := range blocks {
		ev := m.MapIndex(k)
		for ev.Kind() == reflect.Interface {
			ev = ev.Elem()
		}
		for i := 0; i < ev.Len(); i++ {
			nb := b.AppendNewBlock(k.String(), nil)
			w.dynamic(nb.Body(), ev.Index(i))
		}
	}
}

func sortedKeys(m reflect.Value) []reflect.Value {
	keys := m.MapKeys()
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	return keys
}

func labels(v reflect.Value) []string {
	var out []string
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		if tag := parseTag(t.Field(i)); tag.valid && tag.kind == "label" {
			fv := v.Field(i)
			for fv.Kind() == reflect.Pointer {
				fv = fv.Elem()
			}
			out = append(out, fv.String())
		}
	}
	return out
}

func (w *hclWriter) attr(b *hclwrite.Body, name string, v reflect.Value) {
	val, err := toCty(v)
	if err != nil {
		w.err = fmt.Errorf("attribute %s: %w", name, err)
		return
	}
	b.SetAttributeValue(name, val)
}

// toCty converts a Go value to the cty value hclwrite writes. Durations
// become strings such as "10s", which Nomad's jobspec parses back.
func toCty(v reflect.Value) (cty.Value, error) {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		v = v.Elem()
	}
	if v.Type() == durationType {
		return cty.StringVal(time.Duration(v.Int()).String()), nil
	}
	switch v.Kind() {
	case reflect.String:
		return cty.StringVal(v.String()), nil
	case reflect.Bool:
		return cty.BoolVal(v.Bool()), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return cty.NumberIntVal(v.Int()), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return cty.NumberUIntVal(v.Uint()), nil
	case reflect.Float32, reflect.Float64:
		return cty.NumberFloatVal(v.Float()), nil
	case reflect.Slice:
		if v.Len() == 0 {
			return cty.ListValEmpty(cty.String), nil
		}
		vals := make([]cty.Value, v.Len())
		for i := range vals {
			ev, err := toCty(v.Index(i))
			if err != nil {
				return cty.NilVal, err
			}
			vals[i] = ev
		}
		return cty.TupleVal(vals), nil
	case reflect.Map:
		vals := map[string]cty.Value{}
		for _, k := range sortedKeys(v) {
			ev, err := toCty(v.MapIndex(k))
			if err != nil {
				return cty.NilVal, err
			}
			vals[k.String()] = ev
		}
		return cty.ObjectVal(vals), nil
	}
	return cty.NilVal, fmt.Errorf("unsupported type %s", v.Type())
}

// Render renders the job in the given format: "hcl" or "json".
func Render(job *api.Job, format string) ([]byte, error) {
	switch format {
	case "hcl":
		return RenderHCL(job)
	case "json":
		return RenderJSON(job)
	}
	return nil, fmt.Errorf("unknown format %q: use hcl or json", format)
}
