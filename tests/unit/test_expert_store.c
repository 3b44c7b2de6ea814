/*
 * test_expert_store.c - the expert store's lease contract, LRU, prefetch,
 * read errors and byte fidelity over an in-memory source with fault
 * injection and over real files (O_DIRECT or its fallback); and, on the tiny
 * MoE presets, "placement never changes tokens": logits bit-identical with
 * an unlimited budget and with small budgets that stream the experts.
 *
 * Expected bytes come from an independent pattern function of the file
 * offset, never from the store.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "convert/gen.h"
#include "gguf/gguf.h"
#include "tensor/dtype.h"
#include "mica.h"
#include "model/expert_store.h"
#include "model/expert_usage.h"
#include "test.h"

/* ---- an in-memory source with fault injection ---- */

static uint8_t pat(uint64_t off) { return (uint8_t)((off * 2654435761u) >> 13); }

typedef struct mem_src {
    estore_source base;
    uint8_t *data;
    _Atomic uint64_t size;   /* bytes readable (shrink it to simulate truncation) */
    _Atomic int32_t reads;   /* read_at calls */
    _Atomic int32_t fail_io; /* the next N reads fail with an I/O error */
    _Atomic int32_t misaligned;
} mem_src;

static mica_status mem_read(estore_source *src, void *buf, uint64_t off, size_t len, size_t need,
                            size_t *got, mica_err *err) {
    mem_src *m = (mem_src *)src;
    atomic_fetch_add(&m->reads, 1);
    if (src->align > 1 && (((uintptr_t)buf | off | len) % src->align) != 0) atomic_fetch_add(&m->misaligned, 1);
    if (atomic_load(&m->fail_io) > 0) {
        atomic_fetch_sub(&m->fail_io, 1);
        return mica_err_set(err, MICA_ERR_IO, "mem: injected I/O error at %llu", (unsigned long long)off);
    }
    const uint64_t size = atomic_load(&m->size);
    size_t n = off >= size ? 0 : (size_t)MICA_MIN((uint64_t)len, size - off);
    if (n < need)
        return mica_err_set(err, MICA_ERR_IO, "mem: short read at offset %llu: expected %zu bytes, got %zu",
                            (unsigned long long)off, need, n);
    memcpy(buf, m->data + off, n);
    *got = n;
    return MICA_OK;
}

static void mem_close(estore_source *src) {
    mem_src *m = (mem_src *)src;
    free(m->data);
    free(m);
}

static mem_src *mem_src_new(uint64_t size, size_t align) {
    mem_src *m = calloc(1, sizeof *m);
    m->data = malloc(size);
    for (uint64_t i = 0; i < size; i++) m->data[i] = pat(i);
    atomic_store(&m->size, size);
    m->base.read_at = mem_read;
    m->base.close = mem_close;
    m->base.align = align;
    return m;
}

/* Two layers of 8 experts; parts of odd sizes at odd offsets. */
#define T_NE 8
static const estore_layer t_layers[2] = {
    {T_NE, {1000, 1000 + 8 * 300, 1000 + 8 * 300 + 8 * 300 + 17}, {300, 300, 500}},
    {T_NE, {20000, 20000 + 8 * 300 + 3, 30001}, {300, 300, 700}},
};
#define T_SIZE 40000

/* True if view v holds expert e of layer l, byte for byte. */
static bool view_ok(const estore_view *v, int32_t l, int32_t e) {
    for (int p = 0; p < ESTORE_PARTS; p++) {
        const uint64_t nb = t_layers[l].part_bytes[p], off = t_layers[l].part_off[p] + (uint64_t)e * nb;
        const uint8_t *b = v->part[p];
        if (!b) return false;
        for (uint64_t i = 0; i < nb; i++)
            if (b[i] != pat(off + i)) return false;
    }
    return true;
}

static expert_store *t_store(mem_src *src, int32_t n_slots, uint64_t *slot_bytes) {
    uint64_t sb = expert_store_slot_bytes(t_layers, 2, src->base.align);
    estore_params p = {.n_layer = 2, .layers = t_layers, .cache_bytes = sb * (uint64_t)n_slots + sb / 2,
                       .n_io_threads = 2};
    expert_store *s = NULL;
    mica_err e = {0};
    if (expert_store_create(&p, &src->base, T_SIZE, &s, &e)) {
        fprintf(stderr, "    create: %s\n", e.msg);
        return NULL;
    }
    if (slot_bytes) *slot_bytes = sb;
    return s;
}

/* Looks up one expert; returns true if it came back with the right bytes (lease kept in *ls). */
static bool get1(expert_store *s, int32_t l, int32_t e, estore_lease *ls) {
    estore_view v;
    int32_t got = 0;
    mica_err err = {0};
    if (expert_store_lookup(s, l, &e, 1, &v, ls, &got, &err) || got != 1) {
        fprintf(stderr, "    lookup (%d, %d): %s\n", l, e, err.msg);
        return false;
    }
    return view_ok(&v, l, e);
}

/* ---- store ---- */

TEST(estore_slot_bytes_formula) {
    /* align 1: each part rounded to 64: 300 -> 320, 500 -> 512, 700 -> 704 */
    ASSERT_EQ(expert_store_slot_bytes(t_layers, 2, 1), 320 + 320 + 704);
    /* align 4096: a part of n < 4096 bytes at any offset spans at most 2 blocks */
    ASSERT_EQ(expert_store_slot_bytes(t_layers, 2, 4096), 3 * 8192);
    /* align 512: 300 + 511 -> 1024, 700 + 511 -> 1536 */
    ASSERT_EQ(expert_store_slot_bytes(t_layers, 2, 512), 1024 + 1024 + 1536);
    estore_layer none = {0};
    ASSERT_EQ(expert_store_slot_bytes(&none, 1, 1), 0);
}

TEST(estore_every_expert_bytes_exact) {
    const size_t aligns[] = {1, 512};
    for (size_t ai = 0; ai < 2; ai++) {
        mem_src *src = mem_src_new(T_SIZE, aligns[ai]);
        expert_store *s = t_store(src, 3, NULL);
        ASSERT_TRUE(s);
        for (int32_t l = 0; l < 2; l++)
            for (int32_t e = 0; e < T_NE; e++) {
                estore_lease ls;
                ASSERT_TRUE(get1(s, l, e, &ls));
                expert_store_release(s, &ls);
                ASSERT_EQ(ls.slot, -1);
            }
        ASSERT_EQ(atomic_load(&src->misaligned), 0);
        estore_stats st;
        expert_store_stats(s, &st);
        ASSERT_EQ(st.misses, 16);
        ASSERT_EQ(st.reads, 16);
        ASSERT_EQ(st.n_slots, 3);
        ASSERT_TRUE(st.resident_slots <= 3);
        ASSERT_EQ(st.leased_slots, 0);
        ASSERT_TRUE(expert_store_arena_bytes(s) <= 3 * st.slot_bytes + st.slot_bytes / 2);
        expert_store_free(s);
    }
}

/* A batch lookup of more experts than slots leases a prefix; the rest follow. */
TEST(estore_batch_lookup_prefix) {
    mem_src *src = mem_src_new(T_SIZE, 1);
    expert_store *s = t_store(src, 3, NULL);
    ASSERT_TRUE(s);
    const int32_t ids[5] = {7, 1, 4, 0, 2};
    estore_view v[5];
    estore_lease ls[5];
    int32_t done = 0, rounds = 0;
    while (done < 5) {
        int32_t got = 0;
        mica_err err = {0};
        ASSERT_OK(expert_store_lookup(s, 1, ids + done, 5 - done, v, ls, &got, &err));
        ASSERT_TRUE(got >= 1 && got <= 3);
        for (int32_t i = 0; i < got; i++) {
            ASSERT_TRUE(view_ok(&v[i], 1, ids[done + i]));
            expert_store_release(s, &ls[i]);
        }
        done += got;
        rounds++;
    }
    ASSERT_EQ(rounds, 2); /* 3 then 2 */
    expert_store_free(s);
}

