/*
 * json_schema.c - JSON Schema to grammar rules (contract in json_schema.h).
 *
 * Every schema object becomes one rule, created before its children are
 * compiled and memoised by address, so a $ref cycle is a recursive rule and
 * a schema reached along several paths is compiled once. Shared pieces
 * (whitespace, strings, numbers, any value, counted repetitions of a
 * character) are built once per grammar.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sample/json_schema.h"

#define JSCHEMA_MAX_KEY_DEPTH 256 /* listed names are told apart from extra keys over this many bytes */

typedef struct jmemo {
    const json_t *key;
    int32_t rule;
} jmemo;

typedef struct jsc {
    gbuild *gb;
    json_t *root;
    mica_err *err;
    bool failed;
    mica_status st;
    jmemo *memo; /* open addressing, cap a power of two */
    size_t memo_cap, n_nodes;
    char path[256]; /* location for messages, "#/properties/x" */
    size_t path_len;
    /* shared rules, -1 until built */
    int32_t ws, chr, str, value, obj_any, arr_any, int_any, num_any;
    int32_t digits[17];                 /* digits[k]: 0..k digits */
    int32_t chars[JSCHEMA_MAX_COUNT + 1]; /* chars[k]: 0..k characters */
} jsc;

/* ---- errors and locations ---- */

