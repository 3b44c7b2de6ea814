/*
 * test_deepseek.c - the `deepseek2` architecture (src/model/arch_deepseek2.c),
 * the group-limited routing option of moe.c and the YaRN frequencies of
 * ops.c (MODEL_FAMILIES.md 4.2-4.4).
 *
 * Routing and YaRN are checked against examples worked by hand from the
 * formulas in the doc (written out here). The MLA forward pass is checked
 * against the numpy reference in tests/ref/deepseek_ref.py by the oracle
 * suite; here: the split attn_k_b/attn_v_b form and the legacy attn_kv_b
 * form of the same weights give the same logits (so the two tensor layouts
 * are read consistently), a batch equals token-by-token evaluation on the
 * tiny presets, and load errors for inconsistent files name the key or
 * tensor.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../test.h"
#include "convert/gen.h"
#include "gguf/gguf.h"
#include "base/threadpool.h"
#include "mica.h"
#include "model/deepseek2.h"
#include "model/moe.h"
#include "tensor/ops.h"

/* ---- group-limited routing ---- */

/* Logit whose sigmoid is p. */
static float ds_logit(double p) { return (float)log(p / (1.0 - p)); }

static moe_params ds_params(int32_t n_expert, int32_t k, int32_t n_group, int32_t n_group_used,
                            bool norm, float scale) {
    moe_params p = {.n_expert = n_expert, .n_expert_used = k, .n_ff_exp = 32,
                    .gating = MOE_GATING_SIGMOID, .norm_topk = norm, .weights_scale = scale,
                    .n_group = n_group, .n_group_used = n_group_used};
    return p;
}

/*
 * 8 experts in 4 groups of 2, keep 2 groups, top-2, renormalised, x2.5.
 * Scores 0.9 0.1 | 0.6 0.6 | 0.8 0.5 | 0.2 0.3: group scores (sum of the
 * two largest) 1.0, 1.2, 1.3, 0.5 -> groups 2 and 1; among experts 2..5 the
 * best are 4 (0.8) and 2 (0.6, tied with 3: the lower id). Expert 0, the
 * best overall, is not in a kept group.
 */
TEST(ds_route_groups) {
    const double sc[8] = {0.9, 0.1, 0.6, 0.6, 0.8, 0.5, 0.2, 0.3};
    float s[8];
    int32_t ids[2];
    float w[2];
    for (int i = 0; i < 8; i++) s[i] = ds_logit(sc[i]);
    moe_params p = ds_params(8, 2, 4, 2, true, 2.5f);
    moe_route(&p, s, NULL, ids, w);
    ASSERT_EQ(ids[0], 4);
    ASSERT_EQ(ids[1], 2);
    ASSERT_NEAR(w[0], 2.5 * 0.8 / 1.4, 1e-6);
    ASSERT_NEAR(w[1], 2.5 * 0.6 / 1.4, 1e-6);

    /* without groups: experts 0 and 4 */
    for (int i = 0; i < 8; i++) s[i] = ds_logit(sc[i]);
    p = ds_params(8, 2, 0, 0, true, 2.5f);
    moe_route(&p, s, NULL, ids, w);
    ASSERT_EQ(ids[0], 0);
    ASSERT_EQ(ids[1], 4);

    /* bias +0.45 on group 3: biased 0.65 0.75, group score 1.4 -> groups 3
     * (1.4) and 2 (1.3); experts by biased value 4 (0.8), 7 (0.75);
     * weights from the unbiased scores 0.8 and 0.3 */
    const float bias[8] = {0, 0, 0, 0, 0, 0, 0.45f, 0.45f};
    for (int i = 0; i < 8; i++) s[i] = ds_logit(sc[i]);
    p = ds_params(8, 2, 4, 2, true, 2.5f);
    moe_route(&p, s, bias, ids, w);
    ASSERT_EQ(ids[0], 4);
    ASSERT_EQ(ids[1], 7);
    ASSERT_NEAR(w[0], 2.5 * 0.8 / 1.1, 1e-6);
    ASSERT_NEAR(w[1], 2.5 * 0.3 / 1.1, 1e-6);
}

