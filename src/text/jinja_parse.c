/*
 * jinja_parse.c - recursive-descent parser from tokens to the syntax tree of
 * jinja_int.h. The grammar and operator precedence are Jinja2's (lowest
 * first): conditional `x if c else y`; or; and; not; comparisons (==, !=, <,
 * <=, >, >=, in, not in; chained); + -; ~; * / // %; **; unary - +; then
 * postfix .attr [item] [a:b:c] (call), and filters `|f(...)` and tests
 * `is [not] t` which bind tighter than every binary operator (so
 * `messages|length - 1` is `(messages|length) - 1`).
 *
 * Statements: if/elif/else, for (targets, `if` filter, else), set (name,
 * tuple, namespace attribute, block form with optional filters), macro,
 * break/continue (loop controls), raw (handled by the lexer) and the
 * `generation` block of Hugging Face. Nesting is capped at
 * JINJA_MAX_PARSE_DEPTH.
 */
#include <stdio.h>
#include <string.h>

#include "text/jinja_int.h"

typedef struct jparser {
    jarena *a;
    jfail *f;
    const jtoks *t;
    size_t i;
    int depth;
    int loop_depth; /* for loops enclosing the current point (reset inside macros) */
} jparser;

typedef struct jnvec {
    jnode **v;
    size_t n, cap;
} jnvec;

static void nvec_push(jparser *p, jnvec *v, jnode *n) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        jnode **nv = jarena_array(p->a, cap, sizeof *nv);
        if (v->n) memcpy(nv, v->v, v->n * sizeof *nv);
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = n;
}

static jnlist nvec_list(jnvec *v) { return (jnlist){v->v, v->n}; }

static const jtok *cur(const jparser *p) { return &p->t->v[p->i]; }
static const jtok *peek(const jparser *p, size_t k) {
    size_t j = p->i + k;
    return &p->t->v[j < p->t->n ? j : p->t->n - 1];
}
static void advance(jparser *p) {
    if (p->i + 1 < p->t->n) p->i++;
}

_Noreturn static void parse_fail(jparser *p, size_t pos, const char *fmt, const char *arg) {
    unsigned line, col;
    jinja_line_col(p->t->src, p->t->src_len, pos, &line, &col);
    char what[200];
    snprintf(what, sizeof what, fmt, arg ? arg : "");
    jfail_raise(p->f, MICA_ERR_FORMAT, "template syntax error at line %u, column %u: %s", line, col, what);
}

static bool is_op(const jparser *p, int op) { return cur(p)->type == JT_OP && cur(p)->op == op; }
static bool tok_is_name(const jtok *t, const char *name) {
    size_t k = strlen(name);
    return t->type == JT_NAME && t->s.n == k && memcmp(t->s.p, name, k) == 0;
}
static bool is_name(const jparser *p, const char *name) { return tok_is_name(cur(p), name); }
static bool skip_name(jparser *p, const char *name) {
    if (!is_name(p, name)) return false;
    advance(p);
    return true;
}
static bool skip_op(jparser *p, int op) {
    if (!is_op(p, op)) return false;
    advance(p);
    return true;
}

static const char *tok_desc(const jtok *t) {
    switch (t->type) {
    case JT_DATA: return "template data";
    case JT_BLOCK_BEGIN: return "'{%'";
    case JT_BLOCK_END: return "end of statement block";
    case JT_VAR_BEGIN: return "'{{'";
    case JT_VAR_END: return "end of print statement";
    case JT_NAME: return "name";
    case JT_STRING: return "string";
    case JT_INT: return "integer";
    case JT_FLOAT: return "float";
    case JT_OP: return "operator";
    default: return "end of template";
    }
}

static void expect_op(jparser *p, int op, const char *what) {
    if (!skip_op(p, op)) parse_fail(p, cur(p)->pos, "expected '%s'", what);
}
static void expect_type(jparser *p, int type, const char *what) {
    if (cur(p)->type != type) parse_fail(p, cur(p)->pos, "expected %s", what);
    advance(p);
}
static jstr expect_name(jparser *p) {
    if (cur(p)->type != JT_NAME) parse_fail(p, cur(p)->pos, "expected a name, got %s", tok_desc(cur(p)));
    jstr s = cur(p)->s;
    advance(p);
    return s;
}

