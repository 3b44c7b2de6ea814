/*
 * util.c - see util.h.
 */
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

bool sbuf_add(sbuf *b, const char *s, size_t n) {
    if (b->oom) return false;
    if (n >= SIZE_MAX / 2 - b->n) { b->oom = true; return false; }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) { b->oom = true; return false; }
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return true;
}

bool sbuf_adds(sbuf *b, const char *s) { return sbuf_add(b, s, strlen(s)); }

void sbuf_consume(sbuf *b, size_t n) {
    if (n >= b->n) { b->n = 0; if (b->p) b->p[0] = '\0'; return; }
    memmove(b->p, b->p + n, b->n - n);
    b->n -= n;
    b->p[b->n] = '\0';
}

void sbuf_free(sbuf *b) {
    free(b->p);
    *b = (sbuf){0};
}

/* Length of the valid UTF-8 sequence at s (n bytes available), 0 if invalid. */
static size_t utf8_valid_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    return len;
}

bool sbuf_add_utf8(sbuf *b, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0; /* run: start of the pending valid bytes */
    while (i < n) {
        size_t k = utf8_valid_len(u + i, n - i);
        if (k == 0) {
            if (!sbuf_add(b, s + run, i - run) || !sbuf_add(b, "\xEF\xBF\xBD", 3)) return false;
            i++;
            run = i;
        } else {
            i += k;
        }
    }
    return sbuf_add(b, s + run, n - run);
}

bool srv_parse_size(const char *s, uint64_t *out) {
    if (!s) return false;
    if (!strcmp(s, "auto")) { *out = 0; return true; }
    if (!strcmp(s, "unlimited")) { *out = UINT64_MAX; return true; }
    if (!(*s >= '0' && *s <= '9')) return false;
    uint64_t v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    unsigned shift = 0;
    switch (*s) {
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    case 't': case 'T': shift = 40; break;
    default: break;
    }
    if (shift) {
        s++;
        if (!strcmp(s, "B") || !strcmp(s, "iB")) s += strlen(s);
        if (v > (UINT64_MAX >> shift)) return false;
    }
    if (*s) return false;
    *out = v << shift;
    return true;
}

double srv_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
