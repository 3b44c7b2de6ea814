/*
 * test_gen.c - the random-weight model generator (src/convert/gen.h).
 *
 * Expected shapes and keys are written out here from the preset definitions
 * in the brief (hidden 256, head_dim 64, ...), not read back from the
 * generator's table. "Same weights whatever the type" is checked by
 * dequantising with the kernel table and comparing with the F32 file within
 * each format's resolution; the distributions against their formulas.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../test.h"
#include "convert/gen.h"
#include "gguf/gguf.h"
#include "tensor/dtype.h"
#include "tensor/kern.h"

static const char *gt_path(const char *tag, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/gen_%s.gguf", test_tmp_dir(), tag);
    return buf;
}

static mica_status gt_make(const char *preset, uint32_t type, uint64_t seed, const char *vocab,
                           const char *path) {
    gen_params p = {.preset = preset, .type = type, .seed = seed, .vocab_path = vocab};
    mica_err e = {0};
    mica_status st = gen_write(&p, path, &e);
    if (st) fprintf(stderr, "    gen_write(%s): %s\n", preset, e.msg);
    return st;
}

static int64_t gt_u(const gguf_ctx *g, const char *key) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv) return -1;
    if (kv->val.type == GGUF_TYPE_UINT32 || kv->val.type == GGUF_TYPE_UINT64) return (int64_t)kv->val.v.u;
    if (kv->val.type == GGUF_TYPE_INT32) return kv->val.v.i;
    return -2;
}

static bool gt_str_is(const gguf_ctx *g, const char *key, const char *want) {
    const gguf_kv *kv = gguf_find(g, key);
    return kv && kv->val.type == GGUF_TYPE_STRING && kv->val.v.s.len == strlen(want) &&
           memcmp(kv->val.v.s.ptr, want, kv->val.v.s.len) == 0;
}

/* Expected shape of a tiny preset, spelled out. */
typedef struct gt_shape {
    const char *preset, *arch;
    int64_t embd, layers, heads, kv_heads, head_dim, ff, vocab;
    bool tied, bias, qk_norm;
} gt_shape;

static const gt_shape gt_tiny[] = {
    {"tiny-llama", "llama", 256, 2, 4, 2, 64, 512, 640, false, false, false},
    {"tiny-qwen2", "qwen2", 256, 2, 4, 2, 64, 384, 640, false, true, false},
    {"tiny-qwen3", "qwen3", 256, 2, 8, 2, 64, 768, 640, true, false, true},
};

/* Checks that tensor `name` exists with ne [ne0, ne1] and the type a matrix of `req` should get. */
static bool gt_tensor(const gguf_ctx *g, const char *name, int64_t ne0, int64_t ne1, uint32_t req) {
    const gguf_tensor *t = gguf_find_tensor(g, name);
    if (!t) {
        fprintf(stderr, "    missing tensor %s\n", name);
        return false;
    }
    uint32_t want = req;
    if (ne1 == 1) want = MICA_DTYPE_F32; /* norms and biases */
    else if ((req == MICA_DTYPE_Q4_K || req == MICA_DTYPE_Q6_K) && ne0 % 256 != 0) want = MICA_DTYPE_Q8_0;
    bool ok = t->ne[0] == ne0 && t->ne[1] == ne1 && t->type == want && t->n_dims == (ne1 == 1 ? 1u : 2u);
    if (!ok)
        fprintf(stderr, "    %s: ne [%lld, %lld] type %s, want [%lld, %lld] %s\n", name,
                (long long)t->ne[0], (long long)t->ne[1], dtype_name(t->type), (long long)ne0,
                (long long)ne1, dtype_name(want));
    return ok;
}

