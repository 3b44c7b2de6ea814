/*
 * cmd_chat.c - `mica chat`: an interactive conversation in the terminal with
 * the model's own chat template. The conversation stays in the KV cache
 * across turns: each turn renders the whole conversation, keeps the cached
 * prefix it shares with the new prompt and evaluates only the rest.
 *
 * With stdin not a terminal it reads one message per line and prints one
 * answer per message (a line each), so it can be scripted.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "mica.h"

#define CHAT_MAX_LINE (1u << 20)   /* longest message accepted on one line */
#define CHAT_MAX_MESSAGES 100000

static const char chat_usage[] =
    "usage: mica chat -m MODEL [--system TEXT] [options]\n"
    "\n"
    "Chats with the model using its own chat template, streaming each answer.\n"
    "The conversation stays in the KV cache: each turn evaluates only new tokens.\n"
    "\n"
    "  -m, --model FILE      GGUF model\n"
    "      --system TEXT     system prompt\n"
    "  -n, --n-predict N     most tokens per answer (default 512)\n"
    "  -c, --ctx-size N      context size (default: model's, at most 4096)\n"
    "  -t, --threads N       threads (default: all cores)\n"
    "      --kv-type T       KV-cache rows: f32 (default), f16 or q8_0\n"
    "      --mem-budget SIZE RAM for the weights, e.g. 4G (default: automatic); routed\n"
    "                        experts stream from the file when the model exceeds it\n"
    "      --temp T, --top-k K, --top-p P, --min-p P, --repeat-penalty R, --seed S\n"
    "                        sampling, as for mica run (default temperature 0.8)\n"
    "\n"
    "commands in the chat:\n"
    "  /clear          forget the conversation (keeps the system prompt)\n"
    "  /system TEXT    set the system prompt\n"
    "  /save FILE      save the conversation\n"
    "  /load FILE      load a conversation saved with /save\n"
    "  /exit           leave (also end of input)\n"
    "Ctrl-C stops the current answer; at the prompt it leaves the chat.\n";

/* Set by SIGINT; the only mutable global, as a signal handler needs one. */
static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig) {
    (void)sig;
    g_interrupted = 1;
}

typedef struct chat_msg {
    char *role, *content;
} chat_msg;

typedef struct chat {
    mica_model *m;
    mica_session *s;
    mica_sampler *smp;
    mica_detok *dt;
    chat_msg *msgs;
    size_t n_msgs, cap_msgs;
    int32_t *cached; /* tokens in the KV cache, in order */
    int32_t n_cached;
    int64_t n_predict;
    bool interactive, warned_fallback;
    int turn;
} chat;

static bool chat_add(chat *c, const char *role, const char *content) {
    if (c->n_msgs == CHAT_MAX_MESSAGES) return false;
    if (c->n_msgs == c->cap_msgs) {
        size_t cap = c->cap_msgs ? c->cap_msgs * 2 : 16;
        chat_msg *m = realloc(c->msgs, cap * sizeof *m);
        if (!m) return false;
        c->msgs = m;
        c->cap_msgs = cap;
    }
    char *r = strdup(role), *t = strdup(content);
    if (!r || !t) { free(r); free(t); return false; }
    c->msgs[c->n_msgs++] = (chat_msg){r, t};
    return true;
}

static void chat_clear(chat *c, bool keep_system) {
    size_t keep = 0;
    for (size_t i = 0; i < c->n_msgs; i++) {
        if (keep_system && i == 0 && !strcmp(c->msgs[0].role, "system")) { keep = 1; continue; }
        free(c->msgs[i].role);
        free(c->msgs[i].content);
    }
    c->n_msgs = keep;
}

