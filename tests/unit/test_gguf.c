/*
 * test_gguf.c - the GGUF reader and writer: round trips of every value type,
 * the real test-data files, the typed getters, and the malformed-file suite
 * (crafted images, each corrupting one field of a valid one; every crafted
 * file is also written to $MICA_BUILD/test-tmp/malformed/ for
 * tests/scripts/malformed_cli.sh).
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "tensor/dtype.h"
#include "../test.h"

/* ---- a byte builder for hand-made images ---- */

typedef struct bb {
    uint8_t *p;
    size_t n, cap;
} bb;

static void bb_raw(bb *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) abort(); /* test helper: out of memory in a test is fatal */
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void bb_le(bb *b, uint64_t v, unsigned n) {
    uint8_t t[8];
    for (unsigned i = 0; i < n; i++) t[i] = (uint8_t)(v >> (8 * i));
    bb_raw(b, t, n);
}
static void bb_u32(bb *b, uint64_t v) { bb_le(b, v, 4); }
static void bb_u64(bb *b, uint64_t v) { bb_le(b, v, 8); }
static void bb_str(bb *b, const char *s) {
    bb_u64(b, strlen(s));
    bb_raw(b, s, strlen(s));
}
static void bb_zeros(bb *b, size_t n) {
    for (size_t i = 0; i < n; i++) bb_le(b, 0, 1);
}
static void bb_pad(bb *b, size_t a) { bb_zeros(b, (a - b->n % a) % a); }
static void bb_header(bb *b, uint32_t ver, uint64_t n_tensors, uint64_t n_kv) {
    bb_raw(b, "GGUF", 4);
    bb_u32(b, ver);
    bb_u64(b, n_tensors);
    bb_u64(b, n_kv);
}
static void bb_kv_u32(bb *b, const char *key, uint32_t v) {
    bb_str(b, key);
    bb_u32(b, GGUF_TYPE_UINT32);
    bb_u32(b, v);
}
static void bb_kv_str(bb *b, const char *key, const char *v) {
    bb_str(b, key);
    bb_u32(b, GGUF_TYPE_STRING);
    bb_str(b, v);
}
static void bb_tinfo(bb *b, const char *name, uint32_t n_dims, const int64_t *ne, uint32_t type, uint64_t off) {
    bb_str(b, name);
    bb_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) bb_u64(b, (uint64_t)ne[d]);
    bb_u32(b, type);
    bb_u64(b, off);
}
static void put_le_at(uint8_t *p, size_t pos, uint64_t v, unsigned n) {
    for (unsigned i = 0; i < n; i++) p[pos + i] = (uint8_t)(v >> (8 * i));
}

/*
 * The base image: valid, v3, 5 kvs (string, alignment, u8 array, string
 * array, array of arrays) and 2 tensors (F32 32x2 at 0, Q8_0 64 at 256) whose
 * data ends exactly at the end of the file. `pos` records where fields are.
 */
typedef struct base_pos {
    size_t kv[5];          /* start of each kv (its key length) */
    size_t kv0_type, kv0_val, kv1_val, kv2_elem, kv2_count, kv3_str1, kv4_inner1;
    size_t ti[2];          /* start of each tensor info (its name length) */
    size_t t0_ndims, t0_ne0, t0_ne1, t0_type, t0_off;
    size_t t1_ndims, t1_ne0, t1_type, t1_off;
    size_t data;           /* data section start */
} base_pos;

static void base_image(bb *b, base_pos *ps) {
    memset(ps, 0, sizeof *ps);
    bb_header(b, 3, 2, 5);
    ps->kv[0] = b->n;
    bb_str(b, "general.architecture");
    ps->kv0_type = b->n;
    bb_u32(b, GGUF_TYPE_STRING);
    ps->kv0_val = b->n;
    bb_str(b, "llama");
    ps->kv[1] = b->n;
    bb_str(b, "general.alignment");
    bb_u32(b, GGUF_TYPE_UINT32);
    ps->kv1_val = b->n;
    bb_u32(b, 32);
    ps->kv[2] = b->n;
    bb_str(b, "test.u8s");
    bb_u32(b, GGUF_TYPE_ARRAY);
    ps->kv2_elem = b->n;
    bb_u32(b, GGUF_TYPE_UINT8);
    ps->kv2_count = b->n;
    bb_u64(b, 3);
    bb_raw(b, "\x01\x02\x03", 3);
    ps->kv[3] = b->n;
    bb_str(b, "test.strs");
    bb_u32(b, GGUF_TYPE_ARRAY);
    bb_u32(b, GGUF_TYPE_STRING);
    bb_u64(b, 3);
    bb_str(b, "a");
    ps->kv3_str1 = b->n;
    bb_str(b, "bc");
    bb_str(b, "");
    ps->kv[4] = b->n;
    bb_str(b, "test.nested");
    bb_u32(b, GGUF_TYPE_ARRAY);
    bb_u32(b, GGUF_TYPE_ARRAY);
    bb_u64(b, 2);
    bb_u32(b, GGUF_TYPE_UINT32); /* [0] = u32 [7, 9] */
    bb_u64(b, 2);
    bb_u32(b, 7);
    bb_u32(b, 9);
    ps->kv4_inner1 = b->n;
    bb_u32(b, GGUF_TYPE_STRING); /* [1] = ["x"] */
    bb_u64(b, 1);
    bb_str(b, "x");
    const int64_t ne0[2] = {32, 2}, ne1[1] = {64};
    ps->ti[0] = b->n;
    bb_str(b, "t0");
    ps->t0_ndims = b->n;
    bb_u32(b, 2);
    ps->t0_ne0 = b->n;
    bb_u64(b, (uint64_t)ne0[0]);
    ps->t0_ne1 = b->n;
    bb_u64(b, (uint64_t)ne0[1]);
    ps->t0_type = b->n;
    bb_u32(b, MICA_DTYPE_F32);
    ps->t0_off = b->n;
    bb_u64(b, 0);
    ps->ti[1] = b->n;
    bb_str(b, "t1");
    ps->t1_ndims = b->n;
    bb_u32(b, 1);
    ps->t1_ne0 = b->n;
    bb_u64(b, (uint64_t)ne1[0]);
    ps->t1_type = b->n;
    bb_u32(b, MICA_DTYPE_Q8_0);
    ps->t1_off = b->n;
    bb_u64(b, 256);
    bb_pad(b, 32);
    ps->data = b->n;
    for (int i = 0; i < 64; i++) {
        float f = (float)i * 0.5f;
        bb_raw(b, &f, 4);
    }
    for (int i = 0; i < 68; i++) bb_le(b, (uint64_t)(i * 3), 1);
}

/* Opens an exact-size heap copy (so ASan sees any over-read). */
static mica_status open_copy(const uint8_t *p, size_t n, gguf_ctx **g, mica_err *err) {
    uint8_t *c = malloc(n ? n : 1);
    if (!c) abort();
    if (n) memcpy(c, p, n);
    mica_status st = gguf_open_memory(n ? c : NULL, n, "img.gguf", g, err);
    if (st == MICA_OK) {
        /* walk it while the copy is alive, then close */
        gguf_close(*g);
        *g = NULL;
    }
    free(c);
    return st;
}

TEST(gguf_base_image_valid) {
    bb b = {0};
    base_pos ps;
    base_image(&b, &ps);
    gguf_ctx *g = NULL;
    mica_err err = {0};
    mica_status st = gguf_open_memory(b.p, b.n, "base.gguf", &g, &err);
    if (st) fprintf(stderr, "    %s\n", err.msg);
    ASSERT_OK(st);
    ASSERT_EQ(gguf_version(g), 3);
    ASSERT_EQ(gguf_n_kv(g), 5);
    ASSERT_EQ(gguf_n_tensors(g), 2);
    ASSERT_EQ(gguf_data_offset(g), ps.data);
    ASSERT_EQ(gguf_file_size(g), b.n);
    const gguf_tensor *t1 = gguf_find_tensor(g, "t1");
    ASSERT_TRUE(t1 != NULL);
    ASSERT_EQ(t1->nbytes, 68);
    ASSERT_EQ(t1->ne[0], 64);
    ASSERT_EQ(t1->ne[1], 1);
    ASSERT_TRUE((const uint8_t *)t1->data == b.p + ps.data + 256);
    const gguf_tensor *t0 = gguf_tensor_at(g, 0);
    ASSERT_EQ(t0->nbytes, 256);
    float f;
    memcpy(&f, (const uint8_t *)t0->data + 4 * 5, 4);
    ASSERT_NEAR(f, 2.5, 0);
    /* nested: [[7, 9], ["x"]] */
    const gguf_kv *kv = gguf_find(g, "test.nested");
    ASSERT_TRUE(kv != NULL);
    gguf_value a0, a1, e;
    ASSERT_TRUE(gguf_arr_get(g, &kv->val, 0, &a0));
    ASSERT_TRUE(gguf_arr_get(g, &kv->val, 1, &a1));
    ASSERT_TRUE(!gguf_arr_get(g, &kv->val, 2, &e));
    ASSERT_EQ(a0.type, GGUF_TYPE_ARRAY);
    ASSERT_EQ(a0.v.arr.elem, GGUF_TYPE_UINT32);
    ASSERT_EQ(a0.v.arr.n, 2);
    ASSERT_TRUE(gguf_arr_get(g, &a0, 1, &e));
    ASSERT_EQ(e.v.u, 9);
    ASSERT_EQ(a1.v.arr.elem, GGUF_TYPE_STRING);
    ASSERT_TRUE(gguf_arr_get(g, &a1, 0, &e));
    ASSERT_TRUE(gguf_str_eq(e.v.s, "x"));
    kv = gguf_find(g, "test.strs");
    ASSERT_TRUE(gguf_arr_get(g, &kv->val, 1, &e));
    ASSERT_TRUE(gguf_str_eq(e.v.s, "bc"));
    ASSERT_TRUE(gguf_arr_get(g, &kv->val, 2, &e));
    ASSERT_EQ(e.v.s.len, 0);
    gguf_close(g);
    free(b.p);
}

