/*
 * test_model.c - model loading and sessions through the public API on small
 * GGUF files written here: load errors (unknown architecture, unsupported
 * tensor type, missing tensor, bad hyperparameters) and the session's
 * invariants (batched prompt == token by token, batch splitting, context
 * limits). The forward pass's numbers are checked against the independent
 * reference in tests/ref (tests/scripts/oracle.sh).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "mica.h"
#include "tensor/kern.h"
#include "test.h"

enum { E = 64, F = 128, NH = 4, NKV = 2, HD = 16, V = 300, NL = 2 };

typedef struct tiny_opts {
    const char *arch;
    const char *chat_template; /* NULL: none */
    uint32_t ffn_type;      /* type of blk.*.ffn_up.weight */
    bool drop_attn_k;       /* leave out blk.0.attn_k.weight */
    uint32_t head_count_kv; /* written value */
} tiny_opts;

static float *weight_block(size_t n, uint32_t seed, float scale) {
    float *w = malloc(n * sizeof(float));
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        w[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * 2.0f * scale;
    }
    return w;
}

/* Writes a tiny model; returns the path (static buffer per name). */
static const char *write_tiny(const char *name, const tiny_opts *o) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s.gguf", test_tmp_dir(), name);
    gguf_writer *w = NULL;
    if (gguf_writer_create(&w) != MICA_OK) return NULL;
    char key[128];
#define K(suffix) (snprintf(key, sizeof key, "%s.%s", o->arch, suffix), key)
    gguf_writer_set_str(w, "general.architecture", o->arch);
    gguf_writer_set_u32(w, K("embedding_length"), E);
    gguf_writer_set_u32(w, K("block_count"), NL);
    gguf_writer_set_u32(w, K("feed_forward_length"), F);
    gguf_writer_set_u32(w, K("attention.head_count"), NH);
    gguf_writer_set_u32(w, K("attention.head_count_kv"), o->head_count_kv);
    gguf_writer_set_u32(w, K("context_length"), 64);
    gguf_writer_set_f32(w, K("attention.layer_norm_rms_epsilon"), 1e-5f);
    if (o->chat_template) gguf_writer_set_str(w, "tokenizer.chat_template", o->chat_template);
#undef K
    /* A byte-level vocabulary is not needed: the file has no tokenizer. */
    void *blobs[64];
    int nb = 0;
    uint32_t seed = 1;
    cpu_features cpu;
    cpu_features_detect(&cpu);
    kern_table kt;
    kern_table_init(&kt, KERN_ISA_GENERIC);
#define ADD(tname, type, nd, scale, ...)                                                      \
    do {                                                                                      \
        int64_t ne_[] = {__VA_ARGS__};                                                        \
        size_t n_ = 1;                                                                        \
        for (int d_ = 0; d_ < nd; d_++) n_ *= (size_t)ne_[d_];                                \
        float *f_ = weight_block(n_, seed++, scale);                                          \
        void *data_ = f_;                                                                     \
        if ((type) != MICA_DTYPE_F32) {                                                       \
            uint64_t rb_ = 0;                                                                 \
            dtype_row_bytes(type, ne_[0], &rb_);                                              \
            data_ = malloc(rb_ * (n_ / (size_t)ne_[0]));                                      \
            for (size_t r_ = 0; r_ < n_ / (size_t)ne_[0]; r_++)                               \
                kt.ops[type].from_float(f_ + r_ * (size_t)ne_[0], (uint8_t *)data_ + r_ * rb_, ne_[0]); \
            free(f_);                                                                         \
        }                                                                                     \
        blobs[nb++] = data_;                                                                  \
        gguf_writer_add_tensor(w, tname, type, nd, ne_, NULL, NULL, data_);                   \
    } while (0)
    ADD("token_embd.weight", MICA_DTYPE_F32, 2, 1.0f, E, V);
    ADD("output_norm.weight", MICA_DTYPE_F32, 1, 1.0f, E);
    char tn[64];
    for (int il = 0; il < NL; il++) {
#define TN(s) (snprintf(tn, sizeof tn, "blk.%d.%s", il, s), tn)
        ADD(TN("attn_norm.weight"), MICA_DTYPE_F32, 1, 1.0f, E);
        ADD(TN("attn_q.weight"), MICA_DTYPE_F32, 2, 0.2f, E, NH * HD);
        if (!(o->drop_attn_k && il == 0)) ADD(TN("attn_k.weight"), MICA_DTYPE_F32, 2, 0.2f, E, NKV * HD);
        ADD(TN("attn_v.weight"), MICA_DTYPE_F32, 2, 0.2f, E, NKV * HD);
        ADD(TN("attn_output.weight"), MICA_DTYPE_F32, 2, 0.1f, NH * HD, E);
        ADD(TN("ffn_norm.weight"), MICA_DTYPE_F32, 1, 1.0f, E);
        ADD(TN("ffn_gate.weight"), MICA_DTYPE_F32, 2, 0.2f, E, F);
        if (o->ffn_type == MICA_DTYPE_F32) ADD(TN("ffn_up.weight"), MICA_DTYPE_F32, 2, 0.2f, E, F);
        else {
            /* a type the kernels do not compute: raw bytes; its type is
             * reported before its (here impossible) shape */
            int64_t ne[] = {256, F * E / 256};
            uint64_t rb = 0;
            dtype_row_bytes(o->ffn_type, ne[0], &rb);
            void *raw = calloc(1, rb * (uint64_t)ne[1]);
            blobs[nb++] = raw;
            gguf_writer_add_tensor(w, TN("ffn_up.weight"), o->ffn_type, 2, ne, NULL, NULL, raw);
        }
        ADD(TN("ffn_down.weight"), MICA_DTYPE_F32, 2, 0.1f, F, E);
#undef TN
    }
