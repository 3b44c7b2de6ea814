/*
 * test_quant.c - the scalar reference of src/tensor/quant_ref.c against
 * formulas written out independently here (FORMATS.md 2.2-2.4): fp16 and
 * bf16 conversions (exhaustive), hand-built and random blocks of every
 * supported type dequantised with the spec formula, the activation
 * quantisers' rounding rules, and quantise -> dequantise error bounds.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/dtype.h"
#include "tensor/quant_ref.h"
#include "../test.h"

/* ---- deterministic random numbers (splitmix64) ---- */

static uint64_t tq_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double tq_uniform(uint64_t *s) { return (double)(tq_next(s) >> 11) * 0x1p-53; }

static float tq_gauss(uint64_t *s) {
    double u1 = tq_uniform(s), u2 = tq_uniform(s);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static uint32_t tq_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float tq_float(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* The binary16 value of h from its fields (sign, 5-bit exponent, 10-bit
 * fraction), for finite h: the definition of the format. */
static double tq_half_value(uint16_t h) {
    int sign = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return sign ? -v : v;
}

/* ---- fp16 ---- */

TEST(quant_fp16_to_f32_exhaustive) {
    for (uint32_t h = 0; h < 65536; h++) {
        float f = quant_fp16_to_f32((mica_fp16)h);
        int e = (h >> 10) & 31, m = h & 1023;
        if (e == 31) {
            if (m == 0) {
                ASSERT_TRUE(isinf(f));
                ASSERT_EQ(signbit(f) != 0, (h >> 15) != 0);
            } else {
                /* NaN: sign and payload kept, quiet bit set */
                uint32_t u = tq_bits(f);
                ASSERT_TRUE(isnan(f));
                ASSERT_EQ(u >> 31, h >> 15);
                ASSERT_EQ((u >> 13) & 0x3FF, (uint32_t)m | 0x200);
            }
            continue;
        }
        double want = tq_half_value((uint16_t)h);
        if ((double)f != want || (signbit(f) != 0) != ((h >> 15) != 0)) {
            test_fail(__FILE__, __LINE__, "fp16 0x%04x: got %.10g want %.10g", h, (double)f, want);
            return;
        }
    }
}

TEST(quant_fp16_roundtrip_exhaustive) {
    for (uint32_t h = 0; h < 65536; h++) {
        int e = (h >> 10) & 31, m = h & 1023;
        mica_fp16 back = quant_f32_to_fp16(quant_fp16_to_f32((mica_fp16)h));
        if (e == 31 && m != 0) {
            ASSERT_EQ(back, (h & 0x8000) | 0x7E00); /* NaN -> canonical quiet NaN, sign kept */
        } else if (back != h) {
            test_fail(__FILE__, __LINE__, "fp16 0x%04x -> f32 -> 0x%04x", h, back);
            return;
        }
    }
}

/* Every midpoint between two adjacent finite halves rounds to the even one;
 * one float ulp either side rounds to the nearer one. */
TEST(quant_f32_to_fp16_ties) {
    for (uint32_t h = 0; h < 0x7BFF; h++) {
        for (int sign = 0; sign < 2; sign++) {
            double lo = tq_half_value((uint16_t)h), hi = tq_half_value((uint16_t)(h + 1));
            float mid = (float)((lo + hi) / 2); /* exact: 12 significant bits */
            ASSERT_EQ((double)mid, (lo + hi) / 2);
            uint16_t s = sign ? 0x8000 : 0;
            float m = sign ? -mid : mid;
            uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
            if (quant_f32_to_fp16(m) != (s | even)) {
                test_fail(__FILE__, __LINE__, "tie %.10g -> 0x%04x, want 0x%04x", (double)m,
                          quant_f32_to_fp16(m), s | even);
                return;
            }
            ASSERT_EQ(quant_f32_to_fp16(nextafterf(m, 0.0f)), s | h);
            ASSERT_EQ(quant_f32_to_fp16(nextafterf(m, sign ? -INFINITY : INFINITY)), s | (h + 1));
        }
    }
    /* overflow: 65520 is the midpoint between 65504 and 2^16, ties to "even" = infinity */
    ASSERT_EQ(quant_f32_to_fp16(65504.0f), 0x7BFF);
    ASSERT_EQ(quant_f32_to_fp16(nextafterf(65520.0f, 0.0f)), 0x7BFF);
    ASSERT_EQ(quant_f32_to_fp16(65520.0f), 0x7C00);
    ASSERT_EQ(quant_f32_to_fp16(-1e10f), 0xFC00);
    ASSERT_EQ(quant_f32_to_fp16(INFINITY), 0x7C00);
    /* underflow: 2^-25 is the midpoint between 0 and the smallest subnormal */
    ASSERT_EQ(quant_f32_to_fp16(0x1p-25f), 0x0000);
    ASSERT_EQ(quant_f32_to_fp16(nextafterf(0x1p-25f, 1.0f)), 0x0001);
    ASSERT_EQ(quant_f32_to_fp16(-0x1p-26f), 0x8000);
    ASSERT_EQ(quant_f32_to_fp16(0x1p-149f), 0x0000); /* f32 subnormal input */
    ASSERT_EQ(quant_f32_to_fp16(3 * 0x1p-25f), 0x0002);
    ASSERT_EQ(quant_f32_to_fp16(-0.0f), 0x8000);
    ASSERT_EQ(quant_f32_to_fp16(NAN), 0x7E00);
    ASSERT_EQ(quant_f32_to_fp16(-NAN), 0xFE00);
    ASSERT_EQ(quant_f32_to_fp16(1.0f), 0x3C00);
    ASSERT_EQ(quant_f32_to_fp16(0.1f), 0x2E66); /* 0.1 = 0x2E66 (1638.4/16384 rounded down) */
}

/* Random floats over the whole finite range against the nearest half chosen
 * by distance (computed in double from the field formula). */
TEST(quant_f32_to_fp16_random) {
    uint64_t rng = 7;
    for (int it = 0; it < 200000; it++) {
        uint32_t u = (uint32_t)tq_next(&rng);
        /* exponents around the half range: 2^-27 .. 2^17 */
        u = (u & 0x807FFFFFu) | ((uint32_t)(100 + tq_next(&rng) % 45) << 23);
        float f = tq_float(u);
        mica_fp16 h = quant_f32_to_fp16(f);
        double a = fabs((double)f);
        if (a >= 65520.0) {
            ASSERT_EQ(h & 0x7FFF, 0x7C00);
            continue;
        }
        double got = fabs(tq_half_value(h));
        /* no other half is strictly nearer */
        double below = (h & 0x7FFF) ? fabs(tq_half_value((uint16_t)(h - 1))) : -1.0;
        double above = fabs(tq_half_value((uint16_t)(h + 1)));
        ASSERT_TRUE(fabs(got - a) <= fabs(above - a));
        if (below >= 0) ASSERT_TRUE(fabs(got - a) <= fabs(below - a));
        ASSERT_EQ(h >> 15, u >> 31);
    }
}

/* ---- bf16 ---- */

TEST(quant_bf16_conversions) {
    for (uint32_t h = 0; h < 65536; h++) {
        float f = quant_bf16_to_f32((mica_bf16)h);
        ASSERT_EQ(tq_bits(f), h << 16);
        if (!isnan(f)) ASSERT_EQ(quant_f32_to_bf16(f), h);
    }
    ASSERT_EQ(quant_f32_to_bf16(tq_float(0x3F808000u)), 0x3F80); /* tie -> even */
    ASSERT_EQ(quant_f32_to_bf16(tq_float(0x3F818000u)), 0x3F82); /* tie -> even (up) */
    ASSERT_EQ(quant_f32_to_bf16(tq_float(0x3F808001u)), 0x3F81);
    ASSERT_EQ(quant_f32_to_bf16(tq_float(0x3F807FFFu)), 0x3F80);
    ASSERT_EQ(quant_f32_to_bf16(tq_float(0x7F7FFFFFu)), 0x7F80); /* rounds up to infinity */
    ASSERT_EQ(quant_f32_to_bf16(tq_float(0x7F800001u)), 0x7FC0); /* signalling NaN -> quiet */
    ASSERT_EQ(quant_f32_to_bf16(tq_float(0xFF800001u)), 0xFFC0);
    ASSERT_EQ(quant_f32_to_bf16(tq_float(0x7FC00000u)), 0x7FC0);
}

TEST(quant_nearest_int_half_even) {
    ASSERT_EQ(quant_nearest_int(0.5f), 0);
    ASSERT_EQ(quant_nearest_int(1.5f), 2);
    ASSERT_EQ(quant_nearest_int(2.5f), 2);
    ASSERT_EQ(quant_nearest_int(-2.5f), -2);
    ASSERT_EQ(quant_nearest_int(-3.5f), -4);
    ASSERT_EQ(quant_nearest_int(126.5f), 126);
    ASSERT_EQ(quant_nearest_int(127.49f), 127);
    ASSERT_EQ(quant_nearest_int(-127.0f), -127);
    ASSERT_EQ(quant_nearest_int(0.49999997f), 0);
    ASSERT_EQ(quant_nearest_int(4194303.0f), 4194303);
}

/* ---- dequantisation of hand-built blocks ---- */

TEST(quant_dequant_q4_0) {
    block_q4_0 b[2];
    b[0].d = 0x3800; /* 0.5 */
    b[1].d = 0xC500; /* -5.0 */
    for (int j = 0; j < 16; j++) {
        b[0].qs[j] = (uint8_t)(j | ((15 - j) << 4));
        b[1].qs[j] = (uint8_t)((j * 7) & 0xFF);
    }
    float y[64];
    quant_dequantize_row_q4_0(b, y, 64);
    for (int j = 0; j < 16; j++) {
        ASSERT_EQ(y[j], (j - 8) * 0.5);
        ASSERT_EQ(y[j + 16], (7 - j) * 0.5);
        ASSERT_EQ(y[32 + j], (((j * 7) & 15) - 8) * -5.0);
        ASSERT_EQ(y[48 + j], ((((j * 7) & 0xFF) >> 4) - 8) * -5.0);
    }
}

TEST(quant_dequant_q8_0) {
    block_q8_0 b;
    b.d = 0xC000; /* -2.0 */
    for (int j = 0; j < 32; j++) b.qs[j] = (int8_t)(j * 8 - 128);
    float y[32];
    quant_dequantize_row_q8_0(&b, y, 32);
    for (int j = 0; j < 32; j++) ASSERT_EQ(y[j], (j * 8 - 128) * -2.0);
}

/* FORMATS 2.3 Q4_K scale unpacking, written out here. */
static void tq_q4k_scale(const uint8_t *q, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* FORMATS 2.3 Q4_K element i of one block. */
static double tq_q4k_elem(const block_q4_k *b, int i) {
    double d = tq_half_value(b->d), dmin = tq_half_value(b->dmin);
    int c = i / 64, r = i % 64;
    uint8_t byte = b->qs[32 * c + r % 32];
    int nib = r < 32 ? (byte & 0xF) : (byte >> 4);
    int sc, mn;
    tq_q4k_scale(b->scales, i / 32, &sc, &mn);
    return d * sc * nib - dmin * mn;
}

/* FORMATS 2.3 Q6_K element i of one block. */
static double tq_q6k_elem(const block_q6_k *b, int i) {
    int h = i / 128, r = i % 128, g = r / 32, l = r % 32;
    uint8_t lb = b->ql[64 * h + l + ((g & 1) ? 32 : 0)];
    int low4 = g < 2 ? (lb & 0xF) : (lb >> 4);
    int high2 = (b->qh[32 * h + l] >> (2 * g)) & 3;
    int q = (low4 | (high2 << 4)) - 32;
    return tq_half_value(b->d) * b->scales[i / 16] * q;
}

TEST(quant_dequant_q4_k_known_scales) {
    /* scales (sc, mn) per sub-block, packed here by hand from the rule:
     * bytes 0-3: sc0-3 (low 6) + top 2 bits of sc4-7; bytes 4-7: mn0-3 +
     * top 2 bits of mn4-7; bytes 8-11: low 4 bits of sc4-7 | low 4 of mn4-7 << 4 */
    const int sc[8] = {1, 2, 3, 63, 0, 17, 32, 48};
    const int mn[8] = {0, 5, 63, 1, 2, 40, 16, 33};
    block_q4_k b;
    memset(&b, 0, sizeof b);
    b.d = 0x3400;    /* 0.25 */
    b.dmin = 0x3C00; /* 1.0 */
    for (int j = 0; j < 4; j++) {
        b.scales[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
        b.scales[j + 4] = (uint8_t)(mn[j] | ((mn[j + 4] >> 4) << 6));
        b.scales[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
    }
    /* nibble of element i = i % 16 */
    for (int c = 0; c < 4; c++) {
        for (int l = 0; l < 32; l++) {
            int lo = (64 * c + l) % 16, hi = (64 * c + 32 + l) % 16;
            b.qs[32 * c + l] = (uint8_t)(lo | (hi << 4));
        }
    }
    float y[QK_K];
    quant_dequantize_row_q4_k(&b, y, QK_K);
    for (int i = 0; i < QK_K; i++) {
        double want = 0.25 * sc[i / 32] * (i % 16) - 1.0 * mn[i / 32];
        if (y[i] != want) {
            test_fail(__FILE__, __LINE__, "elem %d: %g != %g", i, (double)y[i], want);
            return;
        }
    }
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        quant_q4_k_get_scale_min(b.scales, j, &s, &m);
        ASSERT_EQ(s, sc[j]);
        ASSERT_EQ(m, mn[j]);
    }
}

/* Random bytes everywhere (finite fp16 scales): every bit of the layout. */
TEST(quant_dequant_random_blocks) {
    uint64_t rng = 11;
    enum { NB = 16 };
    block_q4_k q4k[NB];
    block_q6_k q6k[NB];
    block_q8_k q8k[NB];
    for (int b = 0; b < NB; b++) {
        for (size_t i = 0; i < sizeof q4k[b]; i++) ((uint8_t *)&q4k[b])[i] = (uint8_t)tq_next(&rng);
        for (size_t i = 0; i < sizeof q6k[b]; i++) ((uint8_t *)&q6k[b])[i] = (uint8_t)tq_next(&rng);
        for (size_t i = 0; i < sizeof q8k[b]; i++) ((uint8_t *)&q8k[b])[i] = (uint8_t)tq_next(&rng);
        /* finite scales: exponent field below 31 */
        q4k[b].d = (mica_fp16)(tq_next(&rng) % 0x7800);
        q4k[b].dmin = (mica_fp16)(tq_next(&rng) % 0x7800);
        q6k[b].d = (mica_fp16)(tq_next(&rng) % 0x7800) | (mica_fp16)(tq_next(&rng) & 0x8000);
        q8k[b].d = (float)(tq_gauss(&rng) * 1e-2);
    }
    static float y[NB * QK_K];
    quant_dequantize_row_q4_k(q4k, y, NB * QK_K);
    for (int i = 0; i < NB * QK_K; i++) {
        /* the two products are exact in float; one rounding of the difference */
        float want = (float)tq_q4k_elem(&q4k[i / QK_K], i % QK_K);
        if (y[i] != want) {
            test_fail(__FILE__, __LINE__, "Q4_K elem %d: %.9g != %.9g", i, (double)y[i], (double)want);
            return;
        }
    }
    quant_dequantize_row_q6_k(q6k, y, NB * QK_K);
    for (int i = 0; i < NB * QK_K; i++) {
        double want = tq_q6k_elem(&q6k[i / QK_K], i % QK_K); /* exact in float */
        if (y[i] != want) {
            test_fail(__FILE__, __LINE__, "Q6_K elem %d: %.9g != %.9g", i, (double)y[i], want);
            return;
        }
    }
    quant_dequantize_row_q8_k(q8k, y, NB * QK_K);
    for (int i = 0; i < NB * QK_K; i++) {
        const block_q8_k *b = &q8k[i / QK_K];
        ASSERT_EQ(y[i], (float)((double)b->d * b->qs[i % QK_K]));
    }
}

/* ---- activation quantisers ---- */

TEST(quant_q8_0_activation_rules) {
    float x[32];
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16);
    x[0] = 127.0f; /* amax 127 -> d = 1, id = 1: q = roundf(x) */
    x[1] = 2.5f;
    x[2] = -2.5f;
    x[3] = 0.5f;
    x[4] = -0.5f;
    x[5] = 1.49f;
    x[6] = -126.5f;
    block_q8_0 b;
    quant_quantize_row_q8_0(x, &b, 32);
    ASSERT_EQ(b.d, 0x3C00);
    ASSERT_EQ(b.qs[0], 127);
    ASSERT_EQ(b.qs[1], 3);   /* half away from zero */
    ASSERT_EQ(b.qs[2], -3);
    ASSERT_EQ(b.qs[3], 1);
    ASSERT_EQ(b.qs[4], -1);
    ASSERT_EQ(b.qs[5], 1);
    ASSERT_EQ(b.qs[6], -127);
    for (int j = 7; j < 32; j++) ASSERT_EQ(b.qs[j], j - 16);

    /* general block: d = amax/127 stored as fp16; q = roundf(x * (1/d)) with the float d */
    uint64_t rng = 3;
    for (int j = 0; j < 32; j++) x[j] = tq_gauss(&rng) * 0.37f;
    quant_quantize_row_q8_0(x, &b, 32);
    float amax = 0;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = 1.0f / d;
    ASSERT_EQ(b.d, quant_f32_to_fp16(d));
    for (int j = 0; j < 32; j++) {
        float v = x[j] * id;
        float r = v >= 0 ? floorf(v + 0.5f) : -floorf(-v + 0.5f);
        ASSERT_EQ(b.qs[j], (int)r);
    }
    /* zero block */
    memset(x, 0, sizeof x);
    quant_quantize_row_q8_0(x, &b, 32);
    ASSERT_EQ(b.d, 0);
    for (int j = 0; j < 32; j++) ASSERT_EQ(b.qs[j], 0);
}

TEST(quant_q8_k_activation_rules) {
    static float x[QK_K];
    block_q8_k b;
    for (int j = 0; j < QK_K; j++) x[j] = (float)((j % 200) - 100) * 0.5f;
    x[10] = 127.0f; /* signed max 127 -> iscale = -1, d = -1: q = nearest_int(-x) */
    x[11] = 2.5f;
    x[12] = -2.5f;
    x[13] = 3.5f;
    x[14] = -127.0f; /* same magnitude as the max, later: max stays +127 */
    quant_quantize_row_q8_k(x, &b, QK_K);
    ASSERT_EQ(b.d, -1.0f);
    ASSERT_EQ(b.qs[10], -127);
    ASSERT_EQ(b.qs[11], -2); /* -2.5 -> -2 (half to even) */
    ASSERT_EQ(b.qs[12], 2);
    ASSERT_EQ(b.qs[13], -4);
    ASSERT_EQ(b.qs[14], 127);
    for (int j = 15; j < QK_K; j++) {
        double v = -x[j];
        double r = nearbyint(v); /* default mode: half to even */
        ASSERT_EQ(b.qs[j], (int)r);
    }
    for (int g = 0; g < 16; g++) {
        int sum = 0;
        for (int i = 0; i < 16; i++) sum += b.qs[16 * g + i];
        ASSERT_EQ(b.bsums[g], sum);
    }
    /* negative max: iscale = +127/amax, d positive */
    uint64_t rng = 5;
    for (int j = 0; j < QK_K; j++) x[j] = tq_gauss(&rng);
    x[77] = -9.0f;
    quant_quantize_row_q8_k(x, &b, QK_K);
    float iscale = -127.0f / -9.0f;
    ASSERT_EQ(b.d, 1.0f / iscale);
    ASSERT_EQ(b.qs[77], -127);
    for (int j = 0; j < QK_K; j++) {
        double r = nearbyint((double)(iscale * x[j]));
        ASSERT_EQ(b.qs[j], (int)(r > 127 ? 127 : r));
    }
    /* zero block: d = 0, everything zero (bsums included) */
    memset(x, 0, sizeof x);
    memset(&b, 0x55, sizeof b);
    quant_quantize_row_q8_k(x, &b, QK_K);
    ASSERT_EQ(b.d, 0.0f);
    for (int j = 0; j < QK_K; j++) ASSERT_EQ(b.qs[j], 0);
    for (int g = 0; g < 16; g++) ASSERT_EQ(b.bsums[g], 0);
}

TEST(quant_q8_k_bsums_random) {
    enum { NB = 32 };
    static float x[NB * QK_K];
    static block_q8_k b[NB];
    uint64_t rng = 99;
    for (int i = 0; i < NB * QK_K; i++) x[i] = tq_gauss(&rng) * (float)(1 + i / QK_K);
    quant_quantize_row_q8_k(x, b, NB * QK_K);
    for (int k = 0; k < NB; k++) {
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int i = 0; i < 16; i++) sum += b[k].qs[16 * g + i];
            ASSERT_EQ(b[k].bsums[g], sum);
        }
        for (int i = 0; i < QK_K; i++) ASSERT_TRUE(b[k].qs[i] >= -127 && b[k].qs[i] <= 127);
    }
}

/* ---- round trips ---- */

enum { TQ_N = 64 * QK_K };

/* Relative RMS error sqrt(sum (x - x')^2 / sum x^2) of quantise -> dequantise. */
static double tq_roundtrip(int type, const float *x, float *out, int64_t n) {
    static uint8_t buf[TQ_N * 2];
    switch (type) {
    case MICA_DTYPE_Q8_0:
        quant_quantize_row_q8_0(x, (block_q8_0 *)buf, n);
        quant_dequantize_row_q8_0((block_q8_0 *)buf, out, n);
        break;
    case MICA_DTYPE_Q4_0:
        quant_quantize_row_q4_0(x, (block_q4_0 *)buf, n);
        quant_dequantize_row_q4_0((block_q4_0 *)buf, out, n);
        break;
    case MICA_DTYPE_Q4_K:
        quant_quantize_row_q4_k(x, (block_q4_k *)buf, n);
        quant_dequantize_row_q4_k((block_q4_k *)buf, out, n);
        break;
    case MICA_DTYPE_Q6_K:
        quant_quantize_row_q6_k(x, (block_q6_k *)buf, n);
        quant_dequantize_row_q6_k((block_q6_k *)buf, out, n);
        break;
    case MICA_DTYPE_Q8_K:
        quant_quantize_row_q8_k(x, (block_q8_k *)buf, n);
        quant_dequantize_row_q8_k((block_q8_k *)buf, out, n);
        break;
    default:
        return INFINITY;
    }
    double se = 0, ss = 0;
    for (int64_t i = 0; i < n; i++) {
        se += ((double)x[i] - out[i]) * ((double)x[i] - out[i]);
        ss += (double)x[i] * x[i];
    }
    return ss > 0 ? sqrt(se / ss) : sqrt(se);
}

/*
 * Bounds on N(0,1) data. A uniform quantiser with step D has RMS error
 * about D/sqrt(12) = 0.289 D. The expected largest |x| of 32 samples is
 * about 2.1-2.2 (of 16: 1.8; of 256: 2.9), so:
 *  - Q8_0: D = amax/127 ~ 0.017 -> ~0.5%; bound 0.65%;
 *  - Q8_K: D = amax/127 over 256 ~ 0.023 -> ~0.66%; bound 0.8%;
 *  - Q4_0: levels -8..7, D = amax/8 ~ 0.27 -> ~7.8-8%; the scale search
 *    (clipping against step) gains little on iid Gaussian data (measured
 *    8.0%); bound 8.5%;
 *  - Q4_K: 16 levels over [min, max] of 32 (range ~ 4.1) -> D ~ 0.27, ~7.9%
 *    before the scale/min search, plus the 6-bit coding of scale and min
 *    relative to d/dmin; measured 7.1%; bound 8%. (Its real gain over Q4_0
 *    is on shifted data, tested below.)
 *  - Q6_K: 64 levels, D = amax/32 over 16 ~ 0.056 -> ~1.6% (measured 1.7%);
 *    bound 2%.
 */
TEST(quant_roundtrip_error_gaussian) {
    static float x[TQ_N], out[TQ_N];
    uint64_t rng = 1234;
    for (int i = 0; i < TQ_N; i++) x[i] = tq_gauss(&rng);
    struct { int type; double bound; } cases[] = {
        {MICA_DTYPE_Q8_0, 0.0065}, {MICA_DTYPE_Q8_K, 0.008}, {MICA_DTYPE_Q4_0, 0.085},
        {MICA_DTYPE_Q4_K, 0.08},  {MICA_DTYPE_Q6_K, 0.02},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        double e = tq_roundtrip(cases[c].type, x, out, TQ_N);
        if (!(e < cases[c].bound)) {
            test_fail(__FILE__, __LINE__, "%s: relative RMSE %.5f >= %.5f", dtype_name((uint32_t)cases[c].type),
                      e, cases[c].bound);
        }
    }
}

/*
 * Shifted data x = 0.01 * (N(0,1) - 3): almost all negative. Q4_K's
 * per-sub-block offset (value = d*sc*q - dmin*mn, mn >= 0) fits the range
 * [min, max] of each 32 values (~4.1 standard deviations: the same ~8% of
 * the spread as the Gaussian case), while the symmetric Q4_0 spends half its
 * levels on the empty positive side (step amax/8 with amax ~ 5 spreads:
 * ~18%). Errors relative to the spread (0.01). The quantiser keeps the
 * offset non-positive (dmin >= 0), as llama.cpp's does, so data shifted the
 * other way would not benefit.
 */
TEST(quant_roundtrip_error_shifted) {
    static float x[TQ_N], out[TQ_N];
    uint64_t rng = 77;
    for (int i = 0; i < TQ_N; i++) x[i] = 0.01f * (tq_gauss(&rng) - 3.0f);
    double err[MICA_DTYPE_COUNT] = {0};
    const int types[] = {MICA_DTYPE_Q4_K, MICA_DTYPE_Q4_0, MICA_DTYPE_Q6_K, MICA_DTYPE_Q8_0};
    for (size_t c = 0; c < sizeof types / sizeof types[0]; c++) {
        tq_roundtrip(types[c], x, out, TQ_N);
        double se = 0;
        for (int i = 0; i < TQ_N; i++) se += ((double)x[i] - out[i]) * ((double)x[i] - out[i]);
        err[types[c]] = sqrt(se / TQ_N) / 0.01;
    }
    ASSERT_TRUE(err[MICA_DTYPE_Q4_K] < 0.09);
    ASSERT_TRUE(err[MICA_DTYPE_Q4_K] < 0.6 * err[MICA_DTYPE_Q4_0]);
    ASSERT_TRUE(err[MICA_DTYPE_Q6_K] < 0.06); /* symmetric 6 bits: amax/32/sqrt(12) ~ 4.5% */
    ASSERT_TRUE(err[MICA_DTYPE_Q8_0] < 0.02); /* amax/127/sqrt(12) ~ 1.2% */
}

/* Zero rows, constant rows and a lone outlier give valid, sensible blocks. */
TEST(quant_roundtrip_edge_rows) {
    static float x[QK_K], out[QK_K];
    const int types[] = {MICA_DTYPE_Q8_0, MICA_DTYPE_Q4_0, MICA_DTYPE_Q4_K, MICA_DTYPE_Q6_K, MICA_DTYPE_Q8_K};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        memset(x, 0, sizeof x);
        tq_roundtrip(types[t], x, out, QK_K);
        for (int i = 0; i < QK_K; i++) ASSERT_EQ(out[i], 0.0f);
        for (int i = 0; i < QK_K; i++) x[i] = -0.75f; /* exactly representable everywhere */
        double e = tq_roundtrip(types[t], x, out, QK_K);
        ASSERT_TRUE(e < 0.01);
        memset(x, 0, sizeof x);
        x[37] = 1000.0f;
        tq_roundtrip(types[t], x, out, QK_K);
        ASSERT_NEAR(out[37], 1000.0, 1000.0 * 0.01);
        for (int i = 0; i < QK_K; i++) {
            if (i != 37) ASSERT_NEAR(out[i], 0.0, 1000.0 * 0.01);
        }
    }
}

