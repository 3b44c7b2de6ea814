/*
 * test_kvtype.c - the KV-cache element type (mica_session_params.kv_type)
 * on the tiny preset of every architecture.
 *
 * For each preset (F32 weights, so the cache is the only thing that
 * differs) a 24-token prompt in batches of 8 and 16 greedy tokens run with
 * F32 rows; then F32, F16 and Q8_0 sessions run the same prompt and are fed
 * the F32 run's greedy tokens (teacher forcing, so one difference cannot
 * change every later input). Per position, against the F32-KV logits:
 *   - rel = max|d| / max|ref| <= 1e-3 (F16) or 3e-2 (Q8_0), and the mean
 *     KL(ref || got) over those positions <= 1e-5 (F16) or 2e-3 (Q8_0);
 *   - the argmax (the greedy id) is the F32 run's.
 *   Why these bounds: F16 rows round each key/value to 11 significant bits
 *   (relative 2^-11 = 4.9e-4), the perturbation an F16 weight file gets and
 *   that tests/ref/README.md bounds by 1e-3 / 1e-5. Q8_0 rows move each
 *   value by at most half a step of max|block|/127, 1/254 of its 32-block's
 *   maximum (plus the f16 rounding of the scale, 2^-11 relative): exactly
 *   the error Q8_0 activation quantisation adds to every matrix product,
 *   which the oracle's quantised-type tolerance (rel 3e-2, KL 2e-3, README
 *   "Tolerances and why") was measured to cover; here it reaches only the
 *   attention inputs. Measured: dense presets rel <= 4e-3 (Q8_0), 1.3e-4
 *   (F16).
 *   Router flips: top-k expert selection is discontinuous, so any
 *   perturbation, however small, changes a MoE layer's choice where two
 *   router scores are within it; that position's logits then move by far
 *   more than the cache error (measured 0.05-0.3 relative). A position
 *   beyond the rel bound counts as a flip and is left out of the KL mean
 *   and the greedy check; MoE presets may have at most 10% of positions
 *   flipped, dense presets none. A wrong cache (wrong rows, type, scale or
 *   layout) moves every position, not one in ten.
 *   - the bytes the session allocated (mica_session_kv_bytes) equal the
 *     formula written below from each preset's published shape (gen.c's
 *     --list descriptions): per layer, rows held x (bytes of a K row + bytes
 *     of a V row), where a row of n values takes 4n bytes (F32), 2n (F16) or
 *     34 n/32 (Q8_0: an f16 scale and 32 int8 per block); a sliding-window
 *     layer of window W holds min(n_ctx, W + n_batch - 1) rows, the others
 *     n_ctx; DeepSeek's latent cache holds one row of kv_lora + rope values
 *     per position (its value is the row's first kv_lora).
 *     mica_model_kv_bytes_typed (what `mica info` prints) is the same
 *     formula at the default batch min(n_ctx, 512).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../test.h"
#include "convert/gen.h"
#include "mica.h"
#include "tensor/dtype.h"

enum { KVT_MAX_LAYERS = 4 };

typedef struct kvt_case {
    const char *preset;
    int n_layer;
    int64_t k[KVT_MAX_LAYERS], v[KVT_MAX_LAYERS]; /* values per position of each layer */
    int32_t window[KVT_MAX_LAYERS];              /* 0: global */
} kvt_case;

/* Shapes from the presets' descriptions (mica-gen --list). */
static const kvt_case kvt_cases[] = {
    /* 2 layers, 2 KV heads of 64 */
    {"tiny-llama", 2, {128, 128}, {128, 128}, {0, 0}},
    {"tiny-qwen2", 2, {128, 128}, {128, 128}, {0, 0}},
    {"tiny-qwen3", 2, {128, 128}, {128, 128}, {0, 0}},
    {"tiny-qwen3moe", 2, {128, 128}, {128, 128}, {0, 0}},
    {"tiny-mixtral", 2, {128, 128}, {128, 128}, {0, 0}},
    /* 4 KV heads of 64 */
    {"tiny-olmoe", 2, {256, 256}, {256, 256}, {0, 0}},
    /* latent rows of kv_lora 128 + rope 32, no separate V */
    {"tiny-deepseek2", 2, {160, 160}, {0, 0}, {0, 0}},
    {"tiny-deepseek3", 3, {160, 160, 160}, {0, 0, 0}, {0, 0, 0}},
    /* block 0 global with 1 KV head (k 96, v 64), blocks 1-3 window 8 with 2 */
    {"tiny-mimo2", 4, {96, 192, 192, 192}, {64, 128, 128, 128}, {0, 8, 8, 8}},
};

static uint64_t kvt_row(int64_t n, int32_t kv_type) {
    if (kv_type == MICA_KV_F32) return 4 * (uint64_t)n;
    if (kv_type == MICA_KV_F16) return 2 * (uint64_t)n;
    return (uint64_t)n / 32 * 34;
}

