/*
 * expert_store.c - the expert cache: a fixed arena of slots, a direct map
 * (layer, expert) -> slot, an LRU list of evictable slots, leases, and a pool
 * of I/O threads reading experts from an estore_source (see expert_store.h).
 * Layer: model.
 *
 * Slot states: EMPTY (no expert), LOADING (a read is queued or in flight),
 * READY (holds the expert's bytes), FAILED (its read failed; it becomes
 * EMPTY when its last lease goes). The LRU list holds exactly the slots with
 * no lease that are not LOADING; EMPTY slots go to its head (used first),
 * released and freshly loaded slots to its tail. Everything below is
 * guarded by one mutex; reads run outside it.
 */
#include "model/expert_store.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define ES_MIN_ALIGN 64u      /* parts start 64-byte aligned in a slot */
#define ES_MAX_EXPERTS (1 << 16)

enum es_state { ES_EMPTY, ES_LOADING, ES_READY, ES_FAILED };

typedef struct es_slot {
    int32_t layer, expert;    /* the expert held (layer -1: none) */
    int32_t n_lease;
    uint8_t state;            /* enum es_state */
    bool prefetched;          /* loaded by prefetch and not yet looked up */
    bool needed;              /* ... by a prefetch of experts the caller needs now */
    bool in_lru;
    int32_t prev, next;       /* LRU links (-1: none) */
    uint64_t data_off[ESTORE_PARTS]; /* where each part's bytes start in the slot */
} es_slot;

struct expert_store {
    estore_source *src;
    int32_t n_layer;
    estore_layer *layers;     /* [n_layer] */
    uint64_t (*part_base)[ESTORE_PARTS]; /* [n_layer][part]: where a part's read lands in a slot */
    int64_t *map_base;        /* [n_layer]: first map index of the layer */
    int32_t *map;             /* [sum n_expert]: slot of (layer, expert) or -1 */
    int32_t n_slots;
    uint64_t slot_bytes;
    uint8_t *arena;           /* n_slots * slot_bytes, aligned */
    es_slot *slots;

    pthread_mutex_t mu;
    pthread_cond_t cv;        /* a read completed, or a slot became evictable */
    pthread_cond_t io_cv;     /* work for the I/O threads, or stop */
    int32_t lru_head, lru_tail;
    int32_t *queue;           /* ring of slots to read: [n_slots] */
    int32_t q_head, q_len;
    int32_t in_flight;
    uint64_t busy_since_ns;
    bool stop;
    int32_t n_threads;
    pthread_t *threads;
    bool mu_ok, cv_ok, io_cv_ok;

    estore_stats st;
    uint64_t n_failures;
    mica_err last_err;
};

static uint64_t es_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool es_align_up(uint64_t v, uint64_t a, uint64_t *out) {
    uint64_t t;
    if (!mica_add_ok(v, a - 1, &t)) return false;
    *out = t / a * a;
    return true;
}

/* Bytes reserved in a slot for one part of `bytes` bytes read with `align`. */
static bool es_part_reserve(uint64_t bytes, size_t align, uint64_t *out) {
    uint64_t len = bytes;
    if (align > 1 && (!mica_add_ok(bytes, align - 1, &len) || !es_align_up(len, align, &len))) return false;
    return es_align_up(len, MICA_MAX((uint64_t)align, ES_MIN_ALIGN), out);
}

uint64_t expert_store_slot_bytes(const estore_layer *layers, int32_t n_layer, size_t align) {
    uint64_t best = 0;
    for (int32_t l = 0; l < n_layer; l++) {
        if (layers[l].n_expert <= 0) continue;
        uint64_t sum = 0, r;
        for (int p = 0; p < ESTORE_PARTS; p++) {
            if (!layers[l].part_bytes[p]) continue;
            if (!es_part_reserve(layers[l].part_bytes[p], align, &r) || !mica_add_ok(sum, r, &sum))
                return UINT64_MAX;
        }
        best = MICA_MAX(best, sum);
    }
    return best;
}

/* ---- LRU list (mutex held) ---- */

static void es_lru_remove(expert_store *s, int32_t i) {
    es_slot *sl = &s->slots[i];
    MICA_ASSERT(sl->in_lru);
    if (sl->prev >= 0) s->slots[sl->prev].next = sl->next;
    else s->lru_head = sl->next;
    if (sl->next >= 0) s->slots[sl->next].prev = sl->prev;
    else s->lru_tail = sl->prev;
    sl->prev = sl->next = -1;
    sl->in_lru = false;
}

