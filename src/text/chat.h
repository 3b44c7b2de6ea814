/*
 * chat.h - the chat layer (layer: text): turns a conversation (messages,
 * tools, generation flags) into the prompt text a model expects, by
 * rendering the model's Jinja chat template (jinja.h) the way Hugging Face's
 * apply_chat_template does, or with a ChatML fallback when the model ships no
 * template.
 *
 * The template sees these variables: `messages` (a list of dicts with the
 * keys "role", "content" and, only when given, "reasoning_content",
 * "tool_calls", "tool_call_id", "name"), `tools` (the parsed tools list, or
 * none), `add_generation_prompt`, `bos_token`, `eos_token`, and every member
 * of extra_json (e.g. {"enable_thinking": false}), which may also override
 * the others.
 *
 * Thread safety: the functions are reentrant; a template may be shared.
 */
#ifndef MICA_CHAT_H
#define MICA_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "text/jinja.h"

typedef struct chat_message {
    const char *role;              /* required: "system", "user", "assistant", "tool", ... */
    const char *content;           /* NULL is rendered as "" (OpenAI's null content) */
    const char *reasoning_content; /* NULL: key absent */
    const char *tool_calls_json;   /* NULL: key absent; else a JSON array as in the OpenAI API,
                                    * [{"id": ..., "type": "function", "function": {"name": ...,
                                    * "arguments": {...}}}]. Arguments are passed as given: most
                                    * templates expect an object; a string stays a string. */
    const char *tool_call_id;      /* NULL: key absent */
    const char *name;              /* NULL: key absent */
} chat_message;

typedef struct chat_request {
    const chat_message *messages;
    size_t n_messages;
    const char *tools_json;     /* NULL: tools = none; else a JSON array of tool definitions */
    bool add_generation_prompt; /* end with the opening of an assistant turn */
    const char *bos_token;      /* NULL = "" */
    const char *eos_token;      /* NULL = "" */
    const char *extra_json;     /* NULL or a JSON object of extra template variables */
} chat_request;

/*
 * Renders req with tmpl (NULL: the ChatML fallback, see chat_render_chatml).
 * params may be NULL (jinja_params_default()). All strings must be valid
 * UTF-8. On success *out is a malloc'd NUL-terminated prompt of *out_len bytes
 * owned by the caller (free with mica_free); on failure *out is untouched and
 * err holds the message.
 * Returns MICA_OK; MICA_ERR_INVALID_ARG (NULL role, invalid UTF-8, malformed
 * tools/tool_calls/extra JSON, or the template's raise_exception, e.g. roles
 * that do not alternate); MICA_ERR_FORMAT (the template failed at run time);
 * MICA_ERR_LIMIT; MICA_ERR_NOMEM.
 */
mica_status chat_render(const jinja_template *tmpl, const chat_request *req, const jinja_params *params,
                        char **out, size_t *out_len, mica_err *err);

/*
 * The ChatML fallback: for every message "<|im_start|>ROLE\nCONTENT<|im_end|>\n",
 * then "<|im_start|>assistant\n" when add_generation_prompt is set. Tools,
 * tool calls and reasoning are not rendered. Same ownership and errors as
 * chat_render (MICA_ERR_INVALID_ARG, MICA_ERR_NOMEM).
 */
mica_status chat_render_chatml(const chat_request *req, char **out, size_t *out_len, mica_err *err);

#endif /* MICA_CHAT_H */