/* ---- the remaining types: hand-computed blocks ---- */

/* Q4_1, FORMATS 2.3: elem j = lo(qs[j])*d + m, elem j+16 = hi(qs[j])*d + m.
 * d = 0x3800 = 0.5, m = 0xBC00 = -1.0;
 * qs[0] = 0x3A: elem 0 = 10*0.5 - 1 = 4.0, elem 16 = 3*0.5 - 1 = 0.5;
 * qs[1] = 0xF0: elem 1 = 0*0.5 - 1 = -1.0, elem 17 = 15*0.5 - 1 = 6.5. */
TEST(quant_dequant_q4_1_hand) {
    block_q4_1 b;
    memset(&b, 0, sizeof b);
    b.d = 0x3800;
    b.m = 0xBC00;
    b.qs[0] = 0x3A;
    b.qs[1] = 0xF0;
    float y[32];
    quant_dequantize_row_q4_1(&b, y, 32);
    ASSERT_EQ(y[0], 4.0f);
    ASSERT_EQ(y[16], 0.5f);
    ASSERT_EQ(y[1], -1.0f);
    ASSERT_EQ(y[17], 6.5f);
    ASSERT_EQ(y[2], -1.0f); /* nibble 0 */
}

/* Q5_0: qh bytes 01 00 01 80 = u32 0x80010001 (bits 0, 16, 31); d = 0x4000 = 2.
 * qs[0] = 0x5F: elem 0 = ((15 | 1<<4) - 16)*2 = 30, elem 16 = ((5 | 1<<4) - 16)*2 = 10;
 * qs[15] = 0x00: elem 15 = (0 - 16)*2 = -32, elem 31 = ((0 | 1<<4) - 16)*2 = 0. */
