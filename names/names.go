// Package names defines, once, every name that two parts of Butter must
// agree on: Nomad job, group and service names, Kafka topics and consumer
// groups, Vault roles, policies, transit keys and KV paths, the job's meta
// keys, the rule a project or block name follows, and the headers and paths
// of the gateway↔pool invoke endpoint.
//
// A name that appears in two packages and is spelled in both is a bug
// waiting for one of them to change: every package builds these names
// through this one, and nothing here imports another Butter package.
package names

import (
	"regexp"
	"strings"
)

// Rule is what project, stream, function and pipeline names match: they
// become Kafka topics, Nomad task groups and service names, Vault roles and
// paths, so they stay lower-case DNS-label-like words of at most 63
// characters.
var Rule = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// RuleText says Rule in words, for error messages.
const RuleText = "lower-case letters, digits, '-' and '_', starting with a letter, at most 63 characters"

// Valid reports whether s follows Rule.
func Valid(s string) bool { return Rule.MatchString(s) }

// Nomad.

// JobID is the Nomad job of a project, "butter-<project>".
func JobID(project string) string { return "butter-" + project }

// ServiceName is the Nomad service of a project's pool,
// "butter-<project>-<pool>".
func ServiceName(project, pool string) string { return "butter-" + project + "-" + pool }

// Meta keys set on every project's job.
const (
	MetaProject  = "butter_project"
	MetaRevision = "butter_revision"
	MetaGitSHA   = "butter_git_sha"
	// MetaAutoRollback is "true" or "false": whether the control plane
	// rolls a failed deployment of this job back (the project's
	// deploy.auto_rollback). Nomad's own auto_revert stays off.
	MetaAutoRollback = "butter_auto_rollback"
)

// Vault.

// VaultRole is the Vault JWT role a project's tasks log in with.
func VaultRole(project string) string { return "butter-" + project }

// VaultPolicy is the Vault policy of a project's tasks.
func VaultPolicy(project string) string { return "butter-" + project }

// TransitKey is the project's Vault transit key, which encrypts its
// connector secrets.
func TransitKey(project string) string { return "butter-" + project }

// KVPath is where `butter secrets put` writes a project's secret in a KV v2
// mount, relative to the mount: "butter/<project>/<name>".
func KVPath(project, name string) string { return "butter/" + project + "/" + name }

// Kafka.

// Topic is the Kafka topic of a project's stream, "<project>.<stream>".
// Topics carry the project's name so that projects sharing a Kafka cluster
// never collide.
func Topic(project, stream string) string { return project + "." + stream }

// DeadLetterTopic is a stream trigger's dead-letter topic when the function
// names none: the consumed topic with ".dlq".
func DeadLetterTopic(topic string) string { return topic + ".dlq" }

// ConsumerGroup is the consumer group of a function's stream trigger,
// "butter.<project>.<function>.<stream>".
func ConsumerGroup(project, function, stream string) string {
	return "butter." + project + "." + function + "." + stream
}

// timersSegment marks tick topics and groups. It starts with '_', which no
// name can (names start with a letter), so neither a tick topic nor a tick
// group can equal a stream's topic or consumer group.
const timersSegment = "_timers"

// TimerTopic is the topic that carries a function's cron ticks,
// "<project>._timers.<function>". It has two dots; a stream's topic has
// one, since names hold no dots.
func TimerTopic(project, function string) string {
	return project + "." + timersSegment + "." + function
}

// TimerGroup is the consumer group a function's pool reads its tick topic
// with, "butter.<project>.<function>._timers".
func TimerGroup(project, function string) string {
	return "butter." + project + "." + function + "." + timersSegment
}

// RequestTopic is the topic queued and async calls to a function go to,
// "<project>.<function>.requests". It has two dots, so it cannot be a
// stream's topic.
func RequestTopic(project, function string) string {
	return project + "." + function + ".requests"
}

