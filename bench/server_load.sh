#!/usr/bin/env bash
# Load on `mica serve`: for each slot count in SLOTS, start the server on
# MODEL with --parallel S, run bench/server_load.mjs with C clients (default:
# the same as S, plus one run with twice as many clients as slots to exercise
# the queue) and print one markdown row per run.
#
#   bench/server_load.sh [-s "1 2 4"] [-r 4] [-n 64] [-t THREADS] [-c CTX] MODEL.gguf
#
# Env: MICA_BUILD (default build). Threads default to 2 in total, split over
# the slots by mica serve. Prints the provenance bench/PROTOCOL.md asks for.
set -eu
cd "$(dirname "$0")/.."
B=${MICA_BUILD:-build}
SLOTS="1 2 4" R=4 N=64 T=2 CTX=2048
while [ $# -gt 0 ]; do
    case $1 in
        -s) SLOTS=$2; shift 2 ;;
        -r) R=$2; shift 2 ;;
        -n) N=$2; shift 2 ;;
        -t) T=$2; shift 2 ;;
        -c) CTX=$2; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        -*) echo "server_load: unknown option '$1'" >&2; exit 1 ;;
        *) break ;;
    esac
done
[ $# -eq 1 ] || { echo "server_load: give one MODEL.gguf" >&2; exit 1; }
M=$1
[ -f "$M" ] || { echo "server_load: no such model: $M" >&2; exit 1; }
[ -x "$B/mica" ] || { echo "server_load: $B/mica is not built (make BUILD=$B)" >&2; exit 1; }
command -v node >/dev/null || { echo "server_load: node not found" >&2; exit 1; }

echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)')"
echo "- machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores online"
echo "- model: $M; $T threads in all; context $CTX per slot; $R requests per client, max_tokens $N, streamed"
echo "- load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| slots | clients | requests | failed | wall s | generated tok/s (all clients) | per-request tok/s p50 | TTFT ms p50 / p95 | latency ms p50 / p95 |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
PORT=$((20000 + RANDOM % 20000))
for S in $SLOTS; do
    th=$(( T / S )); [ "$th" -ge 1 ] || th=1
    log=$(mktemp "${TMPDIR:-/tmp}/mica-load.XXXXXX")
    "$B/mica" serve -m "$M" --port "$PORT" --parallel "$S" -t "$th" -c "$CTX" >"$log" 2>&1 &
    pid=$!
    ok=0
    for _ in $(seq 1 300); do
        if curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then ok=1; break; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if [ "$ok" != 1 ]; then echo "server_load: server did not start:" >&2; cat "$log" >&2; kill "$pid" 2>/dev/null; exit 1; fi
    # warm-up: one request, untimed
    node bench/server_load.mjs --url "http://127.0.0.1:$PORT" -c 1 -r 1 -n 8 >/dev/null
    for C in "$S" $((2 * S)); do
        j=$(node bench/server_load.mjs --url "http://127.0.0.1:$PORT" -c "$C" -r "$R" -n "$N")
        echo "$j" | node -e '
            const j = JSON.parse(require("fs").readFileSync(0, "utf8"));
            const [s] = process.argv.slice(1);
            console.log(`| ${s} | ${j.clients} | ${j.requests} | ${j.failures} | ${j.wall_s} | ${j.agg_gen_ts} | ${j.per_request_ts.p50} | ${j.ttft_ms.p50} / ${j.ttft_ms.p95} | ${j.latency_ms.p50} / ${j.latency_ms.p95} |`);
        ' "$S"
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -f "$log"
    PORT=$((PORT + 1))
done
echo
echo "- load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
