/*
 * kv_cache.h - per-layer key/value storage for attention (layer: model).
 *
 * Layout: for layer il, keys are [n_ctx][k_dim] floats and values
 * [n_ctx][v_dim] floats, row = position. Positions are written by the
 * forward pass in order; the session tracks how many are valid.
 * Ownership: kv_cache_init allocates, kv_cache_deinit frees (accepts a
 * zeroed or half-initialised cache).
 */
#ifndef MICA_KV_CACHE_H
#define MICA_KV_CACHE_H

#include <stdint.h>

#include "mica_internal.h"

typedef struct kv_cache {
    int32_t n_layer, n_ctx;
    int64_t k_dim, v_dim;
    float *k; /* [n_layer][n_ctx][k_dim] */
    float *v; /* [n_layer][n_ctx][v_dim] */
} kv_cache;

/* Allocates the cache. MICA_ERR_NOMEM (message with the byte count) or MICA_ERR_LIMIT on overflow. */
mica_status kv_cache_init(kv_cache *kv, int32_t n_layer, int32_t n_ctx, int64_t k_dim, int64_t v_dim,
                          mica_err *err);
void kv_cache_deinit(kv_cache *kv);

static inline float *kv_cache_k(const kv_cache *kv, int32_t il, int64_t pos) {
    return kv->k + ((int64_t)il * kv->n_ctx + pos) * kv->k_dim;
}
static inline float *kv_cache_v(const kv_cache *kv, int32_t il, int64_t pos) {
    return kv->v + ((int64_t)il * kv->n_ctx + pos) * kv->v_dim;
}

#endif /* MICA_KV_CACHE_H */
