/*
 * gen.c - random-weight GGUF test models: presets, the counter-based weight
 * generator, synthetic vocabularies and the GGUF assembly (see gen.h).
 *
 * Weights: element i of tensor T is a standard normal drawn from a
 * counter-based generator keyed by (seed, T's name), so any element can be
 * produced independently of chunking, order and storage type; quantised files
 * are the same floats passed through the kernel table's from_float.
 */
#include "convert/gen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/threadpool.h"
#include "gguf/gguf.h"
#include "tensor/dtype.h"
#include "tensor/kern.h"

/* ---- presets ---- */

static const gen_preset gen_presets[] = {
    {"tiny-llama", "llama", "llama, 256 wide, 2 layers, 4/2 heads of 64, ffn 512, vocab 640 SPM, untied",
     256, 2, 4, 2, 64, 512, 640, 4096, 10000.0f, 1e-5f, false, false, false, true, GEN_VOCAB_SPM, 0, 0, 0, false},
    {"tiny-qwen2", "qwen2",
     "qwen2, 256 wide, 2 layers, 4/2 heads of 64, q/k/v biases, ffn 384 (ffn_down falls back "
     "to Q8_0 under K-quants), vocab 640 BPE, untied",
     256, 2, 4, 2, 64, 384, 640, 4096, 1000000.0f, 1e-6f, false, false, true, true, GEN_VOCAB_BPE, 0, 0, 0, false},
    {"tiny-qwen3", "qwen3",
     "qwen3, 256 wide, 2 layers, 8/2 heads of 64 (q 512 wide), q/k norms, ffn 768, vocab 640 BPE, tied",
     256, 2, 8, 2, 64, 768, 640, 4096, 1000000.0f, 1e-6f, true, true, false, true, GEN_VOCAB_BPE, 0, 0, 0, false},
    {"qwen3-0.6b", "qwen3",
     "Qwen3-0.6B shape: 1024 wide, 28 layers, 16/8 heads of 128, ffn 3072, vocab 151936, tied",
     1024, 28, 16, 8, 128, 3072, 151936, 40960, 1000000.0f, 1e-6f, true, true, false, false,
     GEN_VOCAB_BPE, 0, 0, 0, false},
    {"tinyllama-1.1b", "llama",
     "TinyLlama-1.1B shape: 2048 wide, 22 layers, 32/4 heads of 64, ffn 5632, vocab 32000, untied",
     2048, 22, 32, 4, 64, 5632, 32000, 2048, 10000.0f, 1e-5f, false, false, false, false,
     GEN_VOCAB_SPM, 0, 0, 0, false},
    {"tiny-qwen3moe", "qwen3moe",
     "qwen3moe, 256 wide, 2 layers, 8/2 heads of 64, q/k norms, 8 experts of 256 (4 used, "
     "renormalised), vocab 640 BPE, untied",
     256, 2, 8, 2, 64, 768, 640, 4096, 1000000.0f, 1e-6f, false, true, false, true, GEN_VOCAB_BPE,
     8, 4, 256, false},
    {"tiny-olmoe", "olmoe",
     "olmoe, 256 wide, 2 layers, 4/4 heads of 64, full-width q/k norms, 8 experts of 256 (4 used, "
     "raw softmax weights), vocab 640 BPE, untied",
     256, 2, 4, 4, 64, 256, 640, 4096, 10000.0f, 1e-5f, false, true, false, true, GEN_VOCAB_BPE,
     8, 4, 256, true},
    {"tiny-mixtral", "llama",
     "llama with experts (Mixtral), 256 wide, 2 layers, 4/2 heads of 64, 8 experts of 512 "
     "(2 used), vocab 640 SPM, untied",
     256, 2, 4, 2, 64, 512, 640, 4096, 1000000.0f, 1e-5f, false, false, false, true, GEN_VOCAB_SPM,
     8, 2, 512, false},
    {"qwen3-30b-a3b", "qwen3moe",
     "Qwen3-30B-A3B shape: 2048 wide, 48 layers, 32/4 heads of 128, 128 experts of 768 (8 used), "
     "vocab 151936, untied",
     2048, 48, 32, 4, 128, 6144, 151936, 40960, 1000000.0f, 1e-6f, false, true, false, false,
     GEN_VOCAB_BPE, 128, 8, 768, false},
    {"qwen3-30b-a3b-half", "qwen3moe",
     "Qwen3-30B-A3B with 24 of its 48 layers (about 9 GB at Q4_0)",
     2048, 24, 32, 4, 128, 6144, 151936, 40960, 1000000.0f, 1e-6f, false, true, false, false,
     GEN_VOCAB_BPE, 128, 8, 768, false},
    {"olmoe-1b-7b", "olmoe",
     "OLMoE-1B-7B shape: 2048 wide, 16 layers, 16/16 heads of 128, 64 experts of 1024 (8 used), "
     "vocab 50304, untied",
     2048, 16, 16, 16, 128, 1024, 50304, 4096, 10000.0f, 1e-5f, false, true, false, false,
     GEN_VOCAB_BPE, 64, 8, 1024, true},
    /* deepseek2 presets: their MLA / DeepSeekMoE fields are in gen_mla_presets below */
    {.name = "tiny-deepseek2", .arch = "deepseek2",
     .about = "deepseek2 (V2-Lite-like), 256 wide, 2 layers (1 dense), 4 heads, plain attn_q, "
              "kv_lora 128, qk 64+32 / v 64, legacy attn_kv_b, 8 experts of 256 (2 used, softmax, "
              "raw weights) + 2 shared, no rope scaling, vocab 640 BPE, untied",
     .n_embd = 256, .n_layer = 2, .n_head = 4, .n_head_kv = 1, .head_dim = 96, .n_ff = 512,
     .n_vocab = 640, .n_ctx = 4096, .rope_base = 10000.0f, .rms_eps = 1e-6f, .is_tiny = true,
     .vocab = GEN_VOCAB_BPE, .n_expert = 8, .n_expert_used = 2, .n_ff_exp = 256},
    {.name = "tiny-deepseek3", .arch = "deepseek2",
     .about = "deepseek2 (V3-like), 256 wide, 3 layers (1 dense), 4 heads, q_lora 128, kv_lora 128, "
              "qk 64+32 / v 64, split attn_k_b/attn_v_b, 16 experts of 256 in 4 groups (2 used, top-4, "
              "sigmoid + exp_probs_b, renormalised, x2.5) + 1 shared, YaRN x40, vocab 640 BPE, untied",
     .n_embd = 256, .n_layer = 3, .n_head = 4, .n_head_kv = 1, .head_dim = 96, .n_ff = 512,
     .n_vocab = 640, .n_ctx = 163840, .rope_base = 10000.0f, .rms_eps = 1e-6f, .is_tiny = true,
     .vocab = GEN_VOCAB_BPE, .n_expert = 16, .n_expert_used = 4, .n_ff_exp = 256},
    {.name = "deepseek-v2-lite", .arch = "deepseek2",
     .about = "DeepSeek-V2-Lite shape: 2048 wide, 27 layers (1 dense, ffn 10944), 16 heads, kv_lora 512, "
              "qk 128+64 / v 128, 64 experts of 1408 (6 used) + 2 shared, YaRN x40, vocab 102400, untied",
     .n_embd = 2048, .n_layer = 27, .n_head = 16, .n_head_kv = 1, .head_dim = 192, .n_ff = 10944,
     .n_vocab = 102400, .n_ctx = 163840, .rope_base = 10000.0f, .rms_eps = 1e-6f,
     .vocab = GEN_VOCAB_BPE, .n_expert = 64, .n_expert_used = 6, .n_ff_exp = 1408},
    /* mimo2 presets: n_layer counts the main blocks; the rest is in gen_mimo_presets below */
    {.name = "tiny-mimo2", .arch = "mimo2",
     .about = "mimo2, 256 wide, 4 blocks [global+dense, 3 x sliding window 8 + MoE] + 1 MTP block, "
              "4 heads, kv 1 global / 2 sliding, qk 96 / v 64, rope on 32 dims (5e6 / 1e4), sinks on "
              "sliding blocks, value scale 0.707, 8 experts of 128 (4 used, sigmoid + exp_probs_b, "
              "renormalised), vocab 640 BPE, untied",
     .n_embd = 256, .n_layer = 4, .n_head = 4, .n_head_kv = 1, .head_dim = 96, .n_ff = 512,
     .n_vocab = 640, .n_ctx = 262144, .rope_base = 5000000.0f, .rms_eps = 1e-5f, .is_tiny = true,
     .vocab = GEN_VOCAB_BPE, .n_expert = 8, .n_expert_used = 4, .n_ff_exp = 128},
    {.name = "mimo-v2-flash-mini", .arch = "mimo2",
     .about = "MiMo-V2-Flash structure at 1024 wide: 12 blocks (global at 0, 5, 11; the rest sliding "
              "window 128 with sinks) + 1 MTP block, 16 heads, kv 4 global / 8 sliding, qk 192 / v 128, "
              "rope on 64 dims (5e6 / 1e4), value scale 0.707, dense block 0 (ffn 4096), 64 experts of "
              "512 (8 used, sigmoid + exp_probs_b), vocab 152576, untied",
     .n_embd = 1024, .n_layer = 12, .n_head = 16, .n_head_kv = 4, .head_dim = 192, .n_ff = 4096,
     .n_vocab = 152576, .n_ctx = 262144, .rope_base = 5000000.0f, .rms_eps = 1e-5f,
     .vocab = GEN_VOCAB_BPE, .n_expert = 64, .n_expert_used = 8, .n_ff_exp = 512},
};

