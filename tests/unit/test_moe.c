/*
 * test_moe.c - the mixture-of-experts layer (src/model/moe.h) and the MoE
 * architectures built on it.
 *
 * Routing is checked against examples worked by hand from the formulas of
 * MODEL_FAMILIES.md 2.2 / 3 / 4.3 (softmax or sigmoid, bias for selection
 * only, renormalisation, scaling, ties). The batched layer is checked
 * against a direct evaluation of y = sum_i w_i Expert_i(x) + Shared(x)
 * written here with plain loops, and against itself token by token. The
 * model-level numbers are checked against the numpy reference in tests/ref
 * (tests/scripts/oracle.sh); here: batch == token by token on the tiny
 * presets, and load errors for inconsistent MoE files.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../test.h"
#include "base/threadpool.h"
#include "convert/gen.h"
#include "gguf/gguf.h"
#include "mica.h"
#include "model/moe.h"
#include "tensor/kern.h"

/* ---- routing ---- */

static moe_params tm_params(int32_t n_expert, int32_t k, enum moe_gating g, bool norm, float scale) {
    moe_params p = {.n_expert = n_expert, .n_expert_used = k, .n_ff_exp = 32, .gating = g,
                    .norm_topk = norm, .weights_scale = scale};
    return p;
}

/* logits ln(1..4): softmax = (0.1, 0.2, 0.3, 0.4); top-2 = experts 3, 2. */
TEST(moe_route_softmax) {
    float s[4] = {logf(1.0f), logf(2.0f), logf(3.0f), logf(4.0f)};
    int32_t ids[2];
    float w[2];
    moe_params p = tm_params(4, 2, MOE_GATING_SOFTMAX, false, 1.0f);
    moe_route(&p, s, NULL, ids, w);
    ASSERT_EQ(ids[0], 3);
    ASSERT_EQ(ids[1], 2);
    ASSERT_NEAR(w[0], 0.4, 1e-6); /* raw probabilities (OLMoE) */
    ASSERT_NEAR(w[1], 0.3, 1e-6);
    ASSERT_NEAR(s[0], 0.1, 1e-6); /* the scores are left in place */

    float s2[4] = {logf(1.0f), logf(2.0f), logf(3.0f), logf(4.0f)};
    p = tm_params(4, 2, MOE_GATING_SOFTMAX, true, 1.0f);
    moe_route(&p, s2, NULL, ids, w);
    ASSERT_NEAR(w[0], 4.0 / 7.0, 1e-6); /* renormalised (Qwen3-MoE, Mixtral) */
    ASSERT_NEAR(w[1], 3.0 / 7.0, 1e-6);

    float s3[4] = {logf(1.0f), logf(2.0f), logf(3.0f), logf(4.0f)};
    p = tm_params(4, 2, MOE_GATING_SOFTMAX, true, 2.5f);
    moe_route(&p, s3, NULL, ids, w);
    ASSERT_NEAR(w[0], 2.5 * 4.0 / 7.0, 1e-6); /* scaling after renormalisation */
    ASSERT_NEAR(w[1], 2.5 * 3.0 / 7.0, 1e-6);
}