/* ---- the malformed suite ---- */

typedef struct msuite {
    char dir[512];
    int n, failed;
} msuite;

static void suite_init(msuite *s) {
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "%s/malformed", test_tmp_dir());
    mkdir(s->dir, 0755);
    DIR *d = opendir(s->dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l > 5 && strcmp(de->d_name + l - 5, ".gguf") == 0) {
            char p[1024];
            snprintf(p, sizeof p, "%s/%s", s->dir, de->d_name);
            unlink(p);
        }
    }
    closedir(d);
}

/*
 * Case `name`: image p[0..n) must fail with MICA_ERR_FORMAT and a one-line
 * message "img.gguf: offset N: ..." that contains `want`. Also saved to disk.
 */
static void bad(msuite *s, const char *name, const uint8_t *p, size_t n, const char *want) {
    int id = ++s->n;
    char path[1024];
    snprintf(path, sizeof path, "%s/%02d-%s.gguf", s->dir, id, name);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n)) test_fail(__FILE__, __LINE__, "cannot write %s", path);
    if (f) fclose(f);
    gguf_ctx *g = NULL;
    mica_err err = {0};
    mica_status st = open_copy(p, n, &g, &err);
    const char *why = NULL;
    if (st != MICA_ERR_FORMAT) why = "status is not MICA_ERR_FORMAT";
    else if (strncmp(err.msg, "img.gguf: offset ", 17) != 0) why = "message does not start with 'NAME: offset '";
    else if (!strstr(err.msg, want)) why = "message lacks the expected field text";
    else if (strchr(err.msg, '\n')) why = "message has a newline";
    if (why) {
        s->failed++;
        test_fail(__FILE__, __LINE__, "case %02d-%s: %s (status %d, want \"%s\"): %s", id, name, why, (int)st, want,
                  err.msg);
    }
}

/* The base image with one little-endian field of `width` bytes at pos set to v. */
static void bad_patch(msuite *s, const char *name, const bb *base, size_t pos, uint64_t v, unsigned width,
                      const char *want) {
    uint8_t *c = malloc(base->n);
    if (!c) abort();
    memcpy(c, base->p, base->n);
    put_le_at(c, pos, v, width);
    bad(s, name, c, base->n, want);
    free(c);
}

static void bad_bb(msuite *s, const char *name, bb *b, const char *want) {
    bad(s, name, b->p, b->n, want);
    free(b->p);
    *b = (bb){0};
}

/* Header + one kv whose value is written by the caller afterwards. */
static void one_kv_image(bb *b, const char *key, uint32_t type) {
    bb_header(b, 3, 0, 1);
    bb_str(b, key);
    bb_u32(b, type);
}

/* Header (1 tensor, 0 kv) + a tensor info; data of `data_bytes` zero bytes. */
static void one_tensor_image(bb *b, const char *name, uint32_t n_dims, const int64_t *ne, uint32_t type,
                             uint64_t off, size_t data_bytes) {
    bb_header(b, 3, 1, 0);
    bb_tinfo(b, name, n_dims, ne, type, off);
    bb_pad(b, 32);
    bb_zeros(b, data_bytes);
}

static void suite_header_cases(msuite *s, const bb *base, const base_pos *ps) {
    (void)ps;
    bad(s, "empty", base->p, 0, "header magic");
    bad(s, "trunc-in-magic", base->p, 3, "header magic");
    bad(s, "trunc-in-version", base->p, 6, "header version");
    bad(s, "trunc-in-n-tensors", base->p, 12, "header n_tensors");
    bad(s, "trunc-in-n-kv", base->p, 20, "header n_kv");
    bad_patch(s, "bad-magic", base, 0, 0x46554746, 4, "magic");
    bad_patch(s, "version-0", base, 4, 0, 4, "version 0 not supported");
    bad_patch(s, "version-1", base, 4, 1, 4, "version 1 not supported");
    bad_patch(s, "version-4", base, 4, 4, 4, "version 4 not supported");
    bad_patch(s, "version-byteswapped", base, 4, 0x03000000, 4, "big-endian GGUF not supported");
    bad_patch(s, "n-kv-2pow64-1", base, 16, UINT64_MAX, 8, "header n_kv");
    bad_patch(s, "n-kv-2pow63", base, 16, 1ull << 63, 8, "header n_kv");
    bad_patch(s, "n-kv-too-many-for-file", base, 16, 1000, 8, "header n_kv");
    bad_patch(s, "n-tensors-2pow64-1", base, 8, UINT64_MAX, 8, "header n_tensors");
    bad_patch(s, "n-tensors-2pow63", base, 8, 1ull << 63, 8, "header n_tensors");
    bad_patch(s, "n-tensors-cap-plus-1", base, 8, GGUF_MAX_TENSORS + 1ull, 8, "header n_tensors");
    bad_patch(s, "n-tensors-too-many-for-file", base, 8, 40, 8, "n_tensors");
}

static void suite_kv_cases(msuite *s, const bb *base, const base_pos *ps) {
    bb b = {0};
    bad(s, "trunc-in-kv0-key", base->p, ps->kv[0] + 10, "header n_kv: 5 kv pairs need at least 70 bytes");
    bad(s, "trunc-in-kv3", base->p, ps->kv3_str1 + 3, "kv 3 'test.strs' value: array of 3 STRING elements needs");
    bad(s, "trunc-in-kv4-key", base->p, ps->kv[4] + 10, "kv 4 key: string length 11 exceeds the 2 bytes left");
    bad(s, "trunc-in-kv4-nested", base->p, ps->kv4_inner1 + 14, "kv 4 'test.nested' value[1]");
    bad_patch(s, "key-len-past-eof", base, ps->kv[0], 1000000, 8, "kv 0 key: string length 1000000 exceeds");
    bad_patch(s, "key-len-2pow64-1", base, ps->kv[0], UINT64_MAX, 8, "kv 0 key: string length");
    bad_patch(s, "value-str-len-wrap", base, ps->kv0_val, UINT64_MAX - 3, 8, "kv 0 'general.architecture' value");
    bad_patch(s, "value-type-13", base, ps->kv0_type, 13, 4, "invalid value type 13");
    bad_patch(s, "value-type-0x7fffffff", base, ps->kv0_type, 0x7fffffff, 4, "invalid value type 2147483647");
    bad_patch(s, "array-count-2pow62", base, ps->kv2_count, 1ull << 62, 8, "array count");
    bad_patch(s, "array-count-past-eof", base, ps->kv2_count, 1ull << 20, 8, "kv 2 'test.u8s' value");
    bad_patch(s, "array-elem-type-13", base, ps->kv2_elem, 13, 4, "invalid array element type 13");
    bad_patch(s, "str-array-elem-len", base, ps->kv3_str1, 1ull << 40, 8, "value[1]: string length");
    bad_patch(s, "nested-inner-elem-type", base, ps->kv4_inner1, 0xffffffffu, 4, "value[1]: invalid array element");
    bad_patch(s, "nested-inner-count", base, ps->kv4_inner1 + 4, UINT64_MAX, 8, "value[1]: array count");
    /* u64 array: count * 8 overflows 64 bits (caught by the cap) and fits under the cap but not the file */
    one_kv_image(&b, "a", GGUF_TYPE_ARRAY);
    bb_u32(&b, GGUF_TYPE_UINT64);
    bb_u64(&b, (1ull << 61) + 1);
    bb_u64(&b, 1);
    bad_bb(s, "array-count-times-size-wraps", &b, "array count");
    one_kv_image(&b, "a", GGUF_TYPE_ARRAY);
    bb_u32(&b, GGUF_TYPE_UINT64);
    bb_u64(&b, 1ull << 30);
    bb_u64(&b, 1);
    bad_bb(s, "array-bytes-past-eof", &b, "needs at least 8 bytes per element");
    /* nesting: 5 levels of arrays (the cap is 4) */
    one_kv_image(&b, "deep", GGUF_TYPE_ARRAY);
    for (int i = 0; i < 4; i++) {
        bb_u32(&b, GGUF_TYPE_ARRAY);
        bb_u64(&b, 1);
    }
    bb_u32(&b, GGUF_TYPE_UINT8);
    bb_u64(&b, 1);
    bb_zeros(&b, 1);
    bad_bb(s, "nested-depth-5", &b, "nested deeper than 4");
    /* duplicate key, empty key, NUL in key */
    bb_header(&b, 3, 0, 3);
    bb_kv_u32(&b, "x.a", 1);
    bb_kv_u32(&b, "x.b", 2);
    bb_kv_u32(&b, "x.a", 3);
    bad_bb(s, "duplicate-key", &b, "kv 2 'x.a' key: duplicate key (also kv 0)");
    bb_header(&b, 3, 0, 2);
    bb_kv_u32(&b, "evil\nkey\x1b[2J", 1);
    bb_kv_u32(&b, "evil\nkey\x1b[2J", 2);
    bad_bb(s, "duplicate-key-control-chars", &b, "kv 1 'evil?key?[2J' key: duplicate key");
    bb_header(&b, 3, 0, 1);
    bb_kv_u32(&b, "", 1);
    bad_bb(s, "empty-key", &b, "kv 0 key: empty key");
    bb_header(&b, 3, 0, 1);
    bb_u64(&b, 3);
    bb_raw(&b, "a\0b", 3);
    bb_u32(&b, GGUF_TYPE_UINT8);
    bb_zeros(&b, 1);
    bad_bb(s, "key-with-nul", &b, "NUL");
    /* a BOOL value cut off right after its type */
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "flag");
    bb_u32(&b, GGUF_TYPE_BOOL);
    bad_bb(s, "bool-truncated", &b, "kv 0 'flag' value: truncated");
}

