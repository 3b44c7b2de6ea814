/*
 * test_tokenizer.c - the tokenizer module: UTF-8 helpers, the string map, the
 * llama.cpp vocabulary test pairs (testdata/vocab, .inp/.out: ids made by the
 * Hugging Face tokenizers), the llama2.c stories260K vocabulary (ids and text
 * from testdata/tinystories/README.md and run.c's reference output), special
 * tokens, end-of-generation, load errors on crafted metadata, random-byte
 * robustness, WordPiece (bert) beyond its pair (llama.cpp outputs, Unicode
 * NFD, crafted cased/uncased vocabularies), lstrip/rstrip special tokens,
 * a 2 MB mixed-script round trip for every lossless vocabulary, and the
 * public streaming detokenizer (mica_detok_*).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mica.h"
#include "base/strmap.h"
#include "gguf/gguf.h"
#include "text/pretok.h"
#include "text/tokenizer.h"
#include "text/utf8.h"
#include "../test.h"

/* ---- helpers ---- */

static char *tt_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

/* Opens testdata/vocab/<name>.gguf and loads its vocab; the gguf is closed
   right away (the vocab must not borrow from it). NULL on skip/failure. */
static mica_vocab *tt_load_vocab(const char *name) {
    char rel[256], path[1024];
    snprintf(rel, sizeof(rel), "vocab/%s.gguf", name);
    test_data_path(path, sizeof(path), rel);
    if (!test_require_file(path)) return NULL;
    gguf_ctx *g = NULL;
    mica_err err = {0};
    if (gguf_open(path, &g, &err) != MICA_OK) {
        test_fail(__FILE__, __LINE__, "gguf_open %s: %s", path, err.msg);
        return NULL;
    }
    mica_vocab *v = NULL;
    mica_status st = vocab_load(g, &v, &err);
    gguf_close(g);
    if (st != MICA_OK) {
        test_fail(__FILE__, __LINE__, "vocab_load %s: %s", path, err.msg);
        return NULL;
    }
    return v;
}

/* Decodes ids (prev-aware) into a malloc'd string. */
static char *tt_detok(const mica_vocab *v, const int32_t *ids, size_t n, int32_t prev, size_t *out_len) {
    size_t cap = 64, len = 0;
    char *s = malloc(cap);
    for (size_t i = 0; i < n; i++) {
        char piece[256];
        size_t k = vocab_token_to_piece(v, prev, ids[i], piece, sizeof(piece));
        if (k > sizeof(piece)) k = sizeof(piece); /* tokens here are short */
        while (len + k + 1 > cap) {
            cap *= 2;
            s = realloc(s, cap);
        }
        memcpy(s + len, piece, k);
        len += k;
        prev = ids[i];
    }
    s[len] = '\0';
    *out_len = len;
    return s;
}

#define TT_SEP "\n__ggml_vocab_test__\n"

/*
 * Runs the .inp/.out pair of vocab `name`: every case must tokenize
 * (add_special=false, parse_special=false) to exactly the expected ids.
 * With `roundtrip`, decoding the ids must also give the text back (SPM: after
 * a BOS, so the dummy prefix space is dropped).
 */
static void tt_run_pair(const char *name, bool roundtrip) {
    char rel[256], inp_path[1024], out_path[1024];
    snprintf(rel, sizeof(rel), "vocab/%s.gguf.inp", name);
    test_data_path(inp_path, sizeof(inp_path), rel);
    snprintf(rel, sizeof(rel), "vocab/%s.gguf.out", name);
    test_data_path(out_path, sizeof(out_path), rel);
    if (!test_require_file(inp_path) || !test_require_file(out_path)) return;
    mica_vocab *v = tt_load_vocab(name);
    if (!v) return;
    size_t inp_len, out_len;
    char *inp = tt_read_file(inp_path, &inp_len);
    char *out = tt_read_file(out_path, &out_len);
    ASSERT_TRUE(inp && out);

    size_t n_cases = 0, n_bad = 0;
    char *p = inp, *line = out;
    for (;;) {
        char *sep = strstr(p, TT_SEP);
        if (!sep) break;
        size_t clen = (size_t)(sep - p);
        char *eol = strchr(line, '\n');
        ASSERT_TRUE(eol != NULL);
        *eol = '\0';

        int32_t want[512];
        size_t n_want = 0;
        for (char *q = line; *q;) {
            char *end;
            long x = strtol(q, &end, 10);
            if (end == q) break;
            ASSERT_TRUE(n_want < MICA_ARRAY_LEN(want));
            want[n_want++] = (int32_t)x;
            q = end;
        }

        int32_t *ids = NULL;
        size_t n = 0;
        mica_err err = {0};
        ASSERT_OK(vocab_tokenize(v, p, clen, false, false, &ids, &n, &err));
        bool same = n == n_want && (n == 0 || memcmp(ids, want, n * sizeof(int32_t)) == 0);
        if (!same) {
            n_bad++;
            char got_s[2048] = "", want_s[2048] = "";
            for (size_t i = 0; i < n && strlen(got_s) < 2000; i++)
                snprintf(got_s + strlen(got_s), sizeof(got_s) - strlen(got_s), " %d", ids[i]);
            for (size_t i = 0; i < n_want && strlen(want_s) < 2000; i++)
                snprintf(want_s + strlen(want_s), sizeof(want_s) - strlen(want_s), " %d", want[i]);
            test_fail(__FILE__, __LINE__, "%s case %zu (%.*s): got%s want%s", name, n_cases,
                      (int)MICA_MIN(clen, 60), p, got_s, want_s);
        }
        if (same && roundtrip) {
            int32_t bos = vocab_bos(v);
            size_t dl;
            char *d = tt_detok(v, ids, n, vocab_kind(v) == VOCAB_SPM ? bos : -1, &dl);
            if (dl != clen || memcmp(d, p, clen) != 0) {
                n_bad++;
                test_fail(__FILE__, __LINE__, "%s case %zu: decode gives \"%s\"", name, n_cases, d);
            }
            free(d);
        }
        mica_free(ids);
        n_cases++;
        p = sep + strlen(TT_SEP);
        line = eol + 1;
    }
    ASSERT_EQ(n_cases, 46);
    ASSERT_EQ(*line, '\0'); /* as many result lines as cases */
    ASSERT_EQ(n_bad, 0);
    free(inp);
    free(out);
    vocab_free(v);
}

/* ---- UTF-8 and the string map ---- */

TEST(tok_utf8) {
    uint32_t cp;
    ASSERT_EQ(utf8_decode("\xE2\x96\x81", 3, &cp), 3);
    ASSERT_EQ(cp, 0x2581);
    ASSERT_EQ(utf8_decode("\xF0\x9F\x98\x80", 4, &cp), 4);
    ASSERT_EQ(cp, 0x1F600);
    ASSERT_EQ(utf8_decode("\xC0\xAF", 2, &cp), 0);         /* overlong */
    ASSERT_EQ(utf8_decode("\xED\xA0\x80", 3, &cp), 0);     /* surrogate */
    ASSERT_EQ(utf8_decode("\xF4\x90\x80\x80", 4, &cp), 0); /* > U+10FFFF */
    ASSERT_EQ(utf8_decode("\xE2\x96", 2, &cp), 0);         /* truncated */
    ASSERT_TRUE(utf8_valid("h\xC3\xA9llo", 6));
    ASSERT_TRUE(!utf8_valid("\x80", 1));
    char e[4];
    ASSERT_EQ(utf8_encode(0x143, e), 2);
    ASSERT_EQ((uint8_t)e[0], 0xC5);
    ASSERT_EQ((uint8_t)e[1], 0x83);
    ASSERT_EQ(utf8_encode(0xD800, e), 0);
    ASSERT_EQ(utf8_incomplete_tail("ab\xE2\x96", 4), 2);
    ASSERT_EQ(utf8_incomplete_tail("ab\xE2\x96\x81", 5), 0);
    ASSERT_EQ(utf8_incomplete_tail("ab\x80", 3), 0);
    ASSERT_EQ(utf8_incomplete_tail("\xF0\x9F\x98", 3), 3);

    /* Streaming: an emoji split over three pushes comes out whole. */
    utf8_stream st;
    utf8_stream_init(&st);
    char out[16];
    ASSERT_EQ(utf8_stream_push(&st, "a\xF0\x9F", 3, out), 1);
    ASSERT_EQ(out[0], 'a');
    ASSERT_EQ(utf8_stream_push(&st, "\x98", 1, out), 0);
    ASSERT_EQ(utf8_stream_push(&st, "\x80!", 2, out), 5);
    ASSERT_TRUE(memcmp(out, "\xF0\x9F\x98\x80!", 5) == 0);
    ASSERT_EQ(utf8_stream_push(&st, "\xC3", 1, out), 0);
    ASSERT_EQ(utf8_stream_flush(&st, out), 1);
    ASSERT_EQ((uint8_t)out[0], 0xC3);
}

