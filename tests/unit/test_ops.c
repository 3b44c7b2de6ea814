/*
 * test_ops.c - forward-pass operations against direct double-precision
 * evaluations of their formulas (MODEL_FAMILIES.md section 0).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/threadpool.h"
#include "mica_internal.h"
#include "tensor/ops.h"
#include "test.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double rnd_uniform(void) { /* xorshift64*, deterministic per process */
    rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}
static float rnd_normal(void) {
    double u1 = rnd_uniform() + 1e-12, u2 = rnd_uniform();
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
static void fill_normal(float *x, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) x[i] = rnd_normal() * scale;
}

TEST(ops_rmsnorm_formula) {
    float x[67], w[67], y[67];
    fill_normal(x, 67, 3.0f);
    fill_normal(w, 67, 1.0f);
    ops_rmsnorm(y, x, w, 67, 1e-5f);
    double ss = 0;
    for (int i = 0; i < 67; i++) ss += (double)x[i] * x[i];
    double s = 1.0 / sqrt(ss / 67 + 1e-5);
    for (int i = 0; i < 67; i++) ASSERT_NEAR(y[i], w[i] * x[i] * s, 1e-5 * (fabs(w[i] * x[i] * s) + 1e-3));
}

TEST(ops_softmax_sums_to_one) {
    float x[100];
    fill_normal(x, 100, 10.0f);
    float ref[100];
    memcpy(ref, x, sizeof x);
    ops_softmax(x, 100);
    double mx = ref[0], sum = 0, tot = 0;
    for (int i = 1; i < 100; i++) mx = fmax(mx, ref[i]);
    for (int i = 0; i < 100; i++) sum += exp(ref[i] - mx);
    for (int i = 0; i < 100; i++) { ASSERT_NEAR(x[i], exp(ref[i] - mx) / sum, 1e-6); tot += x[i]; }
    ASSERT_NEAR(tot, 1.0, 1e-5);
}

/* RoPE: rotate pair (i0, i1) of each head by pos * theta^(-2j/n_rot). */
static void rope_check(enum rope_mode mode) {
    enum { NH = 3, HD = 16 };
    const int n_rot = 12; /* partial rotation: dims 12..15 pass through */
    float x[NH * HD], y[NH * HD];
    fill_normal(x, NH * HD, 1.0f);
    for (int pos = 0; pos < 40; pos += 13) {
        memcpy(y, x, sizeof x);
        ops_rope(y, NH, HD, n_rot, pos, 10000.0f, mode);
        for (int h = 0; h < NH; h++) {
            const float *a = x + h * HD, *b = y + h * HD;
            for (int j = 0; j < n_rot / 2; j++) {
                int i0 = mode == ROPE_NORM ? 2 * j : j, i1 = mode == ROPE_NORM ? 2 * j + 1 : j + n_rot / 2;
                double ang = pos * pow(10000.0, -2.0 * j / n_rot);
                ASSERT_NEAR(b[i0], a[i0] * cos(ang) - a[i1] * sin(ang), 2e-5);
                ASSERT_NEAR(b[i1], a[i0] * sin(ang) + a[i1] * cos(ang), 2e-5);
            }
            for (int i = n_rot; i < HD; i++) ASSERT_TRUE(b[i] == a[i]);
        }
    }
}
TEST(ops_rope_norm_adjacent_pairs) { rope_check(ROPE_NORM); }
TEST(ops_rope_neox_half_split) { rope_check(ROPE_NEOX); }

/* Matrix products: every supported weight type, against dequantised weights
 * times float activations in double, and identical results for any thread
 * count and batch size (each output is one vec_dot, whatever the split). */