static int32_t jsc_fail(jsc *c, mica_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int32_t jsc_fail(jsc *c, mica_status st, const char *fmt, ...) {
    if (c->failed) return -1;
    c->failed = true;
    c->st = st;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    mica_err_set(c->err, st, "%s at %s", msg, c->path_len ? c->path : "#");
    return -1;
}

static size_t path_push(jsc *c, const char *a, const char *b) {
    size_t old = c->path_len;
    if (!old) c->path_len = (size_t)snprintf(c->path, sizeof c->path, "#");
    int k = snprintf(c->path + c->path_len, sizeof c->path - c->path_len, "/%s%s%s", a, b ? "/" : "", b ? b : "");
    if (k > 0) c->path_len = MICA_MIN(c->path_len + (size_t)k, sizeof c->path - 1);
    return old;
}

static void path_pop(jsc *c, size_t old) {
    c->path_len = old;
    c->path[old] = '\0';
}

/* ---- small builders ---- */

static void add_alt(jsc *c, int32_t rule, gseq *q) { gbuild_alt(c->gb, rule, q); }

static void seq_range(jsc *c, gseq *q, unsigned lo, unsigned hi) {
    gset s = {{0}};
    gset_add_range(&s, lo, hi);
    gseq_set(c->gb, q, &s);
}

int32_t json_schema_ws_rule(gbuild *gb) {
    /* ws ::= "" | " " | "\n" ind[MAX]; ind[k] ::= "" | [ \t] ind[k-1]; ind[0] ::= "" */
    gset s = {{0}};
    gset_add(&s, ' ');
    gset_add(&s, '\t');
    gseq q = {0};
    int32_t ind = gbuild_rule_of(gb, &q);
    for (int k = 1; k <= JSCHEMA_MAX_WS; k++) {
        int32_t r = gbuild_rule(gb);
        gseq_set(gb, &q, &s);
        gseq_ref(gb, &q, ind);
        gbuild_alt(gb, r, &q);
        gbuild_alt(gb, r, &q); /* q is empty again: the "" alternative */
        ind = r;
    }
    int32_t ws = gbuild_rule(gb);
    gbuild_alt(gb, ws, &q);
    gseq_byte(gb, &q, ' '), gbuild_alt(gb, ws, &q);
    gseq_byte(gb, &q, '\n'), gseq_ref(gb, &q, ind), gbuild_alt(gb, ws, &q);
    gseq_free(&q);
    return ws;
}

/* One JSON string character: UTF-8 (RFC 3629) other than " \ and controls, or an escape. */
static int32_t char_rule(jsc *c) {
    if (c->chr >= 0) return c->chr;
    gbuild *gb = c->gb;
    gseq q = {0};
    /* \u escapes: four hex digits, no surrogates (D800-DFFF), not 0000 */
    gset hex = {{0}};
    gset_add_range(&hex, '0', '9');
    gset_add_range(&hex, 'a', 'f');
    gset_add_range(&hex, 'A', 'F');
    gset nz = hex;
    nz.bits['0' >> 3] &= (uint8_t)~(1u << ('0' & 7));
    int32_t u00 = gbuild_rule(gb);
    gseq_byte(gb, &q, '0'), gseq_set(gb, &q, &nz), add_alt(c, u00, &q);
    gseq_set(gb, &q, &nz), gseq_set(gb, &q, &hex), add_alt(c, u00, &q);
    int32_t u0 = gbuild_rule(gb);
    gseq_byte(gb, &q, '0'), gseq_ref(gb, &q, u00), add_alt(c, u0, &q);
    gseq_set(gb, &q, &nz), gseq_set(gb, &q, &hex), gseq_set(gb, &q, &hex), add_alt(c, u0, &q);
    int32_t u = gbuild_rule(gb);
    gseq_byte(gb, &q, '0'), gseq_ref(gb, &q, u0), add_alt(c, u, &q);
    gset a = {{0}};
    gset_add_range(&a, '1', '9'), gset_add_range(&a, 'a', 'c'), gset_add_range(&a, 'A', 'C');
    gseq_set(gb, &q, &a);
    for (int i = 0; i < 3; i++) gseq_set(gb, &q, &hex);
    add_alt(c, u, &q);
    gset d = {{0}};
    gset_add(&d, 'd'), gset_add(&d, 'D');
    gseq_set(gb, &q, &d), seq_range(c, &q, '0', '7'), gseq_set(gb, &q, &hex), gseq_set(gb, &q, &hex);
    add_alt(c, u, &q);
    gset ef = {{0}};
    gset_add_range(&ef, 'e', 'f'), gset_add_range(&ef, 'E', 'F');
    gseq_set(gb, &q, &ef);
    for (int i = 0; i < 3; i++) gseq_set(gb, &q, &hex);
    add_alt(c, u, &q);

    int32_t r = gbuild_rule(gb);
    gset plain = {{0}};
    gset_add_range(&plain, 0x20, 0x7f);
    plain.bits['"' >> 3] &= (uint8_t)~(1u << ('"' & 7));
    plain.bits['\\' >> 3] &= (uint8_t)~(1u << ('\\' & 7));
    gseq_set(gb, &q, &plain), add_alt(c, r, &q);
    gset cont = {{0}};
    gset_add_range(&cont, 0x80, 0xbf);
    seq_range(c, &q, 0xc2, 0xdf), gseq_set(gb, &q, &cont), add_alt(c, r, &q);
    gseq_byte(gb, &q, 0xe0), seq_range(c, &q, 0xa0, 0xbf), gseq_set(gb, &q, &cont), add_alt(c, r, &q);
    gset e3 = {{0}};
    gset_add_range(&e3, 0xe1, 0xec), gset_add_range(&e3, 0xee, 0xef);
    gseq_set(gb, &q, &e3), gseq_set(gb, &q, &cont), gseq_set(gb, &q, &cont), add_alt(c, r, &q);
    gseq_byte(gb, &q, 0xed), seq_range(c, &q, 0x80, 0x9f), gseq_set(gb, &q, &cont), add_alt(c, r, &q);
    gseq_byte(gb, &q, 0xf0), seq_range(c, &q, 0x90, 0xbf), gseq_set(gb, &q, &cont), gseq_set(gb, &q, &cont);
    add_alt(c, r, &q);
    seq_range(c, &q, 0xf1, 0xf3);
    for (int i = 0; i < 3; i++) gseq_set(gb, &q, &cont);
    add_alt(c, r, &q);
    gseq_byte(gb, &q, 0xf4), seq_range(c, &q, 0x80, 0x8f), gseq_set(gb, &q, &cont), gseq_set(gb, &q, &cont);
    add_alt(c, r, &q);
    gset esc = {{0}};
    for (const char *e = "\"\\/bfnrt"; *e; e++) gset_add(&esc, (uint8_t)*e);
    gseq_byte(gb, &q, '\\'), gseq_set(gb, &q, &esc), add_alt(c, r, &q);
    gseq_byte(gb, &q, '\\'), gseq_byte(gb, &q, 'u'), gseq_ref(gb, &q, u), add_alt(c, r, &q);
    gseq_free(&q);
    return c->chr = r;
}

/* chars[k] ::= "" | char chars[k-1]: zero to k characters. */
static int32_t chars_upto(jsc *c, int k) {
    if (c->chars[k] >= 0) return c->chars[k];
    gseq q = {0};
    int32_t r;
    if (k == 0) {
        r = gbuild_rule_of(c->gb, &q);
    } else {
        int32_t prev = chars_upto(c, k - 1), ch = char_rule(c);
        r = gbuild_rule(c->gb);
        gseq_ref(c->gb, &q, ch), gseq_ref(c->gb, &q, prev), add_alt(c, r, &q);
        add_alt(c, r, &q);
    }
    gseq_free(&q);
    return c->chars[k] = r;
}

/* "..." with min..max characters; max < 0: unbounded. */
static int32_t string_rule(jsc *c, int min, int max) {
    if (min == 0 && max < 0 && c->str >= 0) return c->str;
    gbuild *gb = c->gb;
    int32_t ch = char_rule(c);
    gseq q = {0};
    int32_t r = gbuild_rule(gb);
    gseq_byte(gb, &q, '"');
    for (int i = 0; i < min; i++) gseq_ref(gb, &q, ch);
    if (max < 0) {
        /* body ::= char body | '"' */
        int32_t body = gbuild_rule(gb);
        gseq body_q = {0};
        gseq_ref(gb, &body_q, ch), gseq_ref(gb, &body_q, body), add_alt(c, body, &body_q);
        gseq_byte(gb, &body_q, '"'), add_alt(c, body, &body_q);
        gseq_free(&body_q);
        gseq_ref(gb, &q, body);
    } else {
        gseq_ref(gb, &q, chars_upto(c, max - min));
        gseq_byte(gb, &q, '"');
    }
    add_alt(c, r, &q);
    gseq_free(&q);
    if (min == 0 && max < 0) c->str = r;
    return r;
}

/* digits[k]: 0..k decimal digits. */
static int32_t digits_upto(jsc *c, int k) {
    if (c->digits[k] >= 0) return c->digits[k];
    gseq q = {0};
    int32_t r;
    if (k == 0) {
        r = gbuild_rule_of(c->gb, &q);
    } else {
        int32_t prev = digits_upto(c, k - 1);
        r = gbuild_rule(c->gb);
        seq_range(c, &q, '0', '9'), gseq_ref(c->gb, &q, prev), add_alt(c, r, &q);
        add_alt(c, r, &q);
    }
    gseq_free(&q);
    return c->digits[k] = r;
}

/* Integers: "-"? ("0" | [1-9] [0-9]{0,15}). */
static int32_t int_rule(jsc *c) {
    if (c->int_any >= 0) return c->int_any;
    gbuild *gb = c->gb;
    gseq q = {0};
    int32_t r = gbuild_rule(gb);
    for (int neg = 0; neg <= 1; neg++) {
        if (neg) gseq_byte(gb, &q, '-');
        gseq_byte(gb, &q, '0'), add_alt(c, r, &q);
        if (neg) gseq_byte(gb, &q, '-');
        seq_range(c, &q, '1', '9'), gseq_ref(gb, &q, digits_upto(c, 15)), add_alt(c, r, &q);
    }
    gseq_free(&q);
    return c->int_any = r;
}

/* Numbers: an integer, an optional fraction of 1..16 digits, an optional exponent of 1..2 digits. */
static int32_t number_rule(jsc *c) {
    if (c->num_any >= 0) return c->num_any;
    gbuild *gb = c->gb;
    gseq q = {0};
    int32_t frac = gbuild_rule(gb);
    add_alt(c, frac, &q);
    gseq_byte(gb, &q, '.'), seq_range(c, &q, '0', '9'), gseq_ref(gb, &q, digits_upto(c, 15)), add_alt(c, frac, &q);
    int32_t sign = gbuild_rule(gb);
    add_alt(c, sign, &q);
    gseq_byte(gb, &q, '+'), add_alt(c, sign, &q);
    gseq_byte(gb, &q, '-'), add_alt(c, sign, &q);
    int32_t ex = gbuild_rule(gb);
    add_alt(c, ex, &q);
    gset e = {{0}};
    gset_add(&e, 'e'), gset_add(&e, 'E');
    gseq_set(gb, &q, &e), gseq_ref(gb, &q, sign), seq_range(c, &q, '0', '9'), gseq_ref(gb, &q, digits_upto(c, 1));
    add_alt(c, ex, &q);
    gseq_ref(gb, &q, int_rule(c)), gseq_ref(gb, &q, frac), gseq_ref(gb, &q, ex);
    int32_t r = gbuild_rule_of(gb, &q);
    gseq_free(&q);
    return c->num_any = r;
}

/* A list of items: "[" ws ( item ws ("," ws item ws){min-1 .. max-1} )? "]"; max < 0 unbounded. */
static int32_t list_rule(jsc *c, int32_t item, int min, int max) {
    gbuild *gb = c->gb;
    gseq q = {0};
    int32_t r = gbuild_rule(gb);
    if (min == 0) gseq_byte(gb, &q, '['), gseq_ref(gb, &q, c->ws), gseq_byte(gb, &q, ']'), add_alt(c, r, &q);
    if (max != 0) {
        /* next ::= "," ws item ws */
        gseq_byte(gb, &q, ','), gseq_ref(gb, &q, c->ws), gseq_ref(gb, &q, item), gseq_ref(gb, &q, c->ws);
        int32_t next = gbuild_rule_of(gb, &q);
        int32_t tail; /* optional further items, then "]" */
        if (max < 0) {
            tail = gbuild_rule(gb);
            gseq_ref(gb, &q, next), gseq_ref(gb, &q, tail), add_alt(c, tail, &q);
            gseq_byte(gb, &q, ']'), add_alt(c, tail, &q);
        } else {
            int extra = max - MICA_MAX(min, 1);
            gseq_byte(gb, &q, ']');
            tail = gbuild_rule_of(gb, &q);
            for (int k = 0; k < extra; k++) {
                int32_t t = gbuild_rule(gb);
                gseq_ref(gb, &q, next), gseq_ref(gb, &q, tail), add_alt(c, t, &q);
                gseq_byte(gb, &q, ']'), add_alt(c, t, &q);
                tail = t;
            }
        }
        gseq_byte(gb, &q, '['), gseq_ref(gb, &q, c->ws), gseq_ref(gb, &q, item), gseq_ref(gb, &q, c->ws);
        for (int k = 1; k < min; k++) gseq_ref(gb, &q, next);
        gseq_ref(gb, &q, tail);
        add_alt(c, r, &q);
    }
    gseq_free(&q);
    return r;
}

/* Any JSON value, and any object / array of them. */
static int32_t any_value(jsc *c) {
    if (c->value >= 0) return c->value;
    gbuild *gb = c->gb;
    c->value = gbuild_rule(gb);
    c->obj_any = gbuild_rule(gb);
    c->arr_any = list_rule(c, c->value, 0, -1);
    gseq q = {0};
    int32_t s = string_rule(c, 0, -1);
    /* member ::= string ws ":" ws value ws */
    gseq_ref(gb, &q, s), gseq_ref(gb, &q, c->ws), gseq_byte(gb, &q, ':'), gseq_ref(gb, &q, c->ws);
    gseq_ref(gb, &q, c->value), gseq_ref(gb, &q, c->ws);
    int32_t member = gbuild_rule_of(gb, &q);
    /* objects: "{" ws ( member ("," ws member)* )? "}" */
    int32_t more = gbuild_rule(gb);
    gseq_byte(gb, &q, ','), gseq_ref(gb, &q, c->ws), gseq_ref(gb, &q, member), gseq_ref(gb, &q, more);
    add_alt(c, more, &q);
    gseq_byte(gb, &q, '}'), add_alt(c, more, &q);
    gseq_byte(gb, &q, '{'), gseq_ref(gb, &q, c->ws), gseq_byte(gb, &q, '}'), add_alt(c, c->obj_any, &q);
    gseq_byte(gb, &q, '{'), gseq_ref(gb, &q, c->ws), gseq_ref(gb, &q, member), gseq_ref(gb, &q, more);
    add_alt(c, c->obj_any, &q);
    gseq_ref(gb, &q, c->obj_any), add_alt(c, c->value, &q);
    gseq_ref(gb, &q, c->arr_any), add_alt(c, c->value, &q);
    gseq_ref(gb, &q, s), add_alt(c, c->value, &q);
    gseq_ref(gb, &q, number_rule(c)), add_alt(c, c->value, &q);
    gseq_lit(gb, &q, "true", 4), add_alt(c, c->value, &q);
    gseq_lit(gb, &q, "false", 5), add_alt(c, c->value, &q);
    gseq_lit(gb, &q, "null", 4), add_alt(c, c->value, &q);
    gseq_free(&q);
    return c->value;
}

/* ---- schemas ---- */

static int32_t schema_rule(jsc *c, json_t *s, int depth);

static bool type_matches(json_t *v, const char *t) {
    if (!strcmp(t, "object")) return json_is_object(v);
    if (!strcmp(t, "array")) return json_is_array(v);
    if (!strcmp(t, "string")) return json_is_string(v);
    if (!strcmp(t, "boolean")) return json_is_boolean(v);
    if (!strcmp(t, "null")) return json_is_null(v);
    if (!strcmp(t, "number")) return json_is_number(v);
    if (!strcmp(t, "integer"))
        return json_is_integer(v) || (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v) &&
                                      fabs(json_real_value(v)) < 1e15);
    return false;
}

