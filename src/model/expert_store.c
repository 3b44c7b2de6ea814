/*
 * expert_store.c - the expert cache: a fixed arena of slots, a direct map
 * (layer, expert) -> slot, an LRU list of evictable slots, leases, and a pool
 * of I/O threads reading experts from an estore_source (see expert_store.h).
 * Layer: model.
 *
 * Slot states: EMPTY (no expert), LOADING (a read is queued or in flight),
 * READY (holds the expert's bytes), FAILED (its read failed; it becomes
 * EMPTY when its last lease goes). The LRU list holds exactly the slots with
 * no lease that are not LOADING and not pinned; EMPTY slots go to its head
 * (used first), released and freshly loaded slots to its tail. Everything
 * below is guarded by one mutex; reads run outside it, either in pread
 * threads (one expert each) or in one thread driving an io_uring (many).
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
    bool pinned;              /* never evicted (the hot set) */
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
    uint32_t *uses;           /* [sum n_expert]: lookups of (layer, expert) */
    int64_t n_map;
    int32_t n_slots;
    uint64_t slot_bytes;
    uint8_t *arena;           /* n_slots * slot_bytes, aligned */
    es_slot *slots;

    pthread_mutex_t mu;
    pthread_cond_t cv;        /* a read completed, or a slot became evictable */
    pthread_cond_t io_cv;     /* work for the I/O threads, or stop */
    int32_t lru_head, lru_tail;
    /* slots to read, two FIFO rings of [n_slots]: [0] what a caller waits for
     * (lookups' misses, needed prefetches), read first; [1] the rest
     * (guessing prefetches, the pinned set's first reads) */
    int32_t *queue[2];
    int32_t q_head[2], q_len[2];
    int32_t in_flight;
    uint64_t busy_since_ns;
    bool stop;
    int32_t n_threads;
    pthread_t *threads;
    bool mu_ok, cv_ok, io_cv_ok;
    esrc_ring *ring;          /* io_uring (one I/O thread), or NULL: pread threads */
    char note[512];

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
    MICA_ASSERT(!sl->in_lru && sl->n_lease == 0 && sl->state != ES_LOADING && !sl->pinned);
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
    if (sl->pinned) s->st.pinned_slots--;
    sl->pinned = false;
    sl->layer = sl->expert = -1;
    sl->state = ES_EMPTY;
    sl->prefetched = false;
}

/* Tells the I/O threads there is work, or that they should stop (mutex held). */
static void es_kick(expert_store *s) {
    if (s->ring) esrc_ring_wake(s->ring);
    else pthread_cond_broadcast(&s->io_cv);
}

/* Takes slot i (from the LRU list) for (layer, e) and queues its read (mutex held); pin: for good. */
static void es_assign(expert_store *s, int32_t i, int32_t layer, int32_t e, bool prefetch, bool needed, bool pin) {
    es_slot *sl = &s->slots[i];
    es_lru_remove(s, i);
    if (sl->layer >= 0) s->st.evictions++;
    es_unmap(s, sl);
    sl->layer = layer;
    sl->expert = e;
    sl->state = ES_LOADING;
    sl->prefetched = prefetch;
    sl->needed = needed;
    sl->pinned = pin;
    s->st.pinned_slots += pin;
    s->map[s->map_base[layer] + e] = i;
    s->st.resident_slots++;
    const int q = (prefetch && !needed) || pin ? 1 : 0;
    MICA_ASSERT(s->q_len[q] < s->n_slots);
    s->queue[q][(s->q_head[q] + s->q_len[q]) % s->n_slots] = i;
    s->q_len[q]++;
}

/* A slot's last lease went, or its read finished with no lease (mutex held). */
static void es_settle(expert_store *s, int32_t i) {
    es_slot *sl = &s->slots[i];
    if (sl->n_lease > 0 || sl->state == ES_LOADING) return;
    if (sl->state == ES_FAILED) {
        es_unmap(s, sl);
        es_lru_push(s, i, true);
    } else if (!sl->pinned) {
        es_lru_push(s, i, false);
    }
    pthread_cond_broadcast(&s->cv);
}

/* ---- I/O threads ---- */

