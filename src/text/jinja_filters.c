/*
 * jinja_filters.c - Jinja2's built-in filters and tests (the ones chat
 * templates use plus the common others), with Hugging Face's `tojson`
 * (json.dumps with ensure_ascii=False, no HTML escaping).
 *
 * Filters convert their input as Jinja2 does: string filters take str() of
 * the value (undefined gives ""), sequence filters iterate (undefined is
 * empty), `attribute=` arguments are looked up item-first with dots for
 * nesting. Sorting is stable; `sort`, `unique`, `dictsort`, `min` and `max`
 * ignore ASCII case unless case_sensitive is true.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja_int.h"
#include "text/utf8.h"

static bool jstr_is(const char *p, size_t n, const char *lit) {
    size_t k = strlen(lit);
    return n == k && memcmp(p, lit, k) == 0;
}

static jv arg_or(jvm *vm, const jargs *a, size_t i, const char *name, jv dflt) {
    jv v;
    return jargs_get(vm, a, i, name, &v) ? v : dflt;
}

static jstr to_str(jvm *vm, jv v) { return jv_to_str(vm->a, v).u.s; }

/* Item-first lookup along a dotted path ("a.b.0"), as Jinja's make_attrgetter. */
static jv attr_path(jvm *vm, jv item, jv attribute) {
    if (attribute.type == JV_INT) return jinja_getitem(vm, item, attribute);
    if (attribute.type != JV_STR) jvm_error(vm, "attribute must be a string or an integer");
    jstr s = attribute.u.s;
    size_t i = 0;
    while (i <= s.n) {
        size_t e = i;
        while (e < s.n && s.p[e] != '.') e++;
        jstr part = {s.p + i, e - i};
        bool digits = part.n > 0;
        int64_t idx = 0;
        for (size_t k = 0; k < part.n; k++) {
            if (part.p[k] < '0' || part.p[k] > '9' || idx > INT64_MAX / 10 - 10) { digits = false; break; }
            idx = idx * 10 + (part.p[k] - '0');
        }
        if (item.type == JV_UNDEF) jvm_error(vm, "'%.*s' is undefined", (int)part.n, part.p);
        item = jinja_getitem(vm, item, digits ? jv_int(idx) : jv_strn(part.p, part.n));
        i = e + 1;
    }
    return item;
}

static jv lower_if_str(jvm *vm, jv v, bool case_sensitive) {
    if (case_sensitive || v.type != JV_STR) return v;
    return jinja_str_case(vm, v.u.s, 'l');
}

/* Stable merge sort of keys[] with items[] alongside; jv_compare raises on mixed types. */
static void sort_pairs(jvm *vm, jv *keys, jv *items, size_t n, bool reverse) {
    if (n < 2) return;
    jv *tk = jarena_array(vm->a, n, sizeof(jv));
    jv *ti = jarena_array(vm->a, n, sizeof(jv));
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = MICA_MIN(lo + width, n), hi = MICA_MIN(lo + 2 * width, n);
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                int c = jv_compare(vm->fail, keys[j], keys[i]);
                bool take_right = reverse ? c > 0 : c < 0;
                if (take_right) { tk[k] = keys[j]; ti[k++] = items[j++]; }
                else { tk[k] = keys[i]; ti[k++] = items[i++]; }
            }
            while (i < mid) { tk[k] = keys[i]; ti[k++] = items[i++]; }
            while (j < hi) { tk[k] = keys[j]; ti[k++] = items[j++]; }
        }
        memcpy(keys, tk, n * sizeof(jv));
        memcpy(items, ti, n * sizeof(jv));
    }
}

static jv list_from(jvm *vm, const jv *v, size_t n) {
    jv out = jv_list_new(vm->a, n);
    for (size_t i = 0; i < n; i++) jlist_push(vm->a, out.u.l, v[i]);
    return out;
}

static jv pair(jvm *vm, jv a, jv b) {
    jv p = jv_list_new(vm->a, 2);
    p.u.l->is_tuple = true;
    jlist_push(vm->a, p.u.l, a);
    jlist_push(vm->a, p.u.l, b);
    return p;
}