TEST(quant_dequant_q5_0_hand) {
    block_q5_0 b;
    memset(&b, 0, sizeof b);
    b.d = 0x4000;
    b.qh[0] = 0x01;
    b.qh[2] = 0x01;
    b.qh[3] = 0x80;
    b.qs[0] = 0x5F;
    float y[32];
    quant_dequantize_row_q5_0(&b, y, 32);
    ASSERT_EQ(y[0], 30.0f);
    ASSERT_EQ(y[16], 10.0f);
    ASSERT_EQ(y[15], -32.0f);
    ASSERT_EQ(y[31], 0.0f);
}

/* Q5_1: d = 0x3400 = 0.25, m = 0x4200 = 3, qh = u32 2 (bit 1). qs[1] = 0x21:
 * elem 1 = (1 | 16)*0.25 + 3 = 7.25, elem 17 = 2*0.25 + 3 = 3.5; elem 0 = 3. */
TEST(quant_dequant_q5_1_hand) {
    block_q5_1 b;
    memset(&b, 0, sizeof b);
    b.d = 0x3400;
    b.m = 0x4200;
    b.qh[0] = 0x02;
    b.qs[1] = 0x21;
    float y[32];
    quant_dequantize_row_q5_1(&b, y, 32);
    ASSERT_EQ(y[1], 7.25f);
    ASSERT_EQ(y[17], 3.5f);
    ASSERT_EQ(y[0], 3.0f);
}

