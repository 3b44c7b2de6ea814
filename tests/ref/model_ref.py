"""model_ref.py - independent numpy reference forward pass for GGUF models of
architecture llama, qwen2 and qwen3 (the oracle mica is checked against).

Written from docs/MODEL_FAMILIES.md sections 0-2 (RMSNorm, SwiGLU, pre-norm
blocks, RoPE variants, GQA, qwen3 per-head q/k norm, qwen2 q/k/v biases, tied
output head), not from mica's C code.

Precision: every activation and every accumulation is float64. Weights are
dequantised to float32 exactly as stored (FORMATS.md 2.3; the dequantised
value of a block is exact in float32) and then widened to float64, which is
also exact. The reference is therefore the mathematically exact function of
the stored weights up to ~1e-15 relative error, so any difference measured
against mica is mica's own error (summation order, float32 accumulation,
Q8_0/Q8_K activation quantisation), not shared with the oracle. float64 costs
~1.6x the time of float32 with the netlib BLAS here, which is affordable.

Usage as a module:
    m = RefModel("model.gguf")
    logits = m.logits([1, 2, 3])            # (n_tokens, n_vocab) float64, teacher-forced
    ids, gaps = m.greedy([1, 2, 3], 32)     # greedy with a KV cache
    ids2, _ = m.greedy([1, 2, 3], 32, use_cache=False)  # by recomputation
Command line:
    model_ref.py MODEL.gguf --ids "1 2 3" [-n 16] [--logits-out FILE]
"""

import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_ref  # noqa: E402

ROPE_NORM = "norm"   # adjacent pairs (2j, 2j+1)
ROPE_NEOX = "neox"   # half split (j, j + d_rot/2)

ARCH_ROPE = {"llama": ROPE_NORM, "qwen2": ROPE_NEOX, "qwen3": ROPE_NEOX}

F = np.float64  # activation / accumulation type (see module docstring)


def act_roundtrip_q8_0(x):
    """Simulation only (act_quant mode): activations quantised to Q8_0 and back,
    as FORMATS.md 2.4 describes llama.cpp's reference path (per 32: d = amax/127,
    q = round half away from zero of x/d, scale stored as fp16)."""
    n, k = x.shape
    b = x.astype(np.float32).reshape(n, k // 32, 32)
    amax = np.abs(b).max(axis=2, keepdims=True)
    d = amax / np.float32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    v = b * inv
    q = np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))
    return (q * d.astype(np.float16).astype(np.float32)).reshape(n, k).astype(F)