static jv filter_tojson(jvm *vm, jv v, const jargs *a) {
    jv ea = arg_or(vm, a, 0, "ensure_ascii", jv_bool(false));
    jv indent = arg_or(vm, a, 1, "indent", jv_none());
    jv seps = arg_or(vm, a, 2, "separators", jv_none());
    jv sort = arg_or(vm, a, 3, "sort_keys", jv_bool(false));
    jstr ind = {"", 0};
    const jstr *indp = NULL;
    if (indent.type == JV_INT || indent.type == JV_BOOL) {
        int64_t w = indent.type == JV_INT ? indent.u.i : indent.u.b;
        if (w > 1024) jvm_error(vm, "tojson indent too large");
        if (w > 0) {
            char *sp = jarena_alloc(vm->a, (size_t)w);
            memset(sp, ' ', (size_t)w);
            ind = (jstr){sp, (size_t)w};
        }
        indp = &ind;
    } else if (indent.type == JV_STR) {
        ind = indent.u.s;
        indp = &ind;
    } else if (indent.type != JV_NONE) {
        jvm_error(vm, "tojson indent must be an integer or a string");
    }
    jjson_opts o = jjson_opts_default(indp);
    o.ensure_ascii = jv_truthy(ea);
    o.sort_keys = jv_truthy(sort);
    if (seps.type != JV_NONE) {
        if (seps.type != JV_LIST || seps.u.l->n != 2 || seps.u.l->v[0].type != JV_STR ||
            seps.u.l->v[1].type != JV_STR)
            jvm_error(vm, "tojson separators must be a pair of strings");
        o.item_sep = seps.u.l->v[0].u.s;
        o.key_sep = seps.u.l->v[1].u.s;
    }
    jbuf b;
    jbuf_init(&b, vm->a, vm->p->max_output_bytes);
    jv_write_json(&b, vm->fail, v, &o);
    return jbuf_value(&b);
}

static jv filter_indent(jvm *vm, jv v, const jargs *a) {
    if (v.type != JV_STR) jvm_error(vm, "indent needs a string, not %s", jv_type_name(v));
    jstr s = v.u.s;
    jv width = arg_or(vm, a, 0, "width", jv_int(4));
    bool first = jv_truthy(arg_or(vm, a, 1, "first", jv_bool(false)));
    bool blank = jv_truthy(arg_or(vm, a, 2, "blank", jv_bool(false)));
    jstr ind;
    if (width.type == JV_STR) {
        ind = width.u.s;
    } else if (width.type == JV_INT) {
        if (width.u.i > 1024) jvm_error(vm, "indent width too large");
        size_t w = width.u.i > 0 ? (size_t)width.u.i : 0;
        char *sp = jarena_alloc(vm->a, w + 1);
        memset(sp, ' ', w);
        ind = (jstr){sp, w};
    } else {
        jvm_error(vm, "indent width must be an integer or a string");
    }
    /* Lines as str.splitlines() of s + "\n" (Jinja's quirk): every line ends with a newline. */
    char *t = jarena_alloc(vm->a, s.n + 1);
    memcpy(t, s.p, s.n);
    t[s.n] = '\n';
    size_t tn = s.n + 1;
    jbuf b;
    jbuf_init(&b, vm->a, vm->p->max_output_bytes);
    if (first) jbuf_put(&b, ind.p, ind.n);
    size_t st = 0, line_no = 0;
    for (size_t i = 0; i < tn; i++) {
        if (t[i] != '\n' && t[i] != '\r') continue;
        jstr line = {t + st, i - st};
        if (t[i] == '\r' && i + 1 < tn && t[i + 1] == '\n') i++;
        if (line_no > 0) {
            jbuf_putc(&b, '\n');
            if (blank || line.n) jbuf_put(&b, ind.p, ind.n);
        }
        jbuf_put(&b, line.p, line.n);
        line_no++;
        st = i + 1;
    }
    return jbuf_value(&b);
}

static jv filter_title(jvm *vm, jstr s) {
    char *p = jarena_strdup(vm->a, s.p, s.n);
    bool word_start = true;
    for (size_t i = 0; i < s.n; i++) {
        char c = p[i];
        bool sep = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || c == ' ' ||
                   (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x1f);
        if (sep) { word_start = true; continue; }
        if (word_start) p[i] = c >= 'a' && c <= 'z' ? (char)(c - 32) : c;
        else p[i] = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
        if (((unsigned char)c & 0xC0) != 0x80) word_start = false;
    }
    return jv_strn(p, s.n);
}

static jv filter_escape(jvm *vm, jstr s) {
    jbuf b;
    jbuf_init(&b, vm->a, vm->p->max_output_bytes);
    for (size_t i = 0; i < s.n; i++) {
        switch (s.p[i]) {
        case '&': jbuf_put(&b, "&amp;", 5); break;
        case '<': jbuf_put(&b, "&lt;", 4); break;
        case '>': jbuf_put(&b, "&gt;", 4); break;
        case '"': jbuf_put(&b, "&#34;", 5); break;
        case '\'': jbuf_put(&b, "&#39;", 5); break;
        default: jbuf_putc(&b, s.p[i]);
        }
    }
    return jbuf_value(&b);
}

