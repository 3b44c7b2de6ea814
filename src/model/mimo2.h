/*
 * mimo2.h - what arch_mimo2.c (Xiaomi MiMo-V2-Flash, MODEL_FAMILIES.md 5)
 * offers beyond its arch_ops entry (layer: model): a forward state with
 * options, the size of its KV cache, and a read-only view of how each layer
 * was configured, for `mica info`, tests and a later speculative decoder.
 *
 * The registry entry (arch_mimo2_ops, state_create) uses the session's KV
 * type and sliding-window layers as rings.
 */
#ifndef MICA_MIMO2_H
#define MICA_MIMO2_H

#include <stdbool.h>
#include <stdint.h>

#include "model/model.h"

typedef struct mimo2_state_opts {
    uint32_t kv_type;  /* MICA_DTYPE_F32 (default), MICA_DTYPE_F16 or MICA_DTYPE_Q8_0 */
    bool swa_full;     /* debug: sliding-window layers keep every position (no ring);
                          the window mask alone then limits what they see */
} mimo2_state_opts;

/* As arch_ops.state_create, with options (NULL: the defaults). m must be a mimo2 model. */
mica_status mimo2_state_create(const mica_model *m, mica_pool *pool, int32_t n_ctx, int32_t n_batch,
                               const mimo2_state_opts *opts, arch_state **out, mica_err *err);

/* Bytes of K/V rows the state's cache allocated (measured at allocation). */
uint64_t mimo2_state_kv_bytes(const arch_state *st);

/*
 * Bytes of K/V rows a state for (n_ctx, n_batch) would allocate with these
 * options (kv_cache_hybrid_bytes over the main layers; UINT64_MAX on overflow).
 */
uint64_t mimo2_kv_bytes(const mica_model *m, int32_t n_ctx, int32_t n_batch, const mimo2_state_opts *opts);

/* How one block was configured at load. */
typedef struct mimo2_layer_info {
    bool is_swa;        /* sliding-window attention (window mimo2_window) */
    bool has_sinks;     /* blk.N.attn_sinks.weight present and used */
    bool is_moe;        /* ffn_gate_inp present: routed experts; else dense SwiGLU */
    bool is_nextn;      /* an MTP block (bound, not run by the forward pass) */
    uint32_t n_head, n_head_kv;
    float rope_base;
} mimo2_layer_info;

/* Blocks in the file (main + MTP) and MTP blocks; info on block il (< total). */
uint32_t mimo2_n_blocks(const mica_model *m);
uint32_t mimo2_n_nextn(const mica_model *m);
uint32_t mimo2_window(const mica_model *m);
float mimo2_value_scale(const mica_model *m);
void mimo2_layer_get(const mica_model *m, uint32_t il, mimo2_layer_info *out);

#endif /* MICA_MIMO2_H */
