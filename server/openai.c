/*
 * openai.c - OpenAI-compatible request parsing and answers (see openai.h).
 * JSON is read and written with jansson.
 */
#include "openai.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_parse.h"
#include "slots.h"

/* ---- errors ---- */

char *oai_error_json(const char *message, const char *type, const char *param, const char *code) {
    json_t *e = json_pack("{s:{s:s, s:s, s:o, s:o}}", "error", "message", message, "type", type,
                          "param", param ? json_string(param) : json_null(),
                          "code", code ? json_string(code) : json_null());
    char *s = e ? json_dumps(e, JSON_COMPACT) : NULL;
    json_decref(e);
    return s;
}

static const char *status_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 500: return "server_error";
    case 503: return "server_error";
    default: return "invalid_request_error";
    }
}

void oai_reply_error(http_reply *r, int status, const char *param, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* the message may quote client text: keep it valid UTF-8 for JSON */
    sbuf clean = {0};
    sbuf_add_utf8(&clean, msg, strlen(msg));
    free(r->body);
    r->status = status;
    r->body = oai_error_json(clean.p ? clean.p : "", status_type(status), param, NULL);
    sbuf_free(&clean);
}

static void reply_json(http_reply *r, int status, json_t *obj) {
    r->status = status;
    r->body = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!r->body) oai_reply_error(r, 500, NULL, "out of memory");
}

/* Parses the body as a JSON object; on failure sets a 400 and returns NULL. */
static json_t *parse_body(const char *body, size_t len, http_reply *r) {
    json_error_t je;
    json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        oai_reply_error(r, 400, NULL, "invalid JSON in the request body: %s (line %d, column %d)", je.text,
                        je.line, je.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        oai_reply_error(r, 400, NULL, "the request body must be a JSON object");
        return NULL;
    }
    return root;
}

/* 400 for the first member of obj not in `known`; `unsupported` members get "not supported". */
static bool check_fields(json_t *obj, const char *const *known, const char *const *unsupported,
                         const char *prefix, http_reply *r) {
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        bool ok = false;
        for (const char *const *k = known; *k && !ok; k++) ok = !strcmp(*k, key);
        if (ok) continue;
        char param[256];
        snprintf(param, sizeof param, "%s%s", prefix, key);
        for (const char *const *k = unsupported; k && *k; k++) {
            if (!strcmp(*k, key)) {
                if (json_is_null(v)) { ok = true; break; }
                oai_reply_error(r, 400, param, "'%s' is not supported by this server", param);
                return false;
            }
        }
        if (ok) continue;
        oai_reply_error(r, 400, param, "Unrecognized request argument supplied: %s", param);
        return false;
    }
    return true;
}

/* Optional number in [lo, hi]; null or absent leaves *out. */
static bool get_num(json_t *obj, const char *name, double lo, double hi, float *out, http_reply *r) {
    json_t *v = json_object_get(obj, name);
    if (!v || json_is_null(v)) return true;
    if (!json_is_number(v)) { oai_reply_error(r, 400, name, "'%s' must be a number", name); return false; }
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) {
        oai_reply_error(r, 400, name, "'%s' must be between %g and %g", name, lo, hi);
        return false;
    }
    *out = (float)d;
    return true;
}

static bool get_int(json_t *obj, const char *name, int64_t lo, int64_t hi, int64_t *out, bool *set,
                    http_reply *r) {
    json_t *v = json_object_get(obj, name);
    if (!v || json_is_null(v)) return true;
    if (!json_is_integer(v)) { oai_reply_error(r, 400, name, "'%s' must be an integer", name); return false; }
    json_int_t i = json_integer_value(v);
    if (i < lo || i > hi) {
        oai_reply_error(r, 400, name, "'%s' must be between %lld and %lld", name, (long long)lo, (long long)hi);
        return false;
    }
    *out = (int64_t)i;
    if (set) *set = true;
    return true;
}

static bool get_bool(json_t *obj, const char *name, bool *out, http_reply *r) {
    json_t *v = json_object_get(obj, name);
    if (!v || json_is_null(v)) return true;
    if (!json_is_boolean(v)) { oai_reply_error(r, 400, name, "'%s' must be a boolean", name); return false; }
    *out = json_is_true(v);
    return true;
}

/* ---- simple endpoints ---- */

void oai_models(srv *S, http_reply *r) {
    json_t *o = json_pack("{s:s, s:[{s:s, s:s, s:I, s:s, s:{s:I, s:I, s:s}}]}", "object", "list", "data",
                          "id", S->model_id, "object", "model", "created", (json_int_t)S->started,
                          "owned_by", "mica", "meta", "n_ctx", (json_int_t)S->n_ctx, "n_vocab",
                          (json_int_t)S->n_vocab, "arch", mica_model_arch(S->model));
    reply_json(r, 200, o);
}

void oai_tokenize(srv *S, const char *body, size_t len, http_reply *r) {
    json_t *root = parse_body(body, len, r);
    if (!root) return;
    static const char *const known[] = {"content", "add_special", "parse_special", "with_pieces", NULL};
    bool add_special = false, parse_special = true, with_pieces = false;
    json_t *content = json_object_get(root, "content");
    int32_t *ids = NULL;
    size_t n = 0;
    if (!check_fields(root, known, NULL, "", r) || !get_bool(root, "add_special", &add_special, r) ||
        !get_bool(root, "parse_special", &parse_special, r) || !get_bool(root, "with_pieces", &with_pieces, r))
        goto done;
    if (!json_is_string(content)) { oai_reply_error(r, 400, "content", "'content' must be a string"); goto done; }
    mica_status st = mica_tokenize(S->model, json_string_value(content), json_string_length(content), add_special,
                                   parse_special, &ids, &n);
    if (st != MICA_OK) { oai_reply_error(r, 400, "content", "cannot tokenize: %s", mica_status_str(st)); goto done; }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        if (!with_pieces) { json_array_append_new(arr, json_integer(ids[i])); continue; }
        char piece[512];
        size_t k = mica_token_to_piece(S->model, i ? ids[i - 1] : -1, ids[i], piece, sizeof piece);
        sbuf pb = {0};
        sbuf_add_utf8(&pb, piece, k < sizeof piece ? k : sizeof piece);
        json_array_append_new(arr, json_pack("{s:i, s:s}", "id", ids[i], "piece", pb.p ? pb.p : ""));
        sbuf_free(&pb);
    }
    reply_json(r, 200, json_pack("{s:o}", "tokens", arr));
done:
    free(ids);
    json_decref(root);
}

void oai_detokenize(srv *S, const char *body, size_t len, http_reply *r) {
    json_t *root = parse_body(body, len, r);
    if (!root) return;
    static const char *const known[] = {"tokens", NULL};
    json_t *toks = json_object_get(root, "tokens");
    sbuf out = {0}, clean = {0};
    if (!check_fields(root, known, NULL, "", r)) goto done;
    if (!json_is_array(toks)) { oai_reply_error(r, 400, "tokens", "'tokens' must be an array of token ids"); goto done; }
    int32_t prev = -1;
    size_t i;
    json_t *v;
    json_array_foreach(toks, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= S->n_vocab) {
            oai_reply_error(r, 400, "tokens", "tokens[%zu] is not a token id of this model", i);
            goto done;
        }
        int32_t id = (int32_t)json_integer_value(v);
        char piece[512];
        size_t k = mica_token_is_control(S->model, id) ? 0 : mica_token_to_piece(S->model, prev, id, piece, sizeof piece);
        sbuf_add(&out, piece, k < sizeof piece ? k : sizeof piece);
        prev = id;
    }
    sbuf_add_utf8(&clean, out.p ? out.p : "", out.n);
    if (clean.oom) { oai_reply_error(r, 500, NULL, "out of memory"); goto done; }
    reply_json(r, 200, json_pack("{s:s%}", "content", clean.p ? clean.p : "", clean.n));