static uint64_t kvt_formula(const kvt_case *c, int32_t n_ctx, int32_t n_batch, int32_t kv_type) {
    uint64_t total = 0;
    for (int il = 0; il < c->n_layer; il++) {
        int64_t rows = n_ctx;
        if (c->window[il] > 0 && c->window[il] + n_batch - 1 < n_ctx) rows = c->window[il] + n_batch - 1;
        total += (uint64_t)rows * (kvt_row(c->k[il], kv_type) + kvt_row(c->v[il], kv_type));
    }
    return total;
}

enum { KVT_PROMPT = 24, KVT_GEN = 16, KVT_CTX = 64, KVT_BATCH = 8 };

/* Prompt logits [KVT_PROMPT][V], then the logits before each generated
 * token [KVT_GEN][V] into lg; each step's argmax into ids. The token fed
 * back is force[g] when force is not NULL (teacher forcing on another run's
 * sequence), else the argmax (greedy). */
static bool kvt_run(mica_model *m, int32_t kv_type, const int32_t *force, float *lg, int32_t *ids,
                    uint64_t *kv_bytes) {
    const int32_t V = mica_model_n_vocab(m);
    mica_session_params sp = mica_session_params_default();
    sp.n_ctx = KVT_CTX;
    sp.n_batch = KVT_BATCH;
    sp.n_threads = 2;
    sp.kv_type = kv_type;
    mica_session *s = NULL;
    char err[512] = "";
    if (mica_session_create(m, &sp, &s, err, sizeof err) != MICA_OK) {
        fprintf(stderr, "    session (%s): %s\n", mica_kv_type_name(kv_type), err);
        return false;
    }
    *kv_bytes = mica_session_kv_bytes(s);
    int32_t prompt[KVT_PROMPT];
    uint32_t x = 12345;
    for (int i = 0; i < KVT_PROMPT; i++) { /* an LCG over the vocabulary, BOS-free */
        x = x * 1103515245u + 12345u;
        prompt[i] = 3 + (int32_t)((x >> 8) % (uint32_t)(V - 3));
    }
    bool ok = mica_session_decode(s, prompt, KVT_PROMPT, lg) == MICA_OK;
    for (int g = 0; ok && g < KVT_GEN; g++) {
        const float *row = mica_session_logits(s);
        float *dst = lg + (size_t)(KVT_PROMPT + g) * (size_t)V;
        memcpy(dst, row, sizeof(float) * (size_t)V);
        int32_t best = 0;
        for (int32_t j = 1; j < V; j++)
            if (row[j] > row[best]) best = j;
        ids[g] = best;
        ok = mica_session_decode(s, force ? &force[g] : &best, 1, NULL) == MICA_OK;
    }
    mica_session_free(s);
    return ok;
}

/* rel = max|a - b| / max|a| and mean KL(softmax a || softmax b) over n rows. */
static void kvt_compare(const float *a, const float *b, int n, int32_t V, double *rel, double *kl) {
    double dmax = 0, amax = 0, klsum = 0;
    for (int r = 0; r < n; r++) {
        const float *x = a + (size_t)r * (size_t)V, *y = b + (size_t)r * (size_t)V;
        double mx = -INFINITY, my = -INFINITY, sx = 0, sy = 0;
        for (int32_t j = 0; j < V; j++) {
            dmax = fmax(dmax, fabs((double)x[j] - y[j]));
            amax = fmax(amax, fabs((double)x[j]));
            mx = fmax(mx, x[j]);
            my = fmax(my, y[j]);
        }
        for (int32_t j = 0; j < V; j++) {
            sx += exp(x[j] - mx);
            sy += exp(y[j] - my);
        }
        double k = 0;
        for (int32_t j = 0; j < V; j++) {
            const double lp = x[j] - mx - log(sx), lq = y[j] - my - log(sy);
            k += exp(lp) * (lp - lq);
        }
        klsum += k;
    }
    *rel = amax > 0 ? dmax / amax : dmax;
    *kl = klsum / n;
}