static void es_lru_push(expert_store *s, int32_t i, bool at_head) {
    es_slot *sl = &s->slots[i];
    MICA_ASSERT(!sl->in_lru && sl->n_lease == 0 && sl->state != ES_LOADING);
    sl->in_lru = true;
    if (at_head) {
        sl->prev = -1;
        sl->next = s->lru_head;
        if (s->lru_head >= 0) s->slots[s->lru_head].prev = i;
        else s->lru_tail = i;
        s->lru_head = i;
    } else {
        sl->next = -1;
        sl->prev = s->lru_tail;
        if (s->lru_tail >= 0) s->slots[s->lru_tail].next = i;
        else s->lru_head = i;
        s->lru_tail = i;
    }
}

/* Forgets the expert a slot holds (mutex held). */
static void es_unmap(expert_store *s, es_slot *sl) {
    if (sl->layer >= 0) {
        s->map[s->map_base[sl->layer] + sl->expert] = -1;
        s->st.resident_slots--;
    }
    sl->layer = sl->expert = -1;
    sl->state = ES_EMPTY;
    sl->prefetched = false;
}

/* Takes slot i (from the LRU list) for (layer, e) and queues its read (mutex held). */
static void es_assign(expert_store *s, int32_t i, int32_t layer, int32_t e, bool prefetch, bool needed) {
    es_slot *sl = &s->slots[i];
    es_lru_remove(s, i);
    if (sl->layer >= 0) s->st.evictions++;
    es_unmap(s, sl);
    sl->layer = layer;
    sl->expert = e;
    sl->state = ES_LOADING;
    sl->prefetched = prefetch;
    sl->needed = needed;
    s->map[s->map_base[layer] + e] = i;
    s->st.resident_slots++;
    MICA_ASSERT(s->q_len < s->n_slots);
    s->queue[(s->q_head + s->q_len) % s->n_slots] = i;
    s->q_len++;
}

/* A slot's last lease went, or its read finished with no lease (mutex held). */
static void es_settle(expert_store *s, int32_t i) {
    es_slot *sl = &s->slots[i];
    if (sl->n_lease > 0 || sl->state == ES_LOADING) return;
    if (sl->state == ES_FAILED) {
        es_unmap(s, sl);
        es_lru_push(s, i, true);
    } else {
        es_lru_push(s, i, false);
    }
    pthread_cond_broadcast(&s->cv);
}

/* ---- I/O threads ---- */

/* Reads slot i's expert; returns the status (message in *err). No mutex held. */
static mica_status es_read_expert(expert_store *s, int32_t i, uint64_t *bytes, mica_err *err) {
    es_slot *sl = &s->slots[i];
    const estore_layer *L = &s->layers[sl->layer];
    const uint64_t A = s->src->align;
    uint8_t *base = s->arena + (uint64_t)i * s->slot_bytes;
    for (int p = 0; p < ESTORE_PARTS; p++) {
        const uint64_t nb = L->part_bytes[p];
        if (!nb) continue;
        const uint64_t off = L->part_off[p] + (uint64_t)sl->expert * nb;
        const uint64_t a_off = off / A * A;
        const uint64_t a_end = (off + nb + A - 1) / A * A; /* in range: checked at create */
        size_t got = 0;
        mica_status st = s->src->read_at(s->src, base + s->part_base[sl->layer][p], a_off,
                                         (size_t)(a_end - a_off), (size_t)(off + nb - a_off), &got, err);
        if (st) return st;
        *bytes += got;
        sl->data_off[p] = s->part_base[sl->layer][p] + (off - a_off);
    }
    return MICA_OK;
}

static void *es_io_main(void *arg) {
    expert_store *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stop && s->q_len == 0) pthread_cond_wait(&s->io_cv, &s->mu);
        if (s->q_len == 0) break; /* stop, and nothing left to read */
        const int32_t i = s->queue[s->q_head];
        s->q_head = (s->q_head + 1) % s->n_slots;
        s->q_len--;
        if (s->in_flight++ == 0) s->busy_since_ns = es_now_ns();
        pthread_mutex_unlock(&s->mu);

        mica_err err = {0};
        uint64_t bytes = 0;
        mica_status st = es_read_expert(s, i, &bytes, &err);

        pthread_mutex_lock(&s->mu);
        if (--s->in_flight == 0) s->st.io_busy_ns += es_now_ns() - s->busy_since_ns;
        s->st.bytes_read += bytes;
        es_slot *sl = &s->slots[i];
        if (st) {
            sl->state = ES_FAILED;
            s->st.read_errors++;
            s->last_err = err;
        } else {
            sl->state = ES_READY;
            s->st.reads++;
        }
        es_settle(s, i);
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- create / free ---- */