/*
 * The deepseek2 fields of the presets above (MODEL_FAMILIES.md 4.1-4.4,
 * FORMATS.md 4.2-4.6). A preset's head_dim is qk_nope + qk_rope; n_ff is the
 * width of the leading dense blocks.
 */
typedef struct gen_mla {
    const char *preset;
    uint32_t q_lora, kv_lora, qk_nope, qk_rope, v_head;
    uint32_t n_dense, n_shared, gating, n_group, n_group_used;
    bool norm_topk, legacy_kv_b, probs_b;
    float w_scale;
    float yarn_factor, yarn_log_mul; /* factor 0: no rope scaling */
    uint32_t yarn_orig_ctx;
} gen_mla;

static const gen_mla gen_mla_presets[] = {
    {.preset = "tiny-deepseek2", .kv_lora = 128, .qk_nope = 64, .qk_rope = 32, .v_head = 64,
     .n_dense = 1, .n_shared = 2, .gating = 1, .legacy_kv_b = true, .w_scale = 1.0f},
    {.preset = "tiny-deepseek3", .q_lora = 128, .kv_lora = 128, .qk_nope = 64, .qk_rope = 32,
     .v_head = 64, .n_dense = 1, .n_shared = 1, .gating = 2, .n_group = 4, .n_group_used = 2,
     .norm_topk = true, .probs_b = true, .w_scale = 2.5f, .yarn_factor = 40.0f,
     .yarn_log_mul = 0.1f, .yarn_orig_ctx = 4096},
    {.preset = "deepseek-v2-lite", .kv_lora = 512, .qk_nope = 128, .qk_rope = 64, .v_head = 128,
     .n_dense = 1, .n_shared = 2, .gating = 1, .w_scale = 1.0f, .yarn_factor = 40.0f,
     .yarn_log_mul = 0.0707f, .yarn_orig_ctx = 4096},
};

static const gen_mla *gen_mla_find(const char *preset) {
    for (size_t i = 0; i < MICA_ARRAY_LEN(gen_mla_presets); i++)
        if (strcmp(gen_mla_presets[i].preset, preset) == 0) return &gen_mla_presets[i];
    return NULL;
}

/*
 * The mimo2 fields of the presets above (MODEL_FAMILIES.md 5, FORMATS.md
 * 4.6). A preset's head_dim is the q/k head size, n_head_kv the global
 * blocks' KV heads, n_ff the dense width (block 0 and the MTP blocks).
 * Block i is global iff i == 0 or (i + 1) % ga_period == 0 (the released
 * model's rule with period 6); MTP blocks slide.
 */
typedef struct gen_mimo {
    const char *preset;
    uint32_t head_dim_v, n_rot, n_head_kv_swa, window, ga_period, n_nextn;
    float rope_base_swa, value_scale;
    bool head_count_array; /* attention.head_count as a per-block array (else a scalar) */
} gen_mimo;

static const gen_mimo gen_mimo_presets[] = {
    {.preset = "tiny-mimo2", .head_dim_v = 64, .n_rot = 32, .n_head_kv_swa = 2, .window = 8,
     .ga_period = 0, .n_nextn = 1, .rope_base_swa = 10000.0f, .value_scale = 0.707f,
     .head_count_array = true},
    {.preset = "mimo-v2-flash-mini", .head_dim_v = 128, .n_rot = 64, .n_head_kv_swa = 8, .window = 128,
     .ga_period = 6, .n_nextn = 1, .rope_base_swa = 10000.0f, .value_scale = 0.707f},
};

static const gen_mimo *gen_mimo_find(const char *preset) {
    for (size_t i = 0; i < MICA_ARRAY_LEN(gen_mimo_presets); i++)
        if (strcmp(gen_mimo_presets[i].preset, preset) == 0) return &gen_mimo_presets[i];
    return NULL;
}

/* True if block l of a mimo2 preset uses sliding-window attention (ga_period 0: only block 0 is global). */
static bool gen_mimo_is_swa(const gen_preset *p, const gen_mimo *x, uint32_t l) {
    if (l >= p->n_layer || l == 0) return l != 0;
    return x->ga_period == 0 || (l + 1) % x->ga_period != 0;
}

size_t gen_preset_count(void) { return MICA_ARRAY_LEN(gen_presets); }

const gen_preset *gen_preset_at(size_t i) {
    return i < MICA_ARRAY_LEN(gen_presets) ? &gen_presets[i] : NULL;
}

const gen_preset *gen_preset_find(const char *name) {
    for (size_t i = 0; name && i < MICA_ARRAY_LEN(gen_presets); i++)
        if (strcmp(gen_presets[i].name, name) == 0) return &gen_presets[i];
    return NULL;
}

bool gen_type_supported(uint32_t type) {
    switch (type) {
    case MICA_DTYPE_F32: case MICA_DTYPE_F16: case MICA_DTYPE_BF16: case MICA_DTYPE_Q8_0:
    case MICA_DTYPE_Q4_0: case MICA_DTYPE_Q4_K: case MICA_DTYPE_Q6_K:
    case MICA_DTYPE_Q4_1: case MICA_DTYPE_Q5_0: case MICA_DTYPE_Q5_1: case MICA_DTYPE_IQ4_NL:
    case MICA_DTYPE_MXFP4: case MICA_DTYPE_Q2_K: case MICA_DTYPE_Q3_K: case MICA_DTYPE_Q5_K:
    case MICA_DTYPE_IQ4_XS:
        return true;
    default:
        return false;
    }
}

uint32_t gen_matrix_type(uint32_t requested, int64_t ne0) {
    const dtype_traits *tr = dtype_get(requested);
    if (tr && ne0 % tr->blck == 0) return requested;
    if (ne0 % QK8_0 == 0) return MICA_DTYPE_Q8_0;
    return MICA_DTYPE_F16;
}

/* llama_ftype of a file whose matrices are `type` (general.file_type, informational). */
static uint32_t gen_file_type(uint32_t type) {
    switch (type) {
    case MICA_DTYPE_F16: return 1;
    case MICA_DTYPE_Q4_0: return 2;
    case MICA_DTYPE_Q8_0: return 7;
    case MICA_DTYPE_Q4_K: return 14; /* Q4_K_S: every matrix Q4_K */
    case MICA_DTYPE_Q6_K: return 18;
    case MICA_DTYPE_BF16: return 32;
    case MICA_DTYPE_Q4_1: return 3;
    case MICA_DTYPE_Q5_0: return 8;
    case MICA_DTYPE_Q5_1: return 9;
    case MICA_DTYPE_Q2_K: return 10;
    case MICA_DTYPE_Q3_K: return 11;  /* Q3_K_S */
    case MICA_DTYPE_Q5_K: return 16;  /* Q5_K_S */
    case MICA_DTYPE_IQ4_NL: return 25;
    case MICA_DTYPE_IQ4_XS: return 30;
    case MICA_DTYPE_MXFP4: return 38; /* MXFP4_MOE */
    default: return 0;
    }
}

/* ---- counter-based normal generator ---- */

static uint64_t gen_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Stream key of one tensor: FNV-1a of the name, mixed with the seed. */
static uint64_t gen_key(uint64_t seed, const char *name) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (const char *p = name; *p; p++) h = (h ^ (uint8_t)*p) * 0x100000001B3ull;
    return gen_mix64(h ^ gen_mix64(seed + 0x9E3779B97F4A7C15ull));
}

/* Uniform in (0, 1] from one 64-bit draw. */
static double gen_unit(uint64_t key, uint64_t ctr) {
    return ((double)(gen_mix64(key + ctr * 0x9E3779B97F4A7C15ull) >> 11) + 1.0) * 0x1.0p-53;
}

