/*
 * sampler.c - from logits to a token (layer: sample; depends on base only).
 * The contract is in sampler.h and in the sampler section of mica.h.
 *
 * Pipeline per call, on a penalised copy of the logits (or the caller's
 * logits directly when no penalty applies):
 *   1. repetition penalty: each distinct token among the last repeat_last_n
 *      accepted ones, once: logit / penalty if positive, logit * penalty if
 *      negative (CTRL, Keskar et al. 2019);
 *   2. temperature <= 0: argmax, lowest id on ties; done;
 *   3. candidates: the top_k best by (logit desc, id asc), found with a
 *      size-k min-heap in O(n log k); or every token when top-k is disabled;
 *   4. temperature and softmax: e_i = exp((x_i - x_max) / T), Z = sum e_i,
 *      p_i = e_i / Z (subtracting x_max keeps exp in range; e_max = 1);
 *   5. top-p: the smallest prefix of the sorted candidates whose mass is
 *      >= top_p (at least one token);
 *   6. min-p: drop tokens with p_i < min_p * p_max, i.e. e_i < min_p;
 *   7. renormalise over the kept tokens and draw once from xoshiro256**.
 *
 * Steps 5 and 6 each keep a prefix of the sorted candidates, so the kept set
 * is the shorter of the two prefixes whichever runs first. Without top-k the
 * code therefore applies min-p first (a linear filter) and sorts only the
 * survivors, and skips the sort entirely when top-p is disabled; the result
 * is the same set as the stated order. Sorting is a bottom-up merge sort on
 * (logit, id) pairs in scratch, O(m log m).
 *
 * Non-finite logits: NaN counts as -inf. If the largest logit is not finite
 * (all -inf, or some +inf) the distribution is undefined and the sampler
 * returns the argmax, like greedy.
 *
 * Scratch is allocated on the first call and regrown only when a larger
 * n_vocab arrives. If that allocation fails the sampler cannot apply the
 * pipeline and returns the argmax of the caller's logits (the API has no
 * status for sampling).
 *
 * Every non-greedy call draws exactly one random number, so the RNG stream
 * depends only on the number of non-greedy calls. With a grammar attached
 * (mica_sampler_set_grammar) a first pick the grammar refuses is followed
 * by a second pipeline run over the allowed tokens only, drawing a second
 * number (see mica_sampler_sample at the end of this file).
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "sample/grammar.h"
#include "sample/sampler.h"

typedef struct sampler_cand {
    float x;    /* logit (after penalty) */
    float e;    /* exp((x - x_max) / T): unnormalised probability */
    int32_t id; /* token id */
} sampler_cand;

struct mica_sampler {
    mica_sampler_params params;
    uint64_t rng[4];        /* xoshiro256** state */

    int32_t *hist;          /* (repeat_last_n) ring of accepted tokens */
    int32_t hist_len;       /* valid entries, <= repeat_last_n */
    int32_t hist_pos;       /* next slot to write */

    int32_t cap;            /* n_vocab the scratch below is sized for */
    float *work;            /* (cap) penalised logits */
    sampler_cand *cand;     /* (cap) candidates */
    sampler_cand *tmp;      /* (cap) merge-sort buffer */

    mica_grammar *grammar;  /* borrowed; NULL: unconstrained */
    float *masked;          /* (masked_cap) logits of the allowed tokens */
    int32_t *masked_ids;    /* (masked_cap) their ids, increasing */
    int32_t masked_cap;
};

/* ---- random numbers: splitmix64 seeding, xoshiro256** (Blackman & Vigna) ---- */

static uint64_t sampler_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t sampler_rotl(uint64_t v, int k) { return (v << k) | (v >> (64 - k)); }

static uint64_t sampler_rng_next(uint64_t s[4]) {
    uint64_t result = sampler_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = sampler_rotl(s[3], 45);
    return result;
}

/* Uniform double in [0, 1) with 53 random bits. */
static double sampler_rng_uniform(uint64_t s[4]) {
    return (double)(sampler_rng_next(s) >> 11) * 0x1.0p-53;
}

/* ---- params and lifetime ---- */

mica_sampler_params mica_sampler_params_default(void) {
    return (mica_sampler_params){
        .temperature = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .repeat_last_n = 64,
        .seed = 0,
    };
}

