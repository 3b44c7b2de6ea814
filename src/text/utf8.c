/*
 * utf8.c - strict UTF-8 decoding, validation, encoding and streaming
 * (contract in utf8.h). Well-formed sequences follow RFC 3629 table 3-7.
 */
#include "text/utf8.h"

#include <string.h>

/* Bytes a lead byte announces (0 for a continuation or invalid lead byte). */
static size_t utf8_lead_len(uint8_t c) {
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

/* Valid range of the second byte for a given lead byte (RFC 3629 table). */
static bool utf8_second_ok(uint8_t lead, uint8_t c) {
    switch (lead) {
    case 0xE0: return c >= 0xA0 && c <= 0xBF;
    case 0xED: return c >= 0x80 && c <= 0x9F;
    case 0xF0: return c >= 0x90 && c <= 0xBF;
    case 0xF4: return c >= 0x80 && c <= 0x8F;
    default: return c >= 0x80 && c <= 0xBF;
    }
}

size_t utf8_decode(const char *s, size_t n, uint32_t *cp) {
    *cp = UTF8_REPLACEMENT;
    if (n == 0) return 0;
    const uint8_t *u = (const uint8_t *)s;
    size_t len = utf8_lead_len(u[0]);
    if (len == 0 || len > n) return 0;
    if (len == 1) {
        *cp = u[0];
        return 1;
    }
    if (!utf8_second_ok(u[0], u[1])) return 0;
    for (size_t i = 2; i < len; i++)
        if ((u[i] & 0xC0) != 0x80) return 0;
    uint32_t v;
    if (len == 2) v = (uint32_t)(u[0] & 0x1F) << 6 | (u[1] & 0x3F);
    else if (len == 3) v = (uint32_t)(u[0] & 0x0F) << 12 | (uint32_t)(u[1] & 0x3F) << 6 | (u[2] & 0x3F);
    else v = (uint32_t)(u[0] & 0x07) << 18 | (uint32_t)(u[1] & 0x3F) << 12 |
             (uint32_t)(u[2] & 0x3F) << 6 | (u[3] & 0x3F);
    *cp = v;
    return len;
}

size_t utf8_char_len(const char *s, size_t n) {
    if (n == 0) return 0;
    if ((uint8_t)s[0] < 0x80) return 1;
    uint32_t cp;
    size_t len = utf8_decode(s, n, &cp);
    return len ? len : 1;
}

bool utf8_valid(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if ((uint8_t)s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t len = utf8_decode(s + i, n - i, &cp);
        if (len == 0) return false;
        i += len;
    }
    return true;
}

size_t utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp > 0x10FFFF) return 0;
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* True if s[0..n) (n < lead length) is a valid prefix of some sequence. */
static bool utf8_valid_prefix(const uint8_t *s, size_t n) {
    size_t len = utf8_lead_len(s[0]);
    if (len <= 1 || n >= len) return false;
    if (n >= 2 && !utf8_second_ok(s[0], s[1])) return false;
    for (size_t i = 2; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return false;
    return true;
}

size_t utf8_incomplete_tail(const char *s, size_t n) {
    const uint8_t *u = (const uint8_t *)s;
    /* The held-back part starts at a lead byte at most 3 bytes from the end. */
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        uint8_t c = u[n - k];
        if ((c & 0xC0) == 0x80) continue; /* continuation: look further back */
        return utf8_valid_prefix(u + n - k, k) ? k : 0;
    }
    return 0;
}

void utf8_stream_init(utf8_stream *st) {
    memset(st, 0, sizeof(*st));
}

size_t utf8_stream_push(utf8_stream *st, const char *in, size_t n, char *out) {
    size_t total = st->n_held + n;
    memcpy(out, st->held, st->n_held);
    memcpy(out + st->n_held, in, n);
    size_t keep = utf8_incomplete_tail(out, total);
    memcpy(st->held, out + total - keep, keep);
    st->n_held = keep;
    return total - keep;
}

size_t utf8_stream_flush(utf8_stream *st, char *out) {
    size_t n = st->n_held;
    memcpy(out, st->held, n);
    st->n_held = 0;
    return n;
}
