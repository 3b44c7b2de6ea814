/*
 * deepseek2.h - what arch_deepseek2.c (DeepSeek-V2/V3, MODEL_FAMILIES.md 4)
 * offers beyond its arch_ops entry (layer: model): the size of its
 * compressed KV cache, for `mica info` and tests.
 */
#ifndef MICA_DEEPSEEK2_H
#define MICA_DEEPSEEK2_H

#include <stdint.h>

#include "model/model.h"

/*
 * Bytes of the latent cache of a state for n_ctx positions with rows of
 * kv_type (F32, F16, Q8_0): n_layer * n_ctx rows of (kv_lora_rank + rope
 * dims) values, c_kv and k_pe, shared by all heads (MODEL_FAMILIES.md 4.2).
 * m must be a loaded deepseek2 model. UINT64_MAX on overflow or when
 * kv_lora_rank or the row is not a whole number of the type's blocks.
 */
uint64_t deepseek2_kv_bytes(const mica_model *m, int32_t n_ctx, uint32_t kv_type);

/* Bytes the state's latent cache allocated (measured at allocation). */
uint64_t deepseek2_state_kv_bytes(const arch_state *st);

#endif /* MICA_DEEPSEEK2_H */