#undef ADD
    mica_status st = gguf_writer_write(w, path, NULL);
    gguf_writer_free(w);
    for (int i = 0; i < nb; i++) free(blobs[i]);
    return st == MICA_OK ? path : NULL;
}

static tiny_opts defaults(void) { return (tiny_opts){"llama", NULL, MICA_DTYPE_F32, false, NKV}; }

static mica_status open_err(const char *path, char *err, size_t cap) {
    mica_model *m = NULL;
    mica_status st = mica_model_open(path, NULL, &m, err, cap);
    mica_model_free(m);
    return st;
}

TEST(model_load_errors) {
    char err[512];
    tiny_opts o = defaults();
    o.arch = "frobnet";
    const char *p = write_tiny("m_arch", &o);
    ASSERT_TRUE(p);
    ASSERT_EQ(open_err(p, err, sizeof err), MICA_ERR_UNSUPPORTED);
    ASSERT_TRUE(strstr(err, "frobnet") != NULL);

    o = defaults();
    o.ffn_type = MICA_DTYPE_IQ2_XXS; /* a type the kernels cannot compute with */
    ASSERT_TRUE((p = write_tiny("m_type", &o)));
    ASSERT_EQ(open_err(p, err, sizeof err), MICA_ERR_UNSUPPORTED);
    ASSERT_TRUE(strstr(err, "IQ2_XXS") != NULL);

    o = defaults();
    o.drop_attn_k = true;
    ASSERT_TRUE((p = write_tiny("m_missing", &o)));
    ASSERT_EQ(open_err(p, err, sizeof err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err, "blk.0.attn_k.weight") != NULL);

    o = defaults();
    o.head_count_kv = 3; /* does not divide 4 query heads */
    ASSERT_TRUE((p = write_tiny("m_heads", &o)));
    ASSERT_EQ(open_err(p, err, sizeof err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err, "head") != NULL);

    ASSERT_EQ(open_err("/nonexistent/model.gguf", err, sizeof err), MICA_ERR_IO);
}

static float max_abs_diff(const float *a, const float *b, size_t n) {
    float d = 0;
    for (size_t i = 0; i < n; i++) d = fmaxf(d, fabsf(a[i] - b[i]));
    return d;
}

