/*
 * jinja_methods.c - what a template can do with a value besides filters and
 * tests: attribute and item lookup with Jinja's rules, iteration, slicing,
 * the Python methods the sandbox allows (str.split, dict.get, loop.cycle...)
 * and the strftime_now global.
 *
 * Lookup rules (SandboxedEnvironment.getattr/getitem): `a.b` tries the
 * Python attribute first (so `d.items` is the dict method even when the dict
 * has a key "items"), then the item; `a['b']` tries the item first, then the
 * attribute. Methods that would modify a value (list.append, dict.update...)
 * are refused by the immutable sandbox: they look up as undefined. Strings are
 * handled as sequences of code points, as in Python.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "text/jinja_int.h"
#include "text/utf8.h"

bool jargs_get(jvm *vm, const jargs *a, size_t i, const char *name, jv *out) {
    bool found = false;
    if (i < a->n_pos) {
        *out = a->pos[i];
        found = true;
    }
    size_t k = strlen(name);
    for (size_t j = 0; j < a->n_kw; j++) {
        if (a->kwnames[j].n == k && memcmp(a->kwnames[j].p, name, k) == 0) {
            if (found) jvm_error(vm, "got multiple values for argument '%s'", name);
            *out = a->kw[j];
            found = true;
        }
    }
    return found;
}

static bool str_eq(jstr s, const char *lit) {
    size_t k = strlen(lit);
    return s.n == k && memcmp(s.p, lit, k) == 0;
}

static bool name_in(jstr s, const char *const *list) {
    for (; *list; list++)
        if (str_eq(s, *list)) return true;
    return false;
}

static jv make_method(jvm *vm, jv self, jstr name) {
    jmethod *m = jarena_alloc(vm->a, sizeof *m);
    m->self = self;
    m->name = name;
    jv v = {.type = JV_METHOD};
    v.u.meth = m;
    return v;
}

static const char *const str_methods[] = {
    "startswith", "endswith", "split", "rsplit", "strip", "lstrip", "rstrip", "lower", "upper",
    "title", "capitalize", "swapcase", "casefold", "replace", "find", "rfind", "index", "rindex",
    "count", "join", "format", "isdigit", "isalpha", "isalnum", "isspace", "islower", "isupper",
    "isdecimal", "isnumeric", "splitlines", "zfill", "ljust", "rjust", "center", "partition",
    "rpartition", "removeprefix", "removesuffix", NULL,
};
static const char *const dict_methods[] = {"get", "items", "keys", "values", "copy", NULL};
static const char *const list_methods[] = {"count", "index", "copy", NULL};

/* Python attribute lookup only (no item fallback); undefined if none. */
static jv attr_only(jvm *vm, jv obj, jstr name) {
    switch (obj.type) {
    case JV_STR:
        if (name_in(name, str_methods)) return make_method(vm, obj, name);
        break;
    case JV_DICT:
        if (name_in(name, dict_methods)) return make_method(vm, obj, name);
        break;
    case JV_LIST:
        if (name_in(name, list_methods)) return make_method(vm, obj, name);
        break;
    case JV_NS: {
        jv v;
        if (jdict_get_str(obj.u.d, name.p, name.n, &v)) return v;
        break;
    }
    case JV_LOOP: {
        const jloop *lp = obj.u.loop;
        size_t n = lp->items->n, i = lp->i;
        if (str_eq(name, "index")) return jv_int((int64_t)i + 1);
        if (str_eq(name, "index0")) return jv_int((int64_t)i);
        if (str_eq(name, "revindex")) return jv_int((int64_t)(n - i));
        if (str_eq(name, "revindex0")) return jv_int((int64_t)(n - i - 1));
        if (str_eq(name, "first")) return jv_bool(i == 0);
        if (str_eq(name, "last")) return jv_bool(i + 1 == n);
        if (str_eq(name, "length")) return jv_int((int64_t)n);
        if (str_eq(name, "depth")) return jv_int((int64_t)lp->depth);
        if (str_eq(name, "depth0")) return jv_int((int64_t)lp->depth - 1);
        if (str_eq(name, "previtem")) return i > 0 ? lp->items->v[i - 1] : jv_undef_named("previtem", 8);
        if (str_eq(name, "nextitem")) return i + 1 < n ? lp->items->v[i + 1] : jv_undef_named("nextitem", 8);
        if (str_eq(name, "cycle")) return make_method(vm, obj, name);
        break;
    }
    default: break;
    }
    return jv_undef_named(name.p, name.n);
}

