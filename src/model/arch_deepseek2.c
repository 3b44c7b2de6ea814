/*
 * arch_deepseek2.c - `deepseek2`: DeepSeek-V2(-Lite) and DeepSeek-V3
 * (MODEL_FAMILIES.md 4; GGUF keys and tensors FORMATS.md 4.2-4.6).
 *
 * Each block is multi-head latent attention (MLA, 4.2) followed by either a
 * dense SwiGLU FFN (the first leading_dense_block_count blocks) or
 * DeepSeekMoE (4.3: routed experts, softmax or sigmoid + selection bias,
 * optional group-limited selection, renormalisation, scaling, shared
 * experts; moe.c).
 *
 * MLA for a token x (h = RMSNorm(x)), per head of hk = nope + rope dims:
 *   q      = W_q h, or W_qb RMSNorm(W_qa h) when q_lora_rank > 0
 *            q_h = [q_nope_h (nope) | q_pe_h (rope)]
 *   latent = W_kva h = [c_kv (kv_lora) | k_pe (rope)]; c_kv = RMSNorm(c_kv)
 *   RoPE (NORM pairs, YaRN frequencies 4.4) on every q_pe_h and on k_pe
 *   k_h = [W_kb,h c_kv | k_pe], v_h = W_vb,h c_kv (non-absorbed form)
 *   o_h = softmax(scale * q_h . k_h) v_h,  out = W_o concat(o_h)
 *   scale = m^2 / sqrt(hk), m = 1 + yarn_log_multiplier * ln(factor) (YaRN)
 * The cache keeps only [c_kv | k_pe] per token and layer (kv_lora + rope
 * floats, shared by all heads). Attention runs in the absorbed form:
 *   q~_h = W_kb,h^T q_nope_h (kv_lora),  score = q~_h . c_kv + q_pe_h . k_pe,
 *   o~_h = sum_j p_j c_kv_j,  o_h = W_vb,h o~_h,
 * i.e. multi-query attention with key [c_kv | k_pe] (kv_lora + rope wide)
 * and value c_kv, between a per-head up- and down-projection.
 *
 * W_kb / W_vb come from attn_k_b {nope, kv_lora, n_head} (row r of slice h =
 * column r of W_kb,h) and attn_v_b {kv_lora, v, n_head} (current converter),
 * or from the legacy attn_kv_b {kv_lora, n_head*(nope + v)} (per head nope
 * rows of W_kb,h then v rows of W_vb,h). For the legacy tensor the
 * absorption q~_h = sum_i q_nope_h[i] * row_i(W_kb,h) is formed row by row.
 *
 * Layer: model. Weights are views into the mapped file (see model.h).
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/attn.h"
#include "model/kv_cache.h"
#include "model/deepseek2.h"
#include "model/model.h"
#include "model/moe.h"

#define DS2_MAX_RANK 65536 /* cap on q_lora_rank and kv_lora_rank */

typedef struct ds2_layer {
    tensor_view attn_norm;          /* [n_embd] */
    tensor_view wq;                 /* [n_embd, n_head*hk]; data NULL when q_lora > 0 */
    tensor_view wq_a;               /* [n_embd, q_lora] */
    tensor_view q_a_norm;           /* [q_lora] */
    tensor_view wq_b;               /* [q_lora, n_head*hk] */
    tensor_view wkv_a;              /* [n_embd, kv_lora + rope] */
    tensor_view kv_a_norm;          /* [kv_lora] */
    tensor_view wk_b;               /* [nope, kv_lora, n_head]; data NULL in legacy files */
    tensor_view wv_b;               /* [kv_lora, v, n_head]; data NULL in legacy files */
    tensor_view wkv_b;              /* legacy [kv_lora, n_head*(nope + v)]; data NULL otherwise */
    tensor_view wo;                 /* [n_head*v, n_embd] */
    tensor_view ffn_norm;           /* [n_embd] */
    tensor_view ffn_gate, ffn_up;   /* dense blocks: [n_embd, n_ff] */
    tensor_view ffn_down;           /* dense blocks: [n_ff, n_embd] */
    moe_layer moe;                  /* the other blocks */
} ds2_layer;

typedef struct ds2_weights {
    int64_t q_lora, kv_lora;        /* ranks; q_lora 0: plain attn_q */
    int64_t nope, rope, hv;         /* q/k head = nope + rope dims, v head = hv dims */
    uint32_t n_dense;               /* leading dense blocks */
    float kq_scale;                 /* softmax scale, YaRN correction included */
    float inv_freq[MODEL_MAX_HEAD_DIM / 2]; /* RoPE frequencies of the rope slice */
    moe_params moe;                 /* n_expert 0: every block dense */
    tensor_view token_embd;         /* [n_embd, n_vocab] */
    tensor_view output_norm;        /* [n_embd] */
    tensor_view output;             /* [n_embd, n_vocab]; = token_embd when tied */
    ds2_layer *layers;              /* [n_layer] */
} ds2_weights;

