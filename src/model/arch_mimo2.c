/*
 * arch_mimo2.c - Xiaomi MiMo-V2-Flash, GGUF architecture `mimo2`
 * (MODEL_FAMILIES.md 5, 6; FORMATS.md 4.2, 4.6). Layer: model.
 *
 * Per block i (pre-norm, 0.3):
 *   h   = RMSNorm(x)
 *   q   = Wq h [n_head_i, dk];  k = Wk h [n_head_kv_i, dk];  v = Wv h [n_head_kv_i, dv]
 *   RoPE (NEOX pairing) on the first n_rot dims of every q/k head, base
 *        rope.freq_base on global layers, rope.freq_base_swa on sliding ones
 *   o   = softmax(q k / sqrt(dk)) v over the causal keys, or on a sliding
 *         layer over the last `window` positions only; with the block's
 *         per-head sink logit in the denominator when it has attn_sinks (6)
 *   x  += Wo (value_scale * o)          (value_scale on v == on o: linear)
 *   x  += FFN(RMSNorm(x)): dense SwiGLU where ffn_gate_inp is absent (block
 *         0 in the real model), else the MoE layer (moe.c) with sigmoid
 *         scores, exp_probs_b selection bias, top-k renormalised
 * then RMSNorm and the untied output head.
 *
 * Keys (`mimo2.` prefix): block_count counts the nextn_predict_layers MTP
 * blocks appended at the end; attention.head_count / head_count_kv are a
 * scalar or a per-block array; attention.sliding_window_pattern is a
 * per-block array (1 = sliding) or a scalar period P (block i slides iff
 * P == 0 or i % P < P - 1, the llama.cpp gemma-style convention); arrays
 * must have exactly block_count entries. attention.value_scale defaults to
 * 0.707 when absent (files converted before the key existed; note that
 * llama.cpp applies no scale then). Which blocks use sinks: those that have
 * blk.N.attn_sinks.weight (as llama.cpp; in the released model the sliding
 * and MTP blocks).
 *
 * MTP blocks (il >= n_layer) are bound and shape-checked - attention, dense
 * FFN, nextn.eh_proj {2 n_embd, n_embd}, nextn.enorm, nextn.hnorm,
 * layer_output_norm - but the forward pass never runs them and the KV cache
 * has no rows for them (speculative decoding is a later issue).
 *
 * KV cache: kv_cache_hybrid (kv_cache.h), sliding layers as rings.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/kv_cache.h"
#include "model/mimo2.h"
#include "model/model.h"
#include "model/moe.h"

#define MIMO2_DEFAULT_VALUE_SCALE 0.707f

typedef struct mimo2_layer {
    mimo2_layer_info info;
    tensor_view attn_norm;          /* [n_embd] */
    tensor_view wq;                 /* [n_embd, n_head*dk] */
    tensor_view wk;                 /* [n_embd, n_head_kv*dk] */
    tensor_view wv;                 /* [n_embd, n_head_kv*dv] */
    tensor_view wo;                 /* [n_head*dv, n_embd] */
    tensor_view sinks;              /* [n_head] F32; data NULL without sinks */
    tensor_view ffn_norm;           /* [n_embd] */
    tensor_view ffn_gate, ffn_up;   /* [n_embd, n_ff] (dense blocks) */
    tensor_view ffn_down;           /* [n_ff, n_embd] */
    moe_layer moe;                  /* MoE blocks */
    tensor_view eh_proj;            /* MTP: [2*n_embd, n_embd] */
    tensor_view enorm, hnorm;       /* MTP: [n_embd] */
    tensor_view out_norm;           /* MTP: layer_output_norm [n_embd] */
} mimo2_layer;

typedef struct mimo2_weights {
    uint32_t n_block;        /* main + MTP blocks (block_count) */
    uint32_t n_nextn;        /* MTP blocks; m->hp.n_layer = n_block - n_nextn */
    uint32_t window;         /* attention.sliding_window */
    float rope_base_swa;
    float value_scale;
    moe_params moe;
    int64_t max_q, max_k, max_v, max_o; /* widest q / k / v / attention output over the main blocks */
    tensor_view token_embd;  /* [n_embd, n_vocab] */
    tensor_view output_norm; /* [n_embd] */
    tensor_view output;      /* [n_embd, n_vocab] */
    mimo2_layer *layers;     /* [n_block] */
} mimo2_weights;

