/*
 * kv_cache.c - allocation of the per-layer KV store (layer: model).
 */
#include "model/kv_cache.h"

#include <string.h>

mica_status kv_cache_init(kv_cache *kv, int32_t n_layer, int32_t n_ctx, int64_t k_dim, int64_t v_dim,
                          mica_err *err) {
    memset(kv, 0, sizeof *kv);
    uint64_t nk = 0, nv = 0, rows = 0;
    if (n_layer <= 0 || n_ctx <= 0 || k_dim <= 0 || v_dim <= 0 ||
        !mica_mul_ok((uint64_t)n_layer, (uint64_t)n_ctx, &rows) ||
        !mica_mul_ok(rows, (uint64_t)k_dim * sizeof(float), &nk) ||
        !mica_mul_ok(rows, (uint64_t)v_dim * sizeof(float), &nv) || nk > SIZE_MAX || nv > SIZE_MAX)
        return mica_err_set(err, MICA_ERR_LIMIT, "KV cache size overflows");
    kv->k = mica_aligned_alloc(64, (size_t)nk);
    kv->v = mica_aligned_alloc(64, (size_t)nv);
    if (!kv->k || !kv->v) {
        kv_cache_deinit(kv);
        return mica_err_set(err, MICA_ERR_NOMEM, "out of memory allocating a %llu-byte KV cache",
                            (unsigned long long)(nk + nv));
    }
    kv->n_layer = n_layer;
    kv->n_ctx = n_ctx;
    kv->k_dim = k_dim;
    kv->v_dim = v_dim;
    return MICA_OK;
}

void kv_cache_deinit(kv_cache *kv) {
    mica_free(kv->k);
    mica_free(kv->v);
    memset(kv, 0, sizeof *kv);
}
