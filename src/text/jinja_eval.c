/*
 * jinja_eval.c - evaluation of the syntax tree: scopes, statements,
 * expressions, macro calls, and the public parse/render entry points.
 *
 * Scoping follows Jinja2: `set` binds in the innermost scope; a for loop body
 * gets a fresh scope on every iteration (assignments inside a loop are not
 * seen after it, nor by the next iteration); `if` opens no scope; a macro
 * runs in a new scope whose parent is the scope it was defined in, read at
 * call time. The template's variables form the root scope; the globals
 * (range, namespace, dict, raise_exception, strftime_now) come after it.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "text/jinja_int.h"

enum { FLOW_NORMAL = 0, FLOW_BREAK, FLOW_CONTINUE };

/* ---- errors and budget ---- */

_Noreturn void jvm_error(jvm *vm, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    jfail_raise(vm->fail, MICA_ERR_FORMAT, "%s", msg);
}

_Noreturn void jvm_limit(jvm *vm, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    jfail_raise(vm->fail, MICA_ERR_LIMIT, "%s", msg);
}

void jvm_step(jvm *vm, uint64_t n) {
    vm->steps += n;
    if (vm->steps > vm->p->max_steps)
        jvm_limit(vm, "more than %llu loop iterations and macro calls",
                  (unsigned long long)vm->p->max_steps);
}

void jvm_check_stack(jvm *vm) {
    char here;
    uintptr_t cur = (uintptr_t)&here;
    uintptr_t used = vm->stack_base > cur ? vm->stack_base - cur : cur - vm->stack_base;
    if (used > vm->p->max_stack_bytes)
        jvm_limit(vm, "template nested too deeply (more than %zu bytes of stack)", vm->p->max_stack_bytes);
}

/* ---- scopes ---- */

static jscope *scope_new(jvm *vm, jscope *parent) {
    jscope *s = jarena_alloc(vm->a, sizeof *s);
    memset(s, 0, sizeof *s);
    s->parent = parent;
    return s;
}

static void scope_set(jvm *vm, jscope *s, jstr name, jv v) {
    for (size_t i = 0; i < s->n; i++) {
        if (s->names[i].n == name.n && memcmp(s->names[i].p, name.p, name.n) == 0) {
            s->vals[i] = v;
            return;
        }
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        jstr *nn = jarena_array(vm->a, cap, sizeof *nn);
        jv *nv = jarena_array(vm->a, cap, sizeof *nv);
        if (s->n) {
            memcpy(nn, s->names, s->n * sizeof *nn);
            memcpy(nv, s->vals, s->n * sizeof *nv);
        }
        s->names = nn;
        s->vals = nv;
        s->cap = cap;
    }
    s->names[s->n] = name;
    s->vals[s->n] = v;
    s->n++;
}

static bool name_is(jstr s, const char *lit) {
    size_t k = strlen(lit);
    return s.n == k && memcmp(s.p, lit, k) == 0;
}

static jv scope_lookup(jvm *vm, jstr name) {
    for (jscope *s = vm->scope; s; s = s->parent) {
        for (size_t i = s->n; i-- > 0;) {
            if (s->names[i].n == name.n && memcmp(s->names[i].p, name.p, name.n) == 0) return s->vals[i];
        }
    }
    static const struct { const char *name; int fn; } globals[] = {
        {"range", JF_RANGE}, {"namespace", JF_NAMESPACE}, {"dict", JF_DICT},
        {"raise_exception", JF_RAISE}, {"strftime_now", JF_STRFTIME},
    };
    for (size_t i = 0; i < MICA_ARRAY_LEN(globals); i++) {
        if (name_is(name, globals[i].name)) {
            jv v = {.type = JV_FUNC};
            v.u.fn = globals[i].fn;
            return v;
        }
    }
    return jv_undef_named(name.p, name.n);
}

/* ---- expressions ---- */

_Noreturn static void undefined_error(jvm *vm, jv v) {
    if (v.u.s.n) jvm_error(vm, "'%.*s' is undefined", (int)MICA_MIN(v.u.s.n, (size_t)100), v.u.s.p);
    jvm_error(vm, "undefined value used");
}

_Noreturn static void int_overflow(jvm *vm) {
    jvm_error(vm, "integer overflow (values beyond 64 bits are not supported)");
}