/* Where part p of slot i's expert is read: an aligned superset [*a_off, +*len)
 * of which the first *need bytes must arrive, landing at *dst. */
static void es_part_io(const expert_store *s, int32_t i, int p, uint64_t *a_off, size_t *len, size_t *need,
                       uint8_t **dst) {
    const es_slot *sl = &s->slots[i];
    const estore_layer *L = &s->layers[sl->layer];
    const uint64_t A = s->src->align, nb = L->part_bytes[p];
    const uint64_t off = L->part_off[p] + (uint64_t)sl->expert * nb;
    *a_off = off / A * A;
    const uint64_t a_end = (off + nb + A - 1) / A * A; /* in range: checked at create */
    *len = (size_t)(a_end - *a_off);
    *need = (size_t)(off + nb - *a_off);
    *dst = s->arena + (uint64_t)i * s->slot_bytes + s->part_base[sl->layer][p];
}

/* Records where each part's bytes start in slot i (no mutex needed: the slot is LOADING). */
static void es_set_data_off(expert_store *s, int32_t i) {
    es_slot *sl = &s->slots[i];
    const estore_layer *L = &s->layers[sl->layer];
    const uint64_t A = s->src->align;
    for (int p = 0; p < ESTORE_PARTS; p++) {
        const uint64_t off = L->part_off[p] + (uint64_t)sl->expert * L->part_bytes[p];
        sl->data_off[p] = s->part_base[sl->layer][p] + (off - off / A * A);
    }
}

/* Reads the parts of slot i's expert in `mask` with read_at (retries, errors worded by the source). */
static mica_status es_read_parts(expert_store *s, int32_t i, unsigned mask, uint64_t *bytes, mica_err *err) {
    const estore_layer *L = &s->layers[s->slots[i].layer];
    for (int p = 0; p < ESTORE_PARTS; p++) {
        if (!L->part_bytes[p] || !(mask & (1u << p))) continue;
        uint64_t a_off;
        size_t len, need, got = 0;
        uint8_t *dst;
        es_part_io(s, i, p, &a_off, &len, &need, &dst);
        mica_status st = s->src->read_at(s->src, dst, a_off, len, need, &got, err);
        if (st) return st;
        *bytes += got;
    }
    return MICA_OK;
}

/* A read of slot i ended with st (mutex held). */
static void es_read_done(expert_store *s, int32_t i, mica_status st, uint64_t bytes, const mica_err *err) {
    if (--s->in_flight == 0) s->st.io_busy_ns += es_now_ns() - s->busy_since_ns;
    s->st.bytes_read += bytes;
    es_slot *sl = &s->slots[i];
    if (st) {
        sl->state = ES_FAILED;
        s->st.read_errors++;
        s->last_err = *err;
    } else {
        sl->state = ES_READY;
        s->st.reads++;
    }
    es_settle(s, i);
    pthread_cond_broadcast(&s->cv);
}

/* Slots queued for reading (mutex held). */
static int32_t es_queued(const expert_store *s) { return s->q_len[0] + s->q_len[1]; }

/* Takes the next queued slot, urgent ones first (mutex held, es_queued > 0). */
static int32_t es_dequeue(expert_store *s) {
    const int q = s->q_len[0] > 0 ? 0 : 1;
    const int32_t i = s->queue[q][s->q_head[q]];
    s->q_head[q] = (s->q_head[q] + 1) % s->n_slots;
    s->q_len[q]--;
    if (s->in_flight++ == 0) s->busy_since_ns = es_now_ns();
    return i;
}

static void *es_io_main(void *arg) {
    expert_store *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stop && es_queued(s) == 0) pthread_cond_wait(&s->io_cv, &s->mu);
        if (s->stop) break; /* queued reads nobody waits for are dropped */
        const int32_t i = es_dequeue(s);
        pthread_mutex_unlock(&s->mu);

        mica_err err = {0};
        uint64_t bytes = 0;
        es_set_data_off(s, i);
        mica_status st = es_read_parts(s, i, ~0u, &bytes, &err);

        pthread_mutex_lock(&s->mu);
        es_read_done(s, i, st, bytes, &err);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* One expert being read through the ring. */
typedef struct es_job {
    int32_t slot;      /* -1: free */
    int32_t left;      /* parts still in flight */
    unsigned bad;      /* parts the ring did not read in full: read again with read_at */
    uint64_t bytes;
} es_job;

