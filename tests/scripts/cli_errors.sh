#!/usr/bin/env bash
# Bad input at the command line: each case must exit non-zero (not by a
# signal), print exactly one line on stderr naming the problem, and finish
# within a few seconds.
set -u
B=${MICA_BUILD:-build}; D=${MICA_TESTDATA:-../shared/testdata}
T="$B/test-tmp/cli"; mkdir -p "$T"
pass=0 fail=0
M="$B/test-tmp/golden/stories260K.gguf"
[ -f "$M" ] || "$B/mica" convert llama2c "$D/tinystories/stories260K.bin" "$D/tinystories/tok512.bin" -o "$M" 2>/dev/null

expect_error() { # name, pattern expected in the message, command...
    local name=$1 pat=$2; shift 2
    timeout 20 "$@" >"$T/out" 2>"$T/err" </dev/null
    local rc=$? lines
    lines=$(wc -l <"$T/err")
    if [ $rc -eq 0 ]; then echo "FAIL $name: exit status 0"; fail=$((fail + 1)); return; fi
    if [ $rc -ge 124 ]; then echo "FAIL $name: killed or timed out (status $rc)"; fail=$((fail + 1)); return; fi
    if [ "$lines" -ne 1 ]; then echo "FAIL $name: $lines lines on stderr"; cat "$T/err"; fail=$((fail + 1)); return; fi
    if ! grep -qiE -- "$pat" "$T/err"; then echo "FAIL $name: message '$(cat "$T/err")' lacks /$pat/"; fail=$((fail + 1)); return; fi
    echo "ok   $name: $(cat "$T/err")"; pass=$((pass + 1))
}

printf 'not a gguf file at all, just text\n' >"$T/text.gguf"
: >"$T/empty.gguf"
head -c 100000 "$D/tiny-random/llama-2-tiny-random.gguf" >"$T/truncated.gguf"

expect_error "missing file"            "no-such-file"          "$B/mica" info "$T/no-such-file.gguf"
expect_error "directory"               "$T"                    "$B/mica" info "$T"
expect_error "not gguf"                "magic|GGUF"            "$B/mica" info "$T/text.gguf"
expect_error "empty file"              "empty|truncat|short|offset" "$B/mica" info "$T/empty.gguf"
expect_error "truncated gguf"          "offset|truncat|exceed" "$B/mica" info "$T/truncated.gguf"
expect_error "unsupported arch"        "gpt2.*not supported"   "$B/mica" run -m "$D/vocab/ggml-vocab-gpt-2.gguf" -p hi
expect_error "prompt longer than ctx"  "context"               "$B/mica" run -m "$M" -c 4 -p "Once upon a time there was a girl"
expect_error "-n negative"             "\-n"                   "$B/mica" run -m "$M" -p hi -n -1
expect_error "-n not a number"         "\-n"                   "$B/mica" run -m "$M" -p hi -n lots
expect_error "-c zero"                 "\-c"                   "$B/mica" run -m "$M" -p hi -c 0
expect_error "-c too big"              "\-c"                   "$B/mica" run -m "$M" -p hi -c 99999999999
expect_error "-t zero"                 "\-t"                   "$B/mica" run -m "$M" -p hi -t 0
expect_error "--temp negative"         "temp"                  "$B/mica" run -m "$M" -p hi --temp -1
expect_error "unknown option"          "--frobnicate"          "$B/mica" run -m "$M" -p hi --frobnicate
expect_error "missing option value"    "\-p"                   "$B/mica" run -m "$M" -p
expect_error "unknown command"         "frob"                  "$B/mica" frob
expect_error "no model"                "\-m"                   "$B/mica" run -p hi
expect_error "token id out of range"   "out of range"          "$B/mica" logits -m "$M" --ids "1 999999" -o "$T/l.bin"
expect_error "logits without -o"       "\-o"                   "$B/mica" logits -m "$M" --ids "1 2"
expect_error "convert missing ckpt"    "no-such"               "$B/mica" convert llama2c "$T/no-such.bin" "$D/tinystories/tok512.bin" -o "$T/x.gguf"
expect_error "convert bad ckpt"        "size|match|truncat|invalid|outside|range" "$B/mica" convert llama2c "$T/text.gguf" "$D/tinystories/tok512.bin" -o "$T/x.gguf"

# --help and --version succeed.
for c in "--help" "--version" "run --help" "logits --help" "info --help" "tokenize --help" "convert --help"; do
    if "$B/mica" $c >/dev/null 2>&1; then echo "ok   mica $c"; pass=$((pass + 1)); else echo "FAIL mica $c"; fail=$((fail + 1)); fi
done

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
