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

#endif /* MICA_ENGINE_INT_H */
