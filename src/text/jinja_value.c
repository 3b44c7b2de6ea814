/*
 * jinja_value.c - the value model of the Jinja module: the arena every parse
 * and render allocates from, byte buffers, strings/lists/dicts, and Python's
 * semantics for truth, equality, ordering, str(), repr() and json.dumps().
 *
 * Dicts keep insertion order (as Python's do) and build a hash index once
 * they grow past a few keys, so hostile JSON with many keys stays linear.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja_int.h"
#include "text/utf8.h"

/* ---- failure ---- */

void jfail_raise(jfail *f, mica_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    f->err->status = st;
    vsnprintf(f->err->msg, sizeof f->err->msg, fmt, ap);
    va_end(ap);
    longjmp(f->jb, 1);
}

/* ---- arena ---- */

#define JARENA_CHUNK ((size_t)64 * 1024)

struct jarena_chunk {
    jarena_chunk *next;
    size_t cap, used;
    max_align_t data[];
};

void jarena_init(jarena *a, size_t limit, jfail *fail) {
    a->head = NULL;
    a->total = 0;
    a->limit = limit;
    a->fail = fail;
}

void jarena_free(jarena *a) {
    jarena_chunk *c = a->head;
    while (c) {
        jarena_chunk *next = c->next;
        mica_free(c);
        c = next;
    }
    a->head = NULL;
    a->total = 0;
}

