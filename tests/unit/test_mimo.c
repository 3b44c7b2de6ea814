/*
 * test_mimo.c - the mimo2 architecture (src/model/arch_mimo2.c, MiMo-V2-Flash,
 * MODEL_FAMILIES.md 5-6) and the hybrid KV cache (src/model/kv_cache.h).
 *
 * The forward pass itself is checked against the numpy reference
 * (tests/ref/mimo_ref.py, oracle cases logits_mimo2_* / greedy_mimo2_*).
 * Here:
 *  - what the loader makes of tiny-mimo2 (per-block kinds, head counts, rope
 *    bases, sinks, MoE, MTP blocks), against the preset's definition;
 *  - the sliding-window acceptance test on tiny-mimo2 (window 8) at
 *    positions up to 12x the window: a ring-buffer cache and a cache that
 *    keeps every position give bit-identical logits (the window mask, not
 *    the storage, defines the result), also token by token through a ring
 *    of exactly the window; and the allocations equal the cache formula,
 *    recomputed here from the shapes;
 *  - a Q8_0 KV cache: its size, and logits close to the F32 cache's;
 *  - load errors on hand-written files: a pattern whose length is not
 *    block_count, sinks of the wrong shape, missing tensors (attention, MTP),
 *    bad counts; the scalar-period pattern and the value-scale default.
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
#include "model/kv_cache.h"
#include "model/mimo2.h"
#include "model/model.h"

/* tiny-mimo2 as defined in src/convert/gen.c: 4 main blocks + 1 MTP, window 8. */
enum { TM_BLOCKS = 5, TM_WINDOW = 8, TM_DK = 96, TM_DV = 64, TM_HEADS = 4 };

static mica_model *mm_gen_open(const char *preset, uint32_t type, const char *tag) {
    char path[600], err[512] = "";
    snprintf(path, sizeof path, "%s/mimo_%s_%s.gguf", test_tmp_dir(), preset, tag);
    gen_params gp = {.preset = preset, .type = type, .seed = 5};
    mica_err e = {0};
    if (gen_write(&gp, path, &e) != MICA_OK) {
        fprintf(stderr, "    gen: %s\n", e.msg);
        return NULL;
    }
    mica_model *m = NULL;
    if (mica_model_open(path, NULL, &m, err, sizeof err) != MICA_OK) fprintf(stderr, "    open: %s\n", err);
    unlink(path);
    return m;
}

TEST(mimo_tiny_layout) {
    mica_model *m = mm_gen_open("tiny-mimo2", MICA_DTYPE_F32, "layout");
    ASSERT_TRUE(m != NULL);
    ASSERT_STREQ(mica_model_arch(m), "mimo2");
    ASSERT_EQ(mimo2_n_blocks(m), TM_BLOCKS);
    ASSERT_EQ(mimo2_n_nextn(m), 1);
    ASSERT_EQ(m->hp.n_layer, 4); /* the forward pass runs the main blocks only */
    ASSERT_EQ(mimo2_window(m), TM_WINDOW);
    ASSERT_NEAR(mimo2_value_scale(m), 0.707, 1e-7);
    ASSERT_EQ(m->hp.head_dim, TM_DK);
    ASSERT_EQ(m->hp.head_dim_v, TM_DV);
    ASSERT_EQ(m->hp.n_rot, 32);
    for (uint32_t il = 0; il < TM_BLOCKS; il++) {
        mimo2_layer_info in;
        mimo2_layer_get(m, il, &in);
        const bool swa = il != 0; /* block 0 global, the rest (and the MTP block) sliding */
        ASSERT_EQ(in.is_swa, swa);
        ASSERT_EQ(in.has_sinks, swa);
        ASSERT_EQ(in.is_moe, il >= 1 && il <= 3);
        ASSERT_EQ(in.is_nextn, il == 4);
        ASSERT_EQ(in.n_head, TM_HEADS);
        ASSERT_EQ(in.n_head_kv, swa ? 2 : 1);
        ASSERT_NEAR(in.rope_base, swa ? 1e4 : 5e6, 1e-3);
    }
    /* per token: every tensor outside the MTP block (blk.4), one row of the
     * untied embedding, 4 of the 8 slices of each expert tensor */
    uint64_t want_bytes = 0, want_active = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(m->gguf); i++) {
        const gguf_tensor *t = gguf_tensor_at(m->gguf, i);
        const uint64_t n = (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
        if (strncmp(t->name, "blk.4.", 6) == 0) continue;
        if (strcmp(t->name, "token_embd.weight") == 0) want_bytes += t->nbytes / (uint64_t)t->ne[1];
        else if (strstr(t->name, "_exps.")) want_bytes += t->nbytes / 8 * 4;
        else want_bytes += t->nbytes;
        want_active += strstr(t->name, "_exps.") ? n / 8 * 4 : n;
    }
    ASSERT_EQ(mica_model_bytes_per_token(m), want_bytes);
    ASSERT_EQ(m->n_params_active, want_active);
    mica_model_free(m);
}

