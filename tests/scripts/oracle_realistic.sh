#!/bin/sh
# oracle_realistic.sh - mica against llama.cpp (node-llama-cpp) and the numpy
# reference on one realistic preset per MoE architecture: mimo-v2-flash-mini
# (F32, Q8_0, Q4_0), olmoe-1b-7b (Q8_0, Q4_0), qwen3-30b-a3b-half (Q4_0,
# Q8_0), deepseek-v2-lite (Q4_0, Q8_0). NOT part of make check: it generates
# up to 16 GB per model (one at a time, deleted after; existing files in
# --models DIR, default /work/bench-models, are used read-only) and takes
# tens of minutes on 2 cores. Prints one line per check and a markdown table
# (tests/ref/README.md has the last measured one).
#   MICA_BUILD=build tests/scripts/oracle_realistic.sh [--only SUBSTR] [--models DIR]
#       [--table FILE] [-t THREADS] [-v]
# Needs tests/llamacpp/node_modules (tests/scripts/llamacpp_oracle.sh installs
# it) and /usr/bin/python3 with numpy.
set -u
cd "$(dirname "$0")/../.." || exit 1
PY=${MICA_PYTHON:-/usr/bin/python3}
if [ ! -d tests/llamacpp/node_modules/node-llama-cpp ]; then
    echo "FAIL realistic_setup: tests/llamacpp/node_modules missing (run tests/scripts/llamacpp_oracle.sh once)"
    echo "realistic: 0 passed, 1 failed"
    exit 1
fi
"$PY" -c 'import numpy' 2>/dev/null || { echo "FAIL realistic_setup: $PY has no numpy"; exit 1; }
exec "$PY" tests/llamacpp/realistic.py "$@"
