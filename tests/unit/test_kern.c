/*
 * test_kern.c - the kernel tables: CPU detection and table selection, and
 * for EVERY table this build and CPU provide (generic, avx2, avx512):
 *   - vec_dot against the generic scalar vec_dot, per supported type, over
 *     every block count 1..8, two large rows (4096, 5632) and, for the float
 *     types, every length 1..67;
 *   - the generic vec_dot against a double-precision dot of the dequantised
 *     rows (the dequantisation itself is checked in test_quant.c);
 *   - to_float and from_float against the generic ones: bit-identical (the
 *     one SIMD quantiser, AVX-512 Q8_0, is exact by construction and also
 *     checked on rounding ties; the F16/BF16 to_float
 *     are exact conversions, checked on all 65536 inputs);
 *   - gemm (kern.h) against the generic vec_dot within the same bounds, on
 *     tiles with odd row and token counts, padded strides, and bit-identical
 *     results for every sub-tile shape (the tile-invariance contract).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/dtype.h"
#include "tensor/kern.h"
#include "tensor/quant_ref.h"
#include "../test.h"

#define TK_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define TK_MIN(a, b) ((a) < (b) ? (a) : (b))

/* ---- deterministic random numbers (splitmix64) ---- */

static uint64_t tk_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float tk_gauss(uint64_t *s) {
    double u1 = (double)(tk_next(s) >> 11) * 0x1p-53, u2 = (double)(tk_next(s) >> 11) * 0x1p-53;
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* The weight types under test and their activation types (the contract). */
static const struct { uint32_t type, act; } tk_types[] = {
    {MICA_DTYPE_F32, MICA_DTYPE_F32},   {MICA_DTYPE_F16, MICA_DTYPE_F32},
    {MICA_DTYPE_BF16, MICA_DTYPE_F32},  {MICA_DTYPE_Q8_0, MICA_DTYPE_Q8_0},
    {MICA_DTYPE_Q4_0, MICA_DTYPE_Q8_0}, {MICA_DTYPE_Q4_K, MICA_DTYPE_Q8_K},
    {MICA_DTYPE_Q6_K, MICA_DTYPE_Q8_K},
    {MICA_DTYPE_Q4_1, MICA_DTYPE_Q8_0}, {MICA_DTYPE_Q5_0, MICA_DTYPE_Q8_0},
    {MICA_DTYPE_Q5_1, MICA_DTYPE_Q8_0}, {MICA_DTYPE_IQ4_NL, MICA_DTYPE_Q8_0},
    {MICA_DTYPE_MXFP4, MICA_DTYPE_Q8_0}, {MICA_DTYPE_Q2_K, MICA_DTYPE_Q8_K},
    {MICA_DTYPE_Q3_K, MICA_DTYPE_Q8_K}, {MICA_DTYPE_Q5_K, MICA_DTYPE_Q8_K},
    {MICA_DTYPE_IQ4_XS, MICA_DTYPE_Q8_K},
};

enum { TK_MAXN = 5632 };

/* Fills the tables this build and CPU can run; returns how many. */
static int tk_tables(kern_table *out) {
    cpu_features cpu;
    cpu_features_detect(&cpu);
    int n = 0;
    for (int isa = 0; isa < KERN_ISA_COUNT; isa++) {
        if (kern_isa_available((enum kern_isa)isa, &cpu)) kern_table_init(&out[n++], (enum kern_isa)isa);
    }
    return n;
}

TEST(kern_cpu_dispatch) {
    cpu_features cpu;
    cpu_features_detect(&cpu);
    ASSERT_TRUE(kern_isa_available(KERN_ISA_GENERIC, &cpu));
    enum kern_isa best = kern_best_isa(&cpu);
    ASSERT_TRUE(kern_isa_available(best, &cpu));
    for (int isa = best + 1; isa < KERN_ISA_COUNT; isa++) ASSERT_TRUE(!kern_isa_available((enum kern_isa)isa, &cpu));
    /* implications the tables rely on */
    if (kern_isa_available(KERN_ISA_AVX512, &cpu)) ASSERT_TRUE(kern_isa_available(KERN_ISA_AVX2, &cpu));
    if (cpu.avx512f) ASSERT_TRUE(cpu.avx2);
    /* a CPU with nothing gets the generic table */
    cpu_features none;
    memset(&none, 0, sizeof none);
    ASSERT_EQ(kern_best_isa(&none), KERN_ISA_GENERIC);
    ASSERT_TRUE(!kern_isa_available(KERN_ISA_AVX2, &none));
    ASSERT_TRUE(!kern_isa_available(KERN_ISA_AVX512, &none));
    if (getenv("MICA_TEST_VERBOSE")) {
        fprintf(stderr, "    cpu: avx2 %d fma %d f16c %d avx512 f %d bw %d vl %d dq %d vnni %d bf16 %d -> %d\n",
                cpu.avx2, cpu.fma, cpu.f16c, cpu.avx512f, cpu.avx512bw, cpu.avx512vl, cpu.avx512dq,
                cpu.avx512vnni, cpu.avx512bf16, best);
    }
}

TEST(kern_table_contents) {
    kern_table tabs[KERN_ISA_COUNT];
    int nt = tk_tables(tabs);
    ASSERT_TRUE(nt >= 1);
    const char *names[KERN_ISA_COUNT] = {"generic", "avx2", "avx512"};
    for (int k = 0; k < nt; k++) {
        ASSERT_STREQ(tabs[k].name, names[tabs[k].isa]);
        for (size_t i = 0; i < TK_LEN(tk_types); i++) {
            const kern_type_ops *o = &tabs[k].ops[tk_types[i].type];
            ASSERT_TRUE(o->to_float && o->from_float && o->vec_dot);
            ASSERT_EQ(o->vec_dot_type, tk_types[i].act);
            ASSERT_TRUE(tabs[k].ops[o->vec_dot_type].from_float != NULL);
        }
        ASSERT_TRUE(tabs[k].ops[MICA_DTYPE_Q8_K].to_float && tabs[k].ops[MICA_DTYPE_Q8_K].from_float);
        /* unsupported types stay empty */
        ASSERT_TRUE(tabs[k].ops[MICA_DTYPE_TQ1_0].vec_dot == NULL);
        ASSERT_TRUE(tabs[k].ops[MICA_DTYPE_Q8_1].vec_dot == NULL);
        ASSERT_TRUE(tabs[k].ops[MICA_DTYPE_IQ2_XXS].to_float == NULL);
    }
}

/* ---- row builders ---- */

/* A random valid weight row of `type`: raw random bytes for the quants
 * (every bit pattern of qs/scales, int8 -128 included) with finite, moderate
 * fp16 scales; for float types Gaussian values. If `from_data` the row is
 * instead Gaussian data quantised with the generic from_float (realistic
 * cancellation between scale and min terms). */
static void tk_make_weights(const kern_table *gen, uint32_t type, int64_t n, bool from_data, uint64_t *rng,
                            void *out, float *scratch) {
    const dtype_traits *tr = dtype_get(type);
    uint64_t bytes;
    dtype_row_bytes(type, n, &bytes);
    if (from_data || type == MICA_DTYPE_F32 || type == MICA_DTYPE_F16 || type == MICA_DTYPE_BF16) {
        for (int64_t i = 0; i < n; i++) scratch[i] = tk_gauss(rng) * 0.05f;
        gen->ops[type].from_float(scratch, out, n);
        return;
    }
    uint8_t *p = out;
    for (uint64_t i = 0; i < bytes; i++) p[i] = (uint8_t)tk_next(rng);
    for (int64_t b = 0; b < n / tr->blck; b++) {
        /* fp16 scales in [2^-12, 2^-4), random sign where the format allows */
        mica_fp16 d = (mica_fp16)(0x0C00 + tk_next(rng) % 0x2000);
        mica_fp16 dn = (mica_fp16)(0x0C00 + tk_next(rng) % 0x2000);
        mica_fp16 sign = (mica_fp16)(tk_next(rng) & 0x8000);
        switch (type) {
        case MICA_DTYPE_Q4_0: ((block_q4_0 *)out)[b].d = d | sign; break;
        case MICA_DTYPE_Q8_0: ((block_q8_0 *)out)[b].d = d | sign; break;
        case MICA_DTYPE_Q4_K:
            ((block_q4_k *)out)[b].d = d;
            ((block_q4_k *)out)[b].dmin = dn;
            break;
        case MICA_DTYPE_Q6_K: ((block_q6_k *)out)[b].d = d | sign; break;
        case MICA_DTYPE_Q4_1:
            ((block_q4_1 *)out)[b].d = d;
            ((block_q4_1 *)out)[b].m = dn | sign;
            break;
        case MICA_DTYPE_Q5_0: ((block_q5_0 *)out)[b].d = d | sign; break;
        case MICA_DTYPE_Q5_1:
            ((block_q5_1 *)out)[b].d = d;
            ((block_q5_1 *)out)[b].m = dn | sign;
            break;
        case MICA_DTYPE_IQ4_NL: ((block_iq4_nl *)out)[b].d = d | sign; break;
        /* E8M0 exponents 2^-20 .. 2^-4 (every code, so the edge cases of
         * quant_e8m0_half_to_f32 are in test_quant.c) */
        case MICA_DTYPE_MXFP4: ((block_mxfp4 *)out)[b].e = (uint8_t)(108 + tk_next(rng) % 17); break;
        case MICA_DTYPE_Q2_K:
            ((block_q2_k *)out)[b].d = d;
            ((block_q2_k *)out)[b].dmin = dn;
            break;
        case MICA_DTYPE_Q3_K: ((block_q3_k *)out)[b].d = d | sign; break;
        case MICA_DTYPE_Q5_K:
            ((block_q5_k *)out)[b].d = d;
            ((block_q5_k *)out)[b].dmin = dn;
            break;
        case MICA_DTYPE_IQ4_XS: ((block_iq4_xs *)out)[b].d = d | sign; break;
        default: break;
        }
    }
}

/* Activation row for weight type `type`: F32 Gaussian values, quantised with
 * the generic from_float of the activation type if that is not F32. */
static void tk_make_act(const kern_table *gen, uint32_t act, int64_t n, uint64_t *rng, void *out, float *vals) {
    for (int64_t i = 0; i < n; i++) vals[i] = tk_gauss(rng);
    gen->ops[act].from_float(vals, out, n);
}

/*
 * Tolerances, relative to A = sum |x_i||y_i| of the dequantised rows.
 *
 * Quantised types: every integer partial sum is exact, so two correct
 * kernels differ only in float rounding: each per-block product (scale
 * times int sum, an int above 2^24 converted to float, scale products) and
 * the sequential accumulation over nb blocks, every step a relative
 * FLT_EPSILON/2 of a partial sum bounded by the scale-split magnitudes. For
 * the types with an offset (Q4_K, Q5_K, Q2_K: d*sc*q - dmin*mn; Q4_1, Q5_1:
 * d*q + m) the scale and offset parts can cancel (each up to ~2x the element
 * magnitude), hence a factor 4: tol = 4 (nb + 16) FLT_EPSILON A (5632
 * elements of a 32-element type: 1.0e-4 A; of a 256-element type: 1.8e-5 A).
 * The same bound serves the symmetric types (Q5_0, Q3_K, IQ4_NL, IQ4_XS,
 * MXFP4), with room to spare: with MICA_TEST_VERBOSE the worst error/tol of
 * every new type is printed (measured <= 0.006, the original types'
 * <= 0.005). A wrong element, block or scale shows up as an error of order
 * A/nb or more.
 *
 * Float types: the generic reference multiplies and adds in double (exact
 * to ~1e-16), the SIMD kernels keep 32-64 float partial sums of n/32 terms;
 * worst case (n/32 + 8) FLT_EPSILON A (5632: 2.2e-5 A), typical far less.
 */
static double tk_tol(uint32_t type, int64_t n, double a) {
    const dtype_traits *tr = dtype_get(type);
    if (tr->blck == 1) return ((double)n / 32.0 + 8.0) * FLT_EPSILON * a + 1e-30;
    return 4.0 * ((double)(n / tr->blck) + 16.0) * FLT_EPSILON * a + 1e-30;
}

/* Largest error/tolerance seen per (table, type), printed with MICA_TEST_VERBOSE. */
static double tk_worst[KERN_ISA_COUNT][MICA_DTYPE_COUNT];

/* Runs one (type, n) case over all tables; false after reporting a failure. */
static bool tk_check_dot(const kern_table *tabs, int nt, uint32_t type, uint32_t act, int64_t n, bool from_data,
                         uint64_t *rng) {
    static uint8_t xbuf[TK_MAXN * 4], ybuf[TK_MAXN * 4];
    static float xf[TK_MAXN], yf[TK_MAXN];
    const kern_table *gen = &tabs[0];
    tk_make_weights(gen, type, n, from_data, rng, xbuf, xf);
    tk_make_act(gen, act, n, rng, ybuf, yf);
    gen->ops[type].to_float(xbuf, xf, n);
    gen->ops[act].to_float(ybuf, yf, n);
    double ref = 0, a = 0;
    for (int64_t i = 0; i < n; i++) {
        ref += (double)xf[i] * yf[i];
        a += fabs((double)xf[i] * yf[i]);
    }
    double tol = tk_tol(type, n, a);
    float sg = NAN;
    gen->ops[type].vec_dot(n, &sg, xbuf, ybuf);
    tk_worst[0][type] = fmax(tk_worst[0][type], fabs(sg - ref) / tol);
    if (!(fabs(sg - ref) <= tol)) {
        test_fail(__FILE__, __LINE__, "%s n=%lld: generic %.9g vs double %.9g (tol %.3g)", dtype_name(type),
                  (long long)n, (double)sg, ref, tol);
        return false;
    }
    for (int k = 1; k < nt; k++) {
        float sk = NAN;
        tabs[k].ops[type].vec_dot(n, &sk, xbuf, ybuf);
        tk_worst[k][type] = fmax(tk_worst[k][type], fabs(sk - sg) / tol);
        if (!(fabs(sk - sg) <= tol)) {
            test_fail(__FILE__, __LINE__, "%s n=%lld: %s %.9g vs generic %.9g (tol %.3g)", dtype_name(type),
                      (long long)n, tabs[k].name, (double)sk, (double)sg, tol);
            return false;
        }
    }
    return true;
}

TEST(kern_vec_dot_all_tables) {
    kern_table tabs[KERN_ISA_COUNT];
    int nt = tk_tables(tabs);
    ASSERT_EQ(tabs[0].isa, KERN_ISA_GENERIC);
    uint64_t rng = 2024;
    for (size_t t = 0; t < TK_LEN(tk_types); t++) {
        uint32_t type = tk_types[t].type, act = tk_types[t].act;
        int64_t blck = dtype_get(type)->blck;
        int64_t lens[80];
        int nl = 0;
        if (blck == 1) {
            for (int64_t k = 1; k <= 67; k++) lens[nl++] = k;
        } else {
            for (int64_t k = 1; k <= 8; k++) lens[nl++] = k * blck;
        }
        lens[nl++] = 4096;
        lens[nl++] = TK_MAXN;
        for (int l = 0; l < nl; l++) {
            for (int from_data = 0; from_data < 2; from_data++) {
                if (!tk_check_dot(tabs, nt, type, act, lens[l], from_data, &rng)) return;
            }
        }
    }
    if (getenv("MICA_TEST_VERBOSE")) {
        for (int k = 0; k < nt; k++) {
            for (size_t t = 0; t < TK_LEN(tk_types); t++) {
                fprintf(stderr, "    %-7s %-5s worst error/tol %.3g%s\n", tabs[k].name, dtype_name(tk_types[t].type),
                        tk_worst[k][tk_types[t].type], k == 0 ? " (vs double)" : "");
            }
        }
    }
}

/* A zero activation row (d = 0) and a zero weight row give exactly 0. */
TEST(kern_vec_dot_zero_rows) {
    kern_table tabs[KERN_ISA_COUNT];
    int nt = tk_tables(tabs);
    static uint8_t xbuf[TK_MAXN * 4], ybuf[TK_MAXN * 4];
    static float v[TK_MAXN];
    uint64_t rng = 8;
    for (size_t t = 0; t < TK_LEN(tk_types); t++) {
        uint32_t type = tk_types[t].type, act = tk_types[t].act;
        int64_t n = 1024;
        tk_make_weights(&tabs[0], type, n, false, &rng, xbuf, v);
        memset(v, 0, sizeof v);
        tabs[0].ops[act].from_float(v, ybuf, n);
        for (int k = 0; k < nt; k++) {
            float s = NAN;
            tabs[k].ops[type].vec_dot(n, &s, xbuf, ybuf);
            ASSERT_EQ(s, 0.0f);
        }
    }
}

/* to_float of every table equals the generic one bit for bit; for F16 and
 * BF16 on all 65536 encodings (NaNs included), in rows of odd length so the
 * SIMD tails run too. */
TEST(kern_to_float_identical) {
    kern_table tabs[KERN_ISA_COUNT];
    int nt = tk_tables(tabs);
    static uint16_t all[65536];
    static float a[65536], b[65536];
    for (int i = 0; i < 65536; i++) all[i] = (uint16_t)i;
    const uint32_t ftypes[] = {MICA_DTYPE_F16, MICA_DTYPE_BF16};
    for (int k = 1; k < nt; k++) {
        for (int f = 0; f < 2; f++) {
            for (int64_t off = 0; off < 65536; off += 4093) {
                int64_t len = TK_MIN(4093, 65536 - off);
                tabs[0].ops[ftypes[f]].to_float(all + off, a + off, len);
                tabs[k].ops[ftypes[f]].to_float(all + off, b + off, len);
            }
            if (memcmp(a, b, sizeof a) != 0) {
                test_fail(__FILE__, __LINE__, "%s to_float of %s differs from generic", tabs[k].name,
                          dtype_name(ftypes[f]));
                return;
            }
        }
    }
    /* quantised types: random rows */
    static uint8_t xbuf[TK_MAXN * 4];
    static float scratch[TK_MAXN];
    uint64_t rng = 31;
    for (int k = 1; k < nt; k++) {
        for (size_t t = 0; t < TK_LEN(tk_types); t++) {
            uint32_t type = tk_types[t].type;
            tk_make_weights(&tabs[0], type, 4096, false, &rng, xbuf, scratch);
            tabs[0].ops[type].to_float(xbuf, a, 4096);
            tabs[k].ops[type].to_float(xbuf, b, 4096);
            ASSERT_TRUE(memcmp(a, b, 4096 * sizeof(float)) == 0);
        }
    }
}

/* from_float (activation and weight quantisation) of every table equals the
 * generic one byte for byte (a SIMD quantiser must reproduce the reference
 * exactly), so a model quantises its activations identically on every CPU. */
TEST(kern_from_float_identical) {
    kern_table tabs[KERN_ISA_COUNT];
    int nt = tk_tables(tabs);
    static float v[4096];
    static uint8_t a[4096 * 4], b[4096 * 4];
    uint64_t rng = 17;
    for (int i = 0; i < 4096; i++) v[i] = tk_gauss(&rng) * (float)(1 + i % 7);
    const uint32_t types[] = {MICA_DTYPE_F32,  MICA_DTYPE_F16,  MICA_DTYPE_BF16,   MICA_DTYPE_Q8_0,
                              MICA_DTYPE_Q4_0, MICA_DTYPE_Q4_K, MICA_DTYPE_Q6_K,   MICA_DTYPE_Q8_K,
                              MICA_DTYPE_Q4_1, MICA_DTYPE_Q5_0, MICA_DTYPE_Q5_1,   MICA_DTYPE_IQ4_NL,
                              MICA_DTYPE_MXFP4, MICA_DTYPE_Q2_K, MICA_DTYPE_Q3_K,  MICA_DTYPE_Q5_K,
                              MICA_DTYPE_IQ4_XS};
    for (int k = 1; k < nt; k++) {
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
            uint64_t bytes;
            ASSERT_TRUE(dtype_row_bytes(types[t], 4096, &bytes));
            memset(a, 0, sizeof a);
            memset(b, 0xAA, sizeof b);
            tabs[0].ops[types[t]].from_float(v, a, 4096);
            tabs[k].ops[types[t]].from_float(v, b, 4096);
            if (memcmp(a, b, bytes) != 0) {
                test_fail(__FILE__, __LINE__, "%s from_float of %s differs", tabs[k].name, dtype_name(types[t]));
                return;
            }
        }
    }
}

