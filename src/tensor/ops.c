/*
 * ops.c - forward-pass operations over the kernel table and the thread pool.
 * Layer: tensor. See ops.h for the conventions; formulas from
 * MODEL_FAMILIES.md section 0.
 */
#include "tensor/ops.h"

#include <math.h>
#include <string.h>

#include "mica_internal.h"
#include "tensor/ops_avx512.h"

/* ---- matrix products ---- */

size_t ops_qbuf_bytes(const kern_table *kt, uint32_t type, int64_t K, int64_t n_tok) {
    uint32_t vdt = kt->ops[type].vec_dot_type;
    if (vdt == MICA_DTYPE_F32) return 0;
    uint64_t row = 0, total = 0;
    if (!dtype_row_bytes(vdt, K, &row) || !mica_mul_ok(row, (uint64_t)n_tok, &total)) return SIZE_MAX;
    return (size_t)total;
}

typedef struct matmul_task {
    kern_gemm_fn gemm;
    const tensor_view *w;
    const void *xa;       /* activation rows: quantised (qbuf) or the float rows */
    uint64_t xa_row;      /* bytes per activation row */
    int64_t n_tok;
    int64_t tok_chunk;    /* tokens per gemm call (activations of one call fit in L2) */
    float *y;
} matmul_task;

typedef struct quant_task {
    kern_from_float_fn from_float;
    const float *x;
    uint8_t *xq;
    int64_t K, n_tok;
    uint64_t xq_row;
} quant_task;

static void quant_rows_task(void *arg, int ith, int nth) {
    const quant_task *t = arg;
    int64_t b, e;
    pool_split(t->n_tok, ith, nth, &b, &e);
    for (int64_t i = b; i < e; i++) t->from_float(t->x + i * t->K, t->xq + (uint64_t)i * t->xq_row, t->K);
}

/*
 * Loop order (per thread, over its own contiguous range of weight rows):
 * blocks of MATMUL_ROW_BLOCK rows outer (large: a gemm call may prepare the
 * token side once per call, kern_gemm_avx512.c; a block's weights stay in
 * L2/L3 across the token chunks), chunks of tokens whose activation rows
 * fit in about half of L2 inner, and inside one gemm call micro-tiles of a
 * few rows x a few tokens (kern.h).
 *
 * Work split: threads take contiguous ranges of whole groups of
 * MATMUL_ROW_ALIGN rows (so micro-tiles stay full), sizes differing by at
 * most one group. Results do not depend on the split: a gemm output depends
 * only on its two rows (kern.h).
 */
#define MATMUL_ROW_BLOCK 512
#define MATMUL_ROW_ALIGN 8
#define MATMUL_ACT_BYTES (640u * 1024u) /* pp512 of a 1024-wide Q8_0 row in one chunk */

static void matmul_rows_task(void *arg, int ith, int nth) {
    const matmul_task *t = arg;
    const tensor_view *w = t->w;
    const int64_t K = w->ne[0], N = w->ne[1];
    const int64_t groups = (N + MATMUL_ROW_ALIGN - 1) / MATMUL_ROW_ALIGN;
    int64_t gb, ge;
    pool_split(groups, ith, nth, &gb, &ge);
    const int64_t b = gb * MATMUL_ROW_ALIGN, e = MICA_MIN(ge * MATMUL_ROW_ALIGN, N);
    const uint8_t *wdata = w->data, *xa = t->xa;
    for (int64_t r0 = b; r0 < e; r0 += MATMUL_ROW_BLOCK) {
        const int64_t nr = MICA_MIN(MATMUL_ROW_BLOCK, e - r0);
        for (int64_t t0 = 0; t0 < t->n_tok; t0 += t->tok_chunk) {
            const int64_t nt = MICA_MIN(t->tok_chunk, t->n_tok - t0);
            t->gemm(K, nr, nt, wdata + (uint64_t)r0 * w->row_bytes, w->row_bytes, xa + (uint64_t)t0 * t->xa_row,
                    t->xa_row, t->y + t0 * N + r0, N);
        }
    }
}

/* Quantises the n_tok activation rows of x for weight w into c->qbuf (on
 * the pool when there are several) and points t->xa at them; float
 * activations are used as they are. */
