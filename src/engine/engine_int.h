/*
 * engine_int.h - functions shared by the files of the engine module only.
 */
#ifndef MICA_ENGINE_INT_H
#define MICA_ENGINE_INT_H

#include "model/model.h"

/* Parses tokenizer.chat_template, if present, into m->chat_tmpl (chat_api.c).
 * A template that does not parse is recorded in m->chat_tmpl_err and is not an
 * error here; returns MICA_OK or MICA_ERR_NOMEM. */
mica_status chat_api_load_template(mica_model *m, mica_err *err);

/* ---- stream.c: the memory budget and expert streaming ---- */

typedef struct model_stream model_stream;

/*
 * Plans m's memory from its tensor table and params->mem_budget (see
 * mica_model_params) and, when the routed experts must stream, creates
 * m->experts (before the architecture binds its weights). Records the plan
 * in m->stream. Returns MICA_OK, MICA_ERR_LIMIT (an explicit budget below
 * the minimum, which the message states), MICA_ERR_IO, MICA_ERR_FORMAT or
 * MICA_ERR_NOMEM. stream_free undoes it (call after the architecture's
 * unload; accepts a model without a plan).
 */
mica_status stream_setup(mica_model *m, const mica_model_params *params, mica_err *err);
void stream_free(mica_model *m);

#endif /* MICA_ENGINE_INT_H */
