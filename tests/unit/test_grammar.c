/*
 * test_grammar.c - unit tests for the byte-level grammar matcher, the JSON
 * Schema compiler and token masking (src/sample/grammar.c, json_schema.c,
 * grammar_api.c, sampler.c's grammar hook).
 *
 * Oracles: accept / reject lists written by hand from RFC 8259 (JSON),
 * RFC 3629 (UTF-8) and the JSON Schema meaning of each keyword; for token
 * masks, a brute-force check of every token of the real Qwen2 vocabulary
 * (its bytes fed to a copy of the matcher one at a time) against the trie
 * walk. Hostile schemas must be refused (or compiled) within bounds.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mica.h"
#include "sample/grammar.h"
#include "sample/json_schema.h"
#include "../test.h"

/* ---- helpers ---- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Compiles a schema (NULL: any object) to a grammar; NULL with *st set on failure. */
static grammar *compile(const char *schema, mica_status *st, mica_err *err) {
    gbuild *gb = gbuild_create();
    grammar *g = NULL;
    int32_t rule = -1;
    *st = json_schema_rule(gb, schema, schema ? strlen(schema) : 0, &rule, err);
    if (*st == MICA_OK) *st = gbuild_finish(gb, rule, &g, err);
    gbuild_free(gb);
    return g;
}

/* 1: text is a complete sentence; 0: not (rejected or incomplete); -1: schema failed. */
static int full_match(const char *schema, const char *text, size_t len) {
    mica_status st;
    mica_err err = {0};
    grammar *g = compile(schema, &st, &err);
    if (!g) {
        fprintf(stderr, "schema failed: %s\n", err.msg);
        return -1;
    }
    gmatch *m = NULL;
    if (gmatch_create(g, &m) != MICA_OK) {
        grammar_free(g);
        return -1;
    }
    int r = gmatch_accept_bytes(m, text, len) && gmatch_can_end(m);
    gmatch_free(m);
    grammar_free(g);
    return r;
}

#define ACCEPT(schema, text) do { int r_ = full_match(schema, text, sizeof(text) - 1); \
    if (r_ != 1) { test_fail(__FILE__, __LINE__, "schema %s should accept %s (got %d)", (const char *)(schema) ? (const char *)(schema) : "(any object)", text, r_); return; } } while (0)
#define REJECT(schema, text) do { int r_ = full_match(schema, text, sizeof(text) - 1); \
    if (r_ != 0) { test_fail(__FILE__, __LINE__, "schema %s should reject %s (got %d)", (const char *)(schema) ? (const char *)(schema) : "(any object)", text, r_); return; } } while (0)

static mica_status schema_status(const char *schema, char *msg, size_t cap) {
    mica_status st;
    mica_err err = {0};
    grammar *g = compile(schema, &st, &err);
    grammar_free(g);
    if (msg) snprintf(msg, cap, "%s", err.msg);
    return st;
}

/* ---- the matcher on hand-written grammars ---- */

TEST(grammar_matcher_basics) {
    /* root ::= "ab" digits ; digits ::= [0-9] digits | "" */
    gbuild *gb = gbuild_create();
    gseq q = {0};
    int32_t digits = gbuild_rule(gb);
    gset d = {{0}};
    gset_add_range(&d, '0', '9');
    gseq_set(gb, &q, &d), gseq_ref(gb, &q, digits), gbuild_alt(gb, digits, &q);
    gbuild_alt(gb, digits, &q);
    gseq_lit(gb, &q, "ab", 2), gseq_ref(gb, &q, digits);
    int32_t root = gbuild_rule_of(gb, &q);
    gseq_free(&q);
    grammar *g = NULL;
    ASSERT_OK(gbuild_finish(gb, root, &g, NULL));
    gbuild_free(gb);
    gmatch *m = NULL;
    ASSERT_OK(gmatch_create(g, &m));
    ASSERT_TRUE(!gmatch_can_end(m));
    ASSERT_TRUE(!gmatch_accept_bytes(m, "b", 1));
    ASSERT_TRUE(gmatch_accept_bytes(m, "a", 1));
    ASSERT_TRUE(!gmatch_can_end(m));
    ASSERT_TRUE(gmatch_accept_bytes(m, "b", 1));
    ASSERT_TRUE(gmatch_can_end(m));
    /* right recursion runs in constant stack depth: 100000 digits */
    char buf[1000];
    memset(buf, '7', sizeof buf);
    for (int i = 0; i < 100; i++) ASSERT_TRUE(gmatch_accept_bytes(m, buf, sizeof buf));
    ASSERT_TRUE(gmatch_can_end(m) && !gmatch_no_more(m));
    /* all or nothing: a rejected run leaves the state unchanged */
    ASSERT_TRUE(!gmatch_accept_bytes(m, "12x", 3));
    ASSERT_TRUE(gmatch_would_accept(m, "12", 2));
    ASSERT_TRUE(gmatch_accept_bytes(m, "3", 1));
    gmatch_reset(m);
    ASSERT_TRUE(!gmatch_would_accept(m, "ab1x", 4));
    ASSERT_TRUE(gmatch_would_accept(m, "ab1", 3));
    gmatch_free(m);
    grammar_free(g);
}

