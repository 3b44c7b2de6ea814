/*
 * tokenizer.c - vocabulary loading, special tokens, public entry points and
 * decoding (contract in tokenizer.h). The merge algorithms live in spm.c and
 * bpe.c, the pre-tokenizer regexes in pretok.c.
 *
 * Special tokens (FORMATS.md 3.5, 3.6; llama.cpp tokenizer_st_partition):
 * before SPM/BPE runs, the texts of control, unknown and user-defined tokens
 * are cut out of the input, longest text first, and emitted as those ids.
 * Control and unknown texts are cut only with parse_special; user-defined
 * texts are always cut, as Hugging Face tokenizers and llama.cpp do for
 * non-special added tokens (the mpt and deepseek test vocabularies rely on
 * it).
 */
#include "text/tokenizer_int.h"
#include "text/utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- shared helpers ---- */

mica_status vocab_ids_push(vocab_ids *o, int32_t id) {
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64, bytes;
        if (!mica_size_mul_ok(cap, sizeof(int32_t), &bytes)) return MICA_ERR_NOMEM;
        int32_t *v = mica_realloc(o->v, bytes);
        if (!v) return MICA_ERR_NOMEM;
        o->v = v;
        o->cap = cap;
    }
    o->v[o->n++] = id;
    return MICA_OK;
}

/* a before b: smaller key, then leftmost. */
static bool vocab_bigram_before(const vocab_bigram *a, const vocab_bigram *b) {
    if (a->key != b->key) return a->key < b->key;
    return a->left < b->left;
}

bool vocab_heap_push(vocab_heap *h, vocab_bigram x) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64, bytes;
        if (!mica_size_mul_ok(cap, sizeof(vocab_bigram), &bytes)) return false;
        vocab_bigram *nv = mica_realloc(h->v, bytes);
        if (!nv) return false;
        h->v = nv;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!vocab_bigram_before(&x, &h->v[p])) break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = x;
    return true;
}

vocab_bigram vocab_heap_pop(vocab_heap *h) {
    MICA_ASSERT(h->n > 0);
    vocab_bigram top = h->v[0];
    vocab_bigram last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && vocab_bigram_before(&h->v[c + 1], &h->v[c])) c++;
        if (!vocab_bigram_before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n > 0) h->v[i] = last;
    return top;
}

/* ---- loading ---- */

/* Copies the token texts into one buffer and builds the text -> id map. */
static mica_status vocab_load_texts(mica_vocab *v, const gguf_ctx *g, const gguf_value *arr,
                                    mica_err *err) {
    const char *path = gguf_path(g);
    int32_t n = v->n_tokens;
    v->text_off = mica_malloc((size_t)n * sizeof(size_t));
    v->text_len = mica_malloc((size_t)n * sizeof(uint32_t));
    if (!v->text_off || !v->text_len) goto nomem;

    /* Pass 1: sizes (an empty text becomes "[EMPTY_<id>]"). */
    uint64_t total = 0;
    for (int32_t id = 0; id < n; id++) {
        gguf_value e;
        if (!gguf_arr_get(g, arr, (uint64_t)id, &e) || e.type != GGUF_TYPE_STRING)
            return mica_err_set(err, MICA_ERR_FORMAT, "%s: tokenizer.ggml.tokens[%d]: not a string",
                                path, (int)id);
        uint64_t len = e.v.s.len ? e.v.s.len : 32;
        if (len > UINT32_MAX || !mica_add_ok(total, len + 1, &total))
            return mica_err_set(err, MICA_ERR_FORMAT, "%s: tokenizer.ggml.tokens[%d]: too long", path,
                                (int)id);
    }
    if (total > SIZE_MAX) goto nomem;
    v->text_buf = mica_malloc((size_t)total);
    if (!v->text_buf) goto nomem;
    mica_status st = strmap_init(&v->tok_map, (size_t)n);
    if (st != MICA_OK) goto nomem;

    /* Pass 2: copy and index. */
    size_t off = 0;
    for (int32_t id = 0; id < n; id++) {
        gguf_value e;
        gguf_arr_get(g, arr, (uint64_t)id, &e);
        char *dst = v->text_buf + off;
        size_t len = (size_t)e.v.s.len;
        if (len == 0) {
            len = (size_t)snprintf(dst, 32, "[EMPTY_%d]", (int)id);
        } else {
            memcpy(dst, e.v.s.ptr, len);
        }
        dst[len] = '\0';
        v->text_off[id] = off;
        v->text_len[id] = (uint32_t)len;
        off += len + 1;
        int32_t prev;
        st = strmap_put(&v->tok_map, dst, len, id, &prev);
        if (st != MICA_OK) goto nomem;
        if (prev >= 0)
            return mica_err_set(err, MICA_ERR_FORMAT,
                                "%s: tokenizer.ggml.tokens[%d]: duplicate of token %d", path, (int)id,
                                (int)prev);
    }
    return MICA_OK;
nomem:
    return mica_err_set(err, MICA_ERR_NOMEM, "%s: vocab: out of memory", path);
}

