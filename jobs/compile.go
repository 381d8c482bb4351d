package jobs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"github.com/butterfn/butter/names"
	"io"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/butterfn/butter/bundle"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/secrets"
	"github.com/hashicorp/nomad/api"
)

// shutdownDelay is the pool group's shutdown_delay.
const shutdownDelay = 2 * time.Second

// Names shared with the driver and the pool. The task config itself is a
// pool.Config (poolconfig.go), which the driver decodes by the same codec
// tags.
const (
	// DriverName is the task driver that runs pools.
	DriverName = "butter"
	// PortLabel is the network port of a pool's invoke endpoint.
	PortLabel = "invoke"
	// HealthPath is the pool's health endpoint, checked by the service.
	HealthPath = "/v1/health"
	// BundleDir is where artifacts put bundles, relative to the task dir.
	BundleDir = "local/bundles"
	// SchemaDir is where artifacts put JSON Schemas.
	SchemaDir = "local/schemas"
	// DefaultBlobURL is where the control plane serves blobs by digest
	// when no other base is given.
	DefaultBlobURL = "http://127.0.0.1:4750/v1/blobs"
	// DefaultMaxAllocations bounds a pool's task-group count for the
	// autoscaler when its pool has no scaling block.
	DefaultMaxAllocations = spec.DefaultScalingMax
	// poolOverheadMiB and poolOverheadMHz are what the pool process
	// itself needs on top of its functions.
	poolOverheadMiB = 64
	poolOverheadMHz = 100
	// drainGrace is added to the longest function timeout to form the
	// task's kill_timeout, so in-flight calls finish before Nomad kills.
	drainGrace = 5 * time.Second
	// TimerPartitions is the partition count of a tick topic: ticks are
	// few, and one partition keeps them in order.
	TimerPartitions = 1
	// healthCheckChecks is update.health_check = "checks": an allocation
	// is healthy when its tasks run and the service's checks pass.
	healthCheckChecks = "checks"
)

type options struct {
	blobURL     string
	gitSHA      string
	datacenters []string
	fsys        fs.FS
	deps        func(runtime, src string) ([]bundle.Extra, error)
}

// Option configures Compile.
type Option func(*options)

// WithBlobURL sets the base URL artifacts fetch bundles from; each bundle
// is at <base>/sha256/<hex>. The default is DefaultBlobURL, the address a
// local `butter server` listens on; `butter deploy` passes the control
// plane's own address.
func WithBlobURL(base string) Option {
	return func(o *options) { o.blobURL = strings.TrimRight(base, "/") }
}

// WithGitSHA records the git commit the project was rendered from in the
// job's meta. A dirty work tree should pass the SHA with a "-dirty" suffix.
func WithGitSHA(sha string) Option { return func(o *options) { o.gitSHA = sha } }

// WithDatacenters sets the job's datacenters; Nomad's default ("*") applies
// otherwise.
func WithDatacenters(dcs ...string) Option {
	return func(o *options) { o.datacenters = append([]string(nil), dcs...) }
}

// WithDeps gives each function source's dependencies (package deps):
// deps is called with the function's runtime and its source's
// project-relative path, and what it returns goes in the bundle, and so
// in its digest. Default: none.
func WithDeps(deps func(runtime, src string) ([]bundle.Extra, error)) Option {
	return func(o *options) { o.deps = deps }
}

// WithFS reads sources from fsys instead of the project's directory.
func WithFS(fsys fs.FS) Option { return func(o *options) { o.fsys = fsys } }

// Artifact is one content-addressed blob of a revision: a function's
// source bundle, or a single file uploaded as it is.
type Artifact struct {
	Digest bundle.Digest
	// Path is the project-relative source of the blob.
	Path string
	// IsSchema marks a single file, stored and fetched as it is rather
	// than as a bundle: a JSON Schema, or an OpenAPI document (IsOpenAPI).
	IsSchema bool
	// IsOpenAPI marks one of the project's OpenAPI documents (always with
	// IsSchema). No task fetches it: it travels with the revision so that
	// the gateway can rebuild the project's routes.
	IsOpenAPI bool
	// Extras are what the bundle carries besides its source (its
	// dependencies: WithDeps).
	Extras []bundle.Extra
}

