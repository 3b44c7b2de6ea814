/*
 * json_value.c - a strict JSON reader (RFC 8259) that builds Jinja values:
 * objects become insertion-ordered dicts, arrays lists, integers that fit in
 * 64 bits ints, other numbers floats. As Python's json module it also accepts
 * NaN, Infinity and -Infinity, and a repeated key keeps its first position
 * with the last value. Strings must be valid UTF-8; \u escapes with surrogate
 * pairs are combined, lone surrogates are rejected. Nesting is capped at
 * JINJA_MAX_JSON_DEPTH so hostile input cannot exhaust the stack.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja_int.h"
#include "text/utf8.h"

typedef struct jreader {
    const char *s;
    size_t n, i;
    jarena *a;
    jfail *f;
} jreader;

_Noreturn static void jr_fail(jreader *r, const char *what) {
    jfail_raise(r->f, MICA_ERR_FORMAT, "invalid JSON at byte %zu: %s", r->i, what);
}

static void jr_ws(jreader *r) {
    while (r->i < r->n && (r->s[r->i] == ' ' || r->s[r->i] == '\t' || r->s[r->i] == '\n' ||
                           r->s[r->i] == '\r'))
        r->i++;
}

static bool jr_lit(jreader *r, const char *word) {
    size_t k = strlen(word);
    if (r->n - r->i >= k && memcmp(r->s + r->i, word, k) == 0) {
        r->i += k;
        return true;
    }
    return false;
}

static int jr_hex4(jreader *r) {
    if (r->n - r->i < 4) jr_fail(r, "truncated \\u escape");
    int v = 0;
    for (int k = 0; k < 4; k++) {
        char c = r->s[r->i++];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else jr_fail(r, "bad \\u escape");
    }
    return v;
}

static jv jr_string(jreader *r) {
    r->i++; /* opening quote */
    size_t start = r->i;
    /* Fast path: no escapes. */
    while (r->i < r->n && r->s[r->i] != '"' && r->s[r->i] != '\\' && (unsigned char)r->s[r->i] >= 0x20)
        r->i++;
    if (r->i < r->n && r->s[r->i] == '"') {
        if (!utf8_valid(r->s + start, r->i - start)) jr_fail(r, "invalid UTF-8 in string");
        jv v = jv_str_copy(r->a, r->s + start, r->i - start);
        r->i++;
        return v;
    }
    jbuf b;
    jbuf_init(&b, r->a, SIZE_MAX / 2);
    jbuf_put(&b, r->s + start, r->i - start);
    for (;;) {
        if (r->i >= r->n) jr_fail(r, "unterminated string");
        unsigned char c = (unsigned char)r->s[r->i];
        if (c == '"') {
            r->i++;
            break;
        }
        if (c < 0x20) jr_fail(r, "control character in string");
        if (c != '\\') {
            jbuf_putc(&b, (char)c);
            r->i++;
            continue;
        }
        r->i++;
        if (r->i >= r->n) jr_fail(r, "unterminated escape");
        char e = r->s[r->i++];
        switch (e) {
        case '"': jbuf_putc(&b, '"'); break;
        case '\\': jbuf_putc(&b, '\\'); break;
        case '/': jbuf_putc(&b, '/'); break;
        case 'b': jbuf_putc(&b, '\b'); break;
        case 'f': jbuf_putc(&b, '\f'); break;
        case 'n': jbuf_putc(&b, '\n'); break;
        case 'r': jbuf_putc(&b, '\r'); break;
        case 't': jbuf_putc(&b, '\t'); break;
        case 'u': {
            uint32_t cp = (uint32_t)jr_hex4(r);
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (r->n - r->i < 6 || r->s[r->i] != '\\' || r->s[r->i + 1] != 'u')
                    jr_fail(r, "lone surrogate in \\u escape");
                r->i += 2;
                uint32_t lo = (uint32_t)jr_hex4(r);
                if (lo < 0xDC00 || lo > 0xDFFF) jr_fail(r, "lone surrogate in \\u escape");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                jr_fail(r, "lone surrogate in \\u escape");
            }
            char u[4];
            size_t k = utf8_encode(cp, u);
            jbuf_put(&b, u, k);
            break;
        }
        default: jr_fail(r, "bad escape");
        }
    }
    if (!utf8_valid(b.p ? b.p : "", b.n)) jr_fail(r, "invalid UTF-8 in string");
    return jbuf_value(&b);
}