/* Queues slot i's parts on the ring as job j (the ring has room: checked by the caller). */
static void es_ring_submit(expert_store *s, es_job *jobs, int32_t j, int32_t i) {
    jobs[j] = (es_job){.slot = i};
    es_set_data_off(s, i);
    const estore_layer *L = &s->layers[s->slots[i].layer];
    for (int p = 0; p < ESTORE_PARTS; p++) {
        if (!L->part_bytes[p]) continue;
        uint64_t a_off;
        size_t len, need;
        uint8_t *dst;
        es_part_io(s, i, p, &a_off, &len, &need, &dst);
        if (esrc_ring_read(s->ring, dst, a_off, len, (uint64_t)j * 4u + (uint64_t)p)) jobs[j].left++;
        else jobs[j].bad |= 1u << p;
    }
}

/* Finishes job j: parts the ring missed through read_at, then the file check. No mutex held. */
static void es_ring_finish(expert_store *s, es_job *job) {
    mica_err err = {0};
    mica_status st = es_read_parts(s, job->slot, job->bad, &job->bytes, &err);
    if (!st && !job->bad && s->src->verify) st = s->src->verify(s->src, &err); /* read_at verified itself */
    pthread_mutex_lock(&s->mu);
    es_read_done(s, job->slot, st, job->bytes, &err);
    pthread_mutex_unlock(&s->mu);
    job->slot = -1;
}

