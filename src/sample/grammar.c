/*
 * grammar.c - byte-level grammars: builder, compiled form, matcher and the
 * vocabulary trie used for token masks. The contract is in grammar.h.
 *
 * Compiled layout: `elems` holds every alternative as its symbols followed
 * by an END symbol; alt_start[a] is the first symbol of alternative a and
 * rule_alt[r] .. rule_alt[r + 1] are the alternatives of rule r. A symbol is
 * a 32-bit word: the top two bits are the kind (END, SET, REF), the rest the
 * byte-set or rule index.
 *
 * Matcher: a stack is (pos, parent): pos is the byte-set symbol to match
 * next, parent the pool node to return to when the alternative ends (-1 at
 * the bottom: the grammar may end). A reference followed by END is a tail
 * call (no frame is pushed), so right recursion such as
 * digits ::= [0-9] digits | "" runs in constant stack depth.
 */
#include <stdlib.h>
#include <string.h>

#include "sample/grammar.h"

enum { SYM_END = 0u, SYM_SET = 1u, SYM_REF = 2u };
#define SYM_KIND(x) ((x) >> 30)
#define SYM_ARG(x)  ((x) & 0x3fffffffu)
#define SYM(kind, arg) (((uint32_t)(kind) << 30) | (uint32_t)(arg))

/* ---- builder ---- */

typedef struct galt {
    uint32_t rule, off, n; /* symbols syms[off .. off + n) */
} galt;

struct gbuild {
    uint32_t *syms;
    size_t n_syms, cap_syms;
    galt *alts;
    size_t n_alts, cap_alts;
    uint32_t n_rules;
    gset *sets;
    uint32_t n_sets, cap_sets;
    int32_t *set_hash; /* open addressing, 2 * GRAMMAR_MAX_SETS slots, -1 empty */
    bool failed, over_limit;
};

struct grammar {
    uint32_t *elems;
    size_t n_elems;
    uint32_t *alt_start; /* (n_alts) */
    uint32_t *rule_alt;  /* (n_rules + 1) */
    uint32_t n_rules;
    gset *sets;
    uint32_t n_sets;
    uint32_t root;
};

#define SET_HASH_SLOTS (2 * GRAMMAR_MAX_SETS)

gbuild *gbuild_create(void) {
    gbuild *gb = mica_calloc(1, sizeof *gb);
    if (!gb) return NULL;
    gb->set_hash = mica_malloc(SET_HASH_SLOTS * sizeof *gb->set_hash);
    if (!gb->set_hash) {
        mica_free(gb);
        return NULL;
    }
    for (size_t i = 0; i < SET_HASH_SLOTS; i++) gb->set_hash[i] = -1;
    return gb;
}

void gbuild_free(gbuild *gb) {
    if (!gb) return;
    mica_free(gb->syms);
    mica_free(gb->alts);
    mica_free(gb->sets);
    mica_free(gb->set_hash);
    mica_free(gb);
}

bool gbuild_failed(const gbuild *gb) { return gb->failed; }

/* Grows *p (elements of size sz) to hold need; false (and gb failed) on failure. */
static bool gb_grow(gbuild *gb, void **p, size_t *cap, size_t need, size_t sz) {
    if (need <= *cap) return true;
    size_t ncap = *cap ? *cap * 2 : 64, bytes;
    while (ncap < need) ncap *= 2;
    if (!mica_size_mul_ok(ncap, sz, &bytes)) {
        gb->failed = true;
        return false;
    }
    void *np = mica_realloc(*p, bytes);
    if (!np) {
        gb->failed = true;
        return false;
    }
    *p = np;
    *cap = ncap;
    return true;
}

int32_t gbuild_rule(gbuild *gb) {
    if (gb->failed) return -1;
    if (gb->n_rules >= GRAMMAR_MAX_RULES) {
        gb->failed = gb->over_limit = true;
        return -1;
    }
    return (int32_t)gb->n_rules++;
}

static void gseq_push(gbuild *gb, gseq *q, uint32_t sym) {
    if (gb->failed) return;
    if (q->n >= GRAMMAR_MAX_SYMS) {
        gb->failed = gb->over_limit = true;
        return;
    }
    if (!gb_grow(gb, (void **)&q->s, &q->cap, q->n + 1, sizeof *q->s)) return;
    q->s[q->n++] = sym;
}

/* Index of set s in the builder's table (interned); -1 on failure. */
static int32_t gb_intern_set(gbuild *gb, const gset *s) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < 32; i++) h = (h ^ s->bits[i]) * 1099511628211ull;
    size_t slot = (size_t)(h % SET_HASH_SLOTS);
    for (;;) {
        int32_t k = gb->set_hash[slot];
        if (k < 0) break;
        if (memcmp(gb->sets[k].bits, s->bits, 32) == 0) return k;
        slot = (slot + 1) % SET_HASH_SLOTS;
    }
    if (gb->n_sets >= GRAMMAR_MAX_SETS) {
        gb->failed = gb->over_limit = true;
        return -1;
    }
    size_t cap = gb->cap_sets;
    if (!gb_grow(gb, (void **)&gb->sets, &cap, (size_t)gb->n_sets + 1, sizeof *gb->sets)) return -1;
    gb->cap_sets = (uint32_t)cap;
    gb->sets[gb->n_sets] = *s;
    gb->set_hash[slot] = (int32_t)gb->n_sets;
    return (int32_t)gb->n_sets++;
}