TEST(estore_leased_slot_never_evicted) {
    mem_src *src = mem_src_new(T_SIZE, 1);
    expert_store *s = t_store(src, 2, NULL);
    ASSERT_TRUE(s);
    estore_lease keep, ls;
    estore_view kv;
    int32_t e0 = 5, got = 0;
    mica_err err = {0};
    ASSERT_OK(expert_store_lookup(s, 0, &e0, 1, &kv, &keep, &got, &err));
    /* heavy pressure on the one other slot, from both layers and prefetch */
    for (int round = 0; round < 4; round++)
        for (int32_t l = 0; l < 2; l++)
            for (int32_t e = 0; e < T_NE; e++) {
                if (l == 0 && e == 5) continue;
                ASSERT_TRUE(get1(s, l, e, &ls));
                expert_store_release(s, &ls);
                const int32_t pf[3] = {(e + 1) % T_NE, (e + 2) % T_NE, (e + 3) % T_NE};
                expert_store_prefetch(s, 1 - l, pf, 3, false);
            }
    ASSERT_TRUE(view_ok(&kv, 0, 5)); /* never rewritten */
    estore_stats st;
    expert_store_stats(s, &st);
    ASSERT_EQ(st.leased_slots, 1);
    expert_store_release(s, &keep);
    /* still resident: a hit, no read */
    const uint64_t misses = st.misses;
    ASSERT_TRUE(get1(s, 0, 5, &ls));
    expert_store_release(s, &ls);
    expert_store_stats(s, &st);
    ASSERT_EQ(st.misses, misses);
    expert_store_free(s);
}

TEST(estore_lru_evicts_least_recent) {
    mem_src *src = mem_src_new(T_SIZE, 1);
    expert_store *s = t_store(src, 3, NULL);
    ASSERT_TRUE(s);
    estore_lease ls;
    const int32_t order[] = {0, 1, 2, 0, 3}; /* 3 evicts 1, the least recently used */
    for (size_t i = 0; i < MICA_ARRAY_LEN(order); i++) {
        ASSERT_TRUE(get1(s, 0, order[i], &ls));
        expert_store_release(s, &ls);
    }
    estore_stats a, b;
    expert_store_stats(s, &a);
    ASSERT_EQ(a.misses, 4);
    ASSERT_EQ(a.hits, 1);
    ASSERT_EQ(a.evictions, 1);
    ASSERT_TRUE(get1(s, 0, 0, &ls)); /* hit */
    expert_store_release(s, &ls);
    ASSERT_TRUE(get1(s, 0, 2, &ls)); /* hit */
    expert_store_release(s, &ls);
    ASSERT_TRUE(get1(s, 0, 1, &ls)); /* miss */
    expert_store_release(s, &ls);
    expert_store_stats(s, &b);
    ASSERT_EQ(b.hits, a.hits + 2);
    ASSERT_EQ(b.misses, a.misses + 1);
    expert_store_free(s);
}

TEST(estore_prefetch_is_advisory) {
    mem_src *src = mem_src_new(T_SIZE, 1);
    expert_store *s = t_store(src, 2, NULL);
    ASSERT_TRUE(s);
    estore_lease a, b;
    ASSERT_TRUE(get1(s, 0, 0, &a));
    ASSERT_TRUE(get1(s, 0, 1, &b));
    const int32_t ids[4] = {2, 3, 4, 5};
    ASSERT_EQ(expert_store_prefetch(s, 0, ids, 4, false), 0); /* every slot leased: nothing */
    expert_store_release(s, &b);
    ASSERT_EQ(expert_store_prefetch(s, 0, ids, 4, false), 1); /* one slot free; the next would evict the prefetch */
    const int32_t bad[3] = {-1, 99, 2};
    ASSERT_EQ(expert_store_prefetch(s, 0, bad, 3, false), 0); /* ignored / already there */
    estore_lease c;
    ASSERT_TRUE(get1(s, 0, 2, &c)); /* the prefetched expert */
    estore_stats st;
    expert_store_stats(s, &st);
    ASSERT_EQ(st.prefetch_reads, 1);
    ASSERT_EQ(st.prefetch_used, 1);
    ASSERT_EQ(st.misses, 2);
    ASSERT_TRUE(view_ok(&(estore_view){0}, 0, 0) == false);
    expert_store_release(s, &c);
    expert_store_release(s, &a);
    expert_store_free(s);
}

/* Runs fn in a child and returns true if the child died of SIGABRT. */
static bool dies_with_abort(void (*fn)(void)) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, 2); /* the assertion message is expected */
        fn();
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

static void release_twice(void) {
    mem_src *src = mem_src_new(T_SIZE, 1);
    expert_store *s = t_store(src, 2, NULL);
    estore_lease ls;
    if (!s || !get1(s, 0, 3, &ls)) _exit(3);
    expert_store_release(s, &ls);
    expert_store_release(s, &ls); /* aborts */
}

static void free_with_lease(void) {
    mem_src *src = mem_src_new(T_SIZE, 1);
    expert_store *s = t_store(src, 2, NULL);
    estore_lease ls;
    if (!s || !get1(s, 1, 6, &ls)) _exit(3);
    expert_store_free(s); /* aborts */
}

static void release_empty(void) {
    mem_src *src = mem_src_new(T_SIZE, 1);
    expert_store *s = t_store(src, 2, NULL);
    estore_lease ls = {.slot = -1};
    if (!s) _exit(3);
    expert_store_release(s, &ls); /* aborts */
}

TEST(estore_release_twice_aborts) { ASSERT_TRUE(dies_with_abort(release_twice)); }
TEST(estore_free_with_lease_aborts) { ASSERT_TRUE(dies_with_abort(free_with_lease)); }
TEST(estore_release_unleased_aborts) { ASSERT_TRUE(dies_with_abort(release_empty)); }

TEST(estore_read_errors_clear_and_keep_resident) {
    mem_src *src = mem_src_new(T_SIZE, 1);
    expert_store *s = t_store(src, 3, NULL);
    ASSERT_TRUE(s);
    estore_lease ls;
    ASSERT_TRUE(get1(s, 0, 1, &ls)); /* resident before the damage */
    expert_store_release(s, &ls);

    /* truncation: layer 1's last experts are gone */
    atomic_store(&src->size, 30001 + 700 * 4);
    const int32_t ids[2] = {2, 6}; /* 2 is readable, 6 is not */
    estore_view v[2];
    estore_lease l2[2];
    int32_t got = 7;
    mica_err err = {0};
    ASSERT_EQ(expert_store_lookup(s, 1, ids, 2, v, l2, &got, &err), MICA_ERR_IO);
    ASSERT_TRUE(strstr(err.msg, "short read") != NULL);
    ASSERT_EQ(got, 0);
    ASSERT_TRUE(l2[0].slot == -1 && l2[1].slot == -1 && !v[0].part[0] && !v[1].part[2]);
    ASSERT_EQ(expert_store_n_failures(s), 1);
    char msg[256];
    expert_store_last_error(s, msg, sizeof msg);
    ASSERT_TRUE(strstr(msg, "short read") != NULL);

    /* the resident part, and readable experts, still work */
    ASSERT_TRUE(get1(s, 0, 1, &ls));
    expert_store_release(s, &ls);
    ASSERT_TRUE(get1(s, 1, 2, &ls));
    expert_store_release(s, &ls);

    /* transient I/O errors: the store reports them, then a retry succeeds */
    atomic_store(&src->fail_io, 1);
    int32_t e = 3;
    estore_view v1;
    ASSERT_EQ(expert_store_lookup(s, 0, &e, 1, &v1, &ls, &got, &err), MICA_ERR_IO);
    ASSERT_TRUE(get1(s, 0, 3, &ls)); /* the failed slot was dropped: read again */
    expert_store_release(s, &ls);

    estore_stats st;
    expert_store_stats(s, &st);
    ASSERT_EQ(st.leased_slots, 0);
    ASSERT_EQ(st.read_errors, 2);
    expert_store_free(s); /* zero leases after failures */
}

