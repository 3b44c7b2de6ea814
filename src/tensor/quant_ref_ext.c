/*
 * quant_ref_ext.c - scalar reference dequantisation of the remaining common
 * GGUF block types (layer: tensor): Q4_1, Q5_0, Q5_1, IQ4_NL, MXFP4, Q2_K,
 * Q3_K, Q5_K, IQ4_XS, and their codebooks. Contracts in quant_ref.h;
 * formulas from FORMATS.md 2.2-2.3 (their quantisers are in quant_ref.c).
 */
#include "mica_internal.h"
#include "tensor/quant_ref.h"

const int8_t quant_kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                        1,    13,   25,  38,  53,  69,  89,  113};

const int8_t quant_kvalues_mxfp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* The little-endian u32 of a 5-bit type's qh[4]: bit k = fifth bit of element k. */
static uint32_t qre_qh(const uint8_t qh[4]) {
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

void quant_dequantize_row_q4_1(const block_q4_1 *x, float *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK4_1 == 0);
    for (int64_t b = 0; b < n / QK4_1; b++, y += QK4_1) {
        float d = quant_fp16_to_f32(x[b].d), m = quant_fp16_to_f32(x[b].m);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)(x[b].qs[j] & 0x0F) * d + m;
            y[j + 16] = (float)(x[b].qs[j] >> 4) * d + m;
        }
    }
}

void quant_dequantize_row_q5_0(const block_q5_0 *x, float *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK5_0 == 0);
    for (int64_t b = 0; b < n / QK5_0; b++, y += QK5_0) {
        float d = quant_fp16_to_f32(x[b].d);
        uint32_t qh = qre_qh(x[b].qh);
        for (int j = 0; j < 16; j++) {
            int lo = (x[b].qs[j] & 0x0F) | (int)((qh >> j) & 1) << 4;
            int hi = (x[b].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = (float)(lo - 16) * d;
            y[j + 16] = (float)(hi - 16) * d;
        }
    }
}

void quant_dequantize_row_q5_1(const block_q5_1 *x, float *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK5_1 == 0);
    for (int64_t b = 0; b < n / QK5_1; b++, y += QK5_1) {
        float d = quant_fp16_to_f32(x[b].d), m = quant_fp16_to_f32(x[b].m);
        uint32_t qh = qre_qh(x[b].qh);
        for (int j = 0; j < 16; j++) {
            int lo = (x[b].qs[j] & 0x0F) | (int)((qh >> j) & 1) << 4;
            int hi = (x[b].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = (float)lo * d + m;
            y[j + 16] = (float)hi * d + m;
        }
    }
}

void quant_dequantize_row_iq4_nl(const block_iq4_nl *x, float *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK4_NL == 0);
    for (int64_t b = 0; b < n / QK4_NL; b++, y += QK4_NL) {
        float d = quant_fp16_to_f32(x[b].d);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)quant_kvalues_iq4nl[x[b].qs[j] & 0x0F];
            y[j + 16] = d * (float)quant_kvalues_iq4nl[x[b].qs[j] >> 4];
        }
    }
}

void quant_dequantize_row_mxfp4(const block_mxfp4 *x, float *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK_MXFP4 == 0);
    for (int64_t b = 0; b < n / QK_MXFP4; b++, y += QK_MXFP4) {
        float d = quant_e8m0_half_to_f32(x[b].e);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)quant_kvalues_mxfp4[x[b].qs[j] & 0x0F] * d;
            y[j + 16] = (float)quant_kvalues_mxfp4[x[b].qs[j] >> 4] * d;
        }
    }
}

/* Element i = 128h + 32j + l of Q2_K/Q3_K: two bits at 2j of qs[32h + l]. */
void quant_dequantize_row_q2_k(const block_q2_k *x, float *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK_K == 0);
    for (int64_t b = 0; b < n / QK_K; b++, y += QK_K) {
        float d = quant_fp16_to_f32(x[b].d), dmin = quant_fp16_to_f32(x[b].dmin);
        for (int i = 0; i < QK_K; i++) {
            int h = i / 128, j = (i % 128) / 32, l = i % 32;
            int q = (x[b].qs[32 * h + l] >> (2 * j)) & 3;
            uint8_t sc = x[b].scales[i / 16];
            y[i] = d * (float)(sc & 0x0F) * (float)q - dmin * (float)(sc >> 4);
        }
    }
}

void quant_q3_k_unpack_scales(const uint8_t q[12], int8_t sc[16]) {
    for (int j = 0; j < 16; j++) {
        int low4 = j < 8 ? (q[j] & 0x0F) : (q[j - 8] >> 4);
        int high2 = (q[8 + j % 4] >> (2 * (j / 4))) & 3;
        sc[j] = (int8_t)((low4 | high2 << 4) - 32);
    }
}

void quant_dequantize_row_q3_k(const block_q3_k *x, float *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK_K == 0);
    for (int64_t b = 0; b < n / QK_K; b++, y += QK_K) {
        float d = quant_fp16_to_f32(x[b].d);
        int8_t sc[16];
        quant_q3_k_unpack_scales(x[b].scales, sc);
        for (int i = 0; i < QK_K; i++) {
            int h = i / 128, j = (i % 128) / 32, l = i % 32;
            int low2 = (x[b].qs[32 * h + l] >> (2 * j)) & 3;
            int hb = (x[b].hmask[l] >> (4 * h + j)) & 1;
            int q = low2 - (hb ? 0 : 4); /* a cleared high bit subtracts 4 */
            y[i] = d * (float)sc[i / 16] * (float)q;
        }
    }
}

void quant_dequantize_row_q5_k(const block_q5_k *x, float *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK_K == 0);
    for (int64_t b = 0; b < n / QK_K; b++, y += QK_K) {
        float d = quant_fp16_to_f32(x[b].d), dmin = quant_fp16_to_f32(x[b].dmin);
        uint8_t sc[8], mn[8];
        quant_q4_k_unpack_scales(x[b].scales, sc, mn);
        for (int i = 0; i < QK_K; i++) {
            int c = i / 64, r = i % 64, j = i / 32;
            uint8_t byte = x[b].qs[32 * c + r % 32];
            int q = (r < 32 ? (byte & 0x0F) : (byte >> 4)) | ((x[b].qh[i % 32] >> j) & 1) << 4;
            y[i] = d * (float)sc[j] * (float)q - dmin * (float)mn[j];
        }
    }
}

void quant_dequantize_row_iq4_xs(const block_iq4_xs *x, float *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK_K == 0);
    for (int64_t b = 0; b < n / QK_K; b++) {
        float d = quant_fp16_to_f32(x[b].d);
        for (int s = 0; s < QK_K / 32; s++, y += 32) {
            float dl = d * (float)quant_iq4_xs_scale(&x[b], s);
            const uint8_t *qs = x[b].qs + 16 * s;
            for (int t = 0; t < 16; t++) {
                y[t] = dl * (float)quant_kvalues_iq4nl[qs[t] & 0x0F];
                y[t + 16] = dl * (float)quant_kvalues_iq4nl[qs[t] >> 4];
            }
        }
    }
}
