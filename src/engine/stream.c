/*
 * stream.c - the memory budget of a model and, when the model does not fit
 * it, the expert store that streams its routed experts (model/expert_store.h).
 * Layer: engine. Also the OS facts the automatic budget needs (available
 * memory, cgroup v1/v2 limits), read from /proc and /sys - never from the
 * environment.
 *
 * The plan is made from the GGUF tensor table alone, before the architecture
 * binds its weights (so the binding can see the store): routed experts are
 * the tensors blk.N.ffn_{gate,up,down}_exps.weight; everything else is the
 * resident part.
 *
 * The hot set: when the experts stream, the usage statistics of earlier runs
 * (model/expert_usage.h: MODEL.gguf.usage beside the model, or a file under
 * ~/.cache/mica/usage when the model's directory is not writable) choose
 * the experts to pin: those used more than the average expert, most used
 * first, in at most half of the cache's slots (and never so many that fewer
 * than 2 * expert_used_count slots stay free for the rest). At close the
 * run's own lookups are merged into the file (decayed, expert_usage.h). A
 * file that cannot be read as this model's is ignored with one note; one
 * that cannot be written is skipped silently.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine_int.h"
#include "model/expert_store.h"
#include "model/expert_usage.h"

#define STREAM_HEADROOM_FIXED (256ull << 20) /* activations, scratch, the process itself */
#define STREAM_HEADROOM_PCT   5              /* plus this share of the available memory */
#define STREAM_KV_CTX         4096           /* KV positions the automatic headroom reserves */

struct model_stream {
    uint64_t budget;
    bool budget_auto;
    uint64_t weight_bytes, resident_bytes, expert_bytes;
    int32_t n_experts_total;
    uint64_t slot_bytes, cache_bytes;
    char note[768];
    /* usage statistics and the hot set (streaming only) */
    int32_t n_layer;
    estore_layer *layers;      /* [n_layer] where the experts are */
    int32_t *n_expert;         /* [n_layer] */
    uint32_t n_used;           /* expert_used_count */
    double lookups_per_token;  /* n_used * layers with experts */
    eusage_id usage_id;
    char usage_path[4200];     /* "" : no usage file */
    bool usage_loaded;         /* counts came from the file */
    float *usage;              /* [n_experts_total] decayed counts of earlier runs */
    int32_t n_pinned;
};

/* Appends a sentence to the model's note. */
static void stream_note_add(model_stream *ms, const char *text) {
    size_t k = strlen(ms->note);
    if (k && k + 2 < sizeof ms->note) {
        memcpy(ms->note + k, "; ", 3);
        k += 2;
    }
    const size_t n = MICA_MIN(strlen(text), sizeof ms->note - 1 - k);
    memcpy(ms->note + k, text, n);
    ms->note[k + n] = '\0';
}

/* ---- OS facts ---- */

/* MemAvailable from /proc/meminfo in bytes; false if unknown. */
static bool stream_meminfo_available(uint64_t *out) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return false;
    char line[256];
    bool ok = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long long kb;
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
            *out = (uint64_t)kb * 1024u;
            ok = true;
            break;
        }
    }
    fclose(f);
    return ok;
}

/* A limit file's value ("max" or a huge v1 value: no limit); false if absent or unlimited. */
static bool stream_read_limit(const char *path, uint64_t *out) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char buf[64] = "";
    bool ok = fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    if (!ok || strncmp(buf, "max", 3) == 0) return false;
    char *end = NULL;
    unsigned long long v = strtoull(buf, &end, 10);
    if (end == buf || v >= (1ull << 60)) return false; /* v1 reports "unlimited" as ~2^63 */
    *out = v;
    return true;
}

/*
 * The smallest memory limit of this process's cgroup and its ancestors
 * (cgroup v2: memory.max along the unified path; v1: the memory
 * controller's memory.limit_in_bytes), read through /proc/self/cgroup.
 */
static bool stream_cgroup_limit(uint64_t *out) {
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return false;
    char line[1024];
    bool found = false;
    uint64_t best = UINT64_MAX;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c2 = '\0';
        const char *ctrl = c1 + 1, *path = c2 + 1;
        const char *root, *file;
        if (line[0] == '0' && ctrl[0] == '\0') {
            root = "/sys/fs/cgroup";
            file = "memory.max";
        } else if (strstr(ctrl, "memory")) {
            root = "/sys/fs/cgroup/memory";
            file = "memory.limit_in_bytes";
        } else {
            continue;
        }
        /* the cgroup itself and every ancestor */
        char dir[1024];
        snprintf(dir, sizeof dir, "%s", path);
        for (;;) {
            char p[2200];
            uint64_t v;
            snprintf(p, sizeof p, "%s%s/%s", root, strcmp(dir, "/") == 0 ? "" : dir, file);
            if (stream_read_limit(p, &v) && v < best) {
                best = v;
                found = true;
            }
            char *slash = strrchr(dir, '/');
            if (!slash || dir[0] == '\0' || strcmp(dir, "/") == 0) break;
            if (slash == dir) strcpy(dir, "/");
            else *slash = '\0';
        }
    }
    fclose(f);
    if (found) *out = best;
    return found;
}

