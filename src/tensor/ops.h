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

/*
 * The gated feed-forward input: out[n_tok][N] = silu(x . Wg^T) * (x . Wu^T)
 * (both weights N rows of K), and up[n_tok][N] = x . Wu^T as a by-product
 * (scratch the caller provides). Bit-identical to ops_matmul into out and
 * up followed by ops_swiglu(out, out, up, n_tok * N), but when both weights
 * take the same activation type the rows are quantised once, both products
 * and the SwiGLU run in one pass over the pool (each thread on its own
 * rows, while they are in cache). out and up do not alias x or each other.
 */
void ops_matmul_swiglu(ops_ctx *c, const tensor_view *w_gate, const tensor_view *w_up, const float *x, int64_t n_tok,
                       float *out, float *up);

/* Row `row` of w dequantised into out[ne[0]] (embedding lookup). */
void ops_get_row(const kern_table *kt, const tensor_view *w, int64_t row, float *out);

/* out = w * x / sqrt(mean(x^2) + eps), n elements (out may equal x). On
 * AVX-512 CPUs the sum of squares runs in 16 lanes (ops_avx512.h). */
void ops_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps);

/* x[i] += b[i] for each of n_tok rows of n elements. */
void ops_add_bias(float *x, const float *b, int64_t n, int64_t n_tok);

/* out[i] = silu(gate[i]) * up[i]; out may equal gate. On AVX-512 CPUs exp is
 * a polynomial of about 2 ulp (ops_avx512.h); the same for every caller. */
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
 * kv head h / (n_head / n_head_kv). out: [n_tok][n_head * head_dim_v], must
 * not alias q, k or v. Scores scaled by `scale`.
 * Online softmax over blocks of keys (ops_attention.h): no score row is
 * stored, each tile of queries reads the keys and values once. Outputs are
 * bit-identical whatever the batch split (n_tok, pos0) of the same positions
 * and the thread count. The implementation is the AVX-512 tile when kt is
 * an AVX-512 table (kt NULL: when the CPU has AVX-512 F/BW/VL/DQ) and
 * head_dim, head_dim_v are multiples of 16, else the portable one (a
 * generic or AVX2 kt forces it). Parallel over tiles of
 * (tokens, heads of one KV head) on the pool. `scratch` is not used (kept
 * for callers written against the first version).
 */
typedef struct ops_attn_args {
    const float *q;
    const float *k, *v;
    float *out;
    int64_t n_tok, pos0;
    int64_t n_head, n_head_kv, head_dim, head_dim_v;
    int64_t k_stride, v_stride; /* floats between consecutive tokens in k and v */
    float scale;
    float *scratch;             /* unused */
    const kern_table *kt;       /* optional: selects the implementation (above) */
} ops_attn_args;

void ops_attention(mica_pool *pool, const ops_attn_args *a);

/*
 * Attention with an optional sliding window, optional per-head sink logits
 * and optional ring-buffer addressing of the KV store (MODEL_FAMILIES.md 0.5
 * and 6). Query t sits at position p = pos0 + t and sees the keys at
 * positions j with
 *     max(0, p - window + 1) <= j <= p     (window > 0: 0 <= p - j < window)
 *     0 <= j <= p                          (window == 0: plain causal)
 * The key and value of position j are row r = (n_slots > 0 ? j % n_slots : j)
 * of k and v: key head g at byte r * k_row_bytes + (bytes of g * head_dim
 * elements), likewise for v. Query head h uses kv head h / (n_head /
 * n_head_kv). With scaled logits a_j = scale * q . k_j and the head's sink
 * logit s (sinks[h], when sinks is not NULL):
 *     m   = max(max_j a_j, s)
 *     p_j = exp(a_j - m) / (exp(s - m) + sum_j' exp(a_j' - m))
 *     out = sum_j p_j v_j                (the sink's share is dropped)
 * Keys are visited in increasing position whatever the addressing, so a ring
 * store and a full store holding the same rows give bit-identical outputs.
 *
 * kv_type: MICA_DTYPE_F32 or any type with a to_float in kt (e.g. Q8_0; rows
 * then hold n_head_kv * head_dim (head_dim_v) elements of that type and
 * head_dim, head_dim_v are multiples of its block). Parallel over (token,
 * head) on the pool; scratch holds pool_n_threads * scratch_stride floats,
 * scratch_stride >= ops_attention_ext_scratch(a).
 * Preconditions (asserted): n_slots == 0 or (window > 0 and n_slots >= window
 * + n_tok - 1, so no row a query needs is overwritten by a later token of the
 * same call).
 */
typedef struct ops_attn_ext_args {
    const kern_table *kt;       /* to_float for kv_type != F32; may be NULL for F32 */
    const float *q;             /* [n_tok][n_head * head_dim] */
    const void *k, *v;          /* row 0 of the key / value store */
    float *out;                 /* [n_tok][n_head * head_dim_v] */
    int64_t n_tok, pos0;
    int64_t n_head, n_head_kv, head_dim, head_dim_v;
    uint64_t k_row_bytes, v_row_bytes; /* bytes between consecutive rows */
    uint32_t kv_type;
    float scale;
    int64_t window;             /* 0: no window */
    int64_t n_slots;            /* 0: row = position; > 0: ring of n_slots rows */
    const float *sinks;         /* [n_head] sink logits, or NULL */
    float *scratch;
    int64_t scratch_stride;     /* floats of scratch per thread */
} ops_attn_ext_args;

/* Floats of scratch one thread of ops_attention_ext needs for a. */
int64_t ops_attention_ext_scratch(const ops_attn_ext_args *a);

void ops_attention_ext(mica_pool *pool, const ops_attn_ext_args *a);

/* ---- RoPE with precomputed frequencies (DeepSeek YaRN) ---- */

/*
 * YaRN-corrected inverse frequencies for n_rot rotary dims (MODEL_FAMILIES.md
 * 4.4): inv_freq[j], j = 0 .. n_rot/2 - 1, for base theta, scaling factor s,
 * original training context n_ctx_orig and the ramp bounds beta_fast /
 * beta_slow (in rotations over n_ctx_orig):
 *   corr(b)  = n_rot * ln(n_ctx_orig / (2 pi b)) / (2 ln theta)
 *   low      = max(floor(corr(beta_fast)), 0), high = min(ceil(corr(beta_slow)), n_rot - 1)
 *   ramp_j   = clamp((j - low) / max(high - low, 0.001), 0, 1)
 *   f_extra  = theta^(-2j/n_rot), f_inter = f_extra / s
 *   inv_freq = f_inter * ramp_j + f_extra * (1 - ramp_j)
 * so the fastest pairs (j < low) keep their frequency and the slowest
 * (j >= high) are fully interpolated. s = 1 gives plain RoPE frequencies.
 * Computed in double, stored as float.
 */
void ops_rope_yarn_freqs(float *inv_freq, int64_t n_rot, float theta, float factor,
                         float n_ctx_orig, float beta_fast, float beta_slow);

/*
 * As ops_rope, with the angle of pair j given as pos * inv_freq[j]
 * (inv_freq[n_rot/2]), and heads head_stride floats apart: the n_rot dims
 * starting at x + h * head_stride rotate, nothing else is touched. For a
 * rotary slice at the end of each head, pass x + offset.
 */
void ops_rope_freqs(float *x, int64_t n_head, int64_t head_stride, int64_t n_rot, int64_t pos,
                    const float *inv_freq, enum rope_mode mode);

#endif /* MICA_OPS_H */
