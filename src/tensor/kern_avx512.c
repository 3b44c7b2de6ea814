/*
 * kern_avx512.c - AVX-512 kernels (layer: tensor): F, BW, VL, DQ and VNNI.
 * Compiled with the AVX-512 flags (Makefile) and reached only through
 * kern_table_init on a CPU that has them; laid over the AVX2 table, so any
 * entry not set here stays AVX2. Tested against kern_generic.c.
 *
 * Overrides: to_float of F16 and BF16 (bit-identical to the reference),
 * vec_dot of F32, F16, BF16, Q4_0, Q8_0, Q4_K, Q6_K, Q2_K, Q3_K (the other
 * types keep their AVX2 kernels: for the 32-element types the per-block
 * scale arithmetic, not the byte products, bounds the speed, and two blocks
 * per VNNI register measured no faster); gemm of every type
 * (a vec_dot per output, then kern_gemm_avx512.c's register-blocked
 * kernels and its Q8_0 from_float, which is bit-identical to the reference,
 * so activation rows are bit-identical on every ISA).
 *
 * Q8_0 and Q4_0 use VNNI vpdpbusd (unsigned x signed bytes, 4 per int32
 * lane): Q8_0 one block per 256-bit register (AVX512VL encoding), Q4_0 two
 * blocks per 512-bit register. The K-quants multiply bytes with vpmaddubsw
 * and apply the per-sub-block scales with the VNNI word form vpdpwssd
 * (multiply int16 pairs and accumulate into int32 in one step); Q4_K on
 * 256-bit registers, Q6_K on 512-bit ones (whichever measured faster on the
 * development machine, an AMD Zen 4, which splits 512-bit operations).
 * Preconditions on activations as in kern_avx2.c (q in -127..127, exact
 * bsums). BF16 weights are widened to F32 (the AVX512-BF16 dot instruction
 * would need the activations rounded to bf16, which the contract does not
 * allow).
 */
#include <immintrin.h>
#include <string.h>

#include "tensor/kern.h"
#include "tensor/quant_ref.h"

static inline float avx512_fp16(mica_fp16 h) { return _cvtsh_ss(h); }

/* Mask of the first r (0..16) lanes. */
static inline __mmask16 avx512_tail_mask(int64_t r) { return (__mmask16)((1u << r) - 1u); }

static inline __m512 avx512_load_bf16(const mica_bf16 *p) {
    __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}

static inline __m512 avx512_maskload_bf16(__mmask16 m, const mica_bf16 *p) {
    __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}

/* Two 32-byte rows side by side in one register (low half a, high half b). */
static inline __m512i avx512_pair(const void *a, const void *b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a)),
                              _mm256_loadu_si256((const __m256i *)b), 1);
}

/* Lanes 0..7 = a, lanes 8..15 = b. */
static inline __m512 avx512_two_scales(float a, float b) {
    return _mm512_mask_blend_ps((__mmask16)0xFF00, _mm512_set1_ps(a), _mm512_set1_ps(b));
}

/* ---- to_float ---- */

static void avx512_f16_to_float(const void *vx, float *y, int64_t n) {
    const mica_fp16 *x = vx;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i))));
    }
    if (i < n) {
        __mmask16 m = avx512_tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i)));
    }
}

static void avx512_bf16_to_float(const void *vx, float *y, int64_t n) {
    const mica_bf16 *x = vx;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, avx512_load_bf16(x + i));
    if (i < n) {
        __mmask16 m = avx512_tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, avx512_maskload_bf16(m, x + i));
    }
}

/* ---- float dot products: 4 accumulators of 16 lanes, masked tail ---- */

static void avx512_dot_f32(int64_t n, float *s, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32), _mm512_loadu_ps(y + i + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48), _mm512_loadu_ps(y + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), a0);
    if (i < n) {
        __mmask16 m = avx512_tail_mask(n - i);
        a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i), a1);
    }
    *s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

