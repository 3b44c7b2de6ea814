/*
 * expert_usage.h - how often each routed expert of a model was used, kept
 * between runs in a small file next to the model, so that a streamed model
 * can pin its most-used experts at load (the hot set; expert_store.h).
 * Layer: model; depends on base and libc only.
 *
 * Where the file is (eusage_path): MODEL.usage beside the model file (for
 * "m.gguf": "m.gguf.usage") when the model's directory is writable;
 * otherwise HOME/.cache/mica/usage/NAME.HASH.usage, HOME taken from the
 * password database (never from the environment), NAME the model's file
 * name and HASH its identity. The same rule picks the file to read and the
 * file to write.
 *
 * The file (all integers little-endian):
 *   0   "MICAUSE1"                     magic, 8 bytes
 *   8   u32 version (1)
 *   12  u32 n_layer                    1..EUSAGE_MAX_LAYERS
 *   16  u64 model file size            } the model's identity
 *   24  u64 model hash                 } (eusage_identity)
 *   32  u64 n_total                    sum of n_expert, 0..EUSAGE_MAX_EXPERTS
 *   40  u32 n_expert[n_layer]
 *   ..  f32 count[n_total]             layer 0's experts, then layer 1's, ...
 *   ..  u64 FNV-1a 64 of every byte before it
 * A file with another magic, version, layout, identity, a bad checksum, a
 * negative or non-finite count, or a length that is not exactly this is
 * rejected with a reason (eusage_read); it is then ignored, never fatal.
 *
 * Counts decay: each run that saves multiplies the old counts by
 * 0.5^(tokens / EUSAGE_HALF_LIFE_TOKENS) before adding its own lookups
 * (tokens = that run's lookups / lookups per token), so the hot set follows
 * how the model is used now.
 *
 * Thread safety: the functions share no state.
 */
#ifndef MICA_EXPERT_USAGE_H
#define MICA_EXPERT_USAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mica_internal.h"

#define EUSAGE_MAX_LAYERS  4096
#define EUSAGE_MAX_EXPERTS (1 << 24)
#define EUSAGE_HALF_LIFE_TOKENS 1024.0
#define EUSAGE_HEADER_HASH_MAX (4u << 20) /* header bytes hashed at most */

/* A model file's identity: its size and a hash of its header (up to
 * EUSAGE_HEADER_HASH_MAX bytes) and of 4 KiB from its middle and its end. */
typedef struct eusage_id {
    uint64_t size;
    uint64_t hash;
} eusage_id;

/*
 * Computes the identity of the model file at path, whose header (metadata
 * and tensor table) is header_bytes long. MICA_ERR_IO if it cannot be read.
 */
mica_status eusage_identity(const char *path, uint64_t header_bytes, eusage_id *out, mica_err *err);

/*
 * The usage file's path for the model at model_path (rule above) into
 * out[cap]. Returns false if there is none (no writable place, path too
 * long): then usage is simply not kept.
 */
bool eusage_path(const char *model_path, const eusage_id *id, char *out, size_t cap);

/*
 * Reads the file at path into counts[sum n_expert] (the layout must be
 * n_expert[0..n_layer)). Returns MICA_OK; MICA_ERR_IO with *absent true if
 * there is no file; otherwise MICA_ERR_FORMAT (or MICA_ERR_IO) with the
 * reason in err ("written for another model", "truncated", "checksum
 * mismatch", ...). counts is written only on success.
 */
mica_status eusage_read(const char *path, const eusage_id *id, const int32_t *n_expert, int32_t n_layer,
                        float *counts, bool *absent, mica_err *err);

/*
 * Writes the file atomically (a temporary file beside it, then rename),
 * creating the cache directory if the path is under it. MICA_ERR_IO on any
 * failure (nothing is left behind); callers ignore it.
 */
mica_status eusage_write(const char *path, const eusage_id *id, const int32_t *n_expert, int32_t n_layer,
                         const float *counts, mica_err *err);

/*
 * counts[i] = counts[i] * 0.5^(tokens / EUSAGE_HALF_LIFE_TOKENS) + fresh[i]
 * for i < n, where tokens = sum(fresh) / lookups_per_token (>= 1).
 */
void eusage_merge(float *counts, const uint32_t *fresh, int64_t n, double lookups_per_token);

#endif /* MICA_EXPERT_USAGE_H */