// Compiled is a compiled project: the job, its revision and the blobs it
// needs served.
type Compiled struct {
	Job       *api.Job
	Revision  string
	Artifacts []Artifact
	// Pools are the configs of the job's pools by task group name, as
	// each group's task config encodes them.
	Pools map[string]*pool.Config
}

// Compile turns a project into a Nomad job. It reads each function's
// source to compute its bundle digest.
func Compile(p *spec.Project, opts ...Option) (*Compiled, error) {
	o := options{blobURL: DefaultBlobURL}
	for _, opt := range opts {
		opt(&o)
	}
	if o.fsys == nil {
		o.fsys = os.DirFS(p.Dir)
	}

	c := &Compiled{}
	digests := map[string]bundle.Digest{} // project-relative path -> digest
	addBlob := func(path string, schema bool, runtime string) (bundle.Digest, error) {
		if d, ok := digests[path]; ok {
			return d, nil
		}
		var d bundle.Digest
		var extras []bundle.Extra
		var err error
		if schema {
			d, err = fileDigest(o.fsys, path)
		} else {
			if o.deps != nil {
				if extras, err = o.deps(runtime, path); err != nil {
					return "", fmt.Errorf("compile %s: %w", p.Name, err)
				}
			}
			d, err = bundle.ComputeWith(o.fsys, path, extras)
		}
		if err != nil {
			return "", fmt.Errorf("compile %s: %w", p.Name, err)
		}
		digests[path] = d
		c.Artifacts = append(c.Artifacts, Artifact{Digest: d, Path: path, IsSchema: schema, Extras: extras})
		return d, nil
	}

	// Group functions by pool, in name order.
	pools := map[string][]*spec.Function{}
	for _, f := range p.Functions {
		pools[f.Pool] = append(pools[f.Pool], f)
		if f.Source != "" {
			if _, err := addBlob(f.Source, false, f.Runtime); err != nil {
				return nil, err
			}
		}
		for _, s := range []string{f.InputSchema, f.OutputSchema} {
			if s != "" {
				if _, err := addBlob(s, true, ""); err != nil {
					return nil, err
				}
			}
		}
	}
	for _, s := range p.Streams {
		if s.Schema != "" {
			if _, err := addBlob(s.Schema, true, ""); err != nil {
				return nil, err
			}
		}
	}
	// The OpenAPI documents the routes come from: blobs of the revision,
	// which the job itself does not fetch.
	for _, doc := range p.OpenAPI {
		if _, err := addBlob(doc, true, ""); err != nil {
			return nil, err
		}
		for i := range c.Artifacts {
			if c.Artifacts[i].Path == doc {
				c.Artifacts[i].IsOpenAPI = true
			}
		}
	}
	rev, err := revision(o.fsys, p, c.Artifacts)
	if err != nil {
		return nil, fmt.Errorf("compile %s: %w", p.Name, err)
	}
	c.Revision = rev

	id := names.JobID(p.Name)
	job := api.NewServiceJob(id, id, "", 0)
	job.Region = nil
	job.Priority = nil
	job.Datacenters = o.datacenters
	job.Meta = map[string]string{names.MetaProject: p.Name, names.MetaRevision: rev, names.MetaAutoRollback: strconv.FormatBool(deploySettings(p).AutoRollback)}
	if o.gitSHA != "" {
		job.Meta[names.MetaGitSHA] = o.gitSHA
	}

	poolNames := make([]string, 0, len(pools))
	for name := range pools {
		poolNames = append(poolNames, name)
	}
	sort.Strings(poolNames)
	c.Pools = map[string]*pool.Config{}
	for _, name := range poolNames {
		tg, cfg := o.group(p, rev, name, pools[name], digests)
		job.TaskGroups = append(job.TaskGroups, tg)
		c.Pools[name] = cfg
	}
	c.Job = job
	return c, nil
}

