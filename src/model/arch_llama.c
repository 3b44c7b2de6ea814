/*
 * arch_llama.c - the Llama family of dense transformers: `llama` (Llama 1-3,
 * TinyLlama, llama2.c models), `qwen2` and `qwen3`. They share one forward
 * pass and differ only in three switches (MODEL_FAMILIES.md sections 0-2):
 *
 *   arch    RoPE pairing       q/k/v biases   per-head q/k RMSNorm
 *   llama   NORM (adjacent)    no             no
 *   qwen2   NEOX (half-split)  yes            no
 *   qwen3   NEOX (half-split)  no             yes
 *
 * A `llama` file with `llama.expert_count` > 0 (Mixtral, 3.2) has a
 * mixture-of-experts FFN in every block instead of the dense one (moe.c;
 * softmax router, top-k renormalised unless expert_weights_norm says not).
 *
 * Layer: model. Weights are views into the mapped file (see model.h).
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/attn.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "model/moe.h"

typedef struct llama_variant {
    enum rope_mode rope_mode;
    bool has_qkv_bias;
    bool has_qk_norm;
    float default_eps;
} llama_variant;

typedef struct llama_layer {
    tensor_view attn_norm;          /* [n_embd] */
    tensor_view wq;                 /* [n_embd, n_head*head_dim] */
    tensor_view wk;                 /* [n_embd, n_head_kv*head_dim] */
    tensor_view wv;                 /* [n_embd, n_head_kv*head_dim_v] */
    tensor_view bq, bk, bv;         /* biases (qwen2), same widths; data NULL if absent */
    tensor_view q_norm, k_norm;     /* [head_dim] (qwen3) */
    tensor_view wo;                 /* [n_head*head_dim_v, n_embd] */
    tensor_view ffn_norm;           /* [n_embd] */
    tensor_view ffn_gate, ffn_up;   /* [n_embd, n_ff] */
    tensor_view ffn_down;           /* [n_ff, n_embd] */
    moe_layer moe;                  /* experts instead of ffn_gate/up/down (Mixtral) */
} llama_layer;

typedef struct llama_weights {
    llama_variant var;
    tensor_view token_embd;  /* [n_embd, n_vocab] */
    tensor_view output_norm; /* [n_embd] */
    tensor_view output;      /* [n_embd, n_vocab]; = token_embd when tied */
    llama_layer *layers;     /* [n_layer] */
    moe_params moe;          /* n_expert == 0: dense FFN */
} llama_weights;

struct arch_state {
    ops_ctx ops;
    kv_cache_hybrid kv; /* every layer global, rows of the session's KV type */
    int32_t n_batch;
    /* activation buffers, each sized for n_batch tokens */
    float *x;        /* [n_batch][n_embd] residual stream */
    float *xb;       /* [n_batch][n_embd] normed input */
    float *q;        /* [n_batch][n_head*head_dim] */
    float *k;        /* [n_batch][n_head_kv*head_dim] */
    float *v;        /* [n_batch][n_head_kv*head_dim_v] */
    float *attn;     /* [n_batch][n_head*head_dim_v] */
    float *proj;     /* [n_batch][n_embd] output of wo / ffn_down */
    float *gate;     /* [n_batch][n_ff] */
    float *up;       /* [n_batch][n_ff] */
    float *att_scratch; /* [n_threads][att_stride] */
    int64_t att_stride; /* n_ctx + head_dim + head_dim_v: scores and one dequantised k/v head */
    void *block;     /* one allocation behind all the float buffers */
    moe_scratch moe; /* MoE models only */
};

/* ---- load ---- */

/* The shared attention hyperparameters (attn.c), plus the dense FFN width
 * every layer of this family needs. */
static mica_status llama_read_hparams(mica_model *m, const llama_variant *var, mica_err *err) {
    const attn_config cfg = {
        .rope_mode = var->rope_mode,
        .qk_norm = var->has_qk_norm ? ATTN_QK_NORM_HEAD : ATTN_QK_NORM_NONE,
        .has_qkv_bias = var->has_qkv_bias,
        .default_eps = var->default_eps,
    };
    mica_status st = attn_read_hparams(m, &cfg, err);
    if (st) return st;
    if (m->hp.n_ff == 0)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: %s.feed_forward_length missing or 0",
                            gguf_path(m->gguf), m->arch->name);
    return MICA_OK;
}