/* IQ4_NL: d = 0xB800 = -0.5, K = {-127, -104, ..., -10, 1, ..., 113}.
 * qs[0] = 0xF0: elem 0 = -0.5*K[0] = 63.5, elem 16 = -0.5*K[15] = -56.5;
 * qs[3] = 0x87: elem 3 = -0.5*K[7] = 5, elem 19 = -0.5*K[8] = -0.5. */
TEST(quant_dequant_iq4_nl_hand) {
    block_iq4_nl b;
    memset(&b, 0, sizeof b);
    b.d = 0xB800;
    b.qs[0] = 0xF0;
    b.qs[3] = 0x87;
    float y[32];
    quant_dequantize_row_iq4_nl(&b, y, 32);
    ASSERT_EQ(y[0], 63.5f);
    ASSERT_EQ(y[16], -56.5f);
    ASSERT_EQ(y[3], 5.0f);
    ASSERT_EQ(y[19], -0.5f);
    ASSERT_EQ(y[1], 63.5f); /* nibble 0 = K[0] */
}

/* MXFP4: value = F[code] * 2^(e-128), F = {0,1,2,3,4,6,8,12, 0,-1,-2,-3,-4,-6,-8,-12}.
 * e = 129 (scale 2), qs[0] = 0x9F: elem 0 = F[15]*2 = -24, elem 16 = F[9]*2 = -2;
 * qs[1] = 0x07: elem 1 = 12*2 = 24, elem 17 = 0. The half E8M0 itself:
 * e = 0 -> 2^-128, 1 -> 2^-127, 2 -> 2^-126 (smallest normal), 127 -> 0.5,
 * 128 -> 1, 255 -> 2^127. */
