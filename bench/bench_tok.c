/*
 * bench_tok.c - tokenizer encode throughput (MB/s of UTF-8 input) through
 * the internal vocab API, one thread, the whole text in one vocab_tokenize
 * call (add_special and parse_special off, as llama.cpp's tokenize in
 * bench/tok_llamacpp.mjs).
 *
 * Not part of the test suite. Build and run from the repository root:
 *   make build/libmica.a
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -o build/bench_tok bench/bench_tok.c \
 *      build/libmica.a -lpcre2-8 -lutf8proc -lpthread -lm
 *   build/bench_tok gen OUT.txt [MB]        # writes the deterministic benchmark text (default 4 MB)
 *   build/bench_tok run VOCAB.gguf TEXT [RUNS]
 * `run` prints one line: bytes, tokens, an FNV-1a hash of the ids (to check
 * that two tokenizers agree), and the median / min / max MB/s of RUNS timed
 * runs (default 5) after one untimed warm-up run. bench/tokenizer.sh runs both
 * engines on the same text. Report numbers with bench/PROTOCOL.md.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf/gguf.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

static double bt_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t bt_rng(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* ---- benchmark text ---- */

static const char *const k_bt_words[] = {
    "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by",
    "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had",
    "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there", "been", "if",
    "more", "when", "will", "would", "who", "so", "no", "model", "token", "language", "inference",
    "memory", "bandwidth", "tokenizer", "throughput", "benchmark", "engine", "quantization", "matrix",
    "attention", "context", "generation", "sequence", "probability", "distribution", "temperature",
    "however", "therefore", "although", "between", "through", "different", "important", "example",
    "information", "government", "development", "university", "international", "approximately",
};

/* Short phrases in other scripts (UTF-8). */
static const char *const k_bt_phrases[] = {
    "Привет, мир! Как дела?",
    "Καλημέρα κόσμε, τι κάνεις;",
    "我想在苹果公司工作，因为那里的工程师很优秀。",
    "今日はいい天気ですね。東京へ行きましょう。",
    "안녕하세요, 세계! 한국어 문장입니다.",
    "مرحبا بالعالم، كيف حالك؟",
    "Cửa Việt, Äpfel, naïve café, São Paulo, Zürich, Kraków",
    "🚀 launch 😶‍🌫️ fog 👨‍👩‍👧 family ✅ done 🦙🦙",
    "if (x != NULL) { return foo(x, 42); }\n",
    "    for (int i = 0; i < n; i++) sum += a[i] * b[i];\n",
};

/* Writes `bytes` (rounded up to a whole sentence) of deterministic mixed text. */
static int bt_gen(const char *path, size_t bytes) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        return 1;
    }
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    size_t n = 0;
    while (n < bytes) {
        uint64_t x = bt_rng(&rng);
        if (x % 10 < 7) {
            /* An English-like sentence: 5..24 words, capitalised, maybe a number and a comma. */
            int nw = 5 + (int)((x >> 8) % 20);
            for (int w = 0; w < nw; w++) {
                const char *word = k_bt_words[bt_rng(&rng) % (sizeof(k_bt_words) / sizeof(k_bt_words[0]))];
                uint64_t r = bt_rng(&rng);
                char buf[64];
                int k;
                if (r % 17 == 0) k = snprintf(buf, sizeof(buf), "%s%u", w ? " " : "", (unsigned)(r >> 20) % 100000);
                else if (w == 0) k = snprintf(buf, sizeof(buf), "%c%s", word[0] - 32, word + 1);
                else k = snprintf(buf, sizeof(buf), " %s%s", word, r % 11 == 0 ? "," : "");
                fwrite(buf, 1, (size_t)k, f);
                n += (size_t)k;
            }
            const char *end = (x >> 40) % 8 == 0 ? ".\n\n" : (x >> 40) % 8 == 1 ? "?\n" : ". ";
            fputs(end, f);
            n += strlen(end);
        } else {
            const char *p = k_bt_phrases[(x >> 8) % (sizeof(k_bt_phrases) / sizeof(k_bt_phrases[0]))];
            fputs(p, f);
            fputc(' ', f);
            n += strlen(p) + 1;
        }
    }
    fputc('\n', f);
    return fclose(f) == 0 ? 0 : 1;
}

/* ---- run ---- */

static char *bt_read(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static int bt_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int bt_run(const char *vocab_path, const char *text_path, int runs) {
    mica_err err = {0};
    gguf_ctx *g = NULL;
    mica_vocab *v = NULL;
    if (gguf_open(vocab_path, &g, &err) != MICA_OK || vocab_load(g, &v, &err) != MICA_OK) {
        fprintf(stderr, "bench_tok: %s\n", err.msg);
        return 1;
    }
    gguf_close(g);
    size_t len;
    char *text = bt_read(text_path, &len);
    if (!text) {
        perror(text_path);
        return 1;
    }
    double mbs[64];
    if (runs < 1) runs = 1;
    if (runs > 64) runs = 64;
    size_t n = 0;
    uint64_t hash = 0;
    for (int r = -1; r < runs; r++) {
        int32_t *ids = NULL;
        double t0 = bt_now();
        if (vocab_tokenize(v, text, len, false, false, &ids, &n, &err) != MICA_OK) {
            fprintf(stderr, "bench_tok: %s\n", err.msg);
            return 1;
        }
        double t = bt_now() - t0;
        if (r < 0) {
            hash = 0xCBF29CE484222325ull; /* FNV-1a over the ids as decimal text, "id," each */
            for (size_t i = 0; i < n; i++) {
                char d[16];
                int k = snprintf(d, sizeof(d), "%d,", ids[i]);
                for (int j = 0; j < k; j++) hash = (hash ^ (uint8_t)d[j]) * 0x100000001B3ull;
            }
        } else {
            mbs[r] = (double)len / 1e6 / t;
        }
        mica_free(ids);
    }
    qsort(mbs, (size_t)runs, sizeof(double), bt_cmp_double);
    printf("bytes=%zu tokens=%zu hash=%016llx mb_s_median=%.2f mb_s_min=%.2f mb_s_max=%.2f runs=%d\n", len, n,
           (unsigned long long)hash, mbs[runs / 2], mbs[0], mbs[runs - 1], runs);
    free(text);
    vocab_free(v);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "gen") == 0)
        return bt_gen(argv[2], (size_t)((argc > 3 ? atof(argv[3]) : 4.0) * 1e6));
    if (argc >= 4 && strcmp(argv[1], "run") == 0) return bt_run(argv[2], argv[3], argc > 4 ? atoi(argv[4]) : 5);
    fprintf(stderr, "usage: bench_tok gen OUT.txt [MB] | bench_tok run VOCAB.gguf TEXT [RUNS]\n");
    return 2;
}