static bool chat_set_system(chat *c, const char *text) {
    if (c->n_msgs && !strcmp(c->msgs[0].role, "system")) {
        char *t = strdup(text);
        if (!t) return false;
        free(c->msgs[0].content);
        c->msgs[0].content = t;
        return true;
    }
    if (!chat_add(c, "system", text)) return false;
    chat_msg sys = c->msgs[c->n_msgs - 1];
    memmove(c->msgs + 1, c->msgs, (c->n_msgs - 1) * sizeof *c->msgs);
    c->msgs[0] = sys;
    return true;
}

/* ---- save / load: "mica-chat 1" then one "ROLE ESCAPED-CONTENT" line per message ---- */

static void write_escaped(FILE *f, const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\\') fputs("\\\\", f);
        else if (*p == '\n') fputs("\\n", f);
        else if (*p == '\r') fputs("\\r", f);
        else if (*p == '\t') fputs("\\t", f);
        else if (*p < 0x20 || *p == 0x7f) fprintf(f, "\\x%02x", *p);
        else fputc(*p, f);
    }
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Unescapes s in place; false on a bad escape. */
static bool unescape(char *s) {
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (*r != '\\') { *w++ = *r; continue; }
        r++;
        if (*r == '\\') *w++ = '\\';
        else if (*r == 'n') *w++ = '\n';
        else if (*r == 'r') *w++ = '\r';
        else if (*r == 't') *w++ = '\t';
        else if (*r == 'x' && hexval(r[1]) >= 0 && hexval(r[2]) >= 0 && (hexval(r[1]) | hexval(r[2]))) {
            *w++ = (char)(hexval(r[1]) * 16 + hexval(r[2]));
            r += 2;
        } else return false;
    }
    *w = '\0';
    return true;
}

static bool chat_save(const chat *c, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) { fprintf(stderr, "mica: cannot write %s: %s\n", path, strerror(errno)); return false; }
    fputs("mica-chat 1\n", f);
    for (size_t i = 0; i < c->n_msgs; i++) {
        fprintf(f, "%s ", c->msgs[i].role);
        write_escaped(f, c->msgs[i].content);
        fputc('\n', f);
    }
    if (fclose(f) != 0) { fprintf(stderr, "mica: cannot write %s\n", path); return false; }
    fprintf(stderr, "saved %zu messages to %s\n", c->n_msgs, path);
    return true;
}

static char *read_line(FILE *f, bool *too_long, bool *eof);

static bool chat_load(chat *c, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) { fprintf(stderr, "mica: cannot open %s: %s\n", path, strerror(errno)); return false; }
    chat tmp = {0};
    bool ok = true, too_long = false, eof = false;
    char *line = read_line(f, &too_long, &eof);
    if (!line || strcmp(line, "mica-chat 1") != 0) ok = false;
    free(line);
    size_t lineno = 1;
    while (ok) {
        line = read_line(f, &too_long, &eof);
        lineno++;
        if (!line) { ok = !too_long; break; }
        char *sp = strchr(line, ' ');
        if (!sp) { ok = false; free(line); break; }
        *sp = '\0';
        const char *role = line;
        if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "tool"))
            ok = false;
        if (ok && !unescape(sp + 1)) ok = false;
        if (ok && !chat_add(&tmp, role, sp + 1)) ok = false;
        free(line);
    }
    fclose(f);
    if (!ok) {
        fprintf(stderr, "mica: %s: not a saved chat (line %zu)\n", path, lineno);
        chat_clear(&tmp, false);
        free(tmp.msgs);
        return false;
    }
    chat_clear(c, false);
    free(c->msgs);
    c->msgs = tmp.msgs;
    c->n_msgs = tmp.n_msgs;
    c->cap_msgs = tmp.cap_msgs;
    fprintf(stderr, "loaded %zu messages from %s\n", c->n_msgs, path);
    return true;
}

/* ---- input ---- */

/* Reads one line without its newline (malloc'd). NULL at end of input, on an
 * interrupt, or for a line over CHAT_MAX_LINE (*too_long set; the rest of the
 * line is consumed). */
