/*
 * test_jinja.c - tests of the Jinja chat-template renderer (src/text/jinja*.c)
 * and the chat layer (src/text/chat.c).
 *
 * Expected outputs of the construct tests were rendered with Python Jinja2
 * 3.1.2 (Debian python3-jinja2) configured as Hugging Face's
 * apply_chat_template (tests/ref/render_templates.py, strftime_now at the
 * fixed time 1700000000 UTC) and pasted here as literals: an independent
 * oracle. Hostile templates must end with MICA_ERR_LIMIT, quickly.
 * The comparison over all real templates is tests/scripts/templates.sh.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test.h"
#include "text/chat.h"
#include "text/jinja.h"

#define FIXED_NOW 1700000000

static jinja_params fixed_params(void) {
    jinja_params p = jinja_params_default();
    p.now = FIXED_NOW;
    p.now_utc = true;
    return p;
}

/* Renders tmpl with vars (JSON); returns the status, the output in *out (malloc'd) and
 * the message in err. */
static mica_status render_with(const char *tmpl, const char *vars, const jinja_params *p, char **out,
                               mica_err *err) {
    jinja_template *t = NULL;
    mica_status st = jinja_template_parse(tmpl, strlen(tmpl), &t, err);
    if (st != MICA_OK) return st;
    size_t n = 0;
    *out = NULL;
    st = jinja_template_render_json(t, vars, vars ? strlen(vars) : 0, p, out, &n, err);
    if (st == MICA_OK && strlen(*out) != n) st = MICA_ERR_INTERNAL;
    jinja_template_free(t);
    return st;
}

static void check_render(const char *tmpl, const char *vars, const char *want) {
    jinja_params p = fixed_params();
    mica_err err = {0};
    char *out = NULL;
    mica_status st = render_with(tmpl, vars, &p, &out, &err);
    if (st != MICA_OK) {
        test_fail(__FILE__, __LINE__, "render failed (%d): %s", (int)st, err.msg);
        return;
    }
    if (strcmp(out, want) != 0) test_fail(__FILE__, __LINE__, "got \"%s\"\nwant \"%s\"", out, want);
    mica_free(out);
}