/*
 * The group score is the sum of the two largest values, not the maximum or
 * the total: groups (0.9 0.1 0.45) and (0.7 0.7 0.01) have top-2 sums 1.35 <
 * 1.4, maxima 0.9 > 0.7 and totals 1.45 > 1.41. Keeping one group picks the
 * second, whose best expert is 3 (0.7, tied with 4).
 */
TEST(ds_route_group_top2_sum) {
    const double sc[6] = {0.9, 0.1, 0.45, 0.7, 0.7, 0.01};
    float s[6];
    int32_t id;
    float w;
    for (int i = 0; i < 6; i++) s[i] = ds_logit(sc[i]);
    moe_params p = ds_params(6, 1, 2, 1, false, 1.0f);
    moe_route(&p, s, NULL, &id, &w);
    ASSERT_EQ(id, 3);
    ASSERT_NEAR(w, 0.7, 1e-6);
}

/*
 * Experts outside the kept groups are excluded, not set to 0: with biases
 * that make every selection value negative, the two experts of the kept
 * group are chosen (a 0.0 mask would have chosen the masked ones).
 * Scores 0.2 0.3 | 0.6 0.7, bias -1 -1 | -2 -2: biased -0.8 -0.7 | -1.4 -1.3,
 * group scores -1.5 > -2.7 -> group 0; experts 1 (-0.7), 0 (-0.8).
 */
TEST(ds_route_group_mask_excludes) {
    const double sc[4] = {0.2, 0.3, 0.6, 0.7};
    const float bias[4] = {-1, -1, -2, -2};
    float s[4];
    int32_t ids[2];
    float w[2];
    for (int i = 0; i < 4; i++) s[i] = ds_logit(sc[i]);
    moe_params p = ds_params(4, 2, 2, 1, false, 1.0f);
    moe_route(&p, s, bias, ids, w);
    ASSERT_EQ(ids[0], 1);
    ASSERT_EQ(ids[1], 0);
    ASSERT_NEAR(w[0], 0.3, 1e-6);
    ASSERT_NEAR(w[1], 0.2, 1e-6);
}

/* ---- YaRN ---- */

/*
 * DeepSeek's YaRN (MODEL_FAMILIES.md 4.4): d = 64, base 1e4, s = 40,
 * L0 = 4096, beta 32 / 1 give low = 10 and high = 23 (as the doc states);
 * inv_freq_j = f_j / 40 * ramp_j + f_j * (1 - ramp_j), f_j = 1e4^(-2j/64),
 * ramp_j = clamp((j - 10) / 13, 0, 1).
 */
TEST(ds_yarn_freqs) {
    float f[32];
    ops_rope_yarn_freqs(f, 64, 10000.0f, 40.0f, 4096.0f, 32.0f, 1.0f);
    for (int j = 0; j < 32; j++) {
        const double fe = pow(10000.0, -2.0 * j / 64.0);
        double ramp = (j - 10) / 13.0;
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        const double want = fe / 40.0 * ramp + fe * (1.0 - ramp);
        ASSERT_NEAR(f[j], want, 1e-7 * want);
    }
    ASSERT_NEAR(f[5], pow(10000.0, -10.0 / 64.0), 1e-7);          /* high frequency: unchanged */
    ASSERT_NEAR(f[30], pow(10000.0, -60.0 / 64.0) / 40.0, 1e-10); /* low frequency: interpolated */
    /* the corrections for d = 32 (the tiny presets): corr(32) = 5.24,
     * corr(1) = 11.26 -> low 5, high 12 */
    ops_rope_yarn_freqs(f, 32, 10000.0f, 40.0f, 4096.0f, 32.0f, 1.0f);
    for (int j = 0; j < 16; j++) {
        const double fe = pow(10000.0, -2.0 * j / 32.0);
        double ramp = (j - 5) / 7.0;
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        ASSERT_NEAR(f[j], fe / 40.0 * ramp + fe * (1.0 - ramp), 1e-7 * fe);
    }
    /* factor 1: plain RoPE frequencies */
    ops_rope_yarn_freqs(f, 16, 500.0f, 1.0f, 1.0f, 1.0f, 1.0f);
    for (int j = 0; j < 8; j++) ASSERT_NEAR(f[j], pow(500.0, -2.0 * j / 16.0), 1e-7);
}

