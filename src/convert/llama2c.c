/*
 * llama2c.c - converts a llama2.c checkpoint (legacy "version 0" .bin) and
 * its tokenizer.bin into a GGUF file of architecture "llama" (layer: convert;
 * uses gguf's writer, knows the llama2.c formats).
 *
 * Formats: testdata/tinystories/README.md (authoritative) and FORMATS.md
 * sections 6.1 and 6.3. Both inputs are untrusted: every header field is
 * range-checked, all size arithmetic is overflow-checked, the checkpoint's
 * size must equal exactly 28 + 4 * (sum of the tensor element counts), and
 * every tokenizer record is checked against the bytes left and
 * max_token_length; the tokenizer must end exactly after the last record.
 *
 * Output (F32, nothing re-quantised): the llama.* hyperparameters, a
 * SentencePiece-style vocabulary (' ' becomes U+2581, "\n<s>\n" becomes
 * "<s>", "\n</s>\n" becomes "</s>"), and the tensors under their GGUF names.
 * q/k are copied as stored: llama2.c rotates adjacent pairs, which is the
 * GGUF "llama" (NORM) rope convention. A tied checkpoint gets no "output"
 * tensor (the loader reuses token_embd).
 *
 * Memory: both inputs are mapped read-only; tensor data goes from the
 * checkpoint mapping to the output file without a copy in RAM.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "mica_internal.h"
#include "tensor/dtype.h"

MICA_STATIC_ASSERT(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
                   "llama2.c files are little-endian and are read in place");

/* Caps on the checkpoint header (far above any published llama2.c model). */
#define L2C_MAX_DIM        (1 << 16)
#define L2C_MAX_HIDDEN     (1 << 18)
#define L2C_MAX_LAYERS     512
#define L2C_MAX_VOCAB      (1 << 22)
#define L2C_MAX_SEQ        (1 << 20)
#define L2C_MAX_TOKEN_LEN  (1 << 16)
#define L2C_HEADER_BYTES   28

/* Fixed special ids of llama2.c's SentencePiece vocabularies. */
#define L2C_UNK 0
#define L2C_BOS 1
#define L2C_EOS 2

/* GGUF token types (FORMATS.md 3.5). */
enum { L2C_TT_NORMAL = 1, L2C_TT_UNKNOWN = 2, L2C_TT_CONTROL = 3, L2C_TT_BYTE = 6 };

/* A read-only mapping of a whole file. */
typedef struct l2c_map {
    const uint8_t *data;
    uint64_t size;
} l2c_map;

/* The checkpoint header, validated, plus derived sizes. */
typedef struct l2c_config {
    int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    bool has_classifier; /* header vocab_size < 0 */
    int64_t head_size, kv_dim;
} l2c_config;

/* Element offsets (in floats, from the start of the body) of each item. */
typedef struct l2c_layout {
    uint64_t tok_embd, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, freq, wcls;
    uint64_t n_floats; /* total floats in the body */
} l2c_layout;

/* The converted vocabulary: texts own their bytes. */
typedef struct l2c_vocab {
    int32_t n;
    char **text;      /* n converted pieces (NUL-terminated, for the writer) */
    uint64_t *len;    /* their lengths */
    float *score;     /* n */
    int32_t *type;    /* n */
} l2c_vocab;

