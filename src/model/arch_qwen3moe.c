/*
 * arch_qwen3moe.c - sparse decoders whose every block is attention + a
 * mixture-of-experts FFN: `qwen3moe` (Qwen3-30B-A3B, MODEL_FAMILIES.md 2)
 * and `olmoe` (OLMoE-1B-7B, 3.1). They share one forward pass and differ in
 * two switches:
 *
 *   arch      q/k RMSNorm                         router (default)
 *   qwen3moe  per head, weight [head_dim]         softmax, top-k renormalised
 *   olmoe     whole q / k vector, before heads    softmax, top-k raw
 *
 * Both use NEOX RoPE, no biases, no shared experts, no dense layers. The
 * router's renormalisation follows `{arch}.expert_weights_norm` when the
 * file has it. The attention block is attn.c, the MoE layer moe.c.
 * Layer: model. Weights are views into the mapped file (see model.h).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/attn.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "model/moe.h"

typedef struct smoe_variant {
    attn_config attn;
    moe_params moe_defaults; /* gating and norm_topk */
} smoe_variant;

typedef struct smoe_layer {
    attn_layer attn;
    tensor_view ffn_norm; /* [n_embd] */
    moe_layer moe;
} smoe_layer;

typedef struct smoe_weights {
    smoe_variant var;
    moe_params moe;
    tensor_view token_embd;  /* [n_embd, n_vocab] */
    tensor_view output_norm; /* [n_embd] */
    tensor_view output;      /* [n_embd, n_vocab]; = token_embd when tied */
    smoe_layer *layers;      /* [n_layer] */
} smoe_weights;

struct arch_state {
    ops_ctx ops;
    kv_cache_hybrid kv; /* every layer global, rows of the session's KV type */
    int32_t n_batch;
    float *x;         /* [n_batch][n_embd] residual stream */
    float *xb;        /* [n_batch][n_embd] normed FFN input */
    float *ffn_out;   /* [n_batch][n_embd] MoE output */
    void *block;      /* behind x, xb, ffn_out */
    attn_scratch attn;
    moe_scratch moe;
};

/* ---- load ---- */

static void smoe_unload(mica_model *m) {
    smoe_weights *w = m->arch_data;
    if (!w) return;
    mica_free(w->layers);
    mica_free(w);
    m->arch_data = NULL;
}

static mica_status smoe_load(mica_model *m, const smoe_variant *var, mica_err *err) {
    mica_status st = attn_read_hparams(m, &var->attn, err);
    if (st) return st;
    const model_hparams *hp = &m->hp;
    smoe_weights *w = mica_calloc(1, sizeof *w);
    if (!w) return mica_err_set(err, MICA_ERR_NOMEM, "out of memory");
    m->arch_data = w;
    w->var = *var;
    if ((st = moe_read_params(m, &var->moe_defaults, hp->n_ff, &w->moe, err))) goto fail;
    w->layers = mica_calloc(hp->n_layer, sizeof *w->layers);
    if (!w->layers) { st = mica_err_set(err, MICA_ERR_NOMEM, "out of memory"); goto fail; }
    const int64_t E = hp->n_embd, V = hp->n_vocab;
    if ((st = weights_bind(m, &w->token_embd, "token_embd.weight", 2, (int64_t[]){E, V}, false, false, err))) goto fail;
    if ((st = weights_bind(m, &w->output_norm, "output_norm.weight", 1, (int64_t[]){E}, false, true, err))) goto fail;
    if ((st = weights_bind(m, &w->output, "output.weight", 2, (int64_t[]){E, V}, true, false, err))) goto fail;
    if (!w->output.data) w->output = w->token_embd; /* tied embeddings */
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        smoe_layer *L = &w->layers[il];
        char name[64];
        snprintf(name, sizeof name, "blk.%u.ffn_norm.weight", il);
        if ((st = attn_bind(m, &var->attn, il, &L->attn, err))) goto fail;
        if ((st = weights_bind(m, &L->ffn_norm, name, 1, (int64_t[]){E}, false, true, err))) goto fail;
        if ((st = moe_bind(m, il, &w->moe, E, &L->moe, err))) goto fail; /* also: bytes per token */
    }
    return MICA_OK;
fail:
    smoe_unload(m);
    return st;
}

/* ---- session state ---- */

static void smoe_state_free(arch_state *s) {
    if (!s) return;
    kv_cache_hybrid_deinit(&s->kv);
    attn_scratch_deinit(&s->attn);
    moe_scratch_deinit(&s->moe);
    mica_free(s->block);
    mica_free(s->ops.qbuf);
    mica_free(s);
}