static jnode *new_node(jparser *p, int kind, size_t pos) {
    jnode *n = jarena_alloc(p->a, sizeof *n);
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->pos = pos;
    return n;
}

static void enter(jparser *p) {
    if (++p->depth > JINJA_MAX_PARSE_DEPTH) {
        unsigned line, col;
        jinja_line_col(p->t->src, p->t->src_len, cur(p)->pos, &line, &col);
        jfail_raise(p->f, MICA_ERR_LIMIT, "template nested deeper than %d at line %u",
                    JINJA_MAX_PARSE_DEPTH, line);
    }
}
static void leave(jparser *p) { p->depth--; }

/* ---- expressions ---- */

static jnode *parse_expression(jparser *p, bool with_condexpr);
static jnode *parse_unary(jparser *p, bool with_filter);
static jnode *parse_primary(jparser *p);
static jnode *parse_postfix(jparser *p, jnode *n);

/* End of a tuple: the tag end, a closing paren, or one of the extra names. */
static bool tuple_end(const jparser *p, const char *extra) {
    const jtok *t = cur(p);
    if (t->type == JT_VAR_END || t->type == JT_BLOCK_END || t->type == JT_EOF) return true;
    if (t->type == JT_OP && t->op == JOP_RPAREN) return true;
    return extra && tok_is_name(t, extra);
}

static jnode *parse_tuple(jparser *p, bool simplified, bool with_condexpr, const char *extra_end,
                          bool explicit_parens) {
    size_t pos = cur(p)->pos;
    jnvec items = {0};
    bool is_tuple = false;
    for (;;) {
        if (items.n) expect_op(p, JOP_COMMA, ",");
        if (tuple_end(p, extra_end)) break;
        nvec_push(p, &items, simplified ? parse_postfix(p, parse_primary(p))
                                        : parse_expression(p, with_condexpr));
        if (is_op(p, JOP_COMMA)) is_tuple = true;
        else break;
    }
    if (!is_tuple) {
        if (items.n) return items.v[0];
        if (!explicit_parens) parse_fail(p, cur(p)->pos, "expected an expression, got %s", tok_desc(cur(p)));
    }
    jnode *n = new_node(p, JN_TUPLELIT, pos);
    n->args = nvec_list(&items);
    return n;
}

static void parse_call_args(jparser *p, jnode *n) {
    expect_op(p, JOP_LPAREN, "(");
    jnvec args = {0}, kwargs = {0};
    jstr *names = NULL;
    size_t n_names = 0, cap_names = 0;
    while (!is_op(p, JOP_RPAREN)) {
        if (args.n || kwargs.n) {
            expect_op(p, JOP_COMMA, ",");
            if (is_op(p, JOP_RPAREN)) break;
        }
        if (is_op(p, JOP_MUL) || is_op(p, JOP_POW))
            parse_fail(p, cur(p)->pos, "*args and **kwargs in calls are not supported%s", NULL);
        if (cur(p)->type == JT_NAME && peek(p, 1)->type == JT_OP && peek(p, 1)->op == JOP_ASSIGN) {
            jstr key = cur(p)->s;
            advance(p);
            advance(p);
            if (n_names == cap_names) {
                cap_names = cap_names ? cap_names * 2 : 4;
                jstr *nn = jarena_array(p->a, cap_names, sizeof *nn);
                if (n_names) memcpy(nn, names, n_names * sizeof *nn);
                names = nn;
            }
            names[n_names++] = key;
            nvec_push(p, &kwargs, parse_expression(p, true));
        } else {
            if (kwargs.n) parse_fail(p, cur(p)->pos, "positional argument follows keyword argument%s", NULL);
            nvec_push(p, &args, parse_expression(p, true));
        }
    }
    expect_op(p, JOP_RPAREN, ")");
    n->args = nvec_list(&args);
    n->kwargs = nvec_list(&kwargs);
    n->names = names;
    n->n_names = n_names;
}

