/*
 * serve.c - `mica serve`: options, model loading, the scheduler and the HTTP
 * listener, and an orderly stop on SIGINT / SIGTERM.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "server.h"
#include "slots.h"

static const char serve_usage[] =
    "usage: mica serve -m MODEL [options]\n"
    "\n"
    "OpenAI-compatible HTTP server: /v1/chat/completions, /v1/completions,\n"
    "/v1/models, /health, /tokenize, /detokenize, /apply-template and, with\n"
    "--metrics, /metrics (Prometheus text).\n"
    "\n"
    "  -m, --model FILE      GGUF model\n"
    "      --host ADDR       address to bind (default 127.0.0.1)\n"
    "      --port N          port (default 8080; 0 = any free port, printed on stderr)\n"
    "      --api-key KEY     require 'Authorization: Bearer KEY' (all endpoints but /health)\n"
    "  -np, --parallel N     slots: requests generated at once (default 1)\n"
    "      --queue N         requests that may wait for a slot before 429 (default 64)\n"
    "  -c, --ctx-size N      context per slot (default: model's, at most 4096)\n"
    "  -t, --threads N       threads per slot (default: CPUs / slots)\n"
    "      --kv-type T       KV-cache rows of every slot: f32 (default), f16 or q8_0\n"
    "      --cors ORIGIN     send Access-Control-Allow-Origin: ORIGIN\n"
    "      --metrics         enable GET /metrics\n"
    "      --mem-budget SIZE RAM for the weights (e.g. 4G, 512M, bytes; 'auto' (default):\n"
    "                        available memory less headroom; 'unlimited': never stream).\n"
    "                        Below the model's size the routed experts stream from disk\n"
    "      --max-body BYTES  request body cap (default 8 MiB; 413 beyond)\n"
    "      --timeout S       wall-time cap of one generation in seconds (default 600);\n"
    "                        a generation that reaches it ends with finish_reason \"length\"\n";

static int serve_error(const char *msg, const char *arg) {
    fprintf(stderr, "mica: error: %s%s%s\n", msg, arg ? " " : "", arg ? arg : "");
    return 1;
}

static bool parse_int(const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = (int)v;
    return true;
}

uint64_t srv_random(srv *S) {
    pthread_mutex_lock(&S->mu);
    uint64_t x = S->rng += 0x9E3779B97F4A7C15ull; /* splitmix64 */
    pthread_mutex_unlock(&S->mu);
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

void srv_stats_add(srv *S, const srv_stats *d) {
    pthread_mutex_lock(&S->mu);
    S->stats.requests += d->requests;
    S->stats.requests_failed += d->requests_failed;
    S->stats.prompt_tokens += d->prompt_tokens;
    S->stats.cached_tokens += d->cached_tokens;
    S->stats.gen_tokens += d->gen_tokens;
    S->stats.prompt_seconds += d->prompt_seconds;
    S->stats.gen_seconds += d->gen_seconds;
    pthread_mutex_unlock(&S->mu);
}

static int parse_serve_args(int argc, char **argv, srv_config *c, bool *help) {
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long max_body = 0;
#define NEED() do { if (!v) return serve_error("missing value for", a); i++; } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { *help = true; return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { NEED(); c->model_path = v; }
        else if (!strcmp(a, "--host")) { NEED(); c->host = v; }
        else if (!strcmp(a, "--port")) { NEED(); if (!parse_int(v, 0, 65535, &c->port)) return serve_error("bad --port", v); }
        else if (!strcmp(a, "--api-key")) { NEED(); c->api_key = v; }
        else if (!strcmp(a, "-np") || !strcmp(a, "--parallel")) {
            NEED();
            if (!parse_int(v, 1, 256, &c->parallel)) return serve_error("bad --parallel (1..256)", v);
        } else if (!strcmp(a, "--queue")) {
            NEED();
            if (!parse_int(v, 0, 100000, &c->queue_cap)) return serve_error("bad --queue (0..100000)", v);
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) {
            NEED();
            if (!parse_int(v, 1, MICA_MAX_CTX, &c->n_ctx)) return serve_error("bad --ctx-size", v);
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            NEED();
            if (!parse_int(v, 1, MICA_MAX_THREADS, &c->n_threads)) return serve_error("bad --threads", v);
        } else if (!strcmp(a, "--kv-type")) {
            NEED();
            if (!mica_kv_type_parse(v, &c->kv_type)) return serve_error("bad --kv-type (f32, f16, q8_0):", v);
        } else if (!strcmp(a, "--cors")) { NEED(); c->cors = v; }
        else if (!strcmp(a, "--metrics")) { c->metrics = true; }
        else if (!strcmp(a, "--mem-budget")) {
            NEED();
            if (!srv_parse_size(v, &c->mem_budget))
                return serve_error("bad --mem-budget (e.g. 4G, 512M, bytes, auto, unlimited):", v);
        }
        else if (!strcmp(a, "--timeout")) {
            NEED();
            if (!parse_int(v, 1, 86400, &c->timeout_s)) return serve_error("bad --timeout (1..86400)", v);
        }
        else if (!strcmp(a, "--max-body")) {
            NEED();
            int mb;
            if (!parse_int(v, 1024, 1 << 30, &mb)) return serve_error("bad --max-body (1024..1073741824)", v);
            max_body = mb;
            c->max_body = (size_t)max_body;
        } else {
            return serve_error("unknown option (see mica serve --help):", a);
        }
#undef NEED
    }
    return 0;
}