jv jinja_attr_only(jvm *vm, jv obj, jstr name) { return attr_only(vm, obj, name); }

jv jinja_getattr(jvm *vm, jv obj, jstr name) {
    jv v = attr_only(vm, obj, name);
    if (v.type != JV_UNDEF) return v;
    if (obj.type == JV_DICT && jdict_get_str(obj.u.d, name.p, name.n, &v)) return v;
    return jv_undef_named(name.p, name.n);
}

/* Code point i of s as a string value. */
static jv str_char_at(jvm *vm, jstr s, size_t i) {
    (void)vm;
    size_t off = jstr_cp_offset(s, i);
    size_t len = off < s.n ? utf8_char_len(s.p + off, s.n - off) : 0;
    return jv_strn(s.p + off, len);
}

jv jinja_getitem(jvm *vm, jv obj, jv key) {
    bool key_int = key.type == JV_INT || key.type == JV_BOOL;
    int64_t ki = key.type == JV_INT ? key.u.i : key.type == JV_BOOL ? key.u.b : 0;
    switch (obj.type) {
    case JV_DICT: {
        jv v;
        if (jdict_get(obj.u.d, key, &v)) return v;
        break;
    }
    case JV_LIST:
        if (key_int && !obj.u.l->is_gen) {
            int64_t n = (int64_t)obj.u.l->n;
            if (ki < 0) ki += n;
            if (ki >= 0 && ki < n) return obj.u.l->v[ki];
            return jv_undef();
        }
        break;
    case JV_STR:
        if (key_int) {
            int64_t n = (int64_t)jstr_cp_len(obj.u.s);
            if (ki < 0) ki += n;
            if (ki >= 0 && ki < n) return str_char_at(vm, obj.u.s, (size_t)ki);
            return jv_undef();
        }
        break;
    default: break;
    }
    if (key.type == JV_STR) {
        jv v = attr_only(vm, obj, key.u.s);
        if (v.type != JV_UNDEF) return v;
        return jv_undef_named(key.u.s.p, key.u.s.n);
    }
    return jv_undef();
}

jlist *jinja_iterate(jvm *vm, jv v) {
    switch (v.type) {
    case JV_LIST: return v.u.l;
    case JV_UNDEF: return jv_list_new(vm->a, 0).u.l;
    case JV_DICT: {
        jv l = jv_list_new(vm->a, v.u.d->n);
        for (size_t i = 0; i < v.u.d->n; i++) jlist_push(vm->a, l.u.l, v.u.d->keys[i]);
        return l.u.l;
    }
    case JV_STR: {
        jv l = jv_list_new(vm->a, 0);
        for (size_t i = 0; i < v.u.s.n;) {
            size_t len = utf8_char_len(v.u.s.p + i, v.u.s.n - i);
            jlist_push(vm->a, l.u.l, jv_strn(v.u.s.p + i, len));
            i += len;
        }
        return l.u.l;
    }
    default: jvm_error(vm, "'%s' object is not iterable", jv_type_name(v));
    }
}

/* Python slice index normalisation (PySlice_AdjustIndices). */
static bool slice_arg(jvm *vm, jv v, int64_t *out) {
    if (v.type == JV_NONE) return false;
    if (v.type == JV_INT) { *out = v.u.i; return true; }
    if (v.type == JV_BOOL) { *out = v.u.b; return true; }
    jvm_error(vm, "slice indices must be integers or None");
}

