//lint:file-ignore ST1005 errors start with the job field they name, spelt as in Nomad's JSON (ID, TaskGroups, ...), where case matters.

package jobs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/hashicorp/nomad/api"
)

// Expect is what the control plane knows of a revision apart from its
// job: the project it was posted to, its id, and the digests of the blobs
// it lists. Check holds a job to it.
type Expect struct {
	Project  string
	Revision string
	// Digests are the revision's blobs, "sha256:<hex>".
	Digests map[string]bool
}

// Check decodes a revision's job ({"Job": {...}}, as RenderJSON writes
// it) and checks that it is a job Compile makes for e's project: the job
// ID and name of that project, the default namespace of the Nomad client
// that registers it, only task groups of one "pool" task with Butter's
// driver, a task config that is a pool config of that project and
// revision (its topics, consumer groups and outputs in the project's
// namespace, its bundles and schemas among the revision's blobs),
// artifacts that fetch only the revision's blobs, secret templates exactly
// as Compile writes them with the project's Vault role, the project's
// services, and no field Compile never sets (volumes, users, environment,
// constraints on other drivers, ...). The first difference is an error
// naming the field and what the control plane expects; the job is
// returned only when it passes.
//
// The control plane registers jobs the client compiled, so a revision
// that carried anything else would let whoever may deploy one project
// run any command on every Nomad client, or read and write another
// project's topics; Check is what stops that.
func Check(raw []byte, e Expect) (*api.Job, error) {
	var wrapped struct{ Job *api.Job }
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&wrapped); err != nil {
		return nil, fmt.Errorf("job: %v: want the JSON `butter job render -format json` writes, {\"Job\": {...}}", err)
	}
	job := wrapped.Job
	if job == nil {
		return nil, fmt.Errorf("job: no Job object in it")
	}
	if err := checkJob(job, e); err != nil {
		return nil, fmt.Errorf("job %s: %w", derefOr(job.ID, "(no ID)"), err)
	}
	return job, nil
}

// derefOr is *p, or def for nil.
func derefOr(p *string, def string) string {
	if p == nil {
		return def
	}
	return *p
}

var (
	blobSourceRE = regexp.MustCompile(`^https?://[^?#\s]+/sha256/([0-9a-f]{64})$`)
	// metaKeys are the job meta keys Compile writes.
	metaKeys = map[string]bool{names.MetaProject: true, names.MetaRevision: true, names.MetaAutoRollback: true, names.MetaGitSHA: true}
)

func checkJob(job *api.Job, e Expect) error {
	id := names.JobID(e.Project)
	if derefOr(job.ID, "") != id {
		return fmt.Errorf("ID %q: a revision of project %q registers job %q only", derefOr(job.ID, ""), e.Project, id)
	}
	if derefOr(job.Name, "") != id {
		return fmt.Errorf("Name %q: want %q, the job's ID", derefOr(job.Name, ""), id)
	}
	if ns := derefOr(job.Namespace, ""); ns != "" {
		return fmt.Errorf("Namespace %q: a revision names no namespace; the control plane registers in its own Nomad namespace (NOMAD_NAMESPACE)", ns)
	}
	if t := derefOr(job.Type, api.JobTypeService); t != api.JobTypeService {
		return fmt.Errorf("Type %q: pools run as service jobs", t)
	}
	if r := derefOr(job.Region, ""); r != "" {
		return fmt.Errorf("Region %q: a revision names no region; the control plane's Nomad client decides", r)
	}
	if job.Meta[names.MetaProject] != e.Project {
		return fmt.Errorf("Meta.%s %q: want %q, the project the revision was posted to", names.MetaProject, job.Meta[names.MetaProject], e.Project)
	}
	if job.Meta[names.MetaRevision] != e.Revision {
		return fmt.Errorf("Meta.%s %q: want %q, the revision's id", names.MetaRevision, job.Meta[names.MetaRevision], e.Revision)
	}
	for k := range job.Meta {
		if !metaKeys[k] {
			return fmt.Errorf("Meta.%s: the compiler writes only %s", k, strings.Join(mapKeys(metaKeys), ", "))
		}
	}
	if len(job.TaskGroups) == 0 {
		return fmt.Errorf("TaskGroups: none; a revision's job runs at least one pool")
	}
	for i, tg := range job.TaskGroups {
		if tg == nil {
			return fmt.Errorf("TaskGroups[%d] is null", i)
		}
		if err := checkGroup(tg, e); err != nil {
			return fmt.Errorf("TaskGroups[%d] (%s): %w", i, derefOr(tg.Name, "no name"), err)
		}
	}
	rest := *job
	rest.ID, rest.Name, rest.Namespace, rest.Type, rest.Region, rest.Priority = nil, nil, nil, nil, nil, nil
	rest.Datacenters, rest.Meta, rest.TaskGroups = nil, nil, nil
	return unexpected("", &rest, &api.Job{})
}

