/*
 * kern.h - per-type kernels behind a table indexed by dtype (layer: tensor).
 *
 * For each weight type t, kern_table.ops[t] gives:
 *   to_float   - dequantise n elements (n a multiple of the block size),
 *   from_float - quantise n floats into type t (used for activation rows:
 *                Q8_0 and Q8_K, and by the test-model generator for weights),
 *   vec_dot    - *s = dot(x, y) over n elements, x a row of type t and y a row
 *                of type vec_dot_type (the activation row, quantised once
 *                with ops[vec_dot_type].from_float),
 *   vec_dot_type - what y must be,
 *   gemm       - a tile of a matrix product: many weight rows times many
 *                activation rows (contract below); every table has one for
 *                each type that has a vec_dot.
 * Plain-float weights (F32, F16, BF16) take F32 activations.
 *
 * The scalar kernels in kern_generic.c (built on quant_ref.c) are the
 * specification; kern_avx2.c and kern_avx512.c (with kern_gemm_avx2.c and
 * kern_gemm_avx512.c) override entries and are tested against them. Every
 * from_float of every table is bit-identical to the reference quantiser, so
 * activation rows are the same bytes on every CPU. A table is a plain value owned by its user (the model
 * keeps one), filled once by kern_table_init: no global mutable state.
 *
 * Preconditions (checked once when weights are bound, not per call): n is a
 * multiple of the block size of both types; pointers valid for the row.
 * Kernels are thread-safe (pure functions).
 */
#ifndef MICA_KERN_H
#define MICA_KERN_H

#include <stdbool.h>
#include <stdint.h>

#include "tensor/dtype.h"

typedef void (*kern_to_float_fn)(const void *x, float *y, int64_t n);
typedef void (*kern_from_float_fn)(const float *x, void *y, int64_t n);
typedef void (*kern_vec_dot_fn)(int64_t n, float *s, const void *x, const void *y);

/*
 * gemm: a tile of y = W . A^T. For every r in [0, nr) and t in [0, nt):
 *
 *     y[t * ldy + r] = dot(weight row r, activation row t)
 *
 * where weight row r (type t's rows, n elements) starts at byte
 * (const uint8_t *)w + r * w_stride and activation row t (vec_dot_type, n
 * elements) at (const uint8_t *)a + t * a_stride. Strides are in bytes; every
 * row must be aligned as its type requires (as for vec_dot: 4 bytes for F32
 * and Q8_K rows, 2 for the others), no further (SIMD) alignment is assumed.
 * ldy is in floats (>= nr when nt > 1). Only the nr x nt
 * outputs named above are written. n, nr, nt >= 1 (nr, nt need not be
 * multiples of any micro-tile: edges are handled inside).
 *
 * Numbers: each output is the dot product of the two rows within the same
 * per-type bound as vec_dot against the scalar reference (tests/unit/
 * test_kern.c), but need not equal this table's vec_dot bit for bit. It IS
 * a function of the two rows alone: bit-identical whatever nr, nt, the
 * position of (r, t) inside the tile and the strides, so a matrix product
 * gives the same bits for any batch size, tiling or thread split.
 *
 * Cost model: implementations keep a small block of weight rows and
 * activation rows in registers/L1 and reuse each unpacked block across
 * several rows and tokens; callers keep the nt activation rows of one call
 * within L2 (ops_matmul) and pass many rows per call.
 */
typedef void (*kern_gemm_fn)(int64_t n, int64_t nr, int64_t nt, const void *w, uint64_t w_stride,
                             const void *a, uint64_t a_stride, float *y, int64_t ldy);

typedef struct kern_type_ops {
    kern_to_float_fn to_float;     /* NULL: type not supported for compute */
    kern_from_float_fn from_float; /* NULL: cannot quantise into this type */
    kern_vec_dot_fn vec_dot;       /* NULL: no dot product with this type as weights */
    uint32_t vec_dot_type;         /* enum mica_dtype of the activation row */
    kern_gemm_fn gemm;             /* NULL iff vec_dot is NULL */
} kern_type_ops;

/*
 * KERN_GEMM_FROM_DOT(name, dot) defines `static void name(...)`, a
 * kern_gemm_fn calling the kern_vec_dot_fn `dot` once per output (rows
 * outer, tokens inner). It meets the gemm contract whenever `dot` is a pure
 * function of its rows. Used for types without a register-blocked kernel,
 * so every table has a gemm for every type it can dot.
 */
#define KERN_GEMM_FROM_DOT(name, dot)                                                              \
    static void name(int64_t n, int64_t nr, int64_t nt, const void *w, uint64_t w_stride,        \
                     const void *a, uint64_t a_stride, float *y, int64_t ldy) {                  \
        for (int64_t r_ = 0; r_ < nr; r_++) {                                                      \
            const void *wr_ = (const uint8_t *)w + (uint64_t)r_ * w_stride;                        \
            for (int64_t t_ = 0; t_ < nt; t_++) {                                                  \
                dot(n, &y[t_ * ldy + r_], wr_, (const uint8_t *)a + (uint64_t)t_ * a_stride);      \
            }                                                                                      \
        }                                                                                          \
    }

enum kern_isa {
    KERN_ISA_GENERIC = 0,
    KERN_ISA_AVX2 = 1,   /* AVX2 + FMA + F16C */
    KERN_ISA_AVX512 = 2, /* AVX-512 F/BW/VL/DQ + VNNI (+ BF16 where present) */
    KERN_ISA_COUNT
};

typedef struct kern_table {
    enum kern_isa isa;
    const char *name; /* "generic", "avx2", "avx512" */
    kern_type_ops ops[MICA_DTYPE_COUNT];
} kern_table;

/* CPU capabilities, detected with cpuid/xgetbv (all false off x86-64). */
typedef struct cpu_features {
    bool avx2, fma, f16c;
    bool avx512f, avx512bw, avx512vl, avx512dq, avx512vnni, avx512bf16;
} cpu_features;

void cpu_features_detect(cpu_features *out);

/* Best ISA this build and CPU support. */
enum kern_isa kern_best_isa(const cpu_features *cpu);

/* True if this build contains kernels for `isa` and the CPU runs them. */
bool kern_isa_available(enum kern_isa isa, const cpu_features *cpu);

/*
 * Fills *t with the generic kernels, then overlays the kernels of `isa`
 * (which must be available). Every entry the ISA file does not define stays
 * generic.
 */
void kern_table_init(kern_table *t, enum kern_isa isa);

/* Overlays provided by the ISA files (defined only where built). */
void kern_generic_fill(kern_table *t);
void kern_avx2_fill(kern_table *t);
void kern_avx512_fill(kern_table *t);

/* Register-blocked gemm kernels (kern_gemm_<isa>.c), laid over the table's
 * gemm entries by the fill functions above. */
void kern_gemm_avx2_fill(kern_table *t);
void kern_gemm_avx512_fill(kern_table *t);

#endif /* MICA_KERN_H */