struct arch_state {
    ops_ctx ops;
    kv_cache_hybrid kv;      /* main blocks only */
    int32_t n_ctx, n_batch;
    float *x;                /* [n_batch][n_embd] residual stream */
    float *xb;               /* [n_batch][n_embd] normed input */
    float *q, *k, *v;        /* [n_batch][max_q], [max_k], [max_v] */
    float *att;              /* [n_batch][max_o] attention output */
    float *proj;             /* [n_batch][n_embd] */
    float *gate, *up;        /* [n_batch][n_ff] */
    float *att_scratch;      /* [n_threads][att_stride] */
    int64_t att_stride;
    void *block;
    moe_scratch moe;
};

/* ---- load: hyperparameters ---- */

/*
 * Reads `mimo2.<suffix>` as a scalar (every block gets it) or an integer or
 * bool array of exactly n entries into out[n]. Absent: out keeps its values
 * unless required. *is_array tells which form the file used (may be NULL).
 */
static mica_status mimo2_read_per_block(const mica_model *m, const char *suffix, uint32_t n, bool required,
                                        uint32_t *out, bool *is_array, mica_err *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch->name, suffix);
    const char *path = gguf_path(m->gguf);
    const gguf_kv *kv = gguf_find(m->gguf, key);
    if (is_array) *is_array = false;
    if (!kv) return required ? mica_err_set(err, MICA_ERR_FORMAT, "%s: missing key '%s'", path, key) : MICA_OK;
    if (kv->val.type != GGUF_TYPE_ARRAY) {
        uint32_t v = 0;
        mica_status st = gguf_get_u32(m->gguf, key, &v, err);
        if (st) return st;
        for (uint32_t i = 0; i < n; i++) out[i] = v;
        return MICA_OK;
    }
    if (is_array) *is_array = true;
    if (kv->val.v.arr.n != n)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: '%s' has %" PRIu64 " entries but block_count is %u",
                            path, key, kv->val.v.arr.n, n);
    for (uint32_t i = 0; i < n; i++) {
        gguf_value e;
        if (!gguf_arr_get(m->gguf, &kv->val, i, &e))
            return mica_err_set(err, MICA_ERR_FORMAT, "%s: '%s' entry %u unreadable", path, key, i);
        switch (e.type) {
        case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
            if (e.v.u > UINT32_MAX) goto bad;
            out[i] = (uint32_t)e.v.u;
            break;
        case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
            if (e.v.i < 0 || e.v.i > UINT32_MAX) goto bad;
            out[i] = (uint32_t)e.v.i;
            break;
        case GGUF_TYPE_BOOL:
            out[i] = e.v.b ? 1u : 0u;
            break;
        default:
            goto bad;
        }
    }
    return MICA_OK;
bad:
    return mica_err_set(err, MICA_ERR_FORMAT, "%s: '%s' must hold non-negative integers", path, key);
}

