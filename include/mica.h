/*
 * mica.h - the public C interface of libmica, a pure-C inference engine for
 * large language models stored as GGUF files.
 *
 * Objects: a mica_model is a loaded GGUF file (weights are views into a
 * read-only mapping of the file, vocabulary, hyperparameters); a mica_session
 * is one conversation over a model (KV cache, scratch buffers, thread pool);
 * a mica_sampler turns logits into a token.
 *
 * Thread safety: a model may be shared read-only by several sessions on
 * different threads. A session and a sampler belong to one thread at a time.
 *
 * Errors: every fallible function returns a mica_status. Constructors take an
 * optional (err, err_cap) buffer that receives a one-line message naming the
 * file, offset or field at fault; other functions keep the message in the
 * object (mica_session_errmsg). Out-parameters are written only on success.
 * The library never prints and never exits.
 */
#ifndef MICA_H
#define MICA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MICA_VERSION_MAJOR 0
#define MICA_VERSION_MINOR 1
#define MICA_VERSION_PATCH 0
#define MICA_VERSION_STRING "0.1.0"

/* Limits named once. */
#define MICA_MAX_CTX     (1 << 20) /* largest context a session accepts */
#define MICA_MAX_THREADS 256

/* ---- status ---- */

/* Result codes. Never renumbered; new codes are appended. */
typedef enum mica_status {
    MICA_OK = 0,
    MICA_ERR_NOMEM = 1,       /* an allocation failed */
    MICA_ERR_IO = 2,          /* a file could not be opened, read, mapped or written */
    MICA_ERR_FORMAT = 3,      /* a file or value is malformed */
    MICA_ERR_UNSUPPORTED = 4, /* well-formed but not supported (architecture, tensor type) */
    MICA_ERR_INVALID_ARG = 5, /* a caller passed an invalid argument */
    MICA_ERR_LIMIT = 6,       /* a documented limit was exceeded (context full, too many tokens) */
    MICA_ERR_CANCELLED = 7,   /* the operation was cancelled by a callback */
    MICA_ERR_INTERNAL = 8,    /* a bug: please report it */
} mica_status;

/* Static name of a status ("MICA_ERR_FORMAT"); never NULL. */
const char *mica_status_str(mica_status st);

/* Version string of the library, e.g. "0.1.0". */
const char *mica_version(void);

/* ---- model ---- */

typedef struct mica_model mica_model;

typedef struct mica_model_params {
    bool vocab_only; /* load only metadata and tokenizer (tensors may be absent); default false */
    /*
     * Bytes of RAM the model's weights may occupy: the resident part (every
     * tensor except the routed experts: embeddings, attention, norms,
     * routers, shared experts, dense layers, output) plus the expert cache.
     * When the whole model fits, every weight is a view into the mapped file
     * (nothing changes); otherwise the resident part stays mapped and the
     * routed experts are streamed from the file into a cache of
     * budget - resident bytes (see mica_model_expert_stats).
     * 0 (default): automatic, the smaller of the machine's available memory
     * (MemAvailable) and the process's cgroup memory limit, less headroom for
     * the KV cache of min(n_ctx_train, 4096) positions, 256 MiB and 5%;
     * if even the resident part does not fit that, the model is mapped whole
     * and mica_model_note says so.
     * MICA_MEM_UNLIMITED: never stream.
     * An explicit budget below the minimum (resident part plus
     * expert_used_count expert slots) makes mica_model_open fail with
     * MICA_ERR_LIMIT and a message stating the minimum in bytes.
     */
    uint64_t mem_budget;
    int32_t n_io_threads; /* expert reader threads when streaming without io_uring (where the kernel
                             allows io_uring, one thread keeps up to 16 expert reads in flight);
                             0 = 4 (max 64) */
    bool buffered_io;     /* read experts through the page cache; default false = O_DIRECT where the
                             filesystem allows it (else buffered, noted once in mica_model_note) */
} mica_model_params;

