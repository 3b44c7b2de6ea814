#!/usr/bin/env bash
# Prompt and decode speed of `mica run` on random-weight models of real
# shapes (tools/mica-gen presets), warm page cache, median of RUNS runs.
# Prints a markdown table with the command, commit and machine.
#   bench/run.sh [PRESET:TYPE ...]   default: qwen3-0.6b:Q8_0 qwen3-0.6b:Q4_0
# Env: MICA_BUILD (build), THREADS (2), RUNS (3), N_PROMPT (128), N_GEN (64), BENCH_DIR (build/bench)
set -eu
cd "$(dirname "$0")/.."
B=${MICA_BUILD:-build}; T=${THREADS:-2}; R=${RUNS:-3}; NP=${N_PROMPT:-128}; NG=${N_GEN:-64}
DIR=${BENCH_DIR:-$B/bench}; mkdir -p "$DIR"
models=("$@"); [ ${#models[@]} -gt 0 ] || models=(qwen3-0.6b:Q8_0 qwen3-0.6b:Q4_0)

ids=$(seq 1000 $((1000 + NP - 1)) | tr '\n' ' ')
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
echo "command: $B/mica run -m MODEL --ids-in \"<$NP ids>\" -n $NG --temp 0 -t $T   (warm cache: one untimed run first; $R timed runs, median)"
echo
echo "| model | type | file | pp tok/s ($NP) | tg tok/s ($NG) |"
echo "|---|---|---|---:|---:|"
for mt in "${models[@]}"; do
    preset=${mt%%:*}; type=${mt##*:}
    f="$DIR/$preset-$type.gguf"
    [ -f "$f" ] || "$B/mica-gen" --preset "$preset" --type "$type" --seed 1 -o "$f"
    "$B/mica" run -m "$f" --ids-in "$ids" -n 4 --temp 0 -t "$T" >/dev/null 2>&1  # warm the page cache
    pp=(); tg=()
    for _ in $(seq "$R"); do
        line=$("$B/mica" run -m "$f" --ids-in "$ids" -n "$NG" --temp 0 -t "$T" 2>&1 >/dev/null | tail -n 1)
        pp+=("$(sed -nE 's/.*prompt: [0-9]+ tokens, ([0-9.]+) tok\/s.*/\1/p' <<<"$line")")
        tg+=("$(sed -nE 's/.*generation: [0-9]+ tokens, ([0-9.]+) tok\/s.*/\1/p' <<<"$line")")
    done
    size=$(du -h "$f" | cut -f1)
    echo "| $preset | $type | $size | $(printf '%s\n' "${pp[@]}" | median) | $(printf '%s\n' "${tg[@]}" | median) |"
done
