/*
 * kv_cache.c - allocation and row conversion of the per-layer KV store
 * (layer: model).
 */
#include "model/kv_cache.h"

#include "model/model.h"

#include <string.h>

/* ---- hybrid caches ---- */

int32_t kv_cache_layer_slots(int32_t window, int32_t n_ctx, int32_t n_batch, bool ring) {
    if (window <= 0 || !ring) return n_ctx;
    int64_t s = (int64_t)window + n_batch - 1;
    return s < n_ctx ? (int32_t)s : n_ctx;
}

/* Row bytes of both tensors of one layer; false for an unusable type or width. */
static bool kv_layer_row_bytes(const kv_layer_spec *sp, uint32_t type, uint64_t *kb, uint64_t *vb) {
    if (!kv_cache_type_ok(type)) return false;
    const dtype_traits *tr = dtype_get(type);
    if (!tr || sp->k_dim <= 0 || sp->v_dim <= 0 || sp->k_dim % tr->blck || sp->v_dim % tr->blck) return false;
    return dtype_row_bytes(type, sp->k_dim, kb) && dtype_row_bytes(type, sp->v_dim, vb);
}

uint64_t kv_cache_hybrid_bytes(const kv_layer_spec *specs, int32_t n_layer, int32_t n_ctx,
                               int32_t n_batch, uint32_t type, bool ring) {
    uint64_t total = 0;
    for (int32_t il = 0; il < n_layer; il++) {
        uint64_t kb = 0, vb = 0, row = 0, b = 0;
        const int32_t slots = kv_cache_layer_slots(specs[il].window, n_ctx, n_batch, ring);
        if (!kv_layer_row_bytes(&specs[il], type, &kb, &vb) || !mica_add_ok(kb, vb, &row) ||
            !mica_mul_ok(row, (uint64_t)slots, &b) || !mica_add_ok(total, b, &total))
            return UINT64_MAX;
    }
    return total;
}

mica_status kv_cache_hybrid_init(kv_cache_hybrid *kv, const kv_layer_spec *specs, int32_t n_layer,
                                 int32_t n_ctx, int32_t n_batch, uint32_t type, bool ring,
                                 mica_err *err) {
    memset(kv, 0, sizeof *kv);
    if (n_layer <= 0 || n_ctx <= 0 || n_batch <= 0)
        return mica_err_set(err, MICA_ERR_INVALID_ARG, "KV cache: bad layer count, context or batch");
    if (!kv_cache_type_ok(type))
        return mica_err_set(err, MICA_ERR_INVALID_ARG, "KV cache type %s is not supported (F32, F16 or Q8_0)",
                            dtype_name(type));
    const dtype_traits *tr = dtype_get(type);
    for (int32_t il = 0; il < n_layer; il++)
        if (specs[il].k_dim <= 0 || specs[il].v_dim <= 0 || specs[il].k_dim % tr->blck || specs[il].v_dim % tr->blck)
            return mica_err_set(err, MICA_ERR_INVALID_ARG,
                                "KV cache type %s needs rows in multiples of %u values; layer %d has %lld/%lld",
                                dtype_name(type), (unsigned)tr->blck, il, (long long)specs[il].k_dim,
                                (long long)specs[il].v_dim);
    const uint64_t total = kv_cache_hybrid_bytes(specs, n_layer, n_ctx, n_batch, type, ring);
    if (total == UINT64_MAX || total > SIZE_MAX)
        return mica_err_set(err, MICA_ERR_LIMIT, "KV cache size overflows");
    kv->layers = mica_calloc((size_t)n_layer, sizeof *kv->layers);
    if (!kv->layers) return mica_err_set(err, MICA_ERR_NOMEM, "out of memory");
    kv->n_layer = n_layer;
    kv->n_ctx = n_ctx;
    kv->n_batch = n_batch;
    kv->type = type;
    for (int32_t il = 0; il < n_layer; il++) {
        kv_layer *L = &kv->layers[il];
        L->k_dim = specs[il].k_dim;
        L->v_dim = specs[il].v_dim;
        L->window = specs[il].window;
        L->n_slots = kv_cache_layer_slots(L->window, n_ctx, n_batch, ring);
        L->is_ring = L->n_slots < n_ctx;
        kv_layer_row_bytes(&specs[il], type, &L->k_row_bytes, &L->v_row_bytes); /* checked above */
        const size_t kb = (size_t)(L->k_row_bytes * (uint64_t)L->n_slots);
        const size_t vb = (size_t)(L->v_row_bytes * (uint64_t)L->n_slots);
        L->k = mica_aligned_alloc(64, kb);
        L->v = mica_aligned_alloc(64, vb);
        if (!L->k || !L->v) {
            kv_cache_hybrid_deinit(kv);
            return mica_err_set(err, MICA_ERR_NOMEM, "out of memory allocating a %llu-byte KV cache",
                                (unsigned long long)total);
        }
        kv->bytes += (uint64_t)kb + (uint64_t)vb;
    }
    return MICA_OK;
}

