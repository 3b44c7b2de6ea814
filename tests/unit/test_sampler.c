/*
 * test_sampler.c - unit tests for the sampler (src/sample/sampler.c).
 *
 * Oracles are independent of the code under test: softmax computed here in
 * double precision, candidate sets worked out by hand from probabilities
 * chosen so the cut points are unambiguous, argmax by a plain loop, and
 * empirical frequencies checked with a chi-square statistic against a
 * critical value computed for the degrees of freedom (Wilson-Hilferty
 * approximation of the 1e-6 upper quantile). Seeds are fixed, so the tests
 * are deterministic; the bounds only decide whether the draws fit.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mica.h"
#include "sample/sampler.h"
#include "../test.h"

/* ---- helpers ---- */

static mica_sampler_params plain_params(float temperature, uint64_t seed) {
    mica_sampler_params p = mica_sampler_params_default();
    p.temperature = temperature;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.seed = seed;
    return p;
}

/* probs[i] = softmax(logits / t)[i] in double. */
static void ref_softmax(const float *logits, int n, double t, double *probs) {
    double mx = -INFINITY, z = 0.0;
    for (int i = 0; i < n; i++) mx = fmax(mx, logits[i]);
    for (int i = 0; i < n; i++) z += probs[i] = exp((logits[i] - mx) / t);
    for (int i = 0; i < n; i++) probs[i] /= z;
}

/* Upper 1e-6 quantile of chi-square with dof degrees of freedom. */
static double chi2_critical(int dof) {
    double k = dof, z = 4.753; /* standard normal 1e-6 upper quantile */
    double a = 1.0 - 2.0 / (9.0 * k) + z * sqrt(2.0 / (9.0 * k));
    return k * a * a * a;
}

/* Draws n_draws tokens into counts[0..n) (zeroed here); false on an id out of range. */
static bool draw_counts(mica_sampler *s, const float *logits, int n, int n_draws, long *counts) {
    memset(counts, 0, (size_t)n * sizeof *counts);
    for (int d = 0; d < n_draws; d++) {
        int32_t tok = mica_sampler_sample(s, logits, n);
        if (tok < 0 || tok >= n) return false;
        counts[tok]++;
    }
    return true;
}

/*
 * Checks counts against probs: tokens with probability 0 never drawn, and
 * the chi-square statistic over the others below the critical value.
 */
static bool counts_fit(const long *counts, const double *probs, int n, long n_draws) {
    double chi2 = 0.0;
    int dof = -1;
    for (int i = 0; i < n; i++) {
        if (probs[i] == 0.0) {
            if (counts[i] != 0) {
                test_fail(__FILE__, __LINE__, "token %d has probability 0 but was drawn %ld times", i, counts[i]);
                return false;
            }
            continue;
        }
        double e = probs[i] * (double)n_draws;
        chi2 += (counts[i] - e) * (counts[i] - e) / e;
        dof++;
    }
    if (dof > 0 && chi2 > chi2_critical(dof)) {
        test_fail(__FILE__, __LINE__, "chi-square %.2f exceeds %.2f (dof %d)", chi2, chi2_critical(dof), dof);
        return false;
    }
    return true;
}

/* Deterministic pseudo-random logits in [-scale, scale). */
static void fill_logits(float *x, int n, uint64_t seed, float scale) {
    for (int i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = scale * (float)((double)(seed >> 11) * 0x1.0p-53 * 2.0 - 1.0);
    }
}