/* Reads every key; fills m->hp and w's scalars, and layers[i].info. */
static mica_status mimo2_read_hparams(mica_model *m, mimo2_weights *w, mica_err *err) {
    model_hparams *hp = &m->hp;
    const char *path = gguf_path(m->gguf);
    mica_status st;
    memset(hp, 0, sizeof *hp);
    hp->n_ctx_train = 4096;
    hp->rope_theta = 10000.0f;
    hp->rms_eps = 1e-5f;
    hp->rope_mode = ROPE_NEOX;
    uint32_t nb = 0;
    if ((st = hparams_u32(m, "embedding_length", &hp->n_embd, true, err))) return st;
    if ((st = hparams_u32(m, "block_count", &nb, true, err))) return st;
    if ((st = hparams_u32(m, "nextn_predict_layers", &w->n_nextn, false, err))) return st;
    if ((st = hparams_u32(m, "feed_forward_length", &hp->n_ff, false, err))) return st;
    if ((st = hparams_u32(m, "context_length", &hp->n_ctx_train, false, err))) return st;
    if ((st = hparams_f32(m, "rope.freq_base", &hp->rope_theta, false, err))) return st;
    w->rope_base_swa = hp->rope_theta;
    if ((st = hparams_f32(m, "rope.freq_base_swa", &w->rope_base_swa, false, err))) return st;
    if ((st = hparams_f32(m, "attention.layer_norm_rms_epsilon", &hp->rms_eps, false, err))) return st;
    w->value_scale = MIMO2_DEFAULT_VALUE_SCALE;
    if ((st = hparams_f32(m, "attention.value_scale", &w->value_scale, false, err))) return st;

    if (hp->n_embd == 0 || hp->n_embd > MODEL_MAX_EMBD)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: mimo2.embedding_length %u out of range", path, hp->n_embd);
    if (nb == 0 || nb > MODEL_MAX_LAYERS)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: mimo2.block_count %u out of range (1..%d)", path, nb,
                            MODEL_MAX_LAYERS);
    if (w->n_nextn >= nb)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: mimo2.nextn_predict_layers %u must be below block_count %u",
                            path, w->n_nextn, nb);
    if (hp->n_ff > MODEL_MAX_FF)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: mimo2.feed_forward_length %u out of range", path, hp->n_ff);
    if (!(hp->rope_theta > 0.0f) || !isfinite(hp->rope_theta) || !(w->rope_base_swa > 0.0f) ||
        !isfinite(w->rope_base_swa))
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: mimo2.rope.freq_base / freq_base_swa must be positive",
                            path);
    if (!(hp->rms_eps > 0.0f) || !(hp->rms_eps < 1.0f))
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: mimo2.attention.layer_norm_rms_epsilon out of range", path);
    if (!(w->value_scale > 0.0f) || !isfinite(w->value_scale))
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: mimo2.attention.value_scale must be positive", path);
    w->n_block = nb;
    hp->n_layer = nb - w->n_nextn;
    w->layers = mica_calloc(nb, sizeof *w->layers);
    if (!w->layers) return mica_err_set(err, MICA_ERR_NOMEM, "out of memory");

    /* per-block head counts and attention kinds */
    uint32_t heads[MODEL_MAX_LAYERS], heads_kv[MODEL_MAX_LAYERS], swa[MODEL_MAX_LAYERS];
    bool swa_array = false;
    if ((st = mimo2_read_per_block(m, "attention.head_count", nb, true, heads, NULL, err))) return st;
    memcpy(heads_kv, heads, sizeof heads);
    if ((st = mimo2_read_per_block(m, "attention.head_count_kv", nb, false, heads_kv, NULL, err))) return st;
    if ((st = mimo2_read_per_block(m, "attention.sliding_window_pattern", nb, true, swa, &swa_array, err)))
        return st;
    bool any_swa = false;
    for (uint32_t il = 0; il < nb; il++) {
        mimo2_layer_info *in = &w->layers[il].info;
        if (!swa_array) { /* a period P: the last block of every P is global */
            const uint32_t P = swa[il];
            in->is_swa = P == 0 || il % P < P - 1;
        } else {
            if (swa[il] > 1)
                return mica_err_set(err, MICA_ERR_FORMAT, "%s: mimo2.attention.sliding_window_pattern entry %u "
                                    "is %u (expected 0 or 1)", path, il, swa[il]);
            in->is_swa = swa[il] == 1;
        }
        in->n_head = heads[il];
        in->n_head_kv = heads_kv[il];
        in->is_nextn = il >= hp->n_layer;
        any_swa |= in->is_swa;
        if (in->n_head == 0 || in->n_head > MODEL_MAX_HEADS || in->n_head_kv == 0 || in->n_head % in->n_head_kv)
            return mica_err_set(err, MICA_ERR_FORMAT, "%s: block %u: head counts %u/%u invalid "
                                "(mimo2.attention.head_count / head_count_kv)", path, il, in->n_head, in->n_head_kv);
    }
    if ((st = hparams_u32(m, "attention.sliding_window", &w->window, any_swa, err))) return st;
    if (any_swa && (w->window == 0 || w->window > (1u << 24)))
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: mimo2.attention.sliding_window %u out of range", path,
                            w->window);
    for (uint32_t il = 0; il < nb; il++)
        w->layers[il].info.rope_base = w->layers[il].info.is_swa ? w->rope_base_swa : hp->rope_theta;
    hp->n_head = heads[0];
    hp->n_head_kv = heads_kv[0];

    /* head sizes and rotary dims */
    hp->head_dim = hp->n_embd / hp->n_head;
    if ((st = hparams_u32(m, "attention.key_length", &hp->head_dim, false, err))) return st;
    hp->head_dim_v = hp->head_dim;
    if ((st = hparams_u32(m, "attention.value_length", &hp->head_dim_v, false, err))) return st;
    hp->n_rot = hp->head_dim;
    if ((st = hparams_u32(m, "rope.dimension_count", &hp->n_rot, false, err))) return st;
    if (hp->head_dim == 0 || hp->head_dim > MODEL_MAX_HEAD_DIM || hp->head_dim_v == 0 ||
        hp->head_dim_v > MODEL_MAX_HEAD_DIM)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: mimo2.attention.key_length / value_length %u/%u out of range",
                            path, hp->head_dim, hp->head_dim_v);
    if (hp->n_rot == 0 || hp->n_rot > hp->head_dim || hp->n_rot % 2 != 0)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: mimo2.rope.dimension_count %u invalid for head size %u",
                            path, hp->n_rot, hp->head_dim);

    const gguf_tensor *emb = gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!emb) return mica_err_set(err, MICA_ERR_FORMAT, "%s: missing tensor 'token_embd.weight'", path);
    if (emb->ne[1] <= 0 || emb->ne[1] > MODEL_MAX_VOCAB)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: token_embd.weight vocabulary size out of range", path);
    hp->n_vocab = (uint32_t)emb->ne[1];
    return MICA_OK;
}