/* ops_rope_freqs with plain frequencies == ops_rope; a slice leaves the rest alone. */
TEST(ds_rope_freqs_slice) {
    enum { NH = 3, HD = 24, ROT = 8, OFF = 16 };
    float a[NH * HD], b[NH * HD], f[ROT / 2];
    for (int i = 0; i < NH * HD; i++) a[i] = b[i] = sinf(0.37f * (float)i) + 0.1f;
    ops_rope_yarn_freqs(f, ROT, 10000.0f, 1.0f, 1.0f, 1.0f, 1.0f);
    /* rope on dims [OFF, OFF + ROT) of every head, by hand: adjacent pairs */
    ops_rope_freqs(a + OFF, NH, HD, ROT, 7, f, ROPE_NORM);
    for (int h = 0; h < NH; h++) {
        for (int i = 0; i < HD; i++) {
            const float *x = b + h * HD;
            double want = x[i];
            if (i >= OFF && i < OFF + ROT) {
                const int j = (i - OFF) / 2;
                const double ang = 7.0 * pow(10000.0, -2.0 * j / ROT);
                const double x0 = x[OFF + 2 * j], x1 = x[OFF + 2 * j + 1];
                want = (i - OFF) % 2 == 0 ? x0 * cos(ang) - x1 * sin(ang) : x0 * sin(ang) + x1 * cos(ang);
            }
            ASSERT_NEAR(a[h * HD + i], want, 1e-5);
        }
    }
}

/* ---- hand-written files ---- */

enum { DE = 32, DNH = 2, DNOPE = 16, DROPE = 8, DHV = 16, DR = 24, DFF = 64, DNX = 4, DFX = 32, DV = 50 };

/* A 2-layer deepseek2 file (layer 0 dense, layer 1 MoE), F32, one thing changed at a time. */
typedef struct ds_file {
    bool legacy;            /* attn_kv_b instead of attn_k_b + attn_v_b */
    bool drop_kv_a;         /* leave out blk.1.attn_kv_a_mqa.weight */
    bool drop_kb;           /* leave out attn_k_b (split form) */
    uint32_t kv_lora_key;   /* kv_lora_rank written (0: DR) */
    uint32_t key_length;    /* attention.key_length written in the split form (0: DR + DROPE) */
    uint32_t gating;        /* expert_gating_func (0: absent) */
    uint32_t n_group, n_group_used;
    const char *rope_type;  /* rope.scaling.type (NULL: absent) */
    bool no_kv_lora;        /* leave out attention.kv_lora_rank */
} ds_file;

static float ds_data[8192], ds_kvb[DR * DNH * (DNOPE + DHV)], ds_kb[DNH * DR * DNOPE], ds_vb[DNH * DHV * DR];

static void ds_fill(void) {
    uint32_t x = 12345;
    for (size_t i = 0; i < MICA_ARRAY_LEN(ds_data); i++) {
        x = x * 1664525u + 1013904223u;
        ds_data[i] = ((float)(x >> 8) / 16777216.0f - 0.5f) * 0.6f;
    }
    for (size_t i = 0; i < MICA_ARRAY_LEN(ds_kvb); i++) ds_kvb[i] = ds_data[(i * 7 + 3) % MICA_ARRAY_LEN(ds_data)];
    /* the split form of the same weights (FORMATS.md 4.4): row (h, r) of
     * attn_k_b holds W_kb,h[., r] (nope values); row (h, j) of attn_v_b is
     * row nope + j of head h in attn_kv_b */
    for (int h = 0; h < DNH; h++) {
        for (int r = 0; r < DR; r++)
            for (int i = 0; i < DNOPE; i++)
                ds_kb[(h * DR + r) * DNOPE + i] = ds_kvb[(h * (DNOPE + DHV) + i) * DR + r];
        for (int j = 0; j < DHV; j++)
            for (int r = 0; r < DR; r++) ds_vb[(h * DHV + j) * DR + r] = ds_kvb[(h * (DNOPE + DHV) + DNOPE + j) * DR + r];
    }
}

