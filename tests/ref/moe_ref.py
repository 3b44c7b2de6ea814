"""moe_ref.py - the numpy reference for the mixture-of-experts architectures
(qwen3moe, olmoe, and llama with experts = Mixtral), and their oracle cases.

Written from docs/MODEL_FAMILIES.md, not from mica's C code:
  0.6  GGUF MoE tensors: ffn_gate_inp {H, E} (router), ffn_{gate,up}_exps
       {H, Ie, E}, ffn_down_exps {Ie, H, E} (expert e = slice e), router bias
       exp_probs_b.bias {E}; {arch}.expert_gating_func 1 softmax, 2 sigmoid;
       expert_count, expert_used_count, expert_feed_forward_length,
       expert_weights_norm, expert_weights_scale.
  2.2  qwen3moe: per-head q/k RMSNorm (as qwen3), NEOX RoPE; router softmax
       in fp32 over E, top-k, renormalised (norm_topk_prob true),
       y = sum p_i Expert_i(x).
  3.1  olmoe: q/k RMSNorm over the whole projection before the head split
       (weights [n_head*d] and [n_head_kv*d]), NEOX RoPE; softmax top-k with
       no renormalisation.
  3.2  Mixtral = arch llama with llama.expert_count > 0: NORM RoPE (GGUF q/k
       are un-permuted), softmax top-2 renormalised.
Every expert is the SwiGLU FFN of 0.2. Selection is by score + bias (the
bias, when present, never weights); ties go to the lower expert id.

MoERefModel extends model_ref.RefModel (same float64 precision contract):
only the FFN (and, for olmoe, the q/k norm) differ.

add_cases(runner) registers the oracle cases for the tiny MoE presets with
oracle_compare.Runner, in the same style as the dense ones: teacher-forced
logits (logits_moe_ARCH_TYPE) and greedy ids with near-tie handling
(greedy_moe_ARCH_TYPE), for F32, Q8_0 and Q4_0.
"""

import math

import numpy as np

import model_ref

F = model_ref.F

# architecture -> (RoPE pairing, default renormalisation of the top-k weights)
MOE_ARCH = {
    "qwen3moe": (model_ref.ROPE_NEOX, True),
    "olmoe": (model_ref.ROPE_NEOX, False),
    "llama": (model_ref.ROPE_NORM, True),
}
GATING_SOFTMAX, GATING_SIGMOID = 1, 2

# The tiny presets of src/convert/gen.c (hidden 256, 2 layers, 8 experts).
MOE_PRESETS = {"qwen3moe": "tiny-qwen3moe", "olmoe": "tiny-olmoe", "mixtral": "tiny-mixtral"}
MOE_LOGIT_TYPES = ["F32", "Q8_0", "Q4_0"]
MOE_GREEDY_TYPES = ["F32", "Q8_0", "Q4_0"]

# Router near-ties. When the k-th and (k+1)-th experts of a token are almost
# equal, a tiny difference in the router input (mica quantises activations to
# Q8_0/Q8_K, FORMATS 2.4) swaps one expert for the other, and that token's
# output jumps by a whole expert's share: a discontinuity no logit tolerance
# can absorb. Measured: tiny-olmoe Q4_0 had a layer-1 router gap of 4e-4 in
# logit units at one position; mica chose the other expert there, which gave
# rel 0.034 at that position (0.006 everywhere else, and 0.006 against a
# reference that simulates the activation quantisation). So positions where
# any layer's gap (in router-logit units, log p_k - log p_k+1 for softmax
# without bias) is below ROUTER_TIE are left out of the rel bound; top-1 and
# KL still cover every position. A Q8_0 activation error moves a router logit
# by about 0.007 (std: 256 inputs of rms 1, step amax/127, weights of
# variance 1/256), so 0.05 is about 7 of those; float weights only differ in
# float32 summation (~1e-6).
ROUTER_TIE = {"F32": 1e-4, "F16": 1e-3, "BF16": 1e-3}
ROUTER_TIE_QUANT = 0.05


def is_moe_file(g):
    """True if the GGUF file (gguf_ref.GGUFFile) has routed experts."""
    a = g.arch()
    return a in MOE_ARCH and int(g.get("%s.expert_count" % a, 0) or 0) > 0


def open_model(path):
    """The reference model for `path`: MoERefModel for a file with experts,
    model_ref.RefModel otherwise."""
    if not path.endswith(".bin"):
        import gguf_ref
        if is_moe_file(gguf_ref.GGUFFile(path)):
            return MoERefModel(path)
    return model_ref.RefModel(path)