/* ---- load: weights ---- */

static mica_status mimo2_bind_layer(mica_model *m, mimo2_weights *w, uint32_t il, mica_err *err) {
    const model_hparams *hp = &m->hp;
    mimo2_layer *L = &w->layers[il];
    const int64_t E = hp->n_embd, F = hp->n_ff;
    const int64_t nh = L->info.n_head, nkv = L->info.n_head_kv;
    const int64_t qd = nh * hp->head_dim, kd = nkv * hp->head_dim, vd = nkv * hp->head_dim_v;
    const int64_t od = nh * hp->head_dim_v;
    char name[96];
    mica_status st;
#define MIMO2_BIND(field, suffix, nd, optional, float_only, ...)                                  \
    do {                                                                                          \
        snprintf(name, sizeof name, "blk.%u." suffix, il);                                        \
        const int64_t ne_[] = {__VA_ARGS__};                                                      \
        if ((st = weights_bind(m, &L->field, name, nd, ne_, optional, float_only, err))) return st; \
    } while (0)
    MIMO2_BIND(attn_norm, "attn_norm.weight", 1, false, true, E);
    MIMO2_BIND(wq, "attn_q.weight", 2, false, false, E, qd);
    MIMO2_BIND(wk, "attn_k.weight", 2, false, false, E, kd);
    MIMO2_BIND(wv, "attn_v.weight", 2, false, false, E, vd);
    MIMO2_BIND(wo, "attn_output.weight", 2, false, false, od, E);
    MIMO2_BIND(sinks, "attn_sinks.weight", 1, true, true, nh);
    L->info.has_sinks = L->sinks.data != NULL;
    MIMO2_BIND(ffn_norm, "ffn_norm.weight", 1, false, true, E);
    snprintf(name, sizeof name, "blk.%u.ffn_gate_inp.weight", il);
    L->info.is_moe = gguf_find_tensor(m->gguf, name) != NULL;
    if (L->info.is_moe) {
        if ((st = moe_bind(m, il, &w->moe, E, &L->moe, err))) return st;
    } else {
        if (F == 0)
            return mica_err_set(err, MICA_ERR_FORMAT, "%s: block %u has a dense FFN but "
                                "mimo2.feed_forward_length is missing", gguf_path(m->gguf), il);
        MIMO2_BIND(ffn_gate, "ffn_gate.weight", 2, false, false, E, F);
        MIMO2_BIND(ffn_up, "ffn_up.weight", 2, false, false, E, F);
        MIMO2_BIND(ffn_down, "ffn_down.weight", 2, false, false, F, E);
    }
    if (L->info.is_nextn) {
        MIMO2_BIND(eh_proj, "nextn.eh_proj.weight", 2, false, false, 2 * E, E);
        MIMO2_BIND(enorm, "nextn.enorm.weight", 1, false, true, E);
        MIMO2_BIND(hnorm, "nextn.hnorm.weight", 1, false, true, E);
        MIMO2_BIND(out_norm, "layer_output_norm.weight", 1, false, true, E);
    }
#undef MIMO2_BIND
    return MICA_OK;
}

