/*
 * kern_generic.c - portable scalar kernels (layer: tensor): the fallback
 * table and the oracle the SIMD tables are tested against.
 *
 * Dot products follow FORMATS.md 2.5: integer partial sums are exact and the
 * float combination order is the one written there (the ggml generic
 * kernels' order). Plain-float weights (F32, F16, BF16) take F32 activations;
 * their dot products multiply and accumulate in double (four partial sums,
 * element i into sum i%4), so the reference is accurate to about one
 * rounding of the result.
 *
 * Supported types: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL,
 * MXFP4 (activations Q8_0) and Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS
 * (activations Q8_K) as weights; Q8_0 and Q8_K as activations (Q8_K:
 * to_float and from_float only). Their gemm entries call the scalar vec_dot
 * once per output. Two deliberate departures from ggml's pairing: Q4_1 and
 * Q5_1 take Q8_0 activations with the exact block sum (not Q8_1), and
 * IQ4_XS sums its sub-blocks as integers (see those kernels).
 */
#include <string.h>

#include "mica_internal.h"
#include "tensor/kern.h"
#include "tensor/quant_ref.h"

/* ---- to_float / from_float adapters ---- */

static void gen_f32_to_float(const void *x, float *y, int64_t n) {
    memcpy(y, x, (size_t)n * sizeof(float));
}
static void gen_f32_from_float(const float *x, void *y, int64_t n) {
    memcpy(y, x, (size_t)n * sizeof(float));
}
static void gen_f16_to_float(const void *x, float *y, int64_t n) { quant_fp16_to_f32_row(x, y, n); }
static void gen_f16_from_float(const float *x, void *y, int64_t n) { quant_f32_to_fp16_row(x, y, n); }
static void gen_bf16_to_float(const void *x, float *y, int64_t n) { quant_bf16_to_f32_row(x, y, n); }
static void gen_bf16_from_float(const float *x, void *y, int64_t n) { quant_f32_to_bf16_row(x, y, n); }
static void gen_q4_0_to_float(const void *x, float *y, int64_t n) { quant_dequantize_row_q4_0(x, y, n); }
static void gen_q4_0_from_float(const float *x, void *y, int64_t n) { quant_quantize_row_q4_0(x, y, n); }
static void gen_q8_0_to_float(const void *x, float *y, int64_t n) { quant_dequantize_row_q8_0(x, y, n); }
static void gen_q8_0_from_float(const float *x, void *y, int64_t n) { quant_quantize_row_q8_0(x, y, n); }
static void gen_q4_k_to_float(const void *x, float *y, int64_t n) { quant_dequantize_row_q4_k(x, y, n); }
static void gen_q4_k_from_float(const float *x, void *y, int64_t n) { quant_quantize_row_q4_k(x, y, n); }
static void gen_q6_k_to_float(const void *x, float *y, int64_t n) { quant_dequantize_row_q6_k(x, y, n); }
static void gen_q6_k_from_float(const float *x, void *y, int64_t n) { quant_quantize_row_q6_k(x, y, n); }
static void gen_q8_k_to_float(const void *x, float *y, int64_t n) { quant_dequantize_row_q8_k(x, y, n); }
static void gen_q8_k_from_float(const float *x, void *y, int64_t n) { quant_quantize_row_q8_k(x, y, n); }

/* ---- float dot products (x weights, y F32 activations) ---- */

static void gen_dot_f32(int64_t n, float *s, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    double sum[4] = {0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        for (int k = 0; k < 4; k++) sum[k] += (double)x[i + k] * (double)y[i + k];
    }
    for (; i < n; i++) sum[0] += (double)x[i] * (double)y[i];
    *s = (float)((sum[0] + sum[1]) + (sum[2] + sum[3]));
}

static void gen_dot_f16(int64_t n, float *s, const void *vx, const void *vy) {
    const mica_fp16 *x = vx;
    const float *y = vy;
    double sum[4] = {0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        for (int k = 0; k < 4; k++) sum[k] += (double)quant_fp16_to_f32(x[i + k]) * (double)y[i + k];
    }
    for (; i < n; i++) sum[0] += (double)quant_fp16_to_f32(x[i]) * (double)y[i];
    *s = (float)((sum[0] + sum[1]) + (sum[2] + sum[3]));
}