jv jinja_slice(jvm *vm, jv v, jv start_v, jv stop_v, jv step_v) {
    int64_t n;
    if (v.type == JV_LIST && v.u.l->is_gen) jvm_error(vm, "'generator' object is not subscriptable");
    if (v.type == JV_LIST) n = (int64_t)v.u.l->n;
    else if (v.type == JV_STR) n = (int64_t)jstr_cp_len(v.u.s);
    else jvm_error(vm, "'%s' object is not subscriptable", jv_type_name(v));
    int64_t step = 1, start, stop;
    if (slice_arg(vm, step_v, &step) && step == 0) jvm_error(vm, "slice step cannot be zero");
    bool has_start = slice_arg(vm, start_v, &start), has_stop = slice_arg(vm, stop_v, &stop);
    if (!has_start) start = step < 0 ? n - 1 : 0;
    else {
        if (start < 0) start += n;
        if (start < 0) start = step < 0 ? -1 : 0;
        else if (start >= n) start = step < 0 ? n - 1 : n;
    }
    if (!has_stop) stop = step < 0 ? -1 : n;
    else {
        if (stop < 0) stop += n;
        if (stop < 0) stop = step < 0 ? -1 : 0;
        else if (stop >= n) stop = step < 0 ? n - 1 : n;
    }
    if (v.type == JV_LIST) {
        jv out = jv_list_new(vm->a, 0);
        out.u.l->is_tuple = v.u.l->is_tuple;
        for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) jlist_push(vm->a, out.u.l, v.u.l->v[i]);
        return out;
    }
    /* Strings: map code point indexes to byte offsets once. */
    size_t *offs = jarena_array(vm->a, (size_t)n + 1, sizeof(size_t));
    size_t k = 0;
    for (size_t i = 0; i < v.u.s.n; k++) {
        offs[k] = i;
        i += utf8_char_len(v.u.s.p + i, v.u.s.n - i);
    }
    offs[k] = v.u.s.n;
    if (step == 1) {
        if (stop <= start) return jv_strn("", 0);
        return jv_strn(v.u.s.p + offs[start], offs[stop] - offs[start]);
    }
    jbuf b;
    jbuf_init(&b, vm->a, SIZE_MAX / 2);
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
        jbuf_put(&b, v.u.s.p + offs[i], offs[i + 1] - offs[i]);
    return jbuf_value(&b);
}

/* ---- string methods ---- */

static jv str_arg(jvm *vm, const jargs *a, size_t i, const char *name, bool required) {
    jv v;
    if (!jargs_get(vm, a, i, name, &v)) {
        if (required) jvm_error(vm, "missing argument '%s'", name);
        return jv_none();
    }
    if (v.type != JV_STR && v.type != JV_NONE)
        jvm_error(vm, "argument '%s' must be a string, not %s", name, jv_type_name(v));
    return v;
}

static int64_t int_arg(jvm *vm, const jargs *a, size_t i, const char *name, int64_t dflt) {
    jv v;
    if (!jargs_get(vm, a, i, name, &v) || v.type == JV_NONE) return dflt;
    if (v.type == JV_INT) return v.u.i;
    if (v.type == JV_BOOL) return v.u.b;
    jvm_error(vm, "argument '%s' must be an integer, not %s", name, jv_type_name(v));
}

/* Is code point cp one of the characters of set (a UTF-8 string)? */
static bool cp_in_set(uint32_t cp, jstr set) {
    for (size_t i = 0; i < set.n;) {
        uint32_t c;
        size_t len = utf8_decode(set.p + i, set.n - i, &c);
        if (len == 0) { c = (unsigned char)set.p[i]; len = 1; }
        if (c == cp) return true;
        i += len;
    }
    return false;
}

static bool strip_match(const char *p, size_t len, uint32_t cp, jv chars) {
    (void)p;
    if (len == 0) return false;
    return chars.type == JV_STR ? cp_in_set(cp, chars.u.s) : jcp_is_space(cp);
}

/* str.strip / lstrip / rstrip with optional character set. */
jv jinja_str_strip(jstr s, jv chars, bool left, bool right) {
    size_t b = 0, e = s.n;
    if (left) {
        while (b < e) {
            uint32_t cp;
            size_t len = utf8_decode(s.p + b, e - b, &cp);
            if (!strip_match(s.p + b, len, cp, chars)) break;
            b += len;
        }
    }
    if (right) {
        while (e > b) {
            size_t st = e - 1;
            while (st > b && e - st < 4 && ((unsigned char)s.p[st] & 0xC0) == 0x80) st--;
            uint32_t cp;
            size_t len = utf8_decode(s.p + st, e - st, &cp);
            if (len != e - st || !strip_match(s.p + st, len, cp, chars)) break;
            e = st;
        }
    }
    return jv_strn(s.p + b, e - b);
}

static size_t space_len_at(jstr s, size_t i) {
    uint32_t cp;
    size_t len = utf8_decode(s.p + i, s.n - i, &cp);
    return len && jcp_is_space(cp) ? len : 0;
}

