/*
 * cmd_bench.c - `mica bench`: prompt-processing (pp) and token-generation
 * (tg) speed of whole forward passes, in the spirit of llama-bench, plus a
 * streaming memory-bandwidth probe (`mica bench --membw`) that gives the
 * decode roofline.
 *
 * Method (bench/PROTOCOL.md has the reporting rules):
 *   pp:  reset the session, decode an untimed prefix of --depth tokens, then
 *        time one mica_session_decode of -p tokens. t/s = p / seconds.
 *   tg:  reset, decode the untimed prefix, then time -n decodes of one token
 *        each. t/s = n / seconds. Prompt time is never included.
 *   Every test runs once untimed (warm-up: page cache, thread pool, caches)
 *   and then -r timed times; rows report the mean and the sample standard
 *   deviation of the per-run t/s, like llama-bench's avg_ts / stddev_ts.
 *   Token ids are deterministic pseudo-random ids below n_vocab (the output
 *   is not sampled: the logits of every step are computed and ignored).
 *
 * Uses only the public API of mica.h.
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "args.h"
#include "mica.h"

static const char bench_usage[] =
    "usage: mica bench -m MODEL [-m MODEL ...] [options]\n"
    "       mica bench --membw [-t THREADS] [--membw-mib N]\n"
    "\n"
    "Measures prompt processing (pp: one batch of -p tokens in a fresh session)\n"
    "and token generation (tg: -n single-token decodes) in tokens per second,\n"
    "after one untimed warm-up run, as mean and standard deviation over -r runs.\n"
    "tg rows also show the weight bandwidth they achieve (bytes read per token x\n"
    "t/s) and its fraction of the measured memory read bandwidth (roofline).\n"
    "\n"
    "  -m, --model FILE        GGUF model (repeat for several models)\n"
    "  -p, --n-prompt N        prompt tokens of the pp test; 0 skips it (default 512)\n"
    "  -n, --n-gen N           generated tokens of the tg test; 0 skips it (default 128)\n"
    "  -d, --depth D           tokens already in the KV cache before each test (default 0)\n"
    "  -t, --threads N         threads (default: all cores)\n"
    "      --kv-type T         KV-cache rows: f32 (default), f16 or q8_0\n"
    "  -r, --repetitions N     timed runs per test (default 3)\n"
    "  -o, --output md|json    markdown table, or one JSON object per row (default md)\n"
    "      --no-membw          skip the memory-bandwidth probe before tg tests\n"
    "      --membw             only measure the memory read bandwidth (GB/s)\n"
    "      --membw-mib N       probe buffer size in MiB (default 1024)\n"
    "      --mem-budget SIZE   RAM for the weights, e.g. 4G (default: automatic); routed\n"
    "                          experts stream from the file when the model exceeds it\n"
    "                          (their counters then go to stderr after each model)\n";

#define BENCH_MAX_MODELS 64
#define BENCH_MAX_REPS   1000
#define MEMBW_PASSES     5

typedef struct bench_opts {
    const char *models[BENCH_MAX_MODELS];
    int n_models;
    int64_t n_prompt, n_gen, depth, n_threads, reps, membw_mib;
    bool json, no_membw, membw_only;
    uint64_t mem_budget;
    int32_t kv_type; /* mica_kv_type */
} bench_opts;

/* ---- options ---- */

