/*
 * test_attn_ext.c - ops_attention_ext (src/tensor/ops.h): sliding window,
 * attention sinks (MODEL_FAMILIES.md 6) and ring-buffer addressing, checked
 * against a naive double-precision implementation of the formulas written
 * here, against hand-worked values, and ring store == full store bit for bit.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "base/threadpool.h"
#include "mica_internal.h"
#include "tensor/dtype.h"
#include "tensor/kern.h"
#include "tensor/ops.h"

/* Deterministic values in [-amp, amp). */
static void ae_fill(float *x, size_t n, uint32_t seed, float amp) {
    uint32_t s = seed * 2654435761u + 1u;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = amp * ((float)(s >> 8) / 8388608.0f - 1.0f);
    }
}

/*
 * The formula, in double: query t at position pos0 + t over the logical
 * per-position keys K[j][n_kv*hd] and values V[j][n_kv*hdv].
 */
static void ae_naive(const float *q, const float *K, const float *V, const float *sinks, int64_t n_tok,
                     int64_t pos0, int64_t nh, int64_t nkv, int64_t hd, int64_t hdv, double scale,
                     int64_t window, double *out) {
    const int64_t group = nh / nkv;
    double *a = malloc(sizeof(double) * (size_t)(pos0 + n_tok));
    for (int64_t t = 0; t < n_tok; t++) {
        const int64_t p = pos0 + t;
        for (int64_t h = 0; h < nh; h++) {
            const int64_t g = h / group;
            double m = sinks ? sinks[h] : -INFINITY;
            int64_t j0 = window > 0 ? p - window + 1 : 0;
            if (j0 < 0) j0 = 0;
            for (int64_t j = j0; j <= p; j++) {
                double s = 0;
                for (int64_t i = 0; i < hd; i++) s += (double)q[(t * nh + h) * hd + i] * K[(j * nkv + g) * hd + i];
                a[j] = s * scale;
                if (a[j] > m) m = a[j];
            }
            double den = sinks ? exp(sinks[h] - m) : 0.0;
            for (int64_t j = j0; j <= p; j++) den += exp(a[j] - m);
            double *o = out + (t * nh + h) * hdv;
            for (int64_t i = 0; i < hdv; i++) o[i] = 0;
            for (int64_t j = j0; j <= p; j++) {
                const double pj = exp(a[j] - m) / den;
                for (int64_t i = 0; i < hdv; i++) o[i] += pj * V[(j * nkv + g) * hdv + i];
            }
        }
    }
    free(a);
}

typedef struct ae_case {
    int64_t n_tok, pos0, nh, nkv, hd, hdv, window, n_slots;
    bool sinks;
} ae_case;

/* Runs one case with an F32 store (ring or full); returns max |mica - naive|
 * relative to max |naive|, and leaves mica's output in *out_keep if not NULL. */