/* ---- the plan ---- */

static void stream_hbytes(uint64_t b, char *buf, size_t cap) {
    if (b == UINT64_MAX) { snprintf(buf, cap, "unlimited"); return; }
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int i = 0;
    while (v >= 1024.0 && i < 4) { v /= 1024.0; i++; }
    snprintf(buf, cap, i ? "%.2f %s" : "%.0f %s", v, u[i]);
}

/* An `{arch}.suffix` u32 key of the file, or dflt. */
static uint32_t stream_key_u32(const mica_model *m, const char *arch, const char *suffix, uint32_t dflt) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    uint32_t v = dflt;
    if (gguf_get_u32(m->gguf, key, &v, NULL) != MICA_OK) v = dflt;
    return v;
}

/* KV bytes of STREAM_KV_CTX positions (F32), from the file's keys (an estimate for the headroom). */
static uint64_t stream_kv_estimate(const mica_model *m, const char *arch) {
    const uint64_t n_layer = stream_key_u32(m, arch, "block_count", 0);
    const uint64_t n_head = stream_key_u32(m, arch, "attention.head_count", 1);
    const uint64_t n_kv = stream_key_u32(m, arch, "attention.head_count_kv", (uint32_t)n_head);
    const uint64_t n_embd = stream_key_u32(m, arch, "embedding_length", 0);
    const uint64_t kl = stream_key_u32(m, arch, "attention.key_length", (uint32_t)(n_embd / MICA_MAX(n_head, 1)));
    const uint64_t vl = stream_key_u32(m, arch, "attention.value_length", (uint32_t)kl);
    const uint64_t ctx = MICA_MIN((uint64_t)STREAM_KV_CTX, (uint64_t)stream_key_u32(m, arch, "context_length", STREAM_KV_CTX));
    return n_layer * n_kv * (kl + vl) * 4u * ctx; /* each factor < 2^32 / small: no overflow in practice */
}

/*
 * Fills the layer table from the tensors; counts expert and weight bytes.
 * MICA_ERR_FORMAT (no message) if a layer's expert tensors disagree.
 */
static mica_status stream_scan(const mica_model *m, estore_layer *layers, uint32_t n_layer,
                               model_stream *ms) {
    static const char *const parts[ESTORE_PARTS] = {"gate", "up", "down"};
    const gguf_ctx *g = m->gguf;
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) ms->weight_bytes += gguf_tensor_at(g, i)->nbytes;
    for (uint32_t il = 0; il < n_layer; il++) {
        for (int p = 0; p < ESTORE_PARTS; p++) {
            char name[96];
            snprintf(name, sizeof name, "blk.%u.ffn_%s_exps.weight", il, parts[p]);
            const gguf_tensor *t = gguf_find_tensor(g, name);
            if (!t) continue;
            const int64_t ne = t->ne[2];
            if (ne <= 0 || ne > INT32_MAX || (uint64_t)t->nbytes % (uint64_t)ne != 0 ||
                (layers[il].n_expert && layers[il].n_expert != ne))
                return MICA_ERR_FORMAT; /* the architecture's binding reports the shape */
            layers[il].n_expert = (int32_t)ne;
            layers[il].part_off[p] = gguf_data_offset(g) + t->offset;
            layers[il].part_bytes[p] = t->nbytes / (uint64_t)ne;
            ms->expert_bytes += t->nbytes;
        }
        if (layers[il].n_expert) ms->n_experts_total += layers[il].n_expert;
    }
    ms->resident_bytes = ms->weight_bytes - ms->expert_bytes;
    return MICA_OK;
}

/*
 * Makes the resident part of a streamed model truly resident: the pages of
 * every tensor that is not a routed expert are replaced, at the same
 * addresses, by anonymous memory holding the same bytes (read with pread),
 * then made read-only again. Views into the mapping stay valid; the bytes
 * no longer depend on the page cache (which a memory limit would reclaim)
 * nor on the file (whose truncation would otherwise turn every access into
 * SIGBUS). The expert ranges stay file-backed and are never touched.
 */