void gseq_set(gbuild *gb, gseq *q, const gset *set) {
    if (gb->failed) return;
    int32_t k = gb_intern_set(gb, set);
    if (k >= 0) gseq_push(gb, q, SYM(SYM_SET, k));
}

void gseq_byte(gbuild *gb, gseq *q, uint8_t b) {
    gset s = {{0}};
    gset_add(&s, b);
    gseq_set(gb, q, &s);
}

void gseq_lit(gbuild *gb, gseq *q, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) gseq_byte(gb, q, (uint8_t)s[i]);
}

void gseq_ref(gbuild *gb, gseq *q, int32_t rule) {
    if (rule < 0) {
        gb->failed = true;
        return;
    }
    gseq_push(gb, q, SYM(SYM_REF, rule));
}

void gseq_free(gseq *q) {
    mica_free(q->s);
    *q = (gseq){0};
}

void gbuild_alt(gbuild *gb, int32_t rule, gseq *q) {
    if (rule < 0) gb->failed = true;
    if (gb->failed) {
        q->n = 0;
        return;
    }
    if (gb->n_syms + q->n + 1 > GRAMMAR_MAX_SYMS) {
        gb->failed = gb->over_limit = true;
        q->n = 0;
        return;
    }
    if (!gb_grow(gb, (void **)&gb->syms, &gb->cap_syms, gb->n_syms + q->n, sizeof *gb->syms) ||
        !gb_grow(gb, (void **)&gb->alts, &gb->cap_alts, gb->n_alts + 1, sizeof *gb->alts)) {
        q->n = 0;
        return;
    }
    if (q->n) memcpy(gb->syms + gb->n_syms, q->s, q->n * sizeof *q->s);
    gb->alts[gb->n_alts++] = (galt){.rule = (uint32_t)rule, .off = (uint32_t)gb->n_syms, .n = (uint32_t)q->n};
    gb->n_syms += q->n;
    q->n = 0;
}

int32_t gbuild_rule_of(gbuild *gb, gseq *q) {
    int32_t r = gbuild_rule(gb);
    gbuild_alt(gb, r, q);
    return r;
}

void grammar_free(grammar *g) {
    if (!g) return;
    mica_free(g->elems);
    mica_free(g->alt_start);
    mica_free(g->rule_alt);
    mica_free(g->sets);
    mica_free(g);
}

size_t grammar_n_syms(const grammar *g) { return g->n_elems; }

/*
 * Productive rules: those that derive at least one finite byte string. An
 * alternative is productive when every rule it references is; computed with
 * a work list in time linear in the grammar (each reference is counted down
 * once). Alternatives that are not productive are dropped, so every rule left
 * can always complete and the matcher can never be stuck inside a value.
 * Returns false when out of memory; sets (*keep)[a] for the alternatives kept.
 */
static bool gb_productive(const gbuild *gb, uint8_t **keep_out) {
    size_t na = gb->n_alts, nr = gb->n_rules;
    uint32_t *pending = mica_calloc(na ? na : 1, sizeof *pending);   /* refs not yet productive */
    uint32_t *occ_start = mica_calloc(nr + 1, sizeof *occ_start);    /* per rule: alts referencing it */
    uint32_t *occ = NULL, *work = mica_malloc((nr ? nr : 1) * sizeof *work);
    uint8_t *prod = mica_calloc(nr ? nr : 1, 1), *keep = mica_calloc(na ? na : 1, 1);
    bool ok = false;
    if (!pending || !occ_start || !work || !prod || !keep) goto done;
    size_t n_occ = 0;
    for (size_t a = 0; a < na; a++)
        for (uint32_t i = 0; i < gb->alts[a].n; i++) {
            uint32_t s = gb->syms[gb->alts[a].off + i];
            if (SYM_KIND(s) == SYM_REF) {
                occ_start[SYM_ARG(s) + 1]++;
                pending[a]++;
                n_occ++;
            }
        }
    for (size_t r = 0; r < nr; r++) occ_start[r + 1] += occ_start[r];
    occ = mica_malloc((n_occ ? n_occ : 1) * sizeof *occ);
    if (!occ) goto done;
    for (size_t a = 0; a < na; a++)
        for (uint32_t i = 0; i < gb->alts[a].n; i++) {
            uint32_t s = gb->syms[gb->alts[a].off + i];
            if (SYM_KIND(s) == SYM_REF) occ[occ_start[SYM_ARG(s)]++] = (uint32_t)a;
        }
    for (size_t r = nr; r > 0; r--) occ_start[r] = occ_start[r - 1]; /* back to start offsets */
    occ_start[0] = 0;
    size_t n_work = 0;
    for (size_t a = 0; a < na; a++) {
        if (pending[a] == 0) {
            keep[a] = 1;
            uint32_t r = gb->alts[a].rule;
            if (!prod[r]) {
                prod[r] = 1;
                work[n_work++] = r;
            }
        }
    }
    while (n_work > 0) {
        uint32_t r = work[--n_work];
        for (uint32_t k = occ_start[r]; k < occ_start[r + 1]; k++) {
            uint32_t a = occ[k];
            if (--pending[a] == 0) {
                keep[a] = 1;
                uint32_t ra = gb->alts[a].rule;
                if (!prod[ra]) {
                    prod[ra] = 1;
                    work[n_work++] = ra;
                }
            }
        }
    }
    ok = true;
    *keep_out = keep;
    keep = NULL;
done:
    mica_free(pending);
    mica_free(occ_start);
    mica_free(occ);
    mica_free(work);
    mica_free(prod);
    mica_free(keep);
    return ok;
}

