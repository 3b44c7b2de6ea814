/*
 * gguf.c - the GGUF v2/v3 reader: maps a file (or borrows a memory image),
 * validates all of it once at open (FORMATS.md 1.5, checklist items 1-17),
 * then answers lookups from the immutable context. Layer: gguf.
 *
 * Layout of the context: kvs and tensor infos in file order, plus a sorted
 * pointer array of each for O(log n) lookup and the duplicate check. Arrays of
 * variable-size elements (strings, nested arrays) get an offset table in
 * `pool` (one entry per string element, two per nested-array element: its
 * offset and its own table index), so gguf_arr_get is O(1). `tabs[k-1]` is
 * the pool position of table k; gguf_value.v.arr.index holds k (0 = none).
 *
 * Invariant: every offset stored in the context is < size and every view the
 * getters return lies inside [base, base + size); the parser establishes
 * this, the getters rely on it.
 */
#include "gguf/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tensor/dtype.h"

#define GGUF_MAGIC_LEN 4
#define GGUF_MIN_KV_BYTES 14      /* key len 8 + key 1 + type 4 + smallest value 1 */
#define GGUF_MIN_TENSOR_BYTES 33  /* name len 8 + name 1 + n_dims 4 + ne 8 + type 4 + offset 8 */
#define GGUF_ARRAY_HEADER_BYTES 12 /* elem type 4 + count 8 */

struct gguf_ctx {
    char *path;            /* name used in messages (copy) */
    const uint8_t *base;   /* the image */
    uint64_t size;         /* bytes at base */
    void *map;             /* mmap'd region to unmap, or NULL for memory images */
    size_t map_len;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
    uint64_t n_kv;
    gguf_kv *kv;             /* [n_kv], file order */
    const gguf_kv **kv_sorted; /* [n_kv], by key bytes (see key_cmp) */
    uint64_t n_tensors;
    gguf_tensor *tensors;    /* [n_tensors], file order */
    const gguf_tensor **t_sorted; /* [n_tensors], by name */
    uint64_t *pool;          /* offset tables of variable-size arrays */
    uint64_t pool_len, pool_cap;
    uint64_t *tabs;          /* tabs[k-1] = pool position of table k */
    uint32_t n_tabs, cap_tabs;
};

/* Bytes of one fixed-size metadata element; 0 for STRING and ARRAY. */
static const uint8_t gguf_type_size[GGUF_TYPE_COUNT] = {
    [GGUF_TYPE_UINT8] = 1, [GGUF_TYPE_INT8] = 1, [GGUF_TYPE_UINT16] = 2,
    [GGUF_TYPE_INT16] = 2, [GGUF_TYPE_UINT32] = 4, [GGUF_TYPE_INT32] = 4,
    [GGUF_TYPE_FLOAT32] = 4, [GGUF_TYPE_BOOL] = 1, [GGUF_TYPE_STRING] = 0,
    [GGUF_TYPE_ARRAY] = 0, [GGUF_TYPE_UINT64] = 8, [GGUF_TYPE_INT64] = 8,
    [GGUF_TYPE_FLOAT64] = 8,
};

static const char *const gguf_type_names[GGUF_TYPE_COUNT] = {
    "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
    "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64",
};

const char *gguf_type_name(uint32_t t) {
    return t < GGUF_TYPE_COUNT ? gguf_type_names[t] : "?";
}

/* ---- little-endian loads (the image may be unaligned) ---- */

static uint64_t load_le(const uint8_t *b, unsigned n) {
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) v |= (uint64_t)b[i] << (8 * i);
    return v;
}

/* Decodes one fixed-size element of `type` at b into v (type is fixed-size). */
static void decode_scalar(uint32_t type, const uint8_t *b, gguf_value *v) {
    v->type = (enum gguf_type)type;
    uint64_t raw = load_le(b, gguf_type_size[type]);
    switch (type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
        v->v.u = raw;
        break;
    case GGUF_TYPE_INT8: v->v.i = (int8_t)(uint8_t)raw; break;
    case GGUF_TYPE_INT16: v->v.i = (int16_t)(uint16_t)raw; break;
    case GGUF_TYPE_INT32: v->v.i = (int32_t)(uint32_t)raw; break;
    case GGUF_TYPE_INT64: v->v.i = (int64_t)raw; break;
    case GGUF_TYPE_FLOAT32: {
        uint32_t bits = (uint32_t)raw;
        float f;
        memcpy(&f, &bits, sizeof f);
        v->v.f = f;
        break;
    }
    case GGUF_TYPE_FLOAT64: memcpy(&v->v.f, &raw, sizeof v->v.f); break;
    case GGUF_TYPE_BOOL: v->v.b = raw != 0; break;
    default: MICA_ASSERT(!"decode_scalar: variable-size type");
    }
}

/* ---- the cursor and its error messages ---- */

enum rd_sect { SECT_HEADER, SECT_KV, SECT_TENSOR, SECT_DATA };