static jv repeat_seq(jvm *vm, jv seq, int64_t times) {
    if (times <= 0) return seq.type == JV_STR ? jv_strn("", 0) : jv_list_new(vm->a, 0);
    if (seq.type == JV_STR) {
        size_t total;
        if (!mica_size_mul_ok(seq.u.s.n, (size_t)times, &total) || total > vm->p->max_output_bytes)
            jvm_limit(vm, "string repetition larger than the output limit");
        char *p = jarena_alloc(vm->a, total + 1);
        for (int64_t i = 0; i < times; i++) memcpy(p + (size_t)i * seq.u.s.n, seq.u.s.p, seq.u.s.n);
        p[total] = '\0';
        return jv_strn(p, total);
    }
    size_t total;
    if (!mica_size_mul_ok(seq.u.l->n, (size_t)times, &total) || total > vm->p->max_steps)
        jvm_limit(vm, "list repetition too large");
    jv out = jv_list_new(vm->a, total);
    out.u.l->is_tuple = seq.u.l->is_tuple;
    for (int64_t i = 0; i < times; i++)
        for (size_t k = 0; k < seq.u.l->n; k++) jlist_push(vm->a, out.u.l, seq.u.l->v[k]);
    return out;
}

static double as_double(jv v) {
    return v.type == JV_FLOAT ? v.u.f : v.type == JV_INT ? (double)v.u.i : (double)v.u.b;
}
static int64_t as_int(jv v) { return v.type == JV_INT ? v.u.i : v.type == JV_BOOL ? (int64_t)v.u.b : 0; }

static jv binop(jvm *vm, int op, jv a, jv b) {
    if (op == JOP_TILDE) {
        jv sa = jv_to_str(vm->a, a), sb = jv_to_str(vm->a, b);
        jbuf buf;
        jbuf_init(&buf, vm->a, vm->p->max_output_bytes);
        jbuf_put(&buf, sa.u.s.p, sa.u.s.n);
        jbuf_put(&buf, sb.u.s.p, sb.u.s.n);
        return jbuf_value(&buf);
    }
    if (a.type == JV_UNDEF) undefined_error(vm, a);
    if (b.type == JV_UNDEF) undefined_error(vm, b);
    if (jv_is_num(a) && jv_is_num(b)) {
        bool is_int = a.type != JV_FLOAT && b.type != JV_FLOAT;
        int64_t x = as_int(a), y = as_int(b), r;
        double fx = as_double(a), fy = as_double(b);
        switch (op) {
        case JOP_ADD:
            if (is_int) {
                if (__builtin_add_overflow(x, y, &r)) int_overflow(vm);
                return jv_int(r);
            }
            return jv_float(fx + fy);
        case JOP_SUB:
            if (is_int) {
                if (__builtin_sub_overflow(x, y, &r)) int_overflow(vm);
                return jv_int(r);
            }
            return jv_float(fx - fy);
        case JOP_MUL:
            if (is_int) {
                if (__builtin_mul_overflow(x, y, &r)) int_overflow(vm);
                return jv_int(r);
            }
            return jv_float(fx * fy);
        case JOP_DIV:
            if (fy == 0.0) jvm_error(vm, "division by zero");
            return jv_float(fx / fy);
        case JOP_FLOORDIV:
        case JOP_MOD:
            if (is_int) {
                if (y == 0) jvm_error(vm, "integer division or modulo by zero");
                if (x == INT64_MIN && y == -1) int_overflow(vm);
                int64_t q = x / y, m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) { q--; m += y; }
                return jv_int(op == JOP_MOD ? m : q);
            }
            if (fy == 0.0) jvm_error(vm, "float division or modulo by zero");
            if (op == JOP_FLOORDIV) return jv_float(floor(fx / fy));
            {
                double m = fmod(fx, fy);
                if (m != 0.0 && ((m < 0) != (fy < 0))) m += fy;
                return jv_float(m);
            }
        case JOP_POW:
            if (is_int && y >= 0) {
                int64_t acc = 1, base = x;
                for (int64_t e = y; e > 0; e >>= 1) {
                    if ((e & 1) && __builtin_mul_overflow(acc, base, &acc)) int_overflow(vm);
                    if (e > 1 && __builtin_mul_overflow(base, base, &base)) int_overflow(vm);
                }
                return jv_int(acc);
            }
            if (fx == 0.0 && fy < 0) jvm_error(vm, "zero to a negative power");
            return jv_float(pow(fx, fy));
        default: break;
        }
    }
    if (op == JOP_ADD && a.type == JV_STR && b.type == JV_STR) {
        jbuf buf;
        jbuf_init(&buf, vm->a, vm->p->max_output_bytes);
        jbuf_put(&buf, a.u.s.p, a.u.s.n);
        jbuf_put(&buf, b.u.s.p, b.u.s.n);
        return jbuf_value(&buf);
    }
    if (op == JOP_ADD && a.type == JV_LIST && b.type == JV_LIST && a.u.l->is_tuple == b.u.l->is_tuple) {
        jv out = jv_list_new(vm->a, a.u.l->n + b.u.l->n);
        out.u.l->is_tuple = a.u.l->is_tuple;
        for (size_t i = 0; i < a.u.l->n; i++) jlist_push(vm->a, out.u.l, a.u.l->v[i]);
        for (size_t i = 0; i < b.u.l->n; i++) jlist_push(vm->a, out.u.l, b.u.l->v[i]);
        return out;
    }
    if (op == JOP_MUL) {
        if ((a.type == JV_STR || a.type == JV_LIST) && (b.type == JV_INT || b.type == JV_BOOL))
            return repeat_seq(vm, a, as_int(b));
        if ((b.type == JV_STR || b.type == JV_LIST) && (a.type == JV_INT || a.type == JV_BOOL))
            return repeat_seq(vm, b, as_int(a));
    }
    if (op == JOP_MOD && a.type == JV_STR) jvm_error(vm, "printf-style '%%' string formatting is not supported");
    static const char *const names[] = {"+", "-", "*", "/", "//", "%", "**", "~"};
    jvm_error(vm, "unsupported operand type(s) for %s: '%s' and '%s'", names[op], jv_type_name(a),
              jv_type_name(b));
}

