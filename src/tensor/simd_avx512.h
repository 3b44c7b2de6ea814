/*
 * simd_avx512.h - small AVX-512 helpers shared by the *_avx512.c files of
 * the tensor layer (include only from files built with the AVX-512 flags).
 */
#ifndef MICA_SIMD_AVX512_H
#define MICA_SIMD_AVX512_H

#include <immintrin.h>

/*
 * e^x per lane: x = n ln2 + r (ln2 in two parts), a Cephes-style degree-6
 * polynomial for e^r, scaled by 2^n. About 2 ulp over the float range;
 * exp(0) is exactly 1; x below -87.3 gives about 1e-38 (not 0), x above
 * 88.7 gives +inf.
 */
static inline __m512 simd_exp512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 y = _mm512_set1_ps(1.9875691500e-4f);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(y, n);
}

#endif /* MICA_SIMD_AVX512_H */
