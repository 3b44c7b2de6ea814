/*
 * ops_avx512.h - AVX-512 versions of element-wise operations of ops.c
 * (layer: tensor; defined in ops_avx512.c, built on x86-64 only). ops.c
 * calls them when ops_cpu_avx512() is true; same contracts as the ops.h
 * functions they stand for, with these roundings: sums in 16 lanes then a
 * fixed tree, and exp as simd_exp512 (about 2 ulp).
 */
#ifndef MICA_OPS_AVX512_H
#define MICA_OPS_AVX512_H

#include <stdbool.h>
#include <stdint.h>

/* True when this build has the AVX-512 element-wise ops and the CPU runs
 * them (AVX-512 F/BW/VL/DQ; GCC/clang's cached cpuid, no state of ours). */
static inline bool ops_cpu_avx512(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#else
    return false;
#endif
}

void ops_rmsnorm_avx512(float *out, const float *x, const float *w, int64_t n, float eps);
void ops_swiglu_avx512(float *out, const float *gate, const float *up, int64_t n);

#endif /* MICA_OPS_AVX512_H */
