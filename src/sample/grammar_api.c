/*
 * grammar_api.c - the public grammar object of mica.h (mica_grammar_*):
 * a JSON Schema grammar wrapped in literal prefix / suffix / repetitions,
 * its matcher, and the optional trigger. Layer: sample.
 */
#include <math.h>
#include <string.h>

#include "sample/grammar.h"
#include "sample/json_schema.h"

#define GRAMMAR_MAX_VALUES 64
#define GRAMMAR_MAX_LITERAL 1024

struct mica_grammar {
    const gvocab *v;
    grammar *g;
    gmatch *m;
    char *trigger; /* NULL: always engaged */
    size_t trig_len;
    bool active;
    char *tail; /* free text not yet searched past: the last trig_len - 1 bytes, plus a piece */
    size_t tail_n, tail_cap;
    uint8_t *allowed; /* (n tokens) mask scratch */
};

mica_grammar_params mica_grammar_params_default(void) { return (mica_grammar_params){.max_values = 1}; }

static bool lit_ok(const char *s) { return !s || strlen(s) <= GRAMMAR_MAX_LITERAL; }

static void grammar_lit(gbuild *gb, gseq *q, const char *s) {
    if (s) gseq_lit(gb, q, s, strlen(s));
}

mica_status mica_grammar_create(const mica_grammar_vocab *vocab, const mica_grammar_params *params,
                                mica_grammar **out, char *err_buf, size_t err_cap) {
    mica_err err = {0};
    mica_grammar_params p = params ? *params : mica_grammar_params_default();
    if (!vocab || !out) {
        mica_err_set(&err, MICA_ERR_INVALID_ARG, "no vocabulary");
        goto fail_early;
    }
    if (p.max_values < 1 || p.max_values > GRAMMAR_MAX_VALUES || !lit_ok(p.prefix) || !lit_ok(p.suffix) ||
        !lit_ok(p.repeat_prefix) || !lit_ok(p.trigger) || (p.trigger && !*p.trigger)) {
        mica_err_set(&err, MICA_ERR_INVALID_ARG, "invalid grammar parameters");
        goto fail_early;
    }
    mica_grammar *mg = mica_calloc(1, sizeof *mg);
    gbuild *gb = gbuild_create();
    gseq q = {0};
    mica_status st = MICA_ERR_NOMEM;
    if (!mg || !gb) {
        mica_err_set(&err, st, "out of memory");
        goto fail;
    }
    mg->v = vocab;
    int32_t value;
    st = json_schema_rule(gb, p.json_schema, p.json_schema ? strlen(p.json_schema) : 0, &value, &err);
    if (st != MICA_OK) goto fail;
    /* rest[k] ::= "" | repeat_prefix value suffix rest[k-1] */
    gseq_free(&q);
    int32_t rest = gbuild_rule_of(gb, &q);
    for (int32_t k = 1; p.repeat_prefix && k < p.max_values; k++) {
        int32_t r = gbuild_rule(gb);
        grammar_lit(gb, &q, p.repeat_prefix), gseq_ref(gb, &q, value), grammar_lit(gb, &q, p.suffix);
        gseq_ref(gb, &q, rest), gbuild_alt(gb, r, &q);
        gbuild_alt(gb, r, &q);
        rest = r;
    }
    grammar_lit(gb, &q, p.prefix), gseq_ref(gb, &q, value), grammar_lit(gb, &q, p.suffix), gseq_ref(gb, &q, rest);
    int32_t root = gbuild_rule_of(gb, &q);
    st = gbuild_finish(gb, root, &mg->g, &err);
    if (st != MICA_OK) goto fail;
    st = gmatch_create(mg->g, &mg->m);
    mg->allowed = mica_malloc((size_t)gvocab_n_tokens(vocab));
    if (p.trigger) {
        mg->trig_len = strlen(p.trigger);
        mg->trigger = mica_strndup(p.trigger, mg->trig_len);
        mg->tail_cap = mg->trig_len + GVOCAB_MAX_PIECE + 8;
        mg->tail = mica_malloc(mg->tail_cap);
    }
    if (st != MICA_OK || !mg->allowed || (p.trigger && (!mg->trigger || !mg->tail))) {
        st = MICA_ERR_NOMEM;
        mica_err_set(&err, st, "out of memory");
        goto fail;
    }
    gseq_free(&q);
    gbuild_free(gb);
    gb = NULL;
    mica_grammar_reset(mg);
    if (gmatch_dead(mg->m)) {
        st = mica_err_set(&err, MICA_ERR_INVALID_ARG, "the schema cannot be satisfied (no value matches it)");
        goto fail;
    }
    *out = mg;
    return MICA_OK;
fail:
    gseq_free(&q);
    gbuild_free(gb);
    mica_grammar_free(mg);
    if (err_buf && err_cap) mica_err_copy(&err, err_buf, err_cap);
    return st;
fail_early:
    if (err_buf && err_cap) mica_err_copy(&err, err_buf, err_cap);
    return err.status;
}

