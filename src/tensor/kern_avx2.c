/*
 * kern_avx2.c - AVX2 + FMA + F16C kernels (layer: tensor). Compiled with
 * -mavx2 -mfma -mf16c and reached only through kern_table_init on a CPU that
 * has them. Every kernel is tested against kern_generic.c.
 *
 * Overrides: to_float of F16 and BF16 (bit-identical to the reference), and
 * vec_dot of F32, F16, BF16, Q4_0, Q8_0, Q4_K, Q6_K, Q4_1, Q5_0, Q5_1,
 * IQ4_NL, MXFP4, Q2_K, Q3_K, Q5_K, IQ4_XS; gemm of every type (a vec_dot
 * per output, then kern_gemm_avx2.c's register-blocked kernels).
 * Quantisation (from_float) stays generic, so activation rows are
 * bit-identical on every ISA.
 *
 * Integer dot products use the unsigned x signed byte multiply
 * (vpmaddubsw); its pair sums stay below 2^15 because one operand is at most
 * 128 in magnitude and the other at most 63 (Q6_K), 31 (Q5_*), 15 (Q4_0,
 * Q4_K, Q4_1), 7 (Q3_K), 3 (Q2_K), or both are in -127..127 (sign trick:
 * Q8_0, Q5_0, the IQ4_NL/IQ4_XS/MXFP4 codebooks). Activation rows must come
 * from the reference quantisers (q in -127..127, Q8_K bsums equal to the sums
 * of qs): the K-quant kernels use bsums for the offset terms.
 */
#include <immintrin.h>
#include <string.h>

#include "tensor/kern.h"
#include "tensor/quant_ref.h"

static inline float avx2_hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float avx2_fp16(mica_fp16 h) { return _cvtsh_ss(h); }

/* Sum of products of signed bytes, 4 consecutive products per int32 lane. */
static inline __m256i avx2_dot_i8(__m256i x, __m256i y) {
    __m256i ax = _mm256_sign_epi8(x, x);
    __m256i sy = _mm256_sign_epi8(y, x);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1));
}

static inline __m256 avx2_load_bf16(const mica_bf16 *p) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

/* ---- to_float ---- */

static void avx2_f16_to_float(const void *vx, float *y, int64_t n) {
    const mica_fp16 *x = vx;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    }
    for (; i < n; i++) y[i] = avx2_fp16(x[i]);
}

static void avx2_bf16_to_float(const void *vx, float *y, int64_t n) {
    const mica_bf16 *x = vx;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, avx2_load_bf16(x + i));
    for (; i < n; i++) y[i] = quant_bf16_to_f32(x[i]);
}

/* ---- float dot products: 4 independent accumulators of 8 lanes ---- */

static void avx2_dot_f32(int64_t n, float *s, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    float sum = avx2_hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) sum += x[i] * y[i];
    *s = sum;
}

static void avx2_dot_f16(int64_t n, float *s, const void *vx, const void *vy) {
    const mica_fp16 *x = vx;
    const float *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
#define AVX2_LDH(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(AVX2_LDH(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(AVX2_LDH(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(AVX2_LDH(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(AVX2_LDH(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(AVX2_LDH(x + i), _mm256_loadu_ps(y + i), a0);
#undef AVX2_LDH
    float sum = avx2_hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) sum += avx2_fp16(x[i]) * y[i];
    *s = sum;
}

