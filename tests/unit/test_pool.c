/*
 * test_pool.c - unit tests for the worker pool (src/base/threadpool.h).
 *
 * The expected values come from the contract itself: every ith runs exactly
 * once per pool_run, pool_split tiles [0, n) with sizes floor(n/nth) or
 * ceil(n/nth), and a parallel integer sum equals the serial one exactly.
 * Per-worker results are written to plain (non-atomic) memory on purpose, so
 * a ThreadSanitizer build checks the visibility guarantee of pool_run.
 */
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "base/threadpool.h"
#include "../test.h"

TEST(pool_create_rejects_bad_thread_counts) {
    mica_pool *p = NULL;
    ASSERT_EQ(pool_create(0, &p), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(pool_create(-1, &p), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(pool_create(MICA_MAX_THREADS + 1, &p), MICA_ERR_INVALID_ARG);
    ASSERT_EQ(pool_create(4, NULL), MICA_ERR_INVALID_ARG);
    ASSERT_TRUE(p == NULL); /* out-parameter untouched on failure */
    ASSERT_OK(pool_create(1, &p));
    ASSERT_EQ(pool_n_threads(p), 1);
    pool_free(p);
    pool_free(NULL);
}

typedef struct {
    int counts[16];  /* calls per ith, written only by worker ith */
    int bad_nth[16]; /* calls that saw a wrong nth */
    int nth;
} count_task;

static void count_fn(void *arg, int ith, int nth) {
    count_task *t = arg;
    if (ith < 0 || ith >= 16) return;
    t->counts[ith]++;
    if (nth != t->nth) t->bad_nth[ith]++;
}

/* Runs the counting task n_runs times, checking after every run that each ith
 * ran exactly once more (so pool_run also returned only after all finished). */
static bool check_each_ith_once(int n_threads, int n_runs, bool sleep_between) {
    mica_pool *p = NULL;
    if (pool_create(n_threads, &p) != MICA_OK) {
        test_fail(__FILE__, __LINE__, "pool_create(%d) failed", n_threads);
        return false;
    }
    bool ok = pool_n_threads(p) == n_threads;
    count_task t = {.nth = n_threads};
    for (int r = 0; ok && r < n_runs; r++) {
        if (sleep_between) nanosleep(&(struct timespec){.tv_nsec = 3000000}, NULL);
        pool_run(p, count_fn, &t);
        for (int i = 0; i < 16; i++) {
            int want = i < n_threads ? r + 1 : 0;
            if (t.counts[i] != want || t.bad_nth[i] != 0) {
                test_fail(__FILE__, __LINE__, "threads %d run %d: ith %d ran %d times (want %d), bad nth %d",
                          n_threads, r, i, t.counts[i], want, t.bad_nth[i]);
                ok = false;
                break;
            }
        }
    }
    pool_free(p);
    return ok;
}

TEST(pool_run_each_ith_once) {
    static const int threads[] = {1, 2, 4, 8};
    for (size_t i = 0; i < sizeof threads / sizeof threads[0]; i++)
        if (!check_each_ith_once(threads[i], 10000, false)) return;
}

/* Pauses between runs let the workers fall asleep on the condition variable,
 * exercising the wake-up path rather than the spin path. */
TEST(pool_run_wakes_sleeping_workers) {
    if (!check_each_ith_once(4, 20, true)) return;
    if (!check_each_ith_once(2, 20, true)) return;
}

TEST(pool_split_tiles_range) {
    static const int64_t big[] = {1000003, 151936, 4096, (int64_t)1 << 40, INT64_MAX / 2};
    for (int nth = 1; nth <= 17; nth++) {
        for (int k = 0; k < 260; k++) {
            int64_t n = k < 255 ? k : big[k - 255];
            int64_t lo = n / nth, hi = lo + (n % nth != 0);
            int64_t prev_end = 0;
            for (int ith = 0; ith < nth; ith++) {
                int64_t b = -1, e = -1;
                pool_split(n, ith, nth, &b, &e);
                ASSERT_EQ(b, prev_end);
                ASSERT_TRUE(e - b == lo || e - b == hi);
                prev_end = e;
            }
            ASSERT_EQ(prev_end, n);
        }
    }
}

typedef struct {
    const int64_t *x; /* (n) */
    int64_t n;
    int64_t partial[8];
} sum_task;

static void sum_fn(void *arg, int ith, int nth) {
    sum_task *t = arg;
    int64_t b, e, s = 0;
    pool_split(t->n, ith, nth, &b, &e);
    for (int64_t i = b; i < e; i++) s += t->x[i];
    t->partial[ith] = s;
}

TEST(pool_parallel_sum_matches_serial) {
    enum { N = 1000003 };
    int64_t *x = malloc(N * sizeof *x);
    ASSERT_TRUE(x != NULL);
    uint64_t st = 12345;
    int64_t serial = 0;
    for (int64_t i = 0; i < N; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (int64_t)(st >> 40) - (1 << 23);
        serial += x[i];
    }
    static const int threads[] = {1, 2, 3, 4, 8};
    for (size_t k = 0; k < sizeof threads / sizeof threads[0]; k++) {
        mica_pool *p = NULL;
        if (pool_create(threads[k], &p) != MICA_OK) { free(x); ASSERT_TRUE(!"pool_create failed"); }
        sum_task t = {.x = x, .n = N};
        for (int rep = 0; rep < 3; rep++) {
            for (int i = 0; i < 8; i++) t.partial[i] = -1;
            pool_run(p, sum_fn, &t);
            int64_t s = 0;
            for (int i = 0; i < threads[k]; i++) s += t.partial[i];
            if (s != serial) { pool_free(p); free(x); ASSERT_EQ(s, serial); }
        }
        pool_free(p);
    }
    free(x);
}

static void noop_fn(void *arg, int ith, int nth) {
    (void)arg; (void)ith; (void)nth;
}

/* Under ASan (detect_leaks) this also checks that pool_free releases
 * everything, including pools freed before their workers ever ran. */
TEST(pool_create_free_repeatedly) {
    for (int i = 0; i < 200; i++) {
        mica_pool *p = NULL;
        int n = 1 + i % 8;
        ASSERT_OK(pool_create(n, &p));
        ASSERT_EQ(pool_n_threads(p), n);
        for (int r = 0; r < i % 3; r++) pool_run(p, noop_fn, NULL);
        pool_free(p);
    }
}