struct arch_state {
    ops_ctx ops;
    int32_t n_batch, n_ctx;
    int64_t lat_dim;  /* kv_lora + rope */
    uint64_t lat_bytes; /* bytes of latent */
    uint32_t lat_type;  /* row type of the latent cache: F32, F16 or Q8_0 */
    uint64_t lat_row_bytes; /* bytes of one row of lat_dim values in lat_type */
    void *latent;     /* [n_layer][n_ctx] rows of lat_dim: c_kv (normed), then k_pe (roped) */
    float *x;         /* [n_batch][n_embd] residual stream */
    float *xb;        /* [n_batch][n_embd] normed input */
    float *q;         /* [n_batch][n_head*hk] */
    float *qa;        /* [n_batch][q_lora] (q_lora > 0) */
    float *kva;       /* [n_batch][lat_dim] */
    float *qabs;      /* [n_batch][n_head][lat_dim] absorbed queries [q~_h | q_pe_h] */
    float *gin;       /* [n_batch][max(nope, kv_lora)] one head's gathered rows */
    float *gout;      /* [n_batch][max(kv_lora, v)] */
    float *att_out;   /* [n_batch][n_head][kv_lora] o~_h */
    float *o;         /* [n_batch][n_head*v] */
    float *proj;      /* [n_batch][n_embd] attention / FFN output */
    float *gate, *up; /* [n_batch][n_ff] dense FFN */
    float *att;       /* [n_threads][att_stride] attention scores (+ a dequantised key and value) */
    int64_t att_stride; /* n_ctx + lat_dim + kv_lora */
    float *row;       /* [kv_lora] one dequantised legacy attn_kv_b row */
    void *block;      /* behind the activation buffers */
    moe_scratch moe;
};

/* ---- load ---- */

static void ds2_unload(mica_model *m) {
    ds2_weights *w = m->arch_data;
    if (!w) return;
    mica_free(w->layers);
    mica_free(w);
    m->arch_data = NULL;
}

/*
 * MLA head sizes. Files converted for MLA carry key_length_mla (nope + rope)
 * and value_length_mla, with key_length = kv_lora + rope and value_length =
 * kv_lora; older files have only key_length = nope + rope, value_length = v.
 */
static mica_status ds2_read_mla(mica_model *m, ds2_weights *w, mica_err *err) {
    model_hparams *hp = &m->hp;
    const char *path = gguf_path(m->gguf);
    uint32_t q_lora = 0, kv_lora = 0, hk_mla = 0, hv_mla = 0;
    mica_status st;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.dimension_count", m->arch->name);
    if (!gguf_find(m->gguf, key))
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: missing key '%s' (the rope slice of each head)",
                            path, key);
    if ((st = hparams_u32(m, "attention.q_lora_rank", &q_lora, false, err))) return st;
    if ((st = hparams_u32(m, "attention.kv_lora_rank", &kv_lora, true, err))) return st;
    if ((st = hparams_u32(m, "attention.key_length_mla", &hk_mla, false, err))) return st;
    if ((st = hparams_u32(m, "attention.value_length_mla", &hv_mla, false, err))) return st;
    if (q_lora > DS2_MAX_RANK)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: deepseek2.attention.q_lora_rank %u out of range", path,
                            q_lora);
    if (kv_lora == 0 || kv_lora > DS2_MAX_RANK)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: deepseek2.attention.kv_lora_rank %u out of range",
                            path, kv_lora);
    const uint32_t rope = hp->n_rot;
    uint32_t hk = hp->head_dim, hv = hp->head_dim_v;
    if (hk_mla != 0 || hv_mla != 0) {
        if (hk_mla == 0 || hv_mla == 0 || hk_mla > MODEL_MAX_HEAD_DIM || hv_mla > MODEL_MAX_HEAD_DIM)
            return mica_err_set(err, MICA_ERR_FORMAT,
                                "%s: deepseek2.attention.key_length_mla %u / value_length_mla %u invalid",
                                path, hk_mla, hv_mla);
        snprintf(key, sizeof key, "%s.attention.key_length", m->arch->name);
        if (gguf_find(m->gguf, key) && (uint64_t)hk != (uint64_t)kv_lora + rope)
            return mica_err_set(err, MICA_ERR_FORMAT,
                                "%s: deepseek2.attention.key_length %u != kv_lora_rank %u + "
                                "rope.dimension_count %u", path, hk, kv_lora, rope);
        snprintf(key, sizeof key, "%s.attention.value_length", m->arch->name);
        if (gguf_find(m->gguf, key) && hv != kv_lora)
            return mica_err_set(err, MICA_ERR_FORMAT,
                                "%s: deepseek2.attention.value_length %u != kv_lora_rank %u", path, hv,
                                kv_lora);
        hk = hk_mla;
        hv = hv_mla;
    }
    if (rope >= hk)
        return mica_err_set(err, MICA_ERR_FORMAT,
                            "%s: deepseek2.rope.dimension_count %u leaves no non-rotary dims in a %u-dim head",
                            path, rope, hk);
    hp->head_dim = hk;
    hp->head_dim_v = hv;
    hp->n_head_kv = hp->n_head; /* logically every head has its own keys */
    hp->rope_mode = ROPE_NORM;  /* adjacent pairs on the rope slice (MODEL_FAMILIES 0.4) */
    w->q_lora = q_lora;
    w->kv_lora = kv_lora;
    w->rope = rope;
    w->nope = (int64_t)hk - rope;
    w->hv = hv;
    return MICA_OK;
}

