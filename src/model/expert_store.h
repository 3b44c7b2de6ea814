/*
 * expert_store.h - residency of routed-expert weights when a model does not
 * fit its memory budget (layer: model; depends on base and expert_io). The
 * dense part of the model stays mapped; the experts live in a fixed arena of
 * slots and are read from the file on demand by a small pool of I/O threads.
 *
 * The store knows byte ranges, not tensors: an expert of layer l is up to
 * ESTORE_PARTS slices (gate, up, down) at file offsets
 * part_off[l][p] + e * part_bytes[l][p]. Every slot holds one expert of any
 * layer; slot size = the largest expert's parts (each rounded out to the
 * source's alignment, see expert_io.h) across layers. The arena is
 * n_slots * slot_bytes, allocated once; nothing else grows with the model.
 *
 * ---- the lease contract ----
 * - expert_store_lookup returns, for each expert it leases, a view (pointers
 *   to the expert's part bytes inside a slot) plus a lease. The view is
 *   valid exactly until that lease is released.
 * - Every lease is released exactly once, with expert_store_release, by the
 *   caller that got it. Releasing a lease twice (or a lease never obtained)
 *   is a bug and aborts (MICA_ASSERT); release clears the lease.
 * - A leased slot is never evicted and never rewritten, by lookups or by
 *   prefetch, from any thread. Several callers may lease the same expert at
 *   once; it is read once.
 * - On failure, lookup leases nothing: views and leases of the call are
 *   cleared (view pointers NULL, leases empty) and earlier leases are
 *   untouched. A failed read leaves no expert behind: the next lookup of that
 *   expert reads it again. Experts already resident stay usable.
 * - expert_store_prefetch is advisory: it may start reads of experts not
 *   resident into free slots or slots it may evict (unleased, not loading,
 *   not holding an earlier prefetch nobody has looked up yet), least recently
 *   used first; it never evicts a leased slot, never waits, never fails
 *   visibly (a failed prefetch read just leaves the slot empty).
 * - Pinned slots (estore_params.pinned, the hot set learned from earlier
 *   runs) hold one expert each for the store's whole life: they are never
 *   evicted, by lookups or by prefetch. Their reads start at creation, in the
 *   background; a lookup of a pinned expert still being read waits for it
 *   like any other. A pinned read that fails unpins that slot (it becomes an
 *   ordinary empty slot). At most n_slots - 1 slots are pinned.
 * - expert_store_free requires zero leases (asserted); it waits for reads in
 *   flight, drops queued reads nobody waits for, stops the I/O threads and
 *   frees the arena.
 * - Placement never changes results: a view holds exactly the file's bytes
 *   of that expert, so a computation over it is bit-identical to one over
 *   the mapped file.
 *
 * Deadlock rule: a caller holding leases from this store must not call
 * lookup until it has released them (lookup may wait for a free slot when
 * every slot is leased, and only releases can free one).
 *
 * Reads: with io_mode ESTORE_IO_AUTO the store first tries one I/O thread
 * driving an io_uring (expert_io.h: up to ESTORE_RING_EXPERTS experts, all
 * their parts, in flight at once); where io_uring is unavailable it says so
 * once (expert_store_note) and uses n_io_threads pread threads instead, as
 * ESTORE_IO_THREADS always does. Both deliver the same bytes.
 *
 * Usage: the store counts the lookups of every (layer, expert)
 * (expert_store_usage); the engine keeps them across runs to choose the
 * pinned set (expert_usage.h).
 *
 * Thread safety: every function may be called from any thread concurrently
 * (one mutex inside), except expert_store_free, which must be last.
 */
#ifndef MICA_EXPERT_STORE_H
#define MICA_EXPERT_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "mica_internal.h"
#include "model/expert_io.h"

#define ESTORE_PARTS          3    /* gate, up, down */
#define ESTORE_MAX_LOOKUP     64   /* experts one lookup call may ask for */
#define ESTORE_MAX_IO_THREADS 64
#define ESTORE_DEFAULT_IO_THREADS 4
#define ESTORE_RING_EXPERTS   16   /* experts in flight at once through an io_uring */

/* How the store reads. */
enum estore_io {
    ESTORE_IO_AUTO = 0,   /* io_uring if the kernel allows it, else pread threads */
    ESTORE_IO_THREADS = 1 /* pread threads only */
};

/* One expert: (layer, expert id). */
typedef struct estore_eid {
    int32_t layer, expert;
} estore_eid;

/* Where the experts of one layer are in the source. n_expert 0: none. */
typedef struct estore_layer {
    int32_t n_expert;
    uint64_t part_off[ESTORE_PARTS];   /* byte offset of expert 0's slice of part p */
    uint64_t part_bytes[ESTORE_PARTS]; /* bytes of one expert's slice of part p (0: part unused) */
} estore_layer;

typedef struct estore_params {
    int32_t n_layer;              /* layers 0..n_layer-1 */
    const estore_layer *layers;   /* [n_layer], copied */
    uint64_t cache_bytes;         /* the arena may use at most this many bytes */
    int32_t n_io_threads;         /* 1..ESTORE_MAX_IO_THREADS; 0: ESTORE_DEFAULT_IO_THREADS */
    int32_t io_mode;              /* enum estore_io */
    const estore_eid *pinned;     /* [n_pinned] experts to pin, most important first (copied);
                                     out-of-range ids and duplicates are skipped, and the list is
                                     cut at n_slots - 1 */
    int32_t n_pinned;
} estore_params;

/* One leased expert: its parts' bytes, valid until its lease is released. */
typedef struct estore_view {
    const void *part[ESTORE_PARTS];
} estore_view;

