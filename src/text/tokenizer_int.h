/*
 * tokenizer_int.h - private to the tokenizer module (tokenizer.c, spm.c, wpm.c,
 * bpe.c): the vocabulary struct and the per-family entry points. Nothing
 * outside src/text includes this.
 */
#ifndef MICA_TOKENIZER_INT_H
#define MICA_TOKENIZER_INT_H

#include "base/strmap.h"
#include "text/pretok.h"
#include "text/tokenizer.h"

/*
 * Per-token flag bits (mica_vocab.flags). CONTROL/USER/UNKNOWN are the
 * token's effective attributes: its stored type, adjusted at load the way
 * llama.cpp does (tokens found by their text as end-of-turn, FIM or EOG
 * markers become control; a few gpt-oss markers become user-defined).
 */
#define VOCAB_FLAG_EOG     0x01u
#define VOCAB_FLAG_CONTROL 0x02u
#define VOCAB_FLAG_USER    0x04u
#define VOCAB_FLAG_UNKNOWN 0x08u
#define VOCAB_FLAG_SPECIAL (VOCAB_FLAG_CONTROL | VOCAB_FLAG_USER | VOCAB_FLAG_UNKNOWN)
/* When cut out of the text as a special token, also remove the ASCII
   whitespace right before (LSTRIP) / after (RSTRIP) it. */
#define VOCAB_FLAG_LSTRIP  0x10u
#define VOCAB_FLAG_RSTRIP  0x20u

/* One BPE merge: (left id, right id) -> rank and resulting token id. */
typedef struct bpe_merge_slot {
    uint64_t key; /* BPE_MERGE_EMPTY or (uint64_t)left << 32 | right */
    int32_t rank;
    int32_t result;
} bpe_merge_slot;

#define BPE_MERGE_EMPTY UINT64_MAX

struct mica_vocab {
    enum vocab_kind kind;
    int32_t n_tokens;

    /* Token texts: text_buf holds every text, each followed by a NUL. (n_tokens) */
    char *text_buf;
    size_t *text_off;
    uint32_t *text_len;
    float *scores;        /* (n_tokens) */
    uint8_t *types;       /* (n_tokens) enum vocab_token_type */
    uint8_t *flags;       /* (n_tokens) VOCAB_FLAG_* */
    strmap tok_map;       /* text -> id */

    int32_t bos, eos, eot, eom, unk, pad, sep;
    bool add_bos, add_eos, add_sep;
    bool add_space_prefix; /* SPM dummy prefix */

    /* Tokens matched literally before SPM/BPE (VOCAB_FLAG_SPECIAL), longest
       text first (ties: lower id first). */
    int32_t *special_ids;
    size_t n_special;

    /* SPM: token for each byte's fallback (<0xNN>, else the 1-byte text, else unk; -1 none). */
    int32_t spm_byte_id[256];
    int16_t *byte_val;    /* (n_tokens) byte of a <0xNN> BYTE token, else -1 */
    bool spm_split_words; /* no token has U+2581 after another character: merge word by word */

    /* BPE */
    pretok *pre;
    bool ignore_merges;
    int32_t bpe_byte_id[256];   /* token whose text is byte b's byte-level character; -1 none */
    char bpe_byte_utf8[256][2]; /* byte b's byte-level character, UTF-8 (1 or 2 bytes) */
    uint8_t bpe_byte_utf8_len[256];
    int16_t bpe_cp_byte[0x144]; /* byte-level code point -> byte (-1: not a byte-level char) */
    bpe_merge_slot *merges;     /* open addressing, power-of-two capacity */
    size_t merges_cap;

    /* WPM */
    bool wpm_uncased;       /* lowercase and strip accents before splitting */
    uint32_t wpm_max_len;   /* longest token text, bytes */
};

/* Growable id output. */
typedef struct vocab_ids {
    int32_t *v;
    size_t n, cap;
} vocab_ids;

/* Appends id; MICA_OK or MICA_ERR_NOMEM. */
mica_status vocab_ids_push(vocab_ids *o, int32_t id);

/*
 * Merge machinery shared by SPM and BPE: pieces are contiguous spans of the
 * text being tokenized, linked left to right; candidate pairs wait in a
 * binary heap that pops the smallest key, ties to the leftmost pair.
 */
typedef struct vocab_sym {
    uint32_t start;       /* offset of the piece (texts are < 4 GiB: VOCAB_MAX_TEXT, tripled at most) */
    uint32_t n;           /* bytes; 0 once merged into its left neighbour */
    int32_t prev, next;   /* neighbours, -1 at the ends */
    int32_t id;           /* BPE: token of the piece (-1 if none); SPM: unused */
} vocab_sym;

typedef struct vocab_bigram {
    double key;           /* SPM: -score; BPE: merge rank */
    int32_t left, right;  /* symbol indices */
    uint32_t size;        /* left.n + right.n when queued; differs later iff stale */
} vocab_bigram;

typedef struct vocab_heap {
    vocab_bigram *v;
    size_t n, cap;
} vocab_heap;

/* False on out of memory. */
bool vocab_heap_push(vocab_heap *h, vocab_bigram b);
/* Removes and returns the first bigram (h->n > 0). */
vocab_bigram vocab_heap_pop(vocab_heap *h);

/* Text of token id (caller checked the range). */
static inline const char *vocab_text_at(const mica_vocab *v, int32_t id, size_t *len) {
    *len = v->text_len[id];
    return v->text_buf + v->text_off[id];
}

/* ---- spm.c ---- */

/* Fills spm_byte_id and byte_val; strict <0xNN> parse of BYTE tokens (MICA_ERR_FORMAT). */
mica_status spm_init(mica_vocab *v, const char *path, mica_err *err);
/*
 * Tokenizes one raw fragment: spaces become U+2581, a U+2581 is prepended when
 * add_prefix, then pieces merge by score. Appends ids to out.
 */
mica_status spm_tokenize(const mica_vocab *v, const char *text, size_t len, bool add_prefix,
                         vocab_ids *out, mica_err *err);

/* ---- bpe.c ---- */

/* Builds the byte-level tables and the merge map from tokenizer.ggml.merges. */
mica_status bpe_init(mica_vocab *v, const gguf_ctx *g, mica_err *err);
void bpe_deinit(mica_vocab *v);
/* Tokenizes one raw fragment (any bytes; invalid UTF-8 is kept byte by byte). */
mica_status bpe_tokenize(const mica_vocab *v, const char *text, size_t len, vocab_ids *out,
                         mica_err *err);
/* Appends the bytes token text t[0..n) stands for in byte-level BPE to buf (see tokenizer.h). */
size_t bpe_decode_text(const mica_vocab *v, const char *t, size_t n, char *buf, size_t cap);

/* ---- wpm.c ---- */

/* Decides casing from the vocabulary and finds the longest token; needs an unknown token. */
mica_status wpm_init(mica_vocab *v, const char *path, mica_err *err);
/* Tokenizes one raw fragment (any bytes; invalid UTF-8 is dropped). Appends ids to out. */
mica_status wpm_tokenize(const mica_vocab *v, const char *text, size_t len, vocab_ids *out,
                         mica_err *err);

#endif /* MICA_TOKENIZER_INT_H */