static void avx2_dot_bf16(int64_t n, float *s, const void *vx, const void *vy) {
    const mica_bf16 *x = vx;
    const float *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(avx2_load_bf16(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(avx2_load_bf16(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(avx2_load_bf16(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(avx2_load_bf16(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(avx2_load_bf16(x + i), _mm256_loadu_ps(y + i), a0);
    float sum = avx2_hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) sum += quant_bf16_to_f32(x[i]) * y[i];
    *s = sum;
}

/* ---- 32-element blocks ---- */

static void avx2_dot_q8_0(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q8_0 *x = vx;
    const block_q8_0 *y = vy;
    const int64_t nb = n / QK8_0;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        __m256i p0 = avx2_dot_i8(_mm256_loadu_si256((const __m256i *)x[b].qs),
                                 _mm256_loadu_si256((const __m256i *)y[b].qs));
        __m256i p1 = avx2_dot_i8(_mm256_loadu_si256((const __m256i *)x[b + 1].qs),
                                 _mm256_loadu_si256((const __m256i *)y[b + 1].qs));
        __m256 d0 = _mm256_set1_ps(avx2_fp16(x[b].d) * avx2_fp16(y[b].d));
        __m256 d1 = _mm256_set1_ps(avx2_fp16(x[b + 1].d) * avx2_fp16(y[b + 1].d));
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), d0, a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), d1, a1);
    }
    for (; b < nb; b++) {
        __m256i p = avx2_dot_i8(_mm256_loadu_si256((const __m256i *)x[b].qs),
                                _mm256_loadu_si256((const __m256i *)y[b].qs));
        __m256 d = _mm256_set1_ps(avx2_fp16(x[b].d) * avx2_fp16(y[b].d));
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), d, a0);
    }
    *s = avx2_hsum_ps(_mm256_add_ps(a0, a1));
}

/* Unpacks the 16 bytes of a Q4_0 block into 32 signed values nib-8 in order. */
static inline __m256i avx2_q4_0_unpack(const uint8_t *qs) {
    __m128i raw = _mm_loadu_si128((const __m128i *)qs);
    __m256i v = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
    v = _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
    return _mm256_sub_epi8(v, _mm256_set1_epi8(8));
}

static void avx2_dot_q4_0(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_0 *x = vx;
    const block_q8_0 *y = vy;
    const int64_t nb = n / QK4_0;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        __m256i p0 = avx2_dot_i8(avx2_q4_0_unpack(x[b].qs), _mm256_loadu_si256((const __m256i *)y[b].qs));
        __m256i p1 = avx2_dot_i8(avx2_q4_0_unpack(x[b + 1].qs),
                                 _mm256_loadu_si256((const __m256i *)y[b + 1].qs));
        __m256 d0 = _mm256_set1_ps(avx2_fp16(x[b].d) * avx2_fp16(y[b].d));
        __m256 d1 = _mm256_set1_ps(avx2_fp16(x[b + 1].d) * avx2_fp16(y[b + 1].d));
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), d0, a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), d1, a1);
    }
    for (; b < nb; b++) {
        __m256i p = avx2_dot_i8(avx2_q4_0_unpack(x[b].qs), _mm256_loadu_si256((const __m256i *)y[b].qs));
        __m256 d = _mm256_set1_ps(avx2_fp16(x[b].d) * avx2_fp16(y[b].d));
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), d, a0);
    }
    *s = avx2_hsum_ps(_mm256_add_ps(a0, a1));
}

/* ---- K-quants ---- */

/* The 8 scales and 8 mins of a Q4_K block as int16 (FORMATS 2.3 unpacking
 * done four bytes at a time; x86 is little-endian). */
static inline void avx2_q4_k_scales(const uint8_t *q, __m128i *sc, __m128i *mn) {
    uint32_t u0, u1, u2;
    memcpy(&u0, q, 4);
    memcpy(&u1, q + 4, 4);
    memcpy(&u2, q + 8, 4);
    uint32_t s_lo = u0 & 0x3F3F3F3Fu, m_lo = u1 & 0x3F3F3F3Fu;
    uint32_t s_hi = (u2 & 0x0F0F0F0Fu) | ((u0 >> 2) & 0x30303030u);
    uint32_t m_hi = ((u2 >> 4) & 0x0F0F0F0Fu) | ((u1 >> 2) & 0x30303030u);
    __m128i v = _mm_set_epi32((int)m_hi, (int)m_lo, (int)s_hi, (int)s_lo);
    *sc = _mm_cvtepu8_epi16(v);
    *mn = _mm_cvtepu8_epi16(_mm_srli_si128(v, 8));
}

/* Byte-shuffle index that broadcasts int16 lane k of each 128-bit half. */
static inline __m256i avx2_bcast16_idx(int k) {
    return _mm256_set1_epi16((short)(((2 * k + 1) << 8) | (2 * k)));
}

/*
 * Q4_K x Q8_K. Per 64-element chunk c: low nibbles of qs[32c..32c+31] are
 * sub-block 2c, high nibbles sub-block 2c+1; each is multiplied with its 32
 * activations (vpmaddubsw, nibble unsigned) and weighted by its 6-bit scale
 * (vpmaddwd; the scale broadcast by a byte shuffle). The min term
 * sum_j bsums[j]*mn[j/2] pairs the bsums (vphaddw) and multiplies them with
 * the 8 mins (vpmaddwd).
 */
