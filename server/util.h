/*
 * util.h - small helpers of the HTTP server: a growable byte buffer, UTF-8
 * repair for JSON output, the monotonic clock. Layer: server (sees only
 * mica.h).
 */
#ifndef MICA_SERVER_UTIL_H
#define MICA_SERVER_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Growable byte buffer; p is NUL-terminated whenever n > 0 or after any
 * successful add. A failed allocation sets oom and later adds do nothing. */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

bool sbuf_add(sbuf *b, const char *s, size_t n);
bool sbuf_adds(sbuf *b, const char *s);
/* Drops the first n bytes. */
void sbuf_consume(sbuf *b, size_t n);
void sbuf_free(sbuf *b);

/*
 * Appends s[0..n) to b with every byte that is not part of a valid UTF-8
 * sequence replaced by U+FFFD, so the result can go into a JSON string.
 */
bool sbuf_add_utf8(sbuf *b, const char *s, size_t n);

/*
 * Parses a byte size: "auto" (0), "unlimited" (UINT64_MAX), or a decimal
 * number with an optional K/M/G/T suffix (binary multiples, optionally
 * followed by "B" or "iB"). Returns false (out untouched) on anything else or
 * on overflow.
 */
bool srv_parse_size(const char *s, uint64_t *out);

/* Monotonic seconds. */
double srv_now(void);

#endif /* MICA_SERVER_UTIL_H */