static void gen_dot_bf16(int64_t n, float *s, const void *vx, const void *vy) {
    const mica_bf16 *x = vx;
    const float *y = vy;
    double sum[4] = {0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        for (int k = 0; k < 4; k++) sum[k] += (double)quant_bf16_to_f32(x[i + k]) * (double)y[i + k];
    }
    for (; i < n; i++) sum[0] += (double)quant_bf16_to_f32(x[i]) * (double)y[i];
    *s = (float)((sum[0] + sum[1]) + (sum[2] + sum[3]));
}

/* ---- quantised dot products ---- */

/* Q4_0 x Q8_0: S = sum (nib-8)*y; sumf += ((float)S * dx) * dy. */
static void gen_dot_q4_0(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_0 *x = vx;
    const block_q8_0 *y = vy;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / QK4_0; b++) {
        int sumi = 0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            sumi += ((x[b].qs[j] & 0x0F) - 8) * y[b].qs[j];
            sumi += ((x[b].qs[j] >> 4) - 8) * y[b].qs[j + QK4_0 / 2];
        }
        sumf += ((float)sumi * quant_fp16_to_f32(x[b].d)) * quant_fp16_to_f32(y[b].d);
    }
    *s = sumf;
}

/* Q8_0 x Q8_0: sumf += (float)S * (dx * dy). */
static void gen_dot_q8_0(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q8_0 *x = vx;
    const block_q8_0 *y = vy;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / QK8_0; b++) {
        int sumi = 0;
        for (int j = 0; j < QK8_0; j++) sumi += x[b].qs[j] * y[b].qs[j];
        sumf += (float)sumi * (quant_fp16_to_f32(x[b].d) * quant_fp16_to_f32(y[b].d));
    }
    *s = sumf;
}

/*
 * Q4_K x Q8_K, the 8-lane scheme: lane l (0..7) sums sc*nib*q8 over the
 * elements with index = l mod 8 (exact int); per block sums[l] += d*lane[l]
 * with d = fp16(x.d)*y.d, and sumf -= (fp16(x.dmin)*y.d) * sum_j bsums[j] *
 * mn[j/2]; finally sumf += sum of sums[l].
 */
static void gen_dot_q4_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_k *x = vx;
    const block_q8_k *y = vy;
    float sums[8] = {0};
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / QK_K; b++) {
        int32_t lane[8] = {0};
        uint8_t sc[8], mn[8];
        for (int j = 0; j < 8; j++) quant_q4_k_get_scale_min(x[b].scales, j, &sc[j], &mn[j]);
        /* element i = 64c + l (low nibble) or 64c + 32 + l (high): lane l % 8 */
        for (int c = 0; c < QK_K / 64; c++) {
            const uint8_t *q4 = x[b].qs + 32 * c;
            const int8_t *q8 = y[b].qs + 64 * c;
            for (int l = 0; l < 32; l++) lane[l % 8] += sc[2 * c] * (q4[l] & 0x0F) * q8[l];
            for (int l = 0; l < 32; l++) lane[l % 8] += sc[2 * c + 1] * (q4[l] >> 4) * q8[32 + l];
        }
        int32_t summ = 0;
        for (int j = 0; j < QK_K / 16; j++) summ += y[b].bsums[j] * mn[j / 2];
        float d = quant_fp16_to_f32(x[b].d) * y[b].d;
        for (int l = 0; l < 8; l++) sums[l] += d * (float)lane[l];
        float dmin = quant_fp16_to_f32(x[b].dmin) * y[b].d;
        sumf -= dmin * (float)summ;
    }
    for (int l = 0; l < 8; l++) sumf += sums[l];
    *s = sumf;
}

/* Q6_K x Q8_K: the 8-lane scheme with the int8 scale of each 16 elements. */
static void gen_dot_q6_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q6_k *x = vx;
    const block_q8_k *y = vy;
    float sums[8] = {0};
    for (int64_t b = 0; b < n / QK_K; b++) {
        int32_t lane[8] = {0};
        /* element i = 128h + 32g + l: lane l % 8, scale 8h + 2g + l/16 */
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[b].ql + 64 * h, *qh = x[b].qh + 32 * h;
            for (int g = 0; g < 4; g++) {
                const int8_t *q8 = y[b].qs + 128 * h + 32 * g;
                const int8_t *sc = x[b].scales + 8 * h + 2 * g;
                for (int l = 0; l < 32; l++) {
                    uint8_t lb = ql[l + (g & 1) * 32];
                    int low4 = g < 2 ? (lb & 0x0F) : (lb >> 4);
                    int q = (low4 | (((qh[l] >> (2 * g)) & 3) << 4)) - 32;
                    lane[l % 8] += sc[l / 16] * q * q8[l];
                }
            }
        }
        float d = quant_fp16_to_f32(x[b].d) * y[b].d;
        for (int l = 0; l < 8; l++) sums[l] += d * (float)lane[l];
    }
    float sumf = 0.0f;
    for (int l = 0; l < 8; l++) sumf += sums[l];
    *s = sumf;
}