static mica_status bind_layer(mica_model *m, const llama_variant *var, const moe_params *moe,
                              uint32_t il, llama_layer *L, mica_err *err) {
    const model_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, F = hp->n_ff;
    const int64_t qd = (int64_t)hp->n_head * hp->head_dim;
    const int64_t kd = (int64_t)hp->n_head_kv * hp->head_dim;
    const int64_t vd = (int64_t)hp->n_head_kv * hp->head_dim_v;
    const int64_t od = (int64_t)hp->n_head * hp->head_dim_v;
    char name[96];
    mica_status st;
#define BIND(field, suffix, nd, optional, float_only, ...)                                  \
    do {                                                                                    \
        snprintf(name, sizeof name, "blk.%u." suffix, il);                                  \
        const int64_t ne_[] = {__VA_ARGS__};                                                \
        if ((st = weights_bind(m, &L->field, name, nd, ne_, optional, float_only, err))) return st; \
    } while (0)
    BIND(attn_norm, "attn_norm.weight", 1, false, true, E);
    BIND(wq, "attn_q.weight", 2, false, false, E, qd);
    BIND(wk, "attn_k.weight", 2, false, false, E, kd);
    BIND(wv, "attn_v.weight", 2, false, false, E, vd);
    BIND(wo, "attn_output.weight", 2, false, false, od, E);
    BIND(bq, "attn_q.bias", 1, !var->has_qkv_bias, true, qd);
    BIND(bk, "attn_k.bias", 1, !var->has_qkv_bias, true, kd);
    BIND(bv, "attn_v.bias", 1, !var->has_qkv_bias, true, vd);
    if (var->has_qk_norm) {
        BIND(q_norm, "attn_q_norm.weight", 1, false, true, hp->head_dim);
        BIND(k_norm, "attn_k_norm.weight", 1, false, true, hp->head_dim);
    }
    BIND(ffn_norm, "ffn_norm.weight", 1, false, true, E);
    if (moe->n_expert > 0) return moe_bind(m, il, moe, E, &L->moe, err);
    BIND(ffn_gate, "ffn_gate.weight", 2, false, false, E, F);
    BIND(ffn_up, "ffn_up.weight", 2, false, false, E, F);
    BIND(ffn_down, "ffn_down.weight", 2, false, false, F, E);
#undef BIND
    return MICA_OK;
}

static void llama_unload(mica_model *m) {
    llama_weights *w = m->arch_data;
    if (!w) return;
    mica_free(w->layers);
    mica_free(w);
    m->arch_data = NULL;
}

static mica_status llama_load_variant(mica_model *m, const llama_variant *var, mica_err *err) {
    mica_status st = llama_read_hparams(m, var, err);
    if (st) return st;
    const model_hparams *hp = &m->hp;
    llama_weights *w = mica_calloc(1, sizeof *w);
    if (!w) return mica_err_set(err, MICA_ERR_NOMEM, "out of memory");
    m->arch_data = w;
    w->var = *var;
    w->layers = mica_calloc(hp->n_layer, sizeof *w->layers);
    if (!w->layers) { st = mica_err_set(err, MICA_ERR_NOMEM, "out of memory"); goto fail; }
    const int64_t E = hp->n_embd, V = hp->n_vocab;
    if ((st = weights_bind(m, &w->token_embd, "token_embd.weight", 2, (int64_t[]){E, V}, false, false, err))) goto fail;
    if ((st = weights_bind(m, &w->output_norm, "output_norm.weight", 1, (int64_t[]){E}, false, true, err))) goto fail;
    if ((st = weights_bind(m, &w->output, "output.weight", 2, (int64_t[]){E, V}, true, false, err))) goto fail;
    if (!w->output.data) w->output = w->token_embd; /* tied embeddings */
    uint32_t n_expert = 0;
    if ((st = hparams_u32(m, "expert_count", &n_expert, false, err))) goto fail;
    static const moe_params moe_defaults = {.gating = MOE_GATING_SOFTMAX, .norm_topk = true};
    if (n_expert > 0 && (st = moe_read_params(m, &moe_defaults, hp->n_ff, &w->moe, err))) goto fail;
    for (uint32_t il = 0; il < hp->n_layer; il++) /* moe_bind also takes the skipped experts off bytes_per_token */
        if ((st = bind_layer(m, var, &w->moe, il, &w->layers[il], err))) goto fail;
    return MICA_OK;
fail:
    llama_unload(m);
    return st;
}