/* Comparisons are written so that NaN fails them. */
static bool sampler_params_valid(const mica_sampler_params *p) {
    if (!(p->temperature >= 0.0f) || isinf(p->temperature)) return false;
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f)) return false;
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f)) return false;
    if (!(p->repeat_penalty > 0.0f) || isinf(p->repeat_penalty)) return false;
    if (p->repeat_last_n < 0) return false;
    return true;
}

/*
 * Accepts params == NULL (defaults). Rejects, with MICA_ERR_INVALID_ARG:
 * temperature NaN, negative or infinite; top_p outside (0, 1]; min_p outside
 * [0, 1]; repeat_penalty <= 0, NaN or infinite; repeat_last_n < 0; out NULL.
 */
mica_status mica_sampler_create(const mica_sampler_params *params, mica_sampler **out) {
    mica_sampler_params p = params ? *params : mica_sampler_params_default();
    if (!out || !sampler_params_valid(&p)) return MICA_ERR_INVALID_ARG;
    mica_sampler *smp = mica_calloc(1, sizeof *smp);
    if (!smp) return MICA_ERR_NOMEM;
    smp->params = p;
    if (p.repeat_last_n > 0) {
        size_t bytes;
        if (!mica_size_mul_ok((size_t)p.repeat_last_n, sizeof *smp->hist, &bytes) ||
            !(smp->hist = mica_malloc(bytes))) {
            mica_free(smp);
            return MICA_ERR_NOMEM;
        }
    }
    uint64_t x = p.seed;
    for (int i = 0; i < 4; i++) smp->rng[i] = sampler_splitmix64(&x);
    *out = smp;
    return MICA_OK;
}

void mica_sampler_free(mica_sampler *smp) {
    if (!smp) return;
    mica_free(smp->work);
    mica_free(smp->cand);
    mica_free(smp->tmp);
    mica_free(smp->hist);
    mica_free(smp->masked);
    mica_free(smp->masked_ids);
    mica_free(smp);
}

void mica_sampler_set_grammar(mica_sampler *smp, mica_grammar *g) {
    MICA_ASSERT(smp);
    smp->grammar = g;
}

/* Records token in the ring of the last repeat_last_n accepted tokens. Ids
 * outside the vocabulary of a later call are ignored by that call. */
void mica_sampler_accept(mica_sampler *smp, int32_t token) {
    MICA_ASSERT(smp);
    if (smp->grammar) mica_grammar_accept(smp->grammar, token);
    int32_t cap = smp->params.repeat_last_n;
    if (cap == 0) return;
    smp->hist[smp->hist_pos] = token;
    smp->hist_pos = smp->hist_pos + 1 == cap ? 0 : smp->hist_pos + 1;
    if (smp->hist_len < cap) smp->hist_len++;
}

/* Makes sure scratch holds n entries; false if it cannot be allocated. */
static bool sampler_reserve(mica_sampler *smp, int32_t n) {
    if (n <= smp->cap) return true;
    size_t fbytes, cbytes;
    if (!mica_size_mul_ok((size_t)n, sizeof(float), &fbytes) ||
        !mica_size_mul_ok((size_t)n, sizeof(sampler_cand), &cbytes)) return false;
    float *work = mica_malloc(fbytes);
    sampler_cand *cand = mica_malloc(cbytes);
    sampler_cand *tmp = mica_malloc(cbytes);
    if (!work || !cand || !tmp) {
        mica_free(work);
        mica_free(cand);
        mica_free(tmp);
        return false;
    }
    mica_free(smp->work);
    mica_free(smp->cand);
    mica_free(smp->tmp);
    smp->work = work;
    smp->cand = cand;
    smp->tmp = tmp;
    smp->cap = n;
    return true;
}

/* ---- ordering and selection ---- */

int32_t sampler_argmax(const float *logits, int32_t n) {
    MICA_ASSERT(logits && n > 0);
    int32_t best_i = 0;
    float best = -INFINITY;
    for (int32_t i = 0; i < n; i++) {
        if (logits[i] > best) { /* strict: the lowest id wins ties; NaN never wins */
            best = logits[i];
            best_i = i;
        }
    }
    return best_i;
}

static inline float sampler_clean(float v) { return isnan(v) ? -INFINITY : v; }