static void avx512_dot_f16(int64_t n, float *s, const void *vx, const void *vy) {
    const mica_fp16 *x = vx;
    const float *y = vy;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
#define AVX512_LDH(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(AVX512_LDH(x + i), _mm512_loadu_ps(y + i), a0);
        a1 = _mm512_fmadd_ps(AVX512_LDH(x + i + 16), _mm512_loadu_ps(y + i + 16), a1);
        a2 = _mm512_fmadd_ps(AVX512_LDH(x + i + 32), _mm512_loadu_ps(y + i + 32), a2);
        a3 = _mm512_fmadd_ps(AVX512_LDH(x + i + 48), _mm512_loadu_ps(y + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(AVX512_LDH(x + i), _mm512_loadu_ps(y + i), a0);
#undef AVX512_LDH
    if (i < n) {
        __mmask16 m = avx512_tail_mask(n - i);
        __m512 xv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i));
        a1 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(m, y + i), a1);
    }
    *s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

static void avx512_dot_bf16(int64_t n, float *s, const void *vx, const void *vy) {
    const mica_bf16 *x = vx;
    const float *y = vy;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(avx512_load_bf16(x + i), _mm512_loadu_ps(y + i), a0);
        a1 = _mm512_fmadd_ps(avx512_load_bf16(x + i + 16), _mm512_loadu_ps(y + i + 16), a1);
        a2 = _mm512_fmadd_ps(avx512_load_bf16(x + i + 32), _mm512_loadu_ps(y + i + 32), a2);
        a3 = _mm512_fmadd_ps(avx512_load_bf16(x + i + 48), _mm512_loadu_ps(y + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(avx512_load_bf16(x + i), _mm512_loadu_ps(y + i), a0);
    if (i < n) {
        __mmask16 m = avx512_tail_mask(n - i);
        a1 = _mm512_fmadd_ps(avx512_maskload_bf16(m, x + i), _mm512_maskz_loadu_ps(m, y + i), a1);
    }
    *s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* ---- 32-element blocks, two per register ---- */

/* Signed x signed byte dot (4 products per int32 lane) via VNNI: |x| times
 * y with x's sign; y must not be -128. */
static inline __m256i avx512_dot_i8_256(__m256i x, __m256i y) {
    __m256i ax = _mm256_sign_epi8(x, x), sy = _mm256_sign_epi8(y, x);
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sy);
}

/* One block per 256-bit register (vpdpbusd through AVX512VL), two
 * independent accumulators. */
static void avx512_dot_q8_0(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q8_0 *x = vx;
    const block_q8_0 *y = vy;
    const int64_t nb = n / QK8_0;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        __m256i p0 = avx512_dot_i8_256(_mm256_loadu_si256((const __m256i *)x[b].qs),
                                       _mm256_loadu_si256((const __m256i *)y[b].qs));
        __m256i p1 = avx512_dot_i8_256(_mm256_loadu_si256((const __m256i *)x[b + 1].qs),
                                       _mm256_loadu_si256((const __m256i *)y[b + 1].qs));
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(avx512_fp16(x[b].d) * avx512_fp16(y[b].d)), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1),
                             _mm256_set1_ps(avx512_fp16(x[b + 1].d) * avx512_fp16(y[b + 1].d)), a1);
    }
    if (b < nb) {
        __m256i p = avx512_dot_i8_256(_mm256_loadu_si256((const __m256i *)x[b].qs),
                                      _mm256_loadu_si256((const __m256i *)y[b].qs));
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(avx512_fp16(x[b].d) * avx512_fp16(y[b].d)), a0);
    }
    *s = _mm512_reduce_add_ps(_mm512_zextps256_ps512(_mm256_add_ps(a0, a1)));
}

/* Nibbles of two Q4_0 blocks as unsigned bytes 0..15 in element order. */
static inline __m512i avx512_q4_0_unpack2(const uint8_t *qa, const uint8_t *qb) {
    __m128i ra = _mm_loadu_si128((const __m128i *)qa), rb = _mm_loadu_si128((const __m128i *)qb);
    __m256i a = _mm256_set_m128i(_mm_srli_epi16(ra, 4), ra);
    __m256i bb = _mm256_set_m128i(_mm_srli_epi16(rb, 4), rb);
    __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(a), bb, 1);
    return _mm512_and_si512(v, _mm512_set1_epi8(0x0F));
}

