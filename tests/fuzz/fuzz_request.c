/*
 * fuzz_request.c - libFuzzer entry point for `mica serve`'s request handling:
 * a real server (srv_open + http_start on a loopback port, one slot, a small
 * context and a short generation time cap) over a tiny generated model, and
 * every input sent to it over a socket.
 *
 * Input: byte 0 picks the endpoint (low 3 bits) and whether the remaining
 * bytes are a JSON body POSTed to it (bit 7 clear) or a whole raw HTTP
 * request written as is (bit 7 set). The response is read to the end; a
 * server that does not answer within 20 s is a hang and aborts the run, as
 * does a crash or a sanitizer report anywhere in the process.
 *
 *   make fuzz-request FUZZ_SECONDS=60
 * The model is MICA_FUZZ_MODEL (the make target generates tiny-qwen3 with
 * the Qwen3 chat template); seeds are in tests/fuzz/requests.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "server.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static srv *g_srv;           /* test harness state: one server for the whole run */
static int g_port;

static const char *const paths[8] = {"/v1/chat/completions", "/v1/completions", "/tokenize", "/detokenize",
                                     "/apply-template",      "/v1/chat/completions", "/v1/models", "/metrics"};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *model = getenv("MICA_FUZZ_MODEL");
    if (!model || !*model) {
        fprintf(stderr, "fuzz_request: set MICA_FUZZ_MODEL to a GGUF with a chat template\n");
        exit(1);
    }
    signal(SIGPIPE, SIG_IGN);
    srv_config cfg = {.model_path = model, .host = "127.0.0.1", .port = 0, .parallel = 1, .queue_cap = 4,
                      .n_ctx = 256, .n_threads = 1, .timeout_s = 3, .metrics = true,
                      .max_body = 1u << 20, .mem_budget = 0};
    char err[512];
    if (!(g_srv = srv_open(&cfg, err, sizeof err))) {
        fprintf(stderr, "fuzz_request: %s\n", err);
        exit(1);
    }
    if (!http_start(g_srv, &g_port, err, sizeof err)) {
        fprintf(stderr, "fuzz_request: %s\n", err);
        exit(1);
    }
    return 0;
}

static void send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return; /* the server may close early (e.g. a 413): fine */
        p += w;
        n -= (size_t)w;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const uint8_t sel = data[0];
    const char *body = (const char *)data + 1;
    const size_t blen = size - 1;

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return 0;
    }
    if (sel & 0x80) {
        send_all(fd, body, blen);
    } else {
        const char *path = paths[sel & 7];
        const bool get = (sel & 7) >= 6;
        char head[256];
        int hn = snprintf(head, sizeof head,
                          "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
                          "Content-Length: %zu\r\n\r\n",
                          get ? "GET" : "POST", path, get ? (size_t)0 : blen);
        send_all(fd, head, (size_t)hn);
        if (!get) send_all(fd, body, blen);
    }
    shutdown(fd, SHUT_WR);

    char buf[4096];
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, 1000);
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (t1.tv_sec - t0.tv_sec > 20) {
            fprintf(stderr, "fuzz_request: no complete answer within 20 s: a hang\n");
            abort();
        }
        if (r <= 0) continue;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
    }
    close(fd);
    return 0;
}