/* K/V bytes of tiny-mimo2's main blocks, from the shapes: rows per block
 * times row bytes (F32: 4 per element; Q8_0: 34 per 32). */
static uint64_t mm_kv_formula(int32_t n_ctx, int32_t n_batch, bool ring, bool q8) {
    uint64_t total = 0;
    for (int il = 0; il < 4; il++) {
        const bool swa = il != 0;
        const uint64_t nkv = swa ? 2 : 1;
        uint64_t rows = (uint64_t)n_ctx;
        if (swa && ring && TM_WINDOW + n_batch - 1 < n_ctx) rows = TM_WINDOW + n_batch - 1;
        const uint64_t elems = nkv * (TM_DK + TM_DV);
        total += rows * (q8 ? elems / 32 * 34 : elems * 4);
    }
    return total;
}

/* Runs tokens[0..n) through a state in batches of `batch`; all logits into out. */
static void mm_run(const mica_model *m, arch_state *st, const int32_t *tokens, int32_t n, int32_t batch,
                   float *out) {
    const int32_t V = (int32_t)m->hp.n_vocab;
    for (int32_t p = 0; p < n; p += batch) {
        const int32_t k = MICA_MIN(batch, n - p);
        m->arch->forward(m, st, tokens + p, k, p, out + (size_t)p * V, true);
    }
}

