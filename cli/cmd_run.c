/*
 * cmd_run.c - `mica run` (generate text) and `mica logits` (dump logits).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "mica.h"

static const char run_usage[] =
    "usage: mica run -m MODEL (-p PROMPT | --ids-in \"ID ...\") [options]\n"
    "\n"
    "Writes the prompt followed by the generated text to stdout, token by token;\n"
    "load time and speeds go to stderr.\n"
    "\n"
    "  -m, --model FILE        GGUF model\n"
    "  -p, --prompt TEXT       prompt text (BOS is added if the model wants it)\n"
    "      --ids-in \"ID ...\"   prompt as token ids instead of text (no BOS added)\n"
    "  -n, --n-predict N       tokens to generate (default 128)\n"
    "      --temp T            temperature; 0 = greedy (default 0.8)\n"
    "      --top-k K           top-k, 0 disables (default 40)\n"
    "      --top-p P           top-p, 1 disables (default 0.95)\n"
    "      --min-p P           min-p, 0 disables (default 0.05)\n"
    "      --repeat-penalty R  repetition penalty, 1 disables (default 1.0)\n"
    "      --repeat-last-n N   tokens the penalty looks back (default 64)\n"
    "      --seed S            RNG seed (default: random, printed on stderr)\n"
    "  -t, --threads N         threads (default: all cores)\n"
    "  -c, --ctx-size N        context size (default: model's, at most 4096)\n"
    "      --kv-type T         KV-cache rows: f32 (default), f16 or q8_0\n"
    "      --ids               print the generated token ids instead of text\n"
    "      --json-schema FILE  constrain the output to JSON valid against the JSON Schema in FILE\n"
    "      --mem-budget SIZE   RAM for the weights, e.g. 4G or 512M (default: automatic);\n"
    "                          routed experts stream from the file when the model exceeds it\n"
    "      --stats             expert-streaming report per token and in total (stderr)\n";

typedef struct run_opts {
    const char *model, *prompt, *ids_in;
    const char *json_schema; /* --json-schema FILE */
    int64_t n_predict, n_threads, n_ctx;
    mica_sampler_params sp;
    bool seed_set, print_ids, stats;
    uint64_t mem_budget;
    int32_t kv_type; /* mica_kv_type */
} run_opts;

/* Parses the options shared by run and logits; returns false after printing an error. */
static bool parse_run(int argc, char **argv, run_opts *o, bool *help) {
    cli_args a = {argc, 0, argv, false};
    const char *arg;
    int64_t v;
    uint64_t u;
    while ((arg = cli_next(&a))) {
        const char *val;
#define VAL() ((val = cli_value(&a, arg)) != NULL)
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) { *help = true; return true; }
        else if (!strcmp(arg, "-m") || !strcmp(arg, "--model")) { if (!VAL()) return false; o->model = val; }
        else if (!strcmp(arg, "-p") || !strcmp(arg, "--prompt")) { if (!VAL()) return false; o->prompt = val; }
        else if (!strcmp(arg, "--ids-in") || !strcmp(arg, "--ids-list")) { if (!VAL()) return false; o->ids_in = val; }
        else if (!strcmp(arg, "-n") || !strcmp(arg, "--n-predict")) {
            if (!VAL() || !cli_parse_i64(arg, val, 0, MICA_MAX_CTX, &o->n_predict)) return false;
        } else if (!strcmp(arg, "-t") || !strcmp(arg, "--threads")) {
            if (!VAL() || !cli_parse_i64(arg, val, 1, MICA_MAX_THREADS, &o->n_threads)) return false;
        } else if (!strcmp(arg, "-c") || !strcmp(arg, "--ctx-size")) {
            if (!VAL() || !cli_parse_i64(arg, val, 1, MICA_MAX_CTX, &o->n_ctx)) return false;
        } else if (!strcmp(arg, "--temp")) {
            if (!VAL() || !cli_parse_f32(arg, val, 0.0, 100.0, &o->sp.temperature)) return false;
        } else if (!strcmp(arg, "--top-k")) {
            if (!VAL() || !cli_parse_i64(arg, val, 0, 1 << 24, &v)) return false;
            o->sp.top_k = (int32_t)v;
        } else if (!strcmp(arg, "--top-p")) {
            if (!VAL() || !cli_parse_f32(arg, val, 1e-6, 1.0, &o->sp.top_p)) return false;
        } else if (!strcmp(arg, "--min-p")) {
            if (!VAL() || !cli_parse_f32(arg, val, 0.0, 1.0, &o->sp.min_p)) return false;
        } else if (!strcmp(arg, "--repeat-penalty")) {
            if (!VAL() || !cli_parse_f32(arg, val, 1e-3, 100.0, &o->sp.repeat_penalty)) return false;
        } else if (!strcmp(arg, "--repeat-last-n")) {
            if (!VAL() || !cli_parse_i64(arg, val, 0, MICA_MAX_CTX, &v)) return false;
            o->sp.repeat_last_n = (int32_t)v;
        } else if (!strcmp(arg, "--seed") || !strcmp(arg, "-s")) {
            if (!VAL() || !cli_parse_u64(arg, val, &u)) return false;
            o->sp.seed = u;
            o->seed_set = true;
        } else if (!strcmp(arg, "--ids")) {
            o->print_ids = true;
        } else if (!strcmp(arg, "--json-schema")) {
            if (!VAL()) return false;
            o->json_schema = val;
        } else if (!strcmp(arg, "--mem-budget")) {
            if (!VAL() || !cli_parse_size(arg, val, &o->mem_budget)) return false;
        } else if (!strcmp(arg, "--stats")) {
            o->stats = true;
        } else if (!strcmp(arg, "--kv-type")) {
            if (!VAL()) return false;
            if (!mica_kv_type_parse(val, &o->kv_type)) { cli_error("--kv-type: '%s' is not f32, f16 or q8_0", val); return false; }
        } else {
            cli_error("unknown option '%s' (see --help)", arg);
            return false;
        }
#undef VAL
    }
    return !a.failed;
}

