/*
 * test_chat_parse.c - unit test of server/chat_parse.c (built and run by
 * tests/scripts/server.sh, which links server/chat_parse.c, server/util.c and
 * jansson). Every input is also fed byte by byte and in random splits: the
 * events must concatenate to the same answer however the text is cut.
 *
 * Expected values are written from the formats' definitions (Hermes/Qwen
 * <tool_call> JSON bodies, <think> reasoning), not from the parser's output.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_parse.h"

typedef struct answer {
    sbuf content, reasoning, calls; /* calls: "name(args);" per call */
} answer;

static void sink(void *ctx, const cp_event *ev) {
    answer *a = ctx;
    if (ev->kind == CP_CONTENT) sbuf_add(&a->content, ev->text, ev->len);
    else if (ev->kind == CP_REASONING) sbuf_add(&a->reasoning, ev->text, ev->len);
    else {
        sbuf_adds(&a->calls, ev->name);
        sbuf_adds(&a->calls, "(");
        sbuf_adds(&a->calls, ev->args);
        sbuf_adds(&a->calls, ");");
    }
}

static int pass, fail;

static const char *s_or_empty(const sbuf *b) { return b->p ? b->p : ""; }

static void run(const char *name, const char *text, bool think, bool start_think, bool tools, const char *prefill,
                const char *want_content, const char *want_reasoning, const char *want_calls) {
    int failed_before = fail;
    for (int mode = 0; mode < 3; mode++) { /* whole, byte by byte, pseudo-random pieces */
        chat_parser p;
        answer a = {0};
        chat_parser_init(&p, think, start_think, tools);
        if (prefill) chat_parser_open_tool(&p, prefill);
        size_t n = strlen(text), i = 0;
        unsigned seed = 12345;
        while (i < n) {
            size_t k = mode == 0 ? n : mode == 1 ? 1 : 1 + (seed = seed * 1103515245u + 12345u) % 7;
            if (k > n - i) k = n - i;
            chat_parser_feed(&p, text + i, k, sink, &a);
            i += k;
        }
        chat_parser_finish(&p, sink, &a);
        bool ok = !strcmp(s_or_empty(&a.content), want_content) && !strcmp(s_or_empty(&a.reasoning), want_reasoning) &&
                  !strcmp(s_or_empty(&a.calls), want_calls);
        if (ok) pass++;
        else {
            fail++;
            printf("FAIL %s (mode %d): content '%s' reasoning '%s' calls '%s'\n", name, mode, s_or_empty(&a.content),
                   s_or_empty(&a.reasoning), s_or_empty(&a.calls));
        }
        chat_parser_free(&p);
        sbuf_free(&a.content);
        sbuf_free(&a.reasoning);
        sbuf_free(&a.calls);
    }
    if (fail == failed_before) printf("ok   %s\n", name);
}

int main(void) {
    run("plain text", "Hello <b>world</b> < tool", true, false, true, NULL, "Hello <b>world</b> < tool", "", "");
    run("think block", "<think>\nLet me see.\n</think>\n\nThe answer is 4.", true, false, false, NULL,
        "The answer is 4.", "Let me see.\n", "");
    run("think opened by the prompt", "pondering</think>\n\nDone", true, true, false, NULL, "Done", "pondering", "");
    run("think after content is content", "Hi <think>x</think>", true, false, false, NULL, "Hi <think>x</think>", "",
        "");
    run("empty think (enable_thinking false)", "<think>\n\n</think>\n\nOK", true, false, false, NULL, "OK", "", "");
    run("one tool call",
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n</tool_call>",
        true, false, true, NULL, "", "", "get_weather({\"city\":\"Paris\",\"days\":2});");
    run("two tool calls after text",
        "Checking.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n"
        "{\"name\": \"b\", \"arguments\": {\"x\": [1, \"</\"]}}\n</tool_call>",
        true, false, true, NULL, "Checking.\n", "", "a({});b({\"x\":[1,\"</\"]});");
    run("think then tool call",
        "<think>need weather</think>\n<tool_call>\n{\"name\": \"w\", \"arguments\": {\"q\": 1}}\n</tool_call>", true,
        false, true, NULL, "", "need weather", "w({\"q\":1});");
    run("arguments given as a string", "<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"a\\\":1}\"}</tool_call>",
        true, false, true, NULL, "", "", "f({\"a\":1});");
    run("malformed call stays content", "<tool_call>\nnot json\n</tool_call> after", true, false, true, NULL,
        "<tool_call>not json\n</tool_call>after", "", "");
    run("tools off: tags are content", "<tool_call>{\"name\": \"f\"}</tool_call>", true, false, false, NULL,
        "<tool_call>{\"name\": \"f\"}</tool_call>", "", "");
    run("unterminated call at the end", "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n", true, false, true,
        NULL, "", "", "f({});");
    run("prompt-opened named call", "{\"city\": \"Oslo\"}}\n</tool_call>", true, false, true,
        "{\"name\": \"w\", \"arguments\": ", "", "", "w({\"city\":\"Oslo\"});");
    run("partial tag at the end is content", "a <tool_ca", true, false, true, NULL, "a <tool_ca", "", "");
    run("utf-8 untouched", "<think>\xe4\xbd\xa0</think>\xe5\xa5\xbd", true, false, false, NULL, "\xe5\xa5\xbd",
        "\xe4\xbd\xa0", "");
    printf("chat-parse: %d passed, %d failed\n", pass, fail);
    return fail ? 1 : 0;
}