static bool parse_number(jstr s, bool want_int, int base, jv *out) {
    char tmp[128];
    jv t = jinja_str_strip(s, jv_none(), true, true);
    if (t.u.s.n == 0 || t.u.s.n >= sizeof tmp) return false;
    size_t o = 0;
    for (size_t i = 0; i < t.u.s.n; i++) {
        char c = t.u.s.p[i];
        if (c == '_') {
            if (i == 0 || i + 1 == t.u.s.n) return false;
            continue;
        }
        tmp[o++] = c;
    }
    tmp[o] = '\0';
    char *end;
    errno = 0;
    if (want_int) {
        const char *p = tmp;
        if ((*p == '+' || *p == '-') && p[1] == '0' && base == 0) p++;
        long long v = strtoll(tmp, &end, base);
        if (*end || errno == ERANGE || end == tmp) return false;
        *out = jv_int(v);
        return true;
    }
    double d = strtod(tmp, &end);
    if (*end || end == tmp) return false;
    if (tmp[0] == '0' && (tmp[1] == 'x' || tmp[1] == 'X')) return false; /* Python float() has no hex */
    *out = jv_float(d);
    return true;
}

static jv filter_int(jvm *vm, jv v, const jargs *a) {
    jv dflt = arg_or(vm, a, 0, "default", jv_int(0));
    jv basev = arg_or(vm, a, 1, "base", jv_int(10));
    int base = basev.type == JV_INT ? (int)basev.u.i : 10;
    jv out;
    switch (v.type) {
    case JV_INT: return v;
    case JV_BOOL: return jv_int(v.u.b);
    case JV_FLOAT:
        if (isnan(v.u.f) || isinf(v.u.f) || fabs(v.u.f) >= 9.2e18) return dflt;
        return jv_int((int64_t)v.u.f);
    case JV_STR:
        if (parse_number(v.u.s, true, base, &out)) return out;
        if (parse_number(v.u.s, false, 10, &out) && !isnan(out.u.f) && !isinf(out.u.f) && fabs(out.u.f) < 9.2e18)
            return jv_int((int64_t)out.u.f);
        return dflt;
    default: return dflt;
    }
}

static jv filter_float(jvm *vm, jv v, const jargs *a) {
    jv dflt = arg_or(vm, a, 0, "default", jv_float(0.0));
    jv out;
    switch (v.type) {
    case JV_FLOAT: return v;
    case JV_INT: return jv_float((double)v.u.i);
    case JV_BOOL: return jv_float(v.u.b);
    case JV_STR: return parse_number(v.u.s, false, 10, &out) ? out : dflt;
    default: return dflt;
    }
}

static jv filter_round(jvm *vm, jv v, const jargs *a) {
    int64_t prec = 0;
    jv pv = arg_or(vm, a, 0, "precision", jv_int(0));
    if (pv.type == JV_INT) prec = pv.u.i;
    jv method = arg_or(vm, a, 1, "method", jv_strn("common", 6));
    if (!jv_is_num(v)) jvm_error(vm, "round needs a number, not %s", jv_type_name(v));
    if (prec < -30 || prec > 30) jvm_error(vm, "round precision out of range");
    double x = v.type == JV_FLOAT ? v.u.f : v.type == JV_INT ? (double)v.u.i : v.u.b;
    double scale = pow(10.0, (double)prec);
    if (method.type != JV_STR) jvm_error(vm, "method must be common, ceil or floor");
    double r;
    if (jstr_is(method.u.s.p, method.u.s.n, "common")) {
        if (v.type != JV_FLOAT) return jv_int(v.type == JV_INT ? v.u.i : v.u.b);
        r = nearbyint(x * scale) / scale; /* round half to even, as Python's round() */
    } else if (jstr_is(method.u.s.p, method.u.s.n, "ceil")) {
        r = ceil(x * scale) / scale;
    } else if (jstr_is(method.u.s.p, method.u.s.n, "floor")) {
        r = floor(x * scale) / scale;
    } else {
        jvm_error(vm, "method must be common, ceil or floor");
    }
    return jv_float(r);
}