/*
 * RoPE frequencies and the softmax scale from rope.scaling.* (none, linear
 * or yarn). YaRN (4.4): frequencies ramped between yarn_beta_fast (default
 * 32) and yarn_beta_slow (default 1) over original_context_length; cos/sin
 * unscaled (mscale / mscale_all_dim = 1 in both released checkpoints, and
 * the GGUF keeps only the latter); scale multiplied by m^2 with
 * m = 1 + yarn_log_multiplier * ln(factor) (the key holds 0.1 * mscale_all_dim).
 */
static mica_status ds2_read_rope(mica_model *m, ds2_weights *w, mica_err *err) {
    const model_hparams *hp = &m->hp;
    const char *path = gguf_path(m->gguf);
    char key[128];
    gguf_str type = {0};
    mica_status st;
    snprintf(key, sizeof key, "%s.rope.scaling.type", m->arch->name);
    if ((st = gguf_get_str(m->gguf, key, &type, err))) return st;
    const bool yarn = type.ptr && gguf_str_eq(type, "yarn");
    const bool linear = type.ptr && gguf_str_eq(type, "linear");
    if (type.ptr && !yarn && !linear && !gguf_str_eq(type, "none"))
        return mica_err_set(err, MICA_ERR_UNSUPPORTED, "%s: %s '%.*s' is not supported (none, linear, yarn)",
                            path, key, (int)MICA_MIN(type.len, 64u), type.ptr);
    float factor = 1.0f, log_mul = 0.0f, beta_fast = 32.0f, beta_slow = 1.0f;
    uint32_t n_ctx_orig = hp->n_ctx_train;
    if (yarn || linear) {
        if ((st = hparams_f32(m, "rope.scaling.factor", &factor, true, err))) return st;
        if (!(factor >= 1.0f) || !isfinite(factor))
            return mica_err_set(err, MICA_ERR_FORMAT, "%s: deepseek2.rope.scaling.factor must be >= 1", path);
    }
    if (yarn) {
        if ((st = hparams_u32(m, "rope.scaling.original_context_length", &n_ctx_orig, true, err))) return st;
        if ((st = hparams_f32(m, "rope.scaling.yarn_log_multiplier", &log_mul, false, err))) return st;
        if ((st = hparams_f32(m, "rope.scaling.yarn_beta_fast", &beta_fast, false, err))) return st;
        if ((st = hparams_f32(m, "rope.scaling.yarn_beta_slow", &beta_slow, false, err))) return st;
        if (n_ctx_orig == 0 || !(beta_fast > 0.0f) || !(beta_slow > 0.0f) || !isfinite(log_mul) ||
            !isfinite(beta_fast) || !isfinite(beta_slow))
            return mica_err_set(err, MICA_ERR_FORMAT,
                                "%s: deepseek2.rope.scaling original_context_length / yarn_* values invalid",
                                path);
    }
    if (!(hp->rope_theta > 1.0f))
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: deepseek2.rope.freq_base must be > 1", path);
    if (yarn) {
        ops_rope_yarn_freqs(w->inv_freq, w->rope, hp->rope_theta, factor, (float)n_ctx_orig, beta_fast,
                            beta_slow);
    } else {
        ops_rope_yarn_freqs(w->inv_freq, w->rope, hp->rope_theta, 1.0f, 1.0f, 1.0f, 1.0f);
        for (int64_t j = 0; j < w->rope / 2; j++) w->inv_freq[j] /= factor; /* linear: positions / factor */
    }
    const double mscale = yarn ? 1.0 + (double)log_mul * log((double)factor) : 1.0;
    w->kq_scale = (float)(mscale * mscale / sqrt((double)(w->nope + w->rope)));
    return MICA_OK;
}