done:
    sbuf_free(&out);
    sbuf_free(&clean);
    json_decref(root);
}

/* ---- generation requests ---- */

static const char *const chat_fields[] = {
    "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature",
    "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty", "seed", "stop", "n", "logprobs",
    "top_logprobs", "tools", "tool_choice", "parallel_tool_calls", "response_format", "chat_template_kwargs",
    "logit_bias", "user", "store", "metadata", "service_tier", NULL};
static const char *const chat_unsupported[] = {"reasoning_effort", "modalities", "audio", "prediction",
                                               "functions", "function_call", "web_search_options", NULL};
static const char *const cmpl_fields[] = {
    "model", "prompt", "stream", "stream_options", "max_tokens", "temperature", "top_p", "top_k", "min_p",
    "presence_penalty", "frequency_penalty", "seed", "stop", "n", "logprobs", "echo", "best_of", "suffix",
    "logit_bias", "user", "response_format", NULL};

/* Strings that must live until the chat is rendered. */
typedef struct str_pool {
    char **s;
    size_t n, cap;
} str_pool;

static char *pool_keep(str_pool *p, char *s) {
    if (!s) return NULL;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        char **ns = realloc(p->s, cap * sizeof *ns);
        if (!ns) { free(s); return NULL; }
        p->s = ns;
        p->cap = cap;
    }
    return p->s[p->n++] = s;
}

static void pool_free(str_pool *p) {
    for (size_t i = 0; i < p->n; i++) free(p->s[i]);
    free(p->s);
}

/* Text of a message content: a string, or an array of {type: "text", text} parts. NULL content gives *out NULL. */
static bool message_content(json_t *c, size_t i, str_pool *pool, const char **out, http_reply *r) {
    char param[64];
    snprintf(param, sizeof param, "messages[%zu].content", i);
    *out = NULL;
    if (!c || json_is_null(c)) return true;
    if (json_is_string(c)) { *out = json_string_value(c); return true; }
    if (!json_is_array(c)) { oai_reply_error(r, 400, param, "'%s' must be a string or an array of parts", param); return false; }
    sbuf b = {0};
    size_t k;
    json_t *part;
    json_array_foreach(c, k, part) {
        json_t *type = json_is_object(part) ? json_object_get(part, "type") : NULL;
        json_t *text = json_is_object(part) ? json_object_get(part, "text") : NULL;
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0) {
            sbuf_free(&b);
            oai_reply_error(r, 400, param, "%s[%zu]: only parts of type 'text' are supported", param, k);
            return false;
        }
        if (!json_is_string(text)) {
            sbuf_free(&b);
            oai_reply_error(r, 400, param, "%s[%zu].text must be a string", param, k);
            return false;
        }
        if (k > 0) sbuf_adds(&b, "\n");
        sbuf_add(&b, json_string_value(text), json_string_length(text));
    }
    if (b.oom) { sbuf_free(&b); oai_reply_error(r, 500, NULL, "out of memory"); return false; }
    *out = pool_keep(pool, b.p ? b.p : strdup(""));
    return *out != NULL;
}

/* An assistant message's tool_calls as the template wants them: arguments as a JSON object. */
static bool message_tool_calls(json_t *tc, size_t i, json_t *ids, str_pool *pool, const char **out, http_reply *r) {
    char param[64];
    snprintf(param, sizeof param, "messages[%zu].tool_calls", i);
    *out = NULL;
    if (!tc || json_is_null(tc)) return true;
    if (!json_is_array(tc)) { oai_reply_error(r, 400, param, "'%s' must be an array", param); return false; }
    json_t *conv = json_array();
    size_t k;
    json_t *call;
    json_array_foreach(tc, k, call) {
        json_t *id = json_object_get(call, "id"), *fn = json_object_get(call, "function");
        json_t *name = json_object_get(fn, "name"), *args = json_object_get(fn, "arguments");
        if (!json_is_object(call) || !json_is_string(id) || !json_is_object(fn) || !json_is_string(name)) {
            json_decref(conv);
            oai_reply_error(r, 400, param, "%s[%zu] needs an 'id' and a 'function' with a 'name'", param, k);
            return false;
        }
        json_t *args_obj;
        if (!args || json_is_null(args)) args_obj = json_object();
        else if (json_is_object(args)) args_obj = json_incref(args);
        else if (json_is_string(args)) {
            json_error_t je;
            args_obj = json_loads(json_string_value(args), 0, &je);
            if (!json_is_object(args_obj)) {
                json_decref(args_obj);
                json_decref(conv);
                oai_reply_error(r, 400, param, "%s[%zu].function.arguments is not a JSON object", param, k);
                return false;
            }
        } else {
            json_decref(conv);
            oai_reply_error(r, 400, param, "%s[%zu].function.arguments must be a JSON string", param, k);
            return false;
        }
        json_array_append_new(conv, json_pack("{s:O, s:s, s:{s:O, s:o}}", "id", id, "type", "function",
                                              "function", "name", name, "arguments", args_obj));
        json_array_append(ids, id);
    }
    *out = pool_keep(pool, json_dumps(conv, JSON_COMPACT | JSON_PRESERVE_ORDER));
    json_decref(conv);
    if (!*out) { oai_reply_error(r, 500, NULL, "out of memory"); return false; }
    return true;
}