/* select/reject/selectattr/rejectattr. */
static jv filter_select(jvm *vm, jv v, const jargs *a, bool with_attr, bool keep_if) {
    jlist *l = jinja_iterate(vm, v);
    size_t first_test_arg = with_attr ? 1 : 0;
    jv attr = jv_none();
    if (with_attr && !jargs_get(vm, a, 0, "attribute", &attr)) jvm_error(vm, "selectattr needs an attribute");
    jv test = jv_none();
    if (a->n_pos > first_test_arg) test = a->pos[first_test_arg];
    if (test.type != JV_NONE && test.type != JV_STR) jvm_error(vm, "test name must be a string");
    jargs targs = {.pos = a->n_pos > first_test_arg + 1 ? a->pos + first_test_arg + 1 : NULL,
                   .n_pos = a->n_pos > first_test_arg + 1 ? a->n_pos - first_test_arg - 1 : 0,
                   .kwnames = a->kwnames, .kw = a->kw, .n_kw = with_attr ? 0 : a->n_kw};
    jv out = jv_list_new(vm->a, 0);
    for (size_t i = 0; i < l->n; i++) {
        jv x = with_attr ? attr_path(vm, l->v[i], attr) : l->v[i];
        bool r = test.type == JV_STR ? jinja_test(vm, test.u.s.p, test.u.s.n, x, &targs) : jv_truthy(x);
        if (r == keep_if) jlist_push(vm->a, out.u.l, l->v[i]);
    }
    return out;
}

static jv filter_map(jvm *vm, jv v, const jargs *a) {
    jlist *l = jinja_iterate(vm, v);
    jv out = jv_list_new(vm->a, l->n);
    jv attr;
    bool by_attr = false;
    for (size_t k = 0; k < a->n_kw; k++)
        if (jstr_is(a->kwnames[k].p, a->kwnames[k].n, "attribute")) { attr = a->kw[k]; by_attr = true; }
    if (by_attr) {
        jv dflt = jv_none();
        bool has_default = false;
        for (size_t k = 0; k < a->n_kw; k++)
            if (jstr_is(a->kwnames[k].p, a->kwnames[k].n, "default")) { dflt = a->kw[k]; has_default = true; }
        for (size_t i = 0; i < l->n; i++) {
            jv x = attr_path(vm, l->v[i], attr);
            if (has_default && x.type == JV_UNDEF) x = dflt;
            jlist_push(vm->a, out.u.l, x);
        }
        return out;
    }
    if (a->n_pos == 0 || a->pos[0].type != JV_STR) jvm_error(vm, "map needs a filter name or attribute=");
    jargs fargs = {.pos = a->pos + 1, .n_pos = a->n_pos - 1, .kwnames = a->kwnames, .kw = a->kw, .n_kw = a->n_kw};
    for (size_t i = 0; i < l->n; i++)
        jlist_push(vm->a, out.u.l, jinja_filter(vm, a->pos[0].u.s.p, a->pos[0].u.s.n, l->v[i], &fargs));
    return out;
}

static jv filter_sort(jvm *vm, jv v, const jargs *a) {
    bool reverse = jv_truthy(arg_or(vm, a, 0, "reverse", jv_bool(false)));
    bool cs = jv_truthy(arg_or(vm, a, 1, "case_sensitive", jv_bool(false)));
    jv attr = arg_or(vm, a, 2, "attribute", jv_none());
    jlist *l = jinja_iterate(vm, v);
    jv *items = jarena_array(vm->a, l->n ? l->n : 1, sizeof(jv));
    jv *keys = jarena_array(vm->a, l->n ? l->n : 1, sizeof(jv));
    for (size_t i = 0; i < l->n; i++) {
        items[i] = l->v[i];
        keys[i] = lower_if_str(vm, attr.type == JV_NONE ? l->v[i] : attr_path(vm, l->v[i], attr), cs);
    }
    sort_pairs(vm, keys, items, l->n, reverse);
    return list_from(vm, items, l->n);
}

static jv filter_dictsort(jvm *vm, jv v, const jargs *a) {
    bool cs = jv_truthy(arg_or(vm, a, 0, "case_sensitive", jv_bool(false)));
    jv by = arg_or(vm, a, 1, "by", jv_strn("key", 3));
    bool reverse = jv_truthy(arg_or(vm, a, 2, "reverse", jv_bool(false)));
    if (v.type != JV_DICT) jvm_error(vm, "dictsort needs a mapping");
    int pos;
    if (by.type == JV_STR && jstr_is(by.u.s.p, by.u.s.n, "key")) pos = 0;
    else if (by.type == JV_STR && jstr_is(by.u.s.p, by.u.s.n, "value")) pos = 1;
    else jvm_error(vm, "you can only sort by either \"key\" or \"value\"");
    size_t n = v.u.d->n;
    jv *items = jarena_array(vm->a, n ? n : 1, sizeof(jv));
    jv *keys = jarena_array(vm->a, n ? n : 1, sizeof(jv));
    for (size_t i = 0; i < n; i++) {
        items[i] = pair(vm, v.u.d->keys[i], v.u.d->vals[i]);
        keys[i] = lower_if_str(vm, pos ? v.u.d->vals[i] : v.u.d->keys[i], cs);
    }
    sort_pairs(vm, keys, items, n, reverse);
    return list_from(vm, items, n);
}