static void avx2_dot_q4_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_k *x = vx;
    const block_q8_k *y = vy;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        __m128i sc, mn;
        avx2_q4_k_scales(x[b].scales, &sc, &mn);
        const __m256i sc2 = _mm256_broadcastsi128_si256(sc);
        const uint8_t *qs = x[b].qs;
        const int8_t *q8 = y[b].qs;
        __m256i isum = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
            __m256i lo = _mm256_and_si256(raw, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            __m256i p0 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(q8 + 64 * c)));
            __m256i p1 = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q8 + 64 * c + 32)));
            p0 = _mm256_madd_epi16(p0, _mm256_shuffle_epi8(sc2, avx2_bcast16_idx(2 * c)));
            p1 = _mm256_madd_epi16(p1, _mm256_shuffle_epi8(sc2, avx2_bcast16_idx(2 * c + 1)));
            isum = _mm256_add_epi32(isum, _mm256_add_epi32(p0, p1));
        }
        __m256i bs = _mm256_loadu_si256((const __m256i *)y[b].bsums);
        __m128i pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
        __m128i msum = _mm_madd_epi16(pairs, mn);
        float d = avx2_fp16(x[b].d) * y[b].d;
        float dmin = avx2_fp16(x[b].dmin) * y[b].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
        accm = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(msum), accm);
    }
    __m128 m = _mm_add_ps(accm, _mm_movehl_ps(accm, accm));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    *s = avx2_hsum_ps(acc) - _mm_cvtss_f32(m);
}

/*
 * Q6_K x Q8_K. Per 128-element half h, the four 32-element groups g are
 * rebuilt as unsigned 6-bit values u = q + 32 (low nibble from ql, two high
 * bits from qh); sum sc*q*y = sum sc*u*y - 32 * sum_j sc_j*bsums[j].
 */
static void avx2_dot_q6_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q6_k *x = vx;
    const block_q8_k *y = vy;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2h = _mm256_set1_epi8(0x30);
    /* bytes 0,1 repeated in the low 128-bit half, bytes 2,3 in the high half */
    const __m256i pick = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
                                          2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        /* the 16 scales as int16; dword k holds the pair (2k, 2k+1) */
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[b].scales));
        __m256i isum = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i ql0 = _mm256_loadu_si256((const __m256i *)(x[b].ql + 64 * h));
            __m256i ql1 = _mm256_loadu_si256((const __m256i *)(x[b].ql + 64 * h + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(x[b].qh + 32 * h));
            __m256i u[4];
            u[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2h));
            u[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2h));
            u[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m2h));
            u[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2h));
            for (int g = 0; g < 4; g++) {
                const int8_t *q8 = y[b].qs + 128 * h + 32 * g;
                __m256i p = _mm256_maddubs_epi16(u[g], _mm256_loadu_si256((const __m256i *)q8));
                /* scale 8h+2g for the first 16 elements, 8h+2g+1 for the next 16 */
                __m256i pair = _mm256_permutevar8x32_epi32(sc16, _mm256_set1_epi32(4 * h + g));
                __m256i scv = _mm256_shuffle_epi8(pair, pick);
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, scv));
            }
        }
        __m256i bias = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)y[b].bsums));
        isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(bias, 5));
        float d = avx2_fp16(x[b].d) * y[b].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
    }
    *s = avx2_hsum_ps(acc);
}

/* ---- the remaining 32-element types (activations Q8_0) ---- */

/* The 16 bytes of a 32-element nibble block as 32 unsigned values 0..15 in
 * element order (low nibbles = elements 0..15, high = 16..31). */
static inline __m256i avx2_nibbles(const uint8_t *qs) {
    __m128i raw = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0F));
}

/* 0x10 in byte k where bit k of the little-endian u32 qh[4] is set, else 0. */
static inline __m256i avx2_fifth_bits(const uint8_t *qh) {
    uint32_t bits;
    memcpy(&bits, qh, 4);
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                            2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), spread);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

/* Sum of products of unsigned bytes u (<= 31) and signed bytes y, 4 per lane. */
static inline __m256i avx2_dot_u8(__m256i u, __m256i y) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, y), _mm256_set1_epi16(1));
}

/*
 * Q4_1 and Q5_1 x Q8_0: per block the exact int sums S = sum q*y and
 * Y = sum y (vpmaddubsw with q, resp. with ones), then (dx*dy)*S and
 * (mx*dy)*Y accumulated in two float registers.
 */