#define MICA_MEM_UNLIMITED UINT64_MAX

mica_model_params mica_model_params_default(void);

/*
 * Opens the GGUF file at `path`, validates it, binds the weights of its
 * architecture and loads its tokenizer. On success *out owns the model; free it
 * with mica_model_free. On failure *out is untouched and `err` (if not NULL)
 * holds a message of at most err_cap bytes, NUL-terminated.
 * Returns MICA_OK, MICA_ERR_IO, MICA_ERR_FORMAT, MICA_ERR_UNSUPPORTED,
 * MICA_ERR_NOMEM or MICA_ERR_INVALID_ARG.
 */
mica_status mica_model_open(const char *path, const mica_model_params *params,
                            mica_model **out, char *err, size_t err_cap);

/* Frees a model. Accepts NULL. No session of this model may be alive. */
void mica_model_free(mica_model *model);

/* Architecture name ("llama", "qwen3"); borrowed, valid until mica_model_free. */
const char *mica_model_arch(const mica_model *model);
int32_t mica_model_n_vocab(const mica_model *model);
int32_t mica_model_n_ctx_train(const mica_model *model);

/*
 * Number of weight elements of the model: the product of the dimensions of
 * every tensor in the file, summed (tied embeddings count once).
 * Thread-safe (reads immutable fields).
 */
uint64_t mica_model_n_params(const mica_model *model);

/*
 * Bytes of weights the forward pass reads to generate one token: every
 * tensor's stored size, except that the token embedding contributes a single
 * row when a separate output matrix exists (it is only gathered, not
 * multiplied). KV-cache traffic is not included. This is the numerator of a
 * decode-speed roofline: tokens/s <= memory bandwidth / bytes_per_token.
 * Thread-safe (reads immutable fields).
 */
uint64_t mica_model_bytes_per_token(const mica_model *model);

/*
 * Bytes of key/value cache a session of n_ctx positions allocates (F32 rows,
 * the default batch of 512): for most architectures n_ctx times a constant;
 * for sliding-window layers (mimo2) a constant ring per layer, so only the
 * global layers grow with n_ctx. 0 for a vocabulary-only model or n_ctx <= 0.
 * Thread-safe (reads immutable fields).
 */
uint64_t mica_model_kv_bytes(const mica_model *model, int32_t n_ctx);

/*
 * Writes a multi-line human-readable description (architecture,
 * hyperparameters, tensor-type histogram, parameter count, file size, bytes
 * read per generated token) into buf (NUL-terminated, truncated to cap).
 * Returns the length the full text needs, excluding the NUL.
 */
size_t mica_model_describe(const mica_model *model, char *buf, size_t cap);

/*
 * Expert streaming counters (all zero and streaming false when the model is
 * mapped whole). Hit rate = hits / lookups; read bandwidth = bytes_read /
 * io_busy_seconds (time with at least one read in flight); stall_seconds is
 * the time forward passes waited for reads or free slots. The cache never
 * holds more than cache_bytes, and resident_bytes + cache_bytes <= budget.
 * Thread-safe (a consistent snapshot; sessions may be running).
 */
typedef struct mica_expert_stats {
    bool streaming;           /* routed experts are streamed from the file */
    bool direct_io;           /* ... with O_DIRECT (no page cache) */
    bool budget_auto;         /* the budget was computed (mem_budget 0) */
    uint64_t budget;          /* the budget in force, bytes (UINT64_MAX: unlimited) */
    uint64_t weight_bytes;    /* all tensors of the file */
    uint64_t resident_bytes;  /* the part kept mapped and resident (all weights when not streaming) */
    uint64_t expert_bytes;    /* routed-expert weights in the file */
    uint64_t slot_bytes;      /* one cache slot (the largest expert, aligned for O_DIRECT) */
    uint64_t cache_bytes;     /* the cache's arena: n_slots * slot_bytes */
    int32_t n_slots;          /* experts the cache holds at most */
    int32_t n_experts_total;  /* routed experts in the file (all layers) */
    int32_t cached_experts;   /* experts in the cache now */
    uint64_t lookups, hits, misses;
    uint64_t prefetch_reads, prefetch_used;
    uint64_t reads, read_errors, bytes_read, evictions;
    double io_busy_seconds, stall_seconds;
    int32_t pinned_experts;   /* experts pinned for good: the hot set from the usage statistics */
    bool io_uring;            /* reads go through io_uring (else pread threads) */
} mica_expert_stats;

