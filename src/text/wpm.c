/*
 * wpm.c - WordPiece tokenization for `bert` vocabularies (FORMATS.md 3.2;
 * the BERT basic tokenizer and WordPiece model of Hugging Face tokenizers,
 * as llama.cpp's WPM session applies them to GGUF vocabularies):
 *   1. code points U+0000, U+FFFD and category C* (control, format,
 *      surrogate, private use, unassigned) are dropped, except TAB, LF, CR;
 *      invalid UTF-8 bytes are dropped too;
 *   2. TAB, LF, CR and categories Zs/Zl/Zp end the current word;
 *   3. uncased vocabularies: each code point is NFD-decomposed, nonspacing
 *      marks (Mn) are dropped, the rest lowercased (utf8proc tables);
 *   4. CJK ideographs, Unicode punctuation (P*) and the ASCII symbols
 *      $ + < = > ^ ` | ~ each form a word of their own;
 *   5. per word, greedy longest match from the left: the first piece must be
 *      a token "U+2581<piece>", later ones a token "<piece>" (the GGUF form
 *      of "##piece"); a word with no complete split, or longer than
 *      WPM_MAX_WORD_CHARS code points, becomes the unknown token.
 * Casing is not stored in GGUF: a vocabulary whose normal tokens contain
 * (almost) no letters that lowercasing would change is treated as uncased,
 * which for BERT checkpoints means do_lower_case (and so strip_accents).
 */
#include "text/tokenizer_int.h"
#include "text/utf8.h"

#include <string.h>
#include <utf8proc.h>

/* Hugging Face WordPiece max_input_chars_per_word. */
#define WPM_MAX_WORD_CHARS 100
/* Longest canonical decomposition of one code point is 4; leave headroom. */
#define WPM_MAX_DECOMP 18

static const char k_wpm_prefix[3] = {'\xE2', '\x96', '\x81'}; /* U+2581 */

/* ---- load ---- */

/* True if lowercasing changes some code point of t[0..n). */
static bool wpm_has_upper(const char *t, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_decode(t + i, n - i, &cp);
        if (k == 0) return false;
        if (utf8proc_tolower((utf8proc_int32_t)cp) != (utf8proc_int32_t)cp) return true;
        i += k;
    }
    return false;
}

mica_status wpm_init(mica_vocab *v, const char *path, mica_err *err) {
    if (v->unk < 0)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: bert vocabulary without an unknown token", path);
    size_t n_normal = 0, n_upper = 0;
    uint32_t max_len = 0;
    for (int32_t id = 0; id < v->n_tokens; id++) {
        size_t n;
        const char *t = vocab_text_at(v, id, &n);
        if (n > max_len) max_len = (uint32_t)n;
        if (v->types[id] != VOCAB_TT_NORMAL) continue;
        n_normal++;
        n_upper += wpm_has_upper(t, n);
    }
    /* Cased if more than 1 in 1000 normal tokens has an upper-case letter
       (a stray token in an uncased vocabulary must not flip the decision). */
    v->wpm_uncased = n_upper * 1000 <= n_normal;
    v->wpm_max_len = max_len;
    return MICA_OK;
}

/* ---- character classes ---- */

