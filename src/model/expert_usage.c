/*
 * expert_usage.c - the usage-statistics file of a streamed model (format and
 * location in expert_usage.h). Layer: model.
 */
#include "model/expert_usage.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EU_MAGIC   "MICAUSE1"
#define EU_VERSION 1u
#define EU_FIXED   40u /* bytes before n_expert[] */
#define EU_SAMPLE  4096u

/* ---- little helpers ---- */

static uint64_t eu_fnv(uint64_t h, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}
#define EU_FNV_INIT 0xcbf29ce484222325ull

static void eu_put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void eu_put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t eu_get32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t eu_get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Reads exactly n bytes at off (fewer only at end of file); returns the count or -1. */
static int64_t eu_pread_full(int fd, void *buf, size_t n, uint64_t off) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, (uint8_t *)buf + done, n - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) break;
        done += (size_t)r;
    }
    return (int64_t)done;
}

/* Hashes n bytes of fd at off into h. */
static bool eu_hash_range(int fd, uint64_t off, uint64_t n, uint64_t *h) {
    uint8_t buf[65536];
    while (n > 0) {
        const size_t want = (size_t)MICA_MIN(n, (uint64_t)sizeof buf);
        const int64_t got = eu_pread_full(fd, buf, want, off);
        if (got != (int64_t)want) return false;
        *h = eu_fnv(*h, buf, want);
        off += want;
        n -= want;
    }
    return true;
}

mica_status eusage_identity(const char *path, uint64_t header_bytes, eusage_id *out, mica_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        mica_status s = mica_err_set(err, MICA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return s;
    }
    const uint64_t size = (uint64_t)st.st_size;
    uint64_t h = EU_FNV_INIT;
    const uint64_t head = MICA_MIN(MICA_MIN(header_bytes, (uint64_t)EUSAGE_HEADER_HASH_MAX), size);
    const uint64_t sample = MICA_MIN((uint64_t)EU_SAMPLE, size);
    bool ok = eu_hash_range(fd, 0, head, &h) && eu_hash_range(fd, size / 2 - MICA_MIN(size / 2, sample / 2), sample, &h) &&
              eu_hash_range(fd, size - sample, sample, &h);
    close(fd);
    if (!ok) return mica_err_set(err, MICA_ERR_IO, "%s: cannot read", path);
    out->size = size;
    out->hash = h;
    return MICA_OK;
}

/* ---- where ---- */

bool eusage_path(const char *model_path, const eusage_id *id, char *out, size_t cap) {
    const char *slash = strrchr(model_path, '/');
    char dir[4096];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == model_path) snprintf(dir, sizeof dir, "/");
    else if ((size_t)(slash - model_path) < sizeof dir) snprintf(dir, sizeof dir, "%.*s", (int)(slash - model_path), model_path);
    else return false;
    if (access(dir, W_OK) == 0) {
        int k = snprintf(out, cap, "%s.usage", model_path);
        return k > 0 && (size_t)k < cap;
    }
    /* the cache directory under the user's home */
    char pwbuf[4096];
    struct passwd pw, *res = NULL;
    if (getpwuid_r(getuid(), &pw, pwbuf, sizeof pwbuf, &res) != 0 || !res || !pw.pw_dir || !pw.pw_dir[0]) return false;
    const char *name = slash ? slash + 1 : model_path;
    int k = snprintf(out, cap, "%s/.cache/mica/usage/%s.%016" PRIx64 ".usage", pw.pw_dir, name, id->hash);
    return k > 0 && (size_t)k < cap;
}

/* ---- read / write ---- */

static mica_status eu_layout(const int32_t *n_expert, int32_t n_layer, uint64_t *n_total, uint64_t *bytes,
                             mica_err *err) {
    uint64_t n = 0;
    if (n_layer < 1 || n_layer > EUSAGE_MAX_LAYERS)
        return mica_err_set(err, MICA_ERR_INVALID_ARG, "%d layers out of range", n_layer);
    for (int32_t l = 0; l < n_layer; l++) {
        if (n_expert[l] < 0) return mica_err_set(err, MICA_ERR_INVALID_ARG, "negative expert count");
        n += (uint64_t)n_expert[l];
    }
    if (n > EUSAGE_MAX_EXPERTS) return mica_err_set(err, MICA_ERR_INVALID_ARG, "%" PRIu64 " experts", n);
    *n_total = n;
    *bytes = EU_FIXED + 4u * (uint64_t)n_layer + 4u * n + 8u;
    return MICA_OK;
}

