/*
 * moe.c - the mixture-of-experts layer: hyperparameters, binding, routing,
 * per-expert views and the grouped batch evaluation (see moe.h).
 * Layer: model.
 */
#include "model/moe.h"

#include "model/expert_store.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- loading ---- */

static mica_status moe_get_bool(const mica_model *m, const char *suffix, bool *out, mica_err *err) {
    char key[256];
    snprintf(key, sizeof key, "%s.%s", m->arch->name, suffix);
    return gguf_get_bool(m->gguf, key, out, err);
}

/*
 * Validates the group-limited routing keys (n_expert and n_used already
 * checked). No groups (count 0 or 1) is normalised to 0 / 0.
 */
static mica_status moe_check_groups(const char *path, const char *arch, uint32_t n_expert,
                                    uint32_t n_used, uint32_t *n_group, uint32_t *n_group_used,
                                    mica_err *err) {
    if (*n_group <= 1) {
        *n_group = *n_group_used = 0;
        return MICA_OK;
    }
    if (*n_group > n_expert || n_expert % *n_group != 0)
        return mica_err_set(err, MICA_ERR_FORMAT,
                            "%s: %s.expert_group_count %u does not divide expert_count %u", path, arch,
                            *n_group, n_expert);
    if (*n_group_used == 0 || *n_group_used > *n_group)
        return mica_err_set(err, MICA_ERR_FORMAT,
                            "%s: %s.expert_group_used_count %u out of range (1..expert_group_count %u)",
                            path, arch, *n_group_used, *n_group);
    if ((uint64_t)*n_group_used * (n_expert / *n_group) < n_used)
        return mica_err_set(err, MICA_ERR_FORMAT,
                            "%s: %s.expert_group_used_count %u groups of %u experts hold fewer than "
                            "expert_used_count %u", path, arch, *n_group_used, n_expert / *n_group, n_used);
    return MICA_OK;
}

mica_status moe_read_params(const mica_model *m, const moe_params *defaults, int64_t n_ff,
                            moe_params *p, mica_err *err) {
    const char *path = gguf_path(m->gguf);
    const char *arch = m->arch->name;
    uint32_t n_expert = 0, n_used = 0, ff_exp = (uint32_t)MICA_MIN(n_ff, (int64_t)UINT32_MAX);
    uint32_t n_shared = 0, ff_shared = 0, gating = (uint32_t)defaults->gating;
    uint32_t n_group = 0, n_group_used = 0;
    bool norm = defaults->norm_topk;
    float scale = 1.0f;
    mica_status st;
    if ((st = hparams_u32(m, "expert_count", &n_expert, true, err))) return st;
    if ((st = hparams_u32(m, "expert_used_count", &n_used, true, err))) return st;
    if ((st = hparams_u32(m, "expert_feed_forward_length", &ff_exp, false, err))) return st;
    if ((st = hparams_u32(m, "expert_shared_count", &n_shared, false, err))) return st;
    if ((st = hparams_u32(m, "expert_shared_feed_forward_length", &ff_shared, false, err))) return st;
    if ((st = hparams_u32(m, "expert_gating_func", &gating, false, err))) return st;
    if ((st = moe_get_bool(m, "expert_weights_norm", &norm, err))) return st;
    if ((st = hparams_f32(m, "expert_weights_scale", &scale, false, err))) return st;
    if ((st = hparams_u32(m, "expert_group_count", &n_group, false, err))) return st;
    if ((st = hparams_u32(m, "expert_group_used_count", &n_group_used, false, err))) return st;

    if (n_expert == 0 || n_expert > MOE_MAX_EXPERTS)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: %s.expert_count %u out of range (1..%d)", path,
                            arch, n_expert, MOE_MAX_EXPERTS);
    if (n_used == 0 || n_used > n_expert || n_used > MOE_MAX_USED)
        return mica_err_set(err, MICA_ERR_FORMAT,
                            "%s: %s.expert_used_count %u out of range (1..min(expert_count %u, %d))",
                            path, arch, n_used, n_expert, MOE_MAX_USED);
    if (ff_exp == 0 || ff_exp > MODEL_MAX_FF)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: %s.expert_feed_forward_length %u out of range",
                            path, arch, ff_exp);
    if (gating != MOE_GATING_SOFTMAX && gating != MOE_GATING_SIGMOID)
        return mica_err_set(err, MICA_ERR_FORMAT,
                            "%s: %s.expert_gating_func %u is not a known gating function "
                            "(1 softmax, 2 sigmoid)", path, arch, gating);
    if (!(scale > 0.0f) || !isfinite(scale))
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: %s.expert_weights_scale must be positive",
                            path, arch);
    uint64_t shexp = ff_shared ? ff_shared : (uint64_t)n_shared * ff_exp;
    if (n_shared > MOE_MAX_USED || shexp > MODEL_MAX_FF)
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: %s shared expert width out of range", path, arch);

    if ((st = moe_check_groups(path, arch, n_expert, n_used, &n_group, &n_group_used, err))) return st;

    memset(p, 0, sizeof *p);
    p->n_group = (int32_t)n_group;
    p->n_group_used = (int32_t)n_group_used;
    p->n_expert = (int32_t)n_expert;
    p->n_expert_used = (int32_t)n_used;
    p->n_ff_exp = ff_exp;
    p->n_ff_shexp = (int64_t)shexp;
    p->gating = (enum moe_gating)gating;
    p->norm_topk = norm;
    p->weights_scale = scale;
    return MICA_OK;
}

