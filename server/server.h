/*
 * server.h - the state shared by the files of `mica serve`: configuration,
 * the server object, generation requests (tasks) and their parameters.
 * Layer: server (sees only mica.h and its own headers).
 *
 * Threads: libmicrohttpd runs one thread per connection (http.c); each slot
 * has a worker thread that owns a mica_session (slots.c). A connection
 * thread parses a request into a task, submits it to the scheduler and then
 * either waits for the finished body (non-streaming) or pulls the SSE bytes
 * the worker appends (streaming). A task is reference-counted: the
 * connection and the scheduler/worker each hold one reference.
 */
#ifndef MICA_SERVER_H
#define MICA_SERVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mica.h"
#include "util.h"

#define SRV_MAX_CHOICES      8          /* cap on n */
#define SRV_MAX_TOP_LOGPROBS 20         /* cap on top_logprobs */
#define SRV_MAX_STOP         16         /* stop strings per request */
#define SRV_MAX_STOP_LEN     256        /* bytes per stop string */
#define SRV_MAX_MESSAGES     4096       /* messages per chat request */
#define SRV_DEFAULT_MAX_BODY (8u << 20) /* request body cap, bytes */

int cmd_serve(int argc, char **argv);

typedef struct srv_config {
    const char *model_path, *host, *api_key, *cors;
    int port, parallel, n_ctx, n_threads, queue_cap;
    int timeout_s; /* wall-time cap of one generation; it then ends with finish_reason "length" */
    bool metrics;
    size_t max_body;
    uint64_t mem_budget; /* mica_model_params.mem_budget: 0 automatic, MICA_MEM_UNLIMITED never stream */
    int32_t kv_type;     /* mica_kv_type of every slot's session (--kv-type) */
} srv_config;

/* Counters for /metrics; guarded by srv.mu. */
typedef struct srv_stats {
    uint64_t requests, requests_failed, prompt_tokens, cached_tokens, gen_tokens;
    double prompt_seconds, gen_seconds;
} srv_stats;

typedef struct sched sched;

typedef struct srv {
    srv_config cfg;
    mica_model *model;
    char model_id[256];
    int32_t n_vocab, n_ctx; /* n_ctx of every slot */
    bool tmpl_has_tool_call; /* the chat template knows the <tool_call> form */
    sched *sched;
    pthread_mutex_t mu;     /* guards stats and rng */
    srv_stats stats;
    uint64_t rng;
    int64_t started;
} srv;

/*
 * Opens the model cfg->model_path and starts the slot workers (no HTTP yet:
 * see http_start). *cfg is copied (its strings are borrowed: they must
 * outlive the server). Returns NULL with a one-line message in err.
 */
srv *srv_open(const srv_config *cfg, char *err, size_t err_cap);

/* Stops the workers (pending requests end with 503) and frees everything. Accepts NULL. */
void srv_close(srv *S);

/* A 64-bit random number from the server's generator (thread-safe). */
uint64_t srv_random(srv *S);
/* Adds to the statistics (thread-safe). */
void srv_stats_add(srv *S, const srv_stats *d);

typedef enum task_kind { TASK_COMPLETION, TASK_CHAT } task_kind;

typedef struct task_params {
    task_kind kind;
    int32_t *prompt; /* owned */
    int32_t n_prompt;
    int32_t max_tokens; /* < 0: until the context is full */
    int n_choices;
    mica_sampler_params sp;
    float presence_penalty, frequency_penalty;
    int32_t *bias_ids; /* logit_bias, owned */
    float *bias_vals;
    int n_bias;
    char *stop[SRV_MAX_STOP]; /* owned */
    int n_stop;
    bool logprobs;
    int top_logprobs;
    bool stream, include_usage;
    /* chat */
    bool parse_reasoning, start_in_reasoning, parse_tools, parallel_tool_calls;
    char *tool_prefill; /* non-NULL: the prompt opened a tool call with this body */
    mica_grammar *grammar; /* owned; non-NULL: constrained decoding (response_format, tool_choice) */
} task_params;

/* Log-probabilities of one generated token (from the raw model logits). */
typedef struct tok_logprob {
    int32_t prev, token;
    float logprob;
    int n_top;
    int32_t top_ids[SRV_MAX_TOP_LOGPROBS];
    float top_lp[SRV_MAX_TOP_LOGPROBS];
} tok_logprob;

typedef struct oai_result oai_result;

typedef struct task {
    task_params p;
    srv *S;
    char id[64];
    int64_t created;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    bool done;      /* the worker finished (body or stream complete) */
    bool cancelled; /* the client went away or the server stops */
    bool started;   /* a worker picked it up */
    sbuf out;       /* streaming: SSE bytes not yet sent */
    int status;     /* non-streaming: HTTP status and JSON body */
    char *body;
    oai_result *res; /* accumulated answer (openai.c) */
    int32_t n_cached, n_gen;
    double deadline; /* srv_now() after which generation stops */
    struct task *next; /* scheduler queue link */
} task;

/* Creates a task with one reference; NULL when out of memory. Takes
 * ownership of p's arrays and strings. */
task *task_create(srv *S, task_params *p);
void task_retain(task *t);
void task_release(task *t);
/* Appends SSE bytes and wakes the reader (locks t->mu). */
void task_push(task *t, const char *s, size_t n);
/* Marks the task done with a non-streaming body (takes ownership) and wakes the waiter. */
void task_finish(task *t, int status, char *body);
bool task_is_cancelled(task *t);
void task_cancel(task *t);

#endif /* MICA_SERVER_H */