/*
 * Writes standard normals for elements [start, start + n) of the stream
 * `key` into out. Elements 2p and 2p+1 are the two Box-Muller outputs of
 * pair p, so element i is a function of (key, i) only.
 */
static void gen_normals(uint64_t key, uint64_t start, uint64_t n, float *out) {
    const double two_pi = 6.283185307179586;
    for (uint64_t i = start; i < start + n;) {
        uint64_t p = i >> 1;
        double r = sqrt(-2.0 * log(gen_unit(key, 2 * p)));
        double a = two_pi * gen_unit(key, 2 * p + 1);
        if ((i & 1) == 0) {
            out[i - start] = (float)(r * cos(a));
            if (i + 1 < start + n) out[i + 1 - start] = (float)(r * sin(a));
            i += 2;
        } else {
            out[i - start] = (float)(r * sin(a));
            i += 1;
        }
    }
}

/* ---- tensors ---- */

/* One generated tensor: value = mean + std * N(0, 1) per element. */
typedef struct gen_tensor {
    char name[GGUF_MAX_NAME + 1];
    uint32_t n_dims, type;
    int64_t ne[3];
    float mean, std;
    bool random_sign;          /* each element's sign flipped with probability 1/2 */
    uint64_t key;
    uint64_t row_bytes;
    uint64_t cursor;           /* bytes produced so far (fill may be called in chunks) */
    struct gen_scratch *scr;
} gen_tensor;

typedef struct gen_scratch {
    const kern_table *kt;
    float *row_f32;  /* [n_threads][max ne0] floats: worker i uses row i */
    int64_t row_f32_stride;
    uint8_t *row_q;  /* one encoded row */
    mica_pool *pool; /* NULL: one thread */
} gen_scratch;

/* Generates row r of t into worker ith's float row and encodes it into dst (row_bytes). */
static void gen_encode_row_on(gen_tensor *t, int64_t r, void *dst, int ith) {
    float *x = t->scr->row_f32 + (int64_t)ith * t->scr->row_f32_stride;
    uint64_t n = (uint64_t)t->ne[0];
    gen_normals(t->key, (uint64_t)r * n, n, x);
    for (uint64_t i = 0; i < n; i++) x[i] = t->mean + t->std * x[i];
    if (t->random_sign) {
        uint64_t sign_key = gen_mix64(t->key ^ 0x5349474E5349474Eull);
        for (uint64_t i = 0; i < n; i++)
            if (gen_mix64(sign_key + (uint64_t)r * n + i) & 1) x[i] = -x[i];
    }
    if (t->type == MICA_DTYPE_F32) memcpy(dst, x, n * 4);
    else t->scr->kt->ops[t->type].from_float(x, dst, (int64_t)n);
}

static void gen_encode_row(gen_tensor *t, int64_t r, void *dst) { gen_encode_row_on(t, r, dst, 0); }

/* Whole rows [r0, r0 + n_rows) of a tensor, split across the pool's workers. */
typedef struct gen_rows_job {
    gen_tensor *t;
    int64_t r0, n_rows;
    uint8_t *dst;
} gen_rows_job;

static void gen_rows_task(void *arg, int ith, int nth) {
    const gen_rows_job *j = arg;
    int64_t b, e;
    pool_split(j->n_rows, ith, nth, &b, &e);
    for (int64_t i = b; i < e; i++) gen_encode_row_on(j->t, j->r0 + i, j->dst + (uint64_t)i * j->t->row_bytes, ith);
}

static mica_status gen_fill(void *user, void *dst, uint64_t nbytes, mica_err *err) {
    gen_tensor *t = user;
    uint8_t *out = dst;
    uint64_t total = t->row_bytes * (uint64_t)t->ne[1] * (uint64_t)t->ne[2];
    if (nbytes > total - t->cursor)
        return mica_err_set(err, MICA_ERR_INTERNAL, "%s: fill past the end", t->name);
    if (t->scr->pool && t->cursor % t->row_bytes == 0 && nbytes >= 2 * t->row_bytes) {
        /* whole rows in parallel: each row is a function of (key, row) only */
        gen_rows_job j = {t, (int64_t)(t->cursor / t->row_bytes), (int64_t)(nbytes / t->row_bytes), out};
        pool_run(t->scr->pool, gen_rows_task, &j);
        const uint64_t done = (uint64_t)j.n_rows * t->row_bytes;
        out += done;
        nbytes -= done;
        t->cursor += done;
    }
    while (nbytes > 0) {
        int64_t r = (int64_t)(t->cursor / t->row_bytes);
        uint64_t in_row = t->cursor % t->row_bytes;
        uint64_t take = MICA_MIN(nbytes, t->row_bytes - in_row);
        if (in_row == 0 && take == t->row_bytes) {
            gen_encode_row(t, r, out);
        } else {
            gen_encode_row(t, r, t->scr->row_q);
            memcpy(out, t->scr->row_q + in_row, take);
        }
        out += take;
        nbytes -= take;
        t->cursor += take;
    }
    return MICA_OK;
}

/* Growable list of tensors to declare. */
typedef struct gen_plan {
    gen_tensor *t;
    size_t n, cap;
    uint64_t seed;
    uint32_t type; /* requested matrix type */
} gen_plan;