TEST(grammar_left_recursion_and_dead_rules) {
    /* r ::= r "a" | "a" : left recursion must end (bounded), not hang */
    gbuild *gb = gbuild_create();
    gseq q = {0};
    int32_t r = gbuild_rule(gb);
    gseq_ref(gb, &q, r), gseq_byte(gb, &q, 'a'), gbuild_alt(gb, r, &q);
    gseq_byte(gb, &q, 'a'), gbuild_alt(gb, r, &q);
    /* dead ::= dead "x" (never completes); root ::= r | dead */
    int32_t dead = gbuild_rule(gb);
    gseq_ref(gb, &q, dead), gseq_byte(gb, &q, 'x'), gbuild_alt(gb, dead, &q);
    int32_t root = gbuild_rule(gb);
    gseq_ref(gb, &q, r), gbuild_alt(gb, root, &q);
    gseq_ref(gb, &q, dead), gbuild_alt(gb, root, &q);
    gseq_free(&q);
    grammar *g = NULL;
    ASSERT_OK(gbuild_finish(gb, root, &g, NULL));
    gbuild_free(gb);
    gmatch *m = NULL;
    ASSERT_OK(gmatch_create(g, &m));
    /* bounded: stacks beyond the caps are dropped (the language narrows) */
    ASSERT_TRUE(gmatch_accept_bytes(m, "a", 1));
    ASSERT_TRUE(!gmatch_would_accept(m, "x", 1));
    gmatch_free(m);
    grammar_free(g);

    /* a grammar whose root never completes is refused */
    gb = gbuild_create();
    int32_t only = gbuild_rule(gb);
    gseq_ref(gb, &q, only), gbuild_alt(gb, only, &q);
    gseq_free(&q);
    mica_err err = {0};
    ASSERT_EQ(gbuild_finish(gb, only, &g, &err), MICA_ERR_INVALID_ARG);
    gbuild_free(gb);
}

/* ---- JSON Schema features ---- */

TEST(grammar_schema_any_object) {
    /* NULL schema: response_format json_object */
    ACCEPT(NULL, "{}");
    ACCEPT(NULL, "{\"a\":1}");
    ACCEPT(NULL, "{ \"a\" : [1, 2.5e3, \"x\", -0.5E-2], \"b\": {\"c\": null, \"d\": [true, false, {}]}}");
    ACCEPT(NULL, "{\n  \"k\": \"v\"\n}");
    REJECT(NULL, "[]");
    REJECT(NULL, "\"x\"");
    REJECT(NULL, "{\"a\"}");
    REJECT(NULL, "{\"a\":1,}");
    REJECT(NULL, "{'a':1}");
    REJECT(NULL, "{\"a\":01}");
    REJECT(NULL, "{\"a\":1");
    REJECT(NULL, " {}");
    REJECT(NULL, "{} ");
    REJECT(NULL, "{\"a\":tru}");
    /* whitespace: nothing, one space, or a newline and up to 20 spaces or tabs */
    ACCEPT(NULL, "{\"a\":\n \t                  1}");
    REJECT(NULL, "{\"a\":\n \t                   1}");
    REJECT(NULL, "{\"a\":  1}");
    REJECT(NULL, "{\"a\":\n\n1}");
    REJECT(NULL, "{\"a\":\t1}");
    ACCEPT(NULL, "{\n\t\"a\": [\n\t\t1,\n\t\t2\n\t]\n}");
}

TEST(grammar_schema_strings) {
    const char *s = "{\"type\":\"string\"}";
    ACCEPT(s, "\"\"");
    ACCEPT(s, "\"abc def\"");
    ACCEPT(s, "\"a\\\"b\\\\c\\/\\b\\f\\n\\r\\t\"");
    ACCEPT(s, "\"\\u00e9\\u20AC\\uFFFD\"");
    ACCEPT(s, "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x7f\"");  /* é € 😀 and DEL, raw UTF-8 */
    REJECT(s, "\"abc");
    REJECT(s, "abc");
    REJECT(s, "\"a\x01\"");          /* raw control character */
    REJECT(s, "\"a\nb\"");
    REJECT(s, "\"\\q\"");            /* unknown escape */
    REJECT(s, "\"\\ud800\"");        /* lone surrogate escape */
    REJECT(s, "\"\\u0000\"");        /* NUL escape (jansson refuses it) */
    REJECT(s, "\"\\u12\"");
    REJECT(s, "\"\xc0\xaf\"");       /* overlong */
    REJECT(s, "\"\xed\xa0\x80\"");   /* UTF-8 surrogate */
    REJECT(s, "\"\xf4\x90\x80\x80\""); /* above U+10FFFF */
    REJECT(s, "\"\xff\"");
    REJECT(s, "\"\xe2\x82\"");       /* truncated sequence */
    const char *dt = "{\"type\":\"string\",\"format\":\"date-time\"}";
    ACCEPT(dt, "\"2024-02-29T23:59:07Z\"");
    ACCEPT(dt, "\"1999-12-01T00:00:00.123+05:30\"");
    REJECT(dt, "\"2024-13-01T00:00:00Z\"");
    REJECT(dt, "\"2024-01-32T00:00:00Z\"");
    REJECT(dt, "\"2024-01-01T24:00:00Z\"");
    REJECT(dt, "\"2024-01-01 10:00:00Z\"");
    ACCEPT("{\"type\":\"string\",\"format\":\"date\"}", "\"2024-01-09\"");
    REJECT("{\"type\":\"string\",\"format\":\"date\"}", "\"2024-00-09\"");
    ACCEPT("{\"type\":\"string\",\"format\":\"time\"}", "\"08:30:00-01:00\"");
    ACCEPT("{\"format\":\"uuid\",\"type\":\"string\"}", "\"123e4567-e89b-12d3-a456-426614174000\"");
    REJECT("{\"format\":\"uuid\",\"type\":\"string\"}", "\"123e4567-e89b-12d3-a456-42661417400\"");
    ACCEPT("{\"type\":\"string\",\"format\":\"email\"}", "\"jo.doe+x@mail.example.org\"");
    REJECT("{\"type\":\"string\",\"format\":\"email\"}", "\"jo@localhost\"");
    REJECT("{\"type\":\"string\",\"format\":\"email\"}", "\"@x.org\"");
    ACCEPT("{\"type\":\"string\",\"format\":\"ipv4\"}", "\"192.168.0.255\"");
    REJECT("{\"type\":\"string\",\"format\":\"ipv4\"}", "\"192.168.0.256\"");
    REJECT("{\"type\":\"string\",\"format\":\"ipv4\"}", "\"01.2.3.4\"");
    const char *len = "{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}";
    ACCEPT(len, "\"ab\"");
    ACCEPT(len, "\"abc\"");
    ACCEPT(len, "\"\xc3\xa9\xe2\x82\xac\"");  /* 2 characters, 5 bytes */
    ACCEPT(len, "\"\\n\\u0041\"");            /* escapes count as one character */
    REJECT(len, "\"a\"");
    REJECT(len, "\"abcd\"");
}

