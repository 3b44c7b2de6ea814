/*
 * expert_io.c - the file source of expert bytes: pread with retries, O_DIRECT
 * with a buffered fallback (see expert_io.h). Layer: model.
 */
#include "model/expert_io.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct esrc_file {
    estore_source base; /* first: the vtable */
    int fd;
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
    *out = &f->base;
    return MICA_OK;
}

void esrc_close(estore_source *src) {
    if (src) src->close(src);
}