void mica_model_expert_stats(const mica_model *model, mica_expert_stats *out);

/*
 * A one-time remark about how the model was opened, for the user (the
 * filesystem refused O_DIRECT; the automatic budget could not hold even the
 * resident part), or "". Borrowed, valid until mica_model_free.
 */
const char *mica_model_note(const mica_model *model);

/*
 * Writes the memory plan (like mica_model_describe): the resident part,
 * the routed experts, the budget, the cache's slots and whether experts
 * stream. Returns the length the full text needs, excluding the NUL.
 */
size_t mica_model_describe_memory(const mica_model *model, char *buf, size_t cap);

/*
 * Predicts decode tokens/s under the model's memory plan and writes how
 * (several lines, like mica_model_describe_memory). It measures, taking
 * about a second: the disk's read bandwidth (a short O_DIRECT sample of the
 * model file: expert-sized reads at spread offsets from 4 threads) and the
 * memory's read bandwidth (one thread summing 256 MiB). Then
 *   hit rate   = the expected expert-cache hit rate: the share of lookups
 *                that went to the cache's n_slots most used experts in the
 *                usage statistics, or n_slots / experts without them (1 when
 *                nothing streams);
 *   disk bytes = (1 - hit rate) * expert lookups per token * bytes of one
 *                aligned expert read;
 *   tokens/s   = 1 / (bytes_per_token / memory GB/s + disk bytes / disk GB/s)
 *                (reads not overlapped with compute; the line also gives the
 *                fully overlapped bound 1 / max(...)).
 * Returns the length the full text needs, excluding the NUL. Not for a
 * model in use by sessions on other threads (it competes for the disk).
 */
size_t mica_model_describe_speed(const mica_model *model, char *buf, size_t cap);

/* ---- tokens ---- */

/* Special token ids; -1 when the vocabulary has none. */
int32_t mica_token_bos(const mica_model *model);
int32_t mica_token_eos(const mica_model *model);
/* True if generating `token` ends the generation (EOS, EOT and the like). */
bool mica_token_is_eog(const mica_model *model, int32_t token);
/*
 * True if `token` is a control token of the vocabulary (token type CONTROL:
 * template markup such as <|im_start|>, BOS, EOS), whose text a server leaves
 * out of generated content. False for ids outside the vocabulary and for a
 * model without one. Thread-safe (reads immutable fields).
 */
bool mica_token_is_control(const mica_model *model, int32_t token);

/*
 * Tokenizes `len` bytes of `text`. With add_special the vocabulary's BOS/EOS
 * rules apply (add_bos_token/add_eos_token); with parse_special, special-token
 * text in the input becomes the special token.
 * On success *out_ids is an array of *n_out ids allocated with malloc (free
 * with free()). Invalid UTF-8 is tokenized byte by byte, never refused.
 * Returns MICA_OK, MICA_ERR_NOMEM, MICA_ERR_INVALID_ARG (model without a
 * vocabulary) or MICA_ERR_LIMIT (text over 64 MiB).
 */
mica_status mica_tokenize(const mica_model *model, const char *text, size_t len,
                          bool add_special, bool parse_special,
                          int32_t **out_ids, size_t *n_out);

