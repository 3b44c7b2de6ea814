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
#     RUNS          runs per cell; the table shows medians (default 3)
#     N_GEN         tokens mica generates per run (default 16)
#     N_GEN_LLAMA   tokens llama.cpp generates per run, after as many untimed
#                   ones (default 4: it is slow under a limit)
#     THREADS       compute threads (default 2)
#     SKIP_LLAMA=1  skip llama.cpp
#     IDENTITY=1    also check "placement never changes tokens" on MODEL: greedy
#                   ids over 64 tokens and every logit of a 64-token prompt,
#                   identical at an unlimited budget, half the experts, and the
#                   resident part plus one layer's experts (no cgroup)
#
# Needs root for the cgroup: cgroup v2 (a writable /sys/fs/cgroup with the
# memory controller: memory.max) or v1 (/sys/fs/cgroup/memory:
# memory.limit_in_bytes).
#
# Cold and warm:
#   mica cold  = the model file's pages dropped from the page cache and no
#                usage statistics (MODEL.usage removed): nothing learned yet;
#   mica warm  = right after the cold runs: the usage statistics they wrote
#                pin a hot set, which is read at load (O_DIRECT reads do not
#                use the page cache, so "warm" is what mica learned);
#   llama.cpp cold = file pages dropped first; warm = run again at once.
# llama.cpp runs with its default mmap, no mlock and a context as small as
# mica's, but with weight repacking off (bench/llamacpp_norepack.c, an
# LD_PRELOAD shim, what llama.cpp's own tools call --no-repack): by default
# it copies the whole Q4_0 model into repacked anonymous memory at load
# (17 GB here), which no 4-6 GiB limit can hold - that copy, not the mmap'd
# weights nor the KV cache, is why it was killed before.
set -u
cd "$(dirname "$0")/.."
B=${MICA_BUILD:-build}
MODELS=${MODELS:-/work/bench-models}
M=${1:-$MODELS/qwen3-30b-a3b-q4_0.gguf}
LIMITS=${LIMITS:-"4G 6G"}
RUNS=${RUNS:-3}
N_GEN=${N_GEN:-16}
N_GEN_LLAMA=${N_GEN_LLAMA:-4}
THREADS=${THREADS:-2}
OUT=$(mktemp -d /tmp/mica-stream-bench.XXXXXX)
IDS="9707 11 1879 525 498 3351 30 576 3974 315 9625 374 12095 13 1084 572"
PY=/usr/bin/python3

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
oom_kills() {
    if [ "$CG_V" = 2 ]; then sed -n 's/^oom_kill //p' "$CG/memory.events"; else sed -n 's/^oom_kill //p' "$CG/memory.oom_control"; fi
}
in_cg() { bash -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG" "$@"; }
drop_file_cache() { dd if="$M" iflag=nocache count=0 status=none 2>/dev/null; }
bytes() { numfmt --from=iec "$1"; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ---- llama.cpp without weight repacking (see the top) ----
SHIM=""
if [ "${SKIP_LLAMA:-0}" != 1 ]; then
    BUNDLE=bench/node_modules/node-llama-cpp/llama/gitRelease.bundle
    if git clone -q "$BUNDLE" "$OUT/llama-src" 2>/dev/null &&
        cc -shared -fPIC -O2 -I "$OUT/llama-src/include" -I "$OUT/llama-src/ggml/include" \
            -o "$OUT/norepack.so" bench/llamacpp_norepack.c -ldl; then
        SHIM="$OUT/norepack.so"
    else
        die "cannot build bench/llamacpp_norepack.c against $BUNDLE (or set SKIP_LLAMA=1)"
    fi
fi

# ---- the disk ----
# 4 O_DIRECT readers at once (as mica's reads), 512 MiB each from different places of the file
t0=$(date +%s.%N)
for k in 0 1 2 3; do dd if="$M" of=/dev/null bs=4M count=128 skip=$((k * 800 + 100)) iflag=direct status=none & done
wait
DISK_GBS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", 2147483648 / (b - a) / 1e9 }')

echo "## Expert streaming: $(basename "$M") under a memory limit"
echo
echo "- commit $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo '+dirty'), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; RAM $(free -g | awk '/Mem:/ {print $2}') GiB; load at start $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- model: $M, $(du -h --apparent-size "$M" | cut -f1)"
echo "- disk: O_DIRECT read, 4 parallel dd (bs=4M, 4 x 512 MiB) $DISK_GBS GB/s; cgroup v$CG_V"
echo "- mica: \`mica run -m MODEL --ids-in \"$IDS\" -n $N_GEN --temp 0 --ids --stats -t $THREADS -c 256\` (automatic budget from the cgroup limit)"
echo "- llama.cpp: \`LD_PRELOAD=norepack.so node bench/llamacpp_bench.mjs -m MODEL -p 0 -n $N_GEN_LLAMA -t $THREADS -r 1\` (node-llama-cpp, mmap, no mlock, context $N_GEN_LLAMA, repacking off)"
echo "- $RUNS runs per cell; medians, then every run's decode tokens/s"
echo
echo "| limit | engine | cache | decode t/s (median) | runs | hit rate | read GB/s | stall s/token | bound t/s | of bound |"
echo "| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"

# One mica run; appends "tps hit cached gbs stall_per_token bound" to $OUT/cell.
mica_once() {
    in_cg "$B/mica" run -m "$M" --ids-in "$IDS" -n "$N_GEN" --temp 0 --ids --stats -t "$THREADS" -c 256 \
        >"$OUT/mica.out" 2>"$OUT/mica.err" || { echo "failed ($?): $(grep -m1 error "$OUT/mica.err" | head -c 150)"; return 1; }
    local tps line hit cached gbs ntok mib stall
    tps=$(sed -nE 's/.*generation: [0-9]+ tokens, ([0-9.]+) tok\/s.*/\1/p' "$OUT/mica.err")
    line=$(grep '^generation: ' "$OUT/mica.err" | grep 'looked up')
    hit=$(sed -nE 's/.*hit rate ([0-9.]+)% \(cached ([0-9.]+)%.*/\1/p' <<<"$line")
    cached=$(sed -nE 's/.*hit rate ([0-9.]+)% \(cached ([0-9.]+)%.*/\2/p' <<<"$line")
    gbs=$(sed -nE 's/.*at ([0-9.]+) GB\/s.*/\1/p' <<<"$line")
    ntok=$(sed -nE 's/^generation: ([0-9]+) tokens.*/\1/p' <<<"$line")
    mib=$(sed -nE 's/.*read ([0-9.]+) MiB.*/\1/p' <<<"$line")
    stall=$(sed -nE 's/.*I\/O stall ([0-9.]+) ms.*/\1/p' <<<"$line")
    # disk bound: tokens/s if every byte read per token came at the measured disk bandwidth
    awk -v tps="$tps" -v hit="$hit" -v c="$cached" -v gbs="$gbs" -v mib="$mib" -v n="$ntok" -v bw="$DISK_GBS" -v st="$stall" 'BEGIN {
        per = mib * 1048576 / n; b = (per > 0) ? bw * 1e9 / per : 0;
        printf "%s %s %s %s %.3f %.2f\n", tps, hit, c, gbs, st / 1000 / n, b }' >>"$OUT/cell"
    cp "$OUT/mica.err" "$OUT/mica-last.err"
}

llama_once() {
    in_cg env LD_PRELOAD="$SHIM" timeout 1800 node bench/llamacpp_bench.mjs -m "$M" -p 0 -n "$N_GEN_LLAMA" -t "$THREADS" -r 1 \
        >"$OUT/llama.out" 2>"$OUT/llama.err" || { echo "failed ($?; cgroup OOM kills so far: $(oom_kills)): $(grep -v norepack "$OUT/llama.err" | tail -n 1 | head -c 150)"; return 1; }
    sed -nE 's/.*"internal_avg_ts":([0-9.eE+-]+).*/\1/p' "$OUT/llama.out" | tail -n 1 | awk '{ printf "%.4f\n", $1 }' >>"$OUT/cell"
}

col() { awk -v k="$1" '{ print $k }' "$OUT/cell" | median; }

for lim in $LIMITS; do
    set_limit "$(bytes "$lim")"
    for cache in cold warm; do
        : >"$OUT/cell"
        fail=""
        for r in $(seq "$RUNS"); do
            if [ "$cache" = cold ]; then drop_file_cache; rm -f "$M.usage"; fi
            fail=$(mica_once) || break
        done
        if [ -n "$fail" ]; then echo "| $lim | mica | $cache | $fail | | | | | | |"; continue; fi
        tps=$(col 1); bound=$(col 6)
        frac=$(awk -v t="$tps" -v b="$bound" 'BEGIN { printf "%.0f%%", (b > 0) ? 100 * t / b : 0 }')
        echo "| $lim | mica | $cache | $tps | $(awk '{ printf "%s ", $1 }' "$OUT/cell") | $(col 2)% (cached $(col 3)%) | $(col 4) | $(col 5) | $bound | $frac |"
    done
    [ "${SKIP_LLAMA:-0}" = 1 ] && continue
    for cache in cold warm; do
        : >"$OUT/cell"
        fail=""
        for r in $(seq "$RUNS"); do
            [ "$cache" = cold ] && drop_file_cache
            fail=$(llama_once) || break
        done
        if [ -n "$fail" ]; then echo "| $lim | llama.cpp | $cache | $fail | | | | | | |"; continue; fi
        echo "| $lim | llama.cpp | $cache | $(col 1) | $(awk '{ printf "%.4f ", $1 }' "$OUT/cell") | | | | | |"
    done
done
echo
echo "hit rate = experts found in the cache (or read by a guessing prefetch) / looked up, over the"
echo "generated tokens; read GB/s = bytes read / time with a read in flight; bound = disk GB/s /"
echo "bytes read per generated token; llama.cpp's tokens/s are its own eval timer (internal_avg_ts)."
echo "Load at the end: $(cut -d' ' -f1-3 /proc/loadavg)."

# ---- placement never changes tokens (IDENTITY=1) ----
[ "${IDENTITY:-0}" = 1 ] || exit 0
read -r dense n_total n_per slot <<<"$("$PY" - "$M" <<'EOF'
import re, struct, sys
f = open(sys.argv[1], 'rb')
d = f.read(64 << 20)  # the header: metadata and tensor table
off = 8
nt, nkv = struct.unpack_from('<QQ', d, off); off += 16
def s(o):
    n, = struct.unpack_from('<Q', d, o); return d[o + 8:o + 8 + n].decode('utf-8', 'replace'), o + 8 + n
fixed = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
def skip(t, o):
    if t == 8: return s(o)[1]
    if t == 9:
        et, n = struct.unpack_from('<IQ', d, o); o += 12
        if et in fixed: return o + fixed[et] * n
        for _ in range(n): o = skip(et, o)
        return o
    return o + fixed[t]
for _ in range(nkv):
    k, off = s(off); t, = struct.unpack_from('<I', d, off); off += 4
    off = skip(t, off)
bs = {0: (1, 4), 1: (1, 2), 30: (1, 2), 8: (32, 34), 2: (32, 18), 12: (256, 144), 14: (256, 210)}
dense = 0; per_layer = {}
for _ in range(nt):
    name, off = s(off); nd, = struct.unpack_from('<I', d, off); off += 4
    ne = struct.unpack_from('<%dQ' % nd, d, off); off += 8 * nd
    t, o = struct.unpack_from('<IQ', d, off); off += 12
    n = 1
    for x in ne: n *= x
    nb = n // bs[t][0] * bs[t][1]
    m = re.fullmatch(r'blk\.(\d+)\.ffn_(gate|up|down)_exps\.weight', name)
    if m:
        L = per_layer.setdefault(int(m.group(1)), [ne[2], 0])
        L[1] += -(-(nb // ne[2] + 4095) // 4096) * 4096
    else:
        dense += nb
print(dense, sum(v[0] for v in per_layer.values()), max(v[0] for v in per_layer.values()),
      max(v[1] for v in per_layer.values()))
EOF
)"
PROMPT64=$("$PY" -c "import random; random.seed(7); print(' '.join(str(random.randrange(3, 150000)) for _ in range(64)))")
echo
echo "### Placement never changes tokens: $(basename "$M")"
echo
echo "Greedy ids of \`mica run --ids-in \"1 2 3\" -n 64 --temp 0 --ids\` and every logit of a 64-token prompt"
echo "(\`mica logits --ids ...\`), compared byte for byte with the unlimited budget (the mapped file). No cgroup."
echo
echo "| budget | what | ids (64) | logits (64 x n_vocab) | s |"
echo "| --- | --- | --- | --- | ---: |"
rm -f "$M.usage"
for spec in "unlimited:mapped whole" "$((dense + n_total / 2 * slot)):half the experts" "$((dense + n_per * slot)):resident part + one layer's experts"; do
    budget=${spec%%:*} what=${spec#*:}
    t0=$(date +%s)
    "$B/mica" logits -m "$M" --ids "$PROMPT64" -o "$OUT/logits.$budget" --mem-budget "$budget" -t "$THREADS" 2>"$OUT/err" || { echo "| $budget | $what | failed: $(head -c 150 "$OUT/err") | | |"; continue; }
    "$B/mica" run -m "$M" --ids-in "1 2 3" -n 64 --temp 0 --ids --mem-budget "$budget" -t "$THREADS" -c 256 >"$OUT/ids.$budget" 2>"$OUT/err" || { echo "| $budget | $what | failed: $(head -c 150 "$OUT/err") | | |"; continue; }
    if [ "$budget" = unlimited ]; then ids="reference ($(wc -w <"$OUT/ids.$budget") ids)"; lg="reference"
    else
        cmp -s "$OUT/ids.unlimited" "$OUT/ids.$budget" && ids="identical ($(wc -w <"$OUT/ids.$budget") ids)" || ids="DIFFER"
        cmp -s "$OUT/logits.unlimited" "$OUT/logits.$budget" && lg="identical" || lg="DIFFER"
    fi
    echo "| $budget | $what | $ids | $lg | $(( $(date +%s) - t0 )) |"
done
exit 0