/* ---- gemm (kern.h contract) ---- */

enum { TK_GR = 11, TK_GT = 7, TK_GPAD = 4 }; /* pad: keeps the types' alignment, breaks any SIMD one */

/*
 * One (type, n) case of gemm on every table: a TK_GR x TK_GT tile of random
 * weight rows and quantised activation rows, at byte strides that are not
 * multiples of any SIMD width (row bytes + TK_GPAD), written into a y with
 * ldy > nr and sentinels around the tile. Checks:
 *   - every output against the generic vec_dot of its two rows, within the
 *     vec_dot bound tk_tol (a wrong block, scale or offset term shows up as
 *     an error of order A/nb);
 *   - nothing outside the nr x nt outputs is written;
 *   - tile-shape invariance: every sub-tile shape nr' x nt' (1..TK_GR x
 *     1..TK_GT, at varying offsets, so every edge micro-tile runs) gives
 *     bit-identical outputs to the full tile.
 */
static bool tk_check_gemm(const kern_table *tabs, int nt_tabs, uint32_t type, uint32_t act, int64_t n,
                          bool from_data, uint64_t *rng) {
    const kern_table *gen = &tabs[0];
    uint64_t wrow, arow;
    dtype_row_bytes(type, n, &wrow);
    dtype_row_bytes(act, n, &arow);
    const uint64_t ws = wrow + TK_GPAD, as = arow + TK_GPAD;
    const int64_t ldy = TK_GR + 3;
    uint8_t *w = calloc(TK_GR, ws), *a = calloc(TK_GT, as);
    float *vals = malloc(sizeof(float) * (size_t)n), *xf = malloc(sizeof(float) * (size_t)n);
    float *yf = malloc(sizeof(float) * (size_t)n);
    static float ref[TK_GT][TK_GR], tol[TK_GT][TK_GR], full[TK_GT * (TK_GR + 3)], sub[TK_GT * (TK_GR + 3)];
    bool ok = w && a && vals && xf && yf;
    for (int r = 0; ok && r < TK_GR; r++) tk_make_weights(gen, type, n, from_data, rng, w + r * ws, vals);
    for (int t = 0; ok && t < TK_GT; t++) tk_make_act(gen, act, n, rng, a + t * as, vals);
    for (int r = 0; ok && r < TK_GR; r++) {
        gen->ops[type].to_float(w + r * ws, xf, n);
        for (int t = 0; t < TK_GT; t++) {
            gen->ops[act].to_float(a + t * as, yf, n);
            double mag = 0;
            for (int64_t i = 0; i < n; i++) mag += fabs((double)xf[i] * yf[i]);
            tol[t][r] = (float)tk_tol(type, n, mag);
            gen->ops[type].vec_dot(n, &ref[t][r], w + r * ws, a + t * as);
        }
    }
    for (int k = 0; ok && k < nt_tabs; k++) {
        kern_gemm_fn gemm = tabs[k].ops[type].gemm;
        for (size_t i = 0; i < TK_LEN(full); i++) full[i] = -1234.5f;
        gemm(n, TK_GR, TK_GT, w, ws, a, as, full, ldy);
        for (int t = 0; ok && t < TK_GT; t++) {
            for (int64_t c = 0; ok && c < ldy; c++) {
                const float v = full[t * ldy + c];
                if (c >= TK_GR) {
                    if (v != -1234.5f) {
                        test_fail(__FILE__, __LINE__, "%s gemm %s wrote outside the tile", tabs[k].name, dtype_name(type));
                        ok = false;
                    }
                    continue;
                }
                if (!(fabs((double)v - ref[t][c]) <= tol[t][c])) {
                    test_fail(__FILE__, __LINE__, "%s gemm %s n=%lld (r %lld, t %d): %.9g vs vec_dot %.9g (tol %.3g)",
                              tabs[k].name, dtype_name(type), (long long)n, (long long)c, t, (double)v,
                              (double)ref[t][c], (double)tol[t][c]);
                    ok = false;
                }
            }
        }
        for (int nr = 1; ok && nr <= TK_GR; nr++) {
            for (int ntk = 1; ok && ntk <= TK_GT; ntk++) {
                const int r0 = (nr * 3) % (TK_GR - nr + 1), t0 = (ntk * 5) % (TK_GT - ntk + 1);
                gemm(n, nr, ntk, w + r0 * ws, ws, a + t0 * as, as, sub, ldy);
                for (int t = 0; ok && t < ntk; t++) {
                    for (int r = 0; ok && r < nr; r++) {
                        if (memcmp(&sub[t * ldy + r], &full[(t0 + t) * ldy + r0 + r], sizeof(float)) != 0) {
                            test_fail(__FILE__, __LINE__,
                                      "%s gemm %s n=%lld: %dx%d sub-tile at (%d,%d) differs from the full tile at "
                                      "(%d,%d): %.9g vs %.9g",
                                      tabs[k].name, dtype_name(type), (long long)n, nr, ntk, r0, t0, r, t,
                                      (double)sub[t * ldy + r], (double)full[(t0 + t) * ldy + r0 + r]);
                            ok = false;
                        }
                    }
                }
            }
        }
    }
    free(w);
    free(a);
    free(vals);
    free(xf);
    free(yf);
    return ok;
}

