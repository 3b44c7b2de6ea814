"""mimo_ref.py - the numpy reference for Xiaomi MiMo-V2-Flash (GGUF arch
`mimo2`) and its oracle cases.

Written from docs/MODEL_FAMILIES.md, not from mica's C code:
  5.2  per block i: x_n = RMSNorm(x); q = Wq x_n [nh_i, dk], k = Wk x_n
       [nkv_i, dk], v = Wv x_n [nkv_i, dv]; v = value_scale * v; RoPE on dims
       0..n_rot-1 of every q/k head with NEOX pairing (j, j + n_rot/2),
       inv_freq_j = theta_i^(-2j/n_rot), theta_i = freq_base (global) or
       freq_base_swa (sliding); scores = q.k / sqrt(dk); global blocks: causal
       softmax over all past keys; sliding blocks: keys with 0 <= i - j < W;
       o -> Wo; dense SwiGLU where the block has no router, else the MoE:
       s = sigmoid(W_g x), c = s + exp_probs_b, top-k of c, w = s[idx],
       w /= sum(w), w *= scale, sum_i w_i E_i(x). Final RMSNorm, untied head.
  5.6  GGUF keys: head_count / head_count_kv scalar or per-block array,
       sliding_window_pattern per-block array (1 = sliding), key_length,
       value_length, rope.dimension_count, rope.freq_base(_swa),
       attention.sliding_window, attention.value_scale (absent: 0.707, 5.2
       note), nextn_predict_layers (block_count includes the MTP blocks,
       which the main forward pass does not run).
  6    attention sink: per query head one logit s_h appended as an extra
       column of the logit matrix, softmax, column dropped. Which blocks: the
       ones whose file has blk.N.attn_sinks.weight.
The key/value cache here keeps every position (the window is a mask), which
is the independent check of mica's ring buffer.

MimoRefModel reuses model_ref.RefModel's precision contract (float64
activations over the exactly dequantised weights) and its rmsnorm, linear,
embed, output, logits and greedy.
"""

import math

import numpy as np

import gguf_ref
import model_ref

F = model_ref.F

MIMO_PRESET = "tiny-mimo2"
MIMO_REAL_PRESET = "mimo-v2-flash-mini"
MIMO_LOGIT_TYPES = ["F32", "Q8_0", "Q4_0"]
MIMO_GREEDY_TYPES = ["F32", "Q8_0", "Q4_0"]
DEFAULT_VALUE_SCALE = 0.707
# Router near-ties in selection units (sigmoid score + bias): below this gap a
# tiny change of the router input (mica's Q8_0 activations) may swap an expert
# (see moe_ref.py ROUTER_TIE for the measurement behind the quantised bound;
# sigmoid scores move by at most a quarter of the logit change).
ROUTER_TIE = {"F32": 1e-4, "F16": 1e-3, "BF16": 1e-3}
ROUTER_TIE_QUANT = 0.0125


def is_mimo_file(path):
    return gguf_ref.GGUFFile(path).arch() == "mimo2"