typedef struct rd {
    const uint8_t *p;
    uint64_t size, pos;
    const char *name;
    mica_err *err;
    /* where we are, for messages: section, item index, its key or name,
     * the part being read and the element indices of enclosing arrays */
    enum rd_sect sect;
    uint64_t item;
    gguf_str label;
    const char *part;
    int n_elem;
    uint64_t elem[GGUF_MAX_DEPTH];
} rd;

/* Writes s into buf as printable ASCII (others as '?'), shortened to ~48 bytes. */
static void sanitize(char *buf, size_t cap, gguf_str s) {
    size_t n = 0;
    uint64_t lim = s.len > 48 ? 45 : s.len;
    for (uint64_t i = 0; i < lim && n + 1 < cap; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        buf[n++] = (c >= 0x20 && c < 0x7f && c != '\'') ? (char)c : '?';
    }
    if (lim < s.len) for (int k = 0; k < 3 && n + 1 < cap; k++) buf[n++] = '.';
    buf[n] = '\0';
}

/* Formats the current field: "kv 3 'general.name' value [2][0]". */
static void field_str(const rd *r, char *buf, size_t cap) {
    char lab[64] = "";
    if (r->label.len) {
        char s[56];
        sanitize(s, sizeof s, r->label);
        snprintf(lab, sizeof lab, " '%s'", s);
    }
    int n = 0;
    switch (r->sect) {
    case SECT_HEADER: n = snprintf(buf, cap, "header %s", r->part); break;
    case SECT_KV: n = snprintf(buf, cap, "kv %llu%s %s", (unsigned long long)r->item, lab, r->part); break;
    case SECT_TENSOR:
        n = snprintf(buf, cap, "tensor %llu%s %s", (unsigned long long)r->item, lab, r->part);
        break;
    case SECT_DATA: n = snprintf(buf, cap, "data section"); break;
    }
    for (int i = 0; i < r->n_elem && n >= 0 && (size_t)n < cap; i++)
        n += snprintf(buf + n, cap - (size_t)n, "[%llu]", (unsigned long long)r->elem[i]);
}

/* Records "NAME: offset OFF: FIELD: message" as MICA_ERR_FORMAT. */
__attribute__((format(printf, 3, 4)))
static mica_status fail(rd *r, uint64_t off, const char *fmt, ...) {
    char field[160], what[256];
    field_str(r, field, sizeof field);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return mica_err_set(r->err, MICA_ERR_FORMAT, "%s: offset %llu: %s: %s", r->name,
                        (unsigned long long)off, field, what);
}

static uint64_t left(const rd *r) { return r->size - r->pos; }

static mica_status need(rd *r, uint64_t n) {
    if (n > left(r))
        return fail(r, r->pos, "truncated: needs %llu bytes, %llu left", (unsigned long long)n,
                    (unsigned long long)left(r));
    return MICA_OK;
}

static mica_status rd_u32(rd *r, uint32_t *out) {
    mica_status st = need(r, 4);
    if (st) return st;
    *out = (uint32_t)load_le(r->p + r->pos, 4);
    r->pos += 4;
    return MICA_OK;
}

static mica_status rd_u64(rd *r, uint64_t *out) {
    mica_status st = need(r, 8);
    if (st) return st;
    *out = load_le(r->p + r->pos, 8);
    r->pos += 8;
    return MICA_OK;
}

/* A string: u64 length (<= GGUF_MAX_STRING and <= bytes left), then the bytes. */
static mica_status rd_str(rd *r, gguf_str *out) {
    uint64_t at = r->pos, len;
    mica_status st = rd_u64(r, &len);
    if (st) return st;
    if (len > GGUF_MAX_STRING)
        return fail(r, at, "string length %llu exceeds the cap of %llu bytes",
                    (unsigned long long)len, (unsigned long long)GGUF_MAX_STRING);
    if (len > left(r))
        return fail(r, at, "string length %llu exceeds the %llu bytes left",
                    (unsigned long long)len, (unsigned long long)left(r));
    out->ptr = (const char *)(r->p + r->pos);
    out->len = len;
    r->pos += len;
    return MICA_OK;
}

/* ---- offset tables ---- */

/* Appends a table of n entries to the pool; *k receives its 1-based index.
 * The caller has validated n against the bytes left (so the pool stays
 * proportional to the file size). */
