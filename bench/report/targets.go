package main

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// descriptions says in a sentence what each benchmark measures; its doc
// comment and docs/benchmarks.md say how.
var descriptions = map[string]string{
	"Overhead":               "One call of the Go echo function at a time on 127.0.0.1: in-process (baseline), a plain net/http round trip, the pool's Go API, the pool's HTTP endpoint, and a gateway route. Δ is the overhead a layer adds over the in-process call.",
	"Throughput":             "wrk against a gateway route to each runtime's echo function at 1, 16 and 64 connections; the baseline is a plain net/http echo handler on the same machine. wrk shares the 2 cores with what it measures.",
	"ColdStart":              "The first answer of a function from zero instances (a new pool per start); the baseline forks and execs echo to its first byte; the interpreter rows start node, python3 and java (with the java runtime's flags) on a one-line program, the floor under their runtimes.",
	"Density":                "One pool hosting many functions (1,000 go and exec; 100 node and python; 20 java), each with one idle instance: the time to start them (the figure), to have every one answer, and their memory. The baseline starts as many idle `cat` processes.",
	"ScaleUp":                "In-pool instance scale-up: a call to a function whose only instance is busy (held by a call whose input stays open), answered by a second instance the pool starts for it (a new pool per operation); each runtime's baseline is the same call with the second instance already warm; spare is the same call on a function with instances spare = 1, which lands on the spare the pool keeps started while the function is called, the pool starting the next spare behind it.",
	"AllocationsAcrossNodes": "wrk (16 connections, 5 s) through a gateway to one pool on a Nomad cluster of one server and three clients on this machine: one allocation (baseline) and three spread over the three nodes; each allocation runs at most 2 calls of an exec function (cat) at once. The 2 cores run every node: the ratio shows what allocations add where a pool's own concurrency limits it, with CPU per request.",
	"SpikeToScaled":          "A step in load (8 HTTP clients through a gateway) on a pool of one allocation on a real Nomad dev agent, to the second allocation's first answer: the operator's scale at the step (baseline) and the autoscaler's loop at its default 5 s interval. The split is in detect-ms, endpoint-ms, placement-ms and serving-ms (medians).",
	"WakeFromZero":           "An HTTP call through the gateway to a pool with no allocation, on a real Nomad dev agent: held while the gateway wakes the pool through the control plane, whose leader's loop scales it 0 -> 1; Nomad places and starts it, the call is answered. The split is in loop-ms, placement-ms, pool-ms and call-ms (medians of each run). The baseline is the same call while the pool runs.",
	"Connectors":             "Records per second through the sinks and the MQTT source against real servers (PostgreSQL 15, InfluxDB 1.6, Mosquitto), 20,000 records an operation: each against a bare client loop on the same server in the same run (pgx CopyFrom in batches of 256; line protocol POSTed 256 points at a time; a Paho subscriber receiving a Paho publisher's QoS 1 messages).",
	"Stream":                 "Events per second from one topic to another through the embedded broker, committed after their output is acknowledged: a raw franz-go loop (baseline), the same loop one record at a time per partition, and a pool running the Go echo as a stream-to-stream function; then exactly once: a raw franz-go transactional loop (raw-eos) and the same pool with exactly_once = true (go-eos), whose ratio is to raw-eos; last the exec echo (cat) forked per event (exec) and in mode = \"lines\" (exec-lines).",
	"RaftWrite":              "Writes through Raft on the leader (a project upsert), one at a time and from 64 writers, on 3 nodes over real TCP transports with BoltDB logs; the baseline is a 1-node cluster.",
	"LeaderChange":           "From a leader change on a 3-node cluster to the next acknowledged write: a planned leadership transfer (baseline) and a leader that stops dead.",
	"Deploy":                 "From a deploy to the first answer of the new version: `butter invoke -local` (baseline, the function run once), `butter dev` started, a source change under `butter dev`, and `butter deploy` to a Nomad dev agent (healthy: until Nomad's deployment is healthy).",
	"Tracing":                "One call of the Go echo through a gateway route to the pool's endpoint, one at a time, with tracing off (baseline), then calls with tracing off and on interleaved in one loop (paired: its p50 and p99 are the traced calls'; off-p50 the untraced ones'; added-p50 their difference within each run, the budget's figure, which the machine's load moves far less than the Δ between two runs in sequence). Traced: every span sampled and exported by OTLP/HTTP to a receiver in the benchmark's process.",
	"ExecutionLog":           "One call of the Go echo on the pool's endpoint, one at a time, without an execution log (baseline), then calls without and with the default three tiers interleaved in one loop (paired: its p50 and p99 are the logged calls'; off-p50 the others'; added-p50 their difference within each run, the budget's figure). Logged: the record encoded and produced beside the call, to the embedded broker in the benchmark's process.",
	"Decode":                 "Decoding the iot example's spec; the baseline is hcl/v2's parse alone.",
	"Wasm":                   "The wasm runtime with a 191-byte WASI echo module: the first call of a new pool's function (cold-start/wasm) against a call to a running instance (each call instantiates the module); the echo's calls/s through the pool, 8 at a time, against the Go process runtime's (echo/baseline); and one pool hosting 10,000 wasm functions with an instance each, every one called once (density: the pool's start, and the process's memory per function).",
	"Compile":                "Compiling the iot example (bundle hashing included); the baseline is decoding alone.",
	"Render":                 "Rendering the iot example's job; the baseline is encoding/json of the same api.Job.",
}