// RequestGroup is the consumer group of a function's request topic,
// "butter.<project>.<function>._requests".
func RequestGroup(project, function string) string {
	return "butter." + project + "." + function + "._requests"
}

// ReplyTopic is the topic a requester (a gateway, butter dev) waits for
// its replies on, "butter._replies.<who>".
func ReplyTopic(who string) string { return "butter._replies." + who }

// EventSource is the CloudEvents source of events a function produces,
// "butter/<project>/<function>".
func EventSource(project, function string) string {
	return "butter/" + project + "/" + function
}

// The pool's invoke endpoint, as the gateway and `butter invoke` call it.
const (
	// InvokePattern is the pool's route for one call of a function.
	InvokePattern = "POST /v1/invoke/{function}"
	// InvokePathPrefix is InvokePattern's path before the function's name.
	InvokePathPrefix = "/v1/invoke/"
	// GatewayInvokePath is the gateway's path for an ad-hoc pipeline of a
	// project's functions, and GatewayInvokePattern its route.
	GatewayInvokePath    = InvokePathPrefix + "{project}"
	GatewayInvokePattern = "POST " + GatewayInvokePath

	// HeaderTimeout bounds a call: a Go duration ("2s").
	HeaderTimeout = "Butter-Timeout"
	// HeaderDeadline bounds a call: an RFC 3339 time.
	HeaderDeadline = "Butter-Deadline"
	// HeaderOptionPrefix passes an option: Butter-Option-<name>: value.
	HeaderOptionPrefix = "Butter-Option-"
	// HeaderParamPrefix passes a route parameter: Butter-Param-<name>.
	HeaderParamPrefix = "Butter-Param-"
	// HeaderError is the error of a call whose output has started, as a
	// trailer (or a header when nothing was sent).
	HeaderError = "Butter-Error"
	// HeaderStatus marks a pool's answer whose status or headers the
	// function set (worker protocol HEAD): its value is the status the
	// function set, 0 when it set headers only. An answer without it
	// whose status is not 200 is the pool's error.
	HeaderStatus = "Butter-Status"
	// HeaderStateKey selects a stateful function's state on an HTTP call.
	HeaderStateKey = "Butter-State-Key"
	// HeaderPipeline carries the steps of an ad-hoc pipeline
	// ("sed e=s/a/b/ | to-upper") to the gateway's invoke route.
	HeaderPipeline = "Butter-Pipeline"
)

// MethodAny is a route's method that matches every HTTP method.
const MethodAny = "ANY"

// The gateway's own endpoints, served on the port of the routes beside
// GatewayInvokePattern. A route may not take a path of the gateway's:
// GatewayMetricsPath, GatewayAPIPrefix or anything under it (see
// GatewayPath).
const (
	GatewayHealthPattern     = "GET /v1/health"
	GatewayRoutesPattern     = "GET /v1/routes"
	GatewayInvocationPattern = "GET /v1/invocations/{id}"
	GatewayMetricsPattern    = "GET " + GatewayMetricsPath

	// GatewayMetricsPath is where the gateway serves Prometheus metrics.
	GatewayMetricsPath = "/metrics"
	// GatewayAPIPrefix starts every path of the gateway's own API, those
	// above and the ones to come.
	GatewayAPIPrefix = "/v1/"
)

// GatewayPatterns lists the gateway's own endpoints, as ServeMux patterns.
func GatewayPatterns() []string {
	return []string{GatewayHealthPattern, GatewayRoutesPattern, GatewayInvokePattern, GatewayInvocationPattern, GatewayMetricsPattern}
}

// GatewayPath reports whether a route's path (a ServeMux path, {params}
// and all) is the gateway's own: GatewayMetricsPath, or "/v1" and every
// path under GatewayAPIPrefix.
func GatewayPath(path string) bool {
	return path == GatewayMetricsPath || path+"/" == GatewayAPIPrefix || strings.HasPrefix(path, GatewayAPIPrefix)
}

// InvokePath is the pool's path for one call of function.
func InvokePath(function string) string { return InvokePathPrefix + function }