static bool bench_parse(int argc, char **argv, bench_opts *o, bool *help) {
    cli_args a = {argc, 0, argv, false};
    const char *arg;
    while ((arg = cli_next(&a))) {
        const char *val;
#define VAL() ((val = cli_value(&a, arg)) != NULL)
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) { *help = true; return true; }
        else if (!strcmp(arg, "-m") || !strcmp(arg, "--model")) {
            if (!VAL()) return false;
            if (o->n_models == BENCH_MAX_MODELS) {
                cli_error("bench: at most %d models", BENCH_MAX_MODELS);
                return false;
            }
            o->models[o->n_models++] = val;
        } else if (!strcmp(arg, "-p") || !strcmp(arg, "--n-prompt")) {
            if (!VAL() || !cli_parse_i64(arg, val, 0, MICA_MAX_CTX, &o->n_prompt)) return false;
        } else if (!strcmp(arg, "-n") || !strcmp(arg, "--n-gen")) {
            if (!VAL() || !cli_parse_i64(arg, val, 0, MICA_MAX_CTX, &o->n_gen)) return false;
        } else if (!strcmp(arg, "-d") || !strcmp(arg, "--depth")) {
            if (!VAL() || !cli_parse_i64(arg, val, 0, MICA_MAX_CTX, &o->depth)) return false;
        } else if (!strcmp(arg, "-t") || !strcmp(arg, "--threads")) {
            if (!VAL() || !cli_parse_i64(arg, val, 1, MICA_MAX_THREADS, &o->n_threads)) return false;
        } else if (!strcmp(arg, "-r") || !strcmp(arg, "--repetitions")) {
            if (!VAL() || !cli_parse_i64(arg, val, 1, BENCH_MAX_REPS, &o->reps)) return false;
        } else if (!strcmp(arg, "-o") || !strcmp(arg, "--output")) {
            if (!VAL()) return false;
            if (!strcmp(val, "json")) o->json = true;
            else if (!strcmp(val, "md")) o->json = false;
            else {
                cli_error("%s: '%s' is not an output format (md or json)", arg, val);
                return false;
            }
        } else if (!strcmp(arg, "--membw-mib")) {
            if (!VAL() || !cli_parse_i64(arg, val, 1, 1 << 20, &o->membw_mib)) return false;
        } else if (!strcmp(arg, "--mem-budget")) {
            if (!VAL() || !cli_parse_size(arg, val, &o->mem_budget)) return false;
        } else if (!strcmp(arg, "--kv-type")) {
            if (!VAL()) return false;
            if (!mica_kv_type_parse(val, &o->kv_type)) { cli_error("--kv-type: '%s' is not f32, f16 or q8_0", val); return false; }
        } else if (!strcmp(arg, "--no-membw")) {
            o->no_membw = true;
        } else if (!strcmp(arg, "--membw")) {
            o->membw_only = true;
        } else {
            cli_error("unknown option '%s' (see --help)", arg);
            return false;
        }
#undef VAL
    }
    return !a.failed;
}

static int64_t online_cpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (n > MICA_MAX_THREADS ? MICA_MAX_THREADS : n) : 1;
}

/* ---- statistics ---- */

static double stats_mean(const double *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    return n ? s / (double)n : 0;
}

/* Sample standard deviation (n - 1 in the denominator); 0 for one sample. */
static double stats_sd(const double *x, int64_t n) {
    if (n < 2) return 0;
    double m = stats_mean(x, n), s = 0;
    for (int64_t i = 0; i < n; i++) s += (x[i] - m) * (x[i] - m);
    return sqrt(s / (double)(n - 1));
}

/* ---- memory bandwidth ---- */

typedef struct membw_slice {
    const uint64_t *p;
    size_t n;     /* 64-bit words */
    uint64_t sum; /* result, so the loads cannot be optimised away */
} membw_slice;

/*
 * Sums a slice with eight independent accumulators held in registers, so
 * the loop is bound by loads (at -O2 it needs no SIMD to outrun DRAM).
 */
static void *membw_worker(void *arg) {
    membw_slice *s = arg;
    const uint64_t *p = s->p;
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    size_t i = 0;
    for (; i + 8 <= s->n; i += 8) {
        a0 += p[i];
        a1 += p[i + 1];
        a2 += p[i + 2];
        a3 += p[i + 3];
        a4 += p[i + 4];
        a5 += p[i + 5];
        a6 += p[i + 6];
        a7 += p[i + 7];
    }
    for (; i < s->n; i++) a0 += p[i];
    s->sum = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
    return NULL;
}

