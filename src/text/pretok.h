/*
 * pretok.h - pre-tokenizers for byte-level BPE vocabularies (layer: text;
 * depends on base and PCRE2). A pre-tokenizer is a list of regexes (FORMATS.md
 * 3.4) compiled with PCRE2 (UTF + UCP, JIT where available). They are applied
 * in sequence, as llama.cpp does: each regex re-splits every fragment produced
 * so far, and both the matched spans and the unmatched spans between them
 * become fragments. Each regex sees one fragment as its whole subject (so `$`
 * and look-aheads stop at the fragment's end).
 *
 * Thread safety: a pretok is immutable after pretok_create; pretok_split may
 * run concurrently on one pretok (match data is per call).
 */
#ifndef MICA_PRETOK_H
#define MICA_PRETOK_H

#include <stdbool.h>
#include <stddef.h>

#include "mica_internal.h"

/* Regex sets (FORMATS.md 3.3 / 3.4). */
enum pretok_kind {
    PRETOK_DEFAULT = 0,
    PRETOK_LLAMA3,
    PRETOK_QWEN2,
    PRETOK_QWEN35,
    PRETOK_DEEPSEEK_LLM,
    PRETOK_DEEPSEEK_CODER,
    PRETOK_DEEPSEEK3,
    PRETOK_GPT2,
    PRETOK_GPT4O,
    PRETOK_STARCODER, /* \p{N}, then GPT2 */
    PRETOK_FALCON,
    PRETOK_COUNT
};

/* What a tokenizer.ggml.pre name selects. */
typedef struct pretok_info {
    enum pretok_kind kind;
    bool ignore_merges; /* emit a whole pre-token directly when it is a token */
    bool add_bos;       /* family default for add_bos (llama3 group) */
} pretok_info;

/*
 * Looks up a tokenizer.ggml.pre value (len bytes, not NUL-terminated).
 * Returns false for an unknown name.
 */
bool pretok_lookup(const char *name, size_t len, pretok_info *out);

typedef struct pretok pretok;

/* Compiles the regex set of `kind`. MICA_OK, MICA_ERR_NOMEM, MICA_ERR_INTERNAL (a regex failed to compile). */
mica_status pretok_create(enum pretok_kind kind, pretok **out, mica_err *err);
void pretok_free(pretok *p);

/*
 * Splits text[0..len), which must be valid UTF-8, into fragments. On success
 * *ends is a mica_malloc'd array of *n increasing end offsets (the last is
 * len; fragment i is [ends[i-1], ends[i]) with ends[-1] = 0). Empty text gives
 * *n = 0. Free *ends with mica_free. Returns MICA_OK, MICA_ERR_NOMEM,
 * MICA_ERR_LIMIT (PCRE2 match/heap limit hit).
 */
mica_status pretok_split(const pretok *p, const char *text, size_t len, size_t **ends, size_t *n,
                         mica_err *err);

#endif /* MICA_PRETOK_H */