mica_status gbuild_finish(gbuild *gb, int32_t root, grammar **out, mica_err *err) {
    if (gb->failed)
        return gb->over_limit ? mica_err_set(err, MICA_ERR_LIMIT, "the grammar exceeds its size limits")
                              : mica_err_set(err, MICA_ERR_NOMEM, "out of memory building the grammar");
    if (root < 0 || (uint32_t)root >= gb->n_rules)
        return mica_err_set(err, MICA_ERR_INVALID_ARG, "the grammar has no start rule");
    for (size_t a = 0; a < gb->n_alts; a++)
        for (uint32_t i = 0; i < gb->alts[a].n; i++) {
            uint32_t s = gb->syms[gb->alts[a].off + i];
            if (SYM_KIND(s) == SYM_REF && SYM_ARG(s) >= gb->n_rules)
                return mica_err_set(err, MICA_ERR_INVALID_ARG, "grammar reference to an unknown rule");
        }
    uint8_t *keep = NULL;
    if (!gb_productive(gb, &keep)) return mica_err_set(err, MICA_ERR_NOMEM, "out of memory");
    /* drop the alternatives that cannot complete (compacting the list in place) */
    size_t kept = 0;
    for (size_t a = 0; a < gb->n_alts; a++)
        if (keep[a]) gb->alts[kept++] = gb->alts[a];
    gb->n_alts = kept;
    mica_free(keep);
    bool root_ok = false;
    for (size_t a = 0; a < gb->n_alts && !root_ok; a++) root_ok = gb->alts[a].rule == (uint32_t)root;
    if (!root_ok) return mica_err_set(err, MICA_ERR_INVALID_ARG, "the grammar generates no string (unsatisfiable)");
    grammar *g = mica_calloc(1, sizeof *g);
    if (!g) return mica_err_set(err, MICA_ERR_NOMEM, "out of memory");
    g->n_rules = gb->n_rules;
    g->root = (uint32_t)root;
    g->n_elems = gb->n_syms + gb->n_alts + 1; /* + one END per alternative, + a sentinel */
    g->elems = mica_malloc(g->n_elems * sizeof *g->elems);
    g->alt_start = mica_malloc((gb->n_alts ? gb->n_alts : 1) * sizeof *g->alt_start);
    g->rule_alt = mica_calloc((size_t)g->n_rules + 1, sizeof *g->rule_alt);
    g->sets = mica_malloc((gb->n_sets ? gb->n_sets : 1) * sizeof *g->sets);
    if (!g->elems || !g->alt_start || !g->rule_alt || !g->sets) {
        grammar_free(g);
        return mica_err_set(err, MICA_ERR_NOMEM, "out of memory");
    }
    g->n_sets = gb->n_sets;
    if (gb->n_sets) memcpy(g->sets, gb->sets, gb->n_sets * sizeof *g->sets);
    /* counting sort of the alternatives by rule, keeping their order */
    for (size_t a = 0; a < gb->n_alts; a++) g->rule_alt[gb->alts[a].rule + 1]++;
    /* Rules left without alternatives are referenced by no kept alternative. */
    for (uint32_t r = 0; r < g->n_rules; r++) g->rule_alt[r + 1] += g->rule_alt[r];
    uint32_t *fill = mica_malloc(((size_t)g->n_rules + 1) * sizeof *fill);
    if (!fill) {
        grammar_free(g);
        return mica_err_set(err, MICA_ERR_NOMEM, "out of memory");
    }
    memcpy(fill, g->rule_alt, ((size_t)g->n_rules + 1) * sizeof *fill);
    size_t e = 0;
    for (size_t a = 0; a < gb->n_alts; a++) {
        const galt *al = &gb->alts[a];
        g->alt_start[fill[al->rule]++] = (uint32_t)e;
        for (uint32_t i = 0; i < al->n; i++) {
            g->elems[e++] = gb->syms[al->off + i];
        }
        g->elems[e++] = SYM(SYM_END, 0);
    }
    g->elems[e++] = SYM(SYM_END, 0);
    mica_free(fill);
    *out = g;
    return MICA_OK;
}