/* Converts messages; strings are borrowed from root or kept in pool. */
static bool parse_messages(json_t *msgs, mica_chat_message **out, size_t *n_out, str_pool *pool, http_reply *r) {
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        oai_reply_error(r, 400, "messages", "'messages' must be a non-empty array");
        return false;
    }
    if (json_array_size(msgs) > SRV_MAX_MESSAGES) {
        oai_reply_error(r, 400, "messages", "too many messages (at most %d)", SRV_MAX_MESSAGES);
        return false;
    }
    static const char *const msg_fields[] = {"role", "content", "name", "tool_calls", "tool_call_id",
                                             "reasoning_content", "refusal", NULL};
    mica_chat_message *m = calloc(json_array_size(msgs), sizeof *m);
    json_t *call_ids = json_array();
    size_t i;
    json_t *msg;
    json_array_foreach(msgs, i, msg) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "messages[%zu].", i);
        if (!json_is_object(msg)) { oai_reply_error(r, 400, "messages", "messages[%zu] must be an object", i); goto fail; }
        if (!check_fields(msg, msg_fields, NULL, prefix, r)) goto fail;
        json_t *role = json_object_get(msg, "role");
        const char *rs = json_string_value(role);
        if (!rs || (strcmp(rs, "system") && strcmp(rs, "developer") && strcmp(rs, "user") &&
                    strcmp(rs, "assistant") && strcmp(rs, "tool"))) {
            oai_reply_error(r, 400, "messages", "messages[%zu].role must be one of system, developer, user, "
                                                "assistant, tool", i);
            goto fail;
        }
        m[i].role = !strcmp(rs, "developer") ? "system" : rs;
        if (!message_content(json_object_get(msg, "content"), i, pool, &m[i].content, r)) goto fail;
        json_t *name = json_object_get(msg, "name"), *rc = json_object_get(msg, "reasoning_content");
        if (name && !json_is_null(name) && !json_is_string(name)) {
            oai_reply_error(r, 400, "messages", "messages[%zu].name must be a string", i);
            goto fail;
        }
        m[i].name = json_string_value(name);
        if (rc && !json_is_null(rc) && !json_is_string(rc)) {
            oai_reply_error(r, 400, "messages", "messages[%zu].reasoning_content must be a string", i);
            goto fail;
        }
        m[i].reasoning_content = json_string_value(rc);
        json_t *tc = json_object_get(msg, "tool_calls"), *tcid = json_object_get(msg, "tool_call_id");
        if (strcmp(rs, "assistant") == 0) {
            if (!message_tool_calls(tc, i, call_ids, pool, &m[i].tool_calls_json, r)) goto fail;
            if (!m[i].content && !m[i].tool_calls_json) m[i].content = "";
        } else if (tc && !json_is_null(tc)) {
            oai_reply_error(r, 400, "messages", "messages[%zu]: only assistant messages carry tool_calls", i);
            goto fail;
        } else if (!m[i].content) {
            oai_reply_error(r, 400, "messages", "messages[%zu].content is required", i);
            goto fail;
        }
        if (strcmp(rs, "tool") == 0) {
            if (!json_is_string(tcid)) {
                oai_reply_error(r, 400, "messages", "messages[%zu].tool_call_id is required for a tool message", i);
                goto fail;
            }
            bool found = false;
            size_t k;
            json_t *id;
            json_array_foreach(call_ids, k, id) found |= json_equal(id, tcid) != 0;
            if (!found) {
                oai_reply_error(r, 400, "messages", "messages[%zu].tool_call_id '%s' matches no earlier tool call", i,
                                json_string_value(tcid));
                goto fail;
            }
            m[i].tool_call_id = json_string_value(tcid);
        } else if (tcid && !json_is_null(tcid)) {
            oai_reply_error(r, 400, "messages", "messages[%zu]: only tool messages carry tool_call_id", i);
            goto fail;
        }
    }
    json_decref(call_ids);
    *out = m;
    *n_out = json_array_size(msgs);
    return true;
fail:
    json_decref(call_ids);
    free(m);
    return false;
}

/* Validated tools and tool_choice. choice: 0 none, 1 auto, 2 required, 3 named. */
static bool parse_tools(json_t *root, char **tools_json, int *choice, const char **named, http_reply *r) {
    json_t *tools = json_object_get(root, "tools"), *tc = json_object_get(root, "tool_choice");
    *tools_json = NULL;
    *named = NULL;
    *choice = 1;
    bool have = tools && !json_is_null(tools);
    if (have) {
        if (!json_is_array(tools)) { oai_reply_error(r, 400, "tools", "'tools' must be an array"); return false; }
        size_t i;
        json_t *t;
        json_array_foreach(tools, i, t) {
            json_t *type = json_object_get(t, "type"), *fn = json_object_get(t, "function");
            if (!json_is_string(type) || strcmp(json_string_value(type), "function") != 0 || !json_is_object(fn) ||
                !json_is_string(json_object_get(fn, "name"))) {
                oai_reply_error(r, 400, "tools", "tools[%zu] must be {type: 'function', function: {name, ...}}", i);
                return false;
            }
            json_t *params = json_object_get(fn, "parameters");
            if (params && !json_is_null(params) && !json_is_object(params)) {
                oai_reply_error(r, 400, "tools", "tools[%zu].function.parameters must be an object", i);
                return false;
            }
        }
        if (json_array_size(tools) == 0) have = false;
    }
    if (tc && !json_is_null(tc)) {
        if (json_is_string(tc)) {
            const char *s = json_string_value(tc);
            if (!strcmp(s, "none")) *choice = 0;
            else if (!strcmp(s, "auto")) *choice = 1;
            else if (!strcmp(s, "required")) *choice = 2;
            else { oai_reply_error(r, 400, "tool_choice", "'tool_choice' must be none, auto, required or a function"); return false; }
        } else {
            json_t *fn = json_object_get(tc, "function");
            json_t *name = json_object_get(fn, "name");
            if (!json_is_string(name)) {
                oai_reply_error(r, 400, "tool_choice", "'tool_choice' must be none, auto, required or "
                                                       "{type: 'function', function: {name}}");
                return false;
            }
            *choice = 3;
            *named = json_string_value(name);
            bool found = false;
            size_t i;
            json_t *t;
            if (have) json_array_foreach(tools, i, t)
                found |= !strcmp(json_string_value(json_object_get(json_object_get(t, "function"), "name")), *named);
            if (!found) {
                oai_reply_error(r, 400, "tool_choice", "tool_choice names '%s', which is not in 'tools'", *named);
                return false;
            }
        }
        if (*choice >= 2 && !have) {
            oai_reply_error(r, 400, "tool_choice", "tool_choice '%s' needs 'tools'", *choice == 2 ? "required" : "function");
            return false;
        }
    }
    if (!have) *choice = 0;
    if (have && *choice > 0) {
        *tools_json = json_dumps(tools, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!*tools_json) { oai_reply_error(r, 500, NULL, "out of memory"); return false; }
    }
    return true;
}

/*
 * Renders the chat of a request with the model's template. On success
 * *prompt is malloc'd; *choice / *named describe tool_choice.
 */
static bool render_chat(srv *S, json_t *root, char **prompt, int *choice, char **named, http_reply *r) {
    mica_chat_message *msgs = NULL;
    size_t n_msgs = 0;
    str_pool pool = {0};
    char *tools_json = NULL, *extra = NULL;
    const char *named_b = NULL;
    bool ok = false;
    *prompt = NULL;
    *named = NULL;
    if (!parse_messages(json_object_get(root, "messages"), &msgs, &n_msgs, &pool, r)) goto done;
    if (!parse_tools(root, &tools_json, choice, &named_b, r)) goto done;
    json_t *kw = json_object_get(root, "chat_template_kwargs");
    if (kw && !json_is_null(kw)) {
        if (!json_is_object(kw)) {
            oai_reply_error(r, 400, "chat_template_kwargs", "'chat_template_kwargs' must be an object");
            goto done;
        }
        extra = json_dumps(kw, JSON_COMPACT | JSON_PRESERVE_ORDER);
    }
    char err[512] = "";
    size_t len = 0;
    mica_status st = mica_chat_render(S->model, msgs, n_msgs, tools_json, true, extra, prompt, &len, NULL, err,
                                      sizeof err);
    if (st != MICA_OK) {
        *prompt = NULL;
        oai_reply_error(r, st == MICA_ERR_NOMEM ? 500 : 400, "messages", "cannot apply the chat template: %s", err);
        goto done;
    }
    if (named_b) *named = strdup(named_b);
    ok = true;
done:
    free(msgs);
    pool_free(&pool);
    free(tools_json);
    free(extra);
    return ok;
}

