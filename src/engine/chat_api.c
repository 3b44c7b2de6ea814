/*
 * chat_api.c - the public chat-template entry points of mica.h on top of the
 * text layer's chat renderer (text/chat.h). The template is parsed once when
 * the model opens (model_api.c); a template that does not parse does not stop
 * the model from loading, its error is reported when a chat is rendered.
 * Layer: engine.
 */
#include <stdio.h>
#include <string.h>

#include "engine/engine_int.h"
#include "text/chat.h"

bool mica_model_has_chat_template(const mica_model *m) {
    return m->chat_tmpl != NULL || m->chat_tmpl_err != NULL;
}

/* Parses tokenizer.chat_template if present (called by mica_model_open).
 * Returns MICA_OK unless out of memory: a broken template is recorded. */
mica_status chat_api_load_template(mica_model *m, mica_err *err) {
    gguf_str src = {0};
    mica_err terr = {0};
    if (gguf_get_str(m->gguf, "tokenizer.chat_template", &src, &terr) != MICA_OK || !src.ptr) {
        if (terr.msg[0]) m->chat_tmpl_err = mica_strndup(terr.msg, strlen(terr.msg));
        return MICA_OK;
    }
    mica_status st = jinja_template_parse(src.ptr, (size_t)src.len, &m->chat_tmpl, &terr);
    if (st == MICA_ERR_NOMEM) return mica_err_set(err, st, "out of memory parsing the chat template");
    if (st != MICA_OK) {
        char msg[600];
        snprintf(msg, sizeof msg, "chat template: %s", terr.msg);
        m->chat_tmpl_err = mica_strndup(msg, strlen(msg));
        if (!m->chat_tmpl_err) return mica_err_set(err, MICA_ERR_NOMEM, "out of memory");
    }
    return MICA_OK;
}

static const char *token_text(const mica_model *m, int32_t id, char *buf, size_t cap) {
    size_t len = 0;
    const char *t = (m->vocab && id >= 0) ? vocab_token_text(m->vocab, id, &len) : NULL;
    if (!t || len >= cap) return "";
    memcpy(buf, t, len);
    buf[len] = '\0';
    return buf;
}

mica_status mica_chat_render(const mica_model *m, const mica_chat_message *msgs, size_t n_msgs,
                             const char *tools_json, bool add_generation_prompt, const char *extra_json,
                             char **out, size_t *out_len, bool *used_fallback, char *errbuf,
                             size_t err_cap) {
    mica_err err = {0};
    mica_status st;
    chat_message *cm = NULL;
    if (!m || (!msgs && n_msgs) || !out || !out_len) {
        st = mica_err_set(&err, MICA_ERR_INVALID_ARG, "mica_chat_render: NULL argument");
        goto done;
    }
    if (m->chat_tmpl_err) {
        st = mica_err_set(&err, MICA_ERR_FORMAT, "%s", m->chat_tmpl_err);
        goto done;
    }
    cm = mica_calloc(n_msgs ? n_msgs : 1, sizeof *cm);
    if (!cm) { st = mica_err_set(&err, MICA_ERR_NOMEM, "out of memory"); goto done; }
    for (size_t i = 0; i < n_msgs; i++) {
        cm[i] = (chat_message){msgs[i].role, msgs[i].content, msgs[i].reasoning_content,
                               msgs[i].tool_calls_json, msgs[i].tool_call_id, msgs[i].name};
    }
    char bos[256], eos[256];
    chat_request req = {
        .messages = cm, .n_messages = n_msgs, .tools_json = tools_json,
        .add_generation_prompt = add_generation_prompt,
        .bos_token = token_text(m, m->vocab ? vocab_bos(m->vocab) : -1, bos, sizeof bos),
        .eos_token = token_text(m, m->vocab ? vocab_eos(m->vocab) : -1, eos, sizeof eos),
        .extra_json = extra_json,
    };
    if (used_fallback) *used_fallback = m->chat_tmpl == NULL;
    st = m->chat_tmpl ? chat_render(m->chat_tmpl, &req, NULL, out, out_len, &err)
                      : chat_render_chatml(&req, out, out_len, &err);
done:
    mica_free(cm);
    if (st != MICA_OK) mica_err_copy(&err, errbuf, err_cap);
    return st;
}