static mica_status l2c_map_file(const char *path, l2c_map *m, mica_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mica_err_set(err, MICA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return mica_err_set(err, MICA_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return mica_err_set(err, MICA_ERR_IO, "%s: not a regular file", path);
    }
    m->size = (uint64_t)st.st_size;
    m->data = NULL;
    if (m->size == 0) { /* mmap rejects empty files; the format checks report it */
        close(fd);
        return MICA_OK;
    }
    if (m->size > SIZE_MAX) {
        close(fd);
        return mica_err_set(err, MICA_ERR_IO, "%s: file too large to map", path);
    }
    void *p = mmap(NULL, (size_t)m->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return mica_err_set(err, MICA_ERR_IO, "%s: cannot map: %s", path, strerror(e));
    m->data = p;
    return MICA_OK;
}

static void l2c_unmap(l2c_map *m) {
    if (m->data) munmap((void *)m->data, (size_t)m->size);
    m->data = NULL;
}

static int32_t l2c_rd_i32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static float l2c_rd_f32(const uint8_t *p) {
    float v;
    memcpy(&v, p, 4);
    return v;
}

/* Range-checks one header field: 1 <= v <= cap. */
static mica_status l2c_check_field(const char *path, const char *name, int64_t v, int64_t cap,
                                   mica_err *err) {
    if (v < 1 || v > cap)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: header field %s = %lld is outside 1..%lld",
                            path, name, (long long)v, (long long)cap);
    return MICA_OK;
}

/* Reads and validates the 28-byte header. */
static mica_status l2c_read_config(const char *path, const l2c_map *m, l2c_config *c,
                                   mica_err *err) {
    if (m->size < L2C_HEADER_BYTES)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: %llu bytes is shorter than the %d-byte header",
                            path, (unsigned long long)m->size, L2C_HEADER_BYTES);
    const uint8_t *h = m->data;
    c->dim = l2c_rd_i32(h + 0);
    c->hidden_dim = l2c_rd_i32(h + 4);
    c->n_layers = l2c_rd_i32(h + 8);
    c->n_heads = l2c_rd_i32(h + 12);
    c->n_kv_heads = l2c_rd_i32(h + 16);
    c->vocab_size = l2c_rd_i32(h + 20);
    c->seq_len = l2c_rd_i32(h + 24);
    c->has_classifier = c->vocab_size < 0;
    int64_t vocab = c->vocab_size < 0 ? -(int64_t)c->vocab_size : c->vocab_size;

    mica_status st;
    if ((st = l2c_check_field(path, "dim", c->dim, L2C_MAX_DIM, err)) ||
        (st = l2c_check_field(path, "hidden_dim", c->hidden_dim, L2C_MAX_HIDDEN, err)) ||
        (st = l2c_check_field(path, "n_layers", c->n_layers, L2C_MAX_LAYERS, err)) ||
        (st = l2c_check_field(path, "n_heads", c->n_heads, c->dim, err)) ||
        (st = l2c_check_field(path, "n_kv_heads", c->n_kv_heads, c->n_heads, err)) ||
        (st = l2c_check_field(path, "|vocab_size|", vocab, L2C_MAX_VOCAB, err)) ||
        (st = l2c_check_field(path, "seq_len", c->seq_len, L2C_MAX_SEQ, err)))
        return st;
    if (c->dim % c->n_heads != 0)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: n_heads %d does not divide dim %d", path,
                            c->n_heads, c->dim);
    if (c->n_heads % c->n_kv_heads != 0)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: n_kv_heads %d does not divide n_heads %d",
                            path, c->n_kv_heads, c->n_heads);
    c->head_size = c->dim / c->n_heads;
    if (c->head_size % 2 != 0)
        return mica_err_set(err, MICA_ERR_FORMAT,
                            "%s: head size %lld is odd (RoPE rotates pairs)", path,
                            (long long)c->head_size);
    c->kv_dim = c->head_size * c->n_kv_heads;
    if (vocab < 3)
        return mica_err_set(err, MICA_ERR_FORMAT,
                            "%s: vocab_size %lld has no room for <unk>, <s>, </s>", path,
                            (long long)vocab);
    c->vocab_size = (int32_t)vocab;
    return MICA_OK;
}

/* *cursor += a * b * c, overflow-checked; *at receives the old cursor. */
static bool l2c_take(uint64_t *cursor, uint64_t *at, uint64_t a, uint64_t b, uint64_t c) {
    uint64_t n;
    *at = *cursor;
    return mica_mul_ok(a, b, &n) && mica_mul_ok(n, c, &n) && mica_add_ok(*cursor, n, cursor);
}