/* Sigmoid gating; the bias changes which experts are chosen, not their weights. */
TEST(moe_route_sigmoid_bias) {
    const float logits[4] = {0.0f, 1.0f, -1.0f, 2.0f};
    const double sig[4] = {0.5, 1.0 / (1.0 + exp(-1.0)), 1.0 / (1.0 + exp(1.0)), 1.0 / (1.0 + exp(-2.0))};
    int32_t ids[2];
    float w[2], s[4];
    moe_params p = tm_params(4, 2, MOE_GATING_SIGMOID, false, 1.0f);

    /* no bias: sigmoid 0.5, 0.731, 0.269, 0.881 -> experts 3, 1 */
    memcpy(s, logits, sizeof s);
    moe_route(&p, s, NULL, ids, w);
    ASSERT_EQ(ids[0], 3);
    ASSERT_EQ(ids[1], 1);
    ASSERT_NEAR(w[0], sig[3], 1e-6);
    ASSERT_NEAR(w[1], sig[1], 1e-6);

    /* bias +1 on expert 2: selection values 0.5, 0.731, 1.269, 0.881 ->
     * experts 2, 3, weighted by their unbiased scores */
    const float bias[4] = {0.0f, 0.0f, 1.0f, 0.0f};
    memcpy(s, logits, sizeof s);
    moe_route(&p, s, bias, ids, w);
    ASSERT_EQ(ids[0], 2);
    ASSERT_EQ(ids[1], 3);
    ASSERT_NEAR(w[0], sig[2], 1e-6);
    ASSERT_NEAR(w[1], sig[3], 1e-6);

    /* the same with renormalisation and a scale (DeepSeek-V3 style) */
    p = tm_params(4, 2, MOE_GATING_SIGMOID, true, 2.5f);
    memcpy(s, logits, sizeof s);
    moe_route(&p, s, bias, ids, w);
    ASSERT_NEAR(w[0], 2.5 * sig[2] / (sig[2] + sig[3]), 1e-6);
    ASSERT_NEAR(w[1], 2.5 * sig[3] / (sig[2] + sig[3]), 1e-6);

    /* a negative bias can drop the best-scoring expert */
    const float bias2[4] = {0.0f, 0.0f, 0.0f, -0.5f};
    p = tm_params(4, 1, MOE_GATING_SIGMOID, false, 1.0f);
    memcpy(s, logits, sizeof s);
    moe_route(&p, s, bias2, ids, w);
    ASSERT_EQ(ids[0], 1); /* 0.731 beats 0.881 - 0.5 */
    ASSERT_NEAR(w[0], sig[1], 1e-6);
}

/* Equal values pick the lower id; k == n_expert picks everything. */
TEST(moe_route_ties_and_all) {
    float s[5] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
    int32_t ids[5];
    float w[5];
    moe_params p = tm_params(5, 3, MOE_GATING_SOFTMAX, false, 1.0f);
    moe_route(&p, s, NULL, ids, w);
    ASSERT_EQ(ids[0], 0);
    ASSERT_EQ(ids[1], 1);
    ASSERT_EQ(ids[2], 2);
    for (int j = 0; j < 3; j++) ASSERT_NEAR(w[j], 0.2, 1e-6);

    /* tie between experts 1 and 3 for the second place */
    float t[4] = {0.0f, 1.0f, 2.0f, 1.0f};
    p = tm_params(4, 2, MOE_GATING_SOFTMAX, true, 1.0f);
    moe_route(&p, t, NULL, ids, w);
    ASSERT_EQ(ids[0], 2);
    ASSERT_EQ(ids[1], 1);

    /* top-k = n_expert: all experts by decreasing score; renormalised
     * weights equal the softmax itself */
    float u[4] = {0.3f, -1.0f, 2.0f, 0.0f};
    double z = exp(0.3) + exp(-1.0) + exp(2.0) + exp(0.0);
    p = tm_params(4, 4, MOE_GATING_SOFTMAX, true, 1.0f);
    moe_route(&p, u, NULL, ids, w);
    const int32_t order[4] = {2, 0, 3, 1};
    const double e[4] = {exp(2.0) / z, exp(0.3) / z, exp(0.0) / z, exp(-1.0) / z};
    for (int j = 0; j < 4; j++) {
        ASSERT_EQ(ids[j], order[j]);
        ASSERT_NEAR(w[j], e[j], 1e-6);
    }
}

/* ---- expert views ---- */

