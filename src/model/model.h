/*
 * model.h - a loaded model: the GGUF file, hyperparameters, the weights bound
 * to an architecture, and the architecture registry (layer: model; depends on
 * base, gguf, tensor and text).
 *
 * Every architecture lives in its own file (arch_<name>.c) and is reached only
 * through its arch_ops entry in arch.c: adding one touches its file and the
 * registry, nothing else. An architecture's load() reads its hyperparameters,
 * validates them (caps, divisibility) and binds every weight it uses with
 * shape and type checks, so the forward pass never checks anything per token.
 *
 * Ownership: the model owns the gguf mapping, the vocabulary and the
 * architecture's weight tables; weights are views into the mapping.
 * Thread safety: immutable after mica_model_open; any number of sessions may
 * run forward passes on one model concurrently.
 */
#ifndef MICA_MODEL_H
#define MICA_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "base/threadpool.h"
#include "gguf/gguf.h"
#include "mica_internal.h"
#include "tensor/kern.h"
#include "tensor/ops.h"
#include "text/jinja.h"
#include "text/tokenizer.h"

#define MODEL_MAX_LAYERS 512
#define MODEL_MAX_EMBD   (1 << 16)
#define MODEL_MAX_HEADS  1024
#define MODEL_MAX_HEAD_DIM 1024
#define MODEL_MAX_FF     (1 << 20)
#define MODEL_MAX_VOCAB  (1 << 22)

/* Hyperparameters common to the dense transformer families. */
typedef struct model_hparams {
    uint32_t n_vocab;
    uint32_t n_ctx_train;
    uint32_t n_embd;
    uint32_t n_layer;
    uint32_t n_head;
    uint32_t n_head_kv;
    uint32_t head_dim;   /* q/k head size */
    uint32_t head_dim_v; /* v head size */
    uint32_t n_ff;
    uint32_t n_rot;      /* rotary dims per head */
    float rope_theta;
    float rms_eps;
    enum rope_mode rope_mode;
} model_hparams;

typedef struct mica_model mica_model;
typedef struct arch_ops arch_ops;

/*
 * Per-session forward state of an architecture (KV cache, activation
 * buffers). Created by arch_ops.state_create for n_ctx positions and batches
 * of up to n_batch tokens; it borrows the session's thread pool.
 */
typedef struct arch_state arch_state;

struct arch_ops {
    const char *name; /* general.architecture value */
    /* Reads hyperparameters and binds weights into m->arch_data (owned, freed by unload). */
    mica_status (*load)(mica_model *m, mica_err *err);
    void (*unload)(mica_model *m);
    /* kv_type: element type of the KV rows, MICA_DTYPE_F32, F16 or Q8_0
     * (MICA_ERR_INVALID_ARG if the rows cannot be stored in it). */
    mica_status (*state_create)(const mica_model *m, mica_pool *pool, int32_t n_ctx,
                                int32_t n_batch, uint32_t kv_type, arch_state **out, mica_err *err);
    void (*state_free)(arch_state *st);
    /*
     * Evaluates n (<= n_batch) tokens at positions pos0.. and stores their K/V.
     * logits: n x n_vocab floats if all_logits, else n_vocab floats for the last token.
     * Preconditions: pos0 + n <= n_ctx, token ids < n_vocab (checked by the caller).
     */
    void (*forward)(const mica_model *m, arch_state *st, const int32_t *tokens, int32_t n,
                    int32_t pos0, float *logits, bool all_logits);
    /* Bytes of K/V rows the state allocated (measured). */
    uint64_t (*state_kv_bytes)(const arch_state *st);
};

struct mica_model {
    gguf_ctx *gguf;
    mica_vocab *vocab;          /* NULL only if the file has no tokenizer */
    const arch_ops *arch;
    model_hparams hp;
    kern_table kt;              /* kernels chosen for this CPU at open */
    void *arch_data;            /* the architecture's bound weights */
    uint64_t n_params;          /* elements of all tensors */
    uint64_t n_params_active;   /* elements a token uses: n_params less the unused routed experts */
    uint32_t n_expert;          /* routed experts per MoE layer (0: dense model) */
    uint32_t n_expert_used;     /* routed experts per token */
    uint32_t n_moe_layers;      /* layers with routed experts */
    uint64_t bytes_per_token;   /* weight bytes read to generate one token */
    jinja_template *chat_tmpl;  /* parsed tokenizer.chat_template, or NULL */
    char *chat_tmpl_err;        /* why the template did not parse, or NULL */
    /*
     * The routed experts' cache when the model streams them (it does not
     * fit its memory budget; see expert_store.h), else NULL: every weight is
     * a view into the mapping. Created before the architecture binds its
     * weights; internally synchronised, so sessions share it.
     */
    struct expert_store *experts;
    struct model_stream *stream; /* the budget plan behind `experts` (engine/stream.c) */
};

/* The architecture registered under `name`, or NULL. */
const arch_ops *arch_find(const char *name, size_t len);

/* Comma-separated names of the supported architectures (static). */
const char *arch_names(void);

/*
 * Bytes of K/V rows m's architecture allocates for a state of (n_ctx,
 * n_batch) with F32 rows: its own formula where it has one (mimo2's hybrid
 * cache, deepseek2's latent cache), else n_ctx * n_layer * n_head_kv *
 * (head_dim + head_dim_v) * 4.
 * UINT64_MAX on overflow.
 */
uint64_t arch_kv_bytes(const mica_model *m, int32_t n_ctx, int32_t n_batch);

/* As arch_kv_bytes for rows of kv_type (F32, F16, Q8_0); UINT64_MAX on
 * overflow or if a row width is not a multiple of the type's block. */
uint64_t arch_kv_bytes_type(const mica_model *m, int32_t n_ctx, int32_t n_batch, uint32_t kv_type);

/* ---- helpers for architecture files (weights.c) ---- */

/*
 * Binds tensor `name` as a view. Checks that it exists (unless optional, in
 * which case a missing tensor leaves v->data NULL and returns MICA_OK), that
 * its dims equal ne[0..n_dims-1] (trailing dims 1), and that the kernels can
 * compute with its type (MICA_ERR_UNSUPPORTED naming the type otherwise).
 * `float_only` requires F32 (norm weights, biases).
 */
mica_status weights_bind(const mica_model *m, tensor_view *v, const char *name, uint32_t n_dims,
                         const int64_t *ne, bool optional, bool float_only, mica_err *err);

/* Reads an `{arch}.suffix` u32 key into *out (absent: unchanged unless required). */
mica_status hparams_u32(const mica_model *m, const char *suffix, uint32_t *out, bool required,
                        mica_err *err);
mica_status hparams_f32(const mica_model *m, const char *suffix, float *out, bool required,
                        mica_err *err);

#endif /* MICA_MODEL_H */