TEST(model_session_batch_equals_sequential) {
    tiny_opts o = defaults();
    const char *p = write_tiny("m_ok", &o);
    ASSERT_TRUE(p);
    char err[512];
    mica_model *m = NULL;
    ASSERT_OK(mica_model_open(p, NULL, &m, err, sizeof err));
    ASSERT_EQ(mica_model_n_vocab(m), V);
    const int32_t toks[] = {5, 17, 299, 0, 42, 42, 7, 100, 3};
    const int n = (int)MICA_ARRAY_LEN(toks);
    float *all = malloc(sizeof(float) * V * n), *seq = malloc(sizeof(float) * V * n);
    float *split = malloc(sizeof(float) * V * n);

    mica_session_params sp = mica_session_params_default();
    sp.n_ctx = 16;
    sp.n_threads = 2;
    mica_session *s = NULL;
    ASSERT_OK(mica_session_create(m, &sp, &s, err, sizeof err));
    ASSERT_OK(mica_session_decode(s, toks, n, all));
    ASSERT_EQ(mica_session_n_past(s), n);
    ASSERT_TRUE(memcmp(mica_session_logits(s), all + (size_t)(n - 1) * V, sizeof(float) * V) == 0);

    /* token by token through the KV cache */
    mica_session_reset(s);
    for (int i = 0; i < n; i++) {
        ASSERT_OK(mica_session_decode(s, &toks[i], 1, NULL));
        memcpy(seq + (size_t)i * V, mica_session_logits(s), sizeof(float) * V);
    }
    ASSERT_TRUE(max_abs_diff(all, seq, (size_t)V * n) < 1e-4f);

    /* context limit: nothing is evaluated past n_ctx */
    int32_t more[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    ASSERT_EQ(mica_session_decode(s, more, 8, NULL), MICA_ERR_LIMIT);
    ASSERT_EQ(mica_session_n_past(s), n);
    ASSERT_TRUE(strstr(mica_session_errmsg(s), "context") != NULL);
    int32_t bad = V;
    ASSERT_EQ(mica_session_decode(s, &bad, 1, NULL), MICA_ERR_INVALID_ARG);
    mica_session_free(s);

    /* batches of 4 (n_batch smaller than the prompt) give the same logits */
    sp.n_batch = 4;
    sp.n_threads = 1;
    ASSERT_OK(mica_session_create(m, &sp, &s, err, sizeof err));
    ASSERT_OK(mica_session_decode(s, toks, n, split));
    ASSERT_TRUE(max_abs_diff(all, split, (size_t)V * n) < 1e-4f);
    mica_session_free(s);

    /* invalid session parameters */
    sp = mica_session_params_default();
    sp.n_ctx = -1;
    ASSERT_EQ(mica_session_create(m, &sp, &s, err, sizeof err), MICA_ERR_INVALID_ARG);
    sp.n_ctx = 8;
    sp.n_threads = 100000;
    ASSERT_EQ(mica_session_create(m, &sp, &s, err, sizeof err), MICA_ERR_INVALID_ARG);
    free(all); free(seq); free(split);
    mica_model_free(m);
}

TEST(model_chat_template) {
    char err[512];
    tiny_opts o = defaults();
    o.chat_template = "{% for m in messages %}[{{ m.role }}]{{ m.content | trim }}\n{% endfor %}"
                      "{% if add_generation_prompt %}[assistant]{% endif %}";
    const char *p = write_tiny("m_tmpl", &o);
    ASSERT_TRUE(p);
    mica_model *m = NULL;
    ASSERT_OK(mica_model_open(p, NULL, &m, err, sizeof err));
    ASSERT_TRUE(mica_model_has_chat_template(m));
    const mica_chat_message msgs[] = {{.role = "system", .content = " Be brief. "}, {.role = "user", .content = "Hi"}};
    char *out = NULL;
    size_t len = 0;
    bool fallback = true;
    ASSERT_OK(mica_chat_render(m, msgs, 2, NULL, true, NULL, &out, &len, &fallback, err, sizeof err));
    ASSERT_STREQ(out, "[system]Be brief.\n[user]Hi\n[assistant]");
    ASSERT_EQ(len, strlen(out));
    ASSERT_TRUE(!fallback);
    free(out);
    mica_model_free(m);

    /* a template that does not parse: the model still loads, rendering reports it */
    o.chat_template = "{% for m in messages %}{{ m.content }";
    ASSERT_TRUE((p = write_tiny("m_tmpl_bad", &o)));
    ASSERT_OK(mica_model_open(p, NULL, &m, err, sizeof err));
    ASSERT_EQ(mica_chat_render(m, msgs, 2, NULL, true, NULL, &out, &len, NULL, err, sizeof err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err, "chat template") != NULL);
    mica_model_free(m);

    /* no template: ChatML */
    o.chat_template = NULL;
    ASSERT_TRUE((p = write_tiny("m_tmpl_none", &o)));
    ASSERT_OK(mica_model_open(p, NULL, &m, err, sizeof err));
    ASSERT_TRUE(!mica_model_has_chat_template(m));
    ASSERT_OK(mica_chat_render(m, msgs + 1, 1, NULL, true, NULL, &out, &len, &fallback, err, sizeof err));
    ASSERT_STREQ(out, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    ASSERT_TRUE(fallback);
    free(out);
    mica_model_free(m);
}
