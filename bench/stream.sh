#!/usr/bin/env bash
# Expert streaming benchmark (issue 7): decode speed of a model larger than
# the memory limit, mica (automatic budget from the cgroup limit, experts
# streamed with O_DIRECT) next to llama.cpp (node-llama-cpp, default mmap),
# both inside the same memory-limited cgroup so the page cache cannot hide
# the disk. Not a test: prints a markdown report to stdout (append it to
# bench/RESULTS.md with the commit and machine).
#
#   bench/stream.sh [MODEL.gguf]
#     MODEL         default: $MODELS/qwen3-30b-a3b-q4_0.gguf, generated with
#                   mica-gen (preset qwen3-30b-a3b, Q4_0, about 17 GB) if missing
#     MICA_BUILD    build directory (default build)
#     MODELS        where generated models go (default /work/bench-models)
#     LIMITS        memory limits (default "4G 6G")
#     N_GEN         tokens generated per run (default 16)
#     THREADS       compute threads (default 2)
#     SKIP_LLAMA=1  skip llama.cpp
#
# Needs root for the cgroup: cgroup v2 (a writable /sys/fs/cgroup with the
# memory controller: memory.max) or v1 (/sys/fs/cgroup/memory:
# memory.limit_in_bytes). "Cold" = the model file's pages dropped from the
# page cache first (dd iflag=nocache on that one file; mica's expert reads
# bypass the cache anyway), "warm" = the same command again right after.
set -u
cd "$(dirname "$0")/.."
B=${MICA_BUILD:-build}
MODELS=${MODELS:-/work/bench-models}
M=${1:-$MODELS/qwen3-30b-a3b-q4_0.gguf}
LIMITS=${LIMITS:-"4G 6G"}
N_GEN=${N_GEN:-16}
THREADS=${THREADS:-2}
OUT=$(mktemp -d /tmp/mica-stream-bench.XXXXXX)
IDS="9707 11 1879 525 498 3351 30 576 3974 315 9625 374 12095 13 1084 572"

