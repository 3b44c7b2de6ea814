/*
 * test_convert.c - mica_convert_llama2c against the real stories260K files.
 *
 * The expected values come from the checkpoint and tokenizer bytes read here
 * independently (header ints, floats at offsets computed from the layout in
 * testdata/tinystories/README.md), and from the README's statements (id 403
 * is " Once", id 13 is <0x0A>, ...). Malformed inputs are derived from the
 * real files by patching or cutting them.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "mica.h"
#include "tensor/dtype.h"
#include "../test.h"

/* Reads a whole file into a malloc'd buffer; NULL on failure. */
static uint8_t *cv_slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(sz > 0 ? (size_t)sz : 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static bool cv_spit(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static int32_t cv_i32(const uint8_t *p) { int32_t v; memcpy(&v, p, 4); return v; }
static float cv_f32(const uint8_t *p) { float v; memcpy(&v, p, 4); return v; }

typedef struct cv_files {
    char ckpt[512], tok[512];
    uint8_t *ck, *tk;
    size_t ck_n, tk_n;
} cv_files;

static bool cv_load(cv_files *f) {
    test_data_path(f->ckpt, sizeof f->ckpt, "tinystories/stories260K.bin");
    test_data_path(f->tok, sizeof f->tok, "tinystories/tok512.bin");
    if (!test_require_file(f->ckpt) || !test_require_file(f->tok)) return false;
    f->ck = cv_slurp(f->ckpt, &f->ck_n);
    f->tk = cv_slurp(f->tok, &f->tk_n);
    return f->ck && f->tk;
}

static void cv_free(cv_files *f) {
    free(f->ck);
    free(f->tk);
}

/* Float `i` of the checkpoint body (after the 28-byte header). */
static float cv_body(const cv_files *f, uint64_t i) { return cv_f32(f->ck + 28 + 4 * i); }

static float cv_tensor_f32(const gguf_tensor *t, uint64_t i) {
    float v;
    memcpy(&v, (const uint8_t *)t->data + 4 * i, 4);
    return v;
}

static bool cv_str_is(gguf_str s, const char *c) {
    return s.len == strlen(c) && memcmp(s.ptr, c, s.len) == 0;
}

static int64_t cv_get_u(const gguf_ctx *g, const char *key) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv) return -1;
    if (kv->val.type == GGUF_TYPE_UINT32 || kv->val.type == GGUF_TYPE_UINT64) return (int64_t)kv->val.v.u;
    if (kv->val.type == GGUF_TYPE_INT32) return kv->val.v.i;
    return -2;
}

