/*
 * http.c - see http.h.
 *
 * A request's body is collected up to cfg.max_body bytes (413 beyond, and at
 * once when Content-Length says so). Non-streaming generations block the
 * connection thread until the task is done, checking every 200 ms whether
 * the client is still connected (a closed socket cancels the task). SSE
 * responses pull the bytes the worker appends; a client that goes away
 * cancels its task within one token.
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "openai.h"
#include "slots.h"

#define HTTP_WAIT_MS 200 /* client liveness check period while a request waits */

struct http_server {
    srv *S;
    struct MHD_Daemon *d;
};

/* Per-request state kept by libmicrohttpd between calls. */
typedef struct http_req {
    sbuf body;
    bool too_big;
} http_req;

/* An SSE response's source. */
typedef struct http_stream {
    task *t;
    struct MHD_Connection *conn;
    size_t off;
} http_stream;

static void add_common_headers(srv *S, struct MHD_Response *resp, const char *ctype) {
    if (ctype) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (S->cfg.cors) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", S->cfg.cors);
        MHD_add_response_header(resp, "Access-Control-Allow-Headers", "Authorization, Content-Type");
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    }
}

static enum MHD_Result send_body(srv *S, struct MHD_Connection *c, int status, char *body, int retry_after) {
    if (!body) body = oai_error_json("internal error", "server_error", NULL, NULL);
    if (!body) return MHD_NO;
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!resp) { free(body); return MHD_NO; }
    add_common_headers(S, resp, "application/json");
    if (retry_after > 0) {
        char v[16];
        snprintf(v, sizeof v, "%d", retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, v);
    }
    if (status == 401) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result send_error(srv *S, struct MHD_Connection *c, int status, const char *param, const char *code,
                                  const char *msg) {
    const char *type = status == 401 ? "authentication_error" : status == 404 ? "not_found_error"
                       : status >= 500 ? "server_error" : "invalid_request_error";
    return send_body(S, c, status, oai_error_json(msg, type, param, code), 0);
}