/* str.split / str.rsplit. */
static jv str_split(jvm *vm, jstr s, jv sep, int64_t maxsplit, bool from_right) {
    jv out = jv_list_new(vm->a, 0);
    if (sep.type == JV_STR && sep.u.s.n == 0) jvm_error(vm, "empty separator");
    if (sep.type == JV_STR) {
        jstr d = sep.u.s;
        if (!from_right) {
            size_t i = 0;
            while (maxsplit != 0) {
                const char *hit = memmem(s.p + i, s.n - i, d.p, d.n);
                if (!hit) break;
                size_t at = (size_t)(hit - s.p);
                jlist_push(vm->a, out.u.l, jv_strn(s.p + i, at - i));
                i = at + d.n;
                if (maxsplit > 0) maxsplit--;
            }
            jlist_push(vm->a, out.u.l, jv_strn(s.p + i, s.n - i));
            return out;
        }
        /* From the right: collect pieces backwards, then reverse. */
        size_t e = s.n;
        while (maxsplit != 0 && e >= d.n) {
            size_t at = SIZE_MAX;
            for (size_t k = e - d.n + 1; k-- > 0;)
                if (memcmp(s.p + k, d.p, d.n) == 0) { at = k; break; }
            if (at == SIZE_MAX) break;
            jlist_push(vm->a, out.u.l, jv_strn(s.p + at + d.n, e - at - d.n));
            e = at;
            if (maxsplit > 0) maxsplit--;
        }
        jlist_push(vm->a, out.u.l, jv_strn(s.p, e));
    } else if (!from_right) {
        size_t i = 0;
        for (;;) {
            size_t k;
            while (i < s.n && (k = space_len_at(s, i)) != 0) i += k;
            if (i >= s.n) break;
            if (maxsplit == 0) {
                jlist_push(vm->a, out.u.l, jv_strn(s.p + i, s.n - i));
                break;
            }
            size_t st = i;
            while (i < s.n && space_len_at(s, i) == 0) i += utf8_char_len(s.p + i, s.n - i);
            jlist_push(vm->a, out.u.l, jv_strn(s.p + st, i - st));
            if (maxsplit > 0) maxsplit--;
        }
        return out;
    } else {
        size_t e = s.n;
        for (;;) {
            size_t suf = jstr_space_suffix(s.p, e);
            e -= suf;
            if (e == 0) break;
            if (maxsplit == 0) {
                jlist_push(vm->a, out.u.l, jv_strn(s.p, e));
                break;
            }
            size_t st = e;
            while (st > 0) {
                size_t k = st - 1;
                while (k > 0 && ((unsigned char)s.p[k] & 0xC0) == 0x80) k--;
                if (space_len_at(s, k)) break;
                st = k;
            }
            jlist_push(vm->a, out.u.l, jv_strn(s.p + st, e - st));
            e = st;
            if (maxsplit > 0) maxsplit--;
        }
    }
    jlist *l = out.u.l;
    for (size_t i = 0; i < l->n / 2; i++) {
        jv t = l->v[i];
        l->v[i] = l->v[l->n - 1 - i];
        l->v[l->n - 1 - i] = t;
    }
    return out;
}

/* str.replace(old, new, count). */
jv jinja_str_replace(jvm *vm, jstr s, jstr old, jstr rep, int64_t count) {
    jbuf b;
    jbuf_init(&b, vm->a, vm->p->max_output_bytes);
    if (old.n == 0) {
        /* Python inserts rep before every character and at the end. */
        size_t i = 0;
        while (count != 0 && i <= s.n) {
            jbuf_put(&b, rep.p, rep.n);
            if (count > 0) count--;
            if (i == s.n) { i++; break; }
            size_t len = utf8_char_len(s.p + i, s.n - i);
            jbuf_put(&b, s.p + i, len);
            i += len;
        }
        if (i < s.n) jbuf_put(&b, s.p + i, s.n - i);
        return jbuf_value(&b);
    }
    size_t i = 0;
    while (count != 0) {
        const char *hit = memmem(s.p + i, s.n - i, old.p, old.n);
        if (!hit) break;
        size_t at = (size_t)(hit - s.p);
        jbuf_put(&b, s.p + i, at - i);
        jbuf_put(&b, rep.p, rep.n);
        i = at + old.n;
        if (count > 0) count--;
    }
    jbuf_put(&b, s.p + i, s.n - i);
    return jbuf_value(&b);
}

static char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c; }
static char ascii_upper(char c) { return c >= 'a' && c <= 'z' ? (char)(c - 32) : c; }
static bool ascii_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* Case mappings (ASCII letters; other characters unchanged).
 * mode: 'l' lower, 'u' upper, 's' swapcase, 'c' capitalize, 't' str.title. */
