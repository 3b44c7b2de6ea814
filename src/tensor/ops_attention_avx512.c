/*
 * ops_attention_avx512.c - the AVX-512 tile of ops_attention (layer:
 * tensor; built with the AVX-512 flags, called only on a CPU with AVX-512
 * F/BW/VL/DQ). Algorithm and determinism: ops_attention.h. Requires
 * head_dim and head_dim_v multiples of 16, at most ATTN_AVX512_MAX_DIM
 * (per-block key and value buffers of 2 x 32 KB on the stack).
 *
 * Per query and key block: scores four keys at a time (four independent
 * FMA chains over head_dim, one transposed reduction), the block's softmax step on two 16-lane
 * vectors, then o = o * alpha + sum p_j v_j over 64-float slices of the
 * output held in registers. exp is a Cephes-style degree-6 polynomial on
 * the reduced argument (about 2 ulp; exp(0) is exactly 1).
 */
#include "tensor/ops_attention.h"

#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "mica_internal.h"
#include "tensor/simd_avx512.h"

_Static_assert(ATTN_KEY_BLOCK == 32, "the block softmax works on two 16-lane vectors");

/* Sum of the 16 lanes in a fixed order. */
static inline float attn_hsum512(__m512 v) {
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

/* n elements (a multiple of 32) of a Q8_0 row into floats: d * q, the same
 * product as the reference dequantiser. */
static void attn_q8_0_to_float(const uint8_t *x, float *y, int64_t n) {
    const block_q8_0 *b = (const block_q8_0 *)(const void *)x;
    for (int64_t i = 0; i < n / 32; i++) {
        const __m512 d = _mm512_set1_ps(_cvtsh_ss(b[i].d));
        const __m128i q0 = _mm_loadu_si128((const __m128i *)b[i].qs), q1 = _mm_loadu_si128((const __m128i *)(b[i].qs + 16));
        _mm512_storeu_ps(y + 32 * i, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0))));
        _mm512_storeu_ps(y + 32 * i + 16, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1))));
    }
}

/* n elements (a multiple of 16) of an F16 row into floats (exact). */
static void attn_f16_to_float(const uint8_t *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(x + 2 * i))));
}

/* The lane sums of a0..a3, each in the same fixed order whatever its slot:
 * ((l_i + l_i+8) pairs summed as ((0+1)+(2+3)) + ((4+5)+(6+7))). */
static inline __m128 attn_hsum4(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
    const __m256 b0 = _mm256_add_ps(_mm512_castps512_ps256(a0), _mm512_extractf32x8_ps(a0, 1));
    const __m256 b1 = _mm256_add_ps(_mm512_castps512_ps256(a1), _mm512_extractf32x8_ps(a1, 1));
    const __m256 b2 = _mm256_add_ps(_mm512_castps512_ps256(a2), _mm512_extractf32x8_ps(a2, 1));
    const __m256 b3 = _mm256_add_ps(_mm512_castps512_ps256(a3), _mm512_extractf32x8_ps(a3, 1));
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(b0, b1), _mm256_hadd_ps(b2, b3));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/* s[j] = scale * (q . k_j) for j < nk, k_j = k + j * k_stride: four keys
 * at a time (four FMA chains), the tail as a group with zero chains, so
 * every score is the same operations wherever its key falls. */
static void attn_scores(const float *q, const float *k, int64_t k_stride, int64_t hd, int64_t nk, float scale,
                        float *s) {
    const __m128 sc = _mm_set1_ps(scale);
    for (int64_t j = 0; j < nk; j += 4) {
        const int64_t n4 = nk - j < 4 ? nk - j : 4;
        const float *k0 = k + j * k_stride;
        const float *k1 = n4 > 1 ? k0 + k_stride : k0, *k2 = n4 > 2 ? k0 + 2 * k_stride : k0;
        const float *k3 = n4 > 3 ? k0 + 3 * k_stride : k0;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
        for (int64_t c = 0; c < hd; c += 16) {
            const __m512 qv = _mm512_loadu_ps(q + c);
            a0 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k0 + c), a0);
            a1 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k1 + c), a1);
            a2 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k2 + c), a2);
            a3 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k3 + c), a3);
        }
        /* slots past the tail computed a repeat of key 0: not stored */
        _mm_mask_storeu_ps(s + j, (__mmask8)((1u << n4) - 1u), _mm_mul_ps(attn_hsum4(a0, a1, a2, a3), sc));
    }
}