static mica_status table_new(rd *r, gguf_ctx *g, uint64_t n, uint32_t *k, uint64_t *start) {
    uint64_t need_len;
    if (!mica_add_ok(g->pool_len, n, &need_len) || need_len > SIZE_MAX / sizeof(uint64_t))
        return fail(r, r->pos, "offset tables exceed the address space");
    if (need_len > g->pool_cap) {
        uint64_t cap = g->pool_cap ? g->pool_cap : 64;
        while (cap < need_len) cap = cap > UINT64_MAX / 2 ? need_len : cap * 2;
        if (cap > SIZE_MAX / sizeof(uint64_t)) cap = need_len;
        uint64_t *p = mica_realloc(g->pool, (size_t)cap * sizeof(uint64_t));
        if (!p) return mica_err_set(r->err, MICA_ERR_NOMEM, "%s: out of memory for offset tables", r->name);
        g->pool = p;
        g->pool_cap = cap;
    }
    if (g->n_tabs == g->cap_tabs) {
        if (g->cap_tabs >= UINT32_MAX / 2) return fail(r, r->pos, "too many arrays");
        uint32_t cap = g->cap_tabs ? g->cap_tabs * 2 : 16;
        uint64_t *t = mica_realloc(g->tabs, (size_t)cap * sizeof(uint64_t));
        if (!t) return mica_err_set(r->err, MICA_ERR_NOMEM, "%s: out of memory for offset tables", r->name);
        g->tabs = t;
        g->cap_tabs = cap;
    }
    *start = g->pool_len;
    g->tabs[g->n_tabs++] = g->pool_len;
    *k = g->n_tabs;
    g->pool_len = need_len;
    return MICA_OK;
}

/* ---- values ---- */

static mica_status parse_array(rd *r, gguf_ctx *g, gguf_value *v, int depth);

/* Reads a value of (already validated) `type`; depth = arrays enclosing it. */
static mica_status parse_value(rd *r, gguf_ctx *g, uint32_t type, gguf_value *v, int depth) {
    v->type = (enum gguf_type)type;
    if (type == GGUF_TYPE_STRING) return rd_str(r, &v->v.s);
    if (type == GGUF_TYPE_ARRAY) return parse_array(r, g, v, depth + 1);
    mica_status st = need(r, gguf_type_size[type]);
    if (st) return st;
    decode_scalar(type, r->p + r->pos, v);
    r->pos += gguf_type_size[type];
    return MICA_OK;
}

/*
 * An array at nesting level `depth` (1 = a kv's value): element type, count,
 * elements. The count is validated against the bytes left (using each
 * element's minimum size) before anything is allocated for it.
 */
static mica_status parse_array(rd *r, gguf_ctx *g, gguf_value *v, int depth) {
    uint64_t at = r->pos, n;
    uint32_t elem;
    mica_status st = rd_u32(r, &elem);
    if (st) return st;
    if (elem >= GGUF_TYPE_COUNT)
        return fail(r, at, "invalid array element type %u", elem);
    if (elem == GGUF_TYPE_ARRAY && depth >= GGUF_MAX_DEPTH)
        return fail(r, at, "arrays nested deeper than %d levels", GGUF_MAX_DEPTH);
    if ((st = rd_u64(r, &n))) return st;
    if (n > GGUF_MAX_ARRAY)
        return fail(r, at + 4, "array count %llu exceeds the cap of %llu elements",
                    (unsigned long long)n, (unsigned long long)GGUF_MAX_ARRAY);
    uint64_t min_size = elem == GGUF_TYPE_STRING ? 8
                      : elem == GGUF_TYPE_ARRAY ? GGUF_ARRAY_HEADER_BYTES
                      : gguf_type_size[elem];
    uint64_t min_bytes;
    if (!mica_mul_ok(n, min_size, &min_bytes) || min_bytes > left(r))
        return fail(r, at + 4, "array of %llu %s elements needs at least %llu bytes per element, %llu bytes left",
                    (unsigned long long)n, gguf_type_name(elem), (unsigned long long)min_size,
                    (unsigned long long)left(r));
    v->type = GGUF_TYPE_ARRAY;
    v->v.arr.elem = (enum gguf_type)elem;
    v->v.arr.n = n;
    v->v.arr.data = r->p + r->pos;
    v->v.arr.index = 0;
    if (gguf_type_size[elem] != 0) {
        r->pos += min_bytes;
        return MICA_OK;
    }
    if (n == 0) return MICA_OK;
    uint64_t per = elem == GGUF_TYPE_ARRAY ? 2 : 1, start = 0;
    uint32_t k = 0;
    if ((st = table_new(r, g, n * per, &k, &start))) return st;
    v->v.arr.index = k;
    MICA_ASSERT(depth >= 1 && depth <= GGUF_MAX_DEPTH && r->n_elem == depth - 1);
    r->n_elem = depth;
    for (uint64_t i = 0; i < n; i++) {
        r->elem[depth - 1] = i;
        g->pool[start + i * per] = r->pos;
        if (elem == GGUF_TYPE_STRING) {
            gguf_str s;
            st = rd_str(r, &s);
        } else {
            gguf_value inner;
            st = parse_array(r, g, &inner, depth + 1);
            if (!st) g->pool[start + i * per + 1] = inner.v.arr.index;
        }
        if (st) return st;
    }
    r->n_elem = depth - 1;
    return MICA_OK;
}