static mica_status ds2_bind_layer(mica_model *m, ds2_weights *w, uint32_t il, ds2_layer *L,
                                  mica_err *err) {
    const model_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, nh = hp->n_head, F = hp->n_ff;
    const int64_t hk = w->nope + w->rope, R = w->kv_lora;
    char name[96];
    mica_status st;
#define DS2_BIND(field, suffix, nd, optional, float_only, ...)                                     \
    do {                                                                                           \
        snprintf(name, sizeof name, "blk.%u." suffix, il);                                         \
        const int64_t ne_[] = {__VA_ARGS__};                                                       \
        if ((st = weights_bind(m, &L->field, name, nd, ne_, optional, float_only, err))) return st; \
    } while (0)
    DS2_BIND(attn_norm, "attn_norm.weight", 1, false, true, E);
    if (w->q_lora > 0) {
        DS2_BIND(wq_a, "attn_q_a.weight", 2, false, false, E, w->q_lora);
        DS2_BIND(q_a_norm, "attn_q_a_norm.weight", 1, false, true, w->q_lora);
        DS2_BIND(wq_b, "attn_q_b.weight", 2, false, false, w->q_lora, nh * hk);
    } else {
        DS2_BIND(wq, "attn_q.weight", 2, false, false, E, nh * hk);
    }
    DS2_BIND(wkv_a, "attn_kv_a_mqa.weight", 2, false, false, E, R + w->rope);
    DS2_BIND(kv_a_norm, "attn_kv_a_norm.weight", 1, false, true, R);
    snprintf(name, sizeof name, "blk.%u.attn_k_b.weight", il);
    const bool split = gguf_find_tensor(m->gguf, name) != NULL;
    snprintf(name, sizeof name, "blk.%u.attn_kv_b.weight", il);
    if (split || !gguf_find_tensor(m->gguf, name)) { /* a file with neither names attn_k_b */
        DS2_BIND(wk_b, "attn_k_b.weight", 3, false, false, w->nope, R, nh);
        DS2_BIND(wv_b, "attn_v_b.weight", 3, false, false, R, w->hv, nh);
    } else {
        DS2_BIND(wkv_b, "attn_kv_b.weight", 2, false, false, R, nh * (w->nope + w->hv));
    }
    DS2_BIND(wo, "attn_output.weight", 2, false, false, nh * w->hv, E);
    DS2_BIND(ffn_norm, "ffn_norm.weight", 1, false, true, E);
    if (il < w->n_dense) {
        DS2_BIND(ffn_gate, "ffn_gate.weight", 2, false, false, E, F);
        DS2_BIND(ffn_up, "ffn_up.weight", 2, false, false, E, F);
        DS2_BIND(ffn_down, "ffn_down.weight", 2, false, false, F, E);
        return MICA_OK;
    }
#undef DS2_BIND
    return moe_bind(m, il, &w->moe, E, &L->moe, err);
}

static mica_status ds2_load(mica_model *m, mica_err *err) {
    static const attn_config cfg = {ROPE_NORM, ATTN_QK_NORM_NONE, false, 1e-6f};
    mica_status st = attn_read_hparams(m, &cfg, err);
    if (st) return st;
    const model_hparams *hp = &m->hp;
    const char *path = gguf_path(m->gguf);
    ds2_weights *w = mica_calloc(1, sizeof *w);
    if (!w) return mica_err_set(err, MICA_ERR_NOMEM, "out of memory");
    m->arch_data = w;
    if ((st = ds2_read_mla(m, w, err))) goto fail;
    if ((st = ds2_read_rope(m, w, err))) goto fail;
    if ((st = hparams_u32(m, "leading_dense_block_count", &w->n_dense, false, err))) goto fail;
    if (w->n_dense > hp->n_layer) {
        st = mica_err_set(err, MICA_ERR_FORMAT, "%s: deepseek2.leading_dense_block_count %u > block_count %u",
                          path, w->n_dense, hp->n_layer);
        goto fail;
    }
    if (w->n_dense > 0 && hp->n_ff == 0) {
        st = mica_err_set(err, MICA_ERR_FORMAT,
                          "%s: deepseek2.feed_forward_length is needed by the leading dense blocks", path);
        goto fail;
    }
    if (w->n_dense < hp->n_layer) { /* V2 defaults: softmax, raw top-k weights */
        static const moe_params defaults = {.gating = MOE_GATING_SOFTMAX, .norm_topk = false};
        if ((st = moe_read_params(m, &defaults, hp->n_ff, &w->moe, err))) goto fail;
    }
    w->layers = mica_calloc(hp->n_layer, sizeof *w->layers);
    if (!w->layers) { st = mica_err_set(err, MICA_ERR_NOMEM, "out of memory"); goto fail; }
    const int64_t E = hp->n_embd, V = hp->n_vocab;
    if ((st = weights_bind(m, &w->token_embd, "token_embd.weight", 2, (int64_t[]){E, V}, false, false, err))) goto fail;
    if ((st = weights_bind(m, &w->output_norm, "output_norm.weight", 1, (int64_t[]){E}, false, true, err))) goto fail;
    if ((st = weights_bind(m, &w->output, "output.weight", 2, (int64_t[]){E, V}, true, false, err))) goto fail;
    if (!w->output.data) w->output = w->token_embd; /* tied embeddings */
    for (uint32_t il = 0; il < hp->n_layer; il++) /* moe_bind also takes the skipped experts off bytes_per_token */
        if ((st = ds2_bind_layer(m, w, il, &w->layers[il], err))) goto fail;
    return MICA_OK;
fail:
    ds2_unload(m);
    return st;
}