jv jinja_str_case(jvm *vm, jstr s, char mode) {
    char *p = jarena_strdup(vm->a, s.p, s.n);
    bool prev_cased = false;
    for (size_t i = 0; i < s.n; i++) {
        char c = p[i];
        switch (mode) {
        case 'l': p[i] = ascii_lower(c); break;
        case 'u': p[i] = ascii_upper(c); break;
        case 's': p[i] = c >= 'a' && c <= 'z' ? ascii_upper(c) : ascii_lower(c); break;
        case 'c': p[i] = i == 0 ? ascii_upper(c) : ascii_lower(c); break;
        case 't':
            if (ascii_alpha(c)) {
                p[i] = prev_cased ? ascii_lower(c) : ascii_upper(c);
                prev_cased = true;
            } else {
                prev_cased = ((unsigned char)c & 0x80) != 0 && prev_cased;
            }
            break;
        default: break;
        }
    }
    return jv_strn(p, s.n);
}

static bool starts_or_ends(jvm *vm, jstr s, jv what, bool ends) {
    if (what.type == JV_LIST && what.u.l->is_tuple) {
        for (size_t i = 0; i < what.u.l->n; i++)
            if (starts_or_ends(vm, s, what.u.l->v[i], ends)) return true;
        return false;
    }
    if (what.type != JV_STR)
        jvm_error(vm, "%s arg must be str or a tuple of str, not %s", ends ? "endswith" : "startswith",
                  jv_type_name(what));
    jstr w = what.u.s;
    if (w.n > s.n) return false;
    return memcmp(ends ? s.p + s.n - w.n : s.p, w.p, w.n) == 0;
}

static int64_t cp_index_of(jstr s, size_t byte_off) {
    jstr pre = {s.p, byte_off};
    return (int64_t)jstr_cp_len(pre);
}

static jv str_format(jvm *vm, jstr s, const jargs *a) {
    jbuf b;
    jbuf_init(&b, vm->a, vm->p->max_output_bytes);
    size_t auto_idx = 0;
    for (size_t i = 0; i < s.n; i++) {
        char c = s.p[i];
        if ((c == '{' || c == '}') && i + 1 < s.n && s.p[i + 1] == c) {
            jbuf_putc(&b, c);
            i++;
            continue;
        }
        if (c == '}') jvm_error(vm, "single '}' encountered in format string");
        if (c != '{') {
            jbuf_putc(&b, c);
            continue;
        }
        size_t e = i + 1;
        while (e < s.n && s.p[e] != '}') e++;
        if (e >= s.n) jvm_error(vm, "single '{' encountered in format string");
        jstr field = {s.p + i + 1, e - i - 1};
        if (memchr(field.p, ':', field.n) || memchr(field.p, '!', field.n) || memchr(field.p, '.', field.n) ||
            memchr(field.p, '[', field.n))
            jvm_error(vm, "format specifications are not supported");
        jv v = jv_undef();
        bool found = false;
        if (field.n == 0) {
            found = auto_idx < a->n_pos;
            if (found) v = a->pos[auto_idx++];
        } else if (field.p[0] >= '0' && field.p[0] <= '9') {
            size_t idx = 0;
            for (size_t k = 0; k < field.n; k++) idx = idx * 10 + (size_t)(field.p[k] - '0');
            found = idx < a->n_pos;
            if (found) v = a->pos[idx];
        } else {
            for (size_t k = 0; k < a->n_kw; k++)
                if (a->kwnames[k].n == field.n && memcmp(a->kwnames[k].p, field.p, field.n) == 0) {
                    v = a->kw[k];
                    found = true;
                }
        }
        if (!found) jvm_error(vm, "format: missing argument for field '%.*s'", (int)field.n, field.p);
        jv_write_str(&b, v);
        i = e;
    }
    return jbuf_value(&b);
}

static bool str_all(jstr s, int kind) {
    if (s.n == 0) return false;
    bool any_cased = false;
    for (size_t i = 0; i < s.n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        bool ok;
        switch (kind) {
        case 'd': ok = c >= '0' && c <= '9'; break;
        case 'a': ok = ascii_alpha((char)c) || c >= 0x80; break;
        case 'n': ok = ascii_alpha((char)c) || (c >= '0' && c <= '9') || c >= 0x80; break;
        case 's': ok = c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x1f); break;
        case 'l': ok = !(c >= 'A' && c <= 'Z'); any_cased |= c >= 'a' && c <= 'z'; break;
        default: ok = !(c >= 'a' && c <= 'z'); any_cased |= c >= 'A' && c <= 'Z'; break;
        }
        if (!ok) return false;
    }
    return (kind == 'l' || kind == 'u') ? any_cased : true;
}