bool gguf_arr_get(const gguf_ctx *g, const gguf_value *v, uint64_t i, gguf_value *out) {
    if (!g || !v || !out || v->type != GGUF_TYPE_ARRAY || i >= v->v.arr.n) return false;
    uint32_t elem = v->v.arr.elem;
    if (elem >= GGUF_TYPE_COUNT) return false;
    if (gguf_type_size[elem] != 0) {
        decode_scalar(elem, v->v.arr.data + i * gguf_type_size[elem], out);
        return true;
    }
    uint32_t k = v->v.arr.index;
    if (k == 0 || k > g->n_tabs) return false;
    if (elem == GGUF_TYPE_STRING) {
        uint64_t off = g->pool[g->tabs[k - 1] + i];
        out->type = GGUF_TYPE_STRING;
        out->v.s.len = load_le(g->base + off, 8);
        out->v.s.ptr = (const char *)(g->base + off + 8);
        return true;
    }
    uint64_t off = g->pool[g->tabs[k - 1] + 2 * i];
    out->type = GGUF_TYPE_ARRAY;
    out->v.arr.elem = (enum gguf_type)load_le(g->base + off, 4);
    out->v.arr.n = load_le(g->base + off + 4, 8);
    out->v.arr.data = g->base + off + GGUF_ARRAY_HEADER_BYTES;
    out->v.arr.index = (uint32_t)g->pool[g->tabs[k - 1] + 2 * i + 1];
    return true;
}

/* ---- sorting and lookup ---- */

static int bytes_cmp(const char *a, uint64_t na, const char *b, uint64_t nb) {
    int c = memcmp(a, b, (size_t)MICA_MIN(na, nb));
    if (c) return c;
    return na < nb ? -1 : na > nb;
}

static int kv_ptr_cmp(const void *a, const void *b) {
    const gguf_kv *x = *(const gguf_kv *const *)a, *y = *(const gguf_kv *const *)b;
    int c = bytes_cmp(x->key.ptr, x->key.len, y->key.ptr, y->key.len);
    return c ? c : (x < y ? -1 : x > y); /* stable: file order among equals */
}

static int tensor_name_cmp(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x < y ? -1 : x > y);
}

static int tensor_off_cmp(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return x < y ? -1 : x > y;
}

const gguf_kv *gguf_find(const gguf_ctx *g, const char *key) {
    if (!g || !key) return NULL;
    uint64_t len = strlen(key), lo = 0, hi = g->n_kv;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        const gguf_kv *kv = g->kv_sorted[mid];
        int c = bytes_cmp(kv->key.ptr, kv->key.len, key, len);
        if (c == 0) return kv;
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_ctx *g, const char *name) {
    if (!g || !name) return NULL;
    uint64_t lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(g->t_sorted[mid]->name, name);
        if (c == 0) return g->t_sorted[mid];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

/* ---- the parser ---- */

static mica_status parse_header(rd *r, gguf_ctx *g, uint64_t *n_tensors, uint64_t *n_kv) {
    r->sect = SECT_HEADER;
    r->part = "magic";
    mica_status st = need(r, GGUF_MAGIC_LEN);
    if (st) return st;
    if (memcmp(r->p, "GGUF", GGUF_MAGIC_LEN) != 0)
        return fail(r, 0, "bad magic %02x %02x %02x %02x (expected \"GGUF\")", r->p[0], r->p[1],
                    r->p[2], r->p[3]);
    r->pos = GGUF_MAGIC_LEN;
    r->part = "version";
    uint32_t ver;
    if ((st = rd_u32(r, &ver))) return st;
    if (ver != 0 && (ver & 0xFFFFu) == 0)
        return fail(r, 4, "version 0x%08x looks byte-swapped: big-endian GGUF not supported", ver);
    if (ver < 2 || ver > 3)
        return fail(r, 4, "version %u not supported (only 2 and 3)", ver);
    g->version = ver;
    r->part = "n_tensors";
    if ((st = rd_u64(r, n_tensors))) return st;
    if (*n_tensors > GGUF_MAX_TENSORS)
        return fail(r, 8, "tensor count %llu exceeds the cap of %u", (unsigned long long)*n_tensors,
                    GGUF_MAX_TENSORS);
    r->part = "n_kv";
    if ((st = rd_u64(r, n_kv))) return st;
    if (*n_kv > GGUF_MAX_KV)
        return fail(r, 16, "kv count %llu exceeds the cap of %u", (unsigned long long)*n_kv, GGUF_MAX_KV);
    /* both counts are <= 2^20, so these products cannot overflow */
    if (*n_kv * GGUF_MIN_KV_BYTES > left(r))
        return fail(r, 16, "%llu kv pairs need at least %llu bytes, %llu left", (unsigned long long)*n_kv,
                    (unsigned long long)(*n_kv * GGUF_MIN_KV_BYTES), (unsigned long long)left(r));
    r->part = "n_tensors";
    if (*n_kv * GGUF_MIN_KV_BYTES + *n_tensors * GGUF_MIN_TENSOR_BYTES > left(r))
        return fail(r, 8, "%llu tensor infos need at least %llu bytes, %llu left after the kv pairs",
                    (unsigned long long)*n_tensors, (unsigned long long)(*n_tensors * GGUF_MIN_TENSOR_BYTES),
                    (unsigned long long)(left(r) - *n_kv * GGUF_MIN_KV_BYTES));
    return MICA_OK;
}

static bool is_pow2(uint64_t x) { return x && !(x & (x - 1)); }

static mica_status parse_kvs(rd *r, gguf_ctx *g) {
    mica_status st;
    r->sect = SECT_KV;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        gguf_kv *kv = &g->kv[i];
        r->item = i;
        r->label = (gguf_str){NULL, 0};
        r->part = "key";
        uint64_t at = r->pos;
        if ((st = rd_str(r, &kv->key))) return st;
        if (kv->key.len == 0) return fail(r, at, "empty key");
        if (memchr(kv->key.ptr, 0, (size_t)kv->key.len)) return fail(r, at, "key contains a NUL byte");
        r->label = kv->key;
        r->part = "type";
        uint32_t type;
        at = r->pos;
        if ((st = rd_u32(r, &type))) return st;
        if (type >= GGUF_TYPE_COUNT) return fail(r, at, "invalid value type %u", type);
        r->part = "value";
        at = r->pos;
        if ((st = parse_value(r, g, type, &kv->val, 0))) return st;
        if (gguf_str_eq(kv->key, "general.alignment")) {
            if (type != GGUF_TYPE_UINT32)
                return fail(r, at, "general.alignment must be UINT32, found %s", gguf_type_name(type));
            uint64_t a = kv->val.v.u;
            if (!is_pow2(a) || a > GGUF_MAX_ALIGNMENT)
                return fail(r, at, "alignment %llu is not a power of two in 1..%u", (unsigned long long)a,
                            GGUF_MAX_ALIGNMENT);
            g->alignment = (uint32_t)a;
        }
    }
    r->label = (gguf_str){NULL, 0};
    /* duplicate keys: sort, then compare neighbours */
    for (uint64_t i = 0; i < g->n_kv; i++) g->kv_sorted[i] = &g->kv[i];
    if (g->n_kv > 1) qsort(g->kv_sorted, (size_t)g->n_kv, sizeof *g->kv_sorted, kv_ptr_cmp);
    for (uint64_t i = 1; i < g->n_kv; i++) {
        const gguf_kv *a = g->kv_sorted[i - 1], *b = g->kv_sorted[i];
        if (bytes_cmp(a->key.ptr, a->key.len, b->key.ptr, b->key.len) == 0) {
            r->item = (uint64_t)(b - g->kv);
            r->label = b->key;
            r->part = "key";
            return fail(r, (uint64_t)((const uint8_t *)b->key.ptr - r->p) - 8, "duplicate key (also kv %llu)",
                        (unsigned long long)(a - g->kv));
        }
    }
    return MICA_OK;
}