TEST(tok_strmap) {
    strmap m;
    ASSERT_OK(strmap_init(&m, 2));
    static const char *keys[] = {"a", "b", "ab", "", "hello", "\xE2\x96\x81"};
    char many[200][16];
    for (int i = 0; i < 6; i++) ASSERT_OK(strmap_put(&m, keys[i], strlen(keys[i]), i, NULL));
    for (int i = 0; i < 200; i++) {
        snprintf(many[i], sizeof(many[i]), "k%d", i);
        ASSERT_OK(strmap_put(&m, many[i], strlen(many[i]), 100 + i, NULL));
    }
    for (int i = 0; i < 6; i++) ASSERT_EQ(strmap_get(&m, keys[i], strlen(keys[i])), i);
    for (int i = 0; i < 200; i++) ASSERT_EQ(strmap_get(&m, many[i], strlen(many[i])), 100 + i);
    ASSERT_EQ(strmap_get(&m, "abc", 3), -1);
    int32_t prev;
    ASSERT_OK(strmap_put(&m, "ab", 2, 77, &prev));
    ASSERT_EQ(prev, 2);
    ASSERT_EQ(strmap_get(&m, "ab", 2), 2);
    strmap_deinit(&m);
}

/* ---- llama.cpp vocabulary test pairs ---- */

TEST(tok_vocab_llama_spm) { tt_run_pair("ggml-vocab-llama-spm", true); }
TEST(tok_vocab_phi_3) { tt_run_pair("ggml-vocab-phi-3", false); }
TEST(tok_vocab_qwen2) { tt_run_pair("ggml-vocab-qwen2", true); }
TEST(tok_vocab_llama_bpe) { tt_run_pair("ggml-vocab-llama-bpe", true); }
TEST(tok_vocab_gpt_2) { tt_run_pair("ggml-vocab-gpt-2", false); }
TEST(tok_vocab_deepseek_llm) { tt_run_pair("ggml-vocab-deepseek-llm", false); }
TEST(tok_vocab_deepseek_coder) { tt_run_pair("ggml-vocab-deepseek-coder", false); }
TEST(tok_vocab_falcon) { tt_run_pair("ggml-vocab-falcon", false); }
TEST(tok_vocab_mpt) { tt_run_pair("ggml-vocab-mpt", false); }
TEST(tok_vocab_starcoder) { tt_run_pair("ggml-vocab-starcoder", false); }
TEST(tok_vocab_refact) { tt_run_pair("ggml-vocab-refact", false); }
TEST(tok_vocab_bert_bge) { tt_run_pair("ggml-vocab-bert-bge", false); }

/* Loading the 151936-token qwen2 vocabulary (and its merges) is fast. */
TEST(tok_load_time_qwen2) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    mica_vocab *v = tt_load_vocab("ggml-vocab-qwen2");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (!v) return;
    double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    ASSERT_EQ(vocab_n_tokens(v), 151936);
    ASSERT_EQ(vocab_kind(v), VOCAB_BPE);
    vocab_free(v);
    if (s >= 1.0) test_fail(__FILE__, __LINE__, "qwen2 vocab load took %.3f s", s);
}

/* ---- special tokens and end of generation ---- */

static int32_t tt_id_of(const mica_vocab *v, const char *text) {
    for (int32_t id = 0; id < vocab_n_tokens(v); id++) {
        size_t n;
        const char *t = vocab_token_text(v, id, &n);
        if (n == strlen(text) && memcmp(t, text, n) == 0) return id;
    }
    return -1;
}

TEST(tok_special_qwen2) {
    mica_vocab *v = tt_load_vocab("ggml-vocab-qwen2");
    if (!v) return;
    int32_t im_start = tt_id_of(v, "<|im_start|>"), im_end = tt_id_of(v, "<|im_end|>");
    ASSERT_TRUE(im_start >= 0 && im_end >= 0);
    ASSERT_EQ(vocab_token_type(v, im_start), VOCAB_TT_CONTROL);
    const char *text = "<|im_start|>user\nhi<|im_end|>";
    int32_t *ids;
    size_t n;
    ASSERT_OK(vocab_tokenize(v, text, strlen(text), false, true, &ids, &n, NULL));
    ASSERT_TRUE(n >= 3);
    ASSERT_EQ(ids[0], im_start);
    ASSERT_EQ(ids[n - 1], im_end);
    for (size_t i = 1; i + 1 < n; i++) ASSERT_TRUE(ids[i] != im_start && ids[i] != im_end);
    /* Decoding gives the text back, control tokens included. */
    size_t dl;
    char *d = tt_detok(v, ids, n, -1, &dl);
    ASSERT_EQ(dl, strlen(text));
    ASSERT_TRUE(memcmp(d, text, dl) == 0);
    free(d);
    mica_free(ids);

    /* Without parse_special the same text is plain text. */
    ASSERT_OK(vocab_tokenize(v, text, strlen(text), false, false, &ids, &n, NULL));
    for (size_t i = 0; i < n; i++) ASSERT_TRUE(ids[i] != im_start && ids[i] != im_end);
    d = tt_detok(v, ids, n, -1, &dl);
    ASSERT_EQ(dl, strlen(text));
    ASSERT_TRUE(memcmp(d, text, dl) == 0);
    free(d);
    mica_free(ids);

    /* qwen2: no BOS added (gpt2 default), EOG = eos 151643, <|im_end|>, <|endoftext|>. */
    ASSERT_TRUE(!vocab_add_bos(v));
    ASSERT_OK(vocab_tokenize(v, "", 0, true, true, &ids, &n, NULL));
    ASSERT_EQ(n, 0);
    mica_free(ids);
    ASSERT_EQ(vocab_eos(v), 151643);
    ASSERT_TRUE(vocab_is_eog(v, 151643));
    ASSERT_TRUE(vocab_is_eog(v, im_end));
    ASSERT_TRUE(!vocab_is_eog(v, im_start));
    ASSERT_TRUE(!vocab_is_eog(v, 0));
    ASSERT_TRUE(!vocab_is_eog(v, -1));
    ASSERT_TRUE(!vocab_is_eog(v, vocab_n_tokens(v)));
    vocab_free(v);
}