static jv str_pad(jvm *vm, jstr s, const jargs *a, char how) {
    int64_t width = int_arg(vm, a, 0, "width", 0);
    jv fill = str_arg(vm, a, 1, "fillchar", false);
    jstr f = fill.type == JV_STR ? fill.u.s : (jstr){" ", 1};
    if (how == 'z') f = (jstr){"0", 1};
    if (f.n == 0 || jstr_cp_len(f) != 1) jvm_error(vm, "the fill character must be exactly one character long");
    int64_t len = (int64_t)jstr_cp_len(s);
    if (width <= len) return jv_strn(s.p, s.n);
    if (width > (int64_t)vm->p->max_output_bytes) jvm_limit(vm, "padding wider than the output limit");
    int64_t pad = width - len, left = 0;
    if (how == 'r' || how == 'z') left = pad;
    else if (how == 'c') left = pad / 2 + (pad & width & 1);
    jbuf b;
    jbuf_init(&b, vm->a, vm->p->max_output_bytes);
    size_t body = 0;
    if (how == 'z' && s.n && (s.p[0] == '+' || s.p[0] == '-')) {
        jbuf_putc(&b, s.p[0]);
        body = 1;
    }
    for (int64_t i = 0; i < left; i++) jbuf_put(&b, f.p, f.n);
    jbuf_put(&b, s.p + body, s.n - body);
    for (int64_t i = left; i < pad; i++) jbuf_put(&b, f.p, f.n);
    return jbuf_value(&b);
}

static jv str_partition(jvm *vm, jstr s, jv sep, bool right) {
    if (sep.type != JV_STR || sep.u.s.n == 0) jvm_error(vm, "partition needs a non-empty separator");
    jstr d = sep.u.s;
    size_t at = SIZE_MAX;
    if (!right) {
        const char *hit = memmem(s.p, s.n, d.p, d.n);
        if (hit) at = (size_t)(hit - s.p);
    } else if (s.n >= d.n) {
        for (size_t k = s.n - d.n + 1; k-- > 0;)
            if (memcmp(s.p + k, d.p, d.n) == 0) { at = k; break; }
    }
    jv out = jv_list_new(vm->a, 3);
    out.u.l->is_tuple = true;
    if (at == SIZE_MAX) {
        jv empty = jv_strn("", 0), whole = jv_strn(s.p, s.n);
        jlist_push(vm->a, out.u.l, right ? empty : whole);
        jlist_push(vm->a, out.u.l, empty);
        jlist_push(vm->a, out.u.l, right ? whole : empty);
        return out;
    }
    jlist_push(vm->a, out.u.l, jv_strn(s.p, at));
    jlist_push(vm->a, out.u.l, jv_strn(d.p, d.n));
    jlist_push(vm->a, out.u.l, jv_strn(s.p + at + d.n, s.n - at - d.n));
    return out;
}