static mica_status es_check_layers(const estore_params *p, uint64_t src_size, mica_err *err) {
    if (p->n_layer <= 0 || !p->layers)
        return mica_err_set(err, MICA_ERR_INVALID_ARG, "expert store: no layers");
    if (p->n_io_threads < 0 || p->n_io_threads > ESTORE_MAX_IO_THREADS)
        return mica_err_set(err, MICA_ERR_INVALID_ARG, "expert store: %d I/O threads out of range (1..%d)",
                            p->n_io_threads, ESTORE_MAX_IO_THREADS);
    for (int32_t l = 0; l < p->n_layer; l++) {
        const estore_layer *L = &p->layers[l];
        if (L->n_expert < 0 || L->n_expert > ES_MAX_EXPERTS)
            return mica_err_set(err, MICA_ERR_INVALID_ARG, "expert store: layer %d: %d experts", l, L->n_expert);
        for (int q = 0; q < ESTORE_PARTS && L->n_expert > 0; q++) {
            uint64_t span, end;
            if (!mica_mul_ok(L->part_bytes[q], (uint64_t)L->n_expert, &span) ||
                !mica_add_ok(L->part_off[q], span, &end) || end > src_size)
                return mica_err_set(err, MICA_ERR_FORMAT,
                                    "expert store: layer %d part %d: experts end past the file (%" PRIu64
                                    " bytes)", l, q, src_size);
        }
    }
    return MICA_OK;
}

mica_status expert_store_create(const estore_params *p, estore_source *src, uint64_t src_size,
                                expert_store **out, mica_err *err) {
    mica_status st = es_check_layers(p, src_size, err);
    expert_store *s = NULL;
    if (st) goto fail_src;
    const uint64_t slot_bytes = expert_store_slot_bytes(p->layers, p->n_layer, src->align);
    if (slot_bytes == 0) {
        st = mica_err_set(err, MICA_ERR_INVALID_ARG, "expert store: no layer has experts");
        goto fail_src;
    }
    if (slot_bytes == UINT64_MAX || p->cache_bytes / slot_bytes < 1) {
        st = mica_err_set(err, MICA_ERR_LIMIT,
                          "expert cache of %" PRIu64 " bytes holds no expert: it needs at least %" PRIu64
                          " bytes (one slot)", p->cache_bytes, slot_bytes);
        goto fail_src;
    }
    const uint64_t n_slots64 = MICA_MIN(p->cache_bytes / slot_bytes, (uint64_t)INT32_MAX / 2);
    s = mica_calloc(1, sizeof *s);
    if (!s) { st = mica_err_set(err, MICA_ERR_NOMEM, "out of memory"); goto fail_src; }
    s->src = src;
    s->n_layer = p->n_layer;
    s->slot_bytes = slot_bytes;
    s->n_slots = (int32_t)n_slots64;
    s->lru_head = s->lru_tail = -1;
    int64_t n_map = 0;
    s->layers = mica_malloc((size_t)p->n_layer * sizeof *s->layers);
    s->part_base = mica_malloc((size_t)p->n_layer * sizeof *s->part_base);
    s->map_base = mica_malloc((size_t)p->n_layer * sizeof *s->map_base);
    if (!s->layers || !s->part_base || !s->map_base) goto nomem;
    memcpy(s->layers, p->layers, (size_t)p->n_layer * sizeof *s->layers);
    for (int32_t l = 0; l < p->n_layer; l++) {
        uint64_t at = 0, r = 0;
        for (int q = 0; q < ESTORE_PARTS; q++) {
            s->part_base[l][q] = at;
            if (s->layers[l].part_bytes[q] && es_part_reserve(s->layers[l].part_bytes[q], src->align, &r)) at += r;
        }
        s->map_base[l] = n_map;
        n_map += s->layers[l].n_expert;
    }
    s->map = mica_malloc((size_t)MICA_MAX(n_map, 1) * sizeof *s->map);
    s->slots = mica_calloc((size_t)s->n_slots, sizeof *s->slots);
    s->queue = mica_malloc((size_t)s->n_slots * sizeof *s->queue);
    if (!s->map || !s->slots || !s->queue) goto nomem;
    for (int64_t k = 0; k < n_map; k++) s->map[k] = -1;
    /* n_slots * slot_bytes <= cache_bytes, so the product does not overflow */
    s->arena = mica_aligned_alloc(MICA_MAX(src->align, (size_t)4096), (size_t)(n_slots64 * slot_bytes));
    if (!s->arena) {
        st = mica_err_set(err, MICA_ERR_NOMEM, "out of memory allocating an expert cache of %" PRIu64 " bytes",
                          n_slots64 * slot_bytes);
        goto fail;
    }
    for (int32_t i = 0; i < s->n_slots; i++) {
        s->slots[i] = (es_slot){.layer = -1, .expert = -1, .prev = -1, .next = -1};
        es_lru_push(s, i, false);
    }
    s->st.n_slots = s->n_slots;
    s->st.slot_bytes = slot_bytes;
    s->mu_ok = pthread_mutex_init(&s->mu, NULL) == 0;
    s->cv_ok = pthread_cond_init(&s->cv, NULL) == 0;
    s->io_cv_ok = pthread_cond_init(&s->io_cv, NULL) == 0;
    if (!s->mu_ok || !s->cv_ok || !s->io_cv_ok) goto nomem;
    const int32_t n_threads = p->n_io_threads ? p->n_io_threads : ESTORE_DEFAULT_IO_THREADS;
    s->threads = mica_calloc((size_t)n_threads, sizeof *s->threads);
    if (!s->threads) goto nomem;
    for (; s->n_threads < n_threads; s->n_threads++) {
        if (pthread_create(&s->threads[s->n_threads], NULL, es_io_main, s) != 0) {
            st = mica_err_set(err, MICA_ERR_NOMEM, "cannot start expert I/O thread %d", s->n_threads);
            goto fail;
        }
    }
    *out = s;
    return MICA_OK;
nomem:
    st = mica_err_set(err, MICA_ERR_NOMEM, "out of memory creating the expert store");
fail:
    expert_store_free(s);
    return st;
fail_src:
    esrc_close(src);
    return st;
}