static bool gt_check_model(const char *path, const gt_shape *s, uint32_t type) {
    gguf_ctx *g = NULL;
    mica_err e = {0};
    if (gguf_open(path, &g, &e) != MICA_OK) {
        fprintf(stderr, "    gguf_open: %s\n", e.msg);
        return false;
    }
    bool ok = gt_str_is(g, "general.architecture", s->arch);
    char k[128];
#define GT_KEY(suffix, want)                                                   \
    do {                                                                       \
        snprintf(k, sizeof k, "%s." suffix, s->arch);                          \
        if (gt_u(g, k) != (want)) {                                            \
            fprintf(stderr, "    %s = %lld, want %lld\n", k, (long long)gt_u(g, k), (long long)(want)); \
            ok = false;                                                        \
        }                                                                      \
    } while (0)
    GT_KEY("embedding_length", s->embd);
    GT_KEY("block_count", s->layers);
    GT_KEY("feed_forward_length", s->ff);
    GT_KEY("attention.head_count", s->heads);
    GT_KEY("attention.head_count_kv", s->kv_heads);
    GT_KEY("context_length", 4096);
    GT_KEY("vocab_size", s->vocab);
    GT_KEY("rope.dimension_count", s->head_dim);
    if (s->head_dim * s->heads != s->embd) {
        GT_KEY("attention.key_length", s->head_dim);
        GT_KEY("attention.value_length", s->head_dim);
    }
#undef GT_KEY
    float f = 0;
    snprintf(k, sizeof k, "%s.rope.freq_base", s->arch);
    ok = ok && gguf_get_f32(g, k, &f, &e) == MICA_OK && f == (strcmp(s->arch, "llama") ? 1e6f : 1e4f);
    snprintf(k, sizeof k, "%s.attention.layer_norm_rms_epsilon", s->arch);
    ok = ok && gguf_get_f32(g, k, &f, &e) == MICA_OK && f == (strcmp(s->arch, "llama") ? 1e-6f : 1e-5f);
    gguf_value toks;
    ok = ok && gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &toks, &e) == MICA_OK &&
         toks.v.arr.n == (uint64_t)s->vocab;

    int64_t q = s->heads * s->head_dim, kv = s->kv_heads * s->head_dim, d = s->embd;
    uint64_t n_want = 1 + 1 + (s->tied ? 0 : 1);
    ok = ok && gt_tensor(g, "token_embd.weight", d, s->vocab, type);
    ok = ok && gt_tensor(g, "output_norm.weight", d, 1, type);
    if (s->tied) ok = ok && gguf_find_tensor(g, "output.weight") == NULL;
    else ok = ok && gt_tensor(g, "output.weight", d, s->vocab, type);
    for (int l = 0; ok && l < s->layers; l++) {
        char n[64];
#define GT_T(suffix, ne0, ne1) (snprintf(n, sizeof n, "blk.%d." suffix, l), gt_tensor(g, n, ne0, ne1, type))
        ok = GT_T("attn_norm.weight", d, 1) && GT_T("attn_q.weight", d, q) &&
             GT_T("attn_k.weight", d, kv) && GT_T("attn_v.weight", d, kv) &&
             GT_T("attn_output.weight", q, d) && GT_T("ffn_norm.weight", d, 1) &&
             GT_T("ffn_gate.weight", d, s->ff) && GT_T("ffn_up.weight", d, s->ff) &&
             GT_T("ffn_down.weight", s->ff, d);
        n_want += 9;
        if (ok && s->bias) {
            ok = GT_T("attn_q.bias", q, 1) && GT_T("attn_k.bias", kv, 1) && GT_T("attn_v.bias", kv, 1);
            n_want += 3;
        }
        if (ok && s->qk_norm) {
            ok = GT_T("attn_q_norm.weight", s->head_dim, 1) && GT_T("attn_k_norm.weight", s->head_dim, 1);
            n_want += 2;
        }
#undef GT_T
    }
    if (ok && gguf_n_tensors(g) != n_want) {
        fprintf(stderr, "    %llu tensors, want %llu\n", (unsigned long long)gguf_n_tensors(g),
                (unsigned long long)n_want);
        ok = false;
    }
    gguf_close(g);
    return ok;
}

TEST(gen_tiny_presets_all_types) {
    const uint32_t types[] = {MICA_DTYPE_F32, MICA_DTYPE_F16, MICA_DTYPE_BF16, MICA_DTYPE_Q8_0,
                              MICA_DTYPE_Q4_0, MICA_DTYPE_Q4_K, MICA_DTYPE_Q6_K};
    char path[600];
    for (size_t i = 0; i < sizeof gt_tiny / sizeof gt_tiny[0]; i++) {
        for (size_t j = 0; j < sizeof types / sizeof types[0]; j++) {
            gt_path("all", path, sizeof path);
            ASSERT_OK(gt_make(gt_tiny[i].preset, types[j], 42, NULL, path));
            bool ok = gt_check_model(path, &gt_tiny[i], types[j]);
            if (!ok) fprintf(stderr, "    preset %s type %s\n", gt_tiny[i].preset, dtype_name(types[j]));
            ASSERT_TRUE(ok);
        }
    }
    unlink(path);
}