TEST(ops_matmul_types_threads_batches) {
    const uint32_t types[] = {MICA_DTYPE_F32, MICA_DTYPE_F16, MICA_DTYPE_BF16, MICA_DTYPE_Q8_0,
                              MICA_DTYPE_Q4_0, MICA_DTYPE_Q4_K, MICA_DTYPE_Q6_K};
    enum { K = 512, N = 37, T = 5 };
    cpu_features cpu;
    cpu_features_detect(&cpu);
    kern_table kt;
    kern_table_init(&kt, kern_best_isa(&cpu));
    float *wf = malloc(sizeof(float) * K * N), *wd = malloc(sizeof(float) * K * N);
    float *x = malloc(sizeof(float) * K * T), *y1 = malloc(sizeof(float) * N * T);
    float *y2 = malloc(sizeof(float) * N * T), *yb = malloc(sizeof(float) * N * T);
    fill_normal(wf, K * N, 0.05f);
    fill_normal(x, K * T, 1.0f);
    mica_pool *p1 = NULL, *p3 = NULL;
    ASSERT_OK(pool_create(1, &p1));
    ASSERT_OK(pool_create(3, &p3));
    for (size_t ti = 0; ti < MICA_ARRAY_LEN(types); ti++) {
        const uint32_t t = types[ti];
        uint64_t rb = 0;
        ASSERT_TRUE(dtype_row_bytes(t, K, &rb));
        uint8_t *wq = malloc(rb * N);
        for (int r = 0; r < N; r++) kt.ops[t].from_float(wf + r * K, wq + rb * r, K);
        for (int r = 0; r < N; r++) kt.ops[t].to_float(wq + rb * r, wd + r * K, K);
        tensor_view w = {"w", t, {K, N, 1, 1}, rb, wq};
        size_t qb = ops_qbuf_bytes(&kt, t, K, T);
        void *qbuf = qb ? malloc(qb) : NULL;
        ops_ctx c1 = {p1, &kt, qbuf, qb}, c3 = {p3, &kt, qbuf, qb};
        ops_matmul(&c1, &w, x, T, y1);
        ops_matmul(&c3, &w, x, T, y2);
        for (int i = 0; i < T; i++) ops_matmul(&c3, &w, x + i * K, 1, yb + i * N);
        const bool float_acts = kt.ops[t].vec_dot_type == MICA_DTYPE_F32;
        for (int i = 0; i < T; i++) {
            for (int r = 0; r < N; r++) {
                double ref = 0, mag = 0;
                for (int k = 0; k < K; k++) {
                    ref += (double)wd[r * K + k] * x[i * K + k];
                    mag += fabs((double)wd[r * K + k] * x[i * K + k]);
                }
                /* float activations: summation order only; Q8 activations: each
                 * element rounded to 1/254 of its block's max (|rel err| <= 1/254
                 * per term, mostly cancelling) - bound 1% of sum |w x|. */
                double tol = float_acts ? 1e-5 * mag + 1e-6 : 1e-2 * mag;
                ASSERT_NEAR(y1[i * N + r], ref, tol);
                ASSERT_TRUE(y1[i * N + r] == y2[i * N + r]);
                ASSERT_TRUE(y1[i * N + r] == yb[i * N + r]);
            }
        }
        free(qbuf);
        free(wq);
    }
    pool_free(p1);
    pool_free(p3);
    free(wf); free(wd); free(x); free(y1); free(y2); free(yb);
}