func (o *options) group(p *spec.Project, rev, poolName string, fns []*spec.Function, digests map[string]bundle.Digest) (*api.TaskGroup, *pool.Config) {
	cpu, mem, memMax := poolOverheadMHz, poolOverheadMiB, poolOverheadMiB
	longest := time.Duration(0)
	var artifacts []*api.TaskArtifact
	var templates []*api.Template
	fetched := map[bundle.Digest]bool{}
	// fetch is the job's locator: the artifact that puts a blob in the
	// task directory, listed once per digest.
	fetch := func(path string, schema bool) (string, string) {
		d := digests[path]
		dest := BundleDir + "/" + d.Hex()
		mode := "dir"
		if schema {
			dest = SchemaDir + "/" + d.Hex() + ".json"
			mode = "file"
		}
		if !fetched[d] {
			fetched[d] = true
			artifacts = append(artifacts, &api.TaskArtifact{
				GetterSource:  new(o.blobURL + "/sha256/" + d.Hex()),
				GetterOptions: map[string]string{"checksum": string(d), "archive": map[bool]string{false: "tar", true: "false"}[schema]},
				GetterMode:    new(mode),
				RelativeDest:  new(dest),
			})
		}
		return dest, string(d)
	}
	cfg := poolConfig(p, rev, poolName, fns, fetch)
	cfg.Port = PortLabel
	for _, f := range fns {
		resident := max(f.Instances.Min, 1)
		cpu += f.CPU * resident
		mem += f.Memory * resident
		memMax += f.Memory * f.Instances.Max
		longest = max(longest, f.Timeout)
		if len(f.Secrets) > 0 {
			refs := make([]secrets.Ref, len(f.Secrets))
			for i, sc := range f.Secrets {
				refs[i] = secrets.Ref{Name: sc.Name, Path: sc.Path, Key: sc.Key}
			}
			templates = append(templates, secretTemplate(f.Name, refs))
		}
	}

	task := &api.Task{
		Name:   "pool",
		Driver: DriverName,
		Config: taskConfig(cfg),
		Resources: &api.Resources{
			CPU:         new(cpu),
			MemoryMB:    new(mem),
			MemoryMaxMB: new(max(memMax, mem)),
		},
		Artifacts: artifacts,
	}
	if len(templates) > 0 {
		task.Templates = templates
	}
	// The task's Vault token reads the functions' secrets and decrypts
	// the ciphertexts of the pool's config (the kafka block's SASL
	// password, the connectors' encrypted credentials).
	if len(templates) > 0 || cfg.NeedsDecrypt() {
		task.Vault = vaultBlock(p.Name)
	}
	// The pool's scaling block bounds the count; a new group starts with
	// one allocation (min when it is more), and a deploy of a group that
	// runs keeps its count (the deployer registers with PreserveCounts),
	// so that a revision does not undo the autoscaler.
	scaling := p.PoolOf(poolName).Scaling
	count := min(max(scaling.Min, 1), scaling.Max)
	// kill_timeout lets the longest call finish on a drain. Nomad rejects
	// a kill_timeout longer than a non-zero progress_deadline; the update
	// block below sets progress_deadline = 0, which Nomad exempts from
	// that check, so any function timeout gives a valid job.
	killTimeout := longest + drainGrace
	task.KillTimeout = &killTimeout
	return &api.TaskGroup{
		// Nomad deregisters the pool's service, then waits this long
		// before stopping the task: gateways stop sending to it before
		// it drains, so no call lands on a closing connection.
		ShutdownDelay: new(shutdownDelay),
		Update:        updateStrategy(p),
		Name:          new(poolName),
		Count:         &count,
		Scaling:       scalingBlock(scaling, cfg),
		Networks: []*api.NetworkResource{{
			DynamicPorts: []api.Port{{Label: PortLabel}},
		}},
		Services:    []*api.Service{poolService(p.Name, poolName, rev)},
		Spreads:     []*api.Spread{nodeSpread()},
		Constraints: runtimeConstraints(cfg),
		Tasks:       []*api.Task{task},
	}, cfg
}

