/*
 * bpe.c - byte-level BPE for `gpt2` vocabularies (FORMATS.md 3.3-3.5;
 * behaviour of llama.cpp's BPE session):
 *   1. the pre-tokenizer splits the text into words (pretok.c);
 *   2. each byte of a word becomes one piece, whose token is the one spelled
 *      by the byte's GPT-2 byte-level character;
 *   3. while some adjacent pair of pieces is a merge, the pair with the lowest
 *      merge rank is merged (ties: leftmost pair);
 *   4. the pieces' tokens are emitted.
 * With ignore_merges (llama3 group), a word that is itself a token is emitted
 * whole. Merges are keyed by the pair of token ids; a merge whose parts or
 * result are not tokens can never apply and is dropped at load.
 *
 * Invalid UTF-8: the regexes see each invalid byte as U+FFFD (as llama.cpp
 * does), but the word keeps the original byte, so every byte is encoded and
 * decoding gives the input back exactly.
 */
#include "text/tokenizer_int.h"
#include "text/utf8.h"

#include <string.h>

/* ---- byte-level alphabet ---- */

static bool bpe_byte_is_printable(int b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

static void bpe_init_alphabet(mica_vocab *v) {
    for (size_t i = 0; i < MICA_ARRAY_LEN(v->bpe_cp_byte); i++) v->bpe_cp_byte[i] = -1;
    uint32_t next = 0x100;
    for (int b = 0; b < 256; b++) {
        uint32_t cp = bpe_byte_is_printable(b) ? (uint32_t)b : next++;
        char u[4];
        size_t n = utf8_encode(cp, u);
        MICA_ASSERT(n == 1 || n == 2);
        memcpy(v->bpe_byte_utf8[b], u, n);
        v->bpe_byte_utf8_len[b] = (uint8_t)n;
        v->bpe_cp_byte[cp] = (int16_t)b;
        v->bpe_byte_id[b] = strmap_get(&v->tok_map, u, n);
    }
    MICA_ASSERT(next == 0x144);
}

/* ---- merge map ---- */

static size_t bpe_merge_hash(uint64_t key, size_t mask) {
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17) & mask;
}

static const bpe_merge_slot *bpe_merge_find(const mica_vocab *v, int32_t left, int32_t right) {
    if (!v->merges_cap) return NULL;
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t mask = v->merges_cap - 1;
    for (size_t i = bpe_merge_hash(key, mask);; i = (i + 1) & mask) {
        const bpe_merge_slot *s = &v->merges[i];
        if (s->key == key) return s;
        if (s->key == BPE_MERGE_EMPTY) return NULL;
    }
}

/* Inserts unless present (the first, lowest rank wins, as in llama.cpp). */
static void bpe_merge_insert(mica_vocab *v, int32_t left, int32_t right, int32_t rank, int32_t result) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t mask = v->merges_cap - 1;
    for (size_t i = bpe_merge_hash(key, mask);; i = (i + 1) & mask) {
        bpe_merge_slot *s = &v->merges[i];
        if (s->key == key) return;
        if (s->key == BPE_MERGE_EMPTY) {
            *s = (bpe_merge_slot){key, rank, result};
            return;
        }
    }
}