/* ---- session state ---- */

static void ds2_state_free(arch_state *s) {
    if (!s) return;
    moe_scratch_deinit(&s->moe);
    mica_free(s->latent);
    mica_free(s->block);
    mica_free(s->ops.qbuf);
    mica_free(s);
}

static size_t ds2_max_qbuf(const mica_model *m, int32_t n_batch) {
    const ds2_weights *w = m->arch_data;
    size_t best = ops_qbuf_bytes(&m->kt, w->output.type, w->output.ne[0], n_batch);
    for (uint32_t il = 0; il < m->hp.n_layer; il++) {
        const ds2_layer *L = &w->layers[il];
        const tensor_view *all[] = {&L->wq, &L->wq_a, &L->wq_b, &L->wkv_a, &L->wk_b, &L->wv_b,
                                    &L->wkv_b, &L->wo, &L->ffn_gate, &L->ffn_up, &L->ffn_down};
        for (size_t i = 0; i < MICA_ARRAY_LEN(all); i++) {
            if (!all[i]->data) continue;
            best = MICA_MAX(best, ops_qbuf_bytes(&m->kt, all[i]->type, all[i]->ne[0], n_batch));
        }
        if (il >= w->n_dense) best = MICA_MAX(best, moe_qbuf_bytes(&m->kt, &L->moe, n_batch));
    }
    return best;
}