TEST(estore_too_small_cache_is_error) {
    mem_src *src = mem_src_new(T_SIZE, 1);
    uint64_t sb = expert_store_slot_bytes(t_layers, 2, 1);
    estore_params p = {.n_layer = 2, .layers = t_layers, .cache_bytes = sb - 1};
    expert_store *s = NULL;
    mica_err e = {0};
    ASSERT_EQ(expert_store_create(&p, &src->base, T_SIZE, &s, &e), MICA_ERR_LIMIT);
    ASSERT_TRUE(s == NULL && strstr(e.msg, "at least") != NULL);
    /* experts past the end of the file */
    src = mem_src_new(T_SIZE, 1);
    p.cache_bytes = sb;
    ASSERT_EQ(expert_store_create(&p, &src->base, 30000, &s, &e), MICA_ERR_FORMAT);
}

typedef struct conc_arg {
    expert_store *s;
    unsigned seed;
    _Atomic int *bad;
} conc_arg;

static void *conc_main(void *p) {
    conc_arg *a = p;
    for (int it = 0; it < 400; it++) {
        int32_t l = (int32_t)(rand_r(&a->seed) % 2), ids[3], n = 1 + (int32_t)(rand_r(&a->seed) % 3);
        for (int32_t i = 0; i < n; i++) {
            ids[i] = (int32_t)(rand_r(&a->seed) % T_NE);
            for (int32_t j = 0; j < i; j++)
                if (ids[j] == ids[i]) { ids[i] = (ids[i] + 1) % T_NE; j = -1; }
        }
        if (it % 5 == 0) expert_store_prefetch(a->s, 1 - l, ids, n, false);
        estore_view v[3];
        estore_lease ls[3];
        int32_t got = 0;
        mica_err err = {0};
        if (expert_store_lookup(a->s, l, ids, n, v, ls, &got, &err)) { atomic_fetch_add(a->bad, 1); continue; }
        for (int32_t i = 0; i < got; i++) {
            if (!view_ok(&v[i], l, ids[i])) atomic_fetch_add(a->bad, 1);
            expert_store_release(a->s, &ls[i]);
        }
    }
    return NULL;
}

TEST(estore_concurrent_lookups) {
    mem_src *src = mem_src_new(T_SIZE, 512);
    expert_store *s = t_store(src, 3, NULL);
    ASSERT_TRUE(s);
    _Atomic int bad = 0;
    pthread_t th[4];
    conc_arg args[4];
    for (int t = 0; t < 4; t++) {
        args[t] = (conc_arg){s, 17u + (unsigned)t, &bad};
        pthread_create(&th[t], NULL, conc_main, &args[t]);
    }
    for (int t = 0; t < 4; t++) pthread_join(th[t], NULL);
    ASSERT_EQ(atomic_load(&bad), 0);
    estore_stats st;
    expert_store_stats(s, &st);
    ASSERT_EQ(st.leased_slots, 0);
    ASSERT_TRUE(st.resident_slots <= 3);
    ASSERT_EQ(st.lookups, st.hits + st.misses);
    expert_store_free(s);
}

/* A real file: O_DIRECT (or its fallback), then the file truncated under the store. */
TEST(estore_file_source_and_truncation) {
    char path[512];
    snprintf(path, sizeof path, "%s/estore_file.bin", test_tmp_dir());
    FILE *f = fopen(path, "wb");
    ASSERT_TRUE(f);
    for (uint64_t i = 0; i < T_SIZE; i++) fputc(pat(i), f);
    ASSERT_EQ(fclose(f), 0);
    estore_source *src = NULL;
    mica_err err = {0};
    ASSERT_OK(esrc_open_file(path, true, &src, &err));
    if (!src->direct) fprintf(stderr, "    note: %s\n", src->note);
    ASSERT_TRUE(src->direct ? src->align == ESRC_DIRECT_ALIGN : src->note[0] != '\0');
    const uint64_t sb = expert_store_slot_bytes(t_layers, 2, src->align);
    estore_params p = {.n_layer = 2, .layers = t_layers, .cache_bytes = 5 * sb};
    expert_store *s = NULL;
    ASSERT_OK(expert_store_create(&p, src, T_SIZE, &s, &err));
    estore_lease ls;
    for (int32_t e = 0; e < 4; e++) {
        ASSERT_TRUE(get1(s, 0, e, &ls));
        expert_store_release(s, &ls);
    }
    ASSERT_EQ(truncate(path, 30001 + 700 * 4), 0);
    int32_t e6 = 6, got = 0;
    estore_view v;
    ASSERT_EQ(expert_store_lookup(s, 1, &e6, 1, &v, &ls, &got, &err), MICA_ERR_IO);
    ASSERT_TRUE(strstr(err.msg, "short read") && strstr(err.msg, "estore_file.bin"));
    for (int32_t e = 0; e < 4; e++) { /* the resident experts keep working */
        ASSERT_TRUE(get1(s, 0, e, &ls));
        expert_store_release(s, &ls);
    }
    /* bytes still in the shrunken file are not read either: the file changed */
    int32_t e5 = 5;
    ASSERT_EQ(expert_store_lookup(s, 0, &e5, 1, &v, &ls, &got, &err), MICA_ERR_IO);
    ASSERT_TRUE(strstr(err.msg, "changed size while in use") && strstr(err.msg, "estore_file.bin"));
    expert_store_free(s);
    /* a plain buffered source says nothing */
    ASSERT_OK(esrc_open_file(path, false, &src, &err));
    ASSERT_TRUE(!src->direct && src->note[0] == '\0');
    esrc_close(src);
    remove(path);
}

/* ---- models: placement never changes tokens ---- */

/* Writes preset (type) to test-tmp once per test; returns false on failure. */
static bool est_gen(const char *preset, uint32_t type, char *path, size_t cap) {
    snprintf(path, cap, "%s/estore_%s_%s.gguf", test_tmp_dir(), preset, dtype_name(type));
    gen_params gp = {.preset = preset, .type = type, .seed = 23};
    mica_err e = {0};
    if (gen_write(&gp, path, &e)) {
        fprintf(stderr, "    gen %s: %s\n", preset, e.msg);
        return false;
    }
    return true;
}

/* The file's expert layout (independently of the engine), for budget arithmetic. */
typedef struct est_layout {
    uint64_t dense, experts;    /* bytes */
    int32_t n_total, n_per_layer; /* experts in the file; per MoE layer */
    estore_layer layers[64];
    int32_t n_layer;
} est_layout;

static bool est_layout_read(const char *path, est_layout *L) {
    memset(L, 0, sizeof *L);
    gguf_ctx *g = NULL;
    mica_err e = {0};
    if (gguf_open(path, &g, &e)) return false;
    static const char *const parts[3] = {"gate", "up", "down"};
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        unsigned il;
        char part[16];
        int end = 0;
        if (sscanf(t->name, "blk.%u.ffn_%15[a-z]_exps.weight%n", &il, part, &end) == 2 && end > 0 &&
            t->name[end] == '\0' && il < 64) {
            for (int p = 0; p < 3; p++)
                if (!strcmp(part, parts[p])) {
                    L->layers[il].n_expert = (int32_t)t->ne[2];
                    L->layers[il].part_bytes[p] = t->nbytes / (uint64_t)t->ne[2];
                    L->layers[il].part_off[p] = gguf_data_offset(g) + t->offset;
                }
            L->experts += t->nbytes;
            L->n_layer = MICA_MAX(L->n_layer, (int32_t)il + 1);
        } else {
            L->dense += t->nbytes;
        }
    }
    for (int32_t il = 0; il < L->n_layer; il++) {
        L->n_total += L->layers[il].n_expert;
        L->n_per_layer = MICA_MAX(L->n_per_layer, L->layers[il].n_expert);
    }
    gguf_close(g);
    return L->n_total > 0;
}