/* ---- session state ---- */

static void llama_state_free(arch_state *s) {
    if (!s) return;
    kv_cache_hybrid_deinit(&s->kv);
    moe_scratch_deinit(&s->moe);
    mica_free(s->block);
    mica_free(s->ops.qbuf);
    mica_free(s);
}

static size_t max_qbuf(const mica_model *m, int32_t n_batch) {
    const llama_weights *w = m->arch_data;
    size_t best = ops_qbuf_bytes(&m->kt, w->output.type, w->output.ne[0], n_batch);
    for (uint32_t il = 0; il < m->hp.n_layer; il++) {
        const llama_layer *L = &w->layers[il];
        const tensor_view *all[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->ffn_gate, &L->ffn_up, &L->ffn_down};
        for (size_t i = 0; i < MICA_ARRAY_LEN(all); i++) {
            size_t b = ops_qbuf_bytes(&m->kt, all[i]->type, all[i]->ne[0], n_batch);
            best = MICA_MAX(best, b);
        }
        best = MICA_MAX(best, moe_qbuf_bytes(&m->kt, &L->moe, n_batch));
    }
    return best;
}

static mica_status llama_state_create(const mica_model *m, mica_pool *pool, int32_t n_ctx,
                                      int32_t n_batch, uint32_t kv_type, arch_state **out, mica_err *err) {
    const model_hparams *hp = &m->hp;
    arch_state *s = mica_calloc(1, sizeof *s);
    if (!s) return mica_err_set(err, MICA_ERR_NOMEM, "out of memory");
    mica_status st = kv_cache_uniform_init(&s->kv, (int32_t)hp->n_layer, n_ctx, (int64_t)hp->n_head_kv * hp->head_dim,
                                           (int64_t)hp->n_head_kv * hp->head_dim_v, kv_type, err);
    if (st) goto fail;
    const llama_weights *w = m->arch_data;
    if (w->moe.n_expert > 0 && (st = moe_scratch_init(&s->moe, &w->moe, hp->n_embd, n_batch, err))) goto fail;
    s->n_batch = n_batch;
    s->att_stride = (int64_t)n_ctx + hp->head_dim + hp->head_dim_v;
    const size_t B = (size_t)n_batch;
    const size_t sizes[] = {
        B * hp->n_embd, B * hp->n_embd, B * hp->n_head * hp->head_dim, B * hp->n_head_kv * hp->head_dim,
        B * hp->n_head_kv * hp->head_dim_v, B * hp->n_head * hp->head_dim_v, B * hp->n_embd,
        B * hp->n_ff, B * hp->n_ff, (size_t)pool_n_threads(pool) * (size_t)s->att_stride,
    };
    size_t total = 0;
    for (size_t i = 0; i < MICA_ARRAY_LEN(sizes); i++) total += (sizes[i] + 15) & ~(size_t)15;
    s->block = mica_aligned_alloc(64, total * sizeof(float));
    size_t qb = max_qbuf(m, n_batch);
    s->ops.qbuf = qb ? mica_aligned_alloc(64, qb) : NULL;
    if (!s->block || (qb && !s->ops.qbuf)) {
        st = mica_err_set(err, MICA_ERR_NOMEM, "out of memory allocating %zu bytes of scratch",
                          total * sizeof(float) + qb);
        goto fail;
    }
    float **bufs[] = {&s->x, &s->xb, &s->q, &s->k, &s->v, &s->attn, &s->proj, &s->gate, &s->up,
                      &s->att_scratch};
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
    llama_state_free(s);
    return st;
}

static uint64_t llama_state_kv_bytes(const arch_state *s) { return s->kv.bytes; }

/* ---- forward ---- */

