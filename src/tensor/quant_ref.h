/*
 * quant_ref.h - the scalar reference for the tensor element types (layer:
 * tensor): scalar conversions (fp16, bf16) and, per block type, row
 * dequantisation and quantisation. This file and quant_ref.c are the
 * specification that every SIMD kernel is tested against; the formulas are
 * those of FORMATS.md sections 2.2-2.4.
 *
 * Conventions for every row function: n is the number of elements, a
 * non-negative multiple of the block size of the type (32 or QK_K = 256);
 * x and y are valid for the whole row and do not overlap. All functions are
 * pure (no state, thread-safe) and never fail.
 *
 * Dequantisation is exact: each output is the correctly rounded float of the
 * formula in FORMATS 2.3 (for Q4_0, Q8_0, Q4_K and Q6_K every product is
 * exact in float, so there is no rounding at all except the one subtraction
 * of Q4_K).
 *
 * Quantisation comes in two kinds:
 *  - activation quantisers (Q8_0, Q8_K) follow FORMATS 2.4 bit for bit;
 *  - weight quantisers (all other types) search for scales that keep the
 *    squared error small (method documented at each function in
 *    quant_ref.c). They always produce valid blocks but are not bit-identical
 *    to llama.cpp's quantiser. Q8_0 weights use the activation quantiser.
 * Inputs must be finite; a NaN or infinity in a block gives an unspecified
 * (but valid) block.
 */
#ifndef MICA_QUANT_REF_H
#define MICA_QUANT_REF_H

#include <stdint.h>

#include "tensor/dtype.h"

/* ---- scalar conversions (FORMATS 2.2) ---- */

/* IEEE binary16 -> binary32, exact (subnormals kept). A NaN keeps its sign
 * and payload and comes back quiet (bit 22 set), as the F16C instruction
 * does, so a SIMD conversion is bit-identical for every input. */
float quant_fp16_to_f32(mica_fp16 h);

/* binary32 -> binary16, round to nearest, ties to even; overflow gives
 * infinity; NaN gives 0x7E00 with the sign kept. Independent of the current
 * floating-point rounding mode (integer arithmetic only). */
mica_fp16 quant_f32_to_fp16(float f);

/* bfloat16 -> binary32: the bits shifted left by 16 (exact). */
float quant_bf16_to_f32(mica_bf16 h);

/* binary32 -> bfloat16: round to nearest even on the upper half; a NaN
 * becomes quiet (upper half OR 0x40). */
mica_bf16 quant_f32_to_bf16(float f);

/* Round half to even of f, for abs(f) <= 4194303 (FORMATS 2.2 nearest_int). */
int quant_nearest_int(float f);

/* ---- plain float rows (n any non-negative count) ---- */

void quant_fp16_to_f32_row(const mica_fp16 *x, float *y, int64_t n);
void quant_f32_to_fp16_row(const float *x, mica_fp16 *y, int64_t n);
void quant_bf16_to_f32_row(const mica_bf16 *x, float *y, int64_t n);
void quant_f32_to_bf16_row(const float *x, mica_bf16 *y, int64_t n);

/* ---- dequantisation (FORMATS 2.3) ---- */

void quant_dequantize_row_q4_0(const block_q4_0 *x, float *y, int64_t n);
void quant_dequantize_row_q8_0(const block_q8_0 *x, float *y, int64_t n);
void quant_dequantize_row_q4_k(const block_q4_k *x, float *y, int64_t n);
void quant_dequantize_row_q6_k(const block_q6_k *x, float *y, int64_t n);
void quant_dequantize_row_q8_k(const block_q8_k *x, float *y, int64_t n);

/* The remaining common types (quant_ref_ext.c). Every product in their
 * formulas is exact in float; Q4_1, Q5_1, Q2_K and Q5_K round once (the
 * offset addition), the others not at all. */
void quant_dequantize_row_q4_1(const block_q4_1 *x, float *y, int64_t n);
void quant_dequantize_row_q5_0(const block_q5_0 *x, float *y, int64_t n);
void quant_dequantize_row_q5_1(const block_q5_1 *x, float *y, int64_t n);
void quant_dequantize_row_iq4_nl(const block_iq4_nl *x, float *y, int64_t n);
void quant_dequantize_row_mxfp4(const block_mxfp4 *x, float *y, int64_t n);
void quant_dequantize_row_q2_k(const block_q2_k *x, float *y, int64_t n);
void quant_dequantize_row_q3_k(const block_q3_k *x, float *y, int64_t n);
void quant_dequantize_row_q5_k(const block_q5_k *x, float *y, int64_t n);
void quant_dequantize_row_iq4_xs(const block_iq4_xs *x, float *y, int64_t n);