TEST(grammar_schema_numbers) {
    const char *i = "{\"type\":\"integer\"}";
    ACCEPT(i, "0");
    ACCEPT(i, "-7");
    ACCEPT(i, "1234567890123456");
    REJECT(i, "01");
    REJECT(i, "1.5");
    REJECT(i, "+1");
    REJECT(i, "-");
    REJECT(i, "12345678901234567"); /* 17 digits: beyond the documented cap */
    const char *n = "{\"type\":\"number\"}";
    ACCEPT(n, "0");
    ACCEPT(n, "1.5");
    ACCEPT(n, "-0.25e-10");
    ACCEPT(n, "3E+99");
    REJECT(n, "1.");
    REJECT(n, ".5");
    REJECT(n, "1e");
    REJECT(n, "1e100");
    REJECT(n, "NaN");
    ACCEPT("{\"type\":\"integer\",\"minimum\":0}", "0");
    REJECT("{\"type\":\"integer\",\"minimum\":0}", "-1");
    REJECT("{\"type\":\"integer\",\"minimum\":1}", "0");
    ACCEPT("{\"type\":\"integer\",\"minimum\":1}", "10");
    /* integer ranges, checked against every value of a window by plain comparison */
    const char *ranges[][2] = {{"-37", "1204"}, {"5", "5"}, {"-100", "-7"}, {"0", "99"}, {"19", "2001"}, {"-5", "0"}};
    for (size_t k = 0; k < MICA_ARRAY_LEN(ranges); k++) {
        char sch[160];
        long lo = atol(ranges[k][0]), hi = atol(ranges[k][1]);
        snprintf(sch, sizeof sch, "{\"type\":\"integer\",\"minimum\":%ld,\"maximum\":%ld}", lo, hi);
        for (long v = -2500; v <= 2500; v++) {
            char num[32];
            int nl = snprintf(num, sizeof num, "%ld", v);
            int want = v >= lo && v <= hi;
            if (full_match(sch, num, (size_t)nl) != want) {
                test_fail(__FILE__, __LINE__, "%s on %ld: expected %d", sch, v, want);
                return;
            }
        }
    }
    ACCEPT("{\"type\":\"integer\",\"exclusiveMinimum\":3,\"exclusiveMaximum\":6}", "4");
    REJECT("{\"type\":\"integer\",\"exclusiveMinimum\":3,\"exclusiveMaximum\":6}", "3");
    REJECT("{\"type\":\"integer\",\"exclusiveMinimum\":3,\"exclusiveMaximum\":6}", "6");
    REJECT("{\"type\":\"integer\",\"maximum\":-3}", "-02");
    ACCEPT("{\"type\":\"integer\",\"maximum\":-3}", "-1234567890123456");
    REJECT("{\"type\":\"integer\",\"maximum\":-3}", "-2");
    const char *nb = "{\"type\":\"number\",\"minimum\":0,\"maximum\":5}";
    ACCEPT(nb, "0");
    ACCEPT(nb, "4.999");
    ACCEPT(nb, "5");
    ACCEPT(nb, "0.5");
    REJECT(nb, "5.5");
    REJECT(nb, "-0.5");
    REJECT(nb, "6");
    REJECT(nb, "1e1");
    ACCEPT("{\"type\":\"number\",\"minimum\":2,\"exclusiveMaximum\":3}", "2.75");
    REJECT("{\"type\":\"number\",\"minimum\":2,\"exclusiveMaximum\":3}", "3");
}