/* o[0..hdv) = o * alpha + sum_{j < nk} p[j] * v_j. */
static void attn_accum(float *o, const float *v, int64_t v_stride, int64_t hdv, int64_t nk, const float *p,
                       float alpha) {
    const __m512 al = _mm512_set1_ps(alpha);
    int64_t c = 0;
    for (; c + 64 <= hdv; c += 64) {
        __m512 o0 = _mm512_mul_ps(_mm512_loadu_ps(o + c), al), o1 = _mm512_mul_ps(_mm512_loadu_ps(o + c + 16), al);
        __m512 o2 = _mm512_mul_ps(_mm512_loadu_ps(o + c + 32), al), o3 = _mm512_mul_ps(_mm512_loadu_ps(o + c + 48), al);
        for (int64_t j = 0; j < nk; j++) {
            const float *vj = v + j * v_stride + c;
            const __m512 pj = _mm512_set1_ps(p[j]);
            o0 = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vj), o0);
            o1 = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vj + 16), o1);
            o2 = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vj + 32), o2);
            o3 = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vj + 48), o3);
        }
        _mm512_storeu_ps(o + c, o0);
        _mm512_storeu_ps(o + c + 16, o1);
        _mm512_storeu_ps(o + c + 32, o2);
        _mm512_storeu_ps(o + c + 48, o3);
    }
    for (; c < hdv; c += 16) {
        __m512 o0 = _mm512_mul_ps(_mm512_loadu_ps(o + c), al);
        for (int64_t j = 0; j < nk; j++) o0 = _mm512_fmadd_ps(_mm512_set1_ps(p[j]), _mm512_loadu_ps(v + j * v_stride + c), o0);
        _mm512_storeu_ps(o + c, o0);
    }
}

