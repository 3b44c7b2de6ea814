/*
 * weights.c - binding GGUF tensors to an architecture's weight views with
 * shape and type checks, and typed reads of `{arch}.*` hyperparameters.
 * Layer: model.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "model/model.h"

mica_status weights_bind(const mica_model *m, tensor_view *v, const char *name, uint32_t n_dims,
                         const int64_t *ne, bool optional, bool float_only, mica_err *err) {
    memset(v, 0, sizeof *v);
    const gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    if (!t) {
        if (optional) return MICA_OK;
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: missing tensor '%s'", gguf_path(m->gguf), name);
    }
    if (float_only && t->type != MICA_DTYPE_F32) {
        return mica_err_set(err, MICA_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s, expected F32",
                            gguf_path(m->gguf), name, dtype_name(t->type));
    }
    const kern_type_ops *ko = &m->kt.ops[t->type];
    if (!ko->vec_dot || !ko->to_float) {
        return mica_err_set(err, MICA_ERR_UNSUPPORTED,
                            "%s: tensor '%s' has type %s, which mica does not support yet",
                            gguf_path(m->gguf), name, dtype_name(t->type));
    }
    /* The activation type's block must divide the row too (e.g. Q8_K needs 256). */
    const dtype_traits *vt = dtype_get(ko->vec_dot_type);
    if (!vt || t->ne[0] % vt->blck != 0) {
        return mica_err_set(err, MICA_ERR_UNSUPPORTED, "%s: tensor '%s': row length %" PRId64
                            " is not a multiple of %u", gguf_path(m->gguf), name, t->ne[0],
                            vt ? vt->blck : 0);
    }
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        int64_t want = d < n_dims ? ne[d] : 1;
        if (t->ne[d] != want) {
            return mica_err_set(err, MICA_ERR_FORMAT,
                                "%s: tensor '%s' has shape [%" PRId64 ", %" PRId64 ", %" PRId64
                                "], expected dim %u = %" PRId64,
                                gguf_path(m->gguf), name, t->ne[0], t->ne[1], t->ne[2], d, want);
        }
    }
    uint64_t row_bytes = 0;
    if (!dtype_row_bytes(t->type, t->ne[0], &row_bytes)) {
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: tensor '%s': bad row size", gguf_path(m->gguf), name);
    }
    v->name = t->name;
    v->type = t->type;
    for (int d = 0; d < 4; d++) v->ne[d] = t->ne[d];
    v->row_bytes = row_bytes;
    v->data = t->data;
    return MICA_OK;
}

static void arch_key(const mica_model *m, const char *suffix, char *buf, size_t cap) {
    snprintf(buf, cap, "%s.%s", m->arch->name, suffix);
}

mica_status hparams_u32(const mica_model *m, const char *suffix, uint32_t *out, bool required,
                        mica_err *err) {
    char key[256];
    arch_key(m, suffix, key, sizeof key);
    return required ? gguf_require_u32(m->gguf, key, out, err) : gguf_get_u32(m->gguf, key, out, err);
}

mica_status hparams_f32(const mica_model *m, const char *suffix, float *out, bool required,
                        mica_err *err) {
    char key[256];
    arch_key(m, suffix, key, sizeof key);
    if (required && !gguf_find(m->gguf, key))
        return mica_err_set(err, MICA_ERR_FORMAT, "%s: missing key '%s'", gguf_path(m->gguf), key);
    return gguf_get_f32(m->gguf, key, out, err);
}
