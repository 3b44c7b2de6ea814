#!/usr/bin/env bash
# malformed_cli.sh - runs `mica info` on every crafted malformed GGUF file
# (written by the unit test gguf_malformed_suite to
# $MICA_BUILD/test-tmp/malformed/) and requires a clean rejection:
#   non-zero exit status, not killed by a signal (status < 128),
#   exactly one line on stderr, nothing on stdout.
# Prints "malformed-cli: N passed, M failed"; exits non-zero on any failure.
#
#   MICA_BUILD=build tests/scripts/malformed_cli.sh
set -u

build=${MICA_BUILD:-build}
mica="$build/mica"
dir="$build/test-tmp/malformed"

if [ ! -x "$mica" ]; then
    echo "malformed-cli: $mica not found (build it first)" >&2
    exit 1
fi
if [ ! -d "$dir" ] || [ -z "$(ls -A "$dir" 2>/dev/null)" ]; then
    MICA_BUILD="$build" "$build/test_unit" --only gguf_malformed >/dev/null || {
        echo "malformed-cli: $build/test_unit --only gguf_malformed failed" >&2
        exit 1
    }
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
shopt -s nullglob
files=("$dir"/*.gguf)
if [ ${#files[@]} -eq 0 ]; then
    echo "malformed-cli: no files in $dir" >&2
    exit 1
fi
for f in "${files[@]}"; do
    "$mica" info "$f" >"$tmp/out" 2>"$tmp/err" </dev/null
    rc=$?
    lines=$(wc -l <"$tmp/err")
    # a last line without a newline still counts as a line
    if [ -s "$tmp/err" ] && [ -n "$(tail -c 1 "$tmp/err")" ]; then lines=$((lines + 1)); fi
    why=""
    if [ "$rc" -eq 0 ]; then why="exit status 0"
    elif [ "$rc" -ge 128 ]; then why="killed by a signal (status $rc)"
    elif [ -s "$tmp/out" ]; then why="stdout not empty"
    elif [ ! -s "$tmp/err" ]; then why="stderr empty"
    elif [ "$lines" -ne 1 ]; then why="stderr has $lines lines"
    fi
    if [ -z "$why" ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL $(basename "$f"): $why" >&2
        head -c 600 "$tmp/err" | sed 's/^/    stderr: /' >&2
    fi
done

echo "malformed-cli: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
