/*
 * slots.h - the scheduler of `mica serve`: --parallel N slots, each a
 * worker thread with its own mica_session (KV cache), and a bounded FIFO of
 * requests waiting for a slot.
 *
 * A free slot takes the oldest waiting request; when several slots are free
 * the one whose cached tokens share the longest prefix with the request's
 * prompt takes it. A slot keeps its KV cache between requests and evaluates
 * only the prompt tokens after the common prefix (reported as
 * cached_tokens). A cancelled request stops within one token.
 */
#ifndef MICA_SERVER_SLOTS_H
#define MICA_SERVER_SLOTS_H

#include "server.h"

/* Creates the slots and starts their workers. Returns NULL with a message in err. */
sched *sched_create(srv *S, char *err, size_t err_cap);
/* Stops accepting (later submits get SCHED_STOPPING), cancels every request
 * (waiters get their task finished) and joins the workers. NULL is allowed. */
void sched_stop(sched *sc);
/* Stops (if not yet) and frees. No connection may use sc afterwards. NULL is allowed. */
void sched_free(sched *sc);

typedef enum sched_result { SCHED_OK, SCHED_FULL, SCHED_STOPPING } sched_result;

/* Queues t (taking a reference) unless the queue is full or the server stops. */
sched_result sched_submit(sched *sc, task *t);

/*
 * The vocabulary for grammars (constrained decoding), built on first use
 * (about 0.2 s for a 150k vocabulary) and shared by every request until
 * sched_free. NULL with a message in err when it cannot be built.
 */
mica_grammar_vocab *sched_grammar_vocab(sched *sc, char *err, size_t err_cap);

/* Current load, for /metrics and /health. */
typedef struct sched_load {
    int n_slots, active, queued;
    int64_t kv_used, kv_cap; /* tokens in all slots' caches, and their capacity */
} sched_load;
void sched_get_load(sched *sc, sched_load *out);

#endif /* MICA_SERVER_SLOTS_H */