static uint8_t *gt_slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)sz);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = (size_t)sz;
    return b;
}

TEST(gen_seed_determinism) {
    char a[600], b[600], c[600];
    gt_path("seed_a", a, sizeof a);
    gt_path("seed_b", b, sizeof b);
    gt_path("seed_c", c, sizeof c);
    ASSERT_OK(gt_make("tiny-qwen2", MICA_DTYPE_Q8_0, 7, NULL, a));
    ASSERT_OK(gt_make("tiny-qwen2", MICA_DTYPE_Q8_0, 7, NULL, b));
    ASSERT_OK(gt_make("tiny-qwen2", MICA_DTYPE_Q8_0, 8, NULL, c));
    size_t na, nb, nc;
    uint8_t *da = gt_slurp(a, &na), *db = gt_slurp(b, &nb), *dc = gt_slurp(c, &nc);
    ASSERT_TRUE(da && db && dc);
    ASSERT_EQ(na, nb);
    ASSERT_TRUE(memcmp(da, db, na) == 0);
    ASSERT_EQ(na, nc); /* same layout, */
    ASSERT_TRUE(memcmp(da, dc, na) != 0); /* other weights */
    /* a different seed changes every 2-D tensor, not just some */
    gguf_ctx *ga = NULL, *gc = NULL;
    mica_err e = {0};
    ASSERT_OK(gguf_open(a, &ga, &e));
    ASSERT_OK(gguf_open(c, &gc, &e));
    for (uint64_t i = 0; i < gguf_n_tensors(ga); i++) {
        const gguf_tensor *ta = gguf_tensor_at(ga, i), *tc = gguf_find_tensor(gc, ta->name);
        ASSERT_TRUE(tc != NULL && tc->nbytes == ta->nbytes);
        ASSERT_TRUE(memcmp(ta->data, tc->data, ta->nbytes) != 0);
    }
    gguf_close(ga);
    gguf_close(gc);
    free(da);
    free(db);
    free(dc);
}

/* Every tensor of `other` dequantised agrees with the F32 file within the type's resolution. */
static bool gt_same_weights(const char *f32_path, const char *other_path) {
    gguf_ctx *gf = NULL, *go = NULL;
    mica_err e = {0};
    if (gguf_open(f32_path, &gf, &e) || gguf_open(other_path, &go, &e)) return false;
    kern_table kt;
    kern_table_init(&kt, KERN_ISA_GENERIC);
    bool ok = gguf_n_tensors(gf) == gguf_n_tensors(go);
    for (uint64_t i = 0; ok && i < gguf_n_tensors(gf); i++) {
        const gguf_tensor *tf = gguf_tensor_at(gf, i), *to = gguf_find_tensor(go, tf->name);
        ok = to && to->ne[0] == tf->ne[0] && to->ne[1] == tf->ne[1] && tf->type == MICA_DTYPE_F32;
        if (!ok) break;
        int64_t n = tf->ne[0] * tf->ne[1];
        float *x = malloc((size_t)n * sizeof *x);
        kt.ops[to->type].to_float(to->data, x, n);
        const float *ref = tf->data;
        for (int64_t b0 = 0; ok && b0 < n; b0 += 32) {
            float amax = 0;
            for (int64_t j = b0; j < b0 + 32 && j < n; j++) amax = fmaxf(amax, fabsf(ref[j]));
            for (int64_t j = b0; ok && j < b0 + 32 && j < n; j++) {
                double tol;
                switch (to->type) {
                case MICA_DTYPE_F32: tol = 0; break;
                case MICA_DTYPE_F16: tol = fabsf(ref[j]) * 0x1p-11 + 1e-7; break;
                case MICA_DTYPE_BF16: tol = fabsf(ref[j]) * 0x1p-8 + 1e-30; break;
                /* Q8_0: step amax/127, rounding error half a step (+ fp16 scale rounding) */
                default: tol = amax / 127.0 * 0.5 * 1.01 + amax * 0x1p-11; break;
                }
                double diff = fabs((double)x[j] - ref[j]);
                if (diff > tol) {
                    fprintf(stderr, "    %s[%lld] (%s): %g vs %g\n", tf->name, (long long)j,
                            dtype_name(to->type), x[j], ref[j]);
                    ok = false;
                }
            }
        }
        free(x);
    }
    gguf_close(gf);
    gguf_close(go);
    return ok;
}

