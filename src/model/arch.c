/*
 * arch.c - the architecture registry: general.architecture name -> arch_ops.
 * Layer: model. Adding an architecture: write arch_<name>.c and add it here.
 */
#include <string.h>

#include "model/deepseek2.h"
#include "model/kv_cache.h"
#include "model/mimo2.h"
#include "model/model.h"

extern const arch_ops arch_llama_ops;
extern const arch_ops arch_qwen2_ops;
extern const arch_ops arch_qwen3_ops;
extern const arch_ops arch_qwen3moe_ops;
extern const arch_ops arch_olmoe_ops;
extern const arch_ops arch_mimo2_ops;
extern const arch_ops arch_deepseek2_ops;

static const arch_ops *const arch_registry[] = {
    &arch_llama_ops,
    &arch_qwen2_ops,
    &arch_qwen3_ops,
    &arch_qwen3moe_ops,
    &arch_olmoe_ops,
    &arch_mimo2_ops,
    &arch_deepseek2_ops,
};

const arch_ops *arch_find(const char *name, size_t len) {
    for (size_t i = 0; i < MICA_ARRAY_LEN(arch_registry); i++) {
        const char *n = arch_registry[i]->name;
        if (strlen(n) == len && memcmp(n, name, len) == 0) return arch_registry[i];
    }
    return NULL;
}

const char *arch_names(void) { return "llama, qwen2, qwen3, qwen3moe, olmoe, deepseek2, mimo2"; }

uint64_t arch_kv_bytes_type(const mica_model *m, int32_t n_ctx, int32_t n_batch, uint32_t kv_type) {
    if (m->arch == &arch_mimo2_ops) {
        const mimo2_state_opts o = {.kv_type = kv_type};
        return mimo2_kv_bytes(m, n_ctx, n_batch, &o);
    }
    if (m->arch == &arch_deepseek2_ops) return deepseek2_kv_bytes(m, n_ctx, kv_type);
    const model_hparams *hp = &m->hp;
    return kv_cache_uniform_bytes((int32_t)hp->n_layer, n_ctx > 0 ? n_ctx : 0, (int64_t)hp->n_head_kv * hp->head_dim,
                                  (int64_t)hp->n_head_kv * hp->head_dim_v, kv_type);
}

uint64_t arch_kv_bytes(const mica_model *m, int32_t n_ctx, int32_t n_batch) {
    return arch_kv_bytes_type(m, n_ctx, n_batch, MICA_DTYPE_F32);
}