/* item in container, as Python's `in`. */
static bool contains(jvm *vm, jv container, jv item) {
    switch (container.type) {
    case JV_UNDEF: return false;
    case JV_STR:
        if (item.type != JV_STR)
            jvm_error(vm, "'in <string>' requires string as left operand, not %s", jv_type_name(item));
        if (item.u.s.n == 0) return true;
        return memmem(container.u.s.p, container.u.s.n, item.u.s.p, item.u.s.n) != NULL;
    case JV_LIST:
        for (size_t i = 0; i < container.u.l->n; i++)
            if (jv_equal(container.u.l->v[i], item)) return true;
        return false;
    case JV_DICT: {
        jv tmp;
        return jdict_get(container.u.d, item, &tmp);
    }
    default: jvm_error(vm, "argument of type '%s' is not iterable", jv_type_name(container));
    }
}

static bool compare_op(jvm *vm, int op, jv a, jv b) {
    switch (op) {
    case JOP_EQ: return jv_equal(a, b);
    case JOP_NE: return !jv_equal(a, b);
    case JOP_IN: return contains(vm, b, a);
    case JOP_NOTIN: return !contains(vm, b, a);
    default: break;
    }
    if (a.type == JV_UNDEF) undefined_error(vm, a);
    if (b.type == JV_UNDEF) undefined_error(vm, b);
    int c = jv_compare(vm->fail, a, b);
    switch (op) {
    case JOP_LT: return c < 0;
    case JOP_LE: return c <= 0;
    case JOP_GT: return c > 0;
    default: return c >= 0;
    }
}

/* Evaluates call arguments into arena arrays. */
static void eval_args(jvm *vm, const jnode *n, jargs *out) {
    jv *pos = n->args.n ? jarena_array(vm->a, n->args.n, sizeof(jv)) : NULL;
    for (size_t i = 0; i < n->args.n; i++) pos[i] = jinja_eval(vm, n->args.v[i]);
    jv *kw = n->kwargs.n ? jarena_array(vm->a, n->kwargs.n, sizeof(jv)) : NULL;
    for (size_t i = 0; i < n->kwargs.n; i++) kw[i] = jinja_eval(vm, n->kwargs.v[i]);
    out->pos = pos;
    out->n_pos = n->args.n;
    out->kwnames = n->names;
    out->kw = kw;
    out->n_kw = n->kwargs.n;
}

