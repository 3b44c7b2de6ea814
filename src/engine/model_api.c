/*
 * model_api.c - the public model and token functions of mica.h: opening a
 * GGUF file, choosing kernels, dispatching to the architecture, describing
 * the model, and the tokenizer entry points. Layer: engine.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "model/model.h"

mica_model_params mica_model_params_default(void) {
    return (mica_model_params){.vocab_only = false};
}

#include "engine/engine_int.h"

void mica_model_free(mica_model *m) {
    if (!m) return;
    jinja_template_free(m->chat_tmpl);
    mica_free(m->chat_tmpl_err);
    if (m->arch && m->arch->unload) m->arch->unload(m);
    stream_free(m);
    vocab_free(m->vocab);
    gguf_close(m->gguf);
    mica_free(m);
}

/* Parameters and per-token bytes: every tensor counts once; the token
 * embedding contributes one row per token unless it doubles as the output.
 * Routed experts (3-D `*_exps` tensors, experts along ne[2]) count in full in
 * n_params and n_used/n_expert of them in n_params_active; the architectures
 * subtract the experts a token skips from bytes_per_token when they bind. */
static void model_count(mica_model *m) {
    const gguf_tensor *emb = gguf_find_tensor(m->gguf, "token_embd.weight");
    const bool tied = emb && !gguf_find_tensor(m->gguf, "output.weight");
    gguf_str arch = {0};
    gguf_get_str(m->gguf, "general.architecture", &arch, NULL);
    char key[128];
    snprintf(key, sizeof key, "%.*s.expert_used_count", (int)MICA_MIN(arch.len, 64), arch.ptr ? arch.ptr : "");
    uint32_t n_used = 0;
    gguf_get_u32(m->gguf, key, &n_used, NULL);
    int64_t last_moe_layer = -1;
    for (uint64_t i = 0; i < gguf_n_tensors(m->gguf); i++) {
        const gguf_tensor *t = gguf_tensor_at(m->gguf, i);
        uint64_t n = 1;
        for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) n *= (uint64_t)t->ne[d];
        m->n_params += n;
        if (t->n_dims == 3 && strstr(t->name, "_exps.") && t->ne[2] > 0) {
            m->n_expert = (uint32_t)MICA_MIN(t->ne[2], (int64_t)UINT32_MAX);
            m->n_params_active += n / (uint64_t)t->ne[2] * MICA_MIN((uint64_t)n_used, (uint64_t)t->ne[2]);
            long layer = -1;
            if (sscanf(t->name, "blk.%ld.", &layer) == 1 && layer != last_moe_layer) {
                m->n_moe_layers++;
                last_moe_layer = layer;
            }
        } else {
            m->n_params_active += n;
        }
        if (t == emb && !tied) m->bytes_per_token += t->ne[1] > 0 ? t->nbytes / (uint64_t)t->ne[1] : 0;
        else m->bytes_per_token += t->nbytes;
    }
    m->n_expert_used = m->n_expert ? MICA_MIN(n_used, m->n_expert) : 0;
}

mica_status mica_model_open(const char *path, const mica_model_params *params, mica_model **out,
                            char *errbuf, size_t err_cap) {
    mica_err err = {0};
    mica_model_params p = params ? *params : mica_model_params_default();
    if (!path || !out) {
        mica_err_set(&err, MICA_ERR_INVALID_ARG, "mica_model_open: NULL argument");
        mica_err_copy(&err, errbuf, err_cap);
        return MICA_ERR_INVALID_ARG;
    }
    mica_status st;
    mica_model *m = mica_calloc(1, sizeof *m);
    if (!m) { st = mica_err_set(&err, MICA_ERR_NOMEM, "out of memory"); goto fail; }
    cpu_features cpu;
    cpu_features_detect(&cpu);
    kern_table_init(&m->kt, kern_best_isa(&cpu));

    if ((st = gguf_open(path, &m->gguf, &err))) goto fail;
    gguf_str arch;
    if ((st = gguf_require_str(m->gguf, "general.architecture", &arch, &err))) goto fail;
    m->arch = arch_find(arch.ptr, (size_t)arch.len);
    if (!m->arch && !p.vocab_only) {
        st = mica_err_set(&err, MICA_ERR_UNSUPPORTED, "%s: architecture '%.*s' is not supported (supported: %s)",
                          path, (int)MICA_MIN(arch.len, 64), arch.ptr, arch_names());
        goto fail;
    }
    if (gguf_find(m->gguf, "tokenizer.ggml.model")) {
        if ((st = vocab_load(m->gguf, &m->vocab, &err))) goto fail;
    } else if (p.vocab_only) {
        st = mica_err_set(&err, MICA_ERR_FORMAT, "%s: no tokenizer (tokenizer.ggml.model missing)", path);
        goto fail;
    }
    model_count(m);
    if ((st = chat_api_load_template(m, &err))) goto fail;
    if (!p.vocab_only) {
        if ((st = stream_setup(m, &p, &err))) goto fail;
        if ((st = m->arch->load(m, &err))) goto fail;
        if (m->vocab && vocab_n_tokens(m->vocab) > (int32_t)m->hp.n_vocab) {
            st = mica_err_set(&err, MICA_ERR_FORMAT, "%s: tokenizer has %d tokens but token_embd only %u rows",
                              path, vocab_n_tokens(m->vocab), m->hp.n_vocab);
            goto fail;
        }
    } else {
        m->arch = NULL; /* nothing bound: sessions cannot be created */
    }
    *out = m;
    return MICA_OK;
fail:
    mica_err_copy(&err, errbuf, err_cap);
    if (m && m->arch && m->arch_data == NULL) m->arch = NULL;
    mica_model_free(m);
    return st;
}

