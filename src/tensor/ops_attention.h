/*
 * ops_attention.h - internals of ops_attention and ops_attention_ext (layer:
 * tensor; the public contracts are in ops.h). Shared by the portable
 * implementation (ops_attention.c) and the AVX-512 one
 * (ops_attention_avx512.c).
 *
 * Algorithm (online softmax, "flash attention"): keys are visited in blocks
 * of ATTN_KEY_BLOCK positions aligned to absolute position 0. For one query
 * at position p seeing positions [j_lo(p), p] (j_lo = 0, or the window's
 * start), with running max m, running denominator l and output accumulator
 * o = 0 (m = -inf, l = 0 without a sink; m = s, l = 1 with sink logit s),
 * each block [j0, j0 + ATTN_KEY_BLOCK) that meets [j_lo(p), p] does, over its
 * visible keys j:
 *     s_j   = scale * (q . k_j)
 *     m'    = max(m, max_j s_j)
 *     alpha = exp(m - m')                    (0 while m = -inf)
 *     p_j   = exp(s_j - m')
 *     l     = l * alpha + sum_j p_j
 *     o     = o * alpha + sum_j p_j v_j
 *     m     = m'
 * and finally out = o * (1 / l). Nothing of size n_keys is stored.
 *
 * Work split: one work item is a tile of up to `qt` consecutive tokens times
 * up to `hc` query heads of one KV head group; the tile's queries walk the
 * same key/value blocks one after another, so a block is read from memory
 * once per tile (and converted to float once, for F16 / Q8_0 stores) and
 * from L1/L2 by the other queries; for one decoded token, the query heads
 * sharing a KV head read its cache rows once. Items are dealt round-robin
 * over the threads (later tokens see more keys).
 *
 * Determinism: each query's arithmetic is the sequence above over the same
 * absolute blocks, whatever tile, batch or thread computed it: outputs are
 * bit-identical for any n_tok / pos0 split of the same positions and any
 * thread count, and for a ring store and a full store holding the same rows
 * (per implementation; the portable and the AVX-512 versions differ in
 * rounding, both within the attention tolerance of the tests).
 */
#ifndef MICA_OPS_ATTENTION_H
#define MICA_OPS_ATTENTION_H

#include <stdint.h>

#include "tensor/ops.h"

#define ATTN_KEY_BLOCK 32    /* keys per online-softmax step */
#define ATTN_TILE_QUERIES 64 /* queries per work item */

/* Both public argument structs, in one form. */
typedef struct attn_spec {
    const kern_table *kt; /* to_float for kv_type != F32 */
    const float *q;
    const uint8_t *k, *v; /* row 0 of the stores */
    float *out;
    int64_t n_tok, pos0;
    int64_t n_head, n_head_kv, head_dim, head_dim_v;
    uint64_t k_row_bytes, v_row_bytes;
    uint32_t kv_type;
    float scale;
    int64_t window;      /* 0: none */
    int64_t n_slots;     /* 0: row = position */
    const float *sinks;  /* or NULL */
    float *scratch;      /* per thread: scratch_stride floats (portable path, F16 / Q8_0 rows) */
    int64_t scratch_stride;
} attn_spec;

typedef struct attn_plan {
    int64_t qt, hc;     /* tokens and query heads per tile */
    int64_t n_tb, n_hb; /* token blocks, head blocks per KV head */
    int64_t n_items;    /* n_tb * n_head_kv * n_hb */
} attn_plan;

/* One work item (tile) of a plan; item in [0, plan->n_items); ith: the thread. */
typedef void (*attn_item_fn)(const attn_spec *a, const attn_plan *plan, int64_t item, int ith);

/* The tile's tokens [t0, t1) and query heads [h0, h1). */
static inline void attn_item_range(const attn_spec *a, const attn_plan *plan, int64_t item, int64_t *t0,
                                   int64_t *t1, int64_t *h0, int64_t *h1) {
    const int64_t group = a->n_head / a->n_head_kv;
    const int64_t hb = item % plan->n_hb, g = (item / plan->n_hb) % a->n_head_kv;
    const int64_t tb = item / (plan->n_hb * a->n_head_kv);
    *t0 = tb * plan->qt;
    *t1 = *t0 + plan->qt < a->n_tok ? *t0 + plan->qt : a->n_tok;
    *h0 = g * group + hb * plan->hc;
    *h1 = *h0 + plan->hc < (g + 1) * group ? *h0 + plan->hc : (g + 1) * group;
}

/* The first visible key position of a query at position p. */
static inline int64_t attn_first_key(const attn_spec *a, int64_t p) {
    return a->window > 0 && p - a->window + 1 > 0 ? p - a->window + 1 : 0;
}

/* The store row of position j. */
static inline int64_t attn_row(const attn_spec *a, int64_t j) { return a->n_slots > 0 ? j % a->n_slots : j; }

/* Head dims up to this run the AVX-512 tile (its per-block buffers are on
 * the stack); they must also be multiples of 16. */
#define ATTN_AVX512_MAX_DIM 256

/* The AVX-512 tile (ops_attention_avx512.c, x86-64 builds only). */
void attn_item_avx512(const attn_spec *a, const attn_plan *plan, int64_t item, int ith);

#endif /* MICA_OPS_ATTENTION_H */
