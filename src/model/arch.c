/*
 * arch.c - the architecture registry: general.architecture name -> arch_ops.
 * Layer: model. Adding an architecture: write arch_<name>.c and add it here.
 */
#include <string.h>

#include "model/model.h"

extern const arch_ops arch_llama_ops;
extern const arch_ops arch_qwen2_ops;
extern const arch_ops arch_qwen3_ops;
extern const arch_ops arch_qwen3moe_ops;
extern const arch_ops arch_olmoe_ops;

static const arch_ops *const arch_registry[] = {
    &arch_llama_ops,
    &arch_qwen2_ops,
    &arch_qwen3_ops,
    &arch_qwen3moe_ops,
    &arch_olmoe_ops,
};

const arch_ops *arch_find(const char *name, size_t len) {
    for (size_t i = 0; i < MICA_ARRAY_LEN(arch_registry); i++) {
        const char *n = arch_registry[i]->name;
        if (strlen(n) == len && memcmp(n, name, len) == 0) return arch_registry[i];
    }
    return NULL;
}

const char *arch_names(void) { return "llama, qwen2, qwen3, qwen3moe, olmoe"; }
