/*
 * test_tokenizer.c - the tokenizer module: UTF-8 helpers, the string map, the
 * llama.cpp vocabulary test pairs (testdata/vocab, .inp/.out: ids made by the
 * Hugging Face tokenizers), the llama2.c stories260K vocabulary (ids and text
 * from testdata/tinystories/README.md and run.c's reference output), special
 * tokens, end-of-generation, load errors on crafted metadata, and random-byte
 * robustness.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
} tt_meta;

static mica_status tt_load_meta(const tt_meta *m, mica_vocab **out, mica_err *err) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/tok_meta.gguf", test_tmp_dir());
    gguf_writer *w = NULL;
    if (gguf_writer_create(&w) != MICA_OK) return MICA_ERR_NOMEM;
    gguf_writer_set_str(w, "tokenizer.ggml.model", m->model);
    if (m->pre) gguf_writer_set_str(w, "tokenizer.ggml.pre", m->pre);
    if (m->tokens_as_u32) {
        uint32_t x[3] = {1, 2, 3};
        gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_TYPE_UINT32, x, 3);
    } else {
        gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", m->toks, NULL, m->n_tok);
    }
    float sc[64] = {0};
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

    tt_meta ok = {"llama", NULL, toks, 7, false, false, types_ok, NULL, 0};
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
    const char *names[] = {"ggml-vocab-qwen2", "ggml-vocab-llama-spm", "ggml-vocab-deepseek-llm"};
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