static bool wpm_is_cjk(uint32_t cp) {
    /* The ranges Hugging Face's BertNormalizer pads with spaces. */
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
           (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

enum wpm_class {
    WPM_DROP,  /* removed */
    WPM_SPACE, /* ends the word */
    WPM_ALONE, /* a word of its own */
    WPM_JOIN,  /* part of the current word */
};

/* Class of an input code point before normalisation (steps 1, 2 and CJK). */
static enum wpm_class wpm_class_raw(uint32_t cp) {
    if (cp == 0 || cp == UTF8_REPLACEMENT) return WPM_DROP;
    if (cp == '\t' || cp == '\n' || cp == '\r') return WPM_SPACE;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP: return WPM_SPACE;
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO: return WPM_DROP;
    default: break;
    }
    return wpm_is_cjk(cp) ? WPM_ALONE : WPM_JOIN;
}

/* True for BERT punctuation: ASCII punctuation and symbols, or category P*. */
static bool wpm_is_punct(uint32_t cp) {
    if (cp < 0x80)
        return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) || (cp >= 0x5B && cp <= 0x60) ||
               (cp >= 0x7B && cp <= 0x7E);
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

/*
 * Normalised form of cp (step 3) into out[0..WPM_MAX_DECOMP); returns the
 * number of code points (0 when everything was an accent).
 */
static size_t wpm_normalize(const mica_vocab *v, uint32_t cp, uint32_t *out) {
    if (!v->wpm_uncased) {
        out[0] = cp;
        return 1;
    }
    if (cp < 0x80) {
        out[0] = cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
        return 1;
    }
    utf8proc_int32_t d[WPM_MAX_DECOMP];
    utf8proc_ssize_t nd = utf8proc_decompose_char((utf8proc_int32_t)cp, d, WPM_MAX_DECOMP,
                                                  UTF8PROC_DECOMPOSE, NULL);
    if (nd < 0 || nd > WPM_MAX_DECOMP) {
        d[0] = (utf8proc_int32_t)cp; /* cannot happen for valid scalar values */
        nd = 1;
    }
    size_t n = 0;
    for (utf8proc_ssize_t i = 0; i < nd; i++) {
        if (utf8proc_category(d[i]) == UTF8PROC_CATEGORY_MN) continue;
        out[n++] = (uint32_t)utf8proc_tolower(d[i]);
    }
    return n;
}

/* ---- words ---- */

/* The word being collected: U+2581 followed by its normalised UTF-8. */
typedef struct wpm_word {
    char buf[sizeof(k_wpm_prefix) + 4 * (WPM_MAX_WORD_CHARS + 1)];
    size_t n;       /* bytes in buf, prefix included */
    size_t n_chars; /* code points seen; beyond WPM_MAX_WORD_CHARS + 1 they are not stored */
} wpm_word;

static void wpm_word_reset(wpm_word *w) {
    memcpy(w->buf, k_wpm_prefix, sizeof(k_wpm_prefix));
    w->n = sizeof(k_wpm_prefix);
    w->n_chars = 0;
}

static void wpm_word_add(wpm_word *w, uint32_t cp) {
    if (w->n_chars++ > WPM_MAX_WORD_CHARS) return; /* already too long: only count */
    size_t k = utf8_encode(cp, w->buf + w->n);
    w->n += k;
}

static bool wpm_is_cont_byte(char c) { return ((uint8_t)c & 0xC0) == 0x80; }

/* Emits the pieces of w (then resets it); the unknown token if it cannot be split. */
static mica_status wpm_word_emit(const mica_vocab *v, wpm_word *w, vocab_ids *out) {
    if (w->n_chars == 0) return MICA_OK;
    const size_t plen = sizeof(k_wpm_prefix);
    size_t mark = out->n;
    bool ok = w->n_chars <= WPM_MAX_WORD_CHARS;
    for (size_t pos = 0; ok && pos < w->n;) {
        /* A piece is buf[pos..end); the first one covers the prefix and at
           least one character, later ones must not start with U+2581 (that
           would be a word-initial token standing in for a "##" piece). */
        size_t lo = pos == 0 ? plen : pos;
        bool can_match = !(pos > 0 && w->n - pos >= plen && memcmp(w->buf + pos, k_wpm_prefix, plen) == 0);
        size_t end = MICA_MIN(w->n, pos + v->wpm_max_len);
        int32_t id = -1;
        while (can_match && end > lo) {
            while (end > lo && end < w->n && wpm_is_cont_byte(w->buf[end])) end--;
            if (end <= lo) break;
            id = strmap_get(&v->tok_map, w->buf + pos, end - pos);
            if (id >= 0) break;
            end--;
        }
        if (id < 0) {
            ok = false;
            break;
        }
        mica_status st = vocab_ids_push(out, id);
        if (st != MICA_OK) return st;
        pos = end;
    }
    wpm_word_reset(w);
    if (ok) return MICA_OK;
    out->n = mark;
    return vocab_ids_push(out, v->unk);
}

/* ---- tokenize ---- */

mica_status wpm_tokenize(const mica_vocab *v, const char *text, size_t len, vocab_ids *out,
                         mica_err *err) {
    wpm_word w;
    wpm_word_reset(&w);
    mica_status st = MICA_OK;
    uint32_t norm[WPM_MAX_DECOMP];
    for (size_t i = 0; i < len && st == MICA_OK;) {
        uint32_t cp;
        size_t k = utf8_decode(text + i, len - i, &cp);
        if (k == 0) { /* invalid byte: dropped, like U+FFFD */
            i++;
            continue;
        }
        i += k;
        enum wpm_class c = wpm_class_raw(cp);
        if (c == WPM_DROP) continue;
        if (c == WPM_SPACE) {
            st = wpm_word_emit(v, &w, out);
            continue;
        }
        size_t nn = wpm_normalize(v, cp, norm);
        if (c == WPM_ALONE) {
            st = wpm_word_emit(v, &w, out);
            for (size_t j = 0; j < nn; j++) wpm_word_add(&w, norm[j]);
            if (st == MICA_OK) st = wpm_word_emit(v, &w, out);
            continue;
        }
        for (size_t j = 0; j < nn && st == MICA_OK; j++) {
            if (wpm_is_punct(norm[j])) {
                st = wpm_word_emit(v, &w, out);
                wpm_word_add(&w, norm[j]);
                if (st == MICA_OK) st = wpm_word_emit(v, &w, out);
            } else {
                wpm_word_add(&w, norm[j]);
            }
        }
    }
    if (st == MICA_OK) st = wpm_word_emit(v, &w, out);
    if (st != MICA_OK) return mica_err_set(err, st, "tokenize: out of memory");
    return MICA_OK;
}
