/*
 * bench_kern.c - rough speed of the vec_dot kernels per type and ISA table:
 * a matrix-vector product of M rows of K elements against one quantised
 * activation row, repeated, single thread. Two sizes: weights that stay in
 * the L2 cache (kernel compute speed) and weights that stream from memory.
 *
 * Not part of the test suite. Build and run from the repository root:
 *   make build/libmica.a
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -o build/bench_kern bench/bench_kern.c build/libmica.a -lm
 *   build/bench_kern [TYPE]     # ns per row and GB/s of weights (TYPE: only that one)
 * Report numbers only with the protocol of bench/PROTOCOL.md (commit, CPU,
 * command, median of >= 3 runs).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tensor/dtype.h"
#include "tensor/kern.h"

static double bk_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t bk_state = 42;
static float bk_rand(void) {
    bk_state = bk_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(bk_state >> 11) * 0x1p-53 * 2.0 - 1.0);
}

int main(int argc, char **argv) {
    const uint32_t types[] = {MICA_DTYPE_F32,  MICA_DTYPE_F16,  MICA_DTYPE_BF16,   MICA_DTYPE_Q8_0,
                              MICA_DTYPE_Q4_0, MICA_DTYPE_Q4_K, MICA_DTYPE_Q6_K,   MICA_DTYPE_Q4_1,
                              MICA_DTYPE_Q5_0, MICA_DTYPE_Q5_1, MICA_DTYPE_IQ4_NL, MICA_DTYPE_MXFP4,
                              MICA_DTYPE_Q2_K, MICA_DTYPE_Q3_K, MICA_DTYPE_Q5_K,   MICA_DTYPE_IQ4_XS};
    const int64_t K = 4096;
    const int64_t sizes[2] = {32, 2048}; /* rows: in-cache, streaming */
    cpu_features cpu;
    cpu_features_detect(&cpu);
    kern_table gen;
    kern_table_init(&gen, KERN_ISA_GENERIC);
    float *vals = malloc((size_t)K * sizeof(float));
    for (int64_t i = 0; i < K; i++) vals[i] = bk_rand();
    printf("%-6s %-8s %8s %12s %10s\n", "type", "isa", "rows", "ns/row", "GB/s");
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        uint32_t type = types[t];
        if (argc > 1 && strcmp(argv[1], dtype_name(type)) != 0) continue;
        uint64_t row_bytes;
        dtype_row_bytes(type, K, &row_bytes);
        for (int s = 0; s < 2; s++) {
            int64_t M = sizes[s];
            uint8_t *w = malloc((size_t)(row_bytes * (uint64_t)M));
            for (int64_t r = 0; r < M; r++) gen.ops[type].from_float(vals, w + (uint64_t)r * row_bytes, K);
            uint8_t *act = malloc((size_t)K * 4 + 4096);
            gen.ops[gen.ops[type].vec_dot_type].from_float(vals, act, K);
            for (int isa = 0; isa < KERN_ISA_COUNT; isa++) {
                if (!kern_isa_available((enum kern_isa)isa, &cpu)) continue;
                kern_table kt;
                kern_table_init(&kt, (enum kern_isa)isa);
                int64_t reps = (int64_t)(2e8 / (double)(row_bytes * (uint64_t)M)) + 1;
                if (isa == 0) reps = reps / 8 + 1;
                volatile float sink = 0;
                double best = INFINITY;
                for (int trial = 0; trial < 3; trial++) {
                    double t0 = bk_now();
                    for (int64_t k = 0; k < reps; k++) {
                        for (int64_t r = 0; r < M; r++) {
                            float out;
                            kt.ops[type].vec_dot(K, &out, w + (uint64_t)r * row_bytes, act);
                            sink += out;
                        }
                    }
                    double dt = (bk_now() - t0) / (double)(reps * M);
                    if (dt < best) best = dt;
                }
                printf("%-6s %-8s %8lld %12.1f %10.2f\n", dtype_name(type), kt.name, (long long)M, best * 1e9,
                       (double)row_bytes / best / 1e9);
            }
            free(w);
            free(act);
        }
    }
    free(vals);
    return 0;
}