static jv filter_unique(jvm *vm, jv v, const jargs *a) {
    bool cs = jv_truthy(arg_or(vm, a, 0, "case_sensitive", jv_bool(false)));
    jv attr = arg_or(vm, a, 1, "attribute", jv_none());
    jlist *l = jinja_iterate(vm, v);
    jv seen = jv_dict_new(vm->a);
    jv out = jv_list_new(vm->a, 0);
    for (size_t i = 0; i < l->n; i++) {
        jv key = lower_if_str(vm, attr.type == JV_NONE ? l->v[i] : attr_path(vm, l->v[i], attr), cs);
        jv tmp;
        if (jdict_get(seen.u.d, key, &tmp)) continue;
        jdict_set(vm->a, vm->fail, seen.u.d, key, jv_none());
        jlist_push(vm->a, out.u.l, l->v[i]);
    }
    return out;
}

static jv filter_minmax(jvm *vm, jv v, const jargs *a, bool want_max) {
    bool cs = jv_truthy(arg_or(vm, a, 0, "case_sensitive", jv_bool(false)));
    jv attr = arg_or(vm, a, 1, "attribute", jv_none());
    jlist *l = jinja_iterate(vm, v);
    if (l->n == 0) return jv_undef();
    size_t best = 0;
    jv best_key = lower_if_str(vm, attr.type == JV_NONE ? l->v[0] : attr_path(vm, l->v[0], attr), cs);
    for (size_t i = 1; i < l->n; i++) {
        jv k = lower_if_str(vm, attr.type == JV_NONE ? l->v[i] : attr_path(vm, l->v[i], attr), cs);
        int c = jv_compare(vm->fail, k, best_key);
        if (want_max ? c > 0 : c < 0) { best = i; best_key = k; }
    }
    return l->v[best];
}

static jv filter_sum(jvm *vm, jv v, const jargs *a) {
    jv attr = arg_or(vm, a, 0, "attribute", jv_none());
    jv acc = arg_or(vm, a, 1, "start", jv_int(0));
    jlist *l = jinja_iterate(vm, v);
    for (size_t i = 0; i < l->n; i++) {
        jv x = attr.type == JV_NONE ? l->v[i] : attr_path(vm, l->v[i], attr);
        if (!jv_is_num(acc) || !jv_is_num(x)) jvm_error(vm, "sum needs numbers");
        if (acc.type != JV_FLOAT && x.type != JV_FLOAT) {
            int64_t r, xa = acc.type == JV_INT ? acc.u.i : acc.u.b, xb = x.type == JV_INT ? x.u.i : x.u.b;
            if (__builtin_add_overflow(xa, xb, &r)) jvm_error(vm, "integer overflow in sum");
            acc = jv_int(r);
        } else {
            double fa = acc.type == JV_FLOAT ? acc.u.f : acc.type == JV_INT ? (double)acc.u.i : acc.u.b;
            double fb = x.type == JV_FLOAT ? x.u.f : x.type == JV_INT ? (double)x.u.i : x.u.b;
            acc = jv_float(fa + fb);
        }
    }
    return acc;
}

static jv filter_join(jvm *vm, jv v, const jargs *a) {
    jstr sep = to_str(vm, arg_or(vm, a, 0, "d", jv_strn("", 0)));
    jv attr = arg_or(vm, a, 1, "attribute", jv_none());
    jlist *l = jinja_iterate(vm, v);
    jbuf b;
    jbuf_init(&b, vm->a, vm->p->max_output_bytes);
    for (size_t i = 0; i < l->n; i++) {
        if (i) jbuf_put(&b, sep.p, sep.n);
        jv x = attr.type == JV_NONE ? l->v[i] : attr_path(vm, l->v[i], attr);
        jv_write_str(&b, x);
    }
    return jbuf_value(&b);
}