mica_status moe_bind(mica_model *m, uint32_t il, const moe_params *p, int64_t n_embd,
                     moe_layer *L, mica_err *err) {
    const int64_t E = n_embd, NE = p->n_expert, F = p->n_ff_exp, FS = p->n_ff_shexp;
    char name[96];
    mica_status st;
#define MOE_BIND(field, suffix, nd, optional, float_only, ...)                                     \
    do {                                                                                           \
        snprintf(name, sizeof name, "blk.%u." suffix, il);                                         \
        const int64_t ne_[] = {__VA_ARGS__};                                                       \
        if ((st = weights_bind(m, &L->field, name, nd, ne_, optional, float_only, err))) return st; \
    } while (0)
    memset(L, 0, sizeof *L);
    MOE_BIND(router, "ffn_gate_inp.weight", 2, false, false, E, NE);
    MOE_BIND(probs_b, "exp_probs_b.bias", 1, true, true, NE);
    MOE_BIND(gate_exps, "ffn_gate_exps.weight", 3, false, false, E, F, NE);
    MOE_BIND(up_exps, "ffn_up_exps.weight", 3, false, false, E, F, NE);
    MOE_BIND(down_exps, "ffn_down_exps.weight", 3, false, false, F, E, NE);
    if (FS > 0) {
        MOE_BIND(gate_shexp, "ffn_gate_shexp.weight", 2, false, false, E, FS);
        MOE_BIND(up_shexp, "ffn_up_shexp.weight", 2, false, false, E, FS);
        MOE_BIND(down_shexp, "ffn_down_shexp.weight", 2, false, false, FS, E);
    }
#undef MOE_BIND
    L->il = (int32_t)il;
    L->store = m->experts;
    if (L->store) { /* the next layer's router, for prefetch guesses (optional: errors ignored) */
        mica_err ignored = {0};
        snprintf(name, sizeof name, "blk.%u.ffn_gate_inp.weight", il + 1);
        if (weights_bind(m, &L->next_router, name, 2, (const int64_t[]){E, NE}, true, false, &ignored))
            memset(&L->next_router, 0, sizeof L->next_router);
        snprintf(name, sizeof name, "blk.%u.exp_probs_b.bias", il + 1);
        if (weights_bind(m, &L->next_probs_b, name, 1, (const int64_t[]){NE}, true, true, &ignored))
            memset(&L->next_probs_b, 0, sizeof L->next_probs_b);
    }
    /* a token reads only its k experts' slices of the expert tensors */
    const uint64_t unread = moe_unread_bytes_per_token(p, L);
    m->bytes_per_token -= MICA_MIN(m->bytes_per_token, unread);
    return MICA_OK;
}

