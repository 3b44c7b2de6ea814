/*
 * jinja.h - a sandboxed renderer for the Jinja2 subset used by chat templates
 * (`tokenizer.chat_template` in GGUF files). Layer: text (depends on base
 * only).
 *
 * Semantics follow Python Jinja2 as Hugging Face `transformers` configures it
 * for apply_chat_template: ImmutableSandboxedEnvironment with trim_blocks,
 * lstrip_blocks and the loopcontrols extension (break/continue); the globals
 * raise_exception(msg), strftime_now(fmt), range, namespace and dict; a
 * `tojson` filter equal to Python's json.dumps(x, ensure_ascii=False,
 * indent=...) (", " and ": " separators, non-ASCII kept). Values print as
 * Python's str() would (None, True, 1.0, ['a', 1]). Undefined names behave as
 * Jinja2's default Undefined: they print as "", are false, iterate as empty,
 * and raise an error when an attribute of them is taken or they take part in
 * arithmetic.
 *
 * Sandbox: a template has no access to files, the environment or the system;
 * the only outside input is the clock read by strftime_now (fixed by
 * jinja_params.now in tests). Every render is bounded by jinja_params (output
 * bytes, memory, loop iterations plus macro calls, macro nesting); exceeding a
 * bound ends the render with MICA_ERR_LIMIT, never with a crash or a hang.
 *
 * Thread safety: a parsed jinja_template is immutable; any number of threads
 * may render the same template at once.
 */
#ifndef MICA_JINJA_H
#define MICA_JINJA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mica_internal.h"

/* Largest template source accepted by jinja_template_parse. */
#define JINJA_MAX_TEMPLATE_BYTES ((size_t)1 << 20)
/* Deepest nesting of expressions or statements accepted by the parser. */
#define JINJA_MAX_PARSE_DEPTH 128
/* Deepest nesting of arrays/objects accepted in JSON input. */
#define JINJA_MAX_JSON_DEPTH 128
/* Value of jinja_params.now meaning "read the clock". */
#define JINJA_NOW_CLOCK INT64_MIN

typedef struct jinja_template jinja_template;

/* Bounds and inputs of one render. Use jinja_params_default() and adjust. */
typedef struct jinja_params {
    size_t max_output_bytes; /* rendered text, also each macro/set-block capture; default 16 MiB */
    size_t max_memory_bytes; /* all values and scratch of one render; default 256 MiB */
    uint64_t max_steps;      /* loop iterations plus macro calls, in total; default 1000000 */
    uint32_t max_depth;      /* nesting of macro calls; default 64 */
    size_t max_stack_bytes;  /* C stack a render may use (deep nesting); default 1 MiB. The calling
                              * thread needs this much free stack plus some margin. */
    int64_t now;             /* time for strftime_now, seconds since the epoch; default JINJA_NOW_CLOCK */
    bool now_utc;            /* format `now` as UTC instead of local time; default false */
} jinja_params;

jinja_params jinja_params_default(void);

/*
 * Parses the template text src[0..len) (UTF-8; need not be NUL-terminated).
 * On success *out owns the template (free with jinja_template_free); src may
 * be freed at once. On failure *out is untouched and err holds a message with
 * the line and column of the fault.
 * Returns MICA_OK, MICA_ERR_FORMAT (syntax error, unknown statement),
 * MICA_ERR_LIMIT (source larger than JINJA_MAX_TEMPLATE_BYTES or nested deeper
 * than JINJA_MAX_PARSE_DEPTH), MICA_ERR_NOMEM or MICA_ERR_INVALID_ARG.
 */
mica_status jinja_template_parse(const char *src, size_t len, jinja_template **out,
                                 mica_err *err);

/* Frees a template; NULL is a no-op. */
void jinja_template_free(jinja_template *t);

/*
 * Renders t with the top-level variables given as a JSON object: each member
 * becomes a variable (e.g. {"messages": [...], "add_generation_prompt": true}).
 * vars_json may be NULL (no variables). params may be NULL (defaults).
 * On success *out is a malloc'd NUL-terminated string of *out_len bytes owned
 * by the caller (free with mica_free). On failure *out is untouched and err
 * holds a message (with the template line for evaluation errors).
 * Returns MICA_OK; MICA_ERR_INVALID_ARG when the template calls
 * raise_exception(msg) (templates use it to reject a conversation, e.g. roles
 * that do not alternate; the message carries msg) and for NULL t/out/out_len;
 * MICA_ERR_FORMAT if vars_json is not a valid JSON object or the template fails
 * at run time (attribute of an undefined value, type error, unknown filter);
 * MICA_ERR_UNSUPPORTED for a construct outside the supported subset found at
 * run time (e.g. integers beyond 64 bits in vars_json); MICA_ERR_LIMIT if a
 * jinja_params bound is exceeded; MICA_ERR_NOMEM.
 */
mica_status jinja_template_render_json(const jinja_template *t, const char *vars_json,
                                       size_t vars_len, const jinja_params *params,
                                       char **out, size_t *out_len, mica_err *err);

/*
 * Checks that s[0..n) is one valid JSON value (the grammar the renderer
 * accepts: RFC 8259 plus NaN/Infinity, UTF-8, nesting up to
 * JINJA_MAX_JSON_DEPTH) and, if want is '{' or '[', that it is an object or an
 * array. Returns MICA_OK or MICA_ERR_FORMAT (MICA_ERR_LIMIT if nested too deep,
 * MICA_ERR_NOMEM) with a message in err.
 */
mica_status jinja_json_check(const char *s, size_t n, char want, mica_err *err);

/*
 * Writes JSON string syntax for s[0..n) (quotes included, escapes as Python's
 * json.dumps with ensure_ascii=False) into dst, which must have room for
 * jinja_json_quote_bound(n) bytes; returns the number of bytes written (no NUL).
 */
size_t jinja_json_quote(const char *s, size_t n, char *dst);
/* Upper bound of jinja_json_quote's output for n input bytes; 0 on overflow. */
size_t jinja_json_quote_bound(size_t n);

#endif /* MICA_JINJA_H */