/* True if a ranks before b: higher logit first, then lower id. */
static inline bool sampler_before(const sampler_cand *a, const sampler_cand *b) {
    return a->x > b->x || (a->x == b->x && a->id < b->id);
}

/* Min-heap by rank: h[0] is the candidate ranked last. */
static void sampler_sift_down(sampler_cand *h, int32_t n, int32_t i) {
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, worst = i;
        if (l < n && sampler_before(&h[worst], &h[l])) worst = l;
        if (r < n && sampler_before(&h[worst], &h[r])) worst = r;
        if (worst == i) return;
        sampler_cand t = h[i];
        h[i] = h[worst];
        h[worst] = t;
        i = worst;
    }
}

/* Writes the k best of x[0..n) into c[0..k), sorted by rank; 0 < k < n. */
static void sampler_top_k(const float *x, int32_t n, int32_t k, sampler_cand *c) {
    for (int32_t i = 0; i < k; i++) c[i] = (sampler_cand){.x = sampler_clean(x[i]), .id = i};
    for (int32_t i = k / 2 - 1; i >= 0; i--) sampler_sift_down(c, k, i);
    for (int32_t i = k; i < n; i++) {
        /* i is larger than every id in the heap, so only a strictly larger
         * logit can outrank the heap's last candidate. */
        float v = sampler_clean(x[i]);
        if (v > c[0].x) {
            c[0] = (sampler_cand){.x = v, .id = i};
            sampler_sift_down(c, k, 0);
        }
    }
    /* Heap sort: move the last-ranked to the end, repeatedly. */
    for (int32_t m = k - 1; m > 0; m--) {
        sampler_cand t = c[0];
        c[0] = c[m];
        c[m] = t;
        sampler_sift_down(c, m, 0);
    }
}

/* Sorts c[0..n) by rank using tmp (n entries); returns the sorted array
 * (either c or tmp). */
static sampler_cand *sampler_sort(sampler_cand *c, sampler_cand *tmp, int32_t n) {
    sampler_cand *src = c, *dst = tmp;
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = MICA_MIN(lo + w, (int64_t)n), hi = MICA_MIN(lo + 2 * w, (int64_t)n);
            int64_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi) dst[o++] = sampler_before(&src[j], &src[i]) ? src[j++] : src[i++];
            while (i < mid) dst[o++] = src[i++];
            while (j < hi) dst[o++] = src[j++];
        }
        sampler_cand *t = src;
        src = dst;
        dst = t;
    }
    return src;
}

/* ---- the pipeline ---- */

/* Applies the repetition penalty; returns the logits to use from now on
 * (smp->work, or the caller's array when no penalty applies). */
static const float *sampler_penalise(mica_sampler *smp, const float *logits, int32_t n) {
    float rp = smp->params.repeat_penalty;
    if (rp == 1.0f || smp->hist_len == 0) return logits;
    float *w = smp->work;
    memcpy(w, logits, (size_t)n * sizeof *w);
    for (int32_t h = 0; h < smp->hist_len; h++) {
        int32_t t = smp->hist[h];
        if (t < 0 || t >= n) continue;
        /* Computed from the caller's value, so a token that occurs several
         * times in the history is penalised once. */
        w[t] = logits[t] > 0.0f ? logits[t] / rp : logits[t] * rp;
    }
    return w;
}

