#!/bin/sh
# oracle.sh - compares mica's forward pass with the independent numpy reference
# (tests/ref/). Run from anywhere; uses MICA_BUILD (default build) and
# MICA_TESTDATA (default ../shared/testdata), both relative to the repo root.
#   tests/scripts/oracle.sh            default cases (tiny presets, tiny-random; < ~2 min)
#   tests/scripts/oracle.sh --full     also the realistic-shape cases (qwen3-0.6b Q8_0, tinyllama Q4_0)
#   tests/scripts/oracle.sh --only logits_qwen3   a subset (substring match, repeatable)
# With CI=true a missing tool, data file or numpy is a failure, never a skip.
set -u
cd "$(dirname "$0")/../.." || exit 1
PY=${MICA_PYTHON:-/usr/bin/python3}
if ! "$PY" -c 'import numpy' 2>/dev/null; then
    echo "oracle: $PY with numpy not found (Debian: apt-get install python3-numpy)"
    if [ "${CI:-}" = "true" ]; then
        echo "oracle: 0 passed, 1 failed"
        exit 1
    fi
    echo "oracle: 0 passed, 0 failed, 1 skipped"
    exit 0
fi
exec "$PY" tests/ref/oracle_compare.py "$@"
