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
 *   vec_dot_type - what y must be.
 * Plain-float weights (F32, F16, BF16) take F32 activations.
 *
 * The scalar kernels in kern_generic.c (built on quant_ref.c) are the
 * specification; kern_avx2.c and kern_avx512.c override entries and are
 * tested against them. A table is a plain value owned by its user (the model
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

typedef struct kern_type_ops {
    kern_to_float_fn to_float;     /* NULL: type not supported for compute */
    kern_from_float_fn from_float; /* NULL: cannot quantise into this type */
    kern_vec_dot_fn vec_dot;       /* NULL: no dot product with this type as weights */
    uint32_t vec_dot_type;         /* enum mica_dtype of the activation row */
} kern_type_ops;

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

#endif /* MICA_KERN_H */