/* Bytes and elements of the tensors of block il (an MTP block's are not used per token). */
static void mimo2_block_size(const mica_model *m, uint32_t il, uint64_t *bytes, uint64_t *params) {
    char prefix[32];
    int n = snprintf(prefix, sizeof prefix, "blk.%u.", il);
    *bytes = *params = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(m->gguf); i++) {
        const gguf_tensor *t = gguf_tensor_at(m->gguf, i);
        if (strncmp(t->name, prefix, (size_t)n) != 0) continue;
        *bytes += t->nbytes;
        *params += (uint64_t)t->ne[0] * (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3];
    }
}

static void mimo2_unload(mica_model *m) {
    mimo2_weights *w = m->arch_data;
    if (!w) return;
    mica_free(w->layers);
    mica_free(w);
    m->arch_data = NULL;
}

static mica_status mimo2_load(mica_model *m, mica_err *err) {
    mimo2_weights *w = mica_calloc(1, sizeof *w);
    if (!w) return mica_err_set(err, MICA_ERR_NOMEM, "out of memory");
    m->arch_data = w;
    mica_status st = mimo2_read_hparams(m, w, err);
    if (st) goto fail;
    const model_hparams *hp = &m->hp;
    static const moe_params moe_defaults = {.gating = MOE_GATING_SIGMOID, .norm_topk = true};
    if ((st = moe_read_params(m, &moe_defaults, hp->n_ff, &w->moe, err))) goto fail;
    const int64_t E = hp->n_embd, V = hp->n_vocab;
    if ((st = weights_bind(m, &w->token_embd, "token_embd.weight", 2, (int64_t[]){E, V}, false, false, err))) goto fail;
    if ((st = weights_bind(m, &w->output_norm, "output_norm.weight", 1, (int64_t[]){E}, false, true, err))) goto fail;
    if ((st = weights_bind(m, &w->output, "output.weight", 2, (int64_t[]){E, V}, true, false, err))) goto fail;
    if (!w->output.data) w->output = w->token_embd; /* tied (not the released model, but harmless) */
    for (uint32_t il = 0; il < w->n_block; il++) {
        if ((st = mimo2_bind_layer(m, w, il, err))) goto fail;
        const mimo2_layer *L = &w->layers[il];
        if (L->info.is_nextn) { /* bound, never run: no bytes or active parameters per token */
            uint64_t b, np;
            mimo2_block_size(m, il, &b, &np);
            if (L->info.is_moe) { /* its skipped experts are already off both counts */
                b -= MICA_MIN(b, moe_unread_bytes_per_token(&w->moe, &L->moe)); /* moe_bind */
                const tensor_view *x[] = {&L->moe.gate_exps, &L->moe.up_exps, &L->moe.down_exps};
                for (size_t i = 0; i < MICA_ARRAY_LEN(x); i++) /* model counting: k of n_expert */
                    np -= MICA_MIN(np, (uint64_t)x[i]->ne[0] * (uint64_t)x[i]->ne[1] *
                                           (uint64_t)(w->moe.n_expert - w->moe.n_expert_used));
            }
            m->bytes_per_token -= MICA_MIN(m->bytes_per_token, b);
            m->n_params_active -= MICA_MIN(m->n_params_active, np);
            continue;
        }
        w->max_q = MICA_MAX(w->max_q, (int64_t)L->info.n_head * hp->head_dim);
        w->max_k = MICA_MAX(w->max_k, (int64_t)L->info.n_head_kv * hp->head_dim);
        w->max_v = MICA_MAX(w->max_v, (int64_t)L->info.n_head_kv * hp->head_dim_v);
        w->max_o = MICA_MAX(w->max_o, (int64_t)L->info.n_head * hp->head_dim_v);
    }
    return MICA_OK;
fail:
    mimo2_unload(m);
    return st;
}