static jv call_str_method(jvm *vm, jstr s, jstr name, const jargs *a) {
    if (str_eq(name, "startswith") || str_eq(name, "endswith")) {
        jv what;
        if (!jargs_get(vm, a, 0, "prefix", &what)) jvm_error(vm, "%.*s needs an argument", (int)name.n, name.p);
        if (a->n_pos > 1) jvm_error(vm, "start/end arguments of %.*s are not supported", (int)name.n, name.p);
        return jv_bool(starts_or_ends(vm, s, what, name.p[0] == 'e'));
    }
    if (str_eq(name, "split") || str_eq(name, "rsplit"))
        return str_split(vm, s, str_arg(vm, a, 0, "sep", false), int_arg(vm, a, 1, "maxsplit", -1),
                         name.p[0] == 'r');
    if (str_eq(name, "strip")) return jinja_str_strip(s, str_arg(vm, a, 0, "chars", false), true, true);
    if (str_eq(name, "lstrip")) return jinja_str_strip(s, str_arg(vm, a, 0, "chars", false), true, false);
    if (str_eq(name, "rstrip")) return jinja_str_strip(s, str_arg(vm, a, 0, "chars", false), false, true);
    if (str_eq(name, "lower") || str_eq(name, "casefold")) return jinja_str_case(vm, s, 'l');
    if (str_eq(name, "upper")) return jinja_str_case(vm, s, 'u');
    if (str_eq(name, "swapcase")) return jinja_str_case(vm, s, 's');
    if (str_eq(name, "capitalize")) return jinja_str_case(vm, s, 'c');
    if (str_eq(name, "title")) return jinja_str_case(vm, s, 't');
    if (str_eq(name, "replace")) {
        jv old = str_arg(vm, a, 0, "old", true), rep = str_arg(vm, a, 1, "new", true);
        if (old.type != JV_STR || rep.type != JV_STR) jvm_error(vm, "replace() arguments must be strings");
        return jinja_str_replace(vm, s, old.u.s, rep.u.s, int_arg(vm, a, 2, "count", -1));
    }
    if (str_eq(name, "find") || str_eq(name, "index") || str_eq(name, "rfind") || str_eq(name, "rindex")) {
        jv sub = str_arg(vm, a, 0, "sub", true);
        if (sub.type != JV_STR) jvm_error(vm, "%.*s() argument must be a string", (int)name.n, name.p);
        if (a->n_pos > 1) jvm_error(vm, "start/end arguments of %.*s are not supported", (int)name.n, name.p);
        size_t at = SIZE_MAX;
        if (name.p[0] != 'r') {
            const char *hit = sub.u.s.n ? memmem(s.p, s.n, sub.u.s.p, sub.u.s.n) : s.p;
            if (hit) at = (size_t)(hit - s.p);
        } else if (s.n >= sub.u.s.n) {
            for (size_t k = s.n - sub.u.s.n + 1; k-- > 0;)
                if (memcmp(s.p + k, sub.u.s.p, sub.u.s.n) == 0) { at = k; break; }
        }
        if (at == SIZE_MAX) {
            if (str_eq(name, "index") || str_eq(name, "rindex")) jvm_error(vm, "substring not found");
            return jv_int(-1);
        }
        return jv_int(cp_index_of(s, at));
    }
    if (str_eq(name, "count")) {
        jv sub = str_arg(vm, a, 0, "sub", true);
        if (sub.type != JV_STR) jvm_error(vm, "count() argument must be a string");
        if (sub.u.s.n == 0) return jv_int((int64_t)jstr_cp_len(s) + 1);
        int64_t c = 0;
        for (size_t i = 0;;) {
            const char *hit = memmem(s.p + i, s.n - i, sub.u.s.p, sub.u.s.n);
            if (!hit) break;
            c++;
            i = (size_t)(hit - s.p) + sub.u.s.n;
        }
        return jv_int(c);
    }
    if (str_eq(name, "join")) {
        jv it;
        if (!jargs_get(vm, a, 0, "iterable", &it)) jvm_error(vm, "join() needs an argument");
        jlist *l = jinja_iterate(vm, it);
        jbuf b;
        jbuf_init(&b, vm->a, vm->p->max_output_bytes);
        for (size_t i = 0; i < l->n; i++) {
            if (l->v[i].type != JV_STR)
                jvm_error(vm, "sequence item %zu: expected str instance, %s found", i, jv_type_name(l->v[i]));
            if (i) jbuf_put(&b, s.p, s.n);
            jbuf_put(&b, l->v[i].u.s.p, l->v[i].u.s.n);
        }
        return jbuf_value(&b);
    }
    if (str_eq(name, "format")) return str_format(vm, s, a);
    if (str_eq(name, "isdigit") || str_eq(name, "isdecimal") || str_eq(name, "isnumeric")) return jv_bool(str_all(s, 'd'));
    if (str_eq(name, "isalpha")) return jv_bool(str_all(s, 'a'));
    if (str_eq(name, "isalnum")) return jv_bool(str_all(s, 'n'));
    if (str_eq(name, "isspace")) return jv_bool(str_all(s, 's'));
    if (str_eq(name, "islower")) return jv_bool(str_all(s, 'l'));
    if (str_eq(name, "isupper")) return jv_bool(str_all(s, 'u'));
    if (str_eq(name, "splitlines")) {
        jv keep = jv_bool(false);
        jargs_get(vm, a, 0, "keepends", &keep);
        jv out = jv_list_new(vm->a, 0);
        size_t st = 0;
        for (size_t i = 0; i < s.n; i++) {
            if (s.p[i] != '\n' && s.p[i] != '\r') continue;
            size_t e = i + (s.p[i] == '\r' && i + 1 < s.n && s.p[i + 1] == '\n');
            jlist_push(vm->a, out.u.l, jv_strn(s.p + st, (jv_truthy(keep) ? e + 1 : i) - st));
            i = e;
            st = e + 1;
        }
        if (st < s.n) jlist_push(vm->a, out.u.l, jv_strn(s.p + st, s.n - st));
        return out;
    }
    if (str_eq(name, "zfill")) return str_pad(vm, s, a, 'z');
    if (str_eq(name, "ljust")) return str_pad(vm, s, a, 'l');
    if (str_eq(name, "rjust")) return str_pad(vm, s, a, 'r');
    if (str_eq(name, "center")) return str_pad(vm, s, a, 'c');
    if (str_eq(name, "partition") || str_eq(name, "rpartition"))
        return str_partition(vm, s, str_arg(vm, a, 0, "sep", true), name.p[0] == 'r');
    if (str_eq(name, "removeprefix") || str_eq(name, "removesuffix")) {
        jv x = str_arg(vm, a, 0, "affix", true);
        if (x.type != JV_STR) jvm_error(vm, "argument must be a string");
        bool suffix = name.p[6] == 's';
        if (!starts_or_ends(vm, s, x, suffix)) return jv_strn(s.p, s.n);
        return jv_strn(suffix ? s.p : s.p + x.u.s.n, s.n - x.u.s.n);
    }
    jvm_error(vm, "str has no method '%.*s'", (int)name.n, name.p);
}

