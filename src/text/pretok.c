/*
 * pretok.c - pre-tokenizer regex sets and the sequential split (contract in
 * pretok.h). Regex text: FORMATS.md 3.4 (non-ASCII ranges written as PCRE
 * \x{HHHH}); the falcon and deepseek-coder sets follow llama.cpp's
 * llama-vocab.cpp lists. GPT-2-style patterns carry the original trailing
 * `|\s+` alternative, which llama.cpp's hand-written splitter also implements.
 */
#include "text/pretok.h"

#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* ---- regex sets ---- */

#define RE_CONTRACTIONS_CI "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

static const char *const k_re_default[] = {
    "[\\p{P}\\$\\+<=>\\^~\\|]+",
    RE_GPT2,
    "\\p{N}+",
    "[0-9][0-9][0-9]",
};

static const char *const k_re_llama3[] = {
    RE_CONTRACTIONS_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};

static const char *const k_re_qwen2[] = {
    RE_CONTRACTIONS_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};

static const char *const k_re_qwen35[] = {
    RE_CONTRACTIONS_CI "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};

static const char *const k_re_deepseek_llm[] = {
    "[\\r\\n]",
    ("\\s?[A-Za-z\\x{00B5}\\x{00C0}-\\x{00D6}\\x{00D8}-\\x{00F6}\\x{00F8}-\\x{01BA}\\x{01BC}-\\x{01BF}"
     "\\x{01C4}-\\x{0293}\\x{0295}-\\x{02AF}\\x{0370}-\\x{0373}\\x{0376}\\x{0377}\\x{037B}-\\x{037D}"
     "\\x{037F}\\x{0386}\\x{0388}-\\x{038A}\\x{038C}\\x{038E}-\\x{03A1}\\x{03A3}-\\x{03F5}"
     "\\x{03F7}-\\x{0481}\\x{048A}-\\x{052F}\\x{0531}-\\x{0556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}"
     "\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}"
     "\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}"
     "\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}"
     "\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}"
     "\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}"
     "\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}"
     "\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}"
     "\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}"
     "\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}"
     "\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}"
     "\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}"
     "\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}]+"),
    "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+",
    "\\s+$",
    "[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+",
    "\\p{N}+",
};

static const char *const k_re_deepseek_coder[] = {
    "[\\r\\n]",
    "\\s?\\p{L}+",
    "\\s?\\p{P}+",
    "[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+",
    "\\p{N}",
};

static const char *const k_re_deepseek3[] = {
    "\\p{N}{1,3}",
    "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
    ("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
     "| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"),
};

static const char *const k_re_gpt2[] = {
    RE_GPT2,
};

/* o200k: the upstream tokenizer.json form (PCRE2 has case classes and (?i:...)). */
static const char *const k_re_gpt4o[] = {
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};

static const char *const k_re_starcoder[] = {
    "\\p{N}",
    RE_GPT2,
};

static const char *const k_re_falcon[] = {
    "[\\p{P}\\$\\+<=>\\^~\\|`]+",
    RE_GPT2,
    "[0-9][0-9][0-9]",
};

typedef struct pretok_set {
    const char *const *re;
    size_t n;
} pretok_set;

#define PRETOK_SET(a) { a, MICA_ARRAY_LEN(a) }

static const pretok_set k_sets[PRETOK_COUNT] = {
    [PRETOK_DEFAULT] = PRETOK_SET(k_re_default),
    [PRETOK_LLAMA3] = PRETOK_SET(k_re_llama3),
    [PRETOK_QWEN2] = PRETOK_SET(k_re_qwen2),
    [PRETOK_QWEN35] = PRETOK_SET(k_re_qwen35),
    [PRETOK_DEEPSEEK_LLM] = PRETOK_SET(k_re_deepseek_llm),
    [PRETOK_DEEPSEEK_CODER] = PRETOK_SET(k_re_deepseek_coder),
    [PRETOK_DEEPSEEK3] = PRETOK_SET(k_re_deepseek3),
    [PRETOK_GPT2] = PRETOK_SET(k_re_gpt2),
    [PRETOK_GPT4O] = PRETOK_SET(k_re_gpt4o),
    [PRETOK_STARCODER] = PRETOK_SET(k_re_starcoder),
    [PRETOK_FALCON] = PRETOK_SET(k_re_falcon),
};

/* ---- tokenizer.ggml.pre names (FORMATS.md 3.3) ---- */

typedef struct pretok_name {
    const char *name;
    enum pretok_kind kind;
    bool ignore_merges;
    bool add_bos;
} pretok_name;

static const pretok_name k_names[] = {
    {"default", PRETOK_DEFAULT, false, false},
    /* llama3 group: ignore_merges and add_bos */
    {"llama3", PRETOK_LLAMA3, true, true},
    {"llama-v3", PRETOK_LLAMA3, true, true},
    {"llama-bpe", PRETOK_LLAMA3, true, true},
    {"falcon3", PRETOK_LLAMA3, true, true},
    {"falcon-h1", PRETOK_LLAMA3, true, true},
    {"pixtral", PRETOK_LLAMA3, true, true},
    {"midm-2.0", PRETOK_LLAMA3, true, true},
    {"lfm2", PRETOK_LLAMA3, true, true},
    {"jina-v5-nano", PRETOK_LLAMA3, true, true},
    {"dbrx", PRETOK_LLAMA3, false, false},
    {"smaug-bpe", PRETOK_LLAMA3, false, false},
    {"glm4", PRETOK_LLAMA3, false, false},
    {"chatglm-bpe", PRETOK_LLAMA3, false, false},
    /* qwen2 group */
    {"qwen2", PRETOK_QWEN2, false, false},
    {"deepseek-r1-qwen", PRETOK_QWEN2, false, false},
    {"kormo", PRETOK_QWEN2, false, false},
    {"f2llmv2", PRETOK_QWEN2, false, false},
    {"megrez", PRETOK_QWEN2, false, false},
    {"stablelm2", PRETOK_QWEN2, false, false},
    {"hunyuan", PRETOK_QWEN2, false, false},
    {"solar-open", PRETOK_QWEN2, false, false},
    {"qwen35", PRETOK_QWEN35, false, false},
    /* deepseek */
    {"deepseek-llm", PRETOK_DEEPSEEK_LLM, false, false},
    {"deepseek-coder", PRETOK_DEEPSEEK_CODER, false, false},
    {"deepseek-v3", PRETOK_DEEPSEEK3, false, false},
    {"hunyuan-dense", PRETOK_DEEPSEEK3, false, false},
    {"joyai-llm", PRETOK_DEEPSEEK3, false, false},
    {"hy_v4", PRETOK_DEEPSEEK3, false, false},
    /* gpt-2 group */
    {"gpt-2", PRETOK_GPT2, false, false},
    {"phi-2", PRETOK_GPT2, false, false},
    {"jina-es", PRETOK_GPT2, false, false},
    {"jina-de", PRETOK_GPT2, false, false},
    {"gigachat", PRETOK_GPT2, false, false},
    {"jina-v2-es", PRETOK_GPT2, false, false},
    {"jina-v2-de", PRETOK_GPT2, false, false},
    {"a.x-4.0", PRETOK_GPT2, false, false},
    {"mellum", PRETOK_GPT2, false, false},
    {"modern-bert", PRETOK_GPT2, false, false},
    {"exaone4", PRETOK_GPT2, false, false},
    {"mpt", PRETOK_GPT2, false, false},
    {"olmo", PRETOK_GPT2, false, false},
    {"jais", PRETOK_GPT2, false, false},
    {"trillion", PRETOK_GPT2, false, false},
    {"granite-docling", PRETOK_GPT2, false, false},
    {"jina-v1-en", PRETOK_GPT2, false, false},
    {"jina-v2-code", PRETOK_GPT2, false, false},
    {"roberta-bpe", PRETOK_GPT2, false, false},
    /* o200k group */
    {"gpt-4o", PRETOK_GPT4O, false, false},
    {"llama4", PRETOK_GPT4O, false, false},
    {"kanana2", PRETOK_GPT4O, false, false},
    {"talkie", PRETOK_GPT4O, false, false},
    {"minimax-m2", PRETOK_GPT4O, false, false},
    /* \p{N} then GPT-2 */
    {"starcoder", PRETOK_STARCODER, false, false},
    {"refact", PRETOK_STARCODER, false, false},
    {"command-r", PRETOK_STARCODER, false, false},
    {"smollm", PRETOK_STARCODER, false, false},
    {"codeshell", PRETOK_STARCODER, false, false},
    {"exaone", PRETOK_STARCODER, false, false},
    {"minerva-7b", PRETOK_STARCODER, false, false},
    {"mellum2", PRETOK_STARCODER, false, false},
    {"falcon", PRETOK_FALCON, false, false},
};

bool pretok_lookup(const char *name, size_t len, pretok_info *out) {
    for (size_t i = 0; i < MICA_ARRAY_LEN(k_names); i++) {
        const pretok_name *e = &k_names[i];
        if (strlen(e->name) == len && memcmp(e->name, name, len) == 0) {
            out->kind = e->kind;
            out->ignore_merges = e->ignore_merges;
            out->add_bos = e->add_bos;
            return true;
        }
    }
    return false;
}

/* ---- compiled sets ---- */

struct pretok {
    enum pretok_kind kind;
    size_t n_re;
    pcre2_code *re[8];
    pcre2_general_context *gctx;
};

static void *pretok_pcre_malloc(size_t n, void *user) {
    (void)user;
    return mica_malloc(n);
}

static void pretok_pcre_free(void *p, void *user) {
    (void)user;
    mica_free(p);
}

mica_status pretok_create(enum pretok_kind kind, pretok **out, mica_err *err) {
    if ((unsigned)kind >= PRETOK_COUNT)
        return mica_err_set(err, MICA_ERR_INVALID_ARG, "pretok: unknown regex set %d", (int)kind);
    const pretok_set *set = &k_sets[kind];
    MICA_ASSERT(set->n <= MICA_ARRAY_LEN(((pretok *)0)->re));
    pretok *p = mica_calloc(1, sizeof(*p));
    if (!p) return mica_err_set(err, MICA_ERR_NOMEM, "pretok: out of memory");
    p->kind = kind;
    p->gctx = pcre2_general_context_create(pretok_pcre_malloc, pretok_pcre_free, NULL);
    if (!p->gctx) {
        pretok_free(p);
        return mica_err_set(err, MICA_ERR_NOMEM, "pretok: out of memory");
    }
    pcre2_compile_context *cctx = pcre2_compile_context_create(p->gctx);
    if (!cctx) {
        pretok_free(p);
        return mica_err_set(err, MICA_ERR_NOMEM, "pretok: out of memory");
    }
    for (size_t i = 0; i < set->n; i++) {
        int ecode = 0;
        PCRE2_SIZE eoff = 0;
        p->re[i] = pcre2_compile((PCRE2_SPTR)set->re[i], PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY | PCRE2_NO_UTF_CHECK,
                                 &ecode, &eoff, cctx);
        if (!p->re[i]) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ecode, msg, sizeof(msg));
            pcre2_compile_context_free(cctx);
            pretok_free(p);
            return mica_err_set(err, MICA_ERR_INTERNAL, "pretok: regex %zu of set %d at offset %zu: %s",
                                i, (int)kind, (size_t)eoff, (const char *)msg);
        }
        p->n_re = i + 1;
        /* JIT is an optimisation only: without it pcre2_match interprets. */
        (void)pcre2_jit_compile(p->re[i], PCRE2_JIT_COMPLETE);
    }
    pcre2_compile_context_free(cctx);
    *out = p;
    return MICA_OK;
}