TEST(quant_dequant_mxfp4_hand) {
    block_mxfp4 b;
    memset(&b, 0, sizeof b);
    b.e = 129;
    b.qs[0] = 0x9F;
    b.qs[1] = 0x07;
    float y[32];
    quant_dequantize_row_mxfp4(&b, y, 32);
    ASSERT_EQ(y[0], -24.0f);
    ASSERT_EQ(y[16], -2.0f);
    ASSERT_EQ(y[1], 24.0f);
    ASSERT_EQ(y[17], 0.0f);
    ASSERT_EQ(quant_e8m0_half_to_f32(0), ldexp(1.0, -128));
    ASSERT_EQ(quant_e8m0_half_to_f32(1), ldexp(1.0, -127));
    ASSERT_EQ(quant_e8m0_half_to_f32(2), ldexp(1.0, -126));
    ASSERT_EQ(quant_e8m0_half_to_f32(127), 0.5);
    ASSERT_EQ(quant_e8m0_half_to_f32(128), 1.0);
    ASSERT_EQ(quant_e8m0_half_to_f32(255), ldexp(1.0, 127));
    for (int e = 0; e < 256; e++) ASSERT_EQ(quant_e8m0_half_to_f32((uint8_t)e), ldexp(1.0, e - 128));
    /* subnormal scale: e = 0, code 7 (12): 12 * 2^-128 = 3 * 2^-126, exact */
    b.e = 0;
    quant_dequantize_row_mxfp4(&b, y, 32);
    ASSERT_EQ(y[1], ldexp(3.0, -126));
}

/* Q2_K: element 128h + 32j + l = bits 2j of qs[32h + l], scales[i/16] = sc | mn<<4,
 * value = d*sc*q - dmin*mn; d = 1 (0x3C00), dmin = 0.5 (0x3800).
 * scales[0] = 0x35 (sc 5, mn 3): qs[0] = 0xE4 -> elem 0 q = 0: -1.5;
 *   qs[1] = 0x02 -> elem 1 q = 2: 5*2 - 1.5 = 8.5;
 * elem 96 (h 0, j 3, l 0) = bits 6-7 of qs[0] = 3, group 6: scales[6] = 0x10
 *   (sc 0, mn 1): 0 - 0.5 = -0.5;
 * elem 144 (h 1, j 0, l 16) = bits 0-1 of qs[48] = 3, group 9: scales[9] =
 *   0x12 (sc 2, mn 1): 2*3 - 0.5 = 5.5. */