const char *mica_model_arch(const mica_model *m) { return m->arch ? m->arch->name : ""; }

int32_t mica_model_n_vocab(const mica_model *m) {
    if (m->arch) return (int32_t)m->hp.n_vocab;
    return m->vocab ? vocab_n_tokens(m->vocab) : 0;
}

int32_t mica_model_n_ctx_train(const mica_model *m) { return (int32_t)m->hp.n_ctx_train; }

uint64_t mica_model_n_params(const mica_model *m) { return m->n_params; }

uint64_t mica_model_bytes_per_token(const mica_model *m) { return m->bytes_per_token; }

#define MODEL_API_KV_BATCH 512 /* mica_session_params' default n_batch */

uint64_t mica_model_kv_bytes(const mica_model *m, int32_t n_ctx) {
    if (!m->arch || n_ctx <= 0) return 0;
    return arch_kv_bytes(m, n_ctx, MICA_MIN(n_ctx, MODEL_API_KV_BATCH));
}

/* ---- describe ---- */

typedef struct text_out { char *buf; size_t cap, len; } text_out;

__attribute__((format(printf, 2, 3))) static void outf(text_out *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char tmp[1024];
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    size_t n = MICA_MIN((size_t)k, sizeof tmp - 1);
    if (o->len < o->cap) {
        size_t room = o->cap - o->len - 1;
        memcpy(o->buf + o->len, tmp, MICA_MIN(n, room));
        o->buf[o->len + MICA_MIN(n, room)] = '\0';
    }
    o->len += n;
}

static void human_bytes(uint64_t b, char *buf, size_t cap) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int i = 0;
    while (v >= 1024.0 && i < 4) { v /= 1024.0; i++; }
    snprintf(buf, cap, i ? "%.2f %s" : "%.0f %s", v, u[i]);
}

