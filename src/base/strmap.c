/*
 * strmap.c - open-addressing string -> int32 map (contract in strmap.h).
 */
#include "base/strmap.h"

#include <string.h>

uint32_t strmap_hash(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 0x100000001b3ull;
    }
    return (uint32_t)(h ^ (h >> 32));
}

static size_t strmap_cap_for(size_t expected) {
    size_t cap = 16;
    while (cap < expected * 2 && cap < ((size_t)1 << (sizeof(size_t) * 8 - 2))) cap <<= 1;
    return cap;
}

mica_status strmap_init(strmap *m, size_t expected) {
    memset(m, 0, sizeof(*m));
    size_t cap = strmap_cap_for(expected);
    m->slots = mica_calloc(cap, sizeof(strmap_slot));
    if (!m->slots) return MICA_ERR_NOMEM;
    m->cap = cap;
    return MICA_OK;
}

void strmap_deinit(strmap *m) {
    if (!m) return;
    mica_free(m->slots);
    memset(m, 0, sizeof(*m));
}

/* Slot holding key, or the empty slot where it would go. */
static strmap_slot *strmap_find(strmap_slot *slots, size_t cap, const char *key, uint32_t len,
                                uint32_t hash) {
    size_t mask = cap - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        strmap_slot *s = &slots[i];
        if (!s->key) return s;
        if (s->hash == hash && s->len == len && (len == 0 || memcmp(s->key, key, len) == 0)) return s;
    }
}

static mica_status strmap_grow(strmap *m) {
    size_t cap = m->cap ? m->cap * 2 : 16;
    strmap_slot *slots = mica_calloc(cap, sizeof(strmap_slot));
    if (!slots) return MICA_ERR_NOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        const strmap_slot *o = &m->slots[i];
        if (o->key) *strmap_find(slots, cap, o->key, o->len, o->hash) = *o;
    }
    mica_free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return MICA_OK;
}

mica_status strmap_put(strmap *m, const char *key, size_t len, int32_t val, int32_t *existing) {
    if (existing) *existing = -1;
    if (len > UINT32_MAX) return MICA_ERR_INVALID_ARG;
    if ((m->n + 1) * 2 > m->cap) {
        mica_status st = strmap_grow(m);
        if (st != MICA_OK) return st;
    }
    uint32_t h = strmap_hash(key, len);
    strmap_slot *s = strmap_find(m->slots, m->cap, key, (uint32_t)len, h);
    if (s->key) {
        if (existing) *existing = s->val;
        return MICA_OK;
    }
    /* A zero-length key still needs a non-NULL pointer to mark the slot used. */
    s->key = key ? key : "";
    s->len = (uint32_t)len;
    s->hash = h;
    s->val = val;
    m->n++;
    return MICA_OK;
}

int32_t strmap_get(const strmap *m, const char *key, size_t len) {
    if (m->cap == 0 || len > UINT32_MAX) return -1;
    uint32_t h = strmap_hash(key, len);
    const strmap_slot *s = strmap_find(m->slots, m->cap, key, (uint32_t)len, h);
    return s->key ? s->val : -1;
}