/* sum (nib-8)*y = sum nib*y - 8*sum y, both with vpdpbusd (nib, 8 unsigned). */
static void avx512_dot_q4_0(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_0 *x = vx;
    const block_q8_0 *y = vy;
    const int64_t nb = n / QK4_0;
    const __m512i eight = _mm512_set1_epi8(8);
    __m512 acc = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        __m512i q = avx512_q4_0_unpack2(x[b].qs, x[b + 1].qs);
        __m512i yv = avx512_pair(y[b].qs, y[b + 1].qs);
        __m512i pos = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, yv);
        __m512i off = _mm512_dpbusd_epi32(_mm512_setzero_si512(), eight, yv);
        __m512 d = avx512_two_scales(avx512_fp16(x[b].d) * avx512_fp16(y[b].d),
                                     avx512_fp16(x[b + 1].d) * avx512_fp16(y[b + 1].d));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(pos, off)), d, acc);
    }
    float sum = _mm512_reduce_add_ps(acc);
    for (; b < nb; b++) {
        __m128i r = _mm_loadu_si128((const __m128i *)x[b].qs);
        __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(r, 4), r), _mm256_set1_epi8(0x0F));
        q = _mm256_sub_epi8(q, _mm256_set1_epi8(8));
        __m256i p = avx512_dot_i8_256(q, _mm256_loadu_si256((const __m256i *)y[b].qs));
        __m256 pf = _mm256_cvtepi32_ps(p);
        sum += _mm512_reduce_add_ps(_mm512_zextps256_ps512(pf)) * (avx512_fp16(x[b].d) * avx512_fp16(y[b].d));
    }
    *s = sum;
}

/* ---- K-quants ---- */

/* The 8 scales and 8 mins of a Q4_K block as int16 (FORMATS 2.3 unpacking
 * four bytes at a time; x86 is little-endian). */
static inline void avx512_q4_k_scales(const uint8_t *q, __m128i *sc, __m128i *mn) {
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

/*
 * Q4_K x Q8_K on 256-bit registers (AVX512VL encodings of VNNI): per
 * 64-element chunk c the low nibbles of qs[32c..] (sub-block 2c) and the
 * high nibbles (2c+1) times their activations with vpmaddubsw, then the
 * scale applied and accumulated in one vpdpwssd. 256-bit rather than
 * 512-bit: the per-sub-block scale then needs only an in-lane byte shuffle,
 * and on CPUs that split 512-bit operations (Zen 4) it is as fast. The min
 * term as in kern_avx2.c.
 */
static void avx512_dot_q4_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_k *x = vx;
    const block_q8_k *y = vy;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        __m128i sc, mn;
        avx512_q4_k_scales(x[b].scales, &sc, &mn);
        const __m256i sc2 = _mm256_broadcastsi128_si256(sc);
        const uint8_t *qs = x[b].qs;
        const int8_t *q8 = y[b].qs;
        __m256i isum0 = _mm256_setzero_si256(), isum1 = isum0;
        for (int c = 0; c < 4; c++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
            __m256i lo = _mm256_and_si256(raw, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            __m256i p0 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(q8 + 64 * c)));
            __m256i p1 = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q8 + 64 * c + 32)));
            const short k0 = (short)(((4 * c + 1) << 8) | (4 * c)), k1 = (short)(((4 * c + 3) << 8) | (4 * c + 2));
            isum0 = _mm256_dpwssd_epi32(isum0, p0, _mm256_shuffle_epi8(sc2, _mm256_set1_epi16(k0)));
            isum1 = _mm256_dpwssd_epi32(isum1, p1, _mm256_shuffle_epi8(sc2, _mm256_set1_epi16(k1)));
        }
        __m256i bs = _mm256_loadu_si256((const __m256i *)y[b].bsums);
        __m128i pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
        __m128i msum = _mm_madd_epi16(pairs, mn);
        float d = avx512_fp16(x[b].d) * y[b].d;
        float dmin = avx512_fp16(x[b].dmin) * y[b].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_add_epi32(isum0, isum1)), acc);
        accm = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(msum), accm);
    }
    *s = _mm512_reduce_add_ps(_mm512_zextps256_ps512(acc)) -
         _mm512_reduce_add_ps(_mm512_zextps128_ps512(accm));
}

/*
 * Q6_K x Q8_K. Per 128-element half h: groups 0,1 share ql[64h..64h+63]
 * (low nibbles) and groups 2,3 the same bytes' high nibbles; the two high
 * bits come from qh[32h..] broadcast to both register halves and shifted per
 * half (vpsllvw / vpsrlvw). Unsigned u = q + 32 times y with vpmaddubsw, the
 * scale of each 16 elements applied with vpdpwssd, then
 * 32 * sum_j sc_j*bsums[j] subtracted.
 */
