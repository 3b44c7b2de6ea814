#!/usr/bin/env bash
# Tokenizer encode throughput, mica against llama.cpp, on the same text and
# the same vocabulary files, one thread each, back to back:
#   mica:      bench/bench_tok.c (internal vocab API, one vocab_tokenize call)
#   llama.cpp: bench/tok_llamacpp.mjs (node-llama-cpp, model.tokenize, vocabOnly)
# The text is bench_tok's deterministic mix (70% English-like sentences, 30%
# Cyrillic, Greek, CJK, Japanese, Hangul, Arabic, accented Latin, emoji and
# code lines). Prints the provenance and a markdown table; "same ids" compares
# the FNV-1a hashes of both id sequences (the correctness gate).
#   bench/tokenizer.sh [MB]        default 4
# Env: MICA_BUILD (build), RUNS (5), TESTDATA (../shared/testdata),
#      VOCABS ("qwen2 llama-spm"), names of testdata/vocab/ggml-vocab-NAME.gguf
set -eu
cd "$(dirname "$0")/.."
B=${MICA_BUILD:-build}; R=${RUNS:-5}; MB=${1:-4}
TD=${TESTDATA:-../shared/testdata}; VOCABS=${VOCABS:-qwen2 llama-spm}

make -s BUILD="$B" "$B/libmica.a" >/dev/null 2>&1 || make BUILD="$B" "$B/libmica.a"
cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -o "$B/bench_tok" bench/bench_tok.c "$B/libmica.a" \
    -lpcre2-8 -lutf8proc -lpthread -lm
mkdir -p "$B/bench"
text="$B/bench/tok_text_${MB}mb.txt"
"$B/bench_tok" gen "$text" "$MB"

field() { sed -nE "s/.*$1=([^ ]+).*/\1/p"; }
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "llama.cpp: node-llama-cpp $(node -p 'require("./bench/node_modules/node-llama-cpp/package.json").version' 2>/dev/null || echo '?') (prebuilt CPU binary)"
echo "text: $text, $(stat -c %s "$text") bytes (bench_tok gen, $MB MB)"
echo "commands: $B/bench_tok run VOCAB TEXT $R ; node bench/tok_llamacpp.mjs VOCAB TEXT $R   (one warm-up run, $R timed runs, median MB/s; whole text in one call)"
echo
echo "| vocabulary | tokens | mica MB/s | llama.cpp MB/s | mica / llama.cpp | same ids |"
echo "|---|---:|---:|---:|---:|---|"
for name in $VOCABS; do
    f="$TD/vocab/ggml-vocab-$name.gguf"
    m=$("$B/bench_tok" run "$f" "$text" "$R")
    l=$(node bench/tok_llamacpp.mjs "$f" "$text" "$R" 2>/dev/null | grep '^bytes=')
    mm=$(field mb_s_median <<<"$m"); lm=$(field mb_s_median <<<"$l")
    same=no; [ "$(field hash <<<"$m")" = "$(field hash <<<"$l")" ] && same=yes
    ratio=$(awk -v a="$mm" -v b="$lm" 'BEGIN { printf "%.2fx", a / b }')
    echo "| $name | $(field tokens <<<"$m") | $mm ($(field mb_s_min <<<"$m")-$(field mb_s_max <<<"$m")) | $lm ($(field mb_s_min <<<"$l")-$(field mb_s_max <<<"$l")) | $ratio | $same |"
done
echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