mica_status bpe_init(mica_vocab *v, const gguf_ctx *g, mica_err *err) {
    const char *path = gguf_path(g);
    bpe_init_alphabet(v);

    if (!gguf_find(g, "tokenizer.ggml.merges"))
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: missing key tokenizer.ggml.merges", path);
    gguf_value arr;
    mica_status st = gguf_get_arr(g, "tokenizer.ggml.merges", GGUF_TYPE_STRING, &arr, err);
    if (st != MICA_OK) return st;
    uint64_t n_merges = arr.v.arr.n;
    if (n_merges > INT32_MAX)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: tokenizer.ggml.merges: %llu entries",
                            path, (unsigned long long)n_merges);
    size_t cap = 16;
    while (cap < n_merges * 2) cap <<= 1;
    v->merges = mica_malloc(cap * sizeof(bpe_merge_slot));
    if (!v->merges) return mica_err_set(err, MICA_ERR_NOMEM, "%s: vocab: out of memory", path);
    v->merges_cap = cap;
    for (size_t i = 0; i < cap; i++) v->merges[i].key = BPE_MERGE_EMPTY;

    char *scratch = NULL;
    size_t scratch_cap = 0;
    for (uint64_t i = 0; i < n_merges; i++) {
        gguf_value e;
        if (!gguf_arr_get(g, &arr, i, &e) || e.type != GGUF_TYPE_STRING) {
            mica_free(scratch);
            return mica_err_set(err, MICA_ERR_FORMAT, "%s: tokenizer.ggml.merges[%llu]: not a string",
                                path, (unsigned long long)i);
        }
        const char *s = e.v.s.ptr;
        size_t n = (size_t)e.v.s.len;
        /* Split at the first space at index >= 1 (a left part may start with a space). */
        const char *sp = n > 1 ? memchr(s + 1, ' ', n - 1) : NULL;
        if (!sp) {
            mica_free(scratch);
            return mica_err_set(err, MICA_ERR_FORMAT,
                                "%s: tokenizer.ggml.merges[%llu]: no space separating the pair", path,
                                (unsigned long long)i);
        }
        size_t ln = (size_t)(sp - s), rn = n - ln - 1;
        int32_t l = strmap_get(&v->tok_map, s, ln);
        int32_t r = strmap_get(&v->tok_map, sp + 1, rn);
        if (l < 0 || r < 0) continue;
        if (n > scratch_cap) {
            char *ns = mica_realloc(scratch, n);
            if (!ns) {
                mica_free(scratch);
                return mica_err_set(err, MICA_ERR_NOMEM, "%s: vocab: out of memory", path);
            }
            scratch = ns;
            scratch_cap = n;
        }
        memcpy(scratch, s, ln);
        memcpy(scratch + ln, sp + 1, rn);
        int32_t res = strmap_get(&v->tok_map, scratch, ln + rn);
        if (res < 0) continue;
        bpe_merge_insert(v, l, r, (int32_t)i, res);
    }
    mica_free(scratch);
    return MICA_OK;
}

void bpe_deinit(mica_vocab *v) {
    mica_free(v->merges);
    v->merges = NULL;
    v->merges_cap = 0;
}

/* ---- tokenize ---- */

typedef struct bpe_work {
    vocab_sym *syms;
    size_t syms_cap;
    vocab_heap heap;
    char *enc; /* byte-level encoding of a word (ignore_merges lookups) */
    size_t enc_cap;
} bpe_work;

static bool bpe_try_pair(const mica_vocab *v, vocab_sym *syms, int32_t left, int32_t right,
                         vocab_heap *h) {
    if (left < 0 || right < 0) return true;
    if (syms[left].id < 0 || syms[right].id < 0) return true;
    const bpe_merge_slot *m = bpe_merge_find(v, syms[left].id, syms[right].id);
    if (!m) return true;
    vocab_bigram b = {(double)m->rank, left, right, syms[left].n + syms[right].n};
    return vocab_heap_push(h, b);
}