static char *read_line(FILE *f, bool *too_long, bool *eof) {
    size_t cap = 256, len = 0;
    char *buf = malloc(cap);
    *too_long = false;
    if (!buf) return NULL;
    for (;;) {
        int ch = fgetc(f);
        if (ch == EOF) {
            if (ferror(f) && errno == EINTR && !g_interrupted) { clearerr(f); continue; }
            *eof = !ferror(f) || !g_interrupted;
            if (len == 0 || *too_long) { free(buf); return NULL; }
            break;
        }
        if (ch == '\n') break;
        if (*too_long) continue;
        if (len + 1 >= CHAT_MAX_LINE) { *too_long = true; continue; }
        if (len + 1 >= cap) {
            char *b = realloc(buf, cap *= 2);
            if (!b) { free(buf); return NULL; }
            buf = b;
        }
        buf[len++] = (char)ch;
    }
    if (*too_long) { free(buf); return NULL; }
    if (len && buf[len - 1] == '\r') len--;
    buf[len] = '\0';
    return buf;
}

/* ---- one turn ---- */

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if invalid. */
static size_t utf8_valid_len(const unsigned char *s, size_t n) {
    size_t len;
    uint32_t cp;
    if (s[0] < 0x80) return 1;
    if ((s[0] & 0xE0) == 0xC0) { len = 2; cp = s[0] & 0x1F; }
    else if ((s[0] & 0xF0) == 0xE0) { len = 3; cp = s[0] & 0x0F; }
    else if ((s[0] & 0xF8) == 0xF0) { len = 4; cp = s[0] & 0x07; }
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

/* The answer as it enters the conversation: a model may emit bytes that are
 * not UTF-8 (a byte token alone, an answer stopped mid-character), which a
 * chat template refuses; each invalid byte becomes U+FFFD. Returns a malloc'd
 * string or NULL when out of memory. */
static char *utf8_sanitize(const char *text, size_t n) {
    char *out = malloc(n * 3 + 1);
    if (!out) return NULL;
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_valid_len((const unsigned char *)text + i, n - i);
        if (k) { memcpy(out + w, text + i, k); w += k; i += k; }
        else { memcpy(out + w, "\xEF\xBF\xBD", 3); w += 3; i++; }
    }
    out[w] = '\0';
    return out;
}

/* Tokenizes the rendered conversation, adding BOS when the model wants one
 * and the template did not write it. */
static bool tokenize_prompt(const chat *c, const char *text, size_t len, int32_t **ids, int32_t *n) {
    int32_t *lead = NULL, *body = NULL;
    size_t n_lead = 0, n_body = 0;
    if (mica_tokenize(c->m, "", 0, true, false, &lead, &n_lead) != MICA_OK ||
        mica_tokenize(c->m, text, len, false, true, &body, &n_body) != MICA_OK) {
        free(lead);
        fprintf(stderr, "mica: cannot tokenize the conversation\n");
        return false;
    }
    bool add_bos = n_lead > 0 && lead[0] == mica_token_bos(c->m) && (n_body == 0 || body[0] != lead[0]);
    int32_t *all = malloc((n_body + 1) * sizeof *all);
    if (!all) { free(lead); free(body); return false; }
    size_t k = 0;
    if (add_bos) all[k++] = lead[0];
    memcpy(all + k, body, n_body * sizeof *body);
    *ids = all;
    *n = (int32_t)(k + n_body);
    free(lead);
    free(body);
    return true;
}

/* Appends to the record of cached tokens. */
static bool cache_push(chat *c, const int32_t *ids, int32_t n) {
    int32_t *p = realloc(c->cached, (size_t)(c->n_cached + n) * sizeof *p);
    if (!p) return false;
    memcpy(p + c->n_cached, ids, (size_t)n * sizeof *ids);
    c->cached = p;
    c->n_cached += n;
    return true;
}