static mica_status stream_pin_resident(const mica_model *m, mica_err *err) {
    const long pg = sysconf(_SC_PAGESIZE);
    const gguf_ctx *g = m->gguf;
    int fd = open(gguf_path(g), O_RDONLY | O_CLOEXEC);
    if (pg <= 0 || fd < 0)
        return mica_err_set(err, MICA_ERR_IO, "%s: cannot open: %s", gguf_path(g), strerror(errno));
    mica_status st = MICA_OK;
    for (uint64_t i = 0; i < gguf_n_tensors(g) && !st; i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        if (!t->data || !t->nbytes || strstr(t->name, "_exps.weight")) continue;
        const uintptr_t a = (uintptr_t)t->data / (uintptr_t)pg * (uintptr_t)pg;
        const uintptr_t e = ((uintptr_t)t->data + t->nbytes + (uintptr_t)pg - 1) / (uintptr_t)pg * (uintptr_t)pg;
        const uint64_t file_off = gguf_data_offset(g) + t->offset - ((uintptr_t)t->data - a);
        void *p = mmap((void *)a, e - a, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            st = mica_err_set(err, MICA_ERR_NOMEM, "cannot make %s resident: %s", t->name, strerror(errno));
            break;
        }
        for (size_t done = 0; done < e - a;) { /* the last page may extend past the end of the file */
            ssize_t r = pread(fd, (uint8_t *)a + done, e - a - done, (off_t)(file_off + done));
            if (r < 0 && errno == EINTR) continue;
            if (r < 0 || (r == 0 && file_off + done < (uint64_t)t->offset + gguf_data_offset(g) + t->nbytes)) {
                st = mica_err_set(err, MICA_ERR_IO, "%s: cannot read tensor '%s'", gguf_path(g), t->name);
                break;
            }
            if (r == 0) break;
            done += (size_t)r;
        }
        (void)mprotect((void *)a, e - a, PROT_READ);
    }
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
    return st;
}

/* ---- usage statistics and the hot set ---- */

/* Reads the usage file into ms->usage (zeros if there is none or it is not this model's: noted). */
static void stream_usage_load(const mica_model *m, model_stream *ms) {
    mica_err e = {0};
    ms->usage = mica_calloc((size_t)MICA_MAX(ms->n_experts_total, 1), sizeof *ms->usage);
    if (!ms->usage) return;
    if (eusage_identity(gguf_path(m->gguf), gguf_data_offset(m->gguf), &ms->usage_id, &e) != MICA_OK ||
        !eusage_path(gguf_path(m->gguf), &ms->usage_id, ms->usage_path, sizeof ms->usage_path)) {
        ms->usage_path[0] = '\0';
        return;
    }
    bool absent = false;
    if (eusage_read(ms->usage_path, &ms->usage_id, ms->n_expert, ms->n_layer, ms->usage, &absent, &e) == MICA_OK) {
        ms->usage_loaded = true;
    } else if (!absent) {
        char note[700];
        snprintf(note, sizeof note, "usage statistics %.300s ignored: %.300s (they start again)", ms->usage_path, e.msg);
        stream_note_add(ms, note);
    }
}

typedef struct stream_ranked {
    float count;
    int32_t idx;
} stream_ranked;

static int stream_by_count(const void *a, const void *b) {
    const stream_ranked *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return x->idx - y->idx; /* equal counts: lower index first */
}

/*
 * The experts by decreasing count (equal: lower index first) into order[n];
 * returns how many have a count above the mean (the hot ones).
 */
static int32_t stream_rank(const float *counts, int32_t n, stream_ranked *order) {
    double sum = 0;
    for (int32_t i = 0; i < n; i++) {
        order[i] = (stream_ranked){counts[i], i};
        sum += counts[i];
    }
    qsort(order, (size_t)n, sizeof *order, stream_by_count);
    const double mean = n ? sum / n : 0;
    int32_t hot = 0;
    while (hot < n && order[hot].count > mean) hot++;
    return hot;
}

/* The experts to pin for a cache of n_slots (see the file comment); *out owned by the caller. */
static int32_t stream_hot_set(const model_stream *ms, int32_t n_slots, estore_eid **out) {
    *out = NULL;
    if (!ms->usage_loaded || ms->n_experts_total <= 0) return 0;
    const int32_t keep_free = MICA_MAX(n_slots - n_slots / 2, (int32_t)(2 * ms->n_used));
    const int32_t max_pin = n_slots - keep_free;
    if (max_pin <= 0) return 0;
    stream_ranked *order = mica_malloc((size_t)ms->n_experts_total * sizeof *order);
    estore_eid *ids = mica_malloc((size_t)max_pin * sizeof *ids);
    int32_t n = 0;
    if (order && ids) {
        const int32_t hot = MICA_MIN(stream_rank(ms->usage, ms->n_experts_total, order), max_pin);
        for (; n < hot; n++) { /* index -> (layer, expert) */
            int32_t idx = order[n].idx, l = 0;
            while (idx >= ms->n_expert[l]) idx -= ms->n_expert[l++];
            ids[n] = (estore_eid){l, idx};
        }
    }
    mica_free(order);
    if (!n) { mica_free(ids); ids = NULL; }
    *out = ids;
    return n;
}