func checkGroup(tg *api.TaskGroup, e Expect) error {
	name := derefOr(tg.Name, "")
	if !names.Valid(name) {
		return fmt.Errorf("Name %q: a pool's name follows the name rule (%s)", name, names.Rule)
	}
	wantNet := []*api.NetworkResource{{DynamicPorts: []api.Port{{Label: PortLabel}}}}
	if !sameJSON(tg.Networks, wantNet) {
		return fmt.Errorf("Networks: want one dynamic port labelled %q and nothing else", PortLabel)
	}
	if len(tg.Services) != 1 || tg.Services[0] == nil {
		return fmt.Errorf("Services: want the pool's one service, %s", names.ServiceName(e.Project, name))
	}
	if want := poolService(e.Project, name, e.Revision); !sameJSON(tg.Services[0], want) {
		return fmt.Errorf("Services[0]: want the service the compiler writes for pool %q of project %q (named %s, checked at %s)", name, e.Project, want.Name, HealthPath)
	}
	if s := tg.Scaling; s != nil {
		rest := *s
		rest.Enabled, rest.Min, rest.Max, rest.Policy = nil, nil, nil, nil
		if err := unexpected("Scaling.", &rest, &api.ScalingPolicy{}); err != nil {
			return err
		}
		if s.Policy != nil {
			// The autoscaler reads the policy: only what the compiler
			// writes may be in it.
			if _, err := ParseScalingPolicy(s); err != nil {
				return fmt.Errorf("Scaling: %w", err)
			}
		}
	}
	// A spread over nodes, or none (a job compiled before pools spread).
	if len(tg.Spreads) > 0 && !sameJSON(tg.Spreads, []*api.Spread{nodeSpread()}) {
		return fmt.Errorf("Spreads: want none or the compiler's one spread over ${node.unique.id}")
	}
	// Constraints: only the compiler's, that the clients have the
	// functions' runtimes.
	for i, c := range tg.Constraints {
		ok := false
		for _, a := range runtimeAttrs {
			ok = ok || sameJSON(c, runtimeConstraint(a))
		}
		if !ok {
			return fmt.Errorf("Constraints[%d]: want only the compiler's runtime constraints (${attr.driver.butter.<runtime>} is_set)", i)
		}
	}
	if len(tg.Tasks) != 1 || tg.Tasks[0] == nil {
		return fmt.Errorf("Tasks: want one task, %q, found %d", "pool", len(tg.Tasks))
	}
	if err := checkTask(tg.Tasks[0], name, e); err != nil {
		return fmt.Errorf("Tasks[0]: %w", err)
	}
	rest := *tg
	rest.Name, rest.Count, rest.Scaling, rest.Update, rest.ShutdownDelay = nil, nil, nil, nil, nil
	rest.Networks, rest.Services, rest.Tasks, rest.Spreads, rest.Constraints = nil, nil, nil, nil, nil
	return unexpected("", &rest, &api.TaskGroup{})
}