/* ---- session state ---- */

static void mimo2_state_free(arch_state *s) {
    if (!s) return;
    kv_cache_hybrid_deinit(&s->kv);
    moe_scratch_deinit(&s->moe);
    mica_free(s->block);
    mica_free(s->ops.qbuf);
    mica_free(s);
}

/* The cache layout of the main blocks: specs[n_layer]. */
static void mimo2_kv_specs(const mica_model *m, kv_layer_spec *specs) {
    const mimo2_weights *w = m->arch_data;
    const model_hparams *hp = &m->hp;
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const mimo2_layer_info *in = &w->layers[il].info;
        specs[il].k_dim = (int64_t)in->n_head_kv * hp->head_dim;
        specs[il].v_dim = (int64_t)in->n_head_kv * hp->head_dim_v;
        specs[il].window = in->is_swa ? (int32_t)w->window : 0;
    }
}

uint64_t mimo2_kv_bytes(const mica_model *m, int32_t n_ctx, int32_t n_batch, const mimo2_state_opts *opts) {
    kv_layer_spec specs[MODEL_MAX_LAYERS];
    mimo2_kv_specs(m, specs);
    const mimo2_state_opts o = opts ? *opts : (mimo2_state_opts){.kv_type = MICA_DTYPE_F32};
    return kv_cache_hybrid_bytes(specs, (int32_t)m->hp.n_layer, n_ctx, MICA_MIN(n_batch, n_ctx), o.kv_type,
                                 !o.swa_full);
}

static size_t mimo2_max_qbuf(const mica_model *m, int32_t n_batch) {
    const mimo2_weights *w = m->arch_data;
    size_t best = ops_qbuf_bytes(&m->kt, w->output.type, w->output.ne[0], n_batch);
    for (uint32_t il = 0; il < m->hp.n_layer; il++) {
        const mimo2_layer *L = &w->layers[il];
        const tensor_view *all[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->ffn_gate, &L->ffn_up, &L->ffn_down};
        for (size_t i = 0; i < MICA_ARRAY_LEN(all); i++)
            if (all[i]->data) best = MICA_MAX(best, ops_qbuf_bytes(&m->kt, all[i]->type, all[i]->ne[0], n_batch));
        if (L->info.is_moe) best = MICA_MAX(best, moe_qbuf_bytes(&m->kt, &L->moe, n_batch));
    }
    return best;
}