class MoERefModel(model_ref.RefModel):
    def __init__(self, path, cache_limit_bytes=1 << 30):
        import gguf_ref
        g = gguf_ref.GGUFFile(path)
        arch = g.arch()
        if arch not in MOE_ARCH:
            raise ValueError("not an MoE architecture: %r" % arch)
        # RefModel knows llama; the MoE archs share its hyperparameter keys
        model_ref.ARCH_ROPE.setdefault(arch, MOE_ARCH[arch][0])
        super().__init__(path, cache_limit_bytes)
        a = self.arch

        def key(k, default=None):
            v = g.get("%s.%s" % (a, k), default)
            if v is None:
                raise ValueError("missing key %s.%s" % (a, k))
            return v

        self.n_expert = int(key("expert_count"))
        self.n_expert_used = int(key("expert_used_count"))
        self.n_ff_exp = int(key("expert_feed_forward_length", self.n_ff))
        self.gating = int(key("expert_gating_func", GATING_SOFTMAX))
        self.norm_topk = bool(key("expert_weights_norm", MOE_ARCH[a][1]))
        self.w_scale = float(np.float32(key("expert_weights_scale", 1.0)))
        if not 1 <= self.n_expert_used <= self.n_expert:
            raise ValueError("expert_used_count %d vs expert_count %d" % (self.n_expert_used, self.n_expert))
        if self.gating not in (GATING_SOFTMAX, GATING_SIGMOID):
            raise ValueError("unknown gating function %d" % self.gating)
        self.router_gaps = []  # appended by route(): one per (layer, token) routed

    def logits_with_router_gaps(self, tokens):
        """Teacher-forced logits and, per position, the smallest router
        selection margin over the layers (+inf when k == n_expert)."""
        self.router_gaps = []
        lg = self.logits(tokens)
        n = len(tokens)
        if not self.router_gaps:
            return lg, np.full(n, np.inf)
        g = np.array(self.router_gaps).reshape(-1, n)   # (layers with experts, n)
        return lg, g.min(axis=0)

    def describe(self):
        return super().describe() + " experts=%d used=%d ff_exp=%d gating=%d norm=%s scale=%g" % (
            self.n_expert, self.n_expert_used, self.n_ff_exp, self.gating, self.norm_topk, self.w_scale)

    # ---------------------------------------------------------------- attention
    def attention(self, il, h, pos0, cache):
        """As RefModel.attention, except that a q/k norm weight spanning the
        whole projection (olmoe, MODEL_FAMILIES 3.1) is applied to the whole
        q (k) vector before it is split into heads."""
        p = "blk.%d." % il
        qn = p + "attn_q_norm.weight"
        if not self.has(qn) or self.w(qn).shape[0] == self.head_dim_k:
            return super().attention(il, h, pos0, cache)
        n = h.shape[0]
        q = self.rmsnorm(self.linear(h, p + "attn_q.weight"), self.w(qn))
        k = self.rmsnorm(self.linear(h, p + "attn_k.weight"), self.w(p + "attn_k_norm.weight"))
        v = self.linear(h, p + "attn_v.weight")
        q = self.rope(q.reshape(n, self.n_head, self.head_dim_k), np.arange(pos0, pos0 + n))
        k = self.rope(k.reshape(n, self.n_head_kv, self.head_dim_k), np.arange(pos0, pos0 + n))
        v = v.reshape(n, self.n_head_kv, self.head_dim_v)
        c = cache[il]
        c["k"] = np.concatenate([c["k"], k.transpose(1, 0, 2)], axis=1)
        c["v"] = np.concatenate([c["v"], v.transpose(1, 0, 2)], axis=1)
        K, V = c["k"], c["v"]
        T = K.shape[1]
        group = self.n_head // self.n_head_kv
        scale = 1.0 / math.sqrt(self.head_dim_k)
        mask = np.arange(T)[None, :] > (pos0 + np.arange(n))[:, None]
        out = np.empty((n, self.n_head, self.head_dim_v), dtype=F)
        for hh in range(self.n_head):
            s = (q[:, hh, :] @ K[hh // group].T) * scale
            s[mask] = -np.inf
            e = np.exp(s - s.max(axis=1, keepdims=True))
            out[:, hh, :] = (e / e.sum(axis=1, keepdims=True)) @ V[hh // group]
        return self.linear(out.reshape(n, self.n_head * self.head_dim_v), p + "attn_output.weight")

    # ---------------------------------------------------------------- experts
    def route(self, logits, bias=None):
        """One token: router logits (E,) -> (ids, weights) of the k chosen
        experts, ids by decreasing score + bias, ties to the lower id."""
        if self.gating == GATING_SIGMOID:
            score = 1.0 / (1.0 + np.exp(-logits))
        else:
            e = np.exp(logits - logits.max())
            score = e / e.sum()
        sel = score + bias if bias is not None else score
        order = np.argsort(-sel, kind="stable")
        ids = order[:self.n_expert_used]
        if self.n_expert_used < self.n_expert:  # the selection's margin, for near-tie detection
            a, b = order[self.n_expert_used - 1], order[self.n_expert_used]
            if self.gating == GATING_SOFTMAX and bias is None:
                gap = float(logits[a] - logits[b])
            else:
                gap = float(sel[a] - sel[b])
            self.router_gaps.append(gap)
        w = score[ids]
        if self.norm_topk:
            w = w / w.sum()
        return ids, w * self.w_scale

    def expert_linear(self, x, name, e, We=None):
        """x @ W_e^T for slice e of a 3-D expert tensor (with the optional
        activation-quantisation simulation of RefModel.linear); We: that slice
        already dequantised."""
        if self.act_quant:
            t = self.weight_type(name)
            if t in ("Q8_0", "Q4_0"):
                x = model_ref.act_roundtrip_q8_0(x)
            elif t in ("Q4_K", "Q6_K"):
                x = model_ref.act_roundtrip_q8_k(x)
        return x @ (We if We is not None else self.w(name)[e]).T

    def ffn(self, il, h):
        p = "blk.%d." % il
        if not self.has(p + "ffn_gate_inp.weight"):
            return super().ffn(il, h)
        logits = self.linear(h, p + "ffn_gate_inp.weight")          # (n, E)
        bias = self.w(p + "exp_probs_b.bias") if self.has(p + "exp_probs_b.bias") else None
        out = np.zeros_like(h)
        if self._cache is None:          # too big to cache: dequantise one expert at a time
            return self.ffn_lazy(p, h, logits, bias, out)
        for t in range(h.shape[0]):
            ids, w = self.route(logits[t], bias)
            x = h[t:t + 1]
            for e, we in zip(ids, w):
                gate = self.expert_linear(x, p + "ffn_gate_exps.weight", e)
                up = self.expert_linear(x, p + "ffn_up_exps.weight", e)
                act = gate / (1.0 + np.exp(-gate)) * up
                out[t] += we * self.expert_linear(act, p + "ffn_down_exps.weight", e)[0]
        return out

    def expert_slice(self, name, e):
        """Slice e of a 3-D expert tensor, dequantised on its own (float64)."""
        ne1 = self.g.tensors[name].ne[1]
        return self.g.rows(name, e * ne1, (e + 1) * ne1).astype(F)

    def ffn_lazy(self, p, h, logits, bias, out):
        """The same layer for a model whose weights are not cached (a
        realistic shape, tests/llamacpp/realistic.py): every token is routed
        first, then each chosen expert's three slices are dequantised once and
        applied to the rows of the tokens that chose it. Only the order of
        the float64 sums differs from ffn's token-by-token loop."""
        users = {}
        for t in range(h.shape[0]):
            ids, w = self.route(logits[t], bias)
            for e, we in zip(ids, w):
                users.setdefault(int(e), []).append((t, we))
        names = [p + "ffn_gate_exps.weight", p + "ffn_up_exps.weight", p + "ffn_down_exps.weight"]
        for e in sorted(users):
            rows = [t for t, _ in users[e]]
            x = h[rows]
            gate = self.expert_linear(x, names[0], e, self.expert_slice(names[0], e))
            up = self.expert_linear(x, names[1], e, self.expert_slice(names[1], e))
            y = self.expert_linear(gate / (1.0 + np.exp(-gate)) * up, names[2], e, self.expert_slice(names[2], e))
            for k, (t, we) in enumerate(users[e]):
                out[t] += we * y[k]
        return out


def case_logits(r, path, typ, tol):
    """Teacher-forced logits of mica vs the reference, as Runner.case_logits,
    except that the rel bound skips positions with a router near-tie (see
    ROUTER_TIE); top-1 and KL are judged on every position."""
    import oracle_compare as oc
    m = r.ref(path)
    ids = ([m.bos] if m.bos is not None and m.bos < m.n_vocab else []) + oc.lcg_ids(11, oc.N_TF, 3, m.n_vocab)
    ids = ids[:oc.N_TF]
    mica_lg = r.mica_logits(path, ids, m.n_vocab)
    ref_lg, gaps = m.logits_with_router_gaps(ids)
    untied = gaps > ROUTER_TIE.get(typ, ROUTER_TIE_QUANT)
    loose = dict(tol, rel=float("inf"))
    ok, stats, why = r.compare_logits(ref_lg, mica_lg, loose)
    scale = float(np.abs(ref_lg).max())
    rel_u = float(np.abs(ref_lg - mica_lg)[untied].max()) / scale if untied.any() else 0.0
    stats = "rel(no router tie)=%.3g router near-ties %d/%d (min gap %.3g) | %s" % (
        rel_u, int((~untied).sum()), len(ids), float(gaps.min()), stats)
    whys = [why] if why else []
    if not rel_u <= tol["rel"]:
        whys.append("rel %.3g > %.3g" % (rel_u, tol["rel"]))
    return ("ok", stats) if not whys else ("FAIL", "; ".join(whys) + " | " + stats)


def add_cases(r):
    """Registers the MoE oracle cases on an oracle_compare.Runner `r`
    (tolerances: the dense tiny presets' per-type TOL)."""
    import oracle_compare as oc
    for arch, preset in MOE_PRESETS.items():
        for typ in MOE_LOGIT_TYPES:
            def lcase(preset=preset, typ=typ):
                return case_logits(r, r.gen_model(preset, typ), typ, oc.TOL[typ])
            r.case("logits_moe_%s_%s" % (arch, typ), lcase)
        for typ in MOE_GREEDY_TYPES:
            def gcase(preset=preset, typ=typ):
                return r.case_greedy(r.gen_model(preset, typ), typ)
            r.case("greedy_moe_%s_%s" % (arch, typ), gcase)
