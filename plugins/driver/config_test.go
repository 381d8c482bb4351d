package driver

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/hashicorp/nomad/helper/pluginutils/hclutils"
	"github.com/hashicorp/nomad/plugins/shared/hclspec"
)

// TestTaskConfigContract decodes the task config that package jobs renders
// for every example with the driver's hclspec, the way the Nomad client
// does (hclspec, then msgpack by codec tags), into pool.Config, and checks
// it is the config jobs built, as the pool reads it.
func TestTaskConfigContract(t *testing.T) {
	for _, ex := range []string{"hello", "pipeline", "iot"} {
		t.Run(ex, func(t *testing.T) {
			proj, rep := spec.Load(filepath.Join("..", "..", "examples", ex))
			if proj == nil {
				t.Fatal(rep.Diags)
			}
			c, err := jobs.Compile(proj)
			if err != nil {
				t.Fatal(err)
			}
			for _, tg := range c.Job.TaskGroups {
				raw, err := json.Marshal(tg.Tasks[0].Config)
				if err != nil {
					t.Fatal(err)
				}
				var got pool.Config
				hclutils.NewConfigParser(taskConfigSpec).ParseJson(t, `{"Config":`+string(raw)+`}`, &got)
				if err := got.Check(); err != nil {
					t.Fatal(err)
				}
				want := c.Pools[*tg.Name]
				if len(got.Functions) == 0 || len(got.Functions) != len(want.Functions) {
					t.Fatalf("%d functions decoded, want %d", len(got.Functions), len(want.Functions))
				}
				// As the pool reads it: JSON, where omitempty makes nil and
				// empty alike.
				gotJSON, _ := json.MarshalIndent(got, "", "  ")
				wantJSON, _ := json.MarshalIndent(want, "", "  ")
				if string(gotJSON) != string(wantJSON) {
					t.Errorf("group %s: the driver decodes\n%s\njobs built\n%s", *tg.Name, gotJSON, wantJSON)
				}
				// Absent blocks stay nil: no retry, state or kafka the spec
				// did not ask for.
				for _, f := range got.Functions {
					sf := proj.Function(f.Name)
					if (f.Retry != nil) != (sf.Retry != nil) || (f.State != nil) != (sf.State != nil) {
						t.Errorf("function %s: retry %+v state %+v", f.Name, f.Retry, f.State)
					}
				}
				if (got.Kafka != nil) != (proj.Kafka != nil) {
					t.Errorf("kafka = %+v", got.Kafka)
				}
			}
		})
	}
}

// TestPoolConfigDecodesEveryField: a config with every field set survives
// jobs' encoding and the driver's decoding whole, so no field of
// pool.Config is lost on the way through Nomad.
func TestPoolConfigDecodesEveryField(t *testing.T) {
	proj, rep := spec.Load(filepath.Join("..", "..", "examples", "iot"))
	if proj == nil {
		t.Fatal(rep.Diags)
	}
	c, err := jobs.Compile(proj)
	if err != nil {
		t.Fatal(err)
	}
	var set []string
	for _, tg := range c.Job.TaskGroups {
		raw, _ := json.Marshal(tg.Tasks[0].Config)
		var got pool.Config
		hclutils.NewConfigParser(taskConfigSpec).ParseJson(t, `{"Config":`+string(raw)+`}`, &got)
		set = append(set, nonZero("", reflect.ValueOf(got))...)
	}
	// Fields the iot example sets; the contract test above checks their
	// values.
	for _, want := range []string{"function.stream.schema", "function.stream.exactly_once", "function.input_schema", "function.emits", "function.state.ttl", "function.retry.max_backoff", "function.digest", "topic.retention", "port", "revision"} {
		if !contains(set, want) {
			t.Errorf("%s did not survive the decoding (decoded: %v)", want, set)
		}
	}
}