static int32_t ref_argmax(const float *x, int n) {
    int32_t b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* ---- argmax and greedy ---- */

TEST(sampler_argmax_and_ties) {
    ASSERT_EQ(sampler_argmax((const float[]){1.0f, 3.0f, 2.0f}, 3), 1);
    ASSERT_EQ(sampler_argmax((const float[]){5.0f, 5.0f, 1.0f}, 3), 0);
    ASSERT_EQ(sampler_argmax((const float[]){1.0f, 7.0f, 0.0f, 7.0f, 7.0f}, 5), 1);
    ASSERT_EQ(sampler_argmax((const float[]){-3.0f, -1.0f, -2.0f}, 3), 1);
    ASSERT_EQ(sampler_argmax((const float[]){4.0f}, 1), 0);
    ASSERT_EQ(sampler_argmax((const float[]){-INFINITY, -INFINITY}, 2), 0);
    ASSERT_EQ(sampler_argmax((const float[]){NAN, 1.0f, 2.0f}, 3), 2);
}

TEST(sampler_greedy_ignores_seed) {
    enum { N = 1000 };
    static float x[N];
    for (int v = 0; v < 20; v++) {
        fill_logits(x, N, 100 + (uint64_t)v, 8.0f);
        int32_t want = ref_argmax(x, N);
        for (uint64_t seed = 0; seed < 3; seed++) {
            mica_sampler_params p = mica_sampler_params_default();
            p.temperature = 0.0f;
            p.seed = seed * 7919;
            mica_sampler *s = NULL;
            ASSERT_OK(mica_sampler_create(&p, &s));
            for (int k = 0; k < 3; k++) {
                int32_t got = mica_sampler_sample(s, x, N);
                if (got != want) { mica_sampler_free(s); ASSERT_EQ(got, want); }
            }
            mica_sampler_free(s);
        }
    }
}

TEST(sampler_top_k_1_is_greedy) {
    enum { N = 3000 };
    static float x[N];
    mica_sampler_params p = plain_params(1.5f, 5);
    p.top_k = 1;
    mica_sampler *s = NULL;
    ASSERT_OK(mica_sampler_create(&p, &s));
    for (int v = 0; v < 50; v++) {
        fill_logits(x, N, 900 + (uint64_t)v, 3.0f);
        int32_t got = mica_sampler_sample(s, x, N);
        if (got != ref_argmax(x, N)) { mica_sampler_free(s); ASSERT_EQ(got, ref_argmax(x, N)); }
    }
    mica_sampler_free(s);
}

/* ---- seeded determinism ---- */

TEST(sampler_seed_determinism) {
    enum { N = 50, DRAWS = 1000 };
    float x[N];
    fill_logits(x, N, 77, 2.0f);
    mica_sampler_params pa = plain_params(1.0f, 42), pb = pa, pc = pa;
    pc.seed = 43;
    mica_sampler *a = NULL, *b = NULL, *c = NULL;
    ASSERT_OK(mica_sampler_create(&pa, &a));
    ASSERT_OK(mica_sampler_create(&pb, &b));
    ASSERT_OK(mica_sampler_create(&pc, &c));
    int same_ab = 0, same_ac = 0;
    for (int d = 0; d < DRAWS; d++) {
        int32_t ta = mica_sampler_sample(a, x, N);
        int32_t tb = mica_sampler_sample(b, x, N);
        int32_t tc = mica_sampler_sample(c, x, N);
        same_ab += ta == tb;
        same_ac += ta == tc;
    }
    mica_sampler_free(a);
    mica_sampler_free(b);
    mica_sampler_free(c);
    ASSERT_EQ(same_ab, DRAWS);
    /* Independent draws from this distribution agree with probability
     * sum p_i^2 < 0.2, so ~1000 equal draws would mean a shared stream. */
    ASSERT_TRUE(same_ac < DRAWS / 2);
}

/* ---- distributions ---- */

TEST(sampler_distribution_matches_softmax) {
    enum { N = 8, DRAWS = 100000 };
    const float x[N] = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 0.0f, 1.5f, -2.0f};
    double probs[N];
    long counts[N];
    ref_softmax(x, N, 1.0, probs);
    mica_sampler_params p = plain_params(1.0f, 2024);
    mica_sampler *s = NULL;
    ASSERT_OK(mica_sampler_create(&p, &s));
    bool ok = draw_counts(s, x, N, DRAWS, counts);
    mica_sampler_free(s);
    ASSERT_TRUE(ok);
    ASSERT_TRUE(counts_fit(counts, probs, N, DRAWS));
    /* Also a per-token bound: 5 standard deviations of a binomial frequency. */
    for (int i = 0; i < N; i++) {
        double tol = 5.0 * sqrt(probs[i] * (1.0 - probs[i]) / DRAWS);
        ASSERT_NEAR((double)counts[i] / DRAWS, probs[i], tol);
    }
}