static void matmul_prepare(ops_ctx *c, const tensor_view *w, const float *x, int64_t n_tok, matmul_task *t) {
    const kern_type_ops *ko = &c->kt->ops[w->type];
    MICA_ASSERT(ko->gemm != NULL);
    t->gemm = ko->gemm;
    t->w = w;
    t->xa = x;
    t->xa_row = (uint64_t)w->ne[0] * sizeof(float);
    t->n_tok = n_tok;
    if (ko->vec_dot_type != MICA_DTYPE_F32) {
        uint64_t row = 0;
        MICA_ASSERT(dtype_row_bytes(ko->vec_dot_type, w->ne[0], &row));
        MICA_ASSERT(row * (uint64_t)n_tok <= c->qbuf_cap);
        quant_task qt = {
            .from_float = c->kt->ops[ko->vec_dot_type].from_float,
            .x = x, .xq = c->qbuf, .K = w->ne[0], .n_tok = n_tok, .xq_row = row,
        };
        MICA_ASSERT(qt.from_float != NULL);
        if (n_tok > 1) pool_run(c->pool, quant_rows_task, &qt);
        else quant_rows_task(&qt, 0, 1);
        t->xa = c->qbuf;
        t->xa_row = row;
    }
    t->tok_chunk = (int64_t)MICA_MAX(1u, MATMUL_ACT_BYTES / t->xa_row);
}

void ops_matmul(ops_ctx *c, const tensor_view *w, const float *x, int64_t n_tok, float *y) {
    matmul_task t = {.y = y};
    matmul_prepare(c, w, x, n_tok, &t);
    pool_run(c->pool, matmul_rows_task, &t);
}

/* ---- gate and up projections with SwiGLU ---- */

typedef struct swiglu_task {
    matmul_task gate, up; /* gate.y = out, up.y = the up scratch */
} swiglu_task;

/*
 * Each thread takes the same row range of both matrices (matmul_rows_task's
 * split), so the SwiGLU of its outputs needs no other thread's: gate rows,
 * up rows, then out = silu(gate) * up over that range, token by token.
 */
static void swiglu_rows_task(void *arg, int ith, int nth) {
    const swiglu_task *t = arg;
    const int64_t N = t->gate.w->ne[1];
    matmul_rows_task((void *)&t->gate, ith, nth);
    matmul_rows_task((void *)&t->up, ith, nth);
    const int64_t groups = (N + MATMUL_ROW_ALIGN - 1) / MATMUL_ROW_ALIGN;
    int64_t gb, ge;
    pool_split(groups, ith, nth, &gb, &ge);
    const int64_t b = gb * MATMUL_ROW_ALIGN, e = MICA_MIN(ge * MATMUL_ROW_ALIGN, N);
    for (int64_t i = 0; b < e && i < t->gate.n_tok; i++)
        ops_swiglu(t->gate.y + i * N + b, t->gate.y + i * N + b, t->up.y + i * N + b, e - b);
}

void ops_matmul_swiglu(ops_ctx *c, const tensor_view *w_gate, const tensor_view *w_up, const float *x, int64_t n_tok,
                       float *out, float *up) {
    MICA_ASSERT(w_gate->ne[0] == w_up->ne[0] && w_gate->ne[1] == w_up->ne[1]);
    const kern_type_ops *kg = &c->kt->ops[w_gate->type], *ku = &c->kt->ops[w_up->type];
    swiglu_task t = {.gate = {.y = out}, .up = {.y = up}};
    matmul_prepare(c, w_gate, x, n_tok, &t.gate);
    if (ku->vec_dot_type == kg->vec_dot_type) { /* the same activation rows serve both */
        t.up = t.gate;
        t.up.gemm = ku->gemm;
        t.up.w = w_up;
        t.up.y = up;
        MICA_ASSERT(t.up.gemm != NULL);
        pool_run(c->pool, swiglu_rows_task, &t);
        return;
    }
    /* different activation types: two products (the scratch holds one set of rows) */
    pool_run(c->pool, matmul_rows_task, &t.gate);
    ops_matmul(c, w_up, x, n_tok, up);
    ops_swiglu(out, out, up, n_tok * w_gate->ne[1]);
}

void ops_get_row(const kern_table *kt, const tensor_view *w, int64_t row, float *out) {
    MICA_ASSERT(row >= 0 && row < w->ne[1]);
    kt->ops[w->type].to_float((const uint8_t *)w->data + (uint64_t)row * w->row_bytes, out, w->ne[0]);
}

/* ---- element-wise ---- */