static jv jr_number(jreader *r) {
    size_t start = r->i;
    bool is_float = false;
    if (r->s[r->i] == '-') r->i++;
    if (r->i < r->n && r->s[r->i] == '0') {
        r->i++;
    } else if (r->i < r->n && r->s[r->i] >= '1' && r->s[r->i] <= '9') {
        while (r->i < r->n && r->s[r->i] >= '0' && r->s[r->i] <= '9') r->i++;
    } else {
        jr_fail(r, "bad number");
    }
    if (r->i < r->n && r->s[r->i] == '.') {
        is_float = true;
        r->i++;
        if (r->i >= r->n || r->s[r->i] < '0' || r->s[r->i] > '9') jr_fail(r, "bad number");
        while (r->i < r->n && r->s[r->i] >= '0' && r->s[r->i] <= '9') r->i++;
    }
    if (r->i < r->n && (r->s[r->i] == 'e' || r->s[r->i] == 'E')) {
        is_float = true;
        r->i++;
        if (r->i < r->n && (r->s[r->i] == '+' || r->s[r->i] == '-')) r->i++;
        if (r->i >= r->n || r->s[r->i] < '0' || r->s[r->i] > '9') jr_fail(r, "bad number");
        while (r->i < r->n && r->s[r->i] >= '0' && r->s[r->i] <= '9') r->i++;
    }
    size_t len = r->i - start;
    if (len > 400) jr_fail(r, "number too long");
    char tmp[408];
    memcpy(tmp, r->s + start, len);
    tmp[len] = '\0';
    if (!is_float) {
        errno = 0;
        long long v = strtoll(tmp, NULL, 10);
        if (errno != ERANGE) return jv_int(v);
        jfail_raise(r->f, MICA_ERR_UNSUPPORTED, "integer %s does not fit in 64 bits", tmp);
    }
    return jv_float(strtod(tmp, NULL));
}

static jv jr_value(jreader *r, int depth);

static jv jr_array(jreader *r, int depth) {
    r->i++;
    jv l = jv_list_new(r->a, 0);
    jr_ws(r);
    if (r->i < r->n && r->s[r->i] == ']') {
        r->i++;
        return l;
    }
    for (;;) {
        jlist_push(r->a, l.u.l, jr_value(r, depth + 1));
        jr_ws(r);
        if (r->i >= r->n) jr_fail(r, "unterminated array");
        if (r->s[r->i] == ',') { r->i++; continue; }
        if (r->s[r->i] == ']') { r->i++; return l; }
        jr_fail(r, "expected ',' or ']'");
    }
}

static jv jr_object(jreader *r, int depth) {
    r->i++;
    jv d = jv_dict_new(r->a);
    jr_ws(r);
    if (r->i < r->n && r->s[r->i] == '}') {
        r->i++;
        return d;
    }
    for (;;) {
        jr_ws(r);
        if (r->i >= r->n || r->s[r->i] != '"') jr_fail(r, "expected a string key");
        jv k = jr_string(r);
        jr_ws(r);
        if (r->i >= r->n || r->s[r->i] != ':') jr_fail(r, "expected ':'");
        r->i++;
        jv v = jr_value(r, depth + 1);
        jdict_set(r->a, r->f, d.u.d, k, v);
        jr_ws(r);
        if (r->i >= r->n) jr_fail(r, "unterminated object");
        if (r->s[r->i] == ',') { r->i++; continue; }
        if (r->s[r->i] == '}') { r->i++; return d; }
        jr_fail(r, "expected ',' or '}'");
    }
}

static jv jr_value(jreader *r, int depth) {
    if (depth > JINJA_MAX_JSON_DEPTH)
        jfail_raise(r->f, MICA_ERR_LIMIT, "JSON nested deeper than %d", JINJA_MAX_JSON_DEPTH);
    jr_ws(r);
    if (r->i >= r->n) jr_fail(r, "unexpected end");
    char c = r->s[r->i];
    if (c == '{') return jr_object(r, depth);
    if (c == '[') return jr_array(r, depth);
    if (c == '"') return jr_string(r);
    if (c == '-' || (c >= '0' && c <= '9')) {
        if (jr_lit(r, "-Infinity")) return jv_float(-INFINITY);
        return jr_number(r);
    }
    if (jr_lit(r, "true")) return jv_bool(true);
    if (jr_lit(r, "false")) return jv_bool(false);
    if (jr_lit(r, "null")) return jv_none();
    if (jr_lit(r, "NaN")) return jv_float(NAN);
    if (jr_lit(r, "Infinity")) return jv_float(INFINITY);
    jr_fail(r, "unexpected character");
}

jv json_value_parse(jarena *a, jfail *f, const char *s, size_t n) {
    jreader r = {.s = s, .n = n, .i = 0, .a = a, .f = f};
    jv v = jr_value(&r, 0);
    jr_ws(&r);
    if (r.i != r.n) jr_fail(&r, "trailing characters");
    return v;
}

mica_status jinja_json_check(const char *s, size_t n, char want, mica_err *err) {
    if (!s && n) return mica_err_set(err, MICA_ERR_INVALID_ARG, "json: NULL text");
    if (n > SIZE_MAX / 128) return mica_err_set(err, MICA_ERR_LIMIT, "json: text too large");
    mica_err local;
    jfail *f = mica_calloc(1, sizeof *f); /* on the heap: it outlives the setjmp below */
    jarena *a = mica_calloc(1, sizeof *a);
    if (!f || !a) {
        mica_free(f);
        mica_free(a);
        return mica_err_set(err, MICA_ERR_NOMEM, "out of memory");
    }
    f->err = err ? err : &local;
    jarena_init(a, (size_t)64 * n + ((size_t)1 << 20), f);
    mica_status st = MICA_OK;
    if (setjmp(f->jb)) {
        st = f->err->status;
    } else {
        jv v = json_value_parse(a, f, s ? s : "", n);
        if ((want == '{' && v.type != JV_DICT) || (want == '[' && v.type != JV_LIST))
            jfail_raise(f, MICA_ERR_FORMAT, "expected a JSON %s", want == '{' ? "object" : "array");
    }
    jarena_free(a);
    mica_free(a);
    mica_free(f);
    return st;
}