static void suite_alignment_cases(msuite *s, const bb *base, const base_pos *ps) {
    bb b = {0};
    bad_patch(s, "alignment-0", base, ps->kv1_val, 0, 4, "alignment 0 is not a power of two");
    bad_patch(s, "alignment-48", base, ps->kv1_val, 48, 4, "value: alignment 48 is not a power of two");
    bad_patch(s, "alignment-0x80000000", base, ps->kv1_val, 0x80000000u, 4,
              "value: alignment 2147483648 is not a power of two");
    bad_patch(s, "alignment-2pow17", base, ps->kv1_val, 1u << 17, 4, "value: alignment 131072 is not a power of two");
    bad_patch(s, "alignment-as-int32", base, ps->kv1_val - 4, GGUF_TYPE_INT32, 4, "must be UINT32, found INT32");
    one_kv_image(&b, "general.alignment", GGUF_TYPE_UINT64);
    bb_u64(&b, 32);
    bad_bb(s, "alignment-as-uint64", &b, "must be UINT32, found UINT64");
    /* alignment 512: the base tensor t1 at offset 256 is no longer aligned */
    bad_patch(s, "offset-unaligned-512", base, ps->kv1_val, 512, 4,
              "offset 256 is not a multiple of the alignment 512");
    bb_header(&b, 3, 0, 2);
    bb_kv_u32(&b, "general.alignment", 32);
    bb_kv_u32(&b, "general.alignment", 64);
    bad_bb(s, "alignment-duplicate", &b, "duplicate key");
}

static void suite_tensor_cases(msuite *s, const bb *base, const base_pos *ps) {
    bb b = {0};
    bad(s, "trunc-in-tinfo0", base->p, ps->ti[0] + 12, "header n_tensors: 2 tensor infos need at least 66");
    bad(s, "trunc-in-tinfo1-offset", base->p, ps->t1_off + 3, "tensor 1 't1' offset");
    bad(s, "trunc-before-data", base->p, ps->data, "data");
    bad(s, "trunc-in-data", base->p, base->n - 1, "tensor 1 't1' offset");
    bad_patch(s, "n-dims-5", base, ps->t0_ndims, 5, 4, "tensor 0 't0' n_dims: n_dims 5");
    bad_patch(s, "n-dims-0xffffffff", base, ps->t0_ndims, 0xffffffffu, 4, "n_dims 4294967295");
    bad_patch(s, "n-dims-0", base, ps->t0_ndims, 0, 4, "n_dims 0");
    bad_patch(s, "ne-negative", base, ps->t0_ne0, (uint64_t)-32, 8, "tensor 0 't0' ne: ne[0] = -32 is negative");
    {
        uint8_t *c = malloc(base->n);
        memcpy(c, base->p, base->n);
        put_le_at(c, ps->t0_ne0, 1ull << 32, 8);
        put_le_at(c, ps->t0_ne1, 1ull << 32, 8);
        bad(s, "ne-product-overflow", c, base->n, "element count overflows");
        free(c);
    }
    bad_patch(s, "ne0-not-block-multiple", base, ps->t1_ne0, 65, 8, "not a multiple of the Q8_0 block size 32");
    bad_patch(s, "type-4-removed", base, ps->t1_type, 4, 4, "unknown or removed tensor type 4");
    bad_patch(s, "type-31-removed", base, ps->t1_type, 31, 4, "unknown or removed tensor type 31");
    bad_patch(s, "type-1000", base, ps->t1_type, 1000, 4, "unknown or removed tensor type 1000");
    bad_patch(s, "type-negative", base, ps->t1_type, 0xffffffffu, 4, "tensor type 4294967295 (-1 as signed)");
    {   /* CVE-2026-33298 shape: Q4_K with ne0 = 2^62. The naive 144 * ne0 / 256 wraps to 0
         * bytes ("fits"); (ne0 / 256) * 144 = 2^54 * 144 is the true size, far past the end */
        uint8_t *c = malloc(base->n);
        memcpy(c, base->p, base->n);
        put_le_at(c, ps->t1_type, MICA_DTYPE_Q4_K, 4);
        put_le_at(c, ps->t1_ne0, 1ull << 62, 8);
        bad(s, "q4k-huge-ne0", c, base->n, "data [256, 2594073385365405952) extends past");
        put_le_at(c, ps->t1_type, MICA_DTYPE_F64, 4); /* 2^62 elements * 8 bytes overflows 64 bits */
        bad(s, "f64-byte-size-overflow", c, base->n, "byte size of F64 tensor overflows");
        free(c);
    }
    bad_patch(s, "offset-unaligned", base, ps->t1_off, 260, 8, "offset 260 is not a multiple of the alignment 32");
    bad_patch(s, "offset-past-eof", base, ps->t1_off, 1024, 8, "extends past");
    bad_patch(s, "offset-near-2pow64", base, ps->t1_off, UINT64_MAX - 31, 8, "wraps around");
    bad_patch(s, "overlap", base, ps->t1_off, 128, 8, "overlaps tensor 0 't0'");
    bad_patch(s, "duplicate-tensor-name", base, ps->ti[1] + 9, '0', 1, "tensor 1 't0' name: duplicate tensor name");
    {   /* GGML_PAD wrap shape: F64 with 2^61-1 elements = SIZE_MAX-7 bytes; align() would wrap to 0 */
        const int64_t ne[1] = {(1ll << 61) - 1};
        one_tensor_image(&b, "huge", 1, ne, MICA_DTYPE_F64, 0, 64);
        bad_bb(s, "pad-wrap-nbytes", &b, "extends past");
    }
    {
        char name[65];
        memset(name, 'n', 64);
        name[64] = '\0';
        const int64_t ne[1] = {4};
        one_tensor_image(&b, name, 1, ne, MICA_DTYPE_F32, 0, 16);
        bad_bb(s, "tensor-name-64", &b, "tensor name length 64 exceeds 63");
    }
    {
        const int64_t ne[1] = {4};
        one_tensor_image(&b, "", 1, ne, MICA_DTYPE_F32, 0, 16);
        bad_bb(s, "tensor-name-empty", &b, "empty tensor name");
    }
    {   /* a zero-size tensor, but the padding to the data section is missing */
        const int64_t ne[2] = {0, 5};
        bb_header(&b, 3, 1, 0);
        bb_tinfo(&b, "z", 2, ne, MICA_DTYPE_F32, 0);
        bad_bb(s, "data-padding-missing", &b, "data section: padding");
    }
    {   /* duplicate tensor names with control characters stay on one line */
        const int64_t ne[1] = {8};
        bb_header(&b, 3, 2, 0);
        bb_tinfo(&b, "x\r\ny", 1, ne, MICA_DTYPE_F32, 0);
        bb_tinfo(&b, "x\r\ny", 1, ne, MICA_DTYPE_F32, 32);
        bb_pad(&b, 32);
        bb_zeros(&b, 64);
        bad_bb(s, "duplicate-tensor-name-control-chars", &b, "tensor 1 'x??y' name: duplicate tensor name");
    }
    {   /* a tensor lying inside another */
        const int64_t big[1] = {64}, small[1] = {8};
        bb_header(&b, 3, 3, 0);
        bb_tinfo(&b, "a", 1, big, MICA_DTYPE_F32, 0);   /* [0, 256) */
        bb_tinfo(&b, "b", 1, small, MICA_DTYPE_F32, 32); /* [32, 64) inside a */
        bb_tinfo(&b, "c", 1, small, MICA_DTYPE_F32, 128);
        bb_pad(&b, 32);
        bb_zeros(&b, 256);
        bad_bb(s, "overlap-contained", &b, "overlaps tensor 0 'a'");
    }
}