TEST(kv_types_every_arch) {
    enum { NPOS = KVT_PROMPT + KVT_GEN };
    for (size_t ci = 0; ci < sizeof kvt_cases / sizeof kvt_cases[0]; ci++) {
        const kvt_case *c = &kvt_cases[ci];
        char path[600], err[512] = "";
        snprintf(path, sizeof path, "%s/kvt_%s.gguf", test_tmp_dir(), c->preset);
        gen_params gp = {.preset = c->preset, .type = MICA_DTYPE_F32, .seed = 7};
        mica_err e = {0};
        ASSERT_OK(gen_write(&gp, path, &e));
        mica_model *m = NULL;
        mica_status st = mica_model_open(path, NULL, &m, err, sizeof err);
        unlink(path); /* the mapping stays valid */
        if (st) fprintf(stderr, "    %s: %s\n", c->preset, err);
        ASSERT_OK(st);
        const int32_t V = mica_model_n_vocab(m);
        const gen_preset *gpr = gen_preset_find(c->preset);
        ASSERT_TRUE(gpr != NULL);
        const bool moe = gpr->n_expert > 0;
        const size_t n_lg = (size_t)NPOS * (size_t)V;
        float *ref = malloc(sizeof(float) * n_lg), *got = malloc(sizeof(float) * n_lg);
        ASSERT_TRUE(ref && got);
        int32_t ref_ids[KVT_GEN], ids[KVT_GEN];
        uint64_t bytes = 0;
        bool ok = kvt_run(m, MICA_KV_F32, NULL, ref, ref_ids, &bytes);
        const int32_t types[] = {MICA_KV_F32, MICA_KV_F16, MICA_KV_Q8_0};
        for (size_t ti = 0; ok && ti < sizeof types / sizeof types[0]; ti++) {
            const int32_t t = types[ti];
            const uint64_t want = kvt_formula(c, KVT_CTX, KVT_BATCH, t);
            const uint64_t want_info = kvt_formula(c, 1000, 512, t);
            const uint64_t info = mica_model_kv_bytes_typed(m, 1000, t);
            ok = kvt_run(m, t, ref_ids, got, ids, &bytes);
            const double rel_tol = t == MICA_KV_Q8_0 ? 3e-2 : 1e-3, kl_tol = t == MICA_KV_Q8_0 ? 2e-3 : 1e-5;
            /* per position; a position beyond rel_tol is a router flip (see the test's header) */
            double rel_max = 0, kl_sum = 0;
            int n_in = 0, n_flip = 0, id_bad = 0;
            for (int r = 0; ok && r < NPOS; r++) {
                double rel = 0, kl = 0;
                kvt_compare(ref + (size_t)r * (size_t)V, got + (size_t)r * (size_t)V, 1, V, &rel, &kl);
                const bool flip = rel > rel_tol;
                if (flip) {
                    n_flip++;
                } else {
                    n_in++;
                    kl_sum += kl;
                    rel_max = rel > rel_max ? rel : rel_max;
                }
                if (r >= KVT_PROMPT && ids[r - KVT_PROMPT] != ref_ids[r - KVT_PROMPT] && !flip) id_bad++;
            }
            const double kl_mean = n_in ? kl_sum / n_in : 0;
            const int max_flips = moe ? NPOS / 10 : 0; /* a wrong cache moves every position */
            fprintf(stderr, "    %-15s kv %-4s rel %.2e  KL %.2e  router flips %d/%d  ids %s  bytes %llu (formula %llu)\n",
                    c->preset, mica_kv_type_name(t), rel_max, kl_mean, n_flip, NPOS,
                    id_bad ? "DIFFER" : "same", (unsigned long long)bytes, (unsigned long long)want);
            const bool pass = ok && id_bad == 0 && n_flip <= max_flips && kl_mean <= kl_tol && bytes == want &&
                              info == want_info && (t != MICA_KV_F32 || (rel_max == 0.0 && n_flip == 0));
            if (!pass) {
                fprintf(stderr, "    %s kv %s: FAIL (info %llu, formula %llu)\n", c->preset,
                        mica_kv_type_name(t), (unsigned long long)info, (unsigned long long)want_info);
                ok = false;
            }
        }
        free(ref);
        free(got);
        mica_model_free(m);
        ASSERT_TRUE(ok);
    }
}

/* The public names and an unknown type. */
TEST(kv_type_names_and_errors) {
    int32_t t = -1;
    ASSERT_TRUE(mica_kv_type_parse("q8_0", &t) && t == MICA_KV_Q8_0);
    ASSERT_TRUE(mica_kv_type_parse("F16", &t) && t == MICA_KV_F16);
    ASSERT_TRUE(mica_kv_type_parse("f32", &t) && t == MICA_KV_F32);
    ASSERT_TRUE(!mica_kv_type_parse("q4_0", &t));
    ASSERT_STREQ(mica_kv_type_name(MICA_KV_Q8_0), "q8_0");
    ASSERT_STREQ(mica_kv_type_name(99), "?");

    char path[600], err[512] = "";
    snprintf(path, sizeof path, "%s/kvt_err.gguf", test_tmp_dir());
    gen_params gp = {.preset = "tiny-llama", .type = MICA_DTYPE_Q8_0, .seed = 1};
    mica_err e = {0};
    ASSERT_OK(gen_write(&gp, path, &e));
    mica_model *m = NULL;
    ASSERT_OK(mica_model_open(path, NULL, &m, err, sizeof err));
    unlink(path);
    mica_session_params sp = mica_session_params_default();
    sp.n_ctx = 16;
    sp.n_threads = 1;
    sp.kv_type = 7;
    mica_session *s = NULL;
    mica_status st = mica_session_create(m, &sp, &s, err, sizeof err);
    mica_model_free(m);
    ASSERT_EQ(st, MICA_ERR_INVALID_ARG);
    ASSERT_TRUE(strstr(err, "KV-cache type") != NULL);
}