func checkTask(t *api.Task, poolName string, e Expect) error {
	if t.Name != "pool" {
		return fmt.Errorf("Name %q: the pool's task is named %q", t.Name, "pool")
	}
	if t.Driver != DriverName {
		return fmt.Errorf("Driver %q: a revision's tasks run with Butter's driver, %q, only", t.Driver, DriverName)
	}
	cfg, err := checkPoolConfig(t.Config, poolName, e)
	if err != nil {
		return fmt.Errorf("Config: %w", err)
	}
	if r := t.Resources; r != nil {
		rest := *r
		rest.CPU, rest.MemoryMB, rest.MemoryMaxMB = nil, nil, nil
		if err := unexpected("Resources.", &rest, &api.Resources{}); err != nil {
			return err
		}
	}
	base := ""
	for i, a := range t.Artifacts {
		if a == nil {
			return fmt.Errorf("Artifacts[%d] is null", i)
		}
		b, err := checkArtifact(a, e)
		if err != nil {
			return fmt.Errorf("Artifacts[%d]: %w", i, err)
		}
		if base == "" {
			base = b
		} else if b != base {
			return fmt.Errorf("Artifacts[%d]: fetches from %s, another artifact from %s: the compiler fetches every blob from one control plane", i, b, base)
		}
	}
	// Templates: exactly the secret files of the functions with secrets,
	// with the project's Vault role.
	var want []*api.Template
	for _, f := range cfg.Functions {
		if len(f.Secrets) > 0 {
			want = append(want, secretTemplate(f.Name, f.Secrets))
		}
	}
	if !sameJSON(t.Templates, want) {
		return fmt.Errorf("Templates: want only the secret files the compiler renders for this pool's functions (%s/<function>.json)", SecretsDir)
	}
	var wantVault *api.Vault
	if len(want) > 0 || cfg.NeedsDecrypt() {
		wantVault = vaultBlock(e.Project)
	}
	if !sameJSON(t.Vault, wantVault) {
		if wantVault == nil {
			return fmt.Errorf("Vault: set, but no function of this pool has secrets and the pool decrypts nothing")
		}
		return fmt.Errorf("Vault: want role %q, the project's, with env = false and change_mode = noop", wantVault.Role)
	}
	rest := *t
	rest.Name, rest.Driver, rest.Config, rest.Resources, rest.Artifacts = "", "", nil, nil, nil
	rest.Templates, rest.Vault, rest.KillTimeout = nil, nil, nil
	return unexpected("", &rest, &api.Task{})
}

// checkArtifact checks one artifact and returns the base URL it fetches
// from.
func checkArtifact(a *api.TaskArtifact, e Expect) (string, error) {
	src := derefOr(a.GetterSource, "")
	m := blobSourceRE.FindStringSubmatch(src)
	if m == nil {
		return "", fmt.Errorf("GetterSource %q: artifacts fetch the revision's blobs from the control plane, <address>/v1/blobs/sha256/<hex>", clipString(src))
	}
	digest := "sha256:" + m[1]
	if !e.Digests[digest] {
		return "", fmt.Errorf("GetterSource %q: %s is not one of the revision's blobs", clipString(src), digest)
	}
	mode := derefOr(a.GetterMode, "")
	var want map[string]string
	var dest string
	switch mode {
	case "dir":
		want, dest = map[string]string{"checksum": digest, "archive": "tar"}, BundleDir+"/"+m[1]
	case "file":
		want, dest = map[string]string{"checksum": digest, "archive": "false"}, SchemaDir+"/"+m[1]+".json"
	default:
		return "", fmt.Errorf("GetterMode %q: want dir (a bundle) or file (a schema)", mode)
	}
	if !reflect.DeepEqual(a.GetterOptions, want) {
		return "", fmt.Errorf("GetterOptions: want exactly checksum = %s and archive = %s", digest, want["archive"])
	}
	if d := derefOr(a.RelativeDest, ""); d != dest {
		return "", fmt.Errorf("RelativeDest %q: want %q", d, dest)
	}
	rest := *a
	rest.GetterSource, rest.GetterMode, rest.GetterOptions, rest.RelativeDest = nil, nil, nil, nil
	if err := unexpected("", &rest, &api.TaskArtifact{}); err != nil {
		return "", err
	}
	return strings.TrimSuffix(src, "/sha256/"+m[1]), nil
}