TEST(quant_dequant_q2_k_hand) {
    block_q2_k b;
    memset(&b, 0, sizeof b);
    b.d = 0x3C00;
    b.dmin = 0x3800;
    b.scales[0] = 0x35;
    b.scales[6] = 0x10;
    b.scales[9] = 0x12;
    b.qs[0] = 0xE4;
    b.qs[1] = 0x02;
    b.qs[48] = 0x03;
    float y[QK_K];
    quant_dequantize_row_q2_k(&b, y, QK_K);
    ASSERT_EQ(y[0], -1.5f);
    ASSERT_EQ(y[1], 8.5f);
    ASSERT_EQ(y[96], -0.5f);
    ASSERT_EQ(y[144], 5.5f);
    ASSERT_EQ(y[32], 0.0f); /* group 2: scales 0 */
}

/* Q3_K: scale j = (low4 | high2<<4) - 32, low4 = lo(scales[j]) (j<8) or
 * hi(scales[j-8]), high2 = bits 2(j/4) of scales[8 + j%4]; d = 2 (0x4000).
 * scales[0] = 0x21, scales[8] = 0x02: s_0 = (1 | 2<<4) - 32 = 1,
 * s_8 = (2 | 0) - 32 = -30, every other s_j = -32.
 * q = low2 - (hmask bit set ? 0 : 4), low2 = bits 2j of qs[32h + l], hmask
 * bit 4h + j of hmask[l]:
 * elem 0: qs[0] = 3, hmask[0] bit 0 set: q = 3 -> 2*1*3 = 6;
 * elem 1: qs[1] = 1, bit clear: q = -3 -> -6;
 * elem 128 (h 1, group 8): qs[32] = 2, hmask[0] bit 4 clear: q = -2 -> 2*-30*-2 = 120;
 * elem 16 (group 1): qs[16] = 0, clear: q = -4 -> 2*-32*-4 = 256. */
TEST(quant_dequant_q3_k_hand) {
    block_q3_k b;
    memset(&b, 0, sizeof b);
    b.d = 0x4000;
    b.scales[0] = 0x21;
    b.scales[8] = 0x02;
    b.qs[0] = 0x03;
    b.qs[1] = 0x01;
    b.qs[32] = 0x02;
    b.hmask[0] = 0x01;
    float y[QK_K];
    quant_dequantize_row_q3_k(&b, y, QK_K);
    ASSERT_EQ(y[0], 6.0f);
    ASSERT_EQ(y[1], -6.0f);
    ASSERT_EQ(y[128], 120.0f);
    ASSERT_EQ(y[16], 256.0f);
    int8_t sc[16];
    quant_q3_k_unpack_scales(b.scales, sc);
    ASSERT_EQ(sc[0], 1);
    ASSERT_EQ(sc[8], -30);
    ASSERT_EQ(sc[1], -32);
}

/* Q5_K: as Q4_K plus 16 if bit i/32 of qh[i%32] is set; d = dmin = 1.
 * scales[0] = 2, scales[1] = 3, scales[4] = 1 (sc0 = 2, sc1 = 3, mn0 = 1, mn1 = 0);
 * qs[0] = 0x47, qh[0] = 0x03: elem 0 = 2*(7 + 16) - 1 = 45, elem 32 (high
 * nibble, sub-block 1) = 3*(4 + 16) - 0 = 60; elem 1 = 2*0 - 1 = -1. */
TEST(quant_dequant_q5_k_hand) {
    block_q5_k b;
    memset(&b, 0, sizeof b);
    b.d = 0x3C00;
    b.dmin = 0x3C00;
    b.scales[0] = 2;
    b.scales[1] = 3;
    b.scales[4] = 1;
    b.qs[0] = 0x47;
    b.qh[0] = 0x03;
    float y[QK_K];
    quant_dequantize_row_q5_k(&b, y, QK_K);
    ASSERT_EQ(y[0], 45.0f);
    ASSERT_EQ(y[32], 60.0f);
    ASSERT_EQ(y[1], -1.0f);
}

/* IQ4_XS: ls_b = ((scales_l[b/2] >> 4(b%2)) & 15) | ((scales_h >> 2b) & 3) << 4,
 * value = d*(ls_b - 32)*K[nibble]; d = 0.5 (0x3800).
 * scales_l[0] = 0x21, scales_h = 0x0002: ls_0 = 1 | 2<<4 = 33 (scale 1),
 * ls_1 = 2 (scale -30), others 0 (scale -32).
 * qs[0] = 0xF0: elem 0 = 0.5*1*K[0] = -63.5, elem 16 = 0.5*1*113 = 56.5;
 * qs[16] = 0x08 (sub-block 1): elem 32 = 0.5*-30*K[8] = -15, elem 48 = 0.5*-30*-127 = 1905. */
TEST(quant_dequant_iq4_xs_hand) {
    block_iq4_xs b;
    memset(&b, 0, sizeof b);
    b.d = 0x3800;
    b.scales_l[0] = 0x21;
    b.scales_h = 0x0002;
    b.qs[0] = 0xF0;
    b.qs[16] = 0x08;
    float y[QK_K];
    quant_dequantize_row_iq4_xs(&b, y, QK_K);
    ASSERT_EQ(y[0], -63.5f);
    ASSERT_EQ(y[16], 56.5f);
    ASSERT_EQ(y[32], -15.0f);
    ASSERT_EQ(y[48], 1905.0f);
    ASSERT_EQ(y[64], 0.5 * -32 * -127); /* sub-block 2: nibble 0, scale -32 */
}

/* ---- the remaining types: random blocks against the FORMATS formulas ---- */