void *jarena_alloc(jarena *a, size_t n) {
    const size_t align = sizeof(max_align_t);
    if (n > SIZE_MAX - align) jfail_raise(a->fail, MICA_ERR_LIMIT, "allocation too large");
    n = (n + align - 1) / align * align;
    jarena_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > JARENA_CHUNK / 4 ? n : JARENA_CHUNK;
        size_t bytes = sizeof(jarena_chunk) + cap;
        if (bytes < cap || a->total + bytes < a->total || a->total + bytes > a->limit)
            jfail_raise(a->fail, MICA_ERR_LIMIT, "memory limit of %zu bytes exceeded", a->limit);
        jarena_chunk *nc = mica_malloc(bytes);
        if (!nc) jfail_raise(a->fail, MICA_ERR_NOMEM, "out of memory (%zu bytes)", bytes);
        a->total += bytes;
        nc->cap = cap;
        nc->used = 0;
        if (c && cap != JARENA_CHUNK && c->cap - c->used > JARENA_CHUNK / 8) {
            /* A big one-off block: keep the current chunk in front for small allocations. */
            nc->next = c->next;
            c->next = nc;
            nc->used = n;
            return (char *)nc->data;
        }
        nc->next = c;
        a->head = c = nc;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

void *jarena_array(jarena *a, size_t n, size_t size) {
    size_t bytes;
    if (!mica_size_mul_ok(n, size, &bytes)) jfail_raise(a->fail, MICA_ERR_LIMIT, "array too large");
    return jarena_alloc(a, bytes);
}

char *jarena_strdup(jarena *a, const char *s, size_t n) {
    if (n == SIZE_MAX) jfail_raise(a->fail, MICA_ERR_LIMIT, "string too large");
    char *p = jarena_alloc(a, n + 1);
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* ---- buffers ---- */

void jbuf_init(jbuf *b, jarena *a, size_t limit) {
    b->p = NULL;
    b->n = b->cap = 0;
    b->limit = limit;
    b->a = a;
}

static void jbuf_reserve(jbuf *b, size_t extra) {
    if (extra > b->limit || b->n > b->limit - extra)
        jfail_raise(b->a->fail, MICA_ERR_LIMIT, "output limit of %zu bytes exceeded", b->limit);
    size_t need = b->n + extra + 1;
    if (need <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = jarena_alloc(b->a, cap);
    if (b->n) memcpy(p, b->p, b->n);
    b->p = p;
    b->cap = cap;
}

void jbuf_put(jbuf *b, const char *s, size_t n) {
    if (n == 0) return;
    jbuf_reserve(b, n);
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void jbuf_putc(jbuf *b, char c) { jbuf_put(b, &c, 1); }

void jbuf_printf(jbuf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    jbuf_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

jv jbuf_value(jbuf *b) {
    if (!b->p) return jv_strn("", 0);
    return jv_strn(b->p, b->n);
}

/* ---- constructors ---- */

jv jv_str_copy(jarena *a, const char *s, size_t n) { return jv_strn(jarena_strdup(a, s, n), n); }
jv jv_cstr(jarena *a, const char *s) { return jv_str_copy(a, s, strlen(s)); }

jv jv_list_new(jarena *a, size_t cap) {
    jlist *l = jarena_alloc(a, sizeof *l);
    l->n = 0;
    l->cap = cap;
    l->is_tuple = false;
    l->is_gen = false;
    l->v = cap ? jarena_array(a, cap, sizeof(jv)) : NULL;
    jv v = {.type = JV_LIST};
    v.u.l = l;
    return v;
}

jv jv_dict_new(jarena *a) {
    jdict *d = jarena_alloc(a, sizeof *d);
    memset(d, 0, sizeof *d);
    jv v = {.type = JV_DICT};
    v.u.d = d;
    return v;
}

void jlist_push(jarena *a, jlist *l, jv v) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        jv *nv = jarena_array(a, cap, sizeof(jv));
        if (l->n) memcpy(nv, l->v, l->n * sizeof(jv));
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = v;
}

/* ---- dict ---- */

#define JDICT_INDEX_MIN 8
/* Deepest nesting of lists/dicts that equality, ordering, hashing and printing walk
 * (templates can build deeper values, e.g. `set ns.x = [ns.x]` in a loop). */
#define JV_MAX_NEST 200

/* Hash consistent with jv_equal for hashable keys: 1, 1.0 and True collide. Returns false
 * for unhashable values (lists, dicts). */
static bool jv_hash_depth(jv k, uint64_t *h, int depth) {
    switch (k.type) {
    case JV_STR: {
        uint64_t x = 1469598103934665603ull;
        for (size_t i = 0; i < k.u.s.n; i++) x = (x ^ (unsigned char)k.u.s.p[i]) * 1099511628211ull;
        *h = x;
        return true;
    }
    case JV_BOOL: *h = (uint64_t)k.u.b * 0x9E3779B97F4A7C15ull; return true;
    case JV_INT: *h = (uint64_t)k.u.i * 0x9E3779B97F4A7C15ull; return true;
    case JV_FLOAT:
        if (k.u.f == floor(k.u.f) && fabs(k.u.f) < 9.2e18) {
            *h = (uint64_t)(int64_t)k.u.f * 0x9E3779B97F4A7C15ull;
        } else {
            uint64_t bits;
            memcpy(&bits, &k.u.f, sizeof bits);
            *h = bits * 0x9E3779B97F4A7C15ull;
        }
        return true;
    case JV_NONE: *h = 0x1234567ull; return true;
    case JV_UNDEF: *h = 0x7654321ull; return true;
    case JV_LIST:
        if (k.u.l->is_tuple && depth < JV_MAX_NEST) {
            uint64_t x = 0x345678ull;
            for (size_t i = 0; i < k.u.l->n; i++) {
                uint64_t e;
                if (!jv_hash_depth(k.u.l->v[i], &e, depth + 1)) return false;
                x = (x ^ e) * 1099511628211ull;
            }
            *h = x;
            return true;
        }
        return false;
    default: return false;
    }
}

static bool jv_hash(jv k, uint64_t *h) { return jv_hash_depth(k, h, 0); }

static void jdict_reindex(jarena *a, jdict *d, size_t cap) {
    d->idx = jarena_array(a, cap, sizeof(uint32_t));
    memset(d->idx, 0, cap * sizeof(uint32_t));
    d->idx_cap = cap;
    for (size_t i = 0; i < d->n; i++) {
        uint64_t h = 0;
        jv_hash(d->keys[i], &h);
        size_t s = (size_t)h & (cap - 1);
        while (d->idx[s]) s = (s + 1) & (cap - 1);
        d->idx[s] = (uint32_t)(i + 1);
    }
}

/* Index of key in d, or SIZE_MAX. */
static size_t jdict_find(const jdict *d, jv key) {
    if (d->idx) {
        uint64_t h;
        if (!jv_hash(key, &h)) return SIZE_MAX;
        size_t s = (size_t)h & (d->idx_cap - 1);
        while (d->idx[s]) {
            size_t i = d->idx[s] - 1;
            if (jv_equal(d->keys[i], key)) return i;
            s = (s + 1) & (d->idx_cap - 1);
        }
        return SIZE_MAX;
    }
    for (size_t i = 0; i < d->n; i++)
        if (jv_equal(d->keys[i], key)) return i;
    return SIZE_MAX;
}

void jdict_set(jarena *a, jfail *f, jdict *d, jv key, jv val) {
    uint64_t h;
    if (!jv_hash(key, &h)) jfail_raise(f, MICA_ERR_FORMAT, "unhashable type: '%s'", jv_type_name(key));
    size_t i = jdict_find(d, key);
    if (i != SIZE_MAX) {
        d->vals[i] = val;
        return;
    }
    if (d->n >= UINT32_MAX - 1) jfail_raise(f, MICA_ERR_LIMIT, "dict too large");
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        jv *nk = jarena_array(a, cap, sizeof(jv));
        jv *nv = jarena_array(a, cap, sizeof(jv));
        if (d->n) {
            memcpy(nk, d->keys, d->n * sizeof(jv));
            memcpy(nv, d->vals, d->n * sizeof(jv));
        }
        d->keys = nk;
        d->vals = nv;
        d->cap = cap;
    }
    d->keys[d->n] = key;
    d->vals[d->n] = val;
    d->n++;
    if (d->idx) {
        if (d->n * 2 > d->idx_cap) {
            jdict_reindex(a, d, d->idx_cap * 2);
        } else {
            size_t s = (size_t)h & (d->idx_cap - 1);
            while (d->idx[s]) s = (s + 1) & (d->idx_cap - 1);
            d->idx[s] = (uint32_t)d->n;
        }
    } else if (d->n > JDICT_INDEX_MIN) {
        jdict_reindex(a, d, 32);
    }
}

bool jdict_get(const jdict *d, jv key, jv *out) {
    size_t i = jdict_find(d, key);
    if (i == SIZE_MAX) return false;
    *out = d->vals[i];
    return true;
}

bool jdict_get_str(const jdict *d, const char *k, size_t n, jv *out) {
    return jdict_get(d, jv_strn(k, n), out);
}

/* ---- truth, equality, order ---- */

bool jv_truthy(jv v) {
    switch (v.type) {
    case JV_UNDEF: case JV_NONE: return false;
    case JV_BOOL: return v.u.b;
    case JV_INT: return v.u.i != 0;
    case JV_FLOAT: return v.u.f != 0.0;
    case JV_STR: return v.u.s.n != 0;
    case JV_LIST: return v.u.l->is_gen || v.u.l->n != 0;
    case JV_DICT: return v.u.d->n != 0;
    default: return true;
    }
}

static double jv_num(jv v) {
    return v.type == JV_FLOAT ? v.u.f : v.type == JV_INT ? (double)v.u.i : (double)v.u.b;
}

static bool jv_equal_depth(jv a, jv b, int depth) {
    if (jv_is_num(a) && jv_is_num(b)) {
        if (a.type != JV_FLOAT && b.type != JV_FLOAT) {
            int64_t x = a.type == JV_INT ? a.u.i : a.u.b, y = b.type == JV_INT ? b.u.i : b.u.b;
            return x == y;
        }
        return jv_num(a) == jv_num(b);
    }
    if (a.type != b.type) return false;
    switch (a.type) {
    case JV_UNDEF: case JV_NONE: return true;
    case JV_STR: return a.u.s.n == b.u.s.n && memcmp(a.u.s.p, b.u.s.p, a.u.s.n) == 0;
    case JV_LIST:
        if (a.u.l->is_gen || b.u.l->is_gen) return a.u.l == b.u.l;
        if (a.u.l->is_tuple != b.u.l->is_tuple || a.u.l->n != b.u.l->n) return false;
        if (depth >= JV_MAX_NEST) return a.u.l == b.u.l;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!jv_equal_depth(a.u.l->v[i], b.u.l->v[i], depth + 1)) return false;
        return true;
    case JV_DICT:
        if (a.u.d->n != b.u.d->n) return false;
        if (depth >= JV_MAX_NEST) return a.u.d == b.u.d;
        for (size_t i = 0; i < a.u.d->n; i++) {
            jv o;
            if (!jdict_get(b.u.d, a.u.d->keys[i], &o) || !jv_equal_depth(a.u.d->vals[i], o, depth + 1))
                return false;
        }
        return true;
    case JV_NS: return a.u.d == b.u.d;
    case JV_MACRO: return a.u.m == b.u.m;
    case JV_FUNC: return a.u.fn == b.u.fn;
    case JV_METHOD: return a.u.meth == b.u.meth;
    case JV_LOOP: return a.u.loop == b.u.loop;
    default: return false;
    }
}

bool jv_equal(jv a, jv b) { return jv_equal_depth(a, b, 0); }

static int jv_compare_depth(jfail *f, jv a, jv b, int depth) {
    if (jv_is_num(a) && jv_is_num(b)) {
        if (a.type != JV_FLOAT && b.type != JV_FLOAT) {
            int64_t x = a.type == JV_INT ? a.u.i : a.u.b, y = b.type == JV_INT ? b.u.i : b.u.b;
            return (x > y) - (x < y);
        }
        double x = jv_num(a), y = jv_num(b);
        return (x > y) - (x < y);
    }
    if (a.type == JV_STR && b.type == JV_STR) {
        size_t n = MICA_MIN(a.u.s.n, b.u.s.n);
        int c = n ? memcmp(a.u.s.p, b.u.s.p, n) : 0;
        if (c) return c < 0 ? -1 : 1;
        return (a.u.s.n > b.u.s.n) - (a.u.s.n < b.u.s.n);
    }
    if (a.type == JV_LIST && b.type == JV_LIST && a.u.l->is_tuple == b.u.l->is_tuple) {
        if (depth >= JV_MAX_NEST) jfail_raise(f, MICA_ERR_LIMIT, "values nested too deeply to compare");
        size_t n = MICA_MIN(a.u.l->n, b.u.l->n);
        for (size_t i = 0; i < n; i++) {
            if (jv_equal(a.u.l->v[i], b.u.l->v[i])) continue;
            return jv_compare_depth(f, a.u.l->v[i], b.u.l->v[i], depth + 1);
        }
        return (a.u.l->n > b.u.l->n) - (a.u.l->n < b.u.l->n);
    }
    jfail_raise(f, MICA_ERR_FORMAT, "'<' not supported between instances of '%s' and '%s'",
                jv_type_name(a), jv_type_name(b));
}

int jv_compare(jfail *f, jv a, jv b) { return jv_compare_depth(f, a, b, 0); }

const char *jv_type_name(jv v) {
    switch (v.type) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST: return v.u.l->is_gen ? "generator" : v.u.l->is_tuple ? "tuple" : "list";
    case JV_DICT: return "dict";
    case JV_NS: return "Namespace";
    case JV_MACRO: return "Macro";
    case JV_FUNC: return "function";
    case JV_METHOD: return "builtin_function_or_method";
    case JV_LOOP: return "LoopContext";
    default: return "object";
    }
}

/* ---- text forms ---- */

void jv_format_float(double f, char out[48]) {
    if (isnan(f)) { strcpy(out, "nan"); return; }
    if (isinf(f)) { strcpy(out, f < 0 ? "-inf" : "inf"); return; }
    /* Shortest digits that read back to f, as Python's repr(). */
    char tmp[40];
    int prec = 1;
    for (; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f) break;
    }
    /* tmp = [-]d[.ddd]e[+-]XX */
    char digits[24];
    size_t nd = 0;
    const char *p = tmp;
    bool neg = false;
    if (*p == '-') { neg = true; p++; }
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9' && nd < sizeof digits - 1) digits[nd++] = *p;
    int exp10 = *p == 'e' ? atoi(p + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = '\0';
    int decpt = exp10 + 1;
    char *o = out;
    if (neg) *o++ = '-';
    if (decpt <= -4 || decpt > 16) {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, nd - 1);
            o += nd - 1;
        }
        int e = exp10 < 0 ? -exp10 : exp10;
        *o++ = 'e';
        *o++ = exp10 < 0 ? '-' : '+';
        if (e >= 100) *o++ = (char)('0' + e / 100);
        *o++ = (char)('0' + e / 10 % 10);
        *o++ = (char)('0' + e % 10);
        *o = '\0';
        return;
    }
    if (decpt <= 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -decpt; i++) *o++ = '0';
        memcpy(o, digits, nd);
        o += nd;
    } else if ((size_t)decpt >= nd) {
        memcpy(o, digits, nd);
        o += nd;
        for (size_t i = nd; i < (size_t)decpt; i++) *o++ = '0';
        *o++ = '.';
        *o++ = '0';
    } else {
        memcpy(o, digits, (size_t)decpt);
        o += decpt;
        *o++ = '.';
        memcpy(o, digits + decpt, nd - (size_t)decpt);
        o += nd - (size_t)decpt;
    }
    *o = '\0';
}

