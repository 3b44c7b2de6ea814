/*
 * expert_io.c - the file source of expert bytes: pread with retries, O_DIRECT
 * with a buffered fallback, the check that the file has not changed, and
 * io_uring rings through liburing (see expert_io.h). Layer: model.
 */
#include "model/expert_io.h"

#if defined(__has_include)
#if __has_include(<liburing.h>)
#define ESRC_HAVE_URING 1
#include <liburing.h>
#include <sys/eventfd.h>
#endif
#endif

#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct esrc_file {
    estore_source base; /* first: the vtable */
    int fd;
    struct stat id;      /* the file as opened: device, inode, size, mtime, ctime */
    atomic_bool changed; /* set once a difference was seen: every later read fails */
    char path[512];
} esrc_file;

static void esrc_file_close(estore_source *src) {
    esrc_file *f = (esrc_file *)src;
    if (f->fd >= 0) close(f->fd);
    mica_free(f);
}

/* The current size of the file, or -1. */
static int64_t esrc_file_size(const esrc_file *f) {
    struct stat st;
    return fstat(f->fd, &st) == 0 ? (int64_t)st.st_size : -1;
}

static bool esrc_same_time(const struct timespec *a, const struct timespec *b) {
    return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

static mica_status esrc_file_verify(estore_source *src, mica_err *err) {
    esrc_file *f = (esrc_file *)src;
    struct stat st;
    const char *what = NULL;
    if (fstat(f->fd, &st) != 0) what = "cannot be examined (fstat failed)";
    else if (st.st_dev != f->id.st_dev || st.st_ino != f->id.st_ino) what = "was replaced";
    else if (st.st_size != f->id.st_size) what = "changed size";
    else if (!esrc_same_time(&st.st_mtim, &f->id.st_mtim)) what = "was modified (its bytes were rewritten)";
    else if (!esrc_same_time(&st.st_ctim, &f->id.st_ctim)) what = "was modified (its change time moved)";
    else if (!atomic_load(&f->changed)) return MICA_OK;
    else what = "was modified";
    atomic_store(&f->changed, true);
    return mica_err_set(err, MICA_ERR_IO,
                        "%s: the model file %s while in use: experts are no longer read from it "
                        "(%" PRId64 " bytes when opened, %" PRId64 " now); reopen the model",
                        f->path, what, (int64_t)f->id.st_size, esrc_file_size(f));
}

static int esrc_file_ring_fd(const estore_source *src) { return ((const esrc_file *)src)->fd; }

static mica_status esrc_file_read(estore_source *src, void *buf, uint64_t off, size_t len, size_t need,
                                  size_t *got, mica_err *err) {
    esrc_file *f = (esrc_file *)src;
    uint8_t *p = buf;
    size_t done = 0;
    int fails = 0;
    MICA_ASSERT(need <= len && off <= (uint64_t)INT64_MAX - len);
    while (done < need) {
        ssize_t r = pread(f->fd, p + done, len - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR) continue;
            if (++fails > ESRC_RETRIES)
                return mica_err_set(err, MICA_ERR_IO, "%s: read of %zu bytes at offset %" PRIu64 " failed: %s",
                                    f->path, len - done, off + done, strerror(errno));
            continue;
        }
        done += (size_t)r;
        /* end of file: pread returned 0, or (O_DIRECT) a partial block */
        if (r == 0 || (src->align > 1 && (size_t)r % src->align != 0)) break;
    }
    if (done < need)
        return mica_err_set(err, MICA_ERR_IO,
                            "%s: short read at offset %" PRIu64 ": expected %zu bytes, got %zu (the file "
                            "is now %" PRId64 " bytes: truncated or replaced while in use?)",
                            f->path, off, need, done, esrc_file_size(f));
    /* buffered reads: keep expert bytes out of the page cache (best effort) */
    if (!src->direct) (void)posix_fadvise(f->fd, (off_t)off, (off_t)done, POSIX_FADV_DONTNEED);
    mica_status vst = esrc_file_verify(src, err); /* after the read: a write before it is seen */
    if (vst) return vst;
    *got = done;
    return MICA_OK;
}

/* True if an aligned O_DIRECT read of the first block works on fd. */
static bool esrc_direct_probe(int fd) {
    void *blk = mica_aligned_alloc(ESRC_DIRECT_ALIGN, ESRC_DIRECT_ALIGN);
    if (!blk) return false;
    ssize_t r;
    do r = pread(fd, blk, ESRC_DIRECT_ALIGN, 0);
    while (r < 0 && errno == EINTR);
    mica_free(blk);
    return r >= 0;
}

mica_status esrc_open_file(const char *path, bool try_direct, estore_source **out, mica_err *err) {
    esrc_file *f = mica_calloc(1, sizeof *f);
    if (!f) return mica_err_set(err, MICA_ERR_NOMEM, "out of memory");
    f->fd = -1;
    snprintf(f->path, sizeof f->path, "%s", path);
    f->base.read_at = esrc_file_read;
    f->base.close = esrc_file_close;
    f->base.verify = esrc_file_verify;
    f->base.ring_fd = esrc_file_ring_fd;
    atomic_init(&f->changed, false);
    f->base.align = 1;
    int direct_errno = 0;
    if (try_direct) {
        f->fd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT);
        if (f->fd < 0) {
            direct_errno = errno;
        } else if (!esrc_direct_probe(f->fd)) {
            direct_errno = errno ? errno : EINVAL;
            close(f->fd);
            f->fd = -1;
        } else {
            f->base.align = ESRC_DIRECT_ALIGN;
            f->base.direct = true;
        }
    }
    if (f->fd < 0) {
        f->fd = open(path, O_RDONLY | O_CLOEXEC);
        if (f->fd < 0) {
            mica_status st = mica_err_set(err, MICA_ERR_IO, "%s: cannot open for expert reads: %s", path,
                                          strerror(errno));
            mica_free(f);
            return st;
        }
        (void)posix_fadvise(f->fd, 0, 0, POSIX_FADV_RANDOM);
        if (try_direct)
            snprintf(f->base.note, sizeof f->base.note,
                     "O_DIRECT refused for %.80s (%.40s): experts are read through the page cache, "
                     "which is told to drop them after each read", path, strerror(direct_errno));
    }
    if (fstat(f->fd, &f->id) != 0) {
        mica_status st = mica_err_set(err, MICA_ERR_IO, "%s: cannot examine: %s", path, strerror(errno));
        esrc_file_close(&f->base);
        return st;
    }
    *out = &f->base;
    return MICA_OK;
}