/*
 * Writes the bytes `token` stands for into buf (not NUL-terminated) and
 * returns their count, or the count needed if it exceeds cap. `prev` is the
 * previous token in the stream or -1; it lets SentencePiece vocabularies drop
 * the dummy-prefix space after BOS. Unknown ids give 0 bytes.
 */
size_t mica_token_to_piece(const mica_model *model, int32_t prev, int32_t token,
                           char *buf, size_t cap);

/*
 * Streaming detokenizer: turns generated tokens into text a terminal or an
 * SSE stream can print piece by piece without splitting a UTF-8 character.
 * Each token's piece (mica_token_to_piece, with the previous pushed token as
 * `prev`; control tokens give their text) is queued; the queued bytes are
 * "ready" except a trailing incomplete but so far valid UTF-8 sequence,
 * which is held back until the next token completes it (e.g. the byte tokens
 * <0xE4> <0xBD> <0xA0> come out together as U+4F60). Invalid bytes are never
 * held and never dropped: they come out unchanged.
 * Ownership: the detokenizer borrows `model`, which must outlive it.
 * Thread safety: one detokenizer belongs to one thread; several may share a
 * model.
 */
typedef struct mica_detok mica_detok;

/*
 * Creates a detokenizer for the model's vocabulary. On success *out is owned
 * by the caller (mica_detok_free). Returns MICA_OK, MICA_ERR_INVALID_ARG (NULL
 * argument or a model without a vocabulary) or MICA_ERR_NOMEM.
 */
mica_status mica_detok_create(const mica_model *model, mica_detok **out);

/*
 * Queues the piece of `token` (token < 0 queues nothing, so a call with -1
 * only drains), then writes up to cap ready bytes to buf (not NUL-terminated)
 * and returns how many were written. Ready bytes that did not fit stay queued
 * and come first on the next call; with cap >= 4 + the longest piece of the
 * vocabulary (256 is plenty for real vocabularies) every ready byte is
 * written at once. Tokens outside the vocabulary queue nothing. If memory
 * for the queue runs out (possible only when small caps let it grow), the
 * token's piece is dropped.
 */
size_t mica_detok_push(mica_detok *detok, int32_t token, char *buf, size_t cap);

/*
 * Writes up to cap queued bytes to buf, including a held incomplete sequence
 * (as raw bytes), and returns how many were written; call again while it
 * returns cap. Use at the end of a stream. The previous-token state is kept.
 */
size_t mica_detok_flush(mica_detok *detok, char *buf, size_t cap);

/* Frees the detokenizer; NULL is allowed. */
void mica_detok_free(mica_detok *detok);

/* ---- chat ---- */

/* One message of a conversation. Strings are borrowed for the call; NULL
 * optional fields are absent from what the template sees. */
typedef struct mica_chat_message {
    const char *role;              /* "system", "user", "assistant", "tool" */
    const char *content;           /* NULL renders as "" */
    const char *reasoning_content; /* optional */
    const char *tool_calls_json;   /* optional JSON array, OpenAI form */
    const char *tool_call_id;      /* optional */
    const char *name;              /* optional */
} mica_chat_message;

/* True if the model file carries a chat template (tokenizer.chat_template). */
bool mica_model_has_chat_template(const mica_model *model);

/*
 * Renders a conversation into prompt text with the model's own chat template
 * (a sandboxed Jinja renderer, configured as Hugging Face's
 * apply_chat_template), or with a ChatML fallback when the model has none
 * (*used_fallback set to true; may be NULL). tools_json: NULL or a JSON array
 * of tool definitions; extra_json: NULL or a JSON object of extra template
 * variables such as {"enable_thinking": false}. The template sees the model's
 * BOS and EOS texts as bos_token and eos_token.
 * On success *out is a malloc'd NUL-terminated string of *out_len bytes (free
 * with free()). Returns MICA_OK, MICA_ERR_INVALID_ARG (bad message or JSON,
 * or the template raised an exception), MICA_ERR_FORMAT (the template is
 * malformed or failed), MICA_ERR_LIMIT (the template exceeded a time, size or
 * depth bound), MICA_ERR_NOMEM, with a message in err.
 * Thread-safe: several threads may render with one model.
 */
