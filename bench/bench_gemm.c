/*
 * bench_gemm.c - speed of ops_matmul (activation quantisation + the table's
 * gemm on the thread pool) for one weight shape: N rows of K elements of
 * TYPE times T activation rows, repeated; prints the best and the median
 * time and the resulting GMAC/s (T > 1: prompt processing) or GB/s of
 * weights (T = 1: decode).
 *
 * Not part of the test suite. Build and run from the repository root:
 *   make BUILD=build build/libmica.a
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -o build/bench_gemm bench/bench_gemm.c build/libmica.a -lpthread -lm
 *   build/bench_gemm TYPE K N T THREADS [ISA]
 *     TYPE: Q8_0 Q4_0 Q4_K Q6_K F32 F16 BF16; ISA: generic avx2 avx512 (default: best)
 *   e.g. build/bench_gemm Q8_0 1024 3072 128 2     (qwen3-0.6b ffn_gate, pp128)
 *        build/bench_gemm Q8_0 1024 151936 1 2     (its output matrix, one token)
 * Report numbers only with the protocol of bench/PROTOCOL.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/threadpool.h"
#include "tensor/dtype.h"
#include "tensor/kern.h"
#include "tensor/ops.h"

static double bg_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t bg_state = 7;
static float bg_rand(void) {
    bg_state = bg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(bg_state >> 11) * 0x1p-53 * 2.0 - 1.0);
}

static int bg_cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: bench_gemm TYPE K N T THREADS [generic|avx2|avx512]\n");
        return 2;
    }
    uint32_t type = MICA_DTYPE_COUNT;
    for (uint32_t t = 0; t < MICA_DTYPE_COUNT; t++) {
        if (dtype_get(t) && strcmp(dtype_name(t), argv[1]) == 0) type = t;
    }
    const int64_t K = atoll(argv[2]), N = atoll(argv[3]), T = atoll(argv[4]);
    const int nth = atoi(argv[5]);
    cpu_features cpu;
    cpu_features_detect(&cpu);
    enum kern_isa isa = kern_best_isa(&cpu);
    if (argc > 6) isa = strcmp(argv[6], "generic") == 0 ? KERN_ISA_GENERIC
                        : strcmp(argv[6], "avx2") == 0  ? KERN_ISA_AVX2
                                                        : KERN_ISA_AVX512;
    uint64_t rb = 0;
    if (type == MICA_DTYPE_COUNT || K < 1 || N < 1 || T < 1 || nth < 1 || !dtype_row_bytes(type, K, &rb) ||
        !kern_isa_available(isa, &cpu)) {
        fprintf(stderr, "bench_gemm: bad type, shape, threads or ISA\n");
        return 2;
    }
    kern_table kt;
    kern_table_init(&kt, isa);
    if (!kt.ops[type].vec_dot) { /* (vec_dot, not gemm: also builds against trees without gemm) */
        fprintf(stderr, "bench_gemm: no kernels for %s\n", argv[1]);
        return 2;
    }
    float *row = malloc(sizeof(float) * (size_t)K), *x = malloc(sizeof(float) * (size_t)(K * T));
    float *y = malloc(sizeof(float) * (size_t)(N * T));
    uint8_t *w = malloc(rb * (uint64_t)N);
    mica_pool *pool = NULL;
    if (!row || !x || !y || !w || pool_create(nth, &pool) != MICA_OK) return 1;
    for (int64_t r = 0; r < N; r++) {
        for (int64_t k = 0; k < K; k++) row[k] = 0.05f * bg_rand();
        kt.ops[type].from_float(row, w + rb * (uint64_t)r, K);
    }
    for (int64_t i = 0; i < K * T; i++) x[i] = bg_rand();
    size_t qb = ops_qbuf_bytes(&kt, type, K, T);
    void *qbuf = qb ? malloc(qb) : NULL;
    ops_ctx c = {pool, &kt, qbuf, qb};
    tensor_view wv = {"w", type, {K, N, 1, 1}, rb, w};
    enum { REPS = 9 };
    double t[REPS];
    ops_matmul(&c, &wv, x, T, y); /* warm-up */
    for (int i = 0; i < REPS; i++) {
        double t0 = bg_now();
        ops_matmul(&c, &wv, x, T, y);
        t[i] = bg_now() - t0;
    }
    qsort(t, REPS, sizeof t[0], bg_cmp);
    const double macs = (double)K * (double)N * (double)T, bytes = (double)rb * (double)N;
    printf("%s %s K=%lld N=%lld T=%lld threads=%d: best %.3f ms median %.3f ms | %.1f GMAC/s %.2f GB/s (best)\n",
           kt.name, argv[1], (long long)K, (long long)N, (long long)T, nth, t[0] * 1e3, t[REPS / 2] * 1e3,
           macs / t[0] * 1e-9, bytes / t[0] * 1e-9);
    pool_free(pool);
    free(qbuf);
    free(w);
    free(y);
    free(x);
    free(row);
    return 0;
}