jv jinja_call_method(jvm *vm, const jmethod *m, const jargs *a) {
    jv self = m->self;
    jstr name = m->name;
    switch (self.type) {
    case JV_STR: return call_str_method(vm, self.u.s, name, a);
    case JV_DICT: {
        const jdict *d = self.u.d;
        if (str_eq(name, "get")) {
            jv key, v, dflt = jv_none();
            if (!jargs_get(vm, a, 0, "key", &key)) jvm_error(vm, "get() needs a key");
            jargs_get(vm, a, 1, "default", &dflt);
            return jdict_get(d, key, &v) ? v : dflt;
        }
        if (str_eq(name, "copy")) {
            jv out = jv_dict_new(vm->a);
            for (size_t i = 0; i < d->n; i++) jdict_set(vm->a, vm->fail, out.u.d, d->keys[i], d->vals[i]);
            return out;
        }
        jv out = jv_list_new(vm->a, d->n);
        for (size_t i = 0; i < d->n; i++) {
            if (str_eq(name, "keys")) {
                jlist_push(vm->a, out.u.l, d->keys[i]);
            } else if (str_eq(name, "values")) {
                jlist_push(vm->a, out.u.l, d->vals[i]);
            } else {
                jv pair = jv_list_new(vm->a, 2);
                pair.u.l->is_tuple = true;
                jlist_push(vm->a, pair.u.l, d->keys[i]);
                jlist_push(vm->a, pair.u.l, d->vals[i]);
                jlist_push(vm->a, out.u.l, pair);
            }
        }
        return out;
    }
    case JV_LIST: {
        const jlist *l = self.u.l;
        if (str_eq(name, "copy")) {
            jv out = jv_list_new(vm->a, l->n);
            for (size_t i = 0; i < l->n; i++) jlist_push(vm->a, out.u.l, l->v[i]);
            return out;
        }
        jv x;
        if (!jargs_get(vm, a, 0, "value", &x)) jvm_error(vm, "%.*s() needs an argument", (int)name.n, name.p);
        int64_t c = 0;
        for (size_t i = 0; i < l->n; i++) {
            if (!jv_equal(l->v[i], x)) continue;
            if (str_eq(name, "index")) return jv_int((int64_t)i);
            c++;
        }
        if (str_eq(name, "index")) jvm_error(vm, "value is not in list");
        return jv_int(c);
    }
    case JV_LOOP: /* loop.cycle(a, b, ...) */
        if (a->n_pos == 0) jvm_error(vm, "no items for cycling given");
        return a->pos[self.u.loop->i % a->n_pos];
    default: jvm_error(vm, "'%s' has no method '%.*s'", jv_type_name(self), (int)name.n, name.p);
    }
}

/* ---- strftime_now ---- */

jv jinja_strftime(jvm *vm, jstr fmt) {
    if (fmt.n > 256) jvm_error(vm, "strftime_now format longer than 256 bytes");
    char f[260];
    memcpy(f, fmt.p, fmt.n);
    f[fmt.n] = '\0';
    time_t t = vm->p->now == JINJA_NOW_CLOCK ? time(NULL) : (time_t)vm->p->now;
    struct tm tm;
    bool ok = vm->p->now_utc ? gmtime_r(&t, &tm) != NULL : localtime_r(&t, &tm) != NULL;
    if (!ok) jvm_error(vm, "strftime_now: time out of range");
    char out[1024];
    size_t n = fmt.n ? strftime(out, sizeof out, f, &tm) : 0;
    return jv_str_copy(vm->a, out, n);
}