/* Computes where every item lives and checks the file size exactly. */
static mica_status l2c_layout_check(const char *path, const l2c_config *c, uint64_t file_size,
                                    l2c_layout *lo, mica_err *err) {
    uint64_t L = (uint64_t)c->n_layers, d = (uint64_t)c->dim, hd = (uint64_t)c->hidden_dim;
    uint64_t kv = (uint64_t)c->kv_dim, v = (uint64_t)c->vocab_size, hs = (uint64_t)c->head_size;
    uint64_t cur = 0, total_bytes;
    bool ok = l2c_take(&cur, &lo->tok_embd, v, d, 1) &&
              l2c_take(&cur, &lo->rms_att, L, d, 1) &&
              l2c_take(&cur, &lo->wq, L, d, d) &&
              l2c_take(&cur, &lo->wk, L, kv, d) &&
              l2c_take(&cur, &lo->wv, L, kv, d) &&
              l2c_take(&cur, &lo->wo, L, d, d) &&
              l2c_take(&cur, &lo->rms_ffn, L, d, 1) &&
              l2c_take(&cur, &lo->w1, L, hd, d) &&
              l2c_take(&cur, &lo->w2, L, d, hd) &&
              l2c_take(&cur, &lo->w3, L, hd, d) &&
              l2c_take(&cur, &lo->rms_final, d, 1, 1) &&
              l2c_take(&cur, &lo->freq, 2, (uint64_t)c->seq_len, hs / 2) &&
              l2c_take(&cur, &lo->wcls, c->has_classifier ? v : 0, d, 1) &&
              mica_mul_ok(cur, 4, &total_bytes) &&
              mica_add_ok(total_bytes, L2C_HEADER_BYTES, &total_bytes);
    if (!ok) return mica_err_set(err, MICA_ERR_FORMAT, "%s: tensor sizes overflow", path);
    lo->n_floats = cur;
    if (total_bytes != file_size)
        return mica_err_set(err, MICA_ERR_FORMAT,
                            "%s: file is %llu bytes but its header (dim %d, hidden %d, %d layers, "
                            "%d/%d heads, vocab %d%s, seq_len %d) needs exactly %llu",
                            path, (unsigned long long)file_size, c->dim, c->hidden_dim,
                            c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size,
                            c->has_classifier ? " + classifier" : "", c->seq_len,
                            (unsigned long long)total_bytes);
    return MICA_OK;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if invalid. */
static size_t l2c_utf8_len(const uint8_t *s, size_t n) {
    uint8_t b = s[0];
    size_t len;
    uint32_t cp;
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) { len = 2; cp = b & 0x1Fu; }
    else if (b >= 0xE0 && b <= 0xEF) { len = 3; cp = b & 0x0Fu; }
    else if (b >= 0xF0 && b <= 0xF4) { len = 4; cp = b & 0x07u; }
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

static bool l2c_utf8_valid(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t k = l2c_utf8_len(s + i, n - i);
        if (k == 0) return false;
        i += k;
    }
    return true;
}

/* True for the byte-fallback form "<0xNN>" with two uppercase hex digits. */
static bool l2c_is_byte_piece(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return false;
    for (int i = 3; i < 5; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'F'))) return false;
    return true;
}

/* Converts one llama2.c piece to its SentencePiece text (malloc'd). */
static char *l2c_piece_to_spm(const uint8_t *p, size_t n, uint64_t *out_len) {
    if (n == 5 && memcmp(p, "\n<s>\n", 5) == 0) {
        *out_len = 3;
        return mica_strndup("<s>", 3);
    }
    if (n == 6 && memcmp(p, "\n</s>\n", 6) == 0) {
        *out_len = 4;
        return mica_strndup("</s>", 4);
    }
    size_t n_space = 0;
    for (size_t i = 0; i < n; i++) n_space += p[i] == ' ';
    size_t len = n + 2 * n_space; /* n <= L2C_MAX_TOKEN_LEN: no overflow */
    char *t = mica_malloc(len + 1);
    if (!t) return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == ' ') {
            memcpy(t + j, "\xE2\x96\x81", 3); /* U+2581 */
            j += 3;
        } else {
            t[j++] = (char)p[i];
        }
    }
    t[j] = '\0';
    *out_len = len;
    return t;
}

static void l2c_vocab_free(l2c_vocab *v) {
    if (v->text)
        for (int32_t i = 0; i < v->n; i++) mica_free(v->text[i]);
    mica_free(v->text);
    mica_free(v->len);
    mica_free(v->score);
    mica_free(v->type);
    memset(v, 0, sizeof *v);
}

/* qsort context-free comparison of token ids by text, through a side table. */
typedef struct l2c_sort_item {
    const char *text;
    uint64_t len;
    int32_t id;
} l2c_sort_item;