/*
 * Streaming read bandwidth in bytes/s: n_threads threads each sum their slice
 * of a `bytes` buffer (filled first, so no page is the shared zero page);
 * best of MEMBW_PASSES passes. Returns 0 after printing an error.
 */
static double membw_measure(int64_t n_threads, size_t bytes) {
    size_t words = bytes / sizeof(uint64_t);
    uint64_t *buf = malloc(words * sizeof(uint64_t));
    membw_slice *sl = calloc((size_t)n_threads, sizeof *sl);
    pthread_t *th = calloc((size_t)n_threads, sizeof *th);
    double best = 0;
    if (!buf || !sl || !th) {
        cli_error("bench: out of memory for a %zu MiB bandwidth buffer", bytes >> 20);
        goto done;
    }
    for (size_t i = 0; i < words; i++) buf[i] = i * 0x9e3779b97f4a7c15ull;
    size_t per = words / (size_t)n_threads;
    uint64_t check = 0;
    for (int pass = 0; pass < MEMBW_PASSES; pass++) {
        double t0 = cli_now();
        int64_t started = 0;
        for (int64_t t = 0; t < n_threads; t++) {
            sl[t].p = buf + (size_t)t * per;
            sl[t].n = t == n_threads - 1 ? words - (size_t)t * per : per;
            if (t == 0) continue; /* the calling thread takes slice 0 */
            if (pthread_create(&th[t], NULL, membw_worker, &sl[t]) != 0) break;
            started++;
        }
        if (started != n_threads - 1) {
            for (int64_t t = 1; t <= started; t++) pthread_join(th[t], NULL);
            cli_error("bench: cannot start %" PRId64 " threads", n_threads);
            best = 0;
            goto done;
        }
        membw_worker(&sl[0]);
        for (int64_t t = 1; t < n_threads; t++) pthread_join(th[t], NULL);
        double dt = cli_now() - t0;
        for (int64_t t = 0; t < n_threads; t++) check += sl[t].sum;
        if (dt > 0 && (double)words * 8.0 / dt > best) best = (double)words * 8.0 / dt;
    }
    if (check == 1) fputc(' ', stderr); /* keeps `check` alive; practically never true */
done:
    free(th);
    free(sl);
    free(buf);
    return best;
}

/* ---- model facts for the report ---- */

typedef struct model_info {
    const char *path, *name; /* name: basename of path */
    uint64_t size_bytes, n_params, bytes_per_token;
    char types[256];         /* "Q8_0 x197, F32 x113" */
} model_info;

/*
 * Extracts the tensor-type histogram from mica_model_describe's
 * "tensor types:" line ("F32 x113 (256.00 KiB) Q8_0 x197 (603.90 MiB)"),
 * dropping the parenthesised sizes: "F32 x113, Q8_0 x197".
 */
static void model_types(const mica_model *m, char *out, size_t cap) {
    out[0] = '\0';
    size_t need = mica_model_describe(m, NULL, 0);
    char *d = malloc(need + 1);
    if (!d) return;
    mica_model_describe(m, d, need + 1);
    char *line = strstr(d, "tensor types:");
    if (line) {
        char *eol = strchr(line, '\n');
        if (eol) *eol = '\0';
        size_t len = 0;
        int n_word = 0;
        bool in_paren = false;
        for (char *save = NULL, *w = strtok_r(line + strlen("tensor types:"), " ", &save); w;
             w = strtok_r(NULL, " ", &save)) {
            if (in_paren || w[0] == '(') {
                in_paren = w[strlen(w) - 1] != ')';
                continue;
            }
            const char *sep = n_word == 0 ? "" : n_word % 2 ? " " : ", ";
            int k = snprintf(out + len, cap - len, "%s%s", sep, w);
            if (k < 0 || (size_t)k >= cap - len) break;
            len += (size_t)k;
            n_word++;
        }
    }
    free(d);
}

