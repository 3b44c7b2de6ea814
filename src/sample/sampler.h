/*
 * sampler.h - from logits to a token (layer: sample; depends on base only).
 *
 * Order: repetition penalty over the last repeat_last_n accepted tokens
 * (logit / penalty if positive, * penalty if negative), then greedy argmax
 * when temperature <= 0 (lowest id wins ties); otherwise top-k, temperature,
 * softmax, top-p, min-p, renormalise, and one draw from a seeded xoshiro256**
 * generator. Same params and seed and same logits give the same tokens.
 * The caller's logits are never modified; scratch is owned by the sampler and
 * allocated once for the largest n_vocab seen (no allocation per token after
 * the first call with a given size).
 * Thread safety: one sampler per thread.
 */
#ifndef MICA_SAMPLER_H
#define MICA_SAMPLER_H

#include <stdint.h>

#include "mica_internal.h"

/* The public type mica_sampler (mica.h) is defined in sampler.c. */

/* Argmax with lowest-index tie-break; n > 0. */
int32_t sampler_argmax(const float *logits, int32_t n);

#endif /* MICA_SAMPLER_H */