static jnode *parse_subscript(jparser *p, jnode *obj) {
    size_t pos = cur(p)->pos;
    if (skip_op(p, JOP_DOT)) {
        if (cur(p)->type == JT_INT) {
            jnode *n = new_node(p, JN_ITEM, pos);
            n->a = obj;
            n->b = new_node(p, JN_LIT, cur(p)->pos);
            n->b->lit = jv_int(cur(p)->i);
            advance(p);
            return n;
        }
        jnode *n = new_node(p, JN_ATTR, pos);
        n->a = obj;
        n->name = expect_name(p);
        return n;
    }
    expect_op(p, JOP_LBRACKET, "[");
    jnode *parts[3] = {NULL, NULL, NULL};
    bool is_slice = false;
    if (!is_op(p, JOP_COLON)) parts[0] = parse_expression(p, true);
    if (skip_op(p, JOP_COLON)) {
        is_slice = true;
        if (!is_op(p, JOP_COLON) && !is_op(p, JOP_RBRACKET)) parts[1] = parse_expression(p, true);
        if (skip_op(p, JOP_COLON) && !is_op(p, JOP_RBRACKET)) parts[2] = parse_expression(p, true);
    }
    if (is_op(p, JOP_COMMA)) parse_fail(p, cur(p)->pos, "tuple subscripts are not supported%s", NULL);
    expect_op(p, JOP_RBRACKET, "]");
    jnode *n = new_node(p, is_slice ? JN_SLICE : JN_ITEM, pos);
    n->a = obj;
    if (is_slice) {
        n->b = parts[0];
        n->c = parts[1];
        n->d = parts[2];
    } else {
        n->b = parts[0];
    }
    return n;
}

static jnode *parse_postfix(jparser *p, jnode *n) {
    for (;;) {
        if (is_op(p, JOP_DOT) || is_op(p, JOP_LBRACKET)) {
            n = parse_subscript(p, n);
        } else if (is_op(p, JOP_LPAREN)) {
            jnode *c = new_node(p, JN_CALL, cur(p)->pos);
            c->a = n;
            parse_call_args(p, c);
            n = c;
        } else {
            return n;
        }
    }
}

static jstr parse_dotted_name(jparser *p) {
    jstr name = expect_name(p);
    while (is_op(p, JOP_DOT)) {
        advance(p);
        jstr more = expect_name(p);
        /* Names are views into the source; a dotted name spans from the first to the last part. */
        name.n = (size_t)(more.p + more.n - name.p);
    }
    return name;
}

static jnode *parse_filter(jparser *p, jnode *n, bool start_inline) {
    while (is_op(p, JOP_PIPE) || start_inline) {
        if (!start_inline) advance(p);
        start_inline = false;
        jnode *f = new_node(p, JN_FILTER, cur(p)->pos);
        f->a = n;
        f->name = parse_dotted_name(p);
        if (is_op(p, JOP_LPAREN)) parse_call_args(p, f);
        n = f;
    }
    return n;
}

static jnode *parse_test(jparser *p, jnode *n) {
    jnode *t = new_node(p, JN_TEST, cur(p)->pos);
    advance(p); /* is */
    if (skip_name(p, "not")) t->op = 1;
    t->a = n;
    t->name = parse_dotted_name(p);
    const jtok *c = cur(p);
    if (is_op(p, JOP_LPAREN)) {
        parse_call_args(p, t);
    } else if ((c->type == JT_NAME || c->type == JT_STRING || c->type == JT_INT || c->type == JT_FLOAT ||
                (c->type == JT_OP && (c->op == JOP_LBRACKET || c->op == JOP_LBRACE))) &&
               !tok_is_name(c, "else") && !tok_is_name(c, "or") && !tok_is_name(c, "and")) {
        if (tok_is_name(c, "is")) parse_fail(p, c->pos, "you cannot chain multiple tests with is%s", NULL);
        jnode *arg = parse_postfix(p, parse_primary(p));
        jnode **v = jarena_alloc(p->a, sizeof *v);
        v[0] = arg;
        t->args = (jnlist){v, 1};
    }
    return t;
}

static jnode *parse_filter_expr(jparser *p, jnode *n) {
    for (;;) {
        if (is_op(p, JOP_PIPE)) {
            n = parse_filter(p, n, false);
        } else if (is_name(p, "is")) {
            n = parse_test(p, n);
        } else if (is_op(p, JOP_LPAREN)) {
            jnode *c = new_node(p, JN_CALL, cur(p)->pos);
            c->a = n;
            parse_call_args(p, c);
            n = c;
        } else {
            return n;
        }
    }
}