static void write_str_repr(jbuf *b, jstr s) {
    bool has_sq = memchr(s.p, '\'', s.n) != NULL, has_dq = memchr(s.p, '"', s.n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    jbuf_putc(b, q);
    size_t i = 0;
    while (i < s.n) {
        unsigned char c = (unsigned char)s.p[i];
        if (c < 0x80) {
            if (c == '\\' || c == (unsigned char)q) { jbuf_putc(b, '\\'); jbuf_putc(b, (char)c); }
            else if (c == '\n') jbuf_put(b, "\\n", 2);
            else if (c == '\r') jbuf_put(b, "\\r", 2);
            else if (c == '\t') jbuf_put(b, "\\t", 2);
            else if (c < 0x20 || c == 0x7f) jbuf_printf(b, "\\x%02x", c);
            else jbuf_putc(b, (char)c);
            i++;
            continue;
        }
        uint32_t cp;
        size_t len = utf8_decode(s.p + i, s.n - i, &cp);
        if (len == 0) { /* invalid byte: Python would hold a surrogate escape */
            jbuf_printf(b, "\\udc%02x", c);
            i++;
            continue;
        }
        if (cp <= 0xa0 || cp == 0xad) jbuf_printf(b, "\\x%02x", cp);
        else if (cp == 0x2028 || cp == 0x2029) jbuf_printf(b, "\\u%04x", cp);
        else jbuf_put(b, s.p + i, len);
        i += len;
    }
    jbuf_putc(b, q);
}

static void write_repr_depth(jbuf *b, jv v, int depth);

static void write_seq(jbuf *b, jv v, int depth) {
    const jlist *l = v.u.l;
    jbuf_putc(b, l->is_tuple ? '(' : '[');
    for (size_t i = 0; i < l->n; i++) {
        if (i) jbuf_put(b, ", ", 2);
        write_repr_depth(b, l->v[i], depth + 1);
    }
    if (l->is_tuple && l->n == 1) jbuf_putc(b, ',');
    jbuf_putc(b, l->is_tuple ? ')' : ']');
}

static void write_dict(jbuf *b, const jdict *d, int depth) {
    jbuf_putc(b, '{');
    for (size_t i = 0; i < d->n; i++) {
        if (i) jbuf_put(b, ", ", 2);
        write_repr_depth(b, d->keys[i], depth + 1);
        jbuf_put(b, ": ", 2);
        write_repr_depth(b, d->vals[i], depth + 1);
    }
    jbuf_putc(b, '}');
}

static void write_str_depth(jbuf *b, jv v, int depth);

static void write_repr_depth(jbuf *b, jv v, int depth) {
    if (v.type == JV_STR) write_str_repr(b, v.u.s);
    else if (v.type == JV_UNDEF) jbuf_put(b, "Undefined", 9);
    else write_str_depth(b, v, depth);
}

void jv_write_repr(jbuf *b, jv v) { write_repr_depth(b, v, 0); }
void jv_write_str(jbuf *b, jv v) { write_str_depth(b, v, 0); }

static void write_str_depth(jbuf *b, jv v, int depth) {
    char tmp[48];
    if (depth > JV_MAX_NEST) jfail_raise(b->a->fail, MICA_ERR_LIMIT, "value nested too deeply to print");
    switch (v.type) {
    case JV_UNDEF: return;
    case JV_NONE: jbuf_put(b, "None", 4); return;
    case JV_BOOL: jbuf_put(b, v.u.b ? "True" : "False", v.u.b ? 4 : 5); return;
    case JV_INT: jbuf_printf(b, "%lld", (long long)v.u.i); return;
    case JV_FLOAT: jv_format_float(v.u.f, tmp); jbuf_put(b, tmp, strlen(tmp)); return;
    case JV_STR: jbuf_put(b, v.u.s.p, v.u.s.n); return;
    case JV_LIST:
        if (v.u.l->is_gen) jbuf_put(b, "<generator object>", 18);
        else write_seq(b, v, depth);
        return;
    case JV_DICT: write_dict(b, v.u.d, depth); return;
    case JV_NS: jbuf_put(b, "<Namespace ", 11); write_dict(b, v.u.d, depth); jbuf_putc(b, '>'); return;
    case JV_MACRO: jbuf_put(b, "<Macro>", 7); return;
    case JV_FUNC: jbuf_put(b, "<function>", 10); return;
    case JV_METHOD: jbuf_put(b, "<built-in method>", 17); return;
    case JV_LOOP: jbuf_put(b, "<LoopContext>", 13); return;
    default: return;
    }
}

jv jv_to_str(jarena *a, jv v) {
    if (v.type == JV_STR) return v;
    if (v.type == JV_UNDEF) return jv_strn("", 0);
    jbuf b;
    jbuf_init(&b, a, SIZE_MAX / 2);
    jv_write_str(&b, v);
    return jbuf_value(&b);
}

/* ---- JSON output ---- */

size_t jinja_json_quote_bound(size_t n) {
    size_t r;
    if (!mica_size_mul_ok(n, 6, &r) || r > SIZE_MAX - 2) return 0;
    return r + 2;
}

size_t jinja_json_quote(const char *s, size_t n, char *dst) {
    static const char hex[] = "0123456789abcdef";
    char *o = dst;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': *o++ = '\\'; *o++ = '"'; break;
        case '\\': *o++ = '\\'; *o++ = '\\'; break;
        case '\n': *o++ = '\\'; *o++ = 'n'; break;
        case '\r': *o++ = '\\'; *o++ = 'r'; break;
        case '\t': *o++ = '\\'; *o++ = 't'; break;
        case '\b': *o++ = '\\'; *o++ = 'b'; break;
        case '\f': *o++ = '\\'; *o++ = 'f'; break;
        default:
            if (c < 0x20) {
                memcpy(o, "\\u00", 4);
                o[4] = hex[c >> 4];
                o[5] = hex[c & 15];
                o += 6;
            } else {
                *o++ = (char)c;
            }
        }
    }
    *o++ = '"';
    return (size_t)(o - dst);
}

