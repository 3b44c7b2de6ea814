#!/usr/bin/env bash
# `mica tokenize` end to end, against the reference ids of testdata/vocab:
#  - every case of every .inp/.out pair, one process per case:
#    `mica tokenize -m VOCAB.gguf -f CASE --no-bos` must print exactly the
#    expected ids on one line, separated by single spaces (an empty line for a
#    case without tokens), and exit 0;
#  - --parse-special on a Qwen2 ChatML string (special ids) and without it
#    (the same text as plain bytes), default BOS on llama-spm, the --pieces
#    format (id, tab, text; one token per line);
#  - invalid UTF-8 input on every vocabulary: exit 0 and a well-formed line,
#    and for byte-level BPE the pieces give back the input bytes;
#  - a missing input file, a missing model and a non-GGUF model: exit status
#    1 with a one-line message on stderr and nothing on stdout.
# Expected ids come from the .out files (Hugging Face tokenizers) and, for the
# extra checks, from the token lists of the vocab files (e.g. qwen2 151644 is
# "<|im_start|>", llama-spm 22172 is "▁hello").
# Prints "tokenize-cli: N passed, M failed". Missing test data or binary is a
# failure when CI=true and a skip otherwise.
set -u
B=${MICA_BUILD:-build}; D=${MICA_TESTDATA:-../shared/testdata}
M="$B/mica"; V="$D/vocab"
PY=/usr/bin/python3
T="$B/test-tmp/tokenize-cli"; rm -rf "$T"; mkdir -p "$T"
SEP=$'\n__ggml_vocab_test__\n'
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { echo "FAIL $1: $2"; fail=$((fail + 1)); }
skip_or_fail() {
    if [ "${CI:-}" = true ]; then bad "setup" "$1"; echo "tokenize-cli: $pass passed, $fail failed"; exit 1; fi
    echo "skip: $1"; echo "tokenize-cli: 0 passed, 0 failed"; exit 0
}

[ -x "$M" ] || skip_or_fail "$M not built"
ls "$V"/*.gguf.inp >/dev/null 2>&1 || skip_or_fail "missing $V/*.gguf.inp"

# run NAME EXPECTED_STDOUT_FILE ARGS...: exit 0 and stdout byte-identical.
run() {
    local name=$1 exp=$2; shift 2
    "$M" tokenize "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    if [ "$rc" -ne 0 ]; then bad "$name" "exit $rc: $(head -c 300 "$T/err")"
    elif ! cmp -s "$exp" "$T/out"; then
        bad "$name" "expected '$(head -c 200 "$exp" | tr '\t\n' '|/')', got '$(head -c 200 "$T/out" | tr '\t\n' '|/')'"
    else ok; fi
}
# expect NAME STRING ARGS...: like run, the expected stdout given as a string.
expect() {
    local name=$1; printf '%s' "$2" >"$T/exp"; shift 2
    run "$name" "$T/exp" "$@"
}
# refuse NAME ARGS...: exit 1, empty stdout, exactly one line on stderr.
refuse() {
    local name=$1; shift
    "$M" tokenize "$@" >"$T/out" 2>"$T/err"
    local rc=$? lines
    lines=$(wc -l <"$T/err")
    if [ "$rc" -ne 1 ]; then bad "$name" "exit $rc (want 1): $(head -c 300 "$T/err")"
    elif [ -s "$T/out" ]; then bad "$name" "printed to stdout: $(head -c 200 "$T/out")"
    elif [ "$lines" -ne 1 ] || [ "$(wc -c <"$T/err")" -le 1 ]; then bad "$name" "want one error line, got $lines"
    else ok; fi
}

# 1. The .inp/.out pairs: split into one file per case (text) and its
#    expected stdout (the .out line trimmed, ids joined by single spaces).
if ! "$PY" - "$V" "$T" "$SEP" <<'EOF'
import glob, os, sys
vdir, out, sep = sys.argv[1], sys.argv[2], sys.argv[3].encode()
for inp in sorted(glob.glob(os.path.join(vdir, "*.gguf.inp"))):
    name = os.path.basename(inp)[:-len(".gguf.inp")].replace("ggml-vocab-", "", 1)
    cases = open(inp, "rb").read().split(sep)
    assert cases[-1] == b"", inp + ": does not end with the separator"
    cases = cases[:-1]
    lines = open(inp[:-4] + ".out", "rb").read().split(b"\n")
    assert lines[-1] == b"" and len(lines) - 1 == len(cases), inp + ": case/line count mismatch"
    d = os.path.join(out, name)
    os.makedirs(d)
    for i, (text, ids) in enumerate(zip(cases, lines)):
        open(os.path.join(d, "%02d.txt" % i), "wb").write(text)
        open(os.path.join(d, "%02d.exp" % i), "wb").write(b" ".join(ids.split()) + b"\n")
EOF
then skip_or_fail "cannot split the .inp/.out pairs"; fi

for d in "$T"/*/; do
    vn=$(basename "$d"); vf="$V/ggml-vocab-$vn.gguf"; before=$fail n=0
    for tf in "$d"*.txt; do
        run "$vn/case$(basename "$tf" .txt)" "${tf%.txt}.exp" -m "$vf" -f "$tf" --no-bos
        n=$((n + 1))
    done
    if [ "$fail" -eq "$before" ]; then echo "ok   $vn: $n/$n cases"
    else echo "FAIL $vn: $((n - (fail - before)))/$n cases"; fi