TEST(gguf_malformed_suite) {
    bb base = {0};
    base_pos ps;
    base_image(&base, &ps);
    msuite s;
    suite_init(&s);
    suite_header_cases(&s, &base, &ps);
    suite_kv_cases(&s, &base, &ps);
    suite_alignment_cases(&s, &base, &ps);
    suite_tensor_cases(&s, &base, &ps);
    free(base.p);
    ASSERT_TRUE(s.n >= 35);
    ASSERT_EQ(s.failed, 0);
}

/* Every prefix of the base image fails cleanly; every single-byte corruption
 * either opens or fails cleanly (under ASan: without any out-of-bounds read). */
TEST(gguf_malformed_truncate_every_byte) {
    bb base = {0};
    base_pos ps;
    base_image(&base, &ps);
    for (size_t n = 0; n < base.n; n++) {
        gguf_ctx *g = NULL;
        mica_err err = {0};
        mica_status st = open_copy(base.p, n, &g, &err);
        if (st != MICA_ERR_FORMAT || !strstr(err.msg, "offset ")) {
            test_fail(__FILE__, __LINE__, "prefix of %zu bytes: status %d: %s", n, (int)st, err.msg);
            break;
        }
    }
    for (size_t i = 0; i < base.n && !test_failed(); i++) {
        for (int k = 0; k < 3; k++) {
            static const uint8_t flips[3] = {0xff, 0x80, 0x01};
            base.p[i] ^= flips[k];
            gguf_ctx *g = NULL;
            mica_err err = {0};
            mica_status st = open_copy(base.p, base.n, &g, &err);
            if (st != MICA_OK && st != MICA_ERR_FORMAT)
                test_fail(__FILE__, __LINE__, "flip at %zu: status %d: %s", i, (int)st, err.msg);
            base.p[i] ^= flips[k];
        }
    }
    free(base.p);
}

/* ---- valid hand-made images ---- */

/* Every scalar type, nested arrays up to the depth cap, empty arrays; v2. */
TEST(gguf_every_value_type) {
    bb b = {0};
    bb_header(&b, 2, 0, 17);
    bb_str(&b, "u8"); bb_u32(&b, GGUF_TYPE_UINT8); bb_le(&b, 255, 1);
    bb_str(&b, "i8"); bb_u32(&b, GGUF_TYPE_INT8); bb_le(&b, 0x80, 1);
    bb_str(&b, "u16"); bb_u32(&b, GGUF_TYPE_UINT16); bb_le(&b, 65535, 2);
    bb_str(&b, "i16"); bb_u32(&b, GGUF_TYPE_INT16); bb_le(&b, 0x8000, 2);
    bb_str(&b, "u32"); bb_u32(&b, GGUF_TYPE_UINT32); bb_u32(&b, 4000000000u);
    bb_str(&b, "i32"); bb_u32(&b, GGUF_TYPE_INT32); bb_u32(&b, (uint32_t)-5);
    bb_str(&b, "f32"); bb_u32(&b, GGUF_TYPE_FLOAT32); bb_u32(&b, 0x3fc00000u); /* 1.5 */
    bb_str(&b, "bool"); bb_u32(&b, GGUF_TYPE_BOOL); bb_le(&b, 2, 1);            /* non-zero: true */
    bb_str(&b, "bool0"); bb_u32(&b, GGUF_TYPE_BOOL); bb_le(&b, 0, 1);
    bb_str(&b, "str"); bb_u32(&b, GGUF_TYPE_STRING); bb_str(&b, "h\xc3\xa9llo");
    bb_str(&b, "u64"); bb_u32(&b, GGUF_TYPE_UINT64); bb_u64(&b, (1ull << 63) + 5);
    bb_str(&b, "i64"); bb_u32(&b, GGUF_TYPE_INT64); bb_u64(&b, (uint64_t)-(1ll << 40));
    bb_str(&b, "f64"); bb_u32(&b, GGUF_TYPE_FLOAT64); bb_u64(&b, 0x400921fb54442d18ull); /* pi */
    bb_str(&b, "i16s"); bb_u32(&b, GGUF_TYPE_ARRAY); bb_u32(&b, GGUF_TYPE_INT16); bb_u64(&b, 3);
    bb_le(&b, 1, 2); bb_le(&b, 0xffff, 2); bb_le(&b, 300, 2);
    bb_str(&b, "empty"); bb_u32(&b, GGUF_TYPE_ARRAY); bb_u32(&b, GGUF_TYPE_STRING); bb_u64(&b, 0);
    /* depth 4 (the cap): [ [[["deep", "er"]]], [[1.0]] ] */
    bb_str(&b, "deep"); bb_u32(&b, GGUF_TYPE_ARRAY);
    bb_u32(&b, GGUF_TYPE_ARRAY); bb_u64(&b, 2);           /* level 1: 2 arrays */
    bb_u32(&b, GGUF_TYPE_ARRAY); bb_u64(&b, 1);           /* level 2 [0]: 1 array */
    bb_u32(&b, GGUF_TYPE_ARRAY); bb_u64(&b, 1);           /* level 3: 1 array */
    bb_u32(&b, GGUF_TYPE_STRING); bb_u64(&b, 2); bb_str(&b, "deep"); bb_str(&b, "er"); /* level 4 */
    bb_u32(&b, GGUF_TYPE_ARRAY); bb_u64(&b, 1);           /* level 2 [1]: 1 array */
    bb_u32(&b, GGUF_TYPE_FLOAT64); bb_u64(&b, 1); bb_u64(&b, 0x3ff0000000000000ull);
    bb_str(&b, "bools"); bb_u32(&b, GGUF_TYPE_ARRAY); bb_u32(&b, GGUF_TYPE_BOOL); bb_u64(&b, 2);
    bb_le(&b, 0, 1); bb_le(&b, 7, 1);

    gguf_ctx *g = NULL;
    mica_err err = {0};
    mica_status st = gguf_open_memory(b.p, b.n, "types.gguf", &g, &err);
    if (st) fprintf(stderr, "    %s\n", err.msg);
    ASSERT_OK(st);
    ASSERT_EQ(gguf_version(g), 2);
    ASSERT_EQ(gguf_n_kv(g), 17);
    ASSERT_EQ(gguf_data_offset(g), b.n); /* no tensors: the data section is empty */
    ASSERT_EQ(gguf_find(g, "u8")->val.v.u, 255);
    ASSERT_EQ(gguf_find(g, "i8")->val.v.i, -128);
    ASSERT_EQ(gguf_find(g, "u16")->val.v.u, 65535);
    ASSERT_EQ(gguf_find(g, "i16")->val.v.i, -32768);
    ASSERT_EQ(gguf_find(g, "u32")->val.v.u, 4000000000u);
    ASSERT_EQ(gguf_find(g, "i32")->val.v.i, -5);
    ASSERT_NEAR(gguf_find(g, "f32")->val.v.f, 1.5, 0);
    ASSERT_TRUE(gguf_find(g, "bool")->val.v.b);
    ASSERT_TRUE(!gguf_find(g, "bool0")->val.v.b);
    ASSERT_TRUE(gguf_str_eq(gguf_find(g, "str")->val.v.s, "h\xc3\xa9llo"));
    ASSERT_TRUE(gguf_find(g, "u64")->val.v.u == (1ull << 63) + 5);
    ASSERT_EQ(gguf_find(g, "i64")->val.v.i, -(1ll << 40));
    ASSERT_NEAR(gguf_find(g, "f64")->val.v.f, 3.141592653589793, 1e-15);
    ASSERT_EQ(gguf_find(g, "f64")->val.type, GGUF_TYPE_FLOAT64);
    gguf_value e, l1, l2, l3;
    const gguf_value *v = &gguf_find(g, "i16s")->val;
    ASSERT_EQ(v->v.arr.n, 3);
    ASSERT_TRUE(gguf_arr_get(g, v, 1, &e));
    ASSERT_EQ(e.type, GGUF_TYPE_INT16);
    ASSERT_EQ(e.v.i, -1);
    ASSERT_TRUE(gguf_arr_get(g, v, 2, &e));
    ASSERT_EQ(e.v.i, 300);
    v = &gguf_find(g, "empty")->val;
    ASSERT_EQ(v->v.arr.n, 0);
    ASSERT_TRUE(!gguf_arr_get(g, v, 0, &e));
    v = &gguf_find(g, "deep")->val;
    ASSERT_EQ(v->v.arr.elem, GGUF_TYPE_ARRAY);
    ASSERT_EQ(v->v.arr.n, 2);
    ASSERT_TRUE(gguf_arr_get(g, v, 0, &l1));
    ASSERT_TRUE(gguf_arr_get(g, &l1, 0, &l2));
    ASSERT_EQ(l2.v.arr.elem, GGUF_TYPE_ARRAY);
    ASSERT_TRUE(gguf_arr_get(g, &l2, 0, &l3));
    ASSERT_EQ(l3.v.arr.elem, GGUF_TYPE_STRING);
    ASSERT_EQ(l3.v.arr.n, 2);
    ASSERT_TRUE(gguf_arr_get(g, &l3, 1, &e));
    ASSERT_TRUE(gguf_str_eq(e.v.s, "er"));
    ASSERT_TRUE(gguf_arr_get(g, v, 1, &l1));
    ASSERT_TRUE(gguf_arr_get(g, &l1, 0, &l2));
    ASSERT_EQ(l2.v.arr.elem, GGUF_TYPE_FLOAT64);
    ASSERT_TRUE(gguf_arr_get(g, &l2, 0, &e));
    ASSERT_NEAR(e.v.f, 1.0, 0);
    v = &gguf_find(g, "bools")->val;
    ASSERT_TRUE(gguf_arr_get(g, v, 1, &e));
    ASSERT_TRUE(e.v.b);
    /* not an array */
    ASSERT_TRUE(!gguf_arr_get(g, &gguf_find(g, "u8")->val, 0, &e));
    gguf_close(g);
    free(b.p);
}