TEST(convert_stories260k) {
    cv_files f;
    if (!cv_load(&f)) return;
    char out[600], errbuf[512] = "";
    snprintf(out, sizeof out, "%s/convert_stories260K.gguf", test_tmp_dir());
    unlink(out);
    mica_status st = mica_convert_llama2c(f.ckpt, f.tok, out, errbuf, sizeof errbuf);
    if (st != MICA_OK) fprintf(stderr, "    %s\n", errbuf);
    ASSERT_OK(st);

    gguf_ctx *g = NULL;
    mica_err e = {0};
    ASSERT_OK(gguf_open(out, &g, &e));

    /* header, read independently: dim 64, hidden 172, 5 layers, 8/4 heads, vocab 512, seq 512 */
    int32_t dim = cv_i32(f.ck), hidden = cv_i32(f.ck + 4), n_layers = cv_i32(f.ck + 8);
    int32_t n_heads = cv_i32(f.ck + 12), n_kv = cv_i32(f.ck + 16), vocab = cv_i32(f.ck + 20);
    int32_t seq = cv_i32(f.ck + 24);
    ASSERT_EQ(dim, 64);
    ASSERT_EQ(vocab, 512);
    int64_t hs = dim / n_heads, kv_dim = hs * n_kv;

    gguf_str s;
    ASSERT_OK(gguf_require_str(g, "general.architecture", &s, &e));
    ASSERT_TRUE(cv_str_is(s, "llama"));
    ASSERT_OK(gguf_require_str(g, "general.name", &s, &e));
    ASSERT_TRUE(cv_str_is(s, "stories260K"));
    ASSERT_EQ(cv_get_u(g, "llama.context_length"), seq);
    ASSERT_EQ(cv_get_u(g, "llama.embedding_length"), dim);
    ASSERT_EQ(cv_get_u(g, "llama.block_count"), n_layers);
    ASSERT_EQ(cv_get_u(g, "llama.feed_forward_length"), hidden);
    ASSERT_EQ(cv_get_u(g, "llama.attention.head_count"), n_heads);
    ASSERT_EQ(cv_get_u(g, "llama.attention.head_count_kv"), n_kv);
    ASSERT_EQ(cv_get_u(g, "llama.rope.dimension_count"), hs);
    ASSERT_EQ(cv_get_u(g, "llama.vocab_size"), vocab);
    float fv = 0;
    ASSERT_OK(gguf_get_f32(g, "llama.rope.freq_base", &fv, &e));
    ASSERT_NEAR(fv, 10000.0, 0);
    ASSERT_OK(gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &fv, &e));
    ASSERT_NEAR(fv, 1e-5, 1e-12);
    ASSERT_OK(gguf_require_str(g, "tokenizer.ggml.model", &s, &e));
    ASSERT_TRUE(cv_str_is(s, "llama"));
    ASSERT_EQ(cv_get_u(g, "tokenizer.ggml.bos_token_id"), 1);
    ASSERT_EQ(cv_get_u(g, "tokenizer.ggml.eos_token_id"), 2);
    ASSERT_EQ(cv_get_u(g, "tokenizer.ggml.unknown_token_id"), 0);
    bool b = false;
    ASSERT_OK(gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, &e));
    ASSERT_TRUE(b);
    ASSERT_OK(gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b, &e));
    ASSERT_TRUE(!b);
    ASSERT_OK(gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b, &e));
    ASSERT_TRUE(b);

    /* tensors: 1 + 9 per layer + output_norm; tied, so no output */
    ASSERT_EQ(gguf_n_tensors(g), 1 + 9 * n_layers + 1);
    ASSERT_TRUE(gguf_find_tensor(g, "output.weight") == NULL);

    /* body offsets in floats, from the README's order */
    uint64_t L = (uint64_t)n_layers, d = (uint64_t)dim, h = (uint64_t)hidden;
    uint64_t o_emb = 0, o_att = o_emb + (uint64_t)vocab * d, o_wq = o_att + L * d;
    uint64_t o_wk = o_wq + L * d * d, o_wv = o_wk + L * (uint64_t)kv_dim * d;
    uint64_t o_wo = o_wv + L * (uint64_t)kv_dim * d, o_ffn = o_wo + L * d * d;
    uint64_t o_w1 = o_ffn + L * d, o_w2 = o_w1 + L * h * d, o_w3 = o_w2 + L * d * h;
    uint64_t o_fin = o_w3 + L * h * d;
    ASSERT_EQ(28 + 4 * (o_fin + d + 2 * (uint64_t)seq * (uint64_t)(hs / 2)), f.ck_n);

    const gguf_tensor *t = gguf_find_tensor(g, "token_embd.weight");
    ASSERT_TRUE(t != NULL);
    ASSERT_EQ(t->type, MICA_DTYPE_F32);
    ASSERT_EQ(t->ne[0], dim);
    ASSERT_EQ(t->ne[1], vocab);
    for (uint64_t i = 403 * d; i < 404 * d; i++) ASSERT_TRUE(cv_tensor_f32(t, i) == cv_body(&f, o_emb + i));

    /* last layer's w3 (ffn_up), shape [dim, hidden], every element */
    t = gguf_find_tensor(g, "blk.4.ffn_up.weight");
    ASSERT_TRUE(t != NULL);
    ASSERT_EQ(t->ne[0], dim);
    ASSERT_EQ(t->ne[1], hidden);
    for (uint64_t i = 0; i < h * d; i++) ASSERT_TRUE(cv_tensor_f32(t, i) == cv_body(&f, o_w3 + 4 * h * d + i));

    /* rms_final: output_norm */
    t = gguf_find_tensor(g, "output_norm.weight");
    ASSERT_TRUE(t != NULL);
    ASSERT_EQ(t->n_dims, 1);
    ASSERT_EQ(t->ne[0], dim);
    for (uint64_t i = 0; i < d; i++) ASSERT_TRUE(cv_tensor_f32(t, i) == cv_body(&f, o_fin + i));

    /* a few more: layer 2 wk [dim, kv_dim], layer 1 w2 [hidden, dim], layer 3 rms_att, layer 0 wq, wo, wv, w1, rms_ffn */
    struct { const char *name; uint64_t base; int64_t ne0, ne1; } chk[] = {
        {"blk.2.attn_k.weight", o_wk + 2 * (uint64_t)kv_dim * d, dim, kv_dim},
        {"blk.1.ffn_down.weight", o_w2 + 1 * d * h, hidden, dim},
        {"blk.3.attn_norm.weight", o_att + 3 * d, dim, 1},
        {"blk.0.attn_q.weight", o_wq, dim, dim},
        {"blk.4.attn_output.weight", o_wo + 4 * d * d, dim, dim},
        {"blk.4.attn_v.weight", o_wv + 4 * (uint64_t)kv_dim * d, dim, kv_dim},
        {"blk.0.ffn_gate.weight", o_w1, dim, hidden},
        {"blk.4.ffn_norm.weight", o_ffn + 4 * d, dim, 1},
    };
    for (size_t k = 0; k < sizeof chk / sizeof chk[0]; k++) {
        t = gguf_find_tensor(g, chk[k].name);
        if (!t) fprintf(stderr, "    missing %s\n", chk[k].name);
        ASSERT_TRUE(t != NULL);
        ASSERT_EQ(t->type, MICA_DTYPE_F32);
        ASSERT_EQ(t->ne[0], chk[k].ne0);
        ASSERT_EQ(t->ne[1], chk[k].ne1);
        uint64_t n = (uint64_t)(chk[k].ne0 * chk[k].ne1);
        ASSERT_EQ(t->nbytes, 4 * n);
        for (uint64_t i = 0; i < n; i += 7) ASSERT_TRUE(cv_tensor_f32(t, i) == cv_body(&f, chk[k].base + i));
        ASSERT_TRUE(cv_tensor_f32(t, n - 1) == cv_body(&f, chk[k].base + n - 1));
    }

    /* vocabulary */
    gguf_value toks, scores, types, el;
    ASSERT_OK(gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &toks, &e));
    ASSERT_OK(gguf_get_arr(g, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, &scores, &e));
    ASSERT_OK(gguf_get_arr(g, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, &types, &e));
    ASSERT_EQ(toks.v.arr.n, 512);
    ASSERT_EQ(scores.v.arr.n, 512);
    ASSERT_EQ(types.v.arr.n, 512);
    struct { int id; const char *text; int type; } want[] = {
        {0, "<unk>", 2}, {1, "<s>", 3}, {2, "</s>", 3}, {3, "<0x00>", 6},
        {13, "<0x0A>", 6}, {258, "<0xFF>", 6}, {403, "\xE2\x96\x81Once", 1},
    };
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        ASSERT_TRUE(gguf_arr_get(g, &toks, (uint64_t)want[k].id, &el));
        ASSERT_EQ(el.type, GGUF_TYPE_STRING);
        if (!cv_str_is(el.v.s, want[k].text))
            fprintf(stderr, "    token %d is '%.*s'\n", want[k].id, (int)el.v.s.len, el.v.s.ptr);
        ASSERT_TRUE(cv_str_is(el.v.s, want[k].text));
        ASSERT_TRUE(gguf_arr_get(g, &types, (uint64_t)want[k].id, &el));
        ASSERT_EQ(el.v.i, want[k].type);
    }
    /* every score and every piece against tok512.bin, converted here by hand */
    size_t off = 4;
    for (int id = 0; id < 512; id++) {
        ASSERT_TRUE(off + 8 <= f.tk_n);
        float sc = cv_f32(f.tk + off);
        int32_t len = cv_i32(f.tk + off + 4);
        ASSERT_TRUE(gguf_arr_get(g, &scores, (uint64_t)id, &el));
        ASSERT_TRUE((float)el.v.f == sc);
        ASSERT_TRUE(gguf_arr_get(g, &toks, (uint64_t)id, &el));
        if (id > 2) {
            char buf[64];
            size_t j = 0;
            for (int32_t i = 0; i < len && j + 3 < sizeof buf; i++) {
                if (f.tk[off + 8 + i] == ' ') { memcpy(buf + j, "\xE2\x96\x81", 3); j += 3; }
                else buf[j++] = (char)f.tk[off + 8 + i];
            }
            ASSERT_EQ(el.v.s.len, j);
            ASSERT_TRUE(memcmp(el.v.s.ptr, buf, j) == 0);
        }
        off += 8 + (size_t)len;
    }
    ASSERT_EQ(off, f.tk_n);
    ASSERT_TRUE(gguf_arr_get(g, &scores, 511, &el));
    ASSERT_NEAR(el.v.f, -252.0, 0);
    gguf_close(g);
    cv_free(&f);
}

