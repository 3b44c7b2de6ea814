#!/usr/bin/env bash
# Fails if a module includes a header from a layer above it (docs/ARCHITECTURE.md):
#   base <- gguf, tensor <- model <- text, sample <- engine <- include/mica.h <- cli, server
# text and sample sit beside model: text may use base and gguf; sample only base.
# gguf may use tensor/dtype.h (a tensor's byte size is a property of its type).
set -u
cd "$(dirname "$0")/.."
fail=0
check() { # dir, allowed include prefixes (regex)
    local dir=$1 allowed=$2
    [ -d "$dir" ] || return 0
    while IFS= read -r line; do
        file=${line%%:*}
        inc=$(sed -E 's/.*#include "([^"]+)".*/\1/' <<<"$line")
        if ! grep -qE "^($allowed)" <<<"$inc"; then
            echo "layering: $file includes \"$inc\"" >&2
            fail=1
        fi
    done < <(grep -rn '#include "' "$dir" --include='*.c' --include='*.h' | sed -E 's/^([^:]+):[0-9]+:/\1:/')
}
local_hdr='[a-z_0-9]+\.h$'
check src/base   "mica_internal\.h|mica\.h|base/|$local_hdr"
check src/gguf   "mica_internal\.h|mica\.h|base/|gguf/|tensor/dtype\.h|$local_hdr"
check src/tensor "mica_internal\.h|mica\.h|base/|tensor/|$local_hdr"
check src/text   "mica_internal\.h|mica\.h|base/|gguf/|text/|$local_hdr"
check src/sample "mica_internal\.h|mica\.h|base/|sample/|$local_hdr"
check src/model  "mica_internal\.h|mica\.h|base/|gguf/|tensor/|text/|model/|$local_hdr"
check src/convert "mica_internal\.h|mica\.h|base/|gguf/|tensor/|convert/|$local_hdr"
check src/engine "mica_internal\.h|mica\.h|base/|gguf/|tensor/|text/|sample/|model/|engine/|$local_hdr"
check cli        "mica\.h|args\.h|$local_hdr"
check server     "mica\.h|$local_hdr"
if [ $fail -eq 0 ]; then echo "layering: 1 passed, 0 failed"; else echo "layering: 0 passed, 1 failed"; fi
exit $fail