/* ---- vocabulary trie ---- */

typedef struct gtnode {
    uint32_t child_lo;  /* first child node; children are contiguous */
    uint32_t tok_lo;    /* tokens ending here: sorted[tok_lo .. tok_lo + tok_n) */
    uint32_t tok_n;
    uint32_t sub_hi;    /* every token below: sorted[tok_lo .. sub_hi) */
    uint16_t n_child;
    uint8_t byte;       /* edge label from the parent */
    uint8_t plain;      /* every byte below is plain (gvocab_plain) */
} gtnode;

/* Printable ASCII other than '"' and '\\': the bytes most string text is made of. */
static inline bool gvocab_plain(uint8_t b) { return b >= 0x20 && b < 0x7f && b != '"' && b != '\\'; }

struct mica_grammar_vocab {
    int32_t n;
    char *bytes;
    uint32_t *off;   /* (n + 1) */
    uint8_t *kind;   /* (n) */
    int32_t *sorted; /* NORMAL token ids in byte order */
    int32_t n_sorted;
    gtnode *nodes;
    uint32_t n_nodes, cap_nodes;
    uint32_t max_len;
    int32_t end_token;
};

static int gvocab_cmp(const void *a, const void *b, void *ctx) {
    const gvocab *v = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    uint32_t lx = v->off[x + 1] - v->off[x], ly = v->off[y + 1] - v->off[y];
    int c = memcmp(v->bytes + v->off[x], v->bytes + v->off[y], lx < ly ? lx : ly);
    if (c) return c;
    if (lx != ly) return lx < ly ? -1 : 1;
    return x < y ? -1 : (x > y);
}

/* Fills node `at` from sorted[lo..hi), whose tokens share `depth` bytes. */
static void gvocab_build(gvocab *v, uint32_t at, int32_t lo, int32_t hi, uint32_t depth) {
    int32_t t = lo;
    while (t < hi && v->off[v->sorted[t] + 1] - v->off[v->sorted[t]] == depth) t++;
    v->nodes[at].tok_lo = (uint32_t)lo;
    v->nodes[at].tok_n = (uint32_t)(t - lo);
    v->nodes[at].sub_hi = (uint32_t)hi;
    uint32_t groups = 0;
    for (int32_t i = t; i < hi; i++) {
        uint8_t b = (uint8_t)v->bytes[v->off[v->sorted[i]] + depth];
        if (i == t || b != (uint8_t)v->bytes[v->off[v->sorted[i - 1]] + depth]) groups++;
    }
    uint32_t first = v->n_nodes;
    MICA_ASSERT(first + groups <= v->cap_nodes);
    v->n_nodes += groups;
    v->nodes[at].child_lo = first;
    v->nodes[at].n_child = (uint16_t)groups;
    uint32_t g = 0;
    for (int32_t i = t; i < hi;) {
        uint8_t b = (uint8_t)v->bytes[v->off[v->sorted[i]] + depth];
        int32_t j = i + 1;
        while (j < hi && (uint8_t)v->bytes[v->off[v->sorted[j]] + depth] == b) j++;
        v->nodes[first + g] = (gtnode){.byte = b};
        gvocab_build(v, first + g, i, j, depth + 1);
        g++;
        i = j;
    }
    bool plain = true;
    for (uint32_t k = 0; k < groups && plain; k++)
        plain = gvocab_plain(v->nodes[first + k].byte) && v->nodes[first + k].plain;
    v->nodes[at].plain = plain;
}

mica_status gvocab_create(int32_t n, const char *bytes, const uint32_t *off, const uint8_t *kind,
                          gvocab **out, mica_err *err) {
    if (n <= 0 || !off || !kind || (!bytes && off[n] > 0))
        return mica_err_set(err, MICA_ERR_INVALID_ARG, "empty vocabulary");
    for (int32_t i = 0; i < n; i++)
        if (off[i + 1] < off[i]) return mica_err_set(err, MICA_ERR_INVALID_ARG, "bad token offsets");
    gvocab *v = mica_calloc(1, sizeof *v);
    if (!v) return mica_err_set(err, MICA_ERR_NOMEM, "out of memory");
    v->n = n;
    v->end_token = -1;
    v->bytes = mica_malloc(off[n] ? off[n] : 1);
    v->off = mica_malloc(((size_t)n + 1) * sizeof *v->off);
    v->kind = mica_malloc((size_t)n);
    v->sorted = mica_malloc((size_t)n * sizeof *v->sorted);
    if (!v->bytes || !v->off || !v->kind || !v->sorted) goto oom;
    if (off[n]) memcpy(v->bytes, bytes, off[n]);
    memcpy(v->off, off, ((size_t)n + 1) * sizeof *v->off);
    memcpy(v->kind, kind, (size_t)n);
    uint64_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        uint32_t len = off[i + 1] - off[i];
        if (v->kind[i] == GVOCAB_END) {
            if (v->end_token < 0) v->end_token = i;
            continue;
        }
        if (v->kind[i] != GVOCAB_NORMAL || len == 0 || len > GVOCAB_MAX_PIECE) {
            v->kind[i] = GVOCAB_NEVER;
            continue;
        }
        v->sorted[v->n_sorted++] = i;
        total += len;
        if (len > v->max_len) v->max_len = len;
    }
    if (total + 1 > UINT32_MAX) {
        gvocab_free(v);
        return mica_err_set(err, MICA_ERR_LIMIT, "vocabulary too large");
    }
    v->cap_nodes = (uint32_t)total + 1;
    v->nodes = mica_malloc((size_t)v->cap_nodes * sizeof *v->nodes);
    if (!v->nodes) goto oom;
    qsort_r(v->sorted, (size_t)v->n_sorted, sizeof *v->sorted, gvocab_cmp, v);
    v->nodes[0] = (gtnode){0};
    v->n_nodes = 1;
    gvocab_build(v, 0, 0, v->n_sorted, 0);
    *out = v;
    return MICA_OK;