enum { EST_PROMPT = 16, EST_GEN = 48 };

/* Prompt logits (all rows) then EST_GEN greedy steps (ids and each step's logits). */
typedef struct est_run {
    float *logits; /* [(EST_PROMPT + EST_GEN)][n_vocab] */
    int32_t ids[EST_GEN];
    mica_expert_stats st;
    int32_t n_vocab;
} est_run;

static mica_status est_run_model(const char *path, uint64_t budget, est_run *r, char *err, size_t cap) {
    mica_model_params mp = mica_model_params_default();
    mp.mem_budget = budget;
    mica_model *m = NULL;
    mica_status st = mica_model_open(path, &mp, &m, err, cap);
    if (st) return st;
    mica_session_params sp = mica_session_params_default();
    sp.n_ctx = 128;
    sp.n_threads = 2;
    mica_session *s = NULL;
    if ((st = mica_session_create(m, &sp, &s, err, cap))) { mica_model_free(m); return st; }
    const int32_t V = mica_model_n_vocab(m);
    r->n_vocab = V;
    r->logits = malloc((size_t)(EST_PROMPT + EST_GEN) * (size_t)V * sizeof(float));
    int32_t prompt[EST_PROMPT];
    for (int i = 0; i < EST_PROMPT; i++) prompt[i] = (int32_t)((i * 37 + 11) % V);
    st = mica_session_decode(s, prompt, EST_PROMPT, r->logits);
    for (int g = 0; g < EST_GEN && !st; g++) {
        const float *lg = mica_session_logits(s);
        int32_t best = 0;
        for (int32_t v = 1; v < V; v++)
            if (lg[v] > lg[best]) best = v;
        r->ids[g] = best;
        st = mica_session_decode(s, &best, 1, NULL);
        if (!st) memcpy(r->logits + (size_t)(EST_PROMPT + g) * (size_t)V, mica_session_logits(s), (size_t)V * sizeof(float));
    }
    if (st) snprintf(err, cap, "%s", mica_session_errmsg(s));
    mica_model_expert_stats(m, &r->st);
    mica_session_free(s);
    mica_model_free(m);
    return st;
}

TEST(estore_placement_never_changes_tokens) {
    static const struct { const char *preset; uint32_t type; } cases[] = {
        {"tiny-qwen3moe", MICA_DTYPE_Q8_0}, {"tiny-olmoe", MICA_DTYPE_Q4_0}, {"tiny-mixtral", MICA_DTYPE_Q8_0},
        {"tiny-deepseek2", MICA_DTYPE_Q8_0}, {"tiny-deepseek3", MICA_DTYPE_Q4_K}, {"tiny-mimo2", MICA_DTYPE_Q8_0},
    };
    for (size_t c = 0; c < MICA_ARRAY_LEN(cases); c++) {
        char path[512], err[512] = "";
        ASSERT_TRUE(est_gen(cases[c].preset, cases[c].type, path, sizeof path));
        est_layout L;
        ASSERT_TRUE(est_layout_read(path, &L));
        est_run ref = {0};
        mica_status st = est_run_model(path, MICA_MEM_UNLIMITED, &ref, err, sizeof err);
        if (st) fprintf(stderr, "    %s: %s\n", cases[c].preset, err);
        ASSERT_OK(st);
        ASSERT_TRUE(!ref.st.streaming);
        /* budgets: half the experts; the resident part plus one layer's experts */
        const uint64_t slot = expert_store_slot_bytes(L.layers, L.n_layer, ESRC_DIRECT_ALIGN);
        const int32_t want_slots[2] = {L.n_total / 2, L.n_per_layer};
        for (int b = 0; b < 2; b++) {
            est_run run = {0};
            const uint64_t budget = L.dense + (uint64_t)want_slots[b] * slot;
            st = est_run_model(path, budget, &run, err, sizeof err);
            if (st) fprintf(stderr, "    %s budget %llu: %s\n", cases[c].preset, (unsigned long long)budget, err);
            ASSERT_OK(st);
            if (want_slots[b] < L.n_total) { /* (one MoE layer: "one layer's experts" is all of them) */
                if (!run.st.streaming) fprintf(stderr, "    %s: not streamed\n", cases[c].preset);
                ASSERT_TRUE(run.st.streaming);
                if (run.st.direct_io) ASSERT_EQ(run.st.n_slots, want_slots[b]);
                ASSERT_EQ(run.st.resident_bytes, L.dense);
                ASSERT_TRUE(run.st.resident_bytes + run.st.cache_bytes <= budget);
                ASSERT_TRUE(run.st.misses > 0 && run.st.read_errors == 0);
            }
            for (int g = 0; g < EST_GEN; g++) ASSERT_EQ(run.ids[g], ref.ids[g]);
            const size_t nbytes = (size_t)(EST_PROMPT + EST_GEN) * (size_t)ref.n_vocab * sizeof(float);
            if (memcmp(run.logits, ref.logits, nbytes) != 0) {
                fprintf(stderr, "    %s: logits differ with budget %llu\n", cases[c].preset,
                        (unsigned long long)budget);
                ASSERT_TRUE(false);
            }
            free(run.logits);
        }
        free(ref.logits);
    }
}

/* An explicit budget below the resident part is an error stating the minimum. */
TEST(estore_budget_below_minimum) {
    char path[512], err[512] = "";
    ASSERT_TRUE(est_gen("tiny-qwen3moe", MICA_DTYPE_Q8_0, path, sizeof path));
    est_layout L;
    ASSERT_TRUE(est_layout_read(path, &L));
    mica_model_params mp = mica_model_params_default();
    mp.mem_budget = L.dense / 2;
    mica_model *m = NULL;
    ASSERT_EQ(mica_model_open(path, &mp, &m, err, sizeof err), MICA_ERR_LIMIT);
    ASSERT_TRUE(m == NULL);
    const uint64_t slot = expert_store_slot_bytes(L.layers, L.n_layer, ESRC_DIRECT_ALIGN);
    char want[64];
    snprintf(want, sizeof want, "(%llu bytes)", (unsigned long long)(L.dense + 4 * slot)); /* 4 used */
    if (!strstr(err, want)) fprintf(stderr, "    %s\n", err);
    ASSERT_TRUE(strstr(err, "minimum budget") && strstr(err, want));
    /* a dense model has nothing to stream */
    ASSERT_TRUE(est_gen("tiny-qwen3", MICA_DTYPE_Q8_0, path, sizeof path));
    mp.mem_budget = 100000;
    ASSERT_EQ(mica_model_open(path, &mp, &m, err, sizeof err), MICA_ERR_LIMIT);
    ASSERT_TRUE(strstr(err, "no routed experts") != NULL);
}

/* ---- memory: the cache never holds more than the budget ---- */

/* A field of /proc/self/status in bytes ("VmHWM", "VmRSS", "RssFile"), or 0. */
static uint64_t est_status_kb(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    const size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':') { sscanf(line + n + 1, "%llu", &kb); break; }
    fclose(f);
    return (uint64_t)kb * 1024u;
}