static void avx2_dot_q4_1(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_1 *x = vx;
    const block_q8_0 *y = vy;
    const __m256i ones = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK4_1; b++) {
        __m256i yv = _mm256_loadu_si256((const __m256i *)y[b].qs);
        __m256i sq = avx2_dot_u8(avx2_nibbles(x[b].qs), yv);
        __m256i sy = avx2_dot_u8(ones, yv);
        float dy = avx2_fp16(y[b].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(avx2_fp16(x[b].d) * dy), _mm256_cvtepi32_ps(sq), acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(avx2_fp16(x[b].m) * dy), _mm256_cvtepi32_ps(sy), accm);
    }
    *s = avx2_hsum_ps(_mm256_add_ps(acc, accm));
}

static void avx2_dot_q5_1(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_1 *x = vx;
    const block_q8_0 *y = vy;
    const __m256i ones = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK5_1; b++) {
        __m256i q = _mm256_or_si256(avx2_nibbles(x[b].qs), avx2_fifth_bits(x[b].qh));
        __m256i yv = _mm256_loadu_si256((const __m256i *)y[b].qs);
        __m256i sq = avx2_dot_u8(q, yv);
        __m256i sy = avx2_dot_u8(ones, yv);
        float dy = avx2_fp16(y[b].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(avx2_fp16(x[b].d) * dy), _mm256_cvtepi32_ps(sq), acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(avx2_fp16(x[b].m) * dy), _mm256_cvtepi32_ps(sy), accm);
    }
    *s = avx2_hsum_ps(_mm256_add_ps(acc, accm));
}

/* The 32 signed values q - 16 (-16..15) of a Q5_0 block: nibble minus 16
 * where the fifth bit is clear, the nibble itself where it is set. */
static inline __m256i avx2_q5_0_values(const block_q5_0 *x) {
    return _mm256_sub_epi8(avx2_nibbles(x->qs), _mm256_andnot_si256(avx2_fifth_bits(x->qh), _mm256_set1_epi8(16)));
}

/* Q5_0 x Q8_0: the five-bit values minus 16 (-16..15), signed byte dot. */
static void avx2_dot_q5_0(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_0 *x = vx;
    const block_q8_0 *y = vy;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    const int64_t nb = n / QK5_0;
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        __m256i p0 = avx2_dot_i8(avx2_q5_0_values(&x[b]), _mm256_loadu_si256((const __m256i *)y[b].qs));
        __m256i p1 = avx2_dot_i8(avx2_q5_0_values(&x[b + 1]), _mm256_loadu_si256((const __m256i *)y[b + 1].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(avx2_fp16(x[b].d) * avx2_fp16(y[b].d)), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(avx2_fp16(x[b + 1].d) * avx2_fp16(y[b + 1].d)),
                               _mm256_cvtepi32_ps(p1), acc1);
    }
    for (; b < nb; b++) {
        __m256i p = avx2_dot_i8(avx2_q5_0_values(&x[b]), _mm256_loadu_si256((const __m256i *)y[b].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(avx2_fp16(x[b].d) * avx2_fp16(y[b].d)), _mm256_cvtepi32_ps(p), acc0);
    }
    *s = avx2_hsum_ps(_mm256_add_ps(acc0, acc1));
}

/* IQ4_NL and MXFP4 x Q8_0: the nibbles index a 16-entry int8 codebook
 * (vpshufb), then a signed byte dot (|codebook| <= 127). The two types differ
 * only in the block's scale: IQ4_NL an fp16 d (block of 18 bytes), MXFP4 an
 * E8M0 exponent byte (17 bytes); the 16 nibble bytes follow it. */
static inline float avx2_book_scale(const uint8_t *blk, bool e8m0) {
    if (e8m0) return quant_e8m0_half_to_f32(blk[0]);
    mica_fp16 d;
    memcpy(&d, blk, sizeof d);
    return avx2_fp16(d);
}

static inline void avx2_dot_book(int64_t nb, float *s, const uint8_t *x, size_t bsz, bool e8m0,
                                 const int8_t *codebook, const block_q8_0 *y) {
    const size_t qs = e8m0 ? 1 : sizeof(mica_fp16); /* offset of the nibbles in a block */
    const __m256i book = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)codebook));
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        const uint8_t *x0 = x + (size_t)b * bsz, *x1 = x0 + bsz;
        __m256i p0 = avx2_dot_i8(_mm256_shuffle_epi8(book, avx2_nibbles(x0 + qs)),
                                 _mm256_loadu_si256((const __m256i *)y[b].qs));
        __m256i p1 = avx2_dot_i8(_mm256_shuffle_epi8(book, avx2_nibbles(x1 + qs)),
                                 _mm256_loadu_si256((const __m256i *)y[b + 1].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(avx2_fp16(y[b].d) * avx2_book_scale(x0, e8m0)),
                               _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(avx2_fp16(y[b + 1].d) * avx2_book_scale(x1, e8m0)),
                               _mm256_cvtepi32_ps(p1), acc1);
    }
    for (; b < nb; b++) {
        const uint8_t *x0 = x + (size_t)b * bsz;
        __m256i p = avx2_dot_i8(_mm256_shuffle_epi8(book, avx2_nibbles(x0 + qs)),
                                _mm256_loadu_si256((const __m256i *)y[b].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(avx2_fp16(y[b].d) * avx2_book_scale(x0, e8m0)),
                               _mm256_cvtepi32_ps(p), acc0);
    }
    *s = avx2_hsum_ps(_mm256_add_ps(acc0, acc1));
}