void oai_apply_template(srv *S, const char *body, size_t len, http_reply *r) {
    json_t *root = parse_body(body, len, r);
    if (!root) return;
    char *prompt = NULL, *named = NULL;
    int choice = 0;
    if (check_fields(root, chat_fields, chat_unsupported, "", r) && render_chat(S, root, &prompt, &choice, &named, r))
        reply_json(r, 200, json_pack("{s:s}", "prompt", prompt));
    free(prompt);
    free(named);
    json_decref(root);
}

/* stop: a string or an array of strings. */
static bool parse_stop(json_t *root, task_params *p, http_reply *r) {
    json_t *v = json_object_get(root, "stop");
    if (!v || json_is_null(v)) return true;
    json_t *one[1] = {v};
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (!json_is_string(v) && !json_is_array(v)) {
        oai_reply_error(r, 400, "stop", "'stop' must be a string or an array of strings");
        return false;
    }
    if (n > SRV_MAX_STOP) { oai_reply_error(r, 400, "stop", "at most %d stop strings", SRV_MAX_STOP); return false; }
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_is_array(v) ? json_array_get(v, i) : one[0];
        if (!json_is_string(s)) { oai_reply_error(r, 400, "stop", "'stop' must be a string or an array of strings"); return false; }
        if (json_string_length(s) == 0) continue;
        if (json_string_length(s) > SRV_MAX_STOP_LEN) {
            oai_reply_error(r, 400, "stop", "a stop string is longer than %d bytes", SRV_MAX_STOP_LEN);
            return false;
        }
        if (!(p->stop[p->n_stop] = strdup(json_string_value(s)))) { oai_reply_error(r, 500, NULL, "out of memory"); return false; }
        p->n_stop++;
    }
    return true;
}

static bool parse_logit_bias(srv *S, json_t *root, task_params *p, http_reply *r) {
    json_t *v = json_object_get(root, "logit_bias");
    if (!v || json_is_null(v)) return true;
    if (!json_is_object(v)) { oai_reply_error(r, 400, "logit_bias", "'logit_bias' must be an object"); return false; }
    size_t n = json_object_size(v);
    if (n > 1024) { oai_reply_error(r, 400, "logit_bias", "at most 1024 entries in 'logit_bias'"); return false; }
    p->bias_ids = calloc(n ? n : 1, sizeof *p->bias_ids);
    p->bias_vals = calloc(n ? n : 1, sizeof *p->bias_vals);
    if (!p->bias_ids || !p->bias_vals) { oai_reply_error(r, 500, NULL, "out of memory"); return false; }
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
        char *end;
        long id = strtol(key, &end, 10);
        if (*key == '\0' || *end || id < 0 || id >= S->n_vocab) {
            oai_reply_error(r, 400, "logit_bias", "logit_bias key '%s' is not a token id of this model", key);
            return false;
        }
        if (!json_is_number(val) || json_number_value(val) < -100 || json_number_value(val) > 100) {
            oai_reply_error(r, 400, "logit_bias", "logit_bias values must be numbers in [-100, 100]");
            return false;
        }
        p->bias_ids[p->n_bias] = (int32_t)id;
        p->bias_vals[p->n_bias++] = (float)json_number_value(val);
    }
    return true;
}

/* Fields shared by both endpoints. */
static bool parse_common(srv *S, json_t *root, bool chat, task_params *p, http_reply *r) {
    json_t *model = json_object_get(root, "model");
    if (!json_is_string(model)) {
        oai_reply_error(r, 400, "model", "'model' is required and must be a string");
        return false;
    }
    p->sp = mica_sampler_params_default();
    p->sp.temperature = 1.0f;
    p->sp.top_p = 1.0f;
    p->sp.top_k = 0;
    p->sp.min_p = 0.0f;
    p->sp.repeat_penalty = 1.0f;
    int64_t top_k = 0, n = 1, seed = 0;
    bool seed_set = false;
    if (!get_num(root, "temperature", 0, 2, &p->sp.temperature, r) || !get_num(root, "top_p", 0, 1, &p->sp.top_p, r) ||
        !get_num(root, "min_p", 0, 1, &p->sp.min_p, r) ||
        !get_num(root, "presence_penalty", -2, 2, &p->presence_penalty, r) ||
        !get_num(root, "frequency_penalty", -2, 2, &p->frequency_penalty, r) ||
        !get_int(root, "top_k", 0, 1 << 24, &top_k, NULL, r) ||
        !get_int(root, "n", 1, SRV_MAX_CHOICES, &n, NULL, r) ||
        !get_int(root, "seed", INT64_MIN, INT64_MAX, &seed, &seed_set, r) ||
        !get_bool(root, "stream", &p->stream, r) || !parse_stop(root, p, r) || !parse_logit_bias(S, root, p, r))
        return false;
    if (p->sp.top_p <= 0) { oai_reply_error(r, 400, "top_p", "'top_p' must be greater than 0"); return false; }
    p->sp.top_k = (int32_t)top_k;
    p->n_choices = (int)n;
    p->sp.seed = seed_set ? (uint64_t)seed : srv_random(S);
    json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so)) {
        static const char *const so_fields[] = {"include_usage", NULL};
        if (!json_is_object(so)) { oai_reply_error(r, 400, "stream_options", "'stream_options' must be an object"); return false; }
        if (!p->stream) {
            oai_reply_error(r, 400, "stream_options", "'stream_options' is only allowed when 'stream' is true");
            return false;
        }
        if (!check_fields(so, so_fields, NULL, "stream_options.", r) || !get_bool(so, "include_usage", &p->include_usage, r))
            return false;
    }
    int64_t max_tokens = -1;
    bool mt_set = false;
    if (!get_int(root, "max_tokens", 1, MICA_MAX_CTX, &max_tokens, &mt_set, r)) return false;
    if (chat && !get_int(root, "max_completion_tokens", 1, MICA_MAX_CTX, &max_tokens, &mt_set, r)) return false;
    p->max_tokens = mt_set ? (int32_t)max_tokens : (chat ? -1 : 16);
    return true;
}

/* BOS text may already be in a rendered template: keep one BOS. */
static void drop_double_bos(srv *S, task_params *p) {
    int32_t bos = mica_token_bos(S->model);
    if (bos >= 0 && p->n_prompt >= 2 && p->prompt[0] == bos && p->prompt[1] == bos) {
        memmove(p->prompt, p->prompt + 1, (size_t)(p->n_prompt - 1) * sizeof(int32_t));
        p->n_prompt--;
    }
}

static bool tokenize_into(srv *S, const char *text, size_t len, task_params *p, http_reply *r, const char *param) {
    size_t n = 0;
    mica_status st = mica_tokenize(S->model, text, len, true, true, &p->prompt, &n);
    if (st != MICA_OK) {
        oai_reply_error(r, st == MICA_ERR_NOMEM ? 500 : 400, param, "cannot tokenize the prompt: %s", mica_status_str(st));
        return false;
    }
    if (n > (size_t)MICA_MAX_CTX) n = (size_t)MICA_MAX_CTX + 1; /* rejected below */
    p->n_prompt = (int32_t)n;
    return true;
}

/* ---- constrained decoding ---- */

#define OAI_MAX_PARALLEL_CALLS 8 /* tool calls one answer may hold under tool_choice required */

