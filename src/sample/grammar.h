/*
 * grammar.h - byte-level context-free grammars for constrained decoding
 * (layer: sample; depends on base only).
 *
 * A grammar is a set of rules; a rule is a list of alternatives; an
 * alternative is a sequence of symbols, each either a byte set (one byte from
 * a 256-bit set) or a reference to a rule. The builder (gbuild) assembles
 * one, the compiled form (grammar) is immutable and may be shared by threads.
 *
 * The matcher (gmatch) is a pushdown recogniser over bytes: its state is a
 * set of stacks, each stack a chain of return positions ending in a byte-set
 * symbol that the next byte must match. Feeding a byte keeps the stacks
 * whose set holds it and expands rule references until every stack again
 * ends in a byte set (or is empty: the grammar may end there). Stacks share
 * their tails in a node pool that is compacted after every accepted token.
 *
 * Bounds (hostile grammars cannot exhaust memory or time):
 *   - at most GMATCH_MAX_STACKS stacks per state: beyond that the extra
 *     stacks are dropped, which only narrows the language (every kept stack
 *     is still a valid parse), never admits invalid text;
 *   - at most GMATCH_MAX_DEPTH frames per stack (deeper nesting is dropped);
 *   - expansion through rule references (without consuming a byte) at most
 *     GMATCH_MAX_EXPAND deep, so left recursion ends instead of looping, and
 *     at most GMATCH_MAX_WORK steps per byte, so grammars with exponentially
 *     many paths (nested duplicate alternatives) cost a bounded time;
 *   - compiled size capped by GRAMMAR_MAX_SYMS / GRAMMAR_MAX_RULES /
 *     GRAMMAR_MAX_SETS (the builder fails with MICA_ERR_LIMIT).
 * gbuild_finish drops alternatives that can never complete, so dropping
 * stacks never leaves the matcher stuck (only the depth cap can).
 *
 * Token masking: a gvocab holds every token's bytes in a trie; gmatch_mask
 * walks the trie together with the matcher, so a token prefix shared by many
 * tokens is matched once. During one walk the matcher states are interned
 * (frames are hash-consed, so equal stacks compare equal) and each state's
 * transition by a byte is computed once; a state that every printable
 * ASCII byte but '"' and '\' leads back to (inside a string) allows a whole
 * subtree of such tokens at once. Measured on the 151,936-token Qwen2/Qwen3
 * vocabulary: about 2 ms inside a string (147k tokens allowed), under
 * 0.1 ms between JSON tokens (tests/unit/test_grammar.c prints the times).
 *
 * Thread safety: grammar and gvocab are immutable after creation; a gmatch
 * belongs to one thread.
 */
#ifndef MICA_GRAMMAR_H
#define MICA_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mica_internal.h"

#define GRAMMAR_MAX_SYMS   (1u << 21) /* symbols of all alternatives */
#define GRAMMAR_MAX_RULES  (1u << 18)
#define GRAMMAR_MAX_SETS   4096       /* distinct byte sets */
#define GMATCH_MAX_STACKS  128
#define GMATCH_MAX_DEPTH   1024
#define GMATCH_MAX_EXPAND  256
#define GMATCH_MAX_WORK    8192       /* expansion steps per byte */
#define GVOCAB_MAX_PIECE   1024       /* longer tokens are never allowed */

/* ---- builder ---- */

typedef struct gbuild gbuild;
typedef struct grammar grammar;

/* A sequence of symbols being assembled for one alternative. */
typedef struct gseq {
    uint32_t *s;
    size_t n, cap;
} gseq;

/* A 256-bit byte set. */
typedef struct gset {
    uint8_t bits[32];
} gset;

static inline void gset_add(gset *s, unsigned b) { s->bits[b >> 3] |= (uint8_t)(1u << (b & 7)); }
static inline void gset_add_range(gset *s, unsigned lo, unsigned hi) {
    for (unsigned b = lo; b <= hi; b++) gset_add(s, b);
}
static inline bool gset_has(const gset *s, unsigned b) { return (s->bits[b >> 3] >> (b & 7)) & 1; }

/* Creates an empty builder; NULL when out of memory. */
gbuild *gbuild_create(void);
void gbuild_free(gbuild *gb);

/* A new rule without alternatives yet; its id, or -1 once the builder failed. */
int32_t gbuild_rule(gbuild *gb);

/* Appends to a sequence: one byte, a byte set, every byte of a string
 * (a literal), a reference to a rule. Failures (memory, caps) are recorded in
 * the builder and reported by gbuild_finish. */
void gseq_byte(gbuild *gb, gseq *q, uint8_t b);
void gseq_set(gbuild *gb, gseq *q, const gset *set);
void gseq_lit(gbuild *gb, gseq *q, const char *s, size_t n);
void gseq_ref(gbuild *gb, gseq *q, int32_t rule);
void gseq_free(gseq *q);