/* Resets VmHWM to the current RSS (Linux >= 4.0); false if not possible. */
static bool est_reset_hwm(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return false;
    bool ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

/*
 * Peak RSS growth while a model decodes 40 tokens. RSS counts every page the
 * process has resident: anonymous memory (heap, KV cache, the expert arena,
 * a streamed model's resident part) and mapped file pages it touched. So a
 * mapped model's peak grows by every expert the tokens touch, while a
 * streamed model's may grow only by its budget plus the session's buffers.
 */
static bool est_peak_growth(const char *path, uint64_t budget, uint64_t *growth, mica_expert_stats *st) {
    if (!est_reset_hwm()) return false;
    const uint64_t rss0 = est_status_kb("VmRSS");
    char err[512];
    mica_model_params mp = mica_model_params_default();
    mp.mem_budget = budget;
    mica_model *m = NULL;
    if (mica_model_open(path, &mp, &m, err, sizeof err)) return false;
    mica_session_params sp = mica_session_params_default();
    sp.n_ctx = 64;
    sp.n_threads = 1;
    mica_session *s = NULL;
    bool ok = mica_session_create(m, &sp, &s, err, sizeof err) == MICA_OK;
    for (int32_t t = 0; ok && t < 40; t++) {
        int32_t tok = (t * 97 + 5) % mica_model_n_vocab(m);
        ok = mica_session_decode(s, &tok, 1, NULL) == MICA_OK;
    }
    mica_model_expert_stats(m, st);
    mica_session_free(s);
    mica_model_free(m);
    *growth = est_status_kb("VmHWM") - rss0;
    return ok;
}

TEST(estore_peak_rss_within_budget) {
    char path[512];
    ASSERT_TRUE(est_gen("tiny-mixtral", MICA_DTYPE_F32, path, sizeof path)); /* 24 MiB of experts */
    est_layout L;
    ASSERT_TRUE(est_layout_read(path, &L));
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    test_skip("sanitizer shadow memory inflates RSS");
    return;
#endif
    if (!est_reset_hwm()) { test_skip("/proc/self/clear_refs cannot reset VmHWM"); return; }
    const uint64_t slot = expert_store_slot_bytes(L.layers, L.n_layer, ESRC_DIRECT_ALIGN);
    const uint64_t budget = L.dense + 3 * slot;
    const uint64_t session_slack = 4u << 20; /* KV (64 positions), scratch, thread stacks, malloc */
    uint64_t g_stream = 0, g_map = 0;
    mica_expert_stats st;
    ASSERT_TRUE(est_peak_growth(path, budget, &g_stream, &st));
    ASSERT_TRUE(st.streaming && st.n_slots == 3);
    ASSERT_TRUE(st.resident_bytes + st.cache_bytes <= budget); /* the store's accounting */
    ASSERT_TRUE(st.cached_experts <= st.n_slots);
    fprintf(stderr, "    budget %.1f MiB: peak RSS growth %.1f MiB streamed\n", budget / 1048576.0,
            g_stream / 1048576.0);
    ASSERT_TRUE(g_stream <= budget + session_slack);
    /* the measurement has teeth: the mapped model touches far more */
    ASSERT_TRUE(est_peak_growth(path, MICA_MEM_UNLIMITED, &g_map, &st));
    fprintf(stderr, "    peak RSS growth %.1f MiB mapped (experts %.1f MiB)\n", g_map / 1048576.0,
            L.experts / 1048576.0);
    ASSERT_TRUE(!st.streaming);
    ASSERT_TRUE(g_map > budget + session_slack);
}

/* ---- a model file truncated under a streamed model ---- */

TEST(estore_model_truncated_under_reader) {
    char src[512], path[600], err[512] = "";
    ASSERT_TRUE(est_gen("tiny-qwen3moe", MICA_DTYPE_Q8_0, src, sizeof src));
    snprintf(path, sizeof path, "%s/estore_truncate_copy.gguf", test_tmp_dir());
    { /* copy */
        FILE *in = fopen(src, "rb"), *out = fopen(path, "wb");
        ASSERT_TRUE(in && out);
        char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
        fclose(in);
        ASSERT_EQ(fclose(out), 0);
    }
    est_layout L;
    ASSERT_TRUE(est_layout_read(path, &L));
    const uint64_t slot = expert_store_slot_bytes(L.layers, L.n_layer, ESRC_DIRECT_ALIGN);
    mica_model_params mp = mica_model_params_default();
    mp.mem_budget = L.dense + (uint64_t)(L.n_total - 1) * slot; /* all experts but one */
    mica_model *m = NULL;
    ASSERT_OK(mica_model_open(path, &mp, &m, err, sizeof err));
    mica_session_params sp = mica_session_params_default();
    sp.n_ctx = 64;
    sp.n_threads = 1;
    mica_session *s = NULL;
    ASSERT_OK(mica_session_create(m, &sp, &s, err, sizeof err));
    const int32_t V = mica_model_n_vocab(m);
    float *before = malloc((size_t)V * sizeof(float));
    int32_t a = 101;
    ASSERT_OK(mica_session_decode(s, &a, 1, NULL));
    memcpy(before, mica_session_logits(s), (size_t)V * sizeof(float));

    /* cut the file at layer 1's experts: they and everything after are gone */
    uint64_t cut = L.layers[1].part_off[0];
    for (int p = 1; p < 3; p++) cut = MICA_MIN(cut, L.layers[1].part_off[p]);
    ASSERT_EQ(truncate(path, (off_t)cut), 0);

    /* the resident part (dense weights, cached experts) still computes token a */
    mica_session_reset(s);
    ASSERT_OK(mica_session_decode(s, &a, 1, NULL));
    ASSERT_TRUE(memcmp(before, mica_session_logits(s), (size_t)V * sizeof(float)) == 0);

    /* new tokens soon need an expert that is gone: an error, not a crash */
    mica_status st = MICA_OK;
    for (int32_t t = 0; t < 40 && st == MICA_OK; t++) {
        int32_t tok = (t * 53 + 7) % V;
        st = mica_session_decode(s, &tok, 1, NULL);
    }
    ASSERT_EQ(st, MICA_ERR_IO);
    ASSERT_TRUE(strstr(mica_session_errmsg(s), "short read") != NULL);
    ASSERT_TRUE(mica_session_logits(s) == NULL);
    const int32_t n_past = mica_session_n_past(s);
    mica_session_reset(s); /* and the session goes on with what is resident */
    ASSERT_OK(mica_session_decode(s, &a, 1, NULL));
    ASSERT_TRUE(memcmp(before, mica_session_logits(s), (size_t)V * sizeof(float)) == 0);
    ASSERT_TRUE(n_past >= 1);
    free(before);
    mica_session_free(s);
    mica_model_free(m);
    remove(path);
}

/* ---- io_uring and pread threads; pinned experts; a file changed in place ---- */

/* Writes the pattern file of T_SIZE bytes; its mtime is set 100 s in the past so a rewrite moves it. */
static bool est_pattern_file(const char *path) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    for (uint64_t i = 0; i < T_SIZE; i++) fputc(pat(i), f);
    if (fclose(f) != 0) return false;
    struct timespec past[2];
    clock_gettime(CLOCK_REALTIME, &past[0]);
    past[0].tv_sec -= 100;
    past[1] = past[0];
    return utimensat(AT_FDCWD, path, past, 0) == 0;
}

