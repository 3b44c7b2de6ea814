/*
 * llamacpp_norepack.c - an LD_PRELOAD shim for the llama.cpp that
 * node-llama-cpp loads: llama_model_default_params() with use_extra_bufts
 * off, i.e. what llama.cpp's own tools call --no-repack. Used by
 * bench/stream.sh only.
 *
 * Why: on AVX2/AVX-512 CPUs llama.cpp copies Q4_0/Q4_K/Q8_0 weights into
 * "repacked" anonymous buffers at load. With a model larger than the memory
 * limit that copy alone exceeds it and the kernel kills the process, so
 * under a memory cgroup llama.cpp can only run with its weights left in the
 * mmap'd file, which needs repacking off. node-llama-cpp exposes no option
 * for it; this shim changes nothing else.
 *
 * Build (bench/stream.sh does it): cc -shared -fPIC -O2 -I LLAMA/include
 * -I LLAMA/ggml/include -o norepack.so bench/llamacpp_norepack.c -ldl,
 * with LLAMA the llama.cpp source node-llama-cpp ships
 * (node_modules/node-llama-cpp/llama/gitRelease.bundle).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

typedef struct llama_model_params (*params_fn)(void);

/* node loads libllama with RTLD_LOCAL, so RTLD_NEXT cannot see it: find it by name. */
static int find_llama(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    if (!strstr(info->dlpi_name, "/libllama")) return 0;
    void *h = dlopen(info->dlpi_name, RTLD_LAZY | RTLD_NOLOAD);
    if (h) *(params_fn *)data = (params_fn)dlsym(h, "llama_model_default_params");
    return *(params_fn *)data != NULL;
}

struct llama_model_params llama_model_default_params(void) {
    params_fn real = NULL;
    dl_iterate_phdr(find_llama, &real);
    if (!real || real == llama_model_default_params) {
        fprintf(stderr, "llamacpp_norepack: libllama's llama_model_default_params not found\n");
        abort();
    }
    struct llama_model_params p = real();
    p.use_extra_bufts = false;
    fprintf(stderr, "llamacpp_norepack: use_extra_bufts off (no weight repacking)\n");
    return p;
}