static void model_info_fill(model_info *mi, const char *path, const mica_model *m) {
    memset(mi, 0, sizeof *mi);
    mi->path = path;
    const char *slash = strrchr(path, '/');
    mi->name = slash ? slash + 1 : path;
    struct stat st;
    if (stat(path, &st) == 0) mi->size_bytes = (uint64_t)st.st_size;
    mi->n_params = mica_model_n_params(m);
    mi->bytes_per_token = mica_model_bytes_per_token(m);
    model_types(m, mi->types, sizeof mi->types);
}

/* ---- one test ---- */

typedef struct bench_row {
    bool is_gen;
    int64_t n_prompt, n_gen, depth;
    double *ts;   /* [reps] tokens per second */
    double *ns;   /* [reps] nanoseconds per run */
    double avg_ts, sd_ts;
} bench_row;

/* Deterministic pseudo-random token ids below n_vocab (splitmix64 stream). */
static void bench_ids(int32_t *ids, int64_t n, int32_t n_vocab, uint64_t seed) {
    uint64_t x = seed;
    for (int64_t i = 0; i < n; i++) {
        x += 0x9e3779b97f4a7c15ull;
        uint64_t z = x;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        ids[i] = (int32_t)(z % (uint64_t)n_vocab);
    }
}

/*
 * One run: reset, untimed prefix of `depth` ids, then the timed part (one
 * batch of n_prompt ids, or n_gen one-token decodes). Returns the timed
 * seconds, or a negative value after printing the session's error.
 */
static double bench_once(mica_session *s, const bench_row *r, const int32_t *ids) {
    mica_session_reset(s);
    if (r->depth > 0 && mica_session_decode(s, ids, (int32_t)r->depth, NULL) != MICA_OK) goto fail;
    const int32_t *t = ids + r->depth;
    double t0 = cli_now();
    if (!r->is_gen) {
        if (mica_session_decode(s, t, (int32_t)r->n_prompt, NULL) != MICA_OK) goto fail;
    } else {
        for (int64_t i = 0; i < r->n_gen; i++)
            if (mica_session_decode(s, &t[i], 1, NULL) != MICA_OK) goto fail;
    }
    return cli_now() - t0;
fail:
    cli_error("bench: decode failed: %s", mica_session_errmsg(s));
    return -1;
}

static bool bench_run_row(mica_session *s, bench_row *r, const int32_t *ids, int64_t reps) {
    if (bench_once(s, r, ids) < 0) return false; /* warm-up */
    int64_t n_tok = r->is_gen ? r->n_gen : r->n_prompt;
    for (int64_t k = 0; k < reps; k++) {
        double dt = bench_once(s, r, ids);
        if (dt < 0) return false;
        r->ns[k] = dt * 1e9;
        r->ts[k] = dt > 0 ? (double)n_tok / dt : 0;
    }
    r->avg_ts = stats_mean(r->ts, reps);
    r->sd_ts = stats_sd(r->ts, reps);
    return true;
}

/* ---- output ---- */

static void json_str(const char *s) {
    putchar('"');
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') printf("\\%c", *c);
        else if (*c < 0x20) printf("\\u%04x", *c);
        else putchar(*c);
    }
    putchar('"');
}

static void test_name(const bench_row *r, char *buf, size_t cap) {
    int k = snprintf(buf, cap, r->is_gen ? "tg%" PRId64 : "pp%" PRId64, r->is_gen ? r->n_gen : r->n_prompt);
    if (r->depth > 0 && k > 0 && (size_t)k < cap) snprintf(buf + k, cap - (size_t)k, " @ d%" PRId64, r->depth);
}

static void human_size(uint64_t b, char *buf, size_t cap) {
    if (b >= (1ull << 30)) snprintf(buf, cap, "%.2f GiB", (double)b / (double)(1ull << 30));
    else if (b >= (1ull << 20)) snprintf(buf, cap, "%.2f MiB", (double)b / (double)(1ull << 20));
    else snprintf(buf, cap, "%.2f KiB", (double)b / 1024.0);
}

