#!/usr/bin/env bash
# bench/run.sh: run every benchmark of the repository (`make bench` calls
# it), append their output to bench/raw/bench.txt, and write
# bench/RESULTS.md with bench/report; the raw output is kept as
# bench/RESULTS.txt. About 11 minutes on a quiet 2-core machine, 35 on a busy one.
#
# Each package gets the flags its benchmarks need: latency benchmarks run
# for a time, the others a fixed number of operations (-benchtime=Nx),
# because one operation is a wrk run, a cold start, a pool of 1,000
# functions or a deploy. docs/benchmarks.md explains each. A package that
# fails is reported and the others still run; the exit status says so.
set -u -o pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
out=bench/raw/bench.txt
mkdir -p bench/raw

# Functions run with the system's interpreters: /usr/bin first, so that
# python3 is Debian's and not a pyenv shim, a bash wrapper that adds
# about 80 ms to every start.
export PATH=/usr/bin:$PATH

# Configuration lines ("key: value") describe the machine to bench/report.
{
	echo "started: $(date -u '+%Y-%m-%d %H:%M UTC')"
	dirty=$(git status --porcelain --untracked-files=no -- . ':!bench/RESULTS.md' ':!bench/RESULTS.txt' ':!bench/NOTES.md' | grep -q . && echo " (with uncommitted changes)")
	echo "commit: $(git rev-parse --short HEAD)$dirty"
	echo "cpu-model: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
	echo "memory: $(awk '/^MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
	echo "kernel: $(uname -r)"
	echo "loadavg: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "wrk: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
	echo "node: $(node --version 2>&1)"
	echo "python3: $(python3 --version 2>&1) ($(command -v python3))"
	echo "java: $(java -version 2>&1 | head -1)"
	echo
} >"$out"

failed=()
# bench <package> <go test flags...>
bench() {
	local pkg=$1
	shift
	echo "==> $pkg: go test -bench $*"
	if ! "$GO" test -run '^$' -benchmem "$@" "$pkg" | tee -a "$out"; then
		failed+=("$pkg $*")
	fi
}

bench ./hcl/spec -bench . -count 6
bench ./jobs -bench . -count 6
bench ./gateway -bench 'Overhead' -count 6
bench ./gateway -bench 'Tracing' -benchtime 20000x -count 6
bench ./gateway -bench 'Throughput' -benchtime 1x -count 3
bench ./plugins/pool -bench 'ExecutionLog' -benchtime 20000x -count 6
bench ./plugins/pool -bench 'ColdStart' -benchtime 50x -count 3
bench ./plugins/pool -bench 'Density' -benchtime 1x -count 2
bench ./plugins/pool -bench 'ScaleUp' -benchtime 20x -count 3
bench ./plugins/pool -bench 'Wasm/(cold-start|echo)' -benchtime 2000x -count 3
bench ./plugins/pool -bench 'Wasm/density' -benchtime 1x -count 1 -timeout 20m
bench ./broker -bench 'Stream' -benchtime 1x -count 5
bench ./plugins/pool -bench 'Connectors' -benchtime 1x -count 3
bench ./scheduler -bench 'RaftWrite' -count 3
bench ./scheduler -bench 'LeaderChange' -benchtime 10x -count 3
bench ./e2e/server -bench 'Deploy/(baseline|dev)' -benchtime 5x -count 3
bench ./e2e/server -bench 'Deploy/nomad' -benchtime 5x -count 1 -timeout 30m
bench ./autoscaler -bench 'WakeFromZero' -benchtime 20x -count 3 -timeout 30m
bench ./autoscaler -bench 'SpikeToScaled' -benchtime 10x -count 1 -timeout 30m
bench ./autoscaler -bench 'AllocationsAcrossNodes' -benchtime 1x -count 3 -timeout 30m

# The run's raw output is kept beside the report, so that every figure in
# it can be derived again (benchstat reads it as it is).
# The last committed run, to compare with: a figure that regressed beyond
# its noise band is listed in the report and printed here (not a failure).
prev=bench/raw/previous.txt
compare=()
if git show HEAD:bench/RESULTS.txt >"$prev" 2>/dev/null; then
	compare=(-previous "$prev")
fi
cp "$out" bench/RESULTS.txt
"$GO" run ./bench/report -in "$out" -raw bench/RESULTS.txt -out bench/RESULTS.md -loadavg-end "$(cut -d' ' -f1-3 /proc/loadavg)" ${compare[@]+"${compare[@]}"} || failed+=("bench/report")
echo "==> wrote bench/RESULTS.md"
if ((${#failed[@]})); then
	printf '==> failed: %s\n' "${failed[@]}" >&2
	exit 1
fi