/* Declares a tensor of ne0 x ne1 x ne2 elements (ne2 > 1: 3-D, ne1 > 1: 2-D). */
static mica_status gen_plan_add(gen_plan *pl, const char *name, int64_t ne0, int64_t ne1,
                                int64_t ne2, float mean, float std, mica_err *err) {
    if (pl->n == pl->cap) {
        size_t cap = pl->cap ? 2 * pl->cap : 64;
        gen_tensor *p = mica_realloc(pl->t, cap * sizeof *p);
        if (!p) return mica_err_set(err, MICA_ERR_NOMEM, "out of memory");
        pl->t = p;
        pl->cap = cap;
    }
    gen_tensor *t = &pl->t[pl->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = ne2 > 1 ? 3 : ne1 > 1 ? 2 : 1;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->ne[2] = ne2;
    t->type = t->n_dims >= 2 ? gen_matrix_type(pl->type, ne0) : MICA_DTYPE_F32;
    t->mean = mean;
    t->std = std;
    t->key = gen_key(pl->seed, name);
    MICA_ASSERT(dtype_row_bytes(t->type, ne0, &t->row_bytes));
    return MICA_OK;
}

/*
 * The tensors of a deepseek2 preset (FORMATS.md 4.3-4.4): MLA attention
 * (attn_q or attn_q_a/attn_q_a_norm/attn_q_b, attn_kv_a_mqa, attn_kv_a_norm,
 * attn_k_b + attn_v_b or the legacy attn_kv_b), dense FFN in the first
 * n_dense blocks, routed + shared experts after. attn_k_b / attn_v_b /
 * attn_kv_b are drawn with std 1/sqrt(kv_lora): kv_lora is the fan-in of
 * kv_b_proj whichever way the tensor is split.
 */
static mica_status gen_plan_build_deepseek2(gen_plan *pl, const gen_preset *p, const gen_mla *x,
                                            int64_t n_vocab, mica_err *err) {
    const int64_t d = p->n_embd, nh = p->n_head, R = x->kv_lora, rope = x->qk_rope;
    const int64_t hk = (int64_t)x->qk_nope + rope, hv = x->v_head, ne_x = p->n_expert;
    const int64_t ff_sh = (int64_t)x->n_shared * p->n_ff_exp;
    const float resid = 1.0f / sqrtf(2.0f * (float)p->n_layer), noise = 0.05f;
    const float kvb_std = 1.0f / sqrtf((float)R);
    char nm[GGUF_MAX_NAME + 1];
    mica_status st;
#define DS_ADD(ne0, ne1, ne2, mean, std, ...)                                         \
    do {                                                                              \
        snprintf(nm, sizeof nm, __VA_ARGS__);                                         \
        if ((st = gen_plan_add(pl, nm, ne0, ne1, ne2, mean, std, err))) return st;    \
    } while (0)
#define DS_MAT(ne0, ne1, scale, ...) DS_ADD(ne0, ne1, 1, 0.0f, (scale) / sqrtf((float)(ne0)), __VA_ARGS__)
#define DS_NORM(n, ...) DS_ADD(n, 1, 1, 1.0f, noise, __VA_ARGS__)
    DS_ADD(d, n_vocab, 1, 0.0f, GEN_EMBD_STD, "token_embd.weight");           /* (n_vocab, n_embd) */
    for (uint32_t l = 0; l < p->n_layer; l++) {
        DS_NORM(d, "blk.%u.attn_norm.weight", l);
        if (x->q_lora > 0) {
            DS_MAT(d, x->q_lora, 1.0f, "blk.%u.attn_q_a.weight", l);          /* (q_lora, n_embd) */
            DS_NORM(x->q_lora, "blk.%u.attn_q_a_norm.weight", l);
            DS_MAT(x->q_lora, nh * hk, 1.0f, "blk.%u.attn_q_b.weight", l);    /* (nh*hk, q_lora) */
        } else {
            DS_MAT(d, nh * hk, 1.0f, "blk.%u.attn_q.weight", l);              /* (nh*hk, n_embd) */
        }
        DS_MAT(d, R + rope, 1.0f, "blk.%u.attn_kv_a_mqa.weight", l);          /* (kv_lora+rope, n_embd) */
        DS_NORM(R, "blk.%u.attn_kv_a_norm.weight", l);
        if (x->legacy_kv_b) {
            DS_ADD(R, nh * (hk - rope + hv), 1, 0.0f, kvb_std, "blk.%u.attn_kv_b.weight", l);
        } else {
            DS_ADD(hk - rope, R, nh, 0.0f, kvb_std, "blk.%u.attn_k_b.weight", l); /* (nh, kv_lora, nope) */
            DS_ADD(R, hv, nh, 0.0f, kvb_std, "blk.%u.attn_v_b.weight", l);        /* (nh, v, kv_lora) */
        }
        DS_MAT(nh * hv, d, resid, "blk.%u.attn_output.weight", l);           /* (n_embd, nh*v) */
        DS_NORM(d, "blk.%u.ffn_norm.weight", l);
        if (l < x->n_dense) {
            DS_MAT(d, p->n_ff, 1.0f, "blk.%u.ffn_gate.weight", l);            /* (n_ff, n_embd) */
            DS_MAT(d, p->n_ff, 1.0f, "blk.%u.ffn_up.weight", l);
            DS_MAT(p->n_ff, d, resid, "blk.%u.ffn_down.weight", l);           /* (n_embd, n_ff) */
            continue;
        }
        DS_MAT(d, ne_x, 1.0f, "blk.%u.ffn_gate_inp.weight", l);               /* (n_expert, n_embd) */
        pl->t[pl->n - 1].type = MICA_DTYPE_F32;                               /* routers stay F32 */
        pl->t[pl->n - 1].row_bytes = (uint64_t)d * sizeof(float);
        if (x->probs_b) DS_ADD(ne_x, 1, 1, 0.0f, 0.1f, "blk.%u.exp_probs_b.bias", l); /* (n_expert) */
        DS_ADD(d, p->n_ff_exp, ne_x, 0.0f, 1.0f / sqrtf((float)d), "blk.%u.ffn_gate_exps.weight", l);
        DS_ADD(d, p->n_ff_exp, ne_x, 0.0f, 1.0f / sqrtf((float)d), "blk.%u.ffn_up_exps.weight", l);
        DS_ADD(p->n_ff_exp, d, ne_x, 0.0f, resid / sqrtf((float)p->n_ff_exp), "blk.%u.ffn_down_exps.weight", l);
        if (ff_sh > 0) {
            DS_MAT(d, ff_sh, 1.0f, "blk.%u.ffn_gate_shexp.weight", l);        /* (n_shared*ff_exp, n_embd) */
            DS_MAT(d, ff_sh, 1.0f, "blk.%u.ffn_up_shexp.weight", l);
            DS_MAT(ff_sh, d, resid, "blk.%u.ffn_down_shexp.weight", l);       /* (n_embd, n_shared*ff_exp) */
        }
    }
    DS_NORM(d, "output_norm.weight");
    DS_MAT(d, n_vocab, GEN_LOGIT_STD, "output.weight");                       /* (n_vocab, n_embd) */
#undef DS_NORM
#undef DS_MAT
#undef DS_ADD
    return MICA_OK;
}

/*
 * The tensors of a mimo2 preset (MODEL_FAMILIES.md 5.6): per-block KV head
 * counts, q/k heads of head_dim and v heads of head_dim_v, attn_sinks {n_head}
 * on the sliding blocks (N(0, 1) logits), a dense FFN in block 0 and the MTP
 * blocks, routed experts with a router and exp_probs_b (N(0, 0.1^2)) elsewhere,
 * and for each MTP block nextn.eh_proj {2 n_embd, n_embd}, nextn.enorm,
 * nextn.hnorm and layer_output_norm.
 */
static mica_status gen_plan_build_mimo2(gen_plan *pl, const gen_preset *p, const gen_mimo *x,
                                        int64_t n_vocab, mica_err *err) {
    const int64_t d = p->n_embd, nh = p->n_head, hk = p->head_dim, hv = x->head_dim_v;
    const int64_t ne_x = p->n_expert, ff = p->n_ff, ff_x = p->n_ff_exp;
    const uint32_t n_block = p->n_layer + x->n_nextn;
    const float resid = 1.0f / sqrtf(2.0f * (float)p->n_layer), noise = 0.05f;
    char nm[GGUF_MAX_NAME + 1];
    mica_status st;
#define MM_ADD(ne0, ne1, ne2, mean, std, ...)                                         \
    do {                                                                              \
        snprintf(nm, sizeof nm, __VA_ARGS__);                                         \
        if ((st = gen_plan_add(pl, nm, ne0, ne1, ne2, mean, std, err))) return st;    \
    } while (0)
#define MM_MAT(ne0, ne1, scale, ...) MM_ADD(ne0, ne1, 1, 0.0f, (scale) / sqrtf((float)(ne0)), __VA_ARGS__)
#define MM_NORM(n, ...) MM_ADD(n, 1, 1, 1.0f, noise, __VA_ARGS__)
    MM_ADD(d, n_vocab, 1, 0.0f, GEN_EMBD_STD, "token_embd.weight");           /* (n_vocab, n_embd) */
    for (uint32_t l = 0; l < n_block; l++) {
        const bool swa = gen_mimo_is_swa(p, x, l), mtp = l >= p->n_layer;
        const int64_t nkv = swa ? x->n_head_kv_swa : p->n_head_kv;
        MM_NORM(d, "blk.%u.attn_norm.weight", l);
        MM_MAT(d, nh * hk, 1.0f, "blk.%u.attn_q.weight", l);                  /* (nh*dk, n_embd) */
        MM_MAT(d, nkv * hk, 1.0f, "blk.%u.attn_k.weight", l);                 /* (nkv*dk, n_embd) */
        MM_MAT(d, nkv * hv, 1.0f, "blk.%u.attn_v.weight", l);                 /* (nkv*dv, n_embd) */
        MM_MAT(nh * hv, d, resid, "blk.%u.attn_output.weight", l);            /* (n_embd, nh*dv) */
        if (swa) MM_ADD(nh, 1, 1, 0.0f, 1.0f, "blk.%u.attn_sinks.weight", l); /* (nh) */
        MM_NORM(d, "blk.%u.ffn_norm.weight", l);
        if (l == 0 || mtp) {
            MM_MAT(d, ff, 1.0f, "blk.%u.ffn_gate.weight", l);                 /* (n_ff, n_embd) */
            MM_MAT(d, ff, 1.0f, "blk.%u.ffn_up.weight", l);
            MM_MAT(ff, d, resid, "blk.%u.ffn_down.weight", l);                /* (n_embd, n_ff) */
        } else {
            MM_MAT(d, ne_x, 1.0f, "blk.%u.ffn_gate_inp.weight", l);           /* (n_expert, n_embd) */
            pl->t[pl->n - 1].type = MICA_DTYPE_F32;                           /* routers stay F32 */
            pl->t[pl->n - 1].row_bytes = (uint64_t)d * sizeof(float);
            MM_ADD(ne_x, 1, 1, 0.0f, 0.1f, "blk.%u.exp_probs_b.bias", l);     /* (n_expert) */
            MM_ADD(d, ff_x, ne_x, 0.0f, 1.0f / sqrtf((float)d), "blk.%u.ffn_gate_exps.weight", l);
            MM_ADD(d, ff_x, ne_x, 0.0f, 1.0f / sqrtf((float)d), "blk.%u.ffn_up_exps.weight", l);
            MM_ADD(ff_x, d, ne_x, 0.0f, resid / sqrtf((float)ff_x), "blk.%u.ffn_down_exps.weight", l);
        }
        if (mtp) {
            MM_MAT(2 * d, d, 1.0f, "blk.%u.nextn.eh_proj.weight", l);         /* (n_embd, 2 n_embd) */
            MM_NORM(d, "blk.%u.nextn.enorm.weight", l);
            MM_NORM(d, "blk.%u.nextn.hnorm.weight", l);
            MM_NORM(d, "blk.%u.layer_output_norm.weight", l);
        }
    }
    MM_NORM(d, "output_norm.weight");
    MM_MAT(d, n_vocab, GEN_LOGIT_STD, "output.weight");                       /* (n_vocab, n_embd) */
#undef MM_NORM
#undef MM_MAT
#undef MM_ADD
    return MICA_OK;
}

/* Lists every tensor of preset p with n_vocab tokens. */
static mica_status gen_plan_build(gen_plan *pl, const gen_preset *p, int64_t n_vocab,
                                  mica_err *err) {
    const gen_mla *mla = gen_mla_find(p->name);
    if (mla) return gen_plan_build_deepseek2(pl, p, mla, n_vocab, err);
    const gen_mimo *mimo = gen_mimo_find(p->name);
    if (mimo) return gen_plan_build_mimo2(pl, p, mimo, n_vocab, err);
    const int64_t d = p->n_embd, ff = p->n_ff, hd = p->head_dim;
    const int64_t q_dim = (int64_t)p->n_head * hd, kv_dim = (int64_t)p->n_head_kv * hd;
    const float resid = 1.0f / sqrtf(2.0f * (float)p->n_layer);
    const float norm_noise = 0.05f, bias_std = 0.1f;
    /*
     * Tied models: logits = token_embd . (g * n) where n, the normalised final
     * state, still leans towards the input token's own embedding (the
     * residual branches only nudge the stream). With a positive gain g that
     * token's logit stands sqrt(n_embd) spreads above the rest and the model
     * just echoes its input; shrinking the embedding instead makes the early
     * layers replace the stream and the model over-sensitive to rounding.
     * So g gets random signs (the echo term sums e_t[i]^2 * g[i] to ~0) and
     * |g| = GEN_LOGIT_STD / (GEN_EMBD_STD * sqrt(n_embd)) sets the logits' std.
     */
    const float out_gain = p->tied ? GEN_LOGIT_STD / (GEN_EMBD_STD * sqrtf((float)d)) : 1.0f;
    char nm[GGUF_MAX_NAME + 1];
    mica_status st;
#define GEN_ADD3(ne0, ne1, ne2, mean, std)                                        \
    do {                                                                          \
        if ((st = gen_plan_add(pl, nm, ne0, ne1, ne2, mean, std, err))) return st; \
    } while (0)
#define GEN_ADD(ne0, ne1, mean, std) GEN_ADD3(ne0, ne1, 1, mean, std)
#define GEN_MAT(ne0, ne1, scale) GEN_ADD(ne0, ne1, 0.0f, (scale) / sqrtf((float)(ne0)))
#define GEN_EXPS(ne0, ne1, scale) GEN_ADD3(ne0, ne1, ne_x, 0.0f, (scale) / sqrtf((float)(ne0)))
    const int64_t ne_x = p->n_expert, ff_x = p->n_ff_exp;

    snprintf(nm, sizeof nm, "token_embd.weight");
    GEN_ADD(d, n_vocab, 0.0f, GEN_EMBD_STD);                      /* (n_vocab, n_embd) */
    for (uint32_t l = 0; l < p->n_layer; l++) {
        snprintf(nm, sizeof nm, "blk.%u.attn_norm.weight", l);
        GEN_ADD(d, 1, 1.0f, norm_noise);                          /* (n_embd) */
        snprintf(nm, sizeof nm, "blk.%u.attn_q.weight", l);
        GEN_MAT(d, q_dim, 1.0f);                                  /* (q_dim, n_embd) */
        snprintf(nm, sizeof nm, "blk.%u.attn_k.weight", l);
        GEN_MAT(d, kv_dim, 1.0f);                                 /* (kv_dim, n_embd) */
        snprintf(nm, sizeof nm, "blk.%u.attn_v.weight", l);
        GEN_MAT(d, kv_dim, 1.0f);                                 /* (kv_dim, n_embd) */
        if (p->qkv_bias) {
            snprintf(nm, sizeof nm, "blk.%u.attn_q.bias", l);
            GEN_ADD(q_dim, 1, 0.0f, bias_std);                    /* (q_dim) */
            snprintf(nm, sizeof nm, "blk.%u.attn_k.bias", l);
            GEN_ADD(kv_dim, 1, 0.0f, bias_std);                   /* (kv_dim) */
            snprintf(nm, sizeof nm, "blk.%u.attn_v.bias", l);
            GEN_ADD(kv_dim, 1, 0.0f, bias_std);                   /* (kv_dim) */
        }
        if (p->qk_norm) {
            snprintf(nm, sizeof nm, "blk.%u.attn_q_norm.weight", l);
            GEN_ADD(p->qk_norm_full ? q_dim : hd, 1, 1.0f, norm_noise);  /* (head_dim) or (q_dim) */
            snprintf(nm, sizeof nm, "blk.%u.attn_k_norm.weight", l);
            GEN_ADD(p->qk_norm_full ? kv_dim : hd, 1, 1.0f, norm_noise); /* (head_dim) or (kv_dim) */
        }
        snprintf(nm, sizeof nm, "blk.%u.attn_output.weight", l);
        GEN_MAT(q_dim, d, resid);                                 /* (n_embd, q_dim) */
        snprintf(nm, sizeof nm, "blk.%u.ffn_norm.weight", l);
        GEN_ADD(d, 1, 1.0f, norm_noise);                          /* (n_embd) */
        if (ne_x > 0) {
            snprintf(nm, sizeof nm, "blk.%u.ffn_gate_inp.weight", l);
            GEN_MAT(d, ne_x, 1.0f);                               /* (n_expert, n_embd) */
            pl->t[pl->n - 1].type = MICA_DTYPE_F32;               /* routers stay F32 */
            pl->t[pl->n - 1].row_bytes = (uint64_t)d * sizeof(float);
            snprintf(nm, sizeof nm, "blk.%u.ffn_gate_exps.weight", l);
            GEN_EXPS(d, ff_x, 1.0f);                              /* (n_expert, n_ff_exp, n_embd) */
            snprintf(nm, sizeof nm, "blk.%u.ffn_up_exps.weight", l);
            GEN_EXPS(d, ff_x, 1.0f);                              /* (n_expert, n_ff_exp, n_embd) */
            snprintf(nm, sizeof nm, "blk.%u.ffn_down_exps.weight", l);
            GEN_EXPS(ff_x, d, resid);                             /* (n_expert, n_embd, n_ff_exp) */
            continue;
        }
        snprintf(nm, sizeof nm, "blk.%u.ffn_gate.weight", l);
        GEN_MAT(d, ff, 1.0f);                                     /* (n_ff, n_embd) */
        snprintf(nm, sizeof nm, "blk.%u.ffn_up.weight", l);
        GEN_MAT(d, ff, 1.0f);                                     /* (n_ff, n_embd) */
        snprintf(nm, sizeof nm, "blk.%u.ffn_down.weight", l);
        GEN_MAT(ff, d, resid);                                    /* (n_embd, n_ff) */
    }
    snprintf(nm, sizeof nm, "output_norm.weight");
    GEN_ADD(d, 1, out_gain, norm_noise * out_gain);               /* (n_embd) */
    pl->t[pl->n - 1].random_sign = p->tied;
    if (!p->tied) {
        snprintf(nm, sizeof nm, "output.weight");
        GEN_MAT(d, n_vocab, GEN_LOGIT_STD);                       /* (n_vocab, n_embd) */
    }
#undef GEN_EXPS
#undef GEN_MAT
#undef GEN_ADD
#undef GEN_ADD3
    return MICA_OK;
}

/* ---- vocabularies ---- */

/* A synthetic vocabulary under construction; texts own their bytes. */
typedef struct gen_vocab {
    char **text;
    float *score;
    int32_t *type;
    char **merges;
    int64_t n, n_merges, cap;
} gen_vocab;

static void gen_vocab_free(gen_vocab *v) {
    for (int64_t i = 0; i < v->n; i++) mica_free(v->text[i]);
    for (int64_t i = 0; i < v->n_merges; i++) mica_free(v->merges[i]);
    mica_free(v->text);
    mica_free(v->score);
    mica_free(v->type);
    mica_free(v->merges);
    memset(v, 0, sizeof *v);
}

static bool gen_vocab_alloc(gen_vocab *v, int64_t n) {
    memset(v, 0, sizeof *v);
    v->cap = n;
    v->text = mica_calloc((size_t)n, sizeof *v->text);
    v->score = mica_calloc((size_t)n, sizeof *v->score);
    v->type = mica_calloc((size_t)n, sizeof *v->type);
    v->merges = mica_calloc((size_t)n, sizeof *v->merges);
    return v->text && v->score && v->type && v->merges;
}

/* Appends a token (copied); merge (if not NULL) is "left right", copied. */
static bool gen_vocab_push(gen_vocab *v, const char *text, float score, int32_t type,
                           const char *merge) {
    MICA_ASSERT(v->n < v->cap);
    char *t = mica_strndup(text, strlen(text));
    if (!t) return false;
    v->text[v->n] = t;
    v->score[v->n] = score;
    v->type[v->n] = type;
    v->n++;
    if (merge) {
        char *m = mica_strndup(merge, strlen(merge));
        if (!m) return false;
        v->merges[v->n_merges++] = m;
    }
    return true;
}

/* Letter string number k of length len (base-26, 'a' first) into buf. */
static void gen_letters(uint64_t k, int len, char *buf) {
    for (int i = len - 1; i >= 0; i--) {
        buf[i] = (char)('a' + k % 26);
        k /= 26;
    }
    buf[len] = '\0';
}

/*
 * Fills the vocabulary up to `limit` tokens with pieces made of lowercase
 * letters, shortest first: for each length, the bare strings, then the same
 * strings behind `prefix` (U+2581 for SPM, U+0120 for GPT-2 BPE). Each new
 * piece is an existing piece plus one letter; `with_merges` records that
 * split as a merge. Bare single letters are skipped when `have_letters`
 * (byte-level vocabularies already hold them).
 */
static bool gen_vocab_fill_pieces(gen_vocab *v, int64_t limit, const char *prefix,
                                  bool have_letters, bool with_merges) {
    char piece[64], left[64], merge[160];
    float score = 0.0f;
    for (int len = 1; len <= 8 && v->n < limit; len++) {
        uint64_t count = 1;
        for (int i = 0; i < len; i++) count *= 26;
        for (int pass = 0; pass < 2 && v->n < limit; pass++) {
            if (pass == 0 && len == 1 && have_letters) continue;
            for (uint64_t k = 0; k < count && v->n < limit; k++) {
                char letters[16];
                gen_letters(k, len, letters);
                snprintf(piece, sizeof piece, "%s%s", pass ? prefix : "", letters);
                /* left part: the piece without its last letter */
                snprintf(left, sizeof left, "%.*s", (int)(strlen(piece) - 1), piece);
                if (with_merges) snprintf(merge, sizeof merge, "%s %c", left, letters[len - 1]);
                if (!gen_vocab_push(v, piece, score, 1, with_merges ? merge : NULL)) return false;
                score -= 1.0f;
            }
        }
    }
    return v->n == limit;
}

/* SentencePiece-style: <unk>, <s>, </s>, 256 byte tokens, then letter pieces. */
static bool gen_vocab_spm(gen_vocab *v, int64_t n) {
    if (n < 3 + 256 + 1 || !gen_vocab_alloc(v, n)) return false;
    bool ok = gen_vocab_push(v, "<unk>", 0.0f, 2, NULL) && gen_vocab_push(v, "<s>", 0.0f, 3, NULL) &&
              gen_vocab_push(v, "</s>", 0.0f, 3, NULL);
    for (int b = 0; ok && b < 256; b++) {
        char t[8];
        snprintf(t, sizeof t, "<0x%02X>", b);
        ok = gen_vocab_push(v, t, 0.0f, 6, NULL);
    }
    if (ok) { /* "▁" alone first, so every "▁x" is reachable */
        ok = gen_vocab_push(v, "\xE2\x96\x81", 0.0f, 1, NULL);
    }
    return ok && gen_vocab_fill_pieces(v, n, "\xE2\x96\x81", false, false);
}

/* UTF-8 of the GPT-2 byte-level code point for byte b (FORMATS.md 3.5). */
static void gen_byte_to_unicode(int b, char out[4]) {
    unsigned cp;
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) {
        cp = (unsigned)b;
    } else { /* the 68 other bytes map, in increasing order, to U+0100.. */
        unsigned k = 0;
        for (int c = 0; c < b; c++)
            if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))) k++;
        cp = 0x100 + k;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = '\0';
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = '\0';
    }
}