/* Adds q (possibly empty) as an alternative of rule and clears q. */
void gbuild_alt(gbuild *gb, int32_t rule, gseq *q);

/* Convenience: a new rule with the single alternative q (q is cleared). */
int32_t gbuild_rule_of(gbuild *gb, gseq *q);

/* True once an allocation failed or a cap was exceeded. */
bool gbuild_failed(const gbuild *gb);

/*
 * Compiles the rules with `root` as the start rule. Alternatives that cannot
 * derive any finite string (they reference rules that never complete, e.g.
 * r ::= r) are dropped, so every rule of the result can complete; if the root
 * cannot, the grammar is unsatisfiable (MICA_ERR_INVALID_ARG). On success
 * *out is owned by the caller (grammar_free); gb may only be freed after.
 * Returns MICA_OK, MICA_ERR_LIMIT (a cap), MICA_ERR_NOMEM or
 * MICA_ERR_INVALID_ARG (unsatisfiable, a bad reference).
 */
mica_status gbuild_finish(gbuild *gb, int32_t root, grammar **out, mica_err *err);

void grammar_free(grammar *g);
/* Number of compiled symbols (for tests and limits). */
size_t grammar_n_syms(const grammar *g);

/* ---- vocabulary ---- */

/* The public mica_grammar_vocab is this type. */
typedef struct mica_grammar_vocab gvocab;

enum gvocab_kind {
    GVOCAB_NORMAL = 0,  /* a token whose bytes the grammar constrains */
    GVOCAB_END = 1,     /* ends the generation: allowed only where the grammar may end */
    GVOCAB_NEVER = 2,   /* never allowed under a grammar (control tokens, empty pieces) */
};

/*
 * Builds the trie of n tokens: token i has bytes[off[i] .. off[i+1]) and kind
 * kind[i]. The arrays are copied. Returns MICA_OK, MICA_ERR_NOMEM or
 * MICA_ERR_INVALID_ARG.
 */
mica_status gvocab_create(int32_t n, const char *bytes, const uint32_t *off, const uint8_t *kind,
                          gvocab **out, mica_err *err);
void gvocab_free(gvocab *v);
int32_t gvocab_n_tokens(const gvocab *v);
/* Bytes of token id (*len set); NULL for ids out of range. */
const char *gvocab_piece(const gvocab *v, int32_t id, size_t *len);
enum gvocab_kind gvocab_kind(const gvocab *v, int32_t id);
/* An END token (-1 if the vocabulary has none). */
int32_t gvocab_end_token(const gvocab *v);

/* ---- matcher ---- */

typedef struct gmatch gmatch;

/* Creates a matcher at the start of g (borrowed: g must outlive it). */
mica_status gmatch_create(const grammar *g, gmatch **out);
void gmatch_free(gmatch *m);
/* Back to the start of the grammar. */
void gmatch_reset(gmatch *m);

/* Advances by n bytes. All or nothing: on false (the bytes are not a valid
 * continuation) the state is unchanged. */
bool gmatch_accept_bytes(gmatch *m, const char *s, size_t n);
/* Would the n bytes be accepted? The state is unchanged. */
bool gmatch_would_accept(gmatch *m, const char *s, size_t n);
/* The text so far is a complete sentence of the grammar. */
bool gmatch_can_end(const gmatch *m);
/* No byte can follow (complete, or dead). */
bool gmatch_no_more(const gmatch *m);
/* Neither complete nor continuable (only after dropped stacks). */
bool gmatch_dead(const gmatch *m);

/*
 * Writes allowed[i] = 1 for every token i of v that keeps the text a valid
 * prefix (NORMAL tokens whose bytes are accepted; END tokens when the
 * grammar may end), 0 otherwise; returns the number allowed. allowed has
 * gvocab_n_tokens(v) entries. Returns -1 when out of memory.
 */
int32_t gmatch_mask(gmatch *m, const gvocab *v, uint8_t *allowed);

/* Is token id allowed now (same rule as gmatch_mask, for one token)? */
bool gmatch_token_ok(gmatch *m, const gvocab *v, int32_t id);

/* ---- for the sampler (grammar_api.c) ---- */

/*
 * The allowed-token flags of a mica_grammar for the next token (computed as
 * mica_grammar_mask does): an array of *n_tokens bytes, borrowed until the
 * grammar's next call, with *n_allowed set. NULL when the grammar is not
 * engaged (every token allowed) or out of memory.
 */
const uint8_t *grammar_allowed(mica_grammar *g, int32_t *n_allowed, int32_t *n_tokens);

#endif /* MICA_GRAMMAR_H */
