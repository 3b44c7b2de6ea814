/*
 * jinja_lex.c - the Jinja tokenizer, with Hugging Face's settings:
 * trim_blocks (a block or comment tag eats the one newline right after it),
 * lstrip_blocks (spaces and tabs between the start of a line and a block or
 * comment tag are dropped; never for {{ }}), and the `-`/`+` markers
 * ({%- strips all whitespace before the tag, -%} all whitespace after it,
 * {%+ and +%} turn lstrip/trim off for that tag).
 *
 * Exactly as Jinja2's lexer: newlines (\r\n, \r, \n) are first normalised to
 * \n and a single trailing newline of the template is dropped; lstrip applies
 * when the text between the last newline (or the end of the previous tag, if
 * that tag ended a line) and the tag is whitespace only; end tags inside
 * (), [] or {} are not end tags; string literals use Python's escapes.
 */
#include <stdlib.h>
#include <string.h>

#include "text/jinja_int.h"
#include "text/utf8.h"

typedef struct jlexer {
    jarena *a;
    jfail *f;
    const char *s;
    size_t n;
    jtok *v;
    size_t nt, cap;
} jlexer;

void jinja_line_col(const char *src, size_t len, size_t pos, unsigned *line, unsigned *col) {
    unsigned l = 1, c = 1;
    for (size_t i = 0; i < pos && i < len; i++) {
        if (src[i] == '\n') { l++; c = 1; }
        else if (((unsigned char)src[i] & 0xC0) != 0x80) c++;
    }
    *line = l;
    *col = c;
}

_Noreturn static void lex_fail(jlexer *lx, size_t pos, const char *what) {
    unsigned line, col;
    jinja_line_col(lx->s, lx->n, pos, &line, &col);
    jfail_raise(lx->f, MICA_ERR_FORMAT, "template syntax error at line %u, column %u: %s", line, col,
                what);
}

static jtok *lex_push(jlexer *lx, int type, size_t pos) {
    if (lx->nt == lx->cap) {
        size_t cap = lx->cap ? lx->cap * 2 : 256;
        jtok *nv = jarena_array(lx->a, cap, sizeof(jtok));
        if (lx->nt) memcpy(nv, lx->v, lx->nt * sizeof(jtok));
        lx->v = nv;
        lx->cap = cap;
    }
    jtok *t = &lx->v[lx->nt++];
    memset(t, 0, sizeof *t);
    t->type = type;
    t->pos = pos;
    return t;
}

/* Length of the Python whitespace character at s[i], or 0. */
static size_t space_at(const jlexer *lx, size_t i) {
    if (i >= lx->n) return 0;
    unsigned char c = (unsigned char)lx->s[i];
    if (c < 0x80) return jcp_is_space(c) ? 1 : 0;
    uint32_t cp;
    size_t len = utf8_decode(lx->s + i, lx->n - i, &cp);
    return len && jcp_is_space(cp) ? len : 0;
}

static size_t skip_spaces(const jlexer *lx, size_t i) {
    size_t k;
    while ((k = space_at(lx, i)) != 0) i += k;
    return i;
}

static bool at(const jlexer *lx, size_t i, const char *lit) {
    size_t k = strlen(lit);
    return i <= lx->n && lx->n - i >= k && memcmp(lx->s + i, lit, k) == 0;
}

/* Emits text s[start..end) before a tag whose whitespace sign is `sign`, applying
 * `-` stripping or lstrip_blocks (is_block: the tag is a block or comment). */
static void emit_data(jlexer *lx, size_t start, size_t end, char sign, bool is_block,
                      bool line_starting) {
    if (sign == '-') {
        end -= jstr_space_suffix(lx->s + start, end - start);
    } else if (sign != '+' && is_block) {
        size_t l_pos = end;
        while (l_pos > start && lx->s[l_pos - 1] != '\n') l_pos--;
        if (l_pos > start || line_starting) {
            /* Only whitespace between l_pos and the tag (at least one character)? */
            size_t i = l_pos;
            while (i < end && space_at(lx, i)) i += space_at(lx, i);
            if (i == end && end > l_pos) end = l_pos;
        }
    }
    if (end > start) {
        jtok *t = lex_push(lx, JT_DATA, start);
        t->s.p = lx->s + start;
        t->s.n = end - start;
    }
}

/* Matches a block end at i (`+%}`, `-%}` plus whitespace, `%}` plus one newline); returns
 * the offset after it, or 0. */
static size_t block_end_at(const jlexer *lx, size_t i) {
    if (at(lx, i, "+%}")) return i + 3;
    if (at(lx, i, "-%}")) return skip_spaces(lx, i + 3);
    if (at(lx, i, "%}")) return i + 2 + (i + 2 < lx->n && lx->s[i + 2] == '\n');
    return 0;
}