static expert_store *est_file_store(const char *path, int32_t io_mode, int32_t n_slots, const estore_eid *pins,
                                    int32_t n_pins) {
    estore_source *src = NULL;
    mica_err err = {0};
    if (esrc_open_file(path, true, &src, &err)) return NULL;
    const uint64_t sb = expert_store_slot_bytes(t_layers, 2, src->align);
    estore_params p = {.n_layer = 2, .layers = t_layers, .cache_bytes = (uint64_t)n_slots * sb, .n_io_threads = 3,
                       .io_mode = io_mode, .pinned = pins, .n_pinned = n_pins};
    expert_store *s = NULL;
    if (expert_store_create(&p, src, T_SIZE, &s, &err)) {
        fprintf(stderr, "    create: %s\n", err.msg);
        return NULL;
    }
    return s;
}

/* Every expert, in batches of 5 (several reads in flight), through a 6-slot cache, 3 rounds. */
static bool est_read_all(expert_store *s) {
    for (int round = 0; round < 3; round++)
        for (int32_t l = 0; l < 2; l++)
            for (int32_t e0 = 0; e0 < T_NE;) {
                int32_t ids[5], n = 0;
                for (int32_t e = e0; e < T_NE && n < 5; e++) ids[n++] = (e + round * 3) % T_NE;
                estore_view v[5];
                estore_lease ls[5];
                int32_t got = 0;
                mica_err err = {0};
                if (expert_store_lookup(s, l, ids, n, v, ls, &got, &err)) {
                    fprintf(stderr, "    lookup: %s\n", err.msg);
                    return false;
                }
                bool ok = true;
                for (int32_t i = 0; i < got; i++) {
                    ok &= view_ok(&v[i], l, ids[i]);
                    expert_store_release(s, &ls[i]);
                }
                if (!ok) return false;
                e0 += got;
            }
    return true;
}

TEST(estore_ring_and_threads_give_the_file_bytes) {
    char path[512];
    snprintf(path, sizeof path, "%s/estore_ring.bin", test_tmp_dir());
    ASSERT_TRUE(est_pattern_file(path));
    bool ring_seen = false;
    for (int mode = 0; mode < 2; mode++) {
        expert_store *s = est_file_store(path, mode ? ESTORE_IO_THREADS : ESTORE_IO_AUTO, 6, NULL, 0);
        ASSERT_TRUE(s != NULL);
        estore_stats st;
        expert_store_stats(s, &st);
        if (mode == 0 && !st.ring) fprintf(stderr, "    no io_uring here: %s\n", expert_store_note(s));
        if (mode == 0 && !st.ring) ASSERT_TRUE(strstr(expert_store_note(s), "io_uring unavailable") != NULL);
        if (mode == 1) ASSERT_TRUE(!st.ring && !strstr(expert_store_note(s), "io_uring"));
        ring_seen |= st.ring;
        ASSERT_TRUE(est_read_all(s)); /* the bytes are the file's: the pattern, not the other path's output */
        expert_store_stats(s, &st);
        ASSERT_TRUE(st.reads > 16 && st.read_errors == 0 && st.evictions > 0);
        expert_store_free(s);
    }
    if (!ring_seen) test_skip("io_uring unavailable: only the pread path was compared with the file");
    remove(path);
}

TEST(estore_pinned_slots_never_evicted) {
    mem_src *src = mem_src_new(T_SIZE, 1);
    const uint64_t sb = expert_store_slot_bytes(t_layers, 2, 1);
    /* duplicates and out-of-range entries are skipped; 3 remain, cut to n_slots - 1 = 3 */
    const estore_eid pins[] = {{0, 1}, {1, 3}, {0, 1}, {5, 0}, {1, 99}, {1, 7}, {0, 2}, {0, 3}};
    estore_params p = {.n_layer = 2, .layers = t_layers, .cache_bytes = 4 * sb, .n_io_threads = 2,
                       .pinned = pins, .n_pinned = (int32_t)MICA_ARRAY_LEN(pins)};
    expert_store *s = NULL;
    mica_err err = {0};
    ASSERT_OK(expert_store_create(&p, &src->base, T_SIZE, &s, &err));
    estore_stats st;
    expert_store_stats(s, &st);
    ASSERT_EQ(st.pinned_slots, 3);
    ASSERT_EQ(st.resident_slots, 3);
    /* the pinned experts arrive by themselves and are hits */
    estore_lease ls;
    ASSERT_TRUE(get1(s, 0, 1, &ls));
    expert_store_release(s, &ls);
    ASSERT_TRUE(get1(s, 1, 7, &ls));
    expert_store_release(s, &ls);
    /* every other expert goes through the one free slot, many times */
    for (int round = 0; round < 4; round++)
        for (int32_t l = 0; l < 2; l++)
            for (int32_t e = 0; e < T_NE; e++) {
                if ((l == 0 && e == 1) || (l == 1 && (e == 3 || e == 7))) continue;
                ASSERT_TRUE(get1(s, l, e, &ls));
                expert_store_release(s, &ls);
                int32_t ids[2] = {(e + 1) % T_NE, (e + 2) % T_NE}; /* prefetch cannot evict them either */
                expert_store_prefetch(s, l, ids, 2, false);
            }
    expert_store_stats(s, &st);
    const uint64_t misses = st.misses, reads = (uint64_t)atomic_load(&src->reads);
    ASSERT_EQ(st.pinned_slots, 3);
    ASSERT_TRUE(get1(s, 0, 1, &ls)); /* still resident: no read */
    expert_store_release(s, &ls);
    ASSERT_TRUE(get1(s, 1, 3, &ls));
    expert_store_release(s, &ls);
    expert_store_stats(s, &st);
    ASSERT_EQ(st.misses, misses);
    ASSERT_EQ((uint64_t)atomic_load(&src->reads), reads);
    /* usage counts: every lookup of (layer, expert), in layer-major order */
    uint32_t use[2 * T_NE];
    ASSERT_EQ(expert_store_usage(s, use, 2 * T_NE), 2 * T_NE);
    ASSERT_EQ(use[0 * T_NE + 1], 2u);
    ASSERT_EQ(use[1 * T_NE + 3], 1u);
    ASSERT_EQ(use[1 * T_NE + 7], 1u);
    ASSERT_EQ(use[0 * T_NE + 0], 4u);
    expert_store_free(s);
}

TEST(estore_pinned_read_failure_unpins) {
    mem_src *src = mem_src_new(T_SIZE, 1);
    atomic_store(&src->fail_io, 1000);
    const uint64_t sb = expert_store_slot_bytes(t_layers, 2, 1);
    const estore_eid pins[] = {{0, 4}};
    estore_params p = {.n_layer = 2, .layers = t_layers, .cache_bytes = 3 * sb, .n_io_threads = 1,
                       .pinned = pins, .n_pinned = 1};
    expert_store *s = NULL;
    mica_err err = {0};
    ASSERT_OK(expert_store_create(&p, &src->base, T_SIZE, &s, &err));
    estore_stats st;
    for (int i = 0; i < 2000; i++) { /* wait for the failed pinned read */
        expert_store_stats(s, &st);
        if (st.read_errors > 0 && st.pinned_slots == 0) break;
        usleep(1000);
    }
    ASSERT_EQ(st.pinned_slots, 0);
    atomic_store(&src->fail_io, 0);
    estore_lease ls;
    ASSERT_TRUE(get1(s, 0, 4, &ls)); /* read again, as an ordinary expert */
    expert_store_release(s, &ls);
    for (int32_t e = 0; e < T_NE; e++) { /* and every slot is usable */
        ASSERT_TRUE(get1(s, 1, e, &ls));
        expert_store_release(s, &ls);
    }
    expert_store_free(s);
}

