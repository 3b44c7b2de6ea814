#!/bin/sh
# llamacpp_oracle.sh - compares mica's forward pass with llama.cpp itself (the
# npm package node-llama-cpp: llama.cpp's prebuilt CPU library, no GPU, no
# compilation) on the same GGUF files: teacher-forced logits and greedy ids for
# the tiny presets of every architecture mica-gen knows (all weight types), the
# converted stories260K and tiny-random/llama-2-tiny-random.gguf.
#   tests/scripts/llamacpp_oracle.sh [--only SUBSTR] [--keep DIR] [-v] [--seed N]
# Installs tests/llamacpp/node_modules (pinned in tests/llamacpp/package.json,
# ~85 MB from the npm registry) when it is missing or at another version.
# Uses MICA_BUILD (default build) and MICA_TESTDATA (default ../shared/testdata),
# relative to the repo root. With CI=true a missing node/npm/numpy, a failed
# install or a missing file is a failure, never a skip.
set -u
cd "$(dirname "$0")/../.." || exit 1
PY=${MICA_PYTHON:-/usr/bin/python3}
NODE=${MICA_NODE:-node}
NPM=${MICA_NPM:-npm}
DIR=tests/llamacpp

missing() { # why
    echo "llamacpp: $1"
    if [ "${CI:-}" = "true" ]; then
        echo "FAIL llamacpp_setup $1 (CI=true: a missing tool is a failure)"
        echo "llamacpp: 0 passed, 1 failed"
        exit 1
    fi
    echo "SKIP llamacpp_setup $1"
    echo "llamacpp: 0 passed, 0 failed, 1 skipped"
    exit 0
}

"$PY" -c 'import numpy' 2>/dev/null || missing "$PY with numpy not found (Debian: apt-get install python3-numpy)"
command -v "$NODE" >/dev/null 2>&1 || missing "node not found (node >= 20 is needed)"
major=$("$NODE" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
[ "$major" -ge 20 ] 2>/dev/null || missing "node $("$NODE" --version 2>/dev/null) is too old (>= 20 needed)"

# The pinned version, and the installed one (empty if none).
want=$("$NODE" -p "require('./$DIR/package.json').dependencies['node-llama-cpp']")
have_version() {
    "$NODE" -p "try { require('./$DIR/node_modules/node-llama-cpp/package.json').version + '/' +
        require('./$DIR/node_modules/@node-llama-cpp/linux-x64/package.json').version } catch (e) { '' }" 2>/dev/null
}
if [ "$(have_version)" != "$want/$want" ]; then
    command -v "$NPM" >/dev/null 2>&1 || missing "npm not found (needed to install node-llama-cpp $want)"
    echo "llamacpp: installing node-llama-cpp $want into $DIR/node_modules"
    t0=$(date +%s)
    log=$(mktemp "${TMPDIR:-/tmp}/mica-npm-install.XXXXXX") || missing "mktemp failed"
    # --ignore-scripts: no postinstall download/compilation (the prebuilt
    # linux-x64 binary is a direct dependency); --omit=optional: none of the
    # other platforms' binaries.
    if ! (cd "$DIR" && "$NPM" install --omit=optional --ignore-scripts --no-audit --no-fund \
            --no-package-lock --loglevel=error) >"$log" 2>&1; then
        tail -n 5 "$log"
        if [ "${CI:-}" = "true" ]; then
            echo "FAIL llamacpp_setup npm install failed (log: $log)"
            echo "llamacpp: 0 passed, 1 failed"
            exit 1
        fi
        missing "npm install failed (offline?) (log: $log)"
    fi
    rm -f "$log"
    echo "llamacpp: installed in $(( $(date +%s) - t0 )) s"
    [ "$(have_version)" = "$want/$want" ] || missing "node-llama-cpp $want not found after npm install"
fi

MICA_NODE=$NODE exec "$PY" "$DIR/compare.py" "$@"
