/*
 * chat.c - the chat layer: builds the template variables of a conversation
 * as one JSON object (strings quoted as JSON, tools/tool_calls/extra spliced
 * in after validation) and renders it with jinja_template_render_json; plus
 * the ChatML fallback for models without a template.
 */
#include <string.h>

#include "text/chat.h"
#include "text/utf8.h"

/* Growable malloc'd string; ok turns false on the first failed allocation. */
typedef struct chat_buf {
    char *p;
    size_t n, cap;
    bool ok;
} chat_buf;

static void cb_put(chat_buf *b, const char *s, size_t n) {
    if (!b->ok || n == 0) return;
    if (n > SIZE_MAX / 2 - b->n - 1) { b->ok = false; return; }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *np = mica_realloc(b->p, cap);
        if (!np) { b->ok = false; return; }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void cb_puts(chat_buf *b, const char *s) { cb_put(b, s, strlen(s)); }

static void cb_json_str(chat_buf *b, const char *s) {
    size_t n = strlen(s);
    size_t bound = jinja_json_quote_bound(n);
    if (!bound) { b->ok = false; return; }
    char *tmp = mica_malloc(bound);
    if (!tmp) { b->ok = false; return; }
    cb_put(b, tmp, jinja_json_quote(s, n, tmp));
    mica_free(tmp);
}

/* ,"key":"value" (string value) */
static void cb_member_str(chat_buf *b, const char *key, const char *val) {
    cb_puts(b, ",\"");
    cb_puts(b, key);
    cb_puts(b, "\":");
    cb_json_str(b, val);
}

static mica_status check_text(const char *what, size_t i, const char *s, mica_err *err) {
    if (!utf8_valid(s, strlen(s)))
        return mica_err_set(err, MICA_ERR_INVALID_ARG, "chat: message %zu: %s is not valid UTF-8", i, what);
    return MICA_OK;
}

static mica_status check_json(const char *what, size_t i, const char *s, char want, mica_err *err) {
    mica_err e = {0};
    if (jinja_json_check(s, strlen(s), want, &e) != MICA_OK)
        return mica_err_set(err, MICA_ERR_INVALID_ARG, "chat: message %zu: %s: %s", i, what, e.msg);
    return MICA_OK;
}

/* Validates req and writes the variables object into b. */
static mica_status build_vars(const chat_request *req, chat_buf *b, mica_err *err) {
    mica_status st;
    cb_puts(b, "{\"messages\":[");
    for (size_t i = 0; i < req->n_messages; i++) {
        const chat_message *m = &req->messages[i];
        if (!m->role) return mica_err_set(err, MICA_ERR_INVALID_ARG, "chat: message %zu has no role", i);
        if ((st = check_text("role", i, m->role, err)) != MICA_OK) return st;
        if (m->content && (st = check_text("content", i, m->content, err)) != MICA_OK) return st;
        if (m->reasoning_content && (st = check_text("reasoning_content", i, m->reasoning_content, err)) != MICA_OK)
            return st;
        if (m->tool_call_id && (st = check_text("tool_call_id", i, m->tool_call_id, err)) != MICA_OK) return st;
        if (m->name && (st = check_text("name", i, m->name, err)) != MICA_OK) return st;
        if (m->tool_calls_json && (st = check_json("tool_calls", i, m->tool_calls_json, '[', err)) != MICA_OK)
            return st;
        cb_puts(b, i ? ",{\"role\":" : "{\"role\":");
        cb_json_str(b, m->role);
        cb_member_str(b, "content", m->content ? m->content : "");
        if (m->reasoning_content) cb_member_str(b, "reasoning_content", m->reasoning_content);
        if (m->tool_calls_json) {
            cb_puts(b, ",\"tool_calls\":");
            cb_puts(b, m->tool_calls_json);
        }
        if (m->tool_call_id) cb_member_str(b, "tool_call_id", m->tool_call_id);
        if (m->name) cb_member_str(b, "name", m->name);
        cb_puts(b, "}");
    }
    cb_puts(b, "],\"tools\":");
    if (req->tools_json) {
        mica_err e = {0};
        if (jinja_json_check(req->tools_json, strlen(req->tools_json), '[', &e) != MICA_OK)
            return mica_err_set(err, MICA_ERR_INVALID_ARG, "chat: tools: %s", e.msg);
        cb_puts(b, req->tools_json);
    } else {
        cb_puts(b, "null");
    }
    cb_puts(b, req->add_generation_prompt ? ",\"add_generation_prompt\":true" : ",\"add_generation_prompt\":false");
    const char *bos = req->bos_token ? req->bos_token : "", *eos = req->eos_token ? req->eos_token : "";
    if (!utf8_valid(bos, strlen(bos)) || !utf8_valid(eos, strlen(eos)))
        return mica_err_set(err, MICA_ERR_INVALID_ARG, "chat: bos/eos token is not valid UTF-8");
    cb_member_str(b, "bos_token", bos);
    cb_member_str(b, "eos_token", eos);
    if (req->extra_json) {
        mica_err e = {0};
        size_t n = strlen(req->extra_json);
        if (jinja_json_check(req->extra_json, n, '{', &e) != MICA_OK)
            return mica_err_set(err, MICA_ERR_INVALID_ARG, "chat: extra variables: %s", e.msg);
        /* Splice the members of the (valid) object: the text between its outer braces. */
        const char *s = req->extra_json, *end = s + n;
        while (s < end && *s != '{') s++;
        while (end > s && end[-1] != '}') end--;
        const char *in = s + 1, *in_end = end - 1;
        const char *q = in;
        while (q < in_end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')) q++;
        if (q < in_end) {
            cb_puts(b, ",");
            cb_put(b, in, (size_t)(in_end - in));
        }
    }
    cb_puts(b, "}");
    return MICA_OK;
}

mica_status chat_render(const jinja_template *tmpl, const chat_request *req, const jinja_params *params,
                        char **out, size_t *out_len, mica_err *err) {
    if (!req || !out || !out_len || (req->n_messages && !req->messages))
        return mica_err_set(err, MICA_ERR_INVALID_ARG, "chat: NULL argument");
    if (!tmpl) return chat_render_chatml(req, out, out_len, err);
    chat_buf b = {.ok = true};
    mica_status st = build_vars(req, &b, err);
    if (st == MICA_OK && !b.ok) st = mica_err_set(err, MICA_ERR_NOMEM, "chat: out of memory");
    if (st == MICA_OK) st = jinja_template_render_json(tmpl, b.p, b.n, params, out, out_len, err);
    mica_free(b.p);
    return st;
}

mica_status chat_render_chatml(const chat_request *req, char **out, size_t *out_len, mica_err *err) {
    if (!req || !out || !out_len || (req->n_messages && !req->messages))
        return mica_err_set(err, MICA_ERR_INVALID_ARG, "chat: NULL argument");
    chat_buf b = {.ok = true};
    cb_put(&b, "", 0);
    for (size_t i = 0; i < req->n_messages; i++) {
        const chat_message *m = &req->messages[i];
        if (!m->role) {
            mica_free(b.p);
            return mica_err_set(err, MICA_ERR_INVALID_ARG, "chat: message %zu has no role", i);
        }
        const char *content = m->content ? m->content : "";
        if (!utf8_valid(m->role, strlen(m->role)) || !utf8_valid(content, strlen(content))) {
            mica_free(b.p);
            return mica_err_set(err, MICA_ERR_INVALID_ARG, "chat: message %zu is not valid UTF-8", i);
        }
        cb_puts(&b, "<|im_start|>");
        cb_puts(&b, m->role);
        cb_puts(&b, "\n");
        cb_puts(&b, content);
        cb_puts(&b, "<|im_end|>\n");
    }
    if (req->add_generation_prompt) cb_puts(&b, "<|im_start|>assistant\n");
    if (b.ok && !b.p) { /* empty conversation: an empty string */
        b.p = mica_malloc(1);
        if (b.p) b.p[0] = '\0';
        else b.ok = false;
    }
    if (!b.ok) {
        mica_free(b.p);
        return mica_err_set(err, MICA_ERR_NOMEM, "chat: out of memory");
    }
    *out = b.p;
    *out_len = b.n;
    return MICA_OK;
}
