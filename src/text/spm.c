/*
 * spm.c - SentencePiece-style tokenization for `llama` vocabularies
 * (FORMATS.md 3.5; behaviour of llama.cpp's SPM session and llama2.c's
 * run.c encode):
 *   1. spaces become U+2581; a U+2581 is prepended when the caller asks
 *      (dummy prefix);
 *   2. the text is split into UTF-8 characters (an invalid byte is a
 *      character of its own);
 *   3. while some adjacent pair of pieces concatenates to a token, the pair
 *      whose token has the highest score is merged (ties: leftmost pair);
 *   4. each final piece is emitted as its token, or byte by byte through the
 *      <0xNN> byte-fallback tokens (unk when a byte has none).
 * Pieces always stay contiguous in the escaped text, so a pair's
 * concatenation is a span of it and no strings are built while merging.
 * When no token has a U+2581 right after another character (checked at
 * load), no merge can cross the start of a word (a U+2581 after a non-U+2581
 * character), so step 3 runs word by word with a small heap: same result,
 * about ten times faster on long texts than one heap over everything.
 */
#include "text/tokenizer_int.h"
#include "text/utf8.h"

#include <string.h>

/* ---- load ---- */

static int spm_hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Byte value of text "<0xNN>" (exactly 6 bytes), or -1. */
static int spm_parse_byte_token(const char *t, size_t n) {
    if (n != 6 || memcmp(t, "<0x", 3) != 0 || t[5] != '>') return -1;
    int hi = spm_hex(t[3]), lo = spm_hex(t[4]);
    if (hi < 0 || lo < 0) return -1;
    return hi * 16 + lo;
}

static bool spm_is_mark(const char *p) { return memcmp(p, "\xE2\x96\x81", 3) == 0; }

/* True if a U+2581 starts at buf[i] (i >= 1) right after something other than U+2581. */
static bool spm_word_start(const char *buf, size_t n, size_t i) {
    return i >= 1 && i + 3 <= n && spm_is_mark(buf + i) && (i < 3 || !spm_is_mark(buf + i - 3));
}

mica_status spm_init(mica_vocab *v, const char *path, mica_err *err) {
    v->byte_val = mica_malloc((size_t)v->n_tokens * sizeof(int16_t));
    if (!v->byte_val) return mica_err_set(err, MICA_ERR_NOMEM, "%s: vocab: out of memory", path);
    for (int32_t id = 0; id < v->n_tokens; id++) {
        v->byte_val[id] = -1;
        if (v->types[id] != VOCAB_TT_BYTE) continue;
        size_t n;
        const char *t = vocab_text_at(v, id, &n);
        int b = spm_parse_byte_token(t, n);
        if (b < 0)
            return mica_err_set(err, MICA_ERR_FORMAT,
                                "%s: tokenizer.ggml.tokens[%d]: byte token text is not <0xNN>", path,
                                (int)id);
        v->byte_val[id] = (int16_t)b;
    }
    /* Words can be merged separately unless some token has a U+2581 right
       after another character (a merge could then cross a word start). */
    v->spm_split_words = true;
    for (int32_t id = 0; id < v->n_tokens && v->spm_split_words; id++) {
        size_t n;
        const char *t = vocab_text_at(v, id, &n);
        for (size_t i = 1; i + 3 <= n; i++)
            if (spm_word_start(t, n, i)) {
                v->spm_split_words = false;
                break;
            }
    }
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        char name[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
        int32_t id = strmap_get(&v->tok_map, name, sizeof(name));
        if (id < 0) {
            char c = (char)b;
            id = strmap_get(&v->tok_map, &c, 1);
        }
        v->spm_byte_id[b] = id >= 0 ? id : v->unk;
    }
    return MICA_OK;
}

/* Queues (left, right) if their concatenation is a token. False on out of memory. */
static bool spm_try_pair(const mica_vocab *v, const char *text, const vocab_sym *syms, int32_t left,
                         int32_t right, vocab_heap *h) {
    if (left < 0 || right < 0) return true;
    uint32_t size = syms[left].n + syms[right].n;
    int32_t id = strmap_get(&v->tok_map, text + syms[left].start, size);
    if (id < 0) return true;
    /* Highest score first: the heap pops the smallest key. */
    vocab_bigram b = {-(double)v->scores[id], left, right, size};
    return vocab_heap_push(h, b);
}

/* ---- tokenize ---- */