/* Reads a little-endian 32-bit word. */
static uint32_t vocab_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static mica_status vocab_load_scores_types(mica_vocab *v, const gguf_ctx *g, mica_err *err) {
    const char *path = gguf_path(g);
    int32_t n = v->n_tokens;
    v->scores = mica_calloc((size_t)n, sizeof(float));
    v->types = mica_malloc((size_t)n);
    v->flags = mica_calloc((size_t)n, 1);
    if (!v->scores || !v->types || !v->flags)
        return mica_err_set(err, MICA_ERR_NOMEM, "%s: vocab: out of memory", path);
    memset(v->types, VOCAB_TT_NORMAL, (size_t)n);

    const gguf_kv *kv = gguf_find(g, "tokenizer.ggml.scores");
    if (kv) {
        const gguf_value *a = &kv->val;
        if (a->type != GGUF_TYPE_ARRAY ||
            (a->v.arr.elem != GGUF_TYPE_FLOAT32 && a->v.arr.elem != GGUF_TYPE_INT32))
            return mica_err_set(err, MICA_ERR_FORMAT,
                                "%s: tokenizer.ggml.scores: expected an array of FLOAT32 or INT32", path);
        if (a->v.arr.n < (uint64_t)n)
            return mica_err_set(err, MICA_ERR_FORMAT,
                                "%s: tokenizer.ggml.scores: %llu entries for %d tokens", path,
                                (unsigned long long)a->v.arr.n, (int)n);
        for (int32_t i = 0; i < n; i++) {
            uint32_t w = vocab_le32(a->v.arr.data + 4 * (size_t)i);
            if (a->v.arr.elem == GGUF_TYPE_FLOAT32) memcpy(&v->scores[i], &w, 4);
            else v->scores[i] = (float)(int32_t)w;
        }
    }
    kv = gguf_find(g, "tokenizer.ggml.token_type");
    if (kv) {
        const gguf_value *a = &kv->val;
        if (a->type != GGUF_TYPE_ARRAY || a->v.arr.elem != GGUF_TYPE_INT32)
            return mica_err_set(err, MICA_ERR_FORMAT,
                                "%s: tokenizer.ggml.token_type: expected an array of INT32", path);
        if (a->v.arr.n < (uint64_t)n)
            return mica_err_set(err, MICA_ERR_FORMAT,
                                "%s: tokenizer.ggml.token_type: %llu entries for %d tokens", path,
                                (unsigned long long)a->v.arr.n, (int)n);
        for (int32_t i = 0; i < n; i++) {
            int32_t t = (int32_t)vocab_le32(a->v.arr.data + 4 * (size_t)i);
            if (t < VOCAB_TT_UNDEFINED || t > VOCAB_TT_BYTE)
                return mica_err_set(err, MICA_ERR_FORMAT,
                                    "%s: tokenizer.ggml.token_type[%d]: unknown type %d", path, (int)i,
                                    (int)t);
            v->types[i] = (uint8_t)t;
        }
    }
    return MICA_OK;
}

/* Reads an optional special-id key into *id; out-of-range ids are ignored. */
static mica_status vocab_load_id(mica_vocab *v, const gguf_ctx *g, const char *key, int32_t *id,
                                 mica_err *err) {
    uint32_t x = UINT32_MAX;
    mica_status st = gguf_get_u32(g, key, &x, err);
    if (st != MICA_OK) return st;
    if (x != UINT32_MAX && x < (uint32_t)v->n_tokens) *id = (int32_t)x;
    return MICA_OK;
}