/* ---- the remaining types ---- */

/*
 * Q4_1 x Q8_0 (and Q5_1): value = d*q + m with q unsigned, so per block
 * S = sum q*y and Y = sum y (both exact ints); sumf += (dx*dy)*S +
 * (mx*dy)*Y. Q8_0 rather than ggml's Q8_1 activations: the offset term then
 * uses the exact block sum instead of an fp16-rounded d*sum (a difference
 * of at most 2^-11 relative in that term; the activation q are the same).
 */
static void gen_dot_q4_1(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_1 *x = vx;
    const block_q8_0 *y = vy;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / QK4_1; b++) {
        int sumi = 0, sumy = 0;
        for (int j = 0; j < 16; j++) {
            sumi += (x[b].qs[j] & 0x0F) * y[b].qs[j] + (x[b].qs[j] >> 4) * y[b].qs[j + 16];
            sumy += y[b].qs[j] + y[b].qs[j + 16];
        }
        float dy = quant_fp16_to_f32(y[b].d);
        sumf += (quant_fp16_to_f32(x[b].d) * dy) * (float)sumi + (quant_fp16_to_f32(x[b].m) * dy) * (float)sumy;
    }
    *s = sumf;
}

/* Five-bit value of element k of a Q5_0/Q5_1 block (0..31). */
static inline int gen_q5_value(const uint8_t *qs, const uint8_t *qh, int k) {
    int nib = k < 16 ? (qs[k] & 0x0F) : (qs[k - 16] >> 4);
    return nib | ((qh[k / 8] >> (k % 8)) & 1) << 4;
}

/* Q5_0 x Q8_0: S over the signed values q - 16; sumf += (dx*dy)*S. */
static void gen_dot_q5_0(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_0 *x = vx;
    const block_q8_0 *y = vy;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / QK5_0; b++) {
        int sumi = 0;
        for (int k = 0; k < 32; k++) sumi += (gen_q5_value(x[b].qs, x[b].qh, k) - 16) * y[b].qs[k];
        sumf += (quant_fp16_to_f32(x[b].d) * quant_fp16_to_f32(y[b].d)) * (float)sumi;
    }
    *s = sumf;
}

/* Q5_1 x Q8_0: as Q4_1 with five-bit values. */
static void gen_dot_q5_1(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_1 *x = vx;
    const block_q8_0 *y = vy;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / QK5_1; b++) {
        int sumi = 0, sumy = 0;
        for (int k = 0; k < 32; k++) {
            sumi += gen_q5_value(x[b].qs, x[b].qh, k) * y[b].qs[k];
            sumy += y[b].qs[k];
        }
        float dy = quant_fp16_to_f32(y[b].d);
        sumf += (quant_fp16_to_f32(x[b].d) * dy) * (float)sumi + (quant_fp16_to_f32(x[b].m) * dy) * (float)sumy;
    }
    *s = sumf;
}

/* IQ4_NL x Q8_0: S over codebook values; sumf += (dy*dx)*S. */
static void gen_dot_iq4_nl(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq4_nl *x = vx;
    const block_q8_0 *y = vy;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / QK4_NL; b++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            sumi += quant_kvalues_iq4nl[x[b].qs[j] & 0x0F] * y[b].qs[j];
            sumi += quant_kvalues_iq4nl[x[b].qs[j] >> 4] * y[b].qs[j + 16];
        }
        sumf += (quant_fp16_to_f32(y[b].d) * quant_fp16_to_f32(x[b].d)) * (float)sumi;
    }
    *s = sumf;
}