/* Escaped copy: optional U+2581 prefix, every ' ' replaced by U+2581. */
static char *spm_escape(const char *text, size_t len, bool add_prefix, size_t *out_len) {
    /* len <= VOCAB_MAX_TEXT, so the tripled size cannot overflow. */
    size_t spaces = 0;
    for (size_t i = 0; i < len; i++) spaces += text[i] == ' ';
    size_t n = len + 2 * spaces + (add_prefix ? 3 : 0); /* a space grows from 1 to 3 bytes */
    char *buf = mica_malloc(n ? n : 1);
    if (!buf) return NULL;
    size_t o = 0;
    if (add_prefix) {
        memcpy(buf, "\xE2\x96\x81", 3);
        o = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(buf + o, "\xE2\x96\x81", 3);
            o += 3;
        } else {
            buf[o++] = text[i];
        }
    }
    MICA_ASSERT(o == n);
    *out_len = n;
    return buf;
}

/* Merges the pieces of buf[start..end) and appends their ids. syms and heap are scratch. */
static mica_status spm_merge_span(const mica_vocab *v, const char *buf, size_t start, size_t end,
                                  vocab_sym *syms, vocab_heap *heap, vocab_ids *out) {
    int32_t n_sym = 0;
    for (size_t off = start; off < end;) {
        size_t cl = utf8_char_len(buf + off, end - off);
        syms[n_sym] = (vocab_sym){(uint32_t)off, (uint32_t)cl, n_sym - 1, -1, -1};
        if (n_sym > 0) syms[n_sym - 1].next = n_sym;
        n_sym++;
        off += cl;
    }
    heap->n = 0;
    for (int32_t i = 1; i < n_sym; i++)
        if (!spm_try_pair(v, buf, syms, i - 1, i, heap)) return MICA_ERR_NOMEM;

    while (heap->n > 0) {
        vocab_bigram b = vocab_heap_pop(heap);
        vocab_sym *l = &syms[b.left], *r = &syms[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) syms[r->next].prev = b.left;
        if (!spm_try_pair(v, buf, syms, l->prev, b.left, heap)) return MICA_ERR_NOMEM;
        if (!spm_try_pair(v, buf, syms, b.left, l->next, heap)) return MICA_ERR_NOMEM;
    }

    for (int32_t i = 0; i != -1 && n_sym > 0; i = syms[i].next) {
        const vocab_sym *s = &syms[i];
        int32_t id = strmap_get(&v->tok_map, buf + s->start, s->n);
        if (id >= 0) {
            if (vocab_ids_push(out, id) != MICA_OK) return MICA_ERR_NOMEM;
            continue;
        }
        /* Not a token: byte fallback. */
        for (uint32_t k = 0; k < s->n; k++) {
            int32_t bid = v->spm_byte_id[(uint8_t)buf[s->start + k]];
            if (bid >= 0 && vocab_ids_push(out, bid) != MICA_OK) return MICA_ERR_NOMEM;
        }
    }
    return MICA_OK;
}

mica_status spm_tokenize(const mica_vocab *v, const char *text, size_t len, bool add_prefix,
                         vocab_ids *out, mica_err *err) {
    mica_status st = MICA_OK;
    size_t n = 0;
    vocab_sym *syms = NULL;
    vocab_heap heap = {0};
    char *buf = spm_escape(text, len, add_prefix, &n);
    if (!buf) goto nomem;
    if (n == 0) goto done;
    if (n > INT32_MAX) {
        st = mica_err_set(err, MICA_ERR_LIMIT, "tokenize: fragment of %zu bytes is too long", n);
        goto done;
    }
    size_t n_chars = 0;
    for (size_t off = 0; off < n; n_chars++) off += utf8_char_len(buf + off, n - off);
    syms = mica_malloc(n_chars * sizeof(vocab_sym));
    if (!syms) goto nomem;
    /* With spm_split_words, merges never cross a word start (see spm_init),
       so each word merges on its own: same result, small heaps. */
    size_t start = 0;
    for (size_t i = 1; i <= n; i++) {
        if (i < n && !(v->spm_split_words && ((uint8_t)buf[i] == 0xE2) && spm_word_start(buf, n, i))) continue;
        if ((st = spm_merge_span(v, buf, start, i, syms, &heap, out)) != MICA_OK) goto nomem;
        start = i;
    }
    goto done;
nomem:
    st = mica_err_set(err, MICA_ERR_NOMEM, "tokenize: out of memory");
done:
    mica_free(heap.v);
    mica_free(syms);
    mica_free(buf);
    return st;
}
