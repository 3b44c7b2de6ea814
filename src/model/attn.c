/*
 * attn.c - the shared pre-norm self-attention block (see attn.h).
 * Layer: model.
 */
#include "model/attn.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- load ---- */

mica_status attn_read_hparams(mica_model *m, const attn_config *cfg, mica_err *err) {
    model_hparams *hp = &m->hp;
    const char *path = gguf_path(m->gguf);
    const char *arch = m->arch->name;
    mica_status st;
    memset(hp, 0, sizeof *hp);
    hp->n_ctx_train = 2048;
    hp->rope_theta = 10000.0f;
    hp->rms_eps = cfg->default_eps;
    hp->rope_mode = cfg->rope_mode;
    if ((st = hparams_u32(m, "embedding_length", &hp->n_embd, true, err))) return st;
    if ((st = hparams_u32(m, "block_count", &hp->n_layer, true, err))) return st;
    if ((st = hparams_u32(m, "attention.head_count", &hp->n_head, true, err))) return st;
    hp->n_head_kv = hp->n_head;
    if ((st = hparams_u32(m, "attention.head_count_kv", &hp->n_head_kv, false, err))) return st;
    if ((st = hparams_u32(m, "feed_forward_length", &hp->n_ff, false, err))) return st;
    if ((st = hparams_u32(m, "context_length", &hp->n_ctx_train, false, err))) return st;
    if ((st = hparams_f32(m, "rope.freq_base", &hp->rope_theta, false, err))) return st;
    if ((st = hparams_f32(m, "attention.layer_norm_rms_epsilon", &hp->rms_eps, false, err))) return st;

    if (hp->n_embd == 0 || hp->n_embd > MODEL_MAX_EMBD)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: %s.embedding_length %u out of range", path, arch,
                            hp->n_embd);
    if (hp->n_layer == 0 || hp->n_layer > MODEL_MAX_LAYERS)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: %s.block_count %u out of range (1..%d)", path, arch,
                            hp->n_layer, MODEL_MAX_LAYERS);
    if (hp->n_head == 0 || hp->n_head > MODEL_MAX_HEADS || hp->n_head_kv == 0 ||
        hp->n_head % hp->n_head_kv != 0)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: %s head counts %u/%u invalid", path, arch,
                            hp->n_head, hp->n_head_kv);
    if (hp->n_ff > MODEL_MAX_FF)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: %s.feed_forward_length %u out of range", path,
                            arch, hp->n_ff);

    hp->head_dim = hp->n_embd / hp->n_head;
    if ((st = hparams_u32(m, "attention.key_length", &hp->head_dim, false, err))) return st;
    hp->head_dim_v = hp->head_dim;
    if ((st = hparams_u32(m, "attention.value_length", &hp->head_dim_v, false, err))) return st;
    hp->n_rot = hp->head_dim;
    if ((st = hparams_u32(m, "rope.dimension_count", &hp->n_rot, false, err))) return st;
    if (hp->head_dim == 0 || hp->head_dim > MODEL_MAX_HEAD_DIM || hp->head_dim_v == 0 ||
        hp->head_dim_v > MODEL_MAX_HEAD_DIM)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: head size %u/%u out of range", path,
                            hp->head_dim, hp->head_dim_v);
    if (hp->n_rot == 0 || hp->n_rot > hp->head_dim || hp->n_rot % 2 != 0)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: %s.rope.dimension_count %u invalid for head size %u",
                            path, arch, hp->n_rot, hp->head_dim);
    if (!(hp->rope_theta > 0.0f) || !isfinite(hp->rope_theta))
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: %s.rope.freq_base must be positive", path, arch);
    if (!(hp->rms_eps > 0.0f) || !(hp->rms_eps < 1.0f))
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: %s.attention.layer_norm_rms_epsilon out of range",
                            path, arch);

    const gguf_tensor *emb = gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!emb) return mica_err_set(err, MICA_ERR_FORMAT, "%s: missing tensor 'token_embd.weight'", path);
    if (emb->ne[1] <= 0 || emb->ne[1] > MODEL_MAX_VOCAB)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: token_embd.weight vocabulary size out of range", path);
    hp->n_vocab = (uint32_t)emb->ne[1];
    return MICA_OK;
}

