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
    const kern_table *kt;
    const tensor_view *w;
    const float *x;       /* float activations [n_tok][K] */
    const uint8_t *xq;    /* quantised activations, or NULL for float weights */
    uint64_t xq_row;      /* bytes per quantised activation row */
    int64_t n_tok;
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

/* Rows are processed in tiles so a tile of weight rows stays in cache while
 * every token's activation row passes over it. */
#define MATMUL_ROW_TILE 16

static void matmul_rows_task(void *arg, int ith, int nth) {
    const matmul_task *t = arg;
    const tensor_view *w = t->w;
    const int64_t K = w->ne[0], N = w->ne[1];
    kern_vec_dot_fn dot = t->kt->ops[w->type].vec_dot;
    int64_t b, e;
    pool_split(N, ith, nth, &b, &e);
    const uint8_t *wdata = w->data;
    for (int64_t r0 = b; r0 < e; r0 += MATMUL_ROW_TILE) {
        int64_t r1 = MICA_MIN(r0 + MATMUL_ROW_TILE, e);
        for (int64_t i = 0; i < t->n_tok; i++) {
            const void *xrow = t->xq ? (const void *)(t->xq + (uint64_t)i * t->xq_row)
                                     : (const void *)(t->x + i * K);
            float *yrow = t->y + i * N;
            for (int64_t r = r0; r < r1; r++) dot(K, &yrow[r], wdata + (uint64_t)r * w->row_bytes, xrow);
        }
    }
}

void ops_matmul(ops_ctx *c, const tensor_view *w, const float *x, int64_t n_tok, float *y) {
    const kern_type_ops *ko = &c->kt->ops[w->type];
    MICA_ASSERT(ko->vec_dot != NULL);
    matmul_task t = {.kt = c->kt, .w = w, .x = x, .n_tok = n_tok, .y = y};
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
        t.xq = c->qbuf;
        t.xq_row = row;
    }
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