/* A small checkpoint with a separate classifier (negative vocab_size). */
TEST(convert_classifier) {
    cv_files f;
    if (!cv_load(&f)) return;
    const int32_t dim = 8, hidden = 16, L = 1, nh = 2, nkv = 1, vocab = 512, seq = 4;
    const int32_t kv = dim / nh * nkv, hs = dim / nh;
    size_t n_floats = (size_t)vocab * dim + L * dim + L * dim * dim + 2 * L * kv * dim +
                      L * dim * dim + L * dim + 3 * L * hidden * dim + dim + 2 * seq * hs / 2 +
                      (size_t)vocab * dim;
    size_t n = 28 + 4 * n_floats;
    uint8_t *buf = malloc(n);
    ASSERT_TRUE(buf != NULL);
    int32_t hdr[7] = {dim, hidden, L, nh, nkv, -vocab, seq};
    memcpy(buf, hdr, 28);
    for (size_t i = 0; i < n_floats; i++) {
        float v = (float)i * 0.5f;
        memcpy(buf + 28 + 4 * i, &v, 4);
    }
    char ck[600], out[600], errbuf[512] = "";
    snprintf(ck, sizeof ck, "%s/convert_cls.bin", test_tmp_dir());
    snprintf(out, sizeof out, "%s/convert_cls.gguf", test_tmp_dir());
    ASSERT_TRUE(cv_spit(ck, buf, n));
    mica_status st = mica_convert_llama2c(ck, f.tok, out, errbuf, sizeof errbuf);
    if (st != MICA_OK) fprintf(stderr, "    %s\n", errbuf);
    ASSERT_OK(st);
    gguf_ctx *g = NULL;
    mica_err e = {0};
    ASSERT_OK(gguf_open(out, &g, &e));
    ASSERT_EQ(cv_get_u(g, "llama.vocab_size"), vocab);
    ASSERT_EQ(cv_get_u(g, "llama.attention.head_count_kv"), nkv);
    const gguf_tensor *t = gguf_find_tensor(g, "output.weight");
    ASSERT_TRUE(t != NULL);
    ASSERT_EQ(t->ne[0], dim);
    ASSERT_EQ(t->ne[1], vocab);
    size_t base = n_floats - (size_t)vocab * dim;
    for (size_t i = 0; i < (size_t)vocab * dim; i += 13)
        ASSERT_TRUE(cv_tensor_f32(t, i) == (float)(base + i) * 0.5f);
    t = gguf_find_tensor(g, "blk.0.attn_k.weight");
    ASSERT_TRUE(t != NULL);
    ASSERT_EQ(t->ne[0], dim);
    ASSERT_EQ(t->ne[1], kv);
    gguf_close(g);
    free(buf);
    cv_free(&f);
}