static jv filter_batch(jvm *vm, jv v, const jargs *a) {
    jv cnt = arg_or(vm, a, 0, "linecount", jv_none());
    jv fill;
    bool has_fill = jargs_get(vm, a, 1, "fill_with", &fill) && fill.type != JV_NONE;
    if (cnt.type != JV_INT || cnt.u.i <= 0) jvm_error(vm, "batch needs a positive count");
    jlist *l = jinja_iterate(vm, v);
    jv out = jv_list_new(vm->a, 0);
    jv cur = jv_list_new(vm->a, 0);
    for (size_t i = 0; i < l->n; i++) {
        if ((int64_t)cur.u.l->n == cnt.u.i) {
            jlist_push(vm->a, out.u.l, cur);
            cur = jv_list_new(vm->a, 0);
        }
        jlist_push(vm->a, cur.u.l, l->v[i]);
    }
    if (cur.u.l->n) {
        if (has_fill) {
            if (cnt.u.i > (int64_t)vm->p->max_steps) jvm_limit(vm, "batch too large");
            while ((int64_t)cur.u.l->n < cnt.u.i) jlist_push(vm->a, cur.u.l, fill);
        }
        jlist_push(vm->a, out.u.l, cur);
    }
    return out;
}

static int64_t length_of(jvm *vm, jv v) {
    switch (v.type) {
    case JV_UNDEF: return 0;
    case JV_STR: return (int64_t)jstr_cp_len(v.u.s);
    case JV_LIST:
        if (v.u.l->is_gen) jvm_error(vm, "object of type 'generator' has no len()");
        return (int64_t)v.u.l->n;
    case JV_DICT: return (int64_t)v.u.d->n;
    case JV_LOOP: return (int64_t)v.u.loop->items->n;
    default: jvm_error(vm, "object of type '%s' has no len()", jv_type_name(v));
    }
}

static jv filter_wordcount(jvm *vm, jstr s) {
    (void)vm;
    int64_t n = 0;
    bool in_word = false;
    for (size_t i = 0; i < s.n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        bool w = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
        if (w && !in_word) n++;
        in_word = w;
    }
    return jv_int(n);
}

static jv as_gen(jv v) {
    if (v.type == JV_LIST) v.u.l->is_gen = true;
    return v;
}