TEST(sampler_temperature_scaling) {
    enum { N = 6, DRAWS = 50000 };
    const float x[N] = {0.0f, 1.0f, 2.0f, -0.5f, 1.5f, 0.25f};
    const float temps[] = {0.5f, 2.0f, 10.0f};
    double probs[N];
    long counts[N];
    double p_top_prev = 1.0;
    for (size_t k = 0; k < sizeof temps / sizeof temps[0]; k++) {
        ref_softmax(x, N, temps[k], probs);
        mica_sampler_params p = plain_params(temps[k], 11 + k);
        mica_sampler *s = NULL;
        ASSERT_OK(mica_sampler_create(&p, &s));
        bool ok = draw_counts(s, x, N, DRAWS, counts);
        mica_sampler_free(s);
        ASSERT_TRUE(ok);
        ASSERT_TRUE(counts_fit(counts, probs, N, DRAWS));
        /* Higher temperature flattens: the top token's share falls. */
        double p_top = (double)counts[2] / DRAWS;
        ASSERT_TRUE(p_top < p_top_prev);
        p_top_prev = p_top;
    }
}

/* ---- truncation ---- */

TEST(sampler_top_k_keeps_exactly_k) {
    enum { N = 20, K = 5, DRAWS = 30000 };
    float x[N];
    for (int i = 0; i < N; i++) x[i] = (float)((i * 7) % N) * 0.1f; /* distinct values */
    /* The K largest values 1.9, 1.8, ... 1.5 sit at ids with (7i mod 20) >= 15. */
    double probs[N] = {0};
    float kept[N];
    int n_kept = 0;
    for (int i = 0; i < N; i++) {
        bool in = (i * 7) % N >= N - K;
        kept[i] = in ? x[i] : -INFINITY;
        n_kept += in;
    }
    ASSERT_EQ(n_kept, K);
    ref_softmax(kept, N, 0.5, probs);
    mica_sampler_params p = plain_params(0.5f, 3);
    p.top_k = K;
    mica_sampler *s = NULL;
    long counts[N];
    ASSERT_OK(mica_sampler_create(&p, &s));
    bool ok = draw_counts(s, x, N, DRAWS, counts);
    mica_sampler_free(s);
    ASSERT_TRUE(ok);
    ASSERT_TRUE(counts_fit(counts, probs, N, DRAWS)); /* outside never drawn, inside renormalised */
    for (int i = 0; i < N; i++)
        if (probs[i] > 0) ASSERT_TRUE(counts[i] > 0);
}

TEST(sampler_top_k_tie_break_at_cut) {
    /* Ids 1, 2, 3 tie for second place; k = 2 keeps ids 0 and 1. */
    const float x[5] = {3.0f, 2.0f, 2.0f, 2.0f, 0.0f};
    mica_sampler_params p = plain_params(1.0f, 8);
    p.top_k = 2;
    mica_sampler *s = NULL;
    long counts[5];
    ASSERT_OK(mica_sampler_create(&p, &s));
    bool ok = draw_counts(s, x, 5, 5000, counts);
    mica_sampler_free(s);
    ASSERT_TRUE(ok);
    ASSERT_TRUE(counts[0] > 0 && counts[1] > 0);
    ASSERT_EQ(counts[2] + counts[3] + counts[4], 0);
}

/*
 * Hand example. Probabilities (by id) 0.07, 0.50, 0.03, 0.25, 0.15; in
 * sorted order 0.50 (id 1), 0.25 (id 3), 0.15 (id 4), 0.07 (id 0), 0.03 (id 2),
 * cumulative 0.50, 0.75, 0.90, 0.97, 1.00.
 */