mica_status mica_chat_render(const mica_model *model, const mica_chat_message *msgs, size_t n_msgs,
                             const char *tools_json, bool add_generation_prompt,
                             const char *extra_json, char **out, size_t *out_len,
                             bool *used_fallback, char *err, size_t err_cap);

/* ---- session ---- */

typedef struct mica_session mica_session;

typedef struct mica_session_params {
    int32_t n_ctx;     /* context length in tokens; 0 = the model's training context, capped at 4096 */
    int32_t n_threads; /* worker threads; 0 = number of online CPUs */
    int32_t n_batch;   /* prompt tokens evaluated per batch; 0 = 512 */
    int32_t kv_type;   /* a mica_kv_type: element type of the KV-cache rows; 0 = F32 */
} mica_session_params;

/*
 * Element types of the key/value cache. F32 is exact. F16 halves the cache
 * (rounding to 11 significant bits). Q8_0 stores blocks of 32 values as one
 * f16 scale and 32 int8 (34 bytes for 128 of F32: 0.27x), each value
 * rounded to within half a step of max|block|/127; keys and values are
 * dequantised when attention reads them. Q8_0 needs head sizes (DeepSeek:
 * the latent width) that are multiples of 32; otherwise session creation
 * fails with MICA_ERR_INVALID_ARG.
 */
typedef enum mica_kv_type {
    MICA_KV_F32 = 0,
    MICA_KV_F16 = 1,
    MICA_KV_Q8_0 = 2,
} mica_kv_type;

/* "f32", "f16", "q8_0"; "?" for an unknown value. Static. */
const char *mica_kv_type_name(int32_t kv_type);

/* Parses "f32", "f16" or "q8_0" (case-insensitive). Returns false if unknown. */
bool mica_kv_type_parse(const char *name, int32_t *out);

/*
 * Bytes of key/value cache a session of n_ctx positions with rows of
 * kv_type allocates (the default batch of 512); mica_model_kv_bytes is this
 * for F32. 0 for a vocabulary-only model, n_ctx <= 0 or an unknown type;
 * UINT64_MAX if the size overflows or the type cannot hold the model's rows.
 * Thread-safe.
 */
uint64_t mica_model_kv_bytes_typed(const mica_model *model, int32_t n_ctx, int32_t kv_type);

mica_session_params mica_session_params_default(void);

/*
 * Creates a session over `model` (borrowed: the model must outlive the
 * session). Allocates the KV cache and scratch for n_ctx tokens.
 * Returns MICA_OK, MICA_ERR_NOMEM, MICA_ERR_INVALID_ARG (n_ctx or n_threads
 * out of range) with a message in err.
 */
mica_status mica_session_create(mica_model *model, const mica_session_params *params,
                                mica_session **out, char *err, size_t err_cap);

/* Frees a session. Accepts NULL. */
void mica_session_free(mica_session *s);

/*
 * Evaluates n tokens at positions n_past .. n_past+n-1 and appends them to
 * the KV cache. If all_logits is not NULL it receives n × n_vocab floats,
 * row-major, one row per token; otherwise only the last token's logits are
 * kept (mica_session_logits).
 * Returns MICA_OK, MICA_ERR_LIMIT (context full: nothing is evaluated),
 * MICA_ERR_INVALID_ARG (a token id out of range), MICA_ERR_NOMEM,
 * MICA_ERR_IO (a streamed model could not read an expert from its file, e.g.
 * the file was truncated: none of the n tokens is kept, there are no
 * logits, the message names the file and offset; the session stays usable).
 */
mica_status mica_session_decode(mica_session *s, const int32_t *tokens, int32_t n,
                                float *all_logits);

/* Logits of the last evaluated token (n_vocab floats), borrowed until the next decode. */
const float *mica_session_logits(const mica_session *s);

