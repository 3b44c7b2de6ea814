/*
 * gguf_write.c - the GGUF v3 writer (layer: gguf). Metadata values are
 * serialised at the set call into an owned byte buffer (the bytes after the
 * value-type field), so writing is a plain concatenation. Tensor data is
 * produced one tensor at a time during gguf_writer_write (from the fill
 * callback into a reused buffer, or straight from the borrowed pointer), so
 * only the largest single tensor has to fit in memory.
 *
 * Everything the writer accepts, the reader accepts: the same caps, key and
 * name rules, type ids and alignment rules are checked at the add/set call.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "tensor/dtype.h"

typedef struct wkv {
    char *key;
    uint32_t type;   /* enum gguf_type */
    uint8_t *val;    /* serialised value (owned) */
    uint64_t val_len;
} wkv;

typedef struct wtensor {
    char name[GGUF_MAX_NAME + 1];
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint32_t type;
    uint64_t nbytes;
    uint64_t offset; /* set at write time */
    gguf_fill_fn fill;
    void *user;
    const void *data;
} wtensor;

struct gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
    uint32_t alignment;
    bool sparse; /* gguf_writer_set_sparse: tensor data left as holes */
};

/* Bytes of a fixed-size metadata element; 0 for STRING/ARRAY/unknown. */
static uint32_t wtype_size(uint32_t t) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

static void store_le(uint8_t *dst, uint64_t v, unsigned n) {
    for (unsigned i = 0; i < n; i++) dst[i] = (uint8_t)(v >> (8 * i));
}

mica_status gguf_writer_create(gguf_writer **out) {
    if (!out) return MICA_ERR_INVALID_ARG;
    gguf_writer *w = mica_calloc(1, sizeof *w);
    if (!w) return MICA_ERR_NOMEM;
    w->alignment = GGUF_DEFAULT_ALIGNMENT;
    *out = w;
    return MICA_OK;
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        mica_free(w->kv[i].key);
        mica_free(w->kv[i].val);
    }
    mica_free(w->kv);
    mica_free(w->t);
    mica_free(w);
}

/*
 * Stores key = (type, val[0..len)), taking ownership of val in every case.
 * A key set again keeps its position and gets the new value.
 */
static mica_status writer_put(gguf_writer *w, const char *key, uint32_t type, uint8_t *val, uint64_t len) {
    mica_status st = MICA_ERR_INVALID_ARG;
    if (!w || !key || !val) goto fail;
    size_t klen = strlen(key);
    if (klen == 0 || klen > GGUF_MAX_STRING) goto fail;
    if (strcmp(key, "general.alignment") == 0) {
        if (type != GGUF_TYPE_UINT32) goto fail;
        uint32_t a = (uint32_t)val[0] | (uint32_t)val[1] << 8 | (uint32_t)val[2] << 16 | (uint32_t)val[3] << 24;
        if (a == 0 || (a & (a - 1)) != 0 || a > GGUF_MAX_ALIGNMENT) goto fail;
        w->alignment = a;
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, key) == 0) {
            mica_free(w->kv[i].val);
            w->kv[i].type = type;
            w->kv[i].val = val;
            w->kv[i].val_len = len;
            return MICA_OK;
        }
    }
    st = MICA_ERR_LIMIT;
    if (w->n_kv >= GGUF_MAX_KV) goto fail;
    st = MICA_ERR_NOMEM;
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 16;
        wkv *p = mica_realloc(w->kv, cap * sizeof *p);
        if (!p) goto fail;
        w->kv = p;
        w->cap_kv = cap;
    }
    char *k = mica_strndup(key, klen);
    if (!k) goto fail;
    w->kv[w->n_kv++] = (wkv){k, type, val, len};
    return MICA_OK;
fail:
    mica_free(val);
    return st;
}