/* The types a schema's "type" allows, as a bit set; 0 with an error. */
enum { T_OBJECT = 1, T_ARRAY = 2, T_STRING = 4, T_NUMBER = 8, T_INTEGER = 16, T_BOOLEAN = 32, T_NULL = 64 };
static const char *const type_names[] = {"object", "array", "string", "number", "integer", "boolean", "null"};

static unsigned parse_types(jsc *c, json_t *t) {
    unsigned bits = 0;
    size_t n = json_is_array(t) ? json_array_size(t) : 1;
    if (!json_is_string(t) && !(json_is_array(t) && n > 0)) {
        jsc_fail(c, MICA_ERR_INVALID_ARG, "'type' must be a type name or a non-empty array of them");
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_is_array(t) ? json_array_get(t, i) : t;
        unsigned b = 0;
        for (unsigned k = 0; k < MICA_ARRAY_LEN(type_names) && json_is_string(e); k++)
            if (!strcmp(json_string_value(e), type_names[k])) b = 1u << k;
        if (!b) {
            jsc_fail(c, MICA_ERR_INVALID_ARG, "unknown type in 'type'");
            return 0;
        }
        bits |= b;
    }
    return bits;
}

static bool value_in_types(json_t *v, unsigned types) {
    for (unsigned k = 0; k < MICA_ARRAY_LEN(type_names); k++)
        if ((types & (1u << k)) && type_matches(v, type_names[k])) return true;
    return false;
}

/* A literal alternative: the compact JSON text of v. */
static void add_literal(jsc *c, int32_t r, json_t *v) {
    char *txt = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!txt) {
        jsc_fail(c, MICA_ERR_NOMEM, "out of memory");
        return;
    }
    gseq q = {0};
    gseq_lit(c->gb, &q, txt, strlen(txt));
    add_alt(c, r, &q);
    gseq_free(&q);
    free(txt);
}

/* Non-negative integer keyword <= JSCHEMA_MAX_COUNT (*out untouched if absent); false on error. */
static bool count_kw(jsc *c, json_t *s, const char *kw, int *out, bool clamp) {
    json_t *v = json_object_get(s, kw);
    if (!v) return true;
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        jsc_fail(c, MICA_ERR_INVALID_ARG, "'%s' must be a non-negative integer", kw);
        return false;
    }
    json_int_t n = json_integer_value(v);
    if (n > JSCHEMA_MAX_COUNT) {
        if (!clamp) {
            jsc_fail(c, MICA_ERR_UNSUPPORTED, "'%s' above %d is not supported", kw, JSCHEMA_MAX_COUNT);
            return false;
        }
        n = JSCHEMA_MAX_COUNT;
    }
    *out = (int)n;
    return true;
}

