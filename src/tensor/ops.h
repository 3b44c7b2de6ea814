/*
 * ops.h - the operations a forward pass is made of: matrix products over
 * quantised weights (run on the thread pool), RMSNorm, RoPE, attention,
 * SwiGLU (layer: tensor; depends on base and the kernel table, knows nothing
 * about models or files).
 *
 * Conventions: activations are float32, row-major, one row per token:
 * x[n_tok][K]. A weight is a tensor_view with ne = {K, N, ...} in ggml order,
 * i.e. N rows of K elements, each row `row_bytes` bytes; y = W x gives
 * y[n_tok][N]. Quantised weights get their activation rows quantised once per
 * call into the type's vec_dot_type (FORMATS.md 2.4) and then dotted row by row.
 * Preconditions (validated when weights are bound, asserted here): K is a
 * multiple of the block sizes of both types; buffers do not alias.
 */
#ifndef MICA_OPS_H
#define MICA_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "base/threadpool.h"
#include "tensor/kern.h"

/* A borrowed view of a weight tensor (usually into the mapped GGUF file). */
typedef struct tensor_view {
    const char *name;   /* for messages; borrowed */
    uint32_t type;      /* enum mica_dtype */
    int64_t ne[4];      /* ne[0] = row length K, ne[1] = rows N, ne[2] = slices */
    uint64_t row_bytes; /* bytes per row of ne[0] elements */
    const void *data;   /* first byte of the tensor */
} tensor_view;

/*
 * Compute context for ops: the thread pool, the kernel table and a scratch
 * buffer for quantised activations, all borrowed from the session that owns
 * them. qbuf must hold ops_qbuf_bytes(...) for the largest product.
 */
typedef struct ops_ctx {
    mica_pool *pool;
    const kern_table *kt;
    void *qbuf;
    size_t qbuf_cap;
} ops_ctx;

/* Bytes of scratch ops_matmul needs to quantise n_tok activation rows of K elements for weight type t. */
size_t ops_qbuf_bytes(const kern_table *kt, uint32_t type, int64_t K, int64_t n_tok);

/* y[n_tok][N] = x[n_tok][K] . W^T (each y row = W times that x row). */
void ops_matmul(ops_ctx *c, const tensor_view *w, const float *x, int64_t n_tok, float *y);

/* Row `row` of w dequantised into out[ne[0]] (embedding lookup). */
void ops_get_row(const kern_table *kt, const tensor_view *w, int64_t row, float *out);

/* out = w * x / sqrt(mean(x^2) + eps), n elements (out may equal x). */
void ops_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps);

/* x[i] += b[i] for each of n_tok rows of n elements. */
void ops_add_bias(float *x, const float *b, int64_t n, int64_t n_tok);

/* out[i] = silu(gate[i]) * up[i]; out may equal gate. */
void ops_swiglu(float *out, const float *gate, const float *up, int64_t n);

/* x[i] = exp(x[i] - max) / sum, in place. */
void ops_softmax(float *x, int64_t n);

enum rope_mode {
    ROPE_NORM = 0, /* rotate adjacent pairs (x[2j], x[2j+1]) - GPT-J / Meta / llama2.c */
    ROPE_NEOX = 1, /* rotate (x[j], x[j + n_rot/2]) - HF rotate_half */
};

/*
 * Rotary position embedding of n_head heads of head_dim floats at `pos`:
 * the first n_rot dims of each head rotate by angle pos * theta^(-2j/n_rot)
 * (pair j), the rest pass through. MODEL_FAMILIES.md 0.4.
 */
void ops_rope(float *x, int64_t n_head, int64_t head_dim, int64_t n_rot, int64_t pos,
              float theta, enum rope_mode mode);

/*
 * Causal multi-head attention for n_tok query rows against a KV store.
 * q: [n_tok][n_head * head_dim]; query t sits at position pos0 + t and sees
 * keys 0 .. pos0 + t. Key head g of token j is at k + j*k_stride + g*head_dim,
 * value head g at v + j*v_stride + g*head_dim_v. Query head h uses
 * kv head h / (n_head / n_head_kv). out: [n_tok][n_head * head_dim_v].
 * scores scaled by `scale`. Parallel over (token, head) on the pool; `scratch`
 * must hold pool_n_threads * (pos0 + n_tok) floats.
 */
typedef struct ops_attn_args {
    const float *q;
    const float *k, *v;
    float *out;
    int64_t n_tok, pos0;
    int64_t n_head, n_head_kv, head_dim, head_dim_v;
    int64_t k_stride, v_stride; /* floats between consecutive tokens in k and v */
    float scale;
    float *scratch;
} ops_attn_args;

void ops_attention(mica_pool *pool, const ops_attn_args *a);

#endif /* MICA_OPS_H */