void mica_grammar_free(mica_grammar *g) {
    if (!g) return;
    gmatch_free(g->m);
    grammar_free(g->g);
    mica_free(g->trigger);
    mica_free(g->tail);
    mica_free(g->allowed);
    mica_free(g);
}

void mica_grammar_reset(mica_grammar *g) {
    gmatch_reset(g->m);
    g->active = g->trigger == NULL;
    g->tail_n = 0;
}

/* Free text: looks for the trigger in the held tail plus the piece; engages after it. */
static bool grammar_scan(mica_grammar *g, const char *s, size_t n) {
    if (g->tail_n + n > g->tail_cap) n = g->tail_cap - g->tail_n; /* pieces are <= GVOCAB_MAX_PIECE */
    memcpy(g->tail + g->tail_n, s, n);
    g->tail_n += n;
    for (size_t i = 0; i + g->trig_len <= g->tail_n; i++) {
        if (memcmp(g->tail + i, g->trigger, g->trig_len) != 0) continue;
        size_t after = i + g->trig_len;
        gmatch_reset(g->m);
        g->active = true;
        bool ok = gmatch_accept_bytes(g->m, g->tail + after, g->tail_n - after);
        g->tail_n = 0;
        return ok;
    }
    size_t keep = MICA_MIN(g->tail_n, g->trig_len - 1);
    memmove(g->tail, g->tail + g->tail_n - keep, keep);
    g->tail_n = keep;
    return true;
}

bool mica_grammar_accept(mica_grammar *g, int32_t token) {
    size_t len = 0;
    const char *piece = gvocab_piece(g->v, token, &len);
    if (!g->active) {
        if (!piece) return false;
        if (gvocab_kind(g->v, token) == GVOCAB_NORMAL) return grammar_scan(g, piece, len);
        return true;
    }
    switch (gvocab_kind(g->v, token)) {
    case GVOCAB_END: return gmatch_can_end(g->m);
    case GVOCAB_NORMAL:
        if (!gmatch_accept_bytes(g->m, piece, len)) return false;
        if (g->trigger && gmatch_no_more(g->m)) { /* a complete sentence: free text again */
            g->active = false;
            g->tail_n = 0;
        }
        return true;
    default: return false;
    }
}

bool mica_grammar_allows(mica_grammar *g, int32_t token) {
    if (!g->active) return token >= 0 && token < gvocab_n_tokens(g->v);
    return gmatch_token_ok(g->m, g->v, token);
}

const uint8_t *grammar_allowed(mica_grammar *g, int32_t *n_allowed, int32_t *n_tokens) {
    if (!g->active) return NULL;
    int32_t count = gmatch_mask(g->m, g->v, g->allowed);
    if (count < 0) return NULL;
    *n_allowed = count;
    *n_tokens = gvocab_n_tokens(g->v);
    return g->allowed;
}

int32_t mica_grammar_mask(mica_grammar *g, float *logits, int32_t n_vocab) {
    if (!g->active) return n_vocab;
    int32_t nv = gvocab_n_tokens(g->v);
    int32_t count = gmatch_mask(g->m, g->v, g->allowed);
    if (count < 0) return -1;
    for (int32_t i = 0; i < n_vocab; i++)
        if (i >= nv || !g->allowed[i]) logits[i] = -INFINITY;
    return count;
}

bool mica_grammar_can_end(const mica_grammar *g) { return !g->active || gmatch_can_end(g->m); }

bool mica_grammar_done(const mica_grammar *g) { return g->active && gmatch_no_more(g->m); }