/* Zero-element tensors open and report 0 bytes; the data pointer is valid. */
TEST(gguf_zero_size_tensor) {
    bb b = {0};
    const int64_t ne0[2] = {0, 7}, ne1[1] = {4};
    bb_header(&b, 3, 2, 0);
    bb_tinfo(&b, "empty", 2, ne0, MICA_DTYPE_Q4_K, 0);
    bb_tinfo(&b, "four", 1, ne1, MICA_DTYPE_F32, 0);
    bb_pad(&b, 32);
    bb_zeros(&b, 16);
    gguf_ctx *g = NULL;
    mica_err err = {0};
    mica_status st = gguf_open_memory(b.p, b.n, "zero.gguf", &g, &err);
    if (st) fprintf(stderr, "    %s\n", err.msg);
    ASSERT_OK(st);
    ASSERT_EQ(gguf_find_tensor(g, "empty")->nbytes, 0);
    ASSERT_EQ(gguf_find_tensor(g, "empty")->ne[1], 7);
    ASSERT_EQ(gguf_find_tensor(g, "four")->nbytes, 16);
    ASSERT_TRUE(gguf_find_tensor(g, "nope") == NULL);
    gguf_close(g);
    free(b.p);
}

/* The smallest possible records (a 1-byte key with a BOOL value: 14 bytes; a
 * 1-byte-name 1-D tensor info: 33 bytes) pass the count-versus-size checks. */
TEST(gguf_minimal_records) {
    bb b = {0};
    const int64_t ne[1] = {0};
    bb_header(&b, 3, 1, 1);
    bb_str(&b, "b");
    bb_u32(&b, GGUF_TYPE_BOOL);
    bb_le(&b, 1, 1);
    ASSERT_EQ(b.n, 24 + 14);
    bb_tinfo(&b, "t", 1, ne, MICA_DTYPE_F32, 0);
    ASSERT_EQ(b.n, 24 + 14 + 33);
    bb_pad(&b, 32);
    gguf_ctx *g = NULL;
    mica_err err = {0};
    mica_status st = gguf_open_memory(b.p, b.n, "min.gguf", &g, &err);
    if (st) fprintf(stderr, "    %s\n", err.msg);
    ASSERT_OK(st);
    ASSERT_EQ(gguf_data_offset(g), 96);
    bool v = false;
    ASSERT_OK(gguf_get_bool(g, "b", &v, &err));
    ASSERT_TRUE(v);
    ASSERT_EQ(gguf_tensor_at(g, 0)->nbytes, 0);
    gguf_close(g);
    free(b.p);
}

/* ---- writer round trip ---- */

typedef struct fill_ctx {
    uint8_t seed;
    int calls;
} fill_ctx;

static mica_status fill_pattern(void *user, void *dst, uint64_t nbytes, mica_err *err) {
    (void)err;
    fill_ctx *f = user;
    f->calls++;
    for (uint64_t i = 0; i < nbytes; i++) ((uint8_t *)dst)[i] = (uint8_t)(f->seed + i * 7);
    return MICA_OK;
}

static mica_status fill_fail(void *user, void *dst, uint64_t nbytes, mica_err *err) {
    (void)user, (void)dst, (void)nbytes;
    return mica_err_set(err, MICA_ERR_IO, "source went away");
}

