#!/usr/bin/env bash
# `mica info` prints the parameter counts every generator preset was built
# with. For EVERY preset of `mica-gen --list` (the full-size ones included:
# qwen3-30b-a3b, olmoe-1b-7b, deepseek-v2-lite, mimo-v2-flash-mini) the file
# is written with `mica-gen --sparse` (tensor data left as a file hole: the
# real layout in milliseconds and no disk) and the total / active parameter
# counts and the expert line of `mica info` are compared with counts
# computed here, in Python, from each preset's published shape (the table
# below, written from the model cards and MODEL_FAMILIES.md / FORMATS.md
# tensor lists - not from mica's code):
#   total  = every tensor's elements (a tied output reuses token_embd)
#   active = total - the (n_expert - n_used) routed experts a token skips in
#            each MoE layer - the MTP blocks (mimo2: loaded, not run)
# and the weight bytes read per token against the file's own tensor table
# (read with tests/ref/gguf_ref.py): every tensor, the untied embedding's
# one row, k/n_expert of each routed-expert tensor, no MTP block.
# The real models' published totals are checked too, to 1% + 0.05B:
# Qwen3-30B-A3B 30.5B / 3.3B active, OLMoE-1B-7B 6.9B / 1.3B,
# DeepSeek-V2-Lite 15.7B / 2.4B (DeepSeek's active count leaves out the
# 0.21B token embedding, which a token only gathers one row of; mica counts
# it), Qwen3-0.6B 0.6B, TinyLlama-1.1B 1.1B.
#   MICA_BUILD     build directory (default build)
set -u
cd "$(dirname "$0")/../.."
B=${MICA_BUILD:-build}
PY=/usr/bin/python3
T="$B/test-tmp/info-params"; mkdir -p "$T"
for x in "$B/mica" "$B/mica-gen" "$PY"; do
    if [ ! -x "$x" ]; then
        echo "FAIL missing $x"; echo "info-params: 0 passed, 1 failed"; exit 1
    fi
done

"$B/mica-gen" --list | awk '{print $1}' >"$T/presets"
fail_gen=0
while read -r p; do
    if ! "$B/mica-gen" --preset "$p" --type Q8_0 --sparse -o "$T/$p.gguf" 2>"$T/$p.err" ||
       ! "$B/mica" info "$T/$p.gguf" >"$T/$p.info" 2>>"$T/$p.err"; then
        echo "FAIL $p: $(head -n 2 "$T/$p.err")"; fail_gen=$((fail_gen + 1))
    fi
done <"$T/presets"

"$PY" - "$T" "$fail_gen" <<'EOF'
import os, re, sys
T, fail_gen = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, os.path.join(os.getcwd(), "tests", "ref"))
from gguf_ref import GGUFFile          # an independent GGUF reader (tests/ref)

def bytes_per_token(path, s):
    """Weight bytes a generated token reads, from the file's tensor table:
    every tensor in full, the token embedding one row when an output matrix
    exists, k of the n_expert slices of each routed-expert tensor, nothing
    of an MTP block (mimo2)."""
    g = GGUFFile(path)
    t = g.tensors
    untied = "output.weight" in t
    b = 0
    for name, ti in t.items():
        m = re.match(r"blk\.(\d+)\.", name)
        if s["kind"] == "mimo" and m and int(m.group(1)) >= s["L"]: continue
        if name == "token_embd.weight" and untied: b += ti.nbytes // ti.ne[1]
        elif "_exps." in name: b += ti.nbytes // ti.ne[2] * s["k"]
        else: b += ti.nbytes
    g.close()
    return b