TEST(gen_same_weights_across_types) {
    char f32[600], q8[600], f16[600], bf16[600];
    gt_path("w_f32", f32, sizeof f32);
    gt_path("w_q8", q8, sizeof q8);
    gt_path("w_f16", f16, sizeof f16);
    gt_path("w_bf16", bf16, sizeof bf16);
    for (size_t i = 0; i < sizeof gt_tiny / sizeof gt_tiny[0]; i++) {
        ASSERT_OK(gt_make(gt_tiny[i].preset, MICA_DTYPE_F32, 3, NULL, f32));
        ASSERT_OK(gt_make(gt_tiny[i].preset, MICA_DTYPE_Q8_0, 3, NULL, q8));
        ASSERT_TRUE(gt_same_weights(f32, q8));
        if (i == 0) {
            ASSERT_OK(gt_make(gt_tiny[i].preset, MICA_DTYPE_F16, 3, NULL, f16));
            ASSERT_OK(gt_make(gt_tiny[i].preset, MICA_DTYPE_BF16, 3, NULL, bf16));
            ASSERT_TRUE(gt_same_weights(f32, f16));
            ASSERT_TRUE(gt_same_weights(f32, bf16));
        }
    }
}

/* Mean and standard deviation of an F32 tensor. */
static void gt_stats(const gguf_tensor *t, double *mean, double *std) {
    const float *x = t->data;
    int64_t n = t->ne[0] * t->ne[1];
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) {
        s += x[i];
        s2 += (double)x[i] * x[i];
    }
    *mean = s / (double)n;
    *std = sqrt(s2 / (double)n - *mean * *mean);
}

TEST(gen_distributions) {
    char path[600];
    gt_path("dist", path, sizeof path);
    ASSERT_OK(gt_make("tiny-llama", MICA_DTYPE_F32, 11, NULL, path));
    gguf_ctx *g = NULL;
    mica_err e = {0};
    ASSERT_OK(gguf_open(path, &g, &e));
    double m, s;
    /* N(0, 1/fan_in): attn_q fan_in 256 -> std 1/16 */
    gt_stats(gguf_find_tensor(g, "blk.0.attn_q.weight"), &m, &s);
    ASSERT_NEAR(m, 0.0, 0.002);
    ASSERT_NEAR(s, 1.0 / 16, 0.002);
    /* ffn_down: fan_in 512, times 1/sqrt(2 * 2 layers) */
    gt_stats(gguf_find_tensor(g, "blk.1.ffn_down.weight"), &m, &s);
    ASSERT_NEAR(s, 1.0 / sqrt(512.0) / 2.0, 0.001);
    gt_stats(gguf_find_tensor(g, "blk.1.attn_output.weight"), &m, &s);
    ASSERT_NEAR(s, 1.0 / 16 / 2.0, 0.001);
    /* norms: around 1 with small noise */
    gt_stats(gguf_find_tensor(g, "blk.0.attn_norm.weight"), &m, &s);
    ASSERT_NEAR(m, 1.0, 0.02);
    ASSERT_TRUE(s > 0.01 && s < 0.1);
    /* untied embeddings N(0, 1) */
    gt_stats(gguf_find_tensor(g, "token_embd.weight"), &m, &s);
    ASSERT_NEAR(s, 1.0, 0.01);
    /* distinct tensors are not copies of each other */
    const float *a = gguf_find_tensor(g, "blk.0.ffn_gate.weight")->data;
    const float *b = gguf_find_tensor(g, "blk.0.ffn_up.weight")->data;
    ASSERT_TRUE(memcmp(a, b, 256 * 4) != 0);
    /* untied output: logits of std 3 = N(0, 9/fan_in) */
    gt_stats(gguf_find_tensor(g, "output.weight"), &m, &s);
    ASSERT_NEAR(s, 3.0 / 16, 0.003);
    gguf_close(g);

    /* tied: embeddings N(0, 1), output_norm +-3/sqrt(256) with random signs, biases absent */
    ASSERT_OK(gt_make("tiny-qwen3", MICA_DTYPE_F32, 11, NULL, path));
    ASSERT_OK(gguf_open(path, &g, &e));
    gt_stats(gguf_find_tensor(g, "token_embd.weight"), &m, &s);
    ASSERT_NEAR(s, 1.0, 0.01);
    const gguf_tensor *on = gguf_find_tensor(g, "output_norm.weight");
    const float *w = on->data;
    int n_neg = 0;
    double abs_mean = 0;
    for (int i = 0; i < 256; i++) {
        n_neg += w[i] < 0;
        abs_mean += fabs(w[i]) / 256;
    }
    ASSERT_TRUE(n_neg > 96 && n_neg < 160);
    ASSERT_NEAR(abs_mean, 3.0 / 16, 0.01);
    gt_stats(gguf_find_tensor(g, "blk.1.attn_k_norm.weight"), &m, &s);
    ASSERT_NEAR(m, 1.0, 0.03);
    gguf_close(g);
}