TEST(gguf_writer_roundtrip) {
    gguf_writer *w = NULL;
    ASSERT_OK(gguf_writer_create(&w));
    ASSERT_OK(gguf_writer_set_str(w, "general.architecture", "llama"));
    ASSERT_OK(gguf_writer_set_u32(w, "general.alignment", 64));
    ASSERT_OK(gguf_writer_set_u32(w, "a.u32", 4000000000u));
    ASSERT_OK(gguf_writer_set_i32(w, "a.i32", -7));
    ASSERT_OK(gguf_writer_set_u64(w, "a.u64", UINT64_MAX));
    ASSERT_OK(gguf_writer_set_f32(w, "a.f32", 1e-5f));
    ASSERT_OK(gguf_writer_set_bool(w, "a.bool", true));
    ASSERT_OK(gguf_writer_set_str(w, "a.empty", ""));
    ASSERT_OK(gguf_writer_set_i32(w, "a.replaced", 1));
    ASSERT_OK(gguf_writer_set_str(w, "a.replaced", "second")); /* keeps its position, new type */
    const uint8_t u8s[3] = {1, 2, 250};
    const int8_t i8s[2] = {-1, 5};
    const uint16_t u16s[2] = {1, 65535};
    const int16_t i16s[1] = {-300};
    const uint32_t u32s[2] = {7, 9};
    const int32_t i32s[3] = {-1, 0, 1};
    const float f32s[2] = {0.25f, -2.0f};
    const uint8_t bools[2] = {1, 0};
    const uint64_t u64s[1] = {1ull << 40};
    const int64_t i64s[2] = {-(1ll << 50), 3};
    const double f64s[1] = {-0.125};
    ASSERT_OK(gguf_writer_set_arr(w, "arr.u8", GGUF_TYPE_UINT8, u8s, 3));
    ASSERT_OK(gguf_writer_set_arr(w, "arr.i8", GGUF_TYPE_INT8, i8s, 2));
    ASSERT_OK(gguf_writer_set_arr(w, "arr.u16", GGUF_TYPE_UINT16, u16s, 2));
    ASSERT_OK(gguf_writer_set_arr(w, "arr.i16", GGUF_TYPE_INT16, i16s, 1));
    ASSERT_OK(gguf_writer_set_arr(w, "arr.u32", GGUF_TYPE_UINT32, u32s, 2));
    ASSERT_OK(gguf_writer_set_arr(w, "arr.i32", GGUF_TYPE_INT32, i32s, 3));
    ASSERT_OK(gguf_writer_set_arr(w, "arr.f32", GGUF_TYPE_FLOAT32, f32s, 2));
    ASSERT_OK(gguf_writer_set_arr(w, "arr.bool", GGUF_TYPE_BOOL, bools, 2));
    ASSERT_OK(gguf_writer_set_arr(w, "arr.u64", GGUF_TYPE_UINT64, u64s, 1));
    ASSERT_OK(gguf_writer_set_arr(w, "arr.i64", GGUF_TYPE_INT64, i64s, 2));
    ASSERT_OK(gguf_writer_set_arr(w, "arr.f64", GGUF_TYPE_FLOAT64, f64s, 1));
    ASSERT_OK(gguf_writer_set_arr(w, "arr.none", GGUF_TYPE_UINT32, NULL, 0));
    const char *strs[4] = {"<s>", "", "h\xc3\xa9", "x\0y"};
    const uint64_t lens[4] = {3, 0, 3, 3};
    ASSERT_OK(gguf_writer_set_arr_str(w, "arr.str", strs, lens, 4));
    ASSERT_OK(gguf_writer_set_arr_str(w, "arr.cstr", strs, NULL, 3));

    /* tensors of several types; data from pointers and from fill callbacks */
    float f32_data[12];
    for (int i = 0; i < 12; i++) f32_data[i] = (float)i - 3.5f;
    uint16_t f16_data[8];
    for (int i = 0; i < 8; i++) f16_data[i] = (uint16_t)(0x3c00 + i);
    fill_ctx fq40 = {11, 0}, fq4k = {99, 0};
    const int64_t ne_f32[2] = {4, 3}, ne_f16[1] = {8}, ne_q40[2] = {64, 2}, ne_q4k[3] = {256, 1, 2};
    const int64_t ne_q80[1] = {32}, ne_zero[2] = {0, 5};
    uint8_t q80_data[34];
    for (int i = 0; i < 34; i++) q80_data[i] = (uint8_t)(200 - i);
    ASSERT_OK(gguf_writer_add_tensor(w, "w.f32", MICA_DTYPE_F32, 2, ne_f32, NULL, NULL, f32_data));
    ASSERT_OK(gguf_writer_add_tensor(w, "w.f16", MICA_DTYPE_F16, 1, ne_f16, NULL, NULL, f16_data));
    ASSERT_OK(gguf_writer_add_tensor(w, "w.q4_0", MICA_DTYPE_Q4_0, 2, ne_q40, fill_pattern, &fq40, NULL));
    ASSERT_OK(gguf_writer_add_tensor(w, "w.zero", MICA_DTYPE_I32, 2, ne_zero, NULL, NULL, NULL));
    ASSERT_OK(gguf_writer_add_tensor(w, "w.q4_k", MICA_DTYPE_Q4_K, 3, ne_q4k, fill_pattern, &fq4k, NULL));
    ASSERT_OK(gguf_writer_add_tensor(w, "w.q8_0", MICA_DTYPE_Q8_0, 1, ne_q80, NULL, NULL, q80_data));

    char path[512];
    snprintf(path, sizeof path, "%s/gguf_roundtrip.gguf", test_tmp_dir());
    mica_err err = {0};
    mica_status st = gguf_writer_write(w, path, &err);
    if (st) fprintf(stderr, "    %s\n", err.msg);
    ASSERT_OK(st);
    gguf_writer_free(w);
    ASSERT_EQ(fq40.calls, 1);
    ASSERT_EQ(fq4k.calls, 1);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    ASSERT_TRUE(access(tmp, F_OK) != 0);

    gguf_ctx *g = NULL;
    st = gguf_open(path, &g, &err);
    if (st) fprintf(stderr, "    %s\n", err.msg);
    ASSERT_OK(st);
    ASSERT_EQ(gguf_version(g), 3);
    ASSERT_EQ(gguf_alignment(g), 64);
    ASSERT_EQ(gguf_data_offset(g) % 64, 0);
    ASSERT_EQ(gguf_n_kv(g), 23);
    ASSERT_STREQ(gguf_path(g), path);
    ASSERT_TRUE(gguf_str_eq(gguf_kv_at(g, 0)->key, "general.architecture"));
    ASSERT_TRUE(gguf_str_eq(gguf_kv_at(g, 8)->key, "a.replaced"));
    ASSERT_TRUE(gguf_str_eq(gguf_kv_at(g, 8)->val.v.s, "second"));
    ASSERT_TRUE(gguf_kv_at(g, 23) == NULL);
    ASSERT_EQ(gguf_find(g, "a.u32")->val.v.u, 4000000000u);
    ASSERT_EQ(gguf_find(g, "a.i32")->val.v.i, -7);
    ASSERT_TRUE(gguf_find(g, "a.u64")->val.v.u == UINT64_MAX);
    ASSERT_NEAR(gguf_find(g, "a.f32")->val.v.f, 1e-5, 1e-12);
    ASSERT_TRUE(gguf_find(g, "a.bool")->val.v.b);
    ASSERT_EQ(gguf_find(g, "a.empty")->val.v.s.len, 0);
    gguf_value e;
    const gguf_value *v = &gguf_find(g, "arr.u8")->val;
    ASSERT_TRUE(gguf_arr_get(g, v, 2, &e));
    ASSERT_EQ(e.v.u, 250);
    v = &gguf_find(g, "arr.i8")->val;
    ASSERT_TRUE(gguf_arr_get(g, v, 0, &e));
    ASSERT_EQ(e.v.i, -1);
    v = &gguf_find(g, "arr.u16")->val;
    ASSERT_TRUE(gguf_arr_get(g, v, 1, &e));
    ASSERT_EQ(e.v.u, 65535);
    v = &gguf_find(g, "arr.i16")->val;
    ASSERT_TRUE(gguf_arr_get(g, v, 0, &e));
    ASSERT_EQ(e.v.i, -300);
    v = &gguf_find(g, "arr.u32")->val;
    ASSERT_TRUE(gguf_arr_get(g, v, 1, &e));
    ASSERT_EQ(e.v.u, 9);
    v = &gguf_find(g, "arr.i32")->val;
    ASSERT_TRUE(gguf_arr_get(g, v, 0, &e));
    ASSERT_EQ(e.v.i, -1);
    v = &gguf_find(g, "arr.f32")->val;
    ASSERT_TRUE(gguf_arr_get(g, v, 1, &e));
    ASSERT_NEAR(e.v.f, -2.0, 0);
    v = &gguf_find(g, "arr.bool")->val;
    ASSERT_TRUE(gguf_arr_get(g, v, 0, &e));
    ASSERT_TRUE(e.v.b);
    ASSERT_TRUE(gguf_arr_get(g, v, 1, &e));
    ASSERT_TRUE(!e.v.b);
    v = &gguf_find(g, "arr.u64")->val;
    ASSERT_TRUE(gguf_arr_get(g, v, 0, &e));
    ASSERT_TRUE(e.v.u == 1ull << 40);
    v = &gguf_find(g, "arr.i64")->val;
    ASSERT_TRUE(gguf_arr_get(g, v, 0, &e));
    ASSERT_EQ(e.v.i, -(1ll << 50));
    v = &gguf_find(g, "arr.f64")->val;
    ASSERT_TRUE(gguf_arr_get(g, v, 0, &e));
    ASSERT_NEAR(e.v.f, -0.125, 0);
    ASSERT_EQ(gguf_find(g, "arr.none")->val.v.arr.n, 0);
    v = &gguf_find(g, "arr.str")->val;
    ASSERT_EQ(v->v.arr.n, 4);
    ASSERT_TRUE(gguf_arr_get(g, v, 0, &e));
    ASSERT_TRUE(gguf_str_eq(e.v.s, "<s>"));
    ASSERT_TRUE(gguf_arr_get(g, v, 1, &e));
    ASSERT_EQ(e.v.s.len, 0);
    ASSERT_TRUE(gguf_arr_get(g, v, 3, &e));
    ASSERT_EQ(e.v.s.len, 3);
    ASSERT_TRUE(memcmp(e.v.s.ptr, "x\0y", 3) == 0);
    v = &gguf_find(g, "arr.cstr")->val;
    ASSERT_EQ(v->v.arr.n, 3);
    ASSERT_TRUE(gguf_arr_get(g, v, 2, &e));
    ASSERT_TRUE(gguf_str_eq(e.v.s, "h\xc3\xa9"));

    ASSERT_EQ(gguf_n_tensors(g), 6);
    const gguf_tensor *t = gguf_tensor_at(g, 0);
    ASSERT_STREQ(t->name, "w.f32");
    ASSERT_EQ(t->n_dims, 2);
    ASSERT_EQ(t->ne[0], 4);
    ASSERT_EQ(t->ne[1], 3);
    ASSERT_EQ(t->ne[2], 1);
    ASSERT_EQ(t->nbytes, 48);
    ASSERT_TRUE(memcmp(t->data, f32_data, 48) == 0);
    t = gguf_find_tensor(g, "w.f16");
    ASSERT_EQ(t->type, MICA_DTYPE_F16);
    ASSERT_EQ(t->nbytes, 16);
    ASSERT_TRUE(memcmp(t->data, f16_data, 16) == 0);
    t = gguf_find_tensor(g, "w.q4_0");
    ASSERT_EQ(t->nbytes, 2 * 2 * 18);
    ASSERT_EQ(((const uint8_t *)t->data)[5], (uint8_t)(11 + 35));
    t = gguf_find_tensor(g, "w.zero");
    ASSERT_EQ(t->nbytes, 0);
    t = gguf_find_tensor(g, "w.q4_k");
    ASSERT_EQ(t->n_dims, 3);
    ASSERT_EQ(t->ne[2], 2);
    ASSERT_EQ(t->nbytes, 2 * 144);
    ASSERT_EQ(((const uint8_t *)t->data)[287], (uint8_t)(99 + 287 * 7));
    t = gguf_find_tensor(g, "w.q8_0");
    ASSERT_EQ(t->nbytes, 34);
    ASSERT_TRUE(memcmp(t->data, q80_data, 34) == 0);
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
        t = gguf_tensor_at(g, i);
        ASSERT_EQ(t->offset % 64, 0);
        ASSERT_EQ(((const uint8_t *)t->data - (const uint8_t *)gguf_tensor_at(g, 0)->data) % 64, 0);
    }
    /* the file ends right after the last tensor (Q8_0) */
    ASSERT_EQ(gguf_data_offset(g) + gguf_find_tensor(g, "w.q8_0")->offset + 34, gguf_file_size(g));
    gguf_close(g);
    unlink(path);
}

