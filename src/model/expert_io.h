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
 * Thread safety: read_at may be called from several threads at once (pread
 * on one descriptor); close must be called once, after the last read.
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

#endif /* MICA_EXPERT_IO_H */
