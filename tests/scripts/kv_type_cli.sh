#!/usr/bin/env bash
# --kv-type on the command line: `mica info --kv-type T -c N` prints the KV
# bytes per token and for N positions that the formula below gives (written
# from the presets' shapes, as tests/unit/test_kvtype.c); `mica run` and
# `mica logits` accept it (Q8_0 greedy ids equal to F32's on a dense tiny
# preset; the logits within test_kvtype.c's bound); a bad value is one error
# line and exit status 1 for every command that takes the flag.
#   MICA_BUILD     build directory (default build)
set -u
cd "$(dirname "$0")/../.."
B=${MICA_BUILD:-build}
M="$B/mica"
T="$B/test-tmp/kv-type-cli"; mkdir -p "$T"
pass=0 fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }

"$B/mica-gen" --preset tiny-llama --type Q8_0 --seed 5 -o "$T/llama.gguf" 2>/dev/null || bad "generate tiny-llama"
"$B/mica-gen" --preset tiny-mimo2 --type Q8_0 --seed 5 -o "$T/mimo.gguf" 2>/dev/null || bad "generate tiny-mimo2"

# bytes of a row of n values: F32 4n, F16 2n, Q8_0 34 n/32
row() { case $2 in f32) echo $(( 4 * $1 ));; f16) echo $(( 2 * $1 ));; q8_0) echo $(( $1 / 32 * 34 ));; esac; }
for t in f32 f16 q8_0; do
    # tiny-llama: 2 layers, K and V rows of 2 heads x 64
    per=$(( 2 * 2 * $(row 128 $t) ))
    want="kv cache -c 1000:  $(( 1000 * per )) bytes"
    out=$("$M" info "$T/llama.gguf" -c 1000 --kv-type $t 2>&1)
    if grep -qF "$want" <<<"$out" && grep -qE "^kv bytes/token: +$per \($t\)" <<<"$out"; then
        ok "info tiny-llama $t: $per bytes/token"
    else bad "info tiny-llama $t: want '$want' and $per/token, got: $(grep '^kv' <<<"$out" | tr '\n' ' ')"; fi
    # tiny-mimo2: block 0 global (K 96, V 64: 1 head), blocks 1-3 window 8 (2 heads: 192, 128)
    # whose rings hold 8 + 512 - 1 rows at the default batch of 512
    want=$(( 1000 * ($(row 96 $t) + $(row 64 $t)) + 3 * 519 * ($(row 192 $t) + $(row 128 $t)) ))
    out=$("$M" info "$T/mimo.gguf" -c 1000 --kv-type $t 2>&1)
    if grep -qF "kv cache -c 1000:  $want bytes" <<<"$out"; then ok "info tiny-mimo2 $t: $want bytes"
    else bad "info tiny-mimo2 $t: want $want, got: $(grep '^kv cache' <<<"$out")"; fi
done

ids_f32=$("$M" run -m "$T/llama.gguf" --ids-in "1 17 300 42 7" -n 16 --temp 0 --ids -t 2 2>/dev/null | tail -n 1)
ids_q8=$("$M" run -m "$T/llama.gguf" --ids-in "1 17 300 42 7" -n 16 --temp 0 --ids -t 2 --kv-type q8_0 2>/dev/null | tail -n 1)
if [ -n "$ids_f32" ] && [ "$ids_f32" = "$ids_q8" ]; then ok "run --kv-type q8_0: greedy ids = f32's"
else bad "run --kv-type q8_0: '$ids_q8' vs f32 '$ids_f32'"; fi

if "$M" logits -m "$T/llama.gguf" --ids "1 2 3 4" -o "$T/q8.f32" --kv-type q8_0 -t 1 2>"$T/err" &&
   [ "$(stat -c %s "$T/q8.f32")" -eq $(( 4 * 640 * 4 )) ]; then ok "logits --kv-type q8_0"
else bad "logits --kv-type q8_0: $(cat "$T/err")"; fi

for cmd in "run -m $T/llama.gguf --ids-in 1 -n 1" "logits -m $T/llama.gguf --ids 1 -o $T/x.f32" \
           "bench -m $T/llama.gguf -p 1 -n 1" "chat -m $T/llama.gguf" "info $T/llama.gguf" \
           "serve -m $T/llama.gguf --port 0"; do
    # shellcheck disable=SC2086
    timeout 20 "$M" $cmd --kv-type q4_0 </dev/null >"$T/out" 2>"$T/err"
    rc=$?
    if [ $rc -eq 1 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "kv-type" "$T/err"; then ok "${cmd%% *} --kv-type q4_0: one error line"
    else bad "${cmd%% *} --kv-type q4_0: rc $rc, stderr: $(head -c 300 "$T/err")"; fi
done
rm -f "$T"/*.gguf "$T"/*.f32
echo "kv-type-cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