TEST(ops_attention_matches_naive_gqa) {
    enum { NT = 3, POS0 = 4, NH = 4, NKV = 2, HD = 8, HDV = 6, n_kv = POS0 + NT };
    float q[NT * NH * HD], k[n_kv * NKV * HD], v[n_kv * NKV * HDV], out[NT * NH * HDV];
    fill_normal(q, NT * NH * HD, 1.0f);
    fill_normal(k, n_kv * NKV * HD, 1.0f);
    fill_normal(v, n_kv * NKV * HDV, 1.0f);
    mica_pool *p = NULL;
    ASSERT_OK(pool_create(2, &p));
    float scratch[2 * (POS0 + NT)];
    ops_attn_args a = {q, k, v, out, NT, POS0, NH, NKV, HD, HDV, NKV * HD, NKV * HDV, 0.35f, scratch, NULL};
    ops_attention(p, &a);
    pool_free(p);
    for (int t = 0; t < NT; t++) {
        for (int h = 0; h < NH; h++) {
            int g = h / (NH / NKV), nk = POS0 + t + 1;
            double s[16], mx = -1e300, sum = 0;
            for (int j = 0; j < nk; j++) {
                s[j] = 0;
                for (int i = 0; i < HD; i++) s[j] += (double)q[(t * NH + h) * HD + i] * k[(j * NKV + g) * HD + i];
                s[j] *= 0.35;
                mx = fmax(mx, s[j]);
            }
            for (int j = 0; j < nk; j++) { s[j] = exp(s[j] - mx); sum += s[j]; }
            for (int i = 0; i < HDV; i++) {
                double o = 0;
                for (int j = 0; j < nk; j++) o += s[j] / sum * v[(j * NKV + g) * HDV + i];
                ASSERT_NEAR(out[(t * NH + h) * HDV + i], o, 1e-5);
            }
        }
    }
}

/*
 * Online-softmax attention (ops_attention.h) over several key blocks, for
 * every implementation this CPU runs (portable; AVX-512 when head dims are
 * multiples of 16): against the formula in double, and bit-identical for
 * any split of the same positions into calls (one call, token by token,
 * uneven pieces) and any thread count.
 */
static void attn_naive(const float *q, const float *k, const float *v, int nt, int pos0, int nh, int nkv, int hd,
                       int hdv, double scale, double *out) {
    double *s = malloc(sizeof(double) * (size_t)(pos0 + nt));
    for (int t = 0; t < nt; t++)
        for (int h = 0; h < nh; h++) {
            const int g = h / (nh / nkv), nk = pos0 + t + 1;
            double mx = -1e300, sum = 0;
            for (int j = 0; j < nk; j++) {
                s[j] = 0;
                for (int i = 0; i < hd; i++) s[j] += (double)q[(t * nh + h) * hd + i] * k[(j * nkv + g) * hd + i];
                s[j] *= scale;
                mx = fmax(mx, s[j]);
            }
            for (int j = 0; j < nk; j++) { s[j] = exp(s[j] - mx); sum += s[j]; }
            for (int i = 0; i < hdv; i++) {
                double o = 0;
                for (int j = 0; j < nk; j++) o += s[j] / sum * v[(j * nkv + g) * hdv + i];
                out[(t * nh + h) * hdv + i] = o;
            }
        }
    free(s);
}

