/*
 * threadpool.c - the fixed worker pool (layer: base). See threadpool.h for
 * the contract.
 *
 * Protocol. The caller publishes (fn, arg), sets n_pending to nth-1 and bumps
 * the generation counter `gen`. Each worker remembers the last generation it
 * served; it spins for a while waiting for `gen` to move, then sleeps on
 * cv_work. When it has run its share it decrements n_pending; the caller,
 * after running ith 0, spins until n_pending reaches zero, then sleeps on
 * cv_done. Because the caller waits for every worker before the next bump,
 * each worker sees every generation exactly once.
 *
 * Sleeping without lost wake-ups, and without taking the mutex on every run:
 * a sleeper announces itself in a counter (n_sleeping / caller_sleeping) with
 * a sequentially consistent store and then re-reads the condition; the waker
 * changes the condition with a sequentially consistent operation and then
 * reads the counter. Sequential consistency guarantees at least one of them
 * sees the other's write, so either the sleeper does not sleep or the waker
 * signals; the sleeper holds the mutex from its re-check until cond_wait
 * releases it, and the waker takes the mutex before signalling, so the signal
 * cannot fall between the re-check and the wait.
 */
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "base/threadpool.h"

/* Iterations of the busy-wait before a worker or the caller goes to sleep.
 * With a pause instruction per iteration this is on the order of 100 us. */
#define POOL_SPIN_ITERS 4096

#define POOL_CACHE_LINE 64
#define POOL_YIELD_EVERY 64 /* power of two */

typedef struct pool_worker {
    mica_pool *pool;
    int ith;
} pool_worker;

struct mica_pool {
    /* Written by the caller, read by workers: task of the current generation
     * (published by the release/seq_cst update of gen). */
    pool_task_fn fn;
    void *arg;
    int n_threads;
    int n_started;         /* OS threads successfully started (<= n_threads-1) */
    pthread_t *threads;    /* (n_threads-1) */
    pool_worker *workers;  /* (n_threads-1), worker i+1 */
    pthread_mutex_t mu;
    pthread_cond_t cv_work; /* workers sleep here waiting for gen to move */
    pthread_cond_t cv_done; /* the caller sleeps here waiting for n_pending == 0 */
    bool has_sync;          /* mu and the condition variables are initialised */
    atomic_bool busy;       /* a pool_run is in progress (reentrancy check) */
    atomic_bool stop;       /* set with the final bump of gen by pool_free */

    alignas(POOL_CACHE_LINE) atomic_uint_fast64_t gen;
    atomic_int n_sleeping;  /* workers inside (or about to enter) cond_wait */

    alignas(POOL_CACHE_LINE) atomic_int n_pending; /* workers still running this generation */
    atomic_int caller_sleeping;
};

static inline void pool_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* One step of a busy-wait: a pause, and now and then a yield of the CPU so
 * that a pool with more workers than free cores still makes progress (the
 * thread being waited for may be descheduled behind the spinner). */
static inline void pool_spin_step(int i) {
    if ((i & (POOL_YIELD_EVERY - 1)) == POOL_YIELD_EVERY - 1) sched_yield();
    else pool_cpu_relax();
}

/* Blocks until p->gen differs from seen; returns the new value. */
static uint_fast64_t pool_wait_gen(mica_pool *p, uint_fast64_t seen) {
    for (int i = 0; i < POOL_SPIN_ITERS; i++) {
        uint_fast64_t g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen) return g;
        pool_spin_step(i);
    }
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->n_sleeping, 1); /* seq_cst: see the file comment */
    uint_fast64_t g;
    while ((g = atomic_load(&p->gen)) == seen) pthread_cond_wait(&p->cv_work, &p->mu);
    atomic_fetch_sub(&p->n_sleeping, 1);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *pool_worker_main(void *varg) {
    pool_worker *w = varg;
    mica_pool *p = w->pool;
    uint_fast64_t seen = 0;
    for (;;) {
        seen = pool_wait_gen(p, seen);
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) break;
        p->fn(p->arg, w->ith, p->n_threads);
        if (atomic_fetch_sub(&p->n_pending, 1) == 1 && atomic_load(&p->caller_sleeping) > 0) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->cv_done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

/* Publishes a new generation and wakes sleeping workers. */
static void pool_bump_gen(mica_pool *p) {
    atomic_fetch_add(&p->gen, 1); /* seq_cst: see the file comment */
    if (atomic_load(&p->n_sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv_work);
        pthread_mutex_unlock(&p->mu);
    }
}

/* Blocks until every worker of the current generation has finished. */
static void pool_wait_done(mica_pool *p) {
    for (int i = 0; i < POOL_SPIN_ITERS; i++) {
        if (atomic_load_explicit(&p->n_pending, memory_order_acquire) == 0) return;
        pool_spin_step(i);
    }
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->caller_sleeping, 1);
    while (atomic_load(&p->n_pending) != 0) pthread_cond_wait(&p->cv_done, &p->mu);
    atomic_store(&p->caller_sleeping, 0);
    pthread_mutex_unlock(&p->mu);
}