/* Opens the model and a session; prints one error line and returns false on failure. */
static bool open_model(const run_opts *o, int64_t n_ctx, mica_model **m, mica_session **s) {
    char err[512];
    mica_model_params mp = mica_model_params_default();
    mp.mem_budget = o->mem_budget;
    if (mica_model_open(o->model, &mp, m, err, sizeof err) != MICA_OK) {
        cli_error("%s", err);
        return false;
    }
    cli_print_model_note(*m);
    mica_session_params sp = mica_session_params_default();
    sp.n_ctx = (int32_t)n_ctx;
    sp.n_threads = (int32_t)o->n_threads;
    sp.kv_type = o->kv_type;
    if (mica_session_create(*m, &sp, s, err, sizeof err) != MICA_OK) {
        cli_error("%s", err);
        mica_model_free(*m);
        *m = NULL;
        return false;
    }
    return true;
}

/* Prompt ids: from --ids-in, or the tokenized prompt text. */
static bool prompt_ids(const run_opts *o, const mica_model *m, int32_t **ids, int32_t *n) {
    if (o->ids_in) {
        if (!cli_parse_ids("--ids-in", o->ids_in, ids, n)) return false;
    } else {
        size_t len = 0;
        mica_status st = mica_tokenize(m, o->prompt, strlen(o->prompt), true, false, ids, &len);
        if (st != MICA_OK) {
            cli_error("cannot tokenize the prompt: %s", mica_status_str(st));
            return false;
        }
        if (len == 0) {
            free(*ids);
            *ids = NULL;
            cli_error("the prompt is empty and the model adds no BOS token");
            return false;
        }
        *n = (int32_t)len;
    }
    for (int32_t i = 0; i < *n; i++) {
        if ((*ids)[i] >= mica_model_n_vocab(m)) {
            cli_error("token id %d out of range (n_vocab %d)", (*ids)[i], mica_model_n_vocab(m));
            free(*ids);
            *ids = NULL;
            return false;
        }
    }
    return true;
}

/* --json-schema: reads the schema, compiles it and attaches it to the sampler; false after an error line. */
static bool run_attach_schema(const mica_model *m, mica_sampler *smp, const char *path, mica_grammar_vocab **gv,
                              mica_grammar **g) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_error("--json-schema: cannot open %s", path);
        return false;
    }
    char *text = malloc((1u << 20) + 1);
    size_t n = text ? fread(text, 1, 1u << 20, f) : 0;
    bool too_long = text && n == (1u << 20) && fgetc(f) != EOF;
    fclose(f);
    if (!text || too_long) {
        free(text);
        cli_error("--json-schema: %s is larger than 1 MiB", path);
        return false;
    }
    text[n] = '\0';
    char err[512];
    mica_grammar_params gp = mica_grammar_params_default();
    gp.json_schema = text;
    bool ok = mica_grammar_vocab_create(m, gv, err, sizeof err) == MICA_OK &&
              mica_grammar_create(*gv, &gp, g, err, sizeof err) == MICA_OK;
    free(text);
    if (!ok) {
        cli_error("--json-schema %s: %s", path, err);
        return false;
    }
    mica_sampler_set_grammar(smp, *g);
    return true;
}