void attn_item_avx512(const attn_spec *a, const attn_plan *plan, int64_t item, int ith) {
    (void)ith;
    const int64_t group = a->n_head / a->n_head_kv, nh = a->n_head;
    const int64_t hd = a->head_dim, hdv = a->head_dim_v;
    int64_t t0, t1, h0, h1;
    attn_item_range(a, plan, item, &t0, &t1, &h0, &h1);
    const int64_t g = h0 / group, nhq = h1 - h0, nq = (t1 - t0) * nhq;
    float m[ATTN_TILE_QUERIES], l[ATTN_TILE_QUERIES];
    float s[ATTN_KEY_BLOCK] __attribute__((aligned(64)));
    MICA_ASSERT(nq <= ATTN_TILE_QUERIES && hd <= ATTN_AVX512_MAX_DIM && hdv <= ATTN_AVX512_MAX_DIM);
    for (int64_t i = 0; i < nq; i++) {
        const int64_t h = h0 + i % nhq;
        m[i] = a->sinks ? a->sinks[h] : -INFINITY;
        l[i] = a->sinks ? 1.0f : 0.0f;
        memset(a->out + ((t0 + i / nhq) * nh + h) * hdv, 0, (size_t)hdv * sizeof(float));
    }
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    const int64_t p_last = a->pos0 + t1 - 1, j_lo = attn_first_key(a, a->pos0 + t0);
    /*
     * The block's key and value heads go to contiguous buffers, converted
     * to float once per tile, unless they can be read in place (F32 rows in
     * position order, few queries): in the store, rows are a whole KV row
     * apart (often 4 KB), which maps them onto a few L1 sets.
     */
    float kbuf[ATTN_KEY_BLOCK * ATTN_AVX512_MAX_DIM] __attribute__((aligned(64)));
    float vbuf[ATTN_KEY_BLOCK * ATTN_AVX512_MAX_DIM] __attribute__((aligned(64)));
    const bool f32 = a->kv_type == MICA_DTYPE_F32;
    const bool in_place = f32 && a->n_slots == 0 && nq < 4;
    uint64_t koff = 0, voff = 0; /* byte offset of head g in a row */
    if (f32) {
        koff = (uint64_t)(g * hd) * sizeof(float);
        voff = (uint64_t)(g * hdv) * sizeof(float);
    } else {
        MICA_ASSERT(dtype_row_bytes(a->kv_type, g * hd, &koff) && dtype_row_bytes(a->kv_type, g * hdv, &voff));
    }
    /* F16 and Q8_0 rows are converted here (exactly as the reference
     * dequantisers: d * q, and the F16 value), other types by the table */
    const kern_to_float_fn to_float = f32                                 ? NULL
                                      : a->kv_type == MICA_DTYPE_Q8_0 ? (kern_to_float_fn)NULL
                                      : a->kv_type == MICA_DTYPE_F16  ? (kern_to_float_fn)NULL
                                                                      : a->kt->ops[a->kv_type].to_float;
    for (int64_t j0 = j_lo / ATTN_KEY_BLOCK * ATTN_KEY_BLOCK; j0 <= p_last; j0 += ATTN_KEY_BLOCK) {
        const float *kb = kbuf, *vb = vbuf; /* position j0 */
        int64_t ks = hd, vs = hdv;
        if (in_place) {
            kb = (const float *)(const void *)(a->k + (uint64_t)j0 * a->k_row_bytes + koff);
            vb = (const float *)(const void *)(a->v + (uint64_t)j0 * a->v_row_bytes + voff);
            ks = (int64_t)(a->k_row_bytes / sizeof(float));
            vs = (int64_t)(a->v_row_bytes / sizeof(float));
        } else {
            const int64_t jb = MICA_MAX(j0, j_lo), je = MICA_MIN(j0 + ATTN_KEY_BLOCK - 1, p_last);
            for (int64_t j = jb; j <= je; j++) {
                const uint64_t r = (uint64_t)attn_row(a, j);
                const uint8_t *kr = a->k + r * a->k_row_bytes + koff, *vr = a->v + r * a->v_row_bytes + voff;
                if (f32) {
                    memcpy(kbuf + (j - j0) * hd, kr, (size_t)hd * sizeof(float));
                    memcpy(vbuf + (j - j0) * hdv, vr, (size_t)hdv * sizeof(float));
                } else if (a->kv_type == MICA_DTYPE_Q8_0) {
                    attn_q8_0_to_float(kr, kbuf + (j - j0) * hd, hd);
                    attn_q8_0_to_float(vr, vbuf + (j - j0) * hdv, hdv);
                } else if (a->kv_type == MICA_DTYPE_F16) {
                    attn_f16_to_float(kr, kbuf + (j - j0) * hd, hd);
                    attn_f16_to_float(vr, vbuf + (j - j0) * hdv, hdv);
                } else {
                    to_float(kr, kbuf + (j - j0) * hd, hd);
                    to_float(vr, vbuf + (j - j0) * hdv, hdv);
                }
            }
        }
        for (int64_t i = 0; i < nq; i++) {
            const int64_t t = t0 + i / nhq, h = h0 + i % nhq, p = a->pos0 + t;
            const int64_t lo = MICA_MAX(j0, attn_first_key(a, p)) - j0;
            const int64_t hi = MICA_MIN(j0 + ATTN_KEY_BLOCK - 1, p) - j0; /* block-relative, inclusive */
            if (lo > hi) continue;
            attn_scores(a->q + (t * nh + h) * hd, kb + lo * ks, ks, hd, hi - lo + 1, a->scale, s + lo);
            /* lanes outside [lo, hi] hold -inf and get p = 0 */
            const uint32_t valid = (uint32_t)(((1ull << (hi + 1)) - 1ull) & ~((1ull << lo) - 1ull));
            const __mmask16 k0 = (__mmask16)(valid & 0xFFFFu), k1 = (__mmask16)(valid >> 16);
            const __m512 s0 = _mm512_mask_loadu_ps(ninf, k0, s), s1 = _mm512_mask_loadu_ps(ninf, k1, s + 16);
            const float mb = fmaxf(m[i], _mm512_reduce_max_ps(_mm512_max_ps(s0, s1)));
            const __m512 mv = _mm512_set1_ps(mb);
            const __m512 p0 = _mm512_maskz_mov_ps(k0, simd_exp512(_mm512_sub_ps(s0, mv)));
            const __m512 p1 = _mm512_maskz_mov_ps(k1, simd_exp512(_mm512_sub_ps(s1, mv)));
            _mm512_store_ps(s, p0);
            _mm512_store_ps(s + 16, p1);
            float alpha = 0.0f;
            if (m[i] != -INFINITY) alpha = _mm_cvtss_f32(_mm512_castps512_ps128(simd_exp512(_mm512_set1_ps(m[i] - mb))));
            l[i] = l[i] * alpha + attn_hsum512(_mm512_add_ps(p0, p1));
            m[i] = mb;
            attn_accum(a->out + (t * nh + h) * hdv, vb + lo * vs, vs, hdv, hi - lo + 1, s + lo, alpha);
        }
    }
    for (int64_t i = 0; i < nq; i++) {
        float *o = a->out + ((t0 + i / nhq) * nh + h0 + i % nhq) * hdv;
        const __m512 inv = _mm512_set1_ps(1.0f / l[i]);
        for (int64_t c = 0; c < hdv; c += 16) _mm512_storeu_ps(o + c, _mm512_mul_ps(_mm512_loadu_ps(o + c), inv));
    }
}
