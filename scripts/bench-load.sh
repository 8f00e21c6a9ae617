#!/usr/bin/env bash
# bench-load.sh: end-to-end load figures for docs/performance.md.
#
# Builds storage-api and the bare reference server (cmd/bench-bare), starts each on
# 127.0.0.1, and drives it with wrk (-t2 -c16 by default) with 1 KiB objects:
#   bare      GET and PUT          (the practical limit of net/http on this machine)
#   memory    PUT, GET             (default config: metrics and access log on)
#   memory    GET with -metrics=false  (instrumentation overhead ratio)
#   memory    GET with -access-log=false (the access log's share)
#   memory    GET with tracing on, every request sampled and at the default ratio, exporting
#             to the pinned Jaeger from .tools/bin if built (row name: tracing)
#   bolt      PUT, GET             (durable: every PUT fsync'd, group commit)
#   s3        PUT, GET             (against versitygw from .tools/bin, if built; BENCH_S3=0 skips)
# Prints a markdown table: requests/s, p50 and p99 latency, and the server process's CPU
# time per request (utime+stime from /proc/<pid>/stat), steadier than requests/s on a
# shared machine because wrk and other work compete for the same cores.
#
# Environment: BENCH_DURATION (10s), BENCH_THREADS (2), BENCH_CONNECTIONS (16),
# BENCH_IDS (1000), BENCH_PORT (18080). About 2 minutes with the defaults.
# BENCH_REVISION=<git revision> measures storage-api as built from that revision instead of the
# work tree, and BENCH_ROWS (default: all) picks rows: a space-separated subset of
# "bare memory memory-nometrics memory-nolog tracing bolt s3". scripts/bench-compare.sh uses both.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
duration=${BENCH_DURATION:-10s}
threads=${BENCH_THREADS:-2}
conns=${BENCH_CONNECTIONS:-16}
ids=${BENCH_IDS:-1000}
port=${BENCH_PORT:-18080}
addr=127.0.0.1:$port
url=http://$addr
export BENCH_IDS=$ids BENCH_LUA_DIR=$root/scripts/wrk

for tool in go wrk curl; do
	command -v "$tool" >/dev/null || { echo "bench-load: $tool not found (wrk: apt-get install wrk)" >&2; exit 1; }
done
if curl -s -o /dev/null --max-time 1 "$url/"; then
	echo "bench-load: something already listens on $addr; set BENCH_PORT" >&2
	exit 1
fi