size_t moe_qbuf_bytes(const kern_table *kt, const moe_layer *L, int32_t n_batch) {
    const tensor_view *all[] = {&L->router, &L->gate_exps, &L->up_exps, &L->down_exps,
                                &L->gate_shexp, &L->up_shexp, &L->down_shexp};
    size_t best = 0;
    for (size_t i = 0; i < MICA_ARRAY_LEN(all); i++) {
        if (!all[i]->data) continue;
        size_t b = ops_qbuf_bytes(kt, all[i]->type, all[i]->ne[0], n_batch);
        best = MICA_MAX(best, b);
    }
    return best;
}

uint64_t moe_unread_bytes_per_token(const moe_params *p, const moe_layer *L) {
    const tensor_view *all[] = {&L->gate_exps, &L->up_exps, &L->down_exps};
    uint64_t unread = 0;
    for (size_t i = 0; i < MICA_ARRAY_LEN(all); i++) {
        uint64_t per_expert = all[i]->row_bytes * (uint64_t)all[i]->ne[1];
        unread += per_expert * (uint64_t)(p->n_expert - p->n_expert_used);
    }
    return unread;
}

/* ---- routing ---- */

/*
 * Group-limited selection: marks excluded[e] = 1 for every expert outside
 * the n_group_used groups whose two largest score + bias values have the
 * largest sum (equal sums: the lower group first).
 */
static void moe_group_exclude(const moe_params *p, const float *scores, const float *bias,
                              uint8_t *excluded) {
    const int32_t G = p->n_group, per = p->n_expert / G;
    MICA_ASSERT(G <= p->n_expert && p->n_expert % G == 0 && p->n_group_used >= 1 &&
                p->n_group_used <= G && p->n_group_used * per >= p->n_expert_used);
    float gscore[MOE_MAX_EXPERTS];
    uint8_t keep[MOE_MAX_EXPERTS];
    for (int32_t g = 0; g < G; g++) {
        float a = -INFINITY, b = -INFINITY; /* the two largest of the group, a >= b */
        for (int32_t e = g * per; e < (g + 1) * per; e++) {
            const float v = bias ? scores[e] + bias[e] : scores[e];
            if (v > a) {
                b = a;
                a = v;
            } else if (v > b) {
                b = v;
            }
        }
        gscore[g] = per >= 2 ? a + b : a;
        keep[g] = 0;
    }
    for (int32_t j = 0; j < p->n_group_used; j++) {
        int32_t best = -1;
        for (int32_t g = 0; g < G; g++)
            if (!keep[g] && (best < 0 || gscore[g] > gscore[best])) best = g;
        keep[best] = 1;
    }
    for (int32_t e = 0; e < p->n_expert; e++) excluded[e] = keep[e / per] ? 0 : 1;
}