static void avx512_dot_q6_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q6_k *x = vx;
    const block_q8_k *y = vy;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2h = _mm512_set1_epi8(0x30);
    /* per-half shift counts: group 0 bits 0-1 -> 4-5 (<<4), group 1 bits 2-3 (<<2);
     * group 2 bits 4-5 (>>0), group 3 bits 6-7 (>>2) */
    const __m512i shl01 = _mm512_mask_blend_epi16((__mmask32)0xFFFF0000u, _mm512_set1_epi16(4), _mm512_set1_epi16(2));
    const __m512i shr23 = _mm512_mask_blend_epi16((__mmask32)0xFFFF0000u, _mm512_setzero_si512(), _mm512_set1_epi16(2));
    /* lane k (0..31) of a product register -> k/8, the sub-block within its 64 elements */
    const __m512i lane = _mm512_srli_epi16(
        _mm512_set_epi32(0x001F001E, 0x001D001C, 0x001B001A, 0x00190018, 0x00170016, 0x00150014,
                         0x00130012, 0x00110010, 0x000F000E, 0x000D000C, 0x000B000A, 0x00090008,
                         0x00070006, 0x00050004, 0x00030002, 0x00010000),
        3);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        /* the 16 scales as int16 in lanes 0..15 (upper lanes unused) */
        __m512i sc16 = _mm512_zextsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[b].scales)));
        __m512i isum = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            __m512i ql = _mm512_loadu_si512((const void *)(x[b].ql + 64 * h));
            __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x[b].qh + 32 * h)));
            __m512i u01 = _mm512_or_si512(_mm512_and_si512(ql, m4),
                                          _mm512_and_si512(_mm512_sllv_epi16(qh, shl01), m2h));
            __m512i u23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                          _mm512_and_si512(_mm512_srlv_epi16(qh, shr23), m2h));
            const int8_t *q8 = y[b].qs + 128 * h;
            __m512i p01 = _mm512_maddubs_epi16(u01, _mm512_loadu_si512((const void *)q8));
            __m512i p23 = _mm512_maddubs_epi16(u23, _mm512_loadu_si512((const void *)(q8 + 64)));
            __m512i i01 = _mm512_add_epi16(lane, _mm512_set1_epi16((short)(8 * h)));
            __m512i i23 = _mm512_add_epi16(lane, _mm512_set1_epi16((short)(8 * h + 4)));
            isum = _mm512_dpwssd_epi32(isum, p01, _mm512_permutexvar_epi16(i01, sc16));
            isum = _mm512_dpwssd_epi32(isum, p23, _mm512_permutexvar_epi16(i23, sc16));
        }
        __m256i bias = _mm256_madd_epi16(_mm512_castsi512_si256(sc16),
                                         _mm256_loadu_si256((const __m256i *)y[b].bsums));
        isum = _mm512_sub_epi32(isum, _mm512_zextsi256_si512(_mm256_slli_epi32(bias, 5)));
        float d = avx512_fp16(x[b].d) * y[b].d;
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(isum), acc);
    }
    *s = _mm512_reduce_add_ps(acc);
}

/* The 16 signed scales of a Q3_K block as int16 (as kern_avx2.c: FORMATS
 * 2.3 unpacking four bytes at a time). */