static const double hand_p[5] = {0.07, 0.50, 0.03, 0.25, 0.15};

/* Samples with the given truncation and checks that exactly the ids in
 * `keep` appear, with frequencies proportional to hand_p. */
static bool check_hand_cut(int32_t top_k, float top_p, float min_p, const bool keep[5]) {
    float x[5];
    for (int i = 0; i < 5; i++) x[i] = (float)log(hand_p[i]);
    double probs[5], z = 0.0;
    for (int i = 0; i < 5; i++) z += keep[i] ? hand_p[i] : 0.0;
    for (int i = 0; i < 5; i++) probs[i] = keep[i] ? hand_p[i] / z : 0.0;
    mica_sampler_params p = plain_params(1.0f, 99);
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    mica_sampler *s = NULL;
    if (mica_sampler_create(&p, &s) != MICA_OK) return false;
    long counts[5];
    bool ok = draw_counts(s, x, 5, 20000, counts);
    mica_sampler_free(s);
    if (!ok || !counts_fit(counts, probs, 5, 20000)) {
        test_fail(__FILE__, __LINE__, "top_k %d top_p %.2f min_p %.2f", top_k, top_p, min_p);
        return false;
    }
    for (int i = 0; i < 5; i++) {
        if (keep[i] && counts[i] == 0) {
            test_fail(__FILE__, __LINE__, "kept id %d never drawn", i);
            return false;
        }
    }
    return true;
}

TEST(sampler_top_p_hand_cut) {
    /* top_k 0 (full sort path), 4 (heap path) and 5 (= n: disabled). */
    static const int32_t ks[] = {0, 4, 5};
    for (size_t k = 0; k < 3; k++) {
        /* 0.80: cumulative reaches 0.90 at the third token -> {1, 3, 4}. */
        ASSERT_TRUE(check_hand_cut(ks[k], 0.80f, 0.0f, (const bool[5]){0, 1, 0, 1, 1}));
        /* 0.45: the first token alone has 0.50 -> {1}. */
        ASSERT_TRUE(check_hand_cut(ks[k], 0.45f, 0.0f, (const bool[5]){0, 1, 0, 0, 0}));
        /* 0.70: {1, 3} (0.75). */
        ASSERT_TRUE(check_hand_cut(ks[k], 0.70f, 0.0f, (const bool[5]){0, 1, 0, 1, 0}));
    }
    /* 0.95 with top_k 4: renormalised over 0.97 -> 0.515, 0.773, 0.928, 1.0 -> all four. */
    ASSERT_TRUE(check_hand_cut(4, 0.95f, 0.0f, (const bool[5]){1, 1, 0, 1, 1}));
    /* 0.95 without top-k: 0.97 is the first cumulative >= 0.95 -> {1, 3, 4, 0}. */
    ASSERT_TRUE(check_hand_cut(0, 0.95f, 0.0f, (const bool[5]){1, 1, 0, 1, 1}));
    /* 0.98 without top-k: everything. */
    ASSERT_TRUE(check_hand_cut(0, 0.98f, 0.0f, (const bool[5]){1, 1, 1, 1, 1}));
}

TEST(sampler_top_p_tie_break) {
    /* Ids 1 and 2 tie with p = e^2 / (2e^2 + e + 1) = 0.3995 each; top_p 0.3
     * keeps the first in sorted order, which is the lower id. */
    const float x[4] = {1.0f, 2.0f, 2.0f, 0.0f};
    static const int32_t ks[] = {0, 3};
    for (int k = 0; k < 2; k++) {
        mica_sampler_params p = plain_params(1.0f, 21);
        p.top_k = ks[k];
        p.top_p = 0.3f;
        mica_sampler *s = NULL;
        long counts[4];
        ASSERT_OK(mica_sampler_create(&p, &s));
        bool ok = draw_counts(s, x, 4, 2000, counts);
        mica_sampler_free(s);
        ASSERT_TRUE(ok);
        ASSERT_EQ(counts[1], 2000);
    }
}