static mica_status ds2_state_create(const mica_model *m, mica_pool *pool, int32_t n_ctx,
                                    int32_t n_batch, uint32_t kv_type, arch_state **out, mica_err *err) {
    const model_hparams *hp = &m->hp;
    const ds2_weights *w = m->arch_data;
    arch_state *s = mica_calloc(1, sizeof *s);
    if (!s) return mica_err_set(err, MICA_ERR_NOMEM, "out of memory");
    mica_status st = MICA_OK;
    const uint64_t B = (uint64_t)n_batch, nh = hp->n_head, E = hp->n_embd, R = (uint64_t)w->kv_lora;
    const uint64_t lat = R + (uint64_t)w->rope, hk = (uint64_t)(w->nope + w->rope), hv = (uint64_t)w->hv;
    s->lat_dim = (int64_t)lat;

    /* the latent cache: n_layer * n_ctx rows of kv_lora + rope values of kv_type; the value
     * (c_kv) is the first kv_lora of them, so both widths must fill whole blocks */
    const dtype_traits *tr = dtype_get(kv_type);
    if (!kv_cache_type_ok(kv_type) || !tr || R % tr->blck || lat % tr->blck) {
        st = mica_err_set(err, MICA_ERR_INVALID_ARG, "KV cache type %s cannot hold MLA rows of %" PRIu64
                          " (kv_lora_rank %" PRIu64 ") values", dtype_name(kv_type), lat, R);
        goto fail;
    }
    uint64_t lat_bytes = 0;
    s->lat_type = kv_type;
    if (n_ctx <= 0 || n_batch <= 0 || !dtype_row_bytes(kv_type, (int64_t)lat, &s->lat_row_bytes) ||
        !mica_mul_ok((uint64_t)hp->n_layer * (uint64_t)n_ctx, s->lat_row_bytes, &lat_bytes) ||
        lat_bytes > SIZE_MAX) {
        st = mica_err_set(err, MICA_ERR_LIMIT, "MLA cache size overflows");
        goto fail;
    }
    s->att_stride = (int64_t)n_ctx + (int64_t)lat + (int64_t)R;
    s->latent = mica_aligned_alloc(64, (size_t)lat_bytes);
    s->lat_bytes = s->latent ? lat_bytes : 0;
    if (!s->latent) {
        st = mica_err_set(err, MICA_ERR_NOMEM, "out of memory allocating a %" PRIu64 "-byte MLA cache", lat_bytes);
        goto fail;
    }

    /* activation buffers (widths are capped at load, so B * width does not overflow) */
    const uint64_t n[] = {
        B * E, B * E, B * nh * hk, B * (uint64_t)MICA_MAX(w->q_lora, 1), B * lat, B * nh * lat,
        B * (uint64_t)MICA_MAX(w->nope, w->kv_lora), B * (uint64_t)MICA_MAX(w->kv_lora, w->hv), B * nh * R,
        B * nh * hv, B * E, B * MICA_MAX(hp->n_ff, 1u), B * MICA_MAX(hp->n_ff, 1u),
        (uint64_t)pool_n_threads(pool) * (uint64_t)s->att_stride, R,
    };
    float **bufs[] = {&s->x, &s->xb, &s->q, &s->qa, &s->kva, &s->qabs, &s->gin, &s->gout, &s->att_out,
                      &s->o, &s->proj, &s->gate, &s->up, &s->att, &s->row};
    MICA_STATIC_ASSERT(MICA_ARRAY_LEN(n) == MICA_ARRAY_LEN(bufs), "one size per buffer");
    uint64_t total = 0;
    for (size_t i = 0; i < MICA_ARRAY_LEN(n); i++) total += (n[i] + 15) & ~(uint64_t)15;
    if (total > SIZE_MAX / sizeof(float)) {
        st = mica_err_set(err, MICA_ERR_LIMIT, "MLA scratch size overflows");
        goto fail;
    }
    s->block = mica_aligned_alloc(64, (size_t)total * sizeof(float));
    const size_t qb = ds2_max_qbuf(m, n_batch);
    s->ops.qbuf = qb ? mica_aligned_alloc(64, qb) : NULL;
    if (!s->block || (qb && !s->ops.qbuf)) {
        st = mica_err_set(err, MICA_ERR_NOMEM, "out of memory allocating %" PRIu64 " bytes of scratch",
                          total * (uint64_t)sizeof(float) + qb);
        goto fail;
    }
    float *p = s->block;
    for (size_t i = 0; i < MICA_ARRAY_LEN(bufs); i++) {
        *bufs[i] = p;
        p += (n[i] + 15) & ~(uint64_t)15;
    }
    if (w->moe.n_expert > 0 && (st = moe_scratch_init(&s->moe, &w->moe, hp->n_embd, n_batch, err))) goto fail;
    s->n_batch = n_batch;
    s->n_ctx = n_ctx;
    s->ops.pool = pool;
    s->ops.kt = &m->kt;
    s->ops.qbuf_cap = qb;
    *out = s;
    return MICA_OK;
fail:
    ds2_state_free(s);
    return st;
}

uint64_t deepseek2_kv_bytes(const mica_model *m, int32_t n_ctx, uint32_t kv_type) {
    const ds2_weights *w = m->arch_data;
    const dtype_traits *tr = dtype_get(kv_type);
    uint64_t b = 0, row = 0;
    if (!w || n_ctx < 0 || !kv_cache_type_ok(kv_type) || !tr || w->kv_lora % tr->blck ||
        (w->kv_lora + w->rope) % tr->blck || !dtype_row_bytes(kv_type, w->kv_lora + w->rope, &row) ||
        !mica_mul_ok((uint64_t)m->hp.n_layer * (uint64_t)n_ctx, row, &b))
        return UINT64_MAX;
    return b;
}

uint64_t deepseek2_state_kv_bytes(const arch_state *st) { return st->lat_bytes; }

/* ---- forward ---- */

/* The rows of W_vb,h: slice h of attn_v_b, or v rows of the legacy attn_kv_b. */
static void ds2_wv_head(const ds2_weights *w, const ds2_layer *L, int64_t h, tensor_view *out) {
    if (L->wv_b.data) {
        moe_expert_view(&L->wv_b, (int32_t)h, out);
        return;
    }
    *out = L->wkv_b;
    out->ne[1] = w->hv;
    out->data = (const uint8_t *)L->wkv_b.data + (uint64_t)(h * (w->nope + w->hv) + w->nope) * L->wkv_b.row_bytes;
}