static jv apply_filters(jvm *vm, const jnode *f, jv v) {
    if (!f) return v;
    v = apply_filters(vm, f->a, v);
    jargs args;
    eval_args(vm, f, &args);
    vm->pos = f->pos;
    return jinja_filter(vm, f->name.p, f->name.n, v, &args);
}

jv jinja_eval(jvm *vm, const jnode *n) {
    vm->pos = n->pos;
    jvm_check_stack(vm);
    switch (n->kind) {
    case JN_LIT: return n->lit;
    case JN_NAME: return scope_lookup(vm, n->name);
    case JN_ATTR: {
        jv obj = jinja_eval(vm, n->a);
        vm->pos = n->pos;
        if (obj.type == JV_UNDEF) undefined_error(vm, obj);
        return jinja_getattr(vm, obj, n->name);
    }
    case JN_ITEM: {
        jv obj = jinja_eval(vm, n->a);
        jv key = jinja_eval(vm, n->b);
        vm->pos = n->pos;
        if (obj.type == JV_UNDEF) undefined_error(vm, obj);
        return jinja_getitem(vm, obj, key);
    }
    case JN_SLICE: {
        jv obj = jinja_eval(vm, n->a);
        jv s0 = n->b ? jinja_eval(vm, n->b) : jv_none();
        jv s1 = n->c ? jinja_eval(vm, n->c) : jv_none();
        jv s2 = n->d ? jinja_eval(vm, n->d) : jv_none();
        vm->pos = n->pos;
        if (obj.type == JV_UNDEF) undefined_error(vm, obj);
        return jinja_slice(vm, obj, s0, s1, s2);
    }
    case JN_CALL: {
        jv fn = jinja_eval(vm, n->a);
        jargs args;
        eval_args(vm, n, &args);
        vm->pos = n->pos;
        return jinja_call(vm, fn, args.pos, args.n_pos, args.kwnames, args.kw, args.n_kw);
    }
    case JN_FILTER: {
        jv v = jinja_eval(vm, n->a);
        jargs args;
        eval_args(vm, n, &args);
        vm->pos = n->pos;
        return jinja_filter(vm, n->name.p, n->name.n, v, &args);
    }
    case JN_TEST: {
        jv v = jinja_eval(vm, n->a);
        jargs args;
        eval_args(vm, n, &args);
        vm->pos = n->pos;
        bool r = jinja_test(vm, n->name.p, n->name.n, v, &args);
        return jv_bool(n->op ? !r : r);
    }
    case JN_NEG:
    case JN_POS: {
        jv v = jinja_eval(vm, n->a);
        vm->pos = n->pos;
        if (v.type == JV_FLOAT) return jv_float(n->kind == JN_NEG ? -v.u.f : v.u.f);
        if (v.type == JV_INT || v.type == JV_BOOL) {
            int64_t i = as_int(v);
            if (n->kind == JN_POS) return jv_int(i);
            if (i == INT64_MIN) int_overflow(vm);
            return jv_int(-i);
        }
        if (v.type == JV_UNDEF) undefined_error(vm, v);
        jvm_error(vm, "bad operand type for unary %s: '%s'", n->kind == JN_NEG ? "-" : "+", jv_type_name(v));
    }
    case JN_NOT: return jv_bool(!jv_truthy(jinja_eval(vm, n->a)));
    case JN_AND: {
        jv a = jinja_eval(vm, n->a);
        return jv_truthy(a) ? jinja_eval(vm, n->b) : a;
    }
    case JN_OR: {
        jv a = jinja_eval(vm, n->a);
        return jv_truthy(a) ? a : jinja_eval(vm, n->b);
    }
    case JN_BINOP: {
        jv a = jinja_eval(vm, n->a);
        jv b = jinja_eval(vm, n->b);
        vm->pos = n->pos;
        return binop(vm, n->op, a, b);
    }
    case JN_COMPARE: {
        jv left = jinja_eval(vm, n->a);
        for (size_t i = 0; i < n->args.n; i++) {
            jv right = jinja_eval(vm, n->args.v[i]);
            vm->pos = n->pos;
            if (!compare_op(vm, n->ops[i], left, right)) return jv_bool(false);
            left = right;
        }
        return jv_bool(true);
    }
    case JN_COND:
        if (jv_truthy(jinja_eval(vm, n->a))) return jinja_eval(vm, n->b);
        return n->c ? jinja_eval(vm, n->c) : jv_undef();
    case JN_LISTLIT:
    case JN_TUPLELIT: {
        jv l = jv_list_new(vm->a, n->args.n);
        l.u.l->is_tuple = n->kind == JN_TUPLELIT;
        for (size_t i = 0; i < n->args.n; i++) jlist_push(vm->a, l.u.l, jinja_eval(vm, n->args.v[i]));
        return l;
    }
    case JN_DICTLIT: {
        jv d = jv_dict_new(vm->a);
        for (size_t i = 0; i < n->args.n; i++) {
            jv k = jinja_eval(vm, n->args.v[i]);
            jv v = jinja_eval(vm, n->kwargs.v[i]);
            vm->pos = n->pos;
            jdict_set(vm->a, vm->fail, d.u.d, k, v);
        }
        return d;
    }
    default: jvm_error(vm, "internal error: not an expression (kind %d)", n->kind);
    }
}