static mica_status ds_write(const ds_file *o, const char *path) {
    ds_fill();
    gguf_writer *w = NULL;
    if (gguf_writer_create(&w) != MICA_OK) return MICA_ERR_NOMEM;
    gguf_writer_set_str(w, "general.architecture", "deepseek2");
    gguf_writer_set_u32(w, "deepseek2.embedding_length", DE);
    gguf_writer_set_u32(w, "deepseek2.block_count", 2);
    gguf_writer_set_u32(w, "deepseek2.attention.head_count", DNH);
    gguf_writer_set_u32(w, "deepseek2.attention.head_count_kv", 1);
    gguf_writer_set_u32(w, "deepseek2.feed_forward_length", DFF);
    gguf_writer_set_u32(w, "deepseek2.rope.dimension_count", DROPE);
    if (!o->no_kv_lora) gguf_writer_set_u32(w, "deepseek2.attention.kv_lora_rank", o->kv_lora_key ? o->kv_lora_key : DR);
    if (o->legacy) {
        gguf_writer_set_u32(w, "deepseek2.attention.key_length", DNOPE + DROPE);
        gguf_writer_set_u32(w, "deepseek2.attention.value_length", DHV);
    } else {
        gguf_writer_set_u32(w, "deepseek2.attention.key_length", o->key_length ? o->key_length : DR + DROPE);
        gguf_writer_set_u32(w, "deepseek2.attention.value_length", o->kv_lora_key ? o->kv_lora_key : DR);
        gguf_writer_set_u32(w, "deepseek2.attention.key_length_mla", DNOPE + DROPE);
        gguf_writer_set_u32(w, "deepseek2.attention.value_length_mla", DHV);
    }
    gguf_writer_set_u32(w, "deepseek2.leading_dense_block_count", 1);
    gguf_writer_set_u32(w, "deepseek2.expert_count", DNX);
    gguf_writer_set_u32(w, "deepseek2.expert_used_count", 2);
    gguf_writer_set_u32(w, "deepseek2.expert_feed_forward_length", DFX);
    gguf_writer_set_u32(w, "deepseek2.expert_shared_count", 1);
    if (o->gating) gguf_writer_set_u32(w, "deepseek2.expert_gating_func", o->gating);
    if (o->n_group) {
        gguf_writer_set_u32(w, "deepseek2.expert_group_count", o->n_group);
        gguf_writer_set_u32(w, "deepseek2.expert_group_used_count", o->n_group_used);
    }
    if (o->rope_type) {
        gguf_writer_set_str(w, "deepseek2.rope.scaling.type", o->rope_type);
        gguf_writer_set_f32(w, "deepseek2.rope.scaling.factor", 4.0f);
        gguf_writer_set_u32(w, "deepseek2.rope.scaling.original_context_length", 64);
        gguf_writer_set_f32(w, "deepseek2.rope.scaling.yarn_log_multiplier", 0.1f);
    }
    char nm[96];
#define DS_T(buf, nd, ...) gguf_writer_add_tensor(w, nm, MICA_DTYPE_F32, nd, (int64_t[]){__VA_ARGS__}, NULL, NULL, buf)
#define DS_N(...) snprintf(nm, sizeof nm, __VA_ARGS__)
    DS_N("token_embd.weight"); DS_T(ds_data, 2, DE, DV);
    DS_N("output_norm.weight"); DS_T(ds_data, 1, DE);
    DS_N("output.weight"); DS_T(ds_data + 100, 2, DE, DV);
    for (int l = 0; l < 2; l++) {
        DS_N("blk.%d.attn_norm.weight", l); DS_T(ds_data, 1, DE);
        DS_N("blk.%d.attn_q.weight", l); DS_T(ds_data + 1, 2, DE, DNH * (DNOPE + DROPE));
        if (!(o->drop_kv_a && l == 1)) { DS_N("blk.%d.attn_kv_a_mqa.weight", l); DS_T(ds_data + 2, 2, DE, DR + DROPE); }
        DS_N("blk.%d.attn_kv_a_norm.weight", l); DS_T(ds_data + 3, 1, DR);
        if (o->legacy) {
            DS_N("blk.%d.attn_kv_b.weight", l); DS_T(ds_kvb, 2, DR, DNH * (DNOPE + DHV));
        } else {
            if (!o->drop_kb) { DS_N("blk.%d.attn_k_b.weight", l); DS_T(ds_kb, 3, DNOPE, DR, DNH); }
            DS_N("blk.%d.attn_v_b.weight", l); DS_T(ds_vb, 3, DR, DHV, DNH);
        }
        DS_N("blk.%d.attn_output.weight", l); DS_T(ds_data + 4, 2, DNH * DHV, DE);
        DS_N("blk.%d.ffn_norm.weight", l); DS_T(ds_data + 5, 1, DE);
    }
    DS_N("blk.0.ffn_gate.weight"); DS_T(ds_data + 6, 2, DE, DFF);
    DS_N("blk.0.ffn_up.weight"); DS_T(ds_data + 7, 2, DE, DFF);
    DS_N("blk.0.ffn_down.weight"); DS_T(ds_data + 8, 2, DFF, DE);
    DS_N("blk.1.ffn_gate_inp.weight"); DS_T(ds_data + 9, 2, DE, DNX);
    DS_N("blk.1.ffn_gate_exps.weight"); DS_T(ds_data + 10, 3, DE, DFX, DNX);
    DS_N("blk.1.ffn_up_exps.weight"); DS_T(ds_data + 11, 3, DE, DFX, DNX);
    DS_N("blk.1.ffn_down_exps.weight"); DS_T(ds_data + 12, 3, DFX, DE, DNX);
    DS_N("blk.1.ffn_gate_shexp.weight"); DS_T(ds_data + 13, 2, DE, DFX);
    DS_N("blk.1.ffn_up_shexp.weight"); DS_T(ds_data + 14, 2, DE, DFX);
    DS_N("blk.1.ffn_down_shexp.weight"); DS_T(ds_data + 15, 2, DFX, DE);
#undef DS_N
#undef DS_T
    mica_err e = {0};
    mica_status st = gguf_writer_write(w, path, &e);
    gguf_writer_free(w);
    return st;
}