/*
 * qabs[t][h] = [W_kb,h^T q_nope_h | q_pe_h] for the n tokens in s->q (the
 * absorbed queries, lat_dim wide).
 */
static void ds2_absorb_q(ops_ctx *c, const mica_model *m, const ds2_weights *w, const ds2_layer *L,
                         arch_state *s, int32_t n) {
    const int64_t nh = m->hp.n_head, nope = w->nope, rope = w->rope, R = w->kv_lora;
    const int64_t hk = nope + rope, lat = s->lat_dim;
    for (int64_t h = 0; h < nh; h++) {
        for (int32_t t = 0; t < n; t++) /* gin[t] = q_nope_h of token t */
            memcpy(s->gin + t * nope, s->q + (t * nh + h) * hk, (size_t)nope * sizeof(float));
        if (L->wk_b.data) { /* row r of slice h is column r of W_kb,h: one product */
            tensor_view kb;
            moe_expert_view(&L->wk_b, (int32_t)h, &kb);
            ops_matmul(c, &kb, s->gin, n, s->gout); /* [n][kv_lora] */
        } else { /* legacy: sum_i q_nope_h[i] * row_i(W_kb,h) */
            memset(s->gout, 0, (size_t)n * (size_t)R * sizeof(float));
            for (int64_t i = 0; i < nope; i++) {
                ops_get_row(&m->kt, &L->wkv_b, h * (nope + w->hv) + i, s->row);
                for (int32_t t = 0; t < n; t++) {
                    const float a = s->gin[t * nope + i];
                    float *g = s->gout + t * R;
                    for (int64_t r = 0; r < R; r++) g[r] += a * s->row[r];
                }
            }
        }
        for (int32_t t = 0; t < n; t++) {
            float *qa = s->qabs + (t * nh + h) * lat;
            memcpy(qa, s->gout + t * R, (size_t)R * sizeof(float));
            memcpy(qa + R, s->q + (t * nh + h) * hk + nope, (size_t)rope * sizeof(float));
        }
    }
}

/* x[n][n_embd] += MLA block of layer il (keys stored in the latent cache). */
static void ds2_attention(const mica_model *m, arch_state *s, uint32_t il, int32_t n, int32_t pos0) {
    const model_hparams *hp = &m->hp;
    const ds2_weights *w = m->arch_data;
    const ds2_layer *L = &w->layers[il];
    const int64_t E = hp->n_embd, nh = hp->n_head, R = w->kv_lora, rope = w->rope, hv = w->hv;
    const int64_t hk = w->nope + rope, lat = s->lat_dim;
    ops_ctx *c = &s->ops;
    /* this layer's [n_ctx] rows of lat values */
    uint8_t *cache = (uint8_t *)s->latent + (uint64_t)il * (uint64_t)s->n_ctx * s->lat_row_bytes;

    /* attention rmsnorm */
    for (int32_t t = 0; t < n; t++) ops_rmsnorm(s->xb + t * E, s->x + t * E, L->attn_norm.data, E, hp->rms_eps);

    /* q: direct, or through the normed low-rank latent */
    if (w->q_lora > 0) {
        ops_matmul(c, &L->wq_a, s->xb, n, s->qa); /* [n][q_lora] */
        for (int32_t t = 0; t < n; t++)
            ops_rmsnorm(s->qa + t * w->q_lora, s->qa + t * w->q_lora, L->q_a_norm.data, w->q_lora, hp->rms_eps);
        ops_matmul(c, &L->wq_b, s->qa, n, s->q);  /* [n][nh*hk] */
    } else {
        ops_matmul(c, &L->wq, s->xb, n, s->q);    /* [n][nh*hk] */
    }

    /* kv latent [c_kv | k_pe]: norm c_kv, rope k_pe and q_pe, store in the cache */
    ops_matmul(c, &L->wkv_a, s->xb, n, s->kva);   /* [n][lat] */
    for (int32_t t = 0; t < n; t++) {
        float *kv = s->kva + t * lat;
        ops_rmsnorm(kv, kv, L->kv_a_norm.data, R, hp->rms_eps);
        ops_rope_freqs(kv + R, 1, rope, rope, pos0 + t, w->inv_freq, ROPE_NORM);
        ops_rope_freqs(s->q + t * nh * hk + w->nope, nh, hk, rope, pos0 + t, w->inv_freq, ROPE_NORM);
        uint8_t *row = cache + (uint64_t)(pos0 + t) * s->lat_row_bytes;
        if (s->lat_type == MICA_DTYPE_F32) memcpy(row, kv, (size_t)lat * sizeof(float));
        else m->kt.ops[s->lat_type].from_float(kv, row, lat);
    }

    /* absorbed queries, then multi-query attention over the latent rows:
     * key [c_kv | k_pe] (lat wide), value c_kv (the first kv_lora floats) */
    ds2_absorb_q(c, m, w, L, s, n);
    if (s->lat_type == MICA_DTYPE_F32) {
        ops_attn_args a = {
            .q = s->qabs, .k = (const float *)cache, .v = (const float *)cache, .out = s->att_out, .n_tok = n,
            .pos0 = pos0, .n_head = nh, .n_head_kv = 1, .head_dim = lat, .head_dim_v = R, .k_stride = lat,
            .v_stride = lat, .scale = w->kq_scale, .scratch = s->att, .kt = &m->kt,
        };
        ops_attention(c->pool, &a);               /* att_out [n][nh][kv_lora] */
    } else { /* quantised rows: c_kv is the row's first kv_lora / blck blocks */
        ops_attn_ext_args a = {
            .kt = &m->kt, .q = s->qabs, .k = cache, .v = cache, .out = s->att_out, .n_tok = n, .pos0 = pos0,
            .n_head = nh, .n_head_kv = 1, .head_dim = lat, .head_dim_v = R, .k_row_bytes = s->lat_row_bytes,
            .v_row_bytes = s->lat_row_bytes, .kv_type = s->lat_type, .scale = w->kq_scale,
            .scratch = s->att, .scratch_stride = s->att_stride,
        };
        ops_attention_ext(c->pool, &a);
    }

    /* per head: o_h = W_vb,h o~_h */
    for (int64_t h = 0; h < nh; h++) {
        for (int32_t t = 0; t < n; t++)
            memcpy(s->gin + t * R, s->att_out + (t * nh + h) * R, (size_t)R * sizeof(float));
        tensor_view vb;
        ds2_wv_head(w, L, h, &vb);
        ops_matmul(c, &vb, s->gin, n, s->gout);   /* [n][hv] */
        for (int32_t t = 0; t < n; t++)
            memcpy(s->o + t * nh * hv + h * hv, s->gout + t * hv, (size_t)hv * sizeof(float));
    }

    /* output projection and residual */
    ops_matmul(c, &L->wo, s->o, n, s->proj);
    for (int64_t i = 0; i < n * E; i++) s->x[i] += s->proj[i];
}