/* ---- macros and calls ---- */

static int exec_body(jvm *vm, const jnlist *body);

static jv call_macro(jvm *vm, const jmacro *m, const jv *args, size_t n_args, const jstr *kwnames,
                     const jv *kwargs, size_t n_kw) {
    const jnode *def = m->def;
    if (vm->depth >= vm->p->max_depth)
        jvm_limit(vm, "macro calls nested deeper than %u", (unsigned)vm->p->max_depth);
    jvm_step(vm, 1);
    if (n_args > def->n_names)
        jvm_error(vm, "macro '%.*s' takes not more than %zu argument(s)", (int)def->name.n, def->name.p,
                  def->n_names);
    jscope *saved_scope = vm->scope;
    jbuf *saved_out = vm->out;
    jscope *s = scope_new(vm, m->closure);
    bool *given = jarena_array(vm->a, def->n_names ? def->n_names : 1, sizeof(bool));
    memset(given, 0, (def->n_names ? def->n_names : 1) * sizeof(bool));
    for (size_t i = 0; i < n_args; i++) {
        scope_set(vm, s, def->names[i], args[i]);
        given[i] = true;
    }
    for (size_t k = 0; k < n_kw; k++) {
        size_t i = 0;
        while (i < def->n_names && !(def->names[i].n == kwnames[k].n &&
                                     memcmp(def->names[i].p, kwnames[k].p, kwnames[k].n) == 0))
            i++;
        if (i == def->n_names)
            jvm_error(vm, "macro '%.*s' has no argument '%.*s'", (int)def->name.n, def->name.p,
                      (int)kwnames[k].n, kwnames[k].p);
        if (given[i]) jvm_error(vm, "macro '%.*s' got multiple values for '%.*s'", (int)def->name.n,
                                def->name.p, (int)kwnames[k].n, kwnames[k].p);
        scope_set(vm, s, def->names[i], kwargs[k]);
        given[i] = true;
    }
    vm->scope = s;
    for (size_t i = 0; i < def->n_names; i++) {
        if (given[i]) continue;
        const jnode *dflt = i < def->kwargs.n ? def->kwargs.v[i] : NULL;
        scope_set(vm, s, def->names[i], dflt ? jinja_eval(vm, dflt) : jv_undef_named(def->names[i].p, def->names[i].n));
    }
    jbuf out;
    jbuf_init(&out, vm->a, vm->p->max_output_bytes);
    vm->out = &out;
    vm->depth++;
    exec_body(vm, &def->body);
    vm->depth--;
    vm->out = saved_out;
    vm->scope = saved_scope;
    return jbuf_value(&out);
}