void pretok_free(pretok *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n_re; i++) pcre2_code_free(p->re[i]);
    pcre2_general_context_free(p->gctx);
    mica_free(p);
}

/* ---- splitting ---- */

typedef struct pretok_ends {
    size_t *v;
    size_t n, cap;
} pretok_ends;

static bool pretok_ends_push(pretok_ends *e, size_t x) {
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 64;
        size_t bytes;
        if (!mica_size_mul_ok(cap, sizeof(size_t), &bytes)) return false;
        size_t *v = mica_realloc(e->v, bytes);
        if (!v) return false;
        e->v = v;
        e->cap = cap;
    }
    e->v[e->n++] = x;
    return true;
}

/* One match of re in subject[0..n) at or after `from`; 1 found, 0 none, <0 PCRE2 error. */
static int pretok_match(const pcre2_code *re, const char *subject, size_t n, size_t from,
                        pcre2_match_data *md, size_t *ms, size_t *me) {
    int rc = pcre2_match(re, (PCRE2_SPTR)subject, n, from, PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(re, (PCRE2_SPTR)subject, n, from, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) return rc;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *ms = ov[0];
    *me = ov[1];
    return 1;
}

/* Re-splits every fragment of `in` with re, appending the new ends to out. */
static mica_status pretok_apply(const pcre2_code *re, const char *text, const pretok_ends *in,
                                pretok_ends *out, pcre2_match_data *md, mica_err *err) {
    size_t start = 0;
    for (size_t f = 0; f < in->n; f++) {
        size_t end = in->v[f];
        const char *sub = text + start;
        size_t n = end - start, pos = 0, search = 0;
        while (search < n) {
            size_t ms, me;
            int rc = pretok_match(re, sub, n, search, md, &ms, &me);
            if (rc < 0) {
                PCRE2_UCHAR msg[120];
                pcre2_get_error_message(rc, msg, sizeof(msg));
                return mica_err_set(err, rc == PCRE2_ERROR_NOMEMORY ? MICA_ERR_NOMEM : MICA_ERR_LIMIT,
                                    "pretok: regex match failed at byte %zu: %s", start + search,
                                    (const char *)msg);
            }
            if (rc == 0) break;
            if (me == ms) {
                /* Empty match: never a fragment; move on by one character. */
                search = ms + 1;
                while (search < n && ((uint8_t)sub[search] & 0xC0) == 0x80) search++;
                continue;
            }
            if (ms > pos && !pretok_ends_push(out, start + ms)) goto nomem;
            if (!pretok_ends_push(out, start + me)) goto nomem;
            pos = search = me;
        }
        if (pos < n && !pretok_ends_push(out, end)) goto nomem;
        start = end;
    }
    return MICA_OK;
nomem:
    return mica_err_set(err, MICA_ERR_NOMEM, "pretok: out of memory");
}

mica_status pretok_split(const pretok *p, const char *text, size_t len, size_t **ends, size_t *n,
                         mica_err *err) {
    *ends = NULL;
    *n = 0;
    if (len == 0) return MICA_OK;
    mica_status st = MICA_OK;
    pretok_ends a = {0}, b = {0};
    pcre2_match_data *md = pcre2_match_data_create(4, p->gctx);
    if (!md || !pretok_ends_push(&a, len)) {
        st = mica_err_set(err, MICA_ERR_NOMEM, "pretok: out of memory");
        goto done;
    }
    for (size_t i = 0; i < p->n_re; i++) {
        b.n = 0;
        st = pretok_apply(p->re[i], text, &a, &b, md, err);
        if (st != MICA_OK) goto done;
        pretok_ends t = a;
        a = b;
        b = t;
    }
    *ends = a.v;
    *n = a.n;
    a.v = NULL;
done:
    pcre2_match_data_free(md);
    mica_free(a.v);
    mica_free(b.v);
    return st;
}