/* Text of token id in g. */
static bool gt_token(const gguf_ctx *g, const gguf_value *toks, uint64_t id, const char *want) {
    gguf_value el;
    return gguf_arr_get(g, toks, id, &el) && el.v.s.len == strlen(want) &&
           memcmp(el.v.s.ptr, want, el.v.s.len) == 0;
}

TEST(gen_synthetic_vocab) {
    char path[600];
    gt_path("vocab_spm", path, sizeof path);
    ASSERT_OK(gt_make("tiny-llama", MICA_DTYPE_Q8_0, 1, NULL, path));
    gguf_ctx *g = NULL;
    mica_err e = {0};
    ASSERT_OK(gguf_open(path, &g, &e));
    gguf_value toks, types, scores, el;
    ASSERT_TRUE(gt_str_is(g, "tokenizer.ggml.model", "llama"));
    ASSERT_OK(gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &toks, &e));
    ASSERT_OK(gguf_get_arr(g, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, &types, &e));
    ASSERT_OK(gguf_get_arr(g, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, &scores, &e));
    ASSERT_EQ(toks.v.arr.n, 640);
    ASSERT_TRUE(gt_token(g, &toks, 0, "<unk>") && gt_token(g, &toks, 1, "<s>") && gt_token(g, &toks, 2, "</s>"));
    ASSERT_TRUE(gt_token(g, &toks, 3, "<0x00>") && gt_token(g, &toks, 3 + 0x0A, "<0x0A>") &&
                gt_token(g, &toks, 258, "<0xFF>"));
    ASSERT_TRUE(gguf_arr_get(g, &types, 13, &el) && el.v.i == 6);
    ASSERT_TRUE(gguf_arr_get(g, &types, 0, &el) && el.v.i == 2);
    ASSERT_TRUE(gguf_arr_get(g, &types, 1, &el) && el.v.i == 3);
    ASSERT_TRUE(gguf_arr_get(g, &types, 300, &el) && el.v.i == 1);
    ASSERT_EQ(gt_u(g, "tokenizer.ggml.bos_token_id"), 1);
    ASSERT_EQ(gt_u(g, "tokenizer.ggml.eos_token_id"), 2);
    /* filler pieces: unique, scores non-increasing, some start with U+2581 */
    int n_space = 0;
    float prev = 1e30f;
    for (uint64_t i = 259; i < 640; i++) {
        gguf_value a;
        ASSERT_TRUE(gguf_arr_get(g, &toks, i, &a));
        n_space += a.v.s.len >= 3 && memcmp(a.v.s.ptr, "\xE2\x96\x81", 3) == 0;
        for (uint64_t j = 0; j < i; j++) {
            gguf_value b;
            ASSERT_TRUE(gguf_arr_get(g, &toks, j, &b));
            ASSERT_TRUE(!(a.v.s.len == b.v.s.len && memcmp(a.v.s.ptr, b.v.s.ptr, a.v.s.len) == 0));
        }
        ASSERT_TRUE(gguf_arr_get(g, &scores, i, &el));
        ASSERT_TRUE(el.v.f <= prev);
        prev = (float)el.v.f;
    }
    ASSERT_TRUE(n_space > 20);
    gguf_close(g);

    gt_path("vocab_bpe", path, sizeof path);
    ASSERT_OK(gt_make("tiny-qwen3", MICA_DTYPE_Q8_0, 1, NULL, path));
    ASSERT_OK(gguf_open(path, &g, &e));
    ASSERT_TRUE(gt_str_is(g, "tokenizer.ggml.model", "gpt2"));
    ASSERT_TRUE(gt_str_is(g, "tokenizer.ggml.pre", "qwen2"));
    gguf_value merges;
    ASSERT_OK(gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &toks, &e));
    ASSERT_OK(gguf_get_arr(g, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, &types, &e));
    ASSERT_OK(gguf_get_arr(g, "tokenizer.ggml.merges", GGUF_TYPE_STRING, &merges, &e));
    ASSERT_EQ(toks.v.arr.n, 640);
    /* GPT-2 byte-to-unicode: '!' is itself, ' ' is U+0120, '\n' is U+010A, 0x00 is U+0100, 0xAD is U+0143 */
    ASSERT_TRUE(gt_token(g, &toks, '!', "!") && gt_token(g, &toks, 'a', "a"));
    ASSERT_TRUE(gt_token(g, &toks, ' ', "\xC4\xA0") && gt_token(g, &toks, '\n', "\xC4\x8A"));
    ASSERT_TRUE(gt_token(g, &toks, 0, "\xC4\x80") && gt_token(g, &toks, 0xAD, "\xC5\x83"));
    ASSERT_TRUE(gt_token(g, &toks, 637, "<|endoftext|>") && gt_token(g, &toks, 638, "<|im_start|>") &&
                gt_token(g, &toks, 639, "<|im_end|>"));
    ASSERT_TRUE(gguf_arr_get(g, &types, 639, &el) && el.v.i == 3);
    ASSERT_EQ(gt_u(g, "tokenizer.ggml.eos_token_id"), 639);
    ASSERT_EQ(merges.v.arr.n, 640 - 256 - 3);
    /* merge r is "A B" with A, B tokens and token 256 + r == A B */
    for (uint64_t r = 0; r < merges.v.arr.n; r++) {
        gguf_value m, t;
        ASSERT_TRUE(gguf_arr_get(g, &merges, r, &m));
        const char *sp = memchr(m.v.s.ptr + 1, ' ', m.v.s.len - 1);
        ASSERT_TRUE(sp != NULL);
        size_t la = (size_t)(sp - m.v.s.ptr), lb = m.v.s.len - la - 1;
        ASSERT_TRUE(gguf_arr_get(g, &toks, 256 + r, &t));
        ASSERT_EQ(t.v.s.len, la + lb);
        ASSERT_TRUE(memcmp(t.v.s.ptr, m.v.s.ptr, la) == 0 && memcmp(t.v.s.ptr + la, sp + 1, lb) == 0);
        bool found_a = false, found_b = false;
        for (uint64_t j = 0; j < 256 + r; j++) {
            gguf_value x;
            ASSERT_TRUE(gguf_arr_get(g, &toks, j, &x));
            found_a |= x.v.s.len == la && memcmp(x.v.s.ptr, m.v.s.ptr, la) == 0;
            found_b |= x.v.s.len == lb && memcmp(x.v.s.ptr, sp + 1, lb) == 0;
        }
        ASSERT_TRUE(found_a && found_b);
    }
    gguf_close(g);
}