/* Merges this run's lookups into the usage file (errors ignored: usage is advisory). */
static void stream_usage_save(mica_model *m) {
    model_stream *ms = m->stream;
    if (!ms || !m->experts || !ms->usage || !ms->usage_path[0]) return;
    uint32_t *fresh = mica_malloc((size_t)MICA_MAX(ms->n_experts_total, 1) * sizeof *fresh);
    if (!fresh) return;
    const int64_t n = expert_store_usage(m->experts, fresh, ms->n_experts_total);
    uint64_t any = 0;
    for (int64_t i = 0; i < n && i < ms->n_experts_total; i++) any += fresh[i];
    if (any && n == ms->n_experts_total) {
        eusage_merge(ms->usage, fresh, n, ms->lookups_per_token);
        mica_err e = {0};
        (void)eusage_write(ms->usage_path, &ms->usage_id, ms->n_expert, ms->n_layer, ms->usage, &e);
    }
    mica_free(fresh);
}

mica_status stream_setup(mica_model *m, const mica_model_params *p, mica_err *err) {
    gguf_str arch;
    if (gguf_get_str(m->gguf, "general.architecture", &arch, NULL) != MICA_OK || !arch.ptr) return MICA_OK;
    char an[64];
    snprintf(an, sizeof an, "%.*s", (int)MICA_MIN(arch.len, 63), arch.ptr);
    const uint32_t n_layer = MICA_MIN(stream_key_u32(m, an, "block_count", 0), 4096u);
    const uint32_t n_used = MICA_MAX(stream_key_u32(m, an, "expert_used_count", 1), 1u);

    model_stream *ms = mica_calloc(1, sizeof *ms);
    estore_layer *layers = mica_calloc(MICA_MAX(n_layer, 1u), sizeof *layers);
    mica_status st = MICA_OK;
    if (!ms || !layers) { st = mica_err_set(err, MICA_ERR_NOMEM, "out of memory"); goto done; }
    m->stream = ms;
    if (stream_scan(m, layers, n_layer, ms) != MICA_OK) { /* misshapen experts: no plan */
        ms->expert_bytes = 0;
        ms->resident_bytes = ms->weight_bytes;
        ms->budget = MICA_MEM_UNLIMITED;
        goto done;
    }

    /* the budget */
    ms->budget = p->mem_budget;
    if (ms->budget == 0) {
        ms->budget_auto = true;
        uint64_t avail = UINT64_MAX, cg;
        if (!stream_meminfo_available(&avail)) avail = UINT64_MAX;
        if (stream_cgroup_limit(&cg)) avail = MICA_MIN(avail, cg);
        if (avail == UINT64_MAX) {
            ms->budget = MICA_MEM_UNLIMITED;
        } else {
            const uint64_t head = STREAM_HEADROOM_FIXED + avail / 100 * STREAM_HEADROOM_PCT +
                                  stream_kv_estimate(m, an);
            ms->budget = avail > head ? avail - head : 0;
        }
    }
    if (ms->budget >= ms->weight_bytes) goto done; /* everything fits: plain mapping */

    /* the minimum: the resident part plus one token's experts */
    const size_t align = p->buffered_io ? 1 : ESRC_DIRECT_ALIGN;
    ms->slot_bytes = expert_store_slot_bytes(layers, (int32_t)n_layer, align);
    uint64_t min_bytes = UINT64_MAX;
    if (ms->slot_bytes && ms->slot_bytes != UINT64_MAX) {
        uint64_t slots;
        if (!mica_mul_ok(ms->slot_bytes, n_used, &slots) || !mica_add_ok(ms->resident_bytes, slots, &min_bytes))
            min_bytes = UINT64_MAX;
    }
    char b1[32], b2[32], b3[32];
    stream_hbytes(ms->budget, b1, sizeof b1);
    stream_hbytes(ms->resident_bytes, b2, sizeof b2);
    if (ms->budget < min_bytes) {
        stream_hbytes(min_bytes, b3, sizeof b3);
        if (ms->budget_auto) {
            snprintf(ms->note, sizeof ms->note,
                     "the automatic memory budget (%s) cannot hold the model's resident part (%s)%s; "
                     "mapping the whole file instead", b1, b2, ms->expert_bytes ? " plus one token's experts" : "");
            ms->budget = MICA_MEM_UNLIMITED;
            goto done;
        }
        if (!ms->expert_bytes)
            st = mica_err_set(err, MICA_ERR_LIMIT,
                              "%s: memory budget %s (%" PRIu64 " bytes) is smaller than the model's weights "
                              "(%s, %" PRIu64 " bytes), which have no routed experts to stream",
                              gguf_path(m->gguf), b1, ms->budget, b2, ms->weight_bytes);
        else
            st = mica_err_set(err, MICA_ERR_LIMIT,
                              "%s: memory budget %s (%" PRIu64 " bytes) is too small: the resident part needs "
                              "%s plus %u expert slots of %" PRIu64 " bytes; the minimum budget is %s (%" PRIu64
                              " bytes)", gguf_path(m->gguf), b1, ms->budget, b2, n_used, ms->slot_bytes, b3,
                              min_bytes);
        goto done;
    }

    /* stream: the cache gets what the resident part leaves, at most one slot per expert */
    ms->cache_bytes = ms->budget - ms->resident_bytes;
    uint64_t all_slots;
    if (mica_mul_ok(ms->slot_bytes, (uint64_t)ms->n_experts_total, &all_slots))
        ms->cache_bytes = MICA_MIN(ms->cache_bytes, all_slots);
    estore_source *src = NULL;
    if ((st = esrc_open_file(gguf_path(m->gguf), !p->buffered_io, &src, err))) goto done;
    if (src->align != align) /* O_DIRECT refused: slots sized for unaligned reads */
        ms->slot_bytes = expert_store_slot_bytes(layers, (int32_t)n_layer, src->align);

    /* the expert layout and the usage of earlier runs, for the hot set */
    ms->n_layer = (int32_t)n_layer;
    ms->n_used = n_used;
    ms->n_expert = mica_calloc(MICA_MAX(n_layer, 1u), sizeof *ms->n_expert);
    ms->layers = mica_malloc(MICA_MAX(n_layer, 1u) * sizeof *ms->layers);
    if (!ms->n_expert || !ms->layers) { esrc_close(src); st = mica_err_set(err, MICA_ERR_NOMEM, "out of memory"); goto done; }
    memcpy(ms->layers, layers, n_layer * sizeof *layers);
    int32_t n_moe = 0;
    for (uint32_t il = 0; il < n_layer; il++) {
        ms->n_expert[il] = layers[il].n_expert;
        n_moe += layers[il].n_expert > 0;
    }
    ms->lookups_per_token = (double)n_used * n_moe;
    stream_usage_load(m, ms);
    estore_eid *pins = NULL;
    const int32_t n_pins = stream_hot_set(ms, (int32_t)MICA_MIN(ms->cache_bytes / ms->slot_bytes, (uint64_t)INT32_MAX / 2), &pins);

    estore_params ep = {.n_layer = (int32_t)n_layer, .layers = layers, .cache_bytes = ms->cache_bytes,
                        .n_io_threads = p->n_io_threads, .pinned = pins, .n_pinned = n_pins};
    st = expert_store_create(&ep, src, gguf_file_size(m->gguf), &m->experts, err);
    mica_free(pins);
    if (st) goto done;
    {
        const char *snote = expert_store_note(m->experts);
        if (snote[0]) { /* the source's and the store's notes go first */
            char rest[sizeof ms->note];
            snprintf(rest, sizeof rest, "%s", ms->note);
            snprintf(ms->note, sizeof ms->note, "%s", snote);
            if (rest[0]) stream_note_add(ms, rest);
        }
        estore_stats est;
        expert_store_stats(m->experts, &est);
        ms->n_pinned = est.pinned_slots;
    }
    ms->cache_bytes = expert_store_arena_bytes(m->experts);
    st = stream_pin_resident(m, err);
done:
    mica_free(layers);
    return st;
}