/* GPT-2 byte-level BPE: 256 byte tokens, merged letter pieces, ChatML specials last. */
static bool gen_vocab_bpe(gen_vocab *v, int64_t n) {
    if (n < 256 + 26 + 3 || !gen_vocab_alloc(v, n)) return false;
    bool ok = true;
    for (int b = 0; ok && b < 256; b++) {
        char t[4];
        gen_byte_to_unicode(b, t);
        ok = gen_vocab_push(v, t, 0.0f, 1, NULL);
    }
    ok = ok && gen_vocab_fill_pieces(v, n - 3, "\xC4\xA0", true, true); /* U+0120 "Ġ" */
    return ok && gen_vocab_push(v, "<|endoftext|>", 0.0f, 3, NULL) &&
           gen_vocab_push(v, "<|im_start|>", 0.0f, 3, NULL) &&
           gen_vocab_push(v, "<|im_end|>", 0.0f, 3, NULL);
}

/* Wraps a writer setter that reports no message of its own. */
#define GEN_W(call)                                                                     \
    do {                                                                                \
        mica_status st_ = (call);                                                       \
        if (st_ != MICA_OK)                                                             \
            return mica_err_set(err, st_, "gguf writer: %s failed (%s)", #call,         \
                                mica_status_str(st_));                                  \
    } while (0)

