/*
 * gguf.h - GGUF v2/v3 reader and writer (layer: gguf; knows the file format,
 * knows nothing about models or maths).
 *
 * Reader: gguf_open maps the file read-only and validates it completely
 * before returning, as if an adversary wrote it: every length and offset is
 * checked against the bytes left, all size arithmetic is overflow-checked,
 * counts, string lengths, array lengths, dimensions and nesting depth have
 * caps, type ids must be known, keys and tensor names unique, tensor data
 * aligned, inside the file and non-overlapping. Any violation gives
 * MICA_ERR_FORMAT with a message naming the file, the byte offset and the
 * field ("model.gguf: offset 24: kv 3 key: string length 2^60 exceeds the 100
 * bytes left"). After a successful open, every pointer the getters return is a
 * view into the mapping, valid until gguf_close; nothing is copied.
 *
 * Reference: FORMATS.md section 1 (layout, validation checklist, past CVEs).
 * Thread safety: a gguf_ctx is immutable after open; readers may share it.
 */
#ifndef MICA_GGUF_H
#define MICA_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mica_internal.h"

/* Caps (beyond the file-size bound every count also obeys). */
#define GGUF_MAX_TENSORS      (1u << 20)
#define GGUF_MAX_KV           (1u << 20)
#define GGUF_MAX_STRING       (1ull << 30) /* bytes in one string */
#define GGUF_MAX_ARRAY        (1ull << 30) /* elements in one array */
#define GGUF_MAX_DEPTH        4            /* nesting of arrays of arrays */
#define GGUF_MAX_DIMS         4
#define GGUF_MAX_NAME         63           /* bytes in a tensor name */
#define GGUF_MAX_ALIGNMENT    (1u << 16)
#define GGUF_DEFAULT_ALIGNMENT 32

enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT = 13,
};

/* A string inside the mapping: `len` bytes at `ptr`, NOT NUL-terminated. */
typedef struct gguf_str {
    const char *ptr;
    uint64_t len;
} gguf_str;

/* A metadata value. Scalars are decoded; arrays are described, not copied. */
typedef struct gguf_value {
    enum gguf_type type;
    union {
        uint64_t u;  /* UINT8/16/32/64 */
        int64_t i;   /* INT8/16/32/64 */
        double f;    /* FLOAT32/64 */
        bool b;      /* BOOL (any non-zero byte is true) */
        gguf_str s;  /* STRING */
        struct {
            enum gguf_type elem;  /* element type; may itself be ARRAY */
            uint64_t n;           /* element count */
            const uint8_t *data;  /* first element's bytes in the mapping (fixed-size elements:
                                     packed little-endian; strings/arrays: use gguf_arr_get) */
            uint32_t index;       /* private: the reader's table for variable-size elements */
        } arr;
    } v;
} gguf_value;

typedef struct gguf_kv {
    gguf_str key;
    gguf_value val;
} gguf_kv;

typedef struct gguf_tensor {
    char name[GGUF_MAX_NAME + 1]; /* NUL-terminated copy */
    uint32_t n_dims;              /* 1..4 */
    int64_t ne[GGUF_MAX_DIMS];    /* elements per dim, ne[0] fastest; missing dims are 1 */
    uint32_t type;                /* enum mica_dtype */
    uint64_t offset;              /* relative to the data section */
    uint64_t nbytes;              /* total bytes */
    const void *data;             /* view into the mapping */
} gguf_tensor;

typedef struct gguf_ctx gguf_ctx;

/* ---- reader ---- */

/*
 * Maps and validates `path`. On success *out owns the mapping (gguf_close).
 * Returns MICA_OK, MICA_ERR_IO (cannot open/stat/map; message names the path
 * and errno text), MICA_ERR_FORMAT (invalid; message names path, offset, field)
 * or MICA_ERR_NOMEM. *out is untouched on failure.
 */
mica_status gguf_open(const char *path, gguf_ctx **out, mica_err *err);

/*
 * Validates a GGUF image already in memory (`size` bytes at `data`, borrowed:
 * it must outlive the context). `name` is used in messages. For fuzzing and
 * tests.
 */
mica_status gguf_open_memory(const void *data, size_t size, const char *name,
                             gguf_ctx **out, mica_err *err);

/* Unmaps and frees. Accepts NULL. */
void gguf_close(gguf_ctx *g);

const char *gguf_path(const gguf_ctx *g);
uint32_t gguf_version(const gguf_ctx *g);
uint64_t gguf_file_size(const gguf_ctx *g);
uint32_t gguf_alignment(const gguf_ctx *g);
uint64_t gguf_data_offset(const gguf_ctx *g);