static bool chat_turn(chat *c, const char *user_text) {
    if (!chat_add(c, "user", user_text)) { fprintf(stderr, "mica: out of memory\n"); return false; }
    mica_chat_message *mm = calloc(c->n_msgs, sizeof *mm);
    if (!mm) return false;
    for (size_t i = 0; i < c->n_msgs; i++) mm[i] = (mica_chat_message){.role = c->msgs[i].role, .content = c->msgs[i].content};
    char *text = NULL, err[512];
    size_t len = 0;
    bool fallback = false;
    mica_status st = mica_chat_render(c->m, mm, c->n_msgs, NULL, true, NULL, &text, &len, &fallback, err, sizeof err);
    free(mm);
    if (st != MICA_OK) {
        fprintf(stderr, "mica: %s\n", err);
        free(c->msgs[--c->n_msgs].role);
        free(c->msgs[c->n_msgs].content);
        return false;
    }
    if (fallback && !c->warned_fallback) {
        fprintf(stderr, "mica: the model has no chat template; using ChatML (<|im_start|>role ... <|im_end|>)\n");
        c->warned_fallback = true;
    }
    int32_t *ids = NULL, n = 0;
    bool ok = tokenize_prompt(c, text, len, &ids, &n);
    free(text);
    if (!ok) { free(c->msgs[--c->n_msgs].role); free(c->msgs[c->n_msgs].content); return false; }
    const int32_t n_ctx = mica_session_n_ctx(c->s);
    if (n >= n_ctx) {
        fprintf(stderr, "mica: the conversation (%d tokens) no longer fits the context of %d; use /clear or -c\n", n, n_ctx);
        free(ids);
        free(c->msgs[--c->n_msgs].role);
        free(c->msgs[c->n_msgs].content);
        return false;
    }
    /* Keep the cached prefix shared with the new prompt; always evaluate at least one token. */
    int32_t keep = 0;
    while (keep < c->n_cached && keep < n && c->cached[keep] == ids[keep]) keep++;
    if (keep == n) keep--;
    mica_session_truncate(c->s, keep);
    c->n_cached = keep;
    double t0 = cli_now();
    if (mica_session_decode(c->s, ids + keep, n - keep, NULL) != MICA_OK ||
        !cache_push(c, ids + keep, n - keep)) {
        fprintf(stderr, "mica: %s\n", mica_session_errmsg(c->s));
        free(ids);
        mica_session_reset(c->s);
        c->n_cached = 0;
        return false;
    }
    double t_prompt = cli_now() - t0;
    free(ids);

    /* generate, streaming */
    size_t cap = 1024, alen = 0;
    char *answer = malloc(cap);
    if (!answer) return false;
    char piece[512];
    int32_t n_gen = 0;
    g_interrupted = 0;
    double t1 = cli_now();
    mica_detok_flush(c->dt, piece, sizeof piece); /* start clean */
    bool stopped = false;
    while (n_gen < c->n_predict) {
        if (g_interrupted) { stopped = true; break; }
        int32_t tok = mica_sampler_sample(c->smp, mica_session_logits(c->s), mica_model_n_vocab(c->m));
        if (mica_token_is_eog(c->m, tok)) break;
        mica_sampler_accept(c->smp, tok);
        n_gen++;
        size_t k = mica_detok_push(c->dt, tok, piece, sizeof piece);
        fwrite(piece, 1, k, stdout);
        fflush(stdout);
        if (alen + k + 1 > cap) {
            char *a = realloc(answer, cap = (alen + k + 1) * 2);
            if (!a) { free(answer); return false; }
            answer = a;
        }
        memcpy(answer + alen, piece, k);
        alen += k;
        if (mica_session_n_past(c->s) >= n_ctx) {
            fprintf(stderr, "\nmica: context full; the answer was cut\n");
            break;
        }
        if (mica_session_decode(c->s, &tok, 1, NULL) != MICA_OK || !cache_push(c, &tok, 1)) {
            fprintf(stderr, "\nmica: %s\n", mica_session_errmsg(c->s));
            break;
        }
    }
    size_t k = mica_detok_flush(c->dt, piece, sizeof piece);
    fwrite(piece, 1, k, stdout);
    if (alen + k + 1 > cap) {
        char *a = realloc(answer, alen + k + 1);
        if (!a) { free(answer); return false; }
        answer = a;
    }
    memcpy(answer + alen, piece, k);
    alen += k;
    answer[alen] = '\0';
    fputc('\n', stdout);
    fflush(stdout);
    double t_gen = cli_now() - t1;
    c->turn++;
    fprintf(stderr, "[turn %d: %d prompt tokens evaluated, %d reused from the cache, %d generated, %.1f tok/s%s]\n",
            c->turn, n - keep, keep, n_gen, t_gen > 0 ? n_gen / t_gen : 0.0, stopped ? ", stopped" : "");
    (void)t_prompt;
    char *clean = utf8_sanitize(answer, alen);
    bool ok2 = clean && chat_add(c, "assistant", clean);
    free(clean);
    free(answer);
    return ok2;
}