/* One tensor info record; info_pos receives the offset of its name. */
static mica_status parse_tensor_info(rd *r, gguf_ctx *g, gguf_tensor *t, uint64_t *info_pos) {
    mica_status st;
    r->label = (gguf_str){NULL, 0};
    r->part = "name";
    uint64_t at = r->pos;
    *info_pos = at;
    gguf_str name;
    if ((st = rd_str(r, &name))) return st;
    if (name.len == 0) return fail(r, at, "empty tensor name");
    if (name.len > GGUF_MAX_NAME)
        return fail(r, at, "tensor name length %llu exceeds %d bytes", (unsigned long long)name.len,
                    GGUF_MAX_NAME);
    if (memchr(name.ptr, 0, (size_t)name.len)) return fail(r, at, "tensor name contains a NUL byte");
    memcpy(t->name, name.ptr, (size_t)name.len);
    t->name[name.len] = '\0';
    r->label = name;

    r->part = "n_dims";
    at = r->pos;
    if ((st = rd_u32(r, &t->n_dims))) return st;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return fail(r, at, "n_dims %u is not in 1..%d", t->n_dims, GGUF_MAX_DIMS);
    r->part = "ne";
    uint64_t n_elements = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if (d >= t->n_dims) continue;
        uint64_t v;
        at = r->pos;
        if ((st = rd_u64(r, &v))) return st;
        if (v > INT64_MAX) return fail(r, at, "ne[%u] = %lld is negative", d, (long long)v);
        t->ne[d] = (int64_t)v;
        if (!mica_mul_ok(n_elements, v, &n_elements) || n_elements > INT64_MAX)
            return fail(r, at, "element count overflows at ne[%u] = %llu", d, (unsigned long long)v);
    }
    r->part = "type";
    at = r->pos;
    if ((st = rd_u32(r, &t->type))) return st;
    const dtype_traits *tr = dtype_get(t->type);
    if (!tr) {
        if ((int32_t)t->type < 0)
            return fail(r, at, "unknown tensor type %u (%d as signed)", t->type, (int32_t)t->type);
        return fail(r, at, "unknown or removed tensor type %u", t->type);
    }
    if (t->ne[0] % tr->blck != 0)
        return fail(r, at, "ne[0] = %lld is not a multiple of the %s block size %u", (long long)t->ne[0],
                    tr->name, tr->blck);
    uint64_t nbytes;
    bool ok = dtype_row_bytes(t->type, t->ne[0], &nbytes);
    for (uint32_t d = 1; ok && d < GGUF_MAX_DIMS; d++) ok = mica_mul_ok(nbytes, (uint64_t)t->ne[d], &nbytes);
    if (!ok) return fail(r, at, "byte size of %s tensor overflows", tr->name);
    t->nbytes = nbytes;
    r->part = "offset";
    at = r->pos;
    if ((st = rd_u64(r, &t->offset))) return st;
    if (t->offset % g->alignment != 0)
        return fail(r, at, "offset %llu is not a multiple of the alignment %u", (unsigned long long)t->offset,
                    g->alignment);
    return MICA_OK;
}