die() { echo "stream.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (the memory-limited cgroup needs it)"
[ -x "$B/mica" ] || die "$B/mica not built (make BUILD=$B)"
if [ ! -f "$M" ]; then
    mkdir -p "$(dirname "$M")"
    echo "generating $M (qwen3-30b-a3b, Q4_0) ..." >&2
    make -s BUILD="$B" "$B/mica-gen" >&2 || die "cannot build mica-gen"
    "$B/mica-gen" --preset qwen3-30b-a3b --type Q4_0 --seed 1 -o "$M" || die "generation failed"
fi

# ---- the cgroup ----
CG_V=""
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
    CG_V=2; CG=/sys/fs/cgroup/mica-stream-bench
    echo +memory >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null
elif [ -d /sys/fs/cgroup/memory ]; then
    CG_V=1; CG=/sys/fs/cgroup/memory/mica-stream-bench
else
    die "no cgroup memory controller found (neither v2 nor v1)"
fi
mkdir -p "$CG" || die "cannot create $CG"
trap 'rmdir "$CG" 2>/dev/null; rm -rf "$OUT"' EXIT
set_limit() { # bytes
    if [ "$CG_V" = 2 ]; then echo "$1" >"$CG/memory.max"; echo 0 >"$CG/memory.swap.max" 2>/dev/null
    else echo "$1" >"$CG/memory.limit_in_bytes"; fi
}
in_cg() { bash -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG" "$@"; }
drop_file_cache() { dd if="$M" iflag=nocache count=0 status=none 2>/dev/null; }
bytes() { numfmt --from=iec "$1"; }

# ---- the disk ----
# 4 O_DIRECT readers at once (as mica's 4 I/O threads), 512 MiB each from different places of the file
t0=$(date +%s.%N)
for k in 0 1 2 3; do dd if="$M" of=/dev/null bs=4M count=128 skip=$((k * 800 + 100)) iflag=direct status=none & done
wait
DISK_GBS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", 2147483648 / (b - a) / 1e9 }')

echo "## Expert streaming: $(basename "$M") under a memory limit"
echo
echo "- commit $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo '+dirty'), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; RAM $(free -g | awk '/Mem:/ {print $2}') GiB; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- model: $M, $(du -h --apparent-size "$M" | cut -f1)"
echo "- disk: O_DIRECT read, 4 parallel dd (bs=4M, 4 x 512 MiB) $DISK_GBS GB/s; cgroup v$CG_V"
echo "- mica: \`mica run -m MODEL --ids-in \"$IDS\" -n $N_GEN --temp 0 --ids --stats -t $THREADS -c 256\` (automatic budget from the cgroup limit)"
echo "- llama.cpp: \`node bench/llamacpp_bench.mjs -m MODEL -p 0 -n $N_GEN -t $THREADS -r 1\` (node-llama-cpp, mmap)"
echo
echo "| limit | engine | cache | decode t/s | hit rate | read GB/s | stall s/token | bound t/s | of bound |"
echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"

for lim in $LIMITS; do
    set_limit "$(bytes "$lim")"
    for cache in cold warm; do
        [ "$cache" = cold ] && drop_file_cache
        in_cg "$B/mica" run -m "$M" --ids-in "$IDS" -n "$N_GEN" --temp 0 --ids --stats -t "$THREADS" -c 256 \
            >"$OUT/mica.out" 2>"$OUT/mica.err"
        rc=$?
        if [ $rc -ne 0 ]; then
            echo "| $lim | mica | $cache | failed ($rc): $(grep -m1 error "$OUT/mica.err" | head -c 150) | | | | | |"
            continue
        fi
        cp "$OUT/mica.err" "$OUT/mica-$lim-$cache.err"
        tps=$(sed -nE 's/.*generation: [0-9]+ tokens, ([0-9.]+) tok\/s.*/\1/p' "$OUT/mica.err")
        line=$(grep '^generation: ' "$OUT/mica.err" | grep 'looked up')
        hit=$(sed -nE 's/.*hit rate ([0-9.]+%) \(cached ([0-9.]+%).*/\1 (cached \2)/p' <<<"$line")
        gbs=$(sed -nE 's/.*at ([0-9.]+) GB\/s.*/\1/p' <<<"$line")
        ntok=$(sed -nE 's/^generation: ([0-9]+) tokens.*/\1/p' <<<"$line")
        mib=$(sed -nE 's/.*read ([0-9.]+) MiB.*/\1/p' <<<"$line")
        stall=$(sed -nE 's/.*I\/O stall ([0-9.]+) ms.*/\1/p' <<<"$line")
        # disk bound: tokens/s if every byte read per token came at the measured disk bandwidth
        read -r bound frac st_tok <<<"$(awk -v mib="$mib" -v n="$ntok" -v bw="$DISK_GBS" -v t="$tps" -v st="$stall" 'BEGIN {
            per = mib * 1048576 / n; b = (per > 0) ? bw * 1e9 / per : 0; f = (b > 0) ? 100 * t / b : 0;
            printf "%.2f %.0f%% %.3f", b, f, st / 1000 / n }')"
        echo "| $lim | mica | $cache | $tps | $hit | $gbs | $st_tok | $bound | $frac |"
    done
    [ "${SKIP_LLAMA:-0}" = 1 ] && continue
    for cache in cold warm; do
        [ "$cache" = cold ] && drop_file_cache
        in_cg timeout 1800 node bench/llamacpp_bench.mjs -m "$M" -p 0 -n "$N_GEN" -t "$THREADS" -r 1 \
            >"$OUT/llama.out" 2>"$OUT/llama.err"
        rc=$?
        if [ $rc -ne 0 ]; then
            echo "| $lim | llama.cpp | $cache | failed ($rc): $(tail -n 1 "$OUT/llama.err" | head -c 150) | | | | | |"
            continue
        fi
        tps=$(sed -nE 's/.*"avg_ts":([0-9.eE+-]+).*/\1/p' "$OUT/llama.out" | tail -n 1)
        itps=$(sed -nE 's/.*"internal_avg_ts":([0-9.eE+-]+).*/\1/p' "$OUT/llama.out" | tail -n 1)
        echo "| $lim | llama.cpp | $cache | $(printf %.3f "$tps") (internal $(printf %.3f "${itps:-0}")) | | | | | |"
    done
done
echo
echo "Per-token lines (mica --stats) of the last run are in the stderr logs; the"
echo "bound column is disk GB/s / bytes read per generated token."
exit 0
