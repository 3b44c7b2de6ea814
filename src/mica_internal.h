/*
 * mica_internal.h - macros and helpers shared by every module of libmica:
 * assertions, checked size arithmetic, the error record, array length.
 *
 * Layer: below everything (depends on libc and include/mica.h only).
 * Invariant: MICA_ASSERT stays on in release builds; it is for broken
 * invariants (bugs), never for bad input, which gets a mica_status.
 */
#ifndef MICA_INTERNAL_H
#define MICA_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mica.h"

#define MICA_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MICA_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#define MICA_LIKELY(x) __builtin_expect(!!(x), 1)
#define MICA_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define MICA_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MICA_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Reports a broken invariant (file, line, condition) on stderr and aborts.
 * This is the one place in src/ allowed to end the process: a failed
 * assertion is a bug, and continuing would corrupt memory. */
_Noreturn void mica_assert_fail(const char *file, int line, const char *cond);

#define MICA_ASSERT(cond) \
    do { if (MICA_UNLIKELY(!(cond))) mica_assert_fail(__FILE__, __LINE__, #cond); } while (0)
#ifdef NDEBUG
#define MICA_DEBUG_ASSERT(cond) ((void)0)
#else
#define MICA_DEBUG_ASSERT(cond) MICA_ASSERT(cond)
#endif

/* ---- checked arithmetic: return false (and leave *out unspecified) on overflow ---- */

static inline bool mica_add_ok(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_add_overflow(a, b, out);
}
static inline bool mica_mul_ok(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool mica_size_mul_ok(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}

/* ---- error record ---- */

/*
 * A status plus a one-line message, filled by the function that failed.
 * Every function taking a `mica_err *` accepts NULL (the message is dropped).
 */
typedef struct mica_err {
    mica_status status;
    char msg[512];
} mica_err;

/* Records st and a printf-style message in e (if not NULL); returns st. */
mica_status mica_err_set(mica_err *e, mica_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Copies e's message into a caller buffer (NUL-terminated, truncated). */
void mica_err_copy(const mica_err *e, char *buf, size_t cap);

/* ---- allocation: the one entry point (malloc semantics; NULL on failure) ---- */

void *mica_malloc(size_t n);
void *mica_calloc(size_t n, size_t size);
void *mica_realloc(void *p, size_t n);
void mica_free(void *p);
/* Aligned allocation (align a power of two >= sizeof(void*)); free with mica_free. */
void *mica_aligned_alloc(size_t align, size_t n);
/* malloc'd copy of n bytes of s plus a NUL; NULL on failure. */
char *mica_strndup(const char *s, size_t n);

#endif /* MICA_INTERNAL_H */
