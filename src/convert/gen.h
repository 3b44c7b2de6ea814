/*
 * gen.h - random-weight GGUF test models (layer: convert; uses gguf's writer
 * and the tensor kernels' quantisers). Driven by tools/mica-gen.c and by unit
 * tests that need a model file.
 *
 * A preset fixes the architecture and shapes. The weights are a pure function
 * of (seed, tensor name, element index), so one seed gives the same
 * underlying floats whatever the storage type: an F32 file and a Q4_K file of
 * the same seed hold the same weights, once rounded and once exact. (The
 * normals go through libm's log/sin/cos, so bit-identical files across
 * machines assume the same libm.)
 *
 * Distributions (see TESTING_NOTES.md for why the residual branches are
 * scaled):
 *   2-D projections        N(0, 1/fan_in), fan_in = ne[0]
 *   attn_output, ffn_down  N(0, 1/fan_in) * 1/sqrt(2 * n_layer)
 *   token_embd             N(0, GEN_EMBD_STD^2)
 *   output (untied)        N(0, GEN_LOGIT_STD^2/fan_in): logits of std ~GEN_LOGIT_STD
 *   norm weights           1 + N(0, 0.05^2)
 *   output_norm (tied)     +-(1 + N(0, 0.05^2)) * GEN_LOGIT_STD/(GEN_EMBD_STD*sqrt(n_embd)),
 *                          random signs: logits of std ~GEN_LOGIT_STD that do
 *                          not simply echo the input token (see gen.c)
 *   biases                 N(0, 0.1^2)
 *   MoE router             N(0, 1/fan_in): router logits of std ~1
 *   experts                as the dense FFN (ffn_down_exps scaled like ffn_down)
 * Norm weights, biases and MoE routers (ffn_gate_inp, as llama.cpp's
 * quantiser keeps them) are always F32. Every other matrix (token_embd,
 * output and the 3-D expert tensors included) is stored in the requested
 * type; a matrix whose row length is not a multiple of that type's block
 * (K-quants: 256) is stored as Q8_0 instead.
 *
 * MoE presets (n_expert > 0) replace every block's ffn_gate/up/down with
 * ffn_gate_inp {n_embd, n_expert} and ffn_{gate,up}_exps {n_embd, n_ff_exp,
 * n_expert}, ffn_down_exps {n_ff_exp, n_embd, n_expert}, and write
 * {arch}.expert_count / expert_used_count (and, except for `llama`, where
 * feed_forward_length is the expert width as in Mixtral files,
 * expert_feed_forward_length).
 *
 * deepseek2 presets (tiny-deepseek2, tiny-deepseek3, deepseek-v2-lite) write
 * the MLA and DeepSeekMoE tensors and keys instead (FORMATS.md 4.2-4.6; their
 * extra fields are a table in gen.c): attn_q or attn_q_a/_norm/attn_q_b,
 * attn_kv_a_mqa, attn_kv_a_norm, attn_k_b + attn_v_b (or the legacy
 * attn_kv_b), dense ffn_* in the leading blocks, routed experts, optional
 * exp_probs_b.bias and shared experts ffn_*_shexp after; attn_k_b/v_b/kv_b
 * are drawn with std 1/sqrt(kv_lora_rank).
 *
 * Vocabulary: copied from a GGUF file (every tokenizer.* key; its token count
 * becomes n_vocab) or synthesised: SentencePiece-style for llama presets,
 * GPT-2 byte-level BPE with merges and ChatML control tokens for qwen presets.
 */
#ifndef MICA_GEN_H
#define MICA_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mica_internal.h"

#define GEN_EMBD_STD  1.0f
#define GEN_LOGIT_STD 3.0f

enum gen_vocab_kind { GEN_VOCAB_SPM = 1, GEN_VOCAB_BPE = 2 };

typedef struct gen_preset {
    const char *name;  /* "tiny-llama" */
    const char *arch;  /* general.architecture: "llama", "qwen2", "qwen3" */
    const char *about; /* one line for --list */
    uint32_t n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_ctx;
    float rope_base, rms_eps;
    bool tied;      /* no output tensor: the loader reuses token_embd */
    bool qk_norm;   /* blk.N.attn_q_norm / attn_k_norm [head_dim] (qwen3) */
    bool qkv_bias;  /* blk.N.attn_{q,k,v}.bias (qwen2) */
    bool is_tiny;   /* with a vocabulary file, adopt its token count */
    enum gen_vocab_kind vocab;
    /* mixture of experts; n_expert == 0: dense */
    uint32_t n_expert, n_expert_used, n_ff_exp;
    bool qk_norm_full; /* attn_q_norm/attn_k_norm over the whole q/k vectors (olmoe) */
} gen_preset;

size_t gen_preset_count(void);
const gen_preset *gen_preset_at(size_t i);
/* The preset with this name, or NULL. */
const gen_preset *gen_preset_find(const char *name);

/* True for the storage types the generator writes: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K. */
bool gen_type_supported(uint32_t type);

/* The type a matrix with rows of ne0 elements gets when `requested` is asked for. */
uint32_t gen_matrix_type(uint32_t requested, int64_t ne0);

typedef struct gen_params {
    const char *preset;     /* preset name */
    uint32_t type;          /* enum mica_dtype for the 2-D matrices */
    uint64_t seed;
    const char *vocab_path; /* GGUF to copy tokenizer.* from; NULL: synthesise */
    const char *chat_template; /* tokenizer.chat_template text; NULL: the vocabulary file's, if any */
    bool sparse;            /* leave all tensor data as a file hole (zeros, no disk, no time):
                               valid metadata and shapes for parameter and layout tests, not
                               a usable model (every weight reads 0) */
    int n_threads;          /* workers generating rows (<= 1: the caller alone); the file's
                               bytes do not depend on it */
} gen_params;

/*
 * Writes the model to out_path (through out_path.tmp, renamed at the end).
 * Tensor data is generated tensor by tensor while writing. Returns MICA_OK,
 * MICA_ERR_INVALID_ARG (unknown preset or type, vocabulary size mismatch for
 * a full-size preset), MICA_ERR_IO/FORMAT (vocabulary file), MICA_ERR_UNSUPPORTED
 * (a tokenizer value the writer cannot store), MICA_ERR_NOMEM; message in err.
 */
mica_status gen_write(const gen_params *p, const char *out_path, mica_err *err);

#endif /* MICA_GEN_H */