jv jinja_filter(jvm *vm, const char *name, size_t nlen, jv v, const jargs *a) {
#define IS(lit) jstr_is(name, nlen, lit)
    if (IS("tojson")) return filter_tojson(vm, v, a);
    if (IS("safe") || IS("list") || IS("string") || IS("trim") || IS("lower") || IS("upper") ||
        IS("capitalize") || IS("title") || IS("e") || IS("escape") || IS("forceescape")) {
        if (IS("safe")) return v;
        if (IS("list")) {
            jlist *l = jinja_iterate(vm, v);
            return list_from(vm, l->v, l->n);
        }
        jstr s = to_str(vm, v);
        if (IS("string")) return jv_strn(s.p, s.n);
        if (IS("trim")) return jinja_str_strip(s, arg_or(vm, a, 0, "chars", jv_none()), true, true);
        if (IS("lower")) return jinja_str_case(vm, s, 'l');
        if (IS("upper")) return jinja_str_case(vm, s, 'u');
        if (IS("capitalize")) return jinja_str_case(vm, s, 'c');
        if (IS("title")) return filter_title(vm, s);
        return filter_escape(vm, s);
    }
    if (IS("length") || IS("count")) return jv_int(length_of(vm, v));
    if (IS("items")) {
        if (v.type == JV_UNDEF) return as_gen(jv_list_new(vm->a, 0));
        if (v.type != JV_DICT) jvm_error(vm, "can only get item pairs from a mapping");
        jv out = jv_list_new(vm->a, v.u.d->n);
        for (size_t i = 0; i < v.u.d->n; i++) jlist_push(vm->a, out.u.l, pair(vm, v.u.d->keys[i], v.u.d->vals[i]));
        return as_gen(out);
    }
    if (IS("join")) return filter_join(vm, v, a);
    if (IS("default") || IS("d")) {
        jv dflt = arg_or(vm, a, 0, "default_value", jv_strn("", 0));
        bool boolean = jv_truthy(arg_or(vm, a, 1, "boolean", jv_bool(false)));
        return v.type == JV_UNDEF || (boolean && !jv_truthy(v)) ? dflt : v;
    }
    if (IS("first") || IS("last")) {
        jlist *l = jinja_iterate(vm, v);
        if (l->n == 0) return jv_undef();
        return IS("first") ? l->v[0] : l->v[l->n - 1];
    }
    if (IS("replace")) {
        jstr s = to_str(vm, v);
        jv old = arg_or(vm, a, 0, "old", jv_none()), rep = arg_or(vm, a, 1, "new", jv_none());
        jv cnt = arg_or(vm, a, 2, "count", jv_none());
        if (old.type == JV_NONE || rep.type == JV_NONE) jvm_error(vm, "replace needs two arguments");
        return jinja_str_replace(vm, s, to_str(vm, old), to_str(vm, rep), cnt.type == JV_INT ? cnt.u.i : -1);
    }
    if (IS("selectattr")) return as_gen(filter_select(vm, v, a, true, true));
    if (IS("rejectattr")) return as_gen(filter_select(vm, v, a, true, false));
    if (IS("select")) return as_gen(filter_select(vm, v, a, false, true));
    if (IS("reject")) return as_gen(filter_select(vm, v, a, false, false));
    if (IS("map")) return as_gen(filter_map(vm, v, a));
    if (IS("sort")) return filter_sort(vm, v, a);
    if (IS("dictsort")) return filter_dictsort(vm, v, a);
    if (IS("unique")) return as_gen(filter_unique(vm, v, a));
    if (IS("min")) return filter_minmax(vm, v, a, false);
    if (IS("max")) return filter_minmax(vm, v, a, true);
    if (IS("sum")) return filter_sum(vm, v, a);
    if (IS("reverse")) {
        if (v.type == JV_STR) return jinja_slice(vm, v, jv_none(), jv_none(), jv_int(-1));
        jlist *l = jinja_iterate(vm, v);
        jv out = jv_list_new(vm->a, l->n);
        for (size_t i = l->n; i-- > 0;) jlist_push(vm->a, out.u.l, l->v[i]);
        return as_gen(out); /* Python's reversed() iterator */
    }
    if (IS("int")) return filter_int(vm, v, a);
    if (IS("float")) return filter_float(vm, v, a);
    if (IS("abs")) {
        if (v.type == JV_INT) {
            if (v.u.i == INT64_MIN) jvm_error(vm, "integer overflow");
            return jv_int(v.u.i < 0 ? -v.u.i : v.u.i);
        }
        if (v.type == JV_BOOL) return jv_int(v.u.b);
        if (v.type == JV_FLOAT) return jv_float(fabs(v.u.f));
        jvm_error(vm, "bad operand type for abs(): '%s'", jv_type_name(v));
    }
    if (IS("round")) return filter_round(vm, v, a);
    if (IS("indent")) return filter_indent(vm, v, a);
    if (IS("wordcount")) return filter_wordcount(vm, to_str(vm, v));
    if (IS("center")) {
        jv width = arg_or(vm, a, 0, "width", jv_int(80));
        jargs pa = {.pos = &width, .n_pos = 1};
        jmethod meth = {.self = jv_to_str(vm->a, v), .name = {"center", 6}};
        return jinja_call_method(vm, &meth, &pa);
    }
    if (IS("attr")) {
        jv nm = arg_or(vm, a, 0, "name", jv_none());
        if (nm.type != JV_STR) jvm_error(vm, "attr needs a name");
        if (v.type == JV_UNDEF) return v;
        return jinja_attr_only(vm, v, nm.u.s);
    }
    if (IS("batch")) return as_gen(filter_batch(vm, v, a));
#undef IS
    jvm_error(vm, "no filter named '%.*s'", (int)MICA_MIN(nlen, (size_t)100), name);
}

/* ---- tests ---- */