/* MXFP4 x Q8_0: S over the doubled E2M1 values; sumf += (dy*half_e8m0(e))*S. */
static void gen_dot_mxfp4(int64_t n, float *s, const void *vx, const void *vy) {
    const block_mxfp4 *x = vx;
    const block_q8_0 *y = vy;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / QK_MXFP4; b++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            sumi += quant_kvalues_mxfp4[x[b].qs[j] & 0x0F] * y[b].qs[j];
            sumi += quant_kvalues_mxfp4[x[b].qs[j] >> 4] * y[b].qs[j + 16];
        }
        sumf += (quant_fp16_to_f32(y[b].d) * quant_e8m0_half_to_f32(x[b].e)) * (float)sumi;
    }
    *s = sumf;
}

/*
 * Q2_K x Q8_K (FORMATS 2.5): isum = sum over the 16 groups of lo(scale) *
 * sum(q2*q8), summs = sum_j bsums[j]*hi(scale_j); sumf += (y.d*fp16(x.d)) *
 * isum - (y.d*fp16(x.dmin)) * summs.
 */
static void gen_dot_q2_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q2_k *x = vx;
    const block_q8_k *y = vy;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / QK_K; b++) {
        int summs = 0, isum = 0;
        for (int j = 0; j < 16; j++) summs += y[b].bsums[j] * (x[b].scales[j] >> 4);
        /* element i = 128h + 32g + l: two bits at 2g of qs[32h + l], group i/16 */
        for (int i = 0; i < QK_K; i++) {
            int h = i / 128, g = (i % 128) / 32, l = i % 32;
            int q = (x[b].qs[32 * h + l] >> (2 * g)) & 3;
            isum += (x[b].scales[i / 16] & 0x0F) * q * y[b].qs[i];
        }
        float dall = y[b].d * quant_fp16_to_f32(x[b].d), dmin = y[b].d * quant_fp16_to_f32(x[b].dmin);
        sumf += dall * (float)isum - dmin * (float)summs;
    }
    *s = sumf;
}

/* Q3_K x Q8_K: the 8-lane scheme (lane = element index mod 8) with the
 * signed 6-bit scale of each 16 elements; d = fp16(x.d)*y.d. */
static void gen_dot_q3_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q3_k *x = vx;
    const block_q8_k *y = vy;
    float sums[8] = {0};
    for (int64_t b = 0; b < n / QK_K; b++) {
        int8_t sc[16];
        quant_q3_k_unpack_scales(x[b].scales, sc);
        int32_t lane[8] = {0};
        for (int i = 0; i < QK_K; i++) {
            int h = i / 128, g = (i % 128) / 32, l = i % 32;
            int q = ((x[b].qs[32 * h + l] >> (2 * g)) & 3) - (((x[b].hmask[l] >> (4 * h + g)) & 1) ? 0 : 4);
            lane[i % 8] += sc[i / 16] * q * y[b].qs[i];
        }
        float d = quant_fp16_to_f32(x[b].d) * y[b].d;
        for (int l = 0; l < 8; l++) sums[l] += d * (float)lane[l];
    }
    float sumf = 0.0f;
    for (int l = 0; l < 8; l++) sumf += sums[l];
    *s = sumf;
}

/* Q5_K x Q8_K: as Q4_K with the fifth bit (bit i/32 of qh[i % 32]). */
static void gen_dot_q5_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_k *x = vx;
    const block_q8_k *y = vy;
    float sums[8] = {0};
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / QK_K; b++) {
        int32_t lane[8] = {0};
        uint8_t sc[8], mn[8];
        quant_q4_k_unpack_scales(x[b].scales, sc, mn);
        for (int i = 0; i < QK_K; i++) {
            int c = i / 64, r = i % 64;
            uint8_t byte = x[b].qs[32 * c + r % 32];
            int q = (r < 32 ? (byte & 0x0F) : (byte >> 4)) | ((x[b].qh[i % 32] >> (i / 32)) & 1) << 4;
            lane[i % 8] += sc[i / 32] * q * y[b].qs[i];
        }
        int32_t summ = 0;
        for (int j = 0; j < QK_K / 16; j++) summ += y[b].bsums[j] * mn[j / 2];
        float d = quant_fp16_to_f32(x[b].d) * y[b].d;
        for (int l = 0; l < 8; l++) sums[l] += d * (float)lane[l];
        sumf -= (quant_fp16_to_f32(x[b].dmin) * y[b].d) * (float)summ;
    }
    for (int l = 0; l < 8; l++) sumf += sums[l];
    *s = sumf;
}