/* Every table's gemm, every supported type: 1, 2, 3, 5 blocks (float types:
 * lengths 1, 13, 67), a 4096 row, random bytes and quantised data. */
TEST(kern_gemm_all_tables) {
    kern_table tabs[KERN_ISA_COUNT];
    int nt = tk_tables(tabs);
    uint64_t rng = 77;
    for (size_t t = 0; t < TK_LEN(tk_types); t++) {
        uint32_t type = tk_types[t].type, act = tk_types[t].act;
        int64_t blck = dtype_get(type)->blck;
        const int64_t lens_q[] = {blck, 2 * blck, 3 * blck, 5 * blck, 13 * blck, 4096}; /* 13: 8-block groups + a tail */
        const int64_t lens_f[] = {1, 13, 67, 4096};
        const int64_t *lens = blck == 1 ? lens_f : lens_q;
        const size_t nl = blck == 1 ? TK_LEN(lens_f) : TK_LEN(lens_q);
        for (size_t l = 0; l < nl; l++) {
            for (int from_data = 0; from_data < 2; from_data++) {
                if (!tk_check_gemm(tabs, nt, type, act, lens[l], from_data, &rng)) return;
            }
        }
        for (int k = 0; k < nt; k++) ASSERT_TRUE(tabs[k].ops[type].gemm != NULL);
    }
}