/* A lease on one slot; empty (slot < 0) when not held. */
typedef struct estore_lease {
    int32_t slot;
} estore_lease;

/* Counters since creation (monotonic except resident_slots / leased_slots). */
typedef struct estore_stats {
    uint64_t lookups;          /* experts asked for by lookup */
    uint64_t hits;             /* ... found resident, or read by a guessing prefetch */
    uint64_t misses;           /* ... that needed a read for this request (lookup or needed prefetch) */
    uint64_t prefetch_reads;   /* reads started by guessing prefetches */
    uint64_t prefetch_used;    /* guessed experts a lookup then used (counted in hits) */
    uint64_t reads;            /* expert reads completed (successful) */
    uint64_t read_errors;      /* expert reads that failed */
    uint64_t bytes_read;       /* bytes transferred from the source (aligned supersets included) */
    uint64_t io_busy_ns;       /* wall time with at least one read in flight */
    uint64_t stall_ns;         /* wall time lookup callers spent waiting (reads or free slots) */
    uint64_t evictions;
    int32_t n_slots;
    uint64_t slot_bytes;
    int32_t resident_slots;    /* slots holding an expert (ready or loading) */
    int32_t leased_slots;      /* slots with at least one lease */
    int32_t pinned_slots;      /* slots pinned to one expert (ready or loading) */
    bool ring;                 /* reads go through io_uring */
} estore_stats;

typedef struct expert_store expert_store;

/*
 * Bytes of one slot for these layers with reads aligned to `align` (1 or a
 * power of two): per layer, the sum over parts of the part's aligned
 * superset rounded to align, plus align - 1 per part for the offset within
 * the first block; the maximum over layers. 0 if no layer has experts;
 * UINT64_MAX on overflow.
 */
uint64_t expert_store_slot_bytes(const estore_layer *layers, int32_t n_layer, size_t align);

/*
 * Creates a store reading from `src` (ownership taken, also on failure).
 * n_slots = cache_bytes / slot_bytes; fewer than one slot is MICA_ERR_LIMIT
 * ("... needs at least N bytes"). Every expert range must lie inside
 * src_size bytes (MICA_ERR_FORMAT otherwise). Starts the I/O threads.
 * Returns MICA_OK, MICA_ERR_LIMIT, MICA_ERR_FORMAT, MICA_ERR_INVALID_ARG,
 * MICA_ERR_NOMEM (arena or threads); *out untouched on failure.
 */
mica_status expert_store_create(const estore_params *p, estore_source *src, uint64_t src_size,
                                expert_store **out, mica_err *err);

/*
 * Frees the store. Accepts NULL. Precondition: no lease is held (asserted).
 * Waits for reads in flight (prefetches) first.
 */
void expert_store_free(expert_store *s);

/*
 * Leases experts ids[0..n) of `layer` (1 <= n <= ESTORE_MAX_LOOKUP, distinct
 * ids in range; asserted). It leases the longest prefix ids[0..k) for which
 * slots can be had without waiting, but always at least ids[0] (waiting for
 * a release if every slot is leased), starts the reads of all k misses at
 * once, and returns when all k are resident. On success *n_got = k >= 1 and
 * views[i], leases[i] (i < k) hold the experts; ask again for the rest after
 * releasing these. On failure (a read error or short read of any of them:
 * MICA_ERR_IO with the source's message) nothing is leased, views[0..n) and
 * leases[0..n) are cleared, *n_got = 0.
 */
mica_status expert_store_lookup(expert_store *s, int32_t layer, const int32_t *ids, int32_t n,
                                estore_view *views, estore_lease *leases, int32_t *n_got,
                                mica_err *err);

/* Releases one lease (exactly once; asserted) and clears it. */
void expert_store_release(expert_store *s, estore_lease *lease);

/*
 * Advisory read-ahead of experts ids[0..n) of `layer` (out-of-range ids and
 * duplicates are ignored). Returns the number of reads started. `needed`
 * only changes the counters: true says the caller is about to look these
 * experts up (their reads count as the lookups' misses), false that they are
 * a guess (counted in prefetch_reads, and prefetch_used when a lookup then
 * finds them).
 */
int32_t expert_store_prefetch(expert_store *s, int32_t layer, const int32_t *ids, int32_t n, bool needed);

/* A consistent snapshot of the counters. */
void expert_store_stats(expert_store *s, estore_stats *out);

/* Bytes of the arena (n_slots * slot_bytes): what the cache may hold at most. */
uint64_t expert_store_arena_bytes(const expert_store *s);

/*
 * Lookups per expert since creation: writes min(cap, N) counts to out, where
 * N = the sum of n_expert over layers, in order layer 0's experts 0..n-1,
 * then layer 1's, ...; returns N. Saturates at UINT32_MAX.
 */
int64_t expert_store_usage(expert_store *s, uint32_t *out, int64_t cap);

/* The one-time notes of the source and the store (O_DIRECT or io_uring
 * fallbacks), or "". Borrowed. */
const char *expert_store_note(const expert_store *s);

/* True if reads bypass the page cache (O_DIRECT). */
bool expert_store_direct(const expert_store *s);

/*
 * Number of lookups that have failed since creation. A caller can compare
 * it before and after a computation to learn whether any lookup in between
 * failed; expert_store_last_error copies the last failure's message.
 */
uint64_t expert_store_n_failures(expert_store *s);
void expert_store_last_error(expert_store *s, char *buf, size_t cap);

#endif /* MICA_EXPERT_STORE_H */
