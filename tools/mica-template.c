/*
 * mica-template - renders a chat template with the variables of a JSON file,
 * the C side of tests/scripts/templates.sh (the Python side is
 * tests/ref/render_templates.py).
 *
 *   mica-template [--now EPOCH] TEMPLATE_FILE VARS.json
 *
 * VARS.json is an object whose members become the template's variables
 * (messages, tools, add_generation_prompt, bos_token, eos_token, extra
 * kwargs). --now fixes the time strftime_now sees (formatted as UTC). The
 * render goes to stdout; errors go to stderr with exit status 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja.h"

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        char *nb = realloc(buf, cap * 2);
        if (!nb) { free(buf); buf = NULL; break; }
        buf = nb;
        cap *= 2;
    }
    fclose(f);
    *len = n;
    return buf;
}

int main(int argc, char **argv) {
    jinja_params params = jinja_params_default();
    int i = 1;
    if (i + 1 < argc && strcmp(argv[i], "--now") == 0) {
        params.now = strtoll(argv[i + 1], NULL, 10);
        params.now_utc = true;
        i += 2;
    }
    if (argc - i != 2) {
        fprintf(stderr, "usage: %s [--now EPOCH] TEMPLATE_FILE VARS.json\n", argv[0]);
        return 2;
    }
    size_t tlen, vlen;
    char *tsrc = read_file(argv[i], &tlen);
    char *vsrc = read_file(argv[i + 1], &vlen);
    if (!tsrc || !vsrc) {
        fprintf(stderr, "mica-template: cannot read %s\n", !tsrc ? argv[i] : argv[i + 1]);
        return 1;
    }
    mica_err err = {0};
    jinja_template *t = NULL;
    mica_status st = jinja_template_parse(tsrc, tlen, &t, &err);
    char *out = NULL;
    size_t out_len = 0;
    if (st == MICA_OK) st = jinja_template_render_json(t, vsrc, vlen, &params, &out, &out_len, &err);
    if (st != MICA_OK) {
        fprintf(stderr, "mica-template: %s: %s\n", mica_status_str(st), err.msg);
    } else {
        fwrite(out, 1, out_len, stdout);
    }
    mica_free(out);
    jinja_template_free(t);
    free(tsrc);
    free(vsrc);
    return st == MICA_OK ? 0 : 1;
}