void stream_free(mica_model *m) {
    stream_usage_save(m);
    expert_store_free(m->experts);
    m->experts = NULL;
    if (m->stream) {
        mica_free(m->stream->usage);
        mica_free(m->stream->n_expert);
        mica_free(m->stream->layers);
    }
    mica_free(m->stream);
    m->stream = NULL;
}

/* ---- public ---- */

void mica_model_expert_stats(const mica_model *m, mica_expert_stats *out) {
    memset(out, 0, sizeof *out);
    const model_stream *ms = m->stream;
    if (!ms) return;
    out->budget = ms->budget;
    out->budget_auto = ms->budget_auto;
    out->weight_bytes = ms->weight_bytes;
    out->expert_bytes = ms->expert_bytes;
    out->n_experts_total = ms->n_experts_total;
    out->resident_bytes = m->experts ? ms->resident_bytes : ms->weight_bytes;
    if (!m->experts) return;
    estore_stats st;
    expert_store_stats(m->experts, &st);
    out->streaming = true;
    out->direct_io = expert_store_direct(m->experts);
    out->slot_bytes = st.slot_bytes;
    out->cache_bytes = ms->cache_bytes;
    out->n_slots = st.n_slots;
    out->cached_experts = st.resident_slots;
    out->lookups = st.lookups;
    out->hits = st.hits;
    out->misses = st.misses;
    out->prefetch_reads = st.prefetch_reads;
    out->prefetch_used = st.prefetch_used;
    out->reads = st.reads;
    out->read_errors = st.read_errors;
    out->bytes_read = st.bytes_read;
    out->evictions = st.evictions;
    out->io_busy_seconds = (double)st.io_busy_ns * 1e-9;
    out->stall_seconds = (double)st.stall_ns * 1e-9;
    out->pinned_experts = st.pinned_slots;
    out->io_uring = st.ring;
}

