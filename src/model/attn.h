/*
 * attn.h - the pre-norm self-attention block for architecture files that
 * share it (layer: model): hyperparameters, weight binding, scratch and the
 * block itself, x += Wo . Attention(RoPE(norm(Wq h)), RoPE(norm(Wk h)), Wv h)
 * with h = RMSNorm(x) (MODEL_FAMILIES.md 0.1-0.5). Used by the sparse
 * families (arch_qwen3moe.c); arch_llama.c keeps its own copy of the same
 * steps.
 *
 * Variants: RoPE pairing (NORM or NEOX), optional q/k/v biases, and q/k
 * RMSNorm either per head (weights [head_dim], Qwen3) or over the whole
 * projection before the head split (weights [n_head*head_dim] and
 * [n_head_kv*head_dim], OLMoE 3.1).
 */
#ifndef MICA_ATTN_H
#define MICA_ATTN_H

#include <stdbool.h>
#include <stdint.h>

#include "model/kv_cache.h"
#include "model/model.h"

enum attn_qk_norm {
    ATTN_QK_NORM_NONE = 0,
    ATTN_QK_NORM_HEAD = 1, /* RMSNorm over each head, weight [head_dim] */
    ATTN_QK_NORM_FULL = 2, /* RMSNorm over the whole q (k) vector, weight [q_dim] ([kv_dim]) */
};

typedef struct attn_config {
    enum rope_mode rope_mode;
    enum attn_qk_norm qk_norm;
    bool has_qkv_bias;
    float default_eps;        /* rms eps when the file has none */
} attn_config;

typedef struct attn_layer {
    tensor_view attn_norm;  /* [n_embd] */
    tensor_view wq;         /* [n_embd, n_head*head_dim] */
    tensor_view wk;         /* [n_embd, n_head_kv*head_dim] */
    tensor_view wv;         /* [n_embd, n_head_kv*head_dim_v] */
    tensor_view bq, bk, bv; /* biases of the same widths; data NULL if absent */
    tensor_view q_norm;     /* [head_dim] or [n_head*head_dim]; data NULL if none */
    tensor_view k_norm;     /* [head_dim] or [n_head_kv*head_dim] */
    tensor_view wo;         /* [n_head*head_dim_v, n_embd] */
} attn_layer;

/*
 * Reads the common hyperparameters of m's architecture into m->hp:
 * embedding_length, block_count, attention.head_count (required),
 * head_count_kv, feed_forward_length (default 0), context_length,
 * rope.freq_base, attention.layer_norm_rms_epsilon, attention.key_length,
 * value_length, rope.dimension_count; n_vocab from token_embd.weight.
 * Validates ranges; MICA_ERR_FORMAT naming the key otherwise.
 */
mica_status attn_read_hparams(mica_model *m, const attn_config *cfg, mica_err *err);

/* Binds layer il's attention tensors (blk.{il}.attn_*) with shape checks. */
mica_status attn_bind(const mica_model *m, const attn_config *cfg, uint32_t il, attn_layer *L,
                      mica_err *err);

/* Scratch ops_matmul needs for this layer's products over up to n_batch tokens. */
size_t attn_qbuf_bytes(const kern_table *kt, const attn_layer *L, int32_t n_batch);

/* Per-session buffers of attn_forward. */
typedef struct attn_scratch {
    float *xb;   /* [n_batch][n_embd] normed input */
    float *q;    /* [n_batch][n_head*head_dim] */
    float *k;    /* [n_batch][n_head_kv*head_dim] */
    float *v;    /* [n_batch][n_head_kv*head_dim_v] */
    float *out;  /* [n_batch][n_head*head_dim_v] */
    float *proj; /* [n_batch][n_embd] */
    float *att;  /* [n_threads][att_stride] attention scores (+ one dequantised k and v head) */
    int64_t att_stride; /* n_ctx + head_dim + head_dim_v */
    void *block;
} attn_scratch;

mica_status attn_scratch_init(attn_scratch *s, const model_hparams *hp, int32_t n_batch,
                              int32_t n_ctx, int n_threads, mica_err *err);
/* Accepts a zeroed or half-initialised scratch. */
void attn_scratch_deinit(attn_scratch *s);

/*
 * x[n][n_embd] += attention block of layer il for the tokens at positions
 * pos0 .. pos0+n-1, whose keys and values are stored in layer il of kv (a
 * global layer of n_head_kv*head_dim / n_head_kv*head_dim_v values, rows of
 * the cache's type: F32 is exact, F16/Q8_0 rows are converted when stored
 * and dequantised when read).
 * Preconditions: 1 <= n <= the scratch's n_batch, pos0 + n <= kv->n_ctx.
 */
void attn_forward(ops_ctx *c, const model_hparams *hp, const attn_config *cfg, const attn_layer *L,
                  kv_cache_hybrid *kv, uint32_t il, attn_scratch *s, float *x, int32_t n, int32_t pos0);

/*
 * Causal attention of the n queries in q over layer il of kv (global
 * layer), into out; the step attn_forward and arch_llama.c share. F32 rows
 * go through ops_attention, other types through ops_attention_ext.
 * att: pool_n_threads * att_stride floats, att_stride >= pos0 + n +
 * head_dim + head_dim_v.
 */
void attn_over_cache(ops_ctx *c, const model_hparams *hp, const kv_cache_hybrid *kv, uint32_t il,
                     const float *q, float *out, int32_t n, int32_t pos0, float *att, int64_t att_stride);

#endif /* MICA_ATTN_H */