/* Extra object keys: [A-Za-z0-9_]+ but none of the listed names (a trie over the names). */
static int32_t extra_key_rule(jsc *c, const char *const *names, size_t n, size_t depth, size_t lo, size_t hi,
                              int32_t free_rule) {
    /* names[lo..hi) are sorted and share `depth` bytes; the rule matches the rest of the key and the quote */
    gbuild *gb = c->gb;
    gset ident = {{0}};
    gset_add_range(&ident, 'a', 'z'), gset_add_range(&ident, 'A', 'Z'), gset_add_range(&ident, '0', '9');
    gset_add(&ident, '_');
    int32_t r = gbuild_rule(gb);
    gseq q = {0};
    bool terminal = false;
    gset edges = {{0}};
    if (depth >= JSCHEMA_MAX_KEY_DEPTH) { /* bounded recursion: here the key can only end (if that is no listed name) */
        for (size_t i = lo; i < hi; i++) terminal |= strlen(names[i]) == depth;
        if (!terminal) gseq_byte(gb, &q, '"'), add_alt(c, r, &q);
        gseq_free(&q);
        return r; /* without alternatives when terminal: the grammar drops the path */
    }
    for (size_t i = lo; i < hi;) {
        size_t len = strlen(names[i]);
        if (len == depth) {
            terminal = true;
            i++;
            continue;
        }
        uint8_t b = (uint8_t)names[i][depth];
        size_t j = i + 1;
        while (j < hi && strlen(names[j]) > depth && (uint8_t)names[j][depth] == b) j++;
        if (gset_has(&ident, b)) {
            gset_add(&edges, b);
            int32_t child = extra_key_rule(c, names, n, depth + 1, i, j, free_rule);
            gseq_byte(gb, &q, b), gseq_ref(gb, &q, child), add_alt(c, r, &q);
        }
        i = j;
    }
    gset other = ident;
    for (int k = 0; k < 32; k++) other.bits[k] &= (uint8_t)~edges.bits[k];
    gseq_set(gb, &q, &other), gseq_ref(gb, &q, free_rule), add_alt(c, r, &q);
    if (!terminal && depth > 0) gseq_byte(gb, &q, '"'), add_alt(c, r, &q);
    gseq_free(&q);
    return r;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static void object_alts(jsc *c, int32_t r, json_t *s, int depth) {
    gbuild *gb = c->gb;
    json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
    json_t *addl = json_object_get(s, "additionalProperties");
    if (props && !json_is_object(props)) { jsc_fail(c, MICA_ERR_INVALID_ARG, "'properties' must be an object"); return; }
    if (req && !json_is_array(req)) { jsc_fail(c, MICA_ERR_INVALID_ARG, "'required' must be an array"); return; }
    if (addl && !json_is_boolean(addl) && !json_is_object(addl)) {
        jsc_fail(c, MICA_ERR_INVALID_ARG, "'additionalProperties' must be a boolean or a schema");
        return;
    }
    size_t np = props ? json_object_size(props) : 0, nr = req ? json_array_size(req) : 0;
    if (np + nr > JSCHEMA_MAX_NODES) { jsc_fail(c, MICA_ERR_LIMIT, "too many properties"); return; }
    /* members: the listed properties, then required names that are not listed */
    const char **names = calloc(np + nr + 1, sizeof *names);
    json_t **schemas = calloc(np + nr + 1, sizeof *schemas);
    bool *required = calloc(np + nr + 1, sizeof *required);
    gseq q = {0};
    if (!names || !schemas || !required) { jsc_fail(c, MICA_ERR_NOMEM, "out of memory"); goto done; }
    size_t n = 0;
    const char *key;
    json_t *v;
    json_object_foreach(props, key, v) {
        names[n] = key;
        schemas[n++] = v;
    }
    for (size_t i = 0; i < nr; i++) {
        json_t *e = json_array_get(req, i);
        if (!json_is_string(e)) { jsc_fail(c, MICA_ERR_INVALID_ARG, "'required' must list strings"); goto done; }
        size_t k = 0;
        while (k < n && strcmp(names[k], json_string_value(e)) != 0) k++;
        if (k == n) {
            if (json_is_false(addl)) {
                jsc_fail(c, MICA_ERR_INVALID_ARG, "required property '%s' is not allowed by additionalProperties "
                         "false (unsatisfiable)", json_string_value(e));
                goto done;
            }
            names[n] = json_string_value(e);
            schemas[n++] = json_true();
        }
        required[k] = true;
    }
    /* value rules of the members */
    int32_t *kv = calloc(n + 1, sizeof *kv);
    if (!kv) { jsc_fail(c, MICA_ERR_NOMEM, "out of memory"); goto done; }
    for (size_t i = 0; i < n && !c->failed; i++) {
        size_t old = path_push(c, "properties", names[i]);
        int32_t vr = schema_rule(c, schemas[i], depth + 1);
        path_pop(c, old);
        json_t *ks = json_string(names[i]);
        char *kt = ks ? json_dumps(ks, JSON_ENCODE_ANY) : NULL;
        json_decref(ks);
        if (!kt) { jsc_fail(c, MICA_ERR_NOMEM, "out of memory"); break; }
        /* kv ::= "key" ws ":" ws value ws */
        gseq_lit(gb, &q, kt, strlen(kt)), gseq_ref(gb, &q, c->ws), gseq_byte(gb, &q, ':'), gseq_ref(gb, &q, c->ws);
        gseq_ref(gb, &q, vr), gseq_ref(gb, &q, c->ws);
        kv[i] = gbuild_rule_of(gb, &q);
        free(kt);
    }
    int32_t extra = -1; /* extra member without the separator */
    if (!c->failed && addl && !json_is_false(addl)) {
        size_t old = path_push(c, "additionalProperties", NULL);
        int32_t vr = json_is_object(addl) ? schema_rule(c, addl, depth + 1) : any_value(c);
        path_pop(c, old);
        gset ident = {{0}};
        gset_add_range(&ident, 'a', 'z'), gset_add_range(&ident, 'A', 'Z'), gset_add_range(&ident, '0', '9');
        gset_add(&ident, '_');
        /* free[k] ::= '"' | ident free[k-1]: the rest of a key that already differs, <= JSCHEMA_MAX_KEY bytes */
        gseq_byte(gb, &q, '"');
        int32_t fr = gbuild_rule_of(gb, &q);
        for (int k = 1; k <= JSCHEMA_MAX_KEY; k++) {
            int32_t f2 = gbuild_rule(gb);
            gseq_set(gb, &q, &ident), gseq_ref(gb, &q, fr), add_alt(c, f2, &q);
            gseq_byte(gb, &q, '"'), add_alt(c, f2, &q);
            fr = f2;
        }
        const char **sorted = calloc(n + 1, sizeof *sorted);
        if (!sorted) { free(kv); jsc_fail(c, MICA_ERR_NOMEM, "out of memory"); goto done; }
        memcpy(sorted, names, n * sizeof *sorted);
        qsort(sorted, n, sizeof *sorted, cmp_str);
        int32_t key_rest = extra_key_rule(c, sorted, n, 0, 0, n, fr);
        free(sorted);
        gseq_byte(gb, &q, '"'), gseq_ref(gb, &q, key_rest), gseq_ref(gb, &q, c->ws), gseq_byte(gb, &q, ':');
        gseq_ref(gb, &q, c->ws), gseq_ref(gb, &q, vr), gseq_ref(gb, &q, c->ws);
        extra = gbuild_rule_of(gb, &q);
    }
    if (c->failed) { free(kv); goto done; }
    /* A[i][f]: members i.. with f = nothing emitted yet; A[n][f] = extra members then "}" */
    int32_t next_first = gbuild_rule(gb), next_more = gbuild_rule(gb);
    {
        int32_t af = next_first, am = next_more;
        if (extra >= 0) {
            gseq_ref(gb, &q, extra), gseq_ref(gb, &q, am), add_alt(c, af, &q);
            gseq_byte(gb, &q, ','), gseq_ref(gb, &q, c->ws), gseq_ref(gb, &q, extra), gseq_ref(gb, &q, am);
            add_alt(c, am, &q);
        }
        gseq_byte(gb, &q, '}'), add_alt(c, af, &q);
        gseq_byte(gb, &q, '}'), add_alt(c, am, &q);
    }
    for (size_t i = n; i-- > 0;) {
        int32_t af = gbuild_rule(gb), am = gbuild_rule(gb);
        gseq_ref(gb, &q, kv[i]), gseq_ref(gb, &q, next_more), add_alt(c, af, &q);
        gseq_byte(gb, &q, ','), gseq_ref(gb, &q, c->ws), gseq_ref(gb, &q, kv[i]), gseq_ref(gb, &q, next_more);
        add_alt(c, am, &q);
        if (!required[i]) {
            gseq_ref(gb, &q, next_first), add_alt(c, af, &q);
            gseq_ref(gb, &q, next_more), add_alt(c, am, &q);
        }
        next_first = af;
        next_more = am;
    }
    gseq_byte(gb, &q, '{'), gseq_ref(gb, &q, c->ws), gseq_ref(gb, &q, next_first), add_alt(c, r, &q);
    free(kv);
done:
    gseq_free(&q);
    free(names);
    free(schemas);
    free(required);
}

/*
 * Arrays: prefixItems (each position its schema; all of them are generated,
 * or the first maxItems), then items for the rest (absent or true: any
 * values; false: none), within minItems..maxItems.
 */
static void array_alts(jsc *c, int32_t r, json_t *s, int depth) {
    gbuild *gb = c->gb;
    json_t *items = json_object_get(s, "items"), *prefix = json_object_get(s, "prefixItems");
    int min = 0, max = -1;
    if (!count_kw(c, s, "minItems", &min, false) || !count_kw(c, s, "maxItems", &max, true)) return;
    if (max >= 0 && max < min) { jsc_fail(c, MICA_ERR_INVALID_ARG, "maxItems below minItems (unsatisfiable)"); return; }
    if (prefix && (!json_is_array(prefix) || json_array_size(prefix) > JSCHEMA_MAX_COUNT)) {
        jsc_fail(c, MICA_ERR_INVALID_ARG, "'prefixItems' must be an array of at most %d schemas", JSCHEMA_MAX_COUNT);
        return;
    }
    int32_t item;
    bool no_more = json_is_false(items);
    if (!items || json_is_true(items) || no_more) {
        item = any_value(c);
    } else if (json_is_object(items)) {
        size_t old = path_push(c, "items", NULL);
        item = schema_rule(c, items, depth + 1);
        path_pop(c, old);
    } else {
        jsc_fail(c, MICA_ERR_UNSUPPORTED, "'items' must be a schema (use prefixItems for tuples)");
        return;
    }
    int k = prefix ? (int)json_array_size(prefix) : 0;
    if (max >= 0 && k > max) k = max;
    int lo = MICA_MAX(min - k, 0), hi = no_more ? 0 : (max < 0 ? -1 : max - k); /* items after the prefix */
    if (no_more && lo > 0) { jsc_fail(c, MICA_ERR_INVALID_ARG, "minItems beyond the prefix with items false (unsatisfiable)"); return; }
    if (c->failed) return;
    gseq q = {0};
    if (k == 0) {
        gseq_ref(gb, &q, list_rule(c, item, lo, hi));
        add_alt(c, r, &q);
        gseq_free(&q);
        return;
    }
    /* next ::= "," ws item ws; tail: lo..hi of them, then "]" */
    gseq_byte(gb, &q, ','), gseq_ref(gb, &q, c->ws), gseq_ref(gb, &q, item), gseq_ref(gb, &q, c->ws);
    int32_t next = gbuild_rule_of(gb, &q);
    int32_t tail;
    if (hi < 0) {
        tail = gbuild_rule(gb);
        gseq_ref(gb, &q, next), gseq_ref(gb, &q, tail), add_alt(c, tail, &q);
        gseq_byte(gb, &q, ']'), add_alt(c, tail, &q);
    } else {
        gseq_byte(gb, &q, ']');
        tail = gbuild_rule_of(gb, &q);
        for (int e = 0; e < hi - lo; e++) {
            int32_t t = gbuild_rule(gb);
            gseq_ref(gb, &q, next), gseq_ref(gb, &q, tail), add_alt(c, t, &q);
            gseq_byte(gb, &q, ']'), add_alt(c, t, &q);
            tail = t;
        }
    }
    gseq_byte(gb, &q, '['), gseq_ref(gb, &q, c->ws);
    for (int i = 0; i < k && !c->failed; i++) {
        char idx[24];
        snprintf(idx, sizeof idx, "%d", i);
        size_t old = path_push(c, "prefixItems", idx);
        int32_t pr = schema_rule(c, json_array_get(prefix, (size_t)i), depth + 1);
        path_pop(c, old);
        if (i) gseq_byte(gb, &q, ','), gseq_ref(gb, &q, c->ws);
        gseq_ref(gb, &q, pr), gseq_ref(gb, &q, c->ws);
    }
    for (int e = 0; e < lo; e++) gseq_ref(gb, &q, next);
    gseq_ref(gb, &q, tail);
    add_alt(c, r, &q);
    gseq_free(&q);
}

/* ---- numeric ranges ---- */

#define JSCHEMA_INT_LIMIT 9999999999999999LL /* 16 digits: the integers the grammar spells */

/*
 * Alternatives of rule r for the n-digit strings between lo and hi (same
 * length, lo <= hi, digit by digit), after the literal `sign` and the sets
 * acc[0..depth): the classic split into a lower edge, a middle of free
 * digits and an upper edge; a full span [0..0, 9..9] is one alternative, so
 * a range costs O(n^2) symbols, not 2^n.
 */
static void digits_between(jsc *c, int32_t r, const char *sign, gset *acc, int depth, const char *lo, const char *hi,
                           int n) {
    bool full = true;
    for (int i = 0; i < n && full; i++) full = lo[i] == '0' && hi[i] == '9';
    if (n == 0 || full) {
        gseq q = {0};
        gseq_lit(c->gb, &q, sign, strlen(sign));
        for (int i = 0; i < depth; i++) gseq_set(c->gb, &q, &acc[i]);
        for (int i = 0; i < n; i++) seq_range(c, &q, '0', '9');
        add_alt(c, r, &q);
        gseq_free(&q);
        return;
    }
    static const char zeros[] = "0000000000000000", nines[] = "9999999999999999";
    acc[depth] = (gset){{0}};
    if (lo[0] == hi[0]) {
        gset_add(&acc[depth], (uint8_t)lo[0]);
        digits_between(c, r, sign, acc, depth + 1, lo + 1, hi + 1, n - 1);
        return;
    }
    gset_add(&acc[depth], (uint8_t)lo[0]);
    digits_between(c, r, sign, acc, depth + 1, lo + 1, nines, n - 1);
    if (lo[0] + 1 <= hi[0] - 1) {
        acc[depth] = (gset){{0}};
        gset_add_range(&acc[depth], (uint8_t)(lo[0] + 1), (uint8_t)(hi[0] - 1));
        digits_between(c, r, sign, acc, depth + 1, zeros, nines, n - 1);
    }
    acc[depth] = (gset){{0}};
    gset_add(&acc[depth], (uint8_t)hi[0]);
    digits_between(c, r, sign, acc, depth + 1, zeros, hi + 1, n - 1);
}

/* Alternatives of r for the decimal numerals (no leading zeros) of a..b, 0 <= a <= b <= JSCHEMA_INT_LIMIT. */
static void naturals_between(jsc *c, int32_t r, const char *sign, long long a, long long b) {
    char ls[24], hs[24];
    int la = snprintf(ls, sizeof ls, "%lld", a), lb = snprintf(hs, sizeof hs, "%lld", b);
    for (int len = la; len <= lb; len++) {
        char l[24], h[24];
        if (len == la) memcpy(l, ls, (size_t)len + 1);
        else l[0] = '1', memset(l + 1, '0', (size_t)len - 1), l[len] = '\0';
        if (len == lb) memcpy(h, hs, (size_t)len + 1);
        else memset(h, '9', (size_t)len), h[len] = '\0';
        gset acc[20];
        digits_between(c, r, sign, acc, 0, l, h, len);
    }
}

/* A rule for the integers a..b (|a|, |b| <= JSCHEMA_INT_LIMIT, a <= b). */
static int32_t int_range_rule(jsc *c, long long a, long long b) {
    int32_t r = gbuild_rule(c->gb);
    if (b >= 0) naturals_between(c, r, "", a > 0 ? a : 0, b);
    if (a < 0) naturals_between(c, r, "-", b < 0 ? -b : 1, -a); /* "-0" is never written */
    return r;
}

/* A bound keyword as a number; false (with an error) when present and not a number. */
static bool bound_kw(jsc *c, json_t *s, const char *kw, bool *has, double *v) {
    json_t *x = json_object_get(s, kw);
    *has = x != NULL;
    if (!x) return true;
    if (!json_is_number(x)) {
        jsc_fail(c, MICA_ERR_INVALID_ARG, "'%s' must be a number", kw);
        return false;
    }
    *v = json_number_value(x);
    return true;
}

/*
 * integer: any bounds (minimum, maximum, exclusive ones) within 16 digits.
 * number: without bounds any number; with bounds only integral ones with a
 * lower bound >= 0: an integer part in [lo, hi - 1] and any fraction, or hi
 * itself (a subset of the range; no exponent).
 */
static void numeric_alts(jsc *c, int32_t r, json_t *s, bool integer) {
    bool has_min, has_max, has_xmin, has_xmax;
    double mn = 0, mx = 0, xmn = 0, xmx = 0;
    if (!bound_kw(c, s, "minimum", &has_min, &mn) || !bound_kw(c, s, "maximum", &has_max, &mx) ||
        !bound_kw(c, s, "exclusiveMinimum", &has_xmin, &xmn) || !bound_kw(c, s, "exclusiveMaximum", &has_xmax, &xmx))
        return;
    if (json_object_get(s, "multipleOf")) { jsc_fail(c, MICA_ERR_UNSUPPORTED, "unsupported JSON Schema keyword 'multipleOf'"); return; }
    gseq q = {0};
    const double lim = (double)JSCHEMA_INT_LIMIT;
    if (!has_min && !has_max && !has_xmin && !has_xmax) {
        gseq_ref(c->gb, &q, integer ? int_rule(c) : number_rule(c));
    } else if (integer) {
        double lo = -lim, hi = lim; /* the integers in [lo, hi] */
        if (has_min) lo = fmax(lo, ceil(mn));
        if (has_xmin) lo = fmax(lo, floor(xmn) + 1);
        if (has_max) hi = fmin(hi, floor(mx));
        if (has_xmax) hi = fmin(hi, ceil(xmx) - 1);
        if (!(lo <= hi)) { jsc_fail(c, MICA_ERR_INVALID_ARG, "no integer within the bounds (unsatisfiable)"); return; }
        gseq_ref(c->gb, &q, int_range_rule(c, (long long)lo, (long long)hi));
    } else {
        bool integral = (!has_min || mn == floor(mn)) && (!has_max || mx == floor(mx)) &&
                        (!has_xmin || xmn == floor(xmn)) && (!has_xmax || xmx == floor(xmx));
        double lo = has_min ? mn : has_xmin ? xmn + 1 : -1;
        if (!integral || lo < 0 || (has_min && has_xmin) || (has_max && has_xmax) || fabs(lo) > lim ||
            (has_max && fabs(mx) > lim) || (has_xmax && fabs(xmx) > lim)) {
            jsc_fail(c, MICA_ERR_UNSUPPORTED, "number bounds other than integers with a lower bound >= 0 are not "
                     "supported");
            return;
        }
        double hi = has_max ? mx : has_xmax ? xmx : lim + 1; /* the integer part is < hi */
        if (!(lo < hi || (has_max && lo == hi))) { jsc_fail(c, MICA_ERR_INVALID_ARG, "empty number range (unsatisfiable)"); return; }
        int32_t v = gbuild_rule(c->gb);
        if (lo < hi) { /* [lo, hi - 1] with an optional fraction */
            gseq f = {0};
            int32_t frac = gbuild_rule(c->gb);
            add_alt(c, frac, &f);
            gseq_byte(c->gb, &f, '.'), seq_range(c, &f, '0', '9'), gseq_ref(c->gb, &f, digits_upto(c, 15));
            add_alt(c, frac, &f);
            gseq_ref(c->gb, &f, int_range_rule(c, (long long)lo, (long long)fmin(hi - 1, lim))), gseq_ref(c->gb, &f, frac);
            add_alt(c, v, &f);
            gseq_free(&f);
        }
        if (has_max) {
            char num[32];
            snprintf(num, sizeof num, "%lld", (long long)mx);
            gseq f = {0};
            gseq_lit(c->gb, &f, num, strlen(num));
            add_alt(c, v, &f);
            gseq_free(&f);
        }
        gseq_ref(c->gb, &q, v);
    }
    add_alt(c, r, &q);
    gseq_free(&q);
}

/* ---- string formats ---- */

/* Appends [lo-hi] to q. */
static void q_range(jsc *c, gseq *q, unsigned lo, unsigned hi) { seq_range(c, q, lo, hi); }

/* A rule for 1..n bytes of set s. */
static int32_t set_repeat(jsc *c, const gset *s, int n) {
    gseq q = {0};
    int32_t r = gbuild_rule_of(c->gb, &q); /* zero more */
    for (int k = 1; k < n; k++) {
        int32_t r2 = gbuild_rule(c->gb);
        gseq_set(c->gb, &q, s), gseq_ref(c->gb, &q, r), add_alt(c, r2, &q);
        add_alt(c, r2, &q);
        r = r2;
    }
    gseq_set(c->gb, &q, s), gseq_ref(c->gb, &q, r);
    r = gbuild_rule_of(c->gb, &q);
    gseq_free(&q);
    return r;
}

/* Two-digit fields: [lo-hi] as alternatives of rule r ("01".."12" etc.), for lo >= 0, hi <= 99. */
static int32_t two_digits(jsc *c, int lo, int hi) {
    int32_t r = gbuild_rule(c->gb);
    gseq q = {0};
    for (int v = lo; v <= hi;) {
        int tens = v / 10, last = MICA_MIN(hi, tens * 10 + 9);
        gseq_byte(c->gb, &q, (uint8_t)('0' + tens)), q_range(c, &q, (unsigned)('0' + v % 10), (unsigned)('0' + last % 10));
        add_alt(c, r, &q);
        v = last + 1;
    }
    gseq_free(&q);
    return r;
}

/*
 * "format": date (YYYY-MM-DD), time (HH:MM:SS[.frac](Z|+HH:MM)), date-time,
 * uuid (8-4-4-4-12 lower-case hex), email (a plain local@domain.tld),
 * ipv4. Fields are range-checked (month 01-12, day 01-31, hour 00-23), not
 * calendar-checked (2023-02-31 is generated as a date). Other formats are
 * errors.
 */
static void format_alts(jsc *c, int32_t r, json_t *f) {
    const char *fmt = json_string_value(f);
    gbuild *gb = c->gb;
    gseq q = {0};
    if (!fmt) { jsc_fail(c, MICA_ERR_INVALID_ARG, "'format' must be a string"); return; }
    bool date = !strcmp(fmt, "date") || !strcmp(fmt, "date-time"), time = !strcmp(fmt, "time") || !strcmp(fmt, "date-time");
    gseq_byte(gb, &q, '"');
    if (date || time) {
        if (date) {
            for (int i = 0; i < 4; i++) q_range(c, &q, '0', '9');
            gseq_byte(gb, &q, '-'), gseq_ref(gb, &q, two_digits(c, 1, 12)), gseq_byte(gb, &q, '-');
            gseq_ref(gb, &q, two_digits(c, 1, 31));
        }
        if (date && time) gseq_byte(gb, &q, 'T');
        if (time) {
            int32_t hh = two_digits(c, 0, 23), mm = two_digits(c, 0, 59);
            gseq_ref(gb, &q, hh), gseq_byte(gb, &q, ':'), gseq_ref(gb, &q, mm), gseq_byte(gb, &q, ':');
            gseq_ref(gb, &q, mm);
            gseq fq = {0};
            int32_t frac = gbuild_rule(gb);
            add_alt(c, frac, &fq);
            gset dig = {{0}};
            gset_add_range(&dig, '0', '9');
            gseq_byte(gb, &fq, '.'), gseq_ref(gb, &fq, set_repeat(c, &dig, 6)), add_alt(c, frac, &fq);
            int32_t zone = gbuild_rule(gb);
            gseq_byte(gb, &fq, 'Z'), add_alt(c, zone, &fq);
            gset pm = {{0}};
            gset_add(&pm, '+'), gset_add(&pm, '-');
            gseq_set(gb, &fq, &pm), gseq_ref(gb, &fq, hh), gseq_byte(gb, &fq, ':'), gseq_ref(gb, &fq, mm);
            add_alt(c, zone, &fq);
            gseq_free(&fq);
            gseq_ref(gb, &q, frac), gseq_ref(gb, &q, zone);
        }
    } else if (!strcmp(fmt, "uuid")) {
        gset hex = {{0}};
        gset_add_range(&hex, '0', '9'), gset_add_range(&hex, 'a', 'f');
        static const int groups[] = {8, 4, 4, 4, 12};
        for (int g = 0; g < 5; g++) {
            if (g) gseq_byte(gb, &q, '-');
            for (int i = 0; i < groups[g]; i++) gseq_set(gb, &q, &hex);
        }
    } else if (!strcmp(fmt, "email")) {
        gset alnum = {{0}};
        gset_add_range(&alnum, 'a', 'z'), gset_add_range(&alnum, 'A', 'Z'), gset_add_range(&alnum, '0', '9');
        gset local = alnum;
        gset_add(&local, '.'), gset_add(&local, '_'), gset_add(&local, '+'), gset_add(&local, '-');
        gset lower = {{0}};
        gset_add_range(&lower, 'a', 'z');
        /* local part: an alphanumeric then up to 31 more; domain: labels of 1..32, a final label of 2..8 letters */
        gseq_set(gb, &q, &alnum), gseq_ref(gb, &q, set_repeat(c, &local, 31));
        gseq_byte(gb, &q, '@');
        int32_t label = set_repeat(c, &alnum, 32);
        gseq lq = {0};
        int32_t labels = gbuild_rule(gb); /* (label ".") {1,3} */
        int32_t more = gbuild_rule(gb);
        add_alt(c, more, &lq);
        gseq_ref(gb, &lq, label), gseq_byte(gb, &lq, '.'), add_alt(c, more, &lq);
        gseq_ref(gb, &lq, label), gseq_byte(gb, &lq, '.'), gseq_ref(gb, &lq, more), add_alt(c, labels, &lq);
        gseq_free(&lq);
        gseq_ref(gb, &q, labels), gseq_set(gb, &q, &lower), gseq_ref(gb, &q, set_repeat(c, &lower, 7));
    } else if (!strcmp(fmt, "ipv4")) {
        int32_t octet = int_range_rule(c, 0, 255);
        for (int i = 0; i < 4; i++) {
            if (i) gseq_byte(gb, &q, '.');
            gseq_ref(gb, &q, octet);
        }
    } else {
        gseq_free(&q);
        jsc_fail(c, MICA_ERR_UNSUPPORTED, "unsupported 'format' '%.40s' (supported: date, time, date-time, uuid, "
                 "email, ipv4)", fmt);
        return;
    }
    gseq_byte(gb, &q, '"');
    add_alt(c, r, &q);
    gseq_free(&q);
}

/* Keywords: handled, ignored (annotations), or an error. */
static const char *const kw_known[] = {
    "type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "properties", "required", "additionalProperties",
    "items", "prefixItems", "minItems", "maxItems", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "multipleOf", "format", "nullable", "uniqueItems",
    "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly",
    "writeOnly", "discriminator", "$defs", "definitions", NULL};
/* "nullable" (OpenAPI) is no JSON Schema keyword: validators ignore it, so
 * null is not generated for it (a non-null value satisfies both readings). */
static const char *const kw_annotation[] = {"title", "description", "default", "examples", "$schema", "$id",
                                            "$comment", "deprecated", "readOnly", "writeOnly", "discriminator",
                                            "$defs", "definitions", "nullable", NULL};

static bool in_list(const char *const *l, const char *k) {
    for (; *l; l++)
        if (!strcmp(*l, k)) return true;
    return false;
}

/* True if s has a keyword other than annotations and those in `also`. */
static const char *other_keyword(json_t *s, const char *const *also) {
    const char *key;
    json_t *v;
    json_object_foreach(s, key, v) {
        if (!in_list(kw_annotation, key) && !in_list(also, key)) return key;
    }
    return NULL;
}

/* Resolves a local $ref ("#" or "#/a/b" JSON pointer). */
static json_t *resolve_ref(jsc *c, json_t *ref) {
    if (!json_is_string(ref)) { jsc_fail(c, MICA_ERR_INVALID_ARG, "'$ref' must be a string"); return NULL; }
    const char *p = json_string_value(ref);
    if (p[0] != '#') { jsc_fail(c, MICA_ERR_UNSUPPORTED, "'$ref' to '%.100s' (only local references '#...')", p); return NULL; }
    json_t *cur = c->root;
    p++;
    while (*p == '/') {
        p++;
        char tok[256];
        size_t k = 0;
        while (*p && *p != '/' && k + 1 < sizeof tok) {
            if (p[0] == '~' && p[1] == '1') tok[k++] = '/', p += 2;
            else if (p[0] == '~' && p[1] == '0') tok[k++] = '~', p += 2;
            else tok[k++] = *p++;
        }
        tok[k] = '\0';
        if (json_is_object(cur)) cur = json_object_get(cur, tok);
        else if (json_is_array(cur)) cur = json_array_get(cur, (size_t)strtoul(tok, NULL, 10));
        else cur = NULL;
        if (!cur) break;
    }
    if (!cur || *p) {
        jsc_fail(c, MICA_ERR_INVALID_ARG, "'$ref' '%.100s' points to nothing", json_string_value(ref));
        return NULL;
    }
    return cur;
}

static void ref_alt(jsc *c, int32_t r, int32_t target) {
    gseq q = {0};
    gseq_ref(c->gb, &q, target);
    add_alt(c, r, &q);
    gseq_free(&q);
}

/* Fills rule r with the alternatives of schema s. */
static void schema_alts(jsc *c, int32_t r, json_t *s, int depth) {
    if (json_is_true(s)) { ref_alt(c, r, any_value(c)); return; }
    if (json_is_false(s)) { jsc_fail(c, MICA_ERR_INVALID_ARG, "schema false (unsatisfiable)"); return; }
    if (!json_is_object(s)) { jsc_fail(c, MICA_ERR_INVALID_ARG, "a schema must be an object or a boolean"); return; }
    const char *key;
    json_t *v;
    json_object_foreach(s, key, v) {
        if (!in_list(kw_known, key)) { jsc_fail(c, MICA_ERR_UNSUPPORTED, "unsupported JSON Schema keyword '%s'", key); return; }
    }
    json_t *ui = json_object_get(s, "uniqueItems");
    if (ui && !json_is_false(ui)) { jsc_fail(c, MICA_ERR_UNSUPPORTED, "unsupported JSON Schema keyword 'uniqueItems'"); return; }
    json_t *ref = json_object_get(s, "$ref");
    if (ref) {
        static const char *const only[] = {"$ref", NULL};
        const char *o = other_keyword(s, only);
        if (o) { jsc_fail(c, MICA_ERR_UNSUPPORTED, "'$ref' together with '%s'", o); return; }
        json_t *t = resolve_ref(c, ref);
        if (t) ref_alt(c, r, schema_rule(c, t, depth + 1));
        return;
    }
    static const char *const combos[] = {"anyOf", "oneOf", "allOf"};
    for (size_t k = 0; k < 3; k++) {
        json_t *arr = json_object_get(s, combos[k]);
        if (!arr) continue;
        const char *const only[] = {combos[k], NULL};
        const char *o = other_keyword(s, only);
        if (o) { jsc_fail(c, MICA_ERR_UNSUPPORTED, "'%s' together with '%s'", combos[k], o); return; }
        if (!json_is_array(arr) || json_array_size(arr) == 0) {
            jsc_fail(c, MICA_ERR_INVALID_ARG, "'%s' must be a non-empty array", combos[k]);
            return;
        }
        if (k == 2 && json_array_size(arr) != 1) {
            jsc_fail(c, MICA_ERR_UNSUPPORTED, "'allOf' with more than one schema");
            return;
        }
        size_t i;
        json_t *sub;
        json_array_foreach(arr, i, sub) {
            char idx[24];
            snprintf(idx, sizeof idx, "%zu", i);
            size_t old = path_push(c, combos[k], idx);
            if (!json_is_false(sub)) ref_alt(c, r, schema_rule(c, sub, depth + 1));
            path_pop(c, old);
            if (c->failed) return;
        }
        return;
    }
    json_t *type = json_object_get(s, "type");
    unsigned types = type ? parse_types(c, type) : 0;
    if (c->failed) return;
    json_t *cst = json_object_get(s, "const"), *en = json_object_get(s, "enum");
    if (cst || en) {
        if (en && (!json_is_array(en) || json_array_size(en) == 0)) {
            jsc_fail(c, MICA_ERR_INVALID_ARG, "'enum' must be a non-empty array");
            return;
        }
        size_t added = 0, i;
        json_t *e;
        if (cst) {
            if (en) { jsc_fail(c, MICA_ERR_UNSUPPORTED, "'const' together with 'enum'"); return; }
            if (!types || value_in_types(cst, types)) add_literal(c, r, cst), added++;
        } else {
            json_array_foreach(en, i, e) if (!types || value_in_types(e, types)) add_literal(c, r, e), added++;
        }
        if (!added) jsc_fail(c, MICA_ERR_INVALID_ARG, "no 'enum'/'const' value has the schema's type (unsatisfiable)");
        return;
    }
    if (!type) { /* no type: the kind the keywords describe, else any value */
        if (json_object_get(s, "properties") || json_object_get(s, "required") ||
            json_object_get(s, "additionalProperties"))
            types = T_OBJECT;
        else if (json_object_get(s, "items") || json_object_get(s, "prefixItems") || json_object_get(s, "minItems") ||
                 json_object_get(s, "maxItems"))
            types = T_ARRAY;
        else if (json_object_get(s, "minLength") || json_object_get(s, "maxLength"))
            types = T_STRING;
        else if (json_object_get(s, "minimum") || json_object_get(s, "maximum") ||
                 json_object_get(s, "exclusiveMinimum") || json_object_get(s, "exclusiveMaximum"))
            types = T_NUMBER;
        else {
            ref_alt(c, r, any_value(c));
            return;
        }
    }
    if (types & T_OBJECT) object_alts(c, r, s, depth);
    if ((types & T_ARRAY) && !c->failed) array_alts(c, r, s, depth);
    if ((types & T_STRING) && !c->failed && json_object_get(s, "format")) {
        format_alts(c, r, json_object_get(s, "format"));
    } else if ((types & T_STRING) && !c->failed) {
        int min = 0, max = -1;
        if (count_kw(c, s, "minLength", &min, false) && count_kw(c, s, "maxLength", &max, true)) {
            if (max >= 0 && max < min) jsc_fail(c, MICA_ERR_INVALID_ARG, "maxLength below minLength (unsatisfiable)");
            else ref_alt(c, r, string_rule(c, min, max));
        }
    }
    if ((types & T_NUMBER) && !c->failed) numeric_alts(c, r, s, false);
    else if ((types & T_INTEGER) && !c->failed) numeric_alts(c, r, s, true);
    if ((types & T_BOOLEAN) && !c->failed) {
        add_literal(c, r, json_true());
        add_literal(c, r, json_false());
    }
    if ((types & T_NULL) && !c->failed) add_literal(c, r, json_null());
}

/* The rule of schema s (memoised by address). */
static int32_t schema_rule(jsc *c, json_t *s, int depth) {
    if (c->failed) return -1;
    if (depth > JSCHEMA_MAX_DEPTH) return jsc_fail(c, MICA_ERR_LIMIT, "schema nested deeper than %d", JSCHEMA_MAX_DEPTH);
    size_t h = ((uintptr_t)s >> 4) * 0x9e3779b97f4a7c15ull;
    size_t slot = h & (c->memo_cap - 1);
    while (c->memo[slot].key) {
        if (c->memo[slot].key == s) return c->memo[slot].rule;
        slot = (slot + 1) & (c->memo_cap - 1);
    }
    if (++c->n_nodes > JSCHEMA_MAX_NODES) return jsc_fail(c, MICA_ERR_LIMIT, "schema has more than %d subschemas", JSCHEMA_MAX_NODES);
    int32_t r = gbuild_rule(c->gb);
    if (r < 0) return jsc_fail(c, MICA_ERR_LIMIT, "the schema's grammar exceeds its size limits");
    c->memo[slot] = (jmemo){.key = s, .rule = r};
    schema_alts(c, r, s, depth);
    return c->failed ? -1 : r;
}

mica_status json_schema_rule(gbuild *gb, const char *text, size_t len, int32_t *rule, mica_err *err) {
    jsc c = {.gb = gb, .err = err};
    c.chr = c.str = c.value = c.obj_any = c.arr_any = -1;
    c.int_any = c.num_any = -1;
    for (size_t i = 0; i < MICA_ARRAY_LEN(c.digits); i++) c.digits[i] = -1;
    for (size_t i = 0; i < MICA_ARRAY_LEN(c.chars); i++) c.chars[i] = -1;
    if (text && len > JSCHEMA_MAX_TEXT)
        return mica_err_set(err, MICA_ERR_LIMIT, "the schema is longer than %u bytes", JSCHEMA_MAX_TEXT);
    if (text) {
        json_error_t je;
        c.root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
        if (!c.root) return mica_err_set(err, MICA_ERR_INVALID_ARG, "the schema is not valid JSON: %s", je.text);
    }
    c.memo_cap = 2 * JSCHEMA_MAX_NODES * 2;
    c.memo = calloc(c.memo_cap, sizeof *c.memo);
    if (!c.memo) {
        json_decref(c.root);
        return mica_err_set(err, MICA_ERR_NOMEM, "out of memory");
    }
    c.ws = json_schema_ws_rule(gb);
    int32_t r;
    if (!text) {
        any_value(&c);
        r = c.obj_any;
    } else {
        r = schema_rule(&c, c.root, 0);
    }
    free(c.memo);
    json_decref(c.root);
    if (c.failed) return c.st;
    if (gbuild_failed(gb) || r < 0) return mica_err_set(err, MICA_ERR_LIMIT, "the schema's grammar exceeds its size limits");
    *rule = r;
    return MICA_OK;
}
