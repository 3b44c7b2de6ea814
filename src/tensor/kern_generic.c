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
 * Supported types: F32, F16, BF16, Q4_0, Q8_0, Q4_K, Q6_K as weights; Q8_0
 * and Q8_K as activations (Q8_K: to_float and from_float only). Their gemm
 * entries call the scalar vec_dot once per output.
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

/* ---- gemm: one vec_dot per output ---- */

KERN_GEMM_FROM_DOT(gen_gemm_f32, gen_dot_f32)
KERN_GEMM_FROM_DOT(gen_gemm_f16, gen_dot_f16)
KERN_GEMM_FROM_DOT(gen_gemm_bf16, gen_dot_bf16)
KERN_GEMM_FROM_DOT(gen_gemm_q4_0, gen_dot_q4_0)
KERN_GEMM_FROM_DOT(gen_gemm_q8_0, gen_dot_q8_0)
KERN_GEMM_FROM_DOT(gen_gemm_q4_k, gen_dot_q4_k)
KERN_GEMM_FROM_DOT(gen_gemm_q6_k, gen_dot_q6_k)

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
}