mica_status attn_bind(const mica_model *m, const attn_config *cfg, uint32_t il, attn_layer *L,
                      mica_err *err) {
    const model_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd;
    const int64_t qd = (int64_t)hp->n_head * hp->head_dim;
    const int64_t kd = (int64_t)hp->n_head_kv * hp->head_dim;
    const int64_t vd = (int64_t)hp->n_head_kv * hp->head_dim_v;
    const int64_t od = (int64_t)hp->n_head * hp->head_dim_v;
    const bool full = cfg->qk_norm == ATTN_QK_NORM_FULL;
    char name[96];
    mica_status st;
#define ATTN_BIND(field, suffix, nd, optional, float_only, ...)                                    \
    do {                                                                                           \
        snprintf(name, sizeof name, "blk.%u." suffix, il);                                         \
        const int64_t ne_[] = {__VA_ARGS__};                                                       \
        if ((st = weights_bind(m, &L->field, name, nd, ne_, optional, float_only, err))) return st; \
    } while (0)
    memset(L, 0, sizeof *L);
    ATTN_BIND(attn_norm, "attn_norm.weight", 1, false, true, E);
    ATTN_BIND(wq, "attn_q.weight", 2, false, false, E, qd);
    ATTN_BIND(wk, "attn_k.weight", 2, false, false, E, kd);
    ATTN_BIND(wv, "attn_v.weight", 2, false, false, E, vd);
    ATTN_BIND(wo, "attn_output.weight", 2, false, false, od, E);
    if (cfg->has_qkv_bias) {
        ATTN_BIND(bq, "attn_q.bias", 1, false, true, qd);
        ATTN_BIND(bk, "attn_k.bias", 1, false, true, kd);
        ATTN_BIND(bv, "attn_v.bias", 1, false, true, vd);
    }
    if (cfg->qk_norm != ATTN_QK_NORM_NONE) {
        ATTN_BIND(q_norm, "attn_q_norm.weight", 1, false, true, full ? qd : (int64_t)hp->head_dim);
        ATTN_BIND(k_norm, "attn_k_norm.weight", 1, false, true, full ? kd : (int64_t)hp->head_dim);
    }
#undef ATTN_BIND
    return MICA_OK;
}

size_t attn_qbuf_bytes(const kern_table *kt, const attn_layer *L, int32_t n_batch) {
    const tensor_view *all[] = {&L->wq, &L->wk, &L->wv, &L->wo};
    size_t best = 0;
    for (size_t i = 0; i < MICA_ARRAY_LEN(all); i++) {
        size_t b = ops_qbuf_bytes(kt, all[i]->type, all[i]->ne[0], n_batch);
        best = MICA_MAX(best, b);
    }
    return best;
}

/* ---- scratch ---- */

void attn_scratch_deinit(attn_scratch *s) {
    mica_free(s->block);
    memset(s, 0, sizeof *s);
}

mica_status attn_scratch_init(attn_scratch *s, const model_hparams *hp, int32_t n_batch,
                              int32_t n_ctx, int n_threads, mica_err *err) {
    memset(s, 0, sizeof *s);
    const uint64_t B = (uint64_t)n_batch;
    const uint64_t n[] = {
        B * hp->n_embd, B * hp->n_head * hp->head_dim, B * hp->n_head_kv * hp->head_dim,
        B * hp->n_head_kv * hp->head_dim_v, B * hp->n_head * hp->head_dim_v, B * hp->n_embd,
        (uint64_t)n_threads * ((uint64_t)n_ctx + hp->head_dim + hp->head_dim_v),
    }; /* no overflow: n_batch <= 65536 and every width <= 2^20 (load caps) */
    uint64_t total = 0;
    for (size_t i = 0; i < MICA_ARRAY_LEN(n); i++) total += (n[i] + 15) & ~(uint64_t)15;
    if (total > SIZE_MAX / sizeof(float)) return mica_err_set(err, MICA_ERR_LIMIT, "attention scratch size overflows");
    s->block = mica_aligned_alloc(64, (size_t)total * sizeof(float));
    if (!s->block)
        return mica_err_set(err, MICA_ERR_NOMEM, "out of memory allocating %" PRIu64 " bytes of scratch",
                            total * (uint64_t)sizeof(float));
    float **bufs[] = {&s->xb, &s->q, &s->k, &s->v, &s->out, &s->proj, &s->att};
    float *p = s->block;
    for (size_t i = 0; i < MICA_ARRAY_LEN(bufs); i++) {
        *bufs[i] = p;
        p += (n[i] + 15) & ~(uint64_t)15;
    }
    s->att_stride = (int64_t)n_ctx + hp->head_dim + hp->head_dim_v;
    return MICA_OK;
}

/* ---- forward ---- */