// perCall lists the benchmarks whose operation is one call, whose B/op
// and allocs/op therefore mean something.
var perCall = map[string]bool{"Overhead": true, "Tracing": true, "ExecutionLog": true, "RaftWrite": true, "Decode": true, "Compile": true, "Render": true}

// target is one of the goals the benchmarks issue set.
type target struct {
	what, goal string
	// measure returns the figure compared with the goal, whether it meets
	// it, and false when the benchmark did not run.
	measure func(rs *results) (figure string, met, ok bool)
}

var targets = []target{
	{"Overhead over the in-process call: gateway → pool → Go echo", "≤ 100 µs at p50 (issue 23; 150 µs before)", overhead("gateway", "Overhead/gateway", 100e3)},
	{"Overhead over the in-process call: the pool's endpoint alone", "≤ 60 µs at p50 (issue 23; 150 µs before)", overhead("gateway", "Overhead/pool-http", 60e3)},
	{"Tracing on (100% sampled, exported to a local receiver): added latency per call, gateway → pool → Go echo, calls with tracing off and on interleaved", "≤ 10 µs at p50", tracingCost},
	{"Execution log on: added latency per call, the pool's endpoint → Go echo, calls without and with it interleaved", "≤ 20 µs at p50", execLogCost},
	{"Go echo through the gateway (best of 1, 16 and 64 connections)", "≥ 15,000 req/s", goThroughput},
	{"Go echo through the gateway at 64 connections against a bare net/http echo, with CPU per request", "≥ 0.33× (issue 23)", goThroughputRatio},
	{"Stream throughput of a Go stream-to-stream function", "≥ 0.8 of the raw franz-go loop", streamRatio},
	{"The same with order = \"key\" (64 keys, 64 calls at once)", "≥ 0.6 of the raw franz-go loop", keyOrderRatio},
	{"Exactly-once stream throughput of a Go stream-to-stream function", "≥ 0.5 of the raw franz-go transactional loop", eosRatio},
	{"An exec function (cat) on a stream, a process per event (fork) and one per instance (mode = \"lines\"), against the Go function", "report events/s and the ratio", execStream},
	{"Cold start, go", "≤ 5 ms", coldStart("go", 5e-3)},
	{"Cold start, exec", "≤ 5 ms", coldStart("exec", 5e-3)},
	{"Cold start, node", "≤ 50 ms", coldStart("node", 50e-3)},
	{"Cold start, python", "≤ 50 ms", coldStart("python", 50e-3)},
	{"Cold start, node, against a bare node on a one-line program", "≤ 1.5× (issue 23)", coldStartFloor("node")},
	{"Cold start, python, against a bare python3 on a one-line program", "≤ 1.5× (issue 23)", coldStartFloor("python")},
	{"In-pool instance scale-up, go (the call that starts a second instance)", "≤ 50 ms", scaleUp("go", 50e-3)},
	{"In-pool instance scale-up, exec", "≤ 50 ms", scaleUp("exec", 50e-3)},
	{"In-pool instance scale-up, node", "≤ 50 ms", scaleUp("node", 50e-3)},
	{"In-pool instance scale-up, python", "≤ 50 ms", scaleUp("python", 50e-3)},
	{"In-pool instance scale-up, node, with a spare instance kept (instances spare = 1)", "≤ 50 ms", scaleUpVariant("node", "spare", 50e-3)},
	{"Spike to scaled: a step in load to the new allocation serving (Nomad dev agent, one node)", "≤ 5 s", spikeToScaled},
	{"Throughput with 1 versus 3 allocations across nodes (ratio and CPU per request)", "report", acrossNodes},
	{"Wake from zero allocations to the first answer (Nomad dev agent, one node)", "report p50/p99 and the split", wakeFromZero},
	{"Density: functions one pool hosts, each with an idle instance, all answering", "≥ 1,000", density},
	{"A new control-plane leader after the leader is lost (to the next acknowledged write)", "≤ 2 s", leaderLoss},
	{"Cold start, wasm (a 191-byte WASI module)", "≤ 1 ms at p50", wasmColdStart},
	{"wasm functions one pool hosts, each with an instance, all answering, and memory per function", "≥ 10,000; ≤ 200 KiB each", wasmDensity},
	{"wasm echo through the pool against the Go process runtime", "report the ratio", wasmEcho},
}