static double ae_run(mica_pool *pool, const ae_case *c, float **out_keep) {
    const int64_t n_pos = c->pos0 + c->n_tok;
    const int64_t kd = c->nkv * c->hd, vd = c->nkv * c->hdv;
    float *q = malloc(sizeof(float) * (size_t)(c->n_tok * c->nh * c->hd));
    float *K = malloc(sizeof(float) * (size_t)(n_pos * kd));
    float *V = malloc(sizeof(float) * (size_t)(n_pos * vd));
    float sinks[64];
    ae_fill(q, (size_t)(c->n_tok * c->nh * c->hd), 1, 1.0f);
    ae_fill(K, (size_t)(n_pos * kd), 2, 1.0f);
    ae_fill(V, (size_t)(n_pos * vd), 3, 1.0f);
    ae_fill(sinks, 64, 4, 2.0f);
    /* the store: full (row = position) or a ring written in position order */
    const int64_t rows = c->n_slots > 0 ? c->n_slots : n_pos;
    float *ks = calloc((size_t)(rows * kd), sizeof(float)), *vs = calloc((size_t)(rows * vd), sizeof(float));
    for (int64_t j = 0; j < n_pos; j++) {
        const int64_t r = c->n_slots > 0 ? j % c->n_slots : j;
        memcpy(ks + r * kd, K + j * kd, sizeof(float) * (size_t)kd);
        memcpy(vs + r * vd, V + j * vd, sizeof(float) * (size_t)vd);
    }
    float *out = malloc(sizeof(float) * (size_t)(c->n_tok * c->nh * c->hdv));
    double *ref = malloc(sizeof(double) * (size_t)(c->n_tok * c->nh * c->hdv));
    const float scale = 1.0f / sqrtf((float)c->hd);
    ops_attn_ext_args a = {
        .q = q, .k = ks, .v = vs, .out = out, .n_tok = c->n_tok, .pos0 = c->pos0, .n_head = c->nh,
        .n_head_kv = c->nkv, .head_dim = c->hd, .head_dim_v = c->hdv,
        .k_row_bytes = (uint64_t)kd * sizeof(float), .v_row_bytes = (uint64_t)vd * sizeof(float),
        .kv_type = MICA_DTYPE_F32, .scale = scale, .window = c->window, .n_slots = c->n_slots,
        .sinks = c->sinks ? sinks : NULL,
    };
    a.scratch_stride = ops_attention_ext_scratch(&a);
    a.scratch = malloc(sizeof(float) * (size_t)(a.scratch_stride * pool_n_threads(pool)));
    ops_attention_ext(pool, &a);
    ae_naive(q, K, V, c->sinks ? sinks : NULL, c->n_tok, c->pos0, c->nh, c->nkv, c->hd, c->hdv, scale,
             c->window, ref);
    double md = 0, mx = 0;
    for (int64_t i = 0; i < c->n_tok * c->nh * c->hdv; i++) {
        md = fmax(md, fabs(out[i] - ref[i]));
        mx = fmax(mx, fabs(ref[i]));
    }
    free(q); free(K); free(V); free(ks); free(vs); free(ref); free(a.scratch);
    if (out_keep) *out_keep = out;
    else free(out);
    return md / mx;
}

TEST(attn_ext_matches_naive) {
    mica_pool *pool = NULL;
    ASSERT_OK(pool_create(2, &pool));
    const ae_case cases[] = {
        /* n_tok pos0 nh nkv hd hdv window n_slots sinks */
        {1, 0, 4, 2, 16, 8, 0, 0, false},     /* first token, plain causal */
        {7, 0, 4, 2, 16, 8, 0, 0, false},     /* a prompt, plain causal */
        {5, 3, 8, 4, 24, 16, 0, 0, true},     /* sinks, qk dim != v dim */
        {6, 20, 8, 2, 24, 16, 4, 0, true},    /* window, full store */
        {6, 20, 8, 2, 24, 16, 4, 9, true},    /* the same through a ring of window + n_tok - 1 */
        {1, 40, 4, 1, 32, 16, 8, 8, true},    /* decode through a ring of exactly the window */
        {3, 1, 4, 4, 16, 16, 8, 10, false},   /* window longer than the history */
    };
    for (size_t i = 0; i < MICA_ARRAY_LEN(cases); i++) {
        double rel = ae_run(pool, &cases[i], NULL);
        if (!(rel < 2e-6)) fprintf(stderr, "    case %zu: rel %.3g\n", i, rel);
        ASSERT_TRUE(rel < 2e-6);
    }
    pool_free(pool);
}

/* The same positions through a ring and through a full store: identical bits. */
TEST(attn_ext_ring_equals_full) {
    mica_pool *pool = NULL;
    ASSERT_OK(pool_create(2, &pool));
    const ae_case full = {5, 37, 8, 2, 24, 16, 6, 0, true};
    ae_case ring = full;
    ring.n_slots = 10; /* window + n_tok - 1 */
    float *a = NULL, *b = NULL;
    ae_run(pool, &full, &a);
    ae_run(pool, &ring, &b);
    ASSERT_TRUE(memcmp(a, b, sizeof(float) * 5 * 8 * 16) == 0);
    free(a);
    free(b);
    pool_free(pool);
}

