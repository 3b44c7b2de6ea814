#!/usr/bin/env bash
# Runs every test suite of `make check` against an already-built tree and
# prints one summary line. Each suite prints its own "NAME: N passed, M failed".
#   MICA_BUILD     build directory (default build)
#   MICA_TESTDATA  shared test data (default ../shared/testdata)
set -u
cd "$(dirname "$0")/.."
export MICA_BUILD=${MICA_BUILD:-build}
export MICA_TESTDATA=${MICA_TESTDATA:-../shared/testdata}

total_pass=0 total_fail=0
mkdir -p "$MICA_BUILD/test-tmp"
run_suite() { # name, command...
    local name=$1; shift
    local log="$MICA_BUILD/test-tmp/suite-$name.log"
    echo "== $name"
    "$@" >"$log" 2>&1
    local rc=$?
    cat "$log"
    local out p f
    out=$(grep -aE '^[a-z-]+: [0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    p=$(sed -nE 's/.*: ([0-9]+) passed.*/\1/p' <<<"$out")
    f=$(sed -nE 's/.*passed, ([0-9]+) failed.*/\1/p' <<<"$out")
    p=${p:-0}; f=${f:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
}

run_suite layering tools/check_layering.sh
run_suite unit "$MICA_BUILD/test_unit"
run_suite gen tests/scripts/gen_smoke.sh
run_suite golden tests/scripts/golden.sh
run_suite cli tests/scripts/cli_errors.sh
run_suite chat tests/scripts/chat.sh
run_suite templates tests/scripts/templates.sh
run_suite tokenize-cli tests/scripts/tokenize_cli.sh
run_suite oracle tests/scripts/oracle.sh
run_suite llamacpp tests/scripts/llamacpp_oracle.sh
run_suite bench-smoke tests/scripts/bench_smoke.sh
run_suite stream tests/scripts/stream.sh
run_suite info-params tests/scripts/info_params.sh
run_suite kv-type-cli tests/scripts/kv_type_cli.sh
run_suite mimo-mini tests/scripts/mimo_mini.sh

run_suite server tests/scripts/server.sh

echo "check: $total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