void moe_route(const moe_params *p, float *scores, const float *bias, int32_t *ids,
               float *weights) {
    const int32_t n_expert = p->n_expert, k = p->n_expert_used;
    MICA_ASSERT(n_expert >= 1 && n_expert <= MOE_MAX_EXPERTS && k >= 1 && k <= n_expert);

    /* gating scores, fp32 */
    if (p->gating == MOE_GATING_SIGMOID) {
        for (int32_t e = 0; e < n_expert; e++) scores[e] = 1.0f / (1.0f + expf(-scores[e]));
    } else {
        ops_softmax(scores, n_expert);
    }

    /* top-k of score + bias; a strict comparison in increasing id keeps the
     * lower id on equal values */
    uint8_t chosen[MOE_MAX_EXPERTS]; /* chosen, or excluded by the group selection */
    memset(chosen, 0, (size_t)n_expert);
    if (p->n_group > 1) moe_group_exclude(p, scores, bias, chosen);
    for (int32_t j = 0; j < k; j++) {
        int32_t best = -1;
        float best_v = 0.0f;
        for (int32_t e = 0; e < n_expert; e++) {
            if (chosen[e]) continue;
            float v = bias ? scores[e] + bias[e] : scores[e];
            if (best < 0 || v > best_v) {
                best = e;
                best_v = v;
            }
        }
        chosen[best] = 1;
        ids[j] = best;
        weights[j] = scores[best]; /* the score without the bias */
    }

    /* optional renormalisation, then the routed scaling factor */
    float mul = p->weights_scale;
    if (p->norm_topk) {
        float sum = 0.0f;
        for (int32_t j = 0; j < k; j++) sum += weights[j];
        if (sum > 0.0f) mul /= sum;
    }
    for (int32_t j = 0; j < k; j++) weights[j] *= mul;
}

/* ---- experts ---- */

void moe_expert_view(const tensor_view *exps, int32_t e, tensor_view *out) {
    MICA_ASSERT(e >= 0 && e < exps->ne[2]);
    *out = *exps;
    out->ne[2] = 1;
    out->data = (const uint8_t *)exps->data + (uint64_t)e * (uint64_t)exps->ne[1] * exps->row_bytes;
}

void moe_expert_get(const moe_layer *L, int32_t e, moe_expert *out) {
    moe_expert_view(&L->gate_exps, e, &out->gate);
    moe_expert_view(&L->up_exps, e, &out->up);
    moe_expert_view(&L->down_exps, e, &out->down);
}

void moe_expert_ffn(ops_ctx *c, const moe_expert *ex, const float *x, int64_t n, float *gate,
                    float *up, float *y) {
    const int64_t F = ex->gate.ne[1];
    ops_matmul(c, &ex->gate, x, n, gate);   /* [n][F] */
    ops_matmul(c, &ex->up, x, n, up);       /* [n][F] */
    ops_swiglu(gate, gate, up, n * F);
    ops_matmul(c, &ex->down, gate, n, y);   /* [n][n_embd] */
}

/* ---- the layer over a batch ---- */

void moe_scratch_deinit(moe_scratch *s) {
    mica_free(s->block);
    memset(s, 0, sizeof *s);
}

mica_status moe_scratch_init(moe_scratch *s, const moe_params *p, int64_t n_embd, int32_t n_batch,
                             mica_err *err) {
    memset(s, 0, sizeof *s);
    const uint64_t B = (uint64_t)n_batch, k = (uint64_t)p->n_expert_used;
    const uint64_t F = (uint64_t)MICA_MAX(p->n_ff_exp, p->n_ff_shexp);
    /* element counts of scores, ids, weights, first, tok, tok_w, xg, yg, gate, up (4 bytes each) */
    uint64_t n[10];
    bool ok = n_batch > 0 && mica_mul_ok(B, (uint64_t)p->n_expert, &n[0]) && mica_mul_ok(B, k, &n[1]) &&
              mica_mul_ok(B, (uint64_t)n_embd, &n[6]) && mica_mul_ok(B, F, &n[8]);
    uint64_t total = 0;
    if (ok) {
        n[2] = n[4] = n[5] = n[1];
        n[3] = (uint64_t)p->n_expert + 1;
        n[7] = n[6];
        n[9] = n[8];
        for (int i = 0; i < 10 && ok; i++) ok = mica_add_ok(total, (n[i] + 15) & ~(uint64_t)15, &total);
        ok = ok && mica_mul_ok(total, 4, &total) && total <= SIZE_MAX;
    }
    if (!ok) return mica_err_set(err, MICA_ERR_LIMIT, "MoE scratch size overflows");
    s->block = mica_aligned_alloc(64, (size_t)total);
    if (!s->block)
        return mica_err_set(err, MICA_ERR_NOMEM, "out of memory allocating %" PRIu64 " bytes of MoE scratch",
                            total);
    uint8_t *q = s->block;
    void **bufs[] = {(void **)&s->scores, (void **)&s->ids,  (void **)&s->weights, (void **)&s->first,
                     (void **)&s->tok,    (void **)&s->tok_w, (void **)&s->xg,     (void **)&s->yg,
                     (void **)&s->gate,   (void **)&s->up};
    for (int i = 0; i < 10; i++) {
        *bufs[i] = q;
        q += ((n[i] + 15) & ~(uint64_t)15) * 4;
    }
    s->n_batch = n_batch;
    return MICA_OK;
}

