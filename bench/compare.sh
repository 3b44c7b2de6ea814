#!/usr/bin/env bash
# Side-by-side prompt (pp) and generation (tg) speed of mica and llama.cpp on
# the same GGUF files, same thread count, prompt and generation lengths.
# mica runs through `mica bench -o json`; llama.cpp through the npm package
# node-llama-cpp (bench/llamacpp_bench.mjs; installed into bench/node_modules
# on first use, which downloads about 85 MB - this script is therefore not
# part of `make check`).
#
#   bench/compare.sh [-t THREADS] [-p N] [-n N] [-r RUNS] [-d DEPTH] MODEL.gguf ...
#
# Env: MICA_BUILD (default build), MICA_COMMIT (see below). Prints a markdown report with the
# provenance bench/PROTOCOL.md asks for; the raw JSON rows are kept in
# $MICA_BUILD/bench-compare/tTHREADS/.
set -eu
cd "$(dirname "$0")/.."
B=${MICA_BUILD:-build}
T=2 P=512 N=128 R=3 D=0
while [ $# -gt 0 ]; do
    case $1 in
        -t) T=$2; shift 2 ;;
        -p) P=$2; shift 2 ;;
        -n) N=$2; shift 2 ;;
        -r) R=$2; shift 2 ;;
        -d) D=$2; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        -*) echo "compare: unknown option '$1'" >&2; exit 1 ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || { echo "compare: give at least one MODEL.gguf" >&2; exit 1; }
[ -x "$B/mica" ] || { echo "compare: $B/mica is not built (make BUILD=$B)" >&2; exit 1; }
for m in "$@"; do [ -f "$m" ] || { echo "compare: no such model: $m" >&2; exit 1; }; done

if [ ! -d bench/node_modules/node-llama-cpp ] || [ ! -d bench/node_modules/@node-llama-cpp/linux-x64 ]; then
    echo "compare: installing node-llama-cpp into bench/node_modules (about 85 MB)" >&2
    (cd bench && npm install --omit=optional --ignore-scripts --no-audit --no-fund >&2)
fi

OUT="$B/bench-compare/t$T"; mkdir -p "$OUT"
margs=(); for m in "$@"; do margs+=(-m "$m"); done
mica_cmd=("$B/mica" bench "${margs[@]}" -p "$P" -n "$N" -r "$R" -d "$D" -t "$T" -o json)
llama_cmd=(node bench/llamacpp_bench.mjs "${margs[@]}" -p "$P" -n "$N" -r "$R" -d "$D" -t "$T")

# MICA_COMMIT overrides the commit line, e.g. when MICA_BUILD is a build of a
# clean `git archive` export rather than of this (possibly dirty) tree.
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
git diff --quiet HEAD 2>/dev/null || commit="$commit (dirty tree)"
commit=${MICA_COMMIT:-$commit}
llama_commit=$(git bundle list-heads bench/node_modules/node-llama-cpp/llama/gitRelease.bundle 2>/dev/null | cut -c1-10 | head -n 1)
echo "## mica vs llama.cpp"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- commit: $commit"
echo "- machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores online, $(free -g | awk '/Mem:/{print $2}') GiB RAM, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- mica binary: $B/mica, built $(date -u -r "$B/mica" '+%Y-%m-%d %H:%M UTC') $([ -n "${MICA_COMMIT:-}" ] || echo "(sources of this tree newer than it: $(find src cli include -newer "$B/mica" -name '*.[ch]' | wc -l))")"
echo "- llama.cpp: $(node -e 'const p=require("./bench/node_modules/node-llama-cpp/package.json"); const r=require("./bench/node_modules/node-llama-cpp/llama/binariesGithubRelease.json"); console.log(`node-llama-cpp ${p.version} prebuilt CPU binaries, llama.cpp release ${r.release}`)'), llama.cpp commit ${llama_commit:-unknown}"
echo "- cache: warm (each test has an untimed warm-up run first, and both engines read the same files)"
echo "- runs: $R timed per test; cells are t/s as mean ± sample sd [median] <best run>"
echo "- mica: \`${mica_cmd[*]}\`"
echo "- llama.cpp: \`${llama_cmd[*]}\`"
echo "  (run one model at a time, mica first, with the same options)"
echo

# Model by model, mica then llama.cpp, so slow drifts of the machine hit both alike.
: >"$OUT/mica.jsonl"; : >"$OUT/llamacpp.jsonl"
for m in "$@"; do
    "$B/mica" bench -m "$m" -p "$P" -n "$N" -r "$R" -d "$D" -t "$T" -o json >>"$OUT/mica.jsonl"
    node bench/llamacpp_bench.mjs -m "$m" -p "$P" -n "$N" -r "$R" -d "$D" -t "$T" >>"$OUT/llamacpp.jsonl"
done
echo "- load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

/usr/bin/python3 - "$OUT/mica.jsonl" "$OUT/llamacpp.jsonl" <<'EOF'
import json, os, statistics, sys

def load(p):
    return {(r["model_filename"], r["test"]): r for r in map(json.loads, filter(str.strip, open(p)))}

mica, llama = load(sys.argv[1]), load(sys.argv[2])

def cell(avg, sd, samples):
    return f"{avg:.2f} ± {sd:.2f} [{statistics.median(samples):.2f}] <{max(samples):.2f}>"

bws = sorted({r["membw_gbps"] for r in mica.values() if r.get("membw_gbps")})
if bws:
    print("memory read bandwidth (mica bench --membw, same threads, measured before each model): "
          + ", ".join(f"{b:.2f}" for b in bws) + " GB/s\n")
print("| model | test | mica t/s | llama.cpp t/s (own timer) | llama.cpp t/s (wall, via node) "
      "| mica / llama.cpp (mean, median, best) | mica GB/s | mica roofline |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for key, m in mica.items():
    l = llama.get(key)
    name = os.path.basename(key[0])
    mc = cell(m["avg_ts"], m["stddev_ts"], m["samples_ts"])
    if l is None:
        print(f"| {name} | {key[1]} | {mc} | (missing) | (missing) | | | |")
        continue
    if l.get("internal_avg_ts"):
        lc_int = cell(l["internal_avg_ts"], l["internal_stddev_ts"], l["internal_samples_ts"])
        ref, ref_s = l["internal_avg_ts"], l["internal_samples_ts"]
    else:
        lc_int, ref, ref_s = "n/a", l["avg_ts"], l["samples_ts"]
    lc_wall = cell(l["avg_ts"], l["stddev_ts"], l["samples_ts"])
    ratio = (f"{m['avg_ts'] / ref:.2f}, {statistics.median(m['samples_ts']) / statistics.median(ref_s):.2f}, "
             f"{max(m['samples_ts']) / max(ref_s):.2f}")
    gbps = f'{m["gbps"]:.2f}' if m.get("gbps") is not None else ""
    roof = f'{100 * m["roofline"]:.0f}%' if m.get("roofline") is not None else ""
    print(f"| {name} | {key[1]} | {mc} | {lc_int} | {lc_wall} | {ratio} | {gbps} | {roof} |")
print()
print("Cells: mean ± sample sd [median] <best run>. The ratios divide mica by llama.cpp's own")
print("timer (llama_perf_context: decode time only, without node-llama-cpp's per-call overhead),")
print("the comparison least favourable to mica; mica's times are wall time around")
print("mica_session_decode calls. mica GB/s and roofline use the mean t/s.")
EOF