func wasmColdStart(rs *results) (string, bool, bool) {
	k := key{"plugins/pool", "Wasm/cold-start/wasm"}
	v, ok := rs.median(k, unitP50)
	if !ok {
		return "", false, false
	}
	p99, _ := rs.median(k, unitP99)
	return fmt.Sprintf("%s at p50 (p99 %s)", dur(v*1e9), dur(p99*1e9)), v <= 1e-3, true
}

func wasmDensity(rs *results) (string, bool, bool) {
	k := key{"plugins/pool", "Wasm/density"}
	n, ok1 := rs.median(k, "functions")
	kib, ok2 := rs.median(k, "rss-KiB/function")
	if !ok1 || !ok2 {
		return "", false, false
	}
	return fmt.Sprintf("%s functions answering, %.0f KiB of RSS each", group(n), kib), n >= 10000 && kib <= 200, true
}

// wasmEcho has no limit: the issue asks for the comparison.
func wasmEcho(rs *results) (string, bool, bool) {
	k := key{"plugins/pool", "Wasm/echo/wasm"}
	r, ok := rs.ratio(k)
	if !ok {
		return "", false, false
	}
	v, _ := rs.median(k, "calls/s")
	return fmt.Sprintf("%.3g× the Go runtime's calls/s (%s calls/s)", r, group(v)), true, true
}