/*
 * Runs expert ex over the tokens routed to expert e (tok[first[e]..
 * first[e+1])) and adds each token's weighted output to its row of out.
 */
static void moe_apply(ops_ctx *c, moe_scratch *s, const moe_expert *ex, int32_t e, const float *x,
                      int64_t n_embd, float *out) {
    const int32_t g0 = s->first[e], cnt = s->first[e + 1] - g0;
    for (int32_t j = 0; j < cnt; j++)
        memcpy(s->xg + (int64_t)j * n_embd, x + (int64_t)s->tok[g0 + j] * n_embd,
               (size_t)n_embd * sizeof(float));
    moe_expert_ffn(c, ex, s->xg, cnt, s->gate, s->up, s->yg);
    for (int32_t j = 0; j < cnt; j++) {
        float *o = out + (int64_t)s->tok[g0 + j] * n_embd;
        const float *y = s->yg + (int64_t)j * n_embd;
        const float w = s->tok_w[g0 + j];
        for (int64_t i = 0; i < n_embd; i++) o[i] += w * y[i];
    }
}

/* ---- streamed experts (expert_store.h) ---- */

#define MOE_PREFETCH_MAX_TOKENS 8 /* guess the next layer's experts for batches up to this size */

/*
 * Guesses layer il+1's experts by running its router on this layer's input
 * x[n] (the residual has not yet received this layer's FFN output, so it is
 * only a guess) and asks the store to start reading them. Uses s->scores,
 * whose routing results are already in s->ids.
 */
static void moe_prefetch_next(ops_ctx *c, const moe_params *p, const moe_layer *L, moe_scratch *s,
                              const float *x, int32_t n) {
    const int32_t NE = p->n_expert, k = p->n_expert_used;
    uint8_t seen[MOE_MAX_EXPERTS];
    int32_t guess[MOE_MAX_EXPERTS], n_guess = 0, ids[MOE_MAX_USED];
    float w[MOE_MAX_USED];
    memset(seen, 0, (size_t)NE);
    ops_matmul(c, &L->next_router, x, n, s->scores);
    for (int32_t t = 0; t < n; t++) {
        moe_route(p, s->scores + (int64_t)t * NE, L->next_probs_b.data, ids, w);
        for (int32_t j = 0; j < k; j++)
            if (!seen[ids[j]]) {
                seen[ids[j]] = 1;
                guess[n_guess++] = ids[j];
            }
    }
    expert_store_prefetch(L->store, L->il + 1, guess, n_guess, false);
}

/* A leased expert as 2-D views: the mapped tensors' shapes, the slot's bytes. */
static void moe_expert_leased(const moe_layer *L, const estore_view *v, moe_expert *out) {
    moe_expert_view(&L->gate_exps, 0, &out->gate);
    moe_expert_view(&L->up_exps, 0, &out->up);
    moe_expert_view(&L->down_exps, 0, &out->down);
    out->gate.data = v->part[0];
    out->up.data = v->part[1];
    out->down.data = v->part[2];
}

/*
 * The routed part of moe_forward for a streamed layer: all needed experts
 * are prefetched at once (reads overlap), the next layer's likely experts
 * after them, then leased in increasing id, at most ESTORE_MAX_LOOKUP at a
 * time, computed and released. A failed lookup ends the routed part (the
 * store counts the failure; the caller reports it).
 */