/* Expects failure with status want_st and a message containing want_msg (may be NULL). */
static void check_error(const char *tmpl, const char *vars, const jinja_params *p, mica_status want_st,
                        const char *want_msg) {
    jinja_params dp = fixed_params();
    mica_err err = {0};
    char *out = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    mica_status st = render_with(tmpl, vars, p ? p : &dp, &out, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (st == MICA_OK) {
        test_fail(__FILE__, __LINE__, "expected status %d, got output of %zu bytes", (int)want_st, strlen(out));
        mica_free(out);
        return;
    }
    if (st != want_st) test_fail(__FILE__, __LINE__, "status %d, want %d (%s)", (int)st, (int)want_st, err.msg);
    if (want_msg && !strstr(err.msg, want_msg))
        test_fail(__FILE__, __LINE__, "message \"%s\" lacks \"%s\"", err.msg, want_msg);
    if (secs > 3.0) test_fail(__FILE__, __LINE__, "took %.2f s", secs);
}

/* ---- constructs (expected values from Python Jinja2) ---- */

TEST(tmpl_ws_lstrip_trim) {
    check_render("  {% if true %}\n  x\n  {% endif %}\n  y",
                 "{}",
                 "  x\n  y");
}

TEST(tmpl_ws_minus) {
    check_render("a\n  {%- if true %}b{% endif %}  \n  {{ 'c' }}",
                 "{}",
                 "ab  \n  c");
}

TEST(tmpl_ws_minus_right) {
    check_render("a {{- ' b ' -}} \n c {%- if 1 -%}\n\n d {% endif -%}   e",
                 "{}",
                 "a b cd e");
}

TEST(tmpl_ws_plus) {
    check_render("  {%+ if true +%}\nx\n  {%- endif %}",
                 "{}",
                 "  \nx");
}

TEST(tmpl_ws_var_no_lstrip) {
    check_render("  {{ 1 }}\n  {% if true %}2{% endif %}\n",
                 "{}",
                 "  1\n2");
}

TEST(tmpl_ws_comment) {
    check_render("a\n  {# note #}\nb\n{#- x -#}  c",
                 "{}",
                 "a\nbc");
}

TEST(tmpl_ws_trailing_nl) {
    check_render("x\n",
                 "{}",
                 "x");
}

TEST(tmpl_ws_crlf) {
    check_render("a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc",
                 "{}",
                 "a\nb\nc");
}

TEST(tmpl_ws_tabs) {
    check_render("\t \t{% for i in [1,2] %}\n\t{{ i }}\n\t{% endfor %}\nend",
                 "{}",
                 "\t1\n\t2\nend");
}

TEST(tmpl_ws_text_before_tag) {
    check_render("x  {% if true %}\ny{% endif %}",
                 "{}",
                 "x  y");
}

TEST(tmpl_ws_raw) {
    check_render("{% raw %}{{ not }} {% evaluated %}{% endraw %}|",
                 "{}",
                 "{{ not }} {% evaluated %}|");
}

TEST(tmpl_ws_after_var_line) {
    check_render("{{ 'a' }}\n    {% if true %}b{% endif %}",
                 "{}",
                 "a\nb");
}

TEST(tmpl_expr_arith) {
    check_render("{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 10 - 2 - 3 }}",
                 "{}",
                 "7 9 3.5 3 -4 2 1024 0.5 5");
}

TEST(tmpl_expr_float) {
    check_render("{{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1e15 }} {{ 1.5e-5 }} {{ 3.0 }} {{ 2.5 * 2 }} {{ 1/3 }} {{ -0.0 }} {{ 123456789.125 }}",
                 "{}",
                 "0.30000000000000004 1e+16 1000000000000000.0 1.5e-05 3.0 5.0 0.3333333333333333 -0.0 123456789.125");
}

TEST(tmpl_expr_strings) {
    check_render("{{ 'a\\tb\\n' ~ \"q'\" ~ '\\u00e9\\x41\\\\' }}|{{ 'x' 'y' }}|{{ 'ab' * 3 }}|{{ 'a' + 'b' }}",
                 "{}",
                 "a\tb\nq'\303\251A\\|xy|ababab|ab");
}

TEST(tmpl_expr_compare) {
    check_render("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'a' < 'b' }} {{ [1,2] == [1,2] }} {{ 1 == 1.0 }} {{ true == 1 }} {{ none == none }} {{ 'a' != 'a' }}",
                 "{}",
                 "True False True True True True True False");
}

TEST(tmpl_expr_in) {
    check_render("{{ 'b' in 'abc' }} {{ 2 in [1,2] }} {{ 'k' in {'k': 1} }} {{ 3 not in [1] }} {{ 'x' in undefined_var }}",
                 "{}",
                 "True True True True False");
}

TEST(tmpl_expr_logic) {
    check_render("{{ 0 or 'x' }} {{ 1 and 'y' }} {{ not 0 }} {{ none or [] }} {{ '' and 1 }} {{ not x is defined }}",
                 "{}",
                 "x y True []  True");
}

TEST(tmpl_expr_ternary) {
    check_render("{{ 'y' if 1 else 'n' }}{{ 'y' if 0 else 'n' }}[{{ 'y' if 0 }}]{{ 'a' if false else 'b' if true else 'c' }}",
                 "{}",
                 "yn[]b");
}

TEST(tmpl_expr_filter_precedence) {
    check_render("{{ items|length - 1 }} {{ 'a' + ' b '|trim }} {{ -3|abs }} {{ not items|length }}",
                 "{\"items\": [1, 2, 3]}",
                 "2 ab 3 False");
}

TEST(tmpl_expr_literals) {
    check_render("{{ [1, 'a', none, true, 1.5, {'k': \"it's\"}] }} {{ (1,) }} {{ (1, 2) }} {{ {} }} {{ [] }} {{ True }} {{ None }}",
                 "{}",
                 "[1, 'a', None, True, 1.5, {'k': \"it's\"}] (1,) (1, 2) {} [] True None");
}

TEST(tmpl_expr_subscript) {
    check_render("{{ m[0] }} {{ m[-1] }} {{ m[5] }}|{{ d['a'] }} {{ d.a }} {{ d.b.c }} {{ s[0] }}{{ s[-1] }} {{ m.0 }}",
                 "{\"m\": [10, 20, 30], \"d\": {\"a\": 1, \"b\": {\"c\": \"deep\"}}, \"s\": \"h\303\251llo\"}",
                 "10 30 |1 1 deep ho 10");
}

TEST(tmpl_expr_slice) {
    check_render("{{ m[1:] }} {{ m[:2] }} {{ m[::-1] }} {{ m[::2] }} {{ m[-2:] }} {{ s[::-1] }} {{ s[1:3] }} {{ m[5:] }}",
                 "{\"m\": [1, 2, 3, 4], \"s\": \"a\303\251\360\237\230\200b\"}",
                 "[2, 3, 4] [1, 2] [4, 3, 2, 1] [1, 3] [3, 4] b\360\237\230\200\303\251a \303\251\360\237\230\200 []");
}

TEST(tmpl_expr_undefined) {
    check_render("[{{ nope }}][{{ nope|length }}][{{ nope ~ 'x' }}][{{ d.missing }}][{{ d['missing'] is defined }}][{{ nope is undefined }}]",
                 "{\"d\": {}}",
                 "[][0][x][][False][True]");
}

TEST(tmpl_expr_none_attr) {
    check_render("[{{ n.x }}][{{ n['x'] is defined }}]",
                 "{\"n\": null}",
                 "[][False]");
}

TEST(tmpl_expr_dict_method_vs_key) {
    check_render("{{ d['items'] }} {{ d.get('items') }} {{ d.get('zz', 'dflt') }} {{ d.items()|list }} {{ d.keys()|list }} {{ d.values()|list }}",
                 "{\"d\": {\"items\": 5, \"b\": 2}}",
                 "5 5 dflt [('items', 5), ('b', 2)] ['items', 'b'] [5, 2]");
}

TEST(tmpl_tests_types) {
    check_render("{{ 'x' is string }}{{ 1 is number }}{{ true is number }}{{ true is integer }}{{ 1 is integer }}{{ 1.0 is float }}{{ none is none }}{{ {} is mapping }}{{ [] is sequence }}{{ 'a' is sequence }}{{ 1 is iterable }}{{ u is iterable }}{{ u is sequence }}{{ u is mapping }}{{ true is boolean }}{{ false is false }}{{ 1 is true }}",
                 "{}",
                 "TrueTrueTrueFalseTrueTrueTrueTrueTrueTrueFalseTrueTrueFalseTrueTrueFalse");
}

TEST(tmpl_tests_args) {
    check_render("{{ 4 is divisibleby 2 }}{{ 3 is odd }}{{ 4 is even }}{{ 'a' is in ['a'] }}{{ 2 is equalto 2 }}{{ 2 is eq(3) }}{{ 'abc' is lower }}{{ 3 is gt 2 }}{{ x is not none }}",
                 "{\"x\": null}",
                 "TrueTrueTrueTrueTrueFalseTrueTrueFalse");
}

TEST(tmpl_filter_str) {
    check_render("{{ '  a b  '|trim }}|{{ 'xxaxx'|trim('x') }}|{{ 'Hello World'|lower }}|{{ 'hi'|upper }}|{{ 'hello wORLD-foo(bar'|title }}|{{ 'hELLO'|capitalize }}|{{ 'aaa'|replace('a', 'b', 2) }}|{{ 'one two  three'|wordcount }}|{{ '<a href=\"x\">&\\'</a>'|e }}",
                 "{}",
                 "a b|a|hello world|HI|Hello World-Foo(Bar|Hello|bba|3|&lt;a href=&#34;x&#34;&gt;&amp;&#39;&lt;/a&gt;");
}

TEST(tmpl_filter_seq) {
    check_render("{{ [3,1,2]|sort }} {{ ['b','A','a']|sort }} {{ ['b','A','a']|sort(case_sensitive=true) }} {{ [3,1,2]|sort(reverse=true) }} {{ [1,2]|first }} {{ [1,2]|last }} {{ 'abc'|first }} {{ [1,2,1,'A','a']|unique|list }} {{ [1,2,3]|reverse|list }} {{ 'abc'|reverse }} {{ [1,2,3]|join('-') }} {{ [1,2]|join }} {{ [1,2,3]|sum }} {{ [3,1,2]|min }} {{ [3,1,2]|max }}",
                 "{}",
                 "[1, 2, 3] ['A', 'a', 'b'] ['A', 'a', 'b'] [3, 2, 1] 1 2 a [1, 2, 'A'] [3, 2, 1] cba 1-2-3 12 6 1 3");
}

TEST(tmpl_filter_attr) {
    check_render("{{ users|map(attribute='name')|join(',') }} {{ users|selectattr('age', 'gt', 20)|map(attribute='name')|list }} {{ users|rejectattr('admin')|map(attribute='name')|list }} {{ users|selectattr('admin')|list|length }} {{ users|sort(attribute='age')|map(attribute='name')|list }} {{ users|map(attribute='x', default='?')|list }} {{ [1,2,3,4]|select('odd')|list }} {{ [1,0,2]|reject|list }} {{ ['a','b']|map('upper')|list }}",
                 "{\"users\": [{\"name\": \"bob\", \"age\": 30, \"admin\": true}, {\"name\": \"al\", \"age\": 20, \"admin\": false}, {\"name\": \"cy\", \"age\": 25}]}",
                 "bob,al,cy ['bob', 'cy'] ['al', 'cy'] 1 ['al', 'cy', 'bob'] ['?', '?', '?'] [1, 3] [0] ['A', 'B']");
}

TEST(tmpl_filter_dict) {
    check_render("{{ d|dictsort }} {{ d|dictsort(by='value', reverse=true) }} {{ d|items|list }} {{ d|length }} {{ d|list }}",
                 "{\"d\": {\"b\": 2, \"a\": 3, \"C\": 1}}",
                 "[('a', 3), ('b', 2), ('C', 1)] [('a', 3), ('b', 2), ('C', 1)] [('b', 2), ('a', 3), ('C', 1)] 3 ['b', 'a', 'C']");
}

TEST(tmpl_filter_conv) {
    check_render("{{ '42'|int }} {{ '4.7'|int }} {{ 'x'|int }} {{ 'x'|int(7) }} {{ 3.9|int }} {{ '2.5'|float }} {{ 'z'|float }} {{ 3|float }} {{ 2.5|round }} {{ 3.5|round }} {{ 2.567|round(2) }} {{ 2.1|round(0, 'ceil') }} {{ 5|string ~ 1 }} {{ [1]|string }} {{ none|string }} {{ true|string }}",
                 "{}",
                 "42 4 0 7 3 2.5 0.0 3.0 2.0 4.0 2.57 3.0 51 [1] None True");
}

TEST(tmpl_filter_default) {
    check_render("{{ x|default('d') }} {{ ''|default('d') }} {{ ''|default('d', true) }} {{ none|d('n', true) }} {{ 0|default(5) }}",
                 "{}",
                 "d  d n 0");
}

TEST(tmpl_filter_tojson) {
    check_render("{{ v|tojson }}\n{{ v|tojson(indent=2) }}\n{{ [1,[],{}]|tojson(indent=4) }} {{ '\303\251\"\\\\\\n\\t\\u0001<>&\\''|tojson }} {{ 1.0|tojson }} {{ {'a': none, 'b': true}|tojson(separators=(',', ':')) }} {{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }} {{ '\303\251'|tojson(ensure_ascii=true) }}",
                 "{\"v\": {\"name\": \"x\", \"list\": [1, 2.5, null, true, \"\303\274\"], \"nested\": {\"k\": []}}}",
                 "{\"name\": \"x\", \"list\": [1, 2.5, null, true, \"\303\274\"], \"nested\": {\"k\": []}}\n{\n  \"name\": \"x\",\n  \"list\": [\n    1,\n    2.5,\n    null,\n    true,\n    \"\303\274\"\n  ],\n  \"nested\": {\n    \"k\": []\n  }\n}\n[\n    1,\n    [],\n    {}\n] \"\303\251\\\"\\\\\\n\\t\\u0001<>&'\" 1.0 {\"a\":null,\"b\":true} {\"a\": 2, \"b\": 1} \"\\u00e9\"");
}

TEST(tmpl_filter_indent) {
    check_render("{{ 'a\\nb\\n\\nc'|indent }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'a\\n\\nb'|indent('> ', blank=true) }}|{{ 'x\\n'|indent }}|",
                 "{}",
                 "a\n    b\n\n    c|  a\n  b|a\n> \n> b|x\n|");
}

TEST(tmpl_filter_misc) {
    check_render("{{ [1,2,3,4,5]|batch(2)|list }} {{ 'ab'|center(6) }}| {{ -2.5|abs }} {{ [1,2]|count }} {{ 'h\303\251llo'|length }} {{ d|attr('x') }}",
                 "{\"d\": {\"x\": 1}}",
                 "[[1, 2], [3, 4], [5]]   ab  | 2.5 2 5 ");
}

TEST(tmpl_methods_str) {
    check_render("{{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ '  x '.strip() }}|{{ 'xxhixx'.strip('x') }} {{ '\\n\\nhi\\n'.lstrip('\\n') }}|{{ 'hi  '.rstrip() }}| {{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(('x', 'bc')) }} {{ 'aXbX'.replace('X', '-') }} {{ 'h\303\251llo'.find('l') }} {{ 'abc'.find('z') }} {{ 'banana'.count('an') }} {{ '-'.join(['a','b']) }} {{ 'Hi {}! {name}'.format('you', name='me') }} {{ 'hello world'.title() }} {{ 'abc'.upper() }} {{ '12'.isdigit() }} {{ 'a=b=c'.partition('=') }} {{ '5'.zfill(3) }}",
                 "{}",
                 "['a', 'b', '', 'c'] ['a', 'b'] ['a', 'b c'] ['a,b', 'c'] x|hi hi\n|hi| True True a-b- 2 -1 2 a-b Hi you! me Hello World ABC True ('a', '=', 'b=c') 005");
}

TEST(tmpl_loop_vars) {
    check_render("{% for x in ['a','b','c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}[{{ loop.previtem }}|{{ loop.nextitem }}]{{ loop.cycle('o', 'e') }} {% endfor %}",
                 "{}",
                 "1032TrueFalse3[|b]o 2121FalseFalse3[a|c]e 3210FalseTrue3[b|]o ");
}

TEST(tmpl_loop_else_filter) {
    check_render("{% for x in [] %}x{% else %}empty{% endfor %} {% for x in [1,2,3,4] if x is even %}{{ x }}/{{ loop.length }} {% endfor %}{% for x in [1] if false %}{% else %}none{% endfor %}",
                 "{}",
                 "empty 2/2 4/2 none");
}

TEST(tmpl_loop_break_continue) {
    check_render("{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}",
                 "{}",
                 "0134");
}

TEST(tmpl_loop_unpack_dict) {
    check_render("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %} {% for k in d %}{{ k }}{% endfor %} {% for a, b in [[1, 2], (3, 4)] %}{{ a + b }}{% endfor %} {% for c in 'h\303\251' %}[{{ c }}]{% endfor %}",
                 "{\"d\": {\"x\": 1, \"y\": 2}}",
                 "x=1;y=2; xy 37 [h][\303\251]");
}

TEST(tmpl_loop_nested) {
    check_render("{% for a in [1,2] %}{% for b in 'xy' %}{{ a }}{{ b }}{{ loop.index }}{% endfor %}:{{ loop.index }} {% endfor %}",
                 "{}",
                 "1x11y2:1 2x12y2:2 ");
}

TEST(tmpl_loop_scope) {
    check_render("{% set y = 0 %}{% for i in [1,2] %}{{ y }}{% set y = i %}{{ y }}{% endfor %}{{ y }} {% for i in [1,2,3] %}{% if i == 1 %}{% set x = 5 %}{% endif %}[{{ x }}]{% endfor %}",
                 "{}",
                 "01020 [5][][]");
}

TEST(tmpl_loop_range) {
    check_render("{{ range(3)|list }} {{ range(1, 10, 3)|list }} {{ range(5, 0, -2)|list }} {{ range(0)|list }}",
                 "{}",
                 "[0, 1, 2] [1, 4, 7] [5, 3, 1] []");
}

TEST(tmpl_set_namespace) {
    check_render("{% set ns = namespace(count=0, items=[]) %}{% for i in [1,2,3] %}{% set ns.count = ns.count + i %}{% endfor %}{{ ns.count }} {% set a, b = 1, 2 %}{{ a }}{{ b }} {% set t = (1, 2) %}{{ t }}",
                 "{}",
                 "6 12 (1, 2)");
}

TEST(tmpl_set_block) {
    check_render("{% set body %}\n  hello {{ name }}\n{% endset %}[{{ body }}]{% set up | upper %}abc{% endset %}{{ up }}",
                 "{\"name\": \"w\"}",
                 "[  hello w\n]ABC");
}

TEST(tmpl_macro_basic) {
    check_render("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('a') }} {{ greet('b', '?') }} {{ greet(punct='.', name='c') }} {{ greet() }}",
                 "{}",
                 "Hi a! Hi b? Hi c. Hi !");
}

TEST(tmpl_macro_recursive) {
    check_render("{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1)|int }}{% endif %}{% endmacro %}{{ fact(5) }}",
                 "{}",
                 "120");
}

TEST(tmpl_macro_scope) {
    check_render("{% set x = 1 %}{% macro m() %}{{ x }}{% endmacro %}{% set x = 2 %}{{ m() }} {% macro n() %}{% if y is not defined %}{% set y = 'd' %}{% endif %}{{ y }}{% endmacro %}{{ n() }}",
                 "{}",
                 "2 d");
}

TEST(tmpl_strftime_fixed) {
    check_render("{{ strftime_now('%Y-%m-%d') }} {{ strftime_now('%d %b %Y %H:%M') }}",
                 "{}",
                 "2023-11-14 14 Nov 2023 22:13");
}

TEST(tmpl_jinja_unicode) {
    check_render("{{ s|length }} {{ s|upper }} {{ s[1:] }} {{ s|tojson }}",
                 "{\"s\": \"\346\227\245\346\234\254\350\252\236 text\"}",
                 "8 \346\227\245\346\234\254\350\252\236 TEXT \346\234\254\350\252\236 text \"\346\227\245\346\234\254\350\252\236 text\"");
}

/* ---- errors ---- */

TEST(tmpl_err_syntax) {
    mica_err err = {0};
    jinja_template *t = NULL;
    const char *src = "line one\n{% if x %}\nabc";
    ASSERT_EQ(jinja_template_parse(src, strlen(src), &t, &err), MICA_ERR_FORMAT);
    ASSERT_TRUE(t == NULL);
    ASSERT_TRUE(strstr(err.msg, "endif") != NULL);
    const char *src2 = "a\nb\n{{ 1 + }}";
    ASSERT_EQ(jinja_template_parse(src2, strlen(src2), &t, &err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err.msg, "line 3") != NULL);
    const char *bad[] = {"{% endfor %}", "{{ 'unterminated }}", "{% for %}{% endfor %}", "{{ (1 }}",
                         "{% set %}", "{% macro m( %}{% endmacro %}", "{% break %}", "{# open",
                         "{% frobnicate %}", "{{ 1 is }}", "{% if true %}{% else %}{% else %}{% endif %}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mica_status st = jinja_template_parse(bad[i], strlen(bad[i]), &t, &err);
        if (st != MICA_ERR_FORMAT) test_fail(__FILE__, __LINE__, "'%s' gave status %d", bad[i], (int)st);
    }
}

TEST(tmpl_err_runtime) {
    check_error("{{ 1|no_such_filter }}", NULL, NULL, MICA_ERR_FORMAT, "no_such_filter");
    check_error("{{ 1 is no_such_test }}", NULL, NULL, MICA_ERR_FORMAT, "no_such_test");
    check_error("ok\n{{ x.y }}", NULL, NULL, MICA_ERR_FORMAT, "line 2");
    check_error("{{ 'a' + 1 }}", NULL, NULL, MICA_ERR_FORMAT, NULL);
    check_error("{{ 1 / 0 }}", NULL, NULL, MICA_ERR_FORMAT, "zero");
    check_error("{{ none|tojson }}{{ x|tojson }}", NULL, NULL, MICA_ERR_FORMAT, NULL);
    check_error("{% for x in 5 %}{% endfor %}", NULL, NULL, MICA_ERR_FORMAT, "not iterable");
    check_error("{% set x = 1 %}{% set x.y = 2 %}", NULL, NULL, MICA_ERR_FORMAT, "namespace");
    check_error("{{ 9223372036854775807 + 1 }}", NULL, NULL, MICA_ERR_FORMAT, "overflow");
    /* The immutable sandbox refuses methods that modify values. */
    check_error("{% set l = [] %}{{ l.append(1) }}", NULL, NULL, MICA_ERR_FORMAT, NULL);
}

TEST(tmpl_err_raise_exception) {
    check_error("{% if messages|length == 0 %}{{ raise_exception('Conversation roles must alternate') }}{% endif %}",
                "{\"messages\": []}", NULL, MICA_ERR_INVALID_ARG, "Conversation roles must alternate");
}

TEST(tmpl_err_vars_json) {
    check_error("x", "[1, 2]", NULL, MICA_ERR_FORMAT, "object");
    check_error("x", "{\"a\": }", NULL, MICA_ERR_FORMAT, NULL);
    check_error("x", "{\"a\": \"\\ud800\"}", NULL, MICA_ERR_FORMAT, "surrogate");
    check_error("x", "{\"a\": \"\xff\"}", NULL, MICA_ERR_FORMAT, "UTF-8");
    check_error("x", "{\"a\": 1} trailing", NULL, MICA_ERR_FORMAT, NULL);
    check_error("x", "{\"a\": \"tab\tinside\"}", NULL, MICA_ERR_FORMAT, NULL);
}

TEST(tmpl_json_values) {
    check_render("{{ a }}|{{ n }}|{{ f }}|{{ e }}|{{ l }}|{{ d.k }}|{{ t }}{{ z }}",
                 "{\"a\": \"\\u00e9\\ud83d\\ude00\\n\\\"\", \"n\": -12, \"f\": 1.5e3, \"e\": 1E-7,"
                 " \"l\": [1, [2, []]], \"d\": {\"k\": \"v\", \"k\": \"last\"}, \"t\": true, \"z\": null}",
                 "\xc3\xa9\xf0\x9f\x98\x80\n\"|-12|1500.0|1e-07|[1, [2, []]]|last|TrueNone");
}

/* ---- limits: hostile templates end quickly with MICA_ERR_LIMIT ---- */

TEST(tmpl_limit_loops) {
    check_error("{% for i in range(100000000) %}x{% endfor %}", NULL, NULL, MICA_ERR_LIMIT, "range");
    check_error("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", NULL,
                NULL, MICA_ERR_LIMIT, NULL);
    check_error("{% set l = [1,2,3,4,5,6,7,8,9,10] %}{% for a in l %}{% for b in l %}{% for c in l %}"
                "{% for d in l %}{% for e in l %}{% for f in l %}{% for g in l %}x{% endfor %}{% endfor %}"
                "{% endfor %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}",
                NULL, NULL, MICA_ERR_LIMIT, NULL);
}

TEST(tmpl_limit_recursion) {
    check_error("{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}", NULL, NULL, MICA_ERR_LIMIT, "nested");
    /* Exponential fan-out stays under the depth cap but exhausts the step budget. */
    check_error("{% macro m(n) %}{% if n > 0 %}{{ m(n - 1) }}{{ m(n - 1) }}{% endif %}{% endmacro %}{{ m(40) }}",
                NULL, NULL, MICA_ERR_LIMIT, NULL);
}

TEST(tmpl_limit_output) {
    check_error("{{ 'x' * 1000000000 }}", NULL, NULL, MICA_ERR_LIMIT, NULL);
    check_error("{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}", NULL, NULL, MICA_ERR_LIMIT, "output");
    jinja_params p = fixed_params();
    p.max_output_bytes = 100;
    check_error("{% for i in range(101) %}x{% endfor %}", NULL, &p, MICA_ERR_LIMIT, "output");
    check_render("{% for i in range(100) %}x{% endfor %}", NULL,
                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
}

TEST(tmpl_limit_memory) {
    jinja_params p = fixed_params();
    p.max_memory_bytes = 1 << 20;
    check_error("{% set ns = namespace(s='') %}{% for i in range(10000) %}{% set ns.s = ns.s ~ 'xxxxxxxxxx' %}"
                "{% endfor %}{{ ns.s|length }}",
                NULL, &p, MICA_ERR_LIMIT, "memory");
}

static char *repeat_str(const char *head, const char *unit, size_t times, const char *tail) {
    size_t hu = strlen(head), uu = strlen(unit), tu = strlen(tail);
    char *s = malloc(hu + uu * times + tu + 1);
    if (!s) return NULL;
    memcpy(s, head, hu);
    for (size_t i = 0; i < times; i++) memcpy(s + hu + i * uu, unit, uu);
    memcpy(s + hu + uu * times, tail, tu + 1);
    return s;
}

TEST(tmpl_limit_nesting) {
    const char *units[][3] = {
        {"{{ ", "(", "1"}, {"{{ ", "not ", "1 }}"}, {"{{ ", "-", "1 }}"}, {"{{ ", "[", "1"},
        {"", "{% if true %}", "x"}, {"{{ x", "|trim", " }}"},
    };
    for (size_t k = 0; k < sizeof units / sizeof units[0]; k++) {
        char *src = repeat_str(units[k][0], units[k][1], 5000, units[k][2]);
        ASSERT_TRUE(src != NULL);
        mica_err err = {0};
        jinja_template *t = NULL;
        mica_status st = jinja_template_parse(src, strlen(src), &t, &err);
        free(src);
        if (k == 5) { /* a long flat filter chain is fine: it is not nested */
            ASSERT_OK(st);
            jinja_template_free(t);
            continue;
        }
        if (st != MICA_ERR_LIMIT && st != MICA_ERR_FORMAT)
            test_fail(__FILE__, __LINE__, "case %zu: status %d", k, (int)st);
        if (k < 4 && st != MICA_ERR_LIMIT) test_fail(__FILE__, __LINE__, "case %zu: %s", k, err.msg);
    }
    /* Deep JSON input. */
    char *deep = repeat_str("{\"a\": ", "[", 10000, "");
    ASSERT_TRUE(deep != NULL);
    check_error("x", deep, NULL, MICA_ERR_LIMIT, NULL);
    free(deep);
    /* Template over the size cap. */
    char *big = repeat_str("", "x", JINJA_MAX_TEMPLATE_BYTES + 1, "");
    ASSERT_TRUE(big != NULL);
    jinja_template *t = NULL;
    ASSERT_EQ(jinja_template_parse(big, strlen(big), &t, NULL), MICA_ERR_LIMIT);
    free(big);
}

TEST(tmpl_reuse_and_args) {
    jinja_template *t = NULL;
    const char *src = "{{ greeting }}, {{ name }}!";
    ASSERT_OK(jinja_template_parse(src, strlen(src), &t, NULL));
    char *out = NULL;
    size_t n = 0;
    const char *v1 = "{\"greeting\": \"Hi\", \"name\": \"A\"}", *v2 = "{\"greeting\": \"Yo\"}";
    ASSERT_OK(jinja_template_render_json(t, v1, strlen(v1), NULL, &out, &n, NULL));
    ASSERT_STREQ(out, "Hi, A!");
    mica_free(out);
    ASSERT_OK(jinja_template_render_json(t, v2, strlen(v2), NULL, &out, &n, NULL));
    ASSERT_STREQ(out, "Yo, !");
    ASSERT_EQ(n, 5);
    mica_free(out);
    ASSERT_EQ(jinja_template_render_json(t, NULL, 0, NULL, NULL, &n, NULL), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(jinja_template_parse(NULL, 3, &t, NULL), MICA_ERR_INVALID_ARG);
    jinja_template_free(t);
    jinja_template_free(NULL);
    ASSERT_OK(jinja_template_parse("", 0, &t, NULL));
    ASSERT_OK(jinja_template_render_json(t, NULL, 0, NULL, &out, &n, NULL));
    ASSERT_EQ(n, 0);
    ASSERT_STREQ(out, "");
    mica_free(out);
    jinja_template_free(t);
}

TEST(tmpl_json_quote) {
    char buf[64];
    const char in[] = "a\"\\\n\x01\xc3\xa9";
    size_t n = jinja_json_quote(in, sizeof in - 1, buf);
    buf[n] = '\0';
    ASSERT_STREQ(buf, "\"a\\\"\\\\\\n\\u0001\xc3\xa9\"");
    ASSERT_TRUE(jinja_json_quote_bound(10) >= 62);
    const char *js = "[1, {\"a\": null}]";
    ASSERT_EQ(jinja_json_check(js, strlen(js), '[', NULL), MICA_OK);
    ASSERT_EQ(jinja_json_check(js, strlen(js), '{', NULL), MICA_ERR_FORMAT);
    ASSERT_EQ(jinja_json_check(js, strlen(js) + 1, 0, NULL), MICA_ERR_FORMAT); /* the NUL is trailing garbage */
    ASSERT_EQ(jinja_json_check("[1,]", 4, 0, NULL), MICA_ERR_FORMAT);
}

/* ---- chat layer ---- */

TEST(tmpl_chat_chatml) {
    chat_message msgs[] = {{.role = "system", .content = "Be nice."}, {.role = "user", .content = "Hi"},
                           {.role = "assistant", .content = NULL}};
    chat_request req = {.messages = msgs, .n_messages = 3, .add_generation_prompt = true};
    char *out = NULL;
    size_t n = 0;
    ASSERT_OK(chat_render(NULL, &req, NULL, &out, &n, NULL));
    ASSERT_STREQ(out, "<|im_start|>system\nBe nice.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                      "<|im_start|>assistant\n<|im_end|>\n<|im_start|>assistant\n");
    ASSERT_EQ(n, strlen(out));
    mica_free(out);
    req.n_messages = 0;
    req.add_generation_prompt = false;
    ASSERT_OK(chat_render_chatml(&req, &out, &n, NULL));
    ASSERT_STREQ(out, "");
    mica_free(out);
    chat_message bad = {.role = NULL, .content = "x"};
    req.messages = &bad;
    req.n_messages = 1;
    ASSERT_EQ(chat_render_chatml(&req, &out, &n, NULL), MICA_ERR_INVALID_ARG);
}

static jinja_template *load_template(const char *name) {
    char path[512];
    char rel[256];
    snprintf(rel, sizeof rel, "templates/%s", name);
    test_data_path(path, sizeof path, rel);
    if (!test_require_file(path)) return NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    jinja_template *t = NULL;
    mica_err err = {0};
    if (jinja_template_parse(buf, n, &t, &err) != MICA_OK) {
        test_fail(__FILE__, __LINE__, "%s: %s", name, err.msg);
        return NULL;
    }
    return t;
}

TEST(tmpl_chat_qwen3) {
    jinja_template *t = load_template("Qwen-Qwen3-0.6B.jinja");
    if (!t) return;
    chat_message msgs[] = {
        {.role = "system", .content = "Be brief."},
        {.role = "user", .content = "Hi"},
        {.role = "assistant", .content = "Hello.", .reasoning_content = "greet back"},
        {.role = "user", .content = "Bye"},
    };
    chat_request req = {.messages = msgs, .n_messages = 4, .add_generation_prompt = true,
                        .eos_token = "<|im_end|>", .extra_json = "{\"enable_thinking\": false}"};
    jinja_params p = fixed_params();
    char *out = NULL;
    size_t n = 0;
    mica_err err = {0};
    mica_status st = chat_render(t, &req, &p, &out, &n, &err);
    jinja_template_free(t);
    if (st != MICA_OK) test_fail(__FILE__, __LINE__, "%s", err.msg);
    ASSERT_OK(st);
    ASSERT_STREQ(out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
    mica_free(out);
}

TEST(tmpl_chat_llama31_tools) {
    jinja_template *t = load_template("meta-llama-Llama-3.1-8B-Instruct.jinja");
    if (!t) return;
    chat_message msgs[] = {
        {.role = "user", .content = "Time in Paris?"},
        {.role = "assistant", .content = "",
         .tool_calls_json = "[{\"id\": \"c1\", \"type\": \"function\", \"function\": {\"name\": \"get_time\", "
                            "\"arguments\": {\"tz\": \"Europe/Paris\"}}}]"},
        {.role = "tool", .content = "12:00", .tool_call_id = "c1"},
    };
    chat_request req = {
        .messages = msgs, .n_messages = 3, .add_generation_prompt = true,
        .bos_token = "<|begin_of_text|>", .eos_token = "<|eot_id|>",
        .tools_json = "[{\"type\": \"function\", \"function\": {\"name\": \"get_time\", \"description\": \"Time now.\", "
                      "\"parameters\": {\"type\": \"object\", \"properties\": {\"tz\": {\"type\": \"string\"}}, "
                      "\"required\": [\"tz\"]}}}]"};
    jinja_params p = fixed_params();
    char *out = NULL;
    size_t n = 0;
    mica_err err = {0};
    mica_status st = chat_render(t, &req, &p, &out, &n, &err);
    if (st != MICA_OK) test_fail(__FILE__, __LINE__, "%s", err.msg);
    if (st == MICA_OK) {
        ASSERT_STREQ(out, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nGiven the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.\n\nRespond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.Do not use variables.\n\n{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"get_time\",\n        \"description\": \"Time now.\",\n        \"parameters\": {\n            \"type\": \"object\",\n            \"properties\": {\n                \"tz\": {\n                    \"type\": \"string\"\n                }\n            },\n            \"required\": [\n                \"tz\"\n            ]\n        }\n    }\n}\n\nTime in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_time\", \"parameters\": {\"tz\": \"Europe/Paris\"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n\n\"12:00\"<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
        mica_free(out);
    }
    /* Malformed JSON from the caller is an invalid argument, not a template error. */
    msgs[1].tool_calls_json = "[{\"id\": ";
    ASSERT_EQ(chat_render(t, &req, &p, &out, &n, NULL), MICA_ERR_INVALID_ARG);
    msgs[1].tool_calls_json = NULL;
    req.extra_json = "[1]";
    ASSERT_EQ(chat_render(t, &req, &p, &out, &n, NULL), MICA_ERR_INVALID_ARG);
    req.extra_json = NULL;
    msgs[0].content = "bad \xff utf-8";
    ASSERT_EQ(chat_render(t, &req, &p, &out, &n, NULL), MICA_ERR_INVALID_ARG);
    jinja_template_free(t);
}

TEST(tmpl_limit_deep_values) {
    /* Values nested deeper than the printer walks: a clean limit, not a stack overflow. */
    check_error("{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}"
                "{{ ns.x }}",
                NULL, NULL, MICA_ERR_LIMIT, NULL);
    check_error("{% set ns = namespace(x=[]) %}{% for i in range(5000) %}{% set ns.x = [ns.x] %}{% endfor %}"
                "{{ ns.x|tojson }}",
                NULL, NULL, MICA_ERR_LIMIT, NULL);
    check_render("{% set ns = namespace(x=[]) %}{% for i in range(5000) %}{% set ns.x = [ns.x] %}{% endfor %}"
                 "{{ ns.x == ns.x }}",
                 NULL, "True");
    /* Deep statement nesting inside recursive macros is bounded by max_stack_bytes. */
    char *ifs = repeat_str("{% macro r(n) %}", "{% if true %}", 100, "{{ r(n + 1) }}");
    ASSERT_TRUE(ifs != NULL);
    char *src = repeat_str(ifs, "{% endif %}", 100, "{% endmacro %}{{ r(0) }}");
    free(ifs);
    ASSERT_TRUE(src != NULL);
    jinja_params p = fixed_params();
    p.max_stack_bytes = 64 << 10;
    check_error(src, NULL, &p, MICA_ERR_LIMIT, NULL);
    free(src);
}