TEST(moe_expert_view_offsets) {
    static uint8_t buf[4 * 3 * 2 * 34]; /* 4 experts x 3 rows of 64 Q8_0 values (2 blocks of 34 bytes) */
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)i;
    tensor_view t = {.name = "x", .type = MICA_DTYPE_Q8_0, .ne = {64, 3, 4, 1}, .row_bytes = 68, .data = buf};
    for (int32_t e = 0; e < 4; e++) {
        tensor_view v;
        moe_expert_view(&t, e, &v);
        ASSERT_TRUE(v.data == buf + (size_t)e * 3 * 68);
        ASSERT_EQ(v.ne[0], 64);
        ASSERT_EQ(v.ne[1], 3);
        ASSERT_EQ(v.ne[2], 1);
        ASSERT_EQ(v.row_bytes, 68);
        ASSERT_EQ(v.type, MICA_DTYPE_Q8_0);
    }
    /* down has the other orientation: ne {F, E, n_expert} */
    static float g[2 * 8 * 3], u[2 * 8 * 3], d[8 * 2 * 3];
    moe_layer L = {
        .gate_exps = {.type = MICA_DTYPE_F32, .ne = {2, 8, 3, 1}, .row_bytes = 8, .data = g},
        .up_exps = {.type = MICA_DTYPE_F32, .ne = {2, 8, 3, 1}, .row_bytes = 8, .data = u},
        .down_exps = {.type = MICA_DTYPE_F32, .ne = {8, 2, 3, 1}, .row_bytes = 32, .data = d},
    };
    moe_expert ex;
    moe_expert_get(&L, 2, &ex);
    ASSERT_TRUE(ex.gate.data == g + 2 * 16);
    ASSERT_TRUE(ex.up.data == u + 2 * 16);
    ASSERT_TRUE(ex.down.data == d + 2 * 16);
    ASSERT_EQ(ex.down.ne[0], 8);
    ASSERT_EQ(ex.down.ne[1], 2);
}

/* ---- the layer against a direct evaluation ---- */

enum { TM_E = 64, TM_F = 32, TM_NX = 6, TM_K = 2, TM_FS = 64, TM_N = 7 };

static void tm_fill(float *x, size_t n, uint32_t seed, float scale) {
    uint32_t s = seed * 2654435761u + 7;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * 2.0f * scale;
    }
}

/* y[E] += w * down(silu(gate x) * up x), weights row-major [out][in]. */
static void tm_ref_ffn(const float *gate, const float *up, const float *down, int64_t F,
                       const float *x, double w, double *y) {
    double h[TM_FS];
    for (int64_t r = 0; r < F; r++) {
        double a = 0, b = 0;
        for (int i = 0; i < TM_E; i++) {
            a += (double)gate[r * TM_E + i] * x[i];
            b += (double)up[r * TM_E + i] * x[i];
        }
        h[r] = a / (1.0 + exp(-a)) * b;
    }
    for (int o = 0; o < TM_E; o++) {
        double acc = 0;
        for (int64_t r = 0; r < F; r++) acc += (double)down[o * F + r] * h[r];
        y[o] += w * acc;
    }
}

TEST(moe_forward_matches_direct) {
    static float router[TM_NX * TM_E], gate[TM_NX * TM_F * TM_E], up[TM_NX * TM_F * TM_E],
        down[TM_NX * TM_E * TM_F], sg[TM_FS * TM_E], su[TM_FS * TM_E], sd[TM_E * TM_FS],
        x[TM_N * TM_E], out[TM_N * TM_E], one[TM_E];
    tm_fill(router, MICA_ARRAY_LEN(router), 1, 1.0f);
    tm_fill(gate, MICA_ARRAY_LEN(gate), 2, 0.3f);
    tm_fill(up, MICA_ARRAY_LEN(up), 3, 0.3f);
    tm_fill(down, MICA_ARRAY_LEN(down), 4, 0.3f);
    tm_fill(sg, MICA_ARRAY_LEN(sg), 5, 0.3f);
    tm_fill(su, MICA_ARRAY_LEN(su), 6, 0.3f);
    tm_fill(sd, MICA_ARRAY_LEN(sd), 7, 0.3f);
    tm_fill(x, MICA_ARRAY_LEN(x), 8, 1.0f);
    const float bias[TM_NX] = {0.0f, 0.1f, -0.1f, 0.05f, 0.0f, 0.2f};
#define TM_VIEW(d, n0, n1, n2) {.name = #d, .type = MICA_DTYPE_F32, .ne = {n0, n1, n2, 1}, \
                                .row_bytes = (n0) * 4, .data = d}
    moe_layer L = {
        .router = TM_VIEW(router, TM_E, TM_NX, 1), .probs_b = TM_VIEW(bias, TM_NX, 1, 1),
        .gate_exps = TM_VIEW(gate, TM_E, TM_F, TM_NX), .up_exps = TM_VIEW(up, TM_E, TM_F, TM_NX),
        .down_exps = TM_VIEW(down, TM_F, TM_E, TM_NX),
        .gate_shexp = TM_VIEW(sg, TM_E, TM_FS, 1), .up_shexp = TM_VIEW(su, TM_E, TM_FS, 1),
        .down_shexp = TM_VIEW(sd, TM_FS, TM_E, 1),
    };