static mica_status put_scalar(gguf_writer *w, const char *key, uint32_t type, uint64_t bits) {
    unsigned n = wtype_size(type);
    uint8_t *b = mica_malloc(n);
    if (!b) return MICA_ERR_NOMEM;
    store_le(b, bits, n);
    return writer_put(w, key, type, b, n);
}

mica_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v) {
    return put_scalar(w, key, GGUF_TYPE_UINT32, v);
}

mica_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v) {
    return put_scalar(w, key, GGUF_TYPE_INT32, (uint32_t)v);
}

mica_status gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v) {
    return put_scalar(w, key, GGUF_TYPE_UINT64, v);
}

mica_status gguf_writer_set_f32(gguf_writer *w, const char *key, float v) {
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return put_scalar(w, key, GGUF_TYPE_FLOAT32, bits);
}

mica_status gguf_writer_set_bool(gguf_writer *w, const char *key, bool v) {
    return put_scalar(w, key, GGUF_TYPE_BOOL, v ? 1 : 0);
}

mica_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *v) {
    if (!v) return MICA_ERR_INVALID_ARG;
    size_t n = strlen(v);
    if (n > GGUF_MAX_STRING) return MICA_ERR_INVALID_ARG;
    uint8_t *b = mica_malloc(8 + n);
    if (!b) return MICA_ERR_NOMEM;
    store_le(b, n, 8);
    memcpy(b + 8, v, n);
    return writer_put(w, key, GGUF_TYPE_STRING, b, 8 + n);
}

mica_status gguf_writer_set_arr(gguf_writer *w, const char *key, enum gguf_type elem, const void *data,
                                uint64_t n) {
    uint32_t es = wtype_size(elem);
    uint64_t bytes, total;
    if (es == 0 || n > GGUF_MAX_ARRAY || (n && !data)) return MICA_ERR_INVALID_ARG;
    if (!mica_mul_ok(n, es, &bytes) || !mica_add_ok(bytes, 12, &total) || total > SIZE_MAX)
        return MICA_ERR_INVALID_ARG;
    uint8_t *b = mica_malloc((size_t)total);
    if (!b) return MICA_ERR_NOMEM;
    store_le(b, elem, 4);
    store_le(b + 4, n, 8);
    if (bytes) memcpy(b + 12, data, (size_t)bytes);
    return writer_put(w, key, GGUF_TYPE_ARRAY, b, total);
}

mica_status gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *strs,
                                    const uint64_t *lens, uint64_t n) {
    if (n > GGUF_MAX_ARRAY || (n && !strs)) return MICA_ERR_INVALID_ARG;
    uint64_t total = 12;
    for (uint64_t i = 0; i < n; i++) {
        if (!strs[i] && (!lens || lens[i] != 0)) return MICA_ERR_INVALID_ARG;
        uint64_t len = lens ? lens[i] : strlen(strs[i]);
        if (len > GGUF_MAX_STRING || !mica_add_ok(total, 8, &total) || !mica_add_ok(total, len, &total))
            return MICA_ERR_INVALID_ARG;
    }
    if (total > SIZE_MAX) return MICA_ERR_INVALID_ARG;
    uint8_t *b = mica_malloc((size_t)total);
    if (!b) return MICA_ERR_NOMEM;
    store_le(b, GGUF_TYPE_STRING, 4);
    store_le(b + 4, n, 8);
    uint64_t pos = 12;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len = lens ? lens[i] : strlen(strs[i]);
        store_le(b + pos, len, 8);
        if (len) memcpy(b + pos + 8, strs[i], (size_t)len);
        pos += 8 + len;
    }
    return writer_put(w, key, GGUF_TYPE_ARRAY, b, total);
}

