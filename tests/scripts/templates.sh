#!/usr/bin/env bash
# Chat templates: renders every template of testdata/templates with each test
# conversation through mica's Jinja renderer (build/mica-template) and through
# Python Jinja2 configured as Hugging Face does (tests/ref/render_templates.py,
# Debian python3-jinja2), and compares the outputs byte for byte. A pair where
# both renderers refuse the conversation (raise_exception, e.g. a system
# message for Gemma) passes; one failing alone is a failure. Each template
# must render at least MIN_RENDERED conversations identically (refusals do not
# count), or the template is a failure.
# Prints "templates: N passed, M failed". Missing python3-jinja2 or test data
# is a failure when CI=true and a skip otherwise.
set -u
B=${MICA_BUILD:-build}; D=${MICA_TESTDATA:-../shared/testdata}
PY=/usr/bin/python3
T="$B/test-tmp/templates"; rm -rf "$T"; mkdir -p "$T/conv" "$T/ref" "$T/got"
NOW=1700000000 # fixed clock for strftime_now (2023-11-14 UTC)
MIN_RENDERED=8
pass=0 fail=0 rendered=0
bad() { echo "FAIL $1: $2"; fail=$((fail + 1)); }
skip_or_fail() {
    if [ "${CI:-}" = true ]; then bad "setup" "$1"; echo "templates: $pass passed, $fail failed"; exit 1; fi
    echo "skip: $1"; echo "templates: 0 passed, 0 failed"; exit 0
}

[ -x "$B/mica-template" ] || skip_or_fail "$B/mica-template not built"
"$PY" -c 'import jinja2' 2>/dev/null || skip_or_fail "python3-jinja2 missing (apt-get install python3-jinja2)"
ls "$D"/templates/*.jinja >/dev/null 2>&1 || skip_or_fail "missing $D/templates/*.jinja"

"$PY" tests/ref/render_templates.py --write-conversations "$T/conv" || skip_or_fail "cannot write conversations"
"$PY" tests/ref/render_templates.py --batch "$T/ref" --now "$NOW" "$D"/templates/*.jinja -- "$T"/conv/*.json ||
    bad "reference" "render_templates.py --batch failed"

for tf in "$D"/templates/*.jinja; do
    tn=$(basename "$tf" .jinja)
    tp=0
    for cf in "$T"/conv/*.json; do
        cn=$(basename "$cf" .json)
        id="$tn/$cn"
        ref="$T/ref/${tn}__${cn}"
        got="$T/got/${tn}__${cn}"
        if "$B/mica-template" --now "$NOW" "$tf" "$cf" >"$got.out" 2>"$got.err"; then
            if [ -f "$ref.out" ]; then
                if cmp -s "$ref.out" "$got.out"; then
                    pass=$((pass + 1)); tp=$((tp + 1)); rendered=$((rendered + 1))
                else
                    bad "$id" "output differs: $(cmp "$ref.out" "$got.out" 2>&1 | head -1)"
                fi
            else
                bad "$id" "mica rendered but Jinja2 failed: $(head -c 300 "$ref.err")"
            fi
        else
            if [ -f "$ref.err" ]; then
                pass=$((pass + 1)) # both refuse this conversation
            else
                bad "$id" "mica failed: $(head -c 300 "$got.err")"
            fi
        fi
    done
    if [ "$tp" -ge "$MIN_RENDERED" ]; then
        echo "ok   $tn: $tp conversations rendered identically"
    else
        bad "$tn" "only $tp conversations rendered identically (need >= $MIN_RENDERED)"
    fi
done
echo "($rendered template/conversation pairs rendered identically; the rest were refused by both)"
echo "templates: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