const char *mica_model_note(const mica_model *m) { return m->stream ? m->stream->note : ""; }

size_t mica_model_describe_memory(const mica_model *m, char *buf, size_t cap) {
    mica_expert_stats s;
    mica_model_expert_stats(m, &s);
    char b[6][32];
    stream_hbytes(s.weight_bytes, b[0], 32);
    stream_hbytes(s.expert_bytes, b[1], 32);
    stream_hbytes(s.weight_bytes - s.expert_bytes, b[2], 32);
    stream_hbytes(s.budget, b[3], 32);
    stream_hbytes(s.cache_bytes, b[4], 32);
    stream_hbytes(s.slot_bytes, b[5], 32);
    char tmp[2048];
    int k = snprintf(tmp, sizeof tmp,
                     "weights:         %s (%" PRIu64 " bytes)\n"
                     "routed experts:  %s (%" PRIu64 " bytes) in %d experts\n"
                     "resident part:   %s (%" PRIu64 " bytes): everything but the routed experts\n"
                     "memory budget:   %s%s\n",
                     b[0], s.weight_bytes, b[1], s.expert_bytes, s.n_experts_total, b[2],
                     s.weight_bytes - s.expert_bytes, b[3], s.budget_auto ? " (automatic)" : "");
    if (k < 0) k = 0;
    if ((size_t)k < sizeof tmp) {
        if (s.streaming)
            snprintf(tmp + k, sizeof tmp - (size_t)k,
                     "plan:            stream the routed experts: resident part mapped, expert cache %s "
                     "(%d slots of %s, %.1f%% of the experts), reads %s, %s\n",
                     b[4], s.n_slots, b[5], s.n_experts_total ? 100.0 * s.n_slots / s.n_experts_total : 0.0,
                     s.direct_io ? "O_DIRECT" : "through the page cache",
                     s.io_uring ? "io_uring" : "pread threads");
        const model_stream *ms = m->stream;
        const size_t k2 = strlen(tmp);
        if (s.streaming && ms && k2 < sizeof tmp)
            snprintf(tmp + k2, sizeof tmp - k2, "hot set:         %d experts pinned from %.1500s%s\n", ms->n_pinned,
                     ms->usage_path[0] ? ms->usage_path : "(no usage file: none can be kept)",
                     ms->usage_loaded ? "" : " (no statistics yet)");
        else
            snprintf(tmp + k, sizeof tmp - (size_t)k, "plan:            map the whole file (%s)\n",
                     s.budget >= s.weight_bytes ? "everything fits"
                     : s.expert_bytes ? "the budget cannot hold the resident part" : "no routed experts");
    }
    const size_t len = strlen(tmp);
    if (buf && cap) {
        memcpy(buf, tmp, MICA_MIN(len, cap - 1));
        buf[MICA_MIN(len, cap - 1)] = '\0';
    }
    return len;
}

/* ---- predicted speed (mica_model_describe_speed) ---- */

#define STREAM_SAMPLE_READERS 4
#define STREAM_SAMPLE_BYTES   (256ull << 20) /* disk bytes sampled at most */
#define STREAM_SAMPLE_NS      600000000ull   /* ... or for at most this long */
#define STREAM_MEM_BYTES      (256u << 20)

typedef struct stream_sampler {
    int fd;
    uint64_t lo, hi;       /* the range sampled (the experts, or the whole file) */
    size_t chunk;          /* bytes per read, a multiple of 4096 */
    uint64_t t_end_ns;
    uint32_t seed;
    uint64_t bytes;        /* out */
} stream_sampler;