TEST(grammar_schema_literals) {
    const char *e = "{\"enum\":[\"red\",\"green\",3,null,{\"x\":[1]}]}";
    ACCEPT(e, "\"red\"");
    ACCEPT(e, "3");
    ACCEPT(e, "null");
    ACCEPT(e, "{\"x\":[1]}");
    REJECT(e, "\"blue\"");
    REJECT(e, "\"re\"");
    REJECT(e, "30");
    ACCEPT("{\"const\":{\"a\":[1,2]}}", "{\"a\":[1,2]}");
    REJECT("{\"const\":{\"a\":[1,2]}}", "{\"a\":[1]}");
    /* type filters enum values */
    ACCEPT("{\"type\":\"string\",\"enum\":[\"a\",1]}", "\"a\"");
    REJECT("{\"type\":\"string\",\"enum\":[\"a\",1]}", "1");
    ACCEPT("{\"type\":\"boolean\"}", "true");
    ACCEPT("{\"type\":\"boolean\"}", "false");
    REJECT("{\"type\":\"boolean\"}", "null");
    ACCEPT("{\"type\":\"null\"}", "null");
    ACCEPT("{\"type\":[\"string\",\"null\"]}", "\"a\"");
    ACCEPT("{\"type\":[\"string\",\"null\"]}", "null");
    REJECT("{\"type\":[\"string\",\"null\"]}", "1");
    REJECT("{\"type\":\"string\",\"nullable\":true}", "null"); /* OpenAPI's nullable: an annotation here */
    ACCEPT("{\"type\":\"string\",\"nullable\":true}", "\"s\"");
    ACCEPT("true", "[1,{\"a\":null}]"); /* the schema true: any value */
}

TEST(grammar_schema_objects) {
    const char *p = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\"}},"
                    "\"required\":[\"name\"]}";
    ACCEPT(p, "{\"name\":\"Bo\"}");
    ACCEPT(p, "{\"name\":\"Bo\",\"age\":3}");
    ACCEPT(p, "{ \"name\" : \"Bo\" , \"age\" : 3 }");
    ACCEPT(p, "{\n  \"name\": \"x\",\n  \"age\": -1\n}");
    REJECT(p, "{}");
    REJECT(p, "{\"age\":3}");
    REJECT(p, "{\"name\":1}");
    REJECT(p, "{\"name\":\"a\",\"name\":\"b\"}");
    REJECT(p, "{\"name\":\"a\",\"other\":1}"); /* additionalProperties absent: none generated */
    const char *a = "{\"properties\":{\"a\":{\"type\":\"integer\"},\"ab\":{\"type\":\"integer\"}},"
                    "\"additionalProperties\":true}";
    ACCEPT(a, "{\"a\":1,\"zz\":\"x\"}");
    ACCEPT(a, "{\"b\":[]}");
    ACCEPT(a, "{\"abc\":1,\"a_b\":2}");
    ACCEPT(a, "{}");
    REJECT(a, "{\"a\":1,\"a\":2}");   /* a listed name cannot come back as an extra key */
    REJECT(a, "{\"ab\":1,\"ab\":2}");
    REJECT(a, "{\"a\":\"s\"}");
    const char *m = "{\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\"}}";
    ACCEPT(m, "{\"x\":1,\"y\":2}");
    REJECT(m, "{\"x\":\"s\"}");
    /* a required name that is not listed: any value */
    ACCEPT("{\"type\":\"object\",\"required\":[\"k\"]}", "{\"k\":[1]}");
    REJECT("{\"type\":\"object\",\"required\":[\"k\"]}", "{}");
    REJECT("{\"type\":\"object\",\"properties\":{}}", "{\"x\":1}");
    ACCEPT("{\"type\":\"object\",\"properties\":{}}", "{}");
}

TEST(grammar_schema_arrays) {
    const char *a = "{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":2,\"maxItems\":3}";
    ACCEPT(a, "[1,2]");
    ACCEPT(a, "[1, 2, 3]");
    ACCEPT(a, "[ 1 , 2 ]");
    REJECT(a, "[1]");
    REJECT(a, "[]");
    REJECT(a, "[1,2,3,4]");
    REJECT(a, "[1,\"a\"]");
    REJECT(a, "[1,2,]");
    ACCEPT("{\"type\":\"array\"}", "[]");
    ACCEPT("{\"type\":\"array\"}", "[1,\"a\",{},[[]]]");
    ACCEPT("{\"type\":\"array\",\"maxItems\":0}", "[]");
    REJECT("{\"type\":\"array\",\"maxItems\":0}", "[1]");
    ACCEPT("{\"type\":\"array\",\"items\":false}", "[]");
    const char *tup = "{\"type\":\"array\",\"prefixItems\":[{\"type\":\"string\"},{\"type\":\"integer\"}],\"items\":false}";
    ACCEPT(tup, "[\"a\", 1]");
    REJECT(tup, "[1, \"a\"]");
    REJECT(tup, "[\"a\", 1, 2]");
    const char *tup2 = "{\"prefixItems\":[{\"const\":0}],\"items\":{\"type\":\"boolean\"},\"minItems\":2,\"maxItems\":3}";
    ACCEPT(tup2, "[0,true]");
    ACCEPT(tup2, "[0, true, false]");
    REJECT(tup2, "[0]");
    REJECT(tup2, "[0,true,true,true]");
    REJECT(tup2, "[1,true]");
    ACCEPT("{\"prefixItems\":[{\"type\":\"integer\"},{\"type\":\"integer\"}],\"maxItems\":1}", "[7]");
}