uint64_t gguf_n_kv(const gguf_ctx *g);
const gguf_kv *gguf_kv_at(const gguf_ctx *g, uint64_t i);
/* The kv with this key, or NULL. */
const gguf_kv *gguf_find(const gguf_ctx *g, const char *key);

/*
 * Element i of an array value (i < v->v.arr.n) decoded into *out, for every
 * element type including strings and nested arrays. False if i is out of
 * range or v is not an array.
 */
bool gguf_arr_get(const gguf_ctx *g, const gguf_value *v, uint64_t i, gguf_value *out);

/*
 * Typed getters. Key absent: *out untouched, returns MICA_OK (so a default set
 * by the caller stands). Key present but of an incompatible type or out of the
 * target's range: MICA_ERR_FORMAT naming the file and key. Integer getters
 * accept any integer type whose value fits; gguf_get_f32 accepts FLOAT32/64.
 * The `require` forms also fail (MICA_ERR_FORMAT, "missing key") when absent.
 */
mica_status gguf_get_u32(const gguf_ctx *g, const char *key, uint32_t *out, mica_err *err);
mica_status gguf_get_i64(const gguf_ctx *g, const char *key, int64_t *out, mica_err *err);
mica_status gguf_get_f32(const gguf_ctx *g, const char *key, float *out, mica_err *err);
mica_status gguf_get_bool(const gguf_ctx *g, const char *key, bool *out, mica_err *err);
mica_status gguf_get_str(const gguf_ctx *g, const char *key, gguf_str *out, mica_err *err);
mica_status gguf_require_u32(const gguf_ctx *g, const char *key, uint32_t *out, mica_err *err);
mica_status gguf_require_str(const gguf_ctx *g, const char *key, gguf_str *out, mica_err *err);
/* Array with this element type (MICA_ERR_FORMAT if present with another type). */
mica_status gguf_get_arr(const gguf_ctx *g, const char *key, enum gguf_type elem,
                         gguf_value *out, mica_err *err);

/* True if s equals the NUL-terminated c string. */
bool gguf_str_eq(gguf_str s, const char *c);

uint64_t gguf_n_tensors(const gguf_ctx *g);
const gguf_tensor *gguf_tensor_at(const gguf_ctx *g, uint64_t i);
/* The tensor with this name, or NULL. */
const gguf_tensor *gguf_find_tensor(const gguf_ctx *g, const char *name);

/* Static name of a metadata type ("UINT32"), "?" if unknown. */
const char *gguf_type_name(uint32_t t);

/* ---- writer ---- */

/*
 * Builds a GGUF v3 file: metadata in insertion order, then tensor infos, then
 * the data section with each tensor aligned. Keys and values are copied at the
 * add call; tensor data is produced at write time, streaming, so files larger
 * than RAM can be written.
 */
typedef struct gguf_writer gguf_writer;

/* Fills `nbytes` bytes of tensor data at `dst`; returns MICA_OK or an error. */
typedef mica_status (*gguf_fill_fn)(void *user, void *dst, uint64_t nbytes, mica_err *err);

mica_status gguf_writer_create(gguf_writer **out);
void gguf_writer_free(gguf_writer *w);

/* Setting general.alignment also changes the data alignment (power of two, <= 2^16). */
mica_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
mica_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v);
mica_status gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v);
mica_status gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
mica_status gguf_writer_set_bool(gguf_writer *w, const char *key, bool v);
mica_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *v);
/* Array of fixed-size elements (n elements of `elem`, packed little-endian at data). */
mica_status gguf_writer_set_arr(gguf_writer *w, const char *key, enum gguf_type elem,
                                const void *data, uint64_t n);
/* Array of strings: strs[i] with lens[i] bytes (lens NULL: NUL-terminated). */
mica_status gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *strs,
                                    const uint64_t *lens, uint64_t n);

/*
 * Declares a tensor. Its data comes from fill(user, ...) during
 * gguf_writer_write, or from `data` (borrowed until the write) when fill is
 * NULL. Returns MICA_ERR_INVALID_ARG for a bad name, duplicate, unknown type,
 * n_dims out of 1..4, or ne[0] not a multiple of the type's block size.
 */
mica_status gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type,
                                   uint32_t n_dims, const int64_t *ne,
                                   gguf_fill_fn fill, void *user, const void *data);

/*
 * Sparse mode: gguf_writer_write leaves every tensor's data as a hole (seeks
 * over it, never calls fill), so the file has the full layout and size but
 * occupies only its metadata on disk and reads back zeros: for tests of
 * metadata and shapes on models too big to write.
 */
void gguf_writer_set_sparse(gguf_writer *w, bool sparse);

/* Writes the file (to path + ".tmp", then renames). */
mica_status gguf_writer_write(gguf_writer *w, const char *path, mica_err *err);

#endif /* MICA_GGUF_H */