func targetTable(b *bytes.Buffer, rs *results) {
	fmt.Fprintf(b, "## Targets\n\n")
	fmt.Fprintf(b, "| target | goal | measured (median) | met |\n|---|---|---:|---|\n")
	for _, t := range targets {
		fig, met, ok := t.measure(rs)
		verdict := "not met"
		switch {
		case !ok:
			fig, verdict = "—", "not measured"
		case met:
			verdict = "**met**"
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", t.what, t.goal, fig, verdict)
	}
}

// overhead judges the p50 a layer adds over the in-process call against
// limitNs.
func overhead(pkg, name string, limitNs float64) func(*results) (string, bool, bool) {
	return func(rs *results) (string, bool, bool) {
		d, ok := rs.delta(key{pkg, name})
		if !ok {
			return "", false, false
		}
		return "+" + dur(d) + " at p50", d <= limitNs, true
	}
}

func tracingCost(rs *results) (string, bool, bool) {
	return pairedCost(rs, key{"gateway", "Tracing/paired"}, 10e3)
}

func execLogCost(rs *results) (string, bool, bool) {
	return pairedCost(rs, key{"plugins/pool", "ExecutionLog/paired"}, 20e3)
}

// pairedCost is what a feature adds at p50, from a benchmark of calls
// with it off and on interleaved (harness.Paired): the median across runs
// of each run's difference, and the spread of those differences.
func pairedCost(rs *results, k key, limitNs float64) (string, bool, bool) {
	// benchfmt reads harness.UnitAddedP50 ("added-p50-ns") as seconds.
	const unit = "added-p50-sec"
	d, ok := rs.median(k, unit)
	if !ok {
		return "", false, false
	}
	vs := rs.samples[k][unit]
	lo, hi := slices.Min(vs), slices.Max(vs)
	return fmt.Sprintf("%+.1f µs at p50 (interleaved; runs from %+.1f to %+.1f)", d*1e6, lo*1e6, hi*1e6), d*1e9 <= limitNs, true
}

func goThroughput(rs *results) (string, bool, bool) {
	best, where := 0.0, ""
	for _, k := range rs.order {
		if k.pkg == "gateway" && strings.HasPrefix(k.name, "Throughput/") && strings.HasSuffix(k.name, "/go") {
			if v, ok := rs.median(k, "req/s"); ok && v > best {
				best, where = v, strings.TrimSuffix(strings.TrimPrefix(k.name, "Throughput/"), "/go")
			}
		}
	}
	if where == "" {
		return "", false, false
	}
	return fmt.Sprintf("%s req/s (%s)", group(best), where), best >= 15000, true
}

// goThroughputRatio is the Go echo's rate through the gateway at 64
// connections over the bare echo's in the same run, with the CPU each
// request took: the process hosting the gateway and the pool (the
// benchmark runs both in one), and the worker.
func goThroughputRatio(rs *results) (string, bool, bool) {
	k := key{"gateway", "Throughput/c64/go"}
	r, ok := rs.ratio(k)
	if !ok {
		return "", false, false
	}
	fig := fmt.Sprintf("%.3g×", r)
	if v, ok := rs.median(k, "req/s"); ok {
		fig += fmt.Sprintf(" (%s req/s)", group(v))
	}
	s, ok1 := rs.median(k, "server-cpu-µs/req")
	w, ok2 := rs.median(k, "worker-cpu-µs/req")
	if ok1 && ok2 {
		fig += fmt.Sprintf("; CPU per request: gateway and pool (one process) %.0f µs, worker %.0f µs", s, w)
	}
	return fig, r >= 0.33, true
}

// coldStartFloor is a runtime's cold start over its bare interpreter's
// start on a one-line program (ColdStart/<rt>-interpreter), p50 over
// p50, in the same run.
func coldStartFloor(rt string) func(*results) (string, bool, bool) {
	return func(rs *results) (string, bool, bool) {
		v, ok1 := rs.median(key{"plugins/pool", "ColdStart/" + rt}, unitP50)
		floor, ok2 := rs.median(key{"plugins/pool", "ColdStart/" + rt + "-interpreter"}, unitP50)
		if !ok1 || !ok2 || floor == 0 {
			return "", false, false
		}
		r := v / floor
		return fmt.Sprintf("%.3g× (%s over %s)", r, dur(v*1e9), dur(floor*1e9)), r <= 1.5, true
	}
}

func streamRatio(rs *results) (string, bool, bool) {
	r, ok := rs.ratio(key{"broker", "Stream/go"})
	if !ok {
		return "", false, false
	}
	return fmt.Sprintf("%.3g×", r), r >= 0.8, true
}

func keyOrderRatio(rs *results) (string, bool, bool) {
	r, ok := rs.ratio(key{"broker", "Stream/go-key-order"})
	if !ok {
		return "", false, false
	}
	return fmt.Sprintf("%.3g×", r), r >= 0.6, true
}

// execStream is the exec echo's rate on a stream, forked per event and
// in lines mode, each over the Go function's in the same run.
func execStream(rs *results) (string, bool, bool) {
	g, ok := rs.median(key{"broker", "Stream/go"}, "events/s")
	if !ok || g == 0 {
		return "", false, false
	}
	var parts []string
	for _, v := range []struct{ name, label string }{{"exec", "fork"}, {"exec-lines", "lines"}} {
		if e, ok := rs.median(key{"broker", "Stream/" + v.name}, "events/s"); ok {
			parts = append(parts, fmt.Sprintf("%s %s events/s (%.3g× go)", v.label, group(e), e/g))
		}
	}
	if len(parts) == 0 {
		return "", false, false
	}
	return strings.Join(parts, "; "), true, true
}

// eosRatio is the exactly-once pool's rate over the raw transactional
// loop's, measured in the same run (their own baseline, not Stream's).
func eosRatio(rs *results) (string, bool, bool) {
	v, ok1 := rs.median(key{"broker", "Stream/go-eos"}, "events/s")
	base, ok2 := rs.median(key{"broker", "Stream/raw-eos"}, "events/s")
	if !ok1 || !ok2 || base == 0 {
		return "", false, false
	}
	r := v / base
	return fmt.Sprintf("%.3g×", r), r >= 0.5, true
}

func coldStart(rt string, limit float64) func(*results) (string, bool, bool) {
	return func(rs *results) (string, bool, bool) {
		v, ok := rs.median(key{"plugins/pool", "ColdStart/" + rt}, unitP50)
		if !ok {
			return "", false, false
		}
		p99 := ""
		if q, ok := rs.median(key{"plugins/pool", "ColdStart/" + rt}, unitP99); ok {
			p99 = " (p99 " + dur(q*1e9) + ")"
		}
		return dur(v*1e9) + " at p50" + p99, v <= limit, true
	}
}

func density(rs *results) (string, bool, bool) {
	k := key{"plugins/pool", "Density/go"}
	n, ok1 := rs.median(k, "functions")
	inst, ok2 := rs.median(k, "instances")
	if !ok1 || !ok2 {
		return "", false, false
	}
	return fmt.Sprintf("%s go functions, %s idle instances", group(n), group(inst)), n >= 1000 && inst >= 1000, true
}

func leaderLoss(rs *results) (string, bool, bool) {
	k := key{"scheduler", "LeaderChange/leader-loss"}
	v, ok := rs.median(k, unitP50)
	if !ok {
		return "", false, false
	}
	p99, _ := rs.median(k, unitP99)
	return fmt.Sprintf("%s at p50 (p99 %s)", dur(v*1e9), dur(p99*1e9)), v <= 2, true
}

func scaleUp(rt string, limit float64) func(*results) (string, bool, bool) {
	return scaleUpVariant(rt, "new-instance", limit)
}

// scaleUpVariant judges ScaleUp/rt/variant's p50.
func scaleUpVariant(rt, variant string, limit float64) func(*results) (string, bool, bool) {
	return func(rs *results) (string, bool, bool) {
		k := key{"plugins/pool", "ScaleUp/" + rt + "/" + variant}
		v, ok := rs.median(k, unitP50)
		if !ok {
			return "", false, false
		}
		p99 := ""
		if q, ok := rs.median(k, unitP99); ok {
			p99 = " (p99 " + dur(q*1e9) + ")"
		}
		return dur(v*1e9) + " at p50" + p99, v <= limit, true
	}
}

// wakeFromZero has no limit: the issue asks for the figures and their
// split, which are met by being measured.
func wakeFromZero(rs *results) (string, bool, bool) {
	k := key{"autoscaler", "WakeFromZero/wake"}
	v, ok := rs.median(k, unitP50)
	if !ok {
		return "", false, false
	}
	p99, _ := rs.median(k, unitP99)
	fig := fmt.Sprintf("%s at p50 (p99 %s)", dur(v*1e9), dur(p99*1e9))
	var split []string
	for _, u := range []string{"loop-ms", "placement-ms", "pool-ms", "call-ms"} {
		if m, ok := rs.median(k, u); ok {
			split = append(split, fmt.Sprintf("%s %.0f", strings.TrimSuffix(u, "-ms"), m))
		}
	}
	if len(split) > 0 {
		fig += "; ms: " + strings.Join(split, ", ")
	}
	return fig, true, true
}

func spikeToScaled(rs *results) (string, bool, bool) {
	k := key{"autoscaler", "SpikeToScaled/autoscaler"}
	v, ok := rs.median(k, unitP50)
	if !ok {
		return "", false, false
	}
	p99, _ := rs.median(k, unitP99)
	return fmt.Sprintf("%s at p50 (p99 %s)", dur(v*1e9), dur(p99*1e9)), v <= 5, true
}

// acrossNodes has no limit: the issue asks for the ratio and the CPU per
// request on these 2 cores, not an absolute.
func acrossNodes(rs *results) (string, bool, bool) {
	k := key{"autoscaler", "AllocationsAcrossNodes/3-allocations"}
	r, ok := rs.ratio(k)
	if !ok {
		return "", false, false
	}
	fig := fmt.Sprintf("%.3g× the req/s of one allocation", r)
	g, ok1 := rs.median(k, "gateway-cpu-µs/req")
	p, ok2 := rs.median(k, "pool-cpu-µs/req")
	if ok1 && ok2 {
		fig += fmt.Sprintf("; CPU per request: gateway %.0f µs, pools %.0f µs", g, p)
	}
	return fig, true, true
}
