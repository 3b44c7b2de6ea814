#!/usr/bin/env bash
# Smoke test of build/mica-gen: --list, every tiny preset written and
# readable, seeds deterministic, and bad arguments giving exit status 1 with
# exactly one line on stderr and nothing on stdout.
#   MICA_BUILD     build directory (default build)
#   MICA_TESTDATA  shared test data (default ../shared/testdata)
set -u
cd "$(dirname "$0")/../.."
B=${MICA_BUILD:-build}; D=${MICA_TESTDATA:-../shared/testdata}
G="$B/mica-gen"
T="$B/test-tmp/gen"; mkdir -p "$T"
pass=0 fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }

# --list: one line per preset on stdout, nothing on stderr
if "$G" --list >"$T/out" 2>"$T/err" && [ ! -s "$T/err" ] &&
   [ "$(grep -cE '^(tiny-llama|tiny-qwen2|tiny-qwen3|qwen3-0\.6b|tinyllama-1\.1b|tiny-qwen3moe|tiny-olmoe|tiny-mixtral|qwen3-30b-a3b|qwen3-30b-a3b-half|olmoe-1b-7b) ' "$T/out")" -eq 11 ]; then
    ok "--list"
else bad "--list"; fi

# every tiny preset: silent success, a GGUF file, readable by mica info when built
for p in tiny-llama tiny-qwen2 tiny-qwen3 tiny-qwen3moe tiny-olmoe tiny-mixtral; do
    for t in F32 Q8_0 Q4_K; do
        f="$T/$p-$t.gguf"
        if "$G" --preset "$p" --type "$t" --seed 9 -o "$f" >"$T/out" 2>"$T/err" &&
           [ ! -s "$T/out" ] && [ ! -s "$T/err" ] && [ "$(head -c 4 "$f")" = "GGUF" ]; then
            ok "$p $t"
        else bad "$p $t: $(cat "$T/err")"; fi
        if [ -x "$B/mica" ] && [ "$t" = Q8_0 ]; then
            if "$B/mica" info "$f" >"$T/info" 2>&1; then ok "mica info $p"
            else bad "mica info $p: $(head -n 3 "$T/info")"; fi
        fi
    done
done

# seeds: same seed, same bytes; another seed, other bytes
"$G" --preset tiny-qwen3 --type Q8_0 --seed 9 -o "$T/again.gguf" 2>/dev/null
"$G" --preset tiny-qwen3 --type Q8_0 --seed 10 -o "$T/other.gguf" 2>/dev/null
if cmp -s "$T/tiny-qwen3-Q8_0.gguf" "$T/again.gguf"; then ok "same seed, same bytes"; else bad "same seed differs"; fi
if ! cmp -s "$T/tiny-qwen3-Q8_0.gguf" "$T/other.gguf"; then ok "other seed, other bytes"; else bad "other seed identical"; fi

expect_error() { # name, pattern expected in the message, arguments...
    local name=$1 pat=$2; shift 2
    timeout 60 "$G" "$@" >"$T/out" 2>"$T/err" </dev/null
    local rc=$?
    if [ $rc -ne 1 ]; then bad "$name: exit status $rc"; return; fi
    if [ -s "$T/out" ]; then bad "$name: output on stdout"; return; fi
    if [ "$(wc -l <"$T/err")" -ne 1 ]; then bad "$name: $(wc -l <"$T/err") lines on stderr"; return; fi
    if ! grep -qiE -- "$pat" "$T/err"; then bad "$name: '$(cat "$T/err")' lacks /$pat/"; return; fi
    ok "$name: $(cat "$T/err")"
}
expect_error "no arguments"       "usage"
expect_error "unknown preset"     "no-such"     --preset no-such -o "$T/x.gguf"
expect_error "unknown type"       "IQ2_XXS"     --preset tiny-llama --type IQ2_XXS -o "$T/x.gguf"
expect_error "bad seed"           "seed"        --preset tiny-llama --seed twelve -o "$T/x.gguf"
expect_error "missing -o"         "usage"       --preset tiny-llama
expect_error "option value"       "\-o"         --preset tiny-llama -o
expect_error "unknown option"     "frobnicate"  --frobnicate
expect_error "missing vocab"      "no-such"     --preset tiny-llama --vocab "$T/no-such.gguf" -o "$T/x.gguf"
printf 'not a gguf file\n' >"$T/text.gguf"
expect_error "not a gguf vocab"   "magic|GGUF|offset" --preset tiny-llama --vocab "$T/text.gguf" -o "$T/x.gguf"
if [ -f "$D/vocab/ggml-vocab-llama-spm.gguf" ]; then
    expect_error "vocab size mismatch" "32000" --preset qwen3-0.6b --vocab "$D/vocab/ggml-vocab-llama-spm.gguf" -o "$T/x.gguf"
fi
expect_error "unwritable output"  "x.gguf"      --preset tiny-llama -o "$T/no-such-dir/x.gguf"

echo "gen: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