static void attn_blocks_case(const kern_table *kt, int nt, int pos0, int nh, int nkv, int hd, int hdv) {
    const int n_kv = pos0 + nt;
    float *q = malloc(sizeof(float) * nt * nh * hd), *k = malloc(sizeof(float) * n_kv * nkv * hd);
    float *v = malloc(sizeof(float) * n_kv * nkv * hdv);
    float *o1 = malloc(sizeof(float) * nt * nh * hdv), *o2 = malloc(sizeof(float) * nt * nh * hdv);
    double *ref = malloc(sizeof(double) * nt * nh * hdv);
    fill_normal(q, nt * nh * hd, 1.0f);
    fill_normal(k, n_kv * nkv * hd, 1.0f);
    fill_normal(v, n_kv * nkv * hdv, 1.0f);
    const float scale = 1.0f / sqrtf((float)hd) * 2.0f; /* sharper than usual: large exp range */
    mica_pool *p1 = NULL, *p3 = NULL;
    ASSERT_OK(pool_create(1, &p1));
    ASSERT_OK(pool_create(3, &p3));
    /* positions pos0 .. pos0 + nt - 1 in one call, 3 threads */
    ops_attn_args a = {.q = q, .k = k, .v = v, .out = o1, .n_tok = nt, .pos0 = pos0, .n_head = nh, .n_head_kv = nkv,
                       .head_dim = hd, .head_dim_v = hdv, .k_stride = nkv * hd, .v_stride = nkv * hdv,
                       .scale = scale, .kt = kt};
    ops_attention(p3, &a);
    attn_naive(q, k, v, nt, pos0, nh, nkv, hd, hdv, scale, ref);
    for (int i = 0; i < nt * nh * hdv; i++) ASSERT_NEAR(o1[i], ref[i], 2e-5 * (1.0 + fabs(ref[i])));
    /* the same positions in uneven pieces (1, 2, 3, ... tokens), 1 thread */
    for (int t0 = 0, len = 1; t0 < nt; t0 += len, len++) {
        ops_attn_args b = a;
        b.n_tok = MICA_MIN(len, nt - t0);
        b.pos0 = pos0 + t0;
        b.q = q + (size_t)t0 * nh * hd;
        b.out = o2 + (size_t)t0 * nh * hdv;
        ops_attention(p1, &b);
    }
    ASSERT_TRUE(memcmp(o1, o2, sizeof(float) * nt * nh * hdv) == 0);
    /* token by token, 3 threads */
    for (int t0 = 0; t0 < nt; t0++) {
        ops_attn_args b = a;
        b.n_tok = 1;
        b.pos0 = pos0 + t0;
        b.q = q + (size_t)t0 * nh * hd;
        b.out = o2 + (size_t)t0 * nh * hdv;
        ops_attention(p3, &b);
    }
    ASSERT_TRUE(memcmp(o1, o2, sizeof(float) * nt * nh * hdv) == 0);
    pool_free(p1);
    pool_free(p3);
    free(q); free(k); free(v); free(o1); free(o2); free(ref);
}

TEST(ops_attention_blocks_splits_isas) {
    cpu_features cpu;
    cpu_features_detect(&cpu);
    for (int isa = KERN_ISA_GENERIC; isa < KERN_ISA_COUNT; isa++) {
        if (!kern_isa_available((enum kern_isa)isa, &cpu)) continue;
        kern_table kt;
        kern_table_init(&kt, (enum kern_isa)isa);
        /* several 32-key blocks, GQA 2 and 3, dims the AVX-512 tile takes and odd ones */
        attn_blocks_case(&kt, 37, 45, 4, 2, 32, 16);
        attn_blocks_case(&kt, 9, 70, 6, 2, 128, 64);
        attn_blocks_case(&kt, 1, 100, 16, 1, 80, 144); /* MQA, one query: heads in several tiles */
        attn_blocks_case(&kt, 11, 0, 3, 3, 8, 6);      /* not multiples of 16: portable path */
        if (test_failed()) return;
    }
    attn_blocks_case(NULL, 20, 33, 4, 2, 32, 32); /* kt NULL: chosen from the CPU */
}

/*
 * ops_matmul_swiglu: bit-identical to two ops_matmul and ops_swiglu (shared
 * activation type, and a pair with different ones), any thread count and
 * batch; F32 weights also against silu(x.g) * (x.u) in double.
 */