class MimoRefModel(model_ref.RefModel):
    def __init__(self, path, cache_limit_bytes=1 << 30):  # noqa: C901 (reads every key)
        self.g = gguf_ref.GGUFFile(path)
        g = self.g
        self.names = set(g.tensors)
        self.arch = g.arch()
        if self.arch != "mimo2":
            raise ValueError("not a mimo2 file: %r" % self.arch)

        def key(k, default=None):
            v = g.get("mimo2." + k, default)
            if v is None:
                raise ValueError("missing key mimo2.%s" % k)
            return v

        self.n_embd = int(key("embedding_length"))
        self.n_block = int(key("block_count"))
        self.n_nextn = int(key("nextn_predict_layers", 0))
        self.n_layer = self.n_block - self.n_nextn      # blocks the forward pass runs

        def per_block(k, default=None):
            v = key(k, default)
            if isinstance(v, (list, tuple, np.ndarray)):
                if len(v) != self.n_block:
                    raise ValueError("mimo2.%s has %d entries, block_count %d" % (k, len(v), self.n_block))
                return [int(x) for x in v]
            return [int(v)] * self.n_block

        self.heads = per_block("attention.head_count")
        self.heads_kv = per_block("attention.head_count_kv", self.heads[0])
        pat = key("attention.sliding_window_pattern")
        if isinstance(pat, (list, tuple, np.ndarray)):
            self.swa = [bool(int(x)) for x in per_block("attention.sliding_window_pattern")]
        else:  # a period P: the last block of every P is global
            P = int(pat)
            self.swa = [P == 0 or i % P < P - 1 for i in range(self.n_block)]
        self.window = int(key("attention.sliding_window", 0))
        self.n_head, self.n_head_kv = self.heads[0], self.heads_kv[0]
        self.n_ff = int(key("feed_forward_length", 0))
        self.head_dim_k = int(key("attention.key_length", self.n_embd // self.heads[0]))
        self.head_dim_v = int(key("attention.value_length", self.head_dim_k))
        self.n_rot = int(key("rope.dimension_count", self.head_dim_k))
        self.eps = float(np.float32(key("attention.layer_norm_rms_epsilon", 1e-5)))
        self.theta = float(np.float32(key("rope.freq_base", 10000.0)))
        self.theta_swa = float(np.float32(key("rope.freq_base_swa", self.theta)))
        self.rope_theta = self.theta
        self.rope_type = model_ref.ROPE_NEOX
        self.value_scale = float(np.float32(key("attention.value_scale", DEFAULT_VALUE_SCALE)))
        self.n_expert = int(key("expert_count"))
        self.n_expert_used = int(key("expert_used_count"))
        self.norm_topk = bool(key("expert_weights_norm", True))
        self.w_scale = float(np.float32(key("expert_weights_scale", 1.0)))
        if int(key("expert_gating_func", 2)) != 2:
            raise ValueError("mimo2 routes with sigmoid (expert_gating_func 2)")
        for i in range(self.n_block):
            if self.heads[i] % self.heads_kv[i]:
                raise ValueError("block %d: heads %d / kv %d" % (i, self.heads[i], self.heads_kv[i]))
        if self.n_rot % 2 or self.n_rot > self.head_dim_k:
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
        self.router_gaps = []

    def describe(self):
        return ("arch=mimo2 n_embd=%d blocks=%d (mtp %d) heads=%s kv=%s swa=%s window=%d dk=%d dv=%d "
                "n_rot=%d theta=%g/%g value_scale=%g experts=%d used=%d" % (
                    self.n_embd, self.n_block, self.n_nextn, self.heads, self.heads_kv,
                    [int(s) for s in self.swa], self.window, self.head_dim_k, self.head_dim_v, self.n_rot,
                    self.theta, self.theta_swa, self.value_scale, self.n_expert, self.n_expert_used))

    # ---------------------------------------------------------------- attention
    def rope_theta_at(self, x, pos, theta):
        """Partial NEOX RoPE: dims 0..n_rot-1 of every head, pairs (j, j + n_rot/2)."""
        d, half = self.n_rot, self.n_rot // 2
        inv = theta ** (-2.0 * np.arange(half, dtype=F) / d)
        ang = pos.astype(F)[:, None] * inv[None, :]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        out = x.copy()
        x0, x1 = x[:, :, 0:half], x[:, :, half:d]
        out[:, :, 0:half] = x0 * cos - x1 * sin
        out[:, :, half:d] = x0 * sin + x1 * cos
        return out

    def new_cache(self):
        return [{"k": np.zeros((self.heads_kv[i], 0, self.head_dim_k), dtype=F),
                 "v": np.zeros((self.heads_kv[i], 0, self.head_dim_v), dtype=F)}
                for i in range(self.n_layer)]

    def attention(self, il, h, pos0, cache):
        n = h.shape[0]
        p = "blk.%d." % il
        nh, nkv, dk, dv = self.heads[il], self.heads_kv[il], self.head_dim_k, self.head_dim_v
        q = self.linear(h, p + "attn_q.weight").reshape(n, nh, dk)
        k = self.linear(h, p + "attn_k.weight").reshape(n, nkv, dk)
        v = self.linear(h, p + "attn_v.weight").reshape(n, nkv, dv) * self.value_scale
        theta = self.theta_swa if self.swa[il] else self.theta
        pos = np.arange(pos0, pos0 + n)
        q = self.rope_theta_at(q, pos, theta)
        k = self.rope_theta_at(k, pos, theta)
        c = cache[il]
        c["k"] = np.concatenate([c["k"], k.transpose(1, 0, 2)], axis=1)
        c["v"] = np.concatenate([c["v"], v.transpose(1, 0, 2)], axis=1)
        K, V = c["k"], c["v"]
        T = K.shape[1]
        qpos = (pos0 + np.arange(n))[:, None]
        kpos = np.arange(T)[None, :]
        mask = kpos > qpos                                   # causal
        if self.swa[il]:
            mask |= kpos <= qpos - self.window               # outside the window: i - j >= W
        sinks = self.w(p + "attn_sinks.weight") if self.has(p + "attn_sinks.weight") else None
        group = nh // nkv
        out = np.empty((n, nh, dv), dtype=F)
        for hh in range(nh):
            s = (q[:, hh, :] @ K[hh // group].T) / math.sqrt(dk)    # (n, T)
            s[mask] = -np.inf
            if sinks is not None:                                  # the sink as one more column
                s = np.concatenate([s, np.full((n, 1), sinks[hh])], axis=1)
            e = np.exp(s - s.max(axis=1, keepdims=True))
            pr = e / e.sum(axis=1, keepdims=True)
            if sinks is not None:
                pr = pr[:, :T]                                     # its probability is dropped
            out[:, hh, :] = pr @ V[hh // group]
        return self.linear(out.reshape(n, nh * dv), p + "attn_output.weight")

    # ---------------------------------------------------------------- FFN
    def expert_linear(self, x, name, e, W=None):
        """x @ W_e^T for slice e of a 3-D expert tensor; W: the tensor already
        dequantised (a model too large for the weight cache dequantises each
        expert tensor once per block call, not once per token and expert)."""
        if self.act_quant:
            t = self.weight_type(name)
            if t in ("Q8_0", "Q4_0"):
                x = model_ref.act_roundtrip_q8_0(x)
            elif t in ("Q4_K", "Q6_K"):
                x = model_ref.act_roundtrip_q8_k(x)
        return x @ (W if W is not None else self.w(name))[e].T

    def ffn(self, il, h):
        p = "blk.%d." % il
        if not self.has(p + "ffn_gate_inp.weight"):
            return super().ffn(il, h)                       # dense SwiGLU
        logits = self.linear(h, p + "ffn_gate_inp.weight")
        bias = self.w(p + "exp_probs_b.bias") if self.has(p + "exp_probs_b.bias") else 0.0
        out = np.zeros_like(h)
        k = self.n_expert_used
        names = [p + "ffn_gate_exps.weight", p + "ffn_up_exps.weight", p + "ffn_down_exps.weight"]
        Wg, Wu, Wd = (self.w(nm) for nm in names)
        for t in range(h.shape[0]):
            s = 1.0 / (1.0 + np.exp(-logits[t]))
            sel = s + bias
            order = np.argsort(-sel, kind="stable")          # ties: the lower id first
            ids = order[:k]
            if k < self.n_expert:
                self.router_gaps.append(float(sel[order[k - 1]] - sel[order[k]]))
            w = s[ids]
            if self.norm_topk:
                w = w / (w.sum() + 1e-20)
            w = w * self.w_scale
            x = h[t:t + 1]
            for e, we in zip(ids, w):
                gate = self.expert_linear(x, names[0], e, Wg)
                up = self.expert_linear(x, names[1], e, Wu)
                out[t] += we * self.expert_linear(gate / (1.0 + np.exp(-gate)) * up, names[2], e, Wd)[0]
        return out

    def logits_with_router_gaps(self, tokens):
        self.router_gaps = []
        lg = self.logits(tokens)
        n = len(tokens)
        if not self.router_gaps:
            return lg, np.full(n, np.inf)
        return lg, np.array(self.router_gaps).reshape(-1, n).min(axis=0)


def case_logits(r, path, typ, tol, n_tf=None, skip_router_ties=True):
    """Teacher-forced logits of mica vs the reference over n_tf positions
    (default oracle_compare.N_TF = 48, six times the tiny preset's window);
    positions with a router near-tie are left out of the rel bound only
    (unless skip_router_ties is False: with 11 MoE blocks of 64 experts
    nearly every position has one, and the bound must hold everywhere)."""
    import oracle_compare as oc
    m = r.ref(path)
    n_tf = n_tf or oc.N_TF
    ids = ([m.bos] if m.bos is not None and m.bos < m.n_vocab else []) + oc.lcg_ids(11, n_tf, 3, m.n_vocab)
    ids = ids[:n_tf]
    mica_lg = r.mica_logits(path, ids, m.n_vocab)
    ref_lg, gaps = m.logits_with_router_gaps(ids)
    untied = gaps > ROUTER_TIE.get(typ, ROUTER_TIE_QUANT) if skip_router_ties else np.ones(len(ids), bool)
    ok, stats, why = r.compare_logits(ref_lg, mica_lg, dict(tol, rel=float("inf")))
    scale = float(np.abs(ref_lg).max())
    rel_u = float(np.abs(ref_lg - mica_lg)[untied].max()) / scale if untied.any() else 0.0
    stats = "rel(no router tie)=%.3g router near-ties %d/%d (min gap %.3g) | %s" % (
        rel_u, int((~untied).sum()), len(ids), float(gaps.min()), stats)
    whys = [why] if why else []
    if not rel_u <= tol["rel"]:
        whys.append("rel %.3g > %.3g" % (rel_u, tol["rel"]))
    return ("ok", stats) if not whys else ("FAIL", "; ".join(whys) + " | " + stats)


def add_cases(r):
    """Registers logits_mimo2_TYPE and greedy_mimo2_TYPE on an
    oracle_compare.Runner (tolerances: oracle_compare.TOL, as the other
    tiny presets)."""
    import oracle_compare as oc

    def model(typ):
        path = r.gen_model(MIMO_PRESET, typ)
        if path not in r.models:
            r.models[path] = MimoRefModel(path)
        return path

    for typ in MIMO_LOGIT_TYPES:
        r.case("logits_mimo2_%s" % typ, lambda typ=typ: case_logits(r, model(typ), typ, oc.TOL[typ]))
    for typ in MIMO_GREEDY_TYPES:
        r.case("greedy_mimo2_%s" % typ, lambda typ=typ: r.case_greedy(model(typ), typ))
    if getattr(r.args, "full", False):
        # the realistic shape (~80 s to generate, ~45 s of reference), 16 positions
        def real():
            path = r.gen_model(MIMO_REAL_PRESET, "Q8_0")
            r.models.setdefault(path, MimoRefModel(path))
            return case_logits(r, path, "Q8_0", oc.REAL_QUANT_TOL, n_tf=16, skip_router_ties=False)
        r.case("real_mimo-v2-flash-mini_Q8_0", real)