static void ds2_forward(const mica_model *m, arch_state *s, const int32_t *tokens, int32_t n,
                        int32_t pos0, float *logits, bool all_logits) {
    const model_hparams *hp = &m->hp;
    const ds2_weights *w = m->arch_data;
    const int64_t E = hp->n_embd, F = hp->n_ff;
    ops_ctx *c = &s->ops;
    MICA_ASSERT(n >= 1 && n <= s->n_batch && pos0 + n <= s->n_ctx);

    /* token embeddings: x[t] = token_embd[tokens[t]] */
    for (int32_t t = 0; t < n; t++) ops_get_row(&m->kt, &w->token_embd, tokens[t], s->x + t * E);

    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const ds2_layer *L = &w->layers[il];

        /* x += MLA(rmsnorm(x)) */
        ds2_attention(m, s, il, n, pos0);

        /* ffn rmsnorm; dense SwiGLU (leading blocks) or DeepSeekMoE; residual */
        for (int32_t t = 0; t < n; t++) ops_rmsnorm(s->xb + t * E, s->x + t * E, L->ffn_norm.data, E, hp->rms_eps);
        if (il < w->n_dense) {
            ops_matmul(c, &L->ffn_gate, s->xb, n, s->gate); /* [n][n_ff] */
            ops_matmul(c, &L->ffn_up, s->xb, n, s->up);     /* [n][n_ff] */
            ops_swiglu(s->gate, s->gate, s->up, n * F);
            ops_matmul(c, &L->ffn_down, s->gate, n, s->proj); /* [n][n_embd] */
        } else {
            moe_forward(c, &w->moe, &L->moe, &s->moe, s->xb, n, E, s->proj);
        }
        for (int64_t i = 0; i < n * E; i++) s->x[i] += s->proj[i];
    }

    /* final rmsnorm and logits (all rows, or the last one) */
    const int32_t first = all_logits ? 0 : n - 1;
    for (int32_t t = first; t < n; t++) ops_rmsnorm(s->xb + t * E, s->x + t * E, w->output_norm.data, E, hp->rms_eps);
    ops_matmul(c, &w->output, s->xb + first * E, n - first, logits);
}

const arch_ops arch_deepseek2_ops = {"deepseek2", ds2_load, ds2_unload, ds2_state_create, ds2_state_free,
                                     ds2_forward, deepseek2_state_kv_bytes};