/* ---- command ---- */

int cmd_chat(int argc, char **argv) {
    const char *model = NULL, *system = NULL;
    int64_t n_ctx = 0, n_threads = 0, v = 0;
    uint64_t mem_budget = 0;
    uint64_t u = 0;
    int32_t kv_type = MICA_KV_F32;
    chat c = {.n_predict = 512};
    mica_sampler_params sp = mica_sampler_params_default();
    bool seed_set = false;
    cli_args a = {argc, 0, argv, false};
    const char *arg, *val;
    while ((arg = cli_next(&a))) {
#define VAL() ((val = cli_value(&a, arg)) != NULL)
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) { fputs(chat_usage, stdout); return 0; }
        else if (!strcmp(arg, "-m") || !strcmp(arg, "--model")) { if (!VAL()) return 1; model = val; }
        else if (!strcmp(arg, "--system")) { if (!VAL()) return 1; system = val; }
        else if (!strcmp(arg, "-n") || !strcmp(arg, "--n-predict")) {
            if (!VAL() || !cli_parse_i64(arg, val, 1, MICA_MAX_CTX, &c.n_predict)) return 1;
        } else if (!strcmp(arg, "-c") || !strcmp(arg, "--ctx-size")) {
            if (!VAL() || !cli_parse_i64(arg, val, 1, MICA_MAX_CTX, &n_ctx)) return 1;
        } else if (!strcmp(arg, "-t") || !strcmp(arg, "--threads")) {
            if (!VAL() || !cli_parse_i64(arg, val, 1, MICA_MAX_THREADS, &n_threads)) return 1;
        } else if (!strcmp(arg, "--mem-budget")) {
            if (!VAL() || !cli_parse_size(arg, val, &mem_budget)) return 1;
        } else if (!strcmp(arg, "--kv-type")) {
            if (!VAL()) return 1;
            if (!mica_kv_type_parse(val, &kv_type)) return cli_error("--kv-type: '%s' is not f32, f16 or q8_0", val);
        } else if (!strcmp(arg, "--temp")) {
            if (!VAL() || !cli_parse_f32(arg, val, 0.0, 100.0, &sp.temperature)) return 1;
        } else if (!strcmp(arg, "--top-k")) {
            if (!VAL() || !cli_parse_i64(arg, val, 0, 1 << 24, &v)) return 1;
            sp.top_k = (int32_t)v;
        } else if (!strcmp(arg, "--top-p")) {
            if (!VAL() || !cli_parse_f32(arg, val, 1e-6, 1.0, &sp.top_p)) return 1;
        } else if (!strcmp(arg, "--min-p")) {
            if (!VAL() || !cli_parse_f32(arg, val, 0.0, 1.0, &sp.min_p)) return 1;
        } else if (!strcmp(arg, "--repeat-penalty")) {
            if (!VAL() || !cli_parse_f32(arg, val, 1e-3, 100.0, &sp.repeat_penalty)) return 1;
        } else if (!strcmp(arg, "--seed") || !strcmp(arg, "-s")) {
            if (!VAL() || !cli_parse_u64(arg, val, &u)) return 1;
            sp.seed = u;
            seed_set = true;
        } else return cli_error("unknown option '%s' (see mica chat --help)", arg);
#undef VAL
    }
    if (a.failed) return 1;
    if (!model) return cli_error("chat: -m MODEL is required");
    if (!seed_set) sp.seed = (uint64_t)time(NULL);

    char err[512];
    int rc = 1;
    mica_model_params mp = mica_model_params_default();
    mp.mem_budget = mem_budget;
    if (mica_model_open(model, &mp, &c.m, err, sizeof err) != MICA_OK) return cli_error("%s", err);
    cli_print_model_note(c.m);
    mica_session_params spp = mica_session_params_default();
    spp.n_ctx = (int32_t)n_ctx;
    spp.n_threads = (int32_t)n_threads;
    spp.kv_type = kv_type;
    if (mica_session_create(c.m, &spp, &c.s, err, sizeof err) != MICA_OK) { cli_error("%s", err); goto done; }
    if (mica_sampler_create(&sp, &c.smp) != MICA_OK) { cli_error("invalid sampling parameters"); goto done; }
    if (mica_detok_create(c.m, &c.dt) != MICA_OK) { cli_error("the model has no vocabulary"); goto done; }
    if (system && !chat_set_system(&c, system)) { cli_error("out of memory"); goto done; }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL); /* no SA_RESTART: a read at the prompt returns */

    c.interactive = isatty(STDIN_FILENO);
    if (c.interactive)
        fprintf(stderr, "mica chat: %s. Type a message; /exit to leave, /clear to start over.\n", model);
    for (;;) {
        if (c.interactive) { fputs("> ", stdout); fflush(stdout); }
        g_interrupted = 0;
        bool too_long = false, eof = false;
        char *line = read_line(stdin, &too_long, &eof);
        if (!line) {
            if (too_long) { fprintf(stderr, "mica: message longer than %u bytes ignored\n", CHAT_MAX_LINE); continue; }
            if (c.interactive) fputc('\n', stdout);
            break; /* end of input or Ctrl-C at the prompt */
        }
        if (line[0] == '/') {
            if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) { free(line); break; }
            else if (!strcmp(line, "/clear")) {
                chat_clear(&c, true);
                mica_session_reset(c.s);
                c.n_cached = 0;
                fprintf(stderr, "conversation cleared\n");
            } else if (!strncmp(line, "/system ", 8)) {
                if (chat_set_system(&c, line + 8)) fprintf(stderr, "system prompt set\n");
            } else if (!strncmp(line, "/save ", 6) && line[6]) {
                chat_save(&c, line + 6);
            } else if (!strncmp(line, "/load ", 6) && line[6]) {
                chat_load(&c, line + 6);
            } else {
                fprintf(stderr, "mica: unknown command '%s' (commands: /clear /system /save /load /exit)\n", line);
            }
            free(line);
            continue;
        }
        if (line[strspn(line, " \t")] == '\0') {
            fprintf(stderr, "mica: empty message ignored\n");
            free(line);
            continue;
        }
        if (!chat_turn(&c, line) && !c.interactive) {
            fputc('\n', stdout); /* one answer line per message, even an empty one */
            fflush(stdout);
        }
        free(line);
    }
    rc = 0;
done:
    chat_clear(&c, false);
    free(c.msgs);
    free(c.cached);
    mica_detok_free(c.dt);
    mica_sampler_free(c.smp);
    mica_session_free(c.s);
    mica_model_free(c.m);
    return rc;
}