/* True while the peer has not closed its side of the connection. */
static bool client_alive(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return true;
    struct pollfd pfd = {.fd = ci->connect_fd, .events = POLLIN | POLLRDHUP};
    if (poll(&pfd, 1, 0) <= 0) return true;
    if (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return false;
    if (pfd.revents & POLLIN) { /* data or EOF? */
        char b;
        ssize_t k = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (k == 0) return false;
    }
    return true;
}

static void deadline_in(struct timespec *ts, int ms) {
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_nsec += (long)ms * 1000000L;
    ts->tv_sec += ts->tv_nsec / 1000000000L;
    ts->tv_nsec %= 1000000000L;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    http_stream *hs = cls;
    task *t = hs->t;
    pthread_mutex_lock(&t->mu);
    for (;;) {
        if (t->out.n > 0) {
            size_t k = t->out.n < max ? t->out.n : max;
            memcpy(buf, t->out.p, k);
            sbuf_consume(&t->out, k);
            pthread_mutex_unlock(&t->mu);
            return (ssize_t)k;
        }
        if (t->done || t->cancelled) {
            pthread_mutex_unlock(&t->mu);
            return t->done ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
        }
        struct timespec ts;
        deadline_in(&ts, HTTP_WAIT_MS);
        int rc = pthread_cond_timedwait(&t->cv, &t->mu, &ts);
        if (rc == ETIMEDOUT && !client_alive(hs->conn)) {
            t->cancelled = true;
            pthread_mutex_unlock(&t->mu);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
}

static void stream_free(void *cls) {
    http_stream *hs = cls;
    task_cancel(hs->t); /* no effect once done; stops a generation whose client left */
    task_release(hs->t);
    free(hs);
}

/* Sends a submitted task's answer: SSE, or the finished JSON body. */
static enum MHD_Result send_task(srv *S, struct MHD_Connection *c, task *t, bool stream) {
    if (stream) {
        http_stream *hs = calloc(1, sizeof *hs);
        if (!hs) { task_cancel(t); task_release(t); return MHD_NO; }
        hs->t = t;
        hs->conn = c;
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, hs,
                                                                      stream_free);
        if (!resp) { stream_free(hs); return MHD_NO; }
        add_common_headers(S, resp, "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        return rc;
    }
    pthread_mutex_lock(&t->mu);
    while (!t->done) {
        struct timespec ts;
        deadline_in(&ts, HTTP_WAIT_MS);
        int rc = pthread_cond_timedwait(&t->cv, &t->mu, &ts);
        if (rc == ETIMEDOUT && !client_alive(c)) {
            t->cancelled = true;
            pthread_mutex_unlock(&t->mu);
            task_release(t);
            return MHD_NO; /* closes the connection */
        }
    }
    int status = t->status;
    char *body = t->body;
    t->body = NULL;
    pthread_mutex_unlock(&t->mu);
    task_release(t);
    if (!body && status == 503) body = oai_error_json("the server is shutting down", "server_error", NULL, NULL);
    return send_body(S, c, status, body, 0);
}

typedef enum route_id {
    R_NONE, R_HEALTH, R_MODELS, R_METRICS, R_TOKENIZE, R_DETOKENIZE, R_TEMPLATE, R_COMPLETIONS, R_CHAT
} route_id;

static const struct route {
    const char *path;
    route_id id;
    const char *method;
} routes[] = {
    {"/health", R_HEALTH, "GET"},
    {"/v1/health", R_HEALTH, "GET"},
    {"/v1/models", R_MODELS, "GET"},
    {"/models", R_MODELS, "GET"},
    {"/metrics", R_METRICS, "GET"},
    {"/tokenize", R_TOKENIZE, "POST"},
    {"/detokenize", R_DETOKENIZE, "POST"},
    {"/apply-template", R_TEMPLATE, "POST"},
    {"/v1/completions", R_COMPLETIONS, "POST"},
    {"/completions", R_COMPLETIONS, "POST"},
    {"/v1/chat/completions", R_CHAT, "POST"},
    {"/chat/completions", R_CHAT, "POST"},
};

static const struct route *find_route(srv *S, const char *url) {
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(routes[i].path, url) != 0) continue;
        if (routes[i].id == R_METRICS && !S->cfg.metrics) return NULL;
        return &routes[i];
    }
    return NULL;
}

/* Constant-time comparison of the Authorization header with "Bearer KEY". */
static bool auth_ok(srv *S, struct MHD_Connection *c) {
    if (!S->cfg.api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncmp(h, "Bearer ", 7) != 0) return false;
    h += 7;
    size_t a = strlen(h), b = strlen(S->cfg.api_key);
    unsigned char diff = (unsigned char)(a != b);
    for (size_t i = 0; i < a && i < b; i++) diff |= (unsigned char)(h[i] ^ S->cfg.api_key[i]);
    return diff == 0;
}

/*
 * The expert-streaming counters of mica_model_expert_stats as Prometheus
 * text (all zero, mica_experts_streaming 0, when the model is mapped whole).
 * The budget is -1 when unlimited. Returns a malloc'd string or NULL.
 */
static char *expert_metrics_text(srv *S) {
    mica_expert_stats es;
    mica_model_expert_stats(S->model, &es);
    char *s = NULL;
    int n = asprintf(&s,
        "# HELP mica_experts_streaming 1 when the routed experts are streamed from the model file, else 0.\n"
        "# TYPE mica_experts_streaming gauge\nmica_experts_streaming %d\n"
        "# HELP mica_experts_direct_io 1 when expert reads bypass the page cache (O_DIRECT).\n"
        "# TYPE mica_experts_direct_io gauge\nmica_experts_direct_io %d\n"
        "# HELP mica_memory_budget_bytes Memory budget for the weights in force (-1: unlimited).\n"
        "# TYPE mica_memory_budget_bytes gauge\nmica_memory_budget_bytes %lld\n"
        "# HELP mica_weights_bytes Bytes of all tensors of the model file.\n"
        "# TYPE mica_weights_bytes gauge\nmica_weights_bytes %llu\n"
        "# HELP mica_resident_bytes Bytes of weights kept mapped and resident.\n"
        "# TYPE mica_resident_bytes gauge\nmica_resident_bytes %llu\n"
        "# HELP mica_expert_cache_bytes Bytes of the expert cache's arena.\n"
        "# TYPE mica_expert_cache_bytes gauge\nmica_expert_cache_bytes %llu\n"
        "# HELP mica_expert_cache_slots Experts the cache holds at most.\n"
        "# TYPE mica_expert_cache_slots gauge\nmica_expert_cache_slots %d\n"
        "# HELP mica_expert_cache_pinned Experts pinned in the cache (the hot set learned from routing statistics).\n"
        "# TYPE mica_expert_cache_pinned gauge\nmica_expert_cache_pinned %d\n"
        "# HELP mica_experts_io_uring 1 when expert reads go through io_uring, 0 for the pread threads.\n"
        "# TYPE mica_experts_io_uring gauge\nmica_experts_io_uring %d\n"
        "# HELP mica_expert_cache_experts Experts in the cache now.\n"
        "# TYPE mica_expert_cache_experts gauge\nmica_expert_cache_experts %d\n"
        "# HELP mica_expert_lookups_total Routed-expert lookups in the cache.\n"
        "# TYPE mica_expert_lookups_total counter\nmica_expert_lookups_total %llu\n"
        "# HELP mica_expert_hits_total Lookups served from the cache (including prefetched experts).\n"
        "# TYPE mica_expert_hits_total counter\nmica_expert_hits_total %llu\n"
        "# HELP mica_expert_misses_total Lookups that had to read the expert.\n"
        "# TYPE mica_expert_misses_total counter\nmica_expert_misses_total %llu\n"
        "# HELP mica_expert_prefetch_reads_total Experts read ahead of use.\n"
        "# TYPE mica_expert_prefetch_reads_total counter\nmica_expert_prefetch_reads_total %llu\n"
        "# HELP mica_expert_prefetch_used_total Prefetched experts that were then used.\n"
        "# TYPE mica_expert_prefetch_used_total counter\nmica_expert_prefetch_used_total %llu\n"
        "# HELP mica_expert_reads_total Expert reads issued.\n"
        "# TYPE mica_expert_reads_total counter\nmica_expert_reads_total %llu\n"
        "# HELP mica_expert_read_errors_total Expert reads that failed.\n"
        "# TYPE mica_expert_read_errors_total counter\nmica_expert_read_errors_total %llu\n"
        "# HELP mica_expert_evictions_total Experts evicted from the cache.\n"
        "# TYPE mica_expert_evictions_total counter\nmica_expert_evictions_total %llu\n"
        "# HELP mica_expert_read_bytes_total Bytes of experts read from the model file.\n"
        "# TYPE mica_expert_read_bytes_total counter\nmica_expert_read_bytes_total %llu\n"
        "# HELP mica_expert_io_busy_seconds_total Time with at least one expert read in flight.\n"
        "# TYPE mica_expert_io_busy_seconds_total counter\nmica_expert_io_busy_seconds_total %.6f\n"
        "# HELP mica_expert_stall_seconds_total Time forward passes waited for expert reads or free slots.\n"
        "# TYPE mica_expert_stall_seconds_total counter\nmica_expert_stall_seconds_total %.6f\n",
        es.streaming ? 1 : 0, es.direct_io ? 1 : 0,
        es.budget == MICA_MEM_UNLIMITED || es.budget > (uint64_t)INT64_MAX ? -1LL : (long long)es.budget,
        (unsigned long long)es.weight_bytes, (unsigned long long)es.resident_bytes,
        (unsigned long long)es.cache_bytes, es.n_slots, es.pinned_experts, es.io_uring ? 1 : 0, es.cached_experts,
        (unsigned long long)es.lookups,
        (unsigned long long)es.hits, (unsigned long long)es.misses, (unsigned long long)es.prefetch_reads,
        (unsigned long long)es.prefetch_used, (unsigned long long)es.reads, (unsigned long long)es.read_errors,
        (unsigned long long)es.evictions, (unsigned long long)es.bytes_read, es.io_busy_seconds, es.stall_seconds);
    return n < 0 ? NULL : s;
}

static char *metrics_text(srv *S) {
    sched_load ld;
    sched_get_load(S->sched, &ld);
    pthread_mutex_lock(&S->mu);
    srv_stats st = S->stats;
    pthread_mutex_unlock(&S->mu);
    char *s = NULL;
    int n = asprintf(&s,
        "# HELP mica_requests_total Generation requests completed.\n# TYPE mica_requests_total counter\n"
        "mica_requests_total %llu\n"
        "# HELP mica_prompt_tokens_total Prompt tokens evaluated (not counting reused ones).\n"
        "# TYPE mica_prompt_tokens_total counter\nmica_prompt_tokens_total %llu\n"
        "# HELP mica_prompt_tokens_cached_total Prompt tokens reused from a slot's KV cache.\n"
        "# TYPE mica_prompt_tokens_cached_total counter\nmica_prompt_tokens_cached_total %llu\n"
        "# HELP mica_generated_tokens_total Tokens generated.\n# TYPE mica_generated_tokens_total counter\n"
        "mica_generated_tokens_total %llu\n"
        "# HELP mica_prompt_tokens_per_second Prompt evaluation speed over all requests.\n"
        "# TYPE mica_prompt_tokens_per_second gauge\nmica_prompt_tokens_per_second %.3f\n"
        "# HELP mica_generation_tokens_per_second Generation speed over all requests (per slot).\n"
        "# TYPE mica_generation_tokens_per_second gauge\nmica_generation_tokens_per_second %.3f\n"
        "# HELP mica_requests_active Requests being generated.\n# TYPE mica_requests_active gauge\n"
        "mica_requests_active %d\n"
        "# HELP mica_requests_queued Requests waiting for a slot.\n# TYPE mica_requests_queued gauge\n"
        "mica_requests_queued %d\n"
        "# HELP mica_slots Slots (--parallel).\n# TYPE mica_slots gauge\nmica_slots %d\n"
        "# HELP mica_kv_cache_tokens Tokens held in the slots' KV caches.\n# TYPE mica_kv_cache_tokens gauge\n"
        "mica_kv_cache_tokens %lld\n"
        "# HELP mica_kv_cache_capacity_tokens Capacity of the slots' KV caches.\n"
        "# TYPE mica_kv_cache_capacity_tokens gauge\nmica_kv_cache_capacity_tokens %lld\n"
        "# HELP mica_kv_cache_usage_ratio Used fraction of the KV caches.\n# TYPE mica_kv_cache_usage_ratio gauge\n"
        "mica_kv_cache_usage_ratio %.6f\n",
        (unsigned long long)st.requests, (unsigned long long)st.prompt_tokens, (unsigned long long)st.cached_tokens,
        (unsigned long long)st.gen_tokens, st.prompt_seconds > 0 ? (double)st.prompt_tokens / st.prompt_seconds : 0.0,
        st.gen_seconds > 0 ? (double)st.gen_tokens / st.gen_seconds : 0.0, ld.active, ld.queued, ld.n_slots,
        (long long)ld.kv_used, (long long)ld.kv_cap, ld.kv_cap > 0 ? (double)ld.kv_used / (double)ld.kv_cap : 0.0);
    if (n < 0) return NULL;
    char *e = expert_metrics_text(S);
    if (!e) { free(s); return NULL; }
    char *all = NULL;
    n = asprintf(&all, "%s%s", s, e);
    free(s);
    free(e);
    return n < 0 ? NULL : all;
}

static enum MHD_Result dispatch(srv *S, struct MHD_Connection *c, const struct route *rt, http_req *rq) {
    http_reply r = {0};
    const char *body = rq->body.p ? rq->body.p : "";
    size_t len = rq->body.n;
    switch (rt->id) {
    case R_HEALTH: {
        sched_load ld;
        sched_get_load(S->sched, &ld);
        char *s = NULL;
        if (asprintf(&s, "{\"status\":\"ok\",\"slots\":%d,\"active\":%d,\"queued\":%d}", ld.n_slots, ld.active,
                     ld.queued) < 0)
            s = NULL;
        return send_body(S, c, 200, s, 0);
    }
    case R_METRICS: {
        char *s = metrics_text(S);
        if (!s) return MHD_NO;
        struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
        if (!resp) { free(s); return MHD_NO; }
        add_common_headers(S, resp, "text/plain; version=0.0.4");
        enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        return rc;
    }
    case R_MODELS: oai_models(S, &r); break;
    case R_TOKENIZE: oai_tokenize(S, body, len, &r); break;
    case R_DETOKENIZE: oai_detokenize(S, body, len, &r); break;
    case R_TEMPLATE: oai_apply_template(S, body, len, &r); break;
    case R_COMPLETIONS: oai_generate(S, body, len, false, &r); break;
    case R_CHAT: oai_generate(S, body, len, true, &r); break;
    case R_NONE: break;
    }
    if (!r.task) return send_body(S, c, r.status ? r.status : 500, r.body, r.retry_after);
    sched_result sr = sched_submit(S->sched, r.task);
    if (sr != SCHED_OK) {
        task_release(r.task);
        if (sr == SCHED_FULL) {
            return send_body(S, c, 429, oai_error_json("too many requests are waiting; retry later",
                                                       "rate_limit_error", NULL, "queue_full"), 1);
        }
        return send_error(S, c, 503, NULL, NULL, "the server is shutting down");
    }
    return send_task(S, c, r.task, r.stream);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    srv *S = cls;
    http_req *rq = *con_cls;
    const struct route *rt = find_route(S, url);
    if (!rq) { /* first call: headers only */
        rq = calloc(1, sizeof *rq);
        if (!rq) return MHD_NO;
        *con_cls = rq;
        if (!strcmp(method, "OPTIONS") && rt) { /* CORS preflight */
            struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
            if (!resp) return MHD_NO;
            add_common_headers(S, resp, NULL);
            enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_NO_CONTENT, resp);
            MHD_destroy_response(resp);
            return rc;
        }
        if (!rt) return send_error(S, c, 404, NULL, "not_found", "no such endpoint");
        if (strcmp(method, rt->method) != 0) {
            char msg[128];
            snprintf(msg, sizeof msg, "method %s is not allowed here (use %s)", method, rt->method);
            return send_error(S, c, 405, NULL, "method_not_allowed", msg);
        }
        if (rt->id != R_HEALTH && !auth_ok(S, c))
            return send_error(S, c, 401, NULL, "invalid_api_key", "missing or invalid API key (Authorization: Bearer KEY)");
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > S->cfg.max_body) {
            char msg[128];
            snprintf(msg, sizeof msg, "the request body is larger than %zu bytes", S->cfg.max_body);
            return send_error(S, c, 413, NULL, "request_too_large", msg);
        }
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (!rq->too_big) {
            if (rq->body.n + *upload_size > S->cfg.max_body) {
                rq->too_big = true;
                sbuf_free(&rq->body);
            } else if (!sbuf_add(&rq->body, upload, *upload_size)) {
                return MHD_NO;
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (rq->too_big) {
        char msg[128];
        snprintf(msg, sizeof msg, "the request body is larger than %zu bytes", S->cfg.max_body);
        return send_error(S, c, 413, NULL, "request_too_large", msg);
    }
    return dispatch(S, c, rt, rq);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)c;
    (void)toe;
    http_req *rq = *con_cls;
    if (!rq) return;
    sbuf_free(&rq->body);
    free(rq);
    *con_cls = NULL;
}

http_server *http_start(srv *S, int *port_out, char *err, size_t err_cap) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", S->cfg.port);
    int gai = getaddrinfo(S->cfg.host, port, &hints, &ai);
    if (gai != 0 || !ai) {
        snprintf(err, err_cap, "cannot resolve --host '%s': %s", S->cfg.host, gai_strerror(gai));
        return NULL;
    }
    http_server *h = calloc(1, sizeof *h);
    if (!h) { freeaddrinfo(ai); snprintf(err, err_cap, "out of memory"); return NULL; }
    h->S = S;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    unsigned conn_limit = (unsigned)(S->cfg.parallel + S->cfg.queue_cap + 64);
    h->d = MHD_start_daemon(flags, (uint16_t)S->cfg.port, NULL, NULL, on_request, S,
                            MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                            MHD_OPTION_CONNECTION_LIMIT, conn_limit,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(256 * 1024),
                            MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!h->d) {
        snprintf(err, err_cap, "cannot listen on %s:%d (address in use or not allowed?)", S->cfg.host, S->cfg.port);
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    *port_out = di ? (int)di->port : S->cfg.port;
    return h;
}

void http_stop(http_server *h) {
    if (!h) return;
    MHD_stop_daemon(h->d);
    free(h);
}