static void avx2_dot_iq4_nl(int64_t n, float *s, const void *vx, const void *vy) {
    avx2_dot_book(n / QK4_NL, s, vx, sizeof(block_iq4_nl), false, quant_kvalues_iq4nl, vy);
}

static void avx2_dot_mxfp4(int64_t n, float *s, const void *vx, const void *vy) {
    avx2_dot_book(n / QK_MXFP4, s, vx, sizeof(block_mxfp4), true, quant_kvalues_mxfp4, vy);
}

/* ---- the remaining K-quants and IQ4_XS (activations Q8_K) ---- */

/* For the products of one 32-element group g (0..7) laid out as 16 int16
 * pair sums (lanes 0..7 = elements 0..15): the int16 scales 2g (low half)
 * and 2g + 1 (high half) of sc16 (16 int16 scales), broadcast. */
static inline __m256i avx2_group_scales(__m256i sc16, int g) {
    const __m256i pick = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
                                          2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
    return _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(sc16, _mm256_set1_epi32(g)), pick);
}

/*
 * Q2_K x Q8_K. Per 128-element half h the two-bit values of the four
 * 32-element groups come from the same 32 bytes qs[32h..], shifted by 2
 * each; unsigned values times activations (vpmaddubsw), the 4-bit scale of
 * each 16 applied with vpmaddwd; the min term is sum_j bsums[j]*min_j
 * (vpmaddwd); sum += dall*isum - dmin*msum.
 */
static void avx2_dot_q2_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q2_k *x = vx;
    const block_q8_k *y = vy;
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        __m128i raw = _mm_loadu_si128((const __m128i *)x[b].scales);
        __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, m4));
        __m256i mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), m4));
        __m256i isum = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i q2 = _mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * h));
            for (int g = 0; g < 4; g++) {
                __m256i u = _mm256_and_si256(q2, m3);
                q2 = _mm256_srli_epi16(q2, 2);
                __m256i p = _mm256_maddubs_epi16(u, _mm256_loadu_si256((const __m256i *)(y[b].qs + 128 * h + 32 * g)));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, avx2_group_scales(sc16, 4 * h + g)));
            }
        }
        __m256i msum = _mm256_madd_epi16(mn16, _mm256_loadu_si256((const __m256i *)y[b].bsums));
        float dall = y[b].d * avx2_fp16(x[b].d), dmin = y[b].d * avx2_fp16(x[b].dmin);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dall), _mm256_cvtepi32_ps(isum), acc);
        acc = _mm256_fnmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(msum), acc);
    }
    *s = avx2_hsum_ps(acc);
}

/* The 16 signed scales of a Q3_K block as int16 (FORMATS 2.3 unpacking four
 * bytes at a time: low nibbles of bytes 0..7 are scales 0..7, high nibbles
 * scales 8..15; bits 2k..2k+1 of bytes 8..11 are the top bits of scales
 * 4k..4k+3; x86 is little-endian). */
static inline __m256i avx2_q3_k_scales(const uint8_t *q) {
    uint32_t a0, a1, t;
    memcpy(&a0, q, 4);
    memcpy(&a1, q + 4, 4);
    memcpy(&t, q + 8, 4);
    const uint32_t m4 = 0x0F0F0F0Fu, m2 = 0x03030303u;
    __m128i v = _mm_set_epi32((int)(((a1 >> 4) & m4) | ((t >> 6) & m2) << 4),
                              (int)(((a0 >> 4) & m4) | ((t >> 4) & m2) << 4),
                              (int)((a1 & m4) | ((t >> 2) & m2) << 4), (int)((a0 & m4) | (t & m2) << 4));
    return _mm256_sub_epi16(_mm256_cvtepu8_epi16(v), _mm256_set1_epi16(32));
}