void expert_store_free(expert_store *s) {
    if (!s) return;
    if (s->mu_ok && s->n_threads > 0) {
        pthread_mutex_lock(&s->mu);
        for (int32_t i = 0; i < s->n_slots; i++) MICA_ASSERT(s->slots[i].n_lease == 0);
        s->stop = true; /* the threads drain the queue, then exit */
        pthread_cond_broadcast(&s->io_cv);
        pthread_mutex_unlock(&s->mu);
        for (int32_t t = 0; t < s->n_threads; t++) pthread_join(s->threads[t], NULL);
    }
    if (s->io_cv_ok) pthread_cond_destroy(&s->io_cv);
    if (s->cv_ok) pthread_cond_destroy(&s->cv);
    if (s->mu_ok) pthread_mutex_destroy(&s->mu);
    esrc_close(s->src);
    mica_free(s->threads);
    mica_free(s->arena);
    mica_free(s->queue);
    mica_free(s->slots);
    mica_free(s->map);
    mica_free(s->map_base);
    mica_free(s->part_base);
    mica_free(s->layers);
    mica_free(s);
}

/* ---- lookup / release / prefetch ---- */

/* Drops one lease of slot i (mutex held). */
static void es_unlease(expert_store *s, int32_t i) {
    MICA_ASSERT(i >= 0 && i < s->n_slots && s->slots[i].n_lease > 0);
    if (--s->slots[i].n_lease == 0) {
        s->st.leased_slots--;
        es_settle(s, i);
    }
}

/* Adds a lease to slot i (mutex held). */
static void es_lease(expert_store *s, int32_t i) {
    es_slot *sl = &s->slots[i];
    if (sl->n_lease++ == 0) {
        s->st.leased_slots++;
        if (sl->in_lru) es_lru_remove(s, i);
    }
}