static int l2c_cmp_item(const void *a, const void *b) {
    const l2c_sort_item *x = a, *y = b;
    uint64_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->text, y->text, (size_t)n);
    if (c != 0) return c;
    return x->len < y->len ? -1 : x->len > y->len ? 1 : 0;
}

/* Rejects a vocabulary in which two ids have the same converted text. */
static mica_status l2c_vocab_check_unique(const char *path, const l2c_vocab *v, mica_err *err) {
    l2c_sort_item *items = mica_calloc((size_t)v->n, sizeof *items);
    if (!items) return mica_err_set(err, MICA_ERR_NOMEM, "%s: out of memory", path);
    for (int32_t i = 0; i < v->n; i++) items[i] = (l2c_sort_item){v->text[i], v->len[i], i};
    qsort(items, (size_t)v->n, sizeof *items, l2c_cmp_item);
    mica_status st = MICA_OK;
    for (int32_t i = 1; i < v->n; i++) {
        if (l2c_cmp_item(&items[i - 1], &items[i]) == 0) {
            st = mica_err_set(err, MICA_ERR_FORMAT, "%s: tokens %d and %d have the same text",
                              path, items[i - 1].id, items[i].id);
            break;
        }
    }
    mica_free(items);
    return st;
}

/* Parses and converts tokenizer.bin for a vocabulary of n_vocab tokens. */
static mica_status l2c_read_vocab(const char *path, const l2c_map *m, int32_t n_vocab,
                                  l2c_vocab *v, mica_err *err) {
    memset(v, 0, sizeof *v);
    if (m->size < 4)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: %llu bytes has no max_token_length", path,
                            (unsigned long long)m->size);
    int32_t max_len = l2c_rd_i32(m->data);
    if (max_len < 1 || max_len > L2C_MAX_TOKEN_LEN)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: max_token_length %d is outside 1..%d", path,
                            max_len, L2C_MAX_TOKEN_LEN);
    v->text = mica_calloc((size_t)n_vocab, sizeof *v->text);
    v->len = mica_calloc((size_t)n_vocab, sizeof *v->len);
    v->score = mica_calloc((size_t)n_vocab, sizeof *v->score);
    v->type = mica_calloc((size_t)n_vocab, sizeof *v->type);
    if (!v->text || !v->len || !v->score || !v->type) {
        l2c_vocab_free(v);
        return mica_err_set(err, MICA_ERR_NOMEM, "%s: out of memory for %d tokens", path, n_vocab);
    }
    v->n = n_vocab;
    uint64_t off = 4;
    for (int32_t id = 0; id < n_vocab; id++) {
        if (m->size - off < 8) {
            l2c_vocab_free(v);
            return mica_err_set(err, MICA_ERR_FORMAT,
                                "%s: offset %llu: token %d: record header needs 8 bytes, %llu left",
                                path, (unsigned long long)off, id,
                                (unsigned long long)(m->size - off));
        }
        float score = l2c_rd_f32(m->data + off);
        int32_t len = l2c_rd_i32(m->data + off + 4);
        mica_status st = MICA_OK;
        if (!isfinite(score))
            st = mica_err_set(err, MICA_ERR_FORMAT, "%s: offset %llu: token %d: score is not finite",
                              path, (unsigned long long)off, id);
        else if (len < 1 || len > max_len)
            st = mica_err_set(err, MICA_ERR_FORMAT,
                              "%s: offset %llu: token %d: length %d is outside 1..max_token_length %d",
                              path, (unsigned long long)(off + 4), id, len, max_len);
        else if ((uint64_t)len > m->size - off - 8)
            st = mica_err_set(err, MICA_ERR_FORMAT,
                              "%s: offset %llu: token %d: length %d exceeds the %llu bytes left",
                              path, (unsigned long long)(off + 4), id, len,
                              (unsigned long long)(m->size - off - 8));
        else if (!l2c_utf8_valid(m->data + off + 8, (size_t)len))
            st = mica_err_set(err, MICA_ERR_FORMAT, "%s: offset %llu: token %d: not valid UTF-8",
                              path, (unsigned long long)(off + 8), id);
        if (st != MICA_OK) {
            l2c_vocab_free(v);
            return st;
        }
        v->score[id] = score;
        v->text[id] = l2c_piece_to_spm(m->data + off + 8, (size_t)len, &v->len[id]);
        if (!v->text[id]) {
            l2c_vocab_free(v);
            return mica_err_set(err, MICA_ERR_NOMEM, "%s: out of memory", path);
        }
        if (id == L2C_UNK) v->type[id] = L2C_TT_UNKNOWN;
        else if (id == L2C_BOS || id == L2C_EOS) v->type[id] = L2C_TT_CONTROL;
        else if (l2c_is_byte_piece(v->text[id], (size_t)v->len[id])) v->type[id] = L2C_TT_BYTE;
        else v->type[id] = L2C_TT_NORMAL;
        off += 8 + (uint64_t)len;
    }
    if (off != m->size) {
        uint64_t extra = m->size - off;
        l2c_vocab_free(v);
        return mica_err_set(err, MICA_ERR_FORMAT,
                            "%s: %llu trailing bytes after the %d token records", path,
                            (unsigned long long)extra, n_vocab);
    }
    mica_status st = l2c_vocab_check_unique(path, v, err);
    if (st != MICA_OK) l2c_vocab_free(v);
    return st;
}