/*
 * response_format: *want false for "text" or absent; else a grammar is
 * wanted and *schema is the JSON Schema text (malloc'd) or NULL for any
 * JSON object (json_object, or json_schema without a schema).
 */
static bool parse_response_format(json_t *root, bool *want, char **schema, http_reply *r) {
    *want = false;
    *schema = NULL;
    json_t *rf = json_object_get(root, "response_format");
    if (!rf || json_is_null(rf)) return true;
    json_t *type = json_object_get(rf, "type");
    if (!json_is_object(rf) || !json_is_string(type)) {
        oai_reply_error(r, 400, "response_format", "'response_format' must be an object with a 'type'");
        return false;
    }
    const char *ts = json_string_value(type);
    if (!strcmp(ts, "text")) {
        static const char *const f[] = {"type", NULL};
        return check_fields(rf, f, NULL, "response_format.", r);
    }
    if (!strcmp(ts, "json_object")) {
        static const char *const f[] = {"type", NULL};
        if (!check_fields(rf, f, NULL, "response_format.", r)) return false;
        *want = true;
        return true;
    }
    if (strcmp(ts, "json_schema") != 0) {
        oai_reply_error(r, 400, "response_format", "response_format type '%s' is not one of text, json_object, "
                        "json_schema", ts);
        return false;
    }
    static const char *const f[] = {"type", "json_schema", NULL};
    static const char *const jf[] = {"name", "description", "schema", "strict", NULL};
    json_t *js = json_object_get(rf, "json_schema");
    if (!check_fields(rf, f, NULL, "response_format.", r)) return false;
    if (!json_is_object(js)) {
        oai_reply_error(r, 400, "response_format", "'response_format.json_schema' must be an object");
        return false;
    }
    if (!check_fields(js, jf, NULL, "response_format.json_schema.", r)) return false;
    json_t *name = json_object_get(js, "name"), *strict = json_object_get(js, "strict"),
           *sch = json_object_get(js, "schema");
    if (!json_is_string(name)) {
        oai_reply_error(r, 400, "response_format", "'response_format.json_schema.name' is required (a string)");
        return false;
    }
    if (strict && !json_is_null(strict) && !json_is_boolean(strict)) {
        oai_reply_error(r, 400, "response_format", "'response_format.json_schema.strict' must be a boolean");
        return false;
    }
    if (sch && !json_is_null(sch) && !json_is_object(sch) && !json_is_boolean(sch)) {
        oai_reply_error(r, 400, "response_format", "'response_format.json_schema.schema' must be an object");
        return false;
    }
    *want = true;
    if (sch && !json_is_null(sch)) { /* strict or not, the output is held to the schema */
        *schema = json_dumps(sch, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
        if (!*schema) { oai_reply_error(r, 500, NULL, "out of memory"); return false; }
    }
    return true;
}

/* Compiles a grammar into p->grammar; a schema the grammar cannot honour is a 400 naming param. */
static bool make_grammar(srv *S, const mica_grammar_params *gp, const char *param, task_params *p, http_reply *r) {
    char err[512] = "";
    mica_grammar_vocab *gv = sched_grammar_vocab(S->sched, err, sizeof err);
    if (!gv) { oai_reply_error(r, 500, NULL, "constrained decoding is unavailable: %s", err); return false; }
    mica_status st = mica_grammar_create(gv, gp, &p->grammar, err, sizeof err);
    if (st == MICA_OK) return true;
    p->grammar = NULL;
    if (st == MICA_ERR_NOMEM) oai_reply_error(r, 500, NULL, "out of memory");
    else oai_reply_error(r, 400, param, "%s: %s", st == MICA_ERR_UNSUPPORTED ? "unsupported schema" : "invalid schema", err);
    return false;
}

/* A copy of a tool's parameters whose local "$ref": "#..." point below base (their place in the combined schema). */
static json_t *rebase_refs(json_t *v, const char *base) {
    if (json_is_object(v)) {
        json_t *o = json_object();
        const char *key;
        json_t *val;
        json_object_foreach(v, key, val) {
            const char *ref = json_string_value(val);
            if (!strcmp(key, "$ref") && ref && ref[0] == '#') {
                sbuf b = {0};
                sbuf_adds(&b, base);
                sbuf_adds(&b, ref + 1);
                json_object_set_new(o, key, json_string(b.p ? b.p : ""));
                sbuf_free(&b);
            } else {
                json_object_set_new(o, key, rebase_refs(val, base));
            }
        }
        return o;
    }
    if (json_is_array(v)) {
        json_t *a = json_array();
        size_t i;
        json_t *val;
        json_array_foreach(v, i, val) json_array_append_new(a, rebase_refs(val, base));
        return a;
    }
    return json_incref(v);
}

/*
 * The JSON Schema of a tool-call body as chat_parse.c reads it,
 * {"name": NAME, "arguments": ARGS}: one branch per tool (or only `named`),
 * NAME a const, ARGS the tool's parameters (any object when absent).
 * malloc'd text; NULL when out of memory.
 */
static char *tool_call_schema(json_t *tools, const char *named) {
    json_t *branches = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        json_t *fn = json_object_get(t, "function");
        json_t *name = json_object_get(fn, "name"), *params = json_object_get(fn, "parameters");
        if (named && strcmp(json_string_value(name), named) != 0) continue;
        char base[64];
        snprintf(base, sizeof base, "#/anyOf/%zu/properties/arguments", json_array_size(branches));
        json_t *args = (params && !json_is_null(params)) ? rebase_refs(params, base) : json_pack("{s:s}", "type", "object");
        json_array_append_new(branches, json_pack("{s:s, s:{s:{s:O}, s:o}, s:[s, s], s:b}", "type", "object",
                                                  "properties", "name", "const", name, "arguments", args,
                                                  "required", "name", "arguments", "additionalProperties", 0));
    }
    json_t *schema = json_pack("{s:o}", "anyOf", branches);
    char *s = schema ? json_dumps(schema, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(schema);
    return s;
}

static bool parse_completion(srv *S, json_t *root, task_params *p, http_reply *r) {
    p->kind = TASK_COMPLETION;
    if (!check_fields(root, cmpl_fields, NULL, "", r) || !parse_common(S, root, false, p, r)) return false;
    bool echo = false;
    int64_t lp = -1, best_of = 1;
    if (!get_bool(root, "echo", &echo, r) || !get_int(root, "logprobs", 0, 5, &lp, NULL, r) ||
        !get_int(root, "best_of", 1, SRV_MAX_CHOICES, &best_of, NULL, r))
        return false;
    if (echo) { oai_reply_error(r, 400, "echo", "'echo' is not supported by this server"); return false; }
    if (best_of != 1 && best_of != p->n_choices) {
        oai_reply_error(r, 400, "best_of", "'best_of' other than n is not supported by this server");
        return false;
    }
    json_t *suffix = json_object_get(root, "suffix");
    if (suffix && !json_is_null(suffix) && !(json_is_string(suffix) && json_string_length(suffix) == 0)) {
        oai_reply_error(r, 400, "suffix", "'suffix' is not supported by this server");
        return false;
    }
    p->logprobs = lp >= 0;
    p->top_logprobs = lp > 0 ? (int)lp : 0;
    bool want_json = false;
    char *schema = NULL;
    if (!parse_response_format(root, &want_json, &schema, r)) return false;
    if (want_json) {
        mica_grammar_params gp = mica_grammar_params_default();
        gp.json_schema = schema;
        bool gok = make_grammar(S, &gp, "response_format", p, r);
        free(schema);
        if (!gok) return false;
    }
    json_t *pr = json_object_get(root, "prompt");
    if (json_is_array(pr) && json_array_size(pr) == 1 && json_is_string(json_array_get(pr, 0)))
        pr = json_array_get(pr, 0);
    if (json_is_string(pr)) return tokenize_into(S, json_string_value(pr), json_string_length(pr), p, r, "prompt");
    if (json_is_array(pr) && json_array_size(pr) > 0 && json_is_integer(json_array_get(pr, 0))) {
        size_t n = json_array_size(pr);
        if (n > (size_t)MICA_MAX_CTX) { oai_reply_error(r, 400, "prompt", "the prompt is too long"); return false; }
        p->prompt = malloc(n * sizeof(int32_t));
        if (!p->prompt) { oai_reply_error(r, 500, NULL, "out of memory"); return false; }
        for (size_t i = 0; i < n; i++) {
            json_t *v = json_array_get(pr, i);
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= S->n_vocab) {
                oai_reply_error(r, 400, "prompt", "prompt[%zu] is not a token id of this model", i);
                return false;
            }
            p->prompt[i] = (int32_t)json_integer_value(v);
        }
        p->n_prompt = (int32_t)n;
        return true;
    }
    if (json_is_array(pr) && json_array_size(pr) > 1) {
        oai_reply_error(r, 400, "prompt", "several prompts in one request are not supported; send one at a time");
        return false;
    }
    oai_reply_error(r, 400, "prompt", "'prompt' must be a string or an array of token ids");
    return false;
}