/* Converts (ck, tk) patched copies; expects MICA_ERR_FORMAT and no output file. */
static bool cv_expect_format(const char *tag, const uint8_t *ck, size_t ck_n, const uint8_t *tk,
                             size_t tk_n) {
    char ckp[600], tkp[600], out[600], errbuf[512] = "";
    snprintf(ckp, sizeof ckp, "%s/convert_bad_%s.bin", test_tmp_dir(), tag);
    snprintf(tkp, sizeof tkp, "%s/convert_bad_%s.tok", test_tmp_dir(), tag);
    snprintf(out, sizeof out, "%s/convert_bad_%s.gguf", test_tmp_dir(), tag);
    unlink(out);
    if (!cv_spit(ckp, ck, ck_n) || !cv_spit(tkp, tk, tk_n)) return false;
    mica_status st = mica_convert_llama2c(ckp, tkp, out, errbuf, sizeof errbuf);
    bool ok = st == MICA_ERR_FORMAT && errbuf[0] != '\0' && access(out, F_OK) != 0;
    if (!ok || getenv("CV_VERBOSE")) fprintf(stderr, "    case %s: status %d, message '%s'\n", tag, (int)st, errbuf);
    return ok;
}

/* The checkpoint with header field i set to v. */
static bool cv_bad_header(const cv_files *f, const char *tag, int i, int32_t v) {
    uint8_t *c = malloc(f->ck_n);
    if (!c) return false;
    memcpy(c, f->ck, f->ck_n);
    memcpy(c + 4 * i, &v, 4);
    bool ok = cv_expect_format(tag, c, f->ck_n, f->tk, f->tk_n);
    free(c);
    return ok;
}