/* Every tokenizer.* key of src is in dst with the same type and, for arrays, the same elements. */
static bool gt_vocab_copied(const char *src_path, const char *dst_path) {
    gguf_ctx *s = NULL, *d = NULL;
    mica_err e = {0};
    if (gguf_open(src_path, &s, &e) || gguf_open(dst_path, &d, &e)) return false;
    bool ok = true;
    int n_keys = 0;
    for (uint64_t i = 0; ok && i < gguf_n_kv(s); i++) {
        const gguf_kv *kv = gguf_kv_at(s, i);
        if (kv->key.len < 10 || memcmp(kv->key.ptr, "tokenizer.", 10) != 0) continue;
        n_keys++;
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)kv->key.len, kv->key.ptr);
        const gguf_kv *dv = gguf_find(d, key);
        ok = dv && dv->val.type == kv->val.type;
        if (ok && kv->val.type == GGUF_TYPE_ARRAY) {
            ok = dv->val.v.arr.elem == kv->val.v.arr.elem && dv->val.v.arr.n == kv->val.v.arr.n;
            for (uint64_t j = 0; ok && j < kv->val.v.arr.n; j++) {
                gguf_value a, b;
                ok = gguf_arr_get(s, &kv->val, j, &a) && gguf_arr_get(d, &dv->val, j, &b);
                if (ok && a.type == GGUF_TYPE_STRING)
                    ok = a.v.s.len == b.v.s.len && memcmp(a.v.s.ptr, b.v.s.ptr, a.v.s.len) == 0;
                else if (ok)
                    ok = a.v.u == b.v.u;
            }
        } else if (ok && kv->val.type == GGUF_TYPE_STRING) {
            ok = dv->val.v.s.len == kv->val.v.s.len &&
                 memcmp(dv->val.v.s.ptr, kv->val.v.s.ptr, kv->val.v.s.len) == 0;
        } else if (ok) {
            ok = dv->val.v.u == kv->val.v.u;
        }
        if (!ok) fprintf(stderr, "    key %s not copied faithfully\n", key);
    }
    ok = ok && n_keys >= 5;
    gguf_close(s);
    gguf_close(d);
    return ok;
}