void attn_over_cache(ops_ctx *c, const model_hparams *hp, const kv_cache_hybrid *kv, uint32_t il,
                     const float *q, float *out, int32_t n, int32_t pos0, float *att, int64_t att_stride) {
    const kv_layer *KV = &kv->layers[il];
    const int64_t nh = hp->n_head, nkv = hp->n_head_kv, hd = hp->head_dim, hdv = hp->head_dim_v;
    MICA_ASSERT(il < (uint32_t)kv->n_layer && !KV->is_ring && KV->k_dim == nkv * hd && KV->v_dim == nkv * hdv);
    MICA_ASSERT(att_stride >= (int64_t)pos0 + n + hd + hdv);
    if (kv->type == MICA_DTYPE_F32) { /* the plain kernel: rows are float arrays */
        ops_attn_args a = {
            .q = q, .k = KV->k, .v = KV->v, .out = out, .n_tok = n, .pos0 = pos0, .n_head = nh,
            .n_head_kv = nkv, .head_dim = hd, .head_dim_v = hdv, .k_stride = KV->k_dim,
            .v_stride = KV->v_dim, .scale = 1.0f / sqrtf((float)hd), .scratch = att, .kt = c->kt,
        };
        /* ops_attention takes pos0 + n floats per thread: within the asserted size */
        ops_attention(c->pool, &a);
        return;
    }
    ops_attn_ext_args a = {
        .kt = c->kt, .q = q, .k = KV->k, .v = KV->v, .out = out, .n_tok = n, .pos0 = pos0,
        .n_head = nh, .n_head_kv = nkv, .head_dim = hd, .head_dim_v = hdv,
        .k_row_bytes = KV->k_row_bytes, .v_row_bytes = KV->v_row_bytes, .kv_type = kv->type,
        .scale = 1.0f / sqrtf((float)hd), .window = 0, .n_slots = 0, .sinks = NULL,
        .scratch = att, .scratch_stride = att_stride,
    };
    ops_attention_ext(c->pool, &a);
}

void attn_forward(ops_ctx *c, const model_hparams *hp, const attn_config *cfg, const attn_layer *L,
                  kv_cache_hybrid *kv, uint32_t il, attn_scratch *s, float *x, int32_t n, int32_t pos0) {
    const int64_t E = hp->n_embd;
    const int64_t nh = hp->n_head, nkv = hp->n_head_kv, hd = hp->head_dim, hdv = hp->head_dim_v;
    const int64_t qd = nh * hd, kd = nkv * hd, vd = nkv * hdv;
    MICA_ASSERT(n >= 1 && pos0 + n <= kv->n_ctx);

    /* attention rmsnorm */
    for (int32_t t = 0; t < n; t++)
        ops_rmsnorm(s->xb + t * E, x + t * E, L->attn_norm.data, E, hp->rms_eps);

    /* q, k, v projections (+ biases) */
    ops_matmul(c, &L->wq, s->xb, n, s->q);
    ops_matmul(c, &L->wk, s->xb, n, s->k);
    ops_matmul(c, &L->wv, s->xb, n, s->v);
    if (L->bq.data) ops_add_bias(s->q, L->bq.data, qd, n);
    if (L->bk.data) ops_add_bias(s->k, L->bk.data, kd, n);
    if (L->bv.data) ops_add_bias(s->v, L->bv.data, vd, n);

    for (int32_t t = 0; t < n; t++) {
        float *q = s->q + t * qd, *k = s->k + t * kd;
        /* q/k rmsnorm before rope: per head, or over the whole vector */
        if (cfg->qk_norm == ATTN_QK_NORM_HEAD) {
            for (int64_t h = 0; h < nh; h++) ops_rmsnorm(q + h * hd, q + h * hd, L->q_norm.data, hd, hp->rms_eps);
            for (int64_t h = 0; h < nkv; h++) ops_rmsnorm(k + h * hd, k + h * hd, L->k_norm.data, hd, hp->rms_eps);
        } else if (cfg->qk_norm == ATTN_QK_NORM_FULL) {
            ops_rmsnorm(q, q, L->q_norm.data, qd, hp->rms_eps);
            ops_rmsnorm(k, k, L->k_norm.data, kd, hp->rms_eps);
        }
        /* rope */
        ops_rope(q, nh, hd, hp->n_rot, pos0 + t, hp->rope_theta, hp->rope_mode);
        ops_rope(k, nkv, hd, hp->n_rot, pos0 + t, hp->rope_theta, hp->rope_mode);
        /* store k, v in the cache at their positions (converted to its type) */
        kv_cache_hybrid_put(kv, c->kt, (int32_t)il, pos0 + t, k, s->v + t * vd);
    }

    /* causal attention over the cache, GQA */
    attn_over_cache(c, hp, kv, il, s->q, s->out, n, pos0, s->att, s->att_stride);

    /* output projection and residual */
    ops_matmul(c, &L->wo, s->out, n, s->proj);
    for (int64_t i = 0; i < n * E; i++) x[i] += s->proj[i];
}
