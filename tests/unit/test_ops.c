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
    ops_attn_args a = {q, k, v, out, NT, POS0, NH, NKV, HD, HDV, NKV * HD, NKV * HDV, 0.35f, scratch};
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