def act_roundtrip_q8_k(x):
    """Simulation only: activations quantised to Q8_K and back (FORMATS.md 2.4:
    per 256, iscale = -127/max where max is the signed value of largest |x|,
    q = min(127, round half to even), d = 1/iscale as float32)."""
    n, k = x.shape
    b = x.astype(np.float32).reshape(n, k // 256, 256)
    idx = np.abs(b).argmax(axis=2)[:, :, None]
    mx = np.take_along_axis(b, idx, axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        iscale = np.where(mx != 0, np.float32(-127) / mx, np.float32(0)).astype(np.float32)
        q = np.minimum(np.float32(127), np.rint(iscale * b))
        d = np.where(iscale != 0, np.float32(1) / iscale, np.float32(0)).astype(np.float32)
    return (q * d).reshape(n, k).astype(F)


class RefModel:
    act_quant = False  # True: simulate mica/llama.cpp activation quantisation (diagnostics only)

    def __init__(self, path, cache_limit_bytes=1 << 30):
        """cache_limit_bytes: dequantised float64 weights are kept in memory
        only if the whole model's float64 size is below this; otherwise each
        weight is dequantised on each use (slow but bounded memory).
        A path ending in .bin is read as a llama2.c legacy checkpoint instead
        (used to validate this reference against run.c's known output)."""
        if path.endswith(".bin"):
            self._init_llama2c(path)
            return
        self.g = gguf_ref.GGUFFile(path)
        g = self.g
        self.names = set(g.tensors)
        self.arch = g.arch()
        if self.arch not in ARCH_ROPE:
            raise ValueError("unsupported architecture %r" % self.arch)
        a = self.arch

        def key(k, default=None):
            v = g.get("%s.%s" % (a, k), default)
            if v is None:
                raise ValueError("missing key %s.%s" % (a, k))
            return v

        self.n_embd = int(key("embedding_length"))
        self.n_layer = int(key("block_count"))
        self.n_ff = int(key("feed_forward_length"))
        self.n_head = int(key("attention.head_count"))
        n_head_kv = key("attention.head_count_kv", self.n_head)
        if isinstance(n_head_kv, np.ndarray):  # per-layer array; must be uniform here
            if len(set(int(v) for v in n_head_kv)) != 1:
                raise ValueError("per-layer head_count_kv not supported")
            n_head_kv = int(n_head_kv[0])
        self.n_head_kv = int(n_head_kv)
        self.head_dim_k = int(key("attention.key_length", self.n_embd // self.n_head))
        self.head_dim_v = int(key("attention.value_length", self.head_dim_k))
        # eps is stored as float32; use that value exactly
        self.eps = float(np.float32(key("attention.layer_norm_rms_epsilon", 1e-5)))
        self.rope_theta = float(np.float32(key("rope.freq_base", 10000.0)))
        self.n_rot = int(key("rope.dimension_count", self.head_dim_k))
        self.rope_type = ARCH_ROPE[a]
        if self.n_head % self.n_head_kv != 0:
            raise ValueError("n_head %d not a multiple of n_head_kv %d" % (self.n_head, self.n_head_kv))
        if self.n_rot % 2 != 0 or self.n_rot > self.head_dim_k:
            raise ValueError("bad rope dimension %d" % self.n_rot)
        self.n_vocab = g.n_rows("token_embd.weight")
        self.out_name = "output.weight" if "output.weight" in g.tensors else "token_embd.weight"
        self.tied = self.out_name == "token_embd.weight"
        total = sum(t.n_elements for t in g.tensors.values()) * 8
        self._cache = {} if total <= cache_limit_bytes else None
        bos = g.get("tokenizer.ggml.bos_token_id")
        self.bos = int(bos) if bos is not None else None
        eos = g.get("tokenizer.ggml.eos_token_id")
        self.eos = int(eos) if eos is not None else None

    def _init_llama2c(self, path):
        """llama2.c legacy .bin (FORMATS.md 6.1): 7 int32 header, float32 arrays."""
        raw = np.fromfile(path, dtype="<u1")
        dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = (int(v) for v in raw[:28].view("<i4"))
        shared = vocab > 0
        vocab = abs(vocab)
        f = raw[28:].view("<f4").astype(F)
        hs = dim // n_heads
        kv_dim = n_kv * hs
        pos = [0]

        def take(*shape):
            n = int(np.prod(shape))
            a = f[pos[0]:pos[0] + n].reshape(shape)
            pos[0] += n
            return a
        w = {"token_embd.weight": take(vocab, dim)}
        att = take(n_layers, dim)
        wq, wk = take(n_layers, dim, dim), take(n_layers, kv_dim, dim)
        wv, wo = take(n_layers, kv_dim, dim), take(n_layers, dim, dim)
        ffn = take(n_layers, dim)
        w1, w2, w3 = take(n_layers, hidden, dim), take(n_layers, dim, hidden), take(n_layers, hidden, dim)
        w["output_norm.weight"] = take(dim)
        take(seq_len * hs // 2)
        take(seq_len * hs // 2)
        if not shared:
            w["output.weight"] = take(vocab, dim)
        if pos[0] != f.size:
            raise ValueError("llama2.c file size mismatch")
        for il in range(n_layers):
            p = "blk.%d." % il
            w[p + "attn_norm.weight"], w[p + "attn_q.weight"] = att[il], wq[il]
            w[p + "attn_k.weight"], w[p + "attn_v.weight"] = wk[il], wv[il]
            w[p + "attn_output.weight"], w[p + "ffn_norm.weight"] = wo[il], ffn[il]
            w[p + "ffn_gate.weight"], w[p + "ffn_down.weight"], w[p + "ffn_up.weight"] = w1[il], w2[il], w3[il]
        self.g = None
        self.names = set(w)
        self._cache = w
        self.arch = "llama"
        self.n_embd, self.n_layer, self.n_ff = dim, n_layers, hidden
        self.n_head, self.n_head_kv = n_heads, n_kv
        self.head_dim_k = self.head_dim_v = self.n_rot = hs
        self.eps = 1e-5
        self.rope_theta = 10000.0
        self.rope_type = ROPE_NORM
        self.n_vocab = vocab
        self.out_name = "output.weight" if not shared else "token_embd.weight"
        self.tied = shared
        self.bos, self.eos = 1, 2

    # ---------------------------------------------------------------- weights
    def has(self, name):
        return name in self.names

    def w(self, name):
        """Dequantised tensor as float64 (shape reversed(ne))."""
        if self._cache is not None and name in self._cache:
            return self._cache[name]
        t = self.g.tensor(name).astype(F)
        if self._cache is not None:
            self._cache[name] = t
        return t

    def describe(self):
        types = {}
        for t in (self.g.tensors.values() if self.g else []):
            types[t.type_name] = types.get(t.type_name, 0) + 1
        return ("arch=%s n_embd=%d n_layer=%d n_ff=%d n_head=%d n_head_kv=%d head_dim=%d/%d "
                "n_rot=%d rope=%s theta=%g eps=%g vocab=%d tied=%s types=%s" % (
                    self.arch, self.n_embd, self.n_layer, self.n_ff, self.n_head, self.n_head_kv,
                    self.head_dim_k, self.head_dim_v, self.n_rot, self.rope_type, self.rope_theta,
                    self.eps, self.n_vocab, self.tied, types))

    # ---------------------------------------------------------------- blocks
    def rmsnorm(self, x, weight):
        """y = w * x / sqrt(mean(x^2) + eps) over the last axis."""
        ms = np.mean(x * x, axis=-1, keepdims=True)
        return x / np.sqrt(ms + self.eps) * weight

    def rope(self, x, pos):
        """x: (n, heads, head_dim); pos: (n,) absolute positions. Rotates the
        first n_rot dims of every head; the rest pass through."""
        d = self.n_rot
        half = d // 2
        j = np.arange(half, dtype=F)
        inv_freq = self.rope_theta ** (-2.0 * j / d)          # (half,)
        ang = pos.astype(F)[:, None] * inv_freq[None, :]       # (n, half)
        cos = np.cos(ang)[:, None, :]
        sin = np.sin(ang)[:, None, :]
        out = x.copy()
        if self.rope_type == ROPE_NORM:
            x0 = x[:, :, 0:d:2]
            x1 = x[:, :, 1:d:2]
            out[:, :, 0:d:2] = x0 * cos - x1 * sin
            out[:, :, 1:d:2] = x0 * sin + x1 * cos
        else:
            x0 = x[:, :, 0:half]
            x1 = x[:, :, half:d]
            out[:, :, 0:half] = x0 * cos - x1 * sin
            out[:, :, half:d] = x0 * sin + x1 * cos
        return out

    def weight_type(self, name):
        return self.g.tensors[name].type_name if self.g is not None else "F32"

    def linear(self, x, name, bias=None):
        if self.act_quant:
            t = self.weight_type(name)
            if t in ("Q8_0", "Q4_0"):
                x = act_roundtrip_q8_0(x)
            elif t in ("Q4_K", "Q6_K"):
                x = act_roundtrip_q8_k(x)
        y = x @ self.w(name).T
        if bias is not None and self.has(bias):
            y = y + self.w(bias)
        return y

    def embed(self, tokens):
        out = np.empty((len(tokens), self.n_embd), dtype=F)
        for i, t in enumerate(tokens):
            if not 0 <= t < self.n_vocab:
                raise ValueError("token id %d out of range" % t)
            if self._cache is not None:
                out[i] = self.w("token_embd.weight")[t]
            else:
                out[i] = self.g.rows("token_embd.weight", t, t + 1)[0]
        return out

    def new_cache(self):
        return [{"k": np.zeros((self.n_head_kv, 0, self.head_dim_k), dtype=F),
                 "v": np.zeros((self.n_head_kv, 0, self.head_dim_v), dtype=F)}
                for _ in range(self.n_layer)]

    def attention(self, il, h, pos0, cache):
        n = h.shape[0]
        p = "blk.%d." % il
        q = self.linear(h, p + "attn_q.weight", p + "attn_q.bias").reshape(n, self.n_head, self.head_dim_k)
        k = self.linear(h, p + "attn_k.weight", p + "attn_k.bias").reshape(n, self.n_head_kv, self.head_dim_k)
        v = self.linear(h, p + "attn_v.weight", p + "attn_v.bias").reshape(n, self.n_head_kv, self.head_dim_v)
        if self.has(p + "attn_q_norm.weight"):  # qwen3: per-head RMSNorm before RoPE
            q = self.rmsnorm(q, self.w(p + "attn_q_norm.weight"))
        if self.has(p + "attn_k_norm.weight"):
            k = self.rmsnorm(k, self.w(p + "attn_k_norm.weight"))
        pos = np.arange(pos0, pos0 + n)
        q = self.rope(q, pos)
        k = self.rope(k, pos)
        c = cache[il]
        c["k"] = np.concatenate([c["k"], k.transpose(1, 0, 2)], axis=1)
        c["v"] = np.concatenate([c["v"], v.transpose(1, 0, 2)], axis=1)
        K, V = c["k"], c["v"]                       # (n_head_kv, T, d)
        T = K.shape[1]
        group = self.n_head // self.n_head_kv
        scale = 1.0 / math.sqrt(self.head_dim_k)
        # causal mask: query i (absolute pos0+i) sees keys j <= pos0+i
        mask = np.arange(T)[None, :] > (pos0 + np.arange(n))[:, None]   # (n, T)
        out = np.empty((n, self.n_head, self.head_dim_v), dtype=F)
        for hh in range(self.n_head):
            kvh = hh // group
            s = (q[:, hh, :] @ K[kvh].T) * scale       # (n, T)
            s[mask] = -np.inf
            s = s - s.max(axis=1, keepdims=True)
            e = np.exp(s)
            pr = e / e.sum(axis=1, keepdims=True)
            out[:, hh, :] = pr @ V[kvh]
        o = out.reshape(n, self.n_head * self.head_dim_v)
        return self.linear(o, p + "attn_output.weight", p + "attn_output.bias")

    def ffn(self, il, h):
        p = "blk.%d." % il
        gate = self.linear(h, p + "ffn_gate.weight")
        up = self.linear(h, p + "ffn_up.weight")
        act = gate / (1.0 + np.exp(-gate)) * up     # silu(gate) * up
        return self.linear(act, p + "ffn_down.weight")

    def output(self, x):
        """Final norm and output head; the head is processed in row chunks so
        that a 150k-vocab quantised head is never dequantised whole."""
        h = self.rmsnorm(x, self.w("output_norm.weight"))
        n = h.shape[0]
        logits = np.empty((n, self.n_vocab), dtype=F)
        if self._cache is not None:
            return h @ self.w(self.out_name).T
        chunk = 16384
        for r0 in range(0, self.n_vocab, chunk):
            r1 = min(self.n_vocab, r0 + chunk)
            wc = self.g.rows(self.out_name, r0, r1).astype(F)
            logits[:, r0:r1] = h @ wc.T
        return logits

    # ---------------------------------------------------------------- forward
    def forward(self, tokens, pos0=0, cache=None):
        """Runs `tokens` at positions pos0.. with `cache` (which must hold
        exactly pos0 earlier positions, or be None for pos0 = 0). Returns
        (logits (n, n_vocab) float64, cache)."""
        if cache is None:
            if pos0 != 0:
                raise ValueError("pos0 > 0 needs a cache")
            cache = self.new_cache()
        x = self.embed(tokens)
        for il in range(self.n_layer):
            p = "blk.%d." % il
            x = x + self.attention(il, self.rmsnorm(x, self.w(p + "attn_norm.weight")), pos0, cache)
            x = x + self.ffn(il, self.rmsnorm(x, self.w(p + "ffn_norm.weight")))
        return self.output(x), cache

    def logits(self, tokens):
        """Teacher-forced logits for every position: (len(tokens), n_vocab)."""
        return self.forward(list(tokens))[0]

    def greedy(self, prompt, n_gen, use_cache=True, stop_ids=(), abort_below=None):
        """Greedy decoding. Returns (ids, gaps): the generated ids (not the
        prompt) and for each step the gap between the top-1 and top-2 logit
        (np.argmax picks the lowest id on an exact tie). Stops early after
        emitting an id in stop_ids (that id is included), or as soon as a gap
        is below abort_below (used to search for prompts without near-ties)."""
        prompt = list(prompt)
        ids, gaps = [], []
        if use_cache:
            lg, cache = self.forward(prompt)
            last = lg[-1]
            pos = len(prompt)
        seq = list(prompt)
        for step in range(n_gen):
            if not use_cache:
                last = self.forward(seq)[0][-1]
            t = int(np.argmax(last))
            top2 = np.partition(last, -2)[-2:]
            gaps.append(float(top2[1] - top2[0]))
            ids.append(t)
            seq.append(t)
            if t in stop_ids or (abort_below is not None and gaps[-1] < abort_below):
                break
            if use_cache and step + 1 < n_gen:
                lg, cache = self.forward([t], pos, cache)
                last = lg[-1]
                pos += 1
        return ids, gaps


def _main(argv):
    import argparse
    ap = argparse.ArgumentParser(description="numpy reference forward pass")
    ap.add_argument("model")
    ap.add_argument("--ids", required=True, help="space-separated prompt token ids")
    ap.add_argument("-n", type=int, default=0, help="greedy tokens to generate")
    ap.add_argument("--logits-out", help="write teacher-forced logits as float32 LE")
    args = ap.parse_args(argv[1:])
    m = RefModel(args.model)
    print(m.describe())
    ids = [int(t) for t in args.ids.split()]
    lg = m.logits(ids)
    top = np.argmax(lg, axis=1)
    print("teacher-forced argmax:", " ".join(str(int(t)) for t in top))
    if args.logits_out:
        lg.astype("<f4").tofile(args.logits_out)
    if args.n > 0:
        gen, gaps = m.greedy(ids, args.n)
        print("greedy:", " ".join(str(t) for t in gen))
        print("min top1-top2 gap: %.3g" % min(gaps))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
