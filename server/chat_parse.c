/*
 * chat_parse.c - see chat_parse.h.
 */
#include "chat_parse.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

enum { ST_CONTENT, ST_REASONING, ST_TOOL };

#define TAG_THINK "<think>"
#define TAG_THINK_END "</think>"
#define TAG_TOOL "<tool_call>"
#define TAG_TOOL_END "</tool_call>"

void chat_parser_init(chat_parser *p, bool parse_reasoning, bool start_in_reasoning,
                      bool parse_tools) {
    *p = (chat_parser){.parse_reasoning = parse_reasoning, .parse_tools = parse_tools};
    p->state = (parse_reasoning && start_in_reasoning) ? ST_REASONING : ST_CONTENT;
    p->skip_ws = p->state == ST_REASONING;
}

bool chat_parser_open_tool(chat_parser *p, const char *body) {
    p->state = ST_TOOL;
    p->skip_ws = false;
    return sbuf_adds(&p->tool, body);
}

void chat_parser_free(chat_parser *p) {
    sbuf_free(&p->pend);
    sbuf_free(&p->tool);
}

static bool is_ws(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

static void emit_text(chat_parser *p, cp_kind kind, const char *s, size_t n, cp_sink sink, void *ctx) {
    if (n == 0) return;
    if (kind == CP_CONTENT) {
        for (size_t i = 0; i < n && !p->content_seen; i++) p->content_seen = !is_ws(s[i]);
    }
    cp_event ev = {.kind = kind, .text = s, .len = n};
    sink(ctx, &ev);
}

/* Position of the first occurrence of tag in s[0..n), or n. */
static size_t find_tag(const char *s, size_t n, const char *tag) {
    size_t t = strlen(tag);
    if (n < t) return n;
    for (size_t i = 0; i + t <= n; i++)
        if (s[i] == tag[0] && memcmp(s + i, tag, t) == 0) return i;
    return n;
}

/* Length of the longest suffix of s[0..n) that is a proper prefix of tag. */
static size_t partial_tag(const char *s, size_t n, const char *tag) {
    size_t t = strlen(tag);
    for (size_t k = (n < t - 1 ? n : t - 1); k > 0; k--)
        if (memcmp(s + n - k, tag, k) == 0) return k;
    return 0;
}

/* Parses a finished tool-call body; emits the call or, if it is not one, the raw text. */
static bool close_tool(chat_parser *p, bool closed, cp_sink sink, void *ctx) {
    json_error_t jerr;
    json_t *root = json_loadb(p->tool.p ? p->tool.p : "", p->tool.n, 0, &jerr);
    json_t *name = json_is_object(root) ? json_object_get(root, "name") : NULL;
    json_t *args = json_is_object(root) ? json_object_get(root, "arguments") : NULL;
    char *args_txt = NULL;
    bool ok = json_is_string(name) && (!args || json_is_object(args) || json_is_string(args));
    if (ok) {
        if (json_is_string(args)) args_txt = strdup(json_string_value(args));
        else if (args) args_txt = json_dumps(args, JSON_COMPACT | JSON_PRESERVE_ORDER);
        else args_txt = strdup("{}");
        if (!args_txt) { json_decref(root); return false; }
        cp_event ev = {.kind = CP_TOOL_CALL, .name = json_string_value(name), .args = args_txt};
        p->n_tool_calls++;
        sink(ctx, &ev);
        free(args_txt);
    } else {
        sbuf raw = {0};
        sbuf_adds(&raw, TAG_TOOL);
        sbuf_add(&raw, p->tool.p ? p->tool.p : "", p->tool.n);
        if (closed) sbuf_adds(&raw, TAG_TOOL_END);
        if (raw.oom) { json_decref(root); sbuf_free(&raw); return false; }
        emit_text(p, CP_CONTENT, raw.p, raw.n, sink, ctx);
        sbuf_free(&raw);
    }
    json_decref(root);
    p->tool.n = 0;
    return true;
}

/* Classifies as much of pend as possible; with final, everything. */
static bool parse_step(chat_parser *p, bool final, cp_sink sink, void *ctx) {
    sbuf *b = &p->pend;
    for (;;) {
        if (p->skip_ws) {
            size_t i = 0;
            while (i < b->n && is_ws(b->p[i])) i++;
            sbuf_consume(b, i);
            if (b->n == 0) return true;
            p->skip_ws = false;
        }
        if (b->n == 0) return true;
        if (p->state == ST_CONTENT) {
            bool think = p->parse_reasoning && !p->content_seen && !p->reasoning_done;
            size_t at_think = think ? find_tag(b->p, b->n, TAG_THINK) : b->n;
            size_t at_tool = p->parse_tools ? find_tag(b->p, b->n, TAG_TOOL) : b->n;
            size_t at = at_think < at_tool ? at_think : at_tool;
            if (at < b->n) {
                /* A think tag after content is content (checked again after emitting). */
                emit_text(p, CP_CONTENT, b->p, at, sink, ctx);
                if (at == at_think && at_think < at_tool && p->content_seen) {
                    emit_text(p, CP_CONTENT, b->p + at, strlen(TAG_THINK), sink, ctx);
                    sbuf_consume(b, at + strlen(TAG_THINK));
                    continue;
                }
                if (at == at_think && at_think < at_tool) {
                    sbuf_consume(b, at + strlen(TAG_THINK));
                    p->state = ST_REASONING;
                } else {
                    sbuf_consume(b, at + strlen(TAG_TOOL));
                    p->state = ST_TOOL;
                    p->tool.n = 0;
                }
                p->skip_ws = true;
                continue;
            }
            size_t hold = 0;
            if (!final) {
                size_t h1 = think ? partial_tag(b->p, b->n, TAG_THINK) : 0;
                size_t h2 = p->parse_tools ? partial_tag(b->p, b->n, TAG_TOOL) : 0;
                hold = h1 > h2 ? h1 : h2;
            }
            emit_text(p, CP_CONTENT, b->p, b->n - hold, sink, ctx);
            sbuf_consume(b, b->n - hold);
            return true;
        }
        const char *end_tag = p->state == ST_REASONING ? TAG_THINK_END : TAG_TOOL_END;
        size_t at = find_tag(b->p, b->n, end_tag);
        if (at < b->n) {
            if (p->state == ST_REASONING) {
                emit_text(p, CP_REASONING, b->p, at, sink, ctx);
                p->reasoning_done = true;
            } else {
                if (!sbuf_add(&p->tool, b->p, at)) return false;
                if (!close_tool(p, true, sink, ctx)) return false;
            }
            sbuf_consume(b, at + strlen(end_tag));
            p->state = ST_CONTENT;
            p->skip_ws = true;
            continue;
        }
        size_t hold = final ? 0 : partial_tag(b->p, b->n, end_tag);
        if (p->state == ST_REASONING) {
            emit_text(p, CP_REASONING, b->p, b->n - hold, sink, ctx);
        } else if (!sbuf_add(&p->tool, b->p, b->n - hold)) {
            return false;
        }
        sbuf_consume(b, b->n - hold);
        return true;
    }
}

bool chat_parser_feed(chat_parser *p, const char *s, size_t n, cp_sink sink, void *ctx) {
    if (!sbuf_add(&p->pend, s, n)) return false;
    return parse_step(p, false, sink, ctx);
}

bool chat_parser_finish(chat_parser *p, cp_sink sink, void *ctx) {
    if (!parse_step(p, true, sink, ctx)) return false;
    if (p->state == ST_TOOL) {
        if (!close_tool(p, false, sink, ctx)) return false;
        p->state = ST_CONTENT;
    }
    return true;
}