TEST(grammar_schema_combinators_and_refs) {
    const char *any = "{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"object\",\"properties\":{\"k\":{\"const\":\"v\"}},"
                      "\"required\":[\"k\"]}]}";
    ACCEPT(any, "5");
    ACCEPT(any, "{\"k\":\"v\"}");
    REJECT(any, "\"v\"");
    ACCEPT("{\"oneOf\":[{\"type\":\"string\"},{\"type\":\"boolean\"}]}", "true");
    ACCEPT("{\"allOf\":[{\"type\":\"string\"}],\"description\":\"d\"}", "\"s\"");
    const char *tree = "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
                       "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"},\"maxItems\":2}},"
                       "\"required\":[\"v\"]}},\"$ref\":\"#/$defs/node\"}";
    ACCEPT(tree, "{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3,\"kids\":[{\"v\":4,\"kids\":[]}]}]}");
    REJECT(tree, "{\"v\":1,\"kids\":[{\"x\":2}]}");
    REJECT(tree, "{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3},{\"v\":4}]}");
    const char *defs = "{\"definitions\":{\"c\":{\"enum\":[\"r\",\"g\"]}},\"type\":\"object\","
                       "\"properties\":{\"c\":{\"$ref\":\"#/definitions/c\"},\"title\":{\"type\":\"string\","
                       "\"description\":\"ignored\",\"title\":\"t\",\"default\":\"x\",\"examples\":[\"y\"]}},"
                       "\"required\":[\"c\",\"title\"]}";
    ACCEPT(defs, "{\"c\":\"g\",\"title\":\"\"}");
    REJECT(defs, "{\"c\":\"b\",\"title\":\"\"}");
    /* a linked list through the root */
    const char *list = "{\"type\":\"object\",\"properties\":{\"next\":{\"anyOf\":[{\"$ref\":\"#\"},{\"type\":\"null\"}]}},"
                       "\"required\":[\"next\"]}";
    ACCEPT(list, "{\"next\":{\"next\":{\"next\":null}}}");
    REJECT(list, "{\"next\":{}}");
}