static mica_status gen_write_vocab(gguf_writer *w, const gen_preset *p, int64_t n,
                                   mica_err *err) {
    gen_vocab v;
    bool ok = p->vocab == GEN_VOCAB_SPM ? gen_vocab_spm(&v, n) : gen_vocab_bpe(&v, n);
    if (!ok) {
        gen_vocab_free(&v);
        return mica_err_set(err, MICA_ERR_NOMEM, "cannot build a %lld-token vocabulary", (long long)n);
    }
    mica_status st = MICA_OK;
#define GEN_WV(call)                                                                          \
    do {                                                                                      \
        if (st == MICA_OK && (st = (call)) != MICA_OK)                                        \
            mica_err_set(err, st, "gguf writer: %s failed (%s)", #call, mica_status_str(st)); \
    } while (0)
    GEN_WV(gguf_writer_set_str(w, "tokenizer.ggml.model", p->vocab == GEN_VOCAB_SPM ? "llama" : "gpt2"));
    if (p->vocab == GEN_VOCAB_BPE) GEN_WV(gguf_writer_set_str(w, "tokenizer.ggml.pre", "qwen2"));
    GEN_WV(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v.text, NULL,
                                   (uint64_t)v.n));
    if (p->vocab == GEN_VOCAB_SPM)
        GEN_WV(gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, v.score, (uint64_t)v.n));
    GEN_WV(gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, v.type, (uint64_t)v.n));
    if (p->vocab == GEN_VOCAB_BPE) {
        GEN_WV(gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v.merges,
                                       NULL, (uint64_t)v.n_merges));
        GEN_WV(gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)(n - 3)));
        GEN_WV(gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)(n - 1)));
        GEN_WV(gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)(n - 3)));
        GEN_WV(gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", false));
    } else {
        GEN_WV(gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1));
        GEN_WV(gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2));
        GEN_WV(gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0));
        GEN_WV(gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true));
        GEN_WV(gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false));
        GEN_WV(gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", true));
    }
#undef GEN_WV
    gen_vocab_free(&v);
    return st;
}