mica_status eusage_read(const char *path, const eusage_id *id, const int32_t *n_expert, int32_t n_layer,
                        float *counts, bool *absent, mica_err *err) {
    *absent = false;
    uint64_t n_total, want;
    mica_status st = eu_layout(n_expert, n_layer, &n_total, &want, err);
    if (st) return st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *absent = errno == ENOENT;
        return mica_err_set(err, MICA_ERR_IO, "cannot open: %s", strerror(errno));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return mica_err_set(err, MICA_ERR_IO, "cannot examine: %s", strerror(errno));
    }
    const uint64_t have = (uint64_t)sb.st_size;
    uint8_t *buf = NULL;
    if (have < EU_FIXED + 8u) { st = mica_err_set(err, MICA_ERR_FORMAT, "truncated (%" PRIu64 " bytes)", have); goto done; }
    if (have > want) { st = mica_err_set(err, MICA_ERR_FORMAT, "%" PRIu64 " bytes where %" PRIu64 " belong", have, want); goto done; }
    buf = mica_malloc((size_t)have);
    if (!buf) { st = mica_err_set(err, MICA_ERR_NOMEM, "out of memory"); goto done; }
    if (eu_pread_full(fd, buf, (size_t)have, 0) != (int64_t)have) {
        st = mica_err_set(err, MICA_ERR_IO, "cannot read: %s", strerror(errno));
        goto done;
    }
    if (memcmp(buf, EU_MAGIC, 8) != 0) { st = mica_err_set(err, MICA_ERR_FORMAT, "not a usage file (bad magic)"); goto done; }
    if (eu_get32(buf + 8) != EU_VERSION) {
        st = mica_err_set(err, MICA_ERR_FORMAT, "version %u (this build reads %u)", eu_get32(buf + 8), EU_VERSION);
        goto done;
    }
    if (eu_get64(buf + 16) != id->size || eu_get64(buf + 24) != id->hash) {
        st = mica_err_set(err, MICA_ERR_FORMAT, "written for another model file (size or header hash differ)");
        goto done;
    }
    if (eu_get32(buf + 12) != (uint32_t)n_layer || eu_get64(buf + 32) != n_total) {
        st = mica_err_set(err, MICA_ERR_FORMAT, "its layers do not match the model's");
        goto done;
    }
    if (have < want) { st = mica_err_set(err, MICA_ERR_FORMAT, "truncated (%" PRIu64 " of %" PRIu64 " bytes)", have, want); goto done; }
    if (eu_get64(buf + want - 8) != eu_fnv(EU_FNV_INIT, buf, (size_t)want - 8)) {
        st = mica_err_set(err, MICA_ERR_FORMAT, "checksum mismatch (corrupt)");
        goto done;
    }
    for (int32_t l = 0; l < n_layer; l++)
        if (eu_get32(buf + EU_FIXED + 4u * (uint64_t)l) != (uint32_t)n_expert[l]) {
            st = mica_err_set(err, MICA_ERR_FORMAT, "its layers do not match the model's");
            goto done;
        }
    const uint8_t *c = buf + EU_FIXED + 4u * (uint64_t)n_layer;
    for (uint64_t i = 0; i < n_total; i++) {
        uint32_t bits = eu_get32(c + 4 * i);
        float v;
        memcpy(&v, &bits, sizeof v);
        if (!isfinite(v) || v < 0.0f) { st = mica_err_set(err, MICA_ERR_FORMAT, "count %" PRIu64 " is invalid", i); goto done; }
    }
    for (uint64_t i = 0; i < n_total; i++) { /* valid: only now write the output */
        uint32_t bits = eu_get32(c + 4 * i);
        memcpy(&counts[i], &bits, sizeof bits);
    }
done:
    mica_free(buf);
    close(fd);
    return st;
}

/* mkdir -p of the directory part of path (best effort). */
static void eu_mkdirs(const char *path) {
    char d[4096];
    snprintf(d, sizeof d, "%s", path);
    char *slash = strrchr(d, '/');
    if (!slash || slash == d) return;
    *slash = '\0';
    for (char *p = d + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        (void)mkdir(d, 0755);
        *p = '/';
    }
    (void)mkdir(d, 0755);
}

mica_status eusage_write(const char *path, const eusage_id *id, const int32_t *n_expert, int32_t n_layer,
                         const float *counts, mica_err *err) {
    uint64_t n_total, bytes;
    mica_status st = eu_layout(n_expert, n_layer, &n_total, &bytes, err);
    if (st) return st;
    uint8_t *buf = mica_malloc((size_t)bytes);
    if (!buf) return mica_err_set(err, MICA_ERR_NOMEM, "out of memory");
    memcpy(buf, EU_MAGIC, 8);
    eu_put32(buf + 8, EU_VERSION);
    eu_put32(buf + 12, (uint32_t)n_layer);
    eu_put64(buf + 16, id->size);
    eu_put64(buf + 24, id->hash);
    eu_put64(buf + 32, n_total);
    for (int32_t l = 0; l < n_layer; l++) eu_put32(buf + EU_FIXED + 4u * (uint64_t)l, (uint32_t)n_expert[l]);
    uint8_t *c = buf + EU_FIXED + 4u * (uint64_t)n_layer;
    for (uint64_t i = 0; i < n_total; i++) {
        uint32_t bits;
        memcpy(&bits, &counts[i], sizeof bits);
        eu_put32(c + 4 * i, bits);
    }
    eu_put64(buf + bytes - 8, eu_fnv(EU_FNV_INIT, buf, (size_t)bytes - 8));

    if (strstr(path, "/.cache/mica/usage/")) eu_mkdirs(path);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    bool ok = fd >= 0;
    for (size_t done = 0; ok && done < bytes;) {
        ssize_t w = write(fd, buf + done, (size_t)bytes - done);
        if (w < 0 && errno == EINTR) continue;
        ok = w > 0;
        if (ok) done += (size_t)w;
    }
    if (fd >= 0 && close(fd) != 0) ok = false;
    if (ok) ok = rename(tmp, path) == 0;
    if (!ok) {
        st = mica_err_set(err, MICA_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        if (fd >= 0) (void)unlink(tmp);
    }
    mica_free(buf);
    return st;
}

void eusage_merge(float *counts, const uint32_t *fresh, int64_t n, double lookups_per_token) {
    double total = 0;
    for (int64_t i = 0; i < n; i++) total += fresh[i];
    const double tokens = total / (lookups_per_token >= 1.0 ? lookups_per_token : 1.0);
    const double decay = pow(0.5, tokens / EUSAGE_HALF_LIFE_TOKENS);
    for (int64_t i = 0; i < n; i++) counts[i] = (float)((double)counts[i] * decay + (double)fresh[i]);
}
