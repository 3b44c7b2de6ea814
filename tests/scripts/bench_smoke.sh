#!/usr/bin/env bash
# Smoke test of `mica bench` on stories260K (converted here from the llama2.c
# checkpoint): tiny -p/-n/-r, markdown and JSON outputs parse and carry
# positive speeds, the derived columns follow their definitions, and bad
# options fail with one error line. Speeds themselves are not checked.
set -u
B=${MICA_BUILD:-build}; D=${MICA_TESTDATA:-../shared/testdata}
T="$B/test-tmp/bench"; mkdir -p "$T"
PY=/usr/bin/python3
pass=0 fail=0
ok()  { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1: $2"; fail=$((fail + 1)); }
need() { # file: missing data is a failure in CI, a skip otherwise
    [ -e "$1" ] && return 0
    if [ "${CI:-}" = true ]; then bad "data" "missing $1"; else echo "skip: missing $1"; fi
    return 1
}
# expect_fail NAME ARGS...: non-zero exit and exactly one "mica: error:" line on stderr.
expect_fail() {
    local name=$1; shift
    if "$B/mica" bench "$@" >"$T/fail.out" 2>"$T/fail.err"; then
        bad "$name" "exit status 0"
    elif [ "$(wc -l <"$T/fail.err")" -eq 1 ] && grep -q '^mica: error: ' "$T/fail.err"; then
        ok "$name"
    else
        bad "$name" "stderr: $(head -c 300 "$T/fail.err")"
    fi
}

M="$T/stories260K.gguf"
if need "$D/tinystories/stories260K.bin" && need "$D/tinystories/tok512.bin"; then
    if ! "$B/mica" convert llama2c "$D/tinystories/stories260K.bin" "$D/tinystories/tok512.bin" \
        -o "$M" >/dev/null 2>"$T/convert.err"; then
        bad "convert stories260K" "$(head -c 300 "$T/convert.err")"
    fi
fi

if [ -f "$M" ]; then
    # markdown: a header and one pp and one tg row with "mean ± sd" > 0
    if "$B/mica" bench -m "$M" -p 16 -n 8 -r 2 -t 1 --membw-mib 64 >"$T/md.out" 2>"$T/md.err"; then
        if $PY - "$T/md.out" <<'EOF'
import re, sys
lines = [l for l in open(sys.argv[1]) if l.startswith('|')]
assert lines[0].split('|')[1].strip() == 'model', lines[0]
rows = [[c.strip() for c in l.strip().strip('|').split('|')] for l in lines[2:]]
assert [r[5] for r in rows] == ['pp16', 'tg8'], rows
for r in rows:
    assert r[0] == 'stories260K.gguf' and r[4] == '1', r
    m = re.fullmatch(r'([0-9.]+) ± ([0-9.]+)', r[6])
    assert m and float(m.group(1)) > 0, r
assert float(rows[1][7]) > 0 and rows[1][8].endswith('%'), rows[1]
EOF
        then ok "md output: pp16 and tg8 rows with positive t/s"
        else bad "md output" "$(cat "$T/md.out")"; fi
    else
        bad "md run" "$(head -c 300 "$T/md.err")"
    fi

    # json: one object per line, llama-bench field names, consistent derived fields
    if "$B/mica" bench -m "$M" -p 16 -n 8 -r 2 -t 2 -o json --membw-mib 64 >"$T/json.out" 2>"$T/json.err"; then
        if $PY - "$T/json.out" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert len(rows) == 2, rows
pp, tg = rows
assert (pp['n_prompt'], pp['n_gen'], tg['n_prompt'], tg['n_gen']) == (16, 0, 0, 8)
for r in rows:
    assert r['model_filename'].endswith('stories260K.gguf') and r['n_threads'] == 2 and r['n_depth'] == 0
    assert r['avg_ts'] > 0 and len(r['samples_ts']) == 2 and all(x > 0 for x in r['samples_ts'])
    assert abs(sum(r['samples_ts']) / 2 - r['avg_ts']) <= 1e-3 * r['avg_ts']
    assert len(r['samples_ns']) == 2 and r['stddev_ts'] >= 0
    # an all-F32 file: 4 bytes per parameter, and the file holds them all
    assert r['model_type'].startswith('F32 x'), r['model_type']
    assert r['model_size'] >= 4 * r['model_n_params'] > 0
    assert r['bytes_per_token'] > 0
assert pp['gbps'] is None and pp['roofline'] is None
assert abs(tg['gbps'] - tg['bytes_per_token'] * tg['avg_ts'] / 1e9) <= 1e-3 * tg['gbps'] + 1e-4
assert tg['membw_gbps'] > 0 and abs(tg['roofline'] - tg['gbps'] / tg['membw_gbps']) < 1e-3
EOF
        then ok "json output: 2 rows, llama-bench fields, gbps and roofline consistent"
        else bad "json output" "$(cat "$T/json.out")"; fi
    else
        bad "json run" "$(head -c 300 "$T/json.err")"
    fi

    # depth and --no-membw
    if "$B/mica" bench -m "$M" -p 8 -n 4 -d 8 -r 1 -t 1 -o json --no-membw >"$T/depth.out" 2>"$T/depth.err" &&
       $PY -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["test"] for r in rows] == ["pp8 @ d8", "tg4 @ d8"], rows
assert all(r["n_depth"] == 8 and r["avg_ts"] > 0 for r in rows)
assert rows[1]["membw_gbps"] is None and rows[1]["roofline"] is None and rows[1]["gbps"] > 0
' "$T/depth.out"; then ok "--depth 8 and --no-membw"
    else bad "--depth" "$(cat "$T/depth.out" "$T/depth.err" | head -c 300)"; fi

    # two models in one invocation, tg only
    if "$B/mica" bench -m "$M" -m "$M" -p 0 -n 4 -r 1 -t 1 -o json --no-membw >"$T/two.out" 2>"$T/two.err" &&
       [ "$(grep -c '"test": "tg4"' "$T/two.out")" -eq 2 ] && [ "$(wc -l <"$T/two.out")" -eq 2 ]; then
        ok "two models, -p 0 skips pp"
    else bad "two models" "$(cat "$T/two.out" "$T/two.err" | head -c 300)"; fi

    expect_fail "-o xml rejected" -m "$M" -o xml
    expect_fail "-r 0 rejected" -m "$M" -r 0
    expect_fail "-p 0 -n 0 rejected" -m "$M" -p 0 -n 0
    expect_fail "--membw with a model rejected" --membw -m "$M"
fi

expect_fail "missing -m rejected"
expect_fail "unknown option rejected" --frobnicate
expect_fail "missing model file rejected" -m "$T/does-not-exist.gguf" --no-membw
expect_fail "-t 0 rejected" --membw -t 0

# --membw alone: a positive bandwidth, text and json
if out=$("$B/mica" bench --membw -t 1 --membw-mib 64 2>&1) &&
   grep -Eq '^memory read bandwidth: [0-9.]+ GB/s' <<<"$out" &&
   ! grep -Eq 'bandwidth: 0\.00 ' <<<"$out"; then ok "--membw text"
else bad "--membw text" "$out"; fi
if "$B/mica" bench --membw -t 2 --membw-mib 64 -o json >"$T/bw.out" 2>&1 &&
   $PY -c 'import json,sys; r=json.loads(open(sys.argv[1]).read()); assert r["membw_gbps"] > 0 and r["n_threads"] == 2' "$T/bw.out"
then ok "--membw json"
else bad "--membw json" "$(head -c 300 "$T/bw.out")"; fi

echo "bench-smoke: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
