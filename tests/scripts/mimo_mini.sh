#!/usr/bin/env bash
# The issue's sliding-window acceptance test on the realistic preset, in make
# check: writes mimo-v2-flash-mini (Q8_0, 1.6 GB, generated on 2 threads) once,
# runs test_unit's mimo_mini_position_1000 on it (logits at position 1000
# identical with ring-buffer and full-history sliding-window layers; the
# ring cache's bytes = its formula), and deletes the file.
# Cost on 2 idle cores: ~20 s to generate (~40 s CPU), ~20 s to run.
#   MICA_BUILD     build directory (default build)
#   MICA_MIMO_MINI an existing mimo-v2-flash-mini GGUF to use instead (kept)
set -u
cd "$(dirname "$0")/../.."
B=${MICA_BUILD:-build}
T="$B/test-tmp/mimo-mini"; mkdir -p "$T"
pass=0 fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }

f=${MICA_MIMO_MINI:-}
made=
if [ -z "$f" ]; then
    f="$T/mimo-v2-flash-mini-q8_0.gguf"
    made=1
    avail=$(df -Pk "$T" | awk 'NR == 2 {print $4}')
    if [ "${avail:-0}" -lt 3000000 ]; then
        bad "less than 3 GB free in $T for the 1.6 GB model"
        echo "mimo-mini: $pass passed, $fail failed"; exit 1
    fi
    t0=$(date +%s)
    if "$B/mica-gen" --preset mimo-v2-flash-mini --type Q8_0 --threads 2 -o "$f" 2>"$T/gen.err"; then
        ok "generate mimo-v2-flash-mini Q8_0 ($(( $(date +%s) - t0 )) s)"
    else
        bad "generate: $(head -n 2 "$T/gen.err")"; rm -f "$f" "$f.tmp"
        echo "mimo-mini: $pass passed, $fail failed"; exit 1
    fi
fi
t0=$(date +%s)
MICA_MIMO_MINI="$f" "$B/test_unit" --only mimo_mini_position_1000 >"$T/unit.log" 2>&1
if grep -q '^ok   mimo_mini_position_1000' "$T/unit.log"; then
    ok "mimo_mini_position_1000 ($(( $(date +%s) - t0 )) s)"
else
    bad "mimo_mini_position_1000: $(grep -v '^unit:' "$T/unit.log" | head -n 5)"
fi
[ -n "$made" ] && rm -f "$f"
echo "mimo-mini: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