bool jinja_test(jvm *vm, const char *name, size_t nlen, jv v, const jargs *a) {
#define IS(lit) jstr_is(name, nlen, lit)
    if (IS("defined")) return v.type != JV_UNDEF;
    if (IS("undefined")) return v.type == JV_UNDEF;
    if (IS("none")) return v.type == JV_NONE;
    if (IS("boolean")) return v.type == JV_BOOL;
    if (IS("true")) return v.type == JV_BOOL && v.u.b;
    if (IS("false")) return v.type == JV_BOOL && !v.u.b;
    if (IS("integer")) return v.type == JV_INT;
    if (IS("float")) return v.type == JV_FLOAT;
    if (IS("number")) return jv_is_num(v);
    if (IS("string")) return v.type == JV_STR;
    if (IS("mapping")) return v.type == JV_DICT;
    if (IS("iterable")) return v.type == JV_STR || v.type == JV_LIST || v.type == JV_DICT ||
                               v.type == JV_UNDEF || v.type == JV_LOOP;
    if (IS("sequence")) return v.type == JV_STR || v.type == JV_LIST || v.type == JV_DICT || v.type == JV_UNDEF;
    if (IS("callable")) return v.type == JV_MACRO || v.type == JV_FUNC || v.type == JV_METHOD;
    if (IS("escaped")) return false;
    if (IS("lower") || IS("upper")) { /* str(value).islower() */
        jmethod m = {.self = jv_to_str(vm->a, v), .name = IS("lower") ? (jstr){"islower", 7} : (jstr){"isupper", 7}};
        jargs none = {0};
        return jv_truthy(jinja_call_method(vm, &m, &none));
    }
    jv other;
    bool has = jargs_get(vm, a, 0, "other", &other);
    if (IS("sameas")) {
        if (!has) jvm_error(vm, "sameas needs an argument");
        if (v.type != other.type) return false;
        if (v.type == JV_NONE || v.type == JV_UNDEF) return true;
        if (v.type == JV_BOOL) return v.u.b == other.u.b;
        if (v.type == JV_LIST) return v.u.l == other.u.l;
        if (v.type == JV_DICT || v.type == JV_NS) return v.u.d == other.u.d;
        return jv_equal(v, other);
    }
    if (IS("divisibleby") || IS("even") || IS("odd")) { /* value % n == 0 (or 1) */
        if (!jv_is_num(v)) jvm_error(vm, "unsupported operand type(s) for %%: '%s' and 'int'", jv_type_name(v));
        if (IS("divisibleby") && (!has || !jv_is_num(other))) jvm_error(vm, "divisibleby needs a number");
        double x = v.type == JV_FLOAT ? v.u.f : v.type == JV_INT ? (double)v.u.i : v.u.b;
        if (v.type != JV_FLOAT && (IS("even") || IS("odd") || other.type != JV_FLOAT)) {
            int64_t xi = v.type == JV_INT ? v.u.i : v.u.b;
            int64_t d = IS("divisibleby") ? (other.type == JV_INT ? other.u.i : other.u.b) : 2;
            if (d == 0) jvm_error(vm, "integer division or modulo by zero");
            if (d == -1) return !IS("odd");
            int64_t m = xi % d;
            if (m != 0 && ((m < 0) != (d < 0))) m += d;
            return IS("odd") ? m == 1 : m == 0;
        }
        double d = IS("divisibleby") ? (other.type == JV_FLOAT ? other.u.f : other.type == JV_INT ? (double)other.u.i : other.u.b) : 2.0;
        if (d == 0.0) jvm_error(vm, "float modulo by zero");
        double m = fmod(x, d);
        if (m != 0.0 && ((m < 0) != (d < 0))) m += d;
        return IS("odd") ? m == 1.0 : m == 0.0;
    }
    if (!has) jvm_error(vm, "test '%.*s' needs an argument", (int)MICA_MIN(nlen, (size_t)100), name);
    if (IS("in")) {
        switch (other.type) {
        case JV_STR:
            if (v.type != JV_STR) jvm_error(vm, "'in <string>' requires string as left operand");
            return v.u.s.n == 0 || memmem(other.u.s.p, other.u.s.n, v.u.s.p, v.u.s.n) != NULL;
        case JV_LIST:
            for (size_t i = 0; i < other.u.l->n; i++)
                if (jv_equal(other.u.l->v[i], v)) return true;
            return false;
        case JV_DICT: {
            jv tmp;
            return jdict_get(other.u.d, v, &tmp);
        }
        case JV_UNDEF: return false;
        default: jvm_error(vm, "argument of type '%s' is not iterable", jv_type_name(other));
        }
    }
    if (IS("eq") || IS("equalto") || IS("==")) return jv_equal(v, other);
    if (IS("ne") || IS("!=")) return !jv_equal(v, other);
    if (v.type == JV_UNDEF || other.type == JV_UNDEF) jvm_error(vm, "comparison with an undefined value");
    if (IS("lt") || IS("lessthan") || IS("<")) return jv_compare(vm->fail, v, other) < 0;
    if (IS("le") || IS("<=")) return jv_compare(vm->fail, v, other) <= 0;
    if (IS("gt") || IS("greaterthan") || IS(">")) return jv_compare(vm->fail, v, other) > 0;
    if (IS("ge") || IS(">=")) return jv_compare(vm->fail, v, other) >= 0;
#undef IS
    jvm_error(vm, "no test named '%.*s'", (int)MICA_MIN(nlen, (size_t)100), name);
}