mica_status pool_create(int n_threads, mica_pool **out) {
    if (!out || n_threads < 1 || n_threads > MICA_MAX_THREADS) return MICA_ERR_INVALID_ARG;
    mica_pool *p = mica_aligned_alloc(POOL_CACHE_LINE, sizeof *p);
    if (!p) return MICA_ERR_NOMEM;
    *p = (mica_pool){0};
    p->n_threads = n_threads;
    atomic_init(&p->busy, false);
    atomic_init(&p->stop, false);
    atomic_init(&p->gen, 0);
    atomic_init(&p->n_sleeping, 0);
    atomic_init(&p->n_pending, 0);
    atomic_init(&p->caller_sleeping, 0);

    if (pthread_mutex_init(&p->mu, NULL) != 0) goto fail;
    if (pthread_cond_init(&p->cv_work, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        goto fail;
    }
    if (pthread_cond_init(&p->cv_done, NULL) != 0) {
        pthread_cond_destroy(&p->cv_work);
        pthread_mutex_destroy(&p->mu);
        goto fail;
    }
    p->has_sync = true;

    int n_os = n_threads - 1;
    if (n_os > 0) {
        p->threads = mica_calloc((size_t)n_os, sizeof *p->threads);
        p->workers = mica_calloc((size_t)n_os, sizeof *p->workers);
        if (!p->threads || !p->workers) goto fail;
        for (int i = 0; i < n_os; i++) {
            p->workers[i] = (pool_worker){.pool = p, .ith = i + 1};
            if (pthread_create(&p->threads[i], NULL, pool_worker_main, &p->workers[i]) != 0) goto fail;
            p->n_started++;
        }
    }
    *out = p;
    return MICA_OK;

fail:
    pool_free(p);
    return MICA_ERR_NOMEM;
}

void pool_free(mica_pool *p) {
    if (!p) return;
    MICA_ASSERT(!atomic_load(&p->busy));
    if (p->n_started > 0) {
        atomic_store_explicit(&p->stop, true, memory_order_release);
        pool_bump_gen(p);
        for (int i = 0; i < p->n_started; i++) pthread_join(p->threads[i], NULL);
    }
    if (p->has_sync) {
        pthread_cond_destroy(&p->cv_done);
        pthread_cond_destroy(&p->cv_work);
        pthread_mutex_destroy(&p->mu);
    }
    mica_free(p->workers);
    mica_free(p->threads);
    mica_free(p);
}

int pool_n_threads(const mica_pool *p) { return p->n_threads; }

void pool_run(mica_pool *p, pool_task_fn fn, void *arg) {
    MICA_ASSERT(p && fn);
    bool was_busy = atomic_exchange_explicit(&p->busy, true, memory_order_acquire);
    MICA_ASSERT(!was_busy); /* pool_run is not reentrant */
    if (p->n_threads > 1) {
        p->fn = fn;
        p->arg = arg;
        atomic_store_explicit(&p->n_pending, p->n_threads - 1, memory_order_relaxed);
        pool_bump_gen(p); /* publishes fn, arg and n_pending */
        fn(arg, 0, p->n_threads);
        pool_wait_done(p);
    } else {
        fn(arg, 0, 1);
    }
    atomic_store_explicit(&p->busy, false, memory_order_release);
}

void pool_split(int64_t n, int ith, int nth, int64_t *begin, int64_t *end) {
    MICA_ASSERT(n >= 0 && nth >= 1 && ith >= 0 && ith < nth);
    int64_t base = n / nth, rem = n % nth;
    int64_t b = (int64_t)ith * base + (ith < rem ? ith : rem);
    *begin = b;
    *end = b + base + (ith < rem ? 1 : 0);
}
