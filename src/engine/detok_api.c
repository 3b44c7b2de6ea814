/*
 * detok_api.c - the public streaming detokenizer (mica_detok_*, contract in
 * include/mica.h) on top of vocab_token_to_piece and the UTF-8 tail check of
 * text/utf8.h. Layer: engine.
 *
 * The queue holds the bytes not yet handed out: ready bytes first, then at
 * most 3 bytes of an incomplete UTF-8 sequence. Its capacity starts at the
 * longest piece plus room for the held tail, so with a large enough cap the
 * queue never grows after creation.
 */
#include <stdint.h>
#include <string.h>

#include "mica.h"
#include "mica_internal.h"
#include "model/model.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

struct mica_detok {
    const mica_vocab *vocab;
    int32_t prev;  /* last pushed token, -1 at the start */
    char *q;       /* queued bytes (cap) */
    size_t n, cap;
};

mica_status mica_detok_create(const mica_model *model, mica_detok **out) {
    if (!model || !out || !model->vocab) return MICA_ERR_INVALID_ARG;
    const mica_vocab *v = model->vocab;
    /* Pieces are never longer than the stored token texts (U+2581 and
       byte-level characters shrink when decoded; byte tokens give 1 byte). */
    size_t max_piece = 0;
    for (int32_t id = 0; id < vocab_n_tokens(v); id++) {
        size_t len;
        if (vocab_token_text(v, id, &len) && len > max_piece) max_piece = len;
    }
    mica_detok *d = mica_calloc(1, sizeof(*d));
    if (!d) return MICA_ERR_NOMEM;
    d->vocab = v;
    d->prev = -1;
    d->cap = max_piece + 8;
    d->q = mica_malloc(d->cap);
    if (!d->q) {
        mica_free(d);
        return MICA_ERR_NOMEM;
    }
    *out = d;
    return MICA_OK;
}

/* Hands out up to cap of the first `ready` queued bytes. */
static size_t detok_emit(mica_detok *d, size_t ready, char *buf, size_t cap) {
    size_t w = MICA_MIN(ready, cap);
    if (w == 0) return 0;
    memcpy(buf, d->q, w);
    memmove(d->q, d->q + w, d->n - w);
    d->n -= w;
    return w;
}

size_t mica_detok_push(mica_detok *d, int32_t token, char *buf, size_t cap) {
    if (token >= 0 && token < vocab_n_tokens(d->vocab)) {
        size_t need = vocab_token_to_piece(d->vocab, d->prev, token, NULL, 0);
        bool fits = need <= SIZE_MAX - d->n;
        size_t total = fits ? d->n + need : 0;
        if (fits && total > d->cap) {
            size_t cap2 = MICA_MAX(total, d->cap * 2);
            char *q2 = mica_realloc(d->q, cap2);
            if (q2) {
                d->q = q2;
                d->cap = cap2;
            } else {
                fits = false;
            }
        }
        if (fits) d->n += vocab_token_to_piece(d->vocab, d->prev, token, d->q + d->n, need);
        d->prev = token;
    }
    return detok_emit(d, d->n - utf8_incomplete_tail(d->q, d->n), buf, cap);
}

size_t mica_detok_flush(mica_detok *d, char *buf, size_t cap) { return detok_emit(d, d->n, buf, cap); }

void mica_detok_free(mica_detok *d) {
    if (!d) return;
    mica_free(d->q);
    mica_free(d);
}