/* The IQ4_NL/IQ4_XS codebook (kvalues_iq4nl, FORMATS 2.3), sorted. */
extern const int8_t quant_kvalues_iq4nl[16];
/* The MXFP4 codebook: E2M1 values times 2 (kvalues_fp4, FORMATS 2.3);
 * codes 8..15 are the negatives of 0..7 (code 8 is -0 = 0). */
extern const int8_t quant_kvalues_mxfp4[16];

/* "Half" E8M0 (FORMATS 2.2): 2^(e-128) exactly, e = 0 and 1 subnormal. The
 * MXFP4 block scale: value = kvalues_mxfp4[code] * half_e8m0(e). */
static inline float quant_e8m0_half_to_f32(uint8_t e) {
    /* e = 0 -> 2^-128 (bits 0x00200000), e = 1 -> 2^-127 (0x00400000),
     * otherwise the normal float with exponent field e - 1 */
    union { uint32_t u; float f; } v = {e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23};
    return v.f;
}

/* The 16 signed scales (-32..31) of a Q3_K scales[12] array (FORMATS 2.3). */
void quant_q3_k_unpack_scales(const uint8_t q[12], int8_t sc[16]);

/* The signed scale ls - 32 (-32..31) of 32-element sub-block b (0..7) of an
 * IQ4_XS block. */
static inline int quant_iq4_xs_scale(const block_iq4_xs *x, int b) {
    int ls = ((x->scales_l[b / 2] >> (4 * (b % 2))) & 0x0F) | (((x->scales_h >> (2 * b)) & 3) << 4);
    return ls - 32;
}

/* ---- quantisation ---- */

/* Q8_0, FORMATS 2.4 reference: per 32, d = amax/127, q = roundf(x/d) (half
 * away from zero, computed as x * (1/d)), stored d = fp16(d). Also the Q8_0
 * weight quantiser. q is always in -127..127. */
void quant_quantize_row_q8_0(const float *x, block_q8_0 *y, int64_t n);

/* Q8_K, FORMATS 2.4: per 256, max = the element of largest magnitude (signed,
 * first one on ties), iscale = -127/max, q = min(127, nearest_int(iscale*x)),
 * d = 1/iscale (float32), bsums = sums of 16 q. An all-zero block gives d = 0
 * and zero q and bsums. q is always in -127..127. */
void quant_quantize_row_q8_k(const float *x, block_q8_k *y, int64_t n);

/* Weight quantisers (searching; see quant_ref.c). */
void quant_quantize_row_q4_0(const float *x, block_q4_0 *y, int64_t n);
void quant_quantize_row_q4_k(const float *x, block_q4_k *y, int64_t n);
void quant_quantize_row_q6_k(const float *x, block_q6_k *y, int64_t n);
void quant_quantize_row_q4_1(const float *x, block_q4_1 *y, int64_t n);
void quant_quantize_row_q5_0(const float *x, block_q5_0 *y, int64_t n);
void quant_quantize_row_q5_1(const float *x, block_q5_1 *y, int64_t n);
void quant_quantize_row_iq4_nl(const float *x, block_iq4_nl *y, int64_t n);
void quant_quantize_row_mxfp4(const float *x, block_mxfp4 *y, int64_t n);
void quant_quantize_row_q2_k(const float *x, block_q2_k *y, int64_t n);
void quant_quantize_row_q3_k(const float *x, block_q3_k *y, int64_t n);
void quant_quantize_row_q5_k(const float *x, block_q5_k *y, int64_t n);
void quant_quantize_row_iq4_xs(const float *x, block_iq4_xs *y, int64_t n);

/* ---- Q4_K 6-bit scale packing (FORMATS 2.3) ---- */

/* Unpacks sub-block j (0..7) of a Q4_K scales[12] array: scale and min, 0..63. */
void quant_q4_k_get_scale_min(const uint8_t *scales, int j, uint8_t *sc, uint8_t *mn);

/* All 8 (scale, min) pairs of a Q4_K scales[12] array at once (same values
 * as quant_q4_k_get_scale_min; inline for the kernels' inner loops). */
static inline void quant_q4_k_unpack_scales(const uint8_t q[12], uint8_t sc[8], uint8_t mn[8]) {
    for (int j = 0; j < 4; j++) {
        sc[j] = q[j] & 63;
        mn[j] = q[j + 4] & 63;
        sc[j + 4] = (uint8_t)((q[j + 8] & 0x0F) | ((q[j] >> 6) << 4));
        mn[j + 4] = (uint8_t)((q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4));
    }
}

#endif /* MICA_QUANT_REF_H */