static const int tq_iq4[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
static const int tq_fp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

static double tq_f16_at(const uint8_t *p) { return tq_half_value((uint16_t)(p[0] | p[1] << 8)); }

/* Element i of one block of `type` from its raw bytes, in double, written
 * from FORMATS 2.3 by byte offsets (not through the C structs). */
static double tq_elem(int type, const uint8_t *p, int i) {
    switch (type) {
    case MICA_DTYPE_Q4_1: case MICA_DTYPE_Q5_0: case MICA_DTYPE_Q5_1: {
        int has_m = type != MICA_DTYPE_Q5_0, has_h = type != MICA_DTYPE_Q4_1;
        int o = has_m ? 4 : 2;
        uint32_t qh = has_h ? (uint32_t)p[o] | (uint32_t)p[o + 1] << 8 | (uint32_t)p[o + 2] << 16 | (uint32_t)p[o + 3] << 24 : 0;
        const uint8_t *qs = p + o + (has_h ? 4 : 0);
        int q = (i < 16 ? qs[i] & 15 : qs[i - 16] >> 4) + (has_h && ((qh >> i) & 1) ? 16 : 0);
        if (type == MICA_DTYPE_Q5_0) return (q - 16) * tq_f16_at(p);
        return q * tq_f16_at(p) + tq_f16_at(p + 2);
    }
    case MICA_DTYPE_IQ4_NL: {
        int nib = i < 16 ? p[2 + i] & 15 : p[2 + i - 16] >> 4;
        return tq_f16_at(p) * tq_iq4[nib];
    }
    case MICA_DTYPE_MXFP4: {
        int nib = i < 16 ? p[1 + i] & 15 : p[1 + i - 16] >> 4;
        return tq_fp4[nib] * ldexp(1.0, p[0] - 128);
    }
    case MICA_DTYPE_Q2_K: {
        int h = i / 128, j = (i % 128) / 32, l = i % 32;
        int q = (p[16 + 32 * h + l] >> (2 * j)) & 3, sc = p[i / 16];
        return tq_f16_at(p + 80) * (sc & 15) * q - tq_f16_at(p + 82) * (sc >> 4);
    }
    case MICA_DTYPE_Q3_K: {
        int h = i / 128, j = (i % 128) / 32, l = i % 32, g = i / 16;
        const uint8_t *sc = p + 96;
        int low4 = g < 8 ? sc[g] & 15 : sc[g - 8] >> 4, high2 = (sc[8 + g % 4] >> (2 * (g / 4))) & 3;
        int q = ((p[32 + 32 * h + l] >> (2 * j)) & 3) - (((p[l] >> (4 * h + j)) & 1) ? 0 : 4);
        return tq_f16_at(p + 108) * ((low4 | high2 << 4) - 32) * q;
    }
    case MICA_DTYPE_Q5_K: {
        int sc, mn, c = i / 64, r = i % 64;
        tq_q4k_scale(p + 4, i / 32, &sc, &mn);
        uint8_t byte = p[48 + 32 * c + r % 32];
        int q = (r < 32 ? byte & 15 : byte >> 4) + (((p[16 + i % 32] >> (i / 32)) & 1) ? 16 : 0);
        return tq_f16_at(p) * sc * q - tq_f16_at(p + 2) * mn;
    }
    case MICA_DTYPE_IQ4_XS: {
        int sb = i / 32, t = i % 32, sh = p[2] | p[3] << 8;
        int ls = ((p[4 + sb / 2] >> (4 * (sb % 2))) & 15) | ((sh >> (2 * sb)) & 3) << 4;
        uint8_t byte = p[8 + 16 * sb + t % 16];
        return tq_f16_at(p) * (ls - 32) * tq_iq4[t < 16 ? byte & 15 : byte >> 4];
    }
    default: return NAN;
    }
}

typedef void (*tq_deq_fn)(const void *x, float *y, int64_t n);
static void tq_deq_q4_1(const void *x, float *y, int64_t n) { quant_dequantize_row_q4_1(x, y, n); }
static void tq_deq_q5_0(const void *x, float *y, int64_t n) { quant_dequantize_row_q5_0(x, y, n); }
static void tq_deq_q5_1(const void *x, float *y, int64_t n) { quant_dequantize_row_q5_1(x, y, n); }
static void tq_deq_iq4_nl(const void *x, float *y, int64_t n) { quant_dequantize_row_iq4_nl(x, y, n); }
static void tq_deq_mxfp4(const void *x, float *y, int64_t n) { quant_dequantize_row_mxfp4(x, y, n); }
static void tq_deq_q2_k(const void *x, float *y, int64_t n) { quant_dequantize_row_q2_k(x, y, n); }
static void tq_deq_q3_k(const void *x, float *y, int64_t n) { quant_dequantize_row_q3_k(x, y, n); }
static void tq_deq_q5_k(const void *x, float *y, int64_t n) { quant_dequantize_row_q5_k(x, y, n); }
static void tq_deq_iq4_xs(const void *x, float *y, int64_t n) { quant_dequantize_row_iq4_xs(x, y, n); }

/* Random bytes everywhere except finite fp16 scale fields (exponent < 31);
 * MXFP4 exponents over 0..254 (255 with |code| 12 would overflow float).
 * Every product of these formulas is exact in double and the one
 * subtraction (Q4_1, Q5_1, Q2_K, Q5_K) is exact too, so the float result must
 * be the double value rounded once. */
TEST(quant_dequant_random_blocks_ext) {
    static const struct { int type; tq_deq_fn fn; int f16_off[2]; } cases[] = {
        {MICA_DTYPE_Q4_1, tq_deq_q4_1, {0, 2}},     {MICA_DTYPE_Q5_0, tq_deq_q5_0, {0, -1}},
        {MICA_DTYPE_Q5_1, tq_deq_q5_1, {0, 2}},     {MICA_DTYPE_IQ4_NL, tq_deq_iq4_nl, {0, -1}},
        {MICA_DTYPE_MXFP4, tq_deq_mxfp4, {-1, -1}}, {MICA_DTYPE_Q2_K, tq_deq_q2_k, {80, 82}},
        {MICA_DTYPE_Q3_K, tq_deq_q3_k, {108, -1}},  {MICA_DTYPE_Q5_K, tq_deq_q5_k, {0, 2}},
        {MICA_DTYPE_IQ4_XS, tq_deq_iq4_xs, {0, -1}},
    };
    enum { NB = 64 };
    static uint8_t raw[NB * 176];
    static float y[NB * QK_K];
    uint64_t rng = 4242;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const dtype_traits *tr = dtype_get((uint32_t)cases[c].type);
        ASSERT_TRUE(tr != NULL);
        for (size_t i = 0; i < NB * tr->bytes; i++) raw[i] = (uint8_t)tq_next(&rng);
        for (int b = 0; b < NB; b++) {
            uint8_t *p = raw + (size_t)b * tr->bytes;
            for (int k = 0; k < 2; k++) {
                int o = cases[c].f16_off[k];
                if (o < 0) continue;
                /* |scale| in [2^-14, 2^2): wide, but never overflowing */
                uint16_t h = (uint16_t)(0x0400 + tq_next(&rng) % 0x4000) | (uint16_t)(tq_next(&rng) & 0x8000);
                p[o] = (uint8_t)h;
                p[o + 1] = (uint8_t)(h >> 8);
            }
            if (cases[c].type == MICA_DTYPE_MXFP4) p[0] = (uint8_t)(tq_next(&rng) % 255);
        }
        cases[c].fn(raw, y, (int64_t)NB * tr->blck);
        for (int i = 0; i < NB * (int)tr->blck; i++) {
            float want = (float)tq_elem(cases[c].type, raw + (size_t)(i / (int)tr->blck) * tr->bytes, i % (int)tr->blck);
            if (memcmp(&y[i], &want, sizeof want) != 0) {
                test_fail(__FILE__, __LINE__, "%s elem %d: %.9g != %.9g", tr->name, i, (double)y[i], (double)want);
                return;
            }
        }
    }
}

/* ---- the remaining types: quantisers ---- */