jv jinja_call(jvm *vm, jv fn, const jv *args, size_t n_args, const jstr *kwnames, const jv *kwargs,
              size_t n_kw) {
    jargs a = {.pos = args, .n_pos = n_args, .kwnames = kwnames, .kw = kwargs, .n_kw = n_kw};
    switch (fn.type) {
    case JV_MACRO: return call_macro(vm, fn.u.m, args, n_args, kwnames, kwargs, n_kw);
    case JV_METHOD: return jinja_call_method(vm, fn.u.meth, &a);
    case JV_FUNC: break;
    case JV_UNDEF: undefined_error(vm, fn);
    default: jvm_error(vm, "'%s' object is not callable", jv_type_name(fn));
    }
    switch (fn.u.fn) {
    case JF_RANGE: {
        jv v[3];
        if (n_kw || n_args < 1 || n_args > 3) jvm_error(vm, "range expects 1 to 3 integer arguments");
        for (size_t i = 0; i < n_args; i++) {
            if (args[i].type != JV_INT && args[i].type != JV_BOOL)
                jvm_error(vm, "'%s' object cannot be interpreted as an integer", jv_type_name(args[i]));
            v[i] = jv_int(as_int(args[i]));
        }
        int64_t start = n_args == 1 ? 0 : v[0].u.i, stop = n_args == 1 ? v[0].u.i : v[1].u.i;
        int64_t step = n_args == 3 ? v[2].u.i : 1;
        if (step == 0) jvm_error(vm, "range() arg 3 must not be zero");
        double count = step > 0 ? ceil(((double)stop - (double)start) / (double)step)
                                : ceil(((double)start - (double)stop) / -(double)step);
        if (count < 0) count = 0;
        /* The Jinja sandbox refuses ranges longer than 100000 items (MAX_RANGE). */
        if (count > 100000) jvm_limit(vm, "range too big: the sandbox allows at most 100000 items");
        jv l = jv_list_new(vm->a, (size_t)count);
        for (int64_t i = 0; i < (int64_t)count; i++) jlist_push(vm->a, l.u.l, jv_int(start + i * step));
        return l;
    }
    case JF_NAMESPACE:
    case JF_DICT: {
        jv d = jv_dict_new(vm->a);
        for (size_t i = 0; i < n_args; i++) {
            if (args[i].type != JV_DICT) jvm_error(vm, "namespace()/dict() takes keyword arguments or a dict");
            for (size_t k = 0; k < args[i].u.d->n; k++)
                jdict_set(vm->a, vm->fail, d.u.d, args[i].u.d->keys[k], args[i].u.d->vals[k]);
        }
        for (size_t k = 0; k < n_kw; k++)
            jdict_set(vm->a, vm->fail, d.u.d, jv_strn(kwnames[k].p, kwnames[k].n), kwargs[k]);
        if (fn.u.fn == JF_NAMESPACE) d.type = JV_NS;
        return d;
    }
    case JF_RAISE: {
        jv msg = n_args ? jv_to_str(vm->a, args[0]) : jv_strn("", 0);
        jfail_raise(vm->fail, MICA_ERR_INVALID_ARG, "raise_exception: %.*s",
                    (int)MICA_MIN(msg.u.s.n, (size_t)400), msg.u.s.p);
    }
    case JF_STRFTIME: {
        jv fmt;
        if (!jargs_get(vm, &a, 0, "format", &fmt) || fmt.type != JV_STR)
            jvm_error(vm, "strftime_now expects a format string");
        return jinja_strftime(vm, fmt.u.s);
    }
    default: jvm_error(vm, "internal error: unknown function");
    }
}

/* ---- statements ---- */

static void out_value(jvm *vm, jv v) {
    if (v.type == JV_STR) jbuf_put(vm->out, v.u.s.p, v.u.s.n);
    else jv_write_str(vm->out, v);
}

static void bind_targets(jvm *vm, jscope *s, const jnode *n, jv item) {
    if (n->n_names == 1) {
        scope_set(vm, s, n->names[0], item);
        return;
    }
    jlist *l = jinja_iterate(vm, item);
    if (l->n != n->n_names)
        jvm_error(vm, "cannot unpack %zu values into %zu targets", l->n, n->n_names);
    for (size_t i = 0; i < n->n_names; i++) scope_set(vm, s, n->names[i], l->v[i]);
}

