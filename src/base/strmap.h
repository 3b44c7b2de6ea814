/*
 * strmap.h - open-addressing hash map from byte strings to int32 values
 * (layer: base; depends on libc and the allocator only). Used for the
 * vocabulary's token-text -> id lookup.
 *
 * Keys are BORROWED: the map stores (pointer, length) and the caller keeps the
 * bytes alive and unchanged for the map's lifetime. Keys may contain NUL.
 * Linear probing, power-of-two capacity, load factor <= 1/2; no deletion.
 * Thread safety: concurrent strmap_get calls are safe once building is done.
 */
#ifndef MICA_STRMAP_H
#define MICA_STRMAP_H

#include <stddef.h>
#include <stdint.h>

#include "mica_internal.h"

typedef struct strmap_slot {
    const char *key; /* NULL: empty slot */
    uint32_t len;
    uint32_t hash;
    int32_t val;
} strmap_slot;

typedef struct strmap {
    strmap_slot *slots;
    size_t cap;  /* power of two (0 before init) */
    size_t n;
} strmap;

/* FNV-1a (64-bit, folded to 32) of n bytes. */
uint32_t strmap_hash(const char *s, size_t n);

/* Prepares an empty map sized for `expected` keys. MICA_OK or MICA_ERR_NOMEM. */
mica_status strmap_init(strmap *m, size_t expected);
/* Frees the slots (not the keys). Accepts a zeroed or half-built map. */
void strmap_deinit(strmap *m);

/*
 * Inserts key -> val unless the key is present. If it is present, the map is
 * unchanged and *existing (if not NULL) receives the stored value; otherwise
 * *existing is -1. Keys longer than UINT32_MAX bytes: MICA_ERR_INVALID_ARG.
 * Grows as needed (MICA_ERR_NOMEM on failure, map unchanged).
 */
mica_status strmap_put(strmap *m, const char *key, size_t len, int32_t val, int32_t *existing);

/* The value stored for key, or -1 if absent. */
int32_t strmap_get(const strmap *m, const char *key, size_t len);

#endif /* MICA_STRMAP_H */