typedef void (*tq_q_fn)(const float *x, void *y, int64_t n);
static void tq_q_q4_1(const float *x, void *y, int64_t n) { quant_quantize_row_q4_1(x, y, n); }
static void tq_q_q5_0(const float *x, void *y, int64_t n) { quant_quantize_row_q5_0(x, y, n); }
static void tq_q_q5_1(const float *x, void *y, int64_t n) { quant_quantize_row_q5_1(x, y, n); }
static void tq_q_iq4_nl(const float *x, void *y, int64_t n) { quant_quantize_row_iq4_nl(x, y, n); }
static void tq_q_mxfp4(const float *x, void *y, int64_t n) { quant_quantize_row_mxfp4(x, y, n); }
static void tq_q_q2_k(const float *x, void *y, int64_t n) { quant_quantize_row_q2_k(x, y, n); }
static void tq_q_q3_k(const float *x, void *y, int64_t n) { quant_quantize_row_q3_k(x, y, n); }
static void tq_q_q5_k(const float *x, void *y, int64_t n) { quant_quantize_row_q5_k(x, y, n); }
static void tq_q_iq4_xs(const float *x, void *y, int64_t n) { quant_quantize_row_iq4_xs(x, y, n); }

static const struct {
    int type;
    tq_q_fn q;
    tq_deq_fn dq;
    double bound; /* relative RMSE on N(0,1) data, see quant_roundtrip_error_ext */
} tq_ext[] = {
    {MICA_DTYPE_Q4_1, tq_q_q4_1, tq_deq_q4_1, 0.08},     {MICA_DTYPE_Q5_0, tq_q_q5_0, tq_deq_q5_0, 0.045},
    {MICA_DTYPE_Q5_1, tq_q_q5_1, tq_deq_q5_1, 0.04},     {MICA_DTYPE_IQ4_NL, tq_q_iq4_nl, tq_deq_iq4_nl, 0.08},
    {MICA_DTYPE_MXFP4, tq_q_mxfp4, tq_deq_mxfp4, 0.13},  {MICA_DTYPE_Q2_K, tq_q_q2_k, tq_deq_q2_k, 0.30},
    {MICA_DTYPE_Q3_K, tq_q_q3_k, tq_deq_q3_k, 0.16},     {MICA_DTYPE_Q5_K, tq_q_q5_k, tq_deq_q5_k, 0.04},
    {MICA_DTYPE_IQ4_XS, tq_q_iq4_xs, tq_deq_iq4_xs, 0.08},
};

static double tq_rel_rmse(const float *x, const float *out, int64_t n) {
    double se = 0, ss = 0;
    for (int64_t i = 0; i < n; i++) {
        se += ((double)x[i] - out[i]) * ((double)x[i] - out[i]);
        ss += (double)x[i] * x[i];
    }
    return ss > 0 ? sqrt(se / ss) : sqrt(se);
}

/*
 * Bounds on N(0,1) data (uniform step D: RMS error ~ 0.289 D; the largest
 * |x| of 32 values ~ 2.15, the range of 32 ~ 4.1, of 16 ~ 3.5):
 *  - Q4_1: 16 levels over the range of 32, D ~ 0.27 -> ~7.9% before the
 *    search (measured 7.0%); bound 8%;
 *  - Q5_0: levels -16..15, D = amax/16 ~ 0.134 -> ~3.9% (measured 4.0%);
 *    bound 4.5%;  Q5_1: 32 levels over the range, D ~ 0.13 -> ~3.8%
 *    (measured 3.4%); bound 4%;  Q5_K: the same per 32 plus the 6-bit
 *    scale codes (measured 3.6%); bound 4%;
 *  - IQ4_NL, IQ4_XS: 16 non-uniform levels, denser near zero where the
 *    Gaussian mass is (measured 7.4%, 7.5%: slightly better than Q4_0's
 *    8.0%); bound 8%;
 *  - MXFP4: E2M1 levels (spacing 1/12 to 1/3 of the top value) under a
 *    power-of-two scale, so the top level sits between amax and 2 amax
 *    (measured 11.1%); bound 13%;
 *  - Q3_K: 8 levels per 16, D = amax/4 ~ 0.45 -> ~13% (measured 14.4%, the
 *    6-bit scale codes cost ~1%); bound 16%;
 *  - Q2_K: 4 levels over the range of 16, D ~ 1.17 -> ~34% before the
 *    least-squares refit, which clips the tails (measured 26.9%); bound 30%.
 */
TEST(quant_roundtrip_error_ext) {
    static float x[TQ_N], out[TQ_N];
    static uint8_t buf[TQ_N * 2];
    uint64_t rng = 1234;
    for (int i = 0; i < TQ_N; i++) x[i] = tq_gauss(&rng);
    for (size_t c = 0; c < sizeof tq_ext / sizeof tq_ext[0]; c++) {
        tq_ext[c].q(x, buf, TQ_N);
        tq_ext[c].dq(buf, out, TQ_N);
        double e = tq_rel_rmse(x, out, TQ_N);
        if (getenv("MICA_TEST_VERBOSE")) fprintf(stderr, "    %-7s relative RMSE %.5f\n", dtype_name((uint32_t)tq_ext[c].type), e);
        if (!(e < tq_ext[c].bound)) {
            test_fail(__FILE__, __LINE__, "%s: relative RMSE %.5f >= %.5f", dtype_name((uint32_t)tq_ext[c].type), e,
                      tq_ext[c].bound);
        }
    }
}

/* Zero rows, constant rows and a lone outlier give valid, sensible blocks. */
TEST(quant_roundtrip_edge_rows_ext) {
    static float x[QK_K], out[QK_K];
    static uint8_t buf[QK_K * 2];
    for (size_t c = 0; c < sizeof tq_ext / sizeof tq_ext[0]; c++) {
        const char *name = dtype_name((uint32_t)tq_ext[c].type);
        memset(x, 0, sizeof x);
        tq_ext[c].q(x, buf, QK_K);
        tq_ext[c].dq(buf, out, QK_K);
        for (int i = 0; i < QK_K; i++) ASSERT_EQ(out[i], 0.0f);
        for (int i = 0; i < QK_K; i++) x[i] = -0.75f;
        tq_ext[c].q(x, buf, QK_K);
        tq_ext[c].dq(buf, out, QK_K);
        if (!(tq_rel_rmse(x, out, QK_K) < 0.02)) {
            test_fail(__FILE__, __LINE__, "%s: constant row error %.4f", name, tq_rel_rmse(x, out, QK_K));
            return;
        }
        memset(x, 0, sizeof x);
        x[37] = 1000.0f;
        tq_ext[c].q(x, buf, QK_K);
        tq_ext[c].dq(buf, out, QK_K);
        /* the outlier is kept within its type's step near the top of the
         * range (MXFP4: 12 -> 8 spacing, 1/6 of the value at worst) */
        ASSERT_NEAR(out[37], 1000.0, 1000.0 * (tq_ext[c].type == MICA_DTYPE_MXFP4 ? 0.17 : 0.01));
        for (int i = 0; i < QK_K; i++) {
            if (i != 37) ASSERT_NEAR(out[i], 0.0, 1000.0 * 0.01);
        }
    }
}