/* Copies one tokenizer.* value; `key` is NUL-terminated. */
static mica_status gen_copy_value(gguf_writer *w, const gguf_ctx *g, const char *key,
                                  const gguf_value *val, mica_err *err) {
    switch (val->type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32:
        GEN_W(gguf_writer_set_u32(w, key, (uint32_t)val->v.u)); /* u8/u16 widen to u32 */
        return MICA_OK;
    case GGUF_TYPE_UINT64:
        GEN_W(gguf_writer_set_u64(w, key, val->v.u));
        return MICA_OK;
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32:
        GEN_W(gguf_writer_set_i32(w, key, (int32_t)val->v.i));
        return MICA_OK;
    case GGUF_TYPE_INT64:
        if (val->v.i < INT32_MIN || val->v.i > INT32_MAX)
            return mica_err_set(err, MICA_ERR_UNSUPPORTED, "%s: INT64 value out of INT32 range", key);
        GEN_W(gguf_writer_set_i32(w, key, (int32_t)val->v.i));
        return MICA_OK;
    case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64:
        GEN_W(gguf_writer_set_f32(w, key, (float)val->v.f)); /* f64 narrows to f32 */
        return MICA_OK;
    case GGUF_TYPE_BOOL:
        GEN_W(gguf_writer_set_bool(w, key, val->v.b));
        return MICA_OK;
    case GGUF_TYPE_STRING: {
        if (memchr(val->v.s.ptr, '\0', (size_t)val->v.s.len))
            return mica_err_set(err, MICA_ERR_UNSUPPORTED, "%s: string with a NUL byte", key);
        char *s = mica_strndup(val->v.s.ptr, (size_t)val->v.s.len);
        if (!s) return mica_err_set(err, MICA_ERR_NOMEM, "out of memory");
        mica_status st = gguf_writer_set_str(w, key, s);
        mica_free(s);
        if (st) return mica_err_set(err, st, "%s: gguf writer failed", key);
        return MICA_OK;
    }
    case GGUF_TYPE_ARRAY:
        break;
    default:
        return mica_err_set(err, MICA_ERR_UNSUPPORTED, "%s: unknown value type", key);
    }
    uint64_t n = val->v.arr.n;
    if (val->v.arr.elem == GGUF_TYPE_ARRAY)
        return mica_err_set(err, MICA_ERR_UNSUPPORTED, "%s: nested arrays are not copied", key);
    if (val->v.arr.elem != GGUF_TYPE_STRING) {
        GEN_W(gguf_writer_set_arr(w, key, val->v.arr.elem, val->v.arr.data, n));
        return MICA_OK;
    }
    const char **strs = mica_calloc((size_t)(n ? n : 1), sizeof *strs);
    uint64_t *lens = mica_calloc((size_t)(n ? n : 1), sizeof *lens);
    mica_status st = MICA_OK;
    if (!strs || !lens) st = mica_err_set(err, MICA_ERR_NOMEM, "%s: out of memory", key);
    for (uint64_t i = 0; st == MICA_OK && i < n; i++) {
        gguf_value el;
        if (!gguf_arr_get(g, val, i, &el) || el.type != GGUF_TYPE_STRING)
            st = mica_err_set(err, MICA_ERR_FORMAT, "%s: element %llu unreadable", key,
                              (unsigned long long)i);
        else {
            strs[i] = el.v.s.ptr;
            lens[i] = el.v.s.len;
        }
    }
    if (st == MICA_OK && (st = gguf_writer_set_arr_str(w, key, strs, lens, n)) != MICA_OK)
        mica_err_set(err, st, "%s: gguf writer failed", key);
    mica_free(strs);
    mica_free(lens);
    return st;
}

/* Copies every tokenizer.* key of the vocabulary file; *n_vocab = its token count. */
static mica_status gen_copy_vocab(gguf_writer *w, const char *path, bool skip_template,
                                  int64_t *n_vocab, mica_err *err) {
    gguf_ctx *g = NULL;
    mica_status st = gguf_open(path, &g, err);
    if (st) return st;
    gguf_value toks = {.type = GGUF_TYPE_UINT8}; /* stays non-ARRAY if the key is absent */
    st = gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &toks, err);
    if (st == MICA_OK && (toks.type != GGUF_TYPE_ARRAY || toks.v.arr.n == 0 ||
                          toks.v.arr.n > (1u << 22)))
        st = mica_err_set(err, MICA_ERR_FORMAT, "%s: no usable tokenizer.ggml.tokens", path);
    for (uint64_t i = 0; st == MICA_OK && i < gguf_n_kv(g); i++) {
        const gguf_kv *kv = gguf_kv_at(g, i);
        if (kv->key.len < 10 || memcmp(kv->key.ptr, "tokenizer.", 10) != 0) continue;
        if (skip_template && kv->key.len == 23 && memcmp(kv->key.ptr, "tokenizer.chat_template", 23) == 0)
            continue;
        char *key = mica_strndup(kv->key.ptr, (size_t)kv->key.len);
        if (!key) {
            st = mica_err_set(err, MICA_ERR_NOMEM, "out of memory");
            break;
        }
        st = gen_copy_value(w, g, key, &kv->val, err);
        mica_free(key);
    }
    if (st == MICA_OK) *n_vocab = (int64_t)toks.v.arr.n;
    gguf_close(g);
    return st;
}

/* ---- assembly ---- */

/* The deepseek2 keys (FORMATS.md 4.2, 4.6), over the common ones. */
static mica_status gen_write_hparams_deepseek2(gguf_writer *w, const gen_preset *p, const gen_mla *x,
                                               mica_err *err) {
    char key[96];
#define DS_KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, p->arch), key)
    const uint32_t hk = x->qk_nope + x->qk_rope;
    /* head_count_kv: 1 in MLA files (the current converter), n_head in legacy attn_kv_b files */
    GEN_W(gguf_writer_set_u32(w, DS_KEY("attention.head_count_kv"), x->legacy_kv_b ? p->n_head : 1));
    if (x->q_lora > 0) GEN_W(gguf_writer_set_u32(w, DS_KEY("attention.q_lora_rank"), x->q_lora));
    GEN_W(gguf_writer_set_u32(w, DS_KEY("attention.kv_lora_rank"), x->kv_lora));
    if (x->legacy_kv_b) { /* older files: the decompressed head sizes */
        GEN_W(gguf_writer_set_u32(w, DS_KEY("attention.key_length"), hk));
        GEN_W(gguf_writer_set_u32(w, DS_KEY("attention.value_length"), x->v_head));
    } else { /* MLA files: the cached (latent) sizes, and the decompressed ones as *_mla */
        GEN_W(gguf_writer_set_u32(w, DS_KEY("attention.key_length"), x->kv_lora + x->qk_rope));
        GEN_W(gguf_writer_set_u32(w, DS_KEY("attention.value_length"), x->kv_lora));
        GEN_W(gguf_writer_set_u32(w, DS_KEY("attention.key_length_mla"), hk));
        GEN_W(gguf_writer_set_u32(w, DS_KEY("attention.value_length_mla"), x->v_head));
    }
    GEN_W(gguf_writer_set_u32(w, DS_KEY("rope.dimension_count"), x->qk_rope));
    GEN_W(gguf_writer_set_u32(w, DS_KEY("leading_dense_block_count"), x->n_dense));
    GEN_W(gguf_writer_set_u32(w, DS_KEY("expert_shared_count"), x->n_shared));
    GEN_W(gguf_writer_set_f32(w, DS_KEY("expert_weights_scale"), x->w_scale));
    GEN_W(gguf_writer_set_bool(w, DS_KEY("expert_weights_norm"), x->norm_topk));
    GEN_W(gguf_writer_set_u32(w, DS_KEY("expert_gating_func"), x->gating));
    if (x->n_group > 0) {
        GEN_W(gguf_writer_set_u32(w, DS_KEY("expert_group_count"), x->n_group));
        GEN_W(gguf_writer_set_u32(w, DS_KEY("expert_group_used_count"), x->n_group_used));
    }
    if (x->yarn_factor > 0.0f) {
        GEN_W(gguf_writer_set_str(w, DS_KEY("rope.scaling.type"), "yarn"));
        GEN_W(gguf_writer_set_f32(w, DS_KEY("rope.scaling.factor"), x->yarn_factor));
        GEN_W(gguf_writer_set_u32(w, DS_KEY("rope.scaling.original_context_length"), x->yarn_orig_ctx));
        GEN_W(gguf_writer_set_f32(w, DS_KEY("rope.scaling.yarn_log_multiplier"), x->yarn_log_mul));
    }
#undef DS_KEY
    return MICA_OK;
}

