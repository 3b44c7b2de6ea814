/*
 * ops_attention.c - causal multi-head attention with an online softmax
 * (layer: tensor). Contracts in ops.h (ops_attention, ops_attention_ext),
 * algorithm, tiling and determinism in ops_attention.h. This file holds the
 * plan, the dispatch and the portable tile; ops_attention_avx512.c the
 * AVX-512 tile.
 */
#include "tensor/ops_attention.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "mica_internal.h"

/* Dot product of two float rows with 8 independent partial sums (the
 * compiler keeps them in one vector register); fixed order. */
static float attn_dot(const float *a, const float *b, int64_t n) {
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += a[i + l] * b[i + l];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* Head g (d elements) of store row r, converted into buf unless the store is F32. */
static const float *attn_head(const attn_spec *a, const uint8_t *base, uint64_t row_bytes, int64_t r, int64_t g,
                              int64_t d, float *buf) {
    const uint8_t *row = base + (uint64_t)r * row_bytes;
    if (a->kv_type == MICA_DTYPE_F32) return (const float *)(const void *)row + g * d;
    uint64_t off = 0;
    MICA_ASSERT(dtype_row_bytes(a->kv_type, g * d, &off));
    a->kt->ops[a->kv_type].to_float(row + off, buf, d);
    return buf;
}

/* The portable tile: the steps of ops_attention.h, one query at a time
 * within each key block. Non-F32 rows are converted into the thread's
 * scratch (head_dim + head_dim_v floats). */
static void attn_item_generic(const attn_spec *a, const attn_plan *plan, int64_t item, int ith) {
    const int64_t group = a->n_head / a->n_head_kv, nh = a->n_head;
    const int64_t hd = a->head_dim, hdv = a->head_dim_v;
    int64_t t0, t1, h0, h1;
    attn_item_range(a, plan, item, &t0, &t1, &h0, &h1);
    const int64_t g = h0 / group, nhq = h1 - h0, nq = (t1 - t0) * nhq;
    float m[ATTN_TILE_QUERIES], l[ATTN_TILE_QUERIES], s[ATTN_KEY_BLOCK];
    float *kbuf = a->kv_type == MICA_DTYPE_F32 ? NULL : a->scratch + (size_t)ith * (size_t)a->scratch_stride;
    float *vbuf = kbuf ? kbuf + hd : NULL;
    MICA_ASSERT(nq <= ATTN_TILE_QUERIES);
    for (int64_t i = 0; i < nq; i++) {
        const int64_t h = h0 + i % nhq;
        m[i] = a->sinks ? a->sinks[h] : -INFINITY;
        l[i] = a->sinks ? 1.0f : 0.0f;
        memset(a->out + ((t0 + i / nhq) * nh + h) * hdv, 0, (size_t)hdv * sizeof(float));
    }
    const int64_t p_last = a->pos0 + t1 - 1;
    const int64_t j_first = attn_first_key(a, a->pos0 + t0) / ATTN_KEY_BLOCK * ATTN_KEY_BLOCK;
    for (int64_t j0 = j_first; j0 <= p_last; j0 += ATTN_KEY_BLOCK) {
        for (int64_t i = 0; i < nq; i++) {
            const int64_t t = t0 + i / nhq, h = h0 + i % nhq, p = a->pos0 + t;
            const int64_t lo = MICA_MAX(j0, attn_first_key(a, p)), hi = MICA_MIN(j0 + ATTN_KEY_BLOCK - 1, p);
            if (lo > hi) continue;
            const float *q = a->q + (t * nh + h) * hd;
            float mb = m[i];
            for (int64_t j = lo; j <= hi; j++) {
                const float *k = attn_head(a, a->k, a->k_row_bytes, attn_row(a, j), g, hd, kbuf);
                s[j - j0] = attn_dot(q, k, hd) * a->scale;
                mb = s[j - j0] > mb ? s[j - j0] : mb;
            }
            const float alpha = m[i] == -INFINITY ? 0.0f : expf(m[i] - mb);
            float sum = 0.0f;
            for (int64_t j = lo; j <= hi; j++) {
                s[j - j0] = expf(s[j - j0] - mb);
                sum += s[j - j0];
            }
            l[i] = l[i] * alpha + sum;
            m[i] = mb;
            float *o = a->out + (t * nh + h) * hdv;
            for (int64_t c = 0; c < hdv; c++) o[c] *= alpha;
            for (int64_t j = lo; j <= hi; j++) {
                const float *v = attn_head(a, a->v, a->v_row_bytes, attn_row(a, j), g, hdv, vbuf);
                const float pj = s[j - j0];
                for (int64_t c = 0; c < hdv; c++) o[c] += pj * v[c];
            }
        }
    }
    for (int64_t i = 0; i < nq; i++) {
        float *o = a->out + ((t0 + i / nhq) * nh + h0 + i % nhq) * hdv;
        const float inv = 1.0f / l[i];
        for (int64_t c = 0; c < hdv; c++) o[c] *= inv;
    }
}

typedef struct attn_job {
    const attn_spec *a;
    attn_plan plan;
    attn_item_fn item;
} attn_job;

static void attn_task(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    for (int64_t it = ith; it < j->plan.n_items; it += nth) j->item(j->a, &j->plan, it, ith);
}

/* Plans the tiles, picks the implementation and runs them on the pool. */
static void attn_run(mica_pool *pool, const attn_spec *a) {
    const int64_t group = a->n_head / a->n_head_kv;
    attn_job j = {.a = a, .item = attn_item_generic};
    /* heads of one group first (they share every key), then tokens */
    j.plan.hc = MICA_MIN(group, ATTN_TILE_QUERIES);
    j.plan.qt = MICA_MAX(1, ATTN_TILE_QUERIES / j.plan.hc);
    j.plan.n_hb = (group + j.plan.hc - 1) / j.plan.hc;
    j.plan.n_tb = (a->n_tok + j.plan.qt - 1) / j.plan.qt;
    j.plan.n_items = j.plan.n_tb * a->n_head_kv * j.plan.n_hb;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    /* the AVX-512 file is built with F/BW/VL/DQ (and more it does not use) */
    const bool avx512 = a->kt ? a->kt->isa >= KERN_ISA_AVX512
                              : __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                                    __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    if (avx512 && a->head_dim % 16 == 0 && a->head_dim_v % 16 == 0 && a->head_dim <= ATTN_AVX512_MAX_DIM &&
        a->head_dim_v <= ATTN_AVX512_MAX_DIM)
        j.item = attn_item_avx512;
#endif
    if (j.plan.n_items == 1) attn_task(&j, 0, 1);
    else pool_run(pool, attn_task, &j);
}

void ops_attention(mica_pool *pool, const ops_attn_args *a) {
    MICA_ASSERT(a->n_head_kv > 0 && a->n_head % a->n_head_kv == 0 && a->n_tok >= 1 && a->pos0 >= 0);
    MICA_ASSERT(a->head_dim > 0 && a->head_dim_v > 0);
    const attn_spec s = {
        .kt = a->kt, .q = a->q, .k = (const uint8_t *)a->k, .v = (const uint8_t *)a->v, .out = a->out,
        .n_tok = a->n_tok, .pos0 = a->pos0, .n_head = a->n_head, .n_head_kv = a->n_head_kv,
        .head_dim = a->head_dim, .head_dim_v = a->head_dim_v,
        .k_row_bytes = (uint64_t)a->k_stride * sizeof(float), .v_row_bytes = (uint64_t)a->v_stride * sizeof(float),
        .kv_type = MICA_DTYPE_F32, .scale = a->scale,
    };
    attn_run(pool, &s);
}

/* ---- attention with a window, sinks and ring addressing ---- */

int64_t ops_attention_ext_scratch(const ops_attn_ext_args *a) {
    const int64_t last = a->pos0 + a->n_tok - 1;
    const int64_t n_keys = last - (a->window > 0 && last - a->window + 1 > 0 ? last - a->window + 1 : 0) + 1;
    const int64_t deq = a->kv_type == MICA_DTYPE_F32 ? 0 : a->head_dim + a->head_dim_v;
    return n_keys + deq; /* the first version's size; the online softmax uses only deq */
}

void ops_attention_ext(mica_pool *pool, const ops_attn_ext_args *a) {
    MICA_ASSERT(a->n_head_kv > 0 && a->n_head % a->n_head_kv == 0 && a->n_tok >= 1 && a->pos0 >= 0);
    MICA_ASSERT(a->window >= 0 && a->n_slots >= 0);
    MICA_ASSERT(a->n_slots == 0 || (a->window > 0 && a->n_slots >= a->window + a->n_tok - 1));
    MICA_ASSERT(a->kv_type == MICA_DTYPE_F32 || (a->kt && a->kt->ops[a->kv_type].to_float));
    MICA_ASSERT(a->scratch_stride >= ops_attention_ext_scratch(a));
    const attn_spec s = {
        .kt = a->kt, .q = a->q, .k = a->k, .v = a->v, .out = a->out, .n_tok = a->n_tok, .pos0 = a->pos0,
        .n_head = a->n_head, .n_head_kv = a->n_head_kv, .head_dim = a->head_dim, .head_dim_v = a->head_dim_v,
        .k_row_bytes = a->k_row_bytes, .v_row_bytes = a->v_row_bytes, .kv_type = a->kv_type, .scale = a->scale,
        .window = a->window, .n_slots = a->n_slots, .sinks = a->sinks, .scratch = a->scratch,
        .scratch_stride = a->scratch_stride,
    };
    attn_run(pool, &s);
}
