/*
 * session.c - mica_session: one conversation over a model. Owns the thread
 * pool, the architecture's forward state (KV cache, activation buffers) and
 * the last logits; splits long inputs into batches. Layer: engine.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "model/expert_store.h"
#include "model/model.h"

struct mica_session {
    mica_model *model;
    mica_pool *pool;
    arch_state *state;
    int32_t n_ctx, n_batch, n_past;
    float *logits; /* [n_vocab]: the last token's logits */
    bool has_logits;
    char errmsg[512];
};

mica_session_params mica_session_params_default(void) {
    return (mica_session_params){.n_ctx = 0, .n_threads = 0, .n_batch = 0, .kv_type = MICA_KV_F32};
}

/* ---- KV-cache types ---- */

static const struct {
    int32_t kv_type;
    const char *name;
    uint32_t dtype;
} session_kv_types[] = {
    {MICA_KV_F32, "f32", MICA_DTYPE_F32},
    {MICA_KV_F16, "f16", MICA_DTYPE_F16},
    {MICA_KV_Q8_0, "q8_0", MICA_DTYPE_Q8_0},
};

/* The dtype of a mica_kv_type; false if unknown. */
static bool session_kv_dtype(int32_t kv_type, uint32_t *dtype) {
    for (size_t i = 0; i < MICA_ARRAY_LEN(session_kv_types); i++)
        if (session_kv_types[i].kv_type == kv_type) {
            *dtype = session_kv_types[i].dtype;
            return true;
        }
    return false;
}

const char *mica_kv_type_name(int32_t kv_type) {
    for (size_t i = 0; i < MICA_ARRAY_LEN(session_kv_types); i++)
        if (session_kv_types[i].kv_type == kv_type) return session_kv_types[i].name;
    return "?";
}

bool mica_kv_type_parse(const char *name, int32_t *out) {
    for (size_t i = 0; name && i < MICA_ARRAY_LEN(session_kv_types); i++)
        if (strcasecmp(name, session_kv_types[i].name) == 0) {
            *out = session_kv_types[i].kv_type;
            return true;
        }
    return false;
}

#define SESSION_KV_BATCH 512 /* the default n_batch, as mica_model_kv_bytes assumes */

uint64_t mica_model_kv_bytes_typed(const mica_model *m, int32_t n_ctx, int32_t kv_type) {
    uint32_t dt = 0;
    if (!m->arch || n_ctx <= 0 || !session_kv_dtype(kv_type, &dt)) return 0;
    return arch_kv_bytes_type(m, n_ctx, MICA_MIN(n_ctx, SESSION_KV_BATCH), dt);
}

uint64_t mica_session_kv_bytes(const mica_session *s) { return s->model->arch->state_kv_bytes(s->state); }

void mica_session_free(mica_session *s) {
    if (!s) return;
    if (s->state) s->model->arch->state_free(s->state);
    pool_free(s->pool);
    mica_free(s->logits);
    mica_free(s);
}

mica_status mica_session_create(mica_model *m, const mica_session_params *params, mica_session **out,
                                char *errbuf, size_t err_cap) {
    mica_err err = {0};
    mica_session_params p = params ? *params : mica_session_params_default();
    mica_status st;
    mica_session *s = NULL;
    if (!m || !out || !m->arch) {
        st = mica_err_set(&err, MICA_ERR_INVALID_ARG, "a session needs a model loaded with its weights");
        goto fail;
    }
    if (p.n_ctx == 0) p.n_ctx = (int32_t)MICA_MIN(m->hp.n_ctx_train ? m->hp.n_ctx_train : 4096, 4096u);
    if (p.n_ctx < 1 || p.n_ctx > MICA_MAX_CTX) {
        st = mica_err_set(&err, MICA_ERR_INVALID_ARG, "context size %d out of range (1..%d)", p.n_ctx, MICA_MAX_CTX);
        goto fail;
    }
    if (p.n_threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        p.n_threads = n > 0 ? (int32_t)MICA_MIN(n, (long)MICA_MAX_THREADS) : 1;
    }
    if (p.n_threads < 1 || p.n_threads > MICA_MAX_THREADS) {
        st = mica_err_set(&err, MICA_ERR_INVALID_ARG, "thread count %d out of range (1..%d)", p.n_threads,
                          MICA_MAX_THREADS);
        goto fail;
    }
    uint32_t kv_dtype = 0;
    if (!session_kv_dtype(p.kv_type, &kv_dtype)) {
        st = mica_err_set(&err, MICA_ERR_INVALID_ARG, "unknown KV-cache type %d (f32, f16 or q8_0)", p.kv_type);
        goto fail;
    }
    if (p.n_batch == 0) p.n_batch = SESSION_KV_BATCH;
    if (p.n_batch < 1 || p.n_batch > 65536) {
        st = mica_err_set(&err, MICA_ERR_INVALID_ARG, "batch size %d out of range (1..65536)", p.n_batch);
        goto fail;
    }
    p.n_batch = MICA_MIN(p.n_batch, p.n_ctx);
    s = mica_calloc(1, sizeof *s);
    if (!s) { st = mica_err_set(&err, MICA_ERR_NOMEM, "out of memory"); goto fail; }
    s->model = m;
    s->n_ctx = p.n_ctx;
    s->n_batch = p.n_batch;
    s->logits = mica_malloc((size_t)m->hp.n_vocab * sizeof(float));
    if (!s->logits) { st = mica_err_set(&err, MICA_ERR_NOMEM, "out of memory"); goto fail; }
    if ((st = pool_create(p.n_threads, &s->pool))) {
        mica_err_set(&err, st, "cannot start %d threads", p.n_threads);
        goto fail;
    }
    if ((st = m->arch->state_create(m, s->pool, s->n_ctx, s->n_batch, kv_dtype, &s->state, &err))) goto fail;
    *out = s;
    return MICA_OK;
fail:
    mica_err_copy(&err, errbuf, err_cap);
    mica_session_free(s);
    return st;
}