/* Hand-worked sink values: one key with logit 0 and sink 0 gives p = 1/2;
 * two keys with logit 0 and sink ln 3 give p = 1/5 each. */
TEST(attn_ext_sink_by_hand) {
    mica_pool *pool = NULL;
    ASSERT_OK(pool_create(1, &pool));
    float q[4] = {0, 0, 0, 0};  /* q = 0: every logit is 0 */
    float k[2][4] = {{1, 2, 3, 4}, {5, 6, 7, 8}};
    float v[2][2] = {{10, 20}, {30, 50}};
    float sink = 0.0f, out[2], scratch[8];
    ops_attn_ext_args a = {
        .q = q, .k = k, .v = v, .out = out, .n_tok = 1, .pos0 = 0, .n_head = 1, .n_head_kv = 1,
        .head_dim = 4, .head_dim_v = 2, .k_row_bytes = 16, .v_row_bytes = 8, .kv_type = MICA_DTYPE_F32,
        .scale = 0.5f, .sinks = &sink, .scratch = scratch, .scratch_stride = 8,
    };
    ops_attention_ext(pool, &a);
    ASSERT_NEAR(out[0], 5.0, 1e-6);
    ASSERT_NEAR(out[1], 10.0, 1e-6);
    sink = logf(3.0f);
    a.pos0 = 1; /* the query at position 1 sees both keys */
    ops_attention_ext(pool, &a);
    ASSERT_NEAR(out[0], (10.0 + 30.0) / 5.0, 1e-5);
    ASSERT_NEAR(out[1], (20.0 + 50.0) / 5.0, 1e-5);
    /* without a sink the same query averages the two values */
    a.sinks = NULL;
    ops_attention_ext(pool, &a);
    ASSERT_NEAR(out[0], 20.0, 1e-5);
    ASSERT_NEAR(out[1], 35.0, 1e-5);
    /* window 1: only the query's own position */
    a.window = 1;
    ops_attention_ext(pool, &a);
    ASSERT_NEAR(out[0], 30.0, 1e-6);
    ASSERT_NEAR(out[1], 50.0, 1e-6);
    pool_free(pool);
}

/* A Q8_0 store: the naive formula over the dequantised rows. */
TEST(attn_ext_q8_0_store) {
    mica_pool *pool = NULL;
    ASSERT_OK(pool_create(2, &pool));
    kern_table kt;
    kern_table_init(&kt, KERN_ISA_GENERIC);
    enum { NT = 3, P0 = 12, NH = 4, NKV = 2, HD = 64, HDV = 32, W = 5, S = W + NT - 1 };
    const int64_t n_pos = P0 + NT, kd = NKV * HD, vd = NKV * HDV;
    static float q[NT * NH * HD], K[(P0 + NT) * NKV * HD], V[(P0 + NT) * NKV * HDV], sinks[NH];
    ae_fill(q, MICA_ARRAY_LEN(q), 5, 1.0f);
    ae_fill(K, MICA_ARRAY_LEN(K), 6, 1.0f);
    ae_fill(V, MICA_ARRAY_LEN(V), 7, 1.0f);
    ae_fill(sinks, NH, 8, 1.0f);
    uint64_t krb = 0, vrb = 0;
    ASSERT_TRUE(dtype_row_bytes(MICA_DTYPE_Q8_0, kd, &krb) && dtype_row_bytes(MICA_DTYPE_Q8_0, vd, &vrb));
    uint8_t *ks = calloc(S, krb), *vs = calloc(S, vrb);
    for (int64_t j = 0; j < n_pos; j++) {
        kt.ops[MICA_DTYPE_Q8_0].from_float(K + j * kd, ks + (j % S) * krb, kd);
        kt.ops[MICA_DTYPE_Q8_0].from_float(V + j * vd, vs + (j % S) * vrb, vd);
        /* the naive side sees exactly the stored values */
        kt.ops[MICA_DTYPE_Q8_0].to_float(ks + (j % S) * krb, K + j * kd, kd);
        kt.ops[MICA_DTYPE_Q8_0].to_float(vs + (j % S) * vrb, V + j * vd, vd);
    }
    float out[NT * NH * HDV];
    double ref[NT * NH * HDV];
    ops_attn_ext_args a = {
        .kt = &kt, .q = q, .k = ks, .v = vs, .out = out, .n_tok = NT, .pos0 = P0, .n_head = NH,
        .n_head_kv = NKV, .head_dim = HD, .head_dim_v = HDV, .k_row_bytes = krb, .v_row_bytes = vrb,
        .kv_type = MICA_DTYPE_Q8_0, .scale = 0.125f, .window = W, .n_slots = S, .sinks = sinks,
    };
    a.scratch_stride = ops_attention_ext_scratch(&a);
    ASSERT_EQ(a.scratch_stride, W + HD + HDV);
    a.scratch = malloc(sizeof(float) * (size_t)(2 * a.scratch_stride));
    ops_attention_ext(pool, &a);
    ae_naive(q, K, V, sinks, NT, P0, NH, NKV, HD, HDV, 0.125, W, ref);
    for (size_t i = 0; i < MICA_ARRAY_LEN(out); i++) ASSERT_NEAR(out[i], ref[i], 2e-6);
    free(ks);
    free(vs);
    free(a.scratch);
    pool_free(pool);
}