TEST(estore_file_rewritten_in_place_is_an_error) {
    char path[512];
    snprintf(path, sizeof path, "%s/estore_rewrite.bin", test_tmp_dir());
    for (int mode = 0; mode < 2; mode++) {
        ASSERT_TRUE(est_pattern_file(path));
        expert_store *s = est_file_store(path, mode ? ESTORE_IO_THREADS : ESTORE_IO_AUTO, 4, NULL, 0);
        ASSERT_TRUE(s != NULL);
        estore_lease ls;
        ASSERT_TRUE(get1(s, 0, 0, &ls));
        expert_store_release(s, &ls);
        /* same size, other bytes: expert 2 of layer 0 rewritten */
        int fd = open(path, O_WRONLY);
        ASSERT_TRUE(fd >= 0);
        uint8_t junk[300];
        memset(junk, 0x5a, sizeof junk);
        ASSERT_EQ(pwrite(fd, junk, sizeof junk, (off_t)t_layers[0].part_off[0] + 2 * 300), (ssize_t)sizeof junk);
        ASSERT_EQ(close(fd), 0);
        int32_t e = 2, got = 0;
        estore_view v;
        mica_err err = {0};
        ASSERT_EQ(expert_store_lookup(s, 0, &e, 1, &v, &ls, &got, &err), MICA_ERR_IO);
        ASSERT_TRUE(got == 0 && v.part[0] == NULL && ls.slot < 0);
        if (!strstr(err.msg, "was modified")) fprintf(stderr, "    %s\n", err.msg);
        ASSERT_TRUE(strstr(err.msg, "was modified") && strstr(err.msg, "estore_rewrite.bin"));
        e = 5; /* untouched bytes of the changed file: refused too */
        ASSERT_EQ(expert_store_lookup(s, 0, &e, 1, &v, &ls, &got, &err), MICA_ERR_IO);
        ASSERT_TRUE(get1(s, 0, 0, &ls)); /* the cached expert: the original bytes */
        expert_store_release(s, &ls);
        expert_store_free(s);
    }
    remove(path);
}

/* ---- the usage file ---- */

static bool est_copy(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    bool ok = in && out;
    char buf[65536];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, n, out) == n;
    if (in) fclose(in);
    if (out && fclose(out) != 0) ok = false;
    return ok;
}

static long est_file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

TEST(estore_usage_file_roundtrip_and_rejects) {
    char path[512];
    snprintf(path, sizeof path, "%s/estore_usage.bin.usage", test_tmp_dir());
    remove(path);
    const int32_t ne[3] = {4, 0, 3};
    const eusage_id id = {123456, 0x1122334455667788ull};
    const float c[7] = {1.5f, 0, 7, 2, 0.25f, 9, 3};
    float r[7] = {0};
    bool absent = false;
    mica_err err = {0};
    ASSERT_EQ(eusage_read(path, &id, ne, 3, r, &absent, &err), MICA_ERR_IO);
    ASSERT_TRUE(absent);
    ASSERT_OK(eusage_write(path, &id, ne, 3, c, &err));
    /* the layout of expert_usage.h: 40 + 4 * 3 + 4 * 7 + 8 bytes */
    ASSERT_EQ(est_file_size(path), 40 + 12 + 28 + 8);
    ASSERT_OK(eusage_read(path, &id, ne, 3, r, &absent, &err));
    ASSERT_TRUE(memcmp(r, c, sizeof c) == 0);
    /* another model: identity differs */
    const eusage_id other = {123456, 0x1122334455667789ull};
    float keep[7] = {-1, -1, -1, -1, -1, -1, -1};
    ASSERT_EQ(eusage_read(path, &other, ne, 3, keep, &absent, &err), MICA_ERR_FORMAT);
    ASSERT_TRUE(!absent && strstr(err.msg, "another model") && keep[0] == -1);
    /* other layers */
    const int32_t ne2[3] = {4, 1, 2};
    ASSERT_EQ(eusage_read(path, &id, ne2, 3, keep, &absent, &err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err.msg, "layers do not match") != NULL);
    /* one flipped bit of a count: the checksum */
    int fd = open(path, O_RDWR);
    ASSERT_TRUE(fd >= 0);
    uint8_t b;
    ASSERT_EQ(pread(fd, &b, 1, 60), 1);
    b ^= 0x10;
    ASSERT_EQ(pwrite(fd, &b, 1, 60), 1);
    ASSERT_EQ(eusage_read(path, &id, ne, 3, keep, &absent, &err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err.msg, "checksum") && keep[0] == -1);
    /* truncated */
    ASSERT_EQ(ftruncate(fd, 70), 0);
    close(fd);
    ASSERT_EQ(eusage_read(path, &id, ne, 3, keep, &absent, &err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err.msg, "truncated") && keep[0] == -1);
    /* not a usage file */
    FILE *f = fopen(path, "wb");
    fputs("GGUF and some other bytes that are long enough to be read!", f);
    fclose(f);
    ASSERT_EQ(eusage_read(path, &id, ne, 3, keep, &absent, &err), MICA_ERR_FORMAT);
    ASSERT_TRUE(strstr(err.msg, "bad magic") != NULL);
    remove(path);
    /* decay: 2048 tokens of 4 lookups each = two half-lives: old counts / 4, plus the new ones */
    float cnt[2] = {100, 8};
    const uint32_t fresh[2] = {8192, 0};
    eusage_merge(cnt, fresh, 2, 4.0);
    ASSERT_NEAR(cnt[0], 25.0f + 8192.0f, 1e-2);
    ASSERT_NEAR(cnt[1], 2.0f, 1e-5);
    /* where: beside the model when its directory is writable */
    char up[600], model[600];
    snprintf(model, sizeof model, "%s/some.gguf", test_tmp_dir());
    ASSERT_TRUE(eusage_path(model, &id, up, sizeof up));
    char want[700];
    snprintf(want, sizeof want, "%s.usage", model);
    ASSERT_STREQ(up, want);
}

/* "hot set:         N experts pinned" of the memory plan, or -1. */
static int32_t est_pinned(const mica_model *m) {
    char plan[4096];
    mica_model_describe_memory(m, plan, sizeof plan);
    const char *h = strstr(plan, "hot set:");
    int n = -1;
    if (h) sscanf(h, "hot set: %d experts pinned", &n);
    return n;
}

/* Opens the model at budget, decodes the est_run prompt and steps; returns pinned count and note. */
static mica_status est_run_pinned(const char *path, uint64_t budget, est_run *r, int32_t *pinned, char *note,
                                  size_t note_cap, char *err, size_t cap) {
    mica_model_params mp = mica_model_params_default();
    mp.mem_budget = budget;
    mica_model *m = NULL;
    mica_status st = mica_model_open(path, &mp, &m, err, cap);
    if (st) return st;
    *pinned = est_pinned(m);
    snprintf(note, note_cap, "%s", mica_model_note(m));
    mica_model_free(m);
    return est_run_model(path, budget, r, err, cap);
}