mica_status expert_store_lookup(expert_store *s, int32_t layer, const int32_t *ids, int32_t n,
                                estore_view *views, estore_lease *leases, int32_t *n_got,
                                mica_err *err) {
    MICA_ASSERT(layer >= 0 && layer < s->n_layer && n >= 1 && n <= ESTORE_MAX_LOOKUP);
    const int32_t NE = s->layers[layer].n_expert;
    for (int32_t i = 0; i < n; i++) {
        MICA_ASSERT(ids[i] >= 0 && ids[i] < NE);
        leases[i].slot = -1;
        memset(&views[i], 0, sizeof views[i]);
    }
    *n_got = 0;
    uint64_t stall = 0;
    pthread_mutex_lock(&s->mu);
    int32_t k = 0;
    bool queued = false;
    while (k < n) {
        const int32_t e = ids[k];
        const int32_t have = s->map[s->map_base[layer] + e];
        if (have >= 0) { /* resident, or being read */
            es_slot *sl = &s->slots[have];
            if (sl->prefetched && sl->needed) {
                s->st.misses++; /* read for this very request */
            } else {
                s->st.hits++;
                if (sl->prefetched) s->st.prefetch_used++;
            }
            sl->prefetched = sl->needed = false;
            es_lease(s, have);
        } else if (s->lru_head >= 0) { /* a miss: take the least recently used evictable slot */
            const int32_t victim = s->lru_head;
            es_assign(s, victim, layer, e, false, false);
            es_lease(s, victim);
            s->st.misses++;
            queued = true;
        } else if (k > 0) {
            break; /* no slot free: make do with what is leased */
        } else {
            if (queued) pthread_cond_broadcast(&s->io_cv);
            queued = false;
            const uint64_t t0 = es_now_ns();
            pthread_cond_wait(&s->cv, &s->mu);
            stall += es_now_ns() - t0;
            continue; /* look again: the expert may have arrived meanwhile */
        }
        leases[k].slot = s->map[s->map_base[layer] + e];
        s->st.lookups++;
        k++;
    }
    if (queued) pthread_cond_broadcast(&s->io_cv);

    /* wait for every leased slot's read */
    bool failed = false;
    for (int32_t i = 0; i < k; i++) {
        es_slot *sl = &s->slots[leases[i].slot];
        if (sl->state == ES_LOADING) {
            const uint64_t t0 = es_now_ns();
            while (sl->state == ES_LOADING) pthread_cond_wait(&s->cv, &s->mu);
            stall += es_now_ns() - t0;
        }
        failed |= sl->state == ES_FAILED;
    }
    s->st.stall_ns += stall;
    if (failed) {
        for (int32_t i = 0; i < k; i++) {
            es_unlease(s, leases[i].slot);
            leases[i].slot = -1;
        }
        s->n_failures++;
        mica_status st = mica_err_set(err, MICA_ERR_IO, "%s", s->last_err.msg);
        pthread_mutex_unlock(&s->mu);
        return st;
    }
    for (int32_t i = 0; i < k; i++) {
        const es_slot *sl = &s->slots[leases[i].slot];
        const uint8_t *base = s->arena + (uint64_t)leases[i].slot * s->slot_bytes;
        for (int q = 0; q < ESTORE_PARTS; q++)
            views[i].part[q] = s->layers[layer].part_bytes[q] ? base + sl->data_off[q] : NULL;
    }
    pthread_mutex_unlock(&s->mu);
    *n_got = k;
    return MICA_OK;
}

void expert_store_release(expert_store *s, estore_lease *lease) {
    MICA_ASSERT(lease && lease->slot >= 0); /* released twice, or never leased */
    pthread_mutex_lock(&s->mu);
    MICA_ASSERT(lease->slot < s->n_slots && s->slots[lease->slot].n_lease > 0 &&
                s->slots[lease->slot].state != ES_LOADING);
    es_unlease(s, lease->slot);
    pthread_mutex_unlock(&s->mu);
    lease->slot = -1;
}

int32_t expert_store_prefetch(expert_store *s, int32_t layer, const int32_t *ids, int32_t n, bool needed) {
    if (layer < 0 || layer >= s->n_layer || n <= 0) return 0;
    const int32_t NE = s->layers[layer].n_expert;
    int32_t started = 0;
    pthread_mutex_lock(&s->mu);
    for (int32_t i = 0; i < n; i++) {
        const int32_t e = ids[i];
        if (e < 0 || e >= NE || s->map[s->map_base[layer] + e] >= 0) continue;
        const int32_t victim = s->lru_head;
        /* never a leased or loading slot (not in the list), nor an unused prefetch */
        if (victim < 0 || s->slots[victim].prefetched) break;
        es_assign(s, victim, layer, e, true, needed);
        if (!needed) s->st.prefetch_reads++;
        started++;
    }
    if (started) pthread_cond_broadcast(&s->io_cv);
    pthread_mutex_unlock(&s->mu);
    return started;
}

/* ---- stats ---- */

void expert_store_stats(expert_store *s, estore_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    if (s->in_flight > 0) out->io_busy_ns += es_now_ns() - s->busy_since_ns;
    pthread_mutex_unlock(&s->mu);
}

uint64_t expert_store_arena_bytes(const expert_store *s) { return (uint64_t)s->n_slots * s->slot_bytes; }

const char *expert_store_note(const expert_store *s) { return s->src->note; }

bool expert_store_direct(const expert_store *s) { return s->src->direct; }

uint64_t expert_store_n_failures(expert_store *s) {
    pthread_mutex_lock(&s->mu);
    uint64_t n = s->n_failures;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void expert_store_last_error(expert_store *s, char *buf, size_t cap) {
    pthread_mutex_lock(&s->mu);
    mica_err_copy(&s->last_err, buf, cap);
    pthread_mutex_unlock(&s->mu);
}
