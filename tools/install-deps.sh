#!/usr/bin/env bash
# Installs the Debian packages mica needs to build and test, if any are
# missing. Called by the make targets; safe to run again (does nothing when
# everything is present).
#
#   build:  gcc, make, libpcre2-dev (pre-tokenizer regexes),
#           libutf8proc-dev (WordPiece normalisation),
#           libmicrohttpd-dev, libjansson-dev (mica serve: HTTP and JSON),
#           liburing-dev (io_uring reads of streamed experts)
#   tests:  python3-numpy (the independent reference forward pass)
#   fuzz:   clang, libclang-rt-14-dev (libFuzzer, sanitizers)
#   chat test: tmux (drives mica chat as a person would)
#   server test: curl, jq, nodejs + npm (the openai npm package drives mica serve)
set -eu

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v make >/dev/null 2>&1 || need+=(make)
[ -f /usr/include/pcre2.h ] || need+=(libpcre2-dev)
[ -f /usr/include/utf8proc.h ] || need+=(libutf8proc-dev)
[ -f /usr/include/microhttpd.h ] || need+=(libmicrohttpd-dev)
[ -f /usr/include/jansson.h ] || need+=(libjansson-dev)
[ -f /usr/include/liburing.h ] || need+=(liburing-dev)
/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1 || need+=(python3-numpy)
/usr/bin/python3 -c 'import jinja2' >/dev/null 2>&1 || need+=(python3-jinja2)
/usr/bin/python3 -c 'import jsonschema' >/dev/null 2>&1 || need+=(python3-jsonschema) # independent schema validator (server test)
command -v clang >/dev/null 2>&1 || need+=(clang)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v jq >/dev/null 2>&1 || need+=(jq)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
if command -v dpkg-query >/dev/null 2>&1; then
    have_pkg libclang-rt-14-dev || have_pkg libclang-rt-dev || need+=(libclang-rt-14-dev)
fi

[ ${#need[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${need[*]}" >&2
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps: apt-get not found; please install: ${need[*]}" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
        echo "install-deps: not root and no sudo; please install: ${need[*]}" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