TEST(sampler_min_p_hand_cut) {
    static const int32_t ks[] = {0, 4, 5};
    for (size_t k = 0; k < 3; k++) {
        /* 0.2 * 0.50 = 0.10: keeps 0.50, 0.25, 0.15. */
        ASSERT_TRUE(check_hand_cut(ks[k], 1.0f, 0.2f, (const bool[5]){0, 1, 0, 1, 1}));
        /* 0.55 * 0.50 = 0.275: keeps 0.50 only. */
        ASSERT_TRUE(check_hand_cut(ks[k], 1.0f, 0.55f, (const bool[5]){0, 1, 0, 0, 0}));
        /* 0.1 * 0.50 = 0.05: keeps all but 0.03. */
        ASSERT_TRUE(check_hand_cut(ks[k], 1.0f, 0.1f, (const bool[5]){1, 1, 0, 1, 1}));
        /* min_p 1 keeps the max only. */
        ASSERT_TRUE(check_hand_cut(ks[k], 1.0f, 1.0f, (const bool[5]){0, 1, 0, 0, 0}));
        /* top-p 0.70 keeps {1, 3}; min-p 0.1 keeps four; together {1, 3}. */
        ASSERT_TRUE(check_hand_cut(ks[k], 0.70f, 0.1f, (const bool[5]){0, 1, 0, 1, 0}));
        /* top-p 0.95 keeps four; min-p 0.2 keeps three; together three. */
        ASSERT_TRUE(check_hand_cut(ks[k], 0.95f, 0.2f, (const bool[5]){0, 1, 0, 1, 1}));
    }
}

/* ---- repetition penalty ---- */

static int32_t sample_after(const mica_sampler_params *p, const int32_t *hist, int n_hist,
                            const float *x, int n) {
    mica_sampler *s = NULL;
    if (mica_sampler_create(p, &s) != MICA_OK) return -2;
    for (int i = 0; i < n_hist; i++) mica_sampler_accept(s, hist[i]);
    int32_t t = mica_sampler_sample(s, x, n);
    mica_sampler_free(s);
    return t;
}

TEST(sampler_repetition_penalty_greedy) {
    mica_sampler_params p = plain_params(0.0f, 0);
    p.repeat_penalty = 1.5f;
    p.repeat_last_n = 8;
    const float pos[3] = {2.0f, 1.9f, -1.0f};
    ASSERT_EQ(sample_after(&p, NULL, 0, pos, 3), 0);
    /* 2.0 / 1.5 = 1.33 < 1.9 */
    ASSERT_EQ(sample_after(&p, (const int32_t[]){0}, 1, pos, 3), 1);
    /* Negative logits are multiplied: -1.0 * 1.1 = -1.1 < -1.05. */
    const float neg[2] = {-1.0f, -1.05f};
    p.repeat_penalty = 1.1f;
    ASSERT_EQ(sample_after(&p, NULL, 0, neg, 2), 0);
    ASSERT_EQ(sample_after(&p, (const int32_t[]){0}, 1, neg, 2), 1);
    /* Once per distinct token: 2.0 / 1.1 = 1.82 > 1.7, but 2.0 / 1.1^3 = 1.50
     * < 1.7 would flip the choice if each occurrence counted. */
    const float once[2] = {2.0f, 1.7f};
    ASSERT_EQ(sample_after(&p, (const int32_t[]){0, 0, 0}, 3, once, 2), 0);
    ASSERT_EQ(sample_after(&p, (const int32_t[]){0, 1, 0, 0}, 4, once, 2), 0);
    /* Penalty 1 disables. */
    p.repeat_penalty = 1.0f;
    ASSERT_EQ(sample_after(&p, (const int32_t[]){0}, 1, pos, 3), 0);
    /* Ids outside the vocabulary are ignored. */
    p.repeat_penalty = 1.5f;
    ASSERT_EQ(sample_after(&p, (const int32_t[]){7, -1}, 2, pos, 3), 0);
}