// nodeSpread spreads a group's allocations evenly over the client nodes,
// so that a scaled pool survives the loss of one node with the others
// serving, and its load uses every machine. Nomad's own anti-affinity
// between allocations of one job is only a penalty that bin packing can
// outweigh (a node with room takes them all). A spread, unlike a
// distinct_hosts constraint, still places allocations when there are
// more of them than nodes.
func nodeSpread() *api.Spread {
	return &api.Spread{Attribute: "${node.unique.id}", Weight: new(int8(100))}
}

// poolService is a pool's service: how gateways find it, checked at
// HealthPath.
func poolService(project, poolName, rev string) *api.Service {
	return &api.Service{
		Name:      names.ServiceName(project, poolName),
		PortLabel: PortLabel,
		Provider:  "nomad",
		Tags:      []string{"butter", "project=" + project, "pool=" + poolName, "revision=" + rev},
		Checks: []api.ServiceCheck{{
			Type:     "http",
			Path:     HealthPath,
			Interval: 10 * time.Second,
			Timeout:  2 * time.Second,
		}},
	}
}

// deploySettings returns the project's deploy block, or the defaults for
// a project that was not built by spec.Load.
func deploySettings(p *spec.Project) spec.Deploy {
	if p.Deploy.HealthyDeadline <= 0 {
		return spec.DefaultDeploy()
	}
	return p.Deploy
}

// updateStrategy is every group's update block. One allocation at a time
// is replaced, and counts as healthy once its service checks have passed
// for min_healthy_time. progress_deadline = 0 makes Nomad fail the
// deployment at the first allocation that is unhealthy (checks failing at
// healthy_deadline, or the task failing) instead of waiting out a progress
// deadline. Nomad's auto_revert stays off: the control plane decides
// whether to roll back (job meta butter_auto_rollback), and activates the
// previous revision itself, so that its record of the active revision and
// Nomad's job never disagree.
func updateStrategy(p *spec.Project) *api.UpdateStrategy {
	d := deploySettings(p)
	return &api.UpdateStrategy{
		MaxParallel:      new(1),
		HealthCheck:      new(healthCheckChecks),
		MinHealthyTime:   new(d.MinHealthyTime),
		HealthyDeadline:  new(d.HealthyDeadline),
		ProgressDeadline: new(time.Duration(0)),
		AutoRevert:       new(false),
	}
}

func fileDigest(fsys fs.FS, p string) (bundle.Digest, error) {
	f, err := fsys.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", p, err)
	}
	return bundle.Digest("sha256:" + hex.EncodeToString(h.Sum(nil))), nil
}

