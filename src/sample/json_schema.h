/*
 * json_schema.h - JSON Schema to grammar (layer: sample; uses jansson to
 * read the schema).
 *
 * The grammar generates JSON text (RFC 8259) that validates against the
 * schema; it is a subset of the valid instances, never a superset:
 *   - objects: the properties in the order the schema lists them (required
 *     ones always, optional ones or not), then, when additionalProperties is
 *     true or a schema, further members whose keys are ASCII identifiers
 *     ([A-Za-z0-9_]+, at most JSCHEMA_MAX_KEY bytes after the point where
 *     they differ from every listed name) different from every listed
 *     property. An absent
 *     additionalProperties generates no further members (as strict mode);
 *   - arrays: prefixItems (tuples: every listed position is generated),
 *     items, minItems, maxItems (at most JSCHEMA_MAX_COUNT items are spelled
 *     out; a larger maxItems is lowered to that, a larger minItems is an
 *     error); no items keyword means any values;
 *   - strings: any valid UTF-8 and JSON escapes (\uXXXX without surrogates
 *     and without \u0000), minLength/maxLength in characters (same caps);
 *     format date, time, date-time, uuid, email, ipv4 (fields range-checked,
 *     see format_alts; the length keywords are then not applied);
 *   - integers: at most 16 digits; numbers: at most 16 integer digits, 16
 *     fraction digits and a 2-digit exponent (so every number fits a double
 *     and an int64 parser); integers take any minimum, maximum,
 *     exclusiveMinimum, exclusiveMaximum (as digit-range alternatives, O(d^2)
 *     symbols for d digits); numbers take integral bounds with a lower bound
 *     >= 0 (an integer part in range and a fraction, without exponent);
 *     multipleOf and other number bounds are errors;
 *   - boolean, null, enum, const (literals), type lists, anyOf and oneOf (as
 *     alternatives: oneOf branches are assumed disjoint), allOf with one
 *     branch, $ref to "#" or a JSON pointer inside the document ($defs,
 *     definitions), to any depth (recursion is a grammar rule, never an
 *     expansion);
 *   - annotations are ignored: title, description, default, examples,
 *     $schema, $id, $comment, deprecated, readOnly, writeOnly, discriminator,
 *     the containers $defs / definitions, and OpenAPI's nullable (not a JSON
 *     Schema keyword: validators ignore it, so no null is generated for it).
 * Any other keyword, or a supported one with a value the grammar cannot
 * honour (pattern, format, maximum, multipleOf, uniqueItems: true, ...), is
 * an error naming the keyword and its location (MICA_ERR_UNSUPPORTED).
 * Whitespace: between tokens (after { [ : , and before } ] : ,) the grammar
 * allows nothing, one space, or one newline followed by up to JSCHEMA_MAX_WS
 * spaces or tabs of indentation: what JSON printers write, compact or
 * pretty, but no runs of blank lines a model could babble forever; none
 * before or after the top-level value.
 *
 * Bounds: schema text <= JSCHEMA_MAX_TEXT bytes, nesting <= JSCHEMA_MAX_DEPTH
 * levels, <= JSCHEMA_MAX_NODES schema objects compiled; the grammar builder's
 * own caps apply on top. The grammar is linear in the schema's size.
 */
#ifndef MICA_JSON_SCHEMA_H
#define MICA_JSON_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "mica_internal.h"
#include "sample/grammar.h"

#define JSCHEMA_MAX_TEXT  (1u << 20)
#define JSCHEMA_MAX_DEPTH 64
#define JSCHEMA_MAX_NODES 4096
#define JSCHEMA_MAX_COUNT 256 /* items / characters spelled out */
#define JSCHEMA_MAX_WS    20 /* indentation after a newline */
#define JSCHEMA_MAX_KEY   32 /* bytes of an extra key past a listed name's prefix */

/*
 * Adds to gb the rules of the schema in text[0..len) and sets *rule to the
 * one generating a value of it. text NULL: any JSON object (response_format
 * json_object). Returns MICA_OK, MICA_ERR_INVALID_ARG (not JSON, not a
 * schema, unsatisfiable), MICA_ERR_UNSUPPORTED (a keyword the grammar cannot
 * honour), MICA_ERR_LIMIT or MICA_ERR_NOMEM, with a message in err.
 */
mica_status json_schema_rule(gbuild *gb, const char *text, size_t len, int32_t *rule, mica_err *err);

/* Adds the rule of bounded whitespace (as between JSON tokens) to gb. */
int32_t json_schema_ws_rule(gbuild *gb);

#endif /* MICA_JSON_SCHEMA_H */