// checkPoolConfig decodes a task config as the driver does (the pool
// config's fields by name, nothing else) and checks that everything it
// names belongs to the project.
func checkPoolConfig(m map[string]any, poolName string, e Expect) (*pool.Config, error) {
	var cfg pool.Config
	if err := fromConfigMap(m, reflect.ValueOf(&cfg).Elem()); err != nil {
		return nil, fmt.Errorf("not a pool config: %w", err)
	}
	// The config must be the canonical encoding of what it decodes to:
	// nothing the driver would read differently.
	if !sameJSON(m, taskConfig(&cfg)) {
		return nil, fmt.Errorf("not in the form the compiler writes (a field of the wrong type, or an empty one that the compiler leaves out)")
	}
	if cfg.Project != e.Project {
		return nil, fmt.Errorf("project %q: a revision of project %q runs that project's functions only", cfg.Project, e.Project)
	}
	if cfg.Revision != e.Revision {
		return nil, fmt.Errorf("revision %q: want %q", cfg.Revision, e.Revision)
	}
	if cfg.Pool != poolName {
		return nil, fmt.Errorf("pool %q: want %q, the task group's name", cfg.Pool, poolName)
	}
	if cfg.Port != PortLabel {
		return nil, fmt.Errorf("port %q: want %q", cfg.Port, PortLabel)
	}
	topic := func(field, t string) error {
		if !strings.HasPrefix(t, e.Project+".") {
			return fmt.Errorf("%s %q: not a topic of project %q (its topics start with %q)", field, t, e.Project, e.Project+".")
		}
		return nil
	}
	blob := func(field, path, dir, suffix string) error {
		if path == "" {
			return nil
		}
		hex, ok := strings.CutPrefix(path, dir+"/")
		hex, ok2 := strings.CutSuffix(hex, suffix)
		if !ok || !ok2 || !e.Digests["sha256:"+hex] {
			return fmt.Errorf("%s %q: want %s/<hex>%s for one of the revision's blobs", field, path, dir, suffix)
		}
		return nil
	}
	for i, tc := range cfg.Topics {
		if err := topic(fmt.Sprintf("topic[%d].name", i), tc.Name); err != nil {
			return nil, err
		}
		if err := blob(fmt.Sprintf("topic[%d].schema", i), tc.Schema, SchemaDir, ".json"); err != nil {
			return nil, err
		}
	}
	group := "butter." + e.Project + "."
	for i, f := range cfg.Functions {
		at := fmt.Sprintf("function[%d] (%s)", i, f.Name)
		if !names.Valid(f.Name) {
			return nil, fmt.Errorf("%s: name follows the name rule (%s)", at, names.Rule)
		}
		if err := blob(at+".bundle", f.Bundle, BundleDir, ""); err != nil {
			return nil, err
		}
		if f.Digest != "" && (!e.Digests[f.Digest] || f.Bundle != BundleDir+"/"+strings.TrimPrefix(f.Digest, "sha256:")) {
			return nil, fmt.Errorf("%s.digest %q: want the digest of its bundle, one of the revision's blobs", at, f.Digest)
		}
		for field, p := range map[string]string{".input_schema": f.InputSchema, ".output_schema": f.OutputSchema} {
			if err := blob(at+field, p, SchemaDir, ".json"); err != nil {
				return nil, err
			}
		}
		for field, t := range map[string]string{".output": f.Output, ".dead_letter": f.DeadLetter} {
			if t != "" {
				if err := topic(at+field, t); err != nil {
					return nil, err
				}
			}
		}
		for j, t := range f.Emits {
			if err := topic(fmt.Sprintf("%s.emits[%d]", at, j), t); err != nil {
				return nil, err
			}
		}
		for j, c := range f.Calls {
			if err := topic(fmt.Sprintf("%s.calls[%d].topic", at, j), c.Topic); err != nil {
				return nil, err
			}
		}
		for j, s := range f.Streams {
			if err := topic(fmt.Sprintf("%s.stream[%d].stream", at, j), s.Stream); err != nil {
				return nil, err
			}
			if !strings.HasPrefix(s.Group, group) {
				return nil, fmt.Errorf("%s.stream[%d].group %q: not a consumer group of project %q (they start with %q)", at, j, s.Group, e.Project, group)
			}
			if err := blob(fmt.Sprintf("%s.stream[%d].schema", at, j), s.Schema, SchemaDir, ".json"); err != nil {
				return nil, err
			}
		}
	}
	return &cfg, nil
}

// unexpected names the first field of got that differs from zero (both
// encoded as JSON): a field the compiler never sets.
func unexpected(prefix string, got, zero any) error {
	g, z := jsonMap(got), jsonMap(zero)
	for _, k := range mapKeys(g) {
		if !reflect.DeepEqual(g[k], z[k]) {
			return fmt.Errorf("%s%s is set; the compiler never sets it, and the control plane registers only what the compiler makes", prefix, k)
		}
	}
	return nil
}

