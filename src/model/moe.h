/*
 * moe.h - the mixture-of-experts feed-forward layer shared by every MoE
 * architecture (layer: model; uses tensor ops). Formulas from
 * MODEL_FAMILIES.md 0.6, 2.2, 3 and 4.3.
 *
 * One MoE layer replaces the dense SwiGLU FFN of a block. For a token x:
 *
 *   logits = W_router x                                (n_expert)
 *   score  = softmax(logits) or sigmoid(logits)        (fp32)
 *   chosen = the k experts with the largest score + bias
 *            (the bias, exp_probs_b, only selects: it never weights)
 *   w_i    = score[chosen_i], divided by sum_i score[chosen_i] if norm_topk,
 *            then times weights_scale
 *   y      = sum_i w_i * Expert_{chosen_i}(x) + Shared(x)
 *   Expert_e(x) = down_e( silu(gate_e x) * up_e x )    (SwiGLU, 0.2)
 *
 * The work is split into steps with a narrow interface, so that a later
 * expert store can bring single experts in on demand:
 *   moe_route       which experts one token needs, and their weights
 *                   (pure, no weights touched besides the router's output);
 *   moe_expert_get  the weights of one expert (today a view into the
 *                   mapped 3-D tensors; later a lease from the store);
 *   moe_expert_ffn  one expert applied to a group of tokens.
 * moe_forward strings them together for a batch: it routes every token,
 * groups the tokens by expert, and for each expert that any token needs,
 * gathers those tokens' rows, runs the expert once as a matrix product and
 * adds the weighted results back to each token. Experts are visited in
 * increasing id, so a token's sum is formed in the same order whatever the
 * batch: a batch gives bit-identical outputs to token-by-token evaluation.
 *
 * Expert tensors (GGUF, 0.6): ffn_gate_exps / ffn_up_exps have
 * ne = {n_embd, n_ff_exp, n_expert} and ffn_down_exps {n_ff_exp, n_embd,
 * n_expert}; expert e is the contiguous 2-D slice e (ne[1] rows from byte
 * e * ne[1] * row_bytes).
 *
 * Thread safety: the layer weights are read-only; a moe_scratch belongs to
 * one session.
 */
#ifndef MICA_MOE_H
#define MICA_MOE_H

#include <stdbool.h>
#include <stdint.h>

#include "mica_internal.h"
#include "model/model.h"
#include "tensor/ops.h"

#define MOE_MAX_EXPERTS 4096
#define MOE_MAX_USED    64

/* Router scoring function; the values of GGUF `{arch}.expert_gating_func`. */
enum moe_gating {
    MOE_GATING_SOFTMAX = 1,
    MOE_GATING_SIGMOID = 2,
};

/* Hyperparameters of the MoE layers of one model. */
typedef struct moe_params {
    int32_t n_expert;        /* routed experts */
    int32_t n_expert_used;   /* k, 1..n_expert */
    int64_t n_ff_exp;        /* width of one routed expert */
    int64_t n_ff_shexp;      /* width of the shared expert(s) together; 0: none */
    enum moe_gating gating;
    bool norm_topk;          /* renormalise the k weights to sum 1 */
    float weights_scale;     /* routed scaling factor (after renormalisation) */
    /*
     * Group-limited selection (DeepSeek-V3 noaux_tc, MODEL_FAMILIES.md 4.3);
     * n_group <= 1: off. The experts form n_group consecutive groups of
     * n_expert / n_group; a group's score is the sum of its two largest
     * score + bias values (its one value if a group has one expert); only
     * the experts of the n_group_used best groups (equal: the lower group
     * first) can be chosen.
     */
    int32_t n_group;         /* {arch}.expert_group_count */
    int32_t n_group_used;    /* {arch}.expert_group_used_count, 1..n_group */
} moe_params;

/* The weights of one MoE layer: views into the mapped file. */
typedef struct moe_layer {
    tensor_view router;      /* ffn_gate_inp [n_embd, n_expert] */
    tensor_view probs_b;     /* exp_probs_b [n_expert] F32 selection bias; data NULL if absent */
    tensor_view gate_exps;   /* [n_embd, n_ff_exp, n_expert] */
    tensor_view up_exps;     /* [n_embd, n_ff_exp, n_expert] */
    tensor_view down_exps;   /* [n_ff_exp, n_embd, n_expert] */
    tensor_view gate_shexp;  /* [n_embd, n_ff_shexp]; data NULL without a shared expert */
    tensor_view up_shexp;    /* [n_embd, n_ff_shexp] */
    tensor_view down_shexp;  /* [n_ff_shexp, n_embd] */
    /*
     * Streaming (expert_store.h): when store is not NULL the routed experts
     * are leased from it as layer `il` and the *_exps views above are only
     * shapes (their bytes in the mapping are never touched). next_router /
     * next_probs_b are layer il+1's router and bias (data NULL if that layer
     * has none), run on this layer's input to guess and prefetch the next
     * layer's experts.
     */
    struct expert_store *store;
    int32_t il;
    tensor_view next_router;  /* [n_embd, n_expert] of layer il+1 */
    tensor_view next_probs_b; /* [n_expert] of layer il+1 */
} moe_layer;

/* The weights of one expert (2-D views). */
typedef struct moe_expert {
    tensor_view gate, up; /* [n_embd, n_ff_exp] */
    tensor_view down;     /* [n_ff_exp, n_embd] */
} moe_expert;

/* ---- loading ---- */