TEST(grammar_schema_errors) {
    char msg[600];
    ASSERT_EQ(schema_status("{\"type\":\"object\",\"properties\":{\"zip\":{\"type\":\"string\",\"pattern\":\"^[0-9]+$\"}}}",
                            msg, sizeof msg), MICA_ERR_UNSUPPORTED);
    ASSERT_TRUE(strstr(msg, "'pattern'") && strstr(msg, "#/properties/zip"));
    ASSERT_EQ(schema_status("{\"type\":\"string\",\"format\":\"uri-reference\"}", msg, sizeof msg), MICA_ERR_UNSUPPORTED);
    ASSERT_TRUE(strstr(msg, "'format'") && strstr(msg, "uri-reference"));
    ASSERT_EQ(schema_status("{\"type\":\"integer\",\"multipleOf\":5}", msg, sizeof msg), MICA_ERR_UNSUPPORTED);
    ASSERT_EQ(schema_status("{\"type\":\"number\",\"maximum\":5}", msg, sizeof msg), MICA_ERR_UNSUPPORTED);
    ASSERT_EQ(schema_status("{\"type\":\"number\",\"minimum\":0.5}", msg, sizeof msg), MICA_ERR_UNSUPPORTED);
    ASSERT_EQ(schema_status("{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", msg, sizeof msg),
              MICA_ERR_INVALID_ARG);
    ASSERT_EQ(schema_status("{\"type\":\"array\",\"uniqueItems\":true}", msg, sizeof msg), MICA_ERR_UNSUPPORTED);
    ASSERT_EQ(schema_status("{\"type\":\"array\",\"minItems\":100000}", msg, sizeof msg), MICA_ERR_UNSUPPORTED);
    ASSERT_EQ(schema_status("{\"allOf\":[{\"type\":\"string\"},{\"maxLength\":3}]}", msg, sizeof msg), MICA_ERR_UNSUPPORTED);
    ASSERT_EQ(schema_status("{\"$ref\":\"http://example.com/s.json\"}", msg, sizeof msg), MICA_ERR_UNSUPPORTED);
    ASSERT_EQ(schema_status("{\"type\":\"object\"", msg, sizeof msg), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(schema_status("[1]", msg, sizeof msg), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(schema_status("{\"type\":\"strin\"}", msg, sizeof msg), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(schema_status("{\"type\":\"string\",\"enum\":[1,2]}", msg, sizeof msg), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(schema_status("{\"type\":\"array\",\"minItems\":3,\"maxItems\":2}", msg, sizeof msg), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(schema_status("{\"$ref\":\"#/$defs/nope\"}", msg, sizeof msg), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(schema_status("{\"enum\":[]}", msg, sizeof msg), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(schema_status("false", msg, sizeof msg), MICA_ERR_INVALID_ARG);
    /* no value satisfies a schema that is only itself, or requires an endless chain */
    ASSERT_EQ(schema_status("{\"$ref\":\"#\"}", msg, sizeof msg), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(schema_status("{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#\"}},\"required\":[\"a\"]}", msg,
                            sizeof msg), MICA_ERR_INVALID_ARG);
}

/* ---- hostile schemas: refused or compiled within bounds, never a crash ---- */

TEST(grammar_schema_hostile) {
    char *buf = malloc(1 << 20);
    ASSERT_TRUE(buf);
    /* nesting 200 deep: refused by the depth cap */
    size_t n = 0;
    for (int i = 0; i < 200; i++) n += (size_t)sprintf(buf + n, "{\"type\":\"array\",\"items\":");
    n += (size_t)sprintf(buf + n, "{\"type\":\"integer\"}");
    for (int i = 0; i < 200; i++) buf[n++] = '}';
    buf[n] = '\0';
    ASSERT_EQ(schema_status(buf, NULL, 0), MICA_ERR_LIMIT);
    /* 25 definitions, each two paths to the next: 2^25 derivations, bounded work */
    n = (size_t)sprintf(buf, "{\"$defs\":{");
    for (int i = 0; i < 25; i++)
        n += (size_t)sprintf(buf + n, "\"d%d\":{\"anyOf\":[{\"$ref\":\"#/$defs/d%d\"},{\"$ref\":\"#/$defs/d%d\"}]},", i,
                             i + 1, i + 1);
    n += (size_t)sprintf(buf + n, "\"d25\":{\"type\":\"integer\"}},\"$ref\":\"#/$defs/d0\"}");
    double t0 = now_s();
    mica_status st;
    grammar *g = compile(buf, &st, NULL);
    ASSERT_OK(st);
    gmatch *m = NULL;
    ASSERT_OK(gmatch_create(g, &m));
    gmatch_accept_bytes(m, "12", 2); /* may or may not survive the work cap; must be quick */
    gmatch_free(m);
    grammar_free(g);
    ASSERT_TRUE(now_s() - t0 < 2.0);
    /* 5000 properties: over the subschema cap */
    n = (size_t)sprintf(buf, "{\"type\":\"object\",\"properties\":{");
    for (int i = 0; i < 5000; i++) n += (size_t)sprintf(buf + n, "%s\"p%d\":{\"type\":\"string\"}", i ? "," : "", i);
    n += (size_t)sprintf(buf + n, "}}");
    ASSERT_EQ(schema_status(buf, NULL, 0), MICA_ERR_LIMIT);
    /* a 100000-byte property name beside additional properties: bounded recursion */
    n = (size_t)sprintf(buf, "{\"type\":\"object\",\"additionalProperties\":true,\"properties\":{\"");
    memset(buf + n, 'a', 100000);
    n += 100000;
    n += (size_t)sprintf(buf + n, "\":{\"type\":\"integer\"}}}");
    ASSERT_EQ(schema_status(buf, NULL, 0), MICA_OK);
    /* maxItems huge: lowered to the cap (still a subset), compiles */
    ASSERT_EQ(schema_status("{\"type\":\"array\",\"maxItems\":1000000000}", NULL, 0), MICA_OK);
    /* mutations of a valid schema: any status, never a crash or a hang */
    const char *base = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"array\",\"items\":{\"$ref\":\"#\"},"
                       "\"maxItems\":3},\"b\":{\"enum\":[1,\"x\"]},\"c\":{\"anyOf\":[{\"type\":\"string\","
                       "\"maxLength\":4},{\"type\":\"null\"}]}},\"required\":[\"b\"],\"additionalProperties\":true}";
    size_t bl = strlen(base);
    uint64_t x = 12345;
    t0 = now_s();
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, base, bl + 1);
        for (int k = 0; k < 3; k++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(x >> 33) % bl;
            buf[at] = "{}[]\":,01tfn#/$ab"[(x >> 20) % 17];
        }
        mica_status s2;
        grammar *g2 = compile(buf, &s2, NULL);
        if (g2) {
            gmatch *m2 = NULL;
            if (gmatch_create(g2, &m2) == MICA_OK) gmatch_accept_bytes(m2, "{\"b\":1}", 7);
            gmatch_free(m2);
        }
        grammar_free(g2);
    }
    ASSERT_TRUE(now_s() - t0 < 20.0);
    free(buf);
}

/* ---- the public grammar: literals around the value, repetitions, the trigger ---- */

TEST(grammar_trigger_and_literals) {
    /* a hand-made vocabulary: pieces written out, token 6 ends the generation */
    const char *pieces[] = {"<tool", "_call>", "\n", "{\"a\": 1}", "\n</x>", "hello", "", "<tool_call>\n{\"a\": 2}", "<ctl>"};
    uint8_t kind[] = {0, 0, 0, 0, 0, 0, GVOCAB_END, 0, GVOCAB_NEVER};
    enum { NT = 9 };
    uint32_t off[NT + 1];
    char bytes[256];
    size_t at = 0;
    for (int i = 0; i < NT; i++) {
        off[i] = (uint32_t)at;
        memcpy(bytes + at, pieces[i], strlen(pieces[i]));
        at += strlen(pieces[i]);
    }
    off[NT] = (uint32_t)at;
    gvocab *v = NULL;
    ASSERT_OK(gvocab_create(NT, bytes, off, kind, &v, NULL));
    mica_grammar_params gp = mica_grammar_params_default();
    gp.json_schema = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},\"required\":[\"a\"]}";
    gp.trigger = "<tool_call>";
    gp.prefix = "\n";
    gp.suffix = "\n</x>";
    mica_grammar *g = NULL;
    ASSERT_OK(mica_grammar_create(v, &gp, &g, NULL, 0));
    /* free text until the trigger */
    ASSERT_TRUE(mica_grammar_allows(g, 5) && mica_grammar_allows(g, 6) && mica_grammar_can_end(g));
    ASSERT_TRUE(mica_grammar_accept(g, 5) && mica_grammar_accept(g, 0));
    ASSERT_TRUE(mica_grammar_accept(g, 1)); /* "<tool" "_call>": the trigger across two tokens */
    ASSERT_TRUE(!mica_grammar_allows(g, 5) && !mica_grammar_allows(g, 6) && !mica_grammar_allows(g, 8));
    ASSERT_TRUE(!mica_grammar_allows(g, 3)); /* the prefix "\n" comes first */
    float logits[NT];
    for (int i = 0; i < NT; i++) logits[i] = 1.0f;
    ASSERT_EQ(mica_grammar_mask(g, logits, NT), 1);
    ASSERT_TRUE(logits[2] == 1.0f && logits[3] == -INFINITY);
    ASSERT_TRUE(mica_grammar_accept(g, 2) && mica_grammar_accept(g, 3));
    ASSERT_TRUE(!mica_grammar_can_end(g) && !mica_grammar_accept(g, 6));
    ASSERT_TRUE(mica_grammar_accept(g, 4));
    /* complete: free text again */
    ASSERT_TRUE(mica_grammar_allows(g, 5) && mica_grammar_can_end(g) && !mica_grammar_done(g));
    for (int i = 0; i < NT; i++) logits[i] = 1.0f;
    ASSERT_EQ(mica_grammar_mask(g, logits, NT), NT);
    /* the trigger and part of the value inside one token */
    mica_grammar_reset(g);
    ASSERT_TRUE(mica_grammar_accept(g, 7));
    ASSERT_TRUE(!mica_grammar_allows(g, 5) && mica_grammar_allows(g, 4));
    mica_grammar_free(g);

    /* no trigger, repetitions: VALUE suffix (repeat VALUE suffix){0,1} */
    gp = mica_grammar_params_default();
    gp.json_schema = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},\"required\":[\"a\"]}";
    gp.suffix = "\n</x>";
    gp.repeat_prefix = "\n";
    gp.max_values = 2;
    ASSERT_OK(mica_grammar_create(v, &gp, &g, NULL, 0));
    ASSERT_TRUE(!mica_grammar_allows(g, 5) && !mica_grammar_allows(g, 2) && mica_grammar_allows(g, 3));
    ASSERT_TRUE(mica_grammar_accept(g, 3) && mica_grammar_accept(g, 4));
    ASSERT_TRUE(mica_grammar_can_end(g) && !mica_grammar_done(g) && mica_grammar_allows(g, 2));
    ASSERT_TRUE(mica_grammar_accept(g, 2) && mica_grammar_accept(g, 3) && mica_grammar_accept(g, 4));
    ASSERT_TRUE(mica_grammar_done(g) && mica_grammar_allows(g, 6) && !mica_grammar_allows(g, 2));
    mica_grammar_free(g);

    /* errors name the keyword */
    char err[300];
    gp = mica_grammar_params_default();
    gp.json_schema = "{\"type\":\"object\",\"properties\":{\"d\":{\"type\":\"string\",\"pattern\":\"^a\"}}}";
    ASSERT_EQ(mica_grammar_create(v, &gp, &g, err, sizeof err), MICA_ERR_UNSUPPORTED);
    ASSERT_TRUE(strstr(err, "'pattern'") && strstr(err, "#/properties/d"));
    gvocab_free(v);
}

/* ---- token masks on a real vocabulary ---- */

static mica_model *open_vocab(const char *rel) {
    char path[512];
    test_data_path(path, sizeof path, rel);
    if (!test_require_file(path)) return NULL;
    mica_model_params mp = mica_model_params_default();
    mp.vocab_only = true;
    mica_model *model = NULL;
    char err[256];
    if (mica_model_open(path, &mp, &model, err, sizeof err) != MICA_OK) {
        test_fail(__FILE__, __LINE__, "open %s: %s", path, err);
        return NULL;
    }
    return model;
}

TEST(grammar_mask_matches_brute_force_qwen2) {
    mica_model *model = open_vocab("vocab/ggml-vocab-qwen2.gguf");
    if (!model) return;
    mica_grammar_vocab *gv = NULL;
    char err[256];
    double t0 = now_s();
    ASSERT_OK(mica_grammar_vocab_create(model, &gv, err, sizeof err));
    double t_build = now_s() - t0;
    const gvocab *v = gv;
    int32_t n = gvocab_n_tokens(v);
    ASSERT_TRUE(n > 150000);
    const char *schema = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":"
                         "\"integer\"},\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"bc\"]}}},"
                         "\"required\":[\"name\",\"age\",\"tags\"]}";
    mica_status st;
    grammar *g = compile(schema, &st, NULL);
    ASSERT_OK(st);
    gmatch *m = NULL;
    ASSERT_OK(gmatch_create(g, &m));
    uint8_t *allowed = malloc((size_t)n);
    ASSERT_TRUE(allowed);
    /* states: start, inside a key, inside a string value, inside a number, an enum, complete */
    const char *prefixes[] = {"", "{\"na", "{\"name\": \"ab", "{\"name\": \"a\\", "{\"name\": \"\\u00", "{\"name\": \"\xe4\xbd",
                              "{\"name\": \"ab\", \"age\": 12",
                              "{\"name\": \"ab\", \"age\": 12, \"tags\": [\"a\", \"b",
                              "{\"name\": \"ab\", \"age\": 12, \"tags\": []}"};
    for (size_t k = 0; k < MICA_ARRAY_LEN(prefixes); k++) {
        gmatch_reset(m);
        ASSERT_TRUE(gmatch_accept_bytes(m, prefixes[k], strlen(prefixes[k])));
        t0 = now_s();
        int32_t count = gmatch_mask(m, v, allowed);
        double dt = now_s() - t0;
        ASSERT_TRUE(count >= 1);
        int32_t want = 0;
        for (int32_t id = 0; id < n; id++) {
            /* brute force: every byte through the matcher (no trie) */
            bool ok = false;
            size_t len = 0;
            const char *p = gvocab_piece(v, id, &len);
            if (gvocab_kind(v, id) == GVOCAB_END) ok = gmatch_can_end(m);
            else if (gvocab_kind(v, id) == GVOCAB_NORMAL) ok = gmatch_would_accept(m, p, len);
            want += ok;
            if (ok != (allowed[id] != 0)) {
                test_fail(__FILE__, __LINE__, "state %zu token %d (%.*s): mask %d brute %d", k, id, (int)len, p,
                          allowed[id], ok);
                goto out;
            }
        }
        ASSERT_EQ(count, want);
        printf("grammar mask, qwen2 vocabulary (%d tokens), state '%s': %d allowed, %.2f ms\n", n, prefixes[k],
               count, dt * 1e3);
    }
    /* complete: only end-of-generation tokens */
    ASSERT_TRUE(gmatch_no_more(m) && gmatch_can_end(m));
    int32_t ends = 0;
    for (int32_t id = 0; id < n; id++) ends += allowed[id] && gvocab_kind(v, id) == GVOCAB_END;
    ASSERT_TRUE(ends >= 1);
    printf("grammar vocabulary trie built in %.1f ms\n", t_build * 1e3);
out:
    free(allowed);
    gmatch_free(m);
    grammar_free(g);
    mica_grammar_vocab_free(gv);
    mica_model_free(model);
}

/* The public API through the sampler: random logits, every sampled text valid. */
TEST(grammar_sampler_generates_valid_text) {
    mica_model *model = open_vocab("vocab/ggml-vocab-qwen2.gguf");
    if (!model) return;
    mica_grammar_vocab *gv = NULL;
    ASSERT_OK(mica_grammar_vocab_create(model, &gv, NULL, 0));
    mica_grammar_params gp = mica_grammar_params_default();
    gp.json_schema = "{\"type\":\"object\",\"properties\":{\"ok\":{\"type\":\"boolean\"},\"n\":{\"enum\":[1,2,3]},"
                     "\"s\":{\"type\":\"string\",\"maxLength\":5}},\"required\":[\"ok\",\"n\",\"s\"]}";
    gp.suffix = "\n</end>";
    mica_grammar *g = NULL;
    char err[256];
    ASSERT_OK(mica_grammar_create(gv, &gp, &g, err, sizeof err));
    int32_t nv = gvocab_n_tokens(gv);
    float *logits = malloc((size_t)nv * sizeof *logits);
    ASSERT_TRUE(logits);
    for (uint64_t seed = 1; seed <= 3; seed++) {
        mica_sampler_params sp = mica_sampler_params_default();
        sp.seed = seed;
        sp.temperature = 1.0f;
        sp.top_k = 0;
        sp.top_p = 1.0f;
        sp.min_p = 0.0f;
        mica_sampler *smp = NULL;
        ASSERT_OK(mica_sampler_create(&sp, &smp));
        mica_grammar_reset(g);
        mica_sampler_set_grammar(smp, g);
        mica_sampler *plain = NULL; /* the same pipeline without a grammar, for the cost */
        ASSERT_OK(mica_sampler_create(&sp, &plain));
        char text[4096];
        size_t tl = 0;
        uint64_t x = seed * 977;
        bool ended = false;
        double t_g = 0, t_p = 0;
        int steps = 0;
        for (int step = 0; step < 400 && !ended; step++) {
            for (int32_t i = 0; i < nv; i++) {
                x = x * 6364136223846793005ull + 1442695040888963407ull;
                logits[i] = (float)((x >> 40) % 1000) / 100.0f;
            }
            double t0 = now_s();
            (void)mica_sampler_sample(plain, logits, nv);
            double t1 = now_s();
            int32_t tok = mica_sampler_sample(smp, logits, nv);
            t_g += now_s() - t1;
            t_p += t1 - t0;
            steps++;
            ASSERT_TRUE(mica_grammar_allows(g, tok));
            if (gvocab_kind(gv, tok) == GVOCAB_END) {
                ended = true;
                break;
            }
            size_t len = 0;
            const char *p = gvocab_piece(gv, tok, &len);
            ASSERT_TRUE(tl + len < sizeof text);
            memcpy(text + tl, p, len);
            tl += len;
            mica_sampler_accept(smp, tok);
        }
        text[tl] = '\0';
        ASSERT_TRUE(ended && mica_grammar_done(g));
        /* independent check of the shape: ends with the suffix, boolean and enum present */
        ASSERT_TRUE(tl > 7 && strcmp(text + tl - 7, "\n</end>") == 0);
        ASSERT_TRUE(strstr(text, "\"ok\"") && (strstr(text, "true") || strstr(text, "false")));
        printf("sampling with a grammar, random logits over %d tokens: %.2f ms per token (%.2f ms without), "
               "%d tokens\n", nv, t_g * 1e3 / steps, t_p * 1e3 / steps, steps);
        mica_sampler_free(plain);
        mica_sampler_free(smp);
    }
    free(logits);
    mica_grammar_free(g);
    mica_grammar_vocab_free(gv);
    mica_model_free(model);
}