#undef TM_VIEW
    kern_table kt;
    kern_table_init(&kt, KERN_ISA_GENERIC);
    mica_pool *pool = NULL;
    ASSERT_OK(pool_create(2, &pool));
    ops_ctx c = {.pool = pool, .kt = &kt, .qbuf = NULL, .qbuf_cap = 0};
    moe_params p = {.n_expert = TM_NX, .n_expert_used = TM_K, .n_ff_exp = TM_F, .n_ff_shexp = TM_FS,
                    .gating = MOE_GATING_SIGMOID, .norm_topk = true, .weights_scale = 1.5f};
    moe_scratch s;
    mica_err err = {0};
    ASSERT_OK(moe_scratch_init(&s, &p, TM_E, TM_N, &err));
    moe_forward(&c, &p, &L, &s, x, TM_N, TM_E, out);

    for (int t = 0; t < TM_N; t++) {
        const float *xt = x + t * TM_E;
        /* direct routing: sigmoid scores, top-2 of score + bias, renormalised, x1.5 */
        double sc[TM_NX], sel[TM_NX];
        for (int e = 0; e < TM_NX; e++) {
            double z = 0;
            for (int i = 0; i < TM_E; i++) z += (double)router[e * TM_E + i] * xt[i];
            sc[e] = 1.0 / (1.0 + exp(-z));
            sel[e] = sc[e] + bias[e];
        }
        int best[TM_K];
        for (int j = 0; j < TM_K; j++) {
            best[j] = -1;
            for (int e = 0; e < TM_NX; e++) {
                if ((j > 0 && e == best[0]) || (best[j] >= 0 && sel[e] <= sel[best[j]])) continue;
                best[j] = e;
            }
        }
        double wsum = sc[best[0]] + sc[best[1]];
        double y[TM_E] = {0};
        for (int j = 0; j < TM_K; j++) {
            int e = best[j];
            tm_ref_ffn(gate + e * TM_F * TM_E, up + e * TM_F * TM_E, down + e * TM_E * TM_F, TM_F, xt,
                       1.5 * sc[e] / wsum, y);
        }
        tm_ref_ffn(sg, su, sd, TM_FS, xt, 1.0, y);
        for (int i = 0; i < TM_E; i++) ASSERT_NEAR(out[t * TM_E + i], y[i], 1e-4 + 1e-4 * fabs(y[i]));

        /* the same token alone gives the same bits as inside the batch */
        moe_forward(&c, &p, &L, &s, xt, 1, TM_E, one);
        ASSERT_TRUE(memcmp(one, out + t * TM_E, sizeof one) == 0);
    }
    moe_scratch_deinit(&s);
    pool_free(pool);
}

/* ---- models ---- */