TEST(estore_hot_set_from_usage_keeps_tokens) {
    char src[512], path[600], path2[600], up[700], up2[700], err[512] = "", note[1024];
    ASSERT_TRUE(est_gen("tiny-qwen3moe", MICA_DTYPE_Q8_0, src, sizeof src));
    snprintf(path, sizeof path, "%s/estore_hot.gguf", test_tmp_dir());
    snprintf(up, sizeof up, "%s.usage", path);
    ASSERT_TRUE(est_copy(src, path));
    remove(up);
    est_layout L;
    ASSERT_TRUE(est_layout_read(path, &L));
    est_run ref = {0};
    ASSERT_OK(est_run_model(path, MICA_MEM_UNLIMITED, &ref, err, sizeof err));
    ASSERT_TRUE(est_file_size(up) < 0); /* a mapped model keeps no statistics */
    const uint64_t slot = expert_store_slot_bytes(L.layers, L.n_layer, ESRC_DIRECT_ALIGN);
    /* all experts but two: room for a hot set beside 2 * expert_used_count free slots */
    const int32_t n_slots = L.n_total - 2;
    const uint64_t budget = L.dense + (uint64_t)n_slots * slot;
    const size_t nbytes = (size_t)(EST_PROMPT + EST_GEN) * (size_t)ref.n_vocab * sizeof(float);
    /* run 1: no statistics, nothing pinned; it writes them */
    est_run run = {0};
    int32_t pinned = -1;
    ASSERT_OK(est_run_pinned(path, budget, &run, &pinned, note, sizeof note, err, sizeof err));
    ASSERT_EQ(pinned, 0);
    ASSERT_TRUE(memcmp(run.logits, ref.logits, nbytes) == 0);
    free(run.logits);
    const long usize = est_file_size(up);
    ASSERT_EQ(usize, 40 + 4 * L.n_layer + 4 * L.n_total + 8);
    /* run 2: the hot set is pinned (at most half the slots), and the tokens do not change */
    ASSERT_OK(est_run_pinned(path, budget, &run, &pinned, note, sizeof note, err, sizeof err));
    fprintf(stderr, "    %d experts pinned of %d slots\n", pinned, n_slots);
    ASSERT_TRUE(pinned > 0 && pinned <= n_slots / 2);
    ASSERT_TRUE(note[0] == '\0' || !strstr(note, "usage"));
    for (int g = 0; g < EST_GEN; g++) ASSERT_EQ(run.ids[g], ref.ids[g]);
    ASSERT_TRUE(memcmp(run.logits, ref.logits, nbytes) == 0);
    free(run.logits);
    /* ... and with half the experts, and with the resident part plus one layer's experts */
    for (int b = 0; b < 2; b++) {
        const int32_t k = b ? L.n_per_layer : L.n_total / 2;
        ASSERT_OK(est_run_pinned(path, L.dense + (uint64_t)k * slot, &run, &pinned, note, sizeof note, err,
                                 sizeof err));
        ASSERT_TRUE(pinned >= 0 && pinned <= k / 2);
        ASSERT_TRUE(memcmp(run.logits, ref.logits, nbytes) == 0);
        free(run.logits);
    }

    /* a corrupt file: ignored with one note, nothing pinned, same tokens */
    int fd = open(up, O_RDWR);
    ASSERT_TRUE(fd >= 0);
    uint8_t b = 0xff;
    ASSERT_EQ(pwrite(fd, &b, 1, 40 + 4 * L.n_layer + 2), 1);
    close(fd);
    ASSERT_OK(est_run_pinned(path, budget, &run, &pinned, note, sizeof note, err, sizeof err));
    if (!strstr(note, "ignored")) fprintf(stderr, "    note: %s\n", note);
    ASSERT_TRUE(strstr(note, "usage statistics") && strstr(note, "estore_hot.gguf.usage") &&
                strstr(note, "ignored: checksum mismatch"));
    ASSERT_EQ(pinned, 0);
    ASSERT_TRUE(memcmp(run.logits, ref.logits, nbytes) == 0);
    free(run.logits);
    /* the run rewrote it: valid again */
    ASSERT_OK(est_run_pinned(path, budget, &run, &pinned, note, sizeof note, err, sizeof err));
    ASSERT_TRUE(pinned > 0 && !strstr(note, "usage"));
    free(run.logits);

    /* truncated */
    ASSERT_EQ(truncate(up, usize - 9), 0);
    ASSERT_OK(est_run_pinned(path, budget, &run, &pinned, note, sizeof note, err, sizeof err));
    ASSERT_TRUE(strstr(note, "ignored: truncated") != NULL);
    ASSERT_EQ(pinned, 0);
    free(run.logits);

    /* from another model of the same shapes (other weights: another seed) */
    snprintf(path2, sizeof path2, "%s/estore_hot_other.gguf", test_tmp_dir());
    snprintf(up2, sizeof up2, "%s.usage", path2);
    gen_params gp = {.preset = "tiny-qwen3moe", .type = MICA_DTYPE_Q8_0, .seed = 24};
    mica_err e = {0};
    ASSERT_OK(gen_write(&gp, path2, &e));
    ASSERT_TRUE(est_copy(up, up2));
    ASSERT_OK(est_run_pinned(path2, budget, &run, &pinned, note, sizeof note, err, sizeof err));
    ASSERT_TRUE(strstr(note, "ignored: written for another model") != NULL);
    ASSERT_EQ(pinned, 0);
    free(run.logits);
    free(ref.logits);
    remove(path);
    remove(up);
    remove(path2);
    remove(up2);
}

/* ---- a model file rewritten in place under a streamed model ---- */

TEST(estore_model_rewritten_under_reader) {
    char src[512], path[600], err[512] = "";
    ASSERT_TRUE(est_gen("tiny-qwen3moe", MICA_DTYPE_Q8_0, src, sizeof src));
    snprintf(path, sizeof path, "%s/estore_rewrite_copy.gguf", test_tmp_dir());
    ASSERT_TRUE(est_copy(src, path));
    struct timespec past[2];
    clock_gettime(CLOCK_REALTIME, &past[0]);
    past[0].tv_sec -= 100;
    past[1] = past[0];
    ASSERT_EQ(utimensat(AT_FDCWD, path, past, 0), 0);
    char up[700];
    snprintf(up, sizeof up, "%s.usage", path);
    remove(up);
    est_layout L;
    ASSERT_TRUE(est_layout_read(path, &L));
    const uint64_t slot = expert_store_slot_bytes(L.layers, L.n_layer, ESRC_DIRECT_ALIGN);
    mica_model_params mp = mica_model_params_default();
    mp.mem_budget = L.dense + (uint64_t)(L.n_total / 4) * slot;
    mica_model *m = NULL;
    ASSERT_OK(mica_model_open(path, &mp, &m, err, sizeof err));
    mica_session_params sp = mica_session_params_default();
    sp.n_ctx = 64;
    sp.n_threads = 1;
    mica_session *s = NULL;
    ASSERT_OK(mica_session_create(m, &sp, &s, err, sizeof err));
    const int32_t V = mica_model_n_vocab(m);
    float *before = malloc((size_t)V * sizeof(float));
    int32_t a = 101;
    ASSERT_OK(mica_session_decode(s, &a, 1, NULL));
    memcpy(before, mica_session_logits(s), (size_t)V * sizeof(float));

    /* rewrite layer 1's gate experts in place: same size, other bytes */
    int fd = open(path, O_WRONLY);
    ASSERT_TRUE(fd >= 0);
    const size_t n = (size_t)L.layers[1].part_bytes[0] * (size_t)L.layers[1].n_expert;
    uint8_t *junk = malloc(n);
    memset(junk, 0x3c, n);
    ASSERT_EQ(pwrite(fd, junk, n, (off_t)L.layers[1].part_off[0]), (ssize_t)n);
    close(fd);
    free(junk);

    /* new tokens need experts that are not cached: an error naming the file, not garbage */
    mica_status st = MICA_OK;
    for (int32_t t = 0; t < 40 && st == MICA_OK; t++) {
        int32_t tok = (t * 53 + 7) % V;
        st = mica_session_decode(s, &tok, 1, NULL);
    }
    ASSERT_EQ(st, MICA_ERR_IO);
    if (!strstr(mica_session_errmsg(s), "was modified")) fprintf(stderr, "    %s\n", mica_session_errmsg(s));
    ASSERT_TRUE(strstr(mica_session_errmsg(s), "was modified") &&
                strstr(mica_session_errmsg(s), "estore_rewrite_copy.gguf"));
    ASSERT_TRUE(mica_session_logits(s) == NULL);
    /* the resident part still works: a dense-only step (the tokenizer, the session) */
    mica_session_reset(s);
    ASSERT_EQ(mica_session_n_past(s), 0);
    free(before);
    mica_session_free(s);
    mica_model_free(m);
    remove(path);
    remove(up);
}