// revision names a project's content: a hash over its spec files and the
// digests of everything it bundles. The same tree gives the same revision.
func revision(fsys fs.FS, p *spec.Project, arts []Artifact) (string, error) {
	h := sha256.New()
	for _, name := range p.Files {
		src, err := fs.ReadFile(fsys, name)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "spec %s %d\n", name, len(src))
		h.Write(src)
	}
	// The variables' values: a revision is its specs with the values
	// they were loaded with (spec.ValuesFile).
	for _, v := range p.Vars {
		fmt.Fprintf(h, "var %s %d\n%s", v.Name, len(v.Value), v.Value)
	}
	sorted := append([]Artifact(nil), arts...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	for _, a := range sorted {
		fmt.Fprintf(h, "blob %s %s\n", a.Path, a.Digest)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

// CheckDeployable refuses a project that only butter dev can run: MQTT
// connectors that declare no address, for which butter dev starts an
// embedded broker (dev/mqtt.go) and a cluster has none. Compile does not
// refuse them (butter dev records its revisions through it); what
// deploys to Nomad (deploy.Push, butter job render) calls this first.
func CheckDeployable(p *spec.Project) error {
	var brokerless []string
	for _, f := range p.Functions {
		if (f.Connector == "source.mqtt" || f.Connector == "sink.mqtt") && f.Options["address"] == "" {
			block, kind, _ := strings.Cut(f.Connector, ".")
			brokerless = append(brokerless, fmt.Sprintf("%s %q %q", block, kind, f.Name))
		}
	}
	if len(brokerless) > 0 {
		verb := "declares"
		if len(brokerless) > 1 {
			verb = "declare"
		}
		return fmt.Errorf("project %s: %s %s no address, which only butter dev provides (its embedded MQTT broker): give each its broker's address = \"tcp://<host>:1883\" to deploy it", p.Name, strings.Join(brokerless, " and "), verb)
	}
	return nil
}

// SecretsDir is where, inside the task's secrets directory, Nomad renders
// each function's secrets: <SecretsDir>/<function>.json.
const SecretsDir = "secrets/butter"

// vaultBlock asks Nomad for the task's Vault token through its workload
// identity, with the project's role. The token is not put in the task's
// environment (the pool's environment is its own, but there is no reason
// to have it there); the file secrets/vault_token stays, for the pool's
// transit decryption, hidden from instances by the sandbox. A renewed
// token needs no restart: Nomad's template runner and the pool read it
// when they need it.
func vaultBlock(project string) *api.Vault {
	return &api.Vault{
		Role:       names.VaultRole(project),
		Env:        new(false),
		ChangeMode: new("noop"),
	}
}

// secretTemplate renders a function's secrets from Vault into one JSON
// file, {"NAME": "value", ...}, read by the pool (secrets.Rendered). The
// key is looked up in .Data.data for KV version 2 and in .Data for KV
// version 1 and other engines; a missing key renders null, which the pool
// reports by name instead of starting the function with an empty value. On
// a change Nomad sends SIGHUP, and the pool replaces that function's
// instances only. Values never appear in the job: only their paths.
func secretTemplate(function string, refs []secrets.Ref) *api.Template {
	var b strings.Builder
	b.WriteString("{\n")
	for i, sc := range refs {
		fmt.Fprintf(&b, "  %q: {{ with secret %q }}{{ if .Data.data }}{{ index .Data.data %q | toJSON }}{{ else }}{{ index .Data %q | toJSON }}{{ end }}{{ end }}", sc.Name, sc.Path, sc.Key, sc.Key)
		if i < len(refs)-1 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString("}\n")
	return &api.Template{
		EmbeddedTmpl: new(b.String()),
		DestPath:     new(SecretsDir + "/" + function + ".json"),
		ChangeMode:   new("signal"),
		ChangeSignal: new("SIGHUP"),
		Perms:        new("0600"),
		Splay:        new(time.Duration(0)),
		// Nomad's client default waits for 5s without a change before
		// rendering (4m at most). A leased secret re-read every few
		// seconds never looks quiet that long, so a rotation would wait
		// the full 4 minutes.
		Wait: &api.WaitConfig{Min: new(500 * time.Millisecond), Max: new(5 * time.Second)},
	}
}

// runtimeAttrs are the node attributes the butter driver sets when a
// client has a runtime's interpreter or toolchain (its version; the
// driver's fingerprint, plugins/driver): a pool needs each of its
// functions' runtimes on the client it runs on.
var runtimeAttrs = map[string]string{"node": "node", "python": "python3", "go": "go", "java": "javac"}

// runtimeConstraints are the pool's constraints that Nomad place it only
// on clients whose butter driver found its functions' runtimes, in a
// fixed order; nil when its runtimes need nothing (exec, http, wasm).
func runtimeConstraints(cfg *pool.Config) []*api.Constraint {
	need := map[string]bool{}
	for _, f := range cfg.Functions {
		if a, ok := runtimeAttrs[f.Runtime]; ok {
			need[a] = true
		}
	}
	var out []*api.Constraint
	for _, a := range []string{"go", "node", "python3"} {
		if need[a] {
			out = append(out, runtimeConstraint(a))
		}
	}
	return out
}

func runtimeConstraint(attr string) *api.Constraint {
	return &api.Constraint{LTarget: "${attr.driver.butter." + attr + "}", Operand: api.ConstraintAttributeIsSet}
}