TEST(gen_vocab_from_file) {
    char spm[512], qwen[512], path[600];
    test_data_path(spm, sizeof spm, "vocab/ggml-vocab-llama-spm.gguf");
    test_data_path(qwen, sizeof qwen, "vocab/ggml-vocab-qwen2.gguf");
    if (!test_require_file(spm) || !test_require_file(qwen)) return;
    gt_path("vocab_copy", path, sizeof path);
    /* tiny presets adopt the file's token count */
    ASSERT_OK(gt_make("tiny-llama", MICA_DTYPE_Q8_0, 5, spm, path));
    ASSERT_TRUE(gt_vocab_copied(spm, path));
    gt_shape s = gt_tiny[0];
    s.vocab = 32000;
    ASSERT_TRUE(gt_check_model(path, &s, MICA_DTYPE_Q8_0));
    ASSERT_OK(gt_make("tiny-qwen3", MICA_DTYPE_Q8_0, 5, qwen, path));
    ASSERT_TRUE(gt_vocab_copied(qwen, path));
    s = gt_tiny[2];
    s.vocab = 151936;
    ASSERT_TRUE(gt_check_model(path, &s, MICA_DTYPE_Q8_0));
    unlink(path);
    /* full-size presets insist on their own vocabulary size, and fail before writing */
    gen_params p = {.preset = "qwen3-0.6b", .type = MICA_DTYPE_Q4_0, .vocab_path = spm};
    mica_err e = {0};
    ASSERT_EQ(gen_write(&p, path, &e), MICA_ERR_INVALID_ARG);
    ASSERT_TRUE(strstr(e.msg, "32000") != NULL);
    ASSERT_TRUE(access(path, F_OK) != 0);
}

TEST(gen_bad_params) {
    char path[600];
    gt_path("bad", path, sizeof path);
    unlink(path);
    mica_err e = {0};
    gen_params p = {.preset = "no-such-model", .type = MICA_DTYPE_F32};
    ASSERT_EQ(gen_write(&p, path, &e), MICA_ERR_INVALID_ARG);
    p.preset = "tiny-llama";
    p.type = MICA_DTYPE_IQ2_XXS; /* not generated */
    ASSERT_EQ(gen_write(&p, path, &e), MICA_ERR_INVALID_ARG);
    p.type = MICA_DTYPE_F32;
    p.vocab_path = "/nonexistent/vocab.gguf";
    ASSERT_EQ(gen_write(&p, path, &e), MICA_ERR_IO);
    ASSERT_TRUE(access(path, F_OK) != 0);
    ASSERT_TRUE(gen_preset_find("qwen3-0.6b") && gen_preset_find("tinyllama-1.1b"));
    ASSERT_EQ(gen_matrix_type(MICA_DTYPE_Q4_K, 384), MICA_DTYPE_Q8_0);
    ASSERT_EQ(gen_matrix_type(MICA_DTYPE_Q4_K, 512), MICA_DTYPE_Q4_K);
}

/* ---- MoE presets ---- */

/* Expected shape of a tiny MoE preset (from the brief: hidden 256, 2 layers,
 * 8 experts, expert rows a multiple of 256). */
typedef struct gt_moe {
    const char *preset, *arch;
    int64_t heads, kv_heads, experts, used, ff_exp, q_norm, k_norm; /* q/k norm widths, 0: none */
} gt_moe;

static const gt_moe gt_moe_tiny[] = {
    {"tiny-qwen3moe", "qwen3moe", 8, 2, 8, 4, 256, 64, 64},
    {"tiny-olmoe", "olmoe", 4, 4, 8, 4, 256, 256, 256},
    {"tiny-mixtral", "llama", 4, 2, 8, 2, 512, 0, 0},
};