/* Tokenizes one pre-token word[0..n) (n >= 1). */
static mica_status bpe_word(const mica_vocab *v, const char *word, size_t n, bpe_work *w,
                            vocab_ids *out) {
    MICA_ASSERT(n <= INT32_MAX); /* words are parts of a text of at most VOCAB_MAX_TEXT bytes */
    if (v->ignore_merges) {
        size_t need = 2 * n, o = 0;
        if (need > w->enc_cap) {
            char *e = mica_realloc(w->enc, need);
            if (!e) return MICA_ERR_NOMEM;
            w->enc = e;
            w->enc_cap = need;
        }
        for (size_t i = 0; i < n; i++) {
            uint8_t b = (uint8_t)word[i];
            memcpy(w->enc + o, v->bpe_byte_utf8[b], v->bpe_byte_utf8_len[b]);
            o += v->bpe_byte_utf8_len[b];
        }
        int32_t id = strmap_get(&v->tok_map, w->enc, o);
        if (id >= 0) return vocab_ids_push(out, id);
    }
    if (n > w->syms_cap) {
        size_t bytes;
        if (!mica_size_mul_ok(n, sizeof(vocab_sym), &bytes)) return MICA_ERR_NOMEM;
        vocab_sym *s = mica_realloc(w->syms, bytes);
        if (!s) return MICA_ERR_NOMEM;
        w->syms = s;
        w->syms_cap = n;
    }
    vocab_sym *syms = w->syms;
    for (size_t i = 0; i < n; i++)
        syms[i] = (vocab_sym){(uint32_t)i, 1, (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1,
                              v->bpe_byte_id[(uint8_t)word[i]]};
    w->heap.n = 0;
    for (size_t i = 1; i < n; i++)
        if (!bpe_try_pair(v, syms, (int32_t)i - 1, (int32_t)i, &w->heap)) return MICA_ERR_NOMEM;

    while (w->heap.n > 0) {
        vocab_bigram b = vocab_heap_pop(&w->heap);
        vocab_sym *l = &syms[b.left], *r = &syms[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue; /* stale */
        l->id = bpe_merge_find(v, l->id, r->id)->result;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) syms[r->next].prev = b.left;
        if (!bpe_try_pair(v, syms, l->prev, b.left, &w->heap)) return MICA_ERR_NOMEM;
        if (!bpe_try_pair(v, syms, b.left, l->next, &w->heap)) return MICA_ERR_NOMEM;
    }
    for (int32_t i = 0; i != -1; i = syms[i].next) {
        /* A byte whose character is not in the vocabulary has no token and is
           dropped, as llama.cpp does (no real byte-level vocabulary lacks one). */
        if (syms[i].id >= 0) {
            mica_status st = vocab_ids_push(out, syms[i].id);
            if (st != MICA_OK) return st;
        }
    }
    return MICA_OK;
}

/* Copy of text in which every invalid byte is U+FFFD (the regexes need valid UTF-8). */
static char *bpe_sanitize(const char *text, size_t len, size_t *out_len) {
    size_t bytes;
    if (!mica_size_mul_ok(len, 3, &bytes)) return NULL;
    char *s = mica_malloc(bytes ? bytes : 1);
    if (!s) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t cl = utf8_decode(text + i, len - i, &cp);
        if (cl == 0) {
            memcpy(s + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += 1;
        } else {
            memcpy(s + o, text + i, cl);
            o += cl;
            i += cl;
        }
    }
    *out_len = o;
    return s;
}

/* Advances (*in, *san) through the input and its sanitized copy to sanitized offset `to`. */
static void bpe_unsanitize(const char *text, size_t len, size_t to, size_t *in, size_t *san) {
    while (*san < to && *in < len) {
        uint32_t cp;
        size_t cl = utf8_decode(text + *in, len - *in, &cp);
        *in += cl ? cl : 1;
        *san += cl ? cl : 3;
    }
}

mica_status bpe_tokenize(const mica_vocab *v, const char *text, size_t len, vocab_ids *out,
                         mica_err *err) {
    if (len == 0) return MICA_OK;
    mica_status st;
    char *san = NULL;
    size_t *ends = NULL, n_ends = 0;
    bpe_work w = {0};
    const char *subject = text;
    size_t subject_len = len;
    if (!utf8_valid(text, len)) {
        san = bpe_sanitize(text, len, &subject_len);
        if (!san) goto nomem;
        subject = san;
    }
    st = pretok_split(v->pre, subject, subject_len, &ends, &n_ends, err);
    if (st != MICA_OK) goto done;
    size_t start = 0, in = 0, so = 0;
    for (size_t i = 0; i < n_ends; i++) {
        /* Fragment ends fall on character boundaries of the subject. */
        size_t end = ends[i];
        if (san) {
            bpe_unsanitize(text, len, ends[i], &in, &so);
            end = in;
        }
        if (end > start) {
            st = bpe_word(v, text + start, end - start, &w, out);
            if (st != MICA_OK) goto nomem;
        }
        start = end;
    }
    st = MICA_OK;
    goto done;
nomem:
    st = mica_err_set(err, MICA_ERR_NOMEM, "tokenize: out of memory");
done:
    mica_free(w.syms);
    mica_free(w.heap.v);
    mica_free(w.enc);
    mica_free(ends);
    mica_free(san);
    return st;
}

/* ---- decode ---- */

size_t bpe_decode_text(const mica_vocab *v, const char *t, size_t n, char *buf, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t cl = utf8_decode(t + i, n - i, &cp);
        if (cl > 0 && cp < MICA_ARRAY_LEN(v->bpe_cp_byte) && v->bpe_cp_byte[cp] >= 0) {
            if (o < cap) buf[o] = (char)v->bpe_cp_byte[cp];
            o++;
            i += cl;
            continue;
        }
        /* Not a byte-level character: pass its bytes through unchanged. */
        if (cl == 0) cl = 1;
        for (size_t k = 0; k < cl; k++, o++)
            if (o < cap) buf[o] = t[i + k];
        i += cl;
    }
    return o;
}