/*
 * IQ4_XS x Q8_K: isum = sum over the 8 sub-blocks of (ls - 32) * S_b, an
 * exact int (|isum| < 2^28); sumf += (fp16(x.d)*y.d) * isum. (ggml adds
 * each sub-block in float; the exact integer sum is at least as accurate.)
 */
static void gen_dot_iq4_xs(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq4_xs *x = vx;
    const block_q8_k *y = vy;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / QK_K; b++) {
        int32_t isum = 0;
        for (int j = 0; j < 8; j++) {
            const uint8_t *qs = x[b].qs + 16 * j;
            const int8_t *q8 = y[b].qs + 32 * j;
            int32_t sb = 0;
            for (int t = 0; t < 16; t++) {
                sb += quant_kvalues_iq4nl[qs[t] & 0x0F] * q8[t] + quant_kvalues_iq4nl[qs[t] >> 4] * q8[t + 16];
            }
            isum += quant_iq4_xs_scale(&x[b], j) * sb;
        }
        sumf += (quant_fp16_to_f32(x[b].d) * y[b].d) * (float)isum;
    }
    *s = sumf;
}

/* ---- gemm: one vec_dot per output ---- */

KERN_GEMM_FROM_DOT(gen_gemm_f32, gen_dot_f32)
KERN_GEMM_FROM_DOT(gen_gemm_f16, gen_dot_f16)
KERN_GEMM_FROM_DOT(gen_gemm_bf16, gen_dot_bf16)
KERN_GEMM_FROM_DOT(gen_gemm_q4_0, gen_dot_q4_0)
KERN_GEMM_FROM_DOT(gen_gemm_q8_0, gen_dot_q8_0)
KERN_GEMM_FROM_DOT(gen_gemm_q4_k, gen_dot_q4_k)
KERN_GEMM_FROM_DOT(gen_gemm_q6_k, gen_dot_q6_k)
KERN_GEMM_FROM_DOT(gen_gemm_q4_1, gen_dot_q4_1)
KERN_GEMM_FROM_DOT(gen_gemm_q5_0, gen_dot_q5_0)
KERN_GEMM_FROM_DOT(gen_gemm_q5_1, gen_dot_q5_1)
KERN_GEMM_FROM_DOT(gen_gemm_iq4_nl, gen_dot_iq4_nl)
KERN_GEMM_FROM_DOT(gen_gemm_mxfp4, gen_dot_mxfp4)
KERN_GEMM_FROM_DOT(gen_gemm_q2_k, gen_dot_q2_k)
KERN_GEMM_FROM_DOT(gen_gemm_q3_k, gen_dot_q3_k)
KERN_GEMM_FROM_DOT(gen_gemm_q5_k, gen_dot_q5_k)
KERN_GEMM_FROM_DOT(gen_gemm_iq4_xs, gen_dot_iq4_xs)

/* to_float / from_float of the remaining types */
#define GEN_ROW_ADAPTERS(t, blk)                                                                   \
    static void gen_##t##_to_float(const void *x, float *y, int64_t n) {                          \
        quant_dequantize_row_##t((const blk *)x, y, n);                                           \
    }                                                                                              \
    static void gen_##t##_from_float(const float *x, void *y, int64_t n) {                        \
        quant_quantize_row_##t(x, (blk *)y, n);                                                   \
    }
GEN_ROW_ADAPTERS(q4_1, block_q4_1)
GEN_ROW_ADAPTERS(q5_0, block_q5_0)
GEN_ROW_ADAPTERS(q5_1, block_q5_1)
GEN_ROW_ADAPTERS(iq4_nl, block_iq4_nl)
GEN_ROW_ADAPTERS(mxfp4, block_mxfp4)
GEN_ROW_ADAPTERS(q2_k, block_q2_k)
GEN_ROW_ADAPTERS(q3_k, block_q3_k)
GEN_ROW_ADAPTERS(q5_k, block_q5_k)
GEN_ROW_ADAPTERS(iq4_xs, block_iq4_xs)
#undef GEN_ROW_ADAPTERS

