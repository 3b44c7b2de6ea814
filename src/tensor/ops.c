/*
 * ops.c - forward-pass operations over the kernel table and the thread pool.
 * Layer: tensor. See ops.h for the conventions; formulas from
 * MODEL_FAMILIES.md section 0.
 */
#include "tensor/ops.h"

#include <math.h>
#include <string.h>

#include "mica_internal.h"

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
 * blocks of MATMUL_ROW_BLOCK rows (at most ~200 KB of weights, kept in L2)
 * outer, chunks of tokens whose activation rows fit in about half of L2
 * inner, and inside one gemm call micro-tiles of a few rows x a few tokens
 * (kern.h). Each weight byte is read from memory once per product; the
 * activations are re-read from L2/L3 once per row block.
 *
 * Work split: threads take contiguous ranges of whole groups of
 * MATMUL_ROW_ALIGN rows (so micro-tiles stay full), sizes differing by at
 * most one group. Results do not depend on the split: a gemm output depends
 * only on its two rows (kern.h).
 */
#define MATMUL_ROW_BLOCK 64
#define MATMUL_ROW_ALIGN 4
#define MATMUL_ACT_BYTES (512u * 1024u)

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

void ops_matmul(ops_ctx *c, const tensor_view *w, const float *x, int64_t n_tok, float *y) {
    const kern_type_ops *ko = &c->kt->ops[w->type];
    MICA_ASSERT(ko->gemm != NULL);
    matmul_task t = {.gemm = ko->gemm, .w = w, .xa = x, .xa_row = (uint64_t)w->ne[0] * sizeof(float),
                     .n_tok = n_tok, .y = y};
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
        t.xa = c->qbuf;
        t.xa_row = row;
    }
    t.tok_chunk = (int64_t)MICA_MAX(1u, MATMUL_ACT_BYTES / t.xa_row);
    pool_run(c->pool, matmul_rows_task, &t);
}

void ops_get_row(const kern_table *kt, const tensor_view *w, int64_t row, float *out) {
    MICA_ASSERT(row >= 0 && row < w->ne[1]);
    kt->ops[w->type].to_float((const uint8_t *)w->data + (uint64_t)row * w->row_bytes, out, w->ne[0]);
}

/* ---- element-wise ---- */

void ops_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
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

/* ---- attention ---- */

/* Dot product of two float rows with 8 independent partial sums, so the
 * compiler can keep them in one vector register (a single running sum would
 * force one add at a time). The order is fixed: results do not depend on
 * threads or batch sizes. */