/*
 * Q3_K x Q8_K. As Q2_K's layout, with u = q + 4 = low2 | hbit << 2 (0..7,
 * the high bit of group 4h + g at bit 4h + g of hmask[l]); sum sc*q*y =
 * sum sc*u*y - 4 * sum_j sc_j*bsums[j], the signed scales unpacked once per
 * block.
 */
static void avx2_dot_q3_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q3_k *x = vx;
    const block_q8_k *y = vy;
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        const __m256i sc16 = avx2_q3_k_scales(x[b].scales);
        __m256i hm = _mm256_loadu_si256((const __m256i *)x[b].hmask);
        __m256i isum = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i q2 = _mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * h));
            for (int g = 0; g < 4; g++) {
                __m256i u = _mm256_or_si256(_mm256_and_si256(q2, m3),
                                            _mm256_slli_epi16(_mm256_and_si256(hm, one), 2));
                q2 = _mm256_srli_epi16(q2, 2);
                hm = _mm256_srli_epi16(hm, 1);
                __m256i p = _mm256_maddubs_epi16(u, _mm256_loadu_si256((const __m256i *)(y[b].qs + 128 * h + 32 * g)));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, avx2_group_scales(sc16, 4 * h + g)));
            }
        }
        __m256i bias = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)y[b].bsums));
        isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(bias, 2));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(avx2_fp16(x[b].d) * y[b].d), _mm256_cvtepi32_ps(isum), acc);
    }
    *s = avx2_hsum_ps(acc);
}

/*
 * Q5_K x Q8_K: Q4_K's kernel with the fifth bit of element 64c + r (r < 32:
 * sub-block 2c, else 2c + 1) from bit 2c (resp. 2c + 1) of qh[r % 32]; the
 * 32 qh bytes are shifted right one bit per sub-block.
 */
static void avx2_dot_q5_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_k *x = vx;
    const block_q8_k *y = vy;
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        __m128i sc, mn;
        avx2_q4_k_scales(x[b].scales, &sc, &mn);
        const __m256i sc2 = _mm256_broadcastsi128_si256(sc);
        const uint8_t *qs = x[b].qs;
        const int8_t *q8 = y[b].qs;
        __m256i hb = _mm256_loadu_si256((const __m256i *)x[b].qh);
        __m256i isum = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
            __m256i lo = _mm256_or_si256(_mm256_and_si256(raw, m4), _mm256_slli_epi16(_mm256_and_si256(hb, one), 4));
            hb = _mm256_srli_epi16(hb, 1);
            __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m4),
                                         _mm256_slli_epi16(_mm256_and_si256(hb, one), 4));
            hb = _mm256_srli_epi16(hb, 1);
            __m256i p0 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(q8 + 64 * c)));
            __m256i p1 = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q8 + 64 * c + 32)));
            p0 = _mm256_madd_epi16(p0, _mm256_shuffle_epi8(sc2, avx2_bcast16_idx(2 * c)));
            p1 = _mm256_madd_epi16(p1, _mm256_shuffle_epi8(sc2, avx2_bcast16_idx(2 * c + 1)));
            isum = _mm256_add_epi32(isum, _mm256_add_epi32(p0, p1));
        }
        __m256i bs = _mm256_loadu_si256((const __m256i *)y[b].bsums);
        __m128i pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
        __m128i msum = _mm_madd_epi16(pairs, mn);
        float d = avx2_fp16(x[b].d) * y[b].d;
        float dmin = avx2_fp16(x[b].dmin) * y[b].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
        accm = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(msum), accm);
    }
    __m128 m = _mm_add_ps(accm, _mm_movehl_ps(accm, accm));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    *s = avx2_hsum_ps(acc) - _mm_cvtss_f32(m);
}

/* The 8 signed sub-block scales ls - 32 of an IQ4_XS block, int32 lane j
 * holding ls_j - 32 in both of its int16 halves (FORMATS 2.3: the low four
 * bits are nibble j of scales_l read as a little-endian u32, the top two
 * bits 2j..2j+1 of scales_h). */