static bool ends_with_open_think(const char *s) {
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == '\t')) n--;
    return n >= 7 && memcmp(s + n - 7, "<think>", 7) == 0;
}

static bool parse_chat(srv *S, json_t *root, task_params *p, http_reply *r) {
    p->kind = TASK_CHAT;
    if (!check_fields(root, chat_fields, chat_unsupported, "", r) || !parse_common(S, root, true, p, r)) return false;
    int64_t top = 0;
    bool top_set = false;
    p->parallel_tool_calls = true;
    if (!get_bool(root, "logprobs", &p->logprobs, r) ||
        !get_int(root, "top_logprobs", 0, SRV_MAX_TOP_LOGPROBS, &top, &top_set, r) ||
        !get_bool(root, "parallel_tool_calls", &p->parallel_tool_calls, r))
        return false;
    if (top_set && !p->logprobs) {
        oai_reply_error(r, 400, "top_logprobs", "'top_logprobs' needs 'logprobs' set to true");
        return false;
    }
    p->top_logprobs = (int)top;
    bool want_json = false;
    char *rf_schema = NULL;
    if (!parse_response_format(root, &want_json, &rf_schema, r)) return false;
    char *prompt = NULL, *named = NULL, *tc_schema = NULL;
    int choice = 0;
    if (!render_chat(S, root, &prompt, &choice, &named, r)) { free(rf_schema); return false; }
    bool ok = false;
    mica_grammar_params gp = mica_grammar_params_default();
    sbuf full = {0};
    sbuf_adds(&full, prompt);
    p->parse_reasoning = true;
    p->start_in_reasoning = ends_with_open_think(prompt);
    p->parse_tools = choice > 0;
    if (choice >= 2) { /* required / named: the prompt opens the call, a grammar holds the body to the tools */
        if (!S->tmpl_has_tool_call) {
            oai_reply_error(r, 400, "tool_choice", "tool_choice '%s' is not supported for this model's chat template",
                            choice == 2 ? "required" : "function");
            goto done;
        }
        if (want_json) {
            oai_reply_error(r, 400, "response_format", "'response_format' cannot be combined with tool_choice '%s'",
                            choice == 2 ? "required" : "function");
            goto done;
        }
        tc_schema = tool_call_schema(json_object_get(root, "tools"), choice == 3 ? named : NULL);
        if (!tc_schema) { oai_reply_error(r, 500, NULL, "out of memory"); goto done; }
        gp.json_schema = tc_schema;
        gp.suffix = "\n</tool_call>";
        if (p->parallel_tool_calls) {
            gp.repeat_prefix = "\n<tool_call>\n";
            gp.max_values = OAI_MAX_PARALLEL_CALLS;
        }
        if (!make_grammar(S, &gp, "tools", p, r)) goto done;
        sbuf_adds(&full, "<tool_call>\n");
        p->tool_prefill = strdup("");
        p->start_in_reasoning = false;
    } else if (want_json) { /* the answer is the JSON value: no reasoning, no tool call */
        if (p->start_in_reasoning) sbuf_adds(&full, "\n</think>\n\n");
        p->start_in_reasoning = false;
        gp.json_schema = rf_schema;
        if (!make_grammar(S, &gp, "response_format", p, r)) goto done;
    } else if (choice == 1 && S->tmpl_has_tool_call) {
        /* auto: free text until the model opens a call, then the call's body follows the tools' schemas.
         * Tools whose schemas the grammar cannot express leave the call unconstrained (as without grammar). */
        tc_schema = tool_call_schema(json_object_get(root, "tools"), NULL);
        if (!tc_schema) { oai_reply_error(r, 500, NULL, "out of memory"); goto done; }
        gp.json_schema = tc_schema;
        gp.trigger = "<tool_call>";
        gp.prefix = "\n";
        gp.suffix = "\n</tool_call>";
        char gerr[256];
        mica_grammar_vocab *gv = sched_grammar_vocab(S->sched, gerr, sizeof gerr);
        if (gv && mica_grammar_create(gv, &gp, &p->grammar, gerr, sizeof gerr) != MICA_OK) p->grammar = NULL;
    }
    if (full.oom) { oai_reply_error(r, 500, NULL, "out of memory"); goto done; }
    ok = tokenize_into(S, full.p, full.n, p, r, "messages");
    if (ok) drop_double_bos(S, p);
done:
    sbuf_free(&full);
    free(prompt);
    free(named);
    free(rf_schema);
    free(tc_schema);
    return ok;
}

static void params_free(task_params *p) {
    free(p->prompt);
    free(p->bias_ids);
    free(p->bias_vals);
    for (int i = 0; i < p->n_stop; i++) free(p->stop[i]);
    free(p->tool_prefill);
    mica_grammar_free(p->grammar);
    *p = (task_params){0};
}

void oai_generate(srv *S, const char *body, size_t len, bool chat, http_reply *r) {
    task_params p = {0};
    json_t *root = parse_body(body, len, r);
    if (!root) return;
    if (!(chat ? parse_chat(S, root, &p, r) : parse_completion(S, root, &p, r))) goto done;
    if (p.n_prompt == 0) {
        oai_reply_error(r, 400, chat ? "messages" : "prompt", "the prompt is empty");
        goto done;
    }
    if (p.n_prompt >= S->n_ctx) {
        oai_reply_error(r, 400, chat ? "messages" : "prompt",
                        "the prompt has %d tokens, more than the context of %d tokens allows", p.n_prompt, S->n_ctx);
        free(r->body);
        r->body = oai_error_json("the prompt is longer than the model's context", "invalid_request_error",
                                 chat ? "messages" : "prompt", "context_length_exceeded");
        goto done;
    }
    if (p.max_tokens > 0 && (int64_t)p.n_prompt + p.max_tokens > S->n_ctx) {
        oai_reply_error(r, 400, "max_tokens",
                        "the prompt (%d tokens) plus max_tokens (%d) exceeds the context of %d tokens", p.n_prompt,
                        p.max_tokens, S->n_ctx);
        goto done;
    }
    task *t = task_create(S, &p);
    if (!t) { oai_reply_error(r, 500, NULL, "out of memory"); goto done; }
    r->task = t;
    r->stream = t->p.stream;
done:
    params_free(&p);
    json_decref(root);
}