mica_status mimo2_state_create(const mica_model *m, mica_pool *pool, int32_t n_ctx, int32_t n_batch,
                               const mimo2_state_opts *opts, arch_state **out, mica_err *err) {
    const model_hparams *hp = &m->hp;
    const mimo2_weights *w = m->arch_data;
    const mimo2_state_opts o = opts ? *opts : (mimo2_state_opts){.kv_type = MICA_DTYPE_F32};
    MICA_ASSERT(m->arch && strcmp(m->arch->name, "mimo2") == 0 && n_ctx >= 1 && n_batch >= 1);
    n_batch = MICA_MIN(n_batch, n_ctx);
    arch_state *s = mica_calloc(1, sizeof *s);
    if (!s) return mica_err_set(err, MICA_ERR_NOMEM, "out of memory");
    kv_layer_spec specs[MODEL_MAX_LAYERS];
    mimo2_kv_specs(m, specs);
    mica_status st = kv_cache_hybrid_init(&s->kv, specs, (int32_t)hp->n_layer, n_ctx, n_batch, o.kv_type,
                                          !o.swa_full, err);
    if (st) goto fail;
    if ((st = moe_scratch_init(&s->moe, &w->moe, hp->n_embd, n_batch, err))) goto fail;
    s->n_ctx = n_ctx;
    s->n_batch = n_batch;
    /* attention scratch per thread: every key of a global layer, plus one
     * dequantised k and v head for a quantised cache */
    s->att_stride = (int64_t)n_ctx + hp->head_dim + hp->head_dim_v;
    const size_t B = (size_t)n_batch;
    const size_t sizes[] = {
        B * hp->n_embd, B * hp->n_embd, B * (size_t)w->max_q, B * (size_t)w->max_k, B * (size_t)w->max_v,
        B * (size_t)w->max_o, B * hp->n_embd, B * hp->n_ff, B * hp->n_ff,
        (size_t)pool_n_threads(pool) * (size_t)s->att_stride,
    };
    size_t total = 0;
    for (size_t i = 0; i < MICA_ARRAY_LEN(sizes); i++) total += (sizes[i] + 15) & ~(size_t)15;
    s->block = mica_aligned_alloc(64, total * sizeof(float));
    const size_t qb = mimo2_max_qbuf(m, n_batch);
    s->ops.qbuf = qb ? mica_aligned_alloc(64, qb) : NULL;
    if (!s->block || (qb && !s->ops.qbuf)) {
        st = mica_err_set(err, MICA_ERR_NOMEM, "out of memory allocating %zu bytes of scratch",
                          total * sizeof(float) + qb);
        goto fail;
    }
    float **bufs[] = {&s->x, &s->xb, &s->q, &s->k, &s->v, &s->att, &s->proj, &s->gate, &s->up, &s->att_scratch};
    float *p = s->block;
    for (size_t i = 0; i < MICA_ARRAY_LEN(bufs); i++) {
        *bufs[i] = p;
        p += (sizes[i] + 15) & ~(size_t)15;
    }
    s->ops.pool = pool;
    s->ops.kt = &m->kt;
    s->ops.qbuf_cap = qb;
    *out = s;
    return MICA_OK;
fail:
    mimo2_state_free(s);
    return st;
}

static mica_status mimo2_state_create_default(const mica_model *m, mica_pool *pool, int32_t n_ctx,
                                              int32_t n_batch, uint32_t kv_type, arch_state **out,
                                              mica_err *err) {
    const mimo2_state_opts o = {.kv_type = kv_type};
    return mimo2_state_create(m, pool, n_ctx, n_batch, &o, out, err);
}

uint64_t mimo2_state_kv_bytes(const arch_state *st) { return st->kv.bytes; }

/* ---- forward ---- */