func nonZero(prefix string, v reflect.Value) []string {
	var out []string
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("codec"), ",")
			out = append(out, nonZero(strings.TrimPrefix(prefix+"."+name, "."), v.Field(i))...)
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.Struct {
			if v.Len() > 0 {
				out = append(out, prefix)
			}
			return out
		}
		for i := 0; i < v.Len(); i++ {
			out = append(out, nonZero(prefix, v.Index(i))...)
		}
	default:
		if !v.IsZero() {
			out = append(out, prefix)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestTaskConfigSpecMatchesPoolConfig: every codec field of pool.Config
// (and of the types it nests) has an entry of the matching kind in the
// driver's taskConfigSpec, and every entry a field. A field added to one
// and not the other would be refused by Nomad or silently dropped.
func TestTaskConfigSpecMatchesPoolConfig(t *testing.T) {
	for _, p := range specMismatches("", taskConfigSpec, reflect.TypeOf(pool.Config{})) {
		t.Error(p)
	}
}

// TestSpecMismatchesCatchesDrift: the comparison above fails on a field
// without a spec entry, an entry without a field, and a kind that differs.
func TestSpecMismatchesCatchesDrift(t *testing.T) {
	type inner struct {
		A string `codec:"a"`
	}
	type cfg struct {
		Name  string            `codec:"name"`
		Extra string            `codec:"extra"`
		Env   map[string]string `codec:"env"`
		Block *inner            `codec:"block"`
	}
	s := hclspec.NewObject(map[string]*hclspec.Spec{
		"name":    hclspec.NewAttr("name", "string", true),
		"env":     hclspec.NewAttr("env", "string", false), // should be BlockAttrs
		"block":   hclspec.NewBlock("block", false, hclspec.NewObject(map[string]*hclspec.Spec{"a": hclspec.NewAttr("a", "string", false)})),
		"missing": hclspec.NewAttr("missing", "string", false),
	})
	got := specMismatches("", s, reflect.TypeOf(cfg{}))
	sort.Strings(got)
	want := []string{"env: field map[string]string, spec entry attribute", "extra: a codec field without a spec entry", "missing: a spec entry without a codec field"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("mismatches = %q, want %q", got, want)
	}
}

// specMismatches compares the object spec s with struct type typ by the
// fields' codec names.
func specMismatches(prefix string, s *hclspec.Spec, typ reflect.Type) []string {
	obj := s.GetObject()
	if obj == nil {
		return []string{prefix + ": the spec is not an object"}
	}
	var out []string
	fields := map[string]reflect.Type{}
	for i := 0; i < typ.NumField(); i++ {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("codec"), ",")
		if name == "" {
			out = append(out, prefix+typ.Field(i).Name+": no codec tag")
			continue
		}
		fields[name] = typ.Field(i).Type
	}
	for name, ft := range fields {
		es, ok := obj.GetAttributes()[name]
		if !ok {
			out = append(out, prefix+name+": a codec field without a spec entry")
			continue
		}
		kind, elem := fieldKind(ft)
		var specKind string
		var nested *hclspec.Spec
		switch {
		case es.GetAttr() != nil:
			specKind = "attribute"
		case es.GetBlockValue() != nil:
			specKind, nested = "block", es.GetBlockValue().GetNested()
		case es.GetBlockList() != nil:
			specKind, nested = "block list", es.GetBlockList().GetNested()
		case es.GetBlockAttrs() != nil:
			specKind = "block attributes"
		default:
			specKind = "other"
		}
		if kind != specKind {
			out = append(out, prefix+name+": field "+ft.String()+", spec entry "+specKind)
			continue
		}
		if nested != nil {
			out = append(out, specMismatches(prefix+name+".", nested, elem)...)
		}
	}
	for name := range obj.GetAttributes() {
		if _, ok := fields[name]; !ok {
			out = append(out, prefix+name+": a spec entry without a codec field")
		}
	}
	return out
}

// fieldKind is the spec kind a field's type decodes from: a pointer to a
// struct from a block, a slice of structs from a block list, a string map
// from block attributes, anything else from an attribute.
func fieldKind(t reflect.Type) (string, reflect.Type) {
	switch {
	case t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct:
		return "block", t.Elem()
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		return "block list", t.Elem()
	case t.Kind() == reflect.Map:
		return "block attributes", nil
	}
	return "attribute", nil
}

// TestJDKRelease: the javac attribute comes from the JDK's release file
// (no JVM started), and agrees with javac -version. It needs a JDK
// (make test-deps installs one).
func TestJDKRelease(t *testing.T) {
	out, err := exec.Command("javac", "-version").Output()
	if err != nil {
		t.Fatalf("javac -version: %v (make test-deps installs a JDK)", err)
	}
	v, ok := jdkRelease()
	if !ok || "javac "+v != strings.TrimSpace(string(out)) {
		t.Fatalf("jdkRelease: %q %v; javac -version says %q", v, ok, out)
	}
}
