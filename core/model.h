/* model.h - a DINO ViT model: configuration and weights, loaded strictly from
 * safetensors files.
 *
 * Usage:
 *     const char *files[] = {"backbone.safetensors", "head.safetensors"};
 *     vit_model *m;
 *     char err[CDAM_ERR_MAX];
 *     if (vit_model_load(files, 2, NULL, &m, err) < 0) { report(err); }
 *     printf("%s: D=%d L=%d\n", m->cfg.name, m->cfg.D, m->cfg.L);
 *     vit_model_free(m);
 *
 * Names: DINO / timm (`blocks.{i}.attn.qkv.weight`, ...) or Hugging Face ViTModel
 * (`encoder.layer.{i}.attention.attention.query.weight`, ..., optionally under `vit.`,
 * head `classifier.*`; q, k, v are joined; HF's unused `pooler.dense.*` is ignored).
 * Several files are merged by name (a name in two files is an error). Every tensor
 * must be present with its exact shape; an unknown tensor is an error; every weight
 * must be finite. Configuration from shapes: P, D, L, F, g0 (pos_embed has 1 + g0^2
 * rows), C; head.weight (C, D) is the CDAM head, (C, 4D) DINO's linear probe on the
 * final-normed CLS rows of the last 4 blocks; no head at all is allowed (C = 0, for
 * concept-only use). From `__metadata__`: num_heads (default D/64, at least 1),
 * ln_eps (default 1e-6, 1e-12 for Hugging Face names), mean, std (JSON arrays of 3),
 * name, labels (JSON array of C strings). labels_path (one name a line) overrides.
 * Missing labels read "class 17".
 *
 * Ownership: the model owns all its memory; weights are float32, converted once, in
 * one read-only (mprotect'ed) mapping. Thread-safety: a loaded model is immutable and
 * may be used by any number of threads at once.
 */
#ifndef CDAM_MODEL_H
#define CDAM_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include "errors.h"

typedef struct {
    int P;          // patch size
    int D;          // embedding size
    int L;          // blocks
    int H;          // heads
    int Dh;         // D / H
    int F;          // MLP width
    int g0;         // native grid side (pos_embed has 1 + g0*g0 rows)
    int C;          // classes (0: no head)
    int head_in;    // D (CDAM head), 4D (DINO linear probe), 0 (no head)
    float ln_eps;
    float mean[3], std[3];
    char name[128];
} vit_config;

typedef struct {
    const float *ln1_w, *ln1_b;    // (D)
    const float *qkv_w, *qkv_b;    // (3D, D), (3D); row = t*D + h*Dh + d, t in q,k,v
    const float *proj_w, *proj_b;  // (D, D), (D)
    const float *ln2_w, *ln2_b;    // (D)
    const float *fc1_w, *fc1_b;    // (F, D), (F)
    const float *fc2_w, *fc2_b;    // (D, F), (D)
} vit_block;

typedef struct vit_model {
    vit_config cfg;
    const float *cls;              // (D)
    const float *pos;              // (1 + g0*g0, D)
    const float *patch_w;          // (D, 3*P*P), the conv weight (D, 3, P, P) flattened
    const float *patch_b;          // (D)
    vit_block *blocks;             // (L)
    const float *norm_w, *norm_b;  // (D)
    const float *head_w;           // (C, head_in) or NULL
    const float *head_b;           // (C) or NULL
    char **labels;                 // (C) names
    long n_backbone, n_head;       // parameter counts
    void *arena;                   // the weights' mapping
    size_t arena_bytes;
} vit_model;

int vit_model_load(const char *const *paths, int npaths, const char *labels_path, vit_model **out, char *err);
// The same from n safetensors images in memory (bufs[i], lens[i] bytes; names[i] stands
// for the file name in messages). The buffers are only read during the call: the model
// copies its weights. Used by the fuzz targets (tests/fuzz) and for embedding.
int vit_model_load_mem(const uint8_t *const *bufs, const size_t *lens, const char *const *names, int n,
                       const char *labels_path, vit_model **out, char *err);
void vit_model_free(vit_model *m);

// Index of a class given as a number ("17") or a label ("zebra"); -1 if none.
int vit_model_class(const vit_model *m, const char *s);

#endif