oom:
    gvocab_free(v);
    return mica_err_set(err, MICA_ERR_NOMEM, "out of memory");
}

void gvocab_free(gvocab *v) {
    if (!v) return;
    mica_free(v->bytes);
    mica_free(v->off);
    mica_free(v->kind);
    mica_free(v->sorted);
    mica_free(v->nodes);
    mica_free(v);
}

int32_t gvocab_n_tokens(const gvocab *v) { return v->n; }
int32_t gvocab_end_token(const gvocab *v) { return v->end_token; }

const char *gvocab_piece(const gvocab *v, int32_t id, size_t *len) {
    if (id < 0 || id >= v->n) return NULL;
    *len = v->off[id + 1] - v->off[id];
    return v->bytes + v->off[id];
}

enum gvocab_kind gvocab_kind(const gvocab *v, int32_t id) {
    return (id < 0 || id >= v->n) ? GVOCAB_NEVER : (enum gvocab_kind)v->kind[id];
}

/* ---- matcher ---- */

typedef struct gnode {
    uint32_t pos;
    int32_t parent;
    uint32_t depth; /* frames from the bottom, this one included */
} gnode;

#define GM_HC_SLOTS 4096
#define GM_CACHE_STATES 512

typedef struct gstate {
    uint32_t pos[GMATCH_MAX_STACKS];
    int32_t par[GMATCH_MAX_STACKS];
    int n;
    bool acc; /* the grammar may end here */
} gstate;

struct gmatch {
    const grammar *g;
    gnode *pool, *pool2;
    size_t n_pool, cap_pool, cap_pool2;
    int32_t *remap;
    size_t cap_remap;
    gstate cur, a, b;
    gstate *lvl; /* mask scratch: one state per trie depth */
    uint32_t n_lvl;
    int32_t hc[GM_HC_SLOTS]; /* hash-consing of pool frames (pool ids, -1 empty) */
    /* mask cache, valid during one gmatch_mask call: interned states and
     * their transitions by byte (-2 unknown, -1 dead, else a state id) */
    gstate *cst;
    uint64_t (*cuni)[4];
    int32_t *ctrans;
    int8_t cplain[GM_CACHE_STATES]; /* every plain byte leads back to the state: 1, not: 0, unknown: -1 */
    int32_t chash[2 * GM_CACHE_STATES];
    int32_t c_n, c_cap;
    int32_t budget; /* expansion steps left for the current byte */
    bool oom;
};

static int32_t gm_push(gmatch *m, uint32_t pos, int32_t parent, uint32_t depth) {
    /* hash-consing: an identical frame already in the pool is reused, so
     * states reached along different paths compare equal (the mask cache
     * depends on it); entries are verified, so stale ones only miss */
    uint32_t slot = (uint32_t)(((uint64_t)pos * 0x9e3779b97f4a7c15ull + (uint64_t)(uint32_t)parent) >> 40) &
                    (GM_HC_SLOTS - 1);
    int32_t hit = m->hc[slot];
    if (hit >= 0 && (size_t)hit < m->n_pool && m->pool[hit].pos == pos && m->pool[hit].parent == parent) return hit;
    if (m->n_pool == m->cap_pool) {
        size_t cap = m->cap_pool ? m->cap_pool * 2 : 256;
        gnode *np = mica_realloc(m->pool, cap * sizeof *np);
        if (!np || cap > INT32_MAX) {
            if (np) m->pool = np;
            m->oom = true;
            return -1;
        }
        m->pool = np;
        m->cap_pool = cap;
    }
    m->pool[m->n_pool] = (gnode){.pos = pos, .parent = parent, .depth = depth};
    m->hc[slot] = (int32_t)m->n_pool;
    return (int32_t)m->n_pool++;
}