static int exec_for(jvm *vm, const jnode *n) {
    jv seq = jinja_eval(vm, n->a);
    vm->pos = n->pos;
    jlist *items = jinja_iterate(vm, seq);
    jscope *saved = vm->scope;
    jscope *s = scope_new(vm, saved);
    if (n->b) { /* `for x in xs if cond`: filter first so that loop.length counts kept items */
        jv kept = jv_list_new(vm->a, items->n);
        vm->scope = s;
        for (size_t i = 0; i < items->n; i++) {
            jvm_step(vm, 1);
            s->n = 0;
            bind_targets(vm, s, n, items->v[i]);
            if (jv_truthy(jinja_eval(vm, n->b))) jlist_push(vm->a, kept.u.l, items->v[i]);
        }
        vm->scope = saved;
        items = kept.u.l;
    }
    if (items->n == 0) return exec_body(vm, &n->alt);
    jloop *lp = jarena_alloc(vm->a, sizeof *lp);
    lp->items = items;
    lp->depth = 1;
    jv loopv = {.type = JV_LOOP};
    loopv.u.loop = lp;
    vm->scope = s;
    for (size_t i = 0; i < items->n; i++) {
        jvm_step(vm, 1);
        lp->i = i;
        s->n = 0; /* a fresh scope for every iteration */
        scope_set(vm, s, (jstr){"loop", 4}, loopv);
        bind_targets(vm, s, n, items->v[i]);
        if (exec_body(vm, &n->body) == FLOW_BREAK) break;
    }
    vm->scope = saved;
    return FLOW_NORMAL;
}

static void exec_set(jvm *vm, const jnode *n) {
    jv v = jinja_eval(vm, n->a);
    vm->pos = n->pos;
    if (n->attr.n) {
        jv ns = scope_lookup(vm, n->names[0]);
        if (ns.type != JV_NS) jvm_error(vm, "cannot assign attribute on non-namespace object");
        jdict_set(vm->a, vm->fail, ns.u.d, jv_strn(n->attr.p, n->attr.n), v);
        return;
    }
    bind_targets(vm, vm->scope, n, v);
}

static int exec_stmt(jvm *vm, const jnode *n) {
    vm->pos = n->pos;
    jvm_check_stack(vm);
    switch (n->kind) {
    case JN_TEXT: jbuf_put(vm->out, n->lit.u.s.p, n->lit.u.s.n); return FLOW_NORMAL;
    case JN_OUTPUT: out_value(vm, jinja_eval(vm, n->a)); return FLOW_NORMAL;
    case JN_IF:
        if (jv_truthy(jinja_eval(vm, n->a))) return exec_body(vm, &n->body);
        return exec_body(vm, &n->alt);
    case JN_FOR: return exec_for(vm, n);
    case JN_SET: exec_set(vm, n); return FLOW_NORMAL;
    case JN_SETBLOCK: {
        jbuf *saved = vm->out;
        jbuf cap;
        jbuf_init(&cap, vm->a, vm->p->max_output_bytes);
        vm->out = &cap;
        int flow = exec_body(vm, &n->body);
        vm->out = saved;
        jv v = apply_filters(vm, n->filters, jbuf_value(&cap));
        scope_set(vm, vm->scope, n->names[0], v);
        return flow;
    }
    case JN_MACRO: {
        jmacro *m = jarena_alloc(vm->a, sizeof *m);
        m->def = n;
        m->closure = vm->scope;
        jv v = {.type = JV_MACRO};
        v.u.m = m;
        scope_set(vm, vm->scope, n->name, v);
        return FLOW_NORMAL;
    }
    case JN_BREAK: return FLOW_BREAK;
    case JN_CONTINUE: return FLOW_CONTINUE;
    case JN_BLOCK: return exec_body(vm, &n->body);
    default: jvm_error(vm, "internal error: not a statement (kind %d)", n->kind);
    }
}

static int exec_body(jvm *vm, const jnlist *body) {
    for (size_t i = 0; i < body->n; i++) {
        int flow = exec_stmt(vm, body->v[i]);
        if (flow != FLOW_NORMAL) return flow;
    }
    return FLOW_NORMAL;
}

/* ---- public entry points ---- */

jinja_params jinja_params_default(void) {
    jinja_params p = {
        .max_output_bytes = (size_t)16 << 20,
        .max_memory_bytes = (size_t)256 << 20,
        .max_steps = 1000000,
        .max_depth = 64,
        .max_stack_bytes = (size_t)1 << 20,
        .now = JINJA_NOW_CLOCK,
        .now_utc = false,
    };
    return p;
}