mica_status gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                                   const int64_t *ne, gguf_fill_fn fill, void *user, const void *data) {
    if (!w || !name || !ne) return MICA_ERR_INVALID_ARG;
    size_t nlen = strlen(name);
    const dtype_traits *tr = dtype_get(type);
    if (nlen == 0 || nlen > GGUF_MAX_NAME || !tr || n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return MICA_ERR_INVALID_ARG;
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0) return MICA_ERR_INVALID_ARG;
    wtensor t = {.n_dims = n_dims, .type = type, .fill = fill, .user = user, .data = data};
    memcpy(t.name, name, nlen + 1);
    uint64_t n_elements = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] < 0 || !mica_mul_ok(n_elements, (uint64_t)t.ne[d], &n_elements) || n_elements > INT64_MAX)
            return MICA_ERR_INVALID_ARG;
    }
    bool ok = dtype_row_bytes(type, t.ne[0], &t.nbytes); /* fails if ne[0] % blck != 0 */
    for (uint32_t d = 1; ok && d < GGUF_MAX_DIMS; d++) ok = mica_mul_ok(t.nbytes, (uint64_t)t.ne[d], &t.nbytes);
    if (!ok || t.nbytes > SIZE_MAX - GGUF_MAX_ALIGNMENT) return MICA_ERR_INVALID_ARG;
    if (!fill && !data && t.nbytes > 0) return MICA_ERR_INVALID_ARG;
    if (w->n_t >= GGUF_MAX_TENSORS) return MICA_ERR_LIMIT;
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 16;
        wtensor *p = mica_realloc(w->t, cap * sizeof *p);
        if (!p) return MICA_ERR_NOMEM;
        w->t = p;
        w->cap_t = cap;
    }
    w->t[w->n_t++] = t;
    return MICA_OK;
}

void gguf_writer_set_sparse(gguf_writer *w, bool sparse) { w->sparse = sparse; }

/* ---- writing ---- */

typedef struct wout {
    FILE *f;
    const char *path; /* the .tmp path, for messages */
    uint64_t pos;
    mica_err *err;
} wout;

static mica_status out_bytes(wout *o, const void *p, uint64_t n) {
    if (n && fwrite(p, 1, (size_t)n, o->f) != n)
        return mica_err_set(o->err, MICA_ERR_IO, "%s: write failed: %s", o->path, strerror(errno));
    o->pos += n;
    return MICA_OK;
}

static mica_status out_le(wout *o, uint64_t v, unsigned n) {
    uint8_t b[8];
    store_le(b, v, n);
    return out_bytes(o, b, n);
}

/* Zero bytes up to the next multiple of a. */
static mica_status out_pad(wout *o, uint32_t a) {
    static const uint8_t zeros[256] = {0};
    uint64_t n = (a - o->pos % a) % a;
    while (n) {
        uint64_t k = MICA_MIN(n, sizeof zeros);
        mica_status st = out_bytes(o, zeros, k);
        if (st) return st;
        n -= k;
    }
    return MICA_OK;
}

/* Assigns aligned data offsets; false if the data section would overflow. */
static bool layout(gguf_writer *w) {
    uint64_t cur = 0, a = w->alignment;
    for (size_t i = 0; i < w->n_t; i++) {
        uint64_t off;
        if (!mica_add_ok(cur, a - 1, &off)) return false;
        off -= off % a;
        w->t[i].offset = off;
        if (!mica_add_ok(off, w->t[i].nbytes, &cur)) return false;
    }
    return true;
}

static mica_status write_meta(gguf_writer *w, wout *o) {
    mica_status st;
    if ((st = out_bytes(o, "GGUF", 4)) || (st = out_le(o, 3, 4)) || (st = out_le(o, w->n_t, 8)) ||
        (st = out_le(o, w->n_kv, 8)))
        return st;
    for (size_t i = 0; i < w->n_kv; i++) {
        const wkv *kv = &w->kv[i];
        uint64_t klen = strlen(kv->key);
        if ((st = out_le(o, klen, 8)) || (st = out_bytes(o, kv->key, klen)) || (st = out_le(o, kv->type, 4)) ||
            (st = out_bytes(o, kv->val, kv->val_len)))
            return st;
    }
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        uint64_t nlen = strlen(t->name);
        if ((st = out_le(o, nlen, 8)) || (st = out_bytes(o, t->name, nlen)) || (st = out_le(o, t->n_dims, 4)))
            return st;
        for (uint32_t d = 0; d < t->n_dims; d++)
            if ((st = out_le(o, (uint64_t)t->ne[d], 8))) return st;
        if ((st = out_le(o, t->type, 4)) || (st = out_le(o, t->offset, 8))) return st;
    }
    return MICA_OK;
}