void ops_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (ops_cpu_avx512()) {
        ops_rmsnorm_avx512(out, x, w, n, eps);
        return;
    }
#endif
    float ss = 0.0f;
    for (int64_t i = 0; i < n; i++) ss += x[i] * x[i];
    ss = ss / (float)n + eps;
    const float s = 1.0f / sqrtf(ss);
    for (int64_t i = 0; i < n; i++) out[i] = w[i] * (s * x[i]);
}

void ops_add_bias(float *x, const float *b, int64_t n, int64_t n_tok) {
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t i = 0; i < n; i++) x[t * n + i] += b[i];
}

void ops_swiglu(float *out, const float *gate, const float *up, int64_t n) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (ops_cpu_avx512()) {
        ops_swiglu_avx512(out, gate, up, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void ops_softmax(float *x, int64_t n) {
    float max = x[0];
    for (int64_t i = 1; i < n; i++) max = x[i] > max ? x[i] : max;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    const float inv = 1.0f / sum;
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

void ops_rope(float *x, int64_t n_head, int64_t head_dim, int64_t n_rot, int64_t pos,
              float theta, enum rope_mode mode) {
    MICA_DEBUG_ASSERT(n_rot % 2 == 0 && n_rot <= head_dim);
    const int64_t half = n_rot / 2;
    for (int64_t j = 0; j < half; j++) {
        const float freq = 1.0f / powf(theta, (float)(2 * j) / (float)n_rot);
        const float angle = (float)pos * freq;
        const float c = cosf(angle), s = sinf(angle);
        for (int64_t h = 0; h < n_head; h++) {
            float *v = x + h * head_dim;
            const int64_t i0 = mode == ROPE_NORM ? 2 * j : j;
            const int64_t i1 = mode == ROPE_NORM ? 2 * j + 1 : j + half;
            const float a = v[i0], b = v[i1];
            v[i0] = a * c - b * s;
            v[i1] = a * s + b * c;
        }
    }
}

/* ---- attention: ops_attention.c ---- */

/* ---- RoPE with precomputed frequencies (DeepSeek YaRN) ---- */

void ops_rope_yarn_freqs(float *inv_freq, int64_t n_rot, float theta, float factor,
                         float n_ctx_orig, float beta_fast, float beta_slow) {
    MICA_ASSERT(n_rot >= 2 && n_rot % 2 == 0 && theta > 1.0f && factor > 0.0f);
    const double pi = 3.14159265358979323846;
    const double d = (double)n_rot, lb = log((double)theta);
    /* corr(b): the pair index whose wavelength fits b times into n_ctx_orig */
    const double corr_fast = d * log((double)n_ctx_orig / (2.0 * pi * (double)beta_fast)) / (2.0 * lb);
    const double corr_slow = d * log((double)n_ctx_orig / (2.0 * pi * (double)beta_slow)) / (2.0 * lb);
    const double low = fmax(floor(corr_fast), 0.0), high = fmin(ceil(corr_slow), d - 1.0);
    const double span = fmax(high - low, 0.001);
    for (int64_t j = 0; j < n_rot / 2; j++) {
        const double f_extra = pow((double)theta, -2.0 * (double)j / d);
        const double f_inter = f_extra / (double)factor;
        const double ramp = fmin(fmax(((double)j - low) / span, 0.0), 1.0);
        inv_freq[j] = (float)(factor == 1.0f ? f_extra : f_inter * ramp + f_extra * (1.0 - ramp));
    }
}

void ops_rope_freqs(float *x, int64_t n_head, int64_t head_stride, int64_t n_rot, int64_t pos,
                    const float *inv_freq, enum rope_mode mode) {
    MICA_DEBUG_ASSERT(n_rot % 2 == 0 && n_rot <= head_stride);
    const int64_t half = n_rot / 2;
    for (int64_t j = 0; j < half; j++) {
        const float angle = (float)pos * inv_freq[j];
        const float c = cosf(angle), s = sinf(angle);
        const int64_t i0 = mode == ROPE_NORM ? 2 * j : j;
        const int64_t i1 = mode == ROPE_NORM ? 2 * j + 1 : j + half;
        for (int64_t h = 0; h < n_head; h++) {
            float *v = x + h * head_stride;
            const float a = v[i0], b = v[i1];
            v[i0] = a * c - b * s;
            v[i1] = a * s + b * c;
        }
    }
}