/* The mimo2 keys (FORMATS.md 4.2, 4.6; MODEL_FAMILIES.md 5.6), over the common ones. */
static mica_status gen_write_hparams_mimo2(gguf_writer *w, const gen_preset *p, const gen_mimo *x,
                                           mica_err *err) {
    char key[96];
#define MM_KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, p->arch), key)
    const uint32_t n_block = p->n_layer + x->n_nextn;
    int32_t heads[64], heads_kv[64], swa[64];
    if (n_block > MICA_ARRAY_LEN(heads)) return mica_err_set(err, MICA_ERR_INTERNAL, "too many blocks");
    for (uint32_t l = 0; l < n_block; l++) {
        swa[l] = gen_mimo_is_swa(p, x, l) ? 1 : 0;
        heads[l] = (int32_t)p->n_head;
        heads_kv[l] = (int32_t)(swa[l] ? x->n_head_kv_swa : p->n_head_kv);
    }
    GEN_W(gguf_writer_set_u32(w, MM_KEY("block_count"), n_block));
    GEN_W(gguf_writer_set_u32(w, MM_KEY("nextn_predict_layers"), x->n_nextn));
    if (x->head_count_array)
        GEN_W(gguf_writer_set_arr(w, MM_KEY("attention.head_count"), GGUF_TYPE_INT32, heads, n_block));
    GEN_W(gguf_writer_set_arr(w, MM_KEY("attention.head_count_kv"), GGUF_TYPE_INT32, heads_kv, n_block));
    GEN_W(gguf_writer_set_u32(w, MM_KEY("attention.key_length"), p->head_dim));
    GEN_W(gguf_writer_set_u32(w, MM_KEY("attention.value_length"), x->head_dim_v));
    GEN_W(gguf_writer_set_u32(w, MM_KEY("rope.dimension_count"), x->n_rot));
    GEN_W(gguf_writer_set_f32(w, MM_KEY("rope.freq_base_swa"), x->rope_base_swa));
    GEN_W(gguf_writer_set_u32(w, MM_KEY("attention.sliding_window"), x->window));
    GEN_W(gguf_writer_set_arr(w, MM_KEY("attention.sliding_window_pattern"), GGUF_TYPE_INT32, swa, n_block));
    GEN_W(gguf_writer_set_f32(w, MM_KEY("attention.value_scale"), x->value_scale));
    GEN_W(gguf_writer_set_u32(w, MM_KEY("expert_gating_func"), 2));
    GEN_W(gguf_writer_set_bool(w, MM_KEY("expert_weights_norm"), true));
    GEN_W(gguf_writer_set_f32(w, MM_KEY("expert_weights_scale"), 1.0f));
#undef MM_KEY
    return MICA_OK;
}

static mica_status gen_write_hparams(gguf_writer *w, const gen_preset *p, uint32_t type,
                                     int64_t n_vocab, mica_err *err) {
    char key[96];
#define GEN_KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, p->arch), key)
    GEN_W(gguf_writer_set_str(w, "general.architecture", p->arch));
    GEN_W(gguf_writer_set_str(w, "general.name", p->name));
    GEN_W(gguf_writer_set_u32(w, "general.file_type", gen_file_type(type)));
    if (type != MICA_DTYPE_F32 && type != MICA_DTYPE_F16 && type != MICA_DTYPE_BF16)
        GEN_W(gguf_writer_set_u32(w, "general.quantization_version", 2));
    GEN_W(gguf_writer_set_u32(w, GEN_KEY("context_length"), p->n_ctx));
    GEN_W(gguf_writer_set_u32(w, GEN_KEY("embedding_length"), p->n_embd));
    GEN_W(gguf_writer_set_u32(w, GEN_KEY("block_count"), p->n_layer));
    GEN_W(gguf_writer_set_u32(w, GEN_KEY("feed_forward_length"), p->n_ff));
    GEN_W(gguf_writer_set_u32(w, GEN_KEY("attention.head_count"), p->n_head));
    GEN_W(gguf_writer_set_u32(w, GEN_KEY("attention.head_count_kv"), p->n_head_kv));
    if (p->head_dim * p->n_head != p->n_embd) {
        GEN_W(gguf_writer_set_u32(w, GEN_KEY("attention.key_length"), p->head_dim));
        GEN_W(gguf_writer_set_u32(w, GEN_KEY("attention.value_length"), p->head_dim));
    }
    GEN_W(gguf_writer_set_u32(w, GEN_KEY("rope.dimension_count"), p->head_dim));
    GEN_W(gguf_writer_set_f32(w, GEN_KEY("rope.freq_base"), p->rope_base));
    GEN_W(gguf_writer_set_f32(w, GEN_KEY("attention.layer_norm_rms_epsilon"), p->rms_eps));
    GEN_W(gguf_writer_set_u32(w, GEN_KEY("vocab_size"), (uint32_t)n_vocab));
    if (p->n_expert > 0) {
        GEN_W(gguf_writer_set_u32(w, GEN_KEY("expert_count"), p->n_expert));
        GEN_W(gguf_writer_set_u32(w, GEN_KEY("expert_used_count"), p->n_expert_used));
        if (strcmp(p->arch, "llama") != 0)
            GEN_W(gguf_writer_set_u32(w, GEN_KEY("expert_feed_forward_length"), p->n_ff_exp));
    }
#undef GEN_KEY
    const gen_mla *mla = gen_mla_find(p->name);
    if (mla) return gen_write_hparams_deepseek2(w, p, mla, err);
    const gen_mimo *mimo = gen_mimo_find(p->name);
    if (mimo) return gen_write_hparams_mimo2(w, p, mimo, err);
    return MICA_OK;
}

static mica_status gen_write_impl(const gen_params *prm, const gen_preset *p, gguf_writer *w,
                                  gen_plan *pl, gen_scratch *scr, const char *out_path,
                                  mica_err *err) {
    int64_t n_vocab = p->n_vocab;
    mica_status st;
    if (prm->vocab_path) {
        if ((st = gen_copy_vocab(w, prm->vocab_path, prm->chat_template != NULL, &n_vocab, err))) return st;
        if (!p->is_tiny && n_vocab != (int64_t)p->n_vocab)
            return mica_err_set(err, MICA_ERR_INVALID_ARG,
                                "%s has %lld tokens but preset %s needs %u", prm->vocab_path,
                                (long long)n_vocab, p->name, p->n_vocab);
    } else if ((st = gen_write_vocab(w, p, n_vocab, err))) {
        return st;
    }
    if (prm->chat_template) GEN_W(gguf_writer_set_str(w, "tokenizer.chat_template", prm->chat_template));
    if ((st = gen_write_hparams(w, p, prm->type, n_vocab, err))) return st;
    if ((st = gen_plan_build(pl, p, n_vocab, err))) return st;

    int64_t max_ne0 = 0;
    uint64_t max_row = 0;
    for (size_t i = 0; i < pl->n; i++) {
        max_ne0 = MICA_MAX(max_ne0, pl->t[i].ne[0]);
        max_row = MICA_MAX(max_row, pl->t[i].row_bytes);
    }
    const int nth = scr->pool ? pool_n_threads(scr->pool) : 1;
    scr->row_f32_stride = max_ne0;
    scr->row_f32 = mica_malloc((size_t)nth * (size_t)max_ne0 * sizeof(float));
    scr->row_q = mica_malloc((size_t)max_row);
    if (!scr->row_f32 || !scr->row_q) return mica_err_set(err, MICA_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < pl->n; i++) {
        gen_tensor *t = &pl->t[i];
        t->scr = scr;
        GEN_W(gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, gen_fill, t, NULL));
    }
    return gguf_writer_write(w, out_path, err);
}

mica_status gen_write(const gen_params *prm, const char *out_path, mica_err *err) {
    if (!prm || !out_path) return mica_err_set(err, MICA_ERR_INVALID_ARG, "gen_write: NULL argument");
    const gen_preset *p = gen_preset_find(prm->preset);
    if (!p)
        return mica_err_set(err, MICA_ERR_INVALID_ARG, "unknown preset '%s'",
                            prm->preset ? prm->preset : "(null)");
    if (!gen_type_supported(prm->type))
        return mica_err_set(err, MICA_ERR_INVALID_ARG, "type %s is not generated",
                            dtype_name(prm->type));
    kern_table kt;
    kern_table_init(&kt, KERN_ISA_GENERIC);
    for (uint32_t t = 0; t < MICA_DTYPE_COUNT; t++)
        if (gen_type_supported(t) && t != MICA_DTYPE_F32 && !kt.ops[t].from_float)
            return mica_err_set(err, MICA_ERR_INTERNAL, "no quantiser for %s", dtype_name(t));
    gguf_writer *w = NULL;
    mica_status st = gguf_writer_create(&w);
    if (st) return mica_err_set(err, st, "cannot create the GGUF writer");
    gguf_writer_set_sparse(w, prm->sparse);
    gen_plan pl = {.seed = prm->seed, .type = prm->type};
    gen_scratch scr = {.kt = &kt};
    if (prm->n_threads > 1 && !prm->sparse && (st = pool_create(MICA_MIN(prm->n_threads, MICA_MAX_THREADS), &scr.pool))) {
        gguf_writer_free(w);
        return mica_err_set(err, st, "cannot start %d threads", prm->n_threads);
    }
    st = gen_write_impl(prm, p, w, &pl, &scr, out_path, err);
    pool_free(scr.pool);
    gguf_writer_free(w);
    mica_free(pl.t);
    mica_free(scr.row_f32);
    mica_free(scr.row_q);
    return st;
}