/*
 * Reads the MoE keys of m's architecture into *p, starting from `defaults`
 * (gating, norm_topk; the rest of defaults is ignored):
 *   expert_count (required), expert_used_count (required),
 *   expert_feed_forward_length (default n_ff), expert_shared_count (default
 *   0; the shared width is count * n_ff_exp unless
 *   expert_shared_feed_forward_length is given), expert_gating_func,
 *   expert_weights_norm, expert_weights_scale (default 1),
 *   expert_group_count and expert_group_used_count (default: no groups).
 * MICA_ERR_FORMAT naming the key for a missing or out-of-range value
 * (expert_used_count > expert_count, an unknown gating function,
 * expert_group_used_count > expert_group_count, groups that do not divide
 * expert_count or hold fewer than expert_used_count experts, ...).
 */
mica_status moe_read_params(const mica_model *m, const moe_params *defaults, int64_t n_ff,
                            moe_params *p, mica_err *err);

/*
 * Binds layer il's MoE tensors (blk.{il}.ffn_gate_inp.weight,
 * exp_probs_b.bias (optional), ffn_{gate,up,down}_exps.weight, and
 * ffn_{gate,up,down}_shexp.weight when p->n_ff_shexp > 0) with shape checks.
 * A missing or misshapen tensor is an error naming it. On success it also
 * subtracts the routed-expert bytes a token does not read
 * (moe_unread_bytes_per_token) from m->bytes_per_token, which model loading
 * starts at every tensor's full size: bind each MoE layer exactly once.
 */
mica_status moe_bind(mica_model *m, uint32_t il, const moe_params *p, int64_t n_embd,
                     moe_layer *L, mica_err *err);

/* Scratch ops_matmul needs for this layer's products over up to n_batch tokens. */
size_t moe_qbuf_bytes(const kern_table *kt, const moe_layer *L, int32_t n_batch);

/*
 * Bytes of this layer's routed-expert weights that one token does not read:
 * (n_expert - n_expert_used) / n_expert of the three expert tensors (what
 * moe_bind subtracts from mica_model.bytes_per_token).
 */
uint64_t moe_unread_bytes_per_token(const moe_params *p, const moe_layer *L);

/* ---- the steps ---- */

/*
 * Routes one token. On entry scores[n_expert] holds the router logits; on
 * return the gating scores (softmax or sigmoid of the logits). bias is the
 * selection bias [n_expert] or NULL. Writes the k = n_expert_used chosen
 * experts to ids[k], by decreasing score + bias (equal values: the lower id
 * first), and their weights to weights[k]. With groups (p->n_group > 1)
 * only experts of the selected groups are candidates.
 */
void moe_route(const moe_params *p, float *scores, const float *bias, int32_t *ids,
               float *weights);

/* The 2-D view of slice e of a 3-D expert tensor (0 <= e < ne[2]). */
void moe_expert_view(const tensor_view *exps, int32_t e, tensor_view *out);

/* The weights of expert e of layer L as views into the mapping (not for a streamed layer). */
void moe_expert_get(const moe_layer *L, int32_t e, moe_expert *out);

/*
 * y[n][n_embd] = down(silu(gate x) * up x) for the rows x[n][n_embd].
 * gate and up are scratch of n * n_ff floats (n_ff = the expert's width);
 * the ops context's qbuf must hold moe_qbuf_bytes for n tokens.
 */
void moe_expert_ffn(ops_ctx *c, const moe_expert *ex, const float *x, int64_t n, float *gate,
                    float *up, float *y);

/* ---- the layer over a batch ---- */

/* Per-session buffers of moe_forward for batches of up to n_batch tokens. */
typedef struct moe_scratch {
    int32_t n_batch;
    float *scores;    /* [n_batch][n_expert] router logits, then scores */
    int32_t *ids;     /* [n_batch][k] chosen experts per token */
    float *weights;   /* [n_batch][k] their weights */
    int32_t *first;   /* [n_expert + 1] start of each expert's group in tok/tok_w */
    int32_t *tok;     /* [n_batch * k] token of each routed (token, expert) pair, grouped by expert */
    float *tok_w;     /* [n_batch * k] the pair's weight */
    float *xg;        /* [n_batch][n_embd] gathered input rows of one expert */
    float *yg;        /* [n_batch][n_embd] that expert's outputs */
    float *gate, *up; /* [n_batch][max(n_ff_exp, n_ff_shexp)] */
    void *block;      /* one allocation behind the buffers */
} moe_scratch;

/* Allocates s (MICA_ERR_NOMEM / MICA_ERR_LIMIT with a message). */
mica_status moe_scratch_init(moe_scratch *s, const moe_params *p, int64_t n_embd, int32_t n_batch,
                             mica_err *err);
/* Frees s; accepts a zeroed or half-initialised scratch. */
void moe_scratch_deinit(moe_scratch *s);

/*
 * out[n][n_embd] = MoE(x[n][n_embd]) for 1 <= n <= s->n_batch (out is
 * overwritten; it must not alias x).
 * Streamed layers (L->store): the needed experts of the whole batch are
 * asked for at once (each read at most once per call, reads overlapping),
 * computed in increasing id as above, and released; the next layer's likely
 * experts are prefetched first. The result is bit-identical to the mapped
 * path. If the store cannot deliver an expert (read error, truncated file),
 * that expert contributes nothing and the store's failure counter records
 * it (expert_store_n_failures): the caller must treat the output as invalid.
 */
void moe_forward(ops_ctx *c, const moe_params *p, const moe_layer *L, moe_scratch *s,
                 const float *x, int32_t n, int64_t n_embd, float *out);

#endif /* MICA_MOE_H */