/* Prompt in one batch == token by token, on each tiny MoE preset. */
TEST(moe_models_batch_equals_sequential) {
    const char *presets[] = {"tiny-qwen3moe", "tiny-olmoe", "tiny-mixtral"};
    const uint32_t types[] = {MICA_DTYPE_Q8_0, MICA_DTYPE_Q4_0, MICA_DTYPE_F32};
    enum { N = 9 };
    const int32_t toks[N] = {1, 300, 301, 17, 45, 299, 5, 600, 42};
    for (size_t i = 0; i < MICA_ARRAY_LEN(presets); i++) {
        char path[600], err[512] = "";
        snprintf(path, sizeof path, "%s/moe_%s.gguf", test_tmp_dir(), presets[i]);
        gen_params gp = {.preset = presets[i], .type = types[i], .seed = 11};
        mica_err e = {0};
        ASSERT_OK(gen_write(&gp, path, &e));
        mica_model *m = NULL;
        mica_status st = mica_model_open(path, NULL, &m, err, sizeof err);
        if (st) fprintf(stderr, "    %s: %s\n", presets[i], err);
        ASSERT_OK(st);
        /* bytes read per token: every tensor, the (untied) embedding's one
         * row, and k of the n_expert slices of each expert tensor */
        const uint64_t used[] = {4, 4, 2};
        gguf_ctx *g = NULL;
        ASSERT_OK(gguf_open(path, &g, &e));
        uint64_t want = 0;
        for (uint64_t ti = 0; ti < gguf_n_tensors(g); ti++) {
            const gguf_tensor *t = gguf_tensor_at(g, ti);
            if (strcmp(t->name, "token_embd.weight") == 0) want += t->nbytes / (uint64_t)t->ne[1];
            else if (strstr(t->name, "_exps.")) want += t->nbytes / 8 * used[i];
            else want += t->nbytes;
        }
        gguf_close(g);
        ASSERT_EQ(mica_model_bytes_per_token(m), want);
        const int32_t V = mica_model_n_vocab(m);
        float *all = malloc(sizeof(float) * (size_t)V * N), *seq = malloc(sizeof(float) * (size_t)V * N);
        ASSERT_TRUE(all && seq);
        mica_session_params sp = mica_session_params_default();
        sp.n_ctx = 64;
        sp.n_threads = 2;
        mica_session *s = NULL;
        ASSERT_OK(mica_session_create(m, &sp, &s, err, sizeof err));
        ASSERT_OK(mica_session_decode(s, toks, N, all));
        mica_session_reset(s);
        for (int j = 0; j < N; j++) {
            ASSERT_OK(mica_session_decode(s, &toks[j], 1, NULL));
            memcpy(seq + (size_t)j * V, mica_session_logits(s), sizeof(float) * (size_t)V);
        }
        bool same = memcmp(all, seq, sizeof(float) * (size_t)V * N) == 0;
        bool finite = true;
        for (size_t k = 0; k < (size_t)V * N; k++) finite &= isfinite(all[k]) != 0;
        if (!same) fprintf(stderr, "    %s: batch and sequential logits differ\n", presets[i]);
        mica_session_free(s);
        mica_model_free(m);
        free(all);
        free(seq);
        unlink(path);
        ASSERT_TRUE(same);
        ASSERT_TRUE(finite);
    }
}

/* A small qwen3moe file written by hand, with one thing wrong at a time. */
typedef struct tm_bad {
    uint32_t used;          /* expert_used_count */
    uint32_t gating;        /* expert_gating_func; 0: absent */
    bool drop_router;       /* leave out blk.0.ffn_gate_inp.weight */
    int64_t exps_experts;   /* ne[2] of ffn_gate_exps */
} tm_bad;