/* from_float of the activation types on rounding ties and special blocks:
 * blocks whose scale makes x * (1/d) exact so every value lands on a k + 0.5
 * tie (half away from zero), an all-zero block, a block of -0.0, tiny
 * values. Every table must equal the generic quantiser byte for byte. */
TEST(kern_from_float_ties) {
    kern_table tabs[KERN_ISA_COUNT];
    int nt = tk_tables(tabs);
    enum { N = 512 };
    static float v[N];
    static uint8_t a[N * 4], b[N * 4];
    for (int i = 0; i < N; i++) {
        const int blk = i / 32, j = i % 32;
        switch (blk % 4) {
        case 0: v[i] = j == 0 ? 127.0f : (float)(j - 16) + 0.5f; break;      /* d = 1: ties at k + 0.5 */
        case 1: v[i] = j == 5 ? -63.5f : ((float)(j * 3 - 40) + 0.5f) / 2; break; /* d = 0.5 */
        case 2: v[i] = blk == 2 ? 0.0f : -0.0f; break;
        default: v[i] = (j % 2 ? 1e-30f : -3e-31f) * (float)(j + 1); break;
        }
        if (blk >= 8) v[i] = -v[i];
    }
    const uint32_t types[] = {MICA_DTYPE_Q8_0, MICA_DTYPE_Q8_K};
    for (int k = 1; k < nt; k++) {
        for (size_t t = 0; t < TK_LEN(types); t++) {
            uint64_t bytes;
            ASSERT_TRUE(dtype_row_bytes(types[t], N, &bytes));
            memset(a, 0, sizeof a);
            memset(b, 0xAA, sizeof b);
            tabs[0].ops[types[t]].from_float(v, a, N);
            tabs[k].ops[types[t]].from_float(v, b, N);
            if (memcmp(a, b, bytes) != 0) {
                test_fail(__FILE__, __LINE__, "%s from_float of %s differs on ties", tabs[k].name, dtype_name(types[t]));
                return;
            }
        }
    }
    /* the reference itself: 0.5 -> 1, -0.5 -> -1, 1.5 -> 2, -2.5 -> -3 (half away from zero) */
    block_q8_0 q[N / 32];
    tabs[0].ops[MICA_DTYPE_Q8_0].from_float(v, q, N);
    ASSERT_EQ(q[0].qs[16], 1);  /* 0.5 */
    ASSERT_EQ(q[0].qs[15], -1); /* -0.5 */
    ASSERT_EQ(q[0].qs[17], 2);  /* 1.5 */
    ASSERT_EQ(q[0].qs[13], -3); /* -2.5 */
}
