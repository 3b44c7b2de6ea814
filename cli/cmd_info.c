/*
 * cmd_info.c - `mica info`, `mica tokenize` and `mica convert`.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "mica.h"

static const char info_usage[] =
    "usage: mica info MODEL [-c N] [--kv-type f32|f16|q8_0]\n"
    "\n"
    "Prints the architecture, hyperparameters, tensor-type histogram, parameter\n"
    "count, file size and weight bytes read per generated token.\n"
    "  -c N   also the KV-cache bytes of a session with an N-token context\n"
    "  --kv-type T  KV-cache row type for the bytes per token and -c (default f32)\n"
    "  --mem-budget SIZE  the memory plan under this budget (e.g. 4G; default\n"
    "         automatic): what stays resident and what streams from the file,\n"
    "         and the predicted decode tokens/s (measures disk and memory read\n"
    "         bandwidth for about a second; the lines say how it is computed)\n";

int cmd_info(int argc, char **argv) {
    const char *model = NULL;
    long n_ctx = 0;
    uint64_t mem_budget = 0;
    bool predict = false;
    int32_t kv_type = MICA_KV_F32;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { fputs(info_usage, stdout); return 0; }
        if (!strcmp(argv[i], "--mem-budget")) {
            if (i + 1 >= argc) return cli_error("option --mem-budget needs a value");
            if (!cli_parse_size(argv[i], argv[i + 1], &mem_budget)) return 1;
            predict = true;
            i++;
            continue;
        }
        if (!strcmp(argv[i], "-m") && i + 1 < argc) { model = argv[++i]; continue; }
        if (!strcmp(argv[i], "--kv-type")) {
            if (i + 1 >= argc || !mica_kv_type_parse(argv[i + 1], &kv_type))
                return cli_error("info: --kv-type needs f32, f16 or q8_0");
            i++;
            continue;
        }
        if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--ctx-size")) {
            char *end = NULL;
            n_ctx = i + 1 < argc ? strtol(argv[++i], &end, 10) : 0;
            if (!end || *end || n_ctx < 1 || n_ctx > INT32_MAX) return cli_error("info: -c needs a positive context size");
            continue;
        }
        if (argv[i][0] == '-') return cli_error("unknown option '%s' (see mica info --help)", argv[i]);
        if (model) return cli_error("info: one model at a time");
        model = argv[i];
    }
    if (!model) return cli_error("info: MODEL is required");
    char err[512];
    mica_model *m = NULL;
    mica_model_params mp = mica_model_params_default();
    mp.mem_budget = mem_budget;
    if (mica_model_open(model, &mp, &m, err, sizeof err) != MICA_OK) return cli_error("%s", err);
    cli_print_model_note(m);
    size_t need = mica_model_describe(m, NULL, 0);
    char *buf = malloc(need + 1);
    if (!buf) { mica_model_free(m); return cli_error("out of memory"); }
    mica_model_describe(m, buf, need + 1);
    fputs(buf, stdout);
    free(buf);
    if (kv_type != MICA_KV_F32) { /* per token, as the description prints it for f32 */
        const int32_t big = 1 << 20;
        const uint64_t k1 = mica_model_kv_bytes_typed(m, big, kv_type), k2 = mica_model_kv_bytes_typed(m, 2 * big, kv_type);
        if (k1 && k1 != UINT64_MAX && k2 != UINT64_MAX && k2 >= k1)
            printf("kv bytes/token:  %" PRIu64 " (%s)\n", (k2 - k1) / (uint64_t)big, mica_kv_type_name(kv_type));
    }
    if (n_ctx > 0) {
        uint64_t kv = mica_model_kv_bytes_typed(m, (int32_t)n_ctx, kv_type);
        printf("kv cache -c %ld:  %" PRIu64 " bytes (%.2f MiB, %s)\n", n_ctx, kv, (double)kv / 1048576.0,
               mica_kv_type_name(kv_type));
    }
    char plan[2048];
    mica_model_describe_memory(m, plan, sizeof plan);
    fputs(plan, stdout);
    if (predict) {
        mica_model_describe_speed(m, plan, sizeof plan);
        fputs(plan, stdout);
    }
    mica_model_free(m);
    return 0;
}

static const char tokenize_usage[] =
    "usage: mica tokenize -m MODEL (-p TEXT | -f FILE) [--no-bos] [--parse-special] [--pieces]\n"
    "\n"
    "Prints the token ids of the text on one line, separated by spaces.\n"
    "  --no-bos         add no special tokens (BOS/EOS)\n"
    "  --parse-special  special-token text in the input becomes the special token\n"
    "  --pieces         print one token per line: id, a tab, and its text\n";

