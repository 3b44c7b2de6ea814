/*
 * dtype.h - the tensor element types of GGUF/ggml: ids, block sizes, bytes per
 * block, names, and the on-disk block layouts (layer: tensor; also used by
 * gguf/ to size tensors, since a tensor's byte size is a property of its type).
 *
 * enum mica_dtype mirrors ggml's type ids and is append-only: values are the
 * numbers stored in files and are never renumbered. Removed ids (4, 5, 31-33,
 * 36-38) have no traits and are rejected. Block layouts are pinned with static
 * asserts in dtype.c. Reference: FORMATS.md section 2.
 */
#ifndef MICA_DTYPE_H
#define MICA_DTYPE_H

#include <stdbool.h>
#include <stdint.h>

enum mica_dtype {
    MICA_DTYPE_F32 = 0,
    MICA_DTYPE_F16 = 1,
    MICA_DTYPE_Q4_0 = 2,
    MICA_DTYPE_Q4_1 = 3,
    /* 4, 5: removed (Q4_2, Q4_3) */
    MICA_DTYPE_Q5_0 = 6,
    MICA_DTYPE_Q5_1 = 7,
    MICA_DTYPE_Q8_0 = 8,
    MICA_DTYPE_Q8_1 = 9,
    MICA_DTYPE_Q2_K = 10,
    MICA_DTYPE_Q3_K = 11,
    MICA_DTYPE_Q4_K = 12,
    MICA_DTYPE_Q5_K = 13,
    MICA_DTYPE_Q6_K = 14,
    MICA_DTYPE_Q8_K = 15,
    MICA_DTYPE_IQ2_XXS = 16,
    MICA_DTYPE_IQ2_XS = 17,
    MICA_DTYPE_IQ3_XXS = 18,
    MICA_DTYPE_IQ1_S = 19,
    MICA_DTYPE_IQ4_NL = 20,
    MICA_DTYPE_IQ3_S = 21,
    MICA_DTYPE_IQ2_S = 22,
    MICA_DTYPE_IQ4_XS = 23,
    MICA_DTYPE_I8 = 24,
    MICA_DTYPE_I16 = 25,
    MICA_DTYPE_I32 = 26,
    MICA_DTYPE_I64 = 27,
    MICA_DTYPE_F64 = 28,
    MICA_DTYPE_IQ1_M = 29,
    MICA_DTYPE_BF16 = 30,
    /* 31-33: removed (Q4_0_4_4, Q4_0_4_8, Q4_0_8_8) */
    MICA_DTYPE_TQ1_0 = 34,
    MICA_DTYPE_TQ2_0 = 35,
    /* 36-38: removed (IQ4_NL_4_4, IQ4_NL_4_8, IQ4_NL_8_8) */
    MICA_DTYPE_MXFP4 = 39,
    MICA_DTYPE_NVFP4 = 40,
    MICA_DTYPE_Q1_0 = 41,
    MICA_DTYPE_Q2_0 = 42,
    MICA_DTYPE_COUNT = 43,
};

#define QK_K 256 /* elements per K-quant super-block */
#define QK8_0 32
#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK4_NL 32
#define QK_MXFP4 32

/* Static facts about one type. */
typedef struct dtype_traits {
    const char *name; /* "Q4_K" */
    uint32_t blck;    /* elements per block (1 for plain types) */
    uint32_t bytes;   /* bytes per block */
} dtype_traits;

/* Traits of type id `t`, or NULL for an unknown or removed id. */
const dtype_traits *dtype_get(uint32_t t);

/* Name of `t`, or "?" if unknown. */
const char *dtype_name(uint32_t t);

/*
 * Bytes of a row of n elements of type t, overflow-checked: computes
 * (n / blck) * bytes. False if t is unknown, n is negative or not a multiple
 * of the block size, or the product overflows.
 */
bool dtype_row_bytes(uint32_t t, int64_t n, uint64_t *out);

/* ---- on-disk block layouts (pinned by static asserts in dtype.c) ---- */

typedef uint16_t mica_fp16; /* IEEE binary16 bits */
typedef uint16_t mica_bf16; /* bfloat16 bits */

typedef struct { mica_fp16 d; uint8_t qs[16]; } block_q4_0;              /* 18 B */
typedef struct { mica_fp16 d; int8_t qs[32]; } block_q8_0;               /* 34 B */
typedef struct {
    mica_fp16 d, dmin;
    uint8_t scales[12];
    uint8_t qs[QK_K / 2];
} block_q4_k;                                                            /* 144 B */
typedef struct {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    mica_fp16 d;
} block_q6_k;                                                            /* 210 B */
typedef struct {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
} block_q8_k;                                                            /* 292 B */

/* 32-element types with an offset or a fifth bit; qh is four bytes read as a
 * little-endian u32 (bit k = fifth bit of element k), kept as bytes so the
 * structs have no padding. */
typedef struct { mica_fp16 d, m; uint8_t qs[16]; } block_q4_1;            /* 20 B */
typedef struct { mica_fp16 d; uint8_t qh[4]; uint8_t qs[16]; } block_q5_0; /* 22 B */
typedef struct { mica_fp16 d, m; uint8_t qh[4]; uint8_t qs[16]; } block_q5_1; /* 24 B */
typedef struct { mica_fp16 d; uint8_t qs[16]; } block_iq4_nl;             /* 18 B */
typedef struct { uint8_t e; uint8_t qs[16]; } block_mxfp4;                /* 17 B, e = E8M0 */
typedef struct {
    uint8_t scales[QK_K / 16]; /* low nibble scale, high nibble min, per 16 */
    uint8_t qs[QK_K / 4];
    mica_fp16 d, dmin;
} block_q2_k;                                                            /* 84 B */
typedef struct {
    uint8_t hmask[QK_K / 8];
    uint8_t qs[QK_K / 4];
    uint8_t scales[12]; /* 16 x 6-bit, stored + 32 */
    mica_fp16 d;
} block_q3_k;                                                            /* 110 B */
typedef struct {
    mica_fp16 d, dmin;
    uint8_t scales[12]; /* as Q4_K */
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_k;                                                            /* 176 B */
typedef struct {
    mica_fp16 d;
    uint16_t scales_h;
    uint8_t scales_l[QK_K / 64];
    uint8_t qs[QK_K / 2];
} block_iq4_xs;                                                          /* 136 B */

#endif /* MICA_DTYPE_H */