int cmd_run(int argc, char **argv) {
    run_opts o = {.n_predict = 128, .sp = mica_sampler_params_default()};
    bool help = false;
    if (!parse_run(argc, argv, &o, &help)) return 1;
    if (help) { fputs(run_usage, stdout); return 0; }
    if (!o.model) return cli_error("run: -m MODEL is required");
    if (!o.prompt == !o.ids_in) return cli_error("run: give exactly one of -p PROMPT and --ids-in");
    if (!o.seed_set) o.sp.seed = (uint64_t)time(NULL);

    double t0 = cli_now();
    mica_model *m = NULL;
    mica_session *s = NULL;
    mica_sampler *smp = NULL;
    mica_grammar_vocab *gvocab = NULL;
    mica_grammar *grammar = NULL;
    int32_t *ids = NULL, n_prompt = 0;
    int rc = 1;
    /* The context is opened after tokenizing, so the default can fit the prompt. */
    {
        char err[512];
        mica_model_params mp = mica_model_params_default();
        mp.mem_budget = o.mem_budget;
        if (mica_model_open(o.model, &mp, &m, err, sizeof err) != MICA_OK) return cli_error("%s", err);
        cli_print_model_note(m);
    }
    if (!prompt_ids(&o, m, &ids, &n_prompt)) goto done;
    {
        char err[512];
        mica_session_params sp = mica_session_params_default();
        sp.n_ctx = (int32_t)o.n_ctx;
        sp.n_threads = (int32_t)o.n_threads;
        sp.kv_type = o.kv_type;
        if (mica_session_create(m, &sp, &s, err, sizeof err) != MICA_OK) { cli_error("%s", err); goto done; }
    }
    if (n_prompt >= mica_session_n_ctx(s)) {
        cli_error("the prompt has %d tokens, more than the context of %d allows (use -c)", n_prompt,
                  mica_session_n_ctx(s));
        goto done;
    }
    if (mica_sampler_create(&o.sp, &smp) != MICA_OK) { cli_error("invalid sampling parameters"); goto done; }
    double t_load = cli_now() - t0;
    if (!o.seed_set && o.sp.temperature > 0) fprintf(stderr, "seed: %llu\n", (unsigned long long)o.sp.seed);

    if (!o.print_ids) {
        if (o.prompt) fputs(o.prompt, stdout);
        else {
            char piece[256];
            for (int32_t i = 0; i < n_prompt; i++) {
                size_t k = mica_token_to_piece(m, i ? ids[i - 1] : -1, ids[i], piece, sizeof piece);
                fwrite(piece, 1, k < sizeof piece ? k : sizeof piece, stdout);
            }
        }
        fflush(stdout);
    }
    for (int32_t i = 0; i < n_prompt; i++) mica_sampler_accept(smp, ids[i]);
    if (o.json_schema && !run_attach_schema(m, smp, o.json_schema, &gvocab, &grammar)) goto done;

    mica_expert_stats st_prev = {0}, st_gen = {0};
    double t1 = cli_now();
    if (mica_session_decode(s, ids, n_prompt, NULL) != MICA_OK) {
        cli_error("%s", mica_session_errmsg(s));
        goto done;
    }
    double t_prompt = cli_now() - t1;
    if (o.stats) {
        cli_print_expert_stats(m, "prompt", n_prompt, &st_prev);
        st_gen = st_prev;
    }
    double t2 = cli_now();
    int32_t prev = ids[n_prompt - 1], n_gen = 0;
    bool first_id = true;
    for (; n_gen < o.n_predict; n_gen++) {
        int32_t tok = mica_sampler_sample(smp, mica_session_logits(s), mica_model_n_vocab(m));
        if (mica_token_is_eog(m, tok)) break;
        mica_sampler_accept(smp, tok);
        if (o.print_ids) {
            printf(first_id ? "%d" : " %d", tok);
            first_id = false;
        } else {
            char piece[256];
            size_t k = mica_token_to_piece(m, prev, tok, piece, sizeof piece);
            fwrite(piece, 1, k < sizeof piece ? k : sizeof piece, stdout);
        }
        fflush(stdout);
        prev = tok;
        if (n_gen + 1 == o.n_predict) { n_gen++; break; }
        if (grammar && mica_grammar_done(grammar)) { n_gen++; break; } /* the JSON value is complete */
        if (mica_session_n_past(s) >= mica_session_n_ctx(s)) {
            n_gen++;
            fprintf(stderr, "mica: context of %d tokens is full; stopping\n", mica_session_n_ctx(s));
            break;
        }
        if (mica_session_decode(s, &tok, 1, NULL) != MICA_OK) {
            fputc('\n', stdout);
            cli_error("%s", mica_session_errmsg(s));
            goto done;
        }
        if (o.stats) {
            char label[32];
            snprintf(label, sizeof label, "token %d", n_gen + 1);
            cli_print_expert_stats(m, label, 1, &st_prev);
        }
    }
    fputc('\n', stdout);
    fflush(stdout);
    double t_gen = cli_now() - t2;
    fprintf(stderr, "load: %.3f s | prompt: %d tokens, %.2f tok/s | generation: %d tokens, %.2f tok/s\n",
            t_load, n_prompt, t_prompt > 0 ? n_prompt / t_prompt : 0.0, n_gen,
            t_gen > 0 && n_gen > 1 ? (n_gen - 1) / t_gen : 0.0);
    if (o.stats && n_gen > 1) cli_print_expert_stats(m, "generation", n_gen - 1, &st_gen);
    rc = 0;
done:
    free(ids);
    mica_sampler_free(smp);
    mica_grammar_free(grammar);
    mica_grammar_vocab_free(gvocab);
    mica_session_free(s);
    mica_model_free(m);
    return rc;
}

