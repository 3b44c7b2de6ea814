/*
 * kv_cache.h - per-layer key/value storage for attention (layer: model).
 *
 * One cache type serves every architecture: kv_cache_hybrid, whose layers
 * may differ in width and kind (global, or a sliding-window ring) and whose
 * rows are F32, F16 or Q8_0 (the session's KV type). The dense families use
 * it with every layer global (kv_cache_uniform_init); MiMo-V2-Flash with
 * its per-layer shapes; DeepSeek's latent cache is its own (arch_deepseek2.c).
 * Positions are written by the forward pass in order; the session tracks how
 * many are valid. Ownership: init allocates, deinit frees (accepts a zeroed
 * or half-initialised cache).
 */
#ifndef MICA_KV_CACHE_H
#define MICA_KV_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "mica_internal.h"
#include "tensor/kern.h"

/* ---- hybrid caches: per-layer shapes, sliding-window layers as rings ---- */

/*
 * A cache whose layers differ in width and kind (MiMo-V2-Flash: global
 * layers with 4 KV heads, sliding-window layers with 8). A global layer keeps
 * every position (n_slots = n_ctx). A sliding-window layer of window W keeps
 * only the rows its queries can still see: with `ring` set it has
 *     n_slots = min(n_ctx, W + n_batch - 1)
 * rows and position pos lives in row pos % n_slots (a batch of n_batch
 * tokens at pos0.. needs positions pos0 - W + 1 .. pos0 + n_batch - 1 at
 * once); without `ring` (a debug mode: the mask, not the storage, must define
 * the result) it keeps n_ctx rows like a global layer. Rows are F32, F16 or
 * Q8_0 (kv_cache_hybrid_put converts; a row width must be a multiple of the
 * type's block). Positions must be written in increasing
 * order within a session; restarting at 0 is allowed (the rows are rewritten
 * before they are read).
 * Memory: sum over layers of n_slots * (k_row_bytes + v_row_bytes), exactly
 * what kv_cache_hybrid_bytes returns and what init allocates (kv->bytes).
 */
typedef struct kv_layer_spec {
    int64_t k_dim, v_dim; /* elements per position: n_head_kv * head_dim (head_dim_v) */
    int32_t window;       /* 0: global layer; > 0: sliding window of this many positions */
} kv_layer_spec;

typedef struct kv_layer {
    int64_t k_dim, v_dim;
    int32_t window;
    int32_t n_slots;      /* rows held */
    bool is_ring;         /* n_slots < n_ctx: row = pos % n_slots */
    uint64_t k_row_bytes, v_row_bytes;
    void *k, *v;          /* [n_slots] rows of k_dim (v_dim) elements of the cache's type */
} kv_layer;

typedef struct kv_cache_hybrid {
    int32_t n_layer, n_ctx, n_batch;
    uint32_t type;        /* MICA_DTYPE_F32, MICA_DTYPE_F16 or MICA_DTYPE_Q8_0 */
    kv_layer *layers;     /* [n_layer] */
    uint64_t bytes;       /* bytes of K/V rows allocated */
} kv_cache_hybrid;

/* Rows a layer of this window gets (see above). */
int32_t kv_cache_layer_slots(int32_t window, int32_t n_ctx, int32_t n_batch, bool ring);

/*
 * Bytes of K/V rows a hybrid cache of these layers holds for n_ctx positions
 * (UINT64_MAX on overflow or a type that cannot hold the rows).
 */
uint64_t kv_cache_hybrid_bytes(const kv_layer_spec *specs, int32_t n_layer, int32_t n_ctx,
                               int32_t n_batch, uint32_t type, bool ring);

/* True for the row types a hybrid cache can hold: F32, F16, Q8_0. */
static inline bool kv_cache_type_ok(uint32_t type) {
    return type == MICA_DTYPE_F32 || type == MICA_DTYPE_F16 || type == MICA_DTYPE_Q8_0;
}

/*
 * Allocates the cache. MICA_ERR_INVALID_ARG for a type other than F32, F16,
 * Q8_0 or a row width that is not a multiple of its block (the message
 * names the layer and widths), MICA_ERR_LIMIT on overflow, MICA_ERR_NOMEM
 * (message with the byte count).
 */
mica_status kv_cache_hybrid_init(kv_cache_hybrid *kv, const kv_layer_spec *specs, int32_t n_layer,
                                 int32_t n_ctx, int32_t n_batch, uint32_t type, bool ring,
                                 mica_err *err);
/* Frees; accepts a zeroed or half-initialised cache. */
void kv_cache_hybrid_deinit(kv_cache_hybrid *kv);

/*
 * A hybrid cache whose n_layer (<= MODEL_MAX_LAYERS) layers are all global
 * with the same widths: the dense architectures' cache. Memory: exactly
 * kv_cache_uniform_bytes = n_layer * n_ctx * (row bytes of k_dim + row
 * bytes of v_dim in `type`); UINT64_MAX there on overflow or a width that is
 * not a multiple of the type's block. Errors as kv_cache_hybrid_init.
 */
mica_status kv_cache_uniform_init(kv_cache_hybrid *kv, int32_t n_layer, int32_t n_ctx, int64_t k_dim,
                                  int64_t v_dim, uint32_t type, mica_err *err);
uint64_t kv_cache_uniform_bytes(int32_t n_layer, int32_t n_ctx, int64_t k_dim, int64_t v_dim, uint32_t type);

/* Row index of position pos in layer L. */
static inline int64_t kv_layer_row(const kv_layer *L, int64_t pos) {
    return L->is_ring ? pos % L->n_slots : pos;
}

/*
 * Stores the key k[k_dim] and value v[v_dim] of position pos (0 <= pos <
 * n_ctx) in layer il, converting to the cache's type with kt's from_float.
 */
void kv_cache_hybrid_put(kv_cache_hybrid *kv, const kern_table *kt, int32_t il, int64_t pos,
                         const float *k, const float *v);

#endif /* MICA_KV_CACHE_H */