# Published shapes. V vocab, E width, L blocks, nh/nkv heads, hd head size,
# F dense FFN width, X experts (k used, Fx wide), qkn q/k norm ('head' or
# 'full'), bias q/k/v biases, tied output = token_embd.
P = {
 "tiny-llama":     dict(kind="dense", V=640, E=256, L=2, nh=4, nkv=2, hd=64, F=512),
 "tiny-qwen2":     dict(kind="dense", V=640, E=256, L=2, nh=4, nkv=2, hd=64, F=384, bias=True),
 "tiny-qwen3":     dict(kind="dense", V=640, E=256, L=2, nh=8, nkv=2, hd=64, F=768, qkn="head", tied=True),
 "qwen3-0.6b":     dict(kind="dense", V=151936, E=1024, L=28, nh=16, nkv=8, hd=128, F=3072, qkn="head", tied=True,
                        published=(0.6e9, None)),
 "tinyllama-1.1b": dict(kind="dense", V=32000, E=2048, L=22, nh=32, nkv=4, hd=64, F=5632, published=(1.1e9, None)),
 "tiny-qwen3moe":  dict(kind="moe", V=640, E=256, L=2, nh=8, nkv=2, hd=64, qkn="head", X=8, k=4, Fx=256),
 "tiny-olmoe":     dict(kind="moe", V=640, E=256, L=2, nh=4, nkv=4, hd=64, qkn="full", X=8, k=4, Fx=256),
 "tiny-mixtral":   dict(kind="moe", V=640, E=256, L=2, nh=4, nkv=2, hd=64, X=8, k=2, Fx=512),
 "qwen3-30b-a3b":  dict(kind="moe", V=151936, E=2048, L=48, nh=32, nkv=4, hd=128, qkn="head", X=128, k=8, Fx=768,
                        published=(30.5e9, 3.3e9)),
 "qwen3-30b-a3b-half": dict(kind="moe", V=151936, E=2048, L=24, nh=32, nkv=4, hd=128, qkn="head", X=128, k=8, Fx=768),
 "olmoe-1b-7b":    dict(kind="moe", V=50304, E=2048, L=16, nh=16, nkv=16, hd=128, qkn="full", X=64, k=8, Fx=1024,
                        published=(6.9e9, 1.3e9)),
 # MLA: q_lora (0: plain attn_q), kv_lora, nope + rope q/k dims, v dims,
 # dense leading blocks of width F, shared experts of Fx each, exp_probs_b
 "tiny-deepseek2": dict(kind="mla", V=640, E=256, L=2, nh=4, q_lora=0, kv_lora=128, nope=64, rope=32, v=64,
                        legacy=True, dense=1, F=512, X=8, k=2, Fx=256, shared=2, probs_b=False),
 "tiny-deepseek3": dict(kind="mla", V=640, E=256, L=3, nh=4, q_lora=128, kv_lora=128, nope=64, rope=32, v=64,
                        legacy=False, dense=1, F=512, X=16, k=4, Fx=256, shared=1, probs_b=True),
 "deepseek-v2-lite": dict(kind="mla", V=102400, E=2048, L=27, nh=16, q_lora=0, kv_lora=512, nope=128, rope=64,
                        v=128, legacy=False, dense=1, F=10944, X=64, k=6, Fx=1408, shared=2, probs_b=False,
                        published=(15.7e9, 2.4e9), published_active_sans_embd=True),
 # MiMo-V2-Flash: L main blocks + mtp MTP blocks; global blocks listed, the
 # rest (and MTP blocks) slide with sinks; block 0 and MTP blocks dense
 "tiny-mimo2":     dict(kind="mimo", V=640, E=256, L=4, mtp=1, nh=4, nkv_g=1, nkv_s=2, hk=96, hv=64,
                        glob={0}, F=512, X=8, k=4, Fx=128),
 "mimo-v2-flash-mini": dict(kind="mimo", V=152576, E=1024, L=12, mtp=1, nh=16, nkv_g=4, nkv_s=8, hk=192, hv=128,
                        glob={0, 5, 11}, F=4096, X=64, k=8, Fx=512),
}

def attn_std(s):
    E, nh, nkv, hd = s["E"], s["nh"], s["nkv"], s["hd"]
    n = E + E * nh * hd + 2 * E * nkv * hd + nh * hd * E        # norm, q, k, v, o
    if s.get("bias"): n += nh * hd + 2 * nkv * hd
    if s.get("qkn") == "head": n += 2 * hd
    if s.get("qkn") == "full": n += nh * hd + nkv * hd
    return n