static mica_status write_data(gguf_writer *w, wout *o, const char *path) {
    mica_status st = MICA_OK;
    uint8_t *buf = NULL;
    uint64_t buf_cap = 0;
    if (w->n_t > 0 && (st = out_pad(o, w->alignment))) return st;
    uint64_t data_start = o->pos;
    for (size_t i = 0; i < w->n_t && !st; i++) {
        const wtensor *t = &w->t[i];
        if ((st = out_pad(o, w->alignment))) break;
        MICA_ASSERT(o->pos - data_start == t->offset);
        if (t->nbytes == 0) continue;
        if (w->sparse) { /* a hole: seek over the data (gguf_writer_write sets the final size) */
            if (t->nbytes > (uint64_t)INT64_MAX || fseeko(o->f, (off_t)t->nbytes, SEEK_CUR) != 0) {
                st = mica_err_set(o->err, MICA_ERR_IO, "%s: seek failed: %s", path, strerror(errno));
                break;
            }
            o->pos += t->nbytes;
            continue;
        }
        if (!t->fill) {
            st = out_bytes(o, t->data, t->nbytes);
            continue;
        }
        if (t->nbytes > buf_cap) {
            uint8_t *p = mica_realloc(buf, (size_t)t->nbytes);
            if (!p) {
                st = mica_err_set(o->err, MICA_ERR_NOMEM, "%s: tensor '%s': out of memory for %llu bytes", path,
                                  t->name, (unsigned long long)t->nbytes);
                break;
            }
            buf = p;
            buf_cap = t->nbytes;
        }
        mica_err fe = {0};
        st = t->fill(t->user, buf, t->nbytes, &fe);
        if (st) {
            mica_err_set(o->err, st, "%s: tensor '%s': %s", path, t->name, fe.msg[0] ? fe.msg : "fill failed");
            break;
        }
        st = out_bytes(o, buf, t->nbytes);
    }
    mica_free(buf);
    return st;
}

mica_status gguf_writer_write(gguf_writer *w, const char *path, mica_err *err) {
    if (!w || !path) return mica_err_set(err, MICA_ERR_INVALID_ARG, "gguf_writer_write: bad arguments");
    if (!layout(w))
        return mica_err_set(err, MICA_ERR_INVALID_ARG, "%s: the tensor data section size overflows", path);
    size_t plen = strlen(path);
    char *tmp = mica_malloc(plen + 5);
    if (!tmp) return mica_err_set(err, MICA_ERR_NOMEM, "%s: out of memory", path);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    mica_status st;
    wout o = {.f = fopen(tmp, "wb"), .path = tmp, .err = err};
    if (!o.f) {
        st = mica_err_set(err, MICA_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        mica_free(tmp);
        return st;
    }
    st = write_meta(w, &o);
    if (!st) st = write_data(w, &o, path);
    if (!st && w->sparse && (fflush(o.f) != 0 || ftruncate(fileno(o.f), (off_t)o.pos) != 0))
        st = mica_err_set(err, MICA_ERR_IO, "%s: cannot size the sparse file: %s", tmp, strerror(errno));
    if (!st && (fflush(o.f) != 0 || fsync(fileno(o.f)) != 0))
        st = mica_err_set(err, MICA_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    if (fclose(o.f) != 0 && !st) st = mica_err_set(err, MICA_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    if (!st && rename(tmp, path) != 0)
        st = mica_err_set(err, MICA_ERR_IO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    if (st) unlink(tmp);
    mica_free(tmp);
    return st;
}