TEST(convert_malformed_checkpoint) {
    cv_files f;
    if (!cv_load(&f)) return;
    uint8_t *big = malloc(f.ck_n + 4);
    ASSERT_TRUE(big != NULL);
    memcpy(big, f.ck, f.ck_n);
    memset(big + f.ck_n, 0, 4);
    ASSERT_TRUE(cv_expect_format("empty", f.ck, 0, f.tk, f.tk_n));
    ASSERT_TRUE(cv_expect_format("header_only", f.ck, 20, f.tk, f.tk_n));
    ASSERT_TRUE(cv_expect_format("truncated", f.ck, f.ck_n / 2, f.tk, f.tk_n));
    ASSERT_TRUE(cv_expect_format("short4", f.ck, f.ck_n - 4, f.tk, f.tk_n));
    ASSERT_TRUE(cv_expect_format("long4", big, f.ck_n + 4, f.tk, f.tk_n));
    free(big);
    ASSERT_TRUE(cv_bad_header(&f, "dim0", 0, 0));
    ASSERT_TRUE(cv_bad_header(&f, "hidden_neg", 1, -172));
    ASSERT_TRUE(cv_bad_header(&f, "layers_neg", 2, -5));
    ASSERT_TRUE(cv_bad_header(&f, "layers_big", 2, 513));
    ASSERT_TRUE(cv_bad_header(&f, "heads7", 3, 7));   /* 7 does not divide 64 */
    ASSERT_TRUE(cv_bad_header(&f, "heads0", 3, 0));
    ASSERT_TRUE(cv_bad_header(&f, "kv3", 4, 3));      /* 3 does not divide 8 */
    ASSERT_TRUE(cv_bad_header(&f, "kv16", 4, 16));    /* more kv heads than heads */
    ASSERT_TRUE(cv_bad_header(&f, "vocab0", 5, 0));
    ASSERT_TRUE(cv_bad_header(&f, "vocab_min", 5, INT32_MIN));
    ASSERT_TRUE(cv_bad_header(&f, "vocab_huge", 5, (1 << 22) + 1));
    ASSERT_TRUE(cv_bad_header(&f, "vocab_cls", 5, -512)); /* claims a classifier that is absent */
    ASSERT_TRUE(cv_bad_header(&f, "seq0", 6, 0));
    ASSERT_TRUE(cv_bad_header(&f, "seq_huge", 6, INT32_MAX));
    ASSERT_TRUE(cv_bad_header(&f, "dim_huge", 0, 1 << 30));
    ASSERT_TRUE(cv_bad_header(&f, "hidden_huge", 1, INT32_MAX));
    /* every field at its cap: the size math is large but must not overflow or crash */
    int32_t caps[7] = {1 << 16, 1 << 18, 512, 1 << 15, 1 << 15, -(1 << 22), 1 << 20};
    uint8_t *c = malloc(f.ck_n);
    ASSERT_TRUE(c != NULL);
    memcpy(c, f.ck, f.ck_n);
    memcpy(c, caps, 28);
    ASSERT_TRUE(cv_expect_format("all_caps", c, f.ck_n, f.tk, f.tk_n));
    free(c);
    cv_free(&f);
}