static jnode *parse_list_or_dict(jparser *p) {
    size_t pos = cur(p)->pos;
    bool is_dict = is_op(p, JOP_LBRACE);
    advance(p);
    jnvec keys = {0}, vals = {0};
    int close = is_dict ? JOP_RBRACE : JOP_RBRACKET;
    while (!is_op(p, close)) {
        if (keys.n) {
            expect_op(p, JOP_COMMA, ",");
            if (is_op(p, close)) break;
        }
        nvec_push(p, &keys, parse_expression(p, true));
        if (is_dict) {
            expect_op(p, JOP_COLON, ":");
            nvec_push(p, &vals, parse_expression(p, true));
        }
    }
    expect_op(p, close, is_dict ? "}" : "]");
    jnode *n = new_node(p, is_dict ? JN_DICTLIT : JN_LISTLIT, pos);
    n->args = nvec_list(&keys);
    n->kwargs = nvec_list(&vals);
    return n;
}

static jnode *parse_primary(jparser *p) {
    const jtok *t = cur(p);
    jnode *n;
    switch (t->type) {
    case JT_NAME:
        n = new_node(p, JN_LIT, t->pos);
        if (tok_is_name(t, "true") || tok_is_name(t, "True")) n->lit = jv_bool(true);
        else if (tok_is_name(t, "false") || tok_is_name(t, "False")) n->lit = jv_bool(false);
        else if (tok_is_name(t, "none") || tok_is_name(t, "None")) n->lit = jv_none();
        else {
            n->kind = JN_NAME;
            n->name = t->s;
        }
        advance(p);
        return n;
    case JT_STRING: {
        n = new_node(p, JN_LIT, t->pos);
        if (peek(p, 1)->type != JT_STRING) {
            n->lit = jv_strn(t->s.p, t->s.n);
            advance(p);
            return n;
        }
        jbuf b; /* adjacent literals concatenate */
        jbuf_init(&b, p->a, JINJA_MAX_TEMPLATE_BYTES);
        while (cur(p)->type == JT_STRING) {
            jbuf_put(&b, cur(p)->s.p, cur(p)->s.n);
            advance(p);
        }
        n->lit = jbuf_value(&b);
        return n;
    }
    case JT_INT:
        n = new_node(p, JN_LIT, t->pos);
        n->lit = jv_int(t->i);
        advance(p);
        return n;
    case JT_FLOAT:
        n = new_node(p, JN_LIT, t->pos);
        n->lit = jv_float(t->f);
        advance(p);
        return n;
    case JT_OP:
        if (t->op == JOP_LPAREN) {
            advance(p);
            n = parse_tuple(p, false, true, NULL, true);
            expect_op(p, JOP_RPAREN, ")");
            return n;
        }
        if (t->op == JOP_LBRACKET || t->op == JOP_LBRACE) return parse_list_or_dict(p);
        break;
    default: break;
    }
    parse_fail(p, t->pos, "unexpected %s", tok_desc(t));
}

static jnode *parse_unary(jparser *p, bool with_filter) {
    enter(p);
    jnode *n;
    if (is_op(p, JOP_SUB) || is_op(p, JOP_ADD)) {
        n = new_node(p, is_op(p, JOP_SUB) ? JN_NEG : JN_POS, cur(p)->pos);
        advance(p);
        n->a = parse_unary(p, false);
    } else {
        n = parse_primary(p);
    }
    n = parse_postfix(p, n);
    if (with_filter) n = parse_filter_expr(p, n);
    leave(p);
    return n;
}

static jnode *binop(jparser *p, int op, jnode *a, jnode *b, size_t pos) {
    jnode *n = new_node(p, JN_BINOP, pos);
    n->op = op;
    n->a = a;
    n->b = b;
    return n;
}

static jnode *parse_pow(jparser *p) {
    jnode *n = parse_unary(p, true);
    while (is_op(p, JOP_POW)) {
        size_t pos = cur(p)->pos;
        advance(p);
        n = binop(p, JOP_POW, n, parse_unary(p, true), pos);
    }
    return n;
}

static jnode *parse_math2(jparser *p) {
    jnode *n = parse_pow(p);
    while (is_op(p, JOP_MUL) || is_op(p, JOP_DIV) || is_op(p, JOP_FLOORDIV) || is_op(p, JOP_MOD)) {
        int op = cur(p)->op;
        size_t pos = cur(p)->pos;
        advance(p);
        n = binop(p, op, n, parse_pow(p), pos);
    }
    return n;
}