/* File offset of tensor t's offset field, given the offset of its name (info_pos). */
static uint64_t offset_field_pos(const gguf_tensor *t, uint64_t info_pos) {
    return info_pos + 8 + strlen(t->name) + 4 + 8ull * t->n_dims + 4;
}

/* Data offset, then every tensor inside the file, then no overlaps. */
static mica_status place_tensors(rd *r, gguf_ctx *g, const uint64_t *info_pos) {
    r->sect = SECT_DATA;
    r->n_elem = 0;
    uint64_t data_off = r->pos + (g->alignment - 1); /* pos <= size, so no wrap for alignment <= 2^16 */
    data_off -= data_off % g->alignment;
    if (data_off > r->size) {
        if (g->n_tensors > 0)
            return fail(r, r->pos,
                        "padding to the %u-byte alignment ends at %llu, past the end of the file (%llu bytes)",
                        g->alignment, (unsigned long long)data_off, (unsigned long long)r->size);
        data_off = r->size; /* no tensors: the (empty) data section may lack its padding */
    }
    g->data_offset = data_off;
    uint64_t data_size = r->size - data_off;
    r->sect = SECT_TENSOR;
    r->part = "offset";
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        uint64_t end;
        r->item = i;
        r->label = (gguf_str){t->name, strlen(t->name)};
        uint64_t at = offset_field_pos(t, info_pos[i]);
        if (!mica_add_ok(t->offset, t->nbytes, &end))
            return fail(r, at, "offset %llu + size %llu wraps around", (unsigned long long)t->offset,
                        (unsigned long long)t->nbytes);
        if (end > data_size)
            return fail(r, at, "data [%llu, %llu) extends past the %llu-byte data section at file offset %llu",
                        (unsigned long long)t->offset, (unsigned long long)end, (unsigned long long)data_size,
                        (unsigned long long)data_off);
        t->data = r->p + data_off + t->offset;
    }
    /* overlap: sorted by offset, each non-empty tensor must start at or after
     * the end of every earlier non-empty one */
    for (uint64_t i = 0; i < g->n_tensors; i++) g->t_sorted[i] = &g->tensors[i];
    if (g->n_tensors > 1) qsort(g->t_sorted, (size_t)g->n_tensors, sizeof *g->t_sorted, tensor_off_cmp);
    const gguf_tensor *prev = NULL; /* the non-empty tensor reaching furthest so far */
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = g->t_sorted[i];
        if (t->nbytes == 0) continue;
        if (prev && t->offset < prev->offset + prev->nbytes) {
            uint64_t ti = (uint64_t)(t - g->tensors);
            r->item = ti;
            r->label = (gguf_str){t->name, strlen(t->name)};
            return fail(r, offset_field_pos(t, info_pos[ti]), "data overlaps tensor %llu '%s'",
                        (unsigned long long)(prev - g->tensors), prev->name);
        }
        if (!prev || t->offset + t->nbytes > prev->offset + prev->nbytes) prev = t;
    }
    /* duplicate names; leaves t_sorted sorted by name for gguf_find_tensor */
    if (g->n_tensors > 1) qsort(g->t_sorted, (size_t)g->n_tensors, sizeof *g->t_sorted, tensor_name_cmp);
    for (uint64_t i = 1; i < g->n_tensors; i++) {
        const gguf_tensor *a = g->t_sorted[i - 1], *b = g->t_sorted[i];
        if (strcmp(a->name, b->name) == 0) {
            uint64_t bi = (uint64_t)(b - g->tensors);
            r->item = bi;
            r->label = (gguf_str){b->name, strlen(b->name)};
            r->part = "name";
            return fail(r, info_pos[bi], "duplicate tensor name (also tensor %llu)",
                        (unsigned long long)(a - g->tensors));
        }
    }
    return MICA_OK;
}

void gguf_close(gguf_ctx *g) {
    if (!g) return;
    if (g->map) munmap(g->map, g->map_len);
    mica_free(g->path);
    mica_free(g->kv);
    mica_free(g->kv_sorted);
    mica_free(g->tensors);
    mica_free(g->t_sorted);
    mica_free(g->pool);
    mica_free(g->tabs);
    mica_free(g);
}

static mica_status nomem(mica_err *err, const char *name) {
    return mica_err_set(err, MICA_ERR_NOMEM, "%s: out of memory", name);
}