mica_status jinja_template_parse(const char *src, size_t len, jinja_template **out, mica_err *err) {
    if ((!src && len) || !out) return mica_err_set(err, MICA_ERR_INVALID_ARG, "jinja: NULL argument");
    if (len > JINJA_MAX_TEMPLATE_BYTES)
        return mica_err_set(err, MICA_ERR_LIMIT, "template of %zu bytes exceeds the %zu-byte limit", len,
                            JINJA_MAX_TEMPLATE_BYTES);
    jinja_template *t = mica_calloc(1, sizeof *t);
    if (!t) return mica_err_set(err, MICA_ERR_NOMEM, "out of memory");
    t->fail.err = &t->parse_err;
    /* Parsing needs at most a small multiple of the source; the cap guards pathological input. */
    jarena_init(&t->arena, 64 * JINJA_MAX_TEMPLATE_BYTES, &t->fail);
    if (setjmp(t->fail.jb)) {
        mica_status st = t->parse_err.status;
        if (err) *err = t->parse_err;
        jarena_free(&t->arena);
        mica_free(t);
        return st;
    }
    jtoks toks;
    jinja_lex(&t->arena, &t->fail, src ? src : "", len, &toks);
    jinja_parse_tokens(&t->arena, &t->fail, &toks, &t->body);
    t->src = toks.src;
    t->src_len = toks.src_len;
    *out = t;
    return MICA_OK;
}

void jinja_template_free(jinja_template *t) {
    if (!t) return;
    jarena_free(&t->arena);
    mica_free(t);
}

/* Everything one render needs, on the heap so that nothing the longjmp crosses lives in
 * a local variable of the function that called setjmp. */
typedef struct jrender {
    jfail fail;
    mica_err err;
    jarena arena;
    jinja_params params;
    jvm vm;
} jrender;

mica_status jinja_template_render_json(const jinja_template *t, const char *vars_json, size_t vars_len,
                                       const jinja_params *params, char **out, size_t *out_len,
                                       mica_err *err) {
    if (!t || !out || !out_len || (!vars_json && vars_len))
        return mica_err_set(err, MICA_ERR_INVALID_ARG, "jinja: NULL argument");
    jrender *r = mica_calloc(1, sizeof *r);
    if (!r) return mica_err_set(err, MICA_ERR_NOMEM, "out of memory");
    r->params = params ? *params : jinja_params_default();
    r->fail.err = &r->err;
    jarena_init(&r->arena, r->params.max_memory_bytes, &r->fail);
    jvm *vm = &r->vm;
    vm->fail = &r->fail;
    vm->a = &r->arena;
    vm->p = &r->params;
    vm->t = t;
    vm->pos = SIZE_MAX;
    char stack_mark;
    vm->stack_base = (uintptr_t)&stack_mark;
    if (setjmp(r->fail.jb)) {
        mica_status st = r->err.status;
        if (err) {
            if (r->vm.pos != SIZE_MAX && st != MICA_ERR_NOMEM) {
                unsigned line, col;
                jinja_line_col(t->src, t->src_len, r->vm.pos, &line, &col);
                mica_err_set(err, st, "template line %u, column %u: %s", line, col, r->err.msg);
            } else {
                *err = r->err;
            }
        }
        jarena_free(&r->arena);
        mica_free(r);
        return st;
    }
    vm->root = scope_new(vm, NULL);
    vm->scope = vm->root;
    if (vars_json) {
        jv vars = json_value_parse(vm->a, vm->fail, vars_json, vars_len);
        if (vars.type != JV_DICT) jfail_raise(vm->fail, MICA_ERR_FORMAT, "template variables must be a JSON object");
        for (size_t i = 0; i < vars.u.d->n; i++)
            scope_set(vm, vm->root, vars.u.d->keys[i].u.s, vars.u.d->vals[i]);
    }
    jbuf ob;
    jbuf_init(&ob, vm->a, r->params.max_output_bytes);
    vm->out = &ob;
    vm->pos = 0;
    exec_body(vm, &t->body);
    vm->pos = SIZE_MAX;
    char *res = mica_malloc(ob.n + 1);
    if (!res) jfail_raise(vm->fail, MICA_ERR_NOMEM, "out of memory (%zu bytes)", ob.n + 1);
    if (ob.n) memcpy(res, ob.p, ob.n);
    res[ob.n] = '\0';
    *out = res;
    *out_len = ob.n;
    jarena_free(&r->arena);
    mica_free(r);
    return MICA_OK;
}