static inline __m256i avx2_iq4_xs_scales(const block_iq4_xs *x) {
    uint32_t l;
    memcpy(&l, x->scales_l, 4);
    __m256i lo = _mm256_srlv_epi32(_mm256_set1_epi32((int)l), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
    __m256i hi = _mm256_srlv_epi32(_mm256_set1_epi32(x->scales_h), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14));
    __m256i ls = _mm256_or_si256(_mm256_and_si256(lo, _mm256_set1_epi32(0x0F)),
                                 _mm256_slli_epi32(_mm256_and_si256(hi, _mm256_set1_epi32(3)), 4));
    ls = _mm256_and_si256(_mm256_sub_epi32(ls, _mm256_set1_epi32(32)), _mm256_set1_epi32(0xFFFF));
    return _mm256_or_si256(ls, _mm256_slli_epi32(ls, 16));
}

/*
 * IQ4_XS x Q8_K, two 32-element sub-blocks (2g, 2g + 1) per step: the 32
 * bytes qs[32g..] hold both; their low nibbles are elements 0..15 of each
 * (register halves), the high nibbles elements 16..31, so the activations
 * are gathered to match (two 16-byte loads per register). Codebook values
 * (vpshufb) times activations as signed bytes (pair sums <= 2*127*127 fit
 * int16), then the two sub-blocks' scales ls - 32 (low half 2g, high half
 * 2g + 1) with vpmaddwd; the block's exact int sum times fp16(x.d)*y.d.
 */
static void avx2_dot_iq4_xs(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq4_xs *x = vx;
    const block_q8_k *y = vy;
    const __m256i book = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)quant_kvalues_iq4nl));
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        const __m256i sc16 = avx2_iq4_xs_scales(&x[b]);
        const int8_t *q8 = y[b].qs;
        __m256i isum = _mm256_setzero_si256();
        for (int g = 0; g < 4; g++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * g));
            __m256i klo = _mm256_shuffle_epi8(book, _mm256_and_si256(raw, m4));
            __m256i khi = _mm256_shuffle_epi8(book, _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4));
            __m256i ylo = _mm256_loadu2_m128i((const __m128i *)(q8 + 64 * g + 32), (const __m128i *)(q8 + 64 * g));
            __m256i yhi = _mm256_loadu2_m128i((const __m128i *)(q8 + 64 * g + 48), (const __m128i *)(q8 + 64 * g + 16));
            __m256i plo = _mm256_maddubs_epi16(_mm256_sign_epi8(klo, klo), _mm256_sign_epi8(ylo, klo));
            __m256i phi = _mm256_maddubs_epi16(_mm256_sign_epi8(khi, khi), _mm256_sign_epi8(yhi, khi));
            /* int16 scale of sub-block 2g in the low half, 2g + 1 in the high half */
            __m256i scv = _mm256_permutevar8x32_epi32(
                sc16, _mm256_setr_epi32(2 * g, 2 * g, 2 * g, 2 * g, 2 * g + 1, 2 * g + 1, 2 * g + 1, 2 * g + 1));
            isum = _mm256_add_epi32(isum, _mm256_add_epi32(_mm256_madd_epi16(plo, scv), _mm256_madd_epi16(phi, scv)));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(avx2_fp16(x[b].d) * y[b].d), _mm256_cvtepi32_ps(isum), acc);
    }
    *s = avx2_hsum_ps(acc);
}

/* ---- gemm: one vec_dot per output, replaced by kern_gemm_avx2_fill where a
 * register-blocked kernel exists ---- */

KERN_GEMM_FROM_DOT(avx2_gemm_f32, avx2_dot_f32)
KERN_GEMM_FROM_DOT(avx2_gemm_f16, avx2_dot_f16)
KERN_GEMM_FROM_DOT(avx2_gemm_bf16, avx2_dot_bf16)
KERN_GEMM_FROM_DOT(avx2_gemm_q8_0, avx2_dot_q8_0)
KERN_GEMM_FROM_DOT(avx2_gemm_q4_0, avx2_dot_q4_0)
KERN_GEMM_FROM_DOT(avx2_gemm_q4_k, avx2_dot_q4_k)
KERN_GEMM_FROM_DOT(avx2_gemm_q6_k, avx2_dot_q6_k)
KERN_GEMM_FROM_DOT(avx2_gemm_q4_1, avx2_dot_q4_1)
KERN_GEMM_FROM_DOT(avx2_gemm_q5_0, avx2_dot_q5_0)
KERN_GEMM_FROM_DOT(avx2_gemm_q5_1, avx2_dot_q5_1)
KERN_GEMM_FROM_DOT(avx2_gemm_iq4_nl, avx2_dot_iq4_nl)
KERN_GEMM_FROM_DOT(avx2_gemm_mxfp4, avx2_dot_mxfp4)
KERN_GEMM_FROM_DOT(avx2_gemm_q2_k, avx2_dot_q2_k)
KERN_GEMM_FROM_DOT(avx2_gemm_q3_k, avx2_dot_q3_k)
KERN_GEMM_FROM_DOT(avx2_gemm_q5_k, avx2_dot_q5_k)
KERN_GEMM_FROM_DOT(avx2_gemm_iq4_xs, avx2_dot_iq4_xs)