/* Parses and validates the image; on success *out owns it (and `map`, if any). */
static mica_status open_image(const uint8_t *data, uint64_t size, const char *name, void *map,
                              size_t map_len, gguf_ctx **out, mica_err *err) {
    static const uint8_t empty[1] = {0};
    if (!name) name = "(memory)";
    gguf_ctx *g = mica_calloc(1, sizeof *g);
    if (!g) return nomem(err, name);
    g->path = mica_strndup(name, strlen(name));
    if (!g->path) { mica_free(g); return nomem(err, name); }
    g->base = data ? data : empty;
    g->size = data ? size : 0;
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    rd r = {.p = g->base, .size = g->size, .name = g->path, .err = err, .part = ""};
    uint64_t n_tensors, n_kv, *info_pos = NULL;
    mica_status st = parse_header(&r, g, &n_tensors, &n_kv);
    if (st) goto done;
    /* counts were checked against the bytes left: allocations are bounded by the file size */
    g->n_kv = n_kv;
    g->kv = mica_calloc((size_t)MICA_MAX(n_kv, 1), sizeof *g->kv);
    g->kv_sorted = mica_calloc((size_t)MICA_MAX(n_kv, 1), sizeof *g->kv_sorted);
    if (!g->kv || !g->kv_sorted) { st = nomem(err, name); goto done; }
    if ((st = parse_kvs(&r, g))) goto done;
    r.sect = SECT_HEADER;
    r.part = "n_tensors";
    r.label = (gguf_str){NULL, 0};
    if (n_tensors * GGUF_MIN_TENSOR_BYTES > left(&r)) {
        st = fail(&r, 8, "%llu tensor infos need at least %llu bytes, %llu left after the kv pairs",
                  (unsigned long long)n_tensors, (unsigned long long)(n_tensors * GGUF_MIN_TENSOR_BYTES),
                  (unsigned long long)left(&r));
        goto done;
    }
    g->n_tensors = n_tensors;
    g->tensors = mica_calloc((size_t)MICA_MAX(n_tensors, 1), sizeof *g->tensors);
    g->t_sorted = mica_calloc((size_t)MICA_MAX(n_tensors, 1), sizeof *g->t_sorted);
    info_pos = mica_calloc((size_t)MICA_MAX(n_tensors, 1), sizeof *info_pos);
    if (!g->tensors || !g->t_sorted || !info_pos) { st = nomem(err, name); goto done; }
    r.sect = SECT_TENSOR;
    for (uint64_t i = 0; i < n_tensors; i++) {
        r.item = i;
        if ((st = parse_tensor_info(&r, g, &g->tensors[i], &info_pos[i]))) goto done;
    }
    st = place_tensors(&r, g, info_pos);
done:
    mica_free(info_pos);
    if (st) {
        g->map = NULL; /* the caller unmaps on failure */
        gguf_close(g);
        return st;
    }
    g->map = map;
    g->map_len = map_len;
    *out = g;
    return MICA_OK;
}

mica_status gguf_open_memory(const void *data, size_t size, const char *name, gguf_ctx **out,
                             mica_err *err) {
    if (!out || (!data && size)) return mica_err_set(err, MICA_ERR_INVALID_ARG, "gguf_open_memory: bad arguments");
    return open_image(data, size, name, NULL, 0, out, err);
}