def count(s):
    """(total, active, n_moe_layers) of a preset."""
    E, V, L = s["E"], s["V"], s["L"]
    total = V * E + E + (0 if s.get("tied") else V * E)      # embedding, output norm, output
    skip = 0; n_moe = 0
    kind = s["kind"]
    if kind in ("dense", "moe"):
        for _ in range(L):
            total += attn_std(s) + E                          # + ffn_norm
            if kind == "dense":
                total += 3 * E * s["F"]
            else:
                total += E * s["X"] + 3 * E * s["Fx"] * s["X"]
                skip += 3 * E * s["Fx"] * (s["X"] - s["k"]); n_moe += 1
    elif kind == "mla":
        nh, R, nope, rope, v = s["nh"], s["kv_lora"], s["nope"], s["rope"], s["v"]
        for l in range(L):
            n = E                                              # attn_norm
            if s["q_lora"]: n += E * s["q_lora"] + s["q_lora"] + s["q_lora"] * nh * (nope + rope)
            else: n += E * nh * (nope + rope)
            n += E * (R + rope) + R                            # kv_a_mqa, kv_a_norm
            n += R * nh * (nope + v)                           # kv_b, or k_b + v_b: the same elements
            n += nh * v * E + E                                # attn_output, ffn_norm
            if l < s["dense"]:
                n += 3 * E * s["F"]
            else:
                n += E * s["X"] + (s["X"] if s["probs_b"] else 0) + 3 * E * s["Fx"] * s["X"]
                n += 3 * E * s["Fx"] * s["shared"]
                skip += 3 * E * s["Fx"] * (s["X"] - s["k"]); n_moe += 1
            total += n
    elif kind == "mimo":
        nh, hk, hv = s["nh"], s["hk"], s["hv"]
        for l in range(L + s["mtp"]):
            mtp = l >= L
            swa = mtp or l not in s["glob"]
            nkv = s["nkv_s"] if swa else s["nkv_g"]
            n = E + E * nh * hk + E * nkv * hk + E * nkv * hv + nh * hv * E + E   # norms, q, k, v, o
            if swa: n += nh                                    # attention sinks
            if l == 0 or mtp:
                n += 3 * E * s["F"]
            else:
                n += E * s["X"] + s["X"] + 3 * E * s["Fx"] * s["X"]   # router, exp_probs_b, experts
                skip += 3 * E * s["Fx"] * (s["X"] - s["k"]); n_moe += 1
            if mtp:
                n += 2 * E * E + 3 * E                         # eh_proj, enorm, hnorm, layer_output_norm
                skip += n                                      # not run per token
            total += n
    return total, total - skip, n_moe

passed = failed = 0
def ok(m):
    global passed; passed += 1; print("ok   " + m)
def bad(m):
    global failed; failed += 1; print("FAIL " + m)

presets = open(T + "/presets").read().split()
for p in presets:
    if p not in P:
        bad("%s: no published shape in this test (add it)" % p); continue
    try: info = open("%s/%s.info" % (T, p)).read()
    except OSError: continue                                   # its generation failed (counted above)
    s = P[p]
    total, active, n_moe = count(s)
    m = re.search(r"^parameters:\s+(\d+)", info, re.M)
    a = re.search(r"^active params:\s+(\d+)", info, re.M)
    x = re.search(r"^experts:\s+(\d+) per layer, (\d+) used per token, (\d+) MoE layers", info, re.M)
    bpt = re.search(r"^bytes per token:.*\((\d+) bytes", info, re.M)
    got_t = int(m.group(1)) if m else None
    got_a = int(a.group(1)) if a else (got_t if "X" not in s else None)
    why = []
    if got_t != total: why.append("total %s, expected %d" % (got_t, total))
    if got_a != active: why.append("active %s, expected %d" % (got_a, active))
    if "X" in s and (not x or (int(x.group(1)), int(x.group(2)), int(x.group(3))) != (s["X"], s["k"], n_moe)):
        why.append("experts line %r, expected %d/%d/%d" % (x.group(0) if x else None, s["X"], s["k"], n_moe))
    want_b = bytes_per_token("%s/%s.gguf" % (T, p), s)
    if not bpt or int(bpt.group(1)) != want_b: why.append("bytes per token %s, expected %d" % (bpt.group(1) if bpt else None, want_b))
    pub = s.get("published")
    if pub:
        if abs(total - pub[0]) > 0.01 * pub[0] + 0.05e9: why.append("total %.3gB far from the published %.3gB" % (total / 1e9, pub[0] / 1e9))
        act = active - (s["V"] * s["E"] if s.get("published_active_sans_embd") else 0)
        if pub[1] and abs(act - pub[1]) > 0.01 * pub[1] + 0.05e9:
            why.append("active %.3gB far from the published %.3gB" % (act / 1e9, pub[1] / 1e9))
    if why: bad("%s: %s" % (p, "; ".join(why)))
    else: ok("%-20s total %d (%.3fB), active %d (%.3fB), %d bytes/token" % (p, total, total / 1e9, active, active / 1e9, want_b))
for p in P:
    if p not in presets: bad("%s: not a preset of mica-gen --list any more" % p)
for p in presets:
    try: os.unlink("%s/%s.gguf" % (T, p))
    except OSError: pass
print("info-params: %d passed, %d failed" % (passed, failed + fail_gen))
sys.exit(1 if failed + fail_gen else 0)
EOF