/* Adds the stacks reachable from (pos, parent) without consuming a byte. */
static void gm_expand(gmatch *m, uint32_t pos, int32_t parent, gstate *out, int level) {
    const grammar *g = m->g;
    for (;;) {
        if (level > GMATCH_MAX_EXPAND || --m->budget < 0) return;
        uint32_t e = g->elems[pos];
        if (SYM_KIND(e) == SYM_SET) {
            for (int i = 0; i < out->n; i++)
                if (out->pos[i] == pos && out->par[i] == parent) return;
            if (out->n < GMATCH_MAX_STACKS) {
                out->pos[out->n] = pos;
                out->par[out->n] = parent;
                out->n++;
            }
            return;
        }
        if (SYM_KIND(e) == SYM_END) {
            if (parent < 0) {
                out->acc = true;
                return;
            }
            pos = m->pool[parent].pos; /* return: continue after the reference */
            parent = m->pool[parent].parent;
            level++;
            continue;
        }
        /* a reference: push the return position unless it is a tail call */
        int32_t ret = parent;
        if (SYM_KIND(g->elems[pos + 1]) != SYM_END) {
            uint32_t depth = parent < 0 ? 1 : m->pool[parent].depth + 1;
            if (depth > GMATCH_MAX_DEPTH) return;
            ret = gm_push(m, pos + 1, parent, depth);
            if (ret < 0) return;
        }
        uint32_t r = SYM_ARG(e);
        uint32_t a0 = g->rule_alt[r], a1 = g->rule_alt[r + 1];
        if (a0 == a1) return; /* never for a finished grammar: such rules are unreferenced */
        for (uint32_t a = a0; a + 1 < a1; a++) gm_expand(m, g->alt_start[a], ret, out, level + 1);
        pos = g->alt_start[a1 - 1]; /* the last alternative without recursion */
        parent = ret;
        level++;
    }
}

/* out = the stacks of in after byte c. */
static void gm_advance(gmatch *m, const gstate *in, uint8_t c, gstate *out) {
    out->n = 0;
    out->acc = false;
    m->budget = GMATCH_MAX_WORK;
    const grammar *g = m->g;
    for (int i = 0; i < in->n; i++) {
        const gset *s = &g->sets[SYM_ARG(g->elems[in->pos[i]])];
        if (gset_has(s, c)) gm_expand(m, in->pos[i] + 1, in->par[i], out, 0);
    }
}

static bool gm_alive(const gstate *s) { return s->n > 0 || s->acc; }

/* Copies the nodes the current stacks use into a fresh pool. */
static void gm_compact(gmatch *m) {
    if (m->cap_remap < m->n_pool) {
        int32_t *r = mica_realloc(m->remap, m->n_pool * sizeof *r);
        if (!r) return; /* keep the uncompacted pool: correct, only larger */
        m->remap = r;
        m->cap_remap = m->n_pool;
    }
    if (m->cap_pool2 < m->n_pool) {
        gnode *p = mica_realloc(m->pool2, m->n_pool * sizeof *p);
        if (!p) return;
        m->pool2 = p;
        m->cap_pool2 = m->n_pool;
    }
    for (size_t i = 0; i < m->n_pool; i++) m->remap[i] = -1;
    size_t n2 = 0;
    for (int i = 0; i < m->cur.n; i++) {
        /* copy the chain bottom-up: collect it first (depth <= GMATCH_MAX_DEPTH) */
        int32_t chain[GMATCH_MAX_DEPTH + 1];
        int k = 0;
        for (int32_t x = m->cur.par[i]; x >= 0 && m->remap[x] < 0 && k <= GMATCH_MAX_DEPTH; x = m->pool[x].parent)
            chain[k++] = x;
        while (k > 0) {
            int32_t x = chain[--k];
            gnode nd = m->pool[x];
            nd.parent = nd.parent < 0 ? -1 : m->remap[nd.parent];
            m->pool2[n2] = nd;
            m->remap[x] = (int32_t)n2++;
        }
        m->cur.par[i] = m->cur.par[i] < 0 ? -1 : m->remap[m->cur.par[i]];
    }
    gnode *t = m->pool;
    m->pool = m->pool2;
    m->pool2 = t;
    size_t c = m->cap_pool;
    m->cap_pool = m->cap_pool2;
    m->cap_pool2 = c;
    m->n_pool = n2;
}

mica_status gmatch_create(const grammar *g, gmatch **out) {
    if (!g || !out) return MICA_ERR_INVALID_ARG;
    gmatch *m = mica_calloc(1, sizeof *m);
    if (!m) return MICA_ERR_NOMEM;
    m->g = g;
    for (int i = 0; i < GM_HC_SLOTS; i++) m->hc[i] = -1;
    gmatch_reset(m);
    if (m->oom) {
        gmatch_free(m);
        return MICA_ERR_NOMEM;
    }
    *out = m;
    return MICA_OK;
}

