/*
 * server_api.c - small token queries of mica.h that the HTTP server needs
 * (contracts in include/mica.h). Layer: engine.
 */
#include "mica.h"
#include "model/model.h"
#include "text/tokenizer.h"

bool mica_token_is_control(const mica_model *m, int32_t token) {
    if (!m || !m->vocab || token < 0 || token >= vocab_n_tokens(m->vocab)) return false;
    return vocab_token_type(m->vocab, token) == VOCAB_TT_CONTROL;
}