/* Number of tokens in the KV cache. */
int32_t mica_session_n_past(const mica_session *s);
int32_t mica_session_n_ctx(const mica_session *s);

/* Drops every cached token. */
void mica_session_reset(mica_session *s);

/*
 * Keeps the first n_keep cached tokens and drops the rest, so a conversation
 * can continue from a common prefix. Returns MICA_OK or MICA_ERR_INVALID_ARG
 * (n_keep negative or above mica_session_n_past).
 */
mica_status mica_session_truncate(mica_session *s, int32_t n_keep);

/* Message of the last failed call on this session; "" if none. Borrowed. */
const char *mica_session_errmsg(const mica_session *s);

/* Bytes of key/value rows the session's cache allocated (measured at creation). */
uint64_t mica_session_kv_bytes(const mica_session *s);

/* ---- sampler ---- */

typedef struct mica_sampler mica_sampler;

typedef struct mica_sampler_params {
    float temperature;    /* 0: greedy (argmax); negative is invalid; default 0.8 */
    int32_t top_k;        /* keep the k most likely tokens; <= 0 disables; default 40 */
    float top_p;          /* nucleus: smallest set with mass >= top_p; 1 disables; default 0.95 */
    float min_p;          /* drop tokens with p < min_p * p_max; 0 disables; default 0.05 */
    float repeat_penalty; /* CTRL-style penalty on recent tokens; 1 disables; default 1.0 */
    int32_t repeat_last_n;/* how many recent tokens the penalty looks at; default 64 */
    uint64_t seed;        /* RNG seed; the same seed gives the same tokens; default 0 */
} mica_sampler_params;

mica_sampler_params mica_sampler_params_default(void);

/* Creates a sampler. Returns MICA_OK, MICA_ERR_NOMEM or MICA_ERR_INVALID_ARG. */
mica_status mica_sampler_create(const mica_sampler_params *params, mica_sampler **out);
void mica_sampler_free(mica_sampler *smp);

/*
 * Picks a token from n_vocab logits. The logits are not modified. Sampling
 * order: repetition penalty, then greedy if temperature is 0; otherwise
 * top-k, temperature, softmax, top-p, min-p, and a draw from the seeded RNG.
 */
int32_t mica_sampler_sample(mica_sampler *smp, const float *logits, int32_t n_vocab);

/* Records a token in the sampler's history (for the repetition penalty) and
 * advances the sampler's grammar, if one is set. */
void mica_sampler_accept(mica_sampler *smp, int32_t token);

/* ---- constrained decoding (JSON Schema grammars) ---- */

/*
 * The vocabulary as a grammar sees it: every token's bytes (its piece with
 * no previous token) in a trie, and which tokens end a generation (EOG;
 * allowed only where the grammar may end). Control tokens that do not end a
 * generation are never allowed under a grammar. Build it once per model and
 * share it: it is immutable and thread-safe; the model must outlive it.
 */
typedef struct mica_grammar_vocab mica_grammar_vocab;

/* Returns MICA_OK, MICA_ERR_INVALID_ARG (no vocabulary) or MICA_ERR_NOMEM,
 * with a message in err. Free with mica_grammar_vocab_free. */
mica_status mica_grammar_vocab_create(const mica_model *model, mica_grammar_vocab **out, char *err,
                                      size_t err_cap);
void mica_grammar_vocab_free(mica_grammar_vocab *gv);

/*
 * A grammar over the generated text and its matching state. The language:
 *   prefix VALUE suffix (repeat_prefix VALUE suffix){0, max_values - 1}
 * where VALUE is a JSON text that validates against json_schema (the subset
 * and its limits are described in src/sample/json_schema.h: object,
 * properties, required, additionalProperties, items, minItems, maxItems,
 * minLength, maxLength, format (date, time, date-time, uuid, email, ipv4),
 * minimum/maximum (integers; integral bounds >= 0 for numbers), enum,
 * const, type lists, anyOf, oneOf, local $ref;
 * annotations ignored; other keywords rejected by name). Between JSON tokens
 * the text may have nothing, one space, or a newline and up to 20 spaces or
 * tabs of indentation; nothing around VALUE.
 * With a trigger, text is free until the trigger appears in it; then the
 * grammar constrains what follows, and after a complete sentence the text is
 * free again (tool calls a model opens on its own).
 */