size_t mica_model_describe(const mica_model *m, char *buf, size_t cap) {
    text_out o = {buf, cap, 0};
    if (buf && cap) buf[0] = '\0';
    else o.cap = 0;
    const gguf_ctx *g = m->gguf;
    char hb[32];
    gguf_str name = {0};
    gguf_get_str(g, "general.name", &name, NULL);
    outf(&o, "file:            %s\n", gguf_path(g));
    human_bytes(gguf_file_size(g), hb, sizeof hb);
    outf(&o, "file size:       %s (%" PRIu64 " bytes)\n", hb, gguf_file_size(g));
    outf(&o, "gguf version:    %u, %" PRIu64 " tensors, %" PRIu64 " metadata keys\n", gguf_version(g),
         gguf_n_tensors(g), gguf_n_kv(g));
    if (name.ptr) outf(&o, "name:            %.*s\n", (int)MICA_MIN(name.len, 200), name.ptr);
    if (m->arch) {
        const model_hparams *hp = &m->hp;
        outf(&o, "architecture:    %s\n", m->arch->name);
        outf(&o, "n_vocab:         %u\n", hp->n_vocab);
        outf(&o, "n_ctx_train:     %u\n", hp->n_ctx_train);
        outf(&o, "n_embd:          %u\n", hp->n_embd);
        outf(&o, "n_layer:         %u\n", hp->n_layer);
        outf(&o, "n_head:          %u\n", hp->n_head);
        outf(&o, "n_head_kv:       %u\n", hp->n_head_kv);
        outf(&o, "head_dim:        %u (v %u)\n", hp->head_dim, hp->head_dim_v);
        outf(&o, "n_ff:            %u\n", hp->n_ff);
        outf(&o, "rope:            %s, %u dims, base %g\n", hp->rope_mode == ROPE_NEOX ? "neox" : "norm",
             hp->n_rot, (double)hp->rope_theta);
        outf(&o, "rms_eps:         %g\n", (double)hp->rms_eps);
        /* kv(n) = per_token * n + fixed once n covers every sliding-window ring */
        const int32_t big = 1 << 20;
        const uint64_t kv1 = mica_model_kv_bytes(m, big), kv2 = mica_model_kv_bytes(m, 2 * big);
        const bool kv_ok = kv1 != UINT64_MAX && kv2 != UINT64_MAX && kv2 >= kv1;
        const uint64_t kv_tok = kv_ok ? (kv2 - kv1) / (uint64_t)big : 0;
        const uint64_t kv_fixed = kv_ok ? kv1 - kv_tok * (uint64_t)big : 0;
        outf(&o, "kv bytes/token:  %" PRIu64 " (f32)", kv_tok);
        if (kv_fixed) {
            human_bytes(kv_fixed, hb, sizeof hb);
            outf(&o, " + %s fixed for the sliding-window layers", hb);
        }
        outf(&o, "\n");
    } else {
        outf(&o, "architecture:    (vocabulary only)\n");
    }
    if (m->vocab) {
        outf(&o, "tokenizer:       %s, %d tokens, bos %d, eos %d\n",
             vocab_kind(m->vocab) == VOCAB_SPM   ? "llama (SentencePiece)"
             : vocab_kind(m->vocab) == VOCAB_WPM ? "bert (WordPiece)"
                                                 : "gpt2 (byte-level BPE)",
             vocab_n_tokens(m->vocab), vocab_bos(m->vocab), vocab_eos(m->vocab));
    }
    /* tensor-type histogram */
    uint64_t count[MICA_DTYPE_COUNT] = {0}, bytes[MICA_DTYPE_COUNT] = {0};
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        if (t->type < MICA_DTYPE_COUNT) { count[t->type]++; bytes[t->type] += t->nbytes; }
    }
    outf(&o, "tensor types:   ");
    for (int t = 0; t < MICA_DTYPE_COUNT; t++) {
        if (!count[t]) continue;
        human_bytes(bytes[t], hb, sizeof hb);
        outf(&o, " %s x%" PRIu64 " (%s)", dtype_name((uint32_t)t), count[t], hb);
    }
    outf(&o, "\n");
    outf(&o, "parameters:      %" PRIu64 " (%.3f B)\n", m->n_params, (double)m->n_params / 1e9);
    if (m->n_expert) {
        outf(&o, "active params:   %" PRIu64 " (%.3f B) per token\n", m->n_params_active,
             (double)m->n_params_active / 1e9);
        outf(&o, "experts:         %u per layer, %u used per token, %u MoE layers\n", m->n_expert,
             m->n_expert_used, m->n_moe_layers);
    }
    human_bytes(m->bytes_per_token, hb, sizeof hb);
    outf(&o, "bytes per token: %s (%" PRIu64 " bytes of weights read per generated token)\n", hb,
         m->bytes_per_token);
    outf(&o, "kernels:         %s\n", m->kt.name);
    return o.len;
}

/* ---- tokens ---- */

int32_t mica_token_bos(const mica_model *m) { return m->vocab ? vocab_bos(m->vocab) : -1; }
int32_t mica_token_eos(const mica_model *m) { return m->vocab ? vocab_eos(m->vocab) : -1; }
bool mica_token_is_eog(const mica_model *m, int32_t t) { return m->vocab && vocab_is_eog(m->vocab, t); }

mica_status mica_tokenize(const mica_model *m, const char *text, size_t len, bool add_special,
                          bool parse_special, int32_t **out_ids, size_t *n_out) {
    if (!m->vocab || !out_ids || !n_out || (!text && len)) return MICA_ERR_INVALID_ARG;
    return vocab_tokenize(m->vocab, text ? text : "", len, add_special, parse_special, out_ids, n_out, NULL);
}

size_t mica_token_to_piece(const mica_model *m, int32_t prev, int32_t token, char *buf, size_t cap) {
    if (!m->vocab) return 0;
    return vocab_token_to_piece(m->vocab, prev, token, buf, cap);
}