TEST(convert_malformed_tokenizer) {
    cv_files f;
    if (!cv_load(&f)) return;
    uint8_t *t = malloc(f.tk_n + 8);
    ASSERT_TRUE(t != NULL);
    /* offset of record 100 */
    size_t off = 4;
    for (int id = 0; id < 100; id++) off += 8 + (size_t)cv_i32(f.tk + off + 4);
    ASSERT_TRUE(cv_expect_format("tok_empty", f.ck, f.ck_n, f.tk, 0));
    ASSERT_TRUE(cv_expect_format("tok_mid_header", f.ck, f.ck_n, f.tk, off + 6));
    ASSERT_TRUE(cv_expect_format("tok_mid_text", f.ck, f.ck_n, f.tk, off + 9));
    ASSERT_TRUE(cv_expect_format("tok_short1", f.ck, f.ck_n, f.tk, f.tk_n - 1));
    memcpy(t, f.tk, f.tk_n);
    memset(t + f.tk_n, 0, 8);
    ASSERT_TRUE(cv_expect_format("tok_trailing", f.ck, f.ck_n, t, f.tk_n + 8));
    int32_t v = 3; /* "<unk>" is 5 bytes > max_token_length 3 */
    memcpy(t, &v, 4);
    ASSERT_TRUE(cv_expect_format("tok_maxlen", f.ck, f.ck_n, t, f.tk_n));
    memcpy(t, f.tk, f.tk_n);
    v = 0;
    memcpy(t, &v, 4);
    ASSERT_TRUE(cv_expect_format("tok_maxlen0", f.ck, f.ck_n, t, f.tk_n));
    memcpy(t, f.tk, f.tk_n);
    v = -1;
    memcpy(t + off + 4, &v, 4);
    ASSERT_TRUE(cv_expect_format("tok_len_neg", f.ck, f.ck_n, t, f.tk_n));
    memcpy(t, f.tk, f.tk_n);
    v = 1 << 30;
    memcpy(t + off + 4, &v, 4);
    ASSERT_TRUE(cv_expect_format("tok_len_huge", f.ck, f.ck_n, t, f.tk_n));
    memcpy(t, f.tk, f.tk_n);
    float nan = NAN;
    memcpy(t + off, &nan, 4);
    ASSERT_TRUE(cv_expect_format("tok_nan", f.ck, f.ck_n, t, f.tk_n));
    memcpy(t, f.tk, f.tk_n);
    t[off + 8] = 0xFF; /* invalid UTF-8 */
    ASSERT_TRUE(cv_expect_format("tok_utf8", f.ck, f.ck_n, t, f.tk_n));
    /* records 3 and 4 ("<0x00>", "<0x01>") made equal: duplicate token text */
    memcpy(t, f.tk, f.tk_n);
    size_t o2 = 4 + (8 + 5) + (8 + 5) + (8 + 6); /* after <unk>, \n<s>\n, \n</s>\n */
    size_t o4 = o2 + 8 + 6;
    ASSERT_EQ(cv_i32(t + o2 + 4), 6);
    ASSERT_EQ(cv_i32(t + o4 + 4), 6);
    memcpy(t + o4 + 8, t + o2 + 8, 6); /* two "<0x00>" */
    ASSERT_TRUE(cv_expect_format("tok_dup", f.ck, f.ck_n, t, f.tk_n));
    free(t);
    char out[600], errbuf[256] = "";
    snprintf(out, sizeof out, "%s/convert_missing.gguf", test_tmp_dir());
    ASSERT_EQ(mica_convert_llama2c("/nonexistent/x.bin", f.tok, out, errbuf, sizeof errbuf), MICA_ERR_IO);
    ASSERT_TRUE(errbuf[0] != '\0');
    ASSERT_EQ(mica_convert_llama2c(NULL, f.tok, out, errbuf, sizeof errbuf), MICA_ERR_INVALID_ARG);
    cv_free(&f);
}