/*
 * The online softmax over several key blocks (ops_attention.h) on every
 * kernel table this CPU runs (portable; AVX-512 for head dims that are
 * multiples of 16) and every store type (F32, F16, Q8_0): against the
 * formula in double over the stored (dequantised) values, and bit-identical
 * when the same positions are computed token by token, through a ring or a
 * full store, with 1 or 3 threads.
 */
static void ae_blocks_case(const kern_table *kt, uint32_t type, int64_t nt, int64_t pos0, int64_t nh, int64_t nkv,
                           int64_t hd, int64_t hdv, int64_t window, bool sinks_on, mica_pool *p1, mica_pool *p3) {
    const int64_t n_pos = pos0 + nt, kd = nkv * hd, vd = nkv * hdv;
    float *q = malloc(sizeof(float) * (size_t)(nt * nh * hd)), *K = malloc(sizeof(float) * (size_t)(n_pos * kd));
    float *V = malloc(sizeof(float) * (size_t)(n_pos * vd)), sinks[64];
    ae_fill(q, (size_t)(nt * nh * hd), 11, 1.5f);
    ae_fill(K, (size_t)(n_pos * kd), 12, 1.5f);
    ae_fill(V, (size_t)(n_pos * vd), 13, 1.0f);
    ae_fill(sinks, 64, 14, 2.0f);
    uint64_t krb = 0, vrb = 0;
    ASSERT_TRUE(dtype_row_bytes(type, kd, &krb) && dtype_row_bytes(type, vd, &vrb));
    const int64_t slots = window > 0 ? window + nt - 1 : 0;
    uint8_t *kf = calloc((size_t)n_pos, krb), *vf = calloc((size_t)n_pos, vrb);
    uint8_t *kr = slots ? calloc((size_t)slots, krb) : NULL, *vr = slots ? calloc((size_t)slots, vrb) : NULL;
    for (int64_t j = 0; j < n_pos; j++) {
        uint8_t *kd_row = kf + j * krb, *vd_row = vf + j * vrb;
        if (type == MICA_DTYPE_F32) {
            memcpy(kd_row, K + j * kd, krb);
            memcpy(vd_row, V + j * vd, vrb);
        } else {
            kt->ops[type].from_float(K + j * kd, kd_row, kd);
            kt->ops[type].from_float(V + j * vd, vd_row, vd);
            kt->ops[type].to_float(kd_row, K + j * kd, kd); /* the naive side sees the stored values */
            kt->ops[type].to_float(vd_row, V + j * vd, vd);
        }
        if (slots) {
            memcpy(kr + (j % slots) * krb, kd_row, krb);
            memcpy(vr + (j % slots) * vrb, vd_row, vrb);
        }
    }
    const size_t n_out = (size_t)(nt * nh * hdv);
    float *o1 = malloc(sizeof(float) * n_out), *o2 = malloc(sizeof(float) * n_out);
    double *ref = malloc(sizeof(double) * n_out);
    ops_attn_ext_args a = {
        .kt = kt, .q = q, .k = kf, .v = vf, .out = o1, .n_tok = nt, .pos0 = pos0, .n_head = nh, .n_head_kv = nkv,
        .head_dim = hd, .head_dim_v = hdv, .k_row_bytes = krb, .v_row_bytes = vrb, .kv_type = type,
        .scale = 1.0f / sqrtf((float)hd), .window = window, .sinks = sinks_on ? sinks : NULL,
    };
    a.scratch_stride = ops_attention_ext_scratch(&a);
    a.scratch = malloc(sizeof(float) * (size_t)(3 * a.scratch_stride));
    ops_attention_ext(p3, &a);
    ae_naive(q, K, V, a.sinks, nt, pos0, nh, nkv, hd, hdv, a.scale, window, ref);
    double md = 0, mx = 0;
    for (size_t i = 0; i < n_out; i++) {
        md = fmax(md, fabs(o1[i] - ref[i]));
        mx = fmax(mx, fabs(ref[i]));
    }
    if (!(md <= 2e-6 * mx)) fprintf(stderr, "    %s %s nt %lld pos0 %lld: rel %.3g\n", kt->name, dtype_name(type),
                                    (long long)nt, (long long)pos0, md / mx);
    ASSERT_TRUE(md <= 2e-6 * mx);
    /* token by token (full store, 1 thread; then the ring, 3 threads) */
    for (int pass = 0; pass < (slots ? 2 : 1); pass++) {
        for (int64_t t = 0; t < nt; t++) {
            ops_attn_ext_args b = a;
            b.n_tok = 1;
            b.pos0 = pos0 + t;
            b.q = q + t * nh * hd;
            b.out = o2 + t * nh * hdv;
            if (pass == 1) b.k = kr, b.v = vr, b.n_slots = slots;
            b.scratch_stride = ops_attention_ext_scratch(&b);
            ops_attention_ext(pass ? p3 : p1, &b);
        }
        ASSERT_TRUE(memcmp(o1, o2, sizeof(float) * n_out) == 0);
    }
    if (slots) { /* all at once through the ring */
        ops_attn_ext_args b = a;
        b.k = kr, b.v = vr, b.n_slots = slots, b.out = o2;
        ops_attention_ext(p1, &b);
        ASSERT_TRUE(memcmp(o1, o2, sizeof(float) * n_out) == 0);
    }
    free(q); free(K); free(V); free(kf); free(vf); free(kr); free(vr); free(o1); free(o2); free(ref);
    free(a.scratch);
}

