/*
 * mica-gen - writes random-weight GGUF test models (see src/convert/gen.h).
 *
 *   mica-gen --preset NAME [--type TYPE] [--seed N]
 *            [--vocab VOCAB.gguf] [--chat-template FILE] [--sparse] -o OUT.gguf
 *   mica-gen --list
 *
 * TYPE: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, MXFP4, Q2_K,
 * Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS (gen_type_supported).
 * Prints nothing on stdout except the --list table; an error is one line on
 * stderr and exit status 1.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convert/gen.h"
#include "tensor/dtype.h"

#define GEN_CLI_USAGE                                                                                  \
    "usage: mica-gen --preset NAME [--type TYPE] [--seed N] [--vocab VOCAB.gguf] [--chat-template FILE] " \
    "[--threads N] [--sparse] -o OUT.gguf | mica-gen --list"

/* A usage error: one line on stderr, status 1 (the options are in --help). */
static int gen_cli_usage(void) {
    fprintf(stderr, GEN_CLI_USAGE " (mica-gen --help: the options)\n");
    return 1;
}

/* --help: the synopsis and the options on stdout, status 0. */
static int gen_cli_help(void) {
    fprintf(stdout, GEN_CLI_USAGE "\n"
                    "  --type TYPE  F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 IQ4_NL MXFP4 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_XS\n"
                    "  --threads N  generate rows on N threads (default: all CPUs; the bytes do not change)\n"
                    "  --sparse  leave every tensor's data as a file hole (reads as zeros): the full size and\n"
                    "            layout in no time and no disk, for metadata tests (mica info); not a usable model\n");
    return 0;
}

static void gen_cli_list(void) {
    for (size_t i = 0; i < gen_preset_count(); i++) {
        const gen_preset *p = gen_preset_at(i);
        printf("%-15s %s\n", p->name, p->about);
    }
}

/* dtype id of a type name among the generated ones, or MICA_DTYPE_COUNT. */
static uint32_t gen_cli_type(const char *s) {
    for (uint32_t t = 0; t < MICA_DTYPE_COUNT; t++)
        if (gen_type_supported(t) && strcmp(dtype_name(t), s) == 0) return t;
    return MICA_DTYPE_COUNT;
}

/* The whole file as a NUL-terminated string (malloc'd), or NULL. */
static char *gen_cli_read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1) break;
        char *nb = realloc(buf, cap * 2);
        if (!nb) { free(buf); buf = NULL; break; }
        buf = nb;
        cap *= 2;
    }
    bool bad = ferror(f) != 0;
    fclose(f);
    if (!buf || bad) { free(buf); return NULL; }
    buf[n] = '\0';
    return buf;
}

int main(int argc, char **argv) {
    const long n_cpu = sysconf(_SC_NPROCESSORS_ONLN);
    gen_params p = {.type = MICA_DTYPE_F32, .n_threads = n_cpu > 1 ? (int)(n_cpu < 256 ? n_cpu : 256) : 1};
    char *tmpl = NULL; /* --chat-template text */
    const char *out = NULL;
    for (int i = 1; i < argc; i += 2) { /* options come in (name, value) pairs */
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--list") == 0) {
            gen_cli_list();
            return 0;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) return gen_cli_help();
        if (strcmp(a, "--sparse") == 0) { /* a flag without a value */
            p.sparse = true;
            i--;
            continue;
        }
        static const char *const known[] = {"--preset", "--type", "--seed", "--vocab", "--chat-template", "-o", "--output",
                                            "--threads"};
        bool is_known = false;
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) is_known |= strcmp(a, known[k]) == 0;
        if (!is_known) {
            fprintf(stderr, "mica-gen: unknown argument '%s'\n", a);
            return 1;
        }
        if (!v) {
            fprintf(stderr, "mica-gen: %s needs a value\n", a);
            return 1;
        }
        if (strcmp(a, "--preset") == 0) {
            p.preset = v;
        } else if (strcmp(a, "--type") == 0) {
            p.type = gen_cli_type(v);
            if (p.type == MICA_DTYPE_COUNT) {
                fprintf(stderr, "mica-gen: unknown --type '%s' (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, MXFP4, "
                                "Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS)\n", v);
                return 1;
            }
        } else if (strcmp(a, "--seed") == 0) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 0);
            if (errno || *end || !*v || v[0] == '-') {
                fprintf(stderr, "mica-gen: bad --seed '%s'\n", v);
                return 1;
            }
            p.seed = s;
        } else if (strcmp(a, "--threads") == 0) {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end || !*v || n < 1 || n > 256) {
                fprintf(stderr, "mica-gen: bad --threads '%s' (1..256)\n", v);
                return 1;
            }
            p.n_threads = (int)n;
        } else if (strcmp(a, "--vocab") == 0) {
            p.vocab_path = v;
        } else if (strcmp(a, "--chat-template") == 0) {
            if (!(tmpl = gen_cli_read_text(v))) {
                fprintf(stderr, "mica-gen: cannot read --chat-template '%s'\n", v);
                return 1;
            }
            p.chat_template = tmpl;
        } else {
            out = v; /* -o, --output */
        }
    }
    if (!p.preset || !out) return gen_cli_usage();
    if (!gen_preset_find(p.preset)) {
        fprintf(stderr, "mica-gen: unknown preset '%s' (see --list)\n", p.preset);
        return 1;
    }
    mica_err err = {MICA_OK, ""};
    mica_status st = gen_write(&p, out, &err);
    free(tmpl);
    if (st != MICA_OK) {
        fprintf(stderr, "mica-gen: %s\n", err.msg);
        return 1;
    }
    return 0;
}