static float dot_f32(const float *a, const float *b, int64_t n) {
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += a[i + l] * b[i + l];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static void attention_task(void *arg, int ith, int nth) {
    const ops_attn_args *a = arg;
    const int64_t n_work = a->n_tok * a->n_head;
    const int64_t group = a->n_head / a->n_head_kv;
    float *att = a->scratch + (size_t)ith * (size_t)(a->pos0 + a->n_tok);
    int64_t b, e;
    pool_split(n_work, ith, nth, &b, &e);
    for (int64_t wi = b; wi < e; wi++) {
        const int64_t t = wi / a->n_head, h = wi % a->n_head, g = h / group;
        const int64_t n_keys = a->pos0 + t + 1;
        const float *q = a->q + (t * a->n_head + h) * a->head_dim;
        for (int64_t j = 0; j < n_keys; j++) {
            const float *k = a->k + j * a->k_stride + g * a->head_dim;
            att[j] = dot_f32(q, k, a->head_dim) * a->scale;
        }
        ops_softmax(att, n_keys);
        float *o = a->out + (t * a->n_head + h) * a->head_dim_v;
        memset(o, 0, (size_t)a->head_dim_v * sizeof(float));
        for (int64_t j = 0; j < n_keys; j++) {
            const float *v = a->v + j * a->v_stride + g * a->head_dim_v;
            const float p = att[j];
            for (int64_t i = 0; i < a->head_dim_v; i++) o[i] += p * v[i];
        }
    }
}

void ops_attention(mica_pool *pool, const ops_attn_args *a) {
    MICA_ASSERT(a->n_head_kv > 0 && a->n_head % a->n_head_kv == 0);
    pool_run(pool, attention_task, (void *)a);
}

/* ---- attention with a window, sinks and ring addressing ---- */

/* The first visible key position for a query at position p. */
static int64_t attn_ext_first(const ops_attn_ext_args *a, int64_t p) {
    return a->window > 0 && p - a->window + 1 > 0 ? p - a->window + 1 : 0;
}

int64_t ops_attention_ext_scratch(const ops_attn_ext_args *a) {
    const int64_t last = a->pos0 + a->n_tok - 1;
    const int64_t n_keys = last - attn_ext_first(a, last) + 1; /* the widest query is the last */
    const int64_t deq = a->kv_type == MICA_DTYPE_F32 ? 0 : a->head_dim + a->head_dim_v;
    return n_keys + deq;
}

/* Pointer to head g of row r, dequantised into buf unless the store is F32. */
static const float *attn_ext_head(const ops_attn_ext_args *a, const void *base, uint64_t row_bytes,
                                  int64_t r, int64_t g, int64_t d, float *buf) {
    const uint8_t *row = (const uint8_t *)base + (uint64_t)r * row_bytes;
    if (a->kv_type == MICA_DTYPE_F32) return (const float *)row + g * d;
    uint64_t off = 0;
    MICA_ASSERT(dtype_row_bytes(a->kv_type, g * d, &off));
    a->kt->ops[a->kv_type].to_float(row + off, buf, d);
    return buf;
}

static void attention_ext_task(void *arg, int ith, int nth) {
    const ops_attn_ext_args *a = arg;
    const int64_t n_work = a->n_tok * a->n_head;
    const int64_t group = a->n_head / a->n_head_kv;
    const int64_t hd = a->head_dim, hdv = a->head_dim_v;
    float *att = a->scratch + (size_t)ith * (size_t)a->scratch_stride;
    float *kbuf = att + (a->scratch_stride - (a->kv_type == MICA_DTYPE_F32 ? 0 : hd + hdv));
    float *vbuf = kbuf + hd;
    int64_t b, e;
    pool_split(n_work, ith, nth, &b, &e);
    for (int64_t wi = b; wi < e; wi++) {
        const int64_t t = wi / a->n_head, h = wi % a->n_head, g = h / group;
        const int64_t p = a->pos0 + t, j0 = attn_ext_first(a, p), n_keys = p - j0 + 1;
        const float *q = a->q + (t * a->n_head + h) * hd;
        /* scaled logits of the visible keys, oldest first */
        float max = a->sinks ? a->sinks[h] : -INFINITY;
        for (int64_t j = 0; j < n_keys; j++) {
            const int64_t r = a->n_slots > 0 ? (j0 + j) % a->n_slots : j0 + j;
            const float *k = attn_ext_head(a, a->k, a->k_row_bytes, r, g, hd, kbuf);
            float s = 0.0f;
            for (int64_t i = 0; i < hd; i++) s += q[i] * k[i];
            att[j] = s * a->scale;
            max = att[j] > max ? att[j] : max;
        }
        /* softmax whose denominator includes the sink's exp(s - m) */
        float sum = a->sinks ? expf(a->sinks[h] - max) : 0.0f;
        for (int64_t j = 0; j < n_keys; j++) {
            att[j] = expf(att[j] - max);
            sum += att[j];
        }
        const float inv = 1.0f / sum;
        float *o = a->out + (t * a->n_head + h) * hdv;
        memset(o, 0, (size_t)hdv * sizeof(float));
        for (int64_t j = 0; j < n_keys; j++) {
            const int64_t r = a->n_slots > 0 ? (j0 + j) % a->n_slots : j0 + j;
            const float *v = attn_ext_head(a, a->v, a->v_row_bytes, r, g, hdv, vbuf);
            const float pj = att[j] * inv;
            for (int64_t i = 0; i < hdv; i++) o[i] += pj * v[i];
        }
    }
}

void ops_attention_ext(mica_pool *pool, const ops_attn_ext_args *a) {
    MICA_ASSERT(a->n_head_kv > 0 && a->n_head % a->n_head_kv == 0 && a->n_tok >= 1 && a->pos0 >= 0);
    MICA_ASSERT(a->window >= 0 && a->n_slots >= 0);
    MICA_ASSERT(a->n_slots == 0 || (a->window > 0 && a->n_slots >= a->window + a->n_tok - 1));
    MICA_ASSERT(a->kv_type == MICA_DTYPE_F32 || (a->kt && a->kt->ops[a->kv_type].to_float));
    MICA_ASSERT(a->scratch_stride >= ops_attention_ext_scratch(a));
    pool_run(pool, attention_ext_task, (void *)a);
}

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