TEST(gguf_writer_rejects) {
    gguf_writer *w = NULL;
    ASSERT_OK(gguf_writer_create(&w));
    const int64_t ne[2] = {32, 2}, neg[1] = {-32}, odd[1] = {33};
    float data[64] = {0};
    ASSERT_EQ(gguf_writer_set_u32(w, "", 1), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(gguf_writer_set_u32(w, "general.alignment", 0), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(gguf_writer_set_u32(w, "general.alignment", 48), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(gguf_writer_set_u32(w, "general.alignment", 1u << 17), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(gguf_writer_set_i32(w, "general.alignment", 32), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(gguf_writer_set_str(w, "k", NULL), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(gguf_writer_set_arr(w, "k", GGUF_TYPE_STRING, data, 1), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(gguf_writer_set_arr(w, "k", GGUF_TYPE_ARRAY, data, 1), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(gguf_writer_set_arr(w, "k", (enum gguf_type)13, data, 1), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(gguf_writer_set_arr(w, "k", GGUF_TYPE_UINT8, NULL, 1), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(gguf_writer_set_arr(w, "k", GGUF_TYPE_UINT8, data, GGUF_MAX_ARRAY + 1), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(gguf_writer_set_arr_str(w, "k", NULL, NULL, 1), MICA_ERR_INVALID_ARG);
    char long_name[70];
    memset(long_name, 'a', 64);
    long_name[64] = '\0';
    ASSERT_EQ(gguf_writer_add_tensor(w, long_name, MICA_DTYPE_F32, 2, ne, NULL, NULL, data), MICA_ERR_INVALID_ARG);
    long_name[63] = '\0';
    ASSERT_OK(gguf_writer_add_tensor(w, long_name, MICA_DTYPE_F32, 2, ne, NULL, NULL, data));
    ASSERT_EQ(gguf_writer_add_tensor(w, long_name, MICA_DTYPE_F32, 2, ne, NULL, NULL, data), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(gguf_writer_add_tensor(w, "", MICA_DTYPE_F32, 2, ne, NULL, NULL, data), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(gguf_writer_add_tensor(w, "t", 4, 2, ne, NULL, NULL, data), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(gguf_writer_add_tensor(w, "t", 1000, 2, ne, NULL, NULL, data), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(gguf_writer_add_tensor(w, "t", MICA_DTYPE_F32, 0, ne, NULL, NULL, data), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(gguf_writer_add_tensor(w, "t", MICA_DTYPE_F32, 5, ne, NULL, NULL, data), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(gguf_writer_add_tensor(w, "t", MICA_DTYPE_F32, 1, neg, NULL, NULL, data), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(gguf_writer_add_tensor(w, "t", MICA_DTYPE_Q8_0, 1, odd, NULL, NULL, data), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(gguf_writer_add_tensor(w, "t", MICA_DTYPE_F32, 2, ne, NULL, NULL, NULL), MICA_ERR_INVALID_ARG);
    /* a failing fill callback: the error is reported and no file (or .tmp) is left */
    ASSERT_OK(gguf_writer_add_tensor(w, "t", MICA_DTYPE_F32, 2, ne, fill_fail, NULL, NULL));
    char path[512], tmp[600];
    snprintf(path, sizeof path, "%s/gguf_fillfail.gguf", test_tmp_dir());
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    unlink(path);
    mica_err err = {0};
    ASSERT_EQ(gguf_writer_write(w, path, &err), MICA_ERR_IO);
    ASSERT_TRUE(strstr(err.msg, "source went away") != NULL);
    ASSERT_TRUE(strstr(err.msg, "'t'") != NULL);
    ASSERT_TRUE(access(path, F_OK) != 0);
    ASSERT_TRUE(access(tmp, F_OK) != 0);
    /* an unwritable path */
    ASSERT_EQ(gguf_writer_write(w, "/nonexistent-dir/x.gguf", &err), MICA_ERR_IO);
    gguf_writer_free(w);
    gguf_writer_free(NULL);
}

/* 150k-element string array: open is linear and element access is O(1). */
TEST(gguf_large_string_array) {
    enum { N = 150000 };
    char **strs = malloc(N * sizeof *strs);
    ASSERT_TRUE(strs != NULL);
    for (int i = 0; i < N; i++) {
        strs[i] = malloc(16);
        snprintf(strs[i], 16, "tok%d", i);
    }
    gguf_writer *w = NULL;
    ASSERT_OK(gguf_writer_create(&w));
    ASSERT_OK(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)strs, NULL, N));
    char path[512];
    snprintf(path, sizeof path, "%s/gguf_large.gguf", test_tmp_dir());
    mica_err err = {0};
    ASSERT_OK(gguf_writer_write(w, path, &err));
    gguf_writer_free(w);
    for (int i = 0; i < N; i++) free(strs[i]);
    free(strs);
    gguf_ctx *g = NULL;
    ASSERT_OK(gguf_open(path, &g, &err));
    gguf_value arr, e;
    ASSERT_OK(gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &arr, &err));
    ASSERT_EQ(arr.v.arr.n, N);
    for (uint64_t i = 0; i < N; i += 997) {
        char want[16];
        snprintf(want, sizeof want, "tok%llu", (unsigned long long)i);
        ASSERT_TRUE(gguf_arr_get(g, &arr, i, &e));
        ASSERT_TRUE(gguf_str_eq(e.v.s, want));
    }
    ASSERT_TRUE(gguf_arr_get(g, &arr, N - 1, &e));
    ASSERT_TRUE(gguf_str_eq(e.v.s, "tok149999"));
    gguf_close(g);
    unlink(path);
}

/* ---- typed getters ---- */

TEST(gguf_getters) {
    bb b = {0};
    bb_header(&b, 3, 0, 8);
    bb_kv_u32(&b, "u32", 77);
    bb_str(&b, "u64big"); bb_u32(&b, GGUF_TYPE_UINT64); bb_u64(&b, 1ull << 33);
    bb_str(&b, "i32neg"); bb_u32(&b, GGUF_TYPE_INT32); bb_u32(&b, (uint32_t)-1);
    bb_str(&b, "u8"); bb_u32(&b, GGUF_TYPE_UINT8); bb_le(&b, 200, 1);
    bb_str(&b, "f64"); bb_u32(&b, GGUF_TYPE_FLOAT64); bb_u64(&b, 0x3fe0000000000000ull); /* 0.5 */
    bb_str(&b, "f64huge"); bb_u32(&b, GGUF_TYPE_FLOAT64); bb_u64(&b, 0x7fefffffffffffffull); /* DBL_MAX */
    bb_kv_str(&b, "name", "mica");
    bb_str(&b, "flag"); bb_u32(&b, GGUF_TYPE_BOOL); bb_le(&b, 1, 1);
    gguf_ctx *g = NULL;
    mica_err err = {0};
    ASSERT_OK(gguf_open_memory(b.p, b.n, "get.gguf", &g, &err));
    uint32_t u = 5;
    ASSERT_OK(gguf_get_u32(g, "absent", &u, &err));
    ASSERT_EQ(u, 5);
    ASSERT_OK(gguf_get_u32(g, "u32", &u, &err));
    ASSERT_EQ(u, 77);
    ASSERT_OK(gguf_get_u32(g, "u8", &u, &err));
    ASSERT_EQ(u, 200);
    ASSERT_EQ(gguf_get_u32(g, "u64big", &u, &err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err.msg, "get.gguf: offset ") && strstr(err.msg, "'u64big'"));
    ASSERT_EQ(gguf_get_u32(g, "i32neg", &u, &err), MICA_ERR_FORMAT);
    ASSERT_EQ(gguf_get_u32(g, "name", &u, &err), MICA_ERR_FORMAT);
    ASSERT_EQ(u, 200);
    ASSERT_EQ(gguf_require_u32(g, "absent", &u, &err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err.msg, "missing key") != NULL);
    int64_t i = 0;
    ASSERT_OK(gguf_get_i64(g, "i32neg", &i, &err));
    ASSERT_EQ(i, -1);
    ASSERT_OK(gguf_get_i64(g, "u64big", &i, &err));
    ASSERT_EQ(i, 1ll << 33);
    ASSERT_EQ(gguf_get_i64(g, "f64", &i, &err), MICA_ERR_FORMAT);
    float f = 0;
    ASSERT_OK(gguf_get_f32(g, "f64", &f, &err));
    ASSERT_NEAR(f, 0.5, 0);
    ASSERT_EQ(gguf_get_f32(g, "f64huge", &f, &err), MICA_ERR_FORMAT);
    ASSERT_EQ(gguf_get_f32(g, "u32", &f, &err), MICA_ERR_FORMAT);
    bool fl = false;
    ASSERT_OK(gguf_get_bool(g, "flag", &fl, &err));
    ASSERT_TRUE(fl);
    ASSERT_EQ(gguf_get_bool(g, "u8", &fl, &err), MICA_ERR_FORMAT);
    gguf_str s = {0};
    ASSERT_OK(gguf_require_str(g, "name", &s, &err));
    ASSERT_TRUE(gguf_str_eq(s, "mica"));
    ASSERT_EQ(gguf_require_str(g, "nope", &s, &err), MICA_ERR_FORMAT);
    ASSERT_EQ(gguf_get_str(g, "u32", &s, &err), MICA_ERR_FORMAT);
    gguf_value v;
    ASSERT_EQ(gguf_get_arr(g, "u32", GGUF_TYPE_UINT32, &v, &err), MICA_ERR_FORMAT);
    ASSERT_STREQ(gguf_type_name(GGUF_TYPE_FLOAT64), "FLOAT64");
    ASSERT_STREQ(gguf_type_name(13), "?");
    gguf_close(g);
    gguf_close(NULL);
    free(b.p);
}

TEST(gguf_open_io_errors) {
    gguf_ctx *g = NULL;
    mica_err err = {0};
    ASSERT_EQ(gguf_open("/nonexistent/x.gguf", &g, &err), MICA_ERR_IO);
    ASSERT_TRUE(strstr(err.msg, "/nonexistent/x.gguf") != NULL);
    ASSERT_EQ(gguf_open(test_tmp_dir(), &g, &err), MICA_ERR_IO);
    char path[512];
    snprintf(path, sizeof path, "%s/gguf_empty.gguf", test_tmp_dir());
    FILE *f = fopen(path, "wb");
    ASSERT_TRUE(f != NULL);
    fclose(f);
    ASSERT_EQ(gguf_open(path, &g, &err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err.msg, "offset 0") != NULL);
    ASSERT_TRUE(g == NULL);
    unlink(path);
}

/* ---- real files (values from testdata/tiny-random/README.md and vocab/README.md) ---- */

TEST(gguf_tiny_random) {
    char path[512];
    test_data_path(path, sizeof path, "tiny-random/llama-2-tiny-random.gguf");
    if (!test_require_file(path)) return;
    gguf_ctx *g = NULL;
    mica_err err = {0};
    mica_status st = gguf_open(path, &g, &err);
    if (st) fprintf(stderr, "    %s\n", err.msg);
    ASSERT_OK(st);
    ASSERT_EQ(gguf_version(g), 3);
    ASSERT_EQ(gguf_n_kv(g), 18);
    ASSERT_EQ(gguf_n_tensors(g), 12);
    ASSERT_EQ(gguf_alignment(g), 32);
    ASSERT_EQ(gguf_data_offset(g), 724416);
    ASSERT_EQ(gguf_file_size(g), 1750560);
    gguf_str s = {0};
    ASSERT_OK(gguf_require_str(g, "general.architecture", &s, &err));
    ASSERT_TRUE(gguf_str_eq(s, "llama"));
    ASSERT_OK(gguf_get_str(g, "general.name", &s, &err));
    ASSERT_TRUE(gguf_str_eq(s, "LLaMA v2"));
    uint32_t u = 0;
    ASSERT_OK(gguf_require_u32(g, "llama.block_count", &u, &err));
    ASSERT_EQ(u, 1);
    ASSERT_OK(gguf_require_u32(g, "llama.embedding_length", &u, &err));
    ASSERT_EQ(u, 8);
    ASSERT_OK(gguf_require_u32(g, "llama.context_length", &u, &err));
    ASSERT_EQ(u, 4096);
    ASSERT_OK(gguf_require_u32(g, "llama.feed_forward_length", &u, &err));
    ASSERT_EQ(u, 32);
    ASSERT_OK(gguf_require_u32(g, "general.file_type", &u, &err));
    ASSERT_EQ(u, 1);
    ASSERT_OK(gguf_require_u32(g, "tokenizer.ggml.bos_token_id", &u, &err));
    ASSERT_EQ(u, 1);
    float eps = 0;
    ASSERT_OK(gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &eps, &err));
    ASSERT_NEAR(eps, 1e-5, 1e-10);
    ASSERT_TRUE(gguf_find(g, "tokenizer.ggml.pre") == NULL);
    gguf_value tok, e;
    ASSERT_OK(gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &tok, &err));
    ASSERT_EQ(tok.v.arr.n, 32000);
    ASSERT_TRUE(gguf_arr_get(g, &tok, 1, &e));
    ASSERT_TRUE(gguf_str_eq(e.v.s, "<s>"));
    ASSERT_TRUE(gguf_arr_get(g, &tok, 2, &e));
    ASSERT_TRUE(gguf_str_eq(e.v.s, "</s>"));
    ASSERT_TRUE(gguf_arr_get(g, &tok, 0, &e));
    ASSERT_TRUE(gguf_str_eq(e.v.s, "<unk>"));
    gguf_value scores;
    ASSERT_OK(gguf_get_arr(g, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, &scores, &err));
    ASSERT_EQ(scores.v.arr.n, 32000);
    const gguf_tensor *t = gguf_find_tensor(g, "token_embd.weight");
    ASSERT_TRUE(t != NULL);
    ASSERT_EQ(t->type, MICA_DTYPE_F16);
    ASSERT_EQ(t->n_dims, 2);
    ASSERT_EQ(t->ne[0], 8);
    ASSERT_EQ(t->ne[1], 32000);
    ASSERT_EQ(t->nbytes, 8 * 32000 * 2);
    t = gguf_find_tensor(g, "blk.0.ffn_down.weight");
    ASSERT_TRUE(t != NULL);
    ASSERT_EQ(t->ne[0], 32);
    ASSERT_EQ(t->ne[1], 8);
    t = gguf_find_tensor(g, "output_norm.weight");
    ASSERT_TRUE(t != NULL);
    ASSERT_EQ(t->type, MICA_DTYPE_F32);
    ASSERT_EQ(t->n_dims, 1);
    ASSERT_EQ(t->nbytes, 32);
    ASSERT_TRUE(gguf_find_tensor(g, "output.weight") != NULL);
    ASSERT_TRUE(gguf_find_tensor(g, "blk.0.attn_q.weight") != NULL);
    gguf_close(g);
}

TEST(gguf_vocab_files) {
    static const struct { const char *file, *model; uint64_t n_tokens; } vocab[] = {
        {"ggml-vocab-baichuan.gguf", "llama", 64000},     {"ggml-vocab-bert-bge.gguf", "bert", 30522},
        {"ggml-vocab-deepseek-coder.gguf", "gpt2", 32256}, {"ggml-vocab-deepseek-llm.gguf", "gpt2", 102400},
        {"ggml-vocab-falcon.gguf", "gpt2", 65024},         {"ggml-vocab-gpt-2.gguf", "gpt2", 50257},
        {"ggml-vocab-gpt-neox.gguf", "gpt2", 50432},       {"ggml-vocab-llama-bpe.gguf", "gpt2", 128256},
        {"ggml-vocab-llama-spm.gguf", "llama", 32000},     {"ggml-vocab-mpt.gguf", "gpt2", 50432},
        {"ggml-vocab-phi-3.gguf", "llama", 32064},         {"ggml-vocab-qwen2.gguf", "gpt2", 151936},
        {"ggml-vocab-refact.gguf", "gpt2", 49216},         {"ggml-vocab-starcoder.gguf", "gpt2", 49152},
    };
    for (size_t i = 0; i < sizeof vocab / sizeof vocab[0]; i++) {
        char path[512], rel[128];
        snprintf(rel, sizeof rel, "vocab/%s", vocab[i].file);
        test_data_path(path, sizeof path, rel);
        if (!test_require_file(path)) return;
        gguf_ctx *g = NULL;
        mica_err err = {0};
        mica_status st = gguf_open(path, &g, &err);
        if (st) test_fail(__FILE__, __LINE__, "%s", err.msg);
        ASSERT_OK(st);
        ASSERT_EQ(gguf_version(g), 3);
        ASSERT_EQ(gguf_n_tensors(g), 0);
        gguf_str model = {0};
        ASSERT_OK(gguf_require_str(g, "tokenizer.ggml.model", &model, &err));
        if (!gguf_str_eq(model, vocab[i].model)) test_fail(__FILE__, __LINE__, "%s: model", vocab[i].file);
        gguf_value tok, e;
        ASSERT_OK(gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &tok, &err));
        ASSERT_EQ(tok.v.arr.n, vocab[i].n_tokens);
        ASSERT_TRUE(gguf_arr_get(g, &tok, tok.v.arr.n - 1, &e));
        const gguf_kv *merges = gguf_find(g, "tokenizer.ggml.merges");
        if (strcmp(vocab[i].model, "gpt2") == 0) ASSERT_TRUE(merges != NULL && merges->val.v.arr.n > 0);
        gguf_close(g);
    }
}