/* Wraps a writer call that reports no message of its own. */
#define L2C_W(call)                                                                   \
    do {                                                                              \
        mica_status st_ = (call);                                                     \
        if (st_ != MICA_OK)                                                           \
            return mica_err_set(err, st_, "%s: writer: %s failed (%s)", out_path, #call, \
                                mica_status_str(st_));                                \
    } while (0)

/* Stem of a path: basename without its last extension. */
static void l2c_stem(const char *path, char *buf, size_t cap) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    snprintf(buf, cap, "%.*s", (int)MICA_MIN(n, cap - 1), base);
}

static mica_status l2c_write_metadata(gguf_writer *w, const char *ckpt_path, const l2c_config *c,
                                      const l2c_vocab *v, const char *out_path, mica_err *err) {
    char name[128];
    l2c_stem(ckpt_path, name, sizeof name);
    L2C_W(gguf_writer_set_str(w, "general.architecture", "llama"));
    L2C_W(gguf_writer_set_str(w, "general.name", name));
    L2C_W(gguf_writer_set_u32(w, "general.file_type", 0)); /* all F32 */
    L2C_W(gguf_writer_set_u32(w, "llama.context_length", (uint32_t)c->seq_len));
    L2C_W(gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)c->dim));
    L2C_W(gguf_writer_set_u32(w, "llama.block_count", (uint32_t)c->n_layers));
    L2C_W(gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)c->hidden_dim));
    L2C_W(gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)c->n_heads));
    L2C_W(gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads));
    L2C_W(gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)c->head_size));
    L2C_W(gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f));
    L2C_W(gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f));
    L2C_W(gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)c->vocab_size));

    L2C_W(gguf_writer_set_str(w, "tokenizer.ggml.model", "llama"));
    L2C_W(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->text,
                                  v->len, (uint64_t)v->n));
    L2C_W(gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, v->score,
                              (uint64_t)v->n));
    L2C_W(gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, v->type,
                              (uint64_t)v->n));
    L2C_W(gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", L2C_BOS));
    L2C_W(gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", L2C_EOS));
    L2C_W(gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", L2C_UNK));
    L2C_W(gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true));
    L2C_W(gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false));
    L2C_W(gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", true));
    return MICA_OK;
}

/* Declares one F32 tensor whose data is `at` floats into the checkpoint body. */
static mica_status l2c_add(gguf_writer *w, const l2c_map *ck, const char *name, uint64_t at,
                           int64_t ne0, int64_t ne1, const char *out_path, mica_err *err) {
    int64_t ne[2] = {ne0, ne1};
    const uint8_t *data = ck->data + L2C_HEADER_BYTES + at * 4; /* in bounds: layout checked */
    L2C_W(gguf_writer_add_tensor(w, name, MICA_DTYPE_F32, ne1 > 1 ? 2 : 1, ne, NULL, NULL, data));
    return MICA_OK;
}

static mica_status l2c_add_tensors(gguf_writer *w, const l2c_map *ck, const l2c_config *c,
                                   const l2c_layout *lo, const char *out_path, mica_err *err) {
    int64_t d = c->dim, hd = c->hidden_dim, kv = c->kv_dim, v = c->vocab_size;
    mica_status st;
    /* token_embd: (vocab, dim) row-major = ne [dim, vocab] */
    if ((st = l2c_add(w, ck, "token_embd.weight", lo->tok_embd, d, v, out_path, err))) return st;
    for (int32_t l = 0; l < c->n_layers; l++) {
        uint64_t L = (uint64_t)l; /* per-item offsets: layer l of item x at x + l * (size of one layer) */
        char nm[GGUF_MAX_NAME + 1];
#define L2C_ADD(suffix, base, per_layer, ne0, ne1)                                            \
        do {                                                                                \
            snprintf(nm, sizeof nm, "blk.%d." suffix ".weight", l);                        \
            if ((st = l2c_add(w, ck, nm, (base) + L * (uint64_t)(per_layer), ne0, ne1,      \
                              out_path, err)))                                              \
                return st;                                                                  \
        } while (0)
        L2C_ADD("attn_norm", lo->rms_att, d, d, 1);           /* (dim) */
        L2C_ADD("attn_q", lo->wq, d * d, d, d);               /* (dim, dim) */
        L2C_ADD("attn_k", lo->wk, kv * d, d, kv);             /* (kv_dim, dim) */
        L2C_ADD("attn_v", lo->wv, kv * d, d, kv);             /* (kv_dim, dim) */
        L2C_ADD("attn_output", lo->wo, d * d, d, d);          /* (dim, dim) */
        L2C_ADD("ffn_norm", lo->rms_ffn, d, d, 1);            /* (dim) */
        L2C_ADD("ffn_gate", lo->w1, hd * d, d, hd);           /* w1 (hidden, dim) */
        L2C_ADD("ffn_down", lo->w2, d * hd, hd, d);           /* w2 (dim, hidden) */
        L2C_ADD("ffn_up", lo->w3, hd * d, d, hd);             /* w3 (hidden, dim) */
#undef L2C_ADD
    }
    if ((st = l2c_add(w, ck, "output_norm.weight", lo->rms_final, d, 1, out_path, err))) return st;
    if (c->has_classifier &&
        (st = l2c_add(w, ck, "output.weight", lo->wcls, d, v, out_path, err)))
        return st;
    return MICA_OK;
}

static mica_status l2c_convert(const char *ckpt_path, const char *tok_path, const char *out_path,
                               mica_err *err) {
    l2c_map ck = {0}, tk = {0};
    l2c_vocab vocab = {0};
    gguf_writer *w = NULL;
    l2c_config c = {0};
    l2c_layout lo = {0};
    mica_status st = l2c_map_file(ckpt_path, &ck, err);
    if (st == MICA_OK) st = l2c_read_config(ckpt_path, &ck, &c, err);
    if (st == MICA_OK) st = l2c_layout_check(ckpt_path, &c, ck.size, &lo, err);
    if (st == MICA_OK) st = l2c_map_file(tok_path, &tk, err);
    if (st == MICA_OK) st = l2c_read_vocab(tok_path, &tk, c.vocab_size, &vocab, err);
    if (st == MICA_OK) {
        st = gguf_writer_create(&w);
        if (st != MICA_OK) mica_err_set(err, st, "%s: cannot create the GGUF writer", out_path);
    }
    if (st == MICA_OK) st = l2c_write_metadata(w, ckpt_path, &c, &vocab, out_path, err);
    if (st == MICA_OK) st = l2c_add_tensors(w, &ck, &c, &lo, out_path, err);
    if (st == MICA_OK) st = gguf_writer_write(w, out_path, err);
    gguf_writer_free(w);
    l2c_vocab_free(&vocab);
    l2c_unmap(&tk);
    l2c_unmap(&ck);
    return st;
}

mica_status mica_convert_llama2c(const char *checkpoint_path, const char *tokenizer_path,
                                 const char *out_path, char *err, size_t err_cap) {
    mica_err e = {MICA_OK, ""};
    mica_status st;
    if (!checkpoint_path || !tokenizer_path || !out_path)
        st = mica_err_set(&e, MICA_ERR_INVALID_ARG, "mica_convert_llama2c: NULL path");
    else
        st = l2c_convert(checkpoint_path, tokenizer_path, out_path, &e);
    if (st != MICA_OK) mica_err_copy(&e, err, err_cap);
    return st;
}