TEST(tok_special_llama_spm) {
    mica_vocab *v = tt_load_vocab("ggml-vocab-llama-spm");
    if (!v) return;
    ASSERT_EQ(vocab_bos(v), 1);
    ASSERT_EQ(vocab_eos(v), 2);
    ASSERT_TRUE(vocab_add_bos(v));
    ASSERT_TRUE(!vocab_add_eos(v));
    ASSERT_TRUE(vocab_is_eog(v, 2));
    ASSERT_TRUE(!vocab_is_eog(v, 1));
    int32_t *ids;
    size_t n;
    /* Empty text with add_special gives just BOS (SentencePiece behaviour). */
    ASSERT_OK(vocab_tokenize(v, "", 0, true, false, &ids, &n, NULL));
    ASSERT_EQ(n, 1);
    ASSERT_EQ(ids[0], 1);
    mica_free(ids);
    /* "</s>" with parse_special is EOS; the text after it gets a dummy prefix again. */
    const char *t = "Hi</s>Hi";
    ASSERT_OK(vocab_tokenize(v, t, strlen(t), true, true, &ids, &n, NULL));
    ASSERT_TRUE(n >= 4);
    ASSERT_EQ(ids[0], 1);
    size_t k = 1;
    while (k < n && ids[k] != 2) k++;
    ASSERT_TRUE(k < n);
    ASSERT_EQ(n - (k + 1), k - 1); /* "Hi" tokenizes the same on both sides */
    for (size_t i = 1; i < k; i++) ASSERT_EQ(ids[i], ids[k + i]);
    mica_free(ids);
    ASSERT_OK(vocab_tokenize(v, t, strlen(t), false, false, &ids, &n, NULL));
    for (size_t i = 0; i < n; i++) ASSERT_TRUE(ids[i] != 2);
    mica_free(ids);
    /* Decoding: U+2581 is a space, byte tokens are bytes, the space after BOS goes. */
    char buf[16];
    size_t tl;
    ASSERT_EQ(vocab_token_to_piece(v, -1, 13, buf, sizeof(buf)), 1); /* <0x0A> */
    ASSERT_EQ(buf[0], '\n');
    int32_t hello = tt_id_of(v, "\xE2\x96\x81Hello");
    ASSERT_TRUE(hello >= 0);
    ASSERT_EQ((tl = vocab_token_to_piece(v, -1, hello, buf, sizeof(buf))), 6);
    ASSERT_TRUE(memcmp(buf, " Hello", 6) == 0);
    ASSERT_EQ((tl = vocab_token_to_piece(v, 1, hello, buf, sizeof(buf))), 5);
    ASSERT_TRUE(memcmp(buf, "Hello", 5) == 0);
    /* A short buffer still reports the full length. */
    ASSERT_EQ(vocab_token_to_piece(v, -1, hello, buf, 2), 6);
    ASSERT_EQ(vocab_token_to_piece(v, -1, 999999, buf, sizeof(buf)), 0);
    vocab_free(v);
}

/* ---- pre-tokenizer regex sets ---- */

/* Splits text with `kind` and compares the fragments with want (NULL-terminated). */
static bool tt_split_is(enum pretok_kind kind, const char *text, const char *const *want) {
    pretok *p = NULL;
    mica_err err = {0};
    if (pretok_create(kind, &p, &err) != MICA_OK) {
        test_fail(__FILE__, __LINE__, "pretok_create(%d): %s", (int)kind, err.msg);
        return false;
    }
    size_t *ends = NULL, n = 0;
    bool ok = pretok_split(p, text, strlen(text), &ends, &n, &err) == MICA_OK;
    size_t start = 0, i = 0;
    for (; ok && i < n; i++) {
        if (!want[i] || strlen(want[i]) != ends[i] - start || memcmp(want[i], text + start, ends[i] - start)) {
            test_fail(__FILE__, __LINE__, "set %d, \"%s\": fragment %zu is \"%.*s\"", (int)kind, text, i,
                      (int)(ends[i] - start), text + start);
            ok = false;
        }
        start = ends[i];
    }
    if (ok && want[i]) {
        test_fail(__FILE__, __LINE__, "set %d, \"%s\": only %zu fragments", (int)kind, text, n);
        ok = false;
    }
    mica_free(ends);
    pretok_free(p);
    return ok;
}

TEST(tok_pretok_sets) {
    /* Every set compiles and splits; expectations follow the regexes of FORMATS.md 3.4. */
    for (int k = 0; k < PRETOK_COUNT; k++) {
        pretok *p = NULL;
        ASSERT_OK(pretok_create((enum pretok_kind)k, &p, NULL));
        size_t *ends, n;
        ASSERT_OK(pretok_split(p, "Hi 12345 \xE4\xBD\xA0\xE5\xA5\xBD!!\n", 17, &ends, &n, NULL));
        ASSERT_TRUE(n > 0 && ends[n - 1] == 17);
        mica_free(ends);
        ASSERT_OK(pretok_split(p, "", 0, &ends, &n, NULL));
        ASSERT_EQ(n, 0);
        pretok_free(p);
    }
    static const char *const q2[] = {"abc", " ", "1", "2", "3", "'s", NULL};
    ASSERT_TRUE(tt_split_is(PRETOK_QWEN2, "abc 123's", q2));
    static const char *const l3[] = {"abc", " ", "123", "45", "'S", "  ", " x", NULL};
    ASSERT_TRUE(tt_split_is(PRETOK_LLAMA3, "abc 12345'S   x", l3));
    static const char *const g2[] = {"Hello", " world", "'s", " 1234", "  ", " !?", NULL};
    ASSERT_TRUE(tt_split_is(PRETOK_GPT2, "Hello world's 1234   !?", g2));
    static const char *const d3[] = {"123", "45", "ab", NULL};
    ASSERT_TRUE(tt_split_is(PRETOK_DEEPSEEK3, "12345ab", d3));
    static const char *const o200k[] = {"Hello", "World's", " ok", NULL};
    ASSERT_TRUE(tt_split_is(PRETOK_GPT4O, "HelloWorld's ok", o200k));
    static const char *const sc[] = {"a", "1", "2", " b", NULL};
    ASSERT_TRUE(tt_split_is(PRETOK_STARCODER, "a12 b", sc));

    pretok_info info;
    ASSERT_TRUE(pretok_lookup("llama-bpe", 9, &info));
    ASSERT_EQ(info.kind, PRETOK_LLAMA3);
    ASSERT_TRUE(info.ignore_merges && info.add_bos);
    ASSERT_TRUE(pretok_lookup("qwen2", 5, &info));
    ASSERT_TRUE(!info.ignore_merges && !info.add_bos);
    ASSERT_TRUE(!pretok_lookup("qwen", 4, &info));
}

TEST(tok_special_llama_bpe) {
    mica_vocab *v = tt_load_vocab("ggml-vocab-llama-bpe");
    if (!v) return;
    /* llama3 group: BOS added by default; EOG includes <|eot_id|>. */
    ASSERT_TRUE(vocab_add_bos(v));
    ASSERT_EQ(vocab_bos(v), 128000);
    ASSERT_EQ(vocab_eos(v), 128001);
    int32_t eot = tt_id_of(v, "<|eot_id|>");
    ASSERT_TRUE(eot >= 0);
    ASSERT_TRUE(vocab_is_eog(v, eot));
    ASSERT_TRUE(vocab_is_eog(v, 128001));
    ASSERT_TRUE(!vocab_is_eog(v, 128000));
    int32_t *ids;
    size_t n;
    const char *t = "<|begin_of_text|>Hello";
    ASSERT_OK(vocab_tokenize(v, t, strlen(t), true, true, &ids, &n, NULL));
    ASSERT_TRUE(n == 3);
    ASSERT_EQ(ids[0], 128000);
    ASSERT_EQ(ids[1], 128000);
    ASSERT_EQ(ids[2], tt_id_of(v, "Hello"));
    mica_free(ids);
    vocab_free(v);
}

/* ---- stories260K (llama2.c tok512.bin converted to a SentencePiece vocab) ---- */

