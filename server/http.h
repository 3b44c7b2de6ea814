/*
 * http.h - the HTTP side of `mica serve` on libmicrohttpd: one thread per
 * connection, body size cap, API-key check, CORS, routing to the OpenAI
 * handlers, and SSE responses fed by the slot workers.
 */
#ifndef MICA_SERVER_HTTP_H
#define MICA_SERVER_HTTP_H

#include "server.h"

typedef struct http_server http_server;

/* Starts listening on cfg.host:cfg.port (port 0: any free port). Returns NULL
 * with a message in err. *port_out receives the bound port. */
http_server *http_start(srv *S, int *port_out, char *err, size_t err_cap);
/* Stops accepting and waits for every connection thread. NULL is allowed. */
void http_stop(http_server *h);

#endif /* MICA_SERVER_HTTP_H */