func jsonMap(v any) map[string]any {
	b, _ := json.Marshal(v)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

func sameJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

func mapKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// clipString shortens a value quoted in an error.
func clipString(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}

// fromConfigMap is configMap's inverse over a task config decoded from
// JSON: the codec-tagged fields by name, blocks as lists of objects. A key
// that names no field, or a value of the wrong shape, is an error.
func fromConfigMap(m map[string]any, v reflect.Value) error {
	t := v.Type()
	fields := map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("codec"), ",")
		fields[name] = i
	}
	for _, k := range mapKeys(m) {
		i, ok := fields[k]
		if !ok {
			return fmt.Errorf("unknown field %q", k)
		}
		if err := fromConfigValue(m[k], v.Field(i)); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	return nil
}

func fromConfigValue(val any, v reflect.Value) error {
	if val == nil {
		return nil
	}
	list := func() ([]any, error) {
		l, ok := val.([]any)
		if !ok {
			return nil, fmt.Errorf("want a list of blocks, not %T", val)
		}
		return l, nil
	}
	object := func(x any) (map[string]any, error) {
		o, ok := x.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("want a block, not %T", x)
		}
		return o, nil
	}
	switch {
	case v.Kind() == reflect.Pointer && v.Type().Elem().Kind() == reflect.Struct:
		l, err := list()
		if err != nil || len(l) == 0 {
			return err
		}
		if len(l) > 1 {
			return fmt.Errorf("want one block, found %d", len(l))
		}
		o, err := object(l[0])
		if err != nil {
			return err
		}
		v.Set(reflect.New(v.Type().Elem()))
		return fromConfigMap(o, v.Elem())
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct:
		l, err := list()
		if err != nil {
			return err
		}
		out := reflect.MakeSlice(v.Type(), len(l), len(l))
		for i, x := range l {
			o, err := object(x)
			if err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
			if err := fromConfigMap(o, out.Index(i)); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
		}
		v.Set(out)
	case v.Kind() == reflect.Map:
		l, err := list()
		if err != nil || len(l) == 0 {
			return err
		}
		if len(l) > 1 {
			return fmt.Errorf("want one block, found %d", len(l))
		}
		o, err := object(l[0])
		if err != nil {
			return err
		}
		out := make(map[string]string, len(o))
		for k, x := range o {
			s, ok := x.(string)
			if !ok {
				return fmt.Errorf("%s: want a string, not %T", k, x)
			}
			out[k] = s
		}
		v.Set(reflect.ValueOf(out))
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		l, ok := val.([]any)
		if !ok {
			return fmt.Errorf("want a list of strings, not %T", val)
		}
		out := make([]string, len(l))
		for i, x := range l {
			s, ok := x.(string)
			if !ok {
				return fmt.Errorf("[%d]: want a string, not %T", i, x)
			}
			out[i] = s
		}
		v.Set(reflect.ValueOf(out))
	case v.Kind() == reflect.String:
		s, ok := val.(string)
		if !ok {
			return fmt.Errorf("want a string, not %T", val)
		}
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, ok := val.(bool)
		if !ok {
			return fmt.Errorf("want a bool, not %T", val)
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int:
		f, ok := val.(float64)
		if !ok || f != float64(int64(f)) {
			return fmt.Errorf("want an integer, not %v", val)
		}
		v.SetInt(int64(f))
	default:
		return fmt.Errorf("cannot decode %s", v.Type())
	}
	return nil
}

// Functions returns the functions of a revision's job ({"Job": {...}}),
// from every pool's task config. The job should have passed Check.
func Functions(raw []byte) ([]pool.FunctionConfig, error) {
	pools, err := PoolConfigs(raw)
	if err != nil {
		return nil, err
	}
	var out []pool.FunctionConfig
	for _, c := range pools {
		out = append(out, c.Functions...)
	}
	return out, nil
}

// PoolConfigs returns the pool configs of a revision's job ({"Job":
// {...}}), one per task. The job should have passed Check.
func PoolConfigs(raw []byte) ([]pool.Config, error) {
	var wrapped struct{ Job *api.Job }
	if err := json.Unmarshal(raw, &wrapped); err != nil || wrapped.Job == nil {
		return nil, fmt.Errorf("job: no Job object in it (%v)", err)
	}
	var out []pool.Config
	for _, tg := range wrapped.Job.TaskGroups {
		for _, t := range tg.Tasks {
			var cfg pool.Config
			if err := fromConfigMap(t.Config, reflect.ValueOf(&cfg).Elem()); err != nil {
				return nil, fmt.Errorf("job: task group %s: not a pool config: %w", derefOr(tg.Name, ""), err)
			}
			out = append(out, cfg)
		}
	}
	return out, nil
}