void esrc_close(estore_source *src) {
    if (src) src->close(src);
}

/* ---- io_uring ---- */

#define ESRC_RING_MAX   256u
#define ESRC_TAG_WAKE   UINT64_MAX /* the eventfd read that esrc_ring_wake completes */

#ifdef ESRC_HAVE_URING

struct esrc_ring {
    struct io_uring ring;
    int fd, efd;
    unsigned depth;
    unsigned busy;       /* reads queued or in flight (not counting the wake-up read) */
    bool wake_armed;     /* the eventfd read is queued or in flight */
    uint64_t wake_buf;
};

mica_status esrc_ring_create(estore_source *src, unsigned depth, esrc_ring **out, mica_err *err) {
    const int fd = src->ring_fd ? src->ring_fd(src) : -1;
    if (fd < 0) return mica_err_set(err, MICA_ERR_UNSUPPORTED, "the source has no file descriptor");
    MICA_ASSERT(depth >= 1 && depth <= ESRC_RING_MAX);
    esrc_ring *r = mica_calloc(1, sizeof *r);
    if (!r) return mica_err_set(err, MICA_ERR_NOMEM, "out of memory");
    r->fd = fd;
    r->depth = depth;
    r->efd = eventfd(0, EFD_CLOEXEC);
    if (r->efd < 0) {
        mica_status st = mica_err_set(err, MICA_ERR_UNSUPPORTED, "eventfd failed: %s", strerror(errno));
        mica_free(r);
        return st;
    }
    const int rc = io_uring_queue_init(depth + 1, &r->ring, 0);
    if (rc < 0) {
        mica_status st = mica_err_set(err, MICA_ERR_UNSUPPORTED, "io_uring_setup failed: %s", strerror(-rc));
        close(r->efd);
        mica_free(r);
        return st;
    }
    *out = r;
    return MICA_OK;
}

void esrc_ring_free(esrc_ring *r) {
    if (!r) return;
    io_uring_queue_exit(&r->ring);
    close(r->efd);
    mica_free(r);
}

unsigned esrc_ring_space(const esrc_ring *r) { return r->depth - r->busy; }

bool esrc_ring_read(esrc_ring *r, void *buf, uint64_t off, size_t len, uint64_t tag) {
    MICA_ASSERT(tag != ESRC_TAG_WAKE && len <= UINT32_MAX);
    if (r->busy >= r->depth) return false;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) return false;
    io_uring_prep_read(sqe, r->fd, buf, (unsigned)len, off);
    io_uring_sqe_set_data64(sqe, tag);
    r->busy++;
    return true;
}

int esrc_ring_wait(esrc_ring *r, esrc_done *done, int max) {
    if (!r->wake_armed) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
        if (sqe) { /* the ring has depth + 1 entries: room for it */
            io_uring_prep_read(sqe, r->efd, &r->wake_buf, sizeof r->wake_buf, 0);
            io_uring_sqe_set_data64(sqe, ESRC_TAG_WAKE);
            r->wake_armed = true;
        }
    }
    const int rc = io_uring_submit_and_wait(&r->ring, 1);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) return rc;
    int n = 0;
    struct io_uring_cqe *cqe;
    while (n < max && io_uring_peek_cqe(&r->ring, &cqe) == 0) {
        const uint64_t tag = io_uring_cqe_get_data64(cqe);
        if (tag == ESRC_TAG_WAKE) {
            r->wake_armed = false;
        } else {
            done[n].tag = tag;
            done[n].res = cqe->res;
            n++;
            r->busy--;
        }
        io_uring_cqe_seen(&r->ring, cqe);
    }
    return n;
}

void esrc_ring_wake(esrc_ring *r) {
    const uint64_t one = 1;
    ssize_t w;
    do w = write(r->efd, &one, sizeof one);
    while (w < 0 && errno == EINTR);
}

#else /* no liburing at build time */

mica_status esrc_ring_create(estore_source *src, unsigned depth, esrc_ring **out, mica_err *err) {
    (void)src; (void)depth; (void)out;
    return mica_err_set(err, MICA_ERR_UNSUPPORTED, "built without liburing");
}
void esrc_ring_free(esrc_ring *r) { (void)r; }
unsigned esrc_ring_space(const esrc_ring *r) { (void)r; return 0; }
bool esrc_ring_read(esrc_ring *r, void *buf, uint64_t off, size_t len, uint64_t tag) {
    (void)r; (void)buf; (void)off; (void)len; (void)tag;
    return false;
}
int esrc_ring_wait(esrc_ring *r, esrc_done *done, int max) { (void)r; (void)done; (void)max; return -ENOSYS; }
void esrc_ring_wake(esrc_ring *r) { (void)r; }

#endif