/* ---- answers ---- */

typedef struct oai_choice {
    chat_parser parser;
    sbuf content, reasoning;
    json_t *tool_calls;   /* non-streaming: the calls */
    json_t *lp_content;   /* chat logprobs entries (all, or the ones not yet streamed) */
    json_t *lp_tokens, *lp_values, *lp_tops, *lp_offsets; /* completions logprobs */
    size_t text_offset;
    bool stop_now;
    json_t *answer; /* non-streaming: the finished choice object */
} oai_choice;

struct oai_result {
    int n;
    oai_choice ch[SRV_MAX_CHOICES];
    task *t; /* for the parser sink */
    int cur;
};

void oai_result_free(oai_result *res) {
    if (!res) return;
    for (int i = 0; i < res->n; i++) {
        oai_choice *c = &res->ch[i];
        chat_parser_free(&c->parser);
        sbuf_free(&c->content);
        sbuf_free(&c->reasoning);
        json_decref(c->tool_calls);
        json_decref(c->lp_content);
        json_decref(c->lp_tokens);
        json_decref(c->lp_values);
        json_decref(c->lp_tops);
        json_decref(c->lp_offsets);
        json_decref(c->answer);
    }
    free(res);
}

static json_t *usage_json(task *t) {
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", t->p.n_prompt, "completion_tokens", t->n_gen,
                     "total_tokens", t->p.n_prompt + t->n_gen, "prompt_tokens_details", "cached_tokens", t->n_cached);
}

/* Sends one SSE event with a chunk carrying `choice` (stolen). */
static void send_chunk(task *t, json_t *choice) {
    bool chat = t->p.kind == TASK_CHAT;
    json_t *chunk = json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", t->id, "object",
                              chat ? "chat.completion.chunk" : "text_completion", "created", (json_int_t)t->created,
                              "model", t->S->model_id, "choices", choice);
    if (!chunk) return;
    if (t->p.include_usage) json_object_set_new(chunk, "usage", json_null());
    char *s = json_dumps(chunk, JSON_COMPACT);
    json_decref(chunk);
    if (!s) return;
    sbuf ev = {0};
    sbuf_adds(&ev, "data: ");
    sbuf_adds(&ev, s);
    sbuf_adds(&ev, "\n\n");
    free(s);
    if (!ev.oom) task_push(t, ev.p, ev.n);
    sbuf_free(&ev);
}

static json_t *bytes_json(const char *s, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer((unsigned char)s[i]));
    return a;
}

static json_t *utf8_string(const char *s, size_t n) {
    sbuf b = {0};
    sbuf_add_utf8(&b, s, n);
    json_t *j = json_stringn(b.p ? b.p : "", b.n);
    sbuf_free(&b);
    return j;
}

/* Chat logprobs entry of one token. */
static json_t *lp_entry(srv *S, const tok_logprob *lp) {
    char piece[512];
    size_t k = mica_token_to_piece(S->model, lp->prev, lp->token, piece, sizeof piece);
    k = k < sizeof piece ? k : sizeof piece;
    json_t *tops = json_array();
    for (int i = 0; i < lp->n_top; i++) {
        char tp[512];
        size_t tk = mica_token_to_piece(S->model, lp->prev, lp->top_ids[i], tp, sizeof tp);
        tk = tk < sizeof tp ? tk : sizeof tp;
        json_array_append_new(tops, json_pack("{s:o, s:f, s:o}", "token", utf8_string(tp, tk), "logprob",
                                              (double)lp->top_lp[i], "bytes", bytes_json(tp, tk)));
    }
    return json_pack("{s:o, s:f, s:o, s:o}", "token", utf8_string(piece, k), "logprob", (double)lp->logprob,
                     "bytes", bytes_json(piece, k), "top_logprobs", tops);
}

bool oai_begin(task *t) {
    oai_result *res = calloc(1, sizeof *res);
    if (!res) return false;
    res->n = t->p.n_choices;
    res->t = t;
    for (int i = 0; i < res->n; i++) {
        oai_choice *c = &res->ch[i];
        chat_parser_init(&c->parser, t->p.parse_reasoning, t->p.start_in_reasoning, t->p.parse_tools);
        if (t->p.tool_prefill && !chat_parser_open_tool(&c->parser, t->p.tool_prefill)) { oai_result_free(res); return false; }
        c->tool_calls = json_array();
        c->lp_content = json_array();
        c->lp_tokens = json_array();
        c->lp_values = json_array();
        c->lp_tops = json_array();
        c->lp_offsets = json_array();
    }
    t->res = res;
    return true;
}

void oai_choice_begin(task *t, int ci) {
    if (!t->p.stream) return;
    if (t->p.kind == TASK_CHAT)
        send_chunk(t, json_pack("{s:i, s:{s:s, s:s}, s:n, s:n}", "index", ci, "delta", "role", "assistant", "content",
                                "", "logprobs", "finish_reason"));
}

/* Streams the pending chat logprobs with a delta (stolen). */
static void send_chat_delta(task *t, int ci, json_t *delta) {
    oai_choice *c = &t->res->ch[ci];
    json_t *lp = json_null();
    if (t->p.logprobs && json_array_size(c->lp_content) > 0) {
        lp = json_pack("{s:o}", "content", json_copy(c->lp_content));
        json_array_clear(c->lp_content);
    }
    send_chunk(t, json_pack("{s:i, s:o, s:o, s:n}", "index", ci, "delta", delta, "logprobs", lp, "finish_reason"));
}

static void chat_sink(void *ctx, const cp_event *ev) {
    oai_result *res = ctx;
    task *t = res->t;
    oai_choice *c = &res->ch[res->cur];
    if (ev->kind == CP_TOOL_CALL) {
        int index = (int)json_array_size(c->tool_calls);
        char id[40];
        snprintf(id, sizeof id, "call_%016llx", (unsigned long long)srv_random(t->S));
        json_array_append_new(c->tool_calls, json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", id, "type", "function",
                                                       "function", "name", ev->name, "arguments", ev->args));
        if (t->p.stream) {
            send_chat_delta(t, res->cur, json_pack("{s:[{s:i, s:s, s:s, s:{s:s, s:s}}]}", "tool_calls", "index", index,
                                                   "id", id, "type", "function", "function", "name", ev->name,
                                                   "arguments", ""));
            send_chat_delta(t, res->cur, json_pack("{s:[{s:i, s:{s:s}}]}", "tool_calls", "index", index, "function",
                                                   "arguments", ev->args));
        }
        if (!t->p.parallel_tool_calls) c->stop_now = true;
        return;
    }
    if (c->stop_now) return; /* text after the single allowed call */
    sbuf *dst = ev->kind == CP_CONTENT ? &c->content : &c->reasoning;
    size_t before = dst->n;
    sbuf_add_utf8(dst, ev->text, ev->len);
    if (t->p.stream && dst->n > before) {
        json_t *s = json_stringn(dst->p + before, dst->n - before);
        send_chat_delta(t, res->cur,
                        json_pack("{s:o}", ev->kind == CP_CONTENT ? "content" : "reasoning_content", s));
    }
}

