/*
 * slots.c - tasks, the request queue and the slot workers (see slots.h):
 * prefix reuse, the sampling loop with penalties, logit bias and
 * log-probabilities, stop strings, and the streaming detokenizer.
 */
#include "slots.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "openai.h"

#define SLOT_PROMPT_CHUNK 256 /* prompt tokens per decode call (cancellation granularity) */

/* ---- tasks ---- */

task *task_create(srv *S, task_params *p) {
    task *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->p = *p;
    *p = (task_params){0};
    t->S = S;
    t->refs = 1;
    t->created = (int64_t)time(NULL);
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    uint64_t a = srv_random(S), b = srv_random(S);
    snprintf(t->id, sizeof t->id, "%s-%016llx%08llx", t->p.kind == TASK_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)a, (unsigned long long)(b & 0xffffffffu));
    return t;
}

void task_retain(task *t) {
    pthread_mutex_lock(&t->mu);
    t->refs++;
    pthread_mutex_unlock(&t->mu);
}

void oai_result_free(oai_result *res); /* openai.c */

void task_release(task *t) {
    if (!t) return;
    pthread_mutex_lock(&t->mu);
    int left = --t->refs;
    pthread_mutex_unlock(&t->mu);
    if (left > 0) return;
    free(t->p.prompt);
    free(t->p.bias_ids);
    free(t->p.bias_vals);
    for (int i = 0; i < t->p.n_stop; i++) free(t->p.stop[i]);
    free(t->p.tool_prefill);
    mica_grammar_free(t->p.grammar);
    sbuf_free(&t->out);
    free(t->body);
    oai_result_free(t->res);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    free(t);
}