/* Texts that end a generation (FORMATS.md 3.6). */
static const char *const k_eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>", "[e~[",
};

/*
 * Markers llama.cpp finds by text when their id key is absent; each becomes
 * control, and the FIM pad/repo/separator ones also end a generation.
 */
typedef struct vocab_autodetect {
    const char *key;
    bool eog;
    const char *texts[8];
} vocab_autodetect;

static const vocab_autodetect k_autodetect[] = {
    {"tokenizer.ggml.eot_token_id", true,
     {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
      "<EOT>", "_<EOT>"}},
    {"tokenizer.ggml.eot_token_id", true, {"[EOT]", "<end_of_utterance>"}},
    {"tokenizer.ggml.eom_token_id", true, {"<|eom_id|>"}},
    {"tokenizer.ggml.fim_pre_token_id", false,
     {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>", "<|code_prefix|>", "<|prefix|>"}},
    {"tokenizer.ggml.fim_suf_token_id", false,
     {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<SUF>", "<|code_suffix|>", "<|suffix|>"}},
    {"tokenizer.ggml.fim_mid_token_id", false,
     {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<MID>", "<|code_middle|>", "<|middle|>"}},
    {"tokenizer.ggml.fim_pad_token_id", true, {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"}},
    {"tokenizer.ggml.fim_rep_token_id", true,
     {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"}},
    {"tokenizer.ggml.fim_sep_token_id", true, {"<|file_sep|>"}},
};

/* gpt-oss markers that are always rendered and always matched (user-defined). */
static const char *const k_user_texts[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"};

static int32_t vocab_find_text(const mica_vocab *v, const char *s) {
    return strmap_get(&v->tok_map, s, strlen(s));
}

/* True if some token with this text is in the EOG set. */
static bool vocab_text_is_eog(const mica_vocab *v, const char *s) {
    int32_t id = vocab_find_text(v, s);
    return id >= 0 && (v->flags[id] & VOCAB_FLAG_EOG);
}

/* Effective attributes and the end-of-generation set (FORMATS.md 3.6). */
static void vocab_mark_specials(mica_vocab *v, const gguf_ctx *g, const int32_t *eog_ids, size_t n_eog) {
    for (int32_t id = 0; id < v->n_tokens; id++) {
        uint8_t t = v->types[id];
        v->flags[id] = t == VOCAB_TT_CONTROL ? VOCAB_FLAG_CONTROL
                     : t == VOCAB_TT_USER_DEFINED ? VOCAB_FLAG_USER
                     : t == VOCAB_TT_UNKNOWN ? VOCAB_FLAG_UNKNOWN : 0;
    }
    for (size_t i = 0; i < MICA_ARRAY_LEN(k_autodetect); i++) {
        const vocab_autodetect *a = &k_autodetect[i];
        if (gguf_find(g, a->key)) continue;
        for (size_t k = 0; k < MICA_ARRAY_LEN(a->texts) && a->texts[k]; k++) {
            int32_t id = vocab_find_text(v, a->texts[k]);
            if (id < 0) continue;
            v->flags[id] |= VOCAB_FLAG_CONTROL | (a->eog ? VOCAB_FLAG_EOG : 0);
        }
    }
    for (size_t i = 0; i < MICA_ARRAY_LEN(k_eog_texts); i++) {
        int32_t id = vocab_find_text(v, k_eog_texts[i]);
        if (id >= 0) v->flags[id] |= VOCAB_FLAG_EOG | VOCAB_FLAG_CONTROL;
    }
    for (size_t i = 0; i < MICA_ARRAY_LEN(k_user_texts); i++) {
        int32_t id = vocab_find_text(v, k_user_texts[i]);
        if (id >= 0) v->flags[id] = (uint8_t)((v->flags[id] & VOCAB_FLAG_EOG) | VOCAB_FLAG_USER);
    }
    for (size_t i = 0; i < n_eog; i++)
        if (eog_ids[i] >= 0) v->flags[eog_ids[i]] |= VOCAB_FLAG_EOG;

    /* gpt-oss (<|return|>, <|call|>) and solar-open (<|calls|>, <|flush|>) end
       turns with <|end|> without ending the generation. */
    bool has_call = vocab_text_is_eog(v, "<|call|>") || vocab_text_is_eog(v, "<|calls|>");
    int32_t end = vocab_find_text(v, "<|end|>");
    if (end >= 0 && (v->flags[end] & VOCAB_FLAG_EOG) && has_call &&
        (vocab_text_is_eog(v, "<|return|>") || vocab_text_is_eog(v, "<|flush|>")))
        v->flags[end] = VOCAB_FLAG_USER;
    /* gemma4 / paddleocr: with <|tool_response>, </s> is ordinary text. */
    int32_t s = vocab_find_text(v, "</s>");
    if (s >= 0 && (v->flags[s] & VOCAB_FLAG_EOG) && vocab_text_is_eog(v, "<|tool_response>"))
        v->flags[s] = 0;
}

static mica_status vocab_load_specials(mica_vocab *v, const gguf_ctx *g, mica_err *err) {
    /* Family defaults (FORMATS.md 3.2), then metadata overrides. */
    v->eot = v->eom = v->pad = v->sep = -1;
    if (v->kind == VOCAB_SPM) {
        v->bos = 1;
        v->eos = 2;
        v->unk = 0;
    } else if (v->kind == VOCAB_WPM) {
        v->bos = 101; /* [CLS] */
        v->eos = -1;
        v->unk = 100;
        v->sep = 102;
        v->pad = 0;
    } else {
        v->bos = 11;
        v->eos = 11;
        v->unk = -1;
    }
    int32_t fim_pad = -1, fim_rep = -1, fim_sep = -1;
    mica_status st;
    /* Newer BERT conversions name [CLS] cls_token_id; bos_token_id wins if both are present. */
    if ((st = vocab_load_id(v, g, "tokenizer.ggml.cls_token_id", &v->bos, err)) != MICA_OK ||
        (st = vocab_load_id(v, g, "tokenizer.ggml.bos_token_id", &v->bos, err)) != MICA_OK ||
        (st = vocab_load_id(v, g, "tokenizer.ggml.seperator_token_id", &v->sep, err)) != MICA_OK ||
        (st = vocab_load_id(v, g, "tokenizer.ggml.eos_token_id", &v->eos, err)) != MICA_OK ||
        (st = vocab_load_id(v, g, "tokenizer.ggml.eot_token_id", &v->eot, err)) != MICA_OK ||
        (st = vocab_load_id(v, g, "tokenizer.ggml.eom_token_id", &v->eom, err)) != MICA_OK ||
        (st = vocab_load_id(v, g, "tokenizer.ggml.unknown_token_id", &v->unk, err)) != MICA_OK ||
        (st = vocab_load_id(v, g, "tokenizer.ggml.padding_token_id", &v->pad, err)) != MICA_OK ||
        (st = vocab_load_id(v, g, "tokenizer.ggml.fim_pad_token_id", &fim_pad, err)) != MICA_OK ||
        (st = vocab_load_id(v, g, "tokenizer.ggml.fim_rep_token_id", &fim_rep, err)) != MICA_OK ||
        (st = vocab_load_id(v, g, "tokenizer.ggml.fim_sep_token_id", &fim_sep, err)) != MICA_OK)
        return st;
    /* Defaults can exceed a tiny vocabulary. */
    int32_t *ids[] = {&v->bos, &v->eos, &v->unk, &v->sep, &v->pad};
    for (size_t i = 0; i < MICA_ARRAY_LEN(ids); i++)
        if (*ids[i] >= v->n_tokens) *ids[i] = -1;

    /* A family default that names a missing token is dropped; an explicit
       add_*_token = true without its token is a format error. */
    static const char *const add_keys[] = {"tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token",
                                           "tokenizer.ggml.add_sep_token"};
    bool *adds[] = {&v->add_bos, &v->add_eos, &v->add_sep};
    const int32_t add_ids[] = {v->bos, v->eos, v->sep};
    for (size_t i = 0; i < MICA_ARRAY_LEN(add_keys); i++) {
        if (add_ids[i] < 0) *adds[i] = false;
        if ((st = gguf_get_bool(g, add_keys[i], adds[i], err)) != MICA_OK) return st;
        if (*adds[i] && add_ids[i] < 0)
            return mica_err_set(err, MICA_ERR_FORMAT, "%s: %s is set but there is no such token", gguf_path(g),
                                add_keys[i]);
    }
    if ((st = gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix, err)) != MICA_OK)
        return st;

    int32_t eog_ids[] = {v->eos, v->eot, v->eom, fim_pad, fim_rep, fim_sep};
    vocab_mark_specials(v, g, eog_ids, MICA_ARRAY_LEN(eog_ids));
    return MICA_OK;
}

typedef struct vocab_special_key {
    uint32_t len;
    int32_t id;
} vocab_special_key;

/* Longer text first, then lower id. */
static int vocab_cmp_special(const void *a, const void *b) {
    const vocab_special_key *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static mica_status vocab_build_special_cache(mica_vocab *v, mica_err *err) {
    size_t n = 0;
    for (int32_t id = 0; id < v->n_tokens; id++) n += (v->flags[id] & VOCAB_FLAG_SPECIAL) != 0;
    if (n == 0) return MICA_OK;
    vocab_special_key *keys = mica_malloc(n * sizeof(*keys));
    v->special_ids = mica_malloc(n * sizeof(int32_t));
    if (!keys || !v->special_ids) {
        mica_free(keys);
        return mica_err_set(err, MICA_ERR_NOMEM, "vocab: out of memory");
    }
    size_t k = 0;
    for (int32_t id = 0; id < v->n_tokens; id++)
        if (v->flags[id] & VOCAB_FLAG_SPECIAL) keys[k++] = (vocab_special_key){v->text_len[id], id};
    qsort(keys, n, sizeof(*keys), vocab_cmp_special);
    for (size_t i = 0; i < n; i++) v->special_ids[i] = keys[i].id;
    v->n_special = n;
    mica_free(keys);
    return MICA_OK;
}

/* True if the lowercased s[0..n) contains any of the NULL-terminated needles. */
static bool vocab_contains_any(const char *s, size_t n, const char *const *needles) {
    char low[256];
    n = MICA_MIN(n, sizeof(low));
    for (size_t i = 0; i < n; i++) low[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
    for (; *needles; needles++)
        if (memmem(low, n, *needles, strlen(*needles))) return true;
    return false;
}

static void vocab_set_flag(mica_vocab *v, const char *text, uint8_t flag, bool on) {
    int32_t id = vocab_find_text(v, text);
    if (id < 0) return;
    v->flags[id] = (uint8_t)(on ? v->flags[id] | flag : v->flags[id] & ~flag);
}

/*
 * lstrip/rstrip attributes, which GGUF does not store: llama.cpp sets them
 * from general.name (lowercased), tokenizer.ggml.pre and
 * general.architecture, and so do we.
 */
static mica_status vocab_mark_strip(mica_vocab *v, const gguf_ctx *g, mica_err *err) {
    gguf_str name = {"", 0}, pre = {"", 0}, arch = {"", 0};
    mica_status st;
    if ((st = gguf_get_str(g, "general.name", &name, err)) != MICA_OK ||
        (st = gguf_get_str(g, "tokenizer.ggml.pre", &pre, err)) != MICA_OK ||
        (st = gguf_get_str(g, "general.architecture", &arch, err)) != MICA_OK)
        return st;
    static const char *const jina_pre[] = {"jina-v2-de", "jina-v2-es", "jina-v2-code", NULL};
    static const char *const jina_arch[] = {"nomic-bert-moe", "jina-bert-v3", NULL};
    static const char *const phi3[] = {"phi-3", "phi3", NULL};
    static const char *const modern_bert[] = {"modern-bert", NULL};
    if (vocab_contains_any(pre.ptr, (size_t)pre.len, jina_pre) ||
        vocab_contains_any(arch.ptr, (size_t)arch.len, jina_arch)) {
        vocab_set_flag(v, "<mask>", VOCAB_FLAG_LSTRIP, true);
    } else if (vocab_contains_any(name.ptr, (size_t)name.len, phi3)) {
        for (size_t i = 0; i < v->n_special; i++) v->flags[v->special_ids[i]] |= VOCAB_FLAG_RSTRIP;
        vocab_set_flag(v, "</s>", VOCAB_FLAG_RSTRIP, true);
        static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
        for (size_t i = 0; i < MICA_ARRAY_LEN(keep); i++) vocab_set_flag(v, keep[i], VOCAB_FLAG_RSTRIP, false);
    } else if (vocab_contains_any(name.ptr, (size_t)name.len, modern_bert)) {
        vocab_set_flag(v, "[MASK]", VOCAB_FLAG_LSTRIP, true);
    }
    return MICA_OK;
}

mica_status vocab_load(const gguf_ctx *g, mica_vocab **out, mica_err *err) {
    const char *path = gguf_path(g);
    mica_status st;
    gguf_str model;
    if ((st = gguf_require_str(g, "tokenizer.ggml.model", &model, err)) != MICA_OK) return st;
    enum vocab_kind kind;
    if (gguf_str_eq(model, "llama")) kind = VOCAB_SPM;
    else if (gguf_str_eq(model, "gpt2")) kind = VOCAB_BPE;
    else if (gguf_str_eq(model, "bert")) kind = VOCAB_WPM;
    else
        return mica_err_set(err, MICA_ERR_UNSUPPORTED, "%s: unsupported tokenizer model '%.*s'", path,
                            (int)MICA_MIN(model.len, 64), model.ptr);

    pretok_info pre = {PRETOK_DEFAULT, false, false};
    if (kind == VOCAB_BPE) {
        gguf_str name = {"default", 7};
        if ((st = gguf_get_str(g, "tokenizer.ggml.pre", &name, err)) != MICA_OK) return st;
        if (!pretok_lookup(name.ptr, (size_t)name.len, &pre))
            return mica_err_set(err, MICA_ERR_UNSUPPORTED, "%s: unknown pre-tokenizer type '%.*s'", path,
                                (int)MICA_MIN(name.len, 64), name.ptr);
    }

    const gguf_kv *kv = gguf_find(g, "tokenizer.ggml.tokens");
    if (!kv) return mica_err_set(err, MICA_ERR_FORMAT, "%s: missing key tokenizer.ggml.tokens", path);
    if (kv->val.type != GGUF_TYPE_ARRAY || kv->val.v.arr.elem != GGUF_TYPE_STRING)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: tokenizer.ggml.tokens: expected an array of STRING",
                            path);
    uint64_t n = kv->val.v.arr.n;
    if (n == 0 || n > VOCAB_MAX_TOKENS)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: tokenizer.ggml.tokens: %llu tokens (1..%d allowed)",
                            path, (unsigned long long)n, VOCAB_MAX_TOKENS);

    mica_vocab *v = mica_calloc(1, sizeof(*v));
    if (!v) return mica_err_set(err, MICA_ERR_NOMEM, "%s: vocab: out of memory", path);
    v->kind = kind;
    v->n_tokens = (int32_t)n;
    v->add_bos = kind == VOCAB_BPE ? pre.add_bos : true;
    v->add_eos = false;
    v->add_sep = kind == VOCAB_WPM;
    v->add_space_prefix = kind == VOCAB_SPM;
    v->ignore_merges = pre.ignore_merges;

    if ((st = vocab_load_texts(v, g, &kv->val, err)) != MICA_OK) goto fail;
    if ((st = vocab_load_scores_types(v, g, err)) != MICA_OK) goto fail;
    if ((st = vocab_load_specials(v, g, err)) != MICA_OK) goto fail;
    if (kind == VOCAB_SPM) {
        if ((st = spm_init(v, path, err)) != MICA_OK) goto fail;
    } else if (kind == VOCAB_WPM) {
        if ((st = wpm_init(v, path, err)) != MICA_OK) goto fail;
    } else {
        if ((st = pretok_create(pre.kind, &v->pre, err)) != MICA_OK) goto fail;
        if ((st = bpe_init(v, g, err)) != MICA_OK) goto fail;
    }
    if ((st = vocab_build_special_cache(v, err)) != MICA_OK) goto fail;
    if ((st = vocab_mark_strip(v, g, err)) != MICA_OK) goto fail;
    *out = v;
    return MICA_OK;
fail:
    vocab_free(v);
    return st;
}

void vocab_free(mica_vocab *v) {
    if (!v) return;
    strmap_deinit(&v->tok_map);
    mica_free(v->text_buf);
    mica_free(v->text_off);
    mica_free(v->text_len);
    mica_free(v->scores);
    mica_free(v->types);
    mica_free(v->flags);
    mica_free(v->special_ids);
    mica_free(v->byte_val);
    pretok_free(v->pre);
    bpe_deinit(v);
    mica_free(v);
}

/* ---- accessors ---- */

enum vocab_kind vocab_kind(const mica_vocab *v) { return v->kind; }
int32_t vocab_n_tokens(const mica_vocab *v) { return v->n_tokens; }
int32_t vocab_bos(const mica_vocab *v) { return v->bos; }
int32_t vocab_eos(const mica_vocab *v) { return v->eos; }
bool vocab_add_bos(const mica_vocab *v) { return v->add_bos; }
bool vocab_add_eos(const mica_vocab *v) { return v->add_eos; }
int32_t vocab_sep(const mica_vocab *v) { return v->sep; }
bool vocab_add_sep(const mica_vocab *v) { return v->add_sep; }

bool vocab_is_eog(const mica_vocab *v, int32_t id) {
    return id >= 0 && id < v->n_tokens && (v->flags[id] & VOCAB_FLAG_EOG);
}

const char *vocab_token_text(const mica_vocab *v, int32_t id, size_t *len) {
    if (id < 0 || id >= v->n_tokens) return NULL;
    return vocab_text_at(v, id, len);
}

float vocab_token_score(const mica_vocab *v, int32_t id) {
    return id >= 0 && id < v->n_tokens ? v->scores[id] : 0.0f;
}

enum vocab_token_type vocab_token_type(const mica_vocab *v, int32_t id) {
    return id >= 0 && id < v->n_tokens ? (enum vocab_token_type)v->types[id] : VOCAB_TT_UNDEFINED;
}

/* ---- special-token partition ---- */

/* A span of the input: raw text (id < 0) or an already-decided token. */
typedef struct vocab_frag {
    int32_t id;
    size_t off, len;
} vocab_frag;

typedef struct vocab_frags {
    vocab_frag *v;
    size_t n, cap;
} vocab_frags;

static bool vocab_frags_push(vocab_frags *f, int32_t id, size_t off, size_t len) {
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16, bytes;
        if (!mica_size_mul_ok(cap, sizeof(vocab_frag), &bytes)) return false;
        vocab_frag *nv = mica_realloc(f->v, bytes);
        if (!nv) return false;
        f->v = nv;
        f->cap = cap;
    }
    f->v[f->n++] = (vocab_frag){id, off, len};
    return true;
}

/* C-locale isspace: what lstrip/rstrip remove. */
static bool vocab_is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/*
 * Cuts special-token texts out of the raw fragments, longest text first
 * (llama.cpp order). `pairs` (65536 bits) marks which 2-byte sequences occur
 * in the text, a cheap filter for vocabularies with thousands of user-defined
 * tokens. On success *a holds the result; *b is scratch.
 */
static mica_status vocab_partition(const mica_vocab *v, const char *text, size_t len, bool parse_special,
                                   vocab_frags *a, vocab_frags *b, uint8_t *pairs) {
    if (!vocab_frags_push(a, -1, 0, len)) return MICA_ERR_NOMEM;
    memset(pairs, 0, 8192);
    for (size_t i = 0; i + 1 < len; i++) {
        unsigned p = (unsigned)(uint8_t)text[i] << 8 | (uint8_t)text[i + 1];
        pairs[p >> 3] |= (uint8_t)(1u << (p & 7));
    }
    for (size_t s = 0; s < v->n_special; s++) {
        int32_t id = v->special_ids[s];
        if (!parse_special && (v->flags[id] & (VOCAB_FLAG_CONTROL | VOCAB_FLAG_UNKNOWN))) continue;
        size_t tl;
        const char *t = vocab_text_at(v, id, &tl);
        if (tl > len) continue;
        if (tl >= 2) {
            unsigned p = (unsigned)(uint8_t)t[0] << 8 | (uint8_t)t[1];
            if (!(pairs[p >> 3] & (1u << (p & 7)))) continue;
        }
        if (!memmem(text, len, t, tl)) continue;
        b->n = 0;
        for (size_t f = 0; f < a->n; f++) {
            vocab_frag fr = a->v[f];
            if (fr.id >= 0) {
                if (!vocab_frags_push(b, fr.id, fr.off, fr.len)) return MICA_ERR_NOMEM;
                continue;
            }
            size_t p = fr.off, end = fr.off + fr.len;
            const char *m;
            while (p < end && (m = memmem(text + p, end - p, t, tl)) != NULL) {
                size_t mo = (size_t)(m - text), left_end = mo;
                if (v->flags[id] & VOCAB_FLAG_LSTRIP)
                    while (left_end > p && vocab_is_space(text[left_end - 1])) left_end--;
                if (left_end > p && !vocab_frags_push(b, -1, p, left_end - p)) return MICA_ERR_NOMEM;
                if (!vocab_frags_push(b, id, mo, tl)) return MICA_ERR_NOMEM;
                p = mo + tl;
                if (v->flags[id] & VOCAB_FLAG_RSTRIP)
                    while (p < end && vocab_is_space(text[p])) p++;
            }
            if (p < end && !vocab_frags_push(b, -1, p, end - p)) return MICA_ERR_NOMEM;
        }
        vocab_frags tmp = *a;
        *a = *b;
        *b = tmp;
    }
    return MICA_OK;
}

/* ---- tokenize ---- */

mica_status vocab_tokenize(const mica_vocab *v, const char *text, size_t len, bool add_special,
                           bool parse_special, int32_t **ids, size_t *n, mica_err *err) {
    if (len > VOCAB_MAX_TEXT)
        return mica_err_set(err, MICA_ERR_LIMIT, "tokenize: text of %zu bytes exceeds the %u-byte limit",
                            len, VOCAB_MAX_TEXT);
    if (len > 0 && !text) return mica_err_set(err, MICA_ERR_INVALID_ARG, "tokenize: text is NULL");
    mica_status st = MICA_OK;
    vocab_ids out = {0};
    vocab_frags a = {0}, b = {0};
    uint8_t *pairs = NULL;

    if (add_special && v->add_bos && (st = vocab_ids_push(&out, v->bos)) != MICA_OK) goto nomem;
    if (len > 0) {
        pairs = mica_malloc(8192);
        if (!pairs) goto nomem;
        if ((st = vocab_partition(v, text, len, parse_special, &a, &b, pairs)) != MICA_OK) goto nomem;
    }
    bool prev_special = true; /* SPM: a dummy prefix goes at the start and after each special token */
    for (size_t f = 0; f < a.n; f++) {
        const vocab_frag *fr = &a.v[f];
        if (fr->id >= 0) {
            if ((st = vocab_ids_push(&out, fr->id)) != MICA_OK) goto nomem;
            prev_special = true;
            continue;
        }
        if (v->kind == VOCAB_SPM)
            st = spm_tokenize(v, text + fr->off, fr->len, v->add_space_prefix && prev_special, &out, err);
        else if (v->kind == VOCAB_WPM)
            st = wpm_tokenize(v, text + fr->off, fr->len, &out, err);
        else
            st = bpe_tokenize(v, text + fr->off, fr->len, &out, err);
        if (st != MICA_OK) goto done;
        prev_special = false;
    }
    if (add_special && v->add_eos && (st = vocab_ids_push(&out, v->eos)) != MICA_OK) goto nomem;
    if (add_special && v->add_sep && (st = vocab_ids_push(&out, v->sep)) != MICA_OK) goto nomem;

    if (out.n == 0) {
        /* Callers always get a freeable array. */
        out.v = mica_malloc(sizeof(int32_t));
        if (!out.v) goto nomem;
    }
    *ids = out.v;
    *n = out.n;
    out.v = NULL;
    st = MICA_OK;
    goto done;
nomem:
    st = mica_err_set(err, MICA_ERR_NOMEM, "tokenize: out of memory");
done:
    mica_free(out.v);
    mica_free(a.v);
    mica_free(b.v);
    mica_free(pairs);
    return st;
}

/* ---- decode ---- */

/* Writes bytes to buf (up to cap), returns the full length. */
static size_t vocab_copy_out(const char *s, size_t n, char *buf, size_t cap) {
    if (cap) memcpy(buf, s, MICA_MIN(n, cap));
    return n;
}

size_t vocab_token_to_piece(const mica_vocab *v, int32_t prev, int32_t id, char *buf, size_t cap) {
    if (id < 0 || id >= v->n_tokens) return 0;
    size_t tl;
    const char *t = vocab_text_at(v, id, &tl);
    if (v->flags[id] & VOCAB_FLAG_SPECIAL) return vocab_copy_out(t, tl, buf, cap);

    if (v->kind == VOCAB_BPE) return bpe_decode_text(v, t, tl, buf, cap);

    /* SPM and WPM */
    if (v->kind == VOCAB_SPM && v->types[id] == VOCAB_TT_BYTE && v->byte_val[id] >= 0) {
        char c = (char)v->byte_val[id];
        return vocab_copy_out(&c, 1, buf, cap);
    }
    bool strip = (v->add_space_prefix || v->kind == VOCAB_WPM) && prev >= 0 && prev == v->bos;
    size_t o = 0;
    for (size_t i = 0; i < tl;) {
        char c;
        size_t step;
        if (i + 3 <= tl && memcmp(t + i, "\xE2\x96\x81", 3) == 0) {
            c = ' ';
            step = 3;
        } else {
            c = t[i];
            step = 1;
        }
        i += step;
        if (o == 0 && strip && c == ' ') {
            strip = false;
            continue;
        }
        strip = false;
        if (o < cap) buf[o] = c;
        o++;
    }
    return o;
}