static jnode *parse_concat(jparser *p) {
    jnode *n = parse_math2(p);
    while (is_op(p, JOP_TILDE)) {
        size_t pos = cur(p)->pos;
        advance(p);
        n = binop(p, JOP_TILDE, n, parse_math2(p), pos);
    }
    return n;
}

static jnode *parse_math1(jparser *p) {
    jnode *n = parse_concat(p);
    while (is_op(p, JOP_ADD) || is_op(p, JOP_SUB)) {
        int op = cur(p)->op;
        size_t pos = cur(p)->pos;
        advance(p);
        n = binop(p, op, n, parse_concat(p), pos);
    }
    return n;
}

static jnode *parse_compare(jparser *p) {
    size_t pos = cur(p)->pos;
    jnode *first = parse_math1(p);
    jnvec operands = {0};
    int ops[JINJA_MAX_PARSE_DEPTH];
    for (;;) {
        int op = -1;
        const jtok *t = cur(p);
        if (t->type == JT_OP && (t->op == JOP_EQ || t->op == JOP_NE || t->op == JOP_LT || t->op == JOP_LE ||
                                 t->op == JOP_GT || t->op == JOP_GE)) {
            op = t->op;
            advance(p);
        } else if (tok_is_name(t, "in")) {
            op = JOP_IN;
            advance(p);
        } else if (tok_is_name(t, "not") && tok_is_name(peek(p, 1), "in")) {
            op = JOP_NOTIN;
            advance(p);
            advance(p);
        } else {
            break;
        }
        if (operands.n == JINJA_MAX_PARSE_DEPTH) parse_fail(p, t->pos, "comparison chain too long%s", NULL);
        ops[operands.n] = op;
        nvec_push(p, &operands, parse_math1(p));
    }
    if (operands.n == 0) return first;
    jnode *n = new_node(p, JN_COMPARE, pos);
    n->a = first;
    n->args = nvec_list(&operands);
    n->ops = jarena_array(p->a, operands.n, sizeof(int));
    memcpy(n->ops, ops, operands.n * sizeof(int));
    return n;
}

static jnode *parse_not(jparser *p) {
    if (is_name(p, "not")) {
        enter(p);
        jnode *n = new_node(p, JN_NOT, cur(p)->pos);
        advance(p);
        n->a = parse_not(p);
        leave(p);
        return n;
    }
    return parse_compare(p);
}

static jnode *parse_and(jparser *p) {
    jnode *n = parse_not(p);
    while (is_name(p, "and")) {
        jnode *x = new_node(p, JN_AND, cur(p)->pos);
        advance(p);
        x->a = n;
        x->b = parse_not(p);
        n = x;
    }
    return n;
}

static jnode *parse_or(jparser *p) {
    jnode *n = parse_and(p);
    while (is_name(p, "or")) {
        jnode *x = new_node(p, JN_OR, cur(p)->pos);
        advance(p);
        x->a = n;
        x->b = parse_and(p);
        n = x;
    }
    return n;
}

static jnode *parse_condexpr(jparser *p) {
    jnode *n = parse_or(p);
    while (is_name(p, "if")) {
        jnode *c = new_node(p, JN_COND, cur(p)->pos);
        advance(p);
        c->b = n;
        c->a = parse_or(p);
        if (skip_name(p, "else")) c->c = parse_condexpr(p);
        n = c;
    }
    return n;
}

static jnode *parse_expression(jparser *p, bool with_condexpr) {
    enter(p);
    jnode *n = with_condexpr ? parse_condexpr(p) : parse_or(p);
    leave(p);
    return n;
}

/* ---- statements ---- */

static jnlist subparse(jparser *p, const char *const *end_names);

_Noreturn static void fail_unclosed(jparser *p, const char *const *end_names) {
    char names[160] = "";
    for (const char *const *e = end_names; *e; e++) {
        size_t k = strlen(names);
        snprintf(names + k, sizeof names - k, "%s'%s'", k ? " or " : "", *e);
    }
    parse_fail(p, cur(p)->pos, "unexpected end of template, looking for %s", names);
}

/* Expects the end of the current tag, then parses a body up to one of end_names; leaves
 * the parser on that name. With drop_needle the name is consumed too. */
