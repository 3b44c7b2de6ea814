/*
 * chat_parse.h - splits the text an assistant generates into reasoning,
 * content and tool calls, incrementally, so a stream and a whole answer are
 * split identically (a whole answer is the concatenation of the events).
 *
 * Formats: reasoning between <think> and </think> (the <think> tag counts
 * only before any content, and the prompt may already have opened it);
 * tool calls in the Hermes / Qwen form
 *     <tool_call>\n{"name": "NAME", "arguments": {...}}\n</tool_call>
 * Whitespace right after a tag is dropped. A tool call whose body is not a
 * JSON object with a string "name" (and an object or string "arguments")
 * comes out unchanged as content, tags included.
 *
 * Bytes that may be the start of a tag are held back until the next feed (or
 * finish) tells them apart; nothing else is held. Events borrow their
 * strings for the duration of the sink call.
 */
#ifndef MICA_SERVER_CHAT_PARSE_H
#define MICA_SERVER_CHAT_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

typedef enum cp_kind { CP_CONTENT, CP_REASONING, CP_TOOL_CALL } cp_kind;

typedef struct cp_event {
    cp_kind kind;
    const char *text; /* CONTENT, REASONING: the bytes (len) */
    size_t len;
    const char *name; /* TOOL_CALL: function name */
    const char *args; /* TOOL_CALL: arguments as a compact JSON text */
} cp_event;

typedef void (*cp_sink)(void *ctx, const cp_event *ev);

typedef struct chat_parser {
    bool parse_reasoning, parse_tools;
    int state;          /* CONTENT, REASONING or TOOL (chat_parse.c) */
    bool skip_ws;       /* drop whitespace before the next byte that is not */
    bool content_seen;  /* non-whitespace content was emitted */
    bool reasoning_done;
    int n_tool_calls;
    sbuf pend;          /* unclassified bytes */
    sbuf tool;          /* body of the open tool call */
} chat_parser;

/* start_in_reasoning: the prompt ended with an open <think>. */
void chat_parser_init(chat_parser *p, bool parse_reasoning, bool start_in_reasoning,
                      bool parse_tools);
/* Starts the parser inside a tool call whose body begins with `body`
 * (a prompt that already opened the call). */
bool chat_parser_open_tool(chat_parser *p, const char *body);
/* Feeds n bytes; emits what can be classified. False on out of memory. */
bool chat_parser_feed(chat_parser *p, const char *s, size_t n, cp_sink sink, void *ctx);
/* End of text: emits everything held. False on out of memory. */
bool chat_parser_finish(chat_parser *p, cp_sink sink, void *ctx);
void chat_parser_free(chat_parser *p);

#endif /* MICA_SERVER_CHAT_PARSE_H */
