/*
 * expert_io.h - byte sources the expert store reads experts from (layer:
 * model; depends on base and libc only). One vtable, `estore_source`, serves
 * the model file (pread, O_DIRECT where the filesystem allows it) and
 * in-memory fixtures (tests inject short reads and errors through it), so
 * the store has a single expert-loading code path (STYLE.md B8 item 10).
 *
 * Alignment: a source with align > 1 (O_DIRECT) requires the buffer address,
 * the file offset and the length of every read to be multiples of `align`;
 * the store then reads an aligned superset of the bytes it needs. A source
 * with align == 1 accepts any read.
 *
 * Errors: read_at fills `buf` with up to `len` bytes from `off` and succeeds
 * once at least `need` bytes are in (EINTR and short reads are retried; an
 * I/O error is retried ESRC_RETRIES times). End of file before `need` bytes
 * (a truncated file) or a persistent error gives MICA_ERR_IO with a message
 * naming the path, offset, bytes expected and bytes obtained. Nothing is
 * cached by a source.
 *
 * A file changed under the reader: the file source remembers the file's
 * identity when it opens it (device, inode, size, modification and change
 * times) and compares it after every read (fstat, about a microsecond). A
 * difference - bytes rewritten in place, the file replaced or resized - makes
 * that read and every later one fail with MICA_ERR_IO naming the file ("...
 * changed while in use"): bytes read from a changed file are never handed
 * out. Bytes already read (cached experts) are the original file's and stay
 * usable.
 *
 * Rings (io_uring through liburing): esrc_ring_create gives a source that
 * has a descriptor (the file source) a submission ring, so one I/O thread
 * keeps several reads in flight. A ring only moves bytes; the store checks
 * each completion and sends anything short of a full read through read_at
 * (which retries and words the error), then calls verify. Where io_uring
 * cannot be set up (old kernel, seccomp, no liburing at build time),
 * esrc_ring_create says why and the caller uses read_at from threads.
 *
 * Thread safety: read_at and verify may be called from several threads at
 * once (pread on one descriptor); close must be called once, after the last
 * read. A ring belongs to one thread, except esrc_ring_wake (any thread).
 */
#ifndef MICA_EXPERT_IO_H
#define MICA_EXPERT_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mica_internal.h"

#define ESRC_RETRIES 3          /* attempts after a failed read before giving up */
#define ESRC_DIRECT_ALIGN 4096u /* alignment used for O_DIRECT reads */

typedef struct estore_source estore_source;

struct estore_source {
    /* Reads up to len bytes at off into buf; *got (not NULL) receives the count. */
    mica_status (*read_at)(estore_source *src, void *buf, uint64_t off, size_t len, size_t need,
                           size_t *got, mica_err *err);
    /* Frees the source (and closes its descriptor). Accepts NULL via esrc_close. */
    void (*close)(estore_source *src);
    /* MICA_OK if the bytes are still those of the file opened, else MICA_ERR_IO; NULL: always OK. */
    mica_status (*verify)(estore_source *src, mica_err *err);
    /* The descriptor rings read from, or -1 (no ring possible); NULL: none. */
    int (*ring_fd)(const estore_source *src);
    size_t align;   /* 1, or the O_DIRECT alignment */
    bool direct;    /* reads bypass the page cache (O_DIRECT) */
    char note[256]; /* a one-time remark for the user ("O_DIRECT refused ..."), or "" */
};

/*
 * Opens `path` for expert reads. With try_direct, O_DIRECT is tried first;
 * if the filesystem refuses it (open fails with EINVAL, or a probe read
 * fails), the source falls back to buffered reads, which drop the pages they
 * read from the page cache afterwards (posix_fadvise DONTNEED), and says so
 * in src->note. On success *out owns the source (esrc_close). Returns MICA_OK,
 * MICA_ERR_IO (cannot open: message names the path and errno text) or
 * MICA_ERR_NOMEM.
 */
mica_status esrc_open_file(const char *path, bool try_direct, estore_source **out, mica_err *err);

/*
 * Closes a source; NULL is allowed.
 */
void esrc_close(estore_source *src);

/* ---- io_uring ---- */

typedef struct esrc_ring esrc_ring;

/* One finished ring read: the tag it was queued with and the kernel's result
 * (bytes read, or a negative errno). */
typedef struct esrc_done {
    uint64_t tag;
    int32_t res;
} esrc_done;

/*
 * A ring of `depth` entries (1..256) reading from src's descriptor. On
 * success *out owns it (esrc_ring_free); src must outlive it. When io_uring
 * is unavailable (the source has no descriptor, the build has no liburing,
 * the kernel or a seccomp filter refuses io_uring_setup) returns
 * MICA_ERR_UNSUPPORTED with the reason in err; MICA_ERR_NOMEM otherwise.
 */
mica_status esrc_ring_create(estore_source *src, unsigned depth, esrc_ring **out, mica_err *err);
void esrc_ring_free(esrc_ring *r);

/* Reads that can still be queued before the next esrc_ring_wait. */
unsigned esrc_ring_space(const esrc_ring *r);

/* Queues a read of len bytes at off into buf (alignment as for read_at);
 * false if the ring is full. Submitted by the next esrc_ring_wait. */
bool esrc_ring_read(esrc_ring *r, void *buf, uint64_t off, size_t len, uint64_t tag);

/*
 * Submits what is queued, then sleeps until at least one read finishes or
 * esrc_ring_wake is called; writes up to max finished reads to done and
 * returns their count (0 after a wake-up alone). A negative return is a
 * ring failure (-errno): the caller should stop using the ring.
 */
int esrc_ring_wait(esrc_ring *r, esrc_done *done, int max);

/* Ends the current or next esrc_ring_wait early. Any thread. */
void esrc_ring_wake(esrc_ring *r);

#endif /* MICA_EXPERT_IO_H */