void task_push(task *t, const char *s, size_t n) {
    pthread_mutex_lock(&t->mu);
    if (!t->cancelled) sbuf_add(&t->out, s, n);
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

void task_finish(task *t, int status, char *body) {
    pthread_mutex_lock(&t->mu);
    free(t->body);
    t->status = status;
    t->body = body;
    t->done = true;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

bool task_is_cancelled(task *t) {
    pthread_mutex_lock(&t->mu);
    bool c = t->cancelled;
    pthread_mutex_unlock(&t->mu);
    return c;
}

void task_cancel(task *t) {
    pthread_mutex_lock(&t->mu);
    t->cancelled = true;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

/* ---- slots and the queue ---- */

typedef struct slot {
    sched *sc;
    int id;
    pthread_t thread;
    bool thread_started;
    mica_session *sess;
    int32_t *cache; /* tokens in the KV cache, in order (n_ctx) */
    int32_t n_cache;
    task *cur;
    pthread_cond_t cv;
    /* scratch of the sampling loop */
    float *logits0; /* logits after the prompt (n_vocab) */
    float *work;    /* penalised copy (n_vocab) */
    int32_t *counts; /* per-token count of this choice (n_vocab) */
    mica_detok *detok;
} slot;

struct sched {
    srv *S;
    pthread_mutex_t mu;
    slot *slots;
    int n_slots, active, queued;
    task *head, *tail;
    bool stopping;
    pthread_mutex_t gv_mu; /* guards gvocab */
    mica_grammar_vocab *gvocab;
};

static int32_t common_prefix(const int32_t *a, int32_t na, const int32_t *b, int32_t nb) {
    int32_t i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}

/* Hands waiting tasks to free slots. Called with sc->mu held. */
static void sched_dispatch(sched *sc) {
    while (sc->head) {
        task *t = sc->head;
        int best = -1;
        int32_t best_len = -1;
        for (int i = 0; i < sc->n_slots; i++) {
            slot *sl = &sc->slots[i];
            if (sl->cur) continue;
            int32_t l = common_prefix(sl->cache, sl->n_cache, t->p.prompt, t->p.n_prompt);
            if (l > best_len) { best_len = l; best = i; }
        }
        if (best < 0) return;
        sc->head = t->next;
        if (!sc->head) sc->tail = NULL;
        t->next = NULL;
        sc->queued--;
        sc->active++;
        sc->slots[best].cur = t;
        pthread_cond_signal(&sc->slots[best].cv);
    }
}

sched_result sched_submit(sched *sc, task *t) {
    pthread_mutex_lock(&sc->mu);
    if (sc->stopping) { pthread_mutex_unlock(&sc->mu); return SCHED_STOPPING; }
    bool any_free = false;
    for (int i = 0; i < sc->n_slots; i++) any_free |= sc->slots[i].cur == NULL;
    if (!any_free && sc->queued >= sc->S->cfg.queue_cap) {
        pthread_mutex_unlock(&sc->mu);
        return SCHED_FULL;
    }
    task_retain(t);
    if (sc->tail) sc->tail->next = t;
    else sc->head = t;
    sc->tail = t;
    sc->queued++;
    sched_dispatch(sc);
    pthread_mutex_unlock(&sc->mu);
    return SCHED_OK;
}

mica_grammar_vocab *sched_grammar_vocab(sched *sc, char *err, size_t err_cap) {
    pthread_mutex_lock(&sc->gv_mu);
    if (!sc->gvocab && mica_grammar_vocab_create(sc->S->model, &sc->gvocab, err, err_cap) != MICA_OK)
        sc->gvocab = NULL;
    mica_grammar_vocab *gv = sc->gvocab;
    pthread_mutex_unlock(&sc->gv_mu);
    return gv;
}

void sched_get_load(sched *sc, sched_load *out) {
    pthread_mutex_lock(&sc->mu);
    *out = (sched_load){.n_slots = sc->n_slots, .active = sc->active, .queued = sc->queued};
    for (int i = 0; i < sc->n_slots; i++) {
        out->kv_used += sc->slots[i].n_cache;
        out->kv_cap += mica_session_n_ctx(sc->slots[i].sess);
    }
    pthread_mutex_unlock(&sc->mu);
}

/* ---- generation ---- */

/* log-softmax of the raw logits: the chosen token's value and the top k. */
static void slot_logprobs(const float *logits, int32_t n_vocab, int32_t prev, int32_t tok, int k,
                          tok_logprob *out) {
    float mx = logits[0];
    for (int32_t i = 1; i < n_vocab; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (int32_t i = 0; i < n_vocab; i++) sum += exp((double)logits[i] - mx);
    float lse = mx + (float)log(sum);
    out->prev = prev;
    out->token = tok;
    out->logprob = logits[tok] - lse;
    out->n_top = 0;
    for (int32_t i = 0; i < n_vocab && k > 0; i++) { /* insertion into a sorted top-k */
        float v = logits[i];
        if (out->n_top == k && v <= out->top_lp[k - 1]) continue;
        int j = out->n_top < k ? out->n_top++ : k - 1;
        while (j > 0 && out->top_lp[j - 1] < v) {
            out->top_lp[j] = out->top_lp[j - 1];
            out->top_ids[j] = out->top_ids[j - 1];
            j--;
        }
        out->top_lp[j] = v;
        out->top_ids[j] = i;
    }
    for (int j = 0; j < out->n_top; j++) out->top_lp[j] -= lse;
}

/*
 * Stop strings: the generated text is kept; after each token the text is
 * searched for a stop string (from where a new match could start), and the
 * bytes that could begin one are held back. Returns the number of bytes of
 * text that may be sent (from *sent), and sets *hit when a stop string was
 * found (the text is then cut before it).
 */
static size_t stop_scan(const task_params *p, const sbuf *text, size_t old_len, size_t sent, bool final,
                        bool *hit) {
    size_t cut = text->n;
    *hit = false;
    for (int i = 0; i < p->n_stop; i++) {
        size_t sl = strlen(p->stop[i]);
        size_t from = old_len >= sl ? old_len - sl + 1 : 0;
        for (size_t at = from; at + sl <= text->n && at < cut; at++) {
            if (memcmp(text->p + at, p->stop[i], sl) == 0) {
                cut = at;
                *hit = true;
                break;
            }
        }
    }
    if (!*hit && !final) {
        for (int i = 0; i < p->n_stop; i++) { /* the longest partial match at the end */
            size_t sl = strlen(p->stop[i]);
            for (size_t k = sl - 1 < text->n ? sl - 1 : text->n; k > 0; k--) {
                if (text->n - k < cut && memcmp(text->p + text->n - k, p->stop[i], k) == 0) {
                    cut = text->n - k;
                    break;
                }
            }
        }
    }
    return cut > sent ? cut - sent : 0;
}

/* Runs one choice from the prompt's logits; returns false if the task failed or was cancelled. */
static bool slot_choice(slot *sl, task *t, int c, mica_sampler *smp, int32_t *n_gen_out) {
    srv *S = sl->sc->S;
    const task_params *p = &t->p;
    const int32_t n_vocab = S->n_vocab;
    sbuf text = {0};
    size_t sent = 0;
    int32_t n_gen = 0, prev = p->prompt[p->n_prompt - 1];
    const char *finish = "length";
    bool ok = true, stop_hit = false;
    char piece[512];
    tok_logprob lp;
    int32_t *gen_ids = NULL;
    size_t gen_cap = 0;

    mica_detok_free(sl->detok);
    sl->detok = NULL;
    if (mica_detok_create(S->model, &sl->detok) != MICA_OK) { oai_fail(t, 500, "out of memory"); return false; }
    oai_choice_begin(t, c);
    if (p->grammar) { /* constrained decoding: the sampler masks, accept advances the grammar */
        mica_grammar_reset(p->grammar);
        mica_sampler_set_grammar(smp, p->grammar);
    }
    const float *logits = sl->logits0;
    double t0 = srv_now();
    for (;;) {
        if (task_is_cancelled(t)) { ok = false; break; }
        if (p->max_tokens >= 0 && n_gen >= p->max_tokens) break;
        if (srv_now() > t->deadline) break; /* wall-time cap: "length" */
        /* penalties and bias on a copy; log-probabilities from the raw logits */
        memcpy(sl->work, logits, (size_t)n_vocab * sizeof(float));
        for (int i = 0; i < p->n_bias; i++) sl->work[p->bias_ids[i]] += p->bias_vals[i];
        if (p->presence_penalty != 0 || p->frequency_penalty != 0) {
            for (int32_t i = 0; i < n_gen; i++) {
                int32_t id = gen_ids[i];
                if (sl->counts[id] < 0) continue; /* already applied */
                float cnt = (float)sl->counts[id];
                sl->work[id] -= cnt * p->frequency_penalty + (cnt > 0 ? p->presence_penalty : 0);
                sl->counts[id] = -sl->counts[id];
            }
            for (int32_t i = 0; i < n_gen; i++)
                if (sl->counts[gen_ids[i]] < 0) sl->counts[gen_ids[i]] = -sl->counts[gen_ids[i]];
        }
        int32_t tok = mica_sampler_sample(smp, sl->work, n_vocab);
        if (mica_token_is_eog(S->model, tok)) { finish = "stop"; break; }
        /* a grammar left without any allowed token (only past its depth caps) ends the answer */
        if (p->grammar && !mica_grammar_allows(p->grammar, tok)) { finish = "stop"; break; }
        mica_sampler_accept(smp, tok);
        if (p->logprobs) slot_logprobs(logits, n_vocab, prev, tok, p->top_logprobs, &lp);
        if ((size_t)n_gen == gen_cap) {
            size_t cap = gen_cap ? gen_cap * 2 : 256;
            int32_t *g = realloc(gen_ids, cap * sizeof *g);
            if (!g) { oai_fail(t, 500, "out of memory"); ok = false; break; }
            gen_ids = g;
            gen_cap = cap;
        }
        gen_ids[n_gen++] = tok;
        sl->counts[tok]++;
        size_t k = 0;
        if (!mica_token_is_control(S->model, tok)) k = mica_detok_push(sl->detok, tok, piece, sizeof piece);
        prev = tok;
        size_t old_len = text.n;
        if (!sbuf_add(&text, piece, k)) { oai_fail(t, 500, "out of memory"); ok = false; break; }
        size_t n_send = stop_scan(p, &text, old_len, sent, false, &stop_hit);
        bool more = oai_token(t, c, text.p + sent, n_send, p->logprobs ? &lp : NULL);
        sent += n_send;
        if (stop_hit) { finish = "stop"; break; }
        if (!more) { finish = "stop"; break; }
        if (p->grammar && mica_grammar_done(p->grammar)) { finish = "stop"; break; } /* only an end token may follow */
        if (p->max_tokens >= 0 && n_gen >= p->max_tokens) break;
        if (mica_session_n_past(sl->sess) >= mica_session_n_ctx(sl->sess)) break;
        if (mica_session_decode(sl->sess, &tok, 1, NULL) != MICA_OK) {
            char msg[300];
            snprintf(msg, sizeof msg, "decode failed: %s", mica_session_errmsg(sl->sess));
            oai_fail(t, 500, msg);
            ok = false;
            break;
        }
        sl->cache[sl->n_cache++] = tok;
        logits = mica_session_logits(sl->sess);
    }
    if (ok && !stop_hit) { /* the held incomplete UTF-8 tail and held stop prefixes */
        size_t k, old_len = text.n;
        while ((k = mica_detok_flush(sl->detok, piece, sizeof piece)) > 0) {
            sbuf_add(&text, piece, k);
            if (k < sizeof piece) break;
        }
        size_t n_send = stop_scan(p, &text, old_len, sent, true, &stop_hit);
        if (stop_hit) finish = "stop";
        if (n_send) oai_token(t, c, text.p + sent, n_send, NULL);
    }
    for (int32_t i = 0; i < n_gen; i++) sl->counts[gen_ids[i]] = 0;
    free(gen_ids);
    sbuf_free(&text);
    srv_stats d = {.gen_tokens = (uint64_t)n_gen, .gen_seconds = srv_now() - t0};
    srv_stats_add(S, &d);
    *n_gen_out = n_gen;
    if (ok) oai_choice_end(t, c, finish, n_gen);
    return ok;
}

/* Evaluates the prompt after the longest cached prefix; false if failed or cancelled. */
static bool slot_prompt(slot *sl, task *t) {
    srv *S = sl->sc->S;
    const task_params *p = &t->p;
    int32_t keep = common_prefix(sl->cache, sl->n_cache, p->prompt, p->n_prompt);
    if (keep > mica_session_n_past(sl->sess)) keep = mica_session_n_past(sl->sess);
    if (keep >= p->n_prompt) keep = p->n_prompt - 1; /* the last token is evaluated for its logits */
    if (mica_session_truncate(sl->sess, keep) != MICA_OK) {
        mica_session_reset(sl->sess);
        keep = 0;
    }
    sl->n_cache = keep;
    t->n_cached = keep;
    double t0 = srv_now();
    for (int32_t i = keep; i < p->n_prompt;) {
        if (task_is_cancelled(t)) return false;
        int32_t n = p->n_prompt - i < SLOT_PROMPT_CHUNK ? p->n_prompt - i : SLOT_PROMPT_CHUNK;
        if (mica_session_decode(sl->sess, p->prompt + i, n, NULL) != MICA_OK) {
            char msg[300];
            snprintf(msg, sizeof msg, "prompt evaluation failed: %s", mica_session_errmsg(sl->sess));
            mica_session_reset(sl->sess);
            sl->n_cache = 0;
            oai_fail(t, 500, msg);
            return false;
        }
        memcpy(sl->cache + i, p->prompt + i, (size_t)n * sizeof(int32_t));
        i += n;
        sl->n_cache = i;
    }
    memcpy(sl->logits0, mica_session_logits(sl->sess), (size_t)S->n_vocab * sizeof(float));
    srv_stats d = {.prompt_tokens = (uint64_t)(p->n_prompt - keep), .cached_tokens = (uint64_t)keep,
                   .prompt_seconds = srv_now() - t0};
    srv_stats_add(S, &d);
    return true;
}

static void slot_run(slot *sl, task *t) {
    pthread_mutex_lock(&t->mu);
    t->started = true;
    t->deadline = srv_now() + sl->sc->S->cfg.timeout_s;
    pthread_mutex_unlock(&t->mu);
    if (task_is_cancelled(t)) { task_finish(t, 499, NULL); return; }
    mica_sampler *smp = NULL;
    if (mica_sampler_create(&t->p.sp, &smp) != MICA_OK) { oai_fail(t, 400, "invalid sampling parameters"); return; }
    if (!slot_prompt(sl, t)) goto out;
    if (!oai_begin(t)) { oai_fail(t, 500, "out of memory"); goto out; }
    for (int c = 0; c < t->p.n_choices; c++) {
        if (c > 0) { /* back to the end of the prompt; its logits are kept */
            mica_session_truncate(sl->sess, t->p.n_prompt);
            sl->n_cache = t->p.n_prompt;
        }
        int32_t n_gen = 0;
        bool ok = slot_choice(sl, t, c, smp, &n_gen);
        t->n_gen += n_gen;
        if (!ok) goto out;
    }
    oai_end(t);
out:
    pthread_mutex_lock(&t->mu);
    bool done = t->done;
    pthread_mutex_unlock(&t->mu);
    if (!done) task_finish(t, 499, NULL); /* cancelled */
    mica_sampler_free(smp);
}

static void *slot_main(void *arg) {
    slot *sl = arg;
    sched *sc = sl->sc;
    pthread_mutex_lock(&sc->mu);
    for (;;) {
        while (!sl->cur && !sc->stopping) pthread_cond_wait(&sl->cv, &sc->mu);
        if (!sl->cur) break; /* stopping */
        task *t = sl->cur;
        pthread_mutex_unlock(&sc->mu);
        slot_run(sl, t);
        srv_stats d = {.requests = 1};
        srv_stats_add(sc->S, &d);
        task_release(t);
        pthread_mutex_lock(&sc->mu);
        sl->cur = NULL;
        sc->active--;
        sched_dispatch(sc);
    }
    pthread_mutex_unlock(&sc->mu);
    return NULL;
}

sched *sched_create(srv *S, char *err, size_t err_cap) {
    sched *sc = calloc(1, sizeof *sc);
    if (!sc) { snprintf(err, err_cap, "out of memory"); return NULL; }
    sc->S = S;
    pthread_mutex_init(&sc->mu, NULL);
    pthread_mutex_init(&sc->gv_mu, NULL);
    sc->n_slots = S->cfg.parallel;
    sc->slots = calloc((size_t)sc->n_slots, sizeof *sc->slots);
    if (!sc->slots) { snprintf(err, err_cap, "out of memory"); free(sc); return NULL; }
    for (int i = 0; i < sc->n_slots; i++) {
        slot *sl = &sc->slots[i];
        sl->sc = sc;
        sl->id = i;
        pthread_cond_init(&sl->cv, NULL);
    }
    for (int i = 0; i < sc->n_slots; i++) {
        slot *sl = &sc->slots[i];
        mica_session_params sp = mica_session_params_default();
        sp.n_ctx = S->cfg.n_ctx;
        sp.n_threads = S->cfg.n_threads;
        sp.kv_type = S->cfg.kv_type;
        char e[512];
        if (mica_session_create(S->model, &sp, &sl->sess, e, sizeof e) != MICA_OK) {
            snprintf(err, err_cap, "slot %d: %s", i, e);
            sched_free(sc);
            return NULL;
        }
        S->n_ctx = mica_session_n_ctx(sl->sess);
        size_t nv = (size_t)S->n_vocab;
        sl->cache = calloc((size_t)S->n_ctx, sizeof(int32_t));
        sl->logits0 = calloc(nv, sizeof(float));
        sl->work = calloc(nv, sizeof(float));
        sl->counts = calloc(nv, sizeof(int32_t));
        if (!sl->cache || !sl->logits0 || !sl->work || !sl->counts) {
            snprintf(err, err_cap, "out of memory for slot %d", i);
            sched_free(sc);
            return NULL;
        }
        int rc = pthread_create(&sl->thread, NULL, slot_main, sl);
        if (rc != 0) {
            snprintf(err, err_cap, "cannot start a worker thread: %s", strerror(rc));
            sched_free(sc);
            return NULL;
        }
        sl->thread_started = true;
    }
    return sc;
}

void sched_stop(sched *sc) {
    if (!sc) return;
    pthread_mutex_lock(&sc->mu);
    bool was = sc->stopping;
    sc->stopping = true;
    if (was) { pthread_mutex_unlock(&sc->mu); return; }
    for (task *t = sc->head; t; t = t->next) task_cancel(t);
    for (int i = 0; i < sc->n_slots; i++) {
        if (sc->slots[i].cur) task_cancel(sc->slots[i].cur);
        pthread_cond_signal(&sc->slots[i].cv);
    }
    pthread_mutex_unlock(&sc->mu);
    for (int i = 0; i < sc->n_slots; i++)
        if (sc->slots[i].thread_started) pthread_join(sc->slots[i].thread, NULL);
    pthread_mutex_lock(&sc->mu);
    while (sc->head) { /* never picked up */
        task *t = sc->head;
        sc->head = t->next;
        sc->queued--;
        task_finish(t, 503, NULL);
        task_release(t);
    }
    sc->tail = NULL;
    pthread_mutex_unlock(&sc->mu);
}

void sched_free(sched *sc) {
    if (!sc) return;
    sched_stop(sc);
    for (int i = 0; i < sc->n_slots; i++) {
        slot *sl = &sc->slots[i];
        mica_session_free(sl->sess);
        mica_detok_free(sl->detok);
        free(sl->cache);
        free(sl->logits0);
        free(sl->work);
        free(sl->counts);
        pthread_cond_destroy(&sl->cv);
    }
    free(sc->slots);
    mica_grammar_vocab_free(sc->gvocab);
    pthread_mutex_destroy(&sc->mu);
    pthread_mutex_destroy(&sc->gv_mu);
    free(sc);
}