work=$(mktemp -d)
server_pid=
gw_pid=
cleanup() {
	if [[ -n ${jaeger_pid:-} ]]; then
		kill "$jaeger_pid" 2>/dev/null || true
		wait "$jaeger_pid" 2>/dev/null || true
	fi
	if [[ -n $gw_pid ]]; then
		kill "$gw_pid" 2>/dev/null || true
		wait "$gw_pid" 2>/dev/null || true
	fi
	if [[ -n $server_pid ]]; then
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

if [[ -n ${BENCH_REVISION:-} ]]; then
	git -C "$root" worktree add -q --detach "$work/src" "$BENCH_REVISION"
	(cd "$work/src" && go build -o "$work/storage-api" ./cmd/storage-api)
	git -C "$root" worktree remove --force "$work/src"
else
	(cd "$root" && go build -o "$work/storage-api" ./cmd/storage-api)
fi
(cd "$root" && go build -o "$work/bench-bare" ./cmd/bench-bare)
rows_wanted=" ${BENCH_ROWS:-bare memory memory-nometrics memory-nolog tracing bolt s3} "
want() { [[ $rows_wanted == *" $1 "* ]]; }
clk_tck=$(getconf CLK_TCK)

# start NAME CMD...: runs the server, output to $work/NAME.log, and waits until it answers.
start() {
	local name=$1
	shift
	"$@" >"$work/$name.log" 2>&1 &
	server_pid=$!
	for _ in $(seq 100); do
		if curl -s -o /dev/null --max-time 1 "$url/healthz"; then return 0; fi
		kill -0 "$server_pid" 2>/dev/null || break
		sleep 0.1
	done
	echo "bench-load: $name did not start:" >&2
	cat "$work/$name.log" >&2
	exit 1
}

stop() {
	kill -TERM "$server_pid"
	wait "$server_pid" || true
	server_pid=
}

# cpu_ticks: utime+stime of the server in clock ticks (fields 14 and 15 of
# /proc/<pid>/stat, counted after the parenthesised command name).
cpu_ticks() {
	sed 's/^.*) //' "/proc/$server_pid/stat" | awk '{print $12 + $13}'
}

rows=()
declare -A rps cpu

# measure KEY LABEL LUA [DURATION]: one wrk run against the current server; records a row.
measure() {
	local key=$1 label=$2 lua=$3 d=${4:-$duration}
	local t0 t1 out result
	t0=$(cpu_ticks)
	out=$(wrk -t"$threads" -c"$conns" -d"$d" -s "$root/scripts/wrk/$lua.lua" "$url")
	t1=$(cpu_ticks)
	result=$(grep '^RESULT ' <<<"$out") || { echo "bench-load: no RESULT from wrk: $out" >&2; exit 1; }
	[[ $key == - ]] && return 0 # preload only
	local line
	line=$(awk -v r="$result" -v t0="$t0" -v t1="$t1" -v hz="$clk_tck" -v label="$label" 'BEGIN {
		n = split(r, kv, /[ =]/)
		for (i = 2; i < n; i += 2) v[kv[i]] = kv[i + 1]
		rps = v["requests"] / (v["duration_us"] / 1e6)
		cpu = (t1 - t0) / hz * 1e6 / v["requests"]
		printf "%.0f %.1f|| %s | %.0f | %.2f | %.2f | %.1f | %d |\n", rps, cpu, label, rps,
			v["p50_us"] / 1000, v["p99_us"] / 1000, cpu, v["non2xx"] + v["socket_errors"]
	}')
	rps[$key]=${line%% *}
	local rest=${line#* }
	cpu[$key]=${rest%%|*}
	rows+=("|${line#*||}")
}

preload() { measure - - put 2s; }

if want bare; then
start bare "$work/bench-bare" -listen-address "$addr"
measure bare_put "bare net/http map, PUT" put
measure bare_get "bare net/http map, GET" get
stop
fi

if want memory; then
start memory "$work/storage-api" -listen-address "$addr" -storage memory
measure mem_put "storage-api memory, PUT" put
measure mem_get "storage-api memory, GET" get
stop
fi

if want memory-nometrics; then
start memory-nometrics "$work/storage-api" -listen-address "$addr" -storage memory -metrics=false
preload
measure mem_get_off "storage-api memory -metrics=false, GET" get
stop
fi

if want memory-nolog; then
start memory-nolog "$work/storage-api" -listen-address "$addr" -storage memory -access-log=false
preload
measure mem_get_nolog "storage-api memory -access-log=false, GET" get
stop
fi

# Tracing on: the same GETs with spans exported over OTLP/HTTP to a real Jaeger (in-memory storage) on the
# same cores, every request sampled, then the default parent-based ratio (internal/tracing).
jaeger=$root/.tools/bin/jaeger
jaeger_pid=
if want tracing && [[ -x $jaeger ]]; then
	otlp=127.0.0.1:$((port + 2))
	sed -e "s/0\.0\.0\.0:4318/$otlp/" -e "s/0\.0\.0\.0:4317/127.0.0.1:$((port + 3))/" \
		-e "s/0\.0\.0\.0:16686/127.0.0.1:$((port + 4))/" -e "s/0\.0\.0\.0:16685/127.0.0.1:$((port + 5))/" \
		-e "s/0\.0\.0\.0:13133/127.0.0.1:$((port + 6))/" "$root/deploy/jaeger/config.yaml" >"$work/jaeger.yaml"
	"$jaeger" --config "$work/jaeger.yaml" >"$work/jaeger.log" 2>&1 &
	jaeger_pid=$!
	for _ in $(seq 100); do
		curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$((port + 6))/status" && break
		sleep 0.1
	done
	start memory-trace1 env OTEL_EXPORTER_OTLP_ENDPOINT="http://$otlp" OTEL_TRACES_SAMPLER=always_on \
		"$work/storage-api" -listen-address "$addr" -storage memory
	preload
	measure mem_get_trace1 "storage-api memory, tracing every request (Jaeger on the same cores), GET" get
	stop
	start memory-trace env OTEL_EXPORTER_OTLP_ENDPOINT="http://$otlp" \
		"$work/storage-api" -listen-address "$addr" -storage memory
	preload
	measure mem_get_trace "storage-api memory, tracing at the default ratio 0.01, GET" get
	stop
	kill "$jaeger_pid" && wait "$jaeger_pid" 2>/dev/null || true
	jaeger_pid=
fi

if want bolt; then
start bolt "$work/storage-api" -listen-address "$addr" -storage bolt -data-dir "$work/bolt"
measure bolt_put "storage-api bolt (fsync), PUT" put
measure bolt_get "storage-api bolt, GET" get
stop
fi

# s3: the same load through the s3 backend, against versitygw (posix directory) on the
# same machine, if tools/install.sh built it. BENCH_S3=0 skips it.
gw=$root/.tools/bin/versitygw
if want s3 && [[ ${BENCH_S3:-1} != 0 && -x $gw ]]; then
	s3addr=127.0.0.1:$((port + 1))
	mkdir -p "$work/s3/bench" # posix backend: a directory is a bucket
	ROOT_ACCESS_KEY=bench ROOT_SECRET_KEY=bench-secret "$gw" --port "$s3addr" --keep-alive --quiet posix "$work/s3" >"$work/versitygw.log" 2>&1 &
	gw_pid=$!
	for _ in $(seq 100); do
		curl -s -o /dev/null --max-time 1 "http://$s3addr/" && break
		sleep 0.1
	done
	start s3 env AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1 \
		"$work/storage-api" -listen-address "$addr" -storage s3 -s3-bucket bench -s3-endpoint "http://$s3addr" -s3-path-style
	measure s3_put "storage-api s3 (versitygw on the same cores), PUT" put
	measure s3_get "storage-api s3 (versitygw on the same cores), GET" get
	stop
	kill "$gw_pid" && wait "$gw_pid" 2>/dev/null || true
	gw_pid=
fi

ratio() { awk -v a="${1:-0}" -v b="${2:-0}" 'BEGIN { if (a + 0 == 0 || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }

echo "## bench-load: wrk -t$threads -c$conns -d$duration, 1 KiB objects, $ids ids, 127.0.0.1"
echo
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(go version | cut -d' ' -f3), $(nproc) CPUs," \
	"revision $(git -C "$root" rev-parse --short "${BENCH_REVISION:-HEAD}" 2>/dev/null || echo unknown)," \
	"load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| server, operation | requests/s | p50 ms | p99 ms | server CPU µs/request | errors |"
echo "|---|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
echo
echo "| ratio | requests/s | CPU/request |"
echo "|---|---:|---:|"
echo "| memory GET / bare GET (target ≥ 0.90) | $(ratio "${rps[mem_get]:-}" "${rps[bare_get]:-}") | $(ratio "${cpu[mem_get]:-}" "${cpu[bare_get]:-}") |"
echo "| memory GET / Python GET 2,900/s (target ≥ 12) | $(ratio "${rps[mem_get]:-}" 2900) | |"
echo "| bolt PUT / Python in-memory PUT 3,400/s (target ≥ 1) | $(ratio "${rps[bolt_put]:-}" 3400) | |"
echo "| metrics on / off, memory GET (target ≥ 0.95) | $(ratio "${rps[mem_get]:-}" "${rps[mem_get_off]:-}") | $(ratio "${cpu[mem_get]:-}" "${cpu[mem_get_off]:-}") |"
echo "| access log on / off, memory GET | $(ratio "${rps[mem_get]:-}" "${rps[mem_get_nolog]:-}") | $(ratio "${cpu[mem_get]:-}" "${cpu[mem_get_nolog]:-}") |"
if [[ -n ${rps[mem_get_trace]:-} ]]; then
	echo "| tracing every request / off, memory GET | $(ratio "${rps[mem_get_trace1]:-}" "${rps[mem_get]:-}") | $(ratio "${cpu[mem_get_trace1]:-}" "${cpu[mem_get]:-}") |"
	echo "| tracing at ratio 0.01 / off, memory GET | $(ratio "${rps[mem_get_trace]:-}" "${rps[mem_get]:-}") | $(ratio "${cpu[mem_get_trace]:-}" "${cpu[mem_get]:-}") |"
fi