static inline __m256i avx512_q3_k_scales(const uint8_t *q) {
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
 * Q2_K and Q3_K x Q8_K, Q6_K's scheme: per 128-element half h the 32 bytes
 * qs[32h..] (two bits per group g at bits 2g) are broadcast to both 256-bit
 * halves and shifted per half (vpsrlvw), giving groups 0,1 in one register
 * and 2,3 in another; unsigned values times 64 activations with vpmaddubsw;
 * the scale of each 16 elements applied and accumulated with vpdpwssd.
 * Q3_K adds the high bit (hmask bit 4h + g, shifted likewise) as u = q + 4
 * and subtracts 4 * sum_j sc_j*bsums[j]; Q2_K subtracts the min term
 * dmin * sum_j mn_j*bsums[j].
 */
static inline __m512i avx512_lane_sub16(void) {
    /* int16 lane k (0..31) of a product register -> k/8, its 16-element
     * sub-block within the 64 elements */
    return _mm512_srli_epi16(
        _mm512_set_epi32(0x001F001E, 0x001D001C, 0x001B001A, 0x00190018, 0x00170016, 0x00150014,
                         0x00130012, 0x00110010, 0x000F000E, 0x000D000C, 0x000B000A, 0x00090008,
                         0x00070006, 0x00050004, 0x00030002, 0x00010000),
        3);
}

static void avx512_dot_q2_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q2_k *x = vx;
    const block_q8_k *y = vy;
    const __m512i m3 = _mm512_set1_epi8(3);
    const __m512i sh01 = _mm512_mask_blend_epi16((__mmask32)0xFFFF0000u, _mm512_setzero_si512(), _mm512_set1_epi16(2));
    const __m512i sh23 = _mm512_add_epi16(sh01, _mm512_set1_epi16(4));
    const __m512i lane = avx512_lane_sub16();
    const __m128i m4 = _mm_set1_epi8(0x0F);
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        __m128i raw = _mm_loadu_si128((const __m128i *)x[b].scales);
        __m512i sc16 = _mm512_zextsi256_si512(_mm256_cvtepu8_epi16(_mm_and_si128(raw, m4)));
        __m256i mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), m4));
        __m512i isum = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * h)));
            __m512i u01 = _mm512_and_si512(_mm512_srlv_epi16(q, sh01), m3);
            __m512i u23 = _mm512_and_si512(_mm512_srlv_epi16(q, sh23), m3);
            const int8_t *q8 = y[b].qs + 128 * h;
            __m512i p01 = _mm512_maddubs_epi16(u01, _mm512_loadu_si512((const void *)q8));
            __m512i p23 = _mm512_maddubs_epi16(u23, _mm512_loadu_si512((const void *)(q8 + 64)));
            __m512i i01 = _mm512_add_epi16(lane, _mm512_set1_epi16((short)(8 * h)));
            __m512i i23 = _mm512_add_epi16(lane, _mm512_set1_epi16((short)(8 * h + 4)));
            isum = _mm512_dpwssd_epi32(isum, p01, _mm512_permutexvar_epi16(i01, sc16));
            isum = _mm512_dpwssd_epi32(isum, p23, _mm512_permutexvar_epi16(i23, sc16));
        }
        __m256i msum = _mm256_madd_epi16(mn16, _mm256_loadu_si256((const __m256i *)y[b].bsums));
        float dall = y[b].d * avx512_fp16(x[b].d), dmin = y[b].d * avx512_fp16(x[b].dmin);
        acc = _mm512_fmadd_ps(_mm512_set1_ps(dall), _mm512_cvtepi32_ps(isum), acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(msum), accm);
    }
    *s = _mm512_reduce_add_ps(acc) - _mm512_reduce_add_ps(_mm512_zextps256_ps512(accm));
}

static void avx512_dot_q3_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q3_k *x = vx;
    const block_q8_k *y = vy;
    const __m512i m3 = _mm512_set1_epi8(3), one = _mm512_set1_epi8(1);
    const __m512i sh01 = _mm512_mask_blend_epi16((__mmask32)0xFFFF0000u, _mm512_setzero_si512(), _mm512_set1_epi16(2));
    const __m512i sh23 = _mm512_add_epi16(sh01, _mm512_set1_epi16(4));
    const __m512i hs01 = _mm512_srli_epi16(sh01, 1); /* high-bit shifts 0 | 1 */
    const __m512i lane = avx512_lane_sub16();
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        const __m256i sc = avx512_q3_k_scales(x[b].scales);
        const __m512i sc16 = _mm512_zextsi256_si512(sc);
        const __m512i hm = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)x[b].hmask));
        __m512i isum = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * h)));
            /* high bit of group g: bit 4h + g */
            __m512i hs = _mm512_add_epi16(hs01, _mm512_set1_epi16((short)(4 * h)));
            __m512i h01 = _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(hm, hs), one), 2);
            __m512i h23 = _mm512_slli_epi16(
                _mm512_and_si512(_mm512_srlv_epi16(hm, _mm512_add_epi16(hs, _mm512_set1_epi16(2))), one), 2);
            __m512i u01 = _mm512_or_si512(_mm512_and_si512(_mm512_srlv_epi16(q, sh01), m3), h01);
            __m512i u23 = _mm512_or_si512(_mm512_and_si512(_mm512_srlv_epi16(q, sh23), m3), h23);
            const int8_t *q8 = y[b].qs + 128 * h;
            __m512i p01 = _mm512_maddubs_epi16(u01, _mm512_loadu_si512((const void *)q8));
            __m512i p23 = _mm512_maddubs_epi16(u23, _mm512_loadu_si512((const void *)(q8 + 64)));
            __m512i i01 = _mm512_add_epi16(lane, _mm512_set1_epi16((short)(8 * h)));
            __m512i i23 = _mm512_add_epi16(lane, _mm512_set1_epi16((short)(8 * h + 4)));
            isum = _mm512_dpwssd_epi32(isum, p01, _mm512_permutexvar_epi16(i01, sc16));
            isum = _mm512_dpwssd_epi32(isum, p23, _mm512_permutexvar_epi16(i23, sc16));
        }
        __m256i bias = _mm256_madd_epi16(sc, _mm256_loadu_si256((const __m256i *)y[b].bsums));
        isum = _mm512_sub_epi32(isum, _mm512_zextsi256_si512(_mm256_slli_epi32(bias, 2)));
        acc = _mm512_fmadd_ps(_mm512_set1_ps(avx512_fp16(x[b].d) * y[b].d), _mm512_cvtepi32_ps(isum), acc);
    }
    *s = _mm512_reduce_add_ps(acc);
}