static const char logits_usage[] =
    "usage: mica logits -m MODEL (-p TEXT | --ids \"ID ...\") -o FILE [-t THREADS] [--mem-budget SIZE]\n"
    "                   [--kv-type f32|f16|q8_0]\n"
    "\n"
    "Evaluates the prompt and writes every position's logits to FILE as\n"
    "little-endian float32, n_tokens x n_vocab, row-major. -p adds BOS as the\n"
    "model wants; --ids takes the ids as given.\n";

int cmd_logits(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *ids_s = NULL, *outp = NULL;
    int64_t n_threads = 0;
    uint64_t mem_budget = 0;
    int32_t kv_type = MICA_KV_F32;
    cli_args a = {argc, 0, argv, false};
    const char *arg;
    while ((arg = cli_next(&a))) {
        const char *val;
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) { fputs(logits_usage, stdout); return 0; }
        else if (!strcmp(arg, "-m") || !strcmp(arg, "--model")) { if (!(val = cli_value(&a, arg))) return 1; model = val; }
        else if (!strcmp(arg, "-p") || !strcmp(arg, "--prompt")) { if (!(val = cli_value(&a, arg))) return 1; prompt = val; }
        else if (!strcmp(arg, "--ids")) { if (!(val = cli_value(&a, arg))) return 1; ids_s = val; }
        else if (!strcmp(arg, "-o")) { if (!(val = cli_value(&a, arg))) return 1; outp = val; }
        else if (!strcmp(arg, "--mem-budget")) {
            if (!(val = cli_value(&a, arg)) || !cli_parse_size(arg, val, &mem_budget)) return 1;
        }
        else if (!strcmp(arg, "--kv-type")) {
            if (!(val = cli_value(&a, arg))) return 1;
            if (!mica_kv_type_parse(val, &kv_type)) return cli_error("--kv-type: '%s' is not f32, f16 or q8_0", val);
        }
        else if (!strcmp(arg, "-t") || !strcmp(arg, "--threads")) {
            if (!(val = cli_value(&a, arg)) || !cli_parse_i64(arg, val, 1, MICA_MAX_THREADS, &n_threads)) return 1;
        } else return cli_error("unknown option '%s' (see --help)", arg);
    }
    if (!model) return cli_error("logits: -m MODEL is required");
    if (!outp) return cli_error("logits: -o FILE is required");
    if (!prompt == !ids_s) return cli_error("logits: give exactly one of -p TEXT and --ids");

    run_opts o = {.model = model, .prompt = prompt, .ids_in = ids_s, .n_threads = n_threads,
                  .mem_budget = mem_budget, .kv_type = kv_type};
    mica_model *m = NULL;
    mica_session *s = NULL;
    int32_t *ids = NULL, n = 0;
    float *logits = NULL;
    FILE *f = NULL;
    int rc = 1;
    char err[512];
    mica_model_params mp = mica_model_params_default();
    if (mica_model_open(model, &mp, &m, err, sizeof err) != MICA_OK) return cli_error("%s", err);
    if (!prompt_ids(&o, m, &ids, &n)) goto done;
    if (n > MICA_MAX_CTX) { cli_error("too many tokens (%d > %d)", n, MICA_MAX_CTX); goto done; }
    mica_model_free(m);
    m = NULL;
    if (!open_model(&o, n, &m, &s)) goto done;
    size_t nv = (size_t)mica_model_n_vocab(m);
    logits = malloc((size_t)n * nv * sizeof(float));
    if (!logits) { cli_error("out of memory for %d x %zu logits", n, nv); goto done; }
    if (mica_session_decode(s, ids, n, logits) != MICA_OK) { cli_error("%s", mica_session_errmsg(s)); goto done; }
    f = fopen(outp, "wb");
    if (!f) { cli_error("cannot open %s for writing", outp); goto done; }
    if (fwrite(logits, sizeof(float), (size_t)n * nv, f) != (size_t)n * nv || fclose(f) != 0) {
        f = NULL;
        cli_error("cannot write %s", outp);
        goto done;
    }
    f = NULL;
    rc = 0;
done:
    if (f) fclose(f);
    free(logits);
    free(ids);
    mica_session_free(s);
    mica_model_free(m);
    return rc;
}