srv *srv_open(const srv_config *cfg, char *err, size_t err_cap) {
    srv *S = calloc(1, sizeof *S);
    if (!S) {
        snprintf(err, err_cap, "out of memory");
        return NULL;
    }
    S->cfg = *cfg;
    pthread_mutex_init(&S->mu, NULL);
    S->rng = (uint64_t)time(NULL) * 0x2545F4914F6CDD1Dull ^ (uint64_t)getpid();
    S->started = (int64_t)time(NULL);
    mica_model_params mp = mica_model_params_default();
    mp.mem_budget = cfg->mem_budget;
    if (mica_model_open(cfg->model_path, &mp, &S->model, err, err_cap) != MICA_OK) goto fail;
    {
        const char *note = mica_model_note(S->model);
        if (note && *note) fprintf(stderr, "mica: note: %s\n", note);
        mica_expert_stats es;
        mica_model_expert_stats(S->model, &es);
        if (es.streaming)
            fprintf(stderr, "mica serve: streaming the routed experts (%sbudget %.1f MiB: %.1f MiB resident, "
                    "cache of %d experts, %.1f MiB%s)\n", es.budget_auto ? "automatic " : "",
                    (double)es.budget / 1048576.0,
                    (double)es.resident_bytes / 1048576.0, es.n_slots, (double)es.cache_bytes / 1048576.0,
                    es.direct_io ? ", O_DIRECT" : "");
    }
    S->n_vocab = mica_model_n_vocab(S->model);
    const char *base = strrchr(cfg->model_path, '/');
    snprintf(S->model_id, sizeof S->model_id, "%s", base ? base + 1 : cfg->model_path);
    {
        /* Does the template use the Hermes/Qwen <tool_call> form? Render one call and look. */
        mica_chat_message m[2] = {{.role = "user", .content = "x"},
                                  {.role = "assistant", .content = "",
                                   .tool_calls_json = "[{\"id\":\"c\",\"type\":\"function\",\"function\":"
                                                      "{\"name\":\"f\",\"arguments\":{}}}]"}};
        char *out = NULL;
        size_t len = 0;
        char rerr[256];
        if (mica_chat_render(S->model, m, 2, NULL, false, NULL, &out, &len, NULL, rerr, sizeof rerr) == MICA_OK)
            S->tmpl_has_tool_call = strstr(out, "<tool_call>") != NULL;
        free(out);
    }
    if (!(S->sched = sched_create(S, err, err_cap))) goto fail;
    return S;
fail:
    srv_close(S);
    return NULL;
}

void srv_close(srv *S) {
    if (!S) return;
    sched_stop(S->sched);
    sched_free(S->sched);
    mica_model_free(S->model);
    pthread_mutex_destroy(&S->mu);
    free(S);
}

int cmd_serve(int argc, char **argv) {
    srv_config cfg = {.host = "127.0.0.1", .port = 8080, .parallel = 1, .queue_cap = 64,
                      .max_body = SRV_DEFAULT_MAX_BODY, .timeout_s = 600};
    bool help = false;
    if (parse_serve_args(argc, argv, &cfg, &help)) return 1;
    if (help) { fputs(serve_usage, stdout); return 0; }
    if (!cfg.model_path) return serve_error("serve: -m MODEL is required", NULL);
    if (cfg.n_threads == 0) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        cfg.n_threads = ncpu > cfg.parallel ? (int)(ncpu / cfg.parallel) : 1;
    }

    /* Signals are taken by sigwait below: block them before any thread starts. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1;
    http_server *h = NULL;
    char err[512];
    srv *S = srv_open(&cfg, err, sizeof err);
    if (!S) return serve_error(err, NULL);
    int port = 0;
    if (!(h = http_start(S, &port, err, sizeof err))) {
        serve_error(err, NULL);
        goto done;
    }
    fprintf(stderr, "mica serve: %s (%s, n_ctx %d, %d slot%s, %d thread%s each) listening on http://%s:%d\n",
            S->model_id, mica_model_arch(S->model), S->n_ctx, cfg.parallel, cfg.parallel > 1 ? "s" : "",
            cfg.n_threads, cfg.n_threads > 1 ? "s" : "", cfg.host, port);
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "mica serve: stopping (signal %d)\n", sig);
    rc = 0;
done:
    sched_stop(S->sched);
    http_stop(h);
    srv_close(S);
    return rc;
}
