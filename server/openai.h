/*
 * openai.h - the OpenAI-compatible request and response formats: parsing
 * request bodies into task parameters (strictly: an unknown field, or one
 * that would change the answer and is not supported, is a 400 naming it),
 * and turning the tokens a slot generates into chat / completion answers,
 * either whole or as SSE chunks.
 */
#ifndef MICA_SERVER_OPENAI_H
#define MICA_SERVER_OPENAI_H

#include "server.h"

/* What a route handler answers: a JSON body with a status, or a task. */
typedef struct http_reply {
    int status;
    char *body;          /* malloc'd JSON (NULL with a task) */
    task *task;          /* submitted generation (one reference for the connection) */
    bool stream;         /* the task answers with SSE */
    int retry_after;     /* > 0: send Retry-After */
} http_reply;

/* OpenAI-style error body {"error": {message, type, param, code}} (malloc'd). */
char *oai_error_json(const char *message, const char *type, const char *param, const char *code);
/* Sets r to an error reply. */
void oai_reply_error(http_reply *r, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

void oai_models(srv *S, http_reply *r);
void oai_tokenize(srv *S, const char *body, size_t len, http_reply *r);
void oai_detokenize(srv *S, const char *body, size_t len, http_reply *r);
/* POST /apply-template: the rendered chat prompt of a chat request. */
void oai_apply_template(srv *S, const char *body, size_t len, http_reply *r);
/* POST /v1/completions (chat false) and /v1/chat/completions (chat true). */
void oai_generate(srv *S, const char *body, size_t len, bool chat, http_reply *r);

/* ---- called by the slot worker that runs a task ---- */

/* The worker starts on t (after the prompt is evaluated). False on out of memory. */
bool oai_begin(task *t);
void oai_choice_begin(task *t, int choice);
/* Generated text of one token (may be empty: held back) and its
 * log-probabilities (NULL unless asked). Returns false when the answer is
 * complete (a tool call ended and parallel tool calls are off). */
bool oai_token(task *t, int choice, const char *text, size_t n, const tok_logprob *lp);
/* finish: "stop" or "length" ("stop" becomes "tool_calls" if tools were called). */
void oai_choice_end(task *t, int choice, const char *finish, int32_t n_gen);
/* Completes the answer (usage, [DONE]) and marks the task done. */
void oai_end(task *t);
/* Fails the task: an error body, or an error event on a started stream. */
void oai_fail(task *t, int status, const char *message);

#endif /* MICA_SERVER_OPENAI_H */
