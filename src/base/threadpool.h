/*
 * threadpool.h - a fixed pool of worker threads that run one task function on
 * every worker at once (layer: base; depends on libc, pthreads and C11
 * atomics only).
 *
 * Model: pool_run(p, fn, arg) calls fn(arg, ith, nth) exactly once for every
 * ith in 0..nth-1, where nth = pool_n_threads(p). The calling thread is
 * worker 0 and runs ith 0 itself; the other nth-1 workers are OS threads
 * started by pool_create. pool_run returns only after every call has
 * returned, and everything the workers wrote before returning is visible to
 * the caller afterwards (and everything the caller wrote before pool_run is
 * visible to the workers).
 *
 * Cost: idle workers spin briefly on an atomic generation counter and then
 * sleep on a condition variable, so a pool between runs does not burn CPU,
 * while back-to-back runs (one per matrix product) avoid a sleep/wake round
 * trip. pool_run never allocates.
 *
 * Thread safety: a pool belongs to one calling thread at a time. pool_run is
 * not reentrant: a task must not call pool_run on its own pool (asserted).
 */
#ifndef MICA_THREADPOOL_H
#define MICA_THREADPOOL_H

#include <stdint.h>

#include "mica_internal.h"

typedef struct mica_pool mica_pool;

/* A task: called once per worker with that worker's index ith in [0, nth). */
typedef void (*pool_task_fn)(void *arg, int ith, int nth);

/*
 * Creates a pool of n_threads workers (1 <= n_threads <= MICA_MAX_THREADS);
 * the calling thread counts as worker 0, so n_threads-1 OS threads are
 * started. On success *out owns the pool (free with pool_free); on failure
 * *out is untouched and no thread is left running.
 * Returns MICA_OK, MICA_ERR_INVALID_ARG (n_threads out of range, out NULL) or
 * MICA_ERR_NOMEM (memory or threads could not be obtained).
 */
mica_status pool_create(int n_threads, mica_pool **out);

/* Stops and joins the workers and frees the pool. Accepts NULL. Must not be
 * called while a pool_run on this pool is in progress. */
void pool_free(mica_pool *p);

/* Number of workers, the caller included (>= 1). */
int pool_n_threads(const mica_pool *p);

/*
 * Runs fn(arg, ith, nth) once on every worker ith in 0..nth-1 (the caller
 * runs ith 0) and returns when all calls have returned. Not reentrant; no
 * allocation. fn must not be NULL.
 */
void pool_run(mica_pool *p, pool_task_fn fn, void *arg);

/*
 * Balanced contiguous split of [0, n) into nth parts: part ith is
 * [*begin, *end). Parts are in order, cover [0, n) exactly, and their sizes
 * differ by at most one (the first n % nth parts get the extra element).
 * Preconditions: n >= 0, nth >= 1, 0 <= ith < nth.
 */
void pool_split(int64_t n, int ith, int nth, int64_t *begin, int64_t *end);

#endif /* MICA_THREADPOOL_H */