static void moe_forward_streamed(ops_ctx *c, const moe_params *p, const moe_layer *L, moe_scratch *s,
                                 const float *x, int32_t n, int64_t n_embd, float *out) {
    int32_t need[MOE_MAX_EXPERTS], n_need = 0;
    for (int32_t e = 0; e < p->n_expert; e++)
        if (s->first[e + 1] > s->first[e]) need[n_need++] = e;
    expert_store_prefetch(L->store, L->il, need, n_need, true);
    if (L->next_router.data && n <= MOE_PREFETCH_MAX_TOKENS) moe_prefetch_next(c, p, L, s, x, n);
    for (int32_t i = 0; i < n_need;) {
        estore_view v[ESTORE_MAX_LOOKUP];
        estore_lease ls[ESTORE_MAX_LOOKUP];
        int32_t got = 0;
        if (expert_store_lookup(L->store, L->il, need + i, MICA_MIN(n_need - i, ESTORE_MAX_LOOKUP), v, ls,
                                &got, NULL) != MICA_OK)
            return;
        for (int32_t j = 0; j < got; j++) {
            moe_expert ex;
            moe_expert_leased(L, &v[j], &ex);
            moe_apply(c, s, &ex, need[i + j], x, n_embd, out);
            expert_store_release(L->store, &ls[j]);
        }
        i += got;
    }
}

void moe_forward(ops_ctx *c, const moe_params *p, const moe_layer *L, moe_scratch *s,
                 const float *x, int32_t n, int64_t n_embd, float *out) {
    const int32_t NE = p->n_expert, k = p->n_expert_used;
    MICA_ASSERT(n >= 1 && n <= s->n_batch && x != out);

    /* router logits [n][NE], then each token's experts and weights */
    ops_matmul(c, &L->router, x, n, s->scores);
    for (int32_t t = 0; t < n; t++)
        moe_route(p, s->scores + (int64_t)t * NE, L->probs_b.data, s->ids + (int64_t)t * k,
                  s->weights + (int64_t)t * k);

    /* group the (token, expert) pairs by expert (counting sort, stable in
     * token order): the pairs of expert e are tok[first[e] .. first[e+1]) */
    memset(s->first, 0, (size_t)(NE + 1) * sizeof *s->first);
    for (int64_t i = 0; i < (int64_t)n * k; i++) s->first[s->ids[i] + 1]++;
    for (int32_t e = 0; e < NE; e++) s->first[e + 1] += s->first[e];
    for (int64_t i = 0; i < (int64_t)n * k; i++) { /* first[e] advances to the end of group e */
        int32_t pos = s->first[s->ids[i]]++;
        s->tok[pos] = (int32_t)(i / k);
        s->tok_w[pos] = s->weights[i];
    }
    for (int32_t e = NE; e > 0; e--) s->first[e] = s->first[e - 1];
    s->first[0] = 0;

    /* each needed expert once, over its gathered rows; results added back
     * weighted, experts in increasing id */
    memset(out, 0, (size_t)n * (size_t)n_embd * sizeof(float));
    if (L->store) {
        moe_forward_streamed(c, p, L, s, x, n, n_embd, out);
    } else {
        for (int32_t e = 0; e < NE; e++) {
            if (s->first[e + 1] == s->first[e]) continue;
            moe_expert ex;
            moe_expert_get(L, e, &ex);
            moe_apply(c, s, &ex, e, x, n_embd, out);
        }
    }

    /* shared expert(s): every token, unweighted */
    if (L->gate_shexp.data) {
        const moe_expert sh = {L->gate_shexp, L->up_shexp, L->down_shexp};
        moe_expert_ffn(c, &sh, x, n, s->gate, s->up, s->yg);
        for (int64_t i = 0; i < (int64_t)n * n_embd; i++) out[i] += s->yg[i];
    }
}