/*
 * Writes and opens o; on success decodes the 5 tokens of ds_toks and copies
 * their logits (5 x DV) to logits (if not NULL). Returns the first error.
 */
static const int32_t ds_toks[5] = {1, 7, 42, 3, 19};

static mica_status ds_open(const ds_file *o, float *logits, char *err, size_t cap) {
    char path[600];
    snprintf(path, sizeof path, "%s/ds_file.gguf", test_tmp_dir());
    mica_status st = ds_write(o, path);
    if (st) return st;
    mica_model *m = NULL;
    st = mica_model_open(path, NULL, &m, err, cap);
    if (st == MICA_OK) {
        mica_session *s = NULL;
        mica_session_params sp = mica_session_params_default();
        sp.n_ctx = 16;
        sp.n_threads = 1;
        st = mica_session_create(m, &sp, &s, err, cap);
        for (int j = 0; st == MICA_OK && j < 5; j++) {
            st = mica_session_decode(s, &ds_toks[j], 1, NULL);
            if (st == MICA_OK && logits) memcpy(logits + j * DV, mica_session_logits(s), sizeof(float) * DV);
            if (st == MICA_OK && !isfinite(mica_session_logits(s)[0])) st = MICA_ERR_INTERNAL;
        }
        mica_session_free(s);
    }
    mica_model_free(m);
    unlink(path);
    return st;
}

