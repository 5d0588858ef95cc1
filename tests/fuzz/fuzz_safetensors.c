/* fuzz_safetensors.c - libFuzzer target: the safetensors reader (header length, header
 * JSON, dtypes, shapes, data_offsets, metadata) and the strict model loader on top.
 *
 * Path under test: st_parse on the input as a whole file (what st_open does after mmap),
 * every tensor converted with st_to_f32, then vit_model_load_mem: the same loader as
 * vit_model_load on a file (name mapping, shapes, config from shapes and metadata,
 * labels, finiteness).
 * Invariants: every tensor lies inside the buffer and tiles it; numel * dtype size ==
 * nbytes; a loaded model's configuration is consistent (D = H * Dh, g0 >= 1, ...).
 */
#include <math.h>
#include <string.h>

#include "fuzz.h"
#include "model.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[CDAM_ERR_MAX];
    st_file f;
    if (st_parse(data, size, "fuzz.safetensors", &f, err) == 0) {
        size_t total = 0;
        for (int i = 0; i < f.ntensors; i++) {
            const st_tensor *t = &f.t[i];
            FUZZ_CHECK(t->data >= data && t->nbytes <= size && t->data + t->nbytes <= data + size, "tensor %s outside", t->name);
            FUZZ_CHECK((uint64_t)st_numel(t) * st_dtype_size(t->dtype) == t->nbytes, "tensor %s size", t->name);
            FUZZ_CHECK(st_find(&f, t->name) == t, "st_find %s", t->name);
            total += t->nbytes;
            if (t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16 || t->dtype == ST_F64) {
                float *out = malloc(sizeof(float) * (size_t)(st_numel(t) ? st_numel(t) : 1));
                FUZZ_CHECK(out != NULL, "out of memory");
                FUZZ_CHECK(st_to_f32(t, out) == 0, "st_to_f32 %s", t->name);
                free(out);
            } else {
                FUZZ_CHECK(st_to_f32(t, NULL) == CDAM_EUNSUPPORTED, "st_to_f32 %s", t->name);
            }
        }
        if (f.ntensors) {
            uint64_t hl = 0;
            for (int i = 7; i >= 0; i--) hl = hl << 8 | data[i];
            FUZZ_CHECK(total == size - 8 - hl, "tensors cover %zu of %llu bytes", total, (unsigned long long)(size - 8 - hl));
        }
        for (int i = 0; i < f.nmeta; i++) FUZZ_CHECK(st_meta_get(&f, f.meta[i].key) != NULL, "meta %s", f.meta[i].key);
        st_close(&f);
    } else {
        FUZZ_CHECK(f.t == NULL && f.ntensors == 0 && f.label == NULL, "failed parse left state");
    }

    const uint8_t *bufs[1] = {data};
    size_t lens[1] = {size};
    const char *names[1] = {"fuzz.safetensors"};
    vit_model *m = NULL;
    if (vit_model_load_mem(bufs, lens, names, 1, NULL, &m, err) == 0) {
        const vit_config *c = &m->cfg;
        FUZZ_CHECK(c->P >= 1 && c->D >= 1 && c->L >= 1 && c->H >= 1 && c->D == c->H * c->Dh && c->g0 >= 1 && c->F >= 1 &&
                       c->C >= 0 && (c->C == 0) == (c->head_in == 0) && c->ln_eps > 0,
                   "config P%d D%d L%d H%d Dh%d g0 %d F%d C%d", c->P, c->D, c->L, c->H, c->Dh, c->g0, c->F, c->C);
        for (int k = 0; k < 3; k++) FUZZ_CHECK(isfinite(c->mean[k]) && c->std[k] > 0 && isfinite(c->std[k]), "mean/std");
        for (int k = 0; k < c->C; k++) {
            FUZZ_CHECK(m->labels && m->labels[k], "label %d", k);
            int j = vit_model_class(m, m->labels[k]);
            FUZZ_CHECK(j >= -1 && j < c->C, "class of label %d", k);  // -1: a label such as "99"
        }
        FUZZ_CHECK(m->cls[0] == m->cls[0] && m->norm_b[c->D - 1] == m->norm_b[c->D - 1], "weights readable");
        vit_model_free(m);
    } else {
        FUZZ_CHECK(m == NULL, "failed load returned a model");
    }
    return 0;
}