static mica_status session_fail(mica_session *s, mica_status st, const char *msg) {
    snprintf(s->errmsg, sizeof s->errmsg, "%s", msg);
    return st;
}

mica_status mica_session_decode(mica_session *s, const int32_t *tokens, int32_t n, float *all_logits) {
    const mica_model *m = s->model;
    if (n <= 0 || !tokens) return session_fail(s, MICA_ERR_INVALID_ARG, "no tokens to decode");
    if (n > s->n_ctx - s->n_past) {
        char msg[160];
        snprintf(msg, sizeof msg, "context full: %d tokens cached + %d new > context size %d", s->n_past, n,
                 s->n_ctx);
        return session_fail(s, MICA_ERR_LIMIT, msg);
    }
    for (int32_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= m->hp.n_vocab) {
            char msg[160];
            snprintf(msg, sizeof msg, "token id %d out of range (n_vocab %u)", tokens[i], m->hp.n_vocab);
            return session_fail(s, MICA_ERR_INVALID_ARG, msg);
        }
    }
    const size_t V = m->hp.n_vocab;
    const int32_t n_past0 = s->n_past;
    for (int32_t done = 0; done < n;) {
        int32_t nb = MICA_MIN(s->n_batch, n - done);
        const bool last = done + nb == n;
        float *dst = all_logits ? all_logits + (size_t)done * V : s->logits;
        const uint64_t fails0 = m->experts ? expert_store_n_failures(m->experts) : 0;
        m->arch->forward(m, s->state, tokens + done, nb, s->n_past, dst, all_logits != NULL);
        if (m->experts && expert_store_n_failures(m->experts) != fails0) {
            /* a streamed expert could not be read: this call's results are invalid */
            char msg[sizeof s->errmsg];
            expert_store_last_error(m->experts, msg, sizeof msg);
            s->n_past = n_past0;
            s->has_logits = false;
            return session_fail(s, MICA_ERR_IO, msg);
        }
        s->n_past += nb;
        done += nb;
        if (last && all_logits) memcpy(s->logits, all_logits + ((size_t)n - 1) * V, V * sizeof(float));
    }
    s->has_logits = true;
    s->errmsg[0] = '\0';
    return MICA_OK;
}

const float *mica_session_logits(const mica_session *s) { return s->has_logits ? s->logits : NULL; }
int32_t mica_session_n_past(const mica_session *s) { return s->n_past; }
int32_t mica_session_n_ctx(const mica_session *s) { return s->n_ctx; }
void mica_session_reset(mica_session *s) {
    s->n_past = 0;
    s->has_logits = false;
}
mica_status mica_session_truncate(mica_session *s, int32_t n_keep) {
    if (n_keep < 0 || n_keep > s->n_past) return session_fail(s, MICA_ERR_INVALID_ARG, "truncate past the cache");
    if (n_keep < s->n_past) s->has_logits = false; /* the last logits belonged to a dropped token */
    s->n_past = n_keep;
    return MICA_OK;
}

const char *mica_session_errmsg(const mica_session *s) { return s->errmsg; }