mica_status gguf_open(const char *path, gguf_ctx **out, mica_err *err) {
    if (!path || !out) return mica_err_set(err, MICA_ERR_INVALID_ARG, "gguf_open: bad arguments");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mica_err_set(err, MICA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return mica_err_set(err, MICA_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return mica_err_set(err, MICA_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size < 0 || (uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return mica_err_set(err, MICA_ERR_IO, "%s: file too large to map", path);
    }
    size_t len = (size_t)sb.st_size;
    void *map = NULL;
    if (len > 0) {
        map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            return mica_err_set(err, MICA_ERR_IO, "%s: cannot map: %s", path, strerror(e));
        }
    }
    close(fd);
    mica_status st = open_image(map, len, path, map, len, out, err);
    if (st && map) munmap(map, len);
    return st;
}

/* ---- accessors ---- */

const char *gguf_path(const gguf_ctx *g) { return g->path; }
uint32_t gguf_version(const gguf_ctx *g) { return g->version; }
uint64_t gguf_file_size(const gguf_ctx *g) { return g->size; }
uint32_t gguf_alignment(const gguf_ctx *g) { return g->alignment; }
uint64_t gguf_data_offset(const gguf_ctx *g) { return g->data_offset; }
uint64_t gguf_n_kv(const gguf_ctx *g) { return g->n_kv; }
uint64_t gguf_n_tensors(const gguf_ctx *g) { return g->n_tensors; }

const gguf_kv *gguf_kv_at(const gguf_ctx *g, uint64_t i) {
    return g && i < g->n_kv ? &g->kv[i] : NULL;
}

const gguf_tensor *gguf_tensor_at(const gguf_ctx *g, uint64_t i) {
    return g && i < g->n_tensors ? &g->tensors[i] : NULL;
}

bool gguf_str_eq(gguf_str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

/* ---- typed getters ---- */

/* "PATH: offset N: kv 'key': message" for a present key of the wrong type or range. */
__attribute__((format(printf, 4, 5)))
static mica_status kv_fail(const gguf_ctx *g, const gguf_kv *kv, mica_err *err, const char *fmt, ...) {
    char what[200], key[56];
    sanitize(key, sizeof key, kv->key);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    uint64_t off = (uint64_t)((const uint8_t *)kv->key.ptr - g->base) - 8;
    return mica_err_set(err, MICA_ERR_FORMAT, "%s: offset %llu: kv '%s': %s", g->path, (unsigned long long)off,
                        key, what);
}

static bool is_unsigned_type(enum gguf_type t) {
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_UINT32 || t == GGUF_TYPE_UINT64;
}

static bool is_signed_type(enum gguf_type t) {
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 || t == GGUF_TYPE_INT64;
}

mica_status gguf_get_u32(const gguf_ctx *g, const char *key, uint32_t *out, mica_err *err) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv) return MICA_OK;
    const gguf_value *v = &kv->val;
    if (is_unsigned_type(v->type)) {
        if (v->v.u > UINT32_MAX)
            return kv_fail(g, kv, err, "value %llu does not fit UINT32", (unsigned long long)v->v.u);
        *out = (uint32_t)v->v.u;
        return MICA_OK;
    }
    if (is_signed_type(v->type)) {
        if (v->v.i < 0 || v->v.i > (int64_t)UINT32_MAX)
            return kv_fail(g, kv, err, "value %lld does not fit UINT32", (long long)v->v.i);
        *out = (uint32_t)v->v.i;
        return MICA_OK;
    }
    return kv_fail(g, kv, err, "expected an integer, found %s", gguf_type_name(v->type));
}

mica_status gguf_get_i64(const gguf_ctx *g, const char *key, int64_t *out, mica_err *err) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv) return MICA_OK;
    const gguf_value *v = &kv->val;
    if (is_unsigned_type(v->type)) {
        if (v->v.u > INT64_MAX) return kv_fail(g, kv, err, "value %llu does not fit INT64", (unsigned long long)v->v.u);
        *out = (int64_t)v->v.u;
        return MICA_OK;
    }
    if (is_signed_type(v->type)) {
        *out = v->v.i;
        return MICA_OK;
    }
    return kv_fail(g, kv, err, "expected an integer, found %s", gguf_type_name(v->type));
}

mica_status gguf_get_f32(const gguf_ctx *g, const char *key, float *out, mica_err *err) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv) return MICA_OK;
    const gguf_value *v = &kv->val;
    if (v->type != GGUF_TYPE_FLOAT32 && v->type != GGUF_TYPE_FLOAT64)
        return kv_fail(g, kv, err, "expected FLOAT32 or FLOAT64, found %s", gguf_type_name(v->type));
    double d = v->v.f;
    if (isfinite(d) && (d > FLT_MAX || d < -FLT_MAX))
        return kv_fail(g, kv, err, "value %g does not fit FLOAT32", d);
    *out = (float)d;
    return MICA_OK;
}

mica_status gguf_get_bool(const gguf_ctx *g, const char *key, bool *out, mica_err *err) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv) return MICA_OK;
    if (kv->val.type != GGUF_TYPE_BOOL)
        return kv_fail(g, kv, err, "expected BOOL, found %s", gguf_type_name(kv->val.type));
    *out = kv->val.v.b;
    return MICA_OK;
}

mica_status gguf_get_str(const gguf_ctx *g, const char *key, gguf_str *out, mica_err *err) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv) return MICA_OK;
    if (kv->val.type != GGUF_TYPE_STRING)
        return kv_fail(g, kv, err, "expected STRING, found %s", gguf_type_name(kv->val.type));
    *out = kv->val.v.s;
    return MICA_OK;
}

static mica_status missing(const gguf_ctx *g, const char *key, mica_err *err) {
    return mica_err_set(err, MICA_ERR_FORMAT, "%s: missing key '%s'", g->path, key);
}

mica_status gguf_require_u32(const gguf_ctx *g, const char *key, uint32_t *out, mica_err *err) {
    if (!gguf_find(g, key)) return missing(g, key, err);
    return gguf_get_u32(g, key, out, err);
}

mica_status gguf_require_str(const gguf_ctx *g, const char *key, gguf_str *out, mica_err *err) {
    if (!gguf_find(g, key)) return missing(g, key, err);
    return gguf_get_str(g, key, out, err);
}

mica_status gguf_get_arr(const gguf_ctx *g, const char *key, enum gguf_type elem, gguf_value *out,
                         mica_err *err) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv) return MICA_OK;
    if (kv->val.type != GGUF_TYPE_ARRAY)
        return kv_fail(g, kv, err, "expected an array of %s, found %s", gguf_type_name(elem),
                       gguf_type_name(kv->val.type));
    if (kv->val.v.arr.elem != elem)
        return kv_fail(g, kv, err, "expected an array of %s, found an array of %s", gguf_type_name(elem),
                       gguf_type_name(kv->val.v.arr.elem));
    *out = kv->val;
    return MICA_OK;
}