TEST(attn_ext_blocks_types_isas) {
    cpu_features cpu;
    cpu_features_detect(&cpu);
    mica_pool *p1 = NULL, *p3 = NULL;
    ASSERT_OK(pool_create(1, &p1));
    ASSERT_OK(pool_create(3, &p3));
    const uint32_t types[] = {MICA_DTYPE_F32, MICA_DTYPE_F16, MICA_DTYPE_Q8_0};
    for (int isa = KERN_ISA_GENERIC; isa < KERN_ISA_COUNT; isa++) {
        if (!kern_isa_available((enum kern_isa)isa, &cpu)) continue;
        kern_table kt;
        kern_table_init(&kt, (enum kern_isa)isa);
        for (size_t ti = 0; ti < MICA_ARRAY_LEN(types); ti++) {
            /* plain causal over 3 blocks; window 45 across blocks with sinks; GQA 3 */
            ae_blocks_case(&kt, types[ti], 21, 70, 4, 2, 32, 64, 0, false, p1, p3);
            ae_blocks_case(&kt, types[ti], 19, 60, 6, 2, 64, 32, 45, true, p1, p3);
            ae_blocks_case(&kt, types[ti], 1, 100, 8, 8, 128, 128, 0, true, p1, p3); /* decode, MHA */
            if (test_failed()) goto done;
        }
    }
done:
    pool_free(p1);
    pool_free(p3);
}
