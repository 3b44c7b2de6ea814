/*
 * args.c - option parsing helpers for the mica command-line tool.
 */
#include "args.h"

#include "mica.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("mica: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

const char *cli_next(cli_args *a) { return a->i < a->argc ? a->argv[a->i++] : NULL; }

const char *cli_value(cli_args *a, const char *opt) {
    if (a->i >= a->argc) {
        cli_error("option %s needs a value", opt);
        a->failed = true;
        return NULL;
    }
    return a->argv[a->i++];
}

bool cli_parse_i64(const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out) {
    if (!s) return false;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0') {
        cli_error("%s: '%s' is not an integer", opt, s);
        return false;
    }
    if (v < lo || v > hi) {
        cli_error("%s: %lld is out of range (%lld..%lld)", opt, v, (long long)lo, (long long)hi);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_u64(const char *opt, const char *s, uint64_t *out) {
    if (!s) return false;
    char *end = NULL;
    errno = 0;
    if (*s == '-') { cli_error("%s: '%s' must not be negative", opt, s); return false; }
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end != '\0') {
        cli_error("%s: '%s' is not an unsigned integer", opt, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_f32(const char *opt, const char *s, double lo, double hi, float *out) {
    if (!s) return false;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v)) {
        cli_error("%s: '%s' is not a number", opt, s);
        return false;
    }
    if (v < lo || v > hi) {
        cli_error("%s: %g is out of range (%g..%g)", opt, v, lo, hi);
        return false;
    }
    *out = (float)v;
    return true;
}

bool cli_parse_size(const char *opt, const char *s, uint64_t *out) {
    if (!s) return false;
    if (!strcmp(s, "auto")) { *out = 0; return true; }
    if (!strcmp(s, "unlimited")) { *out = UINT64_MAX; return true; }
    char *end = NULL;
    errno = 0;
    if (*s == '-' || !(*s >= '0' && *s <= '9')) { cli_error("%s: '%s' is not a size (e.g. 4G, 512M)", opt, s); return false; }
    unsigned long long v = strtoull(s, &end, 10);
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: break;
    }
    if (shift && (!strcmp(end, "iB") || !strcmp(end, "B"))) end += strlen(end);
    if (errno || *end != '\0' || (shift && v > (UINT64_MAX >> shift))) {
        cli_error("%s: '%s' is not a size (e.g. 4G, 512M, or bytes)", opt, s);
        return false;
    }
    *out = (uint64_t)v << shift;
    return true;
}

void cli_print_model_note(const struct mica_model *m) {
    const char *note = mica_model_note(m);
    if (note && *note) fprintf(stderr, "mica: note: %s\n", note);
}

void cli_print_expert_stats(const struct mica_model *m, const char *label, int n_tokens,
                            struct mica_expert_stats *prev) {
    mica_expert_stats s;
    mica_model_expert_stats(m, &s);
    if (!s.streaming) {
        if (!prev->budget) fprintf(stderr, "experts: not streamed (the whole model is mapped)\n");
        prev->budget = 1;
        return;
    }
    const uint64_t look = s.lookups - prev->lookups, hits = s.hits - prev->hits;
    const uint64_t bytes = s.bytes_read - prev->bytes_read;
    const double busy = s.io_busy_seconds - prev->io_busy_seconds, stall = s.stall_seconds - prev->stall_seconds;
    fprintf(stderr,
            "%s: %d tokens | experts %llu looked up, hit rate %.1f%% (cached %.1f%%, prefetched %.1f%%) | "
            "read %.2f MiB at %.2f GB/s | "
            "I/O stall %.1f ms | prefetch %llu/%llu used | cache %d/%d slots (%.1f MiB, %d pinned) | %s\n",
            label, n_tokens, (unsigned long long)look, look ? 100.0 * (double)hits / (double)look : 100.0,
            look ? 100.0 * (double)(hits - (s.prefetch_used - prev->prefetch_used)) / (double)look : 100.0,
            look ? 100.0 * (double)(s.prefetch_used - prev->prefetch_used) / (double)look : 0.0,
            (double)bytes / 1048576.0, busy > 0 ? (double)bytes / busy / 1e9 : 0.0, stall * 1e3,
            (unsigned long long)(s.prefetch_used - prev->prefetch_used),
            (unsigned long long)(s.prefetch_reads - prev->prefetch_reads),
            s.cached_experts, s.n_slots, (double)s.cache_bytes / 1048576.0, s.pinned_experts,
            s.io_uring ? "io_uring" : "pread threads");
    *prev = s;
}

bool cli_parse_ids(const char *opt, const char *s, int32_t **ids, int32_t *n) {
    size_t cap = 16, len = 0;
    int32_t *a = malloc(cap * sizeof *a);
    if (!a) { cli_error("out of memory"); return false; }
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        char *end = NULL;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (errno || end == p || v < 0 || v > INT32_MAX || (*end && !strchr(" ,\t\n", *end))) {
            cli_error("%s: bad token id near '%.20s'", opt, p);
            free(a);
            return false;
        }
        if (len == cap) {
            int32_t *b = realloc(a, (cap *= 2) * sizeof *a);
            if (!b) { free(a); cli_error("out of memory"); return false; }
            a = b;
        }
        a[len++] = (int32_t)v;
        p = end;
    }
    if (len == 0 || len > INT32_MAX) {
        cli_error("%s: no token ids given", opt);
        free(a);
        return false;
    }
    *ids = a;
    *n = (int32_t)len;
    return true;
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