TEST(mimo_swa_ring_equals_full) {
    mica_model *m = mm_gen_open("tiny-mimo2", MICA_DTYPE_Q8_0, "swa");
    ASSERT_TRUE(m != NULL);
    enum { N = 100, CTX = 128, B = 16 };
    int32_t toks[N];
    for (int i = 0; i < N; i++) toks[i] = 3 + (i * 37 + 11) % 600;
    const int32_t V = (int32_t)m->hp.n_vocab;
    float *ring = malloc(sizeof(float) * (size_t)N * V), *full = malloc(sizeof(float) * (size_t)N * V);
    float *seq = malloc(sizeof(float) * (size_t)N * V);
    ASSERT_TRUE(ring && full && seq);
    mica_pool *pool = NULL;
    ASSERT_OK(pool_create(2, &pool));
    mica_err e = {0};
    arch_state *sr = NULL, *sf = NULL, *s1 = NULL;
    const mimo2_state_opts o_ring = {.kv_type = MICA_DTYPE_F32}, o_full = {.kv_type = MICA_DTYPE_F32, .swa_full = true};
    ASSERT_OK(mimo2_state_create(m, pool, CTX, B, &o_ring, &sr, &e));
    ASSERT_OK(mimo2_state_create(m, pool, CTX, B, &o_full, &sf, &e));
    ASSERT_OK(mimo2_state_create(m, pool, CTX, 1, &o_ring, &s1, &e));
    /* memory: measured allocations == the formula == the model's own estimate */
    ASSERT_EQ(mimo2_state_kv_bytes(sr), mm_kv_formula(CTX, B, true, false));
    ASSERT_EQ(mimo2_state_kv_bytes(sf), mm_kv_formula(CTX, B, false, false));
    ASSERT_EQ(mimo2_state_kv_bytes(s1), mm_kv_formula(CTX, 1, true, false));
    ASSERT_EQ(mimo2_kv_bytes(m, CTX, B, &o_ring), mimo2_state_kv_bytes(sr));
    ASSERT_TRUE(mimo2_state_kv_bytes(sr) < mimo2_state_kv_bytes(sf));
    ASSERT_EQ(mica_model_kv_bytes(m, 1000), mm_kv_formula(1000, 512, true, false)); /* mica info -c 1000 */
    /* the same logits at every position, up to 12x past the window */
    mm_run(m, sr, toks, N, B, ring);
    mm_run(m, sf, toks, N, B, full);
    mm_run(m, s1, toks, N, 1, seq);
    bool finite = true;
    for (size_t i = 0; i < (size_t)N * V; i++) finite &= isfinite(ring[i]) != 0;
    ASSERT_TRUE(finite);
    ASSERT_TRUE(memcmp(ring, full, sizeof(float) * (size_t)N * V) == 0);
    ASSERT_TRUE(memcmp(ring, seq, sizeof(float) * (size_t)N * V) == 0);
    /* a second pass through the same states (positions restart at 0) */
    mm_run(m, sr, toks + 1, N - 1, B, ring);
    mm_run(m, sf, toks + 1, N - 1, B, full);
    ASSERT_TRUE(memcmp(ring, full, sizeof(float) * (size_t)(N - 1) * V) == 0);
    m->arch->state_free(sr);
    m->arch->state_free(sf);
    m->arch->state_free(s1);
    pool_free(pool);
    free(ring);
    free(full);
    free(seq);
    mica_model_free(m);
}

TEST(mimo_kv_q8_0) {
    mica_model *m = mm_gen_open("tiny-mimo2", MICA_DTYPE_F32, "kvq8");
    ASSERT_TRUE(m != NULL);
    enum { N = 40, CTX = 64, B = 8 };
    int32_t toks[N];
    for (int i = 0; i < N; i++) toks[i] = 3 + (i * 53 + 7) % 600;
    const int32_t V = (int32_t)m->hp.n_vocab;
    float *a = malloc(sizeof(float) * (size_t)N * V), *b = malloc(sizeof(float) * (size_t)N * V);
    ASSERT_TRUE(a && b);
    mica_pool *pool = NULL;
    ASSERT_OK(pool_create(2, &pool));
    mica_err e = {0};
    arch_state *sf = NULL, *sq = NULL;
    const mimo2_state_opts of = {.kv_type = MICA_DTYPE_F32}, oq = {.kv_type = MICA_DTYPE_Q8_0};
    ASSERT_OK(mimo2_state_create(m, pool, CTX, B, &of, &sf, &e));
    ASSERT_OK(mimo2_state_create(m, pool, CTX, B, &oq, &sq, &e));
    ASSERT_EQ(mimo2_state_kv_bytes(sq), mm_kv_formula(CTX, B, true, true));
    mm_run(m, sf, toks, N, B, a);
    mm_run(m, sq, toks, N, B, b);
    /* Q8_0 rows carry ~0.4% relative error per element; the logits move by
     * well under 2% of their scale, and the argmax agrees almost everywhere */
    double md = 0, mx = 0;
    int agree = 0;
    for (int t = 0; t < N; t++) {
        int ia = 0, ib = 0;
        for (int i = 0; i < V; i++) {
            const size_t k = (size_t)t * V + i;
            md = fmax(md, fabs((double)a[k] - b[k]));
            mx = fmax(mx, fabs((double)a[k]));
            if (a[k] > a[(size_t)t * V + ia]) ia = i;
            if (b[k] > b[(size_t)t * V + ib]) ib = i;
        }
        agree += ia == ib;
    }
    ASSERT_TRUE(md > 0); /* the cache really is quantised */
    ASSERT_TRUE(md / mx < 0.02);
    ASSERT_TRUE(agree >= N - 2);
    m->arch->state_free(sf);
    m->arch->state_free(sq);
    pool_free(pool);
    free(a);
    free(b);
    mica_model_free(m);
}