static mica_status smoe_state_create(const mica_model *m, mica_pool *pool, int32_t n_ctx,
                                     int32_t n_batch, uint32_t kv_type, arch_state **out, mica_err *err) {
    const model_hparams *hp = &m->hp;
    const smoe_weights *w = m->arch_data;
    arch_state *s = mica_calloc(1, sizeof *s);
    if (!s) return mica_err_set(err, MICA_ERR_NOMEM, "out of memory");
    mica_status st = kv_cache_uniform_init(&s->kv, (int32_t)hp->n_layer, n_ctx, (int64_t)hp->n_head_kv * hp->head_dim,
                                           (int64_t)hp->n_head_kv * hp->head_dim_v, kv_type, err);
    if (st) goto fail;
    if ((st = attn_scratch_init(&s->attn, hp, n_batch, n_ctx, pool_n_threads(pool), err))) goto fail;
    if ((st = moe_scratch_init(&s->moe, &w->moe, hp->n_embd, n_batch, err))) goto fail;
    s->n_batch = n_batch;
    const size_t row = ((size_t)hp->n_embd + 15) & ~(size_t)15;
    s->block = mica_aligned_alloc(64, 3 * (size_t)n_batch * row * sizeof(float));
    size_t qb = ops_qbuf_bytes(&m->kt, w->output.type, w->output.ne[0], n_batch);
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        qb = MICA_MAX(qb, attn_qbuf_bytes(&m->kt, &w->layers[il].attn, n_batch));
        qb = MICA_MAX(qb, moe_qbuf_bytes(&m->kt, &w->layers[il].moe, n_batch));
    }
    s->ops.qbuf = qb ? mica_aligned_alloc(64, qb) : NULL;
    if (!s->block || (qb && !s->ops.qbuf)) {
        st = mica_err_set(err, MICA_ERR_NOMEM, "out of memory allocating activation buffers");
        goto fail;
    }
    s->x = s->block;
    s->xb = s->x + (size_t)n_batch * row;
    s->ffn_out = s->xb + (size_t)n_batch * row;
    s->ops.pool = pool;
    s->ops.kt = &m->kt;
    s->ops.qbuf_cap = qb;
    *out = s;
    return MICA_OK;
fail:
    smoe_state_free(s);
    return st;
}

static uint64_t smoe_state_kv_bytes(const arch_state *s) { return s->kv.bytes; }

/* ---- forward ---- */

static void smoe_forward(const mica_model *m, arch_state *s, const int32_t *tokens, int32_t n,
                         int32_t pos0, float *logits, bool all_logits) {
    const model_hparams *hp = &m->hp;
    const smoe_weights *w = m->arch_data;
    const int64_t E = hp->n_embd;
    ops_ctx *c = &s->ops;
    MICA_ASSERT(n >= 1 && n <= s->n_batch && pos0 + n <= s->kv.n_ctx);

    /* token embeddings: x[t] = token_embd[tokens[t]] */
    for (int32_t t = 0; t < n; t++) ops_get_row(&m->kt, &w->token_embd, tokens[t], s->x + t * E);

    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const smoe_layer *L = &w->layers[il];

        /* x += attention(rmsnorm(x)), keys and values stored in the cache */
        attn_forward(c, hp, &w->var.attn, &L->attn, &s->kv, il, &s->attn, s->x, n, pos0);

        /* ffn rmsnorm, mixture of experts, residual */
        for (int32_t t = 0; t < n; t++)
            ops_rmsnorm(s->xb + t * E, s->x + t * E, L->ffn_norm.data, E, hp->rms_eps);
        moe_forward(c, &w->moe, &L->moe, &s->moe, s->xb, n, E, s->ffn_out);
        for (int64_t i = 0; i < n * E; i++) s->x[i] += s->ffn_out[i];
    }

    /* final rmsnorm and logits (all rows, or the last one) */
    const int32_t first = all_logits ? 0 : n - 1;
    for (int32_t t = first; t < n; t++)
        ops_rmsnorm(s->xb + t * E, s->x + t * E, w->output_norm.data, E, hp->rms_eps);
    ops_matmul(c, &w->output, s->xb + first * E, n - first, logits);
}

/* ---- registry entries ---- */

static mica_status load_qwen3moe(mica_model *m, mica_err *err) {
    static const smoe_variant v = {
        .attn = {ROPE_NEOX, ATTN_QK_NORM_HEAD, false, 1e-6f},
        .moe_defaults = {.gating = MOE_GATING_SOFTMAX, .norm_topk = true},
    };
    return smoe_load(m, &v, err);
}

static mica_status load_olmoe(mica_model *m, mica_err *err) {
    static const smoe_variant v = {
        .attn = {ROPE_NEOX, ATTN_QK_NORM_FULL, false, 1e-5f},
        .moe_defaults = {.gating = MOE_GATING_SOFTMAX, .norm_topk = false},
    };
    return smoe_load(m, &v, err);
}

const arch_ops arch_qwen3moe_ops = {"qwen3moe", load_qwen3moe, smoe_unload, smoe_state_create,
                                    smoe_state_free, smoe_forward, smoe_state_kv_bytes};
const arch_ops arch_olmoe_ops = {"olmoe", load_olmoe, smoe_unload, smoe_state_create, smoe_state_free,
                                 smoe_forward, smoe_state_kv_bytes};