void kern_generic_fill(kern_table *t) {
    memset(t, 0, sizeof *t);
    t->isa = KERN_ISA_GENERIC;
    t->name = "generic";
    for (int i = 0; i < MICA_DTYPE_COUNT; i++) t->ops[i].vec_dot_type = (uint32_t)i;
    t->ops[MICA_DTYPE_F32] = (kern_type_ops){gen_f32_to_float, gen_f32_from_float, gen_dot_f32,
                                             MICA_DTYPE_F32, gen_gemm_f32};
    t->ops[MICA_DTYPE_F16] = (kern_type_ops){gen_f16_to_float, gen_f16_from_float, gen_dot_f16,
                                             MICA_DTYPE_F32, gen_gemm_f16};
    t->ops[MICA_DTYPE_BF16] = (kern_type_ops){gen_bf16_to_float, gen_bf16_from_float, gen_dot_bf16,
                                              MICA_DTYPE_F32, gen_gemm_bf16};
    t->ops[MICA_DTYPE_Q4_0] = (kern_type_ops){gen_q4_0_to_float, gen_q4_0_from_float, gen_dot_q4_0,
                                              MICA_DTYPE_Q8_0, gen_gemm_q4_0};
    t->ops[MICA_DTYPE_Q8_0] = (kern_type_ops){gen_q8_0_to_float, gen_q8_0_from_float, gen_dot_q8_0,
                                              MICA_DTYPE_Q8_0, gen_gemm_q8_0};
    t->ops[MICA_DTYPE_Q4_K] = (kern_type_ops){gen_q4_k_to_float, gen_q4_k_from_float, gen_dot_q4_k,
                                              MICA_DTYPE_Q8_K, gen_gemm_q4_k};
    t->ops[MICA_DTYPE_Q6_K] = (kern_type_ops){gen_q6_k_to_float, gen_q6_k_from_float, gen_dot_q6_k,
                                              MICA_DTYPE_Q8_K, gen_gemm_q6_k};
    t->ops[MICA_DTYPE_Q8_K] = (kern_type_ops){gen_q8_k_to_float, gen_q8_k_from_float, NULL,
                                              MICA_DTYPE_Q8_K, NULL};
    t->ops[MICA_DTYPE_Q4_1] = (kern_type_ops){gen_q4_1_to_float, gen_q4_1_from_float, gen_dot_q4_1,
                                              MICA_DTYPE_Q8_0, gen_gemm_q4_1};
    t->ops[MICA_DTYPE_Q5_0] = (kern_type_ops){gen_q5_0_to_float, gen_q5_0_from_float, gen_dot_q5_0,
                                              MICA_DTYPE_Q8_0, gen_gemm_q5_0};
    t->ops[MICA_DTYPE_Q5_1] = (kern_type_ops){gen_q5_1_to_float, gen_q5_1_from_float, gen_dot_q5_1,
                                              MICA_DTYPE_Q8_0, gen_gemm_q5_1};
    t->ops[MICA_DTYPE_IQ4_NL] = (kern_type_ops){gen_iq4_nl_to_float, gen_iq4_nl_from_float, gen_dot_iq4_nl,
                                                MICA_DTYPE_Q8_0, gen_gemm_iq4_nl};
    t->ops[MICA_DTYPE_MXFP4] = (kern_type_ops){gen_mxfp4_to_float, gen_mxfp4_from_float, gen_dot_mxfp4,
                                               MICA_DTYPE_Q8_0, gen_gemm_mxfp4};
    t->ops[MICA_DTYPE_Q2_K] = (kern_type_ops){gen_q2_k_to_float, gen_q2_k_from_float, gen_dot_q2_k,
                                              MICA_DTYPE_Q8_K, gen_gemm_q2_k};
    t->ops[MICA_DTYPE_Q3_K] = (kern_type_ops){gen_q3_k_to_float, gen_q3_k_from_float, gen_dot_q3_k,
                                              MICA_DTYPE_Q8_K, gen_gemm_q3_k};
    t->ops[MICA_DTYPE_Q5_K] = (kern_type_ops){gen_q5_k_to_float, gen_q5_k_from_float, gen_dot_q5_k,
                                              MICA_DTYPE_Q8_K, gen_gemm_q5_k};
    t->ops[MICA_DTYPE_IQ4_XS] = (kern_type_ops){gen_iq4_xs_to_float, gen_iq4_xs_from_float, gen_dot_iq4_xs,
                                                MICA_DTYPE_Q8_K, gen_gemm_iq4_xs};
}