static uint64_t stream_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *stream_sample_main(void *arg) {
    stream_sampler *w = arg;
    void *buf = mica_aligned_alloc(4096, w->chunk);
    if (!buf) return NULL;
    const uint64_t span = w->hi - w->lo > w->chunk ? (w->hi - w->lo - w->chunk) / 4096 : 1;
    uint32_t x = w->seed;
    while (w->bytes < STREAM_SAMPLE_BYTES / STREAM_SAMPLE_READERS && stream_now_ns() < w->t_end_ns) {
        x = x * 1664525u + 1013904223u; /* spread offsets: a different place each read */
        const uint64_t off = w->lo / 4096 * 4096 + (uint64_t)(x % span) * 4096;
        ssize_t r = pread(w->fd, buf, w->chunk, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        w->bytes += (uint64_t)r;
    }
    mica_free(buf);
    return NULL;
}

/* Disk read GB/s of the model file (O_DIRECT if possible: *direct); 0 if unknown. */
static double stream_disk_gbs(const mica_model *m, size_t chunk, bool *direct) {
    const char *path = gguf_path(m->gguf);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT);
    *direct = fd >= 0;
    if (fd < 0) fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    const model_stream *ms = m->stream;
    uint64_t lo = gguf_data_offset(m->gguf), hi = gguf_file_size(m->gguf);
    if (ms && ms->layers) { /* the expert region */
        lo = UINT64_MAX;
        hi = 0;
        for (int32_t l = 0; l < ms->n_layer; l++)
            for (int p = 0; p < ESTORE_PARTS; p++)
                if (ms->layers[l].n_expert && ms->layers[l].part_bytes[p]) {
                    lo = MICA_MIN(lo, ms->layers[l].part_off[p]);
                    hi = MICA_MAX(hi, ms->layers[l].part_off[p] + ms->layers[l].part_bytes[p] * (uint64_t)ms->layers[l].n_expert);
                }
    }
    chunk = MICA_MAX((size_t)4096, chunk / 4096 * 4096);
    if (hi <= lo || hi - lo < chunk) { close(fd); return 0; }
    stream_sampler w[STREAM_SAMPLE_READERS];
    pthread_t th[STREAM_SAMPLE_READERS];
    bool started[STREAM_SAMPLE_READERS] = {0};
    const uint64_t t0 = stream_now_ns();
    for (int i = 0; i < STREAM_SAMPLE_READERS; i++) {
        w[i] = (stream_sampler){.fd = fd, .lo = lo, .hi = hi, .chunk = chunk, .t_end_ns = t0 + STREAM_SAMPLE_NS,
                                .seed = 2654435761u * (uint32_t)(i + 1)};
        started[i] = pthread_create(&th[i], NULL, stream_sample_main, &w[i]) == 0;
    }
    uint64_t bytes = 0;
    for (int i = 0; i < STREAM_SAMPLE_READERS; i++)
        if (started[i]) {
            pthread_join(th[i], NULL);
            bytes += w[i].bytes;
        }
    const double secs = (double)(stream_now_ns() - t0) * 1e-9;
    if (!*direct) (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
    return secs > 0 && bytes ? (double)bytes / secs * 1e-9 : 0;
}

/* Memory read GB/s of one thread (the best of 3 passes over STREAM_MEM_BYTES); 0 if unknown. */
static double stream_mem_gbs(void) {
    uint64_t *a = mica_aligned_alloc(4096, STREAM_MEM_BYTES);
    if (!a) return 0;
    const size_t n = STREAM_MEM_BYTES / sizeof *a;
    for (size_t i = 0; i < n; i++) a[i] = i;
    double best = 0;
    volatile uint64_t sink = 0;
    for (int pass = 0; pass < 3; pass++) {
        const uint64_t t0 = stream_now_ns();
        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (size_t i = 0; i + 4 <= n; i += 4) {
            s0 += a[i];
            s1 += a[i + 1];
            s2 += a[i + 2];
            s3 += a[i + 3];
        }
        sink += s0 + s1 + s2 + s3;
        const double secs = (double)(stream_now_ns() - t0) * 1e-9;
        if (secs > 0) best = MICA_MAX(best, (double)STREAM_MEM_BYTES / secs * 1e-9);
    }
    (void)sink;
    mica_free(a);
    return best;
}

/* Expected hit rate of n_slots slots; *from_usage says whether statistics were used. */
static double stream_expected_hits(const model_stream *ms, int32_t n_slots, bool *from_usage) {
    *from_usage = false;
    if (ms->n_experts_total <= 0) return 1.0;
    double h = MICA_MIN(1.0, (double)n_slots / ms->n_experts_total);
    if (!ms->usage_loaded || !ms->usage) return h;
    stream_ranked *order = mica_malloc((size_t)ms->n_experts_total * sizeof *order);
    if (!order) return h;
    (void)stream_rank(ms->usage, ms->n_experts_total, order);
    double top = 0, all = 0;
    for (int32_t i = 0; i < ms->n_experts_total; i++) {
        all += order[i].count;
        if (i < n_slots) top += order[i].count;
    }
    mica_free(order);
    if (all > 0) {
        h = top / all;
        *from_usage = true;
    }
    return h;
}

size_t mica_model_describe_speed(const mica_model *m, char *buf, size_t cap) {
    const model_stream *ms = m->stream;
    char tmp[2048];
    size_t k = 0;
#define SPEED_LINE(...) do { int w_ = snprintf(tmp + k, sizeof tmp - k, __VA_ARGS__); \
        if (w_ > 0) k = MICA_MIN(k + (size_t)w_, sizeof tmp - 1); } while (0)
    const bool streaming = m->experts && ms && ms->layers;
    /* one expert read: the aligned supersets of its parts, averaged over the MoE layers */
    double read_bytes = 0;
    if (streaming) {
        const uint64_t A = expert_store_direct(m->experts) ? ESRC_DIRECT_ALIGN : 1;
        int32_t n_moe = 0;
        for (int32_t l = 0; l < ms->n_layer; l++) {
            if (!ms->layers[l].n_expert) continue;
            n_moe++;
            for (int p = 0; p < ESTORE_PARTS; p++) {
                const uint64_t nb = ms->layers[l].part_bytes[p];
                if (nb) read_bytes += (double)((nb + 2 * (A - 1)) / A * A);
            }
        }
        read_bytes = n_moe ? read_bytes / n_moe : 0;
    }
    bool direct = false;
    const double disk = stream_disk_gbs(m, streaming ? (size_t)read_bytes : (size_t)1 << 20, &direct);
    const double mem = stream_mem_gbs();
    SPEED_LINE("disk read:       %.2f GB/s (%s, %d readers, %s reads at spread offsets of the file, about %.1f s)\n",
               disk, direct ? "O_DIRECT" : "through the page cache: may be optimistic", STREAM_SAMPLE_READERS,
               streaming ? "expert-sized" : "1 MiB", (double)STREAM_SAMPLE_NS * 1e-9);
    SPEED_LINE("memory read:     %.2f GB/s (one thread summing %u MiB)\n", mem, STREAM_MEM_BYTES >> 20);
    const double bpt = (double)m->bytes_per_token;
    SPEED_LINE("bytes per token: %.3f GB of weights read to compute one token\n", bpt * 1e-9);
    double hit = 1.0, disk_bpt = 0;
    if (streaming) {
        estore_stats st;
        expert_store_stats(m->experts, &st);
        bool from_usage = false;
        hit = stream_expected_hits(ms, st.n_slots, &from_usage);
        disk_bpt = (1.0 - hit) * ms->lookups_per_token * read_bytes;
        SPEED_LINE("expected hits:   %.1f%% of %.0f expert lookups per token (%s)\n", 100.0 * hit,
                   ms->lookups_per_token,
                   from_usage ? "usage statistics: share of lookups that went to the cache's most used experts"
                              : "no usage statistics: cache slots / experts, as if routing were uniform");
        SPEED_LINE("disk per token:  %.3f GB (misses x %.2f MB per aligned expert read)\n", disk_bpt * 1e-9,
                   read_bytes * 1e-6);
    } else {
        SPEED_LINE("expected hits:   every weight is mapped (nothing streams)\n");
    }
    if (mem > 0 && (disk > 0 || disk_bpt == 0)) {
        const double t_mem = bpt / (mem * 1e9), t_io = disk_bpt > 0 ? disk_bpt / (disk * 1e9) : 0;
        SPEED_LINE("predicted:       %.2f tokens/s = 1 / (%.3f GB / %.2f GB/s + %.3f GB / %.2f GB/s); at most %.2f "
                   "if reads overlap compute fully\n", 1.0 / (t_mem + t_io), bpt * 1e-9, mem, disk_bpt * 1e-9, disk,
                   1.0 / MICA_MAX(t_mem, t_io));
    } else {
        SPEED_LINE("predicted:       unknown (a bandwidth could not be measured)\n");
    }
#undef SPEED_LINE
    if (buf && cap) {
        memcpy(buf, tmp, MICA_MIN(k, cap - 1));
        buf[MICA_MIN(k, cap - 1)] = '\0';
    }
    return k;
}