/* ---- gemm: one vec_dot per output, replaced by kern_gemm_avx512_fill where a
 * register-blocked kernel exists ---- */

KERN_GEMM_FROM_DOT(avx512_gemm_f32, avx512_dot_f32)
KERN_GEMM_FROM_DOT(avx512_gemm_f16, avx512_dot_f16)
KERN_GEMM_FROM_DOT(avx512_gemm_bf16, avx512_dot_bf16)
KERN_GEMM_FROM_DOT(avx512_gemm_q8_0, avx512_dot_q8_0)
KERN_GEMM_FROM_DOT(avx512_gemm_q4_0, avx512_dot_q4_0)
KERN_GEMM_FROM_DOT(avx512_gemm_q4_k, avx512_dot_q4_k)
KERN_GEMM_FROM_DOT(avx512_gemm_q6_k, avx512_dot_q6_k)
KERN_GEMM_FROM_DOT(avx512_gemm_q2_k, avx512_dot_q2_k)
KERN_GEMM_FROM_DOT(avx512_gemm_q3_k, avx512_dot_q3_k)

void kern_avx512_fill(kern_table *t) {
    t->isa = KERN_ISA_AVX512;
    t->name = "avx512";
    t->ops[MICA_DTYPE_F16].to_float = avx512_f16_to_float;
    t->ops[MICA_DTYPE_BF16].to_float = avx512_bf16_to_float;
    t->ops[MICA_DTYPE_F32].vec_dot = avx512_dot_f32;
    t->ops[MICA_DTYPE_F16].vec_dot = avx512_dot_f16;
    t->ops[MICA_DTYPE_BF16].vec_dot = avx512_dot_bf16;
    t->ops[MICA_DTYPE_Q8_0].vec_dot = avx512_dot_q8_0;
    t->ops[MICA_DTYPE_Q4_0].vec_dot = avx512_dot_q4_0;
    t->ops[MICA_DTYPE_Q4_K].vec_dot = avx512_dot_q4_k;
    t->ops[MICA_DTYPE_Q6_K].vec_dot = avx512_dot_q6_k;
    t->ops[MICA_DTYPE_F32].gemm = avx512_gemm_f32;
    t->ops[MICA_DTYPE_F16].gemm = avx512_gemm_f16;
    t->ops[MICA_DTYPE_BF16].gemm = avx512_gemm_bf16;
    t->ops[MICA_DTYPE_Q8_0].gemm = avx512_gemm_q8_0;
    t->ops[MICA_DTYPE_Q4_0].gemm = avx512_gemm_q4_0;
    t->ops[MICA_DTYPE_Q4_K].gemm = avx512_gemm_q4_k;
    t->ops[MICA_DTYPE_Q6_K].gemm = avx512_gemm_q6_k;
    t->ops[MICA_DTYPE_Q2_K].vec_dot = avx512_dot_q2_k;
    t->ops[MICA_DTYPE_Q3_K].vec_dot = avx512_dot_q3_k;
    t->ops[MICA_DTYPE_Q2_K].gemm = avx512_gemm_q2_k;
    t->ops[MICA_DTYPE_Q3_K].gemm = avx512_gemm_q3_k;
    kern_gemm_avx512_fill(t);
}
