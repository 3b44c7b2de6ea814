/*
 * ops_avx512.c - AVX-512 element-wise operations (layer: tensor; built with
 * the AVX-512 flags, called from ops.c only when ops_cpu_avx512()).
 * Contracts: ops.h, roundings: ops_avx512.h.
 */
#include "tensor/ops_avx512.h"

#include <immintrin.h>
#include <math.h>

#include "tensor/simd_avx512.h"

/* The 16-lane mask of the first n (< 16) lanes. */
static inline __mmask16 ops512_mask(int64_t n) { return (__mmask16)((1u << n) - 1u); }

void ops_rmsnorm_avx512(float *out, const float *x, const float *w, int64_t n, float eps) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + 16);
        a0 = _mm512_fmadd_ps(x0, x0, a0);
        a1 = _mm512_fmadd_ps(x1, x1, a1);
    }
    for (; i < n; i += 16) {
        const __m512 x0 = _mm512_maskz_loadu_ps(n - i >= 16 ? (__mmask16)0xFFFF : ops512_mask(n - i), x + i);
        a0 = _mm512_fmadd_ps(x0, x0, a0);
    }
    const float ss = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) / (float)n + eps;
    const __m512 s = _mm512_set1_ps(1.0f / sqrtf(ss));
    for (i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : ops512_mask(n - i);
        const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, w + i), _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, x + i)));
        _mm512_mask_storeu_ps(out + i, m, v);
    }
}

void ops_swiglu_avx512(float *out, const float *gate, const float *up, int64_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : ops512_mask(n - i);
        const __m512 g = _mm512_maskz_loadu_ps(m, gate + i), u = _mm512_maskz_loadu_ps(m, up + i);
        const __m512 e = simd_exp512(_mm512_sub_ps(_mm512_setzero_ps(), g)); /* exp(-g) */
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), u));
    }
}