/* ---- hand-written files ---- */

/* A small mimo2 file: 3 main blocks [global+dense, sliding+MoE x2] + 1 MTP
 * block, with one thing changed at a time. */
typedef struct mm_file {
    int32_t pattern_len;    /* entries of sliding_window_pattern (4: right) */
    uint32_t period;        /* > 0: write the pattern as this scalar period instead */
    int32_t kv_len;         /* entries of head_count_kv (4: right) */
    int64_t sinks_len;      /* ne[0] of blk.1.attn_sinks.weight (NH: right) */
    uint32_t nextn;         /* nextn_predict_layers (1: right) */
    bool drop_attn_k;       /* leave out blk.2.attn_k.weight */
    bool drop_eh_proj;      /* leave out blk.3.nextn.eh_proj.weight */
    bool drop_window;       /* leave out attention.sliding_window */
    bool drop_value_scale;  /* leave out attention.value_scale */
} mm_file;

enum { MF_E = 64, MF_NH = 2, MF_DK = 64, MF_DV = 32, MF_FF = 64, MF_NX = 4, MF_FX = 32, MF_V = 50 };

static mica_status mm_open_file(const mm_file *o, mica_model **out, char *err, size_t cap) {
    static float data[2 * MF_E * MF_E * 4];
    static bool filled;
    if (!filled) {
        uint32_t s = 99;
        for (size_t i = 0; i < MICA_ARRAY_LEN(data); i++) {
            s = s * 1664525u + 1013904223u;
            data[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * 0.4f;
        }
        filled = true;
    }
    char path[600];
    snprintf(path, sizeof path, "%s/mimo_hand.gguf", test_tmp_dir());
    gguf_writer *w = NULL;
    if (gguf_writer_create(&w) != MICA_OK) return MICA_ERR_NOMEM;
    const int32_t swa[5] = {0, 1, 1, 1, 1}, kv[5] = {1, 2, 2, 2, 2};
    gguf_writer_set_str(w, "general.architecture", "mimo2");
    gguf_writer_set_u32(w, "mimo2.embedding_length", MF_E);
    gguf_writer_set_u32(w, "mimo2.block_count", 4);
    gguf_writer_set_u32(w, "mimo2.nextn_predict_layers", o->nextn);
    gguf_writer_set_u32(w, "mimo2.feed_forward_length", MF_FF);
    gguf_writer_set_u32(w, "mimo2.attention.head_count", MF_NH);
    gguf_writer_set_arr(w, "mimo2.attention.head_count_kv", GGUF_TYPE_INT32, kv, (uint64_t)o->kv_len);
    gguf_writer_set_u32(w, "mimo2.attention.key_length", MF_DK);
    gguf_writer_set_u32(w, "mimo2.attention.value_length", MF_DV);
    gguf_writer_set_u32(w, "mimo2.rope.dimension_count", 16);
    gguf_writer_set_f32(w, "mimo2.rope.freq_base", 5e6f);
    gguf_writer_set_f32(w, "mimo2.rope.freq_base_swa", 1e4f);
    if (!o->drop_window) gguf_writer_set_u32(w, "mimo2.attention.sliding_window", 4);
    if (o->period) gguf_writer_set_u32(w, "mimo2.attention.sliding_window_pattern", o->period);
    else gguf_writer_set_arr(w, "mimo2.attention.sliding_window_pattern", GGUF_TYPE_INT32, swa, (uint64_t)o->pattern_len);
    if (!o->drop_value_scale) gguf_writer_set_f32(w, "mimo2.attention.value_scale", 0.5f);
    gguf_writer_set_u32(w, "mimo2.expert_count", MF_NX);
    gguf_writer_set_u32(w, "mimo2.expert_used_count", 2);
    gguf_writer_set_u32(w, "mimo2.expert_feed_forward_length", MF_FX);
#define MF_T(nd, ...) gguf_writer_add_tensor(w, nm, MICA_DTYPE_F32, nd, (int64_t[]){__VA_ARGS__}, NULL, NULL, data)
    char nm[96];
    snprintf(nm, sizeof nm, "token_embd.weight"); MF_T(2, MF_E, MF_V);
    snprintf(nm, sizeof nm, "output_norm.weight"); MF_T(1, MF_E);
    snprintf(nm, sizeof nm, "output.weight"); MF_T(2, MF_E, MF_V);
    for (int l = 0; l < 4; l++) {
        const int64_t nkv = l == 0 ? 1 : 2;
        snprintf(nm, sizeof nm, "blk.%d.attn_norm.weight", l); MF_T(1, MF_E);
        snprintf(nm, sizeof nm, "blk.%d.attn_q.weight", l); MF_T(2, MF_E, MF_NH * MF_DK);
        snprintf(nm, sizeof nm, "blk.%d.attn_k.weight", l);
        if (!(o->drop_attn_k && l == 2)) MF_T(2, MF_E, nkv * MF_DK);
        snprintf(nm, sizeof nm, "blk.%d.attn_v.weight", l); MF_T(2, MF_E, nkv * MF_DV);
        snprintf(nm, sizeof nm, "blk.%d.attn_output.weight", l); MF_T(2, MF_NH * MF_DV, MF_E);
        if (l > 0) { snprintf(nm, sizeof nm, "blk.%d.attn_sinks.weight", l); MF_T(1, l == 1 ? o->sinks_len : MF_NH); }
        snprintf(nm, sizeof nm, "blk.%d.ffn_norm.weight", l); MF_T(1, MF_E);
        if (l == 0 || l == 3) {
            snprintf(nm, sizeof nm, "blk.%d.ffn_gate.weight", l); MF_T(2, MF_E, MF_FF);
            snprintf(nm, sizeof nm, "blk.%d.ffn_up.weight", l); MF_T(2, MF_E, MF_FF);
            snprintf(nm, sizeof nm, "blk.%d.ffn_down.weight", l); MF_T(2, MF_FF, MF_E);
        } else {
            snprintf(nm, sizeof nm, "blk.%d.ffn_gate_inp.weight", l); MF_T(2, MF_E, MF_NX);
            snprintf(nm, sizeof nm, "blk.%d.exp_probs_b.bias", l); MF_T(1, MF_NX);
            snprintf(nm, sizeof nm, "blk.%d.ffn_gate_exps.weight", l); MF_T(3, MF_E, MF_FX, MF_NX);
            snprintf(nm, sizeof nm, "blk.%d.ffn_up_exps.weight", l); MF_T(3, MF_E, MF_FX, MF_NX);
            snprintf(nm, sizeof nm, "blk.%d.ffn_down_exps.weight", l); MF_T(3, MF_FX, MF_E, MF_NX);
        }
        if (l == 3) {
            snprintf(nm, sizeof nm, "blk.3.nextn.eh_proj.weight");
            if (!o->drop_eh_proj) MF_T(2, 2 * MF_E, MF_E);
            snprintf(nm, sizeof nm, "blk.3.nextn.enorm.weight"); MF_T(1, MF_E);
            snprintf(nm, sizeof nm, "blk.3.nextn.hnorm.weight"); MF_T(1, MF_E);
            snprintf(nm, sizeof nm, "blk.3.layer_output_norm.weight"); MF_T(1, MF_E);
        }
    }
#undef MF_T
    mica_err e = {0};
    mica_status st = gguf_writer_write(w, path, &e);
    gguf_writer_free(w);
    if (st) return st;
    mica_model *m = NULL;
    st = mica_model_open(path, NULL, &m, err, cap);
    if (st == MICA_OK) { /* a usable model: run a few tokens past the window */
        mica_session *s = NULL;
        mica_session_params sp = mica_session_params_default();
        sp.n_ctx = 16;
        sp.n_threads = 1;
        const int32_t toks[7] = {1, 2, 3, 4, 5, 6, 7};
        st = mica_session_create(m, &sp, &s, err, cap);
        if (st == MICA_OK) st = mica_session_decode(s, toks, 7, NULL);
        if (st == MICA_OK && !isfinite(mica_session_logits(s)[0])) st = MICA_ERR_INTERNAL;
        mica_session_free(s);
    }
    unlink(path);
    if (st == MICA_OK && out) *out = m;
    else mica_model_free(m);
    return st;
}

static const mm_file mm_good = {.pattern_len = 4, .kv_len = 4, .sinks_len = MF_NH, .nextn = 1};

TEST(mimo_load_good_and_defaults) {
    char err[512] = "";
    mica_model *m = NULL;
    mica_status st = mm_open_file(&mm_good, &m, err, sizeof err);
    if (st) fprintf(stderr, "    %s\n", err);
    ASSERT_OK(st);
    ASSERT_NEAR(mimo2_value_scale(m), 0.5, 1e-7);
    mica_model_free(m);

    /* no attention.value_scale: 0.707 (MODEL_FAMILIES.md 5.2) */
    mm_file o = mm_good;
    o.drop_value_scale = true;
    m = NULL;
    ASSERT_OK(mm_open_file(&o, &m, err, sizeof err));
    ASSERT_NEAR(mimo2_value_scale(m), 0.707, 1e-7);
    mica_model_free(m);

    /* a scalar period P = 2: block i slides iff i % 2 < 1, i.e. blocks 0 and 2.
     * Block 1 is then global with 2 KV heads: the per-block counts still hold. */
    o = mm_good;
    o.period = 2;
    m = NULL;
    ASSERT_OK(mm_open_file(&o, &m, err, sizeof err));
    mimo2_layer_info in;
    const bool want[4] = {true, false, true, false};
    for (uint32_t il = 0; il < 4; il++) {
        mimo2_layer_get(m, il, &in);
        ASSERT_EQ(in.is_swa, want[il]);
        ASSERT_NEAR(in.rope_base, want[il] ? 1e4 : 5e6, 1e-3);
    }
    mica_model_free(m);
}

TEST(mimo_load_errors) {
    char err[512];
    mm_file o = mm_good;
    o.pattern_len = 3; /* the main blocks only: must count the MTP block too */
    ASSERT_EQ(mm_open_file(&o, NULL, err, sizeof err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err, "sliding_window_pattern") != NULL);
    o.pattern_len = 5;
    ASSERT_EQ(mm_open_file(&o, NULL, err, sizeof err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err, "sliding_window_pattern") != NULL);

    o = mm_good;
    o.kv_len = 2;
    ASSERT_EQ(mm_open_file(&o, NULL, err, sizeof err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err, "head_count_kv") != NULL);

    o = mm_good;
    o.sinks_len = MF_NH + 1;
    ASSERT_EQ(mm_open_file(&o, NULL, err, sizeof err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err, "blk.1.attn_sinks.weight") != NULL);

    o = mm_good;
    o.drop_attn_k = true;
    ASSERT_EQ(mm_open_file(&o, NULL, err, sizeof err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err, "blk.2.attn_k.weight") != NULL);

    o = mm_good;
    o.drop_eh_proj = true;
    ASSERT_EQ(mm_open_file(&o, NULL, err, sizeof err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err, "blk.3.nextn.eh_proj.weight") != NULL);

    o = mm_good;
    o.drop_window = true;
    ASSERT_EQ(mm_open_file(&o, NULL, err, sizeof err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err, "sliding_window") != NULL);

    o = mm_good;
    o.nextn = 4; /* every block an MTP block */
    ASSERT_EQ(mm_open_file(&o, NULL, err, sizeof err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err, "nextn_predict_layers") != NULL);

    /* nextn 0: block 3 is then a main block, and its extra MTP tensors are ignored */
    o = mm_good;
    o.nextn = 0;
    ASSERT_OK(mm_open_file(&o, NULL, err, sizeof err));
}

/*
 * The acceptance test on mimo-v2-flash-mini (window 128): logits at
 * position 1000 (and at the end of every batch before it) are identical with
 * ring-buffer sliding-window layers and with layers that keep every position,
 * and the ring cache allocates what its formula says. It needs the 1.6 GB
 * model file, so test_unit alone skips it; tests/scripts/mimo_mini.sh (in
 * make check) generates the file (~20 s on 2 threads), runs this test
 * (~20 s) and deletes it. By hand:
 *   build/mica-gen --preset mimo-v2-flash-mini --type Q8_0 -o mini.gguf
 *   MICA_MIMO_MINI=mini.gguf build/test_unit --only mimo_mini
 * (tiny-mimo2 covers the same property in test_unit: mimo_swa_ring_equals_full.)
 */
TEST(mimo_mini_position_1000) {
    const char *path = getenv("MICA_MIMO_MINI");
    if (!path || !*path) {
        test_skip("set MICA_MIMO_MINI to a mimo-v2-flash-mini GGUF (tests/scripts/mimo_mini.sh does)");
        return;
    }
    char err[512] = "";
    mica_model *m = NULL;
    mica_status st = mica_model_open(path, NULL, &m, err, sizeof err);
    if (st) fprintf(stderr, "    %s\n", err);
    ASSERT_OK(st);
    ASSERT_EQ(mimo2_window(m), 128);
    enum { N = 1001, CTX = 1024, B = 64 };
    static int32_t toks[N];
    for (int i = 0; i < N; i++) toks[i] = 3 + (int32_t)(((uint32_t)i * 2654435761u) % 150000u);
    const int32_t V = (int32_t)m->hp.n_vocab;
    float *a = malloc(sizeof(float) * (size_t)V), *b = malloc(sizeof(float) * (size_t)V);
    ASSERT_TRUE(a && b);
    mica_pool *pool = NULL;
    ASSERT_OK(pool_create(2, &pool));
    mica_err e = {0};
    arch_state *sr = NULL, *sf = NULL;
    const mimo2_state_opts o_ring = {.kv_type = MICA_DTYPE_F32}, o_full = {.kv_type = MICA_DTYPE_F32, .swa_full = true};
    ASSERT_OK(mimo2_state_create(m, pool, CTX, B, &o_ring, &sr, &e));
    ASSERT_OK(mimo2_state_create(m, pool, CTX, B, &o_full, &sf, &e));
    /* the formula from the preset's shapes: global blocks 0, 5, 11 with 4 KV
     * heads keep CTX rows; the 9 sliding blocks with 8 KV heads keep
     * window + B - 1 rows; a row is n_kv * (192 + 128) floats */
    const uint64_t ring_bytes = (3ull * CTX * 4 + 9ull * (128 + B - 1) * 8) * (192 + 128) * 4;
    const uint64_t full_bytes = (3ull * CTX * 4 + 9ull * CTX * 8) * (192 + 128) * 4;
    ASSERT_EQ(mimo2_state_kv_bytes(sr), ring_bytes);
    ASSERT_EQ(mimo2_state_kv_bytes(sf), full_bytes);
    bool same = true;
    for (int32_t p = 0; p < N; p += B) {
        const int32_t k = MICA_MIN(B, N - p);
        m->arch->forward(m, sr, toks + p, k, p, a, false);
        m->arch->forward(m, sf, toks + p, k, p, b, false);
        same &= memcmp(a, b, sizeof(float) * (size_t)V) == 0;
    }
    bool finite = true;
    for (int32_t i = 0; i < V; i++) finite &= isfinite(a[i]) != 0;
    m->arch->state_free(sr);
    m->arch->state_free(sf);
    pool_free(pool);
    free(a);
    free(b);
    mica_model_free(m);
    ASSERT_TRUE(finite);
    ASSERT_TRUE(same);
}