/* The same weights as attn_k_b + attn_v_b and as the legacy attn_kv_b give the same logits. */
TEST(ds_split_equals_legacy) {
    static float a[5 * DV], b[5 * DV];
    char err[512] = "";
    ds_file o = {0};
    mica_status st = ds_open(&o, a, err, sizeof err);
    if (st) fprintf(stderr, "    split: %s\n", err);
    ASSERT_OK(st);
    o.legacy = true;
    st = ds_open(&o, b, err, sizeof err);
    if (st) fprintf(stderr, "    legacy: %s\n", err);
    ASSERT_OK(st);
    double scale = 0, diff = 0;
    for (int i = 0; i < 5 * DV; i++) {
        scale = fmax(scale, fabs(a[i]));
        diff = fmax(diff, fabs(a[i] - b[i]));
    }
    ASSERT_TRUE(scale > 0.1);
    ASSERT_TRUE(diff <= 1e-5 * scale);
    /* and YaRN changes them (the rope slice and the softmax scale are used) */
    o.rope_type = "yarn";
    ASSERT_OK(ds_open(&o, b, err, sizeof err));
    diff = 0;
    for (int i = DV; i < 5 * DV; i++) diff = fmax(diff, fabs(a[i] - b[i]));
    ASSERT_TRUE(diff > 1e-3 * scale);
}

TEST(ds_load_errors) {
    char err[512];
    const ds_file good = {0};
    ASSERT_OK(ds_open(&good, NULL, err, sizeof err));

    ds_file o = good;
    o.drop_kv_a = true; /* a missing MLA tensor */
    ASSERT_EQ(ds_open(&o, NULL, err, sizeof err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err, "blk.1.attn_kv_a_mqa.weight") != NULL);

    o = good;
    o.drop_kb = true;
    ASSERT_EQ(ds_open(&o, NULL, err, sizeof err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err, "blk.0.attn_k_b.weight") != NULL);

    o = good;
    o.kv_lora_key = DR + 8; /* kv_lora_rank inconsistent with the tensor shapes */
    o.key_length = DR + 8 + DROPE;
    ASSERT_EQ(ds_open(&o, NULL, err, sizeof err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err, "blk.0.attn_kv_a_mqa.weight") != NULL);

    o = good;
    o.legacy = true;
    o.kv_lora_key = DR - 8;
    ASSERT_EQ(ds_open(&o, NULL, err, sizeof err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err, "blk.0.attn_kv_a_mqa.weight") != NULL);

    o = good;
    o.key_length = DR + DROPE + 1; /* key_length of an MLA file must be kv_lora + rope */
    ASSERT_EQ(ds_open(&o, NULL, err, sizeof err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err, "key_length") != NULL);

    o = good;
    o.no_kv_lora = true;
    ASSERT_EQ(ds_open(&o, NULL, err, sizeof err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err, "deepseek2.attention.kv_lora_rank") != NULL);

    o = good;
    o.n_group = 2;
    o.n_group_used = 3; /* more groups used than exist */
    ASSERT_EQ(ds_open(&o, NULL, err, sizeof err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err, "expert_group_used_count") != NULL);

    o = good;
    o.n_group = 3; /* does not divide 4 experts */
    o.n_group_used = 1;
    ASSERT_EQ(ds_open(&o, NULL, err, sizeof err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err, "expert_group_count") != NULL);

    o = good;
    o.n_group = 4; /* one group of one expert cannot hold top-2 */
    o.n_group_used = 1;
    ASSERT_EQ(ds_open(&o, NULL, err, sizeof err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err, "expert_group_used_count") != NULL);

    o = good;
    o.n_group = 2;
    o.n_group_used = 1;
    o.gating = MOE_GATING_SIGMOID; /* valid: loads and runs */
    ASSERT_OK(ds_open(&o, NULL, err, sizeof err));

    o = good;
    o.gating = 9;
    ASSERT_EQ(ds_open(&o, NULL, err, sizeof err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err, "expert_gating_func") != NULL);

    o = good;
    o.rope_type = "longrope";
    ASSERT_EQ(ds_open(&o, NULL, err, sizeof err), MICA_ERR_UNSUPPORTED);
    ASSERT_TRUE(strstr(err, "rope.scaling.type") != NULL);
}

