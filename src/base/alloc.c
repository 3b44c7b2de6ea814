/*
 * alloc.c - the allocator entry points, the error record and the assertion
 * handler (layer: base). Everything in libmica allocates through mica_malloc
 * and friends so that a later allocator hook or fault injection has one place
 * to live.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mica_internal.h"

void *mica_malloc(size_t n) { return malloc(n ? n : 1); }
void *mica_calloc(size_t n, size_t size) { return calloc(n ? n : 1, size ? size : 1); }
void *mica_realloc(void *p, size_t n) { return realloc(p, n ? n : 1); }
void mica_free(void *p) { free(p); }

void *mica_aligned_alloc(size_t align, size_t n) {
    void *p = NULL;
    if (posix_memalign(&p, align, n ? n : 1) != 0) return NULL;
    return p;
}

char *mica_strndup(const char *s, size_t n) {
    if (n == SIZE_MAX) return NULL;
    char *d = mica_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

mica_status mica_err_set(mica_err *e, mica_status st, const char *fmt, ...) {
    if (!e) return st;
    e->status = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return st;
}

void mica_err_copy(const mica_err *e, char *buf, size_t cap) {
    if (!buf || cap == 0) return;
    snprintf(buf, cap, "%s", e ? e->msg : "");
}

_Noreturn void mica_assert_fail(const char *file, int line, const char *cond) {
    fprintf(stderr, "mica: internal error: %s:%d: assertion failed: %s\n", file, line, cond);
    fflush(stderr);
    abort(); /* a broken invariant: see MICA_ASSERT */
}

const char *mica_status_str(mica_status st) {
    switch (st) {
    case MICA_OK: return "MICA_OK";
    case MICA_ERR_NOMEM: return "MICA_ERR_NOMEM";
    case MICA_ERR_IO: return "MICA_ERR_IO";
    case MICA_ERR_FORMAT: return "MICA_ERR_FORMAT";
    case MICA_ERR_UNSUPPORTED: return "MICA_ERR_UNSUPPORTED";
    case MICA_ERR_INVALID_ARG: return "MICA_ERR_INVALID_ARG";
    case MICA_ERR_LIMIT: return "MICA_ERR_LIMIT";
    case MICA_ERR_CANCELLED: return "MICA_ERR_CANCELLED";
    case MICA_ERR_INTERNAL: return "MICA_ERR_INTERNAL";
    }
    return "MICA_ERR_UNKNOWN";
}

const char *mica_version(void) { return MICA_VERSION_STRING; }