TEST(sampler_repetition_penalty_window) {
    mica_sampler_params p = plain_params(0.0f, 0);
    p.repeat_penalty = 1.5f;
    p.repeat_last_n = 2;
    const float x[8] = {2.0f, 1.9f, 0, 0, 0, 0, 0, 0};
    /* 0 was accepted 3 tokens ago: outside a window of 2. */
    ASSERT_EQ(sample_after(&p, (const int32_t[]){0, 5, 6}, 3, x, 8), 0);
    ASSERT_EQ(sample_after(&p, (const int32_t[]){5, 0, 6}, 3, x, 8), 1);
    p.repeat_last_n = 0;
    ASSERT_EQ(sample_after(&p, (const int32_t[]){0}, 1, x, 8), 0);
    /* The penalty also applies before sampling: top-k 1 picks the penalised max. */
    p = plain_params(1.0f, 1);
    p.top_k = 1;
    p.repeat_penalty = 1.5f;
    ASSERT_EQ(sample_after(&p, (const int32_t[]){0}, 1, x, 8), 1);
}

/* ---- parameters and invariants ---- */

TEST(sampler_params_validation) {
    mica_sampler_params d = mica_sampler_params_default();
    ASSERT_NEAR(d.temperature, 0.8, 1e-7);
    ASSERT_EQ(d.top_k, 40);
    ASSERT_NEAR(d.top_p, 0.95, 1e-7);
    ASSERT_NEAR(d.min_p, 0.05, 1e-7);
    ASSERT_NEAR(d.repeat_penalty, 1.0, 0);
    ASSERT_EQ(d.repeat_last_n, 64);
    ASSERT_EQ(d.seed, 0);

    mica_sampler *s = NULL;
    mica_sampler_params p;
#define REJECT(field, value) \
    do { p = d; p.field = (value); ASSERT_EQ(mica_sampler_create(&p, &s), MICA_ERR_INVALID_ARG); } while (0)
#define ACCEPT(field, value) \
    do { p = d; p.field = (value); s = NULL; ASSERT_OK(mica_sampler_create(&p, &s)); mica_sampler_free(s); s = NULL; } while (0)
    REJECT(temperature, NAN);
    REJECT(temperature, -0.1f);
    REJECT(temperature, INFINITY);
    REJECT(top_p, 0.0f);
    REJECT(top_p, -0.5f);
    REJECT(top_p, 1.01f);
    REJECT(top_p, NAN);
    REJECT(min_p, -0.01f);
    REJECT(min_p, 1.5f);
    REJECT(min_p, NAN);
    REJECT(repeat_penalty, 0.0f);
    REJECT(repeat_penalty, -1.0f);
    REJECT(repeat_penalty, NAN);
    REJECT(repeat_last_n, -1);
    ASSERT_TRUE(s == NULL);
    ACCEPT(temperature, 0.0f);
    ACCEPT(top_p, 1.0f);
    ACCEPT(top_p, 0.01f);
    ACCEPT(min_p, 0.0f);
    ACCEPT(min_p, 1.0f);
    ACCEPT(repeat_last_n, 0);
    ACCEPT(top_k, -5);
    ACCEPT(top_k, 1 << 30);
#undef REJECT
#undef ACCEPT
    ASSERT_EQ(mica_sampler_create(&d, NULL), MICA_ERR_INVALID_ARG);
    ASSERT_OK(mica_sampler_create(NULL, &s));
    mica_sampler_free(s);
    mica_sampler_free(NULL);
}