/* Builds a vocab GGUF from tok512.bin the way the llama2.c converter does. */
static bool tt_build_stories_vocab(const char *out_path) {
    char path[1024];
    test_data_path(path, sizeof(path), "tinystories/tok512.bin");
    if (!test_require_file(path)) return false;
    size_t len;
    char *d = tt_read_file(path, &len);
    if (!d) return false;
    enum { N = 512 };
    static char texts[N][64];
    const char *ptrs[N];
    float scores[N];
    int32_t types[N];
    size_t o = 4;
    for (int i = 0; i < N; i++) {
        int32_t n;
        memcpy(&scores[i], d + o, 4);
        memcpy(&n, d + o + 4, 4);
        o += 8;
        if (n < 0 || n > 16 || o + (size_t)n > len) {
            free(d);
            return false;
        }
        char piece[32];
        memcpy(piece, d + o, (size_t)n);
        piece[n] = '\0';
        o += (size_t)n;
        if (i == 1) strcpy(piece, "<s>");
        if (i == 2) strcpy(piece, "</s>");
        /* ' ' back to U+2581, as SentencePiece writes it. */
        size_t w = 0;
        for (char *c = piece; *c; c++) {
            if (*c == ' ') {
                memcpy(texts[i] + w, "\xE2\x96\x81", 3);
                w += 3;
            } else {
                texts[i][w++] = *c;
            }
        }
        texts[i][w] = '\0';
        ptrs[i] = texts[i];
        types[i] = i == 0 ? VOCAB_TT_UNKNOWN : i <= 2 ? VOCAB_TT_CONTROL : i <= 258 ? VOCAB_TT_BYTE
                                                                                    : VOCAB_TT_NORMAL;
    }
    free(d);
    if (o != len) return false;
    gguf_writer *w = NULL;
    mica_err err = {0};
    bool ok = gguf_writer_create(&w) == MICA_OK &&
              gguf_writer_set_str(w, "general.architecture", "llama") == MICA_OK &&
              gguf_writer_set_str(w, "tokenizer.ggml.model", "llama") == MICA_OK &&
              gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", ptrs, NULL, N) == MICA_OK &&
              gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, N) == MICA_OK &&
              gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, N) == MICA_OK &&
              gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1) == MICA_OK &&
              gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2) == MICA_OK &&
              gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0) == MICA_OK &&
              gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", true) == MICA_OK &&
              gguf_writer_write(w, out_path, &err) == MICA_OK;
    gguf_writer_free(w);
    if (!ok) test_fail(__FILE__, __LINE__, "writing %s: %s", out_path, err.msg);
    return ok;
}

TEST(tok_stories260k) {
    char gpath[1024];
    snprintf(gpath, sizeof(gpath), "%s/tok_stories_vocab.gguf", test_tmp_dir());
    if (!tt_build_stories_vocab(gpath)) return;
    gguf_ctx *g = NULL;
    mica_vocab *v = NULL;
    ASSERT_OK(gguf_open(gpath, &g, NULL));
    ASSERT_OK(vocab_load(g, &v, NULL));
    gguf_close(g);

    /* Prompt ids from the tinystories README (run.c and llama.cpp agree). */
    const char *prompt = "Once upon a time";
    int32_t *ids;
    size_t n;
    ASSERT_OK(vocab_tokenize(v, prompt, strlen(prompt), true, false, &ids, &n, NULL));
    static const int32_t want[] = {1, 403, 407, 261, 378};
    ASSERT_EQ(n, 5);
    for (size_t i = 0; i < 5; i++) ASSERT_EQ(ids[i], want[i]);
    mica_free(ids);

    /* The 128 ids run.c generated decode to its printed text (without the final '\n'). */
    static const int32_t all[] = {
        403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267,
        337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370,
        432, 352, 266, 268, 388, 426, 338, 391, 266, 267, 337, 335, 312, 432, 398, 312, 286, 267, 414,
        270, 333, 415, 426, 13, 438, 310, 439, 419, 357, 336, 432, 313, 438, 310, 432, 278, 316, 439,
        419, 298, 414, 267, 265, 282, 295, 433, 426, 436, 317, 286, 296, 418, 269, 279, 292, 416, 439,
        413, 409, 416, 327, 263, 415, 294, 267, 400, 426, 338, 336, 432, 313, 442, 391, 267, 337, 335,
        364, 420, 268, 388, 432, 398, 359, 280, 303, 439, 413, 272, 417, 264};
    ASSERT_EQ(MICA_ARRAY_LEN(all), 128);
    char tpath[1024];
    test_data_path(tpath, sizeof(tpath), "tinystories/expected_greedy_once_upon_a_time.txt");
    if (!test_require_file(tpath)) return;
    size_t elen;
    char *expected = tt_read_file(tpath, &elen);
    ASSERT_TRUE(expected && elen == 323);
    size_t dl;
    char *d = tt_detok(v, all, MICA_ARRAY_LEN(all), 1, &dl);
    ASSERT_EQ(dl, elen - 1);
    ASSERT_TRUE(memcmp(d, expected, dl) == 0);
    free(d);
    free(expected);

    /* Re-encoding the generated text gives back the same ids (after BOS). */
    ASSERT_OK(vocab_tokenize(v, prompt, strlen(prompt), false, false, &ids, &n, NULL));
    ASSERT_EQ(n, 4);
    ASSERT_EQ(ids[0], 403);
    mica_free(ids);
    ASSERT_TRUE(vocab_is_eog(v, 2));
    vocab_free(v);
}

/* ---- load errors ---- */

typedef struct tt_meta {
    const char *model;
    const char *pre;          /* NULL: absent */
    const char *const *toks;
    size_t n_tok;
    bool scores_short;
    bool tokens_as_u32;
    const int32_t *types;
    const char *const *merges;
    size_t n_merges;
    const char *name;         /* general.name; NULL: absent */
} tt_meta;

static mica_status tt_load_meta(const tt_meta *m, mica_vocab **out, mica_err *err) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/tok_meta.gguf", test_tmp_dir());
    gguf_writer *w = NULL;
    if (gguf_writer_create(&w) != MICA_OK) return MICA_ERR_NOMEM;
    gguf_writer_set_str(w, "tokenizer.ggml.model", m->model);
    if (m->pre) gguf_writer_set_str(w, "tokenizer.ggml.pre", m->pre);
    if (m->name) gguf_writer_set_str(w, "general.name", m->name);
    if (m->tokens_as_u32) {
        uint32_t x[3] = {1, 2, 3};
        gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_TYPE_UINT32, x, 3);
    } else {
        gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", m->toks, NULL, m->n_tok);
    }
    float sc[128] = {0}; /* n_tok <= 128 */
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, sc,
                        m->scores_short ? m->n_tok - 1 : m->n_tok);
    if (m->types) gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, m->types, m->n_tok);
    if (m->merges) gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", m->merges, NULL, m->n_merges);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1000); /* out of range: ignored */
    mica_status st = gguf_writer_write(w, path, err);
    gguf_writer_free(w);
    if (st != MICA_OK) return st;
    gguf_ctx *g = NULL;
    if ((st = gguf_open(path, &g, err)) != MICA_OK) return st;
    st = vocab_load(g, out, err);
    gguf_close(g);
    return st;
}