/* The pipeline on logits without a grammar. */
static int32_t sampler_pick(mica_sampler *smp, const float *logits, int32_t n_vocab, bool penalise) {
    if (!sampler_reserve(smp, n_vocab)) return sampler_argmax(logits, n_vocab);
    const mica_sampler_params *p = &smp->params;
    const float *x = penalise ? sampler_penalise(smp, logits, n_vocab) : logits;
    if (p->temperature <= 0.0f) return sampler_argmax(x, n_vocab);
    double u01 = sampler_rng_uniform(smp->rng);

    /* candidates: c[0..m), sorted by rank when `sorted` */
    sampler_cand *c = smp->cand;
    int32_t m;
    bool sorted;
    if (p->top_k > 0 && p->top_k < n_vocab) {
        m = p->top_k;
        sampler_top_k(x, n_vocab, m, c);
        sorted = true;
    } else {
        m = n_vocab;
        for (int32_t i = 0; i < m; i++) c[i] = (sampler_cand){.x = sampler_clean(x[i]), .id = i};
        sorted = false;
    }

    /* temperature + softmax, unnormalised: e_i in [0, 1], e = 1 at the max */
    float x_max = c[0].x;
    if (!sorted)
        for (int32_t i = 1; i < m; i++) x_max = MICA_MAX(x_max, c[i].x);
    if (!isfinite(x_max)) return sampler_argmax(x, n_vocab);
    float t = p->temperature;
    double z = 0.0;
    for (int32_t i = 0; i < m; i++) {
        c[i].e = expf((c[i].x - x_max) / t);
        z += c[i].e;
    }

    /* min-p: keep e_i >= min_p (p_i >= min_p * p_max); the max always stays */
    if (p->min_p > 0.0f) {
        int32_t k = 0;
        if (sorted) {
            while (k < m && c[k].e >= p->min_p) k++;
        } else {
            for (int32_t i = 0; i < m; i++)
                if (c[i].e >= p->min_p) c[k++] = c[i];
        }
        m = k;
    }

    /* top-p: shortest sorted prefix with mass >= top_p (of the full Z) */
    if (p->top_p < 1.0f) {
        if (!sorted) c = sampler_sort(c, smp->tmp, m);
        double target = (double)p->top_p * z, cum = 0.0;
        int32_t k = 0;
        while (k < m) {
            cum += c[k++].e;
            if (cum >= target) break;
        }
        m = k;
    }

    /* renormalise and draw */
    double total = 0.0;
    for (int32_t i = 0; i < m; i++) total += c[i].e;
    double u = u01 * total, cum = 0.0;
    int32_t pick = c[0].id;
    for (int32_t i = 0; i < m; i++) {
        if (c[i].e <= 0.0f) continue;
        cum += c[i].e;
        pick = c[i].id;
        if (cum > u) break;
    }
    return pick;
}

/*
 * With a grammar: the unconstrained pick is kept when the grammar allows it
 * (checking one token is cheap); otherwise the pipeline runs again on the
 * allowed tokens only (penalised logits gathered into a short array, ids in
 * increasing order so ties still go to the lowest id). Accepting an allowed
 * first pick and otherwise drawing from the allowed tokens gives exactly the
 * masked distribution p(x) / P(allowed) when nothing truncates. If no token
 * is allowed (a grammar left without continuation), the first pick is
 * returned and mica_grammar_accept will refuse it.
 */
int32_t mica_sampler_sample(mica_sampler *smp, const float *logits, int32_t n_vocab) {
    MICA_ASSERT(smp && logits && n_vocab > 0);
    int32_t tok = sampler_pick(smp, logits, n_vocab, true);
    if (!smp->grammar || mica_grammar_allows(smp->grammar, tok)) return tok;
    int32_t n_allowed = 0, n_tok = 0;
    const uint8_t *allowed = grammar_allowed(smp->grammar, &n_allowed, &n_tok);
    if (!allowed || n_allowed <= 0) return tok;
    if (smp->masked_cap < n_vocab) {
        size_t fbytes, ibytes;
        float *m = mica_size_mul_ok((size_t)n_vocab, sizeof *m, &fbytes) ? mica_malloc(fbytes) : NULL;
        int32_t *ids = m && mica_size_mul_ok((size_t)n_vocab, sizeof *ids, &ibytes) ? mica_malloc(ibytes) : NULL;
        if (!m || !ids) {
            mica_free(m);
            mica_free(ids);
            return tok;
        }
        mica_free(smp->masked);
        mica_free(smp->masked_ids);
        smp->masked = m;
        smp->masked_ids = ids;
        smp->masked_cap = n_vocab;
    }
    const float *x = sampler_penalise(smp, logits, n_vocab);
    int32_t m = 0, lim = MICA_MIN(n_vocab, n_tok);
    for (int32_t i = 0; i < lim; i++) {
        if (!allowed[i]) continue;
        /* an allowed token at -inf or NaN gets the lowest finite logit, so the draw stays defined */
        smp->masked[m] = isfinite(x[i]) || x[i] > 0 ? x[i] : -FLT_MAX;
        smp->masked_ids[m++] = i;
    }
    if (m == 0) return tok;
    return smp->masked_ids[sampler_pick(smp, smp->masked, m, false)];
}