static void llama_forward(const mica_model *m, arch_state *s, const int32_t *tokens, int32_t n,
                          int32_t pos0, float *logits, bool all_logits) {
    const model_hparams *hp = &m->hp;
    const llama_weights *w = m->arch_data;
    const int64_t E = hp->n_embd;
    const int64_t nh = hp->n_head, nkv = hp->n_head_kv, hd = hp->head_dim, hdv = hp->head_dim_v;
    const int64_t qd = nh * hd, kd = nkv * hd, vd = nkv * hdv;
    ops_ctx *c = &s->ops;
    MICA_ASSERT(n >= 1 && n <= s->n_batch && pos0 + n <= s->kv.n_ctx);

    /* token embeddings: x[t] = token_embd[tokens[t]] */
    for (int32_t t = 0; t < n; t++) ops_get_row(&m->kt, &w->token_embd, tokens[t], s->x + t * E);

    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const llama_layer *L = &w->layers[il];

        /* attention rmsnorm */
        for (int32_t t = 0; t < n; t++)
            ops_rmsnorm(s->xb + t * E, s->x + t * E, L->attn_norm.data, E, hp->rms_eps);

        /* q, k, v projections (+ biases for qwen2) */
        ops_matmul(c, &L->wq, s->xb, n, s->q);
        ops_matmul(c, &L->wk, s->xb, n, s->k);
        ops_matmul(c, &L->wv, s->xb, n, s->v);
        if (L->bq.data) ops_add_bias(s->q, L->bq.data, qd, n);
        if (L->bk.data) ops_add_bias(s->k, L->bk.data, kd, n);
        if (L->bv.data) ops_add_bias(s->v, L->bv.data, vd, n);

        for (int32_t t = 0; t < n; t++) {
            float *q = s->q + t * qd, *k = s->k + t * kd;
            /* per-head q/k rmsnorm (qwen3), before rope */
            if (L->q_norm.data) {
                for (int64_t h = 0; h < nh; h++) ops_rmsnorm(q + h * hd, q + h * hd, L->q_norm.data, hd, hp->rms_eps);
                for (int64_t h = 0; h < nkv; h++) ops_rmsnorm(k + h * hd, k + h * hd, L->k_norm.data, hd, hp->rms_eps);
            }
            /* rope */
            ops_rope(q, nh, hd, hp->n_rot, pos0 + t, hp->rope_theta, hp->rope_mode);
            ops_rope(k, nkv, hd, hp->n_rot, pos0 + t, hp->rope_theta, hp->rope_mode);
            /* store k, v in the cache at their positions (converted to its type) */
            kv_cache_hybrid_put(&s->kv, &m->kt, (int32_t)il, pos0 + t, k, s->v + t * vd);
        }

        /* causal attention over the cache, GQA */
        attn_over_cache(c, hp, &s->kv, il, s->q, s->attn, n, pos0, s->att_scratch, s->att_stride);

        /* output projection and residual */
        ops_matmul(c, &L->wo, s->attn, n, s->proj);
        for (int64_t i = 0; i < n * E; i++) s->x[i] += s->proj[i];

        /* ffn rmsnorm, SwiGLU (or the mixture of experts), residual */
        for (int32_t t = 0; t < n; t++)
            ops_rmsnorm(s->xb + t * E, s->x + t * E, L->ffn_norm.data, E, hp->rms_eps);
        if (w->moe.n_expert > 0) {
            moe_forward(c, &w->moe, &L->moe, &s->moe, s->xb, n, E, s->proj);
        } else {
            /* gate = silu(xb . gate) * (xb . up): one quantisation of xb, one pass */
            ops_matmul_swiglu(c, &L->ffn_gate, &L->ffn_up, s->xb, n, s->gate, s->up);
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

/* ---- registry entries ---- */

static mica_status load_llama(mica_model *m, mica_err *err) {
    static const llama_variant v = {ROPE_NORM, false, false, 1e-5f};
    return llama_load_variant(m, &v, err);
}
static mica_status load_qwen2(mica_model *m, mica_err *err) {
    static const llama_variant v = {ROPE_NEOX, true, false, 1e-6f};
    return llama_load_variant(m, &v, err);
}
static mica_status load_qwen3(mica_model *m, mica_err *err) {
    static const llama_variant v = {ROPE_NEOX, false, true, 1e-6f};
    return llama_load_variant(m, &v, err);
}

const arch_ops arch_llama_ops = {"llama", load_llama, llama_unload, llama_state_create, llama_state_free, llama_forward,
                                 llama_state_kv_bytes};
const arch_ops arch_qwen2_ops = {"qwen2", load_qwen2, llama_unload, llama_state_create, llama_state_free, llama_forward,
                                 llama_state_kv_bytes};
const arch_ops arch_qwen3_ops = {"qwen3", load_qwen3, llama_unload, llama_state_create, llama_state_free, llama_forward,
                                 llama_state_kv_bytes};