void kv_cache_hybrid_deinit(kv_cache_hybrid *kv) {
    for (int32_t il = 0; kv->layers && il < kv->n_layer; il++) {
        mica_free(kv->layers[il].k);
        mica_free(kv->layers[il].v);
    }
    mica_free(kv->layers);
    memset(kv, 0, sizeof *kv);
}

mica_status kv_cache_uniform_init(kv_cache_hybrid *kv, int32_t n_layer, int32_t n_ctx, int64_t k_dim,
                                  int64_t v_dim, uint32_t type, mica_err *err) {
    memset(kv, 0, sizeof *kv);
    if (n_layer <= 0 || n_layer > MODEL_MAX_LAYERS)
        return mica_err_set(err, MICA_ERR_INVALID_ARG, "KV cache: bad layer count %d", n_layer);
    kv_layer_spec specs[MODEL_MAX_LAYERS];
    for (int32_t il = 0; il < n_layer; il++) specs[il] = (kv_layer_spec){k_dim, v_dim, 0};
    return kv_cache_hybrid_init(kv, specs, n_layer, n_ctx, 1, type, false, err);
}

uint64_t kv_cache_uniform_bytes(int32_t n_layer, int32_t n_ctx, int64_t k_dim, int64_t v_dim, uint32_t type) {
    const kv_layer_spec sp = {k_dim, v_dim, 0};
    uint64_t kb = 0, vb = 0, row = 0, b = 0;
    if (n_layer < 0 || n_ctx < 0 || !kv_layer_row_bytes(&sp, type, &kb, &vb) || !mica_add_ok(kb, vb, &row) ||
        !mica_mul_ok(row, (uint64_t)n_layer, &b) || !mica_mul_ok(b, (uint64_t)n_ctx, &b))
        return UINT64_MAX;
    return b;
}

void kv_cache_hybrid_put(kv_cache_hybrid *kv, const kern_table *kt, int32_t il, int64_t pos,
                         const float *k, const float *v) {
    MICA_ASSERT(il >= 0 && il < kv->n_layer && pos >= 0 && pos < kv->n_ctx);
    kv_layer *L = &kv->layers[il];
    const int64_t r = kv_layer_row(L, pos);
    uint8_t *kd = (uint8_t *)L->k + (uint64_t)r * L->k_row_bytes;
    uint8_t *vd = (uint8_t *)L->v + (uint64_t)r * L->v_row_bytes;
    if (kv->type == MICA_DTYPE_F32) {
        memcpy(kd, k, (size_t)L->k_dim * sizeof(float));
        memcpy(vd, v, (size_t)L->v_dim * sizeof(float));
    } else {
        kt->ops[kv->type].from_float(k, kd, L->k_dim);
        kt->ops[kv->type].from_float(v, vd, L->v_dim);
    }
}