typedef struct mica_grammar mica_grammar;

typedef struct mica_grammar_params {
    const char *json_schema;   /* NUL-terminated JSON Schema; NULL: any JSON object */
    const char *prefix;        /* literal text before the value, or NULL */
    const char *suffix;        /* literal text after each value, or NULL */
    const char *repeat_prefix; /* NULL, or the literal that starts another value */
    int32_t max_values;        /* values at most with repeat_prefix; default 1 (1..64) */
    const char *trigger;       /* NULL: constrained from the start */
} mica_grammar_params;

mica_grammar_params mica_grammar_params_default(void);

/*
 * Compiles a grammar for vocab (borrowed: it must outlive the grammar).
 * Returns MICA_OK, MICA_ERR_INVALID_ARG (the schema is not JSON or not a
 * schema, or cannot be satisfied), MICA_ERR_UNSUPPORTED (a keyword the
 * grammar cannot honour; the message names it and its location, e.g.
 * "unsupported JSON Schema keyword 'pattern' at #/properties/zip"),
 * MICA_ERR_LIMIT (size or depth caps) or MICA_ERR_NOMEM, with a message in
 * err. Free with mica_grammar_free. One grammar belongs to one thread.
 */
mica_status mica_grammar_create(const mica_grammar_vocab *vocab, const mica_grammar_params *params,
                                mica_grammar **out, char *err, size_t err_cap);
void mica_grammar_free(mica_grammar *g);
/* Back to the start (for the next choice or request). */
void mica_grammar_reset(mica_grammar *g);
/* Advances by a generated token; false if the token is not allowed (the
 * state is then unchanged). */
bool mica_grammar_accept(mica_grammar *g, int32_t token);
/* True if token is allowed next. */
bool mica_grammar_allows(mica_grammar *g, int32_t token);
/* Sets logits[i] = -inf for every token not allowed next; returns how many
 * are allowed (n_vocab when the grammar is not engaged; -1 out of memory). */
int32_t mica_grammar_mask(mica_grammar *g, float *logits, int32_t n_vocab);
/* The text so far is a complete sentence (always true when not engaged). */
bool mica_grammar_can_end(const mica_grammar *g);
/* Complete and nothing may follow: only an end-of-generation token. */
bool mica_grammar_done(const mica_grammar *g);

/*
 * Attaches a grammar to a sampler (borrowed; NULL detaches). Then
 * mica_sampler_sample returns only allowed tokens: it samples as usual and
 * keeps the token if the grammar allows it; otherwise it masks the logits
 * (mica_grammar_mask) and samples again from the allowed tokens, which
 * equals sampling from the masked distribution when no truncation (top-k,
 * top-p, min-p) applies. mica_sampler_accept advances the grammar.
 */
void mica_sampler_set_grammar(mica_sampler *smp, mica_grammar *g);

/* ---- conversion ---- */

/*
 * Converts a llama2.c checkpoint (legacy version-0 .bin) and its tokenizer.bin
 * into a GGUF file of architecture "llama" with a SentencePiece-style
 * vocabulary. Returns MICA_OK, MICA_ERR_IO, MICA_ERR_FORMAT or MICA_ERR_NOMEM,
 * with a message in err.
 */
mica_status mica_convert_llama2c(const char *checkpoint_path, const char *tokenizer_path,
                                 const char *out_path, char *err, size_t err_cap);

#ifdef __cplusplus
}
#endif

#endif /* MICA_H */