static void human_count(uint64_t n, char *buf, size_t cap) {
    if (n >= 1000000000ull) snprintf(buf, cap, "%.2f B", (double)n / 1e9);
    else if (n >= 1000000ull) snprintf(buf, cap, "%.2f M", (double)n / 1e6);
    else snprintf(buf, cap, "%.2f K", (double)n / 1e3);
}

static void print_md_header(void) {
    printf("| model | size | params | types | threads | test | t/s | GB/s | roofline |\n");
    printf("| --- | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: |\n");
}

static void print_row(const bench_opts *o, const model_info *mi, const bench_row *r, double membw) {
    char name[64], sz[32], np[32];
    test_name(r, name, sizeof name);
    double gbps = (double)mi->bytes_per_token * r->avg_ts / 1e9;
    bool has_bw = r->is_gen;
    bool has_roof = r->is_gen && membw > 0;
    if (!o->json) {
        human_size(mi->size_bytes, sz, sizeof sz);
        human_count(mi->n_params, np, sizeof np);
        printf("| %s | %s | %s | %s | %" PRId64 " | %s | %.2f ± %.2f |", mi->name, sz, np, mi->types,
               o->n_threads, name, r->avg_ts, r->sd_ts);
        if (has_bw) printf(" %.2f |", gbps);
        else printf(" |");
        if (has_roof) printf(" %.0f%% |\n", 100.0 * gbps / (membw / 1e9));
        else printf(" |\n");
        return;
    }
    double avg_ns = stats_mean(r->ns, o->reps), sd_ns = stats_sd(r->ns, o->reps);
    printf("{\"build_version\": \"%s\", \"model_filename\": ", mica_version());
    json_str(mi->path);
    printf(", \"model_type\": ");
    json_str(mi->types);
    printf(", \"model_size\": %" PRIu64 ", \"model_n_params\": %" PRIu64 ", \"n_threads\": %" PRId64
           ", \"type_k\": \"f32\", \"type_v\": \"f32\", \"n_prompt\": %" PRId64 ", \"n_gen\": %" PRId64
           ", \"n_depth\": %" PRId64 ", \"test\": \"%s\", \"avg_ns\": %.0f, \"stddev_ns\": %.0f"
           ", \"avg_ts\": %.6f, \"stddev_ts\": %.6f, \"samples_ns\": [",
           mi->size_bytes, mi->n_params, o->n_threads, r->is_gen ? 0 : r->n_prompt, r->is_gen ? r->n_gen : 0,
           r->depth, name, avg_ns, sd_ns, r->avg_ts, r->sd_ts);
    for (int64_t k = 0; k < o->reps; k++) printf(k ? ", %.0f" : "%.0f", r->ns[k]);
    printf("], \"samples_ts\": [");
    for (int64_t k = 0; k < o->reps; k++) printf(k ? ", %.6f" : "%.6f", r->ts[k]);
    printf("], \"bytes_per_token\": %" PRIu64, mi->bytes_per_token);
    if (has_bw) printf(", \"gbps\": %.4f", gbps);
    else printf(", \"gbps\": null");
    if (membw > 0) printf(", \"membw_gbps\": %.4f", membw / 1e9);
    else printf(", \"membw_gbps\": null");
    if (has_roof) printf(", \"roofline\": %.4f}\n", gbps / (membw / 1e9));
    else printf(", \"roofline\": null}\n");
}

/* ---- one model ---- */