#define TOKENIZE_MAX_FILE (64u << 20)

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *file = NULL;
    bool no_bos = false, parse_special = false, pieces = false;
    cli_args a = {argc, 0, argv, false};
    const char *arg, *val;
    while ((arg = cli_next(&a))) {
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) { fputs(tokenize_usage, stdout); return 0; }
        else if (!strcmp(arg, "-m") || !strcmp(arg, "--model")) { if (!(val = cli_value(&a, arg))) return 1; model = val; }
        else if (!strcmp(arg, "-p") || !strcmp(arg, "--prompt")) { if (!(val = cli_value(&a, arg))) return 1; text = val; }
        else if (!strcmp(arg, "-f") || !strcmp(arg, "--file")) { if (!(val = cli_value(&a, arg))) return 1; file = val; }
        else if (!strcmp(arg, "--no-bos")) no_bos = true;
        else if (!strcmp(arg, "--parse-special")) parse_special = true;
        else if (!strcmp(arg, "--pieces")) pieces = true;
        else return cli_error("unknown option '%s' (see --help)", arg);
    }
    if (!model) return cli_error("tokenize: -m MODEL is required");
    if (!text == !file) return cli_error("tokenize: give exactly one of -p TEXT and -f FILE");
    char *buf = NULL;
    size_t len = 0;
    if (file) {
        FILE *f = fopen(file, "rb");
        if (!f) return cli_error("cannot open %s", file);
        buf = malloc(TOKENIZE_MAX_FILE + 1);
        if (!buf) { fclose(f); return cli_error("out of memory"); }
        len = fread(buf, 1, TOKENIZE_MAX_FILE + 1, f);
        bool bad = ferror(f);
        fclose(f);
        if (bad) { free(buf); return cli_error("cannot read %s", file); }
        if (len > TOKENIZE_MAX_FILE) { free(buf); return cli_error("%s is larger than 64 MiB", file); }
        text = buf;
    } else {
        len = strlen(text);
    }
    char err[512];
    mica_model *m = NULL;
    mica_model_params mp = mica_model_params_default();
    mp.vocab_only = true;
    if (mica_model_open(model, &mp, &m, err, sizeof err) != MICA_OK) { free(buf); return cli_error("%s", err); }
    int32_t *ids = NULL;
    size_t n = 0;
    mica_status st = mica_tokenize(m, text, len, !no_bos, parse_special, &ids, &n);
    free(buf);
    if (st != MICA_OK) { mica_model_free(m); return cli_error("cannot tokenize: %s", mica_status_str(st)); }
    if (!pieces) {
        for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
    } else {
        char piece[512];
        for (size_t i = 0; i < n; i++) {
            size_t k = mica_token_to_piece(m, i ? ids[i - 1] : -1, ids[i], piece, sizeof piece);
            printf("%d\t", ids[i]);
            fwrite(piece, 1, k < sizeof piece ? k : sizeof piece, stdout);
            putchar('\n');
        }
    }
    free(ids);
    mica_model_free(m);
    return 0;
}

static const char convert_usage[] =
    "usage: mica convert llama2c CHECKPOINT.bin TOKENIZER.bin -o OUT.gguf\n"
    "\n"
    "Converts a llama2.c checkpoint (legacy version-0 format) and its\n"
    "tokenizer.bin into a GGUF file of architecture llama.\n";

int cmd_convert(int argc, char **argv) {
    const char *pos[3] = {0};
    const char *out = NULL;
    int n_pos = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { fputs(convert_usage, stdout); return 0; }
        if (!strcmp(argv[i], "-o")) {
            if (i + 1 >= argc) return cli_error("option -o needs a value");
            out = argv[++i];
            continue;
        }
        if (argv[i][0] == '-') return cli_error("unknown option '%s' (see mica convert --help)", argv[i]);
        if (n_pos == 3) return cli_error("convert: too many arguments");
        pos[n_pos++] = argv[i];
    }
    if (n_pos < 1) return cli_error("convert: FORMAT is required (llama2c)");
    if (strcmp(pos[0], "llama2c") != 0) return cli_error("convert: unknown format '%s' (supported: llama2c)", pos[0]);
    if (n_pos != 3) return cli_error("convert llama2c: CHECKPOINT and TOKENIZER are required");
    if (!out) return cli_error("convert: -o OUT.gguf is required");
    char err[512];
    if (mica_convert_llama2c(pos[1], pos[2], out, err, sizeof err) != MICA_OK) return cli_error("%s", err);
    return 0;
}
