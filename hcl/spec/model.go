package spec

import (
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Runtimes are the function runtimes Butter knows.
var Runtimes = []string{"node", "python", "go", "java", "exec", "http", "wasm"}

// Project is a decoded, validated set of spec files.
type Project struct {
	// Name is the project's name: the project block's label, or the
	// directory's base name.
	Name string
	// Dir is the directory the project was loaded from.
	Dir string
	// Files lists the spec files, relative to Dir with forward slashes,
	// sorted.
	Files []string

	Streams   []*Stream
	Functions []*Function
	Pipelines []*Pipeline
	// Pools are the pools the functions run in, by name, each with its
	// pool block's settings or the defaults (scaling.go).
	Pools map[string]*Pool

	// Kafka is the project's kafka block, nil when it has none.
	Kafka *Kafka
	// Deploy is the project's deploy block, with the defaults filled in
	// where the spec is silent (DefaultDeploy when it has no block).
	Deploy Deploy
	// Middleware are the project block's middleware: functions that see
	// every request of the project's http triggers before its handler, and
	// the answer after it, in this order (docs/gateway.md, "Middleware").
	// An http trigger's own middleware argument replaces the list for its
	// route (Trigger.Middleware holds what applies).
	Middleware []*Function
	// OpenAPI lists the OpenAPI 3 documents of the project block's
	// openapi argument, project-relative with forward slashes, in the
	// order written. Their operations are routed as http triggers of the
	// functions and pipelines their operationIds name (Trigger.OpenAPI).
	OpenAPI []string
	// Vars are the project's variable blocks with the values it was
	// loaded with, by name (vars.go). A revision records them in its
	// ValuesFile.
	Vars []Var
	// Disabled names the connectors left out by enabled = false, as
	// written: source "mqtt" "readings-in".
	Disabled []string
}

// Deploy says how a new revision of the project rolls out: when Nomad
// counts an allocation healthy, how long it waits, and whether the control
// plane rolls a failed revision back.
type Deploy struct {
	// MinHealthyTime is how long an allocation's health checks must pass
	// before it counts as healthy (Nomad's update.min_healthy_time).
	MinHealthyTime time.Duration
	// HealthyDeadline is how long a new allocation has to become healthy;
	// past it the allocation is unhealthy and the deployment fails
	// (update.healthy_deadline). Always longer than MinHealthyTime.
	HealthyDeadline time.Duration
	// AutoRollback makes the control plane activate the last healthy
	// revision again when a deployment fails.
	AutoRollback bool

	// DeclRange is where the deploy block is written; zero when the
	// project has none.
	DeclRange hcl.Range
}

// DefaultDeploy returns the deploy settings of a project with no deploy
// block.
func DefaultDeploy() Deploy {
	return Deploy{MinHealthyTime: DefaultMinHealthyTime, HealthyDeadline: DefaultHealthyDeadline, AutoRollback: true}
}

// Kafka says how the project's pools reach its Kafka cluster. Flags and
// $BUTTER_KAFKA_BROKERS override it. Secret values never appear: the SASL
// password is read from an environment variable of the pool.
type Kafka struct {
	Brokers         []string
	TLS             bool
	SASLMechanism   string
	SASLUsername    string
	SASLPasswordEnv string
	// SASLPasswordEncrypted is the password encrypted with the project's
	// Vault transit key (`butter secrets encrypt`); only the pool
	// decrypts it.
	SASLPasswordEncrypted string
}

// Stream is a Kafka topic declared by a stream block.
type Stream struct {
	Name       string
	Partitions int
	// Retention is how long records are kept; 0 means the broker's default.
	Retention time.Duration
	// Compact turns on log compaction (cleanup.policy=compact).
	Compact bool
	// Schema is the path, relative to the project directory, of the JSON
	// Schema every record must match; empty for none.
	Schema string

	DeclRange hcl.Range
}

// Function is one function block.
type Function struct {
	Name string
	// Connector is "sink.<type>" or "source.<type>" for a sink or
	// source block, "" for a function: a connector is a function of the
	// platform's own that carries a stream's records out of Butter, or
	// external messages into a stream (connector.go). Its Runtime is the
	// same, and its settings are in Options.
	Connector string
	Runtime   string
	// Source is the function's code, a file or directory relative to the
	// project directory, with forward slashes. Empty for an exec function
	// that runs a command found on the PATH.
	Source  string
	Handler string
	// Command is the argv of exec and http functions.
	Command []string
	// Pool names the pool (Nomad task group) that hosts the function.
	Pool string

	Output     *Stream
	DeadLetter *Stream
	// Emits are the streams the function may emit to besides its
	// output: the pool refuses an emit to any other (docs/events.md).
	Emits []*Stream
	// Calls are the functions and streams the function may call and
	// await (ctx.call): the pool refuses a call to any other.
	Calls []CallTarget

	Timeout time.Duration
	// Memory is the memory limit of one instance, in MiB.
	Memory int
	// CPU is the CPU share of one instance, in MHz.
	CPU int

	Env map[string]string
	// Options are the function's default options; a pipeline step's
	// options override them by name.
	Options      map[string]string
	InputSchema  string
	OutputSchema string

	Triggers  []*Trigger
	Instances Instances
	Retry     *Retry
	State     *State
	// Executions, when set, records each invocation in the execution
	// log (executions.go).
	Executions *Executions
	Secrets    []*Secret
	// NoSandbox is the function's sandbox = false: its instances run
	// without the confinement every other instance has (package sandbox,
	// docs/security.md). Validation warns about it.
	NoSandbox bool
	// ExecMode is an exec function's mode = "lines": one process per
	// instance, handed one event per line (runtime.ExecModeLines); empty
	// (mode = "fork", the default) forks the command per call.
	ExecMode      string
	ExecModeRange hcl.Range
	// SandboxRange is where sandbox = false is written.
	SandboxRange hcl.Range

	DeclRange hcl.Range
}

// Instances bounds how many instances of a function run in one pool.
type Instances struct {
	Min         int
	Max         int
	Concurrency int
	// Spare is how many instances with no call the pool keeps started
	// beyond the busy ones while the function is called (up to Max).
	Spare int
}

// Retry is a function's retry policy for events that fail.
type Retry struct {
	Attempts   int
	Backoff    time.Duration
	MaxBackoff time.Duration
}

// State turns on per-key state: the function maps (input, state) to
// (output, state), with the state kept per value of Key.
type State struct {
	// Key names the field of the input event (or "$key" for the record
	// key) that selects the state.
	Key string
	// TTL expires state not written for this long; 0 keeps it forever.
	TTL time.Duration
}

// Secret is one secret a function declares. Only the reference is kept;
// secret values never enter the spec.
type Secret struct {
	// Name is the environment variable the function sees.
	Name string
	// Path and Key locate the value in Vault: vault = "path#key".
	Path string
	Key  string

	DeclRange hcl.Range
}

// TriggerType names a kind of trigger.
type TriggerType string

// The trigger types.
const (
	TriggerHTTP   TriggerType = "http"
	TriggerCron   TriggerType = "cron"
	TriggerStream TriggerType = "stream"
)

// Trigger starts a function or a pipeline.
type Trigger struct {
	Type TriggerType

	// http
	Method string
	Path   string
	Auth   string // none | api_key | jwt
	// RouteRange is where the route is written, for diagnostics: the
	// route argument, or for a route from an OpenAPI document the
	// document's entry in the project's openapi list.
	RouteRange hcl.Range
	// OpenAPI is the project-relative path of the OpenAPI document the
	// route comes from, and OperationID the operation's operationId; both
	// are empty for a trigger block.
	OpenAPI     string
	OperationID string
	// Mode is how the gateway invokes the target: "direct" (the default)
	// proxies the request to a pool and streams the answer back; "queued"
	// goes through Kafka and the caller waits for the reply; "async" goes
	// through Kafka and answers 202 Accepted with an invocation id at once.
	Mode string
	// JWKSURL is the http(s) URL of the JSON Web Key Set whose keys sign
	// the route's tokens. Set exactly when Auth is "jwt".
	JWKSURL string
	// Audience is the "aud" claim a token must carry. Set exactly when
	// Auth is "jwt".
	Audience string
	// Issuer is the "iss" claim a token must carry; empty accepts any
	// issuer. Only with Auth "jwt".
	Issuer string
	// MaxBody is the largest request body the route accepts, in bytes;
	// 0 means no limit.
	MaxBody int64
	// Timeout is the route's deadline; an expired deadline answers 504.
	// When the spec sets none, Load fills in the function's timeout, or
	// for a pipeline the sum of its steps' timeouts.
	Timeout time.Duration
	// Rate limits the route to this many requests per second, across
	// callers; 0 means no limit.
	Rate float64
	// Burst is how many requests above Rate the route absorbs at once (a
	// token bucket's size): ceil(Rate) unless the spec says; 0 when Rate
	// is 0.
	Burst int
	// CORSOrigins are the origins browsers may call the route from, as
	// "scheme://host[:port]", or ["*"] for any; empty sends no CORS
	// headers.
	CORSOrigins []string
	// Middleware are the functions that see the route's requests before
	// its handler and its answers after it, in order: the trigger's
	// middleware argument when it has one (an empty list for none), else
	// the project's (Load fills it in).
	Middleware []*Function

	// cron
	Schedule string
	Timezone string

	// stream
	Stream *Stream
	Offset Offset
	// Order is "partition" (one event of a partition at a time) or "key"
	// (events of different keys in parallel, each key in order).
	Order string
	// ExactlyOnce makes the trigger's consumer handle each poll in one
	// Kafka transaction: the offsets, outputs, emits, dead letters and
	// state changes of its events are committed together, or none is
	// (docs/events.md, "Delivery"). ExactlyOnceRange is where it is set.
	ExactlyOnce      bool
	ExactlyOnceRange hcl.Range

	DeclRange hcl.Range
}

// Route returns "METHOD /path" for an http trigger.
func (t *Trigger) Route() string { return t.Method + " " + t.Path }

// OffsetKind says where a new consumer group starts reading.
type OffsetKind string

// The offset kinds.
const (
	OffsetLatest OffsetKind = "latest"
	OffsetFirst  OffsetKind = "first"
	OffsetAt     OffsetKind = "offset"
	OffsetTime   OffsetKind = "time"
)

// Offset is where a stream trigger starts when its consumer group has no
// committed offset.
type Offset struct {
	Kind OffsetKind
	// At is the offset for OffsetAt.
	At int64
	// Time is the timestamp for OffsetTime.
	Time time.Time
}

// String renders the offset the way the spec writes it.
func (o Offset) String() string {
	switch o.Kind {
	case OffsetAt:
		return formatInt(o.At)
	case OffsetTime:
		return o.Time.UTC().Format(time.RFC3339Nano)
	case "":
		return string(OffsetLatest)
	}
	return string(o.Kind)
}

// Pipeline chains functions: each step's output streams into the next
// step's input.
type Pipeline struct {
	Name     string
	Steps    []*Step
	Triggers []*Trigger

	DeclRange hcl.Range
}

// Step is one step of a pipeline: a function, or another pipeline, with
// named options that reach the function next to its input; or an
// external HTTP function by URL (an OpenFaaS function, say), which the
// gateway POSTs the step's input to and streams its answer on.
type Step struct {
	Function *Function
	Pipeline *Pipeline
	Options  map[string]string
	// URL is an external step's http:// or https:// URL, "" otherwise;
	// Timeout is its timeout, DefaultTimeout unless the step sets one
	// (it adds to the pipeline route's default deadline).
	URL     string
	Timeout time.Duration

	Range hcl.Range
}

// Name returns the name of the step's function or pipeline.
func (s *Step) Name() string {
	if s.Function != nil {
		return s.Function.Name
	}
	if s.Pipeline != nil {
		return s.Pipeline.Name
	}
	return s.URL
}

// Function returns the function with the given name, or nil.
func (p *Project) Function(name string) *Function {
	for _, f := range p.Functions {
		if f.Name == name {
			return f
		}
	}
	return nil
}

// Stream returns the stream with the given name, or nil.
func (p *Project) Stream(name string) *Stream {
	for _, s := range p.Streams {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Pipeline returns the pipeline with the given name, or nil.
func (p *Project) Pipeline(name string) *Pipeline {
	for _, s := range p.Pipelines {
		if s.Name == name {
			return s
		}
	}
	return nil
}