static mica_status tm_open_bad(const tm_bad *o, char *err, size_t cap) {
    enum { E = 32, HD = 16, NH = 2, NKV = 1, NX = 4, FX = 32, V = 50 };
    static float data[E * FX * 8];
    tm_fill(data, MICA_ARRAY_LEN(data), 9, 0.2f);
    char path[600];
    snprintf(path, sizeof path, "%s/moe_bad.gguf", test_tmp_dir());
    gguf_writer *w = NULL;
    if (gguf_writer_create(&w) != MICA_OK) return MICA_ERR_NOMEM;
    gguf_writer_set_str(w, "general.architecture", "qwen3moe");
    gguf_writer_set_u32(w, "qwen3moe.embedding_length", E);
    gguf_writer_set_u32(w, "qwen3moe.block_count", 1);
    gguf_writer_set_u32(w, "qwen3moe.attention.head_count", NH);
    gguf_writer_set_u32(w, "qwen3moe.attention.head_count_kv", NKV);
    gguf_writer_set_u32(w, "qwen3moe.attention.key_length", HD);
    gguf_writer_set_u32(w, "qwen3moe.attention.value_length", HD);
    gguf_writer_set_u32(w, "qwen3moe.feed_forward_length", 64);
    gguf_writer_set_u32(w, "qwen3moe.expert_count", NX);
    gguf_writer_set_u32(w, "qwen3moe.expert_used_count", o->used);
    gguf_writer_set_u32(w, "qwen3moe.expert_feed_forward_length", FX);
    if (o->gating) gguf_writer_set_u32(w, "qwen3moe.expert_gating_func", o->gating);
#define TM_T(name, nd, ...) gguf_writer_add_tensor(w, name, MICA_DTYPE_F32, nd, (int64_t[]){__VA_ARGS__}, NULL, NULL, data)
    TM_T("token_embd.weight", 2, E, V);
    TM_T("output_norm.weight", 1, E);
    TM_T("blk.0.attn_norm.weight", 1, E);
    TM_T("blk.0.attn_q.weight", 2, E, NH * HD);
    TM_T("blk.0.attn_k.weight", 2, E, NKV * HD);
    TM_T("blk.0.attn_v.weight", 2, E, NKV * HD);
    TM_T("blk.0.attn_output.weight", 2, NH * HD, E);
    TM_T("blk.0.attn_q_norm.weight", 1, HD);
    TM_T("blk.0.attn_k_norm.weight", 1, HD);
    TM_T("blk.0.ffn_norm.weight", 1, E);
    if (!o->drop_router) TM_T("blk.0.ffn_gate_inp.weight", 2, E, NX);
    TM_T("blk.0.ffn_gate_exps.weight", 3, E, FX, o->exps_experts);
    TM_T("blk.0.ffn_up_exps.weight", 3, E, FX, NX);
    TM_T("blk.0.ffn_down_exps.weight", 3, FX, E, NX);
#undef TM_T
    mica_err e = {0};
    mica_status st = gguf_writer_write(w, path, &e);
    gguf_writer_free(w);
    if (st) return st;
    mica_model *m = NULL;
    st = mica_model_open(path, NULL, &m, err, cap);
    if (st == MICA_OK) { /* a usable model: run a few tokens */
        mica_session *s = NULL;
        mica_session_params sp = mica_session_params_default();
        sp.n_ctx = 16;
        sp.n_threads = 1;
        const int32_t toks[3] = {1, 2, 3};
        st = mica_session_create(m, &sp, &s, err, cap);
        if (st == MICA_OK) st = mica_session_decode(s, toks, 3, NULL);
        if (st == MICA_OK && !isfinite(mica_session_logits(s)[0])) st = MICA_ERR_INTERNAL;
        mica_session_free(s);
    }
    mica_model_free(m);
    unlink(path);
    return st;
}

TEST(moe_load_errors) {
    char err[512];
    const tm_bad good = {.used = 2, .exps_experts = 4};
    ASSERT_OK(tm_open_bad(&good, err, sizeof err));

    tm_bad o = good;
    o.used = 5;
    ASSERT_EQ(tm_open_bad(&o, err, sizeof err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err, "expert_used_count") != NULL);

    o = good;
    o.used = 0;
    ASSERT_EQ(tm_open_bad(&o, err, sizeof err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err, "expert_used_count") != NULL);

    o = good;
    o.gating = 7;
    ASSERT_EQ(tm_open_bad(&o, err, sizeof err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err, "expert_gating_func") != NULL);

    o = good;
    o.gating = MOE_GATING_SIGMOID; /* a known function loads */
    ASSERT_OK(tm_open_bad(&o, err, sizeof err));

    o = good;
    o.drop_router = true;
    ASSERT_EQ(tm_open_bad(&o, err, sizeof err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err, "blk.0.ffn_gate_inp.weight") != NULL);

    o = good;
    o.exps_experts = 3;
    ASSERT_EQ(tm_open_bad(&o, err, sizeof err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err, "blk.0.ffn_gate_exps.weight") != NULL);
}