TEST(ops_matmul_swiglu_equals_separate) {
    const uint32_t pairs[][2] = {{MICA_DTYPE_F32, MICA_DTYPE_F32}, {MICA_DTYPE_Q8_0, MICA_DTYPE_Q8_0},
                                 {MICA_DTYPE_Q4_0, MICA_DTYPE_Q4_0}, {MICA_DTYPE_Q4_K, MICA_DTYPE_Q6_K},
                                 {MICA_DTYPE_Q8_0, MICA_DTYPE_Q4_K}};
    enum { K = 256, N = 45, T = 11 };
    cpu_features cpu;
    cpu_features_detect(&cpu);
    kern_table kt;
    kern_table_init(&kt, kern_best_isa(&cpu));
    float *wf = malloc(sizeof(float) * K * N * 2), *x = malloc(sizeof(float) * K * T);
    float *g = malloc(sizeof(float) * N * T), *u = malloc(sizeof(float) * N * T);
    float *o = malloc(sizeof(float) * N * T), *u2 = malloc(sizeof(float) * N * T);
    fill_normal(wf, K * N * 2, 0.1f);
    fill_normal(x, K * T, 1.0f);
    mica_pool *pools[2] = {NULL, NULL};
    ASSERT_OK(pool_create(1, &pools[0]));
    ASSERT_OK(pool_create(3, &pools[1]));
    for (size_t pi = 0; pi < MICA_ARRAY_LEN(pairs); pi++) {
        uint8_t *wq[2];
        tensor_view w[2];
        size_t qb = 0;
        for (int m = 0; m < 2; m++) {
            const uint32_t t = pairs[pi][m];
            uint64_t rb = 0;
            ASSERT_TRUE(dtype_row_bytes(t, K, &rb));
            wq[m] = malloc(rb * N);
            for (int r = 0; r < N; r++) {
                if (t == MICA_DTYPE_F32) memcpy(wq[m] + rb * r, wf + (m * N + r) * K, sizeof(float) * K);
                else kt.ops[t].from_float(wf + (m * N + r) * K, wq[m] + rb * r, K);
            }
            w[m] = (tensor_view){"w", t, {K, N, 1, 1}, rb, wq[m]};
            qb = MICA_MAX(qb, ops_qbuf_bytes(&kt, t, K, T));
        }
        void *qbuf = qb ? malloc(qb) : NULL;
        for (int p = 0; p < 2; p++) {
            for (int nt = 1; nt <= T; nt += T - 1) {
                ops_ctx c = {pools[p], &kt, qbuf, qb};
                ops_matmul(&c, &w[0], x, nt, g);
                ops_matmul(&c, &w[1], x, nt, u);
                ops_swiglu(g, g, u, (int64_t)nt * N);
                ops_matmul_swiglu(&c, &w[0], &w[1], x, nt, o, u2);
                ASSERT_TRUE(memcmp(g, o, sizeof(float) * N * nt) == 0);
                ASSERT_TRUE(memcmp(u, u2, sizeof(float) * N * nt) == 0);
                if (pairs[pi][0] != MICA_DTYPE_F32) continue;
                for (int i = 0; i < nt * N; i++) {
                    const int t = i / N, r = i % N;
                    double dg = 0, du = 0;
                    for (int k = 0; k < K; k++) {
                        dg += (double)wf[r * K + k] * x[t * K + k];
                        du += (double)wf[(N + r) * K + k] * x[t * K + k];
                    }
                    const double ref = dg / (1.0 + exp(-dg)) * du;
                    ASSERT_NEAR(o[i], ref, 1e-4 * (1.0 + fabs(ref)));
                }
            }
        }
        free(qbuf);
        free(wq[0]);
        free(wq[1]);
    }
    pool_free(pools[0]);
    pool_free(pools[1]);
    free(wf); free(x); free(g); free(u); free(o); free(u2);
}

/* SwiGLU against silu(g) * u in double over the float range that matters
 * (including |g| large enough to saturate exp), odd lengths for the
 * vector tails; out may equal gate. */
TEST(ops_swiglu_formula) {
    enum { N = 203 };
    float g[N], u[N], o[N];
    for (int i = 0; i < N; i++) {
        g[i] = (float)(i - N / 2) * 0.75f; /* -75.75 .. 75.75 */
        u[i] = 1.0f + 0.01f * (float)i;
    }
    g[0] = -120.0f;
    g[1] = 95.0f;
    ops_swiglu(o, g, u, N);
    for (int i = 0; i < N; i++) {
        const double ref = (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i];
        ASSERT_NEAR(o[i], ref, 4e-7 * fabs(ref) + 1e-30);
    }
    memcpy(o, g, sizeof g);
    ops_swiglu(o, o, u, 7);
    for (int i = 0; i < 7; i++) ASSERT_NEAR(o[i], (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i], 4e-7 * fabs((double)g[i] * u[i]) + 1e-30);
}