static void json_put_str(jbuf *b, jstr s, bool ensure_ascii) {
    /* Quoted in pieces so that no scratch larger than tmp is needed. */
    size_t i = 0;
    char tmp[6 * 256 + 2];
    jbuf_putc(b, '"');
    while (i < s.n) {
        if (ensure_ascii && (unsigned char)s.p[i] >= 0x80) {
            uint32_t cp;
            size_t len = utf8_decode(s.p + i, s.n - i, &cp);
            if (len == 0) len = 1;
            if (cp >= 0x10000) {
                cp -= 0x10000;
                jbuf_printf(b, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
            } else {
                jbuf_printf(b, "\\u%04x", cp);
            }
            i += len;
            continue;
        }
        size_t k = 0;
        while (k < 256 && i + k < s.n && !(ensure_ascii && (unsigned char)s.p[i + k] >= 0x80)) k++;
        size_t w = jinja_json_quote(s.p + i, k, tmp);
        jbuf_put(b, tmp + 1, w - 2);
        i += k;
    }
    jbuf_putc(b, '"');
}

static void json_newline(jbuf *b, const jstr *indent, int level) {
    jbuf_putc(b, '\n');
    for (int i = 0; i < level; i++) jbuf_put(b, indent->p, indent->n);
}

static void json_put_key(jbuf *b, jfail *f, jv k, bool ea) {
    char tmp[48];
    switch (k.type) {
    case JV_STR: json_put_str(b, k.u.s, ea); return;
    case JV_BOOL: json_put_str(b, k.u.b ? (jstr){"true", 4} : (jstr){"false", 5}, ea); return;
    case JV_NONE: json_put_str(b, (jstr){"null", 4}, ea); return;
    case JV_INT: snprintf(tmp, sizeof tmp, "%lld", (long long)k.u.i); break;
    case JV_FLOAT:
        if (isnan(k.u.f)) strcpy(tmp, "NaN");
        else if (isinf(k.u.f)) strcpy(tmp, k.u.f < 0 ? "-Infinity" : "Infinity");
        else jv_format_float(k.u.f, tmp);
        break;
    default:
        jfail_raise(f, MICA_ERR_FORMAT, "keys must be str, int, float, bool or None, not %s",
                    jv_type_name(k));
    }
    json_put_str(b, (jstr){tmp, strlen(tmp)}, ea);
}

static int json_key_cmp(const void *x, const void *y) {
    const jv *a = *(const jv *const *)x, *b = *(const jv *const *)y;
    size_t n = MICA_MIN(a->u.s.n, b->u.s.n);
    int c = n ? memcmp(a->u.s.p, b->u.s.p, n) : 0;
    return c ? c : (a->u.s.n > b->u.s.n) - (a->u.s.n < b->u.s.n);
}

static void json_write(jbuf *b, jfail *f, jv v, const jjson_opts *o, int level) {
    char tmp[48];
    if (level > JINJA_MAX_JSON_DEPTH) jfail_raise(f, MICA_ERR_LIMIT, "value nested too deeply for tojson");
    switch (v.type) {
    case JV_NONE: jbuf_put(b, "null", 4); return;
    case JV_BOOL: jbuf_put(b, v.u.b ? "true" : "false", v.u.b ? 4 : 5); return;
    case JV_INT: jbuf_printf(b, "%lld", (long long)v.u.i); return;
    case JV_FLOAT:
        if (isnan(v.u.f)) jbuf_put(b, "NaN", 3);
        else if (isinf(v.u.f)) jbuf_put(b, v.u.f < 0 ? "-Infinity" : "Infinity", v.u.f < 0 ? 9 : 8);
        else { jv_format_float(v.u.f, tmp); jbuf_put(b, tmp, strlen(tmp)); }
        return;
    case JV_STR: json_put_str(b, v.u.s, o->ensure_ascii); return;
    case JV_LIST: {
        const jlist *l = v.u.l;
        if (l->is_gen) jfail_raise(f, MICA_ERR_FORMAT, "Object of type generator is not JSON serializable");
        if (l->n == 0) { jbuf_put(b, "[]", 2); return; }
        jbuf_putc(b, '[');
        for (size_t i = 0; i < l->n; i++) {
            if (i) jbuf_put(b, o->item_sep.p, o->item_sep.n);
            if (o->indent) json_newline(b, o->indent, level + 1);
            json_write(b, f, l->v[i], o, level + 1);
        }
        if (o->indent) json_newline(b, o->indent, level);
        jbuf_putc(b, ']');
        return;
    }
    case JV_DICT: {
        const jdict *d = v.u.d;
        if (d->n == 0) { jbuf_put(b, "{}", 2); return; }
        const jv **order = jarena_array(b->a, d->n, sizeof *order);
        bool all_str = true;
        for (size_t i = 0; i < d->n; i++) {
            order[i] = &d->keys[i];
            all_str &= d->keys[i].type == JV_STR;
        }
        if (o->sort_keys) {
            if (!all_str) jfail_raise(f, MICA_ERR_UNSUPPORTED, "tojson(sort_keys=true) needs string keys");
            qsort(order, d->n, sizeof *order, json_key_cmp);
        }
        jbuf_putc(b, '{');
        for (size_t i = 0; i < d->n; i++) {
            size_t k = (size_t)(order[i] - d->keys);
            if (i) jbuf_put(b, o->item_sep.p, o->item_sep.n);
            if (o->indent) json_newline(b, o->indent, level + 1);
            json_put_key(b, f, d->keys[k], o->ensure_ascii);
            jbuf_put(b, o->key_sep.p, o->key_sep.n);
            json_write(b, f, d->vals[k], o, level + 1);
        }
        if (o->indent) json_newline(b, o->indent, level);
        jbuf_putc(b, '}');
        return;
    }
    default:
        jfail_raise(f, MICA_ERR_FORMAT, "Object of type %s is not JSON serializable", jv_type_name(v));
    }
}

jjson_opts jjson_opts_default(const jstr *indent) {
    jjson_opts o = {.indent = indent, .item_sep = {", ", 2}, .key_sep = {": ", 2}};
    if (indent) o.item_sep.n = 1;
    return o;
}

void jv_write_json(jbuf *b, jfail *f, jv v, const jjson_opts *o) { json_write(b, f, v, o, 0); }
/* ---- UTF-8 helpers ---- */

size_t jstr_cp_len(jstr s) {
    size_t n = 0;
    for (size_t i = 0; i < s.n; n++) i += utf8_char_len(s.p + i, s.n - i);
    return n;
}

size_t jstr_cp_offset(jstr s, size_t idx) {
    size_t i = 0;
    for (size_t k = 0; k < idx && i < s.n; k++) i += utf8_char_len(s.p + i, s.n - i);
    return i;
}

bool jcp_is_space(uint32_t cp) {
    if (cp < 0x80) return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20);
    return cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

size_t jstr_space_prefix(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t len = utf8_decode(s + i, n - i, &cp);
        if (len == 0 || !jcp_is_space(cp)) break;
        i += len;
    }
    return i;
}

size_t jstr_space_suffix(const char *s, size_t n) {
    size_t end = n;
    while (end > 0) {
        size_t start = end - 1;
        while (start > 0 && end - start < 4 && ((unsigned char)s[start] & 0xC0) == 0x80) start--;
        uint32_t cp;
        size_t len = utf8_decode(s + start, end - start, &cp);
        if (len != end - start || !jcp_is_space(cp)) break;
        end = start;
    }
    return n - end;
}
