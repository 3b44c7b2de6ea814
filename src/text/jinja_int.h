/*
 * jinja_int.h - private interface shared by the files of the Jinja module
 * (jinja_lex.c, jinja_parse.c, jinja_eval.c, jinja_builtins.c,
 * jinja_value.c, json_value.c). Nothing outside the module includes it.
 *
 * Memory: everything a parse or a render allocates comes from one jarena
 * (bump allocator with a byte cap) and is released at once with it. Errors
 * therefore unwind with longjmp to the public entry point (jfail_raise):
 * nothing is leaked because nothing outlives the arena, and no function in
 * between holds a resource of its own. Functions that may raise say so
 * ("raises") in their comment.
 */
#ifndef MICA_JINJA_INT_H
#define MICA_JINJA_INT_H

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "text/jinja.h"

/* ---- failure context and arena ---- */

typedef struct jfail {
    jmp_buf jb;
    mica_err *err; /* never NULL inside the module */
} jfail;

/* Records st and the message in f->err and longjmps to f->jb. */
_Noreturn void jfail_raise(jfail *f, mica_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

typedef struct jarena_chunk jarena_chunk;
typedef struct jarena {
    jarena_chunk *head;
    size_t total; /* bytes obtained from mica_malloc */
    size_t limit; /* cap on total; exceeding it raises MICA_ERR_LIMIT */
    jfail *fail;
} jarena;

void jarena_init(jarena *a, size_t limit, jfail *fail);
void jarena_free(jarena *a);
/* n bytes aligned for any type (n may be 0); raises on cap or OOM. */
void *jarena_alloc(jarena *a, size_t n);
/* n * size bytes, overflow-checked; raises. */
void *jarena_array(jarena *a, size_t n, size_t size);
/* Copy of s[0..n) plus a NUL; raises. */
char *jarena_strdup(jarena *a, const char *s, size_t n);

/* ---- values ---- */

typedef enum jv_type {
    JV_UNDEF,  /* Jinja Undefined; u.s = name hint (may be empty) */
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,    /* u.s: UTF-8 bytes, immutable, NUL-terminated */
    JV_LIST,   /* list or tuple (u.l->is_tuple) */
    JV_DICT,   /* insertion-ordered mapping */
    JV_NS,     /* namespace(): a dict whose attributes may be assigned */
    JV_MACRO,
    JV_FUNC,   /* a global function, u.fn = JF_* id */
    JV_METHOD, /* a bound method of a str/dict/list/loop value */
    JV_LOOP,   /* the `loop` object of a for loop */
} jv_type;

typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jmacro jmacro;
typedef struct jmethod jmethod;
typedef struct jloop jloop;

typedef struct jstr {
    const char *p;
    size_t n;
} jstr;

typedef struct jv {
    int type; /* jv_type */
    union {
        bool b;
        int64_t i;
        double f;
        jstr s;
        jlist *l;
        jdict *d;
        jmacro *m;
        int fn;
        jmethod *meth;
        jloop *loop;
    } u;
} jv;

struct jlist {
    jv *v;
    size_t n, cap;
    bool is_tuple;
    bool is_gen; /* result of a lazy filter (map, select, unique...): Python sees a generator,
                  * which is always true, has no len() and prints as "<generator object>" */
};

struct jdict {
    jv *keys;
    jv *vals;
    size_t n, cap;
    uint32_t *idx;  /* open-addressing index into keys (slot value = i + 1), or NULL while small */
    size_t idx_cap; /* power of two */
};

struct jmethod {
    jv self;
    jstr name;
};

/* Global functions. */
enum { JF_RANGE, JF_NAMESPACE, JF_DICT, JF_RAISE, JF_STRFTIME, JF_COUNT };

static inline jv jv_undef(void) { jv v = {.type = JV_UNDEF}; v.u.s.p = ""; return v; }
static inline jv jv_none(void) { jv v = {.type = JV_NONE}; return v; }
static inline jv jv_bool(bool b) { jv v = {.type = JV_BOOL}; v.u.b = b; return v; }
static inline jv jv_int(int64_t i) { jv v = {.type = JV_INT}; v.u.i = i; return v; }
static inline jv jv_float(double f) { jv v = {.type = JV_FLOAT}; v.u.f = f; return v; }
static inline jv jv_strn(const char *p, size_t n) { jv v = {.type = JV_STR}; v.u.s.p = p; v.u.s.n = n; return v; }
static inline jv jv_undef_named(const char *p, size_t n) { jv v = {.type = JV_UNDEF}; v.u.s.p = p; v.u.s.n = n; return v; }
static inline bool jv_is_str(jv v) { return v.type == JV_STR; }
static inline bool jv_is_seq(jv v) { return v.type == JV_LIST; }
static inline bool jv_is_map(jv v) { return v.type == JV_DICT; }
static inline bool jv_is_num(jv v) { return v.type == JV_INT || v.type == JV_FLOAT || v.type == JV_BOOL; }

/* Growable byte buffer in an arena (the old block is abandoned on growth). */
typedef struct jbuf {
    char *p;
    size_t n, cap;
    size_t limit; /* raising MICA_ERR_LIMIT beyond this many bytes */
    jarena *a;
} jbuf;

void jbuf_init(jbuf *b, jarena *a, size_t limit);
void jbuf_put(jbuf *b, const char *s, size_t n); /* raises */
void jbuf_putc(jbuf *b, char c);                 /* raises */
void jbuf_printf(jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The buffer's bytes as a JV_STR (NUL-terminated). */
jv jbuf_value(jbuf *b);

/* Constructors (all raise on allocation failure). */
jv jv_str_copy(jarena *a, const char *s, size_t n);
jv jv_cstr(jarena *a, const char *s);
jv jv_list_new(jarena *a, size_t cap);
jv jv_dict_new(jarena *a);
void jlist_push(jarena *a, jlist *l, jv v);
/* Inserts or replaces key (Python dict semantics: 1 == 1.0 == True); raises on unhashable keys. */
void jdict_set(jarena *a, jfail *f, jdict *d, jv key, jv val);
/* Value of key, or false if absent. */
bool jdict_get(const jdict *d, jv key, jv *out);
bool jdict_get_str(const jdict *d, const char *k, size_t n, jv *out);

/* Python truthiness. */
bool jv_truthy(jv v);
/* Python ==, deep for lists and dicts. */
bool jv_equal(jv a, jv b);
/* Python ordering for <, >: numbers, strings (code-point order), lists; raises otherwise. */
int jv_compare(jfail *f, jv a, jv b);
/* Name of the type as Python would give it ("str", "int", "dict", "NoneType"...). */
const char *jv_type_name(jv v);

/* Appends str(v) as Python would print it (None, True, 1.5, ['a'], {'k': 1}). Raises for
 * values that have no stable text (macros print as a fixed marker). */
void jv_write_str(jbuf *b, jv v);
/* Appends repr(v) (strings quoted as Python does). */
void jv_write_repr(jbuf *b, jv v);
/* str(v) as a value: v itself for strings, "" for undefined. */
jv jv_to_str(jarena *a, jv v);
/* Python repr of a float ("1.0", "1e+16", "0.1", "nan", "inf"). */
void jv_format_float(double f, char out[48]);

/* Options of json.dumps. */
typedef struct jjson_opts {
    const jstr *indent; /* NULL: compact (no newlines) */
    jstr item_sep;      /* ", " (or "," when indenting) unless separators are given */
    jstr key_sep;       /* ": " */
    bool sort_keys;
    bool ensure_ascii;  /* escape non-ASCII as \uXXXX */
} jjson_opts;

/* Options equal to json.dumps(ensure_ascii=False, indent=indent) (indent NULL: None). */
jjson_opts jjson_opts_default(const jstr *indent);
/* json.dumps(v, **opts) into b; raises for values JSON cannot hold (undefined, macros,
 * namespaces) and for nesting deeper than JINJA_MAX_JSON_DEPTH. */
void jv_write_json(jbuf *b, jfail *f, jv v, const jjson_opts *o);

/* ---- UTF-8 string helpers (Python str semantics over code points) ---- */

/* Number of code points in s (invalid bytes count as one each). */
size_t jstr_cp_len(jstr s);
/* Byte offset of code point index i (i <= cp_len). */
size_t jstr_cp_offset(jstr s, size_t i);
/* True for the characters Python's str.isspace() accepts (ASCII and Unicode). */
bool jcp_is_space(uint32_t cp);
/* Length of trailing / leading Python whitespace of s in bytes. */
size_t jstr_space_suffix(const char *s, size_t n);
size_t jstr_space_prefix(const char *s, size_t n);

/* Parses JSON text into a value (strict RFC 8259 plus Python's NaN/Infinity; UTF-8
 * validated; nesting capped at JINJA_MAX_JSON_DEPTH); raises MICA_ERR_FORMAT. */
jv json_value_parse(jarena *a, jfail *f, const char *s, size_t n);

/* ---- tokens ---- */

typedef enum jtok_type {
    JT_DATA, JT_BLOCK_BEGIN, JT_BLOCK_END, JT_VAR_BEGIN, JT_VAR_END,
    JT_NAME, JT_STRING, JT_INT, JT_FLOAT, JT_OP, JT_EOF,
} jtok_type;

typedef enum jop {
    JOP_ADD, JOP_SUB, JOP_MUL, JOP_DIV, JOP_FLOORDIV, JOP_MOD, JOP_POW, JOP_TILDE,
    JOP_LBRACKET, JOP_RBRACKET, JOP_LPAREN, JOP_RPAREN, JOP_LBRACE, JOP_RBRACE,
    JOP_DOT, JOP_COLON, JOP_COMMA, JOP_PIPE, JOP_SEMICOLON, JOP_ASSIGN,
    JOP_EQ, JOP_NE, JOP_LT, JOP_LE, JOP_GT, JOP_GE,
    /* comparison operators that are words */
    JOP_IN, JOP_NOTIN,
} jop;

typedef struct jtok {
    int type;      /* jtok_type */
    int op;        /* jop for JT_OP */
    size_t pos;    /* byte offset in the normalised source (for line/column) */
    jstr s;        /* JT_DATA and JT_STRING: decoded text; JT_NAME: the name */
    int64_t i;     /* JT_INT */
    double f;      /* JT_FLOAT */
} jtok;

typedef struct jtoks {
    jtok *v;
    size_t n;
    const char *src; /* normalised source (newlines are \n) */
    size_t src_len;
} jtoks;

/* Tokenises src (raw template text) with trim_blocks and lstrip_blocks; raises
 * MICA_ERR_FORMAT with line and column on a lexical error. */
void jinja_lex(jarena *a, jfail *f, const char *src, size_t len, jtoks *out);
/* Line and column (1-based) of byte offset pos in the normalised source. */
void jinja_line_col(const char *src, size_t len, size_t pos, unsigned *line, unsigned *col);

/* ---- syntax tree ---- */

typedef enum jnode_kind {
    /* statements */
    JN_TEXT,      /* lit: the text */
    JN_OUTPUT,    /* a: expression */
    JN_IF,        /* a: condition, body: then, alt: else (may hold one JN_IF for elif) */
    JN_FOR,       /* names: targets, a: iterable, b: filter or NULL, body, alt: else */
    JN_SET,       /* names: targets (one name, or several to unpack), attr: ns attribute or empty, a: value */
    JN_SETBLOCK,  /* names[0]: target, body; filters: filter chain applied (JN_FILTER with a == NULL) or NULL */
    JN_MACRO,     /* name: macro name, names: parameters, kwargs: defaults (NULL entries), body */
    JN_BREAK,
    JN_CONTINUE,
    JN_BLOCK,     /* body rendered in place (generation blocks) */
    /* expressions */
    JN_LIT,       /* lit */
    JN_NAME,      /* name */
    JN_ATTR,      /* a.name */
    JN_ITEM,      /* a[b] */
    JN_SLICE,     /* a[b:c:d], each of b, c, d may be NULL */
    JN_CALL,      /* a(args, kwnames=kwargs) */
    JN_FILTER,    /* a | name(args, kw) */
    JN_TEST,      /* a is name(args); op = 1 when negated */
    JN_NEG, JN_POS, JN_NOT,   /* a */
    JN_BINOP,     /* a op b (JOP_ADD..JOP_TILDE) */
    JN_AND, JN_OR,
    JN_COMPARE,   /* a, then args[i] compared with op ops[i] (chained) */
    JN_COND,      /* b if a else c (c may be NULL) */
    JN_LISTLIT, JN_TUPLELIT,  /* args */
    JN_DICTLIT,   /* args: keys, kwargs: values */
} jnode_kind;

typedef struct jnode jnode;
typedef struct jnlist {
    jnode **v;
    size_t n;
} jnlist;

struct jnode {
    int kind;       /* jnode_kind */
    int op;         /* JN_BINOP operator; JN_TEST negation */
    size_t pos;     /* source offset for error messages */
    jstr name;      /* names of variables, attributes, filters, tests */
    jstr attr;      /* JN_SET: namespace attribute */
    jv lit;
    jnode *a, *b, *c, *d;
    jnlist body, alt;
    jnlist args;    /* positional arguments; list/tuple/dict-key items; compare operands */
    jnlist kwargs;  /* keyword argument values; dict values; macro defaults */
    jstr *names;    /* keyword argument names; for/set targets; macro parameters */
    size_t n_names;
    int *ops;       /* JN_COMPARE operators */
    jnode *filters; /* JN_SETBLOCK filter chain */
};

struct jinja_template {
    jarena arena;
    jfail fail;
    mica_err parse_err;
    jnlist body;
    const char *src; /* normalised source, for line numbers in run-time errors */
    size_t src_len;
};

/* Parses tokens into t->body; raises. */
void jinja_parse_tokens(jarena *a, jfail *f, const jtoks *toks, jnlist *body);

/* ---- evaluation ---- */

typedef struct jscope jscope;
struct jscope {
    jscope *parent;
    jstr *names;
    jv *vals;
    size_t n, cap;
};

struct jmacro {
    const jnode *def;
    jscope *closure;
};

struct jloop {
    jlist *items;
    size_t i;
    size_t depth;
};

typedef struct jvm {
    jfail *fail;
    jarena *a;
    const jinja_params *p;
    const jinja_template *t;
    uint64_t steps;
    uint32_t depth;
    size_t pos;      /* source offset of the node being evaluated (for errors) */
    uintptr_t stack_base; /* address of a local of the render entry point */
    jscope *root;
    jscope *scope;   /* innermost scope: assignments go here */
    jbuf *out;
} jvm;

/* Raises MICA_ERR_FORMAT with the current template line. */
_Noreturn void jvm_error(jvm *vm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Raises MICA_ERR_LIMIT with the current template line. */
_Noreturn void jvm_limit(jvm *vm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Raises MICA_ERR_LIMIT if the C stack grew past max_stack_bytes since the render began. */
void jvm_check_stack(jvm *vm);
/* Counts one unit of work (loop iteration, macro call); raises past max_steps. */
void jvm_step(jvm *vm, uint64_t n);

/* Evaluates an expression node; raises. */
jv jinja_eval(jvm *vm, const jnode *n);
/* Calls a callable value (macro, global, method) with evaluated arguments; raises. */
jv jinja_call(jvm *vm, jv fn, const jv *args, size_t n_args, const jstr *kwnames,
              const jv *kwargs, size_t n_kw);

/* Arguments of a filter/test/method call. */
typedef struct jargs {
    const jv *pos;
    size_t n_pos;
    const jstr *kwnames;
    const jv *kw;
    size_t n_kw;
} jargs;

/* Argument i (positional) or by keyword name; false if absent. Raises if given twice. */
bool jargs_get(jvm *vm, const jargs *a, size_t i, const char *name, jv *out);

/* Built-ins (jinja_builtins.c); all raise on errors. */
jv jinja_filter(jvm *vm, const char *name, size_t name_len, jv v, const jargs *args);
bool jinja_test(jvm *vm, const char *name, size_t name_len, jv v, const jargs *args);
/* Attribute lookup a.name with Jinja/Python rules (methods first, then items). */
jv jinja_getattr(jvm *vm, jv obj, jstr name);
/* Python attribute lookup only, without the item fallback (the `attr` filter). */
jv jinja_attr_only(jvm *vm, jv obj, jstr name);
/* Subscript a[key] with Jinja rules (items first, then attributes). */
jv jinja_getitem(jvm *vm, jv obj, jv key);
/* Calls a bound method. */
jv jinja_call_method(jvm *vm, const jmethod *m, const jargs *args);
/* Iterates v as a for loop or a filter would: list items, dict keys, string characters;
 * undefined gives an empty list; raises for non-iterables. */
jlist *jinja_iterate(jvm *vm, jv v);
/* Slicing with Python semantics for lists and strings. */
jv jinja_slice(jvm *vm, jv v, jv start, jv stop, jv step);
/* str.strip/lstrip/rstrip: chars is a string (set of characters) or none (whitespace). */
jv jinja_str_strip(jstr s, jv chars, bool left, bool right);
/* str.replace(old, new, count) (count < 0: all). */
jv jinja_str_replace(jvm *vm, jstr s, jstr old, jstr rep, int64_t count);
/* Case mapping of ASCII letters: 'l' lower, 'u' upper, 's' swapcase, 'c' capitalize,
 * 't' str.title. */
jv jinja_str_case(jvm *vm, jstr s, char mode);
/* strftime_now(fmt): the time of jinja_params.now (or the clock) formatted by strftime. */
jv jinja_strftime(jvm *vm, jstr fmt);

#endif /* MICA_JINJA_INT_H */