bool oai_token(task *t, int ci, const char *text, size_t n, const tok_logprob *lp) {
    oai_result *res = t->res;
    oai_choice *c = &res->ch[ci];
    res->cur = ci;
    if (t->p.kind == TASK_CHAT) {
        if (lp) json_array_append_new(c->lp_content, lp_entry(t->S, lp));
        if (n) chat_parser_feed(&c->parser, text, n, chat_sink, res);
        return !c->stop_now;
    }
    /* completion */
    json_t *tok_lp = NULL;
    if (lp) {
        char piece[512];
        size_t k = mica_token_to_piece(t->S->model, lp->prev, lp->token, piece, sizeof piece);
        k = k < sizeof piece ? k : sizeof piece;
        json_t *tops = json_object();
        for (int i = 0; i < lp->n_top; i++) {
            char tp[512];
            size_t tk = mica_token_to_piece(t->S->model, lp->prev, lp->top_ids[i], tp, sizeof tp);
            sbuf b = {0};
            sbuf_add_utf8(&b, tp, tk < sizeof tp ? tk : sizeof tp);
            if (b.p && !json_object_get(tops, b.p)) json_object_set_new(tops, b.p, json_real(lp->top_lp[i]));
            sbuf_free(&b);
        }
        tok_lp = json_pack("{s:[o], s:[f], s:[o], s:[I]}", "tokens", utf8_string(piece, k), "token_logprobs",
                           (double)lp->logprob, "top_logprobs", tops, "text_offset", (json_int_t)c->text_offset);
    }
    size_t before = c->content.n;
    sbuf_add_utf8(&c->content, text, n);
    c->text_offset += c->content.n - before;
    if (t->p.stream) {
        if (n || tok_lp)
            send_chunk(t, json_pack("{s:s%, s:i, s:o, s:n}", "text", c->content.p ? c->content.p + before : "",
                                    c->content.n - before, "index", ci, "logprobs", tok_lp ? tok_lp : json_null(),
                                    "finish_reason"));
        return true;
    }
    if (tok_lp) {
        json_array_extend(c->lp_tokens, json_object_get(tok_lp, "tokens"));
        json_array_extend(c->lp_values, json_object_get(tok_lp, "token_logprobs"));
        json_array_extend(c->lp_tops, json_object_get(tok_lp, "top_logprobs"));
        json_array_extend(c->lp_offsets, json_object_get(tok_lp, "text_offset"));
        json_decref(tok_lp);
    }
    return true;
}

static char *finish_of(task *t, int ci, const char *finish) {
    oai_choice *c = &t->res->ch[ci];
    if (json_array_size(c->tool_calls) > 0 && strcmp(finish, "stop") == 0) return "tool_calls";
    return (char *)finish;
}

void oai_choice_end(task *t, int ci, const char *finish, int32_t n_gen) {
    (void)n_gen;
    oai_result *res = t->res;
    oai_choice *c = &res->ch[ci];
    res->cur = ci;
    if (t->p.kind == TASK_CHAT) chat_parser_finish(&c->parser, chat_sink, res);
    const char *fr = finish_of(t, ci, finish);
    if (t->p.stream) {
        if (t->p.kind == TASK_CHAT) {
            json_t *lp = json_null();
            if (t->p.logprobs && json_array_size(c->lp_content) > 0) {
                lp = json_pack("{s:o}", "content", json_copy(c->lp_content));
                json_array_clear(c->lp_content);
            }
            send_chunk(t, json_pack("{s:i, s:{}, s:o, s:s}", "index", ci, "delta", "logprobs", lp, "finish_reason", fr));
        } else {
            send_chunk(t, json_pack("{s:i, s:s, s:n, s:s}", "index", ci, "text", "", "logprobs", "finish_reason", fr));
        }
        return;
    }
    json_t *choice;
    if (t->p.kind == TASK_CHAT) {
        json_t *msg = json_pack("{s:s}", "role", "assistant");
        bool calls = json_array_size(c->tool_calls) > 0;
        json_object_set_new(msg, "content", (calls && c->content.n == 0) ? json_null()
                                                : json_stringn(c->content.p ? c->content.p : "", c->content.n));
        if (c->reasoning.n) json_object_set_new(msg, "reasoning_content", json_stringn(c->reasoning.p, c->reasoning.n));
        if (calls) json_object_set(msg, "tool_calls", c->tool_calls);
        choice = json_pack("{s:i, s:o, s:o, s:s}", "index", ci, "message", msg, "logprobs",
                           t->p.logprobs ? json_pack("{s:O}", "content", c->lp_content) : json_null(),
                           "finish_reason", fr);
    } else {
        json_t *lp = t->p.logprobs ? json_pack("{s:O, s:O, s:O, s:O}", "tokens", c->lp_tokens, "token_logprobs",
                                               c->lp_values, "top_logprobs", c->lp_tops, "text_offset", c->lp_offsets)
                                   : json_null();
        choice = json_pack("{s:s%, s:i, s:o, s:s}", "text", c->content.p ? c->content.p : "", c->content.n, "index",
                           ci, "logprobs", lp, "finish_reason", fr);
    }
    json_decref(c->answer);
    c->answer = choice;
}

void oai_end(task *t) {
    oai_result *res = t->res;
    if (t->p.stream) {
        if (t->p.include_usage) {
            json_t *chunk = json_pack("{s:s, s:s, s:I, s:s, s:[], s:o}", "id", t->id, "object",
                                      t->p.kind == TASK_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                                      (json_int_t)t->created, "model", t->S->model_id, "choices", "usage",
                                      usage_json(t));
            char *s = chunk ? json_dumps(chunk, JSON_COMPACT) : NULL;
            json_decref(chunk);
            if (s) {
                task_push(t, "data: ", 6);
                task_push(t, s, strlen(s));
                task_push(t, "\n\n", 2);
                free(s);
            }
        }
        task_push(t, "data: [DONE]\n\n", 14);
        task_finish(t, 200, NULL);
        return;
    }
    json_t *choices = json_array();
    for (int i = 0; i < res->n; i++) json_array_append(choices, res->ch[i].answer);
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:o, s:o}", "id", t->id, "object",
                          t->p.kind == TASK_CHAT ? "chat.completion" : "text_completion", "created",
                          (json_int_t)t->created, "model", t->S->model_id, "choices", choices, "usage", usage_json(t));
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!body) { task_finish(t, 500, oai_error_json("out of memory", "server_error", NULL, NULL)); return; }
    task_finish(t, 200, body);
}

void oai_fail(task *t, int status, const char *message) {
    char *err = oai_error_json(message, status_type(status), NULL, NULL);
    if (t->p.stream) {
        if (err) {
            task_push(t, "data: ", 6);
            task_push(t, err, strlen(err));
            task_push(t, "\n\n", 2);
        }
        free(err);
        task_finish(t, status, NULL);
        return;
    }
    task_finish(t, status, err);
}