/* ---- the tiny presets ---- */

/* Prompt in one batch == token by token, and the bytes read per token. */
TEST(ds_models_batch_equals_sequential) {
    const char *presets[] = {"tiny-deepseek2", "tiny-deepseek3"};
    const uint32_t types[] = {MICA_DTYPE_Q8_0, MICA_DTYPE_Q4_0};
    const uint64_t n_expert[] = {8, 16}, n_used[] = {2, 4};
    enum { N = 9 };
    const int32_t toks[N] = {1, 300, 301, 17, 45, 299, 5, 600, 42};
    for (size_t i = 0; i < MICA_ARRAY_LEN(presets); i++) {
        char path[600], err[512] = "";
        snprintf(path, sizeof path, "%s/ds_%s.gguf", test_tmp_dir(), presets[i]);
        gen_params gp = {.preset = presets[i], .type = types[i], .seed = 11};
        mica_err e = {0};
        ASSERT_OK(gen_write(&gp, path, &e));
        mica_model *m = NULL;
        mica_status st = mica_model_open(path, NULL, &m, err, sizeof err);
        if (st) fprintf(stderr, "    %s: %s\n", presets[i], err);
        ASSERT_OK(st);
        /* every tensor, one row of the (untied) embedding, k of n_expert expert slices */
        gguf_ctx *g = NULL;
        ASSERT_OK(gguf_open(path, &g, &e));
        uint64_t want = 0;
        for (uint64_t ti = 0; ti < gguf_n_tensors(g); ti++) {
            const gguf_tensor *t = gguf_tensor_at(g, ti);
            if (strcmp(t->name, "token_embd.weight") == 0) want += t->nbytes / (uint64_t)t->ne[1];
            else if (strstr(t->name, "_exps.")) want += t->nbytes / n_expert[i] * n_used[i];
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

/*
 * The cache holds the compressed latent only (MODEL_FAMILIES.md 4.2):
 * (kv_lora_rank + rope dims) floats per token and layer, shared by all
 * heads. tiny-deepseek3: 3 layers x (128 + 32) x 4 bytes = 1920 bytes per
 * token, against 3 x 4 heads x (96 + 64) x 4 = 7680 for the expanded heads.
 */
TEST(ds_latent_cache_bytes) {
    char path[600], err[512] = "";
    snprintf(path, sizeof path, "%s/ds_kv.gguf", test_tmp_dir());
    gen_params gp = {.preset = "tiny-deepseek3", .type = MICA_DTYPE_Q8_0, .seed = 5};
    mica_err e = {0};
    ASSERT_OK(gen_write(&gp, path, &e));
    mica_model *m = NULL;
    ASSERT_OK(mica_model_open(path, NULL, &m, err, sizeof err));
    mica_pool *pool = NULL;
    ASSERT_OK(pool_create(1, &pool));
    arch_state *st = NULL;
    ASSERT_OK(m->arch->state_create(m, pool, 100, 8, MICA_DTYPE_F32, &st, &e));
    ASSERT_EQ(deepseek2_state_kv_bytes(st), 100 * 1920);
    ASSERT_EQ(deepseek2_kv_bytes(m, 100, MICA_DTYPE_F32), 100 * 1920);
    ASSERT_EQ(mica_model_kv_bytes(m, 1000), 1000 * 1920);
    m->arch->state_free(st);
    pool_free(pool);
    mica_model_free(m);
    unlink(path);
}