TEST(tok_load_errors) {
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "a", "b", "ab", "<0x41>"};
    static const int32_t types_ok[] = {2, 3, 3, 1, 1, 1, 6};
    static const int32_t types_badbyte[] = {2, 3, 3, 1, 1, 1, 6};
    static const char *const toks_badbyte[] = {"<unk>", "<s>", "</s>", "a", "b", "ab", "<0xZ1>"};
    static const char *const toks_dup[] = {"<unk>", "<s>", "</s>", "a", "b", "a", "<0x41>"};
    static const char *const merges[] = {"a b"};
    mica_vocab *v = NULL;
    mica_err err = {0};

    tt_meta ok = {"llama", NULL, toks, 7, false, false, types_ok, NULL, 0, NULL};
    ASSERT_OK(tt_load_meta(&ok, &v, &err));
    ASSERT_EQ(vocab_bos(v), 1); /* the out-of-range key kept the default */
    int32_t *ids;
    size_t n;
    /* "ab" merges; 'A' falls back to <0x41>; 'c' has no byte token: unk. */
    ASSERT_OK(vocab_tokenize(v, "abAc", 4, false, false, &ids, &n, &err));
    /* Dummy prefix U+2581 has no token and no byte token for E2 96 81: three unk. */
    ASSERT_EQ(n, 6);
    ASSERT_EQ(ids[0], 0);
    ASSERT_EQ(ids[3], 5);
    ASSERT_EQ(ids[4], 6);
    ASSERT_EQ(ids[5], 0);
    mica_free(ids);
    vocab_free(v);
    v = NULL;

    tt_meta m = ok;
    m.model = "t5";
    ASSERT_EQ(tt_load_meta(&m, &v, &err), MICA_ERR_UNSUPPORTED);
    ASSERT_TRUE(strstr(err.msg, "t5") != NULL);

    m = ok;
    m.model = "gpt2";
    m.pre = "no-such-pre";
    m.merges = merges;
    m.n_merges = 1;
    ASSERT_EQ(tt_load_meta(&m, &v, &err), MICA_ERR_UNSUPPORTED);
    ASSERT_TRUE(strstr(err.msg, "no-such-pre") != NULL);

    m.pre = NULL; /* missing pre: "default" */
    ASSERT_OK(tt_load_meta(&m, &v, &err));
    vocab_free(v);
    v = NULL;

    m.merges = NULL; /* gpt2 needs merges */
    ASSERT_EQ(tt_load_meta(&m, &v, &err), MICA_ERR_FORMAT);

    m = ok;
    m.toks = toks_dup;
    ASSERT_EQ(tt_load_meta(&m, &v, &err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err.msg, "duplicate") != NULL);

    m = ok;
    m.toks = toks_badbyte;
    m.types = types_badbyte;
    ASSERT_EQ(tt_load_meta(&m, &v, &err), MICA_ERR_FORMAT);

    m = ok;
    m.scores_short = true;
    ASSERT_EQ(tt_load_meta(&m, &v, &err), MICA_ERR_FORMAT);

    m = ok;
    m.tokens_as_u32 = true;
    ASSERT_EQ(tt_load_meta(&m, &v, &err), MICA_ERR_FORMAT);
    ASSERT_TRUE(v == NULL);
}

TEST(tok_limits) {
    mica_vocab *v = tt_load_vocab("ggml-vocab-gpt-2");
    if (!v) return;
    int32_t *ids = NULL;
    size_t n = 0;
    mica_err err = {0};
    ASSERT_EQ(vocab_tokenize(v, "x", (size_t)VOCAB_MAX_TEXT + 1, false, false, &ids, &n, &err),
              MICA_ERR_LIMIT);
    ASSERT_OK(vocab_tokenize(v, NULL, 0, false, false, &ids, &n, &err));
    ASSERT_EQ(n, 0);
    mica_free(ids);
    /* A long run of one character (one big pre-token) stays fast and exact. */
    size_t big = 200000;
    char *s = malloc(big);
    memset(s, ' ', big);
    ASSERT_OK(vocab_tokenize(v, s, big, false, false, &ids, &n, &err));
    size_t dl;
    char *d = tt_detok(v, ids, n, -1, &dl);
    ASSERT_EQ(dl, big);
    ASSERT_TRUE(memcmp(d, s, big) == 0);
    free(d);
    free(s);
    mica_free(ids);
    vocab_free(v);
}

/* ---- random bytes ---- */