static bool bench_model(const bench_opts *o, const char *path, double membw, bool *header_done) {
    char err[512];
    mica_model *m = NULL;
    mica_session *s = NULL;
    int32_t *ids = NULL;
    double *samples = NULL;
    bool ok = false;
    mica_model_params mp = mica_model_params_default();
    mp.mem_budget = o->mem_budget;
    if (mica_model_open(path, &mp, &m, err, sizeof err) != MICA_OK) {
        cli_error("%s", err);
        return false;
    }
    cli_print_model_note(m);
    model_info mi;
    model_info_fill(&mi, path, m);
    int64_t longest = o->n_prompt > o->n_gen ? o->n_prompt : o->n_gen;
    int64_t n_ctx = o->depth + longest;
    if (n_ctx > MICA_MAX_CTX) {
        cli_error("bench: --depth + max(-p, -n) = %" PRId64 " exceeds the largest context (%d)", n_ctx,
                  MICA_MAX_CTX);
        goto done;
    }
    mica_session_params sp = mica_session_params_default();
    sp.n_ctx = (int32_t)n_ctx;
    sp.n_threads = (int32_t)o->n_threads;
    sp.kv_type = o->kv_type;
    if (mica_session_create(m, &sp, &s, err, sizeof err) != MICA_OK) {
        cli_error("%s", err);
        goto done;
    }
    ids = malloc((size_t)n_ctx * sizeof *ids);
    samples = malloc((size_t)o->reps * 2 * sizeof *samples);
    if (!ids || !samples) {
        cli_error("bench: out of memory");
        goto done;
    }
    bench_ids(ids, n_ctx, mica_model_n_vocab(m), 0x6d696361ull /* "mica" */);
    for (int test = 0; test < 2; test++) {
        bench_row r = {.is_gen = test == 1, .n_prompt = o->n_prompt, .n_gen = o->n_gen, .depth = o->depth,
                       .ts = samples, .ns = samples + o->reps};
        if ((r.is_gen ? o->n_gen : o->n_prompt) == 0) continue;
        if (!bench_run_row(s, &r, ids, o->reps)) goto done;
        if (!o->json && !*header_done) {
            print_md_header();
            *header_done = true;
        }
        print_row(o, &mi, &r, membw);
        fflush(stdout);
    }
    ok = true;
done:
    if (m) {
        mica_expert_stats es;
        mica_model_expert_stats(m, &es);
        if (es.streaming) {
            mica_expert_stats zero = {0};
            cli_print_expert_stats(m, "experts (all tests)", 0, &zero);
        }
    }
    free(samples);
    free(ids);
    mica_session_free(s);
    mica_model_free(m);
    return ok;
}

int cmd_bench(int argc, char **argv) {
    bench_opts o = {.n_prompt = 512, .n_gen = 128, .reps = 3, .membw_mib = 1024};
    bool help = false;
    if (!bench_parse(argc, argv, &o, &help)) return 1;
    if (help) { fputs(bench_usage, stdout); return 0; }
    if (o.n_threads == 0) o.n_threads = online_cpus();
    size_t membw_bytes = (size_t)o.membw_mib << 20;
    if (o.membw_only) {
        if (o.n_models) return cli_error("bench: --membw takes no model");
        double bw = membw_measure(o.n_threads, membw_bytes);
        if (bw <= 0) return 1;
        if (o.json)
            printf("{\"test\": \"membw\", \"n_threads\": %" PRId64 ", \"buffer_bytes\": %zu, \"passes\": %d, "
                   "\"membw_gbps\": %.4f}\n",
                   o.n_threads, membw_bytes, MEMBW_PASSES, bw / 1e9);
        else
            printf("memory read bandwidth: %.2f GB/s (%" PRId64 " threads, %" PRId64 " MiB buffer, best of %d)\n",
                   bw / 1e9, o.n_threads, o.membw_mib, MEMBW_PASSES);
        return 0;
    }
    if (!o.n_models) return cli_error("bench: -m MODEL is required (or --membw)");
    if (!o.n_prompt && !o.n_gen) return cli_error("bench: -p 0 and -n 0 leave nothing to measure");
    double membw = 0;
    if (o.n_gen > 0 && !o.no_membw) {
        membw = membw_measure(o.n_threads, membw_bytes);
        if (membw <= 0) return 1;
        if (!o.json)
            printf("memory read bandwidth: %.2f GB/s (%" PRId64 " threads, best of %d)\n\n", membw / 1e9,
                   o.n_threads, MEMBW_PASSES);
    }
    bool header_done = false;
    for (int i = 0; i < o.n_models; i++)
        if (!bench_model(&o, o.models[i], membw, &header_done)) return 1;
    return 0;
}
