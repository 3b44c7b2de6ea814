/*
 * grammar_vocab.c - mica_grammar_vocab_create (contract in include/mica.h):
 * the model's vocabulary as byte strings for the grammar's token trie
 * (sample/grammar.h). Layer: engine.
 */
#include <string.h>

#include "mica.h"
#include "mica_internal.h"
#include "model/model.h"
#include "sample/grammar.h"
#include "text/tokenizer.h"

mica_status mica_grammar_vocab_create(const mica_model *model, mica_grammar_vocab **out, char *err_buf,
                                      size_t err_cap) {
    mica_err err = {0};
    mica_status st;
    if (!model || !out || !model->vocab) {
        st = mica_err_set(&err, MICA_ERR_INVALID_ARG, "the model has no vocabulary");
        goto done;
    }
    const mica_vocab *v = model->vocab;
    int32_t n = vocab_n_tokens(v);
    uint32_t *off = mica_malloc(((size_t)n + 1) * sizeof *off);
    uint8_t *kind = mica_malloc((size_t)n);
    size_t total = 0;
    for (int32_t id = 0; id < n; id++) total += vocab_token_to_piece(v, -1, id, NULL, 0);
    char *bytes = mica_malloc(total ? total : 1);
    st = MICA_ERR_NOMEM;
    if (!off || !kind || !bytes || total > UINT32_MAX) {
        mica_err_set(&err, st, "out of memory");
        goto free_all;
    }
    size_t at = 0;
    for (int32_t id = 0; id < n; id++) {
        off[id] = (uint32_t)at;
        enum vocab_token_type tt = vocab_token_type(v, id);
        if (vocab_is_eog(v, id)) kind[id] = GVOCAB_END;
        else if (tt == VOCAB_TT_CONTROL || tt == VOCAB_TT_UNKNOWN || tt == VOCAB_TT_UNUSED) kind[id] = GVOCAB_NEVER;
        else kind[id] = GVOCAB_NORMAL;
        at += vocab_token_to_piece(v, -1, id, bytes + at, total - at);
    }
    off[n] = (uint32_t)at;
    st = gvocab_create(n, bytes, off, kind, out, &err);
free_all:
    mica_free(off);
    mica_free(kind);
    mica_free(bytes);
done:
    if (st != MICA_OK && err_buf && err_cap) mica_err_copy(&err, err_buf, err_cap);
    return st;
}

void mica_grammar_vocab_free(mica_grammar_vocab *gv) { gvocab_free(gv); }