void gmatch_free(gmatch *m) {
    if (!m) return;
    mica_free(m->pool);
    mica_free(m->pool2);
    mica_free(m->remap);
    mica_free(m->lvl);
    mica_free(m->cst);
    mica_free(m->cuni);
    mica_free(m->ctrans);
    mica_free(m);
}

void gmatch_reset(gmatch *m) {
    const grammar *g = m->g;
    m->n_pool = 0;
    m->cur.n = 0;
    m->cur.acc = false;
    m->budget = GMATCH_MAX_WORK;
    for (uint32_t a = g->rule_alt[g->root]; a < g->rule_alt[g->root + 1]; a++)
        gm_expand(m, g->alt_start[a], -1, &m->cur, 0);
}

/* Runs n bytes from cur; the result is in *res (a or b). */
static bool gm_run(gmatch *m, const char *s, size_t n, gstate **res) {
    const gstate *in = &m->cur;
    gstate *bufs[2] = {&m->a, &m->b};
    if (n == 0) {
        m->a = m->cur;
        *res = &m->a;
        return true;
    }
    for (size_t i = 0; i < n; i++) {
        gstate *o = bufs[i & 1];
        gm_advance(m, in, (uint8_t)s[i], o);
        if (!gm_alive(o)) return false;
        in = o;
    }
    *res = (gstate *)in;
    return true;
}

bool gmatch_accept_bytes(gmatch *m, const char *s, size_t n) {
    size_t mark = m->n_pool;
    gstate *res;
    if (!gm_run(m, s, n, &res)) {
        m->n_pool = mark;
        return false;
    }
    m->cur = *res;
    gm_compact(m);
    return true;
}

bool gmatch_would_accept(gmatch *m, const char *s, size_t n) {
    size_t mark = m->n_pool;
    gstate *res;
    bool ok = gm_run(m, s, n, &res);
    m->n_pool = mark;
    return ok;
}

bool gmatch_can_end(const gmatch *m) { return m->cur.acc; }
bool gmatch_no_more(const gmatch *m) { return m->cur.n == 0; }
bool gmatch_dead(const gmatch *m) { return !gm_alive(&m->cur); }

bool gmatch_token_ok(gmatch *m, const gvocab *v, int32_t id) {
    switch (gvocab_kind(v, id)) {
    case GVOCAB_END: return m->cur.acc;
    case GVOCAB_NORMAL: {
        size_t len = 0;
        const char *p = gvocab_piece(v, id, &len);
        return gmatch_would_accept(m, p, len);
    }
    default: return false;
    }
}

/* Union of the byte sets the stacks of s wait for. */
static void gm_union(const gmatch *m, const gstate *s, uint64_t u[4]) {
    u[0] = u[1] = u[2] = u[3] = 0;
    for (int i = 0; i < s->n; i++) {
        uint64_t w[4];
        memcpy(w, m->g->sets[SYM_ARG(m->g->elems[s->pos[i]])].bits, 32);
        u[0] |= w[0];
        u[1] |= w[1];
        u[2] |= w[2];
        u[3] |= w[3];
    }
}

/* Interns state s in the mask cache; its id, or -1 when the cache is full. */
static int32_t gm_intern(gmatch *m, const gstate *s) {
    uint64_t h = 1469598103934665603ull ^ (uint64_t)s->n ^ ((uint64_t)s->acc << 8);
    for (int i = 0; i < s->n; i++) {
        h = (h ^ s->pos[i]) * 1099511628211ull;
        h = (h ^ (uint32_t)s->par[i]) * 1099511628211ull;
    }
    size_t slot = (size_t)(h >> 20) % (2 * GM_CACHE_STATES);
    for (;;) {
        int32_t id = m->chash[slot];
        if (id < 0) break;
        const gstate *t = &m->cst[id];
        if (t->n == s->n && t->acc == s->acc && !memcmp(t->pos, s->pos, (size_t)s->n * sizeof *s->pos) &&
            !memcmp(t->par, s->par, (size_t)s->n * sizeof *s->par))
            return id;
        slot = (slot + 1) % (2 * GM_CACHE_STATES);
    }
    if (m->c_n == m->c_cap) return -1;
    int32_t id = m->c_n++;
    gstate *t = &m->cst[id];
    t->n = s->n;
    t->acc = s->acc;
    memcpy(t->pos, s->pos, (size_t)s->n * sizeof *s->pos);
    memcpy(t->par, s->par, (size_t)s->n * sizeof *s->par);
    gm_union(m, t, m->cuni[id]);
    for (int b = 0; b < 256; b++) m->ctrans[(size_t)id * 256 + (size_t)b] = -2;
    m->cplain[id] = -1;
    m->chash[slot] = id;
    return id;
}

/*
 * True if every plain byte leads from interned state sid back to itself
 * (inside a JSON string body): then every token made of plain bytes keeps
 * the state, and a subtree of such tokens is allowed without walking it.
 */