void kern_avx2_fill(kern_table *t) {
    t->isa = KERN_ISA_AVX2;
    t->name = "avx2";
    t->ops[MICA_DTYPE_F16].to_float = avx2_f16_to_float;
    t->ops[MICA_DTYPE_BF16].to_float = avx2_bf16_to_float;
    t->ops[MICA_DTYPE_F32].vec_dot = avx2_dot_f32;
    t->ops[MICA_DTYPE_F16].vec_dot = avx2_dot_f16;
    t->ops[MICA_DTYPE_BF16].vec_dot = avx2_dot_bf16;
    t->ops[MICA_DTYPE_Q8_0].vec_dot = avx2_dot_q8_0;
    t->ops[MICA_DTYPE_Q4_0].vec_dot = avx2_dot_q4_0;
    t->ops[MICA_DTYPE_Q4_K].vec_dot = avx2_dot_q4_k;
    t->ops[MICA_DTYPE_Q6_K].vec_dot = avx2_dot_q6_k;
    t->ops[MICA_DTYPE_F32].gemm = avx2_gemm_f32;
    t->ops[MICA_DTYPE_F16].gemm = avx2_gemm_f16;
    t->ops[MICA_DTYPE_BF16].gemm = avx2_gemm_bf16;
    t->ops[MICA_DTYPE_Q8_0].gemm = avx2_gemm_q8_0;
    t->ops[MICA_DTYPE_Q4_0].gemm = avx2_gemm_q4_0;
    t->ops[MICA_DTYPE_Q4_K].gemm = avx2_gemm_q4_k;
    t->ops[MICA_DTYPE_Q6_K].gemm = avx2_gemm_q6_k;
    t->ops[MICA_DTYPE_Q4_1].vec_dot = avx2_dot_q4_1;
    t->ops[MICA_DTYPE_Q5_0].vec_dot = avx2_dot_q5_0;
    t->ops[MICA_DTYPE_Q5_1].vec_dot = avx2_dot_q5_1;
    t->ops[MICA_DTYPE_IQ4_NL].vec_dot = avx2_dot_iq4_nl;
    t->ops[MICA_DTYPE_MXFP4].vec_dot = avx2_dot_mxfp4;
    t->ops[MICA_DTYPE_Q2_K].vec_dot = avx2_dot_q2_k;
    t->ops[MICA_DTYPE_Q3_K].vec_dot = avx2_dot_q3_k;
    t->ops[MICA_DTYPE_Q5_K].vec_dot = avx2_dot_q5_k;
    t->ops[MICA_DTYPE_IQ4_XS].vec_dot = avx2_dot_iq4_xs;
    t->ops[MICA_DTYPE_Q4_1].gemm = avx2_gemm_q4_1;
    t->ops[MICA_DTYPE_Q5_0].gemm = avx2_gemm_q5_0;
    t->ops[MICA_DTYPE_Q5_1].gemm = avx2_gemm_q5_1;
    t->ops[MICA_DTYPE_IQ4_NL].gemm = avx2_gemm_iq4_nl;
    t->ops[MICA_DTYPE_MXFP4].gemm = avx2_gemm_mxfp4;
    t->ops[MICA_DTYPE_Q2_K].gemm = avx2_gemm_q2_k;
    t->ops[MICA_DTYPE_Q3_K].gemm = avx2_gemm_q3_k;
    t->ops[MICA_DTYPE_Q5_K].gemm = avx2_gemm_q5_k;
    t->ops[MICA_DTYPE_IQ4_XS].gemm = avx2_gemm_iq4_xs;
    kern_gemm_avx2_fill(t);
}
