/*
 * fuzz_gguf.c - libFuzzer entry point for the GGUF reader: opens the input
 * with gguf_open_memory and, if it validates, walks every kv (recursively
 * through nested arrays, every element), every tensor and both ends of every
 * tensor's data, so that any view the reader hands out is touched under ASan.
 *
 *   make fuzz FUZZ_SECONDS=60
 * Seeds: tests/fuzz/corpus (regenerate with tests/fuzz/make_corpus.py).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gguf/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Folds every byte a value refers to into *acc. */
static void walk_value(const gguf_ctx *g, const gguf_value *v, uint64_t *acc) {
    switch (v->type) {
    case GGUF_TYPE_STRING:
        for (uint64_t i = 0; i < v->v.s.len; i++) *acc += (uint8_t)v->v.s.ptr[i];
        break;
    case GGUF_TYPE_ARRAY:
        for (uint64_t i = 0; i < v->v.arr.n; i++) {
            gguf_value e;
            if (!gguf_arr_get(g, v, i, &e)) __builtin_trap(); /* in range: must succeed */
            walk_value(g, &e, acc);
        }
        break;
    case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64:
        *acc += (uint64_t)(v->v.f == v->v.f);
        break;
    case GGUF_TYPE_BOOL: *acc += v->v.b; break;
    default: *acc += v->v.u; break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_ctx *g = NULL;
    mica_err err = {0};
    if (gguf_open_memory(data, size, "fuzz.gguf", &g, &err) != MICA_OK) {
        if (err.status != MICA_ERR_FORMAT || strchr(err.msg, '\n')) __builtin_trap();
        return 0;
    }
    uint64_t acc = 0;
    for (uint64_t i = 0; i < gguf_n_kv(g); i++) {
        const gguf_kv *kv = gguf_kv_at(g, i);
        char key[64];
        size_t n = kv->key.len < sizeof key - 1 ? (size_t)kv->key.len : sizeof key - 1;
        memcpy(key, kv->key.ptr, n);
        key[n] = '\0';
        if (n == kv->key.len && gguf_find(g, key) != kv) __builtin_trap(); /* keys are unique */
        walk_value(g, &kv->val, &acc);
        uint32_t u; int64_t s; float f; bool b; gguf_str str; gguf_value arr;
        gguf_get_u32(g, key, &u, NULL);
        gguf_get_i64(g, key, &s, NULL);
        gguf_get_f32(g, key, &f, NULL);
        gguf_get_bool(g, key, &b, NULL);
        gguf_get_str(g, key, &str, NULL);
        gguf_get_arr(g, key, GGUF_TYPE_STRING, &arr, NULL);
    }
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        if (gguf_find_tensor(g, t->name) != t) __builtin_trap(); /* names are unique */
        if (t->offset % gguf_alignment(g) != 0) __builtin_trap();
        if (t->nbytes > 0) {
            const uint8_t *p = t->data;
            acc += p[0] + p[t->nbytes - 1];
        }
    }
    gguf_close(g);
    volatile uint64_t sink = acc; /* keeps the reads from being optimised away */
    (void)sink;
    return 0;
}
