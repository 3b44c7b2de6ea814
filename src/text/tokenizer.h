/*
 * tokenizer.h - vocabularies read from GGUF metadata (tokenizer.ggml.*), text
 * to token ids and back (layer: text; depends on base and gguf).
 *
 * Families (tokenizer.ggml.model):
 *   "llama" - SentencePiece-style: spaces become U+2581, an optional dummy
 *             prefix space (add_space_prefix, default true), pieces merged by
 *             highest score (ties: leftmost), byte fallback <0xNN>.
 *   "gpt2"  - byte-level BPE: the text is split by the pre-tokenizer named in
 *             tokenizer.ggml.pre (PCRE2 regexes, FORMATS.md section 3.4), each
 *             byte mapped through the GPT-2 byte-to-unicode table, then merged
 *             by tokenizer.ggml.merges rank (lowest first, ties leftmost).
 *   "bert"  - WordPiece (wpm.c): the BERT basic tokenizer (control characters
 *             dropped, split at whitespace, punctuation and CJK ideographs;
 *             uncased vocabularies also lowercase and strip accents), then
 *             greedy longest-match pieces per word; a word that cannot be
 *             split becomes the unknown token. Word-initial pieces are stored
 *             with a U+2581 prefix, continuation ("##") pieces without.
 * An unknown model or pre-tokenizer name is a load error (MICA_ERR_UNSUPPORTED),
 * never a silent fallback. Metadata is validated like the rest of the file:
 * element types checked before use, ids bounds-checked, byte tokens parsed
 * strictly, duplicates rejected.
 *
 * Ownership: vocab_load copies what it needs out of the GGUF mapping, so the
 * vocab does not borrow from the gguf_ctx after loading.
 * Thread safety: a vocab is immutable after load; share it freely.
 */
#ifndef MICA_TOKENIZER_H
#define MICA_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "mica_internal.h"

#define VOCAB_MAX_TOKENS  (1 << 22)   /* cap on tokenizer.ggml.tokens */
#define VOCAB_MAX_TEXT    (64u << 20) /* cap on one text to tokenize, bytes */

typedef struct mica_vocab mica_vocab;

enum vocab_kind { VOCAB_SPM = 1, VOCAB_BPE = 2, VOCAB_WPM = 3 };

/* Token types (tokenizer.ggml.token_type). */
enum vocab_token_type {
    VOCAB_TT_UNDEFINED = 0,
    VOCAB_TT_NORMAL = 1,
    VOCAB_TT_UNKNOWN = 2,
    VOCAB_TT_CONTROL = 3,
    VOCAB_TT_USER_DEFINED = 4,
    VOCAB_TT_UNUSED = 5,
    VOCAB_TT_BYTE = 6,
};

/*
 * Loads the vocabulary of g. Returns MICA_OK, MICA_ERR_FORMAT (bad metadata),
 * MICA_ERR_UNSUPPORTED (unknown tokenizer.ggml.model / pre), MICA_ERR_NOMEM.
 * On success *out is owned by the caller (vocab_free).
 */
mica_status vocab_load(const gguf_ctx *g, mica_vocab **out, mica_err *err);
void vocab_free(mica_vocab *v);

enum vocab_kind vocab_kind(const mica_vocab *v);
int32_t vocab_n_tokens(const mica_vocab *v);
int32_t vocab_bos(const mica_vocab *v); /* -1 if none */
int32_t vocab_eos(const mica_vocab *v); /* -1 if none */
bool vocab_add_bos(const mica_vocab *v);
bool vocab_add_eos(const mica_vocab *v);
int32_t vocab_sep(const mica_vocab *v); /* separator ([SEP]); -1 if none */
bool vocab_add_sep(const mica_vocab *v);
/* True for tokens that end a generation (eos, eot, eom and the texts listed in FORMATS.md 3.6). */
bool vocab_is_eog(const mica_vocab *v, int32_t id);
/* Raw token text as stored in the vocabulary (not decoded); len in *len. NULL if out of range. */
const char *vocab_token_text(const mica_vocab *v, int32_t id, size_t *len);
float vocab_token_score(const mica_vocab *v, int32_t id);
enum vocab_token_type vocab_token_type(const mica_vocab *v, int32_t id);

/*
 * Tokenizes len bytes of text. add_special: prepend BOS / append EOS, then
 * SEP, per the vocabulary's add_bos/add_eos/add_sep. parse_special: control and unknown token
 * texts in the input become those tokens (otherwise they are plain text);
 * user-defined token texts always do, as in the reference tokenizers. A
 * special token with the lstrip (rstrip) attribute also swallows the ASCII
 * whitespace before (after) it (llama.cpp sets these by model name: Phi-3,
 * jina-v2, modern-bert).
 * Invalid UTF-8 is never an error: BPE keeps each invalid byte (pre-tokenized
 * as U+FFFD), SPM falls back to its <0xNN> token, WPM drops it.
 * On success *ids is a mica_malloc'd array of *n ids (free with mica_free).
 * Returns MICA_OK, MICA_ERR_LIMIT (text over VOCAB_MAX_TEXT) or MICA_ERR_NOMEM.
 */
mica_status vocab_tokenize(const mica_vocab *v, const char *text, size_t len, bool add_special,
                           bool parse_special, int32_t **ids, size_t *n, mica_err *err);

/*
 * The bytes token `id` decodes to: SPM and WPM U+2581 becomes a space, <0xNN>
 * becomes the byte, BPE byte-level text is mapped back to bytes; control
 * tokens give their text. `prev` is the previous token or -1: for SPM (with a
 * dummy prefix) and WPM a leading space is dropped right after BOS. Writes up to cap bytes to buf (not NUL-terminated)
 * and returns the full length.
 */
size_t vocab_token_to_piece(const mica_vocab *v, int32_t prev, int32_t id, char *buf, size_t cap);

#endif /* MICA_TOKENIZER_H */