/* Decodes a Python string literal body (escapes as unicode-escape). */
static jstr decode_string(jlexer *lx, size_t start, size_t end) {
    char *out = jarena_alloc(lx->a, end - start + 1);
    size_t o = 0;
    for (size_t i = start; i < end;) {
        char c = lx->s[i];
        if (c != '\\' || i + 1 >= end) {
            out[o++] = c;
            i++;
            continue;
        }
        char e = lx->s[i + 1];
        i += 2;
        uint32_t cp = 0;
        int nhex = 0;
        switch (e) {
        case '\n': continue;
        case '\\': out[o++] = '\\'; continue;
        case '\'': out[o++] = '\''; continue;
        case '"': out[o++] = '"'; continue;
        case 'a': out[o++] = '\a'; continue;
        case 'b': out[o++] = '\b'; continue;
        case 'f': out[o++] = '\f'; continue;
        case 'n': out[o++] = '\n'; continue;
        case 'r': out[o++] = '\r'; continue;
        case 't': out[o++] = '\t'; continue;
        case 'v': out[o++] = '\v'; continue;
        case 'x': nhex = 2; break;
        case 'u': nhex = 4; break;
        case 'U': nhex = 8; break;
        default:
            if (e >= '0' && e <= '7') {
                cp = (uint32_t)(e - '0');
                for (int k = 0; k < 2 && i < end && lx->s[i] >= '0' && lx->s[i] <= '7'; k++)
                    cp = cp * 8 + (uint32_t)(lx->s[i++] - '0');
                break;
            }
            out[o++] = '\\';
            out[o++] = e;
            continue;
        }
        for (int k = 0; k < nhex; k++, i++) {
            char h = i < end ? lx->s[i] : 0;
            int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                  : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
            if (d < 0) lex_fail(lx, i, "truncated \\xXX, \\uXXXX or \\UXXXXXXXX escape");
            cp = cp * 16 + (uint32_t)d;
        }
        char u[4];
        size_t k = utf8_encode(cp, u);
        if (k == 0) lex_fail(lx, i, "invalid code point in string escape");
        /* Escapes never grow: \xXX (4 bytes) encodes to at most 2, \uXXXX to 3, \U to 4. */
        memcpy(out + o, u, k);
        o += k;
    }
    out[o] = '\0';
    return (jstr){out, o};
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

/* Digits with single underscores between them; returns the end or i if none. */
static size_t scan_digits(const jlexer *lx, size_t i) {
    size_t j = i;
    while (j < lx->n && is_digit(lx->s[j])) {
        j++;
        if (j + 1 < lx->n && lx->s[j] == '_' && is_digit(lx->s[j + 1])) j++;
    }
    return j;
}

/* Number at i: float or integer token; returns the end offset, or 0 if none. */
static size_t lex_number(jlexer *lx, size_t i) {
    if (!is_digit(lx->s[i])) return 0;
    char tmp[128];
    size_t j = scan_digits(lx, i);
    bool is_float = false;
    size_t k = j;
    if (i == 0 || lx->s[i - 1] != '.') {
        if (k < lx->n && lx->s[k] == '.' && k + 1 < lx->n && is_digit(lx->s[k + 1])) {
            k = scan_digits(lx, k + 1);
            is_float = true;
        }
        if (k < lx->n && (lx->s[k] == 'e' || lx->s[k] == 'E')) {
            size_t e = k + 1;
            if (e < lx->n && (lx->s[e] == '+' || lx->s[e] == '-')) e++;
            if (e < lx->n && is_digit(lx->s[e])) {
                k = scan_digits(lx, e);
                is_float = true;
            }
        }
    }
    size_t end = is_float ? k : j;
    size_t o = 0;
    for (size_t p = i; p < end; p++) {
        if (lx->s[p] == '_') continue;
        if (o + 1 >= sizeof tmp) lex_fail(lx, i, "number literal too long");
        tmp[o++] = lx->s[p];
    }
    tmp[o] = '\0';
    if (is_float) {
        jtok *t = lex_push(lx, JT_FLOAT, i);
        t->f = strtod(tmp, NULL);
        return end;
    }
    /* 0x / 0o / 0b prefixes */
    if (tmp[0] == '0' && end < lx->n && strchr("xXoObB", lx->s[end]) && o == 1) {
        char kind = (char)(lx->s[end] | 0x20);
        int base = kind == 'x' ? 16 : kind == 'o' ? 8 : 2;
        size_t p = end + 1;
        uint64_t v = 0;
        size_t nd = 0;
        for (; p < lx->n; p++) {
            char c = lx->s[p];
            int d = is_digit(c) ? c - '0' : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10 : -1;
            if (c == '_') continue;
            if (d < 0 || d >= base) break;
            if (v > (UINT64_MAX >> 4)) lex_fail(lx, i, "integer literal too large");
            v = v * (uint64_t)base + (uint64_t)d;
            nd++;
        }
        if (nd == 0) lex_fail(lx, i, "bad integer literal");
        if (v > (uint64_t)INT64_MAX) lex_fail(lx, i, "integer literal too large");
        jtok *t = lex_push(lx, JT_INT, i);
        t->i = (int64_t)v;
        return p;
    }
    if (o > 1 && tmp[0] == '0') {
        for (size_t p = 0; p < o; p++)
            if (tmp[p] != '0') lex_fail(lx, i, "leading zeros in integer literal");
    }
    uint64_t v = 0;
    for (size_t p = 0; p < o; p++) {
        if (v > (uint64_t)INT64_MAX / 10) lex_fail(lx, i, "integer literal too large");
        v = v * 10 + (uint64_t)(tmp[p] - '0');
        if (v > (uint64_t)INT64_MAX) lex_fail(lx, i, "integer literal too large");
    }
    jtok *t = lex_push(lx, JT_INT, i);
    t->i = (int64_t)v;
    return end;
}

static const struct { const char *s; int op; } lex_ops[] = {
    {"//", JOP_FLOORDIV}, {"**", JOP_POW}, {"==", JOP_EQ}, {"!=", JOP_NE}, {"<=", JOP_LE},
    {">=", JOP_GE}, {"+", JOP_ADD}, {"-", JOP_SUB}, {"/", JOP_DIV}, {"*", JOP_MUL},
    {"%", JOP_MOD}, {"~", JOP_TILDE}, {"[", JOP_LBRACKET}, {"]", JOP_RBRACKET},
    {"(", JOP_LPAREN}, {")", JOP_RPAREN}, {"{", JOP_LBRACE}, {"}", JOP_RBRACE},
    {".", JOP_DOT}, {":", JOP_COLON}, {",", JOP_COMMA}, {"|", JOP_PIPE}, {"<", JOP_LT},
    {">", JOP_GT}, {"=", JOP_ASSIGN}, {";", JOP_SEMICOLON},
};

/* Lexes the inside of a {% %} or {{ }} tag starting at i; returns the offset after the
 * end tag and sets *line_starting. */
static size_t lex_tag(jlexer *lx, size_t i, bool is_block, bool *line_starting) {
    char stack[JINJA_MAX_PARSE_DEPTH];
    size_t depth = 0;
    size_t tag_start = i;
    for (;;) {
        if (i >= lx->n) lex_fail(lx, tag_start, "unexpected end of template inside a tag");
        if (depth == 0) {
            size_t e = 0;
            if (is_block) e = block_end_at(lx, i);
            else if (at(lx, i, "-}}")) e = skip_spaces(lx, i + 3);
            else if (at(lx, i, "}}")) e = i + 2;
            if (e) {
                lex_push(lx, is_block ? JT_BLOCK_END : JT_VAR_END, i);
                *line_starting = lx->s[e - 1] == '\n';
                return e;
            }
        }
        size_t k = space_at(lx, i);
        if (k) {
            i += k;
            continue;
        }
        char c = lx->s[i];
        if (is_digit(c)) {
            i = lex_number(lx, i);
            continue;
        }
        if (is_name_start(c)) {
            size_t j = i;
            while (j < lx->n && is_name_char(lx->s[j])) j++;
            jtok *t = lex_push(lx, JT_NAME, i);
            t->s.p = lx->s + i;
            t->s.n = j - i;
            i = j;
            continue;
        }
        if (c == '\'' || c == '"') {
            size_t j = i + 1;
            while (j < lx->n && lx->s[j] != c) j += lx->s[j] == '\\' ? 2 : 1;
            if (j >= lx->n) lex_fail(lx, i, "unterminated string literal");
            jstr s = decode_string(lx, i + 1, j);
            jtok *t = lex_push(lx, JT_STRING, i);
            t->s = s;
            i = j + 1;
            continue;
        }
        size_t op = 0;
        for (; op < MICA_ARRAY_LEN(lex_ops); op++)
            if (at(lx, i, lex_ops[op].s)) break;
        if (op == MICA_ARRAY_LEN(lex_ops)) lex_fail(lx, i, "unexpected character");
        int o = lex_ops[op].op;
        if (o == JOP_LPAREN || o == JOP_LBRACKET || o == JOP_LBRACE) {
            if (depth == sizeof stack) {
                unsigned line, col;
                jinja_line_col(lx->s, lx->n, i, &line, &col);
                jfail_raise(lx->f, MICA_ERR_LIMIT, "brackets nested too deeply at line %u", line);
            }
            stack[depth++] = o == JOP_LPAREN ? ')' : o == JOP_LBRACKET ? ']' : '}';
        } else if (o == JOP_RPAREN || o == JOP_RBRACKET || o == JOP_RBRACE) {
            char want = o == JOP_RPAREN ? ')' : o == JOP_RBRACKET ? ']' : '}';
            if (depth == 0 || stack[depth - 1] != want) lex_fail(lx, i, "unbalanced bracket");
            depth--;
        }
        jtok *t = lex_push(lx, JT_OP, i);
        t->op = o;
        i += strlen(lex_ops[op].s);
    }
}

/* Raw block: after `{% raw %}`, everything up to `{% endraw %}` is text. */
static size_t lex_raw(jlexer *lx, size_t i, bool *line_starting) {
    for (size_t p = i; p < lx->n; p++) {
        if (!at(lx, p, "{%")) continue;
        size_t q = p + 2;
        char sign = 0;
        if (q < lx->n && (lx->s[q] == '-' || lx->s[q] == '+')) sign = lx->s[q++];
        q = skip_spaces(lx, q);
        if (!at(lx, q, "endraw")) continue;
        q = skip_spaces(lx, q + 6);
        size_t e = block_end_at(lx, q);
        if (!e) continue;
        emit_data(lx, i, p, sign, true, *line_starting);
        *line_starting = lx->s[e - 1] == '\n';
        return e;
    }
    lex_fail(lx, i, "missing end of raw directive");
}

/* Is there a `{% raw %}` tag at i (with optional sign)? Returns the offset after it. */
static size_t raw_begin_at(const jlexer *lx, size_t i) {
    size_t q = i + 2;
    if (q < lx->n && (lx->s[q] == '-' || lx->s[q] == '+')) q++;
    q = skip_spaces(lx, q);
    if (!at(lx, q, "raw")) return 0;
    q = skip_spaces(lx, q + 3);
    if (at(lx, q, "-%}")) return skip_spaces(lx, q + 3);
    if (at(lx, q, "%}")) return q + 2;
    return 0;
}

void jinja_lex(jarena *a, jfail *f, const char *src, size_t len, jtoks *out) {
    /* Normalise newlines and drop one trailing newline. */
    char *s = jarena_alloc(a, len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n > 0 && s[n - 1] == '\n') n--;
    s[n] = '\0';

    jlexer lx = {.a = a, .f = f, .s = s, .n = n};
    size_t pos = 0;
    bool line_starting = true;
    while (pos < n) {
        size_t i = pos;
        while (i + 1 < n && !(s[i] == '{' && (s[i + 1] == '%' || s[i + 1] == '{' || s[i + 1] == '#')))
            i++;
        if (i + 1 >= n) {
            emit_data(&lx, pos, n, 0, false, line_starting);
            break;
        }
        char kind = s[i + 1];
        char sign = i + 2 < n && (s[i + 2] == '-' || s[i + 2] == '+') ? s[i + 2] : 0;
        emit_data(&lx, pos, i, sign, kind != '{', line_starting);
        size_t body = i + 2 + (sign ? 1 : 0);
        if (kind == '#') {
            size_t p = body, e = 0;
            for (; p < n; p++) {
                if (at(&lx, p, "+#}")) { e = p + 3; break; }
                if (at(&lx, p, "-#}")) { e = skip_spaces(&lx, p + 3); break; }
                if (at(&lx, p, "#}")) { e = p + 2 + (p + 2 < n && s[p + 2] == '\n'); break; }
            }
            if (!e) lex_fail(&lx, i, "missing end of comment tag");
            line_starting = s[e - 1] == '\n';
            pos = e;
        } else if (kind == '%' && raw_begin_at(&lx, i)) {
            size_t after = raw_begin_at(&lx, i);
            line_starting = s[after - 1] == '\n';
            pos = lex_raw(&lx, after, &line_starting);
        } else {
            lex_push(&lx, kind == '%' ? JT_BLOCK_BEGIN : JT_VAR_BEGIN, i);
            pos = lex_tag(&lx, body, kind == '%', &line_starting);
        }
    }
    lex_push(&lx, JT_EOF, n);
    out->v = lx.v;
    out->n = lx.nt;
    out->src = s;
    out->src_len = n;
}
