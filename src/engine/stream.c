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
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/engine_int.h"
#include "model/expert_store.h"

#define STREAM_HEADROOM_FIXED (256ull << 20) /* activations, scratch, the process itself */
#define STREAM_HEADROOM_PCT   5              /* plus this share of the available memory */
#define STREAM_KV_CTX         4096           /* KV positions the automatic headroom reserves */

struct model_stream {
    uint64_t budget;
    bool budget_auto;
    uint64_t weight_bytes, resident_bytes, expert_bytes;
    int32_t n_experts_total;
    uint64_t slot_bytes, cache_bytes;
    char note[512];
};

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
    if (src->note[0]) snprintf(ms->note, sizeof ms->note, "%s", src->note);
    estore_params ep = {.n_layer = (int32_t)n_layer, .layers = layers, .cache_bytes = ms->cache_bytes,
                        .n_io_threads = p->n_io_threads};
    if ((st = expert_store_create(&ep, src, gguf_file_size(m->gguf), &m->experts, err))) goto done;
    ms->cache_bytes = expert_store_arena_bytes(m->experts);
    st = stream_pin_resident(m, err);
done:
    mica_free(layers);
    return st;
}

void stream_free(mica_model *m) {
    expert_store_free(m->experts);
    m->experts = NULL;
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
                     "(%d slots of %s, %.1f%% of the experts), reads %s\n",
                     b[4], s.n_slots, b[5], s.n_experts_total ? 100.0 * s.n_slots / s.n_experts_total : 0.0,
                     s.direct_io ? "O_DIRECT" : "through the page cache");
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