static jnlist parse_statements(jparser *p, const char *const *end_names, bool drop_needle) {
    skip_op(p, JOP_COLON);
    expect_type(p, JT_BLOCK_END, "end of statement block");
    jnlist body = subparse(p, end_names);
    if (cur(p)->type == JT_EOF) fail_unclosed(p, end_names);
    if (drop_needle) advance(p);
    return body;
}

/* Assignment targets: one name, or several separated by commas (optionally in parens). */
static void parse_targets(jparser *p, jnode *n, const char *extra_end) {
    jstr tmp[16];
    size_t k = 0;
    bool paren = skip_op(p, JOP_LPAREN);
    for (;;) {
        if (k == MICA_ARRAY_LEN(tmp)) parse_fail(p, cur(p)->pos, "too many assignment targets%s", NULL);
        tmp[k++] = expect_name(p);
        if (!skip_op(p, JOP_COMMA)) break;
        if (paren ? is_op(p, JOP_RPAREN) : tuple_end(p, extra_end)) break;
    }
    if (paren) expect_op(p, JOP_RPAREN, ")");
    n->names = jarena_array(p->a, k, sizeof(jstr));
    memcpy(n->names, tmp, k * sizeof(jstr));
    n->n_names = k;
}

static jnode *parse_for(jparser *p, size_t pos) {
    static const char *const ends1[] = {"endfor", "else", NULL};
    static const char *const ends2[] = {"endfor", NULL};
    jnode *n = new_node(p, JN_FOR, pos);
    parse_targets(p, n, "in");
    if (!skip_name(p, "in")) parse_fail(p, cur(p)->pos, "expected 'in'%s", NULL);
    n->a = parse_tuple(p, false, false, "recursive", false);
    if (skip_name(p, "if")) n->b = parse_expression(p, true);
    if (is_name(p, "recursive")) parse_fail(p, cur(p)->pos, "recursive loops are not supported%s", NULL);
    p->loop_depth++;
    n->body = parse_statements(p, ends1, false);
    p->loop_depth--;
    if (skip_name(p, "else")) n->alt = parse_statements(p, ends2, true);
    else advance(p); /* endfor */
    return n;
}

static jnode *parse_if(jparser *p, size_t pos) {
    static const char *const ends1[] = {"elif", "else", "endif", NULL};
    static const char *const ends2[] = {"endif", NULL};
    jnode *n = new_node(p, JN_IF, pos);
    n->a = parse_tuple(p, false, false, NULL, false);
    n->body = parse_statements(p, ends1, false);
    if (is_name(p, "elif")) {
        size_t epos = cur(p)->pos;
        advance(p);
        jnode **v = jarena_alloc(p->a, sizeof *v);
        v[0] = parse_if(p, epos); /* consumes up to and including endif */
        n->alt = (jnlist){v, 1};
        return n;
    }
    if (skip_name(p, "else")) n->alt = parse_statements(p, ends2, true);
    else advance(p); /* endif */
    return n;
}

static jnode *parse_set(jparser *p, size_t pos) {
    static const char *const ends[] = {"endset", NULL};
    jnode *n = new_node(p, JN_SET, pos);
    if (cur(p)->type == JT_NAME && peek(p, 1)->type == JT_OP && peek(p, 1)->op == JOP_DOT) {
        jstr *nm = jarena_alloc(p->a, sizeof *nm);
        *nm = expect_name(p);
        n->names = nm;
        n->n_names = 1;
        advance(p); /* . */
        n->attr = expect_name(p);
    } else {
        parse_targets(p, n, NULL);
    }
    if (skip_op(p, JOP_ASSIGN)) {
        n->a = parse_tuple(p, false, true, NULL, false);
        return n;
    }
    if (n->attr.n || n->n_names != 1) parse_fail(p, cur(p)->pos, "block set needs a single name%s", NULL);
    n->kind = JN_SETBLOCK;
    if (is_op(p, JOP_PIPE)) n->filters = parse_filter(p, NULL, false);
    n->body = parse_statements(p, ends, true);
    return n;
}