static void *es_ring_main(void *arg) {
    expert_store *s = arg;
    es_job jobs[ESTORE_RING_EXPERTS];
    esrc_done done[ESTORE_RING_EXPERTS * ESTORE_PARTS];
    int32_t n_active = 0;
    for (int32_t j = 0; j < ESTORE_RING_EXPERTS; j++) jobs[j].slot = -1;
    for (;;) {
        int32_t take[ESTORE_RING_EXPERTS], n_take = 0;
        pthread_mutex_lock(&s->mu);
        while (!s->stop && es_queued(s) > 0 && n_active + n_take < ESTORE_RING_EXPERTS &&
               esrc_ring_space(s->ring) >= (unsigned)(n_take + 1) * ESTORE_PARTS)
            take[n_take++] = es_dequeue(s);
        const bool quit = s->stop && n_active == 0; /* queued reads nobody waits for are dropped */
        pthread_mutex_unlock(&s->mu);
        if (quit) break;
        for (int32_t t = 0, j = 0; t < n_take; t++, j++) {
            while (jobs[j].slot >= 0) j++;
            es_ring_submit(s, jobs, j, take[t]);
            n_active++;
            if (jobs[j].left == 0) { /* nothing went on the ring */
                es_ring_finish(s, &jobs[j]);
                n_active--;
            }
        }
        int n = esrc_ring_wait(s->ring, done, (int)MICA_ARRAY_LEN(done));
        if (n < 0) { /* the ring failed; its reads in flight still complete: try again shortly */
            nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
            n = 0;
        }
        for (int d = 0; d < n; d++) {
            es_job *job = &jobs[done[d].tag / 4u];
            const int p = (int)(done[d].tag % 4u);
            MICA_ASSERT(job->slot >= 0 && job->left > 0);
            uint64_t a_off;
            size_t len, need;
            uint8_t *dst;
            es_part_io(s, job->slot, p, &a_off, &len, &need, &dst);
            if (done[d].res < 0 || (size_t)done[d].res < need) job->bad |= 1u << p;
            else job->bytes += (uint64_t)done[d].res;
            if (--job->left == 0) {
                es_ring_finish(s, job);
                n_active--;
            }
        }
    }
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

/* Pins the listed experts to slots and queues their reads (before the threads start). */
static void es_pin(expert_store *s, const estore_eid *ids, int32_t n) {
    for (int32_t k = 0; k < n && ids && s->st.pinned_slots < s->n_slots - 1; k++) {
        const int32_t l = ids[k].layer, e = ids[k].expert;
        if (l < 0 || l >= s->n_layer || e < 0 || e >= s->layers[l].n_expert || s->map[s->map_base[l] + e] >= 0)
            continue;
        es_assign(s, s->lru_head, l, e, false, false, true);
    }
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
    s->n_map = n_map;
    s->map = mica_malloc((size_t)MICA_MAX(n_map, 1) * sizeof *s->map);
    s->uses = mica_calloc((size_t)MICA_MAX(n_map, 1), sizeof *s->uses);
    s->slots = mica_calloc((size_t)s->n_slots, sizeof *s->slots);
    s->queue[0] = mica_malloc((size_t)s->n_slots * sizeof *s->queue[0]);
    s->queue[1] = mica_malloc((size_t)s->n_slots * sizeof *s->queue[1]);
    if (!s->map || !s->uses || !s->slots || !s->queue[0] || !s->queue[1]) goto nomem;
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
    es_pin(s, p->pinned, p->n_pinned);
    int32_t n_threads = p->n_io_threads ? p->n_io_threads : ESTORE_DEFAULT_IO_THREADS;
    snprintf(s->note, sizeof s->note, "%s", src->note);
    if (p->io_mode == ESTORE_IO_AUTO) {
        mica_err rerr = {0};
        const mica_status rst = esrc_ring_create(src, ESTORE_RING_EXPERTS * ESTORE_PARTS, &s->ring, &rerr);
        if (rst == MICA_ERR_NOMEM) { st = mica_err_set(err, rst, "%s", rerr.msg); goto fail; }
        if (rst == MICA_OK) {
            n_threads = 1;
            s->st.ring = true;
        } else if (src->ring_fd) { /* a file that could have had a ring: say why once */
            const size_t k = strlen(s->note);
            snprintf(s->note + k, sizeof s->note - k, "%sio_uring unavailable (%.120s): experts are read by %d "
                     "pread threads", k ? "; " : "", rerr.msg, n_threads);
        }
    }
    s->threads = mica_calloc((size_t)n_threads, sizeof *s->threads);
    if (!s->threads) goto nomem;
    for (; s->n_threads < n_threads; s->n_threads++) {
        if (pthread_create(&s->threads[s->n_threads], NULL, s->ring ? es_ring_main : es_io_main, s) != 0) {
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
        s->stop = true; /* the threads finish the reads in flight, drop the queue and exit */
        es_kick(s);
        pthread_mutex_unlock(&s->mu);
        for (int32_t t = 0; t < s->n_threads; t++) pthread_join(s->threads[t], NULL);
    }
    if (s->io_cv_ok) pthread_cond_destroy(&s->io_cv);
    if (s->cv_ok) pthread_cond_destroy(&s->cv);
    if (s->mu_ok) pthread_mutex_destroy(&s->mu);
    esrc_ring_free(s->ring);
    esrc_close(s->src);
    mica_free(s->threads);
    mica_free(s->uses);
    mica_free(s->arena);
    mica_free(s->queue[0]);
    mica_free(s->queue[1]);
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
            es_assign(s, victim, layer, e, false, false, false);
            es_lease(s, victim);
            s->st.misses++;
            queued = true;
        } else if (k > 0) {
            break; /* no slot free: make do with what is leased */
        } else {
            if (queued) es_kick(s);
            queued = false;
            const uint64_t t0 = es_now_ns();
            pthread_cond_wait(&s->cv, &s->mu);
            stall += es_now_ns() - t0;
            continue; /* look again: the expert may have arrived meanwhile */
        }
        leases[k].slot = s->map[s->map_base[layer] + e];
        s->st.lookups++;
        uint32_t *u = &s->uses[s->map_base[layer] + e];
        if (*u < UINT32_MAX) (*u)++;
        k++;
    }
    if (queued) es_kick(s);

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
        es_assign(s, victim, layer, e, true, needed, false);
        if (!needed) s->st.prefetch_reads++;
        started++;
    }
    if (started) es_kick(s);
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

const char *expert_store_note(const expert_store *s) { return s->note; }

int64_t expert_store_usage(expert_store *s, uint32_t *out, int64_t cap) {
    pthread_mutex_lock(&s->mu);
    if (out && cap > 0) memcpy(out, s->uses, (size_t)MICA_MIN(cap, s->n_map) * sizeof *out);
    pthread_mutex_unlock(&s->mu);
    return s->n_map;
}

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