static bool gm_plain_loop(gmatch *m, int32_t sid) {
    if (m->cplain[sid] >= 0) return m->cplain[sid];
    bool loop = true;
    for (unsigned b = 0x20; b < 0x7f && loop; b++) {
        if (!gvocab_plain((uint8_t)b)) continue;
        int32_t t = m->ctrans[(size_t)sid * 256 + b];
        if (t == -2) {
            gm_advance(m, &m->cst[sid], (uint8_t)b, &m->a);
            t = gm_alive(&m->a) ? gm_intern(m, &m->a) : -1;
            if (t != -1 || !gm_alive(&m->a)) m->ctrans[(size_t)sid * 256 + b] = t;
        }
        loop = t == sid;
    }
    m->cplain[sid] = loop;
    return loop;
}

/*
 * Marks the tokens below trie node `at` that stay valid from state s
 * (interned as sid, or -1), whose byte sets' union is u. Transitions between
 * interned states are computed once per mask: inside a string most bytes
 * lead back to the same state, so the walk costs little more than visiting
 * the trie. Scratch for uncached states is m->lvl[depth + 1].
 */
static int32_t gm_dfs(gmatch *m, const gvocab *v, uint32_t at, const gstate *s, const uint64_t *u, int32_t sid,
                      uint32_t depth, uint8_t *allowed) {
    const gtnode *nd = &v->nodes[at];
    int32_t count = 0;
    if (sid >= 0 && nd->plain && nd->n_child && gm_plain_loop(m, sid)) {
        for (uint32_t k = nd->tok_lo + nd->tok_n; k < nd->sub_hi; k++) allowed[v->sorted[k]] = 1;
        return (int32_t)(nd->sub_hi - nd->tok_lo - nd->tok_n);
    }
    for (uint32_t c = 0; c < nd->n_child; c++) {
        uint32_t ci = nd->child_lo + c;
        const gtnode *ch = &v->nodes[ci];
        uint8_t b = ch->byte;
        if (!((u[b >> 6] >> (b & 63)) & 1)) continue;
        int32_t t = sid >= 0 ? m->ctrans[(size_t)sid * 256 + b] : -2;
        if (t == -1) continue;
        const gstate *o;
        const uint64_t *ou;
        uint64_t tmpu[4];
        if (t >= 0) {
            o = &m->cst[t];
            ou = m->cuni[t];
        } else {
            gstate *scratch = &m->lvl[depth + 1];
            gm_advance(m, s, b, scratch);
            if (!gm_alive(scratch)) {
                if (sid >= 0) m->ctrans[(size_t)sid * 256 + b] = -1;
                continue;
            }
            t = gm_intern(m, scratch);
            if (sid >= 0 && t >= 0) m->ctrans[(size_t)sid * 256 + b] = t;
            if (t >= 0) {
                o = &m->cst[t];
                ou = m->cuni[t];
            } else {
                gm_union(m, scratch, tmpu);
                o = scratch;
                ou = tmpu;
            }
        }
        for (uint32_t k = 0; k < ch->tok_n; k++) allowed[v->sorted[ch->tok_lo + k]] = 1;
        count += (int32_t)ch->tok_n;
        if (ch->n_child && o->n) count += gm_dfs(m, v, ci, o, ou, t, depth + 1, allowed);
    }
    return count;
}

int32_t gmatch_mask(gmatch *m, const gvocab *v, uint8_t *allowed) {
    memset(allowed, 0, (size_t)v->n);
    if (m->n_lvl < v->max_len + 2) {
        gstate *l = mica_realloc(m->lvl, ((size_t)v->max_len + 2) * sizeof *l);
        if (!l) return -1;
        m->lvl = l;
        m->n_lvl = v->max_len + 2;
    }
    int32_t count = 0;
    if (m->cur.acc) {
        for (int32_t i = 0; i < v->n; i++)
            if (v->kind[i] == GVOCAB_END) {
                allowed[i] = 1;
                count++;
            }
    }
    if (m->cur.n == 0) return count;
    /* The pool is not truncated during the walk: interned states refer to
     * frames pushed by any transition. Everything goes at the end. */
    if (!m->cst) { /* allocated once: the walk keeps pointers into it */
        m->cst = mica_malloc(GM_CACHE_STATES * sizeof *m->cst);
        m->cuni = mica_malloc(GM_CACHE_STATES * sizeof *m->cuni);
        m->ctrans = mica_malloc((size_t)GM_CACHE_STATES * 256 * sizeof *m->ctrans);
        m->c_cap = (m->cst && m->cuni && m->ctrans) ? GM_CACHE_STATES : 0;
    }
    size_t mark = m->n_pool;
    m->oom = false;
    m->c_n = 0;
    for (size_t i = 0; i < MICA_ARRAY_LEN(m->chash); i++) m->chash[i] = -1;
    int32_t sid = gm_intern(m, &m->cur);
    uint64_t u[4];
    gm_union(m, &m->cur, u);
    count += gm_dfs(m, v, 0, sid >= 0 ? &m->cst[sid] : &m->cur, u, sid, 0, allowed);
    m->n_pool = mark;
    return m->oom ? -1 : count;
}