static void mimo2_forward(const mica_model *m, arch_state *s, const int32_t *tokens, int32_t n,
                          int32_t pos0, float *logits, bool all_logits) {
    const model_hparams *hp = &m->hp;
    const mimo2_weights *w = m->arch_data;
    const int64_t E = hp->n_embd, F = hp->n_ff, hd = hp->head_dim, hdv = hp->head_dim_v;
    ops_ctx *c = &s->ops;
    MICA_ASSERT(n >= 1 && n <= s->n_batch && pos0 + n <= s->n_ctx);

    /* token embeddings: x[t] = token_embd[tokens[t]] */
    for (int32_t t = 0; t < n; t++) ops_get_row(&m->kt, &w->token_embd, tokens[t], s->x + t * E);

    for (uint32_t il = 0; il < hp->n_layer; il++) { /* the MTP blocks after n_layer are not run */
        const mimo2_layer *L = &w->layers[il];
        const kv_layer *KV = &s->kv.layers[il];
        const int64_t nh = L->info.n_head, nkv = L->info.n_head_kv;
        const int64_t qd = nh * hd, kd = nkv * hd, vd = nkv * hdv, od = nh * hdv;

        /* attention rmsnorm */
        for (int32_t t = 0; t < n; t++)
            ops_rmsnorm(s->xb + t * E, s->x + t * E, L->attn_norm.data, E, hp->rms_eps);

        /* q [nh, dk], k [nkv, dk], v [nkv, dv] */
        ops_matmul(c, &L->wq, s->xb, n, s->q);
        ops_matmul(c, &L->wk, s->xb, n, s->k);
        ops_matmul(c, &L->wv, s->xb, n, s->v);

        /* partial NEOX rope (first n_rot dims, the block's base); k, v into the cache */
        for (int32_t t = 0; t < n; t++) {
            ops_rope(s->q + t * qd, nh, hd, hp->n_rot, pos0 + t, L->info.rope_base, ROPE_NEOX);
            ops_rope(s->k + t * kd, nkv, hd, hp->n_rot, pos0 + t, L->info.rope_base, ROPE_NEOX);
            kv_cache_hybrid_put(&s->kv, &m->kt, (int32_t)il, pos0 + t, s->k + t * kd, s->v + t * vd);
        }

        /* causal (global) or sliding-window attention, with the block's sinks */
        ops_attn_ext_args a = {
            .kt = &m->kt, .q = s->q, .k = KV->k, .v = KV->v, .out = s->att, .n_tok = n, .pos0 = pos0,
            .n_head = nh, .n_head_kv = nkv, .head_dim = hd, .head_dim_v = hdv,
            .k_row_bytes = KV->k_row_bytes, .v_row_bytes = KV->v_row_bytes, .kv_type = s->kv.type,
            .scale = 1.0f / sqrtf((float)hd), .window = L->info.is_swa ? (int64_t)w->window : 0,
            .n_slots = KV->is_ring ? KV->n_slots : 0, .sinks = L->sinks.data,
            .scratch = s->att_scratch, .scratch_stride = s->att_stride,
        };
        ops_attention_ext(c->pool, &a);

        /* value scale (on the attention output: the same as on v), output projection, residual */
        if (w->value_scale != 1.0f)
            for (int64_t i = 0; i < n * od; i++) s->att[i] *= w->value_scale;
        ops_matmul(c, &L->wo, s->att, n, s->proj);
        for (int64_t i = 0; i < n * E; i++) s->x[i] += s->proj[i];

        /* ffn rmsnorm, dense SwiGLU or mixture of experts, residual */
        for (int32_t t = 0; t < n; t++)
            ops_rmsnorm(s->xb + t * E, s->x + t * E, L->ffn_norm.data, E, hp->rms_eps);
        if (L->info.is_moe) {
            moe_forward(c, &w->moe, &L->moe, &s->moe, s->xb, n, E, s->proj);
        } else {
            ops_matmul(c, &L->ffn_gate, s->xb, n, s->gate);
            ops_matmul(c, &L->ffn_up, s->xb, n, s->up);
            ops_swiglu(s->gate, s->gate, s->up, n * F);
            ops_matmul(c, &L->ffn_down, s->gate, n, s->proj);
        }
        for (int64_t i = 0; i < n * E; i++) s->x[i] += s->proj[i];
    }

    /* final rmsnorm and logits (all rows, or the last one) */
    const int32_t first = all_logits ? 0 : n - 1;
    for (int32_t t = first; t < n; t++)
        ops_rmsnorm(s->xb + t * E, s->x + t * E, w->output_norm.data, E, hp->rms_eps);
    ops_matmul(c, &w->output, s->xb + first * E, n - first, logits);
}

/* ---- introspection (mimo2.h) ---- */

uint32_t mimo2_n_blocks(const mica_model *m) { return ((const mimo2_weights *)m->arch_data)->n_block; }
uint32_t mimo2_n_nextn(const mica_model *m) { return ((const mimo2_weights *)m->arch_data)->n_nextn; }
uint32_t mimo2_window(const mica_model *m) { return ((const mimo2_weights *)m->arch_data)->window; }
float mimo2_value_scale(const mica_model *m) { return ((const mimo2_weights *)m->arch_data)->value_scale; }

void mimo2_layer_get(const mica_model *m, uint32_t il, mimo2_layer_info *out) {
    const mimo2_weights *w = m->arch_data;
    MICA_ASSERT(il < w->n_block);
    *out = w->layers[il].info;
}

const arch_ops arch_mimo2_ops = {"mimo2", mimo2_load, mimo2_unload, mimo2_state_create_default,
                                 mimo2_state_free, mimo2_forward, mimo2_state_kv_bytes};