done

# 2. Special tokens, BOS, --pieces.
Q="$V/ggml-vocab-qwen2.gguf"; L="$V/ggml-vocab-llama-spm.gguf"
chatml=$'<|im_start|>user\nhi<|im_end|>'
expect qwen2/parse-special $'151644 872 198 6023 151645\n' -m "$Q" -p "$chatml" --parse-special --no-bos
# Without --parse-special the markers are text: < | im _start | > ... _end.
expect qwen2/no-parse-special $'27 91 318 4906 91 29 872 198 6023 27 91 318 6213 91 29\n' -m "$Q" -p "$chatml" --no-bos
printf '%s' "$chatml" >"$T/chatml.txt"
expect qwen2/parse-special-file $'151644 872 198 6023 151645\n' -m "$Q" -f "$T/chatml.txt" --parse-special --no-bos
expect llama-spm/default-bos $'1 22172\n' -m "$L" -p hello
expect llama-spm/no-bos $'22172\n' -m "$L" -p hello --no-bos
expect llama-spm/pieces $'1\t<s>\n22172\thello\n' -m "$L" -p hello --pieces
expect qwen2/pieces $'9707\tHello\n1879\t world\n' -m "$Q" -p 'Hello world' --no-bos --pieces
expect qwen2/pieces-empty '' -m "$Q" -p '' --no-bos --pieces
expect qwen2/empty $'\n' -m "$Q" -p '' --no-bos

# 3. Invalid UTF-8 (stray continuation bytes, 0xFF/0xFE, truncated and
#    overlong sequences, a surrogate, a cut-off final character).
printf 'a\xff\xfeb \xc3( \xf0\x9f\x98 \xed\xa0\x80 \xc0\xaf \x80end\xe2\x82' >"$T/bad.txt"
for vf in "$V"/*.gguf; do
    vn=$(basename "$vf" .gguf); vn=${vn#ggml-vocab-}
    "$M" tokenize -m "$vf" -f "$T/bad.txt" --no-bos >"$T/out" 2>"$T/err"
    rc=$?
    if [ "$rc" -ne 0 ]; then bad "$vn/invalid-utf8" "exit $rc: $(head -c 300 "$T/err")"
    elif ! grep -qxE '([0-9]+( [0-9]+)*)?' "$T/out" || [ "$(wc -l <"$T/out")" -ne 1 ]; then
        bad "$vn/invalid-utf8" "malformed output: $(head -c 200 "$T/out")"
    else ok; fi
done
# Byte-level BPE is lossless on any bytes: the pieces give the input back.
for vn in qwen2 llama-bpe gpt-2; do
    if "$M" tokenize -m "$V/ggml-vocab-$vn.gguf" -f "$T/bad.txt" --no-bos --pieces >"$T/pieces" 2>"$T/err" &&
        "$PY" -c '
import sys
pieces = open(sys.argv[1], "rb").read().split(b"\n")[:-1]
sys.exit(b"".join(p.split(b"\t", 1)[1] for p in pieces) != open(sys.argv[2], "rb").read())
' "$T/pieces" "$T/bad.txt"; then ok
    else bad "$vn/invalid-utf8-pieces" "pieces do not give back the input bytes: $(head -c 300 "$T/err")"; fi
done

# 4. Errors: one line, exit 1, nothing on stdout.
refuse missing-file -m "$Q" -f "$T/no-such-file.txt" --no-bos
refuse missing-model -m "$T/no-such-model.gguf" -p hi
refuse non-vocab-file -m "$V/README.md" -p hi
refuse non-gguf-inp -m "$V/ggml-vocab-qwen2.gguf.inp" -p hi
refuse no-text -m "$Q"
refuse text-and-file -m "$Q" -p hi -f "$T/bad.txt"

echo "tokenize-cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