static uint64_t tt_rng(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

TEST(tok_fuzz_random_bytes) {
    const char *names[] = {"ggml-vocab-qwen2", "ggml-vocab-llama-spm", "ggml-vocab-deepseek-llm",
                           "ggml-vocab-bert-bge"};
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    for (size_t k = 0; k < MICA_ARRAY_LEN(names); k++) {
        mica_vocab *v = tt_load_vocab(names[k]);
        if (!v) return;
        for (int iter = 0; iter < 200; iter++) {
            char buf[96];
            size_t len = tt_rng(&seed) % sizeof(buf);
            for (size_t i = 0; i < len; i++) {
                uint64_t r = tt_rng(&seed);
                /* Mix of ASCII, spaces, UTF-8 lead/continuation bytes and raw junk. */
                buf[i] = (char)(r % 4 == 0 ? ' ' : r % 4 == 1 ? 'a' + (r >> 8) % 26 : (r >> 16) & 0xFF);
            }
            int32_t *ids = NULL;
            size_t n = 0;
            mica_err err = {0};
            ASSERT_OK(vocab_tokenize(v, buf, len, iter & 1, iter & 2, &ids, &n, &err));
            for (size_t i = 0; i < n; i++) ASSERT_TRUE(ids[i] >= 0 && ids[i] < vocab_n_tokens(v));
            if (k == 0 && !(iter & 2)) {
                /* Byte-level BPE keeps every byte: decoding gives the input back.
                   (Not for deepseek-llm: there the byte-level characters of the
                   never-valid bytes C0, C1, F5..FF are user-defined tokens,
                   which decode to their text, as in llama.cpp and HF.) */
                size_t dl;
                char *d = tt_detok(v, ids, n, -1, &dl);
                if (dl != len || memcmp(d, buf, len) != 0) {
                    char hex[2 * sizeof(buf) + 1];
                    for (size_t i = 0; i < len; i++) snprintf(hex + 2 * i, 3, "%02x", (uint8_t)buf[i]);
                    hex[2 * len] = '\0';
                    test_fail(__FILE__, __LINE__, "%s: random input %d (%s) does not round-trip",
                              names[k], iter, hex);
                }
                free(d);
            }
            mica_free(ids);
            if (test_failed()) break;
        }
        vocab_free(v);
    }
}

/* ---- round trip on a few MB of mixed-script text ---- */

/* Code-point ranges the generator draws runs from. */
typedef struct tt_range {
    uint32_t lo, hi;
} tt_range;

static const tt_range k_rt_ranges[] = {
    {'a', 'z'},         {'A', 'Z'},         {0x00C0, 0x017F}, /* Latin, with accents */
    {0x03B1, 0x03C9},   {0x0391, 0x03A1},                     /* Greek */
    {0x0410, 0x044F},                                         /* Cyrillic */
    {0x4E00, 0x9FFF},                                         /* CJK ideographs */
    {0xAC00, 0xD7A3},                                         /* Hangul syllables */
    {0x0621, 0x064A},                                         /* Arabic */
    {0x1F300, 0x1F64F},                                       /* emoji */
    {0x0300, 0x036F},                                         /* combining marks */
    {'0', '9'},         {0x0660, 0x0669},                     /* digits */
    {'!', '/'},         {':', '@'},         {0x2010, 0x2027}, /* punctuation */
};

typedef struct tt_buf {
    char *p;
    size_t n, cap;
} tt_buf;

static void tt_buf_add(tt_buf *b, const char *s, size_t n) {
    if (b->n + n > b->cap) {
        while (b->n + n > b->cap) b->cap = b->cap ? b->cap * 2 : 1 << 16;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void tt_buf_cp(tt_buf *b, uint32_t cp) {
    char e[4];
    size_t k = utf8_encode(cp, e);
    tt_buf_add(b, e, k);
}

/*
 * Deterministic mixed-script text of at least `target` bytes: slices of the
 * .inp texts of all vocabulary test pairs (cut at character boundaries)
 * interleaved with runs of random code points from k_rt_ranges, emoji ZWJ
 * sequences and whitespace runs (spaces, tabs, CR LF, NBSP, ideographic
 * space). Always valid UTF-8. Free with free().
 */
static char *tt_mixed_text(size_t target, size_t *len) {
    static const char *const names[] = {
        "bert-bge", "deepseek-coder", "deepseek-llm", "falcon", "gpt-2",   "llama-bpe",
        "llama-spm", "mpt",           "phi-3",        "qwen2",  "refact", "starcoder",
    };
    tt_buf seed = {0}, b = {0};
    for (size_t i = 0; i < MICA_ARRAY_LEN(names); i++) {
        char rel[128], path[1024];
        snprintf(rel, sizeof(rel), "vocab/ggml-vocab-%s.gguf.inp", names[i]);
        test_data_path(path, sizeof(path), rel);
        size_t n;
        char *s = tt_read_file(path, &n);
        if (!s) continue;
        tt_buf_add(&seed, s, n);
        free(s);
    }
    if (seed.n == 0) tt_buf_add(&seed, "Hello world\n", 12);
    uint64_t rng = 0x243F6A8885A308D3ull;
    static const uint32_t spaces[] = {' ', ' ', ' ', '\t', '\n', '\r', 0x00A0, 0x3000};
    while (b.n < target) {
        /* A slice of the test texts. */
        size_t a = tt_rng(&rng) % seed.n, n = tt_rng(&rng) % 600;
        while (a > 0 && ((uint8_t)seed.p[a] & 0xC0) == 0x80) a--;
        size_t e = MICA_MIN(seed.n, a + n);
        while (e < seed.n && ((uint8_t)seed.p[e] & 0xC0) == 0x80) e++;
        tt_buf_add(&b, seed.p + a, e - a);
        /* Random runs. */
        for (int r = (int)(tt_rng(&rng) % 24); r >= 0; r--) {
            uint64_t x = tt_rng(&rng);
            if (x % 9 == 0) {
                for (int k = (int)(x >> 8) % 5; k >= 0; k--) tt_buf_cp(&b, spaces[tt_rng(&rng) % 8]);
            } else if (x % 9 == 1) {
                tt_buf_cp(&b, 0x1F468);  /* man, ZWJ, woman, ZWJ, girl */
                tt_buf_cp(&b, 0x200D);
                tt_buf_cp(&b, 0x1F469);
                tt_buf_cp(&b, 0x200D);
                tt_buf_cp(&b, 0x1F467);
            } else {
                const tt_range *g = &k_rt_ranges[(x >> 8) % MICA_ARRAY_LEN(k_rt_ranges)];
                for (int k = (int)(x >> 16) % 12; k >= 0; k--)
                    tt_buf_cp(&b, g->lo + (uint32_t)(tt_rng(&rng) % (g->hi - g->lo + 1)));
                if ((x >> 32) % 3) tt_buf_cp(&b, ' ');
            }
        }
    }
    free(seed.p);
    *len = b.n;
    return b.p;
}

/*
 * decode(encode(x)) == x on 2 MB of mixed text for every vocabulary in
 * testdata/vocab except bert-bge (add_special and parse_special off; SPM
 * decoding starts after BOS so the dummy prefix is dropped). Lossy cases
 * that this text deliberately avoids:
 *   - bert (WordPiece) always: whitespace is dropped, text lowercased and
 *     accents stripped (uncased vocabularies), unsplittable words become
 *     [UNK];
 *   - SPM: a literal U+2581 in the input decodes as a space; a dummy-prefix
 *     space is inserted after every special token cut from the text;
 *   - phi-3: whitespace after a special token's text is swallowed (rstrip);
 *   - any vocabulary: user-defined token texts are cut out literally, and
 *     deepseek-llm decodes the tokens standing for the never-valid bytes
 *     C0, C1, F5..FF to their text (only reachable with invalid UTF-8).
 */
TEST(tok_roundtrip_mixed) {
    static const char *const names[] = {
        "ggml-vocab-qwen2",          "ggml-vocab-llama-spm", "ggml-vocab-phi-3",
        "ggml-vocab-baichuan",       "ggml-vocab-llama-bpe", "ggml-vocab-gpt-2",
        "ggml-vocab-deepseek-coder", "ggml-vocab-deepseek-llm", "ggml-vocab-falcon",
        "ggml-vocab-mpt",            "ggml-vocab-starcoder", "ggml-vocab-refact",
        "ggml-vocab-gpt-neox",
    };
    size_t len;
    char *text = tt_mixed_text((size_t)2 << 20, &len);
    ASSERT_TRUE(utf8_valid(text, len));
    for (size_t k = 0; k < MICA_ARRAY_LEN(names); k++) {
        mica_vocab *v = tt_load_vocab(names[k]);
        if (!v) break;
        int32_t *ids = NULL;
        size_t n = 0;
        mica_err err = {0};
        mica_status st = vocab_tokenize(v, text, len, false, false, &ids, &n, &err);
        if (st != MICA_OK) {
            test_fail(__FILE__, __LINE__, "%s: %s", names[k], err.msg);
            vocab_free(v);
            break;
        }
        size_t dl;
        char *d = tt_detok(v, ids, n, vocab_kind(v) == VOCAB_SPM ? vocab_bos(v) : -1, &dl);
        size_t i = 0;
        while (i < MICA_MIN(dl, len) && d[i] == text[i]) i++;
        if (i != len || dl != len) {
            size_t a = i > 20 ? i - 20 : 0;
            test_fail(__FILE__, __LINE__, "%s: round trip differs at byte %zu of %zu (decoded %zu): "
                      "\"%.*s\" vs \"%.*s\"", names[k], i, len, dl, (int)MICA_MIN(len - a, 40), text + a,
                      (int)MICA_MIN(dl - a, 40), d + a);
        }
        free(d);
        mica_free(ids);
        vocab_free(v);
    }
    free(text);
}

/* ---- WordPiece (bert) ---- */

/* Tokenizes s and compares with want[0..n_want). */
static void tt_expect(const mica_vocab *v, const char *s, size_t len, bool add_special, bool parse_special,
                      const int32_t *want, size_t n_want) {
    int32_t *ids = NULL;
    size_t n = 0;
    mica_err err = {0};
    ASSERT_OK(vocab_tokenize(v, s, len, add_special, parse_special, &ids, &n, &err));
    bool same = n == n_want && (n == 0 || memcmp(ids, want, n * sizeof(int32_t)) == 0);
    if (!same) {
        char got[1024] = "";
        for (size_t i = 0; i < n && strlen(got) < 1000; i++)
            snprintf(got + strlen(got), sizeof(got) - strlen(got), " %d", ids[i]);
        test_fail(__FILE__, __LINE__, "\"%.*s\": got%s (%zu ids, want %zu)", (int)MICA_MIN(len, 60), s, got,
                  n, n_want);
    }
    mica_free(ids);
}

#define TT_EXPECT(v, s, add, parse, ...)                                                        \
    do {                                                                                        \
        static const int32_t want_[] = {__VA_ARGS__};                                           \
        tt_expect(v, s, strlen(s), add, parse, want_, MICA_ARRAY_LEN(want_));                   \
        if (test_failed()) return;                                                              \
    } while (0)

/*
 * bert-bge beyond its test pair. Expected ids: llama.cpp's WPM tokenizer
 * (node-llama-cpp 3.22.1) where it agrees with Hugging Face's BERT rules;
 * Hangul from the Unicode NFD of the syllables (U+D55C = U+1112 U+1161
 * U+11AB, ...), which Hugging Face applies in full while that llama.cpp
 * build keeps only the leading jamo; the 100-character word limit is
 * Hugging Face's max_input_chars_per_word.
 */
TEST(tok_bert_wpm) {
    mica_vocab *v = tt_load_vocab("ggml-vocab-bert-bge");
    if (!v) return;
    ASSERT_EQ(vocab_kind(v), VOCAB_WPM);
    ASSERT_EQ(vocab_bos(v), 101);
    ASSERT_EQ(vocab_sep(v), 102);
    ASSERT_TRUE(vocab_add_bos(v) && vocab_add_sep(v) && !vocab_add_eos(v));

    TT_EXPECT(v, "naïve café 東京 İstanbul ÅNGSTRÖM résumé", false, false, 15743, 7668, 1879, 1755, 9960,
              17076, 15687, 13746);
    TT_EXPECT(v, "$5+3=<8>^`|~ \xE2\x80\x9Cquoted\xE2\x80\x9D \xE2\x80\x94 dash\xE2\x80\xA6", false, false,
              1002, 1019, 1009, 1017, 1027, 1026, 1022, 1028, 1034, 1036, 1064, 1066, 1523, 9339, 1524, 1517,
              11454, 1529);
    TT_EXPECT(v, "unaffable [UNK] [CLS]", false, false, 14477, 20961, 3468, 1031, 4895, 2243, 1033, 1031, 18856,
              2015, 1033);
    TT_EXPECT(v, "Hello [MASK] world", false, true, 7592, 103, 2088);
    /* Specials: [CLS] ... [SEP] (FORMATS.md 3.2 defaults). */
    TT_EXPECT(v, "Hello world", true, false, 101, 7592, 2088, 102);
    TT_EXPECT(v, "", true, false, 101, 102);
    /* Control characters, ZWJ and invalid bytes vanish; a word stays one word. */
    TT_EXPECT(v, "hel\x01lo wo\xE2\x80\x8Drld \xFFhello", false, false, 7592, 2088, 7592);

    /* Hangul: 한국어 -> jamo pieces looked up by text. */
    static const char *const jamo[] = {"\xE2\x96\x81\xE1\x84\x92", "\xE1\x85\xA1", "\xE1\x86\xAB",
                                       "\xE1\x84\x80", "\xE1\x85\xAE", "\xE1\x86\xA8",
                                       "\xE1\x84\x8B", "\xE1\x85\xA5"};
    int32_t want[8];
    for (size_t i = 0; i < 8; i++) {
        size_t tl;
        want[i] = -1;
        for (int32_t id = 0; id < vocab_n_tokens(v); id++) {
            const char *t = vocab_token_text(v, id, &tl);
            if (tl == strlen(jamo[i]) && memcmp(t, jamo[i], tl) == 0) want[i] = id;
        }
        ASSERT_TRUE(want[i] >= 0);
    }
    tt_expect(v, "\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4", 9, false, false, want, 8);

    /* Word length limit: 100 characters split, 101 are [UNK]. */
    char word[102];
    memset(word, 'a', sizeof(word));
    int32_t *ids;
    size_t n;
    ASSERT_OK(vocab_tokenize(v, word, 100, false, false, &ids, &n, NULL));
    ASSERT_TRUE(n > 1 && ids[0] != 100);
    mica_free(ids);
    TT_EXPECT(v, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
              false, false, 100);

    /* Decoding: U+2581 is a space, dropped right after [CLS]. */
    char piece[32];
    size_t k = vocab_token_to_piece(v, 101, 7592, piece, sizeof(piece));
    ASSERT_EQ(k, 5);
    ASSERT_TRUE(memcmp(piece, "hello", 5) == 0);
    k = vocab_token_to_piece(v, 7592, 2088, piece, sizeof(piece));
    ASSERT_EQ(k, 6);
    ASSERT_TRUE(memcmp(piece, " world", 6) == 0);
    k = vocab_token_to_piece(v, 2088, 102, piece, sizeof(piece));
    ASSERT_EQ(k, 5);
    ASSERT_TRUE(memcmp(piece, "[SEP]", 5) == 0);
    vocab_free(v);
}

/* Casing follows the vocabulary: crafted bert vocabularies, expected ids by the rules in wpm.c. */
TEST(tok_bert_casing) {
    char names[110][24];
    const char *toks[110];
    int32_t types[110];
    for (int i = 0; i < 110; i++) {
        snprintf(names[i], sizeof(names[i]), "[unused%d]", i);
        toks[i] = names[i];
        types[i] = i == 0 || (i >= 100 && i <= 103) ? 3 : 1;
    }
    toks[0] = "[PAD]";
    toks[100] = "[UNK]";
    toks[101] = "[CLS]";
    toks[102] = "[SEP]";
    toks[103] = "[MASK]";
    toks[104] = "\xE2\x96\x81Hello";
    toks[105] = "\xE2\x96\x81hello";
    toks[106] = "\xE2\x96\x81\xC3\x89" "cole"; /* École */
    toks[107] = "\xE2\x96\x81" "ecole";
    toks[108] = "s";
    toks[109] = "\xE2\x96\x81!";
    tt_meta m = {"bert", NULL, toks, 110, false, false, types, NULL, 0, NULL};
    mica_vocab *v = NULL;
    mica_err err = {0};

    /* Cased: no lowercasing, accents kept. */
    ASSERT_OK(tt_load_meta(&m, &v, &err));
    TT_EXPECT(v, "Hello \xC3\x89" "cole!", true, false, 101, 104, 106, 109, 102);
    TT_EXPECT(v, "Hellos hello", false, false, 104, 108, 105);
    TT_EXPECT(v, "HELLO ecolez", false, false, 100, 100);
    vocab_free(v);
    v = NULL;

    /* Uncased (no normal token has upper-case letters): lowercase, strip accents. */
    toks[104] = "\xE2\x96\x81hullo";
    toks[106] = "\xE2\x96\x81" "ecolx";
    ASSERT_OK(tt_load_meta(&m, &v, &err));
    TT_EXPECT(v, "Hello \xC3\x89" "cole!", false, false, 105, 107, 109);
    TT_EXPECT(v, "HELLOS E\xCC\x81" "COLE", false, false, 105, 108, 107);
    vocab_free(v);
    v = NULL;

    /* Without an unknown token a WordPiece vocabulary cannot be used. */
    m.n_tok = 50;
    ASSERT_EQ(tt_load_meta(&m, &v, &err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err.msg, "unknown token") != NULL);
}

/*
 * rstrip: for a model named Phi-3, special tokens other than <unk>, <s> and
 * <|endoftext|> swallow the whitespace after them. Expected ids: llama.cpp
 * (node-llama-cpp 3.22.1, add_special off, parse_special on). llama-spm,
 * whose name does not match, keeps the whitespace.
 */
TEST(tok_special_strip) {
    mica_vocab *v = tt_load_vocab("ggml-vocab-phi-3");
    if (!v) return;
    TT_EXPECT(v, "<|user|>\nSYS\nHI<|end|>\n<|assistant|>\n", false, true, 32010, 317, 21554, 13, 17628, 32007,
              32001);
    TT_EXPECT(v, "x </s>  y <s> z<|endoftext|> w", false, true, 921, 29871, 2, 343, 29871, 1, 29871, 503, 32000,
              29871, 281);
    TT_EXPECT(v, "<|user|>  \t\n  hi", false, true, 32010, 7251);
    vocab_free(v);
    v = tt_load_vocab("ggml-vocab-llama-spm");
    if (!v) return;
    TT_EXPECT(v, "<s>\nSYS</s>  x", false, true, 1, 29871, 13, 14816, 29903, 2, 259, 921);
    vocab_free(v);
}

/* lstrip: [MASK] of a model named modern-bert swallows the whitespace before it (crafted SPM vocabulary). */
TEST(tok_special_lstrip) {
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "\xE2\x96\x81" "a", "\xE2\x96\x81", "[MASK]"};
    static const int32_t types[] = {2, 3, 3, 1, 1, 3};
    tt_meta m = {"llama", NULL, toks, 6, false, false, types, NULL, 0, "ModernBERT-like modern-bert-base"};
    mica_vocab *v = NULL;
    mica_err err = {0};
    ASSERT_OK(tt_load_meta(&m, &v, &err));
    TT_EXPECT(v, "a  [MASK]", false, true, 3, 5);
    TT_EXPECT(v, "a  [MASK]  ", false, true, 3, 5, 4, 4, 4); /* dummy prefix + 2 spaces */
    vocab_free(v);
    v = NULL;
    m.name = "other";
    ASSERT_OK(tt_load_meta(&m, &v, &err));
    TT_EXPECT(v, "a  [MASK]", false, true, 3, 4, 4, 5);
    vocab_free(v);
}

/* ---- streaming detokenizer (public API) ---- */

/* Id of the token whose stored text is s (-1 if none). */
static int32_t tt_find(const mica_vocab *v, const char *s) {
    for (int32_t id = 0; id < vocab_n_tokens(v); id++) {
        size_t tl;
        const char *t = vocab_token_text(v, id, &tl);
        if (tl == strlen(s) && memcmp(t, s, tl) == 0) return id;
    }
    return -1;
}

static mica_model *tt_open_model(const char *name) {
    char rel[256], path[1024];
    snprintf(rel, sizeof(rel), "vocab/%s.gguf", name);
    test_data_path(path, sizeof(path), rel);
    if (!test_require_file(path)) return NULL;
    mica_model_params p = mica_model_params_default();
    p.vocab_only = true;
    mica_model *m = NULL;
    char err[256];
    if (mica_model_open(path, &p, &m, err, sizeof(err)) != MICA_OK) {
        test_fail(__FILE__, __LINE__, "%s: %s", path, err);
        return NULL;
    }
    return m;
}

/*
 * A character split over byte tokens comes out only when complete (U+4F60 =
 * E4 BD A0); invalid bytes come out at once and unchanged; flush emits a
 * held incomplete tail raw; a small cap delays bytes without losing them.
 */
TEST(tok_detok_stream) {
    mica_model *m = tt_open_model("ggml-vocab-llama-spm");
    if (!m) return;
    mica_vocab *v = tt_load_vocab("ggml-vocab-llama-spm");
    if (!v) return;
    int32_t e4 = tt_find(v, "<0xE4>"), bd = tt_find(v, "<0xBD>"), a0 = tt_find(v, "<0xA0>");
    int32_t x41 = tt_find(v, "<0x41>"), xff = tt_find(v, "<0xFF>"), f0 = tt_find(v, "<0xF0>");
    int32_t x9f = tt_find(v, "<0x9F>"), hello = tt_find(v, "\xE2\x96\x81Hello");
    ASSERT_TRUE(e4 >= 0 && bd >= 0 && a0 >= 0 && x41 >= 0 && xff >= 0 && f0 >= 0 && x9f >= 0 && hello >= 0);
    vocab_free(v);

    mica_detok *d = NULL;
    ASSERT_EQ(mica_detok_create(NULL, &d), MICA_ERR_INVALID_ARG);
    ASSERT_OK(mica_detok_create(m, &d));
    char buf[64];
    ASSERT_EQ(mica_detok_push(d, e4, buf, sizeof(buf)), 0);
    ASSERT_EQ(mica_detok_push(d, bd, buf, sizeof(buf)), 0);
    ASSERT_EQ(mica_detok_push(d, a0, buf, sizeof(buf)), 3);
    ASSERT_TRUE(memcmp(buf, "\xE4\xBD\xA0", 3) == 0);
    /* E4 then 'A': the sequence can no longer complete, both bytes come out. */
    ASSERT_EQ(mica_detok_push(d, e4, buf, sizeof(buf)), 0);
    ASSERT_EQ(mica_detok_push(d, x41, buf, sizeof(buf)), 2);
    ASSERT_TRUE(memcmp(buf, "\xE4" "A", 2) == 0);
    ASSERT_EQ(mica_detok_push(d, xff, buf, sizeof(buf)), 1);
    ASSERT_EQ((uint8_t)buf[0], 0xFF);
    /* An unfinished emoji at the end of the stream is flushed raw. */
    ASSERT_EQ(mica_detok_push(d, f0, buf, sizeof(buf)), 0);
    ASSERT_EQ(mica_detok_push(d, x9f, buf, sizeof(buf)), 0);
    ASSERT_EQ(mica_detok_flush(d, buf, sizeof(buf)), 2);
    ASSERT_TRUE(memcmp(buf, "\xF0\x9F", 2) == 0);
    ASSERT_EQ(mica_detok_flush(d, buf, sizeof(buf)), 0);
    /* Small caps: " Hello" in pieces of 4 and 2 bytes. */
    ASSERT_EQ(mica_detok_push(d, hello, buf, 4), 4);
    ASSERT_TRUE(memcmp(buf, " Hel", 4) == 0);
    ASSERT_EQ(mica_detok_push(d, -1, buf, sizeof(buf)), 2);
    ASSERT_TRUE(memcmp(buf, "lo", 2) == 0);
    mica_detok_free(d);
    mica_detok_free(NULL);

    /* After BOS the SPM dummy-prefix space is dropped. */
    ASSERT_OK(mica_detok_create(m, &d));
    ASSERT_EQ(mica_detok_push(d, mica_token_bos(m), buf, sizeof(buf)), 3); /* "<s>" */
    ASSERT_EQ(mica_detok_push(d, hello, buf, sizeof(buf)), 5);
    ASSERT_TRUE(memcmp(buf, "Hello", 5) == 0);
    mica_detok_free(d);
    mica_model_free(m);
}

/* Byte-level BPE: streaming every token of a mixed text, one at a time, gives
   the text back, and every chunk handed out is valid UTF-8. */
TEST(tok_detok_bpe) {
    mica_model *m = tt_open_model("ggml-vocab-qwen2");
    if (!m) return;
    const char *text = "你好, мир! 🚀🦙 naïve 😶\xE2\x80\x8D🌫\xEF\xB8\x8F 3333 ok";
    int32_t *ids = NULL;
    size_t n = 0;
    ASSERT_OK(mica_tokenize(m, text, strlen(text), false, false, &ids, &n));
    mica_detok *d = NULL;
    ASSERT_OK(mica_detok_create(m, &d));
    char out[256], chunk[64];
    size_t len = 0;
    bool held = false;
    for (size_t i = 0; i < n; i++) {
        size_t k = mica_detok_push(d, ids[i], chunk, sizeof(chunk));
        ASSERT_TRUE(utf8_valid(chunk, k));
        held |= k == 0;
        memcpy(out + len, chunk, k);
        len += k;
    }
    len += mica_detok_flush(d, out + len, sizeof(out) - len);
    ASSERT_EQ(len, strlen(text));
    ASSERT_TRUE(memcmp(out, text, len) == 0);
    ASSERT_TRUE(held); /* some emoji is split over byte-level tokens */
    free(ids);
    mica_detok_free(d);
    mica_model_free(m);
}

/*
 * SPM merges word by word only when no token could cross a word start; a
 * token "x▁" turns that off. Crafted vocabulary, all scores equal (ties:
 * leftmost pair): "zx y" -> ▁ z x▁ y, where z has no token and no byte token
 * (unk).
 */
TEST(tok_spm_cross_word) {
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "\xE2\x96\x81x", "x\xE2\x96\x81", "y",
                                       "\xE2\x96\x81", "\xE2\x96\x81y", "x"};
    static const int32_t types[] = {2, 3, 3, 1, 1, 1, 1, 1, 1};
    tt_meta m = {"llama", NULL, toks, 9, false, false, types, NULL, 0, NULL};
    mica_vocab *v = NULL;
    mica_err err = {0};
    ASSERT_OK(tt_load_meta(&m, &v, &err));
    TT_EXPECT(v, "zx y", false, false, 6, 0, 4, 5);
    vocab_free(v);
}