/* Tensor `name` with n_dims dims ne[0..2] and type `type`. */
static bool gt_tensor3(const gguf_ctx *g, const char *name, uint32_t n_dims, int64_t ne0, int64_t ne1,
                       int64_t ne2, uint32_t type) {
    const gguf_tensor *t = gguf_find_tensor(g, name);
    bool ok = t && t->n_dims == n_dims && t->ne[0] == ne0 && t->ne[1] == ne1 && t->ne[2] == ne2 &&
              t->type == type;
    if (!ok) fprintf(stderr, "    %s: missing or wrong shape/type\n", name);
    return ok;
}

TEST(gen_moe_presets) {
    char path[600], k[128], n[96];
    gt_path("moe", path, sizeof path);
    for (size_t i = 0; i < sizeof gt_moe_tiny / sizeof gt_moe_tiny[0]; i++) {
        const gt_moe *s = &gt_moe_tiny[i];
        ASSERT_OK(gt_make(s->preset, MICA_DTYPE_Q4_K, 5, NULL, path));
        gguf_ctx *g = NULL;
        mica_err e = {0};
        ASSERT_OK(gguf_open(path, &g, &e));
        ASSERT_TRUE(gt_str_is(g, "general.architecture", s->arch));
        snprintf(k, sizeof k, "%s.expert_count", s->arch);
        ASSERT_EQ(gt_u(g, k), s->experts);
        snprintf(k, sizeof k, "%s.expert_used_count", s->arch);
        ASSERT_EQ(gt_u(g, k), s->used);
        /* Mixtral files carry the expert width as feed_forward_length */
        snprintf(k, sizeof k, "%s.%s", s->arch, strcmp(s->arch, "llama") ? "expert_feed_forward_length"
                                                                         : "feed_forward_length");
        ASSERT_EQ(gt_u(g, k), s->ff_exp);
        const int64_t d = 256, q = s->heads * 64, kv = s->kv_heads * 64;
        for (int l = 0; l < 2; l++) {
#define GT_N(suffix) (snprintf(n, sizeof n, "blk.%d." suffix, l), n)
            ASSERT_TRUE(gt_tensor3(g, GT_N("ffn_gate_inp.weight"), 2, d, s->experts, 1, MICA_DTYPE_F32));
            ASSERT_TRUE(gt_tensor3(g, GT_N("ffn_gate_exps.weight"), 3, d, s->ff_exp, s->experts, MICA_DTYPE_Q4_K));
            ASSERT_TRUE(gt_tensor3(g, GT_N("ffn_up_exps.weight"), 3, d, s->ff_exp, s->experts, MICA_DTYPE_Q4_K));
            ASSERT_TRUE(gt_tensor3(g, GT_N("ffn_down_exps.weight"), 3, s->ff_exp, d, s->experts, MICA_DTYPE_Q4_K));
            ASSERT_TRUE(gt_tensor3(g, GT_N("attn_q.weight"), 2, d, q, 1, MICA_DTYPE_Q4_K));
            ASSERT_TRUE(gt_tensor3(g, GT_N("attn_k.weight"), 2, d, kv, 1, MICA_DTYPE_Q4_K));
            ASSERT_TRUE(gguf_find_tensor(g, GT_N("ffn_gate.weight")) == NULL);
            if (s->q_norm) {
                ASSERT_TRUE(gt_tensor3(g, GT_N("attn_q_norm.weight"), 1, s->q_norm, 1, 1, MICA_DTYPE_F32));
                ASSERT_TRUE(gt_tensor3(g, GT_N("attn_k_norm.weight"), 1, s->k_norm, 1, 1, MICA_DTYPE_F32));
            } else {
                ASSERT_TRUE(gguf_find_tensor(g, GT_N("attn_q_norm.weight")) == NULL);
            }
#undef GT_N
        }
        /* the experts hold N(0, 1/fan_in) values: check the std of expert 7's gate slice */
        const gguf_tensor *t = gguf_find_tensor(g, "blk.1.ffn_gate_exps.weight");
        kern_table kt;
        kern_table_init(&kt, KERN_ISA_GENERIC);
        int64_t per = d * s->ff_exp;
        float *x = malloc((size_t)per * sizeof *x);
        ASSERT_TRUE(x != NULL);
        kt.ops[t->type].to_float((const uint8_t *)t->data + (size_t)7 * (size_t)t->nbytes / (size_t)s->experts, x, per);
        double s2 = 0;
        for (int64_t j = 0; j < per; j++) s2 += (double)x[j] * x[j];
        free(x);
        ASSERT_NEAR(sqrt(s2 / (double)per), 1.0 / 16.0, 0.05 / 16.0);
        gguf_close(g);
    }
    unlink(path);
}