TEST(sampler_logits_unchanged) {
    enum { N = 4096 };
    static float x[N], copy[N];
    fill_logits(x, N, 5, 6.0f);
    x[17] = NAN;
    x[18] = -INFINITY;
    memcpy(copy, x, sizeof x);
    static const int32_t ks[] = {0, 40};
    for (int k = 0; k < 2; k++) {
        mica_sampler_params p = mica_sampler_params_default();
        p.top_k = ks[k];
        p.repeat_penalty = 1.3f;
        mica_sampler *s = NULL;
        ASSERT_OK(mica_sampler_create(&p, &s));
        for (int i = 0; i < 200; i++) {
            int32_t t = mica_sampler_sample(s, x, N);
            if (t < 0 || t >= N || t == 17 || t == 18) { mica_sampler_free(s); ASSERT_TRUE(!"bad token"); }
            mica_sampler_accept(s, t);
        }
        mica_sampler_free(s);
        ASSERT_TRUE(memcmp(x, copy, sizeof x) == 0);
    }
}

/* Changing n_vocab between calls (scratch regrows) and non-finite maxima. */
TEST(sampler_vocab_sizes_and_edge_logits) {
    mica_sampler_params p = plain_params(1.0f, 6);
    mica_sampler *s = NULL;
    ASSERT_OK(mica_sampler_create(&p, &s));
    const float one[1] = {0.3f};
    ASSERT_EQ(mica_sampler_sample(s, one, 1), 0);
    static float big[5000];
    fill_logits(big, 5000, 3, 1.0f);
    big[4321] = 50.0f; /* dominant: e^-49 for the rest at T = 1 */
    ASSERT_EQ(mica_sampler_sample(s, big, 5000), 4321);
    const float inf[4] = {0.0f, INFINITY, 1.0f, INFINITY};
    ASSERT_EQ(mica_sampler_sample(s, inf, 4), 1);
    const float ninf[3] = {-INFINITY, -INFINITY, -INFINITY};
    ASSERT_EQ(mica_sampler_sample(s, ninf, 3), 0);
    const float masked[4] = {-INFINITY, NAN, 0.5f, -INFINITY};
    for (int i = 0; i < 20; i++) {
        int32_t t = mica_sampler_sample(s, masked, 4);
        if (t != 2) { mica_sampler_free(s); ASSERT_EQ(t, 2); }
    }
    mica_sampler_free(s);
}

/* A full-size vocabulary: the draw must come from the truncated set computed
 * here by sorting in double precision. */
static int cmp_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

TEST(sampler_large_vocab_truncation) {
    enum { N = 151936 };
    float *x = malloc(N * sizeof *x);
    double *sorted = malloc(N * sizeof *sorted);
    ASSERT_TRUE(x && sorted);
    fill_logits(x, N, 31337, 10.0f);
    for (int i = 0; i < N; i++) sorted[i] = x[i];
    qsort(sorted, N, sizeof *sorted, cmp_desc);
    /* top_k 40: the 40th largest logit is the threshold (values distinct). */
    double kth = sorted[39];
    /* top_p 0.5 without top-k at T = 1: the smallest prefix with mass >= 0.5. */
    double z = 0.0, cum = 0.0, pth = sorted[0];
    for (int i = 0; i < N; i++) z += exp(sorted[i] - sorted[0]);
    for (int i = 0; i < N; i++) {
        cum += exp(sorted[i] - sorted[0]);
        pth = sorted[i];
        if (cum >= 0.5 * z) break;
    }
    mica_sampler_params pk = plain_params(1.0f, 1), pp = pk;
    pk.top_k = 40;
    pp.top_p = 0.5f;
    mica_sampler *sk = NULL, *sp = NULL;
    bool ok = mica_sampler_create(&pk, &sk) == MICA_OK && mica_sampler_create(&pp, &sp) == MICA_OK;
    for (int d = 0; ok && d < 20; d++) {
        int32_t a = mica_sampler_sample(sk, x, N), b = mica_sampler_sample(sp, x, N);
        ok = a >= 0 && a < N && x[a] >= kth && b >= 0 && b < N && x[b] >= pth;
    }
    mica_sampler_free(sk);
    mica_sampler_free(sp);
    free(x);
    free(sorted);
    ASSERT_TRUE(ok);
}