static jnode *parse_macro(jparser *p, size_t pos) {
    static const char *const ends[] = {"endmacro", NULL};
    jnode *n = new_node(p, JN_MACRO, pos);
    jstr *nm = jarena_alloc(p->a, sizeof *nm);
    *nm = expect_name(p);
    n->name = *nm;
    expect_op(p, JOP_LPAREN, "(");
    jstr params[64];
    jnvec defaults = {0};
    size_t k = 0;
    bool any_default = false;
    while (!is_op(p, JOP_RPAREN)) {
        if (k) expect_op(p, JOP_COMMA, ",");
        if (k == MICA_ARRAY_LEN(params)) parse_fail(p, cur(p)->pos, "too many macro parameters%s", NULL);
        params[k++] = expect_name(p);
        if (skip_op(p, JOP_ASSIGN)) {
            nvec_push(p, &defaults, parse_expression(p, true));
            any_default = true;
        } else {
            if (any_default) parse_fail(p, cur(p)->pos, "non-default argument follows default argument%s", NULL);
            nvec_push(p, &defaults, NULL);
        }
    }
    expect_op(p, JOP_RPAREN, ")");
    n->names = jarena_array(p->a, k ? k : 1, sizeof(jstr));
    if (k) memcpy(n->names, params, k * sizeof(jstr));
    n->n_names = k;
    n->kwargs = nvec_list(&defaults);
    int saved = p->loop_depth;
    p->loop_depth = 0;
    n->body = parse_statements(p, ends, true);
    p->loop_depth = saved;
    return n;
}

static jnode *parse_statement(jparser *p) {
    const jtok *t = cur(p);
    size_t pos = t->pos;
    if (t->type != JT_NAME) parse_fail(p, pos, "tag name expected%s", NULL);
    enter(p);
    jnode *n;
    if (tok_is_name(t, "for")) {
        advance(p);
        n = parse_for(p, pos);
    } else if (tok_is_name(t, "if")) {
        advance(p);
        n = parse_if(p, pos);
    } else if (tok_is_name(t, "set")) {
        advance(p);
        n = parse_set(p, pos);
    } else if (tok_is_name(t, "macro")) {
        advance(p);
        n = parse_macro(p, pos);
    } else if (tok_is_name(t, "break") || tok_is_name(t, "continue")) {
        if (p->loop_depth == 0) parse_fail(p, pos, "'%s' outside of a loop", tok_is_name(t, "break") ? "break" : "continue");
        n = new_node(p, tok_is_name(t, "break") ? JN_BREAK : JN_CONTINUE, pos);
        advance(p);
    } else if (tok_is_name(t, "generation")) {
        static const char *const ends[] = {"endgeneration", NULL};
        advance(p);
        n = new_node(p, JN_BLOCK, pos);
        n->body = parse_statements(p, ends, true);
    } else {
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)MICA_MIN(t->s.n, (size_t)60), t->s.p);
        parse_fail(p, pos, "unknown or unsupported statement '%s'", name);
    }
    expect_type(p, JT_BLOCK_END, "end of statement block");
    leave(p);
    return n;
}

static jnlist subparse(jparser *p, const char *const *end_names) {
    jnvec body = {0};
    for (;;) {
        const jtok *t = cur(p);
        if (t->type == JT_EOF) break;
        if (t->type == JT_DATA) {
            jnode *n = new_node(p, JN_TEXT, t->pos);
            n->lit = jv_strn(t->s.p, t->s.n);
            nvec_push(p, &body, n);
            advance(p);
        } else if (t->type == JT_VAR_BEGIN) {
            advance(p);
            jnode *n = new_node(p, JN_OUTPUT, t->pos);
            n->a = parse_tuple(p, false, true, NULL, false);
            expect_type(p, JT_VAR_END, "end of print statement");
            nvec_push(p, &body, n);
        } else if (t->type == JT_BLOCK_BEGIN) {
            advance(p);
            if (end_names) {
                for (const char *const *e = end_names; *e; e++)
                    if (is_name(p, *e)) return nvec_list(&body);
            }
            nvec_push(p, &body, parse_statement(p));
        } else {
            parse_fail(p, t->pos, "unexpected %s", tok_desc(t));
        }
    }
    if (end_names) fail_unclosed(p, end_names);
    return nvec_list(&body);
}

void jinja_parse_tokens(jarena *a, jfail *f, const jtoks *toks, jnlist *body) {
    jparser p = {.a = a, .f = f, .t = toks};
    *body = subparse(&p, NULL);
    if (cur(&p)->type != JT_EOF) parse_fail(&p, cur(&p)->pos, "unexpected %s", tok_desc(cur(&p)));
}
