/*
 * dtype.c - the type-traits table (immutable) and checked row sizes.
 * Layer: tensor. Values from FORMATS.md section 2.1.
 */
#include "tensor/dtype.h"

#include "mica_internal.h"

MICA_STATIC_ASSERT(sizeof(block_q4_0) == 18, "block_q4_0 is 18 bytes");
MICA_STATIC_ASSERT(sizeof(block_q8_0) == 34, "block_q8_0 is 34 bytes");
MICA_STATIC_ASSERT(sizeof(block_q4_k) == 144, "block_q4_k is 144 bytes");
MICA_STATIC_ASSERT(sizeof(block_q6_k) == 210, "block_q6_k is 210 bytes");
MICA_STATIC_ASSERT(sizeof(block_q8_k) == 292, "block_q8_k is 292 bytes");
MICA_STATIC_ASSERT(sizeof(block_q4_1) == 20, "block_q4_1 is 20 bytes");
MICA_STATIC_ASSERT(sizeof(block_q5_0) == 22, "block_q5_0 is 22 bytes");
MICA_STATIC_ASSERT(sizeof(block_q5_1) == 24, "block_q5_1 is 24 bytes");
MICA_STATIC_ASSERT(sizeof(block_iq4_nl) == 18, "block_iq4_nl is 18 bytes");
MICA_STATIC_ASSERT(sizeof(block_mxfp4) == 17, "block_mxfp4 is 17 bytes");
MICA_STATIC_ASSERT(sizeof(block_q2_k) == 84, "block_q2_k is 84 bytes");
MICA_STATIC_ASSERT(sizeof(block_q3_k) == 110, "block_q3_k is 110 bytes");
MICA_STATIC_ASSERT(sizeof(block_q5_k) == 176, "block_q5_k is 176 bytes");
MICA_STATIC_ASSERT(sizeof(block_iq4_xs) == 136, "block_iq4_xs is 136 bytes");

static const dtype_traits dtype_table[MICA_DTYPE_COUNT] = {
    [MICA_DTYPE_F32] = {"F32", 1, 4},
    [MICA_DTYPE_F16] = {"F16", 1, 2},
    [MICA_DTYPE_Q4_0] = {"Q4_0", 32, 18},
    [MICA_DTYPE_Q4_1] = {"Q4_1", 32, 20},
    [MICA_DTYPE_Q5_0] = {"Q5_0", 32, 22},
    [MICA_DTYPE_Q5_1] = {"Q5_1", 32, 24},
    [MICA_DTYPE_Q8_0] = {"Q8_0", 32, 34},
    [MICA_DTYPE_Q8_1] = {"Q8_1", 32, 36},
    [MICA_DTYPE_Q2_K] = {"Q2_K", 256, 84},
    [MICA_DTYPE_Q3_K] = {"Q3_K", 256, 110},
    [MICA_DTYPE_Q4_K] = {"Q4_K", 256, 144},
    [MICA_DTYPE_Q5_K] = {"Q5_K", 256, 176},
    [MICA_DTYPE_Q6_K] = {"Q6_K", 256, 210},
    [MICA_DTYPE_Q8_K] = {"Q8_K", 256, 292},
    [MICA_DTYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66},
    [MICA_DTYPE_IQ2_XS] = {"IQ2_XS", 256, 74},
    [MICA_DTYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98},
    [MICA_DTYPE_IQ1_S] = {"IQ1_S", 256, 50},
    [MICA_DTYPE_IQ4_NL] = {"IQ4_NL", 32, 18},
    [MICA_DTYPE_IQ3_S] = {"IQ3_S", 256, 110},
    [MICA_DTYPE_IQ2_S] = {"IQ2_S", 256, 82},
    [MICA_DTYPE_IQ4_XS] = {"IQ4_XS", 256, 136},
    [MICA_DTYPE_I8] = {"I8", 1, 1},
    [MICA_DTYPE_I16] = {"I16", 1, 2},
    [MICA_DTYPE_I32] = {"I32", 1, 4},
    [MICA_DTYPE_I64] = {"I64", 1, 8},
    [MICA_DTYPE_F64] = {"F64", 1, 8},
    [MICA_DTYPE_IQ1_M] = {"IQ1_M", 256, 56},
    [MICA_DTYPE_BF16] = {"BF16", 1, 2},
    [MICA_DTYPE_TQ1_0] = {"TQ1_0", 256, 54},
    [MICA_DTYPE_TQ2_0] = {"TQ2_0", 256, 66},
    [MICA_DTYPE_MXFP4] = {"MXFP4", 32, 17},
    [MICA_DTYPE_NVFP4] = {"NVFP4", 64, 36},
    [MICA_DTYPE_Q1_0] = {"Q1_0", 128, 18},
    [MICA_DTYPE_Q2_0] = {"Q2_0", 64, 18},
};

const dtype_traits *dtype_get(uint32_t t) {
    if (t >= MICA_DTYPE_COUNT || dtype_table[t].blck == 0) return NULL;
    return &dtype_table[t];
}

const char *dtype_name(uint32_t t) {
    const dtype_traits *tr = dtype_get(t);
    return tr ? tr->name : "?";
}

bool dtype_row_bytes(uint32_t t, int64_t n, uint64_t *out) {
    const dtype_traits *tr = dtype_get(t);
    if (!tr || n < 0 || (uint64_t)n % tr->blck != 0) return false;
    return mica_mul_ok((uint64_t)n / tr->blck, tr->bytes, out);
}
